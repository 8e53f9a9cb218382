//! Clusters linked into a cluster set, each a `weft up` of its own with a
//! CA under one shared root (each its own intermediate), peering over
//! mutual TLS: a caller in east reaches `reviews.shop.svc.clusterset.local`,
//! its own cluster's endpoints first and west's when none of its own is
//! usable, with its identity checked end to end by west's sidecar; a peer
//! that is lost keeps its imports for the grace period; a link with a
//! foreign root never connects.

mod support;
use std::time::Duration;
use support::pki::{cacerts, intermediate};
use support::*;

/// A meshed namespace `shop` with a Service `reviews` (exported) whose
/// Workload `reviews-<cluster>` is on `ip`, and what else `extra` holds.
fn shop(cluster: &str, ip: &str, extra: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: shop, labels: {{weft.dev/mesh: enabled}}}}
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {{name: reviews-{cluster}, namespace: shop, labels: {{app: reviews}}}}
spec:
  serviceAccountName: reviews
  address: {ip}
  command: [weft, echo, --listen, "{ip}:9080"]
  ports: [{{name: http, containerPort: 9080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: reviews, namespace: shop}}
spec: {{selector: {{app: reviews}}, ports: [{{name: http, port: 9080, targetPort: http}}]}}
---
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceExport
metadata: {{name: reviews, namespace: shop}}
---
apiVersion: weft.dev/v1alpha1
kind: BackendTrafficPolicy
metadata: {{name: reviews, namespace: shop}}
spec:
  targetRefs: [{{group: "", kind: Service, name: reviews}}]
  healthCheck:
    passive: {{consecutiveGatewayErrors: 1, baseEjectionTime: 2s, maxEjectionPercent: 100}}
{extra}"#
    )
}

/// A Workload `name` in shop on `ip` calling `url` for every request.
fn caller(name: &str, ip: &str, url: &str) -> String {
    format!(
        r#"---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {{name: {name}, namespace: shop, labels: {{app: {name}}}}}
spec:
  serviceAccountName: {name}
  address: {ip}
  command: [weft, echo, --listen, "{ip}:9080", --call, "{url}"]
  ports: [{{name: http, containerPort: 9080}}]
"#
    )
}

/// A ClusterLink to `cluster` on `network`, its controller at `peering`.
fn link(cluster: &str, network: &str, peering: &str, grace: &str) -> String {
    format!(
        r#"---
apiVersion: weft.dev/v1alpha1
kind: ClusterLink
metadata: {{name: {cluster}, namespace: weft-system}}
spec: {{cluster: {cluster}, network: {network}, peering: "{peering}", importGracePeriod: {grace}}}
"#
    )
}

/// Calls `url` (a caller's own port) `n` times: (page status, call status,
/// the pod that answered the call, its XFCC).
async fn calls(c: &reqwest::Client, url: &str, n: usize) -> Vec<(u16, u64, String, String)> {
    let mut out = Vec::new();
    for _ in 0..n {
        let (status, body) = get(c, url, "productpage").await;
        let call = &body["calls"][0];
        let text = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
        out.push((
            status,
            call["status"].as_u64().unwrap_or(0),
            text(&call["body"]["pod"]),
            text(&call["body"]["headers"]["X-Forwarded-Client-Cert"][0]),
        ));
    }
    out
}

fn condition(item: &serde_json::Value, type_: &str) -> String {
    item["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == type_))
        .map(|c| format!("{}/{}", c["status"].as_str().unwrap_or(""), c["reason"].as_str().unwrap_or("")))
        .unwrap_or_default()
}

/// Same network: east's productpage calls reviews by its clusterset name;
/// east's own endpoint takes every call; SIGKILLed, west's takes them
/// with no failed call, and west's sidecar sees productpage's identity;
/// restarted, east's takes them again. ServiceImport and link status show
/// in `/status`.
#[tokio::test]
async fn same_network_peers_go_pod_to_pod_local_first_and_fail_over() {
    let root = pki::ca();
    let url = "http://reviews.shop.svc.clusterset.local:9080/";
    let east_files = format!(
        "{}\n---\n{}{}{}",
        cacerts(&root, &intermediate(&root, "east")),
        shop("east", "127.0.140.11", ""),
        caller("productpage", "127.0.140.10", url),
        link("west", "net1", "127.0.141.1:15012", "5m"),
    );
    let west_files = format!(
        "{}\n---\n{}{}",
        cacerts(&root, &intermediate(&root, "west")),
        shop("west", "127.0.141.11", ""),
        link("east", "net1", "127.0.140.1:15012", "5m"),
    );
    let args = |cluster: &'static str, peering: &'static str| {
        ["--cluster", cluster, "--network", "net1", "--peering", peering]
    };
    let east = Weft::up_with(
        "127.0.140.1",
        &[("all.yaml", &east_files)],
        &args("east", "127.0.140.1:15012"),
    );
    let _west = Weft::up_with(
        "127.0.141.1",
        &[("all.yaml", &west_files)],
        &args("west", "127.0.141.1:15012"),
    );
    let c = client(&[]);
    let page = "http://127.0.140.10:9080/";
    eventually(Duration::from_secs(30), "the link connects", || async {
        condition(&east.item("ClusterLink", "west").await, "Connected") == "True/Connected"
    })
    .await;
    let import = east.item("ServiceImport", "reviews").await;
    assert_eq!(
        import["status"]["clusters"],
        serde_json::json!([{"cluster": "east"}, {"cluster": "west"}]),
        "{import}"
    );
    eventually(Duration::from_secs(30), "productpage calls reviews", || async {
        calls(&c, page, 1).await[0].1 == 200
    })
    .await;
    for (status, call, pod, _) in calls(&c, page, 20).await {
        assert_eq!((status, call, pod.as_str()), (200, 200, "reviews-east"));
    }
    // Continuous calls while east's one endpoint is SIGKILLed: none fails,
    // and west's takes over.
    let load = {
        let c = c.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let start = std::time::Instant::now();
            while start.elapsed() < Duration::from_secs(3) {
                seen.extend(calls(&c, page, 1).await);
            }
            seen
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = pid_of("127.0.140.11:9080").expect("east's reviews runs");
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let seen = load.await.unwrap();
    assert!(seen.len() > 20, "{}", seen.len());
    for (status, call, _, _) in &seen {
        assert_eq!((*status, *call), (200, 200), "{seen:?}");
    }
    let west: Vec<_> = seen.iter().filter(|s| s.2 == "reviews-west").collect();
    assert!(!west.is_empty(), "{seen:?}");
    // West's sidecar verified productpage's own certificate (issued under
    // east's intermediate) and told its app who called.
    assert!(
        west[0].3.contains("URI=spiffe://cluster.local/ns/shop/sa/productpage"),
        "{:?}",
        west[0]
    );
    // East's reviews is restarted by weft up; once its ejection ends,
    // calls go home.
    eventually(Duration::from_secs(20), "calls return to east", || async {
        calls(&c, page, 5).await.iter().all(|s| s.2 == "reviews-east")
    })
    .await;
}
