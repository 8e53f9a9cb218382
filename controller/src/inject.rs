//! Sidecar injection, the pure half: an AdmissionReview of a pod being
//! created, and the review's answer — allowed always, and for a pod of the
//! mesh a JSON patch that adds, before the pod's own init containers:
//!
//! - `weft-init`: `weft sidecar iptables --apply`, the only container with
//!   NET_ADMIN (and NET_RAW), which sends the pod's traffic through its
//!   sidecar and exits;
//! - `weft-proxy`: the sidecar as a native sidecar (an init container with
//!   `restartPolicy: Always`, started before the app and stopped after it),
//!   `weft sidecar run` as uid 1337 with nothing added, its certificate from
//!   the CA for its projected service-account token (audience `weft-ca`).
//!
//! A pod is of the mesh when it or its namespace is labelled
//! `weft.dev/mesh=enabled` (the pod's label wins, so `disabled` opts a pod
//! out) and it is not annotated `weft.dev/inject: "false"`. Pods on the
//! host's network are left alone: capturing their traffic would capture the
//! node's.

use crate::provision::Infra;
use crate::translate::mesh::{MESH_LABEL, OUTBOUND_PORT};
use crate::translate::INBOUND_BASE_PORT;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// `weft.dev/inject: "false"` on a pod keeps it out of the mesh.
pub const INJECT_ANNOTATION: &str = "weft.dev/inject";
/// Set on every pod given a sidecar.
pub const INJECTED_ANNOTATION: &str = "weft.dev/injected";
/// The sidecar container's name; a pod that has it is in the mesh.
pub const PROXY_CONTAINER: &str = "weft-proxy";
pub const INIT_CONTAINER: &str = "weft-init";
/// The uid the sidecar runs as; iptables lets its own traffic pass.
pub const PROXY_UID: i64 = 1337;
/// The sidecar's admin port (`/ready`, `/metrics`) on the pod's address.
pub const SIDECAR_ADMIN_PORT: u16 = 15020;
const TOKEN_DIR: &str = "/var/run/secrets/weft";

/// Answers an AdmissionReview. `namespace_labels` gives a namespace's
/// labels. `Err` when the review cannot be read at all.
pub fn review(
    body: &Value,
    namespace_labels: impl Fn(&str) -> BTreeMap<String, String>,
    template: &Infra,
) -> Result<Value, String> {
    let request = body
        .get("request")
        .ok_or("an AdmissionReview with a request is expected")?;
    let uid = request
        .get("uid")
        .and_then(Value::as_str)
        .ok_or("the request has no uid")?;
    let mut response = json!({"uid": uid, "allowed": true});
    let is_pod_create = request["kind"]["kind"] == "Pod"
        && request["kind"]["group"].as_str().unwrap_or("").is_empty()
        && request["operation"] == "CREATE";
    if is_pod_create {
        let namespace = request["namespace"].as_str().unwrap_or("default");
        let pod = &request["object"];
        if wanted(pod, &namespace_labels(namespace)) {
            let patch = patch(pod, namespace, template);
            let text = serde_json::to_vec(&patch).map_err(|e| e.to_string())?;
            use base64::Engine;
            response["patchType"] = json!("JSONPatch");
            response["patch"] = json!(base64::engine::general_purpose::STANDARD.encode(text));
        }
    }
    Ok(json!({
        "apiVersion": body.get("apiVersion").cloned().unwrap_or(json!("admission.k8s.io/v1")),
        "kind": "AdmissionReview",
        "response": response,
    }))
}

/// Whether `pod` gets a sidecar.
pub fn wanted(pod: &Value, namespace_labels: &BTreeMap<String, String>) -> bool {
    let meta = &pod["metadata"];
    if meta["annotations"][INJECT_ANNOTATION] == "false" || pod["spec"]["hostNetwork"] == true {
        return false;
    }
    let has_proxy = pod["spec"]["initContainers"]
        .as_array()
        .is_some_and(|c| c.iter().any(|c| c["name"] == PROXY_CONTAINER));
    if has_proxy {
        return false;
    }
    match meta["labels"][MESH_LABEL].as_str() {
        Some(v) => v == "enabled",
        None => namespace_labels.get(MESH_LABEL).map(String::as_str) == Some("enabled"),
    }
}

/// The application's ports, in the order the sidecar's inbound listeners
/// take them (as for a Workload: `INBOUND_BASE_PORT + i`).
pub fn app_ports(pod: &Value) -> Vec<(Option<String>, u16)> {
    pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["ports"].as_array().into_iter().flatten())
        .filter(|p| p["protocol"].as_str().unwrap_or("TCP") == "TCP")
        .filter_map(|p| {
            let port = u16::try_from(p["containerPort"].as_i64()?).ok()?;
            Some((p["name"].as_str().map(str::to_string), port))
        })
        .collect()
}

fn env_from(name: &str, path: &str) -> Value {
    json!({"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}})
}

/// `~` and `/` escaped for a JSON Pointer.
fn pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn patch(pod: &Value, namespace: &str, t: &Infra) -> Value {
    let sa = pod["spec"]["serviceAccountName"]
        .as_str()
        .filter(|s| !s.is_empty())
        .unwrap_or("default");
    let identity = format!("spiffe://{}/ns/{namespace}/sa/{sa}", t.trust_domain);
    let mut iptables = vec![
        json!("sidecar"),
        json!("iptables"),
        json!("--apply"),
        json!("--outbound"),
        json!(format!("$(POD_IP):{OUTBOUND_PORT}")),
        json!("--proxy-uid"),
        json!(PROXY_UID.to_string()),
    ];
    for (i, (_, port)) in app_ports(pod).iter().enumerate() {
        iptables.push(json!("--inbound"));
        iptables.push(json!(format!(
            "{port}=$(POD_IP):{}",
            INBOUND_BASE_PORT as usize + i
        )));
    }
    let locked = json!({"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true});
    let mut init_security = locked.clone();
    init_security["runAsUser"] = json!(0);
    init_security["runAsNonRoot"] = json!(false);
    init_security["capabilities"] = json!({"drop": ["ALL"], "add": ["NET_ADMIN", "NET_RAW"]});
    let init = json!({
        "name": INIT_CONTAINER, "image": t.image, "args": iptables,
        "env": [env_from("POD_IP", "status.podIP")],
        "securityContext": init_security,
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
    });
    let mut proxy_security = locked;
    proxy_security["runAsUser"] = json!(PROXY_UID);
    proxy_security["runAsGroup"] = json!(PROXY_UID);
    proxy_security["runAsNonRoot"] = json!(true);
    proxy_security["capabilities"] = json!({"drop": ["ALL"]});
    let proxy = json!({
        "name": PROXY_CONTAINER, "image": t.image, "restartPolicy": "Always",
        "args": ["sidecar", "run", "--controller", t.controller, "--ca", t.ca,
            "--workload", "$(POD_NAMESPACE)/$(POD_NAME)", "--identity", identity,
            "--token-file", format!("{TOKEN_DIR}/token"),
            "--admin", format!("$(POD_IP):{SIDECAR_ADMIN_PORT}")],
        "env": [
            env_from("POD_NAME", "metadata.name"),
            env_from("POD_NAMESPACE", "metadata.namespace"),
            env_from("POD_IP", "status.podIP"),
            // The roots the control plane is checked with (public).
            {"name": "WEFT_TRUST_BUNDLE", "value": t.roots},
            {"name": "MIMALLOC_ARENA_EAGER_COMMIT", "value": "0"},
        ],
        "securityContext": proxy_security,
        "startupProbe": {"httpGet": {"path": "/ready", "port": SIDECAR_ADMIN_PORT},
            "periodSeconds": 1, "failureThreshold": 120},
        "volumeMounts": [{"name": "weft-token", "mountPath": TOKEN_DIR, "readOnly": true}],
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
    });
    let volume = json!({"name": "weft-token", "projected": {"sources": [{"serviceAccountToken": {
        "audience": crate::tokenreview::AUDIENCE, "expirationSeconds": 3600, "path": "token"}}]}});
    let mut ops = Vec::new();
    if pod["spec"]["initContainers"].is_array() {
        ops.push(json!({"op": "add", "path": "/spec/initContainers/0", "value": proxy}));
        ops.push(json!({"op": "add", "path": "/spec/initContainers/0", "value": init}));
    } else {
        ops.push(json!({"op": "add", "path": "/spec/initContainers", "value": [init, proxy]}));
    }
    if pod["spec"]["volumes"].is_array() {
        ops.push(json!({"op": "add", "path": "/spec/volumes/-", "value": volume}));
    } else {
        ops.push(json!({"op": "add", "path": "/spec/volumes", "value": [volume]}));
    }
    if !pod["metadata"]["annotations"].is_object() {
        ops.push(json!({"op": "add", "path": "/metadata/annotations", "value": {}}));
    }
    ops.push(json!({"op": "add",
        "path": format!("/metadata/annotations/{}", pointer(INJECTED_ANNOTATION)), "value": "true"}));
    Value::Array(ops)
}
