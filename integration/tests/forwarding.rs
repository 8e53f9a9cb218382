//! What proxies send on: a gateway names the client in `x-forwarded-for`
//! and `x-forwarded-proto`, every request carries an `x-request-id` kept
//! across the mesh, forged identity headers never pass, mirrors get the
//! body (not past the limit, which is counted) through the same upstream
//! machinery as the real request (mutual TLS to a meshed mirror), and
//! `timeouts.request` cuts a backend that trickles its answer.

mod support;
use std::time::{Duration, Instant};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const IP: &str = "127.0.80.1";

const ROUTES: &str = r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: fwd}
spec:
  parentRefs: [{name: gw}]
  hostnames: [fwd.example.com]
  rules:
  - matches: [{path: {value: /mirror}}]
    filters:
    - type: RequestMirror
      requestMirror: {backendRef: {name: rec, port: 80}}
    backendRefs: [{name: v1, port: 80}]
  - matches: [{path: {value: /trickle}}]
    timeouts: {request: 500ms}
    backendRefs: [{name: rec, port: 80}]
  - backendRefs: [{name: v1, port: 80}]
"#;

/// Sends `request` from the source address `from` and returns the answer.
async fn raw_from(from: &str, request: &str) -> String {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let mut s = socket
        .connect(format!("{IP}:8080").parse().unwrap())
        .await
        .unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).to_string()
}

fn json_of(answer: &str) -> serde_json::Value {
    let (start, end) = (answer.find('{').unwrap(), answer.rfind('}').unwrap());
    serde_json::from_str(&answer[start..=end]).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_gateways_send_on() {
    let (port, seen) = support::backends::recorder(IP).await;
    let files = format!("{}---\n{}", base(IP), slice_service("rec", IP, port, None));
    let weft = Weft::up(IP, &[("base.yaml", &files), ("routes.yaml", ROUTES)]);
    let c = client(&[]);
    eventually(Duration::from_secs(20), "the route serves", || async {
        get(&c, &format!("http://{IP}:8080/"), "fwd.example.com")
            .await
            .0
            == 200
    })
    .await;

    // The client is named; what it claimed is kept before it, not trusted.
    let answer = raw_from(
        "127.0.80.9",
        "GET /x HTTP/1.1\r\nHost: fwd.example.com\r\nX-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Client-Cert: URI=spiffe://forged/ns/a/sa/b\r\nX-Weft-Service: forged\r\nConnection: close\r\n\r\n",
    )
    .await;
    let headers = &json_of(&answer)["headers"];
    assert_eq!(
        headers["X-Forwarded-For"],
        serde_json::json!(["203.0.113.9, 127.0.80.9"]),
        "{headers}"
    );
    assert_eq!(headers["X-Forwarded-Proto"], serde_json::json!(["http"]));
    assert!(
        headers.get("X-Forwarded-Client-Cert").is_none(),
        "{headers}"
    );
    assert!(headers.get("X-Weft-Service").is_none(), "{headers}");
    let id = headers["X-Request-Id"][0].as_str().unwrap();
    assert_eq!((id.len(), &id[14..15]), (36, "4"), "a new UUID: {id}");
    let answer = raw_from(
        "127.0.80.9",
        "GET /x HTTP/1.1\r\nHost: fwd.example.com\r\nX-Request-Id: trace-me-7\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(
        json_of(&answer)["headers"]["X-Request-Id"],
        serde_json::json!(["trace-me-7"])
    );

    // A mirror gets the body, and no identity header the client sent.
    let body = "hello mirror";
    let answer = raw_from(
        "127.0.80.9",
        &format!("POST /mirror HTTP/1.1\r\nHost: fwd.example.com\r\nX-Forwarded-Client-Cert: URI=spiffe://forged/ns/a/sa/b\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    eventually(
        Duration::from_secs(5),
        "the mirror gets the body",
        || async {
            seen.lock()
                .unwrap()
                .iter()
                .any(|r| r.starts_with("POST /mirror"))
        },
    )
    .await;
    let copy = seen
        .lock()
        .unwrap()
        .iter()
        .find(|r| r.starts_with("POST /mirror"))
        .cloned()
        .unwrap();
    assert!(copy.ends_with("\r\n\r\nhello mirror"), "{copy}");
    let lower = copy.to_ascii_lowercase();
    assert!(!lower.contains("forged"), "{copy}");
    assert!(lower.contains("x-forwarded-for: 127.0.80.9"), "{copy}");

    // A body over the limit (64 KiB) is not mirrored, and that is counted.
    let big = "x".repeat(100 * 1024);
    let answer = raw_from(
        "127.0.80.9",
        &format!("POST /mirror/big HTTP/1.1\r\nHost: fwd.example.com\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{big}", big.len()),
    )
    .await;
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "the request itself is served"
    );
    let admin = weft.gateway_admins[0].clone();
    eventually(
        Duration::from_secs(5),
        "the skipped mirror is counted",
        || async {
            let text = reqwest::get(format!("{admin}/metrics"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            text.lines().any(|l| {
                l.starts_with("weft_mirror_requests_total{")
                    && l.contains("result=\"body_too_large\"")
                    && l.ends_with(" 1")
            })
        },
    )
    .await;
    assert!(
        !seen
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.starts_with("POST /mirror/big")),
        "the big body reached the mirror"
    );

    // A backend that trickles its answer is cut at the deadline.
    let started = Instant::now();
    let status = get(&c, &format!("http://{IP}:8080/trickle"), "fwd.example.com")
        .await
        .0;
    let took = started.elapsed();
    assert_eq!(status, 504, "after {took:?}");
    assert!(took < Duration::from_secs(3), "cut after {took:?}");
    drop(weft);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_cross_the_mesh_and_mirrors_use_mutual_tls() {
    let ip = "127.0.81.1";
    let mesh = calling_pair(
        "fw",
        ("front", "127.0.81.2"),
        ("back", "127.0.81.3"),
        "/work",
    );
    // The edge mirrors every request to `back`, a meshed Service.
    let edge = edge("fw", "front").replace(
        "  rules: [{backendRefs: [{name: front, port: 9080}]}]",
        "  rules:\n  - backendRefs: [{name: front, port: 9080}]\n    filters:\n    - type: RequestMirror\n      requestMirror: {backendRef: {name: back, port: 9080}}",
    );
    assert!(edge.contains("RequestMirror"));
    let weft = Weft::up(ip, &[("mesh.yaml", &mesh), ("edge.yaml", &edge)]);
    let c = client(&[]);
    let url = format!("http://{ip}:8080/page");
    wait_for_call(&c, &url, "any").await;
    let resp = c
        .get(&url)
        .header("host", "any")
        .header("x-request-id", "mesh-id-1")
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        body["headers"]["X-Request-Id"],
        serde_json::json!(["mesh-id-1"]),
        "the sidecar keeps the gateway's id: {body}"
    );
    // The mirror reached back's sidecar over mutual TLS as the gateway.
    let metrics = text_of("http://127.0.81.3:15020/metrics").await;
    let mirrored = metrics.lines().any(|l| {
        l.starts_with("istio_requests_total{")
            && l.contains("reporter=\"destination\"")
            && l.contains("source_principal=\"spiffe://cluster.local/ns/fw/sa/edge\"")
            && l.contains("connection_security_policy=\"mutual_tls\"")
    });
    assert!(mirrored, "{metrics}");
    drop(weft);
}
