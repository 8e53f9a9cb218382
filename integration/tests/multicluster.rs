//! Clusters linked into a cluster set on one network, each a `weft up` of
//! its own with a CA under one shared root (each its own intermediate),
//! peering over mutual TLS: a caller in east reaches
//! `reviews.shop.svc.clusterset.local`, its own cluster's endpoints first
//! and west's (pod to pod) when none of its own is usable, with its
//! identity checked end to end by west's sidecar; a cluster of a foreign
//! root is refused peering; and the example (two networks) runs as its
//! README says. `multicluster_networks.rs` covers east-west gateways.

mod support;
use std::time::Duration;
use support::clusterset::*;
use support::netns;
use support::pki::{cacerts, intermediate};
use support::*;

/// Same network: east's productpage calls reviews by its clusterset name;
/// east's own endpoint takes every call; SIGKILLed, west's takes them
/// with no failed call, and west's sidecar sees productpage's identity;
/// restarted, east's takes them again. ServiceImport and link status show
/// in `/status`.
#[tokio::test]
async fn same_network_peers_go_pod_to_pod_local_first_and_fail_over() {
    let root = pki::ca();
    let url = "http://reviews.shop.svc.clusterset.local:9080/";
    let east_files = format!(
        "{}\n---\n{}{}{}{}",
        cacerts(&root, &intermediate(&root, "east")),
        shop("east", "127.0.140.11", ""),
        caller("productpage", "127.0.140.10", &[url]),
        link("west", "net1", "127.0.141.1:15012", "5m"),
        link("rogue", "net1", "127.0.142.1:15012", "5m"),
    );
    // A cluster with a CA of its own (another root), linked both ways all
    // the same: its exports must never arrive.
    let rogue_files = format!(
        "{}{}",
        shop("rogue", "127.0.142.11", ""),
        link("east", "net1", "127.0.140.1:15012", "5m"),
    );
    let west_files = format!(
        "{}\n---\n{}{}",
        cacerts(&root, &intermediate(&root, "west")),
        shop("west", "127.0.141.11", ""),
        link("east", "net1", "127.0.140.1:15012", "5m"),
    );
    let args = |cluster: &'static str, peering: &'static str| {
        [
            "--cluster",
            cluster,
            "--network",
            "net1",
            "--peering",
            peering,
        ]
    };
    let east = Weft::up_with(
        "127.0.140.1",
        &[("all.yaml", &east_files)],
        &args("east", "127.0.140.1:15012"),
    );
    let _west = Weft::up_with(
        "127.0.141.1",
        &[("all.yaml", &west_files)],
        &args("west", "127.0.141.1:15012"),
    );
    let rogue = Weft::up_with(
        "127.0.142.1",
        &[("all.yaml", &rogue_files)],
        &args("rogue", "127.0.142.1:15012"),
    );
    let c = client(&[]);
    let page = "http://127.0.140.10:9080/";
    eventually(Duration::from_secs(30), "the link connects", || async {
        condition(&east.item("ClusterLink", "west").await, "Connected") == "True/Connected"
    })
    .await;
    // The foreign root fails the handshake both ways: each side's link
    // stays unconnected, with why.
    for (weft, name) in [(&east, "rogue"), (&rogue, "east")] {
        eventually(
            Duration::from_secs(20),
            "the rogue link is refused",
            || async {
                let item = weft.item("ClusterLink", name).await;
                let connected = condition(&item, "Connected");
                let message = item["status"]["conditions"][1]["message"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                connected == "False/Connecting" && !message.is_empty()
            },
        )
        .await;
    }
    let import = east.item("ServiceImport", "reviews").await;
    assert_eq!(
        import["status"]["clusters"],
        serde_json::json!([{"cluster": "east"}, {"cluster": "west"}]),
        "{import}"
    );
    // Once productpage's sidecar knows west's endpoint, an answer from
    // east's means east's is healthy (a call at start-up may have found
    // its sidecar not yet up and ejected it for a while).
    eventually(
        Duration::from_secs(30),
        "productpage's sidecar knows west",
        || async {
            calls(&c, page, 1).await;
            knows("http://127.0.140.10:15020", "127.0.141.11:15006").await
        },
    )
    .await;
    eventually(
        Duration::from_secs(30),
        "productpage calls east's reviews",
        || async { calls(&c, page, 1).await[0].pod == "reviews-east" },
    )
    .await;
    for p in calls(&c, page, 20).await {
        assert_eq!(
            (p.status, p.call, p.pod.as_str()),
            (200, 200, "reviews-east")
        );
    }
    // Continuous calls while east's one endpoint is SIGKILLed: none fails,
    // and west's takes over.
    let load = {
        let c = c.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let start = std::time::Instant::now();
            while start.elapsed() < Duration::from_secs(3) {
                seen.extend(calls(&c, page, 1).await);
            }
            seen
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = pid_of("127.0.140.11:9080").expect("east's reviews runs");
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let seen = load.await.unwrap();
    assert!(seen.len() > 20, "{}", seen.len());
    failed_over(&seen, false);
    // East's reviews is restarted by weft up; once its ejection ends,
    // calls go home.
    eventually(Duration::from_secs(20), "calls return to east", || async {
        calls(&c, page, 5)
            .await
            .iter()
            .all(|p| p.pod == "reviews-east")
    })
    .await;
}

/// `examples/multicluster/up.sh` as its README runs it: productpage in
/// east reaches reviews at home and ratings in west (through west's
/// east-west gateway, as itself); SIGTERM stops both clusters and removes
/// the namespaces.
#[tokio::test]
async fn the_example_brings_up_two_linked_clusters() {
    if !netns::available() {
        return cannot_run("root, ip, iptables, setpriv, curl and openssl are needed");
    }
    let work = tempfile::tempdir().unwrap();
    let prefix = format!("weft-mcx{}", std::process::id() % 100_000);
    let script = format!(
        "{}/../examples/multicluster/up.sh",
        env!("CARGO_MANIFEST_DIR")
    );
    /// The script, stopped as Ctrl-C would when dropped.
    struct Up(std::process::Child);
    impl Drop for Up {
        fn drop(&mut self) {
            unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM) };
            let _ = self.0.wait();
        }
    }
    let mut up = Up(std::process::Command::new("bash")
        .arg(&script)
        .env("WEFT", WEFT)
        .env("PREFIX", &prefix)
        .env("WORK", work.path())
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap());
    let east = format!("{prefix}-east");
    let file = format!("/var/run/netns/{east}");
    eventually(
        Duration::from_secs(20),
        "the script makes its namespaces",
        || async { std::path::Path::new(&file).exists() },
    )
    .await;
    let call = {
        let east = east.clone();
        move || {
            let east = east.clone();
            async move {
                within(&east, || async {
                    get(&client(&[]), "http://127.0.60.10:9080/", "productpage")
                        .await
                        .1
                })
                .await
            }
        }
    };
    // Both answer, with west's endpoints (reviews' and ratings') known to
    // productpage's sidecar before the call (then an answer from east's
    // reviews means east's is healthy; see above). A call made before
    // the config came can find ratings unknown yet.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let body = loop {
        let known = within(&east, || async {
            let admin = "http://127.0.60.10:15020";
            knows(admin, "127.0.61.11:15006").await && knows(admin, "127.0.61.12:15006").await
        })
        .await;
        let body = call().await;
        if known && body["calls"][0]["body"]["pod"] == "reviews-east" {
            break body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "productpage reaches both: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(body["calls"][0]["body"]["pod"], "reviews-east", "{body}");
    assert_eq!(body["calls"][1]["body"]["pod"], "ratings", "{body}");
    let xfcc = &body["calls"][1]["body"]["headers"]["X-Forwarded-Client-Cert"][0];
    assert!(
        xfcc.as_str()
            .unwrap_or("")
            .contains("URI=spiffe://cluster.local/ns/shop/sa/productpage"),
        "{body}"
    );
    unsafe { libc::kill(up.0.id() as libc::pid_t, libc::SIGTERM) };
    let status = up.0.wait().unwrap();
    assert!(status.success() || status.code() == Some(143), "{status:?}");
    let left = netns::run("ip", &["netns", "list"]);
    assert!(!String::from_utf8_lossy(&left.stdout).contains(&prefix));
}
