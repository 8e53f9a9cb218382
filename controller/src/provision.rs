//! Gateway provisioning (Gateway API GEP-1762), the pure half: for each
//! Gateway of a weft GatewayClass, the objects that run it — a
//! ServiceAccount (its name is the Gateway's, so the proxy's SPIFFE ID is
//! the Gateway's identity), a ConfigMap with the CA's roots, a Deployment
//! running `weft gateway`, a Service (LoadBalancer unless a parameters
//! ConfigMap says `service.type`) and a PodDisruptionBudget. Each is owned
//! by the Gateway, so deleting the Gateway deletes them; each carries the
//! labels and annotations of `spec.infrastructure` and GEP-1762's labels.

use crate::resources::{Kind, ObjKey, Object};
use crate::store::Store;
use crate::CONTROLLER_NAME;
use gateway_api::gateways::Gateway;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

pub const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";
pub const GATEWAY_CLASS_LABEL: &str = "gateway.networking.k8s.io/gateway-class-name";
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "weft");
/// Where the proxy's admin port listens in its pod (`/ready`, `/metrics`).
pub const GATEWAY_ADMIN_PORT: u16 = 15021;
const TOKEN_DIR: &str = "/var/run/secrets/weft";
const ROOTS_DIR: &str = "/var/run/weft/ca";

/// What every proxy weft makes (a provisioned gateway, an injected
/// sidecar) needs to know of the control plane.
#[derive(Clone, Debug)]
pub struct Infra {
    /// The `weft` image.
    pub image: String,
    /// The controller's config server and CA, host:port.
    pub controller: String,
    pub ca: String,
    pub trust_domain: String,
    /// The CA's roots, PEM.
    pub roots: String,
}

/// The objects of each provisioned Gateway, by the Gateway's key; `None`
/// for a Gateway whose parameters are invalid (not accepted): what it runs
/// now is left as it is, neither changed to defaults it did not ask for
/// (a LoadBalancer where it asked for a ClusterIP) nor deleted.
pub fn desired(store: &Store, infra: &Infra) -> BTreeMap<ObjKey, Option<Vec<Value>>> {
    let mut out = BTreeMap::new();
    for (key, entry) in store.of_kind(Kind::Gateway) {
        let Object::Gateway(gw) = &entry.object else {
            continue;
        };
        let class = &gw.spec.gateway_class_name;
        let ours = matches!(
            store.lookup(Kind::GatewayClass, "", class),
            Some(Object::GatewayClass(c)) if c.spec.controller_name == CONTROLLER_NAME
        );
        let Some(uid) = gw.metadata.uid.as_deref().filter(|_| ours) else {
            continue;
        };
        out.insert(key.clone(), objects(store, key, gw, uid, infra));
    }
    out
}

/// The keys a Gateway's parameters ConfigMap may hold, checked: `replicas`
/// (0 to 100; 1 when absent) and `service.type` (ClusterIP, NodePort or
/// LoadBalancer; LoadBalancer when absent). `Err` says what is wrong.
pub fn check_parameters(data: &BTreeMap<String, String>) -> Result<(i64, &'static str), String> {
    let mut replicas = 1;
    let mut service_type = "LoadBalancer";
    for (k, v) in data {
        match k.as_str() {
            "replicas" => {
                replicas = v
                    .parse()
                    .ok()
                    .filter(|r| (0..=100).contains(r))
                    .ok_or_else(|| format!("replicas must be 0 to 100, not {v:?}"))?;
            }
            "service.type" => {
                service_type = ["ClusterIP", "NodePort", "LoadBalancer"]
                    .into_iter()
                    .find(|t| t == v)
                    .ok_or_else(|| {
                        format!(
                            "service.type must be ClusterIP, NodePort or LoadBalancer, not {v:?}"
                        )
                    })?;
            }
            other => return Err(format!("unknown key {other:?} (replicas, service.type)")),
        }
    }
    Ok((replicas, service_type))
}

/// `spec.infrastructure.parametersRef`'s ConfigMap, when it is one.
fn parameters(store: &Store, ns: &str, gw: &Gateway) -> BTreeMap<String, String> {
    let Some(r) = gw
        .spec
        .infrastructure
        .as_ref()
        .and_then(|i| i.parameters_ref.as_ref())
    else {
        return BTreeMap::new();
    };
    if !(r.group.is_empty() && r.kind == "ConfigMap") {
        return BTreeMap::new();
    }
    match store.lookup(Kind::ConfigMap, ns, &r.name) {
        Some(Object::ConfigMap(cm)) => cm.data.clone().unwrap_or_default(),
        _ => BTreeMap::new(),
    }
}

fn objects(
    store: &Store,
    key: &ObjKey,
    gw: &Gateway,
    uid: &str,
    infra: &Infra,
) -> Option<Vec<Value>> {
    let (ns, name) = (key.namespace.as_str(), key.name.as_str());
    let infrastructure = gw.spec.infrastructure.as_ref();
    let mut labels: Map<String, Value> = infrastructure
        .and_then(|i| i.labels.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, json!(v)))
        .collect();
    labels.insert(GATEWAY_NAME_LABEL.into(), json!(name));
    labels.insert(
        GATEWAY_CLASS_LABEL.into(),
        json!(gw.spec.gateway_class_name),
    );
    labels.insert(MANAGED_BY.0.into(), json!(MANAGED_BY.1));
    let annotations: Map<String, Value> = infrastructure
        .and_then(|i| i.annotations.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, json!(v)))
        .collect();
    let owner = json!([{
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "name": name,
        "uid": uid, "controller": true, "blockOwnerDeletion": true,
    }]);
    let meta = |object: &str| {
        json!({"name": object, "namespace": ns, "labels": labels,
            "annotations": annotations, "ownerReferences": owner})
    };
    let params = parameters(store, ns, gw);
    let selector = json!({ GATEWAY_NAME_LABEL: name });
    let ports: BTreeSet<i32> = gw.spec.listeners.iter().map(|l| l.port).collect();
    let roots = format!("{name}-ca-root");
    let container_ports: Vec<Value> = ports
        .iter()
        .map(|p| json!({"name": format!("listen-{p}"), "containerPort": p, "protocol": "TCP"}))
        .chain([json!({"name": "admin", "containerPort": GATEWAY_ADMIN_PORT, "protocol": "TCP"})])
        .collect();
    let low_port = ports.iter().any(|p| *p < 1024);
    let mut capabilities = json!({"drop": ["ALL"]});
    if low_port {
        capabilities["add"] = json!(["NET_BIND_SERVICE"]);
    }
    // The translation says what is wrong in the Gateway's status.
    let (replicas, service_type) = check_parameters(&params).ok()?;
    let args = json!([
        "gateway",
        "--gateway",
        format!("{ns}/{name}"),
        "--controller",
        infra.controller,
        "--ca",
        infra.ca,
        "--trust-domain",
        infra.trust_domain,
        "--trust-bundle",
        format!("{ROOTS_DIR}/root-cert.pem"),
        "--token-file",
        format!("{TOKEN_DIR}/token"),
        "--admin",
        format!("0.0.0.0:{GATEWAY_ADMIN_PORT}"),
    ]);
    Some(vec![
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(name)}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(&roots),
            "data": {"root-cert.pem": infra.roots}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta(name), "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": labels, "annotations": annotations},
                "spec": {
                    "serviceAccountName": name,
                    "securityContext": {"runAsNonRoot": true, "runAsUser": 1337, "runAsGroup": 1337,
                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": "gateway", "image": infra.image, "args": args,
                        "ports": container_ports,
                        "readinessProbe": {"httpGet": {"path": "/ready", "port": GATEWAY_ADMIN_PORT}},
                        "securityContext": {"allowPrivilegeEscalation": false,
                            "readOnlyRootFilesystem": true, "capabilities": capabilities},
                        "volumeMounts": [
                            {"name": "weft-token", "mountPath": TOKEN_DIR, "readOnly": true},
                            {"name": "ca-root", "mountPath": ROOTS_DIR, "readOnly": true},
                        ],
                    }],
                    "volumes": [
                        {"name": "weft-token", "projected": {"sources": [{"serviceAccountToken": {
                            "audience": crate::tokenreview::AUDIENCE, "expirationSeconds": 3600, "path": "token"}}]}},
                        {"name": "ca-root", "configMap": {"name": roots}},
                    ],
                },
            },
        }}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": meta(name), "spec": {
            "type": service_type,
            "selector": selector,
            "ports": ports.iter().map(|p| json!({"name": format!("listen-{p}"), "port": p,
                "targetPort": p, "protocol": "TCP"})).collect::<Vec<_>>(),
        }}),
        json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": meta(name), "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": selector},
        }}),
    ])
}

/// The Service weft provisioned for Gateway `ns/name`, if any.
fn own_service<'s>(
    store: &'s Store,
    ns: &str,
    name: &str,
) -> Option<&'s k8s_openapi::api::core::v1::Service> {
    let Some(Object::Service(svc)) = store.lookup(Kind::Service, ns, name) else {
        return None;
    };
    let labels = svc.metadata.labels.as_ref()?;
    let ours = labels.get(GATEWAY_NAME_LABEL).map(String::as_str) == Some(name)
        && labels.get(MANAGED_BY.0).map(String::as_str) == Some(MANAGED_BY.1);
    ours.then_some(svc)
}

/// The cluster IP of the Service weft provisioned for Gateway `ns/name`:
/// where workloads in the cluster reach it.
pub fn cluster_ip(store: &Store, ns: &str, name: &str) -> Option<std::net::IpAddr> {
    let svc = own_service(store, ns, name)?;
    svc.spec.as_ref()?.cluster_ip.as_deref()?.parse().ok()
}

/// The addresses of a provisioned Gateway's Service: its load balancer's
/// ingress, as `status.addresses` shows them. `None` when the Gateway has
/// no provisioned Service.
pub fn service_addresses(store: &Store, ns: &str, name: &str) -> Option<Vec<Value>> {
    let svc = own_service(store, ns, name)?;
    let ingress = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.clone())
        .unwrap_or_default();
    Some(
        ingress
            .iter()
            .filter_map(|i| match (&i.ip, &i.hostname) {
                (Some(ip), _) => Some(json!({"type": "IPAddress", "value": ip})),
                (None, Some(host)) => Some(json!({"type": "Hostname", "value": host})),
                _ => None,
            })
            .collect(),
    )
}
