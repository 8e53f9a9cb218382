//! Clusters linked into a cluster set, each a `weft up` of its own with a
//! CA under one shared root (each its own intermediate), peering over
//! mutual TLS: a caller in east reaches `reviews.shop.svc.clusterset.local`,
//! its own cluster's endpoints first and west's when none of its own is
//! usable, with its identity checked end to end by west's sidecar; a peer
//! that is lost keeps its imports for the grace period; a link with a
//! foreign root never connects; other networks are reached through
//! east-west gateways; and the example runs as its README says.

mod support;
use std::time::Duration;
use support::netns;
use support::pki::{cacerts, intermediate};
use support::*;

/// A meshed namespace `shop` with a Service `reviews` (exported) whose
/// Workload `reviews-<cluster>` is on `ip`, and what else `extra` holds.
fn shop(cluster: &str, ip: &str, extra: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: shop, labels: {{weft.dev/mesh: enabled}}}}
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {{name: reviews-{cluster}, namespace: shop, labels: {{app: reviews}}}}
spec:
  serviceAccountName: reviews
  address: {ip}
  command: [weft, echo, --listen, "{ip}:9080"]
  ports: [{{name: http, containerPort: 9080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: reviews, namespace: shop}}
spec: {{selector: {{app: reviews}}, ports: [{{name: http, port: 9080, targetPort: http}}]}}
---
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceExport
metadata: {{name: reviews, namespace: shop}}
---
apiVersion: weft.dev/v1alpha1
kind: BackendTrafficPolicy
metadata: {{name: reviews, namespace: shop}}
spec:
  targetRefs: [{{group: "", kind: Service, name: reviews}}]
  healthCheck:
    passive: {{consecutiveGatewayErrors: 1, baseEjectionTime: 2s, maxEjectionPercent: 100}}
{extra}"#
    )
}

/// A Workload `name` in shop on `ip` calling each of `urls` for every
/// request.
fn caller(name: &str, ip: &str, urls: &[&str]) -> String {
    let calls: String = urls.iter().map(|u| format!(", --call, \"{u}\"")).collect();
    format!(
        r#"---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {{name: {name}, namespace: shop, labels: {{app: {name}}}}}
spec:
  serviceAccountName: {name}
  address: {ip}
  command: [weft, echo, --listen, "{ip}:9080"{calls}]
  ports: [{{name: http, containerPort: 9080}}]
"#
    )
}

/// A ClusterLink to `cluster` on `network`, its controller at `peering`.
fn link(cluster: &str, network: &str, peering: &str, grace: &str) -> String {
    format!(
        r#"---
apiVersion: weft.dev/v1alpha1
kind: ClusterLink
metadata: {{name: {cluster}, namespace: weft-system}}
spec: {{cluster: {cluster}, network: {network}, peering: "{peering}", importGracePeriod: {grace}}}
"#
    )
}

/// One page of productpage: its status, its first call's (status, the
/// pod that answered, the XFCC that pod saw), and its second call's status.
#[derive(Debug)]
struct Page {
    status: u16,
    call: u64,
    pod: String,
    xfcc: String,
    second: u64,
}

impl Page {
    async fn get(c: &reqwest::Client, url: &str) -> Page {
        let (status, body) = get(c, url, "productpage").await;
        let text = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
        let call = &body["calls"][0];
        Page {
            status,
            call: call["status"].as_u64().unwrap_or(0),
            pod: text(&call["body"]["pod"]),
            xfcc: text(&call["body"]["headers"]["X-Forwarded-Client-Cert"][0]),
            second: body["calls"][1]["status"].as_u64().unwrap_or(0),
        }
    }
}

/// Calls `url` (a caller's own port) `n` times.
async fn calls(c: &reqwest::Client, url: &str, n: usize) -> Vec<Page> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(Page::get(c, url).await);
    }
    out
}

/// Pages seen while this cluster's reviews was killed: every call
/// answered, some by west's reviews, whose app saw productpage's own
/// identity (west's sidecar verified productpage's certificate, issued
/// under east's intermediate).
fn failed_over(seen: &[Page], second: bool) {
    for p in seen {
        assert_eq!((p.status, p.call), (200, 200), "{seen:?}");
        assert!(!second || p.second == 200, "{seen:?}");
    }
    let west: Vec<_> = seen.iter().filter(|p| p.pod == "reviews-west").collect();
    assert!(!west.is_empty(), "{seen:?}");
    let me = "URI=spiffe://cluster.local/ns/shop/sa/productpage";
    assert!(west[0].xfcc.contains(me), "{:?}", west[0]);
}

fn condition(item: &serde_json::Value, type_: &str) -> String {
    item["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == type_))
        .map(|c| {
            format!(
                "{}/{}",
                c["status"].as_str().unwrap_or(""),
                c["reason"].as_str().unwrap_or("")
            )
        })
        .unwrap_or_default()
}

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
    // East's reviews answers once its sidecar is up (a call that came
    // before may have found it down and ejected it for a while).
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

/// The east-west gateway of west, on `ip`, and an AuthorizationPolicy on
/// it refusing the identity `intruder`.
fn east_west_gateway(ip: &str) -> String {
    format!(
        r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: weft}}
spec: {{controllerName: weft.dev/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: eastwest, namespace: weft-system}}
spec:
  gatewayClassName: weft
  addresses: [{{type: IPAddress, value: {ip}}}]
  listeners: [{{name: cross-network, port: 15443, protocol: weft.dev/EastWest}}]
---
apiVersion: weft.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {{name: no-intruders, namespace: weft-system}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: Gateway, name: eastwest}}]
  action: Deny
  rules: [{{sources: [{{type: SPIFFE, spiffe: "spiffe://cluster.local/ns/shop/sa/intruder"}}]}}]
"#
    )
}

/// A meshed Workload `name` (app and service account too) in shop on
/// `ip`, behind a Service of its name, exported when `exported`.
fn service(name: &str, ip: &str, exported: bool) -> String {
    let export = match exported {
        true => format!(
            "---\napiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceExport\nmetadata: {{name: {name}, namespace: shop}}\n"
        ),
        false => String::new(),
    };
    format!(
        r#"---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {{name: {name}, namespace: shop, labels: {{app: {name}}}}}
spec:
  serviceAccountName: {name}
  address: {ip}
  command: [weft, echo, --listen, "{ip}:9080"]
  ports: [{{name: http, containerPort: 9080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: shop}}
spec: {{selector: {{app: {name}}}, ports: [{{name: http, port: 9080, targetPort: http}}]}}
{export}"#
    )
}

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

/// Runs `f` (async) inside namespace `ns` on a runtime of its own.
async fn within<T, F, Fut>(ns: &str, f: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T>,
{
    let ns = ns.to_string();
    tokio::task::spawn_blocking(move || {
        netns::within_ns(&ns, move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(f())
        })
    })
    .await
    .unwrap()
}

/// An item of `/status` at `admin`, read inside `ns`.
async fn item_in(
    ns: &str,
    admin: std::net::SocketAddr,
    kind: &str,
    name: &str,
) -> serde_json::Value {
    let (kind, name) = (kind.to_string(), name.to_string());
    within(ns, move || async move {
        let status: serde_json::Value = client(&[])
            .get(format!("http://{admin}/status"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let items = status["items"].as_array().cloned().unwrap_or_default();
        items
            .into_iter()
            .find(|i| i["kind"] == kind.as_str() && i["metadata"]["name"] == name.as_str())
            .unwrap_or_default()
    })
    .await
}

/// A hand-made tunnel: mutual TLS to `gateway` as `cert` (chain, key),
/// then an HTTP/2 CONNECT to `target`: the status, or why the connection
/// failed.
async fn connect(
    gateway: std::net::SocketAddr,
    cert: (String, String),
    root: String,
    target: String,
) -> Result<u16, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut root.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let chain = rustls_pemfile::certs(&mut cert.0.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls_pemfile::private_key(&mut cert.1.as_bytes())
        .unwrap()
        .unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let name =
        rustls::pki_types::ServerName::try_from("eastwest.weft-system.sa.cluster.local").unwrap();
    let tcp = tokio::net::TcpStream::connect(gateway)
        .await
        .map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    let (send, conn) = h2::client::handshake(tls)
        .await
        .map_err(|e| format!("h2: {e}"))?;
    tokio::spawn(conn);
    let mut send = send.ready().await.map_err(|e| format!("h2: {e}"))?;
    let request = http::Request::builder()
        .method("CONNECT")
        .uri(target)
        .body(())
        .unwrap();
    let (answer, _stream) = send
        .send_request(request, false)
        .map_err(|e| format!("h2: {e}"))?;
    let answer = answer.await.map_err(|e| format!("h2: {e}"))?;
    Ok(answer.status().as_u16())
}

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
    eventually(
        Duration::from_secs(60),
        "productpage reaches both",
        || async {
            let body = call().await;
            body["calls"][0]["body"]["pod"] == "reviews-east" && body["calls"][1]["status"] == 200
        },
    )
    .await;
    let body = call().await;
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
