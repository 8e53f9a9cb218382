//! Editing the folder under a running `weft up`: changes apply within a
//! second with no restart, removed files take their objects away, a broken
//! file keeps its last good objects, and route edits every 100 ms under
//! continuous traffic fail no request.

mod support;
use std::time::Duration;
use support::*;

#[tokio::test]
async fn edits_apply_live_and_bad_files_change_nothing() {
    let ip = "127.0.31.1";
    let weft = Weft::up(
        ip,
        &[
            ("base.yaml", &base(ip)),
            ("route.yaml", &route("r", "app.example.com", "v1")),
        ],
    );
    let c = client(&[]);
    let url = format!("http://{ip}:8080/");
    eventually(Duration::from_secs(20), "v1 serves", || async {
        get(&c, &url, "app.example.com").await.1["pod"] == "v1"
    })
    .await;

    // Point the route at v2: live within a second.
    weft.write("route.yaml", &route("r", "app.example.com", "v2"));
    eventually(Duration::from_secs(1), "the edit applies", || async {
        get(&c, &url, "app.example.com").await.1["pod"] == "v2"
    })
    .await;

    // A malformed file is reported and changes nothing that runs.
    weft.write(
        "broken.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: [oops\n",
    );
    weft.write("route.yaml", "kind: HTTPRoute\napiVersion: gateway.networking.k8s.io/v1\nmetadata: {name: r}\nspec: {rules: [{backendRefs: 7}]}\n");
    eventually(Duration::from_secs(2), "problems are reported", || async {
        weft.status().await["problems"]
            .as_array()
            .is_some_and(|p| p.len() >= 2)
    })
    .await;
    let problems = weft.status().await["problems"].to_string();
    assert!(
        problems.contains("broken.yaml") && problems.contains("route.yaml"),
        "{problems}"
    );
    for _ in 0..20 {
        assert_eq!(
            get(&c, &url, "app.example.com").await.1["pod"],
            "v2",
            "the last good route keeps serving"
        );
    }

    // Removing the file removes the route and its status.
    std::fs::remove_file(weft.path("route.yaml")).unwrap();
    eventually(Duration::from_secs(1), "the route goes away", || async {
        get(&c, &url, "app.example.com").await.0 == 404
    })
    .await;
    let status = weft.status().await;
    let routes = status["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["kind"] == "HTTPRoute")
        .count();
    assert_eq!(routes, 0, "{status}");
}

#[tokio::test]
async fn route_edits_every_100ms_fail_no_request() {
    let ip = "127.0.32.1";
    let weft = Weft::up(
        ip,
        &[
            ("base.yaml", &base(ip)),
            ("route.yaml", &route("r", "app.example.com", "v1")),
        ],
    );
    let c = client(&[]);
    let url = format!("http://{ip}:8080/");
    eventually(Duration::from_secs(20), "both versions serve", || async {
        get(&c, &url, "app.example.com").await.0 == 200
            && reqwest::get(format!("http://{ip}:9002/")).await.is_ok()
    })
    .await;

    let load = Load::start(&c, &url, "app.example.com", 4, |status, body| {
        status == 200 && (body["pod"] == "v1" || body["pod"] == "v2")
    });
    let mut seen_v2 = false;
    for i in 0..30 {
        let backend = if i % 2 == 0 { "v2" } else { "v1" };
        weft.write("route.yaml", &route("r", "app.example.com", backend));
        tokio::time::sleep(Duration::from_millis(100)).await;
        seen_v2 |= get(&c, &url, "app.example.com").await.1["pod"] == "v2";
    }
    let (ok, failed) = load.stop().await;
    assert!(ok > 100, "only {ok} requests went through");
    assert_eq!(failed, 0, "{failed} of {} requests failed", ok + failed);
    assert!(seen_v2, "the edits took effect");
}
