//! Config distribution between the real config server and a real gateway
//! over gRPC and mutual TLS on loopback: a NACKed snapshot never replaces
//! the running one, a gateway whose controller goes away keeps serving,
//! then reconnects; and a proxy gets only its own node's config.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use weft_api::*;
use weft_ca::workload::{key_and_csr, Svid, Svids};
use weft_ca::{Authority, SpiffeId};
use weft_controller::resources::{Kind, ObjKey};
use weft_controller::runtime::{Published, Served};
use weft_controller::server::ConfigService;

const IP: &str = "127.0.61.1";

fn config(path: PathMatch, backend: std::net::SocketAddr) -> GatewayConfig {
    let mut clusters = BTreeMap::new();
    clusters.insert("default/b:80".to_string(), Cluster::http1(vec![backend]));
    GatewayConfig {
        namespace: "default".into(),
        name: "gw".into(),
        ports: vec![Port {
            addresses: vec![IP.parse().unwrap()],
            port: 8080,
            protocol: Protocol::Http,
            client_auth: None,
            host_with_port: false,
            passthrough: false,
            blackhole: false,
            stream_hosts: Vec::new(),
            sidecar: false,
            listeners: vec![Listener::any_host(
                "http",
                None,
                vec![Route::to_cluster(
                    "default/r/rule/0/match/0",
                    HttpMatch {
                        path,
                        ..Default::default()
                    },
                    "default/b:80",
                )],
            )],
        }],
        clusters,
        access_log: false,
        identity: None,
        limits: Default::default(),
        access: Default::default(),
        rate_limit_store: None,
        zone: None,
        east_west: None,
        cluster: String::new(),
        egress_source: None,
    }
}

fn published(config: GatewayConfig, version: &str) -> Arc<Published> {
    let key = ObjKey {
        kind: Kind::Gateway,
        namespace: "default".into(),
        name: "gw".into(),
    };
    let served = Served {
        version: version.into(),
        encoded: wire::encode(&config),
        config,
    };
    Arc::new(Published {
        gateways: [(key, Arc::new(served))].into(),
        ..Default::default()
    })
}

/// A certificate of `ns`/`sa` from `ca`, as an identity manager holds it.
fn svids(ca: &Authority, id: SpiffeId) -> Svids {
    let (key_pem, csr) = key_and_csr(None).unwrap();
    let issued = ca.sign(&csr, &id, None).unwrap();
    let svid = Svid {
        id,
        chain: issued.chain,
        key_pem,
        bundle: ca.trust_bundle(),
        not_after: std::time::SystemTime::now() + Duration::from_secs(3600),
        received: std::time::SystemTime::now(),
        renewals: 0,
    };
    watch::channel(Some(Arc::new(svid))).1
}

fn id(ns: &str, sa: &str) -> SpiffeId {
    SpiffeId::new("cluster.local", ns, sa).unwrap()
}

/// A config server on a runtime of its own, as a controller process would
/// be: dropping the `Controller` drops every connection it holds.
struct Controller(Option<tokio::runtime::Runtime>);

impl Controller {
    fn start(
        listener: std::net::TcpListener,
        state: watch::Receiver<Arc<Published>>,
        ca: &Authority,
    ) -> Self {
        let tls = weft_ca::tls::server_config(
            svids(ca, SpiffeId::control_plane("cluster.local").unwrap()),
            Some(&ca.trust_bundle()),
        )
        .unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.spawn(async move {
            listener.set_nonblocking(true).unwrap();
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let (reports, mut rx) = mpsc::channel(16);
            tokio::spawn(async move { while rx.recv().await.is_some() {} });
            let _ = tonic::transport::Server::builder()
                .add_service(ConfigService::new(state, reports, "cluster.local"))
                .serve_with_incoming(weft_ca::tls::incoming(listener, tls))
                .await;
        });
        Controller(Some(rt))
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

async fn status(path: &str) -> u16 {
    let c = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    match c.get(format!("http://{IP}:8080{path}")).send().await {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

async fn until(what: &str, mut f: impl AsyncFnMut() -> bool) {
    for _ in 0..400 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{what}: not within 10 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nack_keeps_the_last_good_snapshot_and_the_gateway_outlives_its_controller() {
    let backend = tokio::net::TcpListener::bind(format!("{IP}:0"))
        .await
        .unwrap();
    let backend_addr = backend.local_addr().unwrap();
    tokio::spawn(async move {
        let app = axum::Router::new().fallback(|| async { "ok" });
        axum::serve(backend, app).await.unwrap();
    });

    let (tx, rx) = watch::channel(published(
        config(PathMatch::Prefix("/a".into()), backend_addr),
        "v1",
    ));
    let dir = tempfile::tempdir().unwrap();
    let ca =
        Authority::load_or_create(dir.path(), "cluster.local", Duration::from_secs(3600)).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let controller = Controller::start(listener, rx.clone(), &ca);

    let gateway = weft_gateway::Gateway::new();
    let node = wire::gateway_node("default", "gw");
    let dial = weft_gateway::control::client::Dial {
        addr: addr.to_string(),
        server: SpiffeId::control_plane("cluster.local").unwrap(),
        bundle: ca.trust_bundle(),
        svids: svids(&ca, id("default", "gw")),
    };
    tokio::spawn(weft_gateway::control::client::run(
        gateway.clone(),
        dial,
        node,
    ));
    until("v1 serves /a", async || status("/a").await == 200).await;
    assert_eq!(status("/b").await, 404);
    assert!(gateway.controller_connected());

    // An invalid snapshot (a regex that does not compile) is refused, and
    // the running one stays.
    tx.send_replace(published(
        config(PathMatch::Regex("(".into()), backend_addr),
        "bad",
    ));
    until("the gateway refuses the bad snapshot", async || {
        gateway.last_rejected().is_some()
    })
    .await;
    let (version, error) = gateway.last_rejected().unwrap();
    assert_eq!(version, "bad");
    assert!(error.contains("regex"), "{error}");
    assert_eq!(gateway.current().unwrap().version, "v1");
    assert_eq!(status("/a").await, 200);

    // The controller goes away: the gateway sees its stream end, and
    // traffic goes on.
    drop(controller);
    until("the gateway sees its controller gone", async || {
        !gateway.controller_connected()
    })
    .await;
    assert_eq!(status("/a").await, 200);
    assert_eq!(gateway.current().unwrap().version, "v1");

    // It comes back on the same address with a new config: the gateway
    // reconnects by itself and applies it.
    tx.send_replace(published(
        config(PathMatch::Prefix("/b".into()), backend_addr),
        "v2",
    ));
    // The old runtime lets go of the address as it winds down.
    let mut listener = std::net::TcpListener::bind(addr);
    for _ in 0..200 {
        if listener.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
        listener = std::net::TcpListener::bind(addr);
    }
    let listener = listener.expect("the controller's address is free again");
    let _controller = Controller::start(listener, rx, &ca);
    until("v2 serves /b", async || status("/b").await == 200).await;
    assert!(gateway.controller_connected());
    assert_eq!(status("/a").await, 404);
    assert_eq!(gateway.current().unwrap().version, "v2");
}

/// Subscribes as `node` presenting `svids` (or no certificate); the gRPC
/// code the stream ends with, or `Ok` when a config came.
async fn subscribe(
    addr: std::net::SocketAddr,
    ca: &Authority,
    svids: Option<Svids>,
    node: &str,
) -> Result<GatewayConfig, tonic::Code> {
    let tls = weft_ca::tls::client_config(svids, &ca.trust_bundle()).unwrap();
    let server = SpiffeId::control_plane("cluster.local").unwrap();
    let channel = weft_ca::tls::channel(&addr.to_string(), &server, tls).unwrap();
    let mut client = wire::ConfigDiscoveryClient::new(channel);
    let hello = wire::ConfigRequest {
        node: node.to_string(),
        ..Default::default()
    };
    let mut stream = client
        .subscribe(tokio_stream::iter([hello]))
        .await
        .map_err(|s| s.code())?
        .into_inner();
    match stream.message().await {
        Ok(Some(resp)) => Ok(wire::decode(&resp.snapshot).unwrap()),
        Ok(None) => Err(tonic::Code::Ok),
        Err(s) => Err(s.code()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_gets_only_its_own_nodes_config() {
    let (_tx, rx) = watch::channel(published(
        config(
            PathMatch::Prefix("/a".into()),
            "127.0.0.1:1".parse().unwrap(),
        ),
        "v1",
    ));
    let dir = tempfile::tempdir().unwrap();
    let ca =
        Authority::load_or_create(dir.path(), "cluster.local", Duration::from_secs(3600)).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let _controller = Controller::start(listener, rx, &ca);
    let node = wire::gateway_node("default", "gw");

    // The gateway's own identity gets its config.
    let own = subscribe(addr, &ca, Some(svids(&ca, id("default", "gw"))), &node).await;
    assert_eq!(own.map(|c| c.name), Ok("gw".to_string()));
    // Another identity of the mesh asking for it gets nothing.
    let intruder = svids(&ca, id("default", "intruder"));
    assert_eq!(
        subscribe(addr, &ca, Some(intruder.clone()), &node)
            .await
            .map(|c| c.name),
        Err(tonic::Code::PermissionDenied)
    );
    // Nor does a sidecar node it has no Workload for.
    assert_eq!(
        subscribe(addr, &ca, Some(intruder), "sidecar/default/intruder")
            .await
            .map(|c| c.name),
        Err(tonic::Code::PermissionDenied)
    );
    // A client with no certificate does not get through the handshake
    // (TLS 1.3 tells it after its side is done: the stream fails).
    let refused = |r: &Result<GatewayConfig, tonic::Code>| {
        matches!(
            r,
            Err(tonic::Code::Unavailable | tonic::Code::Cancelled | tonic::Code::Unknown)
        )
    };
    let r = subscribe(addr, &ca, None, &node).await;
    assert!(refused(&r), "{r:?}");
    // A certificate from another CA does not either.
    let other_dir = tempfile::tempdir().unwrap();
    let other =
        Authority::load_or_create(other_dir.path(), "cluster.local", Duration::from_secs(3600))
            .unwrap();
    let r = subscribe(addr, &ca, Some(svids(&other, id("default", "gw"))), &node).await;
    assert!(refused(&r), "{r:?}");
}
