//! Rate limits and fault injection on real processes (`BackendTrafficPolicy`):
//! faults at the configured shares within 4σ, for HTTP and gRPC, and a
//! route's policy overriding its Service's; a local limit holding within 5%
//! over 10 s, answering 429 with `retry-after` and `x-ratelimit-*`, one
//! bucket per distinct client; a global limit shared by two gateways
//! through a real Redis within 5% over 10 s; Redis killed mid-run, failing
//! open or closed as each policy says, and limits again once it is back;
//! `weft up` starting a Redis of its own, and refusing a Redis URL it
//! cannot use.

mod support;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::backends::Flaky;
use support::redis::Redis;
use support::*;

/// Gateways `gws` (name, port) on the address `weft up` is given, a
/// Service `reviews` whose one endpoint is `backend` port 9180, one route
/// per (name, host) in `routes` on every gateway, and `policies` (whole
/// BackendTrafficPolicy documents).
fn manifests(
    gws: &[(&str, u16)],
    backend: &str,
    routes: &[(&str, &str)],
    policies: &str,
) -> String {
    let mut out = String::from(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: weft}\nspec: {controllerName: weft.dev/gateway-controller}\n",
    );
    for (name, port) in gws {
        out += &format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: {name}}}\nspec:\n  gatewayClassName: weft\n  listeners: [{{name: http, port: {port}, protocol: HTTP}}]\n"
        );
    }
    out += &format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: reviews}}\nspec: {{ports: [{{name: http, port: 80}}]}}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: reviews-1, labels: {{kubernetes.io/service-name: reviews}}}}\naddressType: IPv4\nports: [{{name: http, port: 9180}}]\nendpoints: [{{addresses: [\"{backend}\"]}}]\n"
    );
    let parents: Vec<String> = gws.iter().map(|(n, _)| format!("{{name: {n}}}")).collect();
    for (name, host) in routes {
        out += &format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}}}\nspec:\n  parentRefs: [{}]\n  hostnames: [{host}]\n  rules:\n  - name: all\n    backendRefs: [{{name: reviews, port: 80}}]\n",
            parents.join(", ")
        );
    }
    out + policies
}

/// A BackendTrafficPolicy `name` on `target` (a flow-style targetRef),
/// with `spec` (the rest, indented by two).
fn policy(name: &str, target: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: weft.dev/v1alpha1\nkind: BackendTrafficPolicy\nmetadata: {{name: {name}}}\nspec:\n  targetRefs: [{target}]\n{spec}"
    )
}

const SERVICE: &str = "{group: \"\", kind: Service, name: reviews}";

fn route_target(name: &str) -> String {
    format!("{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: {name}}}")
}

/// `clients` clients send GETs to each of `urls` (with `host`) without
/// pause for `warm_up + window`; the statuses of the answers that came in
/// the window.
async fn hammer(
    c: &reqwest::Client,
    urls: &[String],
    host: &str,
    clients: usize,
    warm_up: Duration,
    window: Duration,
) -> Vec<u16> {
    let start = Instant::now();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for url in urls {
        for _ in 0..clients {
            let (c, url, host, seen) = (c.clone(), url.clone(), host.to_string(), seen.clone());
            tasks.push(tokio::spawn(async move {
                while start.elapsed() < warm_up + window {
                    let status = get(&c, &url, &host).await.0;
                    let at = start.elapsed();
                    if at >= warm_up && at < warm_up + window {
                        seen.lock().unwrap().push(status);
                    }
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let out = seen.lock().unwrap().clone();
    out
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

async fn metric(weft: &Weft, gateway: usize, needle: &[&str]) -> u64 {
    let text = text_of(&format!("{}/metrics", weft.gateway_admins[gateway])).await;
    text.lines()
        .filter(|l| needle.iter().all(|n| l.contains(n)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

async fn up(ip: &str, backend: &str, files: &str, args: &[&str]) -> (Weft, Flaky) {
    let flaky = Flaky::start("reviews", backend, 9180).await;
    let weft = Weft::up_with(ip, &[("all.yaml", files)], args);
    (weft, flaky)
}

async fn wait_ok(c: &reqwest::Client, url: &str, host: &str, ok: fn(u16) -> bool) {
    eventually(Duration::from_secs(20), "the route answers", || async {
        ok(get(c, url, host).await.0)
    })
    .await;
}

#[tokio::test]
async fn faults_hit_the_configured_shares_and_a_route_overrides_its_service() {
    let ip = "127.0.126.1";
    let policies = policy(
        "faults",
        SERVICE,
        "  faultInjection:\n    delay: {fixedDelay: 300ms, percentage: 10}\n    abort: {httpStatus: 503, grpcStatus: 8, percentage: 20}\n",
    ) + &policy(
        "calm",
        &route_target("calm"),
        "  faultInjection:\n    delay: {fixedDelay: 1ms}\n",
    );
    let files = manifests(
        &[("gw", 8080)],
        "127.0.126.11",
        &[
            ("faulty", "faulty.example.com"),
            ("calm", "calm.example.com"),
        ],
        &policies,
    );
    let (weft, backend) = up(ip, "127.0.126.11", &files, &[]).await;
    let c = client(&[]);
    let url = format!("http://{ip}:8080/");
    wait_ok(&c, &url, "calm.example.com", |s| s == 200).await;

    // 1000 requests, 8 at a time: each is timed and its status kept.
    let n = 1000;
    let results = Arc::new(Mutex::new(Vec::new()));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (c, url, results) = (c.clone(), url.clone(), results.clone());
            tokio::spawn(async move {
                for _ in 0..n / 8 {
                    let t = Instant::now();
                    let status = get(&c, &url, "faulty.example.com").await.0;
                    results.lock().unwrap().push((status, t.elapsed()));
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let results = results.lock().unwrap().clone();
    let within = |hits: usize, p: f64| {
        let (mean, sd) = (n as f64 * p, (n as f64 * p * (1.0 - p)).sqrt());
        (hits as f64 - mean).abs() <= 4.0 * sd
    };
    let aborted = results.iter().filter(|(s, _)| *s == 503).count();
    let delayed = results
        .iter()
        .filter(|(_, t)| *t >= Duration::from_millis(300))
        .count();
    assert!(within(aborted, 0.2), "{aborted} of {n} aborted, 20% asked");
    assert!(within(delayed, 0.1), "{delayed} of {n} delayed, 10% asked");
    assert_eq!(
        results
            .iter()
            .filter(|(s, _)| *s != 200 && *s != 503)
            .count(),
        0
    );
    // Aborted requests never reached the backend; the rest did.
    assert!(backend.hits() >= n - aborted);
    let flagged = metric(
        &weft,
        0,
        &["istio_requests_total{", "response_flags=\"FI\""],
    )
    .await
        + metric(
            &weft,
            0,
            &["istio_requests_total{", "response_flags=\"DI,FI\""],
        )
        .await;
    assert_eq!(flagged as usize, aborted);

    // The route's own policy (a 1 ms delay, no abort) replaces the Service's.
    for _ in 0..50 {
        assert_eq!(get(&c, &url, "calm.example.com").await.0, 200);
    }

    // A gRPC caller gets the policy's gRPC status (the backend is no
    // gRPC server: the other calls fail otherwise).
    let channel = tonic::transport::Endpoint::from_shared(url.clone())
        .unwrap()
        .origin("http://faulty.example.com".parse().unwrap())
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap();
    let mut grpc = weft_api::wire::echo::GrpcEchoClient::new(channel);
    let mut codes = std::collections::HashSet::new();
    for _ in 0..40 {
        let req = tonic::Request::new(weft_api::wire::echo::EchoRequest {});
        if let Err(status) = grpc.echo(req).await {
            codes.insert(status.code());
        }
    }
    assert!(
        codes.contains(&tonic::Code::ResourceExhausted),
        "as configured: {codes:?}"
    );
}

#[tokio::test]
async fn a_local_limit_holds_within_five_percent_and_says_when_to_retry() {
    let ip = "127.0.127.1";
    let policies = policy(
        "limit",
        SERVICE,
        "  rateLimit:\n    local:\n      rules:\n      - limit: {requests: 50, unit: Second}\n",
    ) + &policy(
        "per-user",
        &route_target("users"),
        "  rateLimit:\n    local:\n      rules:\n      - clientSelectors: [{headers: [{name: x-user, type: Distinct}]}]\n        limit: {requests: 3, unit: Hour}\n",
    );
    let files = manifests(
        &[("gw", 8080)],
        "127.0.127.11",
        &[
            ("limited", "limited.example.com"),
            ("users", "users.example.com"),
        ],
        &policies,
    );
    let (weft, _backend) = up(ip, "127.0.127.11", &files, &[]).await;
    let c = client(&[]);
    let url = format!("http://{ip}:8080/");
    wait_ok(&c, &url, "limited.example.com", |s| s == 200 || s == 429).await;

    let window = Duration::from_secs(10);
    let statuses = hammer(
        &c,
        std::slice::from_ref(&url),
        "limited.example.com",
        4,
        Duration::from_secs(1),
        window,
    )
    .await;
    let passed = count(&statuses, 200);
    assert!(
        (475..=525).contains(&passed),
        "{passed} passed in 10 s at 50/s ({} refused)",
        count(&statuses, 429)
    );
    assert!(count(&statuses, 429) > 0);
    assert_eq!(passed + count(&statuses, 429), statuses.len());

    let r = c
        .get(&url)
        .header("host", "limited.example.com")
        .send()
        .await
        .unwrap();
    let mut refused = r;
    for _ in 0..200 {
        if refused.status() == 429 {
            break;
        }
        refused = c
            .get(&url)
            .header("host", "limited.example.com")
            .send()
            .await
            .unwrap();
    }
    assert_eq!(refused.status(), 429);
    let h = refused.headers();
    assert_eq!(h["x-ratelimit-limit"], "50");
    assert_eq!(h["x-ratelimit-remaining"], "0");
    assert!(h["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    assert!(h.contains_key("x-ratelimit-reset"));
    let over = metric(
        &weft,
        0,
        &["weft_rate_limit_requests_total{", "over_local_limit"],
    )
    .await;
    assert!(over as usize >= count(&statuses, 429));

    // One bucket per user: the route's own policy replaces the Service's.
    let as_user = |user: &'static str| {
        let (c, url) = (c.clone(), url.clone());
        async move {
            let r = c
                .get(&url)
                .header("host", "users.example.com")
                .header("x-user", user)
                .send()
                .await
                .unwrap();
            let remaining = r.headers().get("x-ratelimit-remaining").cloned();
            (r.status().as_u16(), remaining)
        }
    };
    for left in ["2", "1", "0"] {
        let (status, remaining) = as_user("alice").await;
        assert_eq!((status, remaining.unwrap().to_str().unwrap()), (200, left));
    }
    assert_eq!(as_user("alice").await.0, 429);
    assert_eq!(as_user("bob").await.0, 200);
}

#[tokio::test]
async fn a_global_limit_holds_across_two_gateways_sharing_one_redis() {
    let Some(redis) = Redis::start(16391) else {
        return;
    };
    let ip = "127.0.128.1";
    let policies = policy(
        "shared",
        SERVICE,
        "  rateLimit:\n    global:\n      rules:\n      - limit: {requests: 40, unit: Second}\n",
    );
    let files = manifests(
        &[("gw-a", 8080), ("gw-b", 8081)],
        "127.0.128.11",
        &[("shared", "shared.example.com")],
        &policies,
    );
    let (weft, _backend) = up(ip, "127.0.128.11", &files, &["--redis", &redis.url()]).await;
    let c = client(&[]);
    let urls = [format!("http://{ip}:8080/"), format!("http://{ip}:8081/")];
    for url in &urls {
        wait_ok(&c, url, "shared.example.com", |s| s == 200 || s == 429).await;
    }
    let statuses = hammer(
        &c,
        &urls,
        "shared.example.com",
        3,
        Duration::from_millis(1500),
        Duration::from_secs(10),
    )
    .await;
    let passed = count(&statuses, 200);
    assert!(
        (380..=420).contains(&passed),
        "{passed} passed in 10 s at 40/s across two gateways ({} refused)",
        count(&statuses, 429)
    );
    // Both gateways refused: they share the count.
    for g in 0..2 {
        let over = metric(
            &weft,
            g,
            &["weft_rate_limit_requests_total{", "over_global_limit"],
        )
        .await;
        assert!(over > 0, "gateway {g} refused nothing");
    }
}

#[tokio::test]
async fn with_redis_killed_each_policy_fails_open_or_closed_and_recovers() {
    let Some(mut redis) = Redis::start(16392) else {
        return;
    };
    let ip = "127.0.129.1";
    let global = |mode: &str| {
        format!("  rateLimit:\n    global:\n      failureMode: {mode}\n      rules:\n      - limit: {{requests: 5, unit: Hour}}\n")
    };
    let policies = policy("open", &route_target("open"), &global("Open"))
        + &policy("closed", &route_target("closed"), &global("Closed"));
    let files = manifests(
        &[("gw", 8080)],
        "127.0.129.11",
        &[
            ("open", "open.example.com"),
            ("closed", "closed.example.com"),
        ],
        &policies,
    );
    let (weft, _backend) = up(ip, "127.0.129.11", &files, &["--redis", &redis.url()]).await;
    let c = client(&[]);
    let url = format!("http://{ip}:8080/");
    let statuses = |host: &'static str, n: usize| {
        let (c, url) = (c.clone(), url.clone());
        async move {
            let mut out = Vec::new();
            for _ in 0..n {
                out.push(get(&c, &url, host).await.0);
            }
            out
        }
    };
    wait_ok(&c, &url, "open.example.com", |s| s == 200).await;
    let mut want = vec![200; 4];
    want.extend([429, 429]);
    assert_eq!(statuses("open.example.com", 6).await, want);
    let mut want = vec![200; 5];
    want.extend([429, 429]);
    assert_eq!(statuses("closed.example.com", 7).await, want);

    redis.kill();
    assert_eq!(statuses("open.example.com", 10).await, vec![200; 10]);
    assert_eq!(statuses("closed.example.com", 10).await, vec![503; 10]);
    let passed = metric(
        &weft,
        0,
        &[
            "weft_rate_limit_requests_total{",
            "store_unavailable_passed",
        ],
    )
    .await;
    let refused = metric(
        &weft,
        0,
        &[
            "weft_rate_limit_requests_total{",
            "store_unavailable_refused",
        ],
    )
    .await;
    assert_eq!((passed, refused), (10, 10));

    // Back, empty: each policy counts afresh.
    redis.restart();
    eventually(
        Duration::from_secs(15),
        "the closed route counts again",
        || async { get(&c, &url, "closed.example.com").await.0 == 200 },
    )
    .await;
    eventually(
        Duration::from_secs(15),
        "the open route is limited again",
        || async { get(&c, &url, "open.example.com").await.0 == 429 },
    )
    .await;
}

#[tokio::test]
async fn weft_up_runs_a_redis_of_its_own_for_global_limits() {
    if Redis::start(16393).is_none() {
        return;
    }
    let ip = "127.0.130.1";
    let policies = policy(
        "global",
        SERVICE,
        "  rateLimit:\n    global:\n      rules:\n      - limit: {requests: 3, unit: Hour}\n",
    );
    let files = manifests(
        &[("gw", 8080)],
        "127.0.130.11",
        &[("r", "r.example.com")],
        &policies,
    );
    let (weft, _backend) = up(ip, "127.0.130.11", &files, &[]).await;
    let c = client(&[]);
    let url = format!("http://{ip}:8080/");
    wait_ok(&c, &url, "r.example.com", |s| s == 200 || s == 429).await;
    // The first allowed request was the one that found the route.
    let mut seen = Vec::new();
    for _ in 0..5 {
        seen.push(get(&c, &url, "r.example.com").await.0);
    }
    assert_eq!(seen, vec![200, 200, 429, 429, 429]);
    assert_eq!(
        metric(
            &weft,
            0,
            &["weft_rate_limit_requests_total{", "store_unavailable"]
        )
        .await,
        0,
        "counted in Redis, not passed without it"
    );
}

#[test]
fn a_redis_url_weft_cannot_use_stops_weft_up() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(WEFT)
        .args([
            "up",
            dir.path().to_str().unwrap(),
            "--redis",
            "localhost:6379",
        ])
        .args([
            "--admin",
            "127.0.130.9:0",
            "--default-address",
            "127.0.130.9",
        ])
        .env("WEFT_STATE", dir.path().join("state"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("give redis://host:port"), "{err}");
}
