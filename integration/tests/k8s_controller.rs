//! `weft controller` against a Kubernetes API server: the stand-in under
//! `integration/apiserver`, driven by the real kubectl and Helm. The
//! statuses weft writes back match the goldens of the folder provider (one
//! translation, two providers); a watch dropped with 410 Gone recovers; two
//! replicas elect one leader, and the other takes over when it dies; the
//! leader makes weft's GatewayClass; the cluster-set kinds get statuses;
//! and the chart, installed with Helm, runs bookinfo's statuses.

mod support;

use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;
use support::cluster::{holder, route_observed, shop};
use support::eventually;
use support::kube::{ApiServer, Controller};

/// Golden inputs whose objects need nothing a folder has and an API server
/// has not (Workloads, creation times written in the manifest).
const GOLDENS: &[&str] = &[
    "basic",
    "conformance",
    "attachment",
    "listeners",
    "grpc",
    "tls",
    "cors",
    "frontend",
];

fn golden(name: &str, suffix: &str) -> String {
    let path = format!(
        "{}/../controller/testdata/translate/{name}.{suffix}.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(path).unwrap()
}

/// `status` without `lastTransitionTime` and without nulls, to compare.
fn normal(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, v)| *k != "lastTransitionTime" && !v.is_null())
                .map(|(k, v)| (k.clone(), normal(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(normal).collect()),
        v => v.clone(),
    }
}

/// The resource name kubectl knows a kind by.
fn resource(kind: &str) -> String {
    format!("{}s", kind.to_lowercase())
        .replace("policys", "policies")
        .replace("classs", "classes")
}

/// Every namespace the documents of `yaml` are in, and weft's.
fn namespaces(yaml: &str) -> BTreeSet<String> {
    // weft's own, where its Lease and CA are.
    let mut out = BTreeSet::from(["weft-system".to_string()]);
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let Ok(v) = serde_yaml::Value::deserialize(doc) else {
            continue;
        };
        let kind = v["kind"].as_str().unwrap_or("");
        if matches!(kind, "Namespace" | "GatewayClass") {
            continue;
        }
        out.insert(
            v["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_string(),
        );
    }
    out
}

async fn statuses_of(api: &ApiServer, expected: &[Value]) -> Vec<(String, Value, Value)> {
    expected
        .iter()
        .map(|e| {
            let kind = e["kind"].as_str().unwrap();
            let (ns, name) = (
                e["namespace"].as_str().unwrap(),
                e["name"].as_str().unwrap(),
            );
            let got = api
                .get(&resource(kind), ns, name)
                .map(|o| normal(&o["status"]))
                .unwrap_or(Value::Null);
            (format!("{kind} {ns}/{name}"), normal(&e["status"]), got)
        })
        .collect()
}

/// Applies the golden input `name` to a new API server, runs a controller
/// on it, and waits for every status of the golden output to show.
async fn golden_on_a_cluster(name: &str) {
    let Some(api) = ApiServer::start() else {
        return;
    };
    api.install_crds();
    // Every object is created at the same second, as the folder provider
    // creates them: which one is older is then decided as in the golden.
    api.call("POST", "/_standin/clock?freeze=2026-01-01T00:00:00Z")
        .await;
    let input = golden(name, "in");
    let ns: String = namespaces(&input)
        .iter()
        .map(|n| format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {n}}}\n---\n"))
        .collect();
    api.apply(&ns);
    api.apply(&input);
    let out: Value = serde_yaml::from_str(&golden(name, "out")).unwrap();
    let expected = out["statuses"].as_array().unwrap().clone();
    // Gateways the controller provisions show their Services' addresses;
    // the goldens know none.
    let _controller = Controller::start_with(&api, "a", &["--no-provisioning", "--gateway-class="]);
    let mut last = Vec::new();
    let waited = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            last = statuses_of(&api, &expected).await;
            if last.iter().all(|(_, want, got)| want == got) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
    .await;
    if waited.is_err() {
        let wrong: Vec<String> = last
            .iter()
            .filter(|(_, w, g)| w != g)
            .map(|(what, w, g)| format!("{what}\n  want {w}\n  got  {g}"))
            .collect();
        panic!(
            "{name}: {} statuses differ:\n{}",
            wrong.len(),
            wrong.join("\n")
        );
    }
}

#[tokio::test]
async fn statuses_match_the_folder_goldens() {
    for name in GOLDENS {
        golden_on_a_cluster(name).await;
    }
}

#[tokio::test]
async fn a_watch_dropped_with_410_recovers() {
    let Some(api) = ApiServer::start() else {
        return;
    };
    api.install_crds();
    api.apply(&shop("a.example.com"));
    let _controller = Controller::start(&api, "a");
    eventually(Duration::from_secs(20), "the route's status", || async {
        route_observed(&api) == Some(1)
    })
    .await;
    // Everything up to now is compacted away and every watch is cut: a
    // watcher resuming where it was gets 410 Gone and must list again.
    let (_, log) = api.call("GET", "/_standin/requests").await;
    let since = log.as_array().map_or(0, |l| l.len());
    api.call("POST", "/_standin/compact").await;
    api.call("POST", "/_standin/close-watches").await;
    api.apply(&shop("b.example.com"));
    eventually(
        Duration::from_secs(20),
        "the status of the edited route",
        || async { route_observed(&api) == Some(2) },
    )
    .await;
    let (_, log) = api.call("GET", "/_standin/requests").await;
    let relisted = log.as_array().unwrap()[since..].iter().any(|r| {
        let path = r["path"].as_str().unwrap_or("");
        r["method"] == "GET" && path.contains("/httproutes") && !path.contains("watch=")
    });
    assert!(relisted, "the controller listed routes again after the 410");
}

#[tokio::test]
async fn two_replicas_elect_one_leader_and_the_other_takes_over() {
    let Some(api) = ApiServer::start() else {
        return;
    };
    api.install_crds();
    api.apply(&shop("a.example.com"));
    let mut a = Controller::start(&api, "a");
    let mut b = Controller::start(&api, "b");
    eventually(
        Duration::from_secs(20),
        "a leader and the route's status",
        || async { holder(&api).is_some() && route_observed(&api) == Some(1) },
    )
    .await;
    let leader = holder(&api).unwrap();
    let transitions = |api: &ApiServer| {
        api.get("leases", "weft-system", "weft-controller").unwrap()["spec"]["leaseTransitions"]
            .as_i64()
    };
    let first = transitions(&api);
    // Renewed, never handed back and forth, over several lease durations.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(holder(&api).as_deref(), Some(leader.as_str()));
    assert_eq!(transitions(&api), first);
    let (dead, survivor) = if leader == "a" {
        (&mut a, "b")
    } else {
        (&mut b, "a")
    };
    dead.kill();
    eventually(
        Duration::from_secs(15),
        "the other replica leads",
        || async { holder(&api).as_deref() == Some(survivor) },
    )
    .await;
    // And writes statuses.
    api.apply(&shop("b.example.com"));
    eventually(
        Duration::from_secs(15),
        "the new leader writes the status",
        || async { route_observed(&api) == Some(2) },
    )
    .await;
}

/// The multi-cluster kinds through the API server: a ServiceExport of a
/// Service is Valid, one of a missing Service is not; a ClusterLink in
/// weft's namespace is Accepted and (its peer unreachable) Connecting, one
/// elsewhere is NotAllowed; the ServiceImport shows in `/status`.
#[tokio::test]
async fn cluster_set_kinds_get_statuses() {
    let Some(api) = ApiServer::start() else {
        return;
    };
    api.install_crds();
    api.apply(
        r#"apiVersion: v1
kind: Namespace
metadata: {name: weft-system}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: shop}
spec: {ports: [{name: http, port: 9080}]}
---
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceExport
metadata: {name: reviews, namespace: shop}
---
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceExport
metadata: {name: details, namespace: shop}
---
apiVersion: weft.dev/v1alpha1
kind: ClusterLink
metadata: {name: west, namespace: weft-system}
spec: {cluster: west, network: net-west, peering: "127.0.0.1:9", gateways: ["10.0.0.2:15443"]}
---
apiVersion: weft.dev/v1alpha1
kind: ClusterLink
metadata: {name: rogue, namespace: shop}
spec: {cluster: rogue, peering: "127.0.0.1:9"}
"#,
    );
    let controller = Controller::start_with(
        &api,
        "a",
        &["--no-provisioning", "--gateway-class=", "--cluster", "east"],
    );
    let condition = |kind: &str, ns: &str, name: &str, type_: &str| {
        api.get(kind, ns, name)
            .and_then(|o| {
                let c = o["status"]["conditions"]
                    .as_array()?
                    .iter()
                    .find(|c| c["type"] == type_)?
                    .clone();
                Some(format!(
                    "{}/{}",
                    c["status"].as_str()?,
                    c["reason"].as_str()?
                ))
            })
            .unwrap_or_default()
    };
    eventually(Duration::from_secs(30), "every status written", || async {
        condition("serviceexports", "shop", "reviews", "Valid") == "True/Valid"
            && condition("serviceexports", "shop", "details", "Valid") == "False/ServiceNotFound"
            && condition("clusterlinks", "weft-system", "west", "Accepted") == "True/Accepted"
            && condition("clusterlinks", "weft-system", "west", "Connected") == "False/Connecting"
            && condition("clusterlinks", "shop", "rogue", "Accepted") == "False/NotAllowed"
    })
    .await;
    let status: Value = reqwest::get(format!("http://{}/status", controller.admin))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let import = status["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["kind"] == "ServiceImport")
        .cloned()
        .unwrap_or_default();
    assert_eq!(import["metadata"]["name"], "reviews", "{status}");
    assert_eq!(
        import["status"]["clusters"],
        serde_json::json!([{"cluster": "east"}])
    );
}

#[tokio::test]
async fn the_leader_makes_the_gateway_class_when_missing() {
    let Some(api) = ApiServer::start() else {
        return;
    };
    api.install_crds();
    api.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: weft-system}\n");
    let _controller = Controller::start(&api, "a");
    eventually(
        Duration::from_secs(20),
        "the GatewayClass weft, accepted",
        || async {
            let Some(class) = api.get("gatewayclasses", "", "weft") else {
                return false;
            };
            assert_eq!(
                class["spec"]["controllerName"],
                "weft.dev/gateway-controller"
            );
            class["status"]["conditions"][0]["status"] == "True"
        },
    )
    .await;
}

/// The user's story, on the stand-in: `helm install` the chart, run the
/// controller as the chart's Deployment would, label a namespace, `kubectl
/// apply -k examples/bookinfo`, and `kubectl get gateway,httproute -A`
/// shows statuses weft wrote; the Gateway is provisioned, the webhook has
/// its caBundle, and a `helm upgrade` keeps it.
#[tokio::test]
async fn helm_install_then_bookinfo_gets_statuses() {
    let Some(api) = ApiServer::start() else {
        return;
    };
    let chart = format!("{}/../charts/weft", env!("CARGO_MANIFEST_DIR"));
    let install = [
        "install",
        "weft",
        &chart,
        "-n",
        "weft-system",
        "--create-namespace",
        "--set",
        "gatewayAPI.installCRDs=true",
    ];
    api.helm(&install);
    // The controller with the args the chart gives its pods.
    let deployment = api
        .get("deployments", "weft-system", "weft-controller")
        .unwrap();
    let chart_args: Vec<String> = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .skip(1) // `controller`
        .map(|a| a.as_str().unwrap().to_string())
        .filter(|a| {
            !a.starts_with("--lease") && !a.starts_with("--renew") && !a.starts_with("--retry")
        })
        .collect();
    let args: Vec<&str> = chart_args.iter().map(String::as_str).collect();
    let _controller = Controller::start_with(&api, "weft-controller-0", &args);
    let bookinfo = format!("{}/../examples/bookinfo", env!("CARGO_MANIFEST_DIR"));
    api.kubectl(&["apply", "-k", &bookinfo]);
    let accepted = |o: &Value| {
        let conditions = if o["kind"] == "Gateway" {
            o["status"]["conditions"].clone()
        } else {
            o["status"]["parents"][0]["conditions"].clone()
        };
        conditions.as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Accepted" && c["status"] == "True")
                && cs.iter().all(|c| c["status"] == "True")
        })
    };
    eventually(
        Duration::from_secs(30),
        "statuses on every gateway and route",
        || async {
            let out = api.kubectl(&["get", "gateway,httproute", "-A", "-o", "json"]);
            let list: Value = serde_json::from_str(&out).unwrap();
            let items = list["items"].as_array().unwrap();
            items.len() == 3 && items.iter().all(accepted)
        },
    )
    .await;
    assert!(api.get("deployments", "bookinfo", "bookinfo").is_some());
    let injector = "weft-sidecar-injector-weft-system";
    let bundle = |api: &ApiServer| {
        let config = api
            .get("mutatingwebhookconfigurations", "", injector)
            .unwrap();
        config["webhooks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| {
                w["clientConfig"]["caBundle"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
            .collect::<Vec<_>>()
    };
    eventually(
        Duration::from_secs(20),
        "the webhooks' caBundle",
        || async { bundle(&api).iter().all(|b| !b.is_empty()) },
    )
    .await;
    let before = bundle(&api);
    let upgrade = [
        "upgrade",
        "weft",
        &chart,
        "-n",
        "weft-system",
        "--set",
        "gatewayAPI.installCRDs=true",
    ];
    api.helm(&upgrade);
    assert_eq!(bundle(&api), before, "helm upgrade dropped the caBundle");
}
