//! The inbound side. It is a gateway snapshot: one HTTPS port with client
//! authentication whose only route sends every request to the application.
//! Each new certificate from the identity manager becomes a new snapshot,
//! swapped in with no dropped connection.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;
use weft_api::*;
use weft_ca::workload::Svid;
use weft_gateway::Gateway;

/// Mutual TLS modes, as Istio names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Only mutual TLS with a certificate the trust bundle vouches for.
    Strict,
    /// Mutual TLS, or plaintext.
    Permissive,
}

#[derive(Clone, Debug)]
pub struct Spec {
    /// Where the sidecar takes inbound connections.
    pub listen: SocketAddr,
    /// The application's local address.
    pub app: SocketAddr,
    pub mode: Mode,
}

const APP_CLUSTER: &str = "inbound|app";

/// The snapshot serving `spec` with `svid`.
pub fn config(spec: &Spec, svid: &Svid) -> GatewayConfig {
    let route = Route {
        name: "inbound/app".into(),
        matches: HttpMatch::default(),
        filters: vec![],
        backends: vec![WeightedBackend {
            weight: 1,
            target: BackendTarget::Cluster(APP_CLUSTER.into()),
            filters: vec![],
        }],
        timeouts: Timeouts::default(),
    };
    let app = Cluster {
        protocol: AppProtocol::Http1,
        endpoints: vec![spec.app],
        lb: LbPolicy::RoundRobin,
        tls: None,
    };
    GatewayConfig {
        namespace: svid.id.namespace.clone(),
        name: format!("inbound/{}", svid.id.service_account),
        ports: vec![Port {
            addresses: vec![spec.listen.ip()],
            port: spec.listen.port(),
            protocol: Protocol::Https,
            client_auth: Some(ClientAuth {
                roots_pem: svid.bundle.clone(),
                allow_plaintext: spec.mode == Mode::Permissive,
            }),
            listeners: vec![Listener {
                name: "inbound".into(),
                hostname: None,
                tls: Some(TlsCertificate {
                    cert_chain_pem: svid.chain.concat(),
                    key_pem: svid.key_pem.clone(),
                }),
                virtual_hosts: vec![VirtualHost {
                    hostname: "*".into(),
                    routes: vec![route],
                }],
            }],
        }],
        clusters: BTreeMap::from([(APP_CLUSTER.to_string(), app)]),
        access_log: false,
    }
}

/// Serves `spec` on `gateway`, following the certificates `svids` brings.
/// Returns when the identity manager goes away.
pub async fn run(gateway: Arc<Gateway>, spec: Spec, mut svids: watch::Receiver<Option<Arc<Svid>>>) {
    let mut generation = 0u64;
    loop {
        let svid = svids.borrow_and_update().clone();
        if let Some(svid) = svid {
            generation += 1;
            let version = format!("inbound-{generation}");
            match gateway.apply(version, config(&spec, &svid)).await {
                Ok(errors) if errors.is_empty() => {
                    tracing::info!(id = %svid.id, listen = %spec.listen, "inbound serving")
                }
                Ok(errors) => {
                    tracing::error!(listen = %spec.listen, "inbound cannot listen: {}", errors.join("; "))
                }
                Err(e) => tracing::error!("inbound config refused: {e}"),
            }
        }
        if svids.changed().await.is_err() {
            return;
        }
    }
}
