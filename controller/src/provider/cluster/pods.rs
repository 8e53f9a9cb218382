//! Pods as the mesh sees them: each pod given a sidecar (it has weft's
//! proxy container) becomes a `Workload` in the store — its labels and
//! annotations, its service account (its identity), its container ports in
//! the order the injected sidecar listens for them, its pod IP — so that
//! one translation makes sidecar configs and meshed endpoints on Kubernetes
//! as from a folder's Workloads. Pods without a sidecar, or without an IP
//! yet, or being deleted, are not Workloads.

use crate::inject::{app_ports, PROXY_CONTAINER};
use crate::translate::mesh::MESH_LABEL;
use serde_json::{json, Value};

/// The Workload document of `pod`, if it is one of the mesh's.
pub fn workload(pod: &Value) -> Option<Value> {
    let spec = &pod["spec"];
    let injected = spec["initContainers"]
        .as_array()?
        .iter()
        .any(|c| c["name"] == PROXY_CONTAINER);
    let ip = pod["status"]["podIP"]
        .as_str()
        .filter(|ip| !ip.is_empty())?;
    let meta = &pod["metadata"];
    if !injected || !meta["deletionTimestamp"].is_null() {
        return None;
    }
    if matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    ) {
        return None;
    }
    let mut labels = meta["labels"].as_object().cloned().unwrap_or_default();
    // It has a sidecar whatever its namespace says now.
    labels.insert(MESH_LABEL.into(), json!("enabled"));
    let ports: Vec<Value> = app_ports(pod)
        .into_iter()
        .map(|(name, port)| json!({"name": name, "containerPort": port}))
        .collect();
    Some(json!({
        "apiVersion": "weft.dev/v1alpha1",
        "kind": "Workload",
        "metadata": {
            "name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
            "creationTimestamp": meta["creationTimestamp"],
            "resourceVersion": meta["resourceVersion"],
            "labels": labels, "annotations": meta["annotations"],
        },
        "spec": {
            "serviceAccountName": spec["serviceAccountName"].as_str().unwrap_or("default"),
            "ports": ports,
            "address": ip,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(init: Value, ip: Value) -> Value {
        json!({"metadata": {"name": "cart-1", "namespace": "shop", "uid": "u", "labels": {"app": "cart"}},
            "spec": {"serviceAccountName": "cart", "initContainers": init,
                "containers": [{"name": "app", "ports": [{"name": "http", "containerPort": 8080},
                    {"containerPort": 53, "protocol": "UDP"}]}]},
            "status": {"podIP": ip, "phase": "Running"}})
    }

    #[test]
    fn injected_pods_with_an_address_are_workloads() {
        let proxy = json!([{"name": PROXY_CONTAINER}]);
        let w = workload(&pod(proxy.clone(), json!("10.1.2.3"))).unwrap();
        assert_eq!(w["spec"]["address"], "10.1.2.3");
        assert_eq!(w["spec"]["serviceAccountName"], "cart");
        assert_eq!(
            w["spec"]["ports"],
            json!([{"name": "http", "containerPort": 8080}])
        );
        assert_eq!(w["metadata"]["labels"]["app"], "cart");
        assert_eq!(w["metadata"]["labels"][MESH_LABEL], "enabled");
        assert!(workload(&pod(proxy, Value::Null)).is_none());
        assert!(workload(&pod(json!([{"name": "other"}]), json!("10.1.2.3"))).is_none());
        assert!(workload(&pod(Value::Null, json!("10.1.2.3"))).is_none());
    }
}
