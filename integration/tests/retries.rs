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
