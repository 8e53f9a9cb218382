//! What a folder of Kubernetes manifests would do on a cluster, worked out
//! without one (`weft analyze`): the pods its workload controllers would
//! make — given a sidecar or not, and why; their identities and inbound
//! ports — read as Workloads (as the Kubernetes provider reads pods) so the
//! one translation runs as on a cluster; and the objects each Gateway would
//! be given. Pod addresses are the cluster's to assign: the Workloads here
//! get addresses of the documentation range 192.0.2.0/24.

use crate::inject;
use crate::provider::cluster::pods;
use crate::translate::INBOUND_BASE_PORT;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// One would-be pod.
#[derive(Clone, Debug)]
pub struct PodPreview {
    /// What makes it: "Deployment bookinfo/productpage".
    pub from: String,
    /// The report line of `weft analyze`.
    pub report: Value,
    /// Its Workload, when it would have a sidecar.
    pub workload: Option<Value>,
}

/// The pod template of a workload controller (or a bare Pod) and its name.
fn template(doc: &Value) -> Option<(&Value, &Value)> {
    let kind = doc["kind"].as_str()?;
    let group = doc["apiVersion"]
        .as_str()?
        .rsplit_once('/')
        .map_or("", |(g, _)| g);
    let t = match (group, kind) {
        ("apps", "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet") => {
            &doc["spec"]["template"]
        }
        ("batch", "Job") => &doc["spec"]["template"],
        ("batch", "CronJob") => &doc["spec"]["jobTemplate"]["spec"]["template"],
        ("", "Pod") => doc,
        _ => return None,
    };
    t.is_object().then_some((t, &doc["metadata"]))
}

/// The pods `docs` would make, in order.
pub fn pods(
    docs: &[Value],
    namespace_labels: impl Fn(&str) -> BTreeMap<String, String>,
    trust_domain: &str,
) -> Vec<PodPreview> {
    let mut out = Vec::new();
    for doc in docs {
        let Some((template, owner)) = template(doc) else {
            continue;
        };
        let namespace = owner["namespace"].as_str().unwrap_or("default");
        let name = owner["name"].as_str().unwrap_or("");
        let from = format!("{} {namespace}/{name}", doc["kind"].as_str().unwrap_or(""));
        let mut pod = json!({
            "metadata": {"name": name, "namespace": namespace,
                "labels": template["metadata"]["labels"], "annotations": template["metadata"]["annotations"]},
            "spec": template["spec"],
        });
        let labels = namespace_labels(namespace);
        if !inject::wanted(&pod, &labels) {
            let why = if pod["spec"]["hostNetwork"] == true {
                "it uses the host's network".to_string()
            } else if pod["metadata"]["annotations"][inject::INJECT_ANNOTATION] == "false" {
                format!("it is annotated {}: \"false\"", inject::INJECT_ANNOTATION)
            } else {
                format!("neither it nor namespace {namespace} is labelled weft.dev/mesh=enabled")
            };
            out.push(PodPreview {
                report: json!({"from": from, "sidecar": false, "why": why}),
                from,
                workload: None,
            });
            continue;
        }
        let sa = pod["spec"]["serviceAccountName"]
            .as_str()
            .unwrap_or("default")
            .to_string();
        let inbound: Vec<String> = inject::app_ports(&pod)
            .iter()
            .enumerate()
            .map(|(i, (_, port))| format!("{port} -> {}", INBOUND_BASE_PORT as usize + i))
            .collect();
        // As injected and scheduled.
        let address = Ipv4Addr::new(192, 0, 2, (out.len() % 254 + 1) as u8);
        let mut inits = pod["spec"]["initContainers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        inits.insert(0, json!({"name": inject::PROXY_CONTAINER}));
        pod["spec"]["initContainers"] = json!(inits);
        pod["status"] = json!({"podIP": address.to_string(), "phase": "Running"});
        out.push(PodPreview {
            report: json!({"from": from, "sidecar": true,
                "identity": format!("spiffe://{trust_domain}/ns/{namespace}/sa/{sa}"),
                "inbound": inbound}),
            from,
            workload: pods::workload(&pod),
        });
    }
    out
}
