//! `weft up`'s mesh: the CA (root kept in a state folder, signing service on
//! loopback) and one sidecar per Workload, in this process. Each sidecar gets
//! a one-time join token for its Workload's identity, fetches and rotates its
//! certificate through the signing service, serves its inbound ports, and
//! proxies its workload's outbound calls (HTTP_PROXY).

use anyhow::Context;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use weft_api::{GatewayConfig, SidecarConfig};
use weft_ca::service::SigningService;
use weft_ca::workload::{manage, GrpcCa};
use weft_ca::{Authority, JoinTokens, SpiffeId};
use weft_controller::resources::ObjKey;
use weft_gateway::telemetry::Reporter;
use weft_gateway::Gateway;
use weft_sidecar::{inbound, outbound};

struct Sidecar {
    config: SidecarConfig,
    outbound_config: watch::Sender<GatewayConfig>,
    gateways: [Arc<Gateway>; 2],
    tasks: Vec<JoinHandle<()>>,
}

pub struct Mesh {
    ca: String,
    tokens: Arc<JoinTokens>,
    ttl: Duration,
    sidecars: BTreeMap<ObjKey, Sidecar>,
}

impl Mesh {
    /// Loads or creates the CA in `state` and serves its signing service.
    pub async fn start(state: &Path, trust_domain: &str, ttl: Duration) -> anyhow::Result<Mesh> {
        let authority = Authority::load_or_create(&state.join("ca"), trust_domain, ttl)
            .with_context(|| format!("the CA state in {}", state.display()))?;
        let tokens = Arc::new(JoinTokens::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let service = SigningService::server(Arc::new(authority), tokens.clone());
        tokio::spawn(async move {
            let server = tonic::transport::Server::builder().add_service(service);
            if let Err(e) = server
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await
            {
                tracing::error!("CA signing service failed: {e}");
            }
        });
        Ok(Mesh {
            ca: format!("http://{addr}"),
            tokens,
            ttl,
            sidecars: BTreeMap::new(),
        })
    }

    /// Starts, updates and stops sidecars to match `wanted`. A changed
    /// outbound config is applied in place; a changed identity or inbound
    /// side restarts the sidecar.
    pub async fn reconcile(&mut self, wanted: &BTreeMap<ObjKey, SidecarConfig>) {
        let keys: Vec<ObjKey> = self.sidecars.keys().cloned().collect();
        for key in keys {
            let same_identity = wanted.get(&key).is_some_and(|w| {
                let c = &self.sidecars[&key].config;
                (&w.identity, &w.inbound, w.mode) == (&c.identity, &c.inbound, c.mode)
            });
            if !same_identity {
                if let Some(s) = self.sidecars.remove(&key) {
                    stop(s).await;
                }
            }
        }
        for (key, config) in wanted {
            match self.sidecars.get_mut(key) {
                Some(s) => {
                    if s.config.outbound != config.outbound {
                        s.outbound_config.send_replace(config.outbound.clone());
                        s.config = config.clone();
                    }
                }
                None => match self.start_sidecar(config) {
                    Ok(s) => {
                        self.sidecars.insert(key.clone(), s);
                    }
                    Err(e) => tracing::error!(workload = %key, "no sidecar: {e}"),
                },
            }
        }
    }

    fn start_sidecar(&self, config: &SidecarConfig) -> anyhow::Result<Sidecar> {
        let id = SpiffeId::parse(&config.identity)?;
        let token = self.tokens.issue(id.clone());
        let (svid_tx, svid_rx) = watch::channel(None);
        let ca = Arc::new(GrpcCa {
            endpoint: self.ca.clone(),
        });
        let identity = tokio::spawn(manage(ca, token, self.ttl, svid_tx));
        let reporter = Reporter {
            reporter: "destination",
            workload: config.workload.clone(),
            namespace: config.namespace.clone(),
            principal: config.identity.clone(),
        };
        let inbound_gw = Gateway::with_reporter(reporter);
        let spec = inbound::Spec {
            ports: config.inbound.clone(),
            mode: config.mode,
        };
        let inbound_task = tokio::spawn(inbound::run(inbound_gw.clone(), spec, svid_rx.clone()));
        let outbound_gw = Gateway::new();
        let (outbound_config, configs) = watch::channel(config.outbound.clone());
        let outbound_task = tokio::spawn(outbound::run(outbound_gw.clone(), configs, svid_rx));
        Ok(Sidecar {
            config: config.clone(),
            outbound_config,
            gateways: [inbound_gw, outbound_gw],
            tasks: vec![identity, inbound_task, outbound_task],
        })
    }

    /// The HTTP proxy a Workload's process should use: its sidecar's outbound port.
    pub fn proxy_of(&self, key: &ObjKey) -> Option<SocketAddr> {
        let port = self.sidecars.get(key)?.config.outbound.ports.first()?;
        Some(SocketAddr::new(*port.addresses.first()?, port.port))
    }

    pub async fn stop_all(&mut self) {
        for (_, s) in std::mem::take(&mut self.sidecars) {
            stop(s).await;
        }
    }
}

async fn stop(s: Sidecar) {
    for t in &s.tasks {
        t.abort();
    }
    for g in &s.gateways {
        g.shutdown().await;
    }
}
