//! `weft up` as a process: stopping on SIGTERM, restarting dead workloads,
//! status details tools rely on, unbindable addresses, hostile requests.

mod support;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

#[tokio::test]
async fn sigterm_stops_everything_and_dead_workloads_come_back() {
    let ip = "127.0.41.1";
    let mut weft = up_with_v1(ip);
    let c = client(&[]);
    let url = format!("http://{ip}:8080/");
    eventually(Duration::from_secs(20), "v1 serves", || async {
        get(&c, &url, "a.example.com").await.0 == 200
    })
    .await;

    let pid = pid_of(&format!("{ip}:9001")).expect("the v1 workload runs");
    // SAFETY: kill(2) on a process this test's weft started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    eventually(Duration::from_secs(10), "v1 is restarted", || async {
        pid_of(&format!("{ip}:9001")).is_some_and(|p| p != pid)
            && get(&c, &url, "a.example.com").await.0 == 200
    })
    .await;

    let start = Instant::now();
    weft.sigterm();
    let status = loop {
        if let Some(s) = weft.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "weft up still runs 10 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");
    assert!(
        pid_of(&format!("{ip}:9001")).is_none(),
        "workloads are reaped"
    );
    assert!(
        TcpStream::connect(format!("{ip}:8080")).is_err(),
        "the gateway no longer listens"
    );
}

/// `weft up` on `ip` with one route, `a.example.com`, to workload v1
/// (`ip:9001`).
fn up_with_v1(ip: &str) -> Weft {
    Weft::up(
        ip,
        &[
            ("base.yaml", &base(ip)),
            ("r.yaml", &route("r", "a.example.com", "v1")),
        ],
    )
}

/// A `weft up` that is killed (no chance to stop anything) takes its
/// workloads with it: none is left running without the proxy and the
/// controller it was started under.
#[tokio::test]
async fn a_killed_weft_up_leaves_no_workload_behind() {
    let ip = "127.0.41.2";
    let mut weft = up_with_v1(ip);
    eventually(Duration::from_secs(20), "the v1 workload runs", || async {
        pid_of(&format!("{ip}:9001")).is_some()
    })
    .await;
    let pid = pid_of(&format!("{ip}:9001")).unwrap();
    // SAFETY: kill(2) on this test's own child.
    unsafe { libc::kill(weft.child.id() as libc::pid_t, libc::SIGKILL) };
    let _ = weft.child.wait();
    eventually(Duration::from_secs(10), "the workload ends", || async {
        // Gone, or a zombie no longer running (its parent was killed and
        // init reaps it).
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
            s.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
        })
    })
    .await;
}

/// Conformance: GatewayStaticAddresses, GatewayAddressEmpty
#[tokio::test]
async fn status_shows_generations_parent_refs_and_unusable_addresses() {
    let ip = "127.0.42.1";
    // 192.0.2.0/24 is TEST-NET-1: never an address of this machine, so it
    // cannot be bound (and no packet is ever sent to it).
    let far = r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: far}
spec:
  gatewayClassName: weft
  addresses: [{type: IPAddress, value: 192.0.2.55}]
  listeners: [{name: http, port: 8080, protocol: HTTP}]
"#;
    // A static address weft can bind, and an address entry with no value
    // (the default address is assigned).
    let near = r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: near}
spec:
  gatewayClassName: weft
  addresses: [{type: IPAddress, value: 127.0.42.2}]
  listeners: [{name: http, port: 8080, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: empty}
spec:
  gatewayClassName: weft
  addresses: [{type: IPAddress}]
  listeners: [{name: http, port: 8081, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: on-both}
spec:
  parentRefs: [{name: near}, {name: empty}]
  rules: [{backendRefs: [{name: v2, port: 80}]}]
"#;
    let weft = Weft::up(
        ip,
        &[
            ("base.yaml", &base(ip)),
            ("far.yaml", far),
            ("near.yaml", near),
            ("r.yaml", &route("r", "a.example.com", "v1")),
        ],
    );
    let c = client(&[]);
    let url = format!("http://{ip}:8080/");
    eventually(Duration::from_secs(20), "gw serves", || async {
        get(&c, &url, "a.example.com").await.0 == 200
    })
    .await;

    let class = weft.item("GatewayClass", "weft").await;
    assert!(class["metadata"].get("namespace").is_none(), "{class}");
    assert_eq!(class["status"]["conditions"][0]["type"], "Accepted");

    eventually(
        Duration::from_secs(5),
        "far is AddressNotUsable",
        || async {
            let far = weft.item("Gateway", "far").await;
            far["status"]["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| {
                    c["type"] == "Programmed"
                        && c["status"] == "False"
                        && c["reason"] == "AddressNotUsable"
                })
        },
    )
    .await;
    let far = weft.item("Gateway", "far").await;
    assert_eq!(far["status"]["addresses"], serde_json::json!([]), "{far}");
    // Traffic to the static address, and to the one assigned.
    for (gateway, addr) in [("near", "127.0.42.2:8080"), ("empty", "127.0.42.1:8081")] {
        let url = format!("http://{addr}/");
        eventually(Duration::from_secs(10), gateway, || async {
            get(&c, &url, "any.example.com").await.1["pod"] == "v2"
        })
        .await;
        let item = weft.item("Gateway", gateway).await;
        let (ip, _) = addr.split_once(':').unwrap();
        assert_eq!(
            item["status"]["addresses"],
            serde_json::json!([{"type": "IPAddress", "value": ip}]),
            "{item}"
        );
    }
    let gw = weft.item("Gateway", "gw").await;
    assert_eq!(
        gw["status"]["addresses"][0],
        serde_json::json!({"type": "IPAddress", "value": ip})
    );
    let listener = &gw["status"]["listeners"][0];
    assert_eq!(listener["name"], "http");
    assert_eq!(listener["attachedRoutes"], 1);
    assert_eq!(
        listener["supportedKinds"][0],
        serde_json::json!({"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"})
    );

    let r = weft.item("HTTPRoute", "r").await;
    let parent = &r["status"]["parents"][0];
    assert_eq!(
        parent["parentRef"],
        serde_json::json!({"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"})
    );
    assert_eq!(parent["controllerName"], "weft.dev/gateway-controller");
    assert_eq!(r["metadata"]["generation"], 1);

    // A spec change bumps the generation; a reformatted file does not.
    weft.write("r.yaml", &route("r", "b.example.com", "v1"));
    eventually(Duration::from_secs(2), "generation 2", || async {
        let r = weft.item("HTTPRoute", "r").await;
        r["metadata"]["generation"] == 2
            && r["status"]["parents"][0]["conditions"][0]["observedGeneration"] == 2
    })
    .await;
    let digest = || async {
        let status = weft.status().await;
        status["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["file"].as_str().unwrap().ends_with("/r.yaml"))
            .map(|f| f["digest"].clone())
            .unwrap()
    };
    let before = digest().await;
    weft.write(
        "r.yaml",
        &format!(
            "# reformatted\n{}",
            route("r", "b.example.com", "v1").replace(": ", ":  ")
        ),
    );
    eventually(
        Duration::from_secs(5),
        "the reformatted file is read",
        || async { digest().await != before },
    )
    .await;
    assert_eq!(
        weft.item("HTTPRoute", "r").await["metadata"]["generation"],
        2
    );
    assert_eq!(
        get(&c, &url, "b.example.com").await.0,
        200,
        "gw keeps serving next to an unusable Gateway"
    );
}

/// Sends raw bytes to the gateway and returns the status code it answers
/// (0 when it closes without a status line).
fn raw(addr: &str, request: &[u8]) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(request);
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap_or(0);
    let head = String::from_utf8_lossy(&buf[..n]);
    head.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_4xx_and_never_reach_a_backend() {
    let ip = "127.0.43.1";
    // The backend is this test's own socket, counting connections.
    let backend = tokio::net::TcpListener::bind(format!("{ip}:0"))
        .await
        .unwrap();
    let port = backend.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = backend.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = vec![0u8; 65536];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
            });
        }
    });
    let manifests = format!("{}---\n{}", base(ip), slice_service("raw", ip, port, None));
    let weft = Weft::up(
        ip,
        &[
            ("base.yaml", &manifests),
            ("r.yaml", &route("r", "raw.example.com", "raw")),
        ],
    );
    let addr = format!("{ip}:8080");
    let c = client(&[]);
    eventually(Duration::from_secs(20), "the route is live", || async {
        weft.item("HTTPRoute", "r").await["status"]["parents"][0]["conditions"][0]["status"]
            == "True"
            && c.get(format!("http://{addr}/"))
                .header("host", "nothing.example.com")
                .send()
                .await
                .is_ok()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let huge = format!(
        "GET / HTTP/1.1\r\nHost: raw.example.com\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let smuggle = "POST / HTTP/1.1\r\nHost: raw.example.com\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde";
    let garbage = "\x16\x03\x01 not http at all\r\n\r\n";
    for (what, req) in [
        ("oversized header", huge.as_str()),
        ("two Content-Lengths", smuggle),
        ("garbage", garbage),
    ] {
        let code = raw(&addr, req.as_bytes());
        eprintln!("{what}: {code}");
        assert!(
            (400..500).contains(&code) || code == 0,
            "{what}: got {code}"
        );
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "a hostile request reached the backend"
    );
    let ok = raw(
        &addr,
        b"GET / HTTP/1.1\r\nHost: raw.example.com\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(ok, 200);
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    drop(weft);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_one_of_three_endpoints_under_load_fails_no_request() {
    let ip = "127.0.44.1";
    let workloads: String = (1..=3)
        .map(|i| {
            format!(
                "---\napiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata: {{name: echo-{i}, labels: {{app: echo}}}}\nspec:\n  command: [weft, echo, --listen, \"127.0.44.{i}:9000\"]\n  address: 127.0.44.{i}\n  ports: [{{name: http, containerPort: 9000}}]\n"
            )
        })
        .collect();
    let service = "---\napiVersion: v1\nkind: Service\nmetadata: {name: echo}\nspec:\n  selector: {app: echo}\n  ports: [{name: http, port: 80, targetPort: http}]\n";
    let manifests = format!("{}{workloads}{service}", base(ip));
    let weft = Weft::up(
        ip,
        &[
            ("base.yaml", &manifests),
            ("r.yaml", &route("r", "echo.example.com", "echo")),
        ],
    );
    let c = client(&[]);
    let url = format!("http://{ip}:8080/");
    eventually(Duration::from_secs(20), "all three serve", || async {
        let mut pods = std::collections::BTreeSet::new();
        for _ in 0..9 {
            if let (200, body) = get(&c, &url, "echo.example.com").await {
                pods.insert(body["pod"].as_str().unwrap_or("").to_string());
            }
        }
        pods.len() == 3
    })
    .await;

    let load = Load::start(&c, &url, "echo.example.com", 4, |status, _| status == 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = pid_of("127.0.44.2:9000").expect("echo-2 runs");
    // SAFETY: kill(2) on a process this test's weft started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (ok, failed) = load.stop().await;
    assert!(
        std::fs::metadata(format!("/proc/{pid}")).is_err(),
        "the killed process is gone (and was reaped) while the load ran"
    );
    assert!(ok > 100, "only {ok} requests");
    assert_eq!(failed, 0, "{failed} of {} requests failed", ok + failed);
    drop(weft);
}
