//! Resilience on real processes (`BackendTrafficPolicy`): a gateway from
//! `weft up` in front of backends the test changes while traffic flows.
//! An endpoint that starts failing is ejected after the configured count
//! and comes back after the ejection time; no more than the allowed share
//! is ejected; one whose health check fails gets no traffic and gets it
//! again when it recovers; below the panic threshold every endpoint takes
//! traffic; the circuit breaker refuses what is over its limits under a
//! burst (503, `x-weft-overloaded`, `UO` in the metrics; gRPC
//! `UNAVAILABLE`) and recovers; a connection carries no more than its
//! share of requests; a zone-aware sidecar keeps to its zone while it can.

mod support;
use std::time::{Duration, Instant};
use support::backends::Flaky;
use support::*;

/// A Gateway on port 8080, a Service `reviews` whose endpoints are `ips`
/// on `port`, a route to it for `reviews.example.com`, and `policy` (the
/// spec of a BackendTrafficPolicy on the Service, indented by two).
fn manifests(port: u16, ips: &[&str], policy: &str) -> String {
    let endpoints: Vec<String> = ips
        .iter()
        .map(|ip| format!("{{addresses: [\"{ip}\"]}}"))
        .collect();
    format!(
        r#"{gw}---
apiVersion: v1
kind: Service
metadata: {{name: reviews}}
spec: {{ports: [{{name: http, port: 80}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: reviews-1, labels: {{kubernetes.io/service-name: reviews}}}}
addressType: IPv4
ports: [{{name: http, port: {port}}}]
endpoints: [{endpoints}]
---
{route}---
apiVersion: weft.dev/v1alpha1
kind: BackendTrafficPolicy
metadata: {{name: reviews}}
spec:
  targetRefs: [{{group: "", kind: Service, name: reviews}}]
{policy}"#,
        gw = gateway("  listeners:\n  - {name: http, port: 8080, protocol: HTTP}\n"),
        endpoints = endpoints.join(", "),
        route = route("reviews", "reviews.example.com", "reviews"),
    )
}

async fn start(ip: &str, port: u16, ips: &[&str], policy: &str) -> (Weft, Vec<Flaky>) {
    let mut flakies = Vec::new();
    for (i, bip) in ips.iter().enumerate() {
        flakies.push(Flaky::start(&format!("reviews-{i}"), bip, port).await);
    }
    let weft = Weft::up(ip, &[("all.yaml", &manifests(port, ips, policy))]);
    (weft, flakies)
}

/// Sends `n` requests one after another; their statuses.
async fn send(c: &reqwest::Client, url: &str, n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(get(c, url, "reviews.example.com").await.0);
    }
    out
}

async fn all_answer(c: &reqwest::Client, url: &str, flakies: &[Flaky]) {
    eventually(
        Duration::from_secs(20),
        "every endpoint answers",
        || async {
            send(c, url, flakies.len() * 2).await;
            flakies.iter().all(|f| f.hits() > 0)
        },
    )
    .await;
}

/// A meshed Namespace `ns`, and for each of `apps` a Service of its name
/// on port 9080 selecting `app: <name>`.
fn meshed(ns: &str, apps: &[&str]) -> String {
    let mut out = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}, labels: {{weft.dev/mesh: enabled}}}}\n"
    );
    for app in apps {
        out += &format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {app}, namespace: {ns}}}\nspec: {{selector: {{app: {app}}}, ports: [{{name: http, port: 9080, targetPort: http}}]}}\n"
        );
    }
    out
}

/// A `weft echo` Workload `name` of `app` (its service account too) in
/// `ns` on `ip:9080`, with `labels` (flow-style entries, after `app`) and
/// the echo's `args` (flow-style, each after a comma).
fn echo_workload(ns: &str, name: &str, app: &str, ip: &str, labels: &str, args: &str) -> String {
    format!(
        "---\napiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata: {{name: {name}, namespace: {ns}, labels: {{app: {app}{labels}}}}}\nspec:\n  serviceAccountName: {app}\n  address: {ip}\n  command: [weft, echo, --listen, \"{ip}:9080\"{args}]\n  ports: [{{name: http, containerPort: 9080}}]\n"
    )
}

#[tokio::test]
async fn a_failing_endpoint_is_ejected_after_the_count_and_returns_after_the_ejection_time() {
    let ip = "127.0.121.1";
    let ips = ["127.0.121.11", "127.0.121.12", "127.0.121.13"];
    // 500 is not retried by default, so every failure reaches the client.
    let policy = "  healthCheck:\n    passive: {consecutive5XxErrors: 3, interval: 1s, baseEjectionTime: 3s, maxEjectionPercent: 50}\n";
    let (weft, flakies) = start(ip, 9180, &ips, policy).await;
    let c = client(&[]);
    let url = format!("http://{ip}:8080/");
    all_answer(&c, &url, &flakies).await;

    flakies[1].set_status(500);
    let before = flakies[1].hits();
    // The third failure in a row ejects: no ejection starts before the
    // request that brought it was sent.
    let mut statuses = Vec::new();
    let mut ejected_at = None;
    for _ in 0..30 {
        let sent = Instant::now();
        let status = get(&c, &url, "reviews.example.com").await.0;
        statuses.push(status);
        if status == 500 && statuses.iter().filter(|s| **s == 500).count() == 3 {
            ejected_at = Some(sent);
        }
    }
    let failures = statuses.iter().filter(|s| **s == 500).count();
    assert_eq!(
        failures, 3,
        "ejected at the third 5xx in a row: {statuses:?}"
    );
    assert_eq!(flakies[1].hits() - before, 3);
    let ejected_at = ejected_at.unwrap();

    // Healthy again, but ejected: no traffic until the ejection ends.
    flakies[1].set_status(200);
    while ejected_at.elapsed() < Duration::from_millis(2500) {
        assert_eq!(send(&c, &url, 5).await, vec![200; 5]);
        assert_eq!(flakies[1].hits() - before, 3, "traffic while ejected");
    }
    let back = eventually(Duration::from_secs(10), "the endpoint returns", || async {
        send(&c, &url, 6).await;
        flakies[1].hits() - before > 3
    })
    .await;
    assert!(ejected_at.elapsed() >= Duration::from_secs(3), "{back:?}");
    drop(weft);
}

#[tokio::test]
async fn no_more_than_max_ejection_percent_is_ejected() {
    let ip = "127.0.122.1";
    let ips = [
        "127.0.122.11",
        "127.0.122.12",
        "127.0.122.13",
        "127.0.122.14",
    ];
    let policy = "  healthCheck:\n    passive: {consecutive5XxErrors: 2, baseEjectionTime: 60s, maxEjectionPercent: 50}\n";
    let (_weft, flakies) = start(ip, 9180, &ips, policy).await;
    let c = client(&[]);
    let url = format!("http://{ip}:8080/");
    all_answer(&c, &url, &flakies).await;
    for f in &flakies {
        f.set_status(500);
    }
    // Enough for every endpoint to fail twice in a row many times over.
    send(&c, &url, 40).await;
    let before: Vec<usize> = flakies.iter().map(Flaky::hits).collect();
    assert!(send(&c, &url, 40).await.iter().all(|s| *s == 500));
    let served: Vec<bool> = flakies
        .iter()
        .zip(&before)
        .map(|(f, b)| f.hits() > *b)
        .collect();
    let still = served.iter().filter(|s| **s).count();
    assert_eq!(still, 2, "half of four ejected, no more: {served:?}");
}

#[tokio::test]
async fn an_endpoint_failing_its_health_checks_gets_no_traffic_until_it_recovers() {
    let ip = "127.0.123.1";
    let ips = ["127.0.123.11", "127.0.123.12", "127.0.123.13"];
    let policy = "  healthCheck:\n    active: {type: HTTP, http: {path: /healthz, expectedStatuses: [200]}, interval: 200ms, timeout: 1s, unhealthyThreshold: 2, healthyThreshold: 2}\n";
    let (_weft, flakies) = start(ip, 9180, &ips, policy).await;
    let c = client(&[]);
    let url = format!("http://{ip}:8080/");
    all_answer(&c, &url, &flakies).await;
    eventually(
        Duration::from_secs(10),
        "every endpoint is checked",
        || async { flakies.iter().all(|f| f.checks() > 0) },
    )
    .await;

    flakies[2].set_status(500);
    eventually(
        Duration::from_secs(10),
        "the failing endpoint is left out",
        || async {
            let before = flakies[2].hits();
            let statuses = send(&c, &url, 12).await;
            flakies[2].hits() == before && statuses.iter().all(|s| *s == 200)
        },
    )
    .await;
    // And stays out while it fails.
    let before = flakies[2].hits();
    assert_eq!(send(&c, &url, 30).await, vec![200; 30]);
    assert_eq!(flakies[2].hits(), before);

    flakies[2].set_status(200);
    eventually(
        Duration::from_secs(10),
        "the recovered endpoint is back",
        || async {
            send(&c, &url, 6).await;
            flakies[2].hits() > before
        },
    )
    .await;
}

#[tokio::test]
async fn the_circuit_breaker_refuses_what_is_over_its_limits_and_recovers() {
    let ip = "127.0.124.1";
    let ips = ["127.0.124.11"];
    let policy =
        "  circuitBreaker: {maxConnections: 2, maxPendingRequests: 1, maxParallelRequests: 100}\n";
    let (weft, flakies) = start(ip, 9180, &ips, policy).await;
    let c = client(&[]);
    let url = format!("http://{ip}:8080/");
    all_answer(&c, &url, &flakies).await;

    // Two hold the connections, one waits, the rest are refused at once.
    flakies[0]
        .delay_ms
        .store(1500, std::sync::atomic::Ordering::Relaxed);
    let burst: Vec<_> = (0..10)
        .map(|_| {
            let (c, url) = (c.clone(), url.clone());
            tokio::spawn(async move {
                let started = Instant::now();
                let r = c
                    .get(&url)
                    .header("host", "reviews.example.com")
                    .send()
                    .await
                    .unwrap();
                let overloaded = r.headers().get("x-weft-overloaded").cloned();
                (r.status().as_u16(), overloaded, started.elapsed())
            })
        })
        .collect();
    let mut answers = Vec::new();
    for b in burst {
        answers.push(b.await.unwrap());
    }
    let ok = answers.iter().filter(|(s, _, _)| *s == 200).count();
    let refused: Vec<_> = answers.iter().filter(|(s, _, _)| *s == 503).collect();
    assert_eq!((ok, refused.len()), (3, 7), "{answers:?}");
    for (_, overloaded, took) in &refused {
        assert_eq!(
            overloaded.as_ref().map(|v| v.to_str().unwrap()),
            Some("true")
        );
        assert!(
            *took < Duration::from_millis(1000),
            "refused at once: {took:?}"
        );
    }

    // It recovers: one at a time, everything passes.
    flakies[0]
        .delay_ms
        .store(0, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(send(&c, &url, 10).await, vec![200; 10]);
    let metrics = text_of(&format!("{}/metrics", weft.gateway_admins[0])).await;
    let uo = metrics
        .lines()
        .find(|l| l.starts_with("istio_requests_total{") && l.contains("response_flags=\"UO\""))
        .unwrap_or_else(|| panic!("no UO series: {metrics}"));
    assert!(
        uo.contains("response_code=\"503\"") && uo.ends_with(" 7"),
        "{uo}"
    );
}

/// Below the panic threshold, health is ignored: with two of three
/// endpoints failing their checks (a third healthy, under 50%), all three
/// take traffic again; with one failing, it takes none.
#[tokio::test]
async fn below_the_panic_threshold_every_endpoint_takes_traffic() {
    let ip = "127.0.123.2";
    let ips = ["127.0.123.21", "127.0.123.22", "127.0.123.23"];
    let policy = "  healthCheck:\n    active: {type: HTTP, http: {path: /healthz}, interval: 200ms, unhealthyThreshold: 1}\n    panicThreshold: 50\n";
    let (_weft, flakies) = start(ip, 9180, &ips, policy).await;
    let c = client(&[]);
    let url = format!("http://{ip}:8080/");
    all_answer(&c, &url, &flakies).await;
    let served = |i: usize, before: usize| flakies[i].hits() > before;

    flakies[0].set_status(500);
    eventually(
        Duration::from_secs(10),
        "the failing endpoint is left out",
        || async {
            let before = flakies[0].hits();
            send(&c, &url, 9).await;
            !served(0, before)
        },
    )
    .await;
    flakies[1].set_status(500);
    eventually(
        Duration::from_secs(10),
        "in panic, all three take traffic",
        || async {
            let before: Vec<usize> = flakies.iter().map(Flaky::hits).collect();
            send(&c, &url, 30).await;
            (0..3).all(|i| served(i, before[i]))
        },
    )
    .await;
}

/// A gRPC call over the breaker's limits gets `UNAVAILABLE` at once, with
/// `x-weft-overloaded`.
#[tokio::test]
async fn a_grpc_call_over_the_limit_is_unavailable() {
    let ip = "127.0.124.3";
    let ips = ["127.0.124.31"];
    let policy = "  circuitBreaker: {maxConnections: 1, maxPendingRequests: 0}\n";
    let (_weft, flakies) = start(ip, 9180, &ips, policy).await;
    let c = client(&[]);
    let url = format!("http://{ip}:8080/");
    all_answer(&c, &url, &flakies).await;
    flakies[0]
        .delay_ms
        .store(2000, std::sync::atomic::Ordering::Relaxed);
    let before = flakies[0].hits();
    let holder = tokio::spawn({
        let (c, url) = (c.clone(), url.clone());
        async move { get(&c, &url, "reviews.example.com").await.0 }
    });
    eventually(
        Duration::from_secs(5),
        "the one connection is taken",
        || async { flakies[0].hits() > before },
    )
    .await;
    let channel = tonic::transport::Endpoint::from_shared(url.clone())
        .unwrap()
        .origin("http://reviews.example.com".parse().unwrap())
        .connect()
        .await
        .unwrap();
    let mut grpc = weft_api::wire::echo::GrpcEchoClient::new(channel);
    let started = Instant::now();
    let refused = grpc
        .echo(tonic::Request::new(weft_api::wire::echo::EchoRequest {}))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert_eq!(refused.metadata().get("x-weft-overloaded").unwrap(), "true");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(holder.await.unwrap(), 200);
}

#[tokio::test]
async fn a_connection_carries_no_more_than_its_share_of_requests() {
    let ip = "127.0.124.2";
    let ips = ["127.0.124.21"];
    let policy = "  circuitBreaker: {maxRequestsPerConnection: 2}\n";
    let (_weft, flakies) = start(ip, 9180, &ips, policy).await;
    let c = client(&[]);
    let url = format!("http://{ip}:8080/");
    all_answer(&c, &url, &flakies).await;
    let (hits, conns) = (
        flakies[0].hits(),
        flakies[0].connections.lock().unwrap().len(),
    );
    assert_eq!(send(&c, &url, 20).await, vec![200; 20]);
    let hits = flakies[0].hits() - hits;
    let conns = flakies[0].connections.lock().unwrap().len() - conns;
    // One after another, the gateway would otherwise use one connection.
    assert_eq!(hits, 20);
    assert!(conns >= 10, "{conns} connections for 20 requests");
}

/// Sidecars check too: front's sidecar probes back's endpoints over
/// mutual TLS (through their sidecars) and stops sending to the one whose
/// checks fail; 500 is not retried, so without the checks half of front's
/// calls would fail.
#[tokio::test]
async fn a_sidecar_leaves_out_an_endpoint_that_fails_its_checks() {
    let ip = "127.0.125.1";
    let mut manifests = meshed("shop", &["back"]);
    manifests += &meshed_echo("shop", "front", "127.0.125.10", &["http://back:9080/"]);
    manifests += &echo_workload("shop", "back-1", "back", "127.0.125.11", "", "");
    let failing = ", --status, \"500\"";
    manifests += &echo_workload("shop", "back-2", "back", "127.0.125.12", "", failing);
    manifests += r#"---
apiVersion: weft.dev/v1alpha1
kind: BackendTrafficPolicy
metadata: {name: back, namespace: shop}
spec:
  targetRefs: [{group: "", kind: Service, name: back}]
  healthCheck:
    active: {type: HTTP, http: {path: /healthz}, interval: 200ms, unhealthyThreshold: 2}
"#;
    let _weft = Weft::up(
        ip,
        &[
            ("shop.yaml", &manifests),
            ("edge.yaml", &edge("shop", "front")),
        ],
    );
    let c = client(&[]);
    let url = format!("http://{ip}:8080/");
    eventually(
        Duration::from_secs(30),
        "front's calls reach back-1 only",
        || async {
            for _ in 0..20 {
                let (status, body) = get(&c, &url, "front.example.com").await;
                let call = &body["calls"][0];
                if status != 200 || call["status"] != 200 || call["body"]["pod"] != "back-1" {
                    return false;
                }
            }
            true
        },
    )
    .await;
}

/// Zone awareness from a sidecar: front (zone a) calls only back-1, its
/// zone's endpoint, while it is usable; SIGKILLed (and so ejected), back-2
/// in zone b takes the calls, none failing.
#[tokio::test]
async fn a_sidecar_prefers_its_zone_and_fails_over_to_another() {
    let ip = "127.0.137.1";
    let zone = |z: &str| format!(", topology.kubernetes.io/zone: {z}");
    let calls = ", --call, \"http://back:9080/\"";
    let mut manifests = meshed("zoned", &["front", "back"]);
    manifests += &echo_workload("zoned", "front", "front", "127.0.137.10", &zone("a"), calls);
    manifests += &echo_workload("zoned", "back-1", "back", "127.0.137.11", &zone("a"), "");
    manifests += &echo_workload("zoned", "back-2", "back", "127.0.137.12", &zone("b"), "");
    manifests += r#"---
apiVersion: weft.dev/v1alpha1
kind: BackendTrafficPolicy
metadata: {name: back, namespace: zoned}
spec:
  targetRefs: [{group: "", kind: Service, name: back}]
  loadBalancer: {type: RoundRobin, zoneAware: {preferLocal: {}}}
  healthCheck:
    passive: {consecutiveGatewayErrors: 1, maxEjectionPercent: 50}
"#;
    let _weft = Weft::up(
        ip,
        &[
            ("zoned.yaml", &manifests),
            ("edge.yaml", &edge("zoned", "front")),
        ],
    );
    let c = client(&[]);
    let url = format!("http://{ip}:8080/");
    let backs = |n: usize| {
        let (c, url) = (c.clone(), url.clone());
        async move {
            let mut out = Vec::new();
            for _ in 0..n {
                let (status, body) = get(&c, &url, "front").await;
                let call = &body["calls"][0];
                out.push((
                    status,
                    call["status"].as_u64().unwrap_or(0),
                    call["body"]["pod"].as_str().unwrap_or("").to_string(),
                ));
            }
            out
        }
    };
    eventually(Duration::from_secs(30), "front calls back", || async {
        backs(1).await[0].1 == 200
    })
    .await;
    for (status, call, pod) in backs(20).await {
        assert_eq!((status, call, pod.as_str()), (200, 200, "back-1"));
    }
    let pid = pid_of("127.0.137.11:9080").expect("back-1 runs");
    unsafe { libc::kill(pid, libc::SIGKILL) };
    for (status, call, pod) in backs(20).await {
        assert_eq!((status, call, pod.as_str()), (200, 200, "back-2"));
    }
}
