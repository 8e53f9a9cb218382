//! Two clusters on two networks, each a `weft up` in a network namespace
//! of its own, joined by one link on which west's east-west gateway and
//! both peering ports listen: calls, whole connections and failover cross
//! through the gateway with the caller's identity end to end; the gateway
//! forwards to exported endpoints only, to callers of the set's root whom
//! its AuthorizationPolicy allows; a lost peer's imports last the grace
//! period; metrics carry principals and clusters.

mod support;
use std::time::Duration;
use support::clusterset::*;
use support::netns;
use support::pki::{cacerts, intermediate};
use support::*;

/// An ingress Gateway with a TCP listener on 9000 whose TCPRoute sends
/// whole connections to the ServiceImport ratings: through the east-west
/// gateway too when ratings is on another network.
const TCP_EDGE: &str = r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: weft}
spec: {controllerName: weft.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: tcp-edge, namespace: shop}
spec:
  gatewayClassName: weft
  listeners: [{name: tcp, port: 9000, protocol: TCP}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: ratings-tcp, namespace: shop}
spec:
  parentRefs: [{name: tcp-edge}]
  rules: [{backendRefs: [{group: multicluster.x-k8s.io, kind: ServiceImport, name: ratings, port: 9080}]}]
"#;

/// Two networks, each cluster in a network namespace of its own, joined
/// only by one link on which west's east-west gateway and both peering
/// ports listen. East's productpage calls reviews (in both clusters) and
/// ratings (west's alone) by their clusterset names:
/// - a TCPRoute to the ratings import crosses too, a whole connection;
/// - reviews stays home; its one endpoint SIGKILLed under continuous
///   calls, west's takes them through the gateway with none failing, and
///   west's app sees productpage's own identity; then calls go home;
/// - the gateway counts the tunnels by the caller's principal;
/// - a hand-made tunnel to a Service west does not export, or anywhere
///   else, is 403; to an exported endpoint, 200; an identity the
///   gateway's AuthorizationPolicy denies, 403; a certificate of another
///   root fails the handshake;
/// - the peering port blocked: the link is lost, ratings still answers on
///   the last imports until the grace period ends, then not; unblocked,
///   the link and the calls come back.
#[tokio::test]
async fn other_networks_are_reached_through_the_east_west_gateway() {
    if !netns::available() {
        return cannot_run("root, ip, iptables, setpriv, curl and openssl are needed");
    }
    let (east_ns, west_ns) = (netns::Netns::bare("mce"), netns::Netns::bare("mcw"));
    east_ns.link("10.254.3.1", &west_ns, "10.254.3.2");
    let root = pki::ca();
    let (east_ca, west_ca) = (intermediate(&root, "east"), intermediate(&root, "west"));
    let calls_to = [
        "http://reviews.shop.svc.clusterset.local:9080/",
        "http://ratings.shop.svc.clusterset.local:9080/",
    ];
    let east_files = format!(
        "{}\n---\n{}{}---\napiVersion: weft.dev/v1alpha1\nkind: ClusterLink\nmetadata: {{name: west, namespace: weft-system}}\nspec: {{cluster: west, network: net-west, peering: \"10.254.3.2:15012\", gateways: [\"10.254.3.2:15443\"], importGracePeriod: 6s}}\n",
        cacerts(&root, &east_ca),
        shop("east", "127.0.150.11", TCP_EDGE),
        caller("productpage", "127.0.150.10", &calls_to),
    );
    let west_extra = format!(
        "{}{}{}",
        service("ratings", "127.0.151.12", true),
        service("secret", "127.0.151.13", false),
        east_west_gateway("10.254.3.2"),
    );
    let west_files = format!(
        "{}\n---\n{}{}",
        cacerts(&root, &west_ca),
        shop("west", "127.0.151.11", &west_extra),
        link("east", "net-east", "10.254.3.1:15012", "5m"),
    );
    let dir = |files: &str| {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("all.yaml"), files).unwrap();
        d
    };
    let (east_dir, west_dir) = (dir(&east_files), dir(&west_files));
    let east = Weft::start_in(
        Some(&east_ns.name),
        east_dir.path(),
        "127.0.150.1",
        &[],
        &[
            "--cluster",
            "east",
            "--network",
            "net-east",
            "--peering",
            "10.254.3.1:15012",
        ],
    );
    let west = Weft::start_in(
        Some(&west_ns.name),
        west_dir.path(),
        "127.0.151.1",
        &[],
        &[
            "--cluster",
            "west",
            "--network",
            "net-west",
            "--peering",
            "10.254.3.2:15012",
        ],
    );
    let east_link = || item_in(&east_ns.name, east.admin, "ClusterLink", "west");
    eventually(Duration::from_secs(30), "the link connects", || async {
        condition(&east_link().await, "Connected") == "True/Connected"
    })
    .await;

    // Pages of productpage (reviews, then ratings), asked inside east.
    let east_name = east_ns.name.clone();
    // `n` calls, or as many as `for_ms` allows when it is not zero.
    let page_for = move |n: usize, for_ms: u64| {
        let east_name = east_name.clone();
        async move {
            within(&east_name, move || async move {
                let c = client(&[]);
                let mut out = Vec::new();
                let start = std::time::Instant::now();
                while out.len() < n || start.elapsed() < Duration::from_millis(for_ms) {
                    out.push(Page::get(&c, "http://127.0.150.10:9080/").await);
                }
                out
            })
            .await
        }
    };
    let page = |n: usize| page_for(n, 0);
    // As on one network: once productpage's sidecar knows west's
    // endpoint, an answer from east's means east's is healthy.
    eventually(
        Duration::from_secs(30),
        "productpage's sidecar knows west",
        || async {
            page(1).await;
            within(&east_ns.name, || {
                knows("http://127.0.150.10:15020", "127.0.151.11:15006")
            })
            .await
        },
    )
    .await;
    eventually(
        Duration::from_secs(30),
        "productpage calls both",
        || async {
            let c = &page(1).await[0];
            c.pod == "reviews-east" && c.second == 200
        },
    )
    .await;
    for c in page(10).await {
        assert_eq!(
            (c.status, c.call, c.pod.as_str(), c.second),
            (200, 200, "reviews-east", 200),
            "{c:?}"
        );
    }

    // A whole TCP connection to the ratings import, from east's ingress
    // gateway through west's east-west gateway.
    let tcp = within(&east_ns.name, || async {
        get(&client(&[]), "http://127.0.150.1:9000/", "ratings").await
    })
    .await;
    assert_eq!(
        (tcp.0, tcp.1["pod"].as_str()),
        (200, Some("ratings")),
        "{tcp:?}"
    );

    // Failover across networks under continuous calls.
    let load = tokio::spawn(page_for(0, 3000));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = pid_of("127.0.150.11:9080").expect("east's reviews runs");
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let seen = load.await.unwrap();
    failed_over(&seen, true);
    eventually(Duration::from_secs(20), "calls return home", || async {
        page(5).await.iter().all(|c| c.pod == "reviews-east")
    })
    .await;

    // The gateway counts tunnels by the caller's principal.
    let gw_admin = west.gateway_admins[0].clone();
    let metrics = within(&west_ns.name, move || async move {
        text_of(&format!("{gw_admin}/metrics")).await
    })
    .await;
    let opened = metrics.lines().find(|l| {
        l.starts_with("weft_tunnels_total")
            && l.contains("source_principal=\"spiffe://cluster.local/ns/shop/sa/productpage\"")
            && l.contains("destination_service=\"reviews.shop.svc.cluster.local\"")
            && l.contains("result=\"opened\"")
    });
    assert!(opened.is_some(), "{metrics}");
    // Istio's cluster labels: productpage's sidecar saw the call go to
    // west; reviews-west's saw it come from east.
    let has = |text: &str, parts: &[&str]| {
        text.lines()
            .any(|l| l.starts_with("istio_requests_total{") && parts.iter().all(|p| l.contains(p)))
    };
    let source = within(&east_ns.name, || {
        text_of("http://127.0.150.10:15020/metrics")
    })
    .await;
    let want = [
        "reporter=\"source\"",
        "source_cluster=\"east\"",
        "destination_cluster=\"west\"",
        "destination_service=\"reviews.shop.svc.clusterset.local\"",
    ];
    assert!(has(&source, &want), "{source}");
    let destination = within(&west_ns.name, || {
        text_of("http://127.0.151.11:15020/metrics")
    })
    .await;
    let want = [
        "reporter=\"destination\"",
        "source_cluster=\"east\"",
        "destination_cluster=\"west\"",
        "source_principal=\"spiffe://cluster.local/ns/shop/sa/productpage\"",
    ];
    assert!(has(&destination, &want), "{destination}");

    // Hand-made tunnels, from inside east.
    let gateway: std::net::SocketAddr = "10.254.3.2:15443".parse().unwrap();
    let leaf = |ca: &pki::Ca, sa: &str| {
        let (cert, key) = pki::issue(
            ca,
            &[],
            &[&format!("spiffe://cluster.local/ns/shop/sa/{sa}")],
        );
        (format!("{cert}{}", ca.pem), key)
    };
    let tries = [
        (leaf(&east_ca, "productpage"), "127.0.151.11:15006", Ok(200)),
        (leaf(&east_ca, "productpage"), "127.0.151.13:15006", Ok(403)),
        (leaf(&east_ca, "productpage"), "127.0.0.1:15000", Ok(403)),
        (
            leaf(&east_ca, "productpage"),
            "reviews.shop.svc.cluster.local:9080",
            Ok(403),
        ),
        (leaf(&east_ca, "intruder"), "127.0.151.11:15006", Ok(403)),
    ];
    for (cert, target, want) in tries {
        let (root_pem, target) = (root.pem.clone(), target.to_string());
        let got = within(&east_ns.name, move || {
            connect(gateway, cert, root_pem, target)
        })
        .await;
        assert_eq!(got, want);
    }
    let foreign = pki::ca();
    let cert = leaf(&foreign, "productpage");
    let root_pem = root.pem.clone();
    let got = within(&east_ns.name, move || {
        connect(gateway, cert, root_pem, "127.0.151.11:15006".into())
    })
    .await;
    assert!(
        got.as_ref()
            .is_err_and(|e| e.starts_with("TLS") || e.starts_with("h2")),
        "{got:?}"
    );

    // The peering port blocked (connections reset): the link is lost and
    // west-only ratings keeps answering on the last imports, until the
    // grace period (6s) ends.
    let block = [
        "-A",
        "INPUT",
        "-p",
        "tcp",
        "--dport",
        "15012",
        "-j",
        "REJECT",
        "--reject-with",
        "tcp-reset",
    ];
    let rule = |op: &str| {
        let mut args = vec!["iptables".to_string()];
        args.extend(block.iter().map(|s| s.to_string()));
        args[1] = op.to_string();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = west_ns.exec(None, &args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    rule("-A");
    eventually(Duration::from_secs(20), "the link is lost", || async {
        condition(&east_link().await, "Connected") == "False/Lost"
    })
    .await;
    for c in page(5).await {
        assert_eq!(c.second, 200, "ratings on the last imports: {c:?}");
    }
    eventually(
        Duration::from_secs(20),
        "the imports go after the grace period",
        || async { page(1).await[0].second != 200 },
    )
    .await;
    rule("-D");
    eventually(Duration::from_secs(30), "the link recovers", || async {
        condition(&east_link().await, "Connected") == "True/Connected"
            && page(1).await[0].second == 200
    })
    .await;
}
