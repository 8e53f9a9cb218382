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

async fn serve(
    listener: tokio::net::TcpListener,
    state: watch::Receiver<Arc<Published>>,
) -> tokio::task::JoinHandle<()> {
    let (reports, mut rx) = mpsc::channel(16);
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let service = ConfigService::new(state, reports);
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(TcpListenerStream::new(listener))
            .await;
    })
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
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = serve(listener, rx.clone()).await;

    let gateway = weft_gateway::Gateway::new();
    let node = wire::gateway_node("default", "gw");
    tokio::spawn(weft_gateway::control::client::run(
        gateway.clone(),
        format!("http://{addr}"),
        node,
    ));
    until("v1 serves /a", async || status("/a").await == 200).await;
    assert_eq!(status("/b").await, 404);

    // An invalid snapshot (a regex that does not compile) is refused.
    tx.send_replace(published(
        config(PathMatch::Regex("(".into()), backend_addr),
        "bad",
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(gateway.current().unwrap().version, "v1");
    assert_eq!(status("/a").await, 200);

    // The controller goes away: traffic goes on.
    server.abort();
    let _ = server.await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(status("/a").await, 200);

    // It comes back on the same address with a new config: the gateway
    // reconnects by itself and applies it.
    tx.send_replace(published(
        config(PathMatch::Prefix("/b".into()), backend_addr),
        "v2",
    ));
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let _server = serve(listener, rx).await;
    until("v2 serves /b", async || status("/b").await == 200).await;
    assert_eq!(status("/a").await, 404);
    assert_eq!(gateway.current().unwrap().version, "v2");
}
