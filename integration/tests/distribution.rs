//! Config distribution between the real config server and a real gateway
//! over gRPC on loopback: a NACKed snapshot never replaces the running one,
//! and a gateway whose controller goes away keeps serving, then reconnects.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::TcpListenerStream;
use weft_api::*;
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

/// A config server on a runtime of its own, as a controller process would
/// be: dropping the `Controller` drops every connection it holds.
struct Controller(Option<tokio::runtime::Runtime>);

impl Controller {
    fn start(listener: std::net::TcpListener, state: watch::Receiver<Arc<Published>>) -> Self {
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
                .add_service(ConfigService::new(state, reports))
                .serve_with_incoming(TcpListenerStream::new(listener))
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
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let controller = Controller::start(listener, rx.clone());

    let gateway = weft_gateway::Gateway::new();
    let node = wire::gateway_node("default", "gw");
    tokio::spawn(weft_gateway::control::client::run(
        gateway.clone(),
        format!("http://{addr}"),
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
    let _controller = Controller::start(listener, rx);
    until("v2 serves /b", async || status("/b").await == 200).await;
    assert!(gateway.controller_connected());
    assert_eq!(status("/a").await, 404);
    assert_eq!(gateway.current().unwrap().version, "v2");
}
