//! The resource kinds weft reads, and turning one manifest document into one
//! typed object.

use crate::egress::{XBackend, X_GROUP};
use crate::multicluster::{ClusterLink, ServiceExport, MCS_GROUP};
use crate::policies::{AuthorizationPolicy, SecurityPolicy};
use crate::traffic_policy::BackendTrafficPolicy;
use crate::workload::Workload;
use gateway_api::backendtlspolicies::BackendTlsPolicy;
use gateway_api::experimental::grpcroutes::GrpcRoute;
use gateway_api::experimental::httproutes::HttpRoute;
use gateway_api::experimental::tcproutes::TcpRoute;
use gateway_api::gatewayclasses::GatewayClass;
use gateway_api::gateways::Gateway;
use gateway_api::listenersets::ListenerSet;
use gateway_api::referencegrants::ReferenceGrant;
use gateway_api::tlsroutes::TlsRoute;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;
use std::fmt;
use std::sync::Arc;

pub const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";
/// The group of weft's own kinds.
pub const WEFT_GROUP: &str = "weft.dev";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Namespace,
    GatewayClass,
    Gateway,
    HttpRoute,
    GrpcRoute,
    TlsRoute,
    TcpRoute,
    BackendTlsPolicy,
    ListenerSet,
    ReferenceGrant,
    Service,
    EndpointSlice,
    Secret,
    ConfigMap,
    Workload,
    SecurityPolicy,
    AuthorizationPolicy,
    BackendTrafficPolicy,
    ServiceExport,
    ClusterLink,
    XBackend,
}

impl Kind {
    /// The kind a document names, if weft reads it.
    fn of(api_version: &str, kind: &str) -> Option<Kind> {
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        let version = api_version.rsplit_once('/').map_or(api_version, |(_, v)| v);
        let gateway_version = group == GATEWAY_GROUP && matches!(version, "v1" | "v1beta1");
        Some(match (kind, group) {
            ("Namespace", "") if version == "v1" => Kind::Namespace,
            ("Service", "") if version == "v1" => Kind::Service,
            ("Secret", "") if version == "v1" => Kind::Secret,
            ("ConfigMap", "") if version == "v1" => Kind::ConfigMap,
            ("EndpointSlice", "discovery.k8s.io") if version == "v1" => Kind::EndpointSlice,
            ("GatewayClass", _) if gateway_version => Kind::GatewayClass,
            ("Gateway", _) if gateway_version => Kind::Gateway,
            ("HTTPRoute", _) if gateway_version => Kind::HttpRoute,
            ("GRPCRoute", _) if gateway_version => Kind::GrpcRoute,
            // TLSRoute and TCPRoute were alpha before v1.5 and v1.6.
            ("TLSRoute", GATEWAY_GROUP) if matches!(version, "v1" | "v1alpha2" | "v1alpha3") => {
                Kind::TlsRoute
            }
            ("TCPRoute", GATEWAY_GROUP) if matches!(version, "v1" | "v1alpha2") => Kind::TcpRoute,
            ("ListenerSet", GATEWAY_GROUP) if version == "v1" => Kind::ListenerSet,
            ("BackendTLSPolicy", GATEWAY_GROUP) if matches!(version, "v1" | "v1alpha3") => {
                Kind::BackendTlsPolicy
            }
            ("ReferenceGrant", _) if gateway_version => Kind::ReferenceGrant,
            ("Workload", WEFT_GROUP) if version == "v1alpha1" => Kind::Workload,
            ("SecurityPolicy", WEFT_GROUP) if version == "v1alpha1" => Kind::SecurityPolicy,
            ("AuthorizationPolicy", WEFT_GROUP) if version == "v1alpha1" => {
                Kind::AuthorizationPolicy
            }
            ("BackendTrafficPolicy", WEFT_GROUP) if version == "v1alpha1" => {
                Kind::BackendTrafficPolicy
            }
            ("ServiceExport", MCS_GROUP) if version == "v1alpha1" => Kind::ServiceExport,
            ("ClusterLink", WEFT_GROUP) if version == "v1alpha1" => Kind::ClusterLink,
            ("XBackend", X_GROUP) if version == "v1alpha1" => Kind::XBackend,
            _ => return None,
        })
    }

    pub const fn name(self) -> &'static str {
        match self {
            Kind::Namespace => "Namespace",
            Kind::GatewayClass => "GatewayClass",
            Kind::Gateway => "Gateway",
            Kind::HttpRoute => "HTTPRoute",
            Kind::GrpcRoute => "GRPCRoute",
            Kind::TlsRoute => "TLSRoute",
            Kind::TcpRoute => "TCPRoute",
            Kind::BackendTlsPolicy => "BackendTLSPolicy",
            Kind::ListenerSet => "ListenerSet",
            Kind::ReferenceGrant => "ReferenceGrant",
            Kind::Service => "Service",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::Secret => "Secret",
            Kind::ConfigMap => "ConfigMap",
            Kind::Workload => "Workload",
            Kind::SecurityPolicy => "SecurityPolicy",
            Kind::AuthorizationPolicy => "AuthorizationPolicy",
            Kind::BackendTrafficPolicy => "BackendTrafficPolicy",
            Kind::ServiceExport => "ServiceExport",
            Kind::ClusterLink => "ClusterLink",
            Kind::XBackend => "XBackend",
        }
    }

    pub fn namespaced(self) -> bool {
        !matches!(self, Kind::Namespace | Kind::GatewayClass)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Identifies an object: kind, namespace (empty when cluster-scoped), name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjKey {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for ObjKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

#[derive(Clone, Debug)]
pub enum Object {
    Namespace(Namespace),
    GatewayClass(GatewayClass),
    Gateway(Gateway),
    HttpRoute(HttpRoute),
    GrpcRoute(GrpcRoute),
    TlsRoute(TlsRoute),
    TcpRoute(TcpRoute),
    BackendTlsPolicy(BackendTlsPolicy),
    ListenerSet(ListenerSet),
    ReferenceGrant(ReferenceGrant),
    Service(Service),
    EndpointSlice(EndpointSlice),
    Secret(Secret),
    ConfigMap(ConfigMap),
    Workload(Workload),
    SecurityPolicy(SecurityPolicy),
    AuthorizationPolicy(AuthorizationPolicy),
    BackendTrafficPolicy(BackendTrafficPolicy),
    ServiceExport(ServiceExport),
    ClusterLink(ClusterLink),
    XBackend(XBackend),
}

/// One object as read: shared, never copied, between the folder's cache of
/// parsed files and every store built from it.
#[derive(Clone, Debug)]
pub struct Doc {
    /// As written.
    pub api_version: String,
    pub object: Object,
    /// The document without `metadata` and `status`, to tell spec changes
    /// apart.
    pub spec: Value,
    /// `status` as read (`Null` when absent): what a status write compares
    /// with and keeps of other controllers.
    pub status: Value,
}

/// A document read from a manifest, as far as it could be understood.
#[derive(Clone, Debug)]
pub enum Parsed {
    /// A kind weft reads, typed.
    Object { key: ObjKey, doc: Arc<Doc> },
    /// A kind weft does not read.
    Unknown { api_version: String, kind: String },
}

/// Turns one document into an object. `Err` says what is wrong with it.
pub fn parse(doc: Value) -> Result<Parsed, String> {
    let Value::Object(mut map) = doc else {
        return Err("a manifest document must be a mapping".into());
    };
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_string();
    let api_version = text(map.get("apiVersion"));
    let kind_name = text(map.get("kind"));
    if api_version.is_empty() || kind_name.is_empty() {
        return Err("apiVersion and kind are required".into());
    }
    let Some(kind) = Kind::of(&api_version, &kind_name) else {
        return Ok(Parsed::Unknown {
            api_version,
            kind: kind_name,
        });
    };
    let name = map
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if name.is_empty() {
        return Err(format!("{kind_name}: metadata.name is required"));
    }
    let namespace = if kind.namespaced() {
        let ns = map.get("metadata").and_then(|m| m.get("namespace"));
        let ns = ns.and_then(Value::as_str).unwrap_or("default").to_string();
        // Objects are stored with their namespace filled in, as the API server does.
        if let Some(Value::Object(meta)) = map.get_mut("metadata") {
            meta.insert("namespace".into(), Value::String(ns.clone()));
        }
        ns
    } else {
        String::new()
    };
    let key = ObjKey {
        kind,
        namespace,
        name,
    };
    let mut spec = map.clone();
    spec.remove("metadata");
    let status = spec.remove("status").unwrap_or(Value::Null);
    spec.remove("apiVersion");
    let doc = Value::Object(map);
    let object = typed(kind, doc).map_err(|e| format!("{key}: {e}"))?;
    Ok(Parsed::Object {
        key,
        doc: Arc::new(Doc {
            api_version,
            object,
            spec: Value::Object(spec),
            status,
        }),
    })
}

fn typed(kind: Kind, doc: Value) -> Result<Object, serde_json::Error> {
    use serde_json::from_value as from;
    Ok(match kind {
        Kind::Namespace => Object::Namespace(from(doc)?),
        Kind::GatewayClass => Object::GatewayClass(from(doc)?),
        Kind::Gateway => Object::Gateway(from(doc)?),
        Kind::HttpRoute => Object::HttpRoute(from(doc)?),
        Kind::GrpcRoute => Object::GrpcRoute(from(doc)?),
        Kind::TlsRoute => Object::TlsRoute(from(doc)?),
        Kind::TcpRoute => Object::TcpRoute(from(doc)?),
        Kind::BackendTlsPolicy => Object::BackendTlsPolicy(from(doc)?),
        Kind::ListenerSet => Object::ListenerSet(from(doc)?),
        Kind::ReferenceGrant => Object::ReferenceGrant(from(doc)?),
        Kind::Service => Object::Service(from(doc)?),
        Kind::EndpointSlice => Object::EndpointSlice(from(doc)?),
        Kind::Secret => Object::Secret(from(doc)?),
        Kind::ConfigMap => Object::ConfigMap(from(doc)?),
        Kind::Workload => Object::Workload(from(doc)?),
        Kind::SecurityPolicy => Object::SecurityPolicy(from(doc)?),
        Kind::AuthorizationPolicy => Object::AuthorizationPolicy(from(doc)?),
        Kind::BackendTrafficPolicy => Object::BackendTrafficPolicy(from(doc)?),
        Kind::ServiceExport => Object::ServiceExport(from(doc)?),
        Kind::ClusterLink => Object::ClusterLink(from(doc)?),
        Kind::XBackend => Object::XBackend(from(doc)?),
    })
}

impl Object {
    pub fn metadata_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Object::Namespace(o) => &mut o.metadata,
            Object::GatewayClass(o) => &mut o.metadata,
            Object::Gateway(o) => &mut o.metadata,
            Object::HttpRoute(o) => &mut o.metadata,
            Object::GrpcRoute(o) => &mut o.metadata,
            Object::TlsRoute(o) => &mut o.metadata,
            Object::TcpRoute(o) => &mut o.metadata,
            Object::BackendTlsPolicy(o) => &mut o.metadata,
            Object::ListenerSet(o) => &mut o.metadata,
            Object::ReferenceGrant(o) => &mut o.metadata,
            Object::Service(o) => &mut o.metadata,
            Object::EndpointSlice(o) => &mut o.metadata,
            Object::Secret(o) => &mut o.metadata,
            Object::ConfigMap(o) => &mut o.metadata,
            Object::Workload(o) => &mut o.metadata,
            Object::SecurityPolicy(o) => &mut o.metadata,
            Object::AuthorizationPolicy(o) => &mut o.metadata,
            Object::BackendTrafficPolicy(o) => &mut o.metadata,
            Object::ServiceExport(o) => &mut o.metadata,
            Object::ClusterLink(o) => &mut o.metadata,
            Object::XBackend(o) => &mut o.metadata,
        }
    }

    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Object::Namespace(o) => &o.metadata,
            Object::GatewayClass(o) => &o.metadata,
            Object::Gateway(o) => &o.metadata,
            Object::HttpRoute(o) => &o.metadata,
            Object::GrpcRoute(o) => &o.metadata,
            Object::TlsRoute(o) => &o.metadata,
            Object::TcpRoute(o) => &o.metadata,
            Object::BackendTlsPolicy(o) => &o.metadata,
            Object::ListenerSet(o) => &o.metadata,
            Object::ReferenceGrant(o) => &o.metadata,
            Object::Service(o) => &o.metadata,
            Object::EndpointSlice(o) => &o.metadata,
            Object::Secret(o) => &o.metadata,
            Object::ConfigMap(o) => &o.metadata,
            Object::Workload(o) => &o.metadata,
            Object::SecurityPolicy(o) => &o.metadata,
            Object::AuthorizationPolicy(o) => &o.metadata,
            Object::BackendTrafficPolicy(o) => &o.metadata,
            Object::ServiceExport(o) => &o.metadata,
            Object::ClusterLink(o) => &o.metadata,
            Object::XBackend(o) => &o.metadata,
        }
    }
}

/// Splits a file's text into documents: multi-document YAML (JSON is YAML).
/// Empty documents are skipped.
pub fn documents(text: &str) -> Result<Vec<Value>, String> {
    crate::yaml::documents(text, &crate::yaml::Budget::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_v1beta1_and_defaults_namespace() {
        let docs = documents(
            "apiVersion: gateway.networking.k8s.io/v1beta1\nkind: HTTPRoute\nmetadata: {name: r}\nspec: {}\n---\n",
        )
        .unwrap();
        let Parsed::Object { key, doc } = parse(docs[0].clone()).unwrap() else {
            panic!("not an object")
        };
        assert_eq!(key.namespace, "default");
        assert_eq!(doc.object.metadata().namespace.as_deref(), Some("default"));
    }

    #[test]
    fn unknown_kinds_are_reported_not_parsed() {
        let doc = serde_json::json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "x"}});
        assert!(matches!(parse(doc).unwrap(), Parsed::Unknown { .. }));
    }

    #[test]
    fn reads_weft_policies_and_refuses_wrong_types() {
        let doc = serde_json::json!({"apiVersion": "weft.dev/v1alpha1", "kind": "SecurityPolicy",
            "metadata": {"name": "p"}, "spec": {"unknown": 1, "jwt": {"providers": [{"name": "idp",
            "remoteJWKS": {"uri": "https://idp.example.com/jwks"}}]}}});
        let Parsed::Object { key, doc } = parse(doc).unwrap() else {
            panic!("not an object")
        };
        assert_eq!(key.kind, Kind::SecurityPolicy);
        let Object::SecurityPolicy(p) = &doc.object else {
            panic!("not a SecurityPolicy")
        };
        assert_eq!(p.spec.jwt.as_ref().unwrap().providers[0].name, "idp");
        let doc = serde_json::json!({"apiVersion": "weft.dev/v1alpha1", "kind": "AuthorizationPolicy",
            "metadata": {"name": "a"}, "spec": {"rules": "all"}});
        let err = parse(doc).unwrap_err();
        assert!(err.contains("AuthorizationPolicy default/a"), "{err}");
    }

    #[test]
    fn bad_documents_say_why() {
        let doc = serde_json::json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": "g"}, "spec": {"listeners": "nope"}});
        let err = parse(doc).unwrap_err();
        assert!(err.contains("Gateway default/g"), "{err}");
        assert!(documents("a: [").is_err());
    }
}
