//! AuthorizationPolicy in the mesh, enforced by the destination's sidecar
//! on the caller's verified identity: the caller it allows gets through, a
//! caller it does not gets 403 over HTTP and a closed connection over TCP
//! (a Gateway's TCPRoute to the meshed Service), and an edit takes effect
//! live without failing one allowed request. A namespace defaulting to
//! `deny` refuses every caller no policy allows.

mod support;
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NS: &str = "shop";

fn workload(name: &str, ip: &str, call: Option<&str>) -> String {
    let url = call.map(|c| format!("http://{c}"));
    meshed_echo(NS, name, ip, url.as_deref().as_slice())
}

fn mesh() -> String {
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: {NS}, labels: {{weft.dev/mesh: enabled}}}}
{}{}{}---
{}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: intruder, namespace: {NS}}}
spec:
  parentRefs: [{{name: edge}}]
  hostnames: [intruder.test]
  rules: [{{backendRefs: [{{name: intruder, port: 9080}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {{name: reviews-tcp, namespace: {NS}}}
spec:
  parentRefs: [{{name: edge, sectionName: tcp}}]
  rules: [{{backendRefs: [{{name: reviews, port: 9080}}]}}]
"#,
        workload("productpage", "127.0.92.2", Some("reviews:9080/reviews/1")),
        workload("reviews", "127.0.92.3", None),
        workload("intruder", "127.0.92.4", Some("reviews:9080/reviews/1")),
        edge(NS, "productpage").replace(
            "listeners: [{name: http, port: 8080, protocol: HTTP}]",
            "listeners: [{name: http, port: 8080, protocol: HTTP}, {name: tcp, port: 8090, protocol: TCP}]",
        ),
    )
}

/// Only productpage may GET /reviews/*; with `edge`, the edge Gateway's
/// identity may connect too (a rule of sources only: one about paths or
/// methods cannot allow a TCP connection).
fn policy(edge: bool) -> String {
    let edge = if edge {
        format!("\n  - sources: [{{type: ServiceAccount, serviceAccount: {{namespace: {NS}, name: edge}}}}]")
    } else {
        String::new()
    };
    format!(
        r#"apiVersion: weft.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {{name: reviews-readers, namespace: {NS}}}
spec:
  targetRefs: [{{group: "", kind: Service, name: reviews}}]
  action: Allow
  rules:
  - sources:
    - {{type: ServiceAccount, serviceAccount: {{name: productpage}}}}
    paths: ["/reviews/*"]
    methods: [GET]{edge}
"#
    )
}

/// What the reviews app answers a raw HTTP request sent through the
/// Gateway's TCP listener; empty when the connection is refused.
async fn over_tcp(ip: &str) -> String {
    let Ok(mut s) = tokio::net::TcpStream::connect((ip, 8090)).await else {
        return String::new();
    };
    let get = "GET /reviews/tcp HTTP/1.1\r\nHost: reviews\r\nConnection: close\r\n\r\n";
    if s.write_all(get.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_allowed_callers_reach_a_service() {
    let ip = "127.0.92.1";
    let weft = Weft::up(
        ip,
        &[("mesh.yaml", &mesh()), ("policy.yaml", &policy(false))],
    );
    let c = client(&[]);
    let url = format!("http://{ip}:8080/");
    wait_for_call(&c, &url, "shop.test").await;
    let page = |host: &'static str| {
        let (c, url) = (c.clone(), url.clone());
        async move { get(&c, &url, host).await.1["calls"][0]["status"].clone() }
    };
    assert_eq!(page("shop.test").await, 200);
    // The intruder's page answers once its workload is up; its call is
    // refused by reviews' sidecar.
    eventually(
        Duration::from_secs(30),
        "intruder's call is refused",
        || async { page("intruder.test").await == 403 },
    )
    .await;

    // The edge Gateway's own identity is not allowed either: over TCP its
    // connection is closed before a byte reaches reviews.
    assert_eq!(over_tcp(ip).await, "");
    let metrics = text_of("http://127.0.92.3:15020/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("weft_policy_requests_total{")
                && l.contains(r#"decision="deny""#)
                && l.contains(r#"reporter="destination""#)),
        "{metrics}"
    );

    // Allowing the Gateway, live: productpage's calls never fail meanwhile.
    let load = Load::start(&c, &url, "shop.test", 2, |status, body| {
        status == 200 && body["calls"][0]["status"] == 200
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    weft.write("policy.yaml", &policy(true));
    eventually(
        Duration::from_secs(20),
        "the Gateway reaches reviews over TCP",
        || async { over_tcp(ip).await.starts_with("HTTP/1.1 200") },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (ok, failed) = load.stop().await;
    assert!(ok > 0);
    assert_eq!(failed, 0, "allowed calls failed while the policy changed");
    assert_eq!(page("intruder.test").await, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_that_denies_by_default() {
    let ip = "127.0.92.11";
    let files = format!(
        r#"apiVersion: v1
kind: Namespace
metadata:
  name: {NS}
  labels: {{weft.dev/mesh: enabled}}
  annotations: {{weft.dev/default-inbound: deny}}
{}{}{}"#,
        workload("productpage", "127.0.92.12", Some("reviews:9080/reviews/1")),
        workload("reviews", "127.0.92.13", None),
        workload("ratings", "127.0.92.14", None),
    );
    let edge = edge(NS, "productpage");
    // productpage may be called (by the edge) and may call reviews;
    // nothing allows calls to ratings.
    let allow = |svc: &str, sa: &str| {
        format!(
            r#"---
apiVersion: weft.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {{name: {svc}-open, namespace: {NS}}}
spec:
  targetRefs: [{{group: "", kind: Service, name: {svc}}}]
  action: Allow
  rules: [{{sources: [{{type: ServiceAccount, serviceAccount: {{name: {sa}}}}}]}}]
"#
        )
    };
    let policies = format!(
        "{}{}",
        allow("productpage", "edge"),
        allow("reviews", "productpage")
    );
    let weft = Weft::up(
        ip,
        &[
            ("mesh.yaml", &files),
            ("edge.yaml", &edge),
            ("policies.yaml", &policies),
        ],
    );
    let c = client(&[]);
    let url = format!("http://{ip}:8080/");
    wait_for_call(&c, &url, "shop.test").await;
    // Swap productpage's callee for ratings: denied by the namespace.
    let files = files.replace("reviews:9080/reviews/1", "ratings:9080/ratings/1");
    weft.write("mesh.yaml", &files);
    eventually(
        Duration::from_secs(30),
        "ratings refuses productpage",
        || async { get(&c, &url, "shop.test").await.1["calls"][0]["status"] == 403 },
    )
    .await;
}
