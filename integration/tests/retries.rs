//! Retries on real processes: an HTTPRoute `retry` on codes hides a backend
//! that always fails, where the same route without it does not; in the
//! mesh, one of three endpoints SIGKILLed under load costs no client a
//! failed call (the calling sidecar retries elsewhere).

mod support;
use std::time::Duration;
use support::*;

fn workload(name: &str, ns: &str, app: &str, ip: &str, args: &str) -> String {
    format!(
        "---\napiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata: {{name: {name}, namespace: {ns}, labels: {{app: {app}}}}}\nspec:\n  serviceAccountName: {app}\n  address: {ip}\n  command: [weft, echo, --listen, \"{ip}:9080\"{args}]\n  ports: [{{name: http, containerPort: 9080}}]\n"
    )
}

fn service(name: &str, ns: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {{selector: {{app: {name}}}, ports: [{{name: http, port: 9080, targetPort: http}}]}}\n"
    )
}

/// Conformance: HTTPRouteRetry
#[tokio::test]
async fn route_retry_on_codes_hides_a_failing_endpoint() {
    let ip = "127.0.45.1";
    let mut manifests = base(ip);
    manifests += &workload(
        "flaky-1",
        "default",
        "flaky",
        "127.0.45.11",
        ", --status, \"500\"",
    );
    manifests += &workload("flaky-2", "default", "flaky", "127.0.45.12", "");
    manifests += &workload("flaky-3", "default", "flaky", "127.0.45.13", "");
    manifests += &service("flaky", "default");
    let routes = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: with-retry}
spec:
  parentRefs: [{name: gw}]
  hostnames: [retry.example.com]
  rules:
  - backendRefs: [{name: flaky, port: 9080}]
    retry: {attempts: 2, backoff: 10ms, codes: [500]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: without-retry}
spec:
  parentRefs: [{name: gw}]
  hostnames: [plain.example.com]
  rules:
  - backendRefs: [{name: flaky, port: 9080}]
"#;
    let weft = Weft::up(ip, &[("base.yaml", &manifests), ("routes.yaml", routes)]);
    let c = client(&[]);
    let url = format!("http://{ip}:8080/");
    eventually(Duration::from_secs(20), "all three answer", || async {
        let mut pods = std::collections::BTreeSet::new();
        for _ in 0..9 {
            let (_, body) = get(&c, &url, "plain.example.com").await;
            pods.insert(body["pod"].as_str().unwrap_or("").to_string());
        }
        pods.len() == 3
    })
    .await;

    for _ in 0..60 {
        let (status, body) = get(&c, &url, "retry.example.com").await;
        assert_eq!(status, 200, "retried past flaky-1: {body}");
        assert_ne!(body["pod"], "flaky-1");
    }
    let mut plain_failures = 0;
    for _ in 0..60 {
        if get(&c, &url, "plain.example.com").await.0 == 500 {
            plain_failures += 1;
        }
    }
    assert!(
        plain_failures > 0,
        "without retry, flaky-1's 500s reach the client"
    );
    drop(weft);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_one_of_three_mesh_endpoints_under_load_fails_no_call() {
    let ip = "127.0.46.1";
    let mut manifests = String::from(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: kill, labels: {weft.dev/mesh: enabled}}\n",
    );
    manifests += &workload(
        "client",
        "kill",
        "client",
        "127.0.46.10",
        ", --call, \"http://server:9080/\"",
    );
    for i in 1..=3 {
        manifests += &workload(
            &format!("server-{i}"),
            "kill",
            "server",
            &format!("127.0.46.{}", 10 + i),
            "",
        );
    }
    manifests += &service("client", "kill");
    manifests += &service("server", "kill");
    manifests += "---\n";
    manifests += &edge("kill", "client");
    let weft = Weft::up(ip, &[("mesh.yaml", &manifests)]);
    let c = client(&[]);
    let url = format!("http://{ip}:8080/");
    fn served(status: u16, body: &serde_json::Value) -> bool {
        status == 200 && body["calls"][0]["status"] == 200
    }
    eventually(
        Duration::from_secs(30),
        "all three servers answer",
        || async {
            let mut pods = std::collections::BTreeSet::new();
            for _ in 0..12 {
                let (status, body) = get(&c, &url, "kill").await;
                if served(status, &body) {
                    pods.insert(body["calls"][0]["body"]["pod"].to_string());
                }
            }
            pods.len() == 3
        },
    )
    .await;

    let load = Load::start(&c, &url, "kill", 4, served);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = pid_of("127.0.46.12:9080").expect("server-2 runs");
    // SAFETY: kill(2) on a process this test's weft started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (ok, failed) = load.stop().await;
    assert!(
        std::fs::metadata(format!("/proc/{pid}")).is_err(),
        "the killed process is gone (and was reaped) while the load ran"
    );
    assert!(ok > 50, "only {ok} pages");
    assert_eq!(failed, 0, "{failed} of {} pages failed", ok + failed);
    drop(weft);
}

/// A backend that counts the tries of each path and resets the connection
/// (or, for `/slow500`, answers 500 after 100 ms) until a path has failed
/// as often as its `fail` query says.
async fn counting_backend(
    ip: &str,
) -> (
    u16,
    std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, u32>>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind(format!("{ip}:0"))
        .await
        .unwrap();
    let port = l.local_addr().unwrap().port();
    let tries = std::sync::Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::new()));
    let counted = tries.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let counted = counted.clone();
            tokio::spawn(async move {
                loop {
                    let mut buf = vec![0u8; 4096];
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    let line = String::from_utf8_lossy(&buf[..n])
                        .lines()
                        .next()
                        .unwrap_or("")
                        .to_string();
                    let target = line.split(' ').nth(1).unwrap_or("/").to_string();
                    let fail: u32 = target
                        .split("fail=")
                        .nth(1)
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    let n = {
                        let mut t = counted.lock().unwrap();
                        let n = t.entry(target.clone()).or_insert(0);
                        *n += 1;
                        *n
                    };
                    if target.starts_with("/slowfirst") && n == 1 {
                        tokio::time::sleep(Duration::from_millis(400)).await;
                    }
                    if target.starts_with("/slow500") {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        let _ = s
                            .write_all(
                                b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n",
                            )
                            .await;
                        continue;
                    }
                    if n <= fail {
                        // A reset: no answer, the connection dropped at once.
                        let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
                        return;
                    }
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await;
                }
            });
        }
    });
    (port, tries)
}

/// Every try counts against a route's attempts (reconnects on pooled
/// connections included), and a retry the request timeout leaves no time
/// for ends the request with 504, not the last failure's status.
/// Conformance: HTTPRouteRetryConnectionError, HTTPRouteRetryBackendTimeout
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_bound_every_try_and_the_request_timeout_wins() {
    let ip = "127.0.46.31";
    let (port, tries) = counting_backend(ip).await;
    let manifests = format!(
        "{}---\n{}",
        base(ip),
        slice_service("count", ip, port, None)
    );
    let routes = r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: attempts}
spec:
  parentRefs: [{name: gw}]
  hostnames: [attempts.example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /slow500}}]
    retry: {attempts: 5, codes: [500], backoff: 10ms}
    timeouts: {backendRequest: 200ms, request: 400ms}
    backendRefs: [{name: count, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /slowfirst}}]
    retry: {attempts: 2, backoff: 10ms}
    timeouts: {backendRequest: 100ms}
    backendRefs: [{name: count, port: 80}]
  - retry: {attempts: 3, backoff: 10ms}
    backendRefs: [{name: count, port: 80}]
"#;
    let weft = Weft::up(ip, &[("base.yaml", &manifests), ("routes.yaml", routes)]);
    let c = client(&[]);
    let url = |p: &str| format!("http://{ip}:8080{p}");
    eventually(Duration::from_secs(20), "the route serves", || async {
        get(&c, &url("/ready"), "attempts.example.com").await.0 == 200
    })
    .await;
    let tries_of = |p: &str| tries.lock().unwrap().get(p).copied().unwrap_or(0);

    // Two resets, then an answer: within three retries.
    let (status, _) = get(&c, &url("/a?fail=2"), "attempts.example.com").await;
    assert_eq!((status, tries_of("/a?fail=2")), (200, 3));
    // Four resets: one try and three retries, no more.
    let (status, _) = get(&c, &url("/b?fail=4"), "attempts.example.com").await;
    assert!(matches!(status, 500..=503), "{status}");
    assert_eq!(tries_of("/b?fail=4"), 4, "1 try + 3 retries");

    // A try cut by backendRequest is retried: the first try is 400 ms late.
    let (status, _) = get(&c, &url("/slowfirst"), "attempts.example.com").await;
    assert_eq!((status, tries_of("/slowfirst")), (200, 2));

    // 500s after 100 ms each: retried until the 400 ms request timeout
    // leaves no room for another try, which ends it as a timeout.
    let (status, _) = get(&c, &url("/slow500"), "attempts.example.com").await;
    assert_eq!(status, 504);
    assert!(tries_of("/slow500") < 6, "{} tries", tries_of("/slow500"));
    drop(weft);
}
