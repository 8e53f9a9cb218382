//! The bookinfo example as shipped: `weft up` runs the CA, a sidecar per
//! workload and the ingress gateway; productpage's plain HTTP calls go over
//! mutual TLS through the sidecars, the callee learns the caller's SPIFFE
//! ID, the GAMMA route splits reviews by weight, and a STRICT sidecar
//! refuses plaintext; every sidecar's certificate (2 s lifetimes) rotates
//! several times under load with no failed call.

mod support;
use std::collections::BTreeMap;
use std::time::Duration;
use support::*;

/// Conformance: Mesh, Mesh/HTTPRoute
#[tokio::test]
async fn bookinfo_runs_over_mutual_tls_with_gamma_weights() {
    let ip = "127.0.12.1";
    let dir = example("bookinfo", &[("127.0.10.", "127.0.112.")]);
    let mut weft = Weft::start_in(None, dir.path(), ip, &[], &["--cert-ttl-seconds", "2"]);
    let c = client(&[]);
    let url = format!("http://{ip}:9080/");
    let page = || async {
        let (status, body) = get(&c, &url, "bookinfo.example.com").await;
        let ok = status == 200
            && body["calls"]
                .as_array()
                .is_some_and(|calls| calls.iter().all(|c| c["status"] == 200));
        ok.then_some(body)
    };
    eventually(
        Duration::from_secs(30),
        "productpage and its calls succeed",
        || async { page().await.is_some() },
    )
    .await;

    let body = page().await.unwrap();
    assert_eq!(body["pod"], "productpage");
    assert_eq!(
        body["headers"]["X-Forwarded-Client-Cert"],
        serde_json::json!(["URI=spiffe://cluster.local/ns/bookinfo/sa/bookinfo"]),
        "the gateway reaches productpage through its sidecar, with an identity of its own"
    );
    let details = &body["calls"][0]["body"];
    assert_eq!(details["pod"], "details");
    assert_eq!(
        details["headers"]["X-Forwarded-Client-Cert"],
        serde_json::json!(["URI=spiffe://cluster.local/ns/bookinfo/sa/productpage"]),
        "details learns who called it from the mutual TLS handshake"
    );

    // Pages without pause for at least 3 s — several lifetimes of a 2 s
    // certificate, so every sidecar rotates under load — and at least 200
    // of them for the weights. Not one page or call may fail.
    let sidecars: Vec<String> = (1..=5).map(|i| format!("127.0.112.{i}")).collect();
    let renewals = || async {
        let mut out = Vec::new();
        for ip in &sidecars {
            let dump: serde_json::Value = client(&[])
                .get(format!("http://{ip}:15020/config_dump"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert!(
                !dump.to_string().contains("PRIVATE KEY"),
                "{ip}: a key in /config_dump"
            );
            out.push(dump["certificate"]["renewals"].as_u64().expect("renewals"));
        }
        out
    };
    let before = renewals().await;
    let started = std::time::Instant::now();
    let mut versions: BTreeMap<String, u32> = BTreeMap::new();
    let mut pages = 0;
    while pages < 200 || started.elapsed() < Duration::from_secs(3) {
        let body = page().await.expect("every page and call succeeds");
        if pages < 200 {
            let pod = body["calls"][1]["body"]["pod"]
                .as_str()
                .unwrap()
                .to_string();
            *versions.entry(pod).or_default() += 1;
        }
        pages += 1;
    }
    let after = renewals().await;
    for ((ip, b), a) in sidecars.iter().zip(&before).zip(&after) {
        assert!(
            a >= &(b + 2),
            "{ip}: {b} renewals before the load, {a} after"
        );
    }
    // 50/30/20 of 200, within about 4 standard deviations.
    let n = |v: &str| versions.get(v).copied().unwrap_or(0);
    assert!((72..=128).contains(&n("reviews-v1")), "{versions:?}");
    assert!((34..=86).contains(&n("reviews-v2")), "{versions:?}");
    assert!((17..=63).contains(&n("reviews-v3")), "{versions:?}");

    // A STRICT sidecar refuses plaintext.
    let plain = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    assert!(plain
        .get("http://127.0.112.2:15006/details/0")
        .send()
        .await
        .is_err());

    // Only productpage may call reviews: the reviews sidecars allowed
    // every call by the policy's rule; naming another caller in the
    // policy refuses productpage, live.
    let metrics = text_of("http://127.0.112.3:15020/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("weft_policy_requests_total{")
                && l.contains(r#"decision="allow""#)
                && l.contains(r#"reason="allowed_by_rule""#)),
        "{metrics}"
    );
    let policy = std::fs::read_to_string(dir.path().join("authorization.yaml")).unwrap();
    weft.write(
        "authorization.yaml",
        &policy.replace("name: productpage}", "name: details}"),
    );
    eventually(
        Duration::from_secs(20),
        "reviews refuses productpage",
        || async {
            let (status, body) = get(&c, &url, "bookinfo.example.com").await;
            status == 200 && body["calls"][1]["status"] == 403
        },
    )
    .await;

    weft.sigterm();
    assert!(weft.child.wait().unwrap().success());
}
