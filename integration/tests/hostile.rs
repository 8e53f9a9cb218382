//! Hostile input against a running `weft up`, each followed by a normal
//! request that must still succeed: a YAML bomb and an oversized file in
//! the folder (each a problem in `/status`), more idle connections than the
//! listener's cap, slow-loris headers, a trickling backend, a forged XFCC
//! on a mirrored route, and config subscriptions for a Gateway's keys
//! without a certificate.

mod support;
use std::time::{Duration, Instant};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const IP: &str = "127.0.82.1";

fn routes(rec: u16) -> String {
    format!(
        r#"{svc}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: h}}
spec:
  parentRefs: [{{name: gw}}]
  hostnames: [h.example.com]
  rules:
  - matches: [{{path: {{value: /mirror}}}}]
    filters:
    - type: RequestMirror
      requestMirror: {{backendRef: {{name: rec, port: 80}}}}
    backendRefs: [{{name: v1, port: 80}}]
  - matches: [{{path: {{value: /trickle}}}}]
    timeouts: {{request: 1s}}
    backendRefs: [{{name: rec, port: 80}}]
  - backendRefs: [{{name: v1, port: 80}}]
"#,
        svc = slice_service("rec", IP, rec, None)
    )
}

/// A normal request: it must succeed whatever came before.
async fn normal(c: &reqwest::Client) -> (u16, Duration) {
    let started = Instant::now();
    let (status, _) = get(c, &format!("http://{IP}:8080/ok"), "h.example.com").await;
    (status, started.elapsed())
}

/// The `/status` problems about `file`.
async fn problems_of(weft: &Weft, file: &str) -> Vec<String> {
    weft.status().await["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["file"].as_str().unwrap_or("").ends_with(file))
        .map(|p| p["message"].as_str().unwrap_or("").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_never_takes_down_what_works() {
    let (rec, seen) = support::backends::recorder(IP).await;
    let base = base(IP).replace(
        "metadata: {name: gw}",
        "metadata: {name: gw, annotations: {weft.dev/max-connections: \"20\", weft.dev/request-header-timeout-seconds: \"2\"}}",
    );
    let weft = Weft::up(IP, &[("base.yaml", &base), ("routes.yaml", &routes(rec))]);
    let c = client(&[]);
    eventually(Duration::from_secs(20), "the gateway serves", || async {
        normal(&c).await.0 == 200
    })
    .await;

    // A YAML bomb: a long anchored string aliased many times (about 80 GB
    // expanded), and the classic nested one.
    let long = "x".repeat(500_000);
    let bomb = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: bomb}}\ndata:\n  s: &s {long}\n  t: [{}]\n",
        "*s,".repeat(160_000)
    );
    weft.write("bomb.yaml", &bomb);
    let mut nested = String::from("a: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n");
    for (prev, next) in "abcdefgh".chars().zip("bcdefghi".chars()) {
        nested.push_str(&format!(
            "{next}: &{next} [{}]\n",
            vec![format!("*{prev}"); 9].join(",")
        ));
    }
    weft.write("nested.yaml", &nested);
    eventually(
        Duration::from_secs(10),
        "both bombs are problems",
        || async {
            !problems_of(&weft, "/bomb.yaml").await.is_empty()
                && !problems_of(&weft, "/nested.yaml").await.is_empty()
        },
    )
    .await;
    assert_eq!(normal(&c).await.0, 200, "after the YAML bombs");

    // A file over the size cap.
    weft.write("huge.yaml", &format!("# {}\n", "y".repeat(9 << 20)));
    eventually(
        Duration::from_secs(10),
        "the oversized file is a problem",
        || async {
            problems_of(&weft, "/huge.yaml")
                .await
                .iter()
                .any(|p| p.contains("larger than"))
        },
    )
    .await;
    assert_eq!(normal(&c).await.0, 200, "after the oversized file");

    // More idle connections than the cap (20): a new request waits for a
    // slot until the idle ones are cut at the 2 s header deadline.
    let mut idle = Vec::new();
    for _ in 0..30 {
        idle.push(TcpStream::connect((IP, 8080)).await.unwrap());
    }
    let opened = Instant::now();
    // A new connection (a pooled one already holds its slot).
    let (status, _) = normal(&client(&[])).await;
    let waited = opened.elapsed();
    assert_eq!(status, 200, "after {waited:?}");
    assert!(
        waited >= Duration::from_millis(1500),
        "served after {waited:?}: the cap did not hold"
    );
    drop(idle);

    // Slow-loris: a header a byte at a time is cut at its deadline.
    let mut loris = TcpStream::connect((IP, 8080)).await.unwrap();
    loris.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    let started = Instant::now();
    let cut = loop {
        if started.elapsed() > Duration::from_secs(8) {
            break false;
        }
        if loris.write_all(b"X").await.is_err() {
            break true;
        }
        let mut buf = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(300), loris.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            _ => {}
        }
    };
    assert!(cut, "the slow header was not cut");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "cut after {:?}",
        started.elapsed()
    );
    assert_eq!(normal(&c).await.0, 200, "after slow-loris");

    // A trickling backend is cut at the route's 1 s deadline.
    let started = Instant::now();
    let (status, _) = get(&c, &format!("http://{IP}:8080/trickle"), "h.example.com").await;
    assert_eq!(status, 504, "after {:?}", started.elapsed());
    assert_eq!(normal(&c).await.0, 200, "after the trickling backend");

    // A forged XFCC on a mirrored route reaches neither backend nor mirror.
    let resp = c
        .get(format!("http://{IP}:8080/mirror"))
        .header("host", "h.example.com")
        .header(
            "x-forwarded-client-cert",
            "URI=spiffe://cluster.local/ns/x/sa/forged",
        )
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(
        body["headers"].get("X-Forwarded-Client-Cert").is_none(),
        "{body}"
    );
    eventually(
        Duration::from_secs(5),
        "the mirror gets its copy",
        || async {
            seen.lock()
                .unwrap()
                .iter()
                .any(|r| r.starts_with("GET /mirror"))
        },
    )
    .await;
    assert!(
        !seen.lock().unwrap().iter().any(|r| r.contains("forged")),
        "the mirror got the forged identity"
    );
    assert_eq!(normal(&c).await.0, 200, "after the forged XFCC");

    // A config subscription for the Gateway's keys without a certificate:
    // neither in plaintext nor over TLS does it get a config.
    let config = weft.config.expect("weft up prints its config server");
    let node = weft_api::wire::gateway_node("default", "gw");
    let hello = || {
        tokio_stream::iter([weft_api::wire::ConfigRequest {
            node: node.clone(),
            ..Default::default()
        }])
    };
    let got_config =
        |r: Result<Option<weft_api::wire::ConfigResponse>, tonic::Status>| matches!(r, Ok(Some(_)));
    if let Ok(mut plain) =
        weft_api::wire::ConfigDiscoveryClient::connect(format!("http://{config}")).await
    {
        let r = match plain.subscribe(hello()).await {
            Ok(s) => s.into_inner().message().await,
            Err(e) => Err(e),
        };
        assert!(!got_config(r), "a plaintext subscription got a config");
    }
    let bundle = std::fs::read_to_string(weft.state.path().join("trust-bundle.pem")).unwrap();
    let tls = weft_ca::tls::client_config(None, &[bundle]).unwrap();
    let server = weft_ca::SpiffeId::control_plane("cluster.local").unwrap();
    let channel = weft_ca::tls::channel(&config.to_string(), &server, tls).unwrap();
    let mut anonymous = weft_api::wire::ConfigDiscoveryClient::new(channel);
    let r = match anonymous.subscribe(hello()).await {
        Ok(s) => s.into_inner().message().await,
        Err(e) => Err(e),
    };
    assert!(
        !got_config(r),
        "a subscription without a certificate got a config"
    );
    assert_eq!(normal(&c).await.0, 200, "after the subscriptions");
    drop(weft);
}
