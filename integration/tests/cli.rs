//! The `weft` commands around `up`: the quickstart example as shipped,
//! `weft analyze`, `weft status`, a gateway's admin endpoint, and a
//! sidecar process's own allocator settings.

mod support;
use std::process::Command;
use std::time::Duration;
use support::*;

fn repo(path: &str) -> String {
    format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"))
}

/// `weft analyze ARGS`, which must succeed: its report.
fn analyze(args: &[&str]) -> serde_json::Value {
    let out = Command::new(WEFT)
        .arg("analyze")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_yaml::from_slice(&out.stdout).unwrap()
}

/// `weft analyze -k` on the bookinfo example as `kubectl apply -k` would
/// send it: Deployments instead of Workloads. It says which pods get a
/// sidecar and with what identity, what each Gateway is given, and the mesh
/// route still resolves to the pods' sidecars.
#[test]
fn analyze_says_what_a_cluster_would_run() {
    let report = analyze(&["-k", &repo("examples/bookinfo")]);
    let pods = report["onKubernetes"]["pods"].as_array().unwrap();
    assert_eq!(pods.len(), 5, "{pods:?}");
    let productpage = &pods[0];
    assert_eq!(productpage["from"], "Deployment bookinfo/productpage");
    assert_eq!(productpage["sidecar"], true);
    assert_eq!(
        productpage["identity"],
        "spiffe://cluster.local/ns/bookinfo/sa/productpage"
    );
    assert_eq!(productpage["inbound"], serde_json::json!(["9080 -> 15006"]));
    let gateway = &report["onKubernetes"]["gateways"][0];
    assert_eq!(gateway["gateway"], "bookinfo/bookinfo");
    assert!(gateway["provisioned"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("Service bookinfo (LoadBalancer)")));
    // The mesh route on the reviews Service resolves, to the pods' sidecars.
    let items = report["items"].as_array().unwrap();
    let reviews = items
        .iter()
        .find(|i| i["kind"] == "HTTPRoute" && i["metadata"]["name"] == "reviews")
        .unwrap();
    let conditions = reviews["status"]["parents"][0]["conditions"]
        .as_array()
        .unwrap();
    for c in conditions {
        assert_eq!(c["status"], "True", "{c}");
    }

    // A pod outside the mesh says why.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("app.yaml"),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: plain, namespace: default}\n\
         spec:\n  selector: {matchLabels: {app: plain}}\n  template:\n    metadata: {labels: {app: plain}}\n\
         \x20   spec: {containers: [{name: app, image: x}]}\n---\n\
         apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: nightly, namespace: default}\n\
         spec:\n  schedule: '@daily'\n  jobTemplate:\n    spec:\n      template:\n\
         \x20       metadata: {labels: {weft.dev/mesh: enabled}}\n\
         \x20       spec: {serviceAccountName: batch, restartPolicy: Never, containers: [{name: job, image: x}]}\n",
    )
    .unwrap();
    let report = analyze(&[dir.path().to_str().unwrap()]);
    let pods = &report["onKubernetes"]["pods"];
    assert_eq!(pods[0]["sidecar"], false);
    assert!(
        pods[0]["why"]
            .as_str()
            .unwrap()
            .contains("namespace default"),
        "{pods}"
    );
    assert_eq!(pods[1]["from"], "CronJob default/nightly");
    assert_eq!(
        pods[1]["identity"],
        "spiffe://cluster.local/ns/default/sa/batch"
    );
}

#[test]
fn analyze_passes_the_quickstart_and_fails_a_broken_folder() {
    let ok = Command::new(WEFT)
        .args(["analyze", &repo("examples/quickstart")])
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(
        out.contains("kind: HTTPRoute") && out.contains("reason: Accepted"),
        "{out}"
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = base("127.0.72.1")
        + "---\n"
        + &route("r", "a.example.com", "v1").replace(
            "parentRefs: [{name: gw}]",
            "parentRefs: [{name: gw, sectionName: nope}]",
        );
    std::fs::write(dir.path().join("all.yaml"), bad).unwrap();
    std::fs::write(dir.path().join("broken.yaml"), "kind: [").unwrap();
    let out = Command::new(WEFT)
        .args(["analyze", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("HTTPRoute default/r") && err.contains("NoMatchingParent"),
        "{err}"
    );
    // Logs written to a pipe carry no colour codes.
    assert!(err.contains("ERROR"), "{err}");
    assert!(
        !err.contains('\u{1b}'),
        "ANSI escapes in piped logs: {err:?}"
    );
}

/// The sum of `istio_requests_total` series whose labels contain all of `labels`.
fn requests_total(text: &str, labels: &[&str]) -> u64 {
    text.lines()
        .filter(|l| l.starts_with("istio_requests_total{") && labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn the_quickstart_serves_and_reports() {
    let ip = "127.0.71.1";
    let dir = example("quickstart", &[("127.0.0.1", "127.0.71.2")]);
    let mut weft = Weft::start(dir.path(), ip);
    let admin = weft.admin.to_string();
    let gateway_admin = weft.gateway_admins[0].clone();
    let c = client(&[]);
    let url = format!("http://{ip}:8080/");
    eventually(Duration::from_secs(20), "the quickstart serves", || async {
        get(&c, &url, "shop.example.com").await.0 == 200
    })
    .await;
    let v2 = c
        .get(&url)
        .header("host", "shop.example.com")
        .header("x-version", "v2")
        .send()
        .await
        .unwrap();
    assert_eq!(
        v2.json::<serde_json::Value>().await.unwrap()["pod"],
        "echo-v2"
    );

    let ready = reqwest::get(format!("{gateway_admin}/ready"))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let dump: serde_json::Value = reqwest::get(format!("{gateway_admin}/config_dump"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(dump["config"]["name"], "web");
    assert!(
        dump.to_string().contains("<redacted>") && !dump.to_string().contains("PRIVATE KEY"),
        "keys stay out of dumps"
    );

    // Metrics count exactly the requests sent.
    let metrics = || async {
        reqwest::get(format!("{gateway_admin}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let ok_before = requests_total(&metrics().await, &["response_code=\"200\""]);
    for _ in 0..20 {
        assert_eq!(get(&c, &url, "shop.example.com").await.0, 200);
    }
    for _ in 0..3 {
        assert_eq!(get(&c, &url, "nothing.example.org").await.0, 404);
    }
    let text = metrics().await;
    assert_eq!(
        requests_total(&text, &["response_code=\"200\""]) - ok_before,
        20,
        "{text}"
    );
    assert_eq!(
        requests_total(
            &text,
            &["response_code=\"404\"", "destination_service=\"unknown\""]
        ),
        3
    );
    assert!(
        requests_total(
            &text,
            &["destination_service=\"echo-v1.default.svc.cluster.local\""]
        ) > 0
    );
    assert!(text.contains("istio_request_duration_milliseconds_bucket"));

    let status = Command::new(WEFT)
        .args(["status", "--admin", &admin])
        .output()
        .unwrap();
    let yaml = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.status.success()
            && yaml.contains("kind: Gateway")
            && yaml.contains("type: Programmed"),
        "{yaml}"
    );

    weft.sigterm();
    assert!(weft.child.wait().unwrap().success());
}

/// The edge-auth example does what its README shows: 401 without a token,
/// the API sees alice (and not her token), bob is refused `/admin`, a
/// forged `x-user` is replaced, a tampered token is refused.
#[tokio::test]
async fn the_edge_auth_example_authenticates() {
    let ip = "127.0.72.1";
    let dir = example("edge-auth", &[("127.0.0.1", "127.0.72.2")]);
    let _weft = Weft::start(dir.path(), ip);
    let tokens = format!(
        "{}/../examples/edge-auth/tokens",
        env!("CARGO_MANIFEST_DIR")
    );
    let token = |name: &str| std::fs::read_to_string(format!("{tokens}/{name}")).unwrap();
    let (alice, bob) = (token("alice"), token("bob"));
    let c = client(&[]);
    let call = |path: &str, token: Option<&str>, extra: Option<(&str, &str)>| {
        let mut req = c
            .get(format!("http://{ip}:8080{path}"))
            .header("host", "api.example.com");
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {}", t.trim()));
        }
        if let Some((k, v)) = extra {
            req = req.header(k, v);
        }
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let challenge = r
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap().to_string());
            let body = r.json::<serde_json::Value>().await.unwrap_or_default();
            (status, challenge, body)
        }
    };
    // The issuer may start after the gateway: its keys come when it does.
    eventually(Duration::from_secs(30), "alice gets in", || async {
        call("/orders", Some(&alice), None).await.0 == 200
    })
    .await;
    let (status, challenge, _) = call("/orders", None, None).await;
    assert_eq!(status, 401);
    assert_eq!(
        challenge.as_deref(),
        Some(r#"Bearer realm="api.example.com""#)
    );
    let (_, _, body) = call("/orders", Some(&alice), None).await;
    assert_eq!(body["headers"]["X-User"][0], "alice", "{body}");
    assert_eq!(body["headers"]["X-Groups"][0], "admin,staff", "{body}");
    assert!(body["headers"].get("Authorization").is_none(), "{body}");
    assert_eq!(call("/admin", Some(&bob), None).await.0, 403);
    assert_eq!(call("/admin", Some(&alice), None).await.0, 200);
    let (_, _, body) = call("/orders", Some(&bob), Some(("x-user", "alice"))).await;
    assert_eq!(
        body["headers"]["X-User"],
        serde_json::json!(["bob"]),
        "{body}"
    );
    let (status, challenge, _) = call("/orders", Some(&format!("{}x", bob.trim())), None).await;
    assert_eq!(status, 401);
    assert_eq!(
        challenge.as_deref(),
        Some(r#"Bearer realm="api.example.com", error="invalid_token""#)
    );
}

/// The environment of process `pid`, as `NAME=value` entries.
fn environ_of(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .map(|e| String::from_utf8_lossy(e).to_string())
        .collect()
}

/// A sidecar applies its allocator settings itself, however it is started
/// (here without them, as a pod's container might be), and keeps a setting
/// the user gave; `weft sidecar run` (what injected pods run) hands over to
/// `weft-sidecar`, installed beside it, in the same process.
#[tokio::test]
async fn a_sidecar_process_is_the_sidecar_binary_with_its_own_allocator_options() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle.pem");
    // A real root, so the sidecar runs on (trying to reach its CA) while
    // its environment is read.
    std::fs::write(&bundle, support::pki::ca().pem).unwrap();
    let started_as: [&[&str]; 2] = [&[WEFT, "sidecar", "run"], &[WEFT_SIDECAR]];
    for start in started_as {
        for (given, want) in [
            (None, "MIMALLOC_ARENA_EAGER_COMMIT=0"),
            (Some("1"), "MIMALLOC_ARENA_EAGER_COMMIT=1"),
        ] {
            let mut cmd = Command::new(start[0]);
            cmd.args(&start[1..])
                .args(["--controller", "http://127.0.0.1:9"])
                .args(["--ca", "http://127.0.0.1:9", "--token", "t"])
                .arg("--trust-bundle")
                .arg(&bundle)
                .args(["--workload", "default/w", "--identity"])
                .arg("spiffe://cluster.local/ns/default/sa/w")
                .env_remove("MIMALLOC_ARENA_EAGER_COMMIT")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            if let Some(v) = given {
                cmd.env("MIMALLOC_ARENA_EAGER_COMMIT", v);
            }
            let mut child = cmd.spawn().unwrap();
            let pid = child.id();
            // The same process (it execs), once it runs as the sidecar
            // binary with its settings.
            let exe = || {
                std::fs::read_link(format!("/proc/{pid}/exe"))
                    .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
                    .unwrap_or_default()
            };
            eventually(Duration::from_secs(10), "the sidecar runs", || async {
                exe() == "weft-sidecar"
                    && environ_of(pid)
                        .iter()
                        .any(|e| e.starts_with("MIMALLOC_ARENA_EAGER_COMMIT="))
            })
            .await;
            let env = environ_of(pid);
            // Still running (not failed on its arguments), as the sidecar.
            assert!(child.try_wait().unwrap().is_none(), "{start:?} exited");
            assert_eq!(exe(), "weft-sidecar");
            let _ = child.kill();
            let _ = child.wait();
            assert!(env.iter().any(|e| e == want), "{want} not in {env:?}");
        }
    }
}
