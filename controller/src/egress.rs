//! Egress as written: Gateway API's `XBackend` (GEP-4894,
//! `gateway.networking.x-k8s.io/v1alpha1`; weft reads its
//! `ExternalHostname` type), the label that makes a Gateway the mesh's
//! egress gateway, and the mesh-wide outbound traffic policy.
//!
//! An egress gateway is an ordinary Gateway of weft's class labelled
//! `weft.dev/role: egress`. Its routes' hostnames are the external hosts
//! the mesh declares: every sidecar sends requests for them to the gateway
//! over mutual TLS, and the gateway's routes send them on to XBackends.

use gateway_api::backendtlspolicies::{
    BackendTlsPolicyValidationCaCertificateRefs, BackendTlsPolicyValidationSubjectAltNames,
};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The group of Gateway API's experimental kinds.
pub const X_GROUP: &str = "gateway.networking.x-k8s.io";
/// The Gateway label naming its role in the mesh.
pub const ROLE_LABEL: &str = "weft.dev/role";
/// The role of the gateway the mesh's declared external hosts go through.
pub const EGRESS_ROLE: &str = "egress";

/// A destination and how to connect to it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, CustomResource)]
#[kube(
    group = "gateway.networking.x-k8s.io",
    version = "v1alpha1",
    kind = "XBackend",
    plural = "xbackends",
    namespaced,
    status = "crate::policies::PolicyStatus"
)]
#[serde(rename_all = "camelCase")]
pub struct XBackendSpec {
    /// `ExternalHostname` (weft does not read `EndpointSelector`).
    #[serde(rename = "type")]
    pub type_: String,
    pub port: XBackendPort,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_hostname: Option<ExternalHostname>,
    /// TCP, HTTP, HTTP2, HTTP11, H2C, GRPC (MCP and WSS are not read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<XBackendTls>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
pub struct XBackendPort {
    #[serde(default)]
    pub number: i32,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
pub struct ExternalHostname {
    /// A DNS name; weft also takes `*.suffix`, which stands for the
    /// request's own host under the suffix.
    pub hostname: String,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct XBackendTls {
    /// None, ServerOnly or ClientAndServer.
    pub mode: String,
    /// A `kubernetes.io/tls` Secret: the client certificate of
    /// `ClientAndServer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate_ref: Option<SecretRef>,
    /// As BackendTLSPolicy's; the hostname checked is the external
    /// hostname when `hostname` is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<XBackendValidation>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
pub struct SecretRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct XBackendValidation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificate_refs: Option<Vec<BackendTlsPolicyValidationCaCertificateRefs>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_alt_names: Option<Vec<BackendTlsPolicyValidationSubjectAltNames>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "wellKnownCACertificates"
    )]
    pub well_known_ca_certificates: Option<String>,
}

/// What sidecars do with a request for a host the mesh does not declare
/// (Istio's `outboundTrafficPolicy.mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OutboundPolicy {
    /// It goes to the host it names, straight from the sidecar.
    #[default]
    AllowAny,
    /// It is refused: 502 for HTTP, the connection closed for TCP.
    RegistryOnly,
}

impl std::str::FromStr for OutboundPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "AllowAny" => Ok(OutboundPolicy::AllowAny),
            "RegistryOnly" => Ok(OutboundPolicy::RegistryOnly),
            other => Err(format!("{other:?} is neither AllowAny nor RegistryOnly")),
        }
    }
}
