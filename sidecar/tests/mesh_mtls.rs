//! A gateway calling a sidecar over mutual TLS: the gateway presents its own
//! SPIFFE certificate, checks that the sidecar is the identity expected for
//! the service, and speaks HTTP/1.1 or HTTP/2 over the encrypted stream.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use weft_api::*;
use weft_ca::workload::Svid;

mod support;
use support::svid;
use weft_api::{InboundPort, MtlsMode};
use weft_ca::Authority;
use weft_sidecar::inbound::{self, Spec};

const IP: &str = "127.0.83.1";

fn gateway_config(
    client: &Svid,
    sidecar: SocketAddr,
    expected: &str,
    protocol: AppProtocol,
) -> GatewayConfig {
    let tls = UpstreamTls {
        policy: None,
        sni: "backend.shop.svc.cluster.local".into(),
        roots_pem: client.bundle.clone(),
        identities: vec![expected.to_string()],
        client_cert: Some(TlsCertificate {
            cert_chain_pem: client.chain.concat(),
            key_pem: client.key_pem.clone(),
        }),
    };
    let cluster = Cluster {
        protocol,
        endpoints: vec![sidecar],
        lb: LbPolicy::RoundRobin,
        tls: Some(tls),
        service: None,
        resilience: Default::default(),
        hash: None,
        zones: Vec::new(),
        origins: Vec::new(),
        external: None,
    };
    GatewayConfig {
        namespace: "infra".into(),
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
                    "r",
                    HttpMatch::default(),
                    "shop/backend:80",
                )],
            )],
        }],
        clusters: BTreeMap::from([("shop/backend:80".to_string(), cluster)]),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_to_sidecar_over_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let ca =
        Authority::load_or_create(dir.path(), "cluster.local", Duration::from_secs(3600)).unwrap();

    // The application: answers with who called it and over which protocol.
    let app = tokio::net::TcpListener::bind(format!("{IP}:0"))
        .await
        .unwrap();
    let app_addr = app.local_addr().unwrap();
    let router = axum::Router::new().fallback(|headers: axum::http::HeaderMap| async move {
        headers
            .get("x-forwarded-client-cert")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    });
    tokio::spawn(async move { axum::serve(app, router).await });

    let sidecar: SocketAddr = format!("{IP}:15006").parse().unwrap();
    let spec = Spec {
        ports: vec![InboundPort {
            listen: sidecar,
            app: app_addr,
            protocol: Default::default(),
            access: None,
        }],
        mode: MtlsMode::Strict,
        cluster: String::new(),
        access_log: false,
        trust_bundle: vec![],
    };
    let inbound_gw = weft_gateway::Gateway::new();
    inbound_gw
        .apply(
            "1".into(),
            inbound::config(&spec, &svid(&ca, "shop", "backend")),
        )
        .await
        .unwrap();

    let gateway_id = svid(&ca, "infra", "gateway");
    let gateway = weft_gateway::Gateway::new();
    let backend = "spiffe://cluster.local/ns/shop/sa/backend";
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = format!("http://{IP}:8080/");
    for (version, protocol) in [("h1", AppProtocol::Http1), ("h2", AppProtocol::H2c)] {
        gateway
            .apply(
                version.into(),
                gateway_config(&gateway_id, sidecar, backend, protocol),
            )
            .await
            .unwrap();
        let mut body = String::new();
        for _ in 0..100 {
            if let Ok(r) = client.get(&url).send().await {
                if r.status() == 200 {
                    body = r.text().await.unwrap();
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            body, "URI=spiffe://cluster.local/ns/infra/sa/gateway",
            "{version}"
        );
        // The sidecar counts the request under the HTTP version the
        // gateway spoke to it.
        let wire = if protocol == AppProtocol::H2c {
            "2"
        } else {
            "1.1"
        };
        let line = format!(
            "weft_downstream_requests_total{{http_version=\"{wire}\",reporter=\"source\"}}"
        );
        // It is counted once its answer has gone (the logging phase, on
        // the sidecar's own data-plane thread): the client may see the
        // answer first.
        let counted = || {
            let text = inbound_gw.metrics.text();
            let seen = text
                .lines()
                .any(|l| l.starts_with(&line) && !l.ends_with(" 0"));
            (seen, text)
        };
        let mut text = String::new();
        for _ in 0..250 {
            let (seen, now) = counted();
            text = now;
            if seen {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            counted().0,
            "{version}: no request over HTTP/{wire} in\n{text}"
        );
    }

    // A sidecar that is not the identity expected for the service is not called.
    let wrong = "spiffe://cluster.local/ns/shop/sa/payments";
    gateway
        .apply(
            "wrong".into(),
            gateway_config(&gateway_id, sidecar, wrong, AppProtocol::Http1),
        )
        .await
        .unwrap();
    let status = client.get(&url).send().await.unwrap().status();
    assert_eq!(status, 503);
}
