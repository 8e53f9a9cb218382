//! weft's access policy kinds (`weft.dev/v1alpha1`), as written: the
//! `SecurityPolicy` (JWT authentication and authorization at gateways; its
//! field names follow Envoy Gateway's) and the mesh's `AuthorizationPolicy`
//! (the GEP-3779 shape with paths and methods). Only their shape lives
//! here; `crate::translate::access` checks them and builds the IR.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A policy's target (GEP-713): an object in the policy's own namespace.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetRef {
    #[serde(default)]
    pub group: String,
    pub kind: String,
    pub name: String,
    /// A listener of a Gateway, or a named rule of a route.
    #[serde(default)]
    pub section_name: Option<String>,
}

/// A reference to an object in the policy's namespace (a ConfigMap).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
pub struct LocalRef {
    #[serde(default)]
    pub group: String,
    pub kind: String,
    pub name: String,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
pub enum PolicyAction {
    Allow,
    Deny,
}

/// The status of a policy (GEP-713): one entry per ancestor it reports to.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyStatus {
    #[serde(default)]
    pub ancestors: Vec<PolicyAncestorStatus>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyAncestorStatus {
    pub ancestor_ref: AncestorRef,
    pub controller_name: String,
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// The Gateway (or, for a target not found or a Service, the target) a
/// policy reports to.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AncestorRef {
    #[serde(default)]
    pub group: String,
    pub kind: String,
    #[serde(default)]
    pub namespace: Option<String>,
    pub name: String,
    #[serde(default)]
    pub section_name: Option<String>,
}

/// JWT authentication and authorization at gateways.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, CustomResource)]
#[kube(
    group = "weft.dev",
    version = "v1alpha1",
    kind = "SecurityPolicy",
    plural = "securitypolicies",
    namespaced,
    status = "PolicyStatus"
)]
#[serde(rename_all = "camelCase")]
pub struct SecurityPolicySpec {
    #[serde(default)]
    pub target_refs: Vec<TargetRef>,
    #[serde(default)]
    pub jwt: Option<JwtSpec>,
    #[serde(default)]
    pub authorization: Option<AuthorizationSpec>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JwtSpec {
    /// A request without a token passes (one with a bad token does not).
    #[serde(default)]
    pub optional: bool,
    #[serde(default)]
    pub providers: Vec<JwtProviderSpec>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JwtProviderSpec {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default)]
    pub audiences: Vec<String>,
    #[serde(default, rename = "remoteJWKS")]
    pub remote_jwks: Option<RemoteJwks>,
    #[serde(default, rename = "localJWKS")]
    pub local_jwks: Option<LocalJwks>,
    /// Where the token is; `Authorization: Bearer` when absent.
    #[serde(default)]
    pub extract_from: Option<ExtractFrom>,
    #[serde(default)]
    pub claim_to_headers: Vec<ClaimToHeader>,
    #[serde(default)]
    pub forward_original_token: bool,
    #[serde(default)]
    pub recompute_route: bool,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemoteJwks {
    #[serde(default)]
    pub uri: String,
    /// A Go duration (`300s`, `5m`, `1h30m`); 300s when absent.
    #[serde(default)]
    pub cache_duration: Option<String>,
    /// ConfigMaps whose `ca.crt` an https server must chain to.
    #[serde(default)]
    pub ca_certificate_refs: Vec<LocalRef>,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
pub enum LocalJwksType {
    Inline,
    ValueRef,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalJwks {
    /// Which of the two fields holds the keys; inferred when absent.
    #[serde(default, rename = "type")]
    pub type_: Option<LocalJwksType>,
    /// A JWKS document.
    #[serde(default)]
    pub inline: Option<String>,
    /// A ConfigMap whose `jwks` key holds the document.
    #[serde(default)]
    pub value_ref: Option<LocalRef>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExtractFrom {
    #[serde(default)]
    pub headers: Vec<HeaderExtract>,
    #[serde(default)]
    pub cookies: Vec<String>,
    #[serde(default)]
    pub params: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeaderExtract {
    pub name: String,
    #[serde(default)]
    pub value_prefix: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
pub struct ClaimToHeader {
    pub header: String,
    pub claim: String,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationSpec {
    /// Deny when absent.
    #[serde(default)]
    pub default_action: Option<PolicyAction>,
    /// The first that matches decides.
    #[serde(default)]
    pub rules: Vec<SecurityRule>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
pub struct SecurityRule {
    /// `rule-<i>` when absent.
    #[serde(default)]
    pub name: Option<String>,
    /// Required; a rule without one makes the policy invalid.
    #[serde(default)]
    pub action: Option<PolicyAction>,
    #[serde(default)]
    pub operation: Option<Operation>,
    #[serde(default)]
    pub principal: Option<Principal>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
pub struct Operation {
    #[serde(default)]
    pub methods: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
pub struct Principal {
    #[serde(default, rename = "clientCIDRs")]
    pub client_cidrs: Vec<String>,
    #[serde(default)]
    pub jwt: Option<JwtPrincipalSpec>,
    #[serde(default, rename = "spiffeIDs")]
    pub spiffe_ids: Vec<String>,
    #[serde(default)]
    pub headers: Vec<HeaderValues>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
pub struct JwtPrincipalSpec {
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub claims: Vec<ClaimSpec>,
    #[serde(default)]
    pub scopes: Vec<String>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
pub enum ClaimValueType {
    #[default]
    String,
    StringArray,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClaimSpec {
    pub name: String,
    #[serde(default)]
    pub value_type: ClaimValueType,
    #[serde(default)]
    pub values: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
pub struct HeaderValues {
    pub name: String,
    #[serde(default)]
    pub values: Vec<String>,
}

/// Who may call a Service's workloads (at their sidecars) or a Gateway.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, CustomResource)]
#[kube(
    group = "weft.dev",
    version = "v1alpha1",
    kind = "AuthorizationPolicy",
    plural = "authorizationpolicies",
    namespaced,
    status = "PolicyStatus"
)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationPolicySpec {
    /// Services (mesh inbound) or Gateways.
    #[serde(default)]
    pub target_refs: Vec<TargetRef>,
    /// Required; a policy without one is invalid.
    #[serde(default)]
    pub action: Option<PolicyAction>,
    #[serde(default)]
    pub rules: Vec<AuthorizationRule>,
}

/// Matches when every field given matches; within a field, any value.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
pub struct AuthorizationRule {
    /// Who calls; anyone when empty.
    #[serde(default)]
    pub sources: Vec<Source>,
    /// `/exact`, `/prefix*`, `*suffix`.
    #[serde(default)]
    pub paths: Vec<String>,
    #[serde(default)]
    pub methods: Vec<String>,
    /// The host asked for (`*.suffix` for any under it): the request's,
    /// or a TLS connection's server name. On an egress gateway, the
    /// external hosts the sources may reach.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
}

/// A caller: `type` says which other field is set (kept as text so that an
/// unknown type makes the policy invalid rather than unreadable).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    #[serde(default, rename = "type")]
    pub type_: String,
    #[serde(default)]
    pub service_account: Option<ServiceAccountRef>,
    #[serde(default)]
    pub spiffe: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
pub struct ServiceAccountRef {
    /// The policy's namespace when absent.
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub name: String,
}
