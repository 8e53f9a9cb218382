//! What each sidecar of a `weft up` mesh shows and holds: its admin port's
//! metrics count exactly the calls made (inbound as reporter destination,
//! outbound as source, over mutual TLS); its config holds only the services
//! its workload has called; a call to a destination outside the mesh passes
//! through as plain HTTP; a Workload annotated for access logs gets one
//! JSON line per request its sidecar handles.

mod support;
use std::time::Duration;
use support::*;

const MESH: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: tele, labels: {weft.dev/mesh: enabled}}
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {name: client, namespace: tele, labels: {app: client}}
spec:
  serviceAccountName: client
  address: 127.0.13.2
  command: [weft, echo, --listen, "127.0.13.2:9080",
            --call, "http://server:9080/work",
            --call, "http://127.0.13.9:9090/outside"]
  ports: [{name: http, containerPort: 9080}]
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata:
  name: server
  namespace: tele
  labels: {app: server}
  annotations: {weft.dev/access-log: "true"}
spec:
  serviceAccountName: server
  address: 127.0.13.3
  command: [weft, echo, --listen, "127.0.13.3:9080"]
  ports: [{name: http, containerPort: 9080}]
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {name: unused, namespace: tele, labels: {app: unused}}
spec:
  serviceAccountName: unused
  address: 127.0.13.4
  command: [weft, echo, --listen, "127.0.13.4:9080"]
  ports: [{name: http, containerPort: 9080}]
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {name: outside, namespace: default}
spec:
  address: 127.0.13.9
  command: [weft, echo, --listen, "127.0.13.9:9090"]
  ports: [{name: http, containerPort: 9090}]
---
apiVersion: v1
kind: Service
metadata: {name: client, namespace: tele}
spec: {selector: {app: client}, ports: [{name: http, port: 9080, targetPort: http}]}
---
apiVersion: v1
kind: Service
metadata: {name: server, namespace: tele}
spec: {selector: {app: server}, ports: [{name: http, port: 9080, targetPort: http}]}
---
apiVersion: v1
kind: Service
metadata: {name: unused, namespace: tele}
spec: {selector: {app: unused}, ports: [{name: http, port: 9080, targetPort: http}]}
"#;

/// The value of the one sample of `name` whose labels include all of `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> u64 {
    let matching: Vec<u64> = text
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert!(
        matching.len() <= 1,
        "{name} {labels:?} is ambiguous:\n{text}"
    );
    matching.first().copied().unwrap_or(0)
}

async fn text(c: &reqwest::Client, url: &str) -> String {
    c.get(url).send().await.unwrap().text().await.unwrap()
}

async fn json(c: &reqwest::Client, url: &str) -> serde_json::Value {
    c.get(url).send().await.unwrap().json().await.unwrap()
}

fn vhosts(side: &serde_json::Value) -> Vec<String> {
    side["config"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["listeners"].as_array().unwrap())
        .flat_map(|l| l["virtual_hosts"].as_array().unwrap())
        .map(|v| v["hostname"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn sidecars_count_calls_hold_what_they_call_and_pass_the_rest_through() {
    let ip = "127.0.13.1";
    let weft = Weft::up(
        ip,
        &[("mesh.yaml", MESH), ("edge.yaml", &edge("tele", "client"))],
    );
    let c = client(&[]);
    let page = || async {
        let (status, body) = get(&c, &format!("http://{ip}:8080/"), "tele").await;
        (status == 200
            && body["calls"]
                .as_array()
                .is_some_and(|calls| calls.iter().all(|c| c["status"] == 200)))
        .then_some(body)
    };
    eventually(
        Duration::from_secs(30),
        "the page and its calls succeed",
        || async { page().await.is_some() },
    )
    .await;

    let body = page().await.unwrap();
    assert_eq!(body["calls"][0]["body"]["pod"], "server");
    assert_eq!(
        body["calls"][1]["body"]["pod"], "outside",
        "a destination outside the mesh is reached as plain HTTP"
    );
    assert_eq!(
        body["calls"][1]["body"]["headers"]["X-Forwarded-Client-Cert"],
        serde_json::Value::Null
    );

    // Counters move by exactly the calls made.
    let admin = reqwest::Client::builder().no_proxy().build().unwrap();
    let server_metrics = "http://127.0.13.3:15020/metrics";
    let client_metrics = "http://127.0.13.2:15020/metrics";
    let inbound = [
        ("reporter", "destination"),
        ("destination_workload", "server"),
        ("destination_workload_namespace", "tele"),
        (
            "destination_principal",
            "spiffe://cluster.local/ns/tele/sa/server",
        ),
        (
            "source_principal",
            "spiffe://cluster.local/ns/tele/sa/client",
        ),
        ("source_workload", "client"),
        ("source_workload_namespace", "tele"),
        ("connection_security_policy", "mutual_tls"),
        ("response_code", "200"),
    ];
    let outbound = [
        ("reporter", "source"),
        ("source_workload", "client"),
        (
            "source_principal",
            "spiffe://cluster.local/ns/tele/sa/client",
        ),
        ("destination_service", "server.tele.svc.cluster.local"),
        (
            "destination_principal",
            "spiffe://cluster.local/ns/tele/sa/server",
        ),
        ("destination_workload", "server"),
        ("destination_workload_namespace", "tele"),
        ("response_code", "200"),
    ];
    let count = "istio_requests_total";
    let before = (
        sample(&text(&admin, server_metrics).await, count, &inbound),
        sample(&text(&admin, client_metrics).await, count, &outbound),
    );
    const PAGES: u64 = 25;
    for _ in 0..PAGES {
        page().await.expect("every page and call succeeds");
    }
    let server_text = text(&admin, server_metrics).await;
    let client_text = text(&admin, client_metrics).await;
    assert_eq!(
        sample(&server_text, count, &inbound) - before.0,
        PAGES,
        "{server_text}"
    );
    assert_eq!(
        sample(&client_text, count, &outbound) - before.1,
        PAGES,
        "{client_text}"
    );
    assert!(
        sample(
            &server_text,
            "istio_request_duration_milliseconds_count",
            &inbound
        ) >= PAGES
    );
    let received = [
        ("reporter", "destination"),
        ("connection_security_policy", "mutual_tls"),
    ];
    assert!(sample(&server_text, "istio_tcp_received_bytes_total", &received) > 0);
    assert!(
        sample(
            &server_text,
            "istio_tcp_connections_opened_total",
            &received
        ) > 0
    );

    // The client's sidecar holds the one service name it called; the
    // server's, which calls nothing, holds none.
    let dump = json(&admin, "http://127.0.13.2:15020/config_dump").await;
    assert_eq!(dump["identity"], "spiffe://cluster.local/ns/tele/sa/client");
    assert_eq!(vhosts(&dump["outbound"]), ["server:9080"], "{dump:#}");
    let clusters: Vec<&String> = dump["outbound"]["config"]["clusters"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(clusters, ["tele/server:9080"], "{dump:#}");
    let dump = json(&admin, "http://127.0.13.3:15020/config_dump").await;
    assert_eq!(vhosts(&dump["outbound"]), Vec::<String>::new());
    assert_eq!(vhosts(&dump["inbound"]), ["*"]);
    let ready = admin
        .get("http://127.0.13.3:15020/ready")
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);

    // The server's sidecar logs each call it took; the others log nothing.
    let lines: Vec<serde_json::Value> = weft
        .stdout
        .try_iter()
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect();
    let logged = lines
        .iter()
        .filter(|l| {
            l["downstream_peer_principal"] == "spiffe://cluster.local/ns/tele/sa/client"
                && l["path"] == "/work"
                && l["response_code"] == 200
        })
        .count() as u64;
    assert!(logged >= PAGES, "{logged} lines: {lines:#?}");
    assert!(
        lines.iter().all(|l| l["path"] == "/work"),
        "only the server's sidecar logs: {lines:#?}"
    );
    weft.sigterm();
}

/// With `--sidecar-processes` each sidecar is a `weft-sidecar` process
/// of its own (the sidecar alone, installed beside `weft`), child of
/// `weft up`: calls still go over mutual TLS with the
/// caller's identity, its admin port serves, one that is killed is started
/// again, and the processes end with `weft up`.
#[tokio::test]
async fn sidecars_run_as_processes_of_their_own() {
    let ip = "127.0.62.1";
    let mesh = calling_pair(
        "procs",
        ("client", "127.0.62.2"),
        ("server", "127.0.62.3"),
        "/work",
    );
    let weft = Weft::up_with(
        ip,
        &[
            ("mesh.yaml", &mesh),
            ("edge.yaml", &edge("procs", "client")),
        ],
        &["--sidecar-processes"],
    );
    let c = client(&[]);
    let url = format!("http://{ip}:8080/");
    wait_for_call(&c, &url, "any").await;
    let (_, body) = get(&c, &url, "any").await;
    assert_eq!(
        body["calls"][0]["body"]["headers"]["X-Forwarded-Client-Cert"],
        serde_json::json!(["URI=spiffe://cluster.local/ns/procs/sa/client"]),
        "{body}"
    );

    // One process per sidecar, each a child of `weft up`.
    let up = weft.child.id() as i32;
    let sidecars = |parent: Option<i32>| {
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            let Some(workload) = cmdline
                .starts_with(&format!("{WEFT_SIDECAR} "))
                .then(|| cmdline.split("--workload ").nth(1))
                .flatten()
                .and_then(|rest| rest.split(' ').next())
                .filter(|w| w.starts_with("procs/"))
            else {
                continue;
            };
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            let ppid: Option<i32> = stat
                .rsplit(')')
                .next()
                .and_then(|s| s.split_whitespace().nth(1))
                .and_then(|p| p.parse().ok());
            if parent.is_none() || ppid == parent {
                found.push((workload.to_string(), pid));
            }
        }
        found.sort();
        found
    };
    let names = |found: Vec<(String, i32)>| found.into_iter().map(|(w, _)| w).collect::<Vec<_>>();
    assert_eq!(names(sidecars(Some(up))), ["procs/client", "procs/server"]);
    let ready = c.get("http://127.0.62.2:15020/ready").send().await.unwrap();
    assert_eq!(ready.status(), 200, "the client sidecar's admin port");
    // Having proxied calls, each sidecar runs only its own threads: no
    // Pingora clock thread, which wakes every 10 ms for good once started
    // (its timeouts go to the data-plane runtime's timer).
    for (workload, pid) in sidecars(Some(up)) {
        let threads: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .filter_map(Result::ok)
            .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
            .map(|c| c.trim().to_string())
            .collect();
        assert!(
            threads.iter().any(|t| t.starts_with("weft-worker")),
            "{workload}: {threads:?}"
        );
        assert!(
            !threads.iter().any(|t| t == "Timer thread"),
            "{workload} runs Pingora's clock thread: {threads:?}"
        );
    }

    // A sidecar that dies is started again, with a certificate of its own.
    let killed = sidecars(Some(up))[0].1;
    // SAFETY: kill(2) on a pid this test found.
    unsafe { libc::kill(killed, libc::SIGKILL) };
    eventually(
        Duration::from_secs(20),
        "a new client sidecar serves the call",
        || async {
            let again = sidecars(Some(up));
            let restarted = again.len() == 2 && again[0].1 != killed;
            let (status, body) = get(&c, &url, "any").await;
            restarted && status == 200 && body["calls"][0]["status"] == 200
        },
    )
    .await;

    drop(weft);
    eventually(Duration::from_secs(10), "the sidecars end", || async {
        sidecars(None).is_empty()
    })
    .await;
}

#[tokio::test]
async fn the_trust_domain_and_the_cluster_domain_are_settings() {
    let ip = "127.0.63.1";
    let mesh = calling_pair(
        "dom",
        ("front", "127.0.63.2"),
        ("back", "127.0.63.3"),
        "/work",
    )
    .replace(
        "http://back:9080/work",
        "http://back.dom.svc.corp.internal:9080/work",
    );
    let weft = Weft::up_with(
        ip,
        &[("mesh.yaml", &mesh), ("edge.yaml", &edge("dom", "front"))],
        &[
            "--trust-domain",
            "example.org",
            "--cluster-domain",
            "corp.internal",
        ],
    );
    let c = client(&[]);
    let url = format!("http://{ip}:8080/");
    wait_for_call(&c, &url, "any").await;
    let (_, body) = get(&c, &url, "any").await;
    assert_eq!(
        body["calls"][0]["body"]["headers"]["X-Forwarded-Client-Cert"],
        serde_json::json!(["URI=spiffe://example.org/ns/dom/sa/front"]),
        "{body}"
    );
    assert_eq!(body["calls"][0]["body"]["pod"], "back", "{body}");
    let metrics = text(&c, "http://127.0.63.3:15020/metrics").await;
    assert!(
        sample(
            &metrics,
            "istio_requests_total",
            &[
                ("reporter", "destination"),
                ("destination_service", "back.dom.svc.corp.internal"),
                ("source_principal", "spiffe://example.org/ns/dom/sa/front"),
            ],
        ) >= 1,
        "{metrics}"
    );
    drop(weft);
}

/// GAMMA routes through the callers' sidecars: a redirect names the
/// service called and its port, not the sidecar's proxy port; path
/// redirects, rewrites, backendRef header filters, query matches and named
/// rules apply; and a consumer route (in the caller's namespace, for a
/// Service of another) applies to that namespace's callers alone.
/// Conformance: MeshHTTPRouteRedirectPort, MeshHTTPRouteSchemeRedirect,
/// Conformance: MeshHTTPRouteRedirectPath, MeshHTTPRouteRewritePath,
/// Conformance: MeshHTTPRouteBackendRequestHeaderModification, MeshHTTPRouteQueryParamMatching,
/// Conformance: MeshHTTPRouteNamedRouteRule, MeshConsumerRoute
#[tokio::test]
async fn mesh_routes_through_the_sidecars() {
    let ip = "127.0.64.1";
    let mesh = format!(
        "{}---\n{}",
        calling_pair(
            "redir",
            ("caller", "127.0.64.2"),
            ("echo", "127.0.64.3"),
            "/"
        ),
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: redirects, namespace: redir}
spec:
  parentRefs: [{group: "", kind: Service, name: echo, port: 9080}]
  rules:
  - name: port
    matches: [{path: {type: PathPrefix, value: /port}}]
    filters: [{type: RequestRedirect, requestRedirect: {port: 8083}}]
  - matches: [{path: {type: PathPrefix, value: /path}}]
    filters: [{type: RequestRedirect, requestRedirect: {path: {type: ReplaceFullPath, replaceFullPath: /new}}}]
  - matches: [{path: {type: PathPrefix, value: /rewrite}}]
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}}}]
    backendRefs: [{name: echo, port: 9080}]
  - matches: [{path: {type: PathPrefix, value: /headers}}]
    backendRefs:
    - name: echo
      port: 9080
      filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: X-Mesh, value: "yes"}]}}]
  - matches: [{path: {type: PathPrefix, value: /query}, queryParams: [{name: r, value: "1"}]}]
    filters: [{type: RequestRedirect, requestRedirect: {hostname: q.example.org}}]
  - matches: [{path: {type: PathPrefix, value: /host}}]
    filters: [{type: RequestRedirect, requestRedirect: {hostname: example.org, statusCode: 301}}]
  - matches: [{path: {type: PathPrefix, value: /scheme}}]
    filters: [{type: RequestRedirect, requestRedirect: {scheme: https}}]
  - backendRefs: [{name: echo, port: 9080}]
---
apiVersion: v1
kind: Namespace
metadata: {name: redir2, labels: {weft.dev/mesh: enabled}}
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {name: consumer, namespace: redir2, labels: {app: consumer}}
spec:
  serviceAccountName: consumer
  address: 127.0.64.4
  command: [weft, echo, --listen, "127.0.64.4:9080"]
  ports: [{name: http, containerPort: 9080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: consumer, namespace: redir2}
spec:
  parentRefs: [{group: "", kind: Service, name: echo, namespace: redir, port: 9080}]
  rules:
  - filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: X-Consumer, value: "yes"}]}}]
    backendRefs: [{name: echo, namespace: redir, port: 9080}]
"#
    );
    let weft = Weft::up(ip, &[("mesh.yaml", &mesh)]);
    // The test is the caller's application, using its sidecar as proxy.
    let app = reqwest::Client::builder()
        .proxy(reqwest::Proxy::http("http://127.0.64.2:15001").unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let location = |path: &'static str| {
        let app = app.clone();
        async move {
            let r = app
                .get(format!("http://echo:9080{path}"))
                .send()
                .await
                .ok()?;
            let l = r.headers().get("location")?.to_str().ok()?.to_string();
            Some((r.status().as_u16(), l))
        }
    };
    eventually(
        Duration::from_secs(30),
        "the mesh route redirects",
        || async { location("/port/a").await.is_some() },
    )
    .await;
    assert_eq!(
        location("/port/a?q=1").await,
        Some((302, "http://echo:8083/port/a?q=1".into()))
    );
    assert_eq!(
        location("/host").await,
        Some((301, "http://example.org:9080/host".into()))
    );
    assert_eq!(
        location("/scheme").await,
        Some((302, "https://echo/scheme".into()))
    );
    assert_eq!(
        location("/path/x").await,
        Some((302, "http://echo:9080/new".into()))
    );
    assert_eq!(
        location("/query?r=1").await,
        Some((302, "http://q.example.org:9080/query?r=1".into()))
    );
    assert_eq!(location("/query?r=2").await, None, "no match, no redirect");
    let body = |path: &'static str| {
        let app = app.clone();
        async move {
            let r = app
                .get(format!("http://echo:9080{path}"))
                .send()
                .await
                .unwrap();
            r.json::<serde_json::Value>().await.unwrap()
        }
    };
    assert_eq!(body("/rewrite/a").await["path"], "/new/a");
    assert_eq!(
        body("/headers").await["headers"]["X-Mesh"],
        serde_json::json!(["yes"])
    );

    // The consumer route: for callers in redir2 only.
    let consumer = reqwest::Client::builder()
        .proxy(reqwest::Proxy::http("http://127.0.64.4:15001").unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let consumed = || async {
        consumer
            .get("http://echo.redir:9080/c")
            .send()
            .await
            .ok()
            .filter(|r| r.status() == 200)
            .and_then(|r| {
                r.headers()
                    .get("x-consumer")
                    .map(|v| v.to_str().unwrap().to_string())
            })
    };
    eventually(
        Duration::from_secs(30),
        "the consumer's calls take its route",
        || async { consumed().await.as_deref() == Some("yes") },
    )
    .await;
    let producer = app.get("http://echo.redir:9080/c").send().await.unwrap();
    assert_eq!(producer.status(), 200);
    assert!(producer.headers().get("x-consumer").is_none());
    drop(weft);
}
