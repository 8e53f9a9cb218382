//! `weft up`'s mesh: the CA (root kept in a state folder, signing service on
//! loopback) and one sidecar per meshed Workload, in this process. Each
//! sidecar gets a one-time join token for its Workload's identity, fetches
//! and rotates its certificate through the signing service, subscribes to
//! the config server, and serves its admin port on the Workload's address
//! (`weft_sidecar::run`); with `--sidecar-processes` each sidecar is a
//! supervised `weft sidecar run` process instead (`sidecar_process`).
//! Gateways get their identities here too.

use crate::sidecar_process::SidecarProcess;
use anyhow::Context;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use weft_api::SidecarConfig;
use weft_ca::service::SigningService;
use weft_ca::workload::{manage, GrpcCa, Svids};
use weft_ca::{Authority, JoinTokens, SpiffeId};
use weft_controller::resources::ObjKey;
use weft_sidecar::Identity;

/// The sidecar admin port on a Workload's address (Istio's merged-metrics port).
pub const ADMIN_PORT: u16 = 15020;

struct Running {
    identity: String,
    sidecar: Proxy,
    proxy: Option<SocketAddr>,
    admin: Option<SocketAddr>,
}

/// Where a sidecar runs.
enum Proxy {
    InProcess(weft_sidecar::run::Running),
    Child(SidecarProcess),
}

pub struct Mesh {
    ca: String,
    bundle: Vec<String>,
    controller: String,
    tokens: Arc<JoinTokens>,
    ttl: Duration,
    /// Sidecars run as `weft sidecar run` processes.
    processes: bool,
    sidecars: BTreeMap<ObjKey, Running>,
}

impl Mesh {
    /// Loads or creates the CA in `state` (or takes the one the user plugs
    /// in with `ca_secret`) and serves its signing service; sidecars will
    /// take their config from `controller`.
    pub async fn start(
        state: &Path,
        trust_domain: &str,
        ttl: Duration,
        controller: String,
        ca_secret: Option<&BTreeMap<String, String>>,
        processes: bool,
    ) -> anyhow::Result<Mesh> {
        let authority = authority(state, trust_domain, ttl, ca_secret)?;
        let bundle = authority.trust_bundle();
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
            bundle,
            controller,
            tokens,
            ttl,
            processes,
            sidecars: BTreeMap::new(),
        })
    }

    /// Starts and stops sidecars to match `wanted`; a Workload whose
    /// identity changed gets a new sidecar. Everything else a sidecar takes
    /// from its config stream.
    pub async fn reconcile(&mut self, wanted: &BTreeMap<ObjKey, SidecarConfig>) {
        let stale: Vec<ObjKey> = self
            .sidecars
            .iter()
            .filter(|(k, r)| wanted.get(*k).is_none_or(|w| w.identity != r.identity))
            .map(|(k, _)| k.clone())
            .collect();
        for key in stale {
            if let Some(r) = self.sidecars.remove(&key) {
                stop(r).await;
            }
        }
        for (key, config) in wanted {
            if self.sidecars.contains_key(key) {
                continue;
            }
            match self.start_sidecar(key, config).await {
                Ok(r) => {
                    self.sidecars.insert(key.clone(), r);
                }
                Err(e) => tracing::error!(workload = %key, "no sidecar: {e:#}"),
            }
        }
    }

    async fn start_sidecar(&self, key: &ObjKey, config: &SidecarConfig) -> anyhow::Result<Running> {
        let id = SpiffeId::parse(&config.identity)?;
        let proxy = config
            .outbound
            .ports
            .first()
            .and_then(|p| Some(SocketAddr::new(*p.addresses.first()?, p.port)));
        let admin = proxy.map(|p| SocketAddr::new(p.ip(), ADMIN_PORT));
        let sidecar = if self.processes {
            let spec = crate::sidecar_process::Spec {
                workload: key.clone(),
                id,
                controller: self.controller.clone(),
                ca: self.ca.clone(),
                ttl: self.ttl,
                admin,
            };
            Proxy::Child(SidecarProcess::start(spec, self.tokens.clone()))
        } else {
            let identity = Identity {
                token: self.tokens.issue(id.clone()),
                id,
                ca: Arc::new(GrpcCa {
                    endpoint: self.ca.clone(),
                }),
                ttl: self.ttl,
            };
            Proxy::InProcess(weft_sidecar::run::start(weft_sidecar::run::Options {
                namespace: key.namespace.clone(),
                name: key.name.clone(),
                identity,
                controller: self.controller.clone(),
                admin,
            }))
        };
        Ok(Running {
            identity: config.identity.clone(),
            sidecar,
            proxy,
            admin,
        })
    }

    /// The roots the CA's certificates chain to.
    pub fn trust_bundle(&self) -> Vec<String> {
        self.bundle.clone()
    }

    /// An identity manager for `id` (a gateway's): a one-time token, the
    /// certificates it keeps fresh, and its task.
    pub fn identity(&self, id: &str) -> anyhow::Result<(Svids, JoinHandle<()>)> {
        let id = SpiffeId::parse(id)?;
        let (tx, rx) = watch::channel(None);
        let ca = Arc::new(GrpcCa {
            endpoint: self.ca.clone(),
        });
        let task = tokio::spawn(manage(ca, self.tokens.issue(id), self.ttl, tx));
        Ok((rx, task))
    }

    /// The HTTP proxy a Workload's process should use: its sidecar's outbound port.
    pub fn proxy_of(&self, key: &ObjKey) -> Option<SocketAddr> {
        self.sidecars.get(key)?.proxy
    }

    /// The admin endpoint of a Workload's sidecar.
    pub fn admin_of(&self, key: &ObjKey) -> Option<SocketAddr> {
        self.sidecars.get(key)?.admin
    }

    pub async fn stop_all(&mut self) {
        for (_, r) in std::mem::take(&mut self.sidecars) {
            stop(r).await;
        }
    }
}

/// The CA: plugged in by the Secret when there is one, else kept in `state`.
fn authority(
    state: &Path,
    trust_domain: &str,
    ttl: Duration,
    secret: Option<&BTreeMap<String, String>>,
) -> anyhow::Result<Authority> {
    let dir = state.join("ca");
    let (ns, name) = weft_controller::runtime::CA_SECRET;
    let Some(fields) = secret else {
        return Authority::load_or_create(&dir, trust_domain, ttl)
            .with_context(|| format!("the CA state in {}", dir.display()));
    };
    let field = |k: &str| fields.get(k).cloned();
    let authority = match (
        field("root-cert.pem"),
        field("ca-cert.pem"),
        field("ca-key.pem"),
        field("root-key.pem"),
    ) {
        (Some(root), Some(ca), Some(key), _) => {
            Authority::plugged(trust_domain, ttl, root, ca, &key)
        }
        (Some(root), _, _, Some(key)) => Authority::with_root(&dir, trust_domain, ttl, root, &key),
        _ => anyhow::bail!(
            "Secret {ns}/{name} needs root-cert.pem with root-key.pem, or ca-cert.pem, ca-key.pem and root-cert.pem"
        ),
    };
    let authority = authority.with_context(|| format!("the CA of Secret {ns}/{name}"))?;
    tracing::info!("the CA is the one of Secret {ns}/{name}");
    Ok(authority)
}

async fn stop(r: Running) {
    match r.sidecar {
        Proxy::InProcess(running) => running.stop().await,
        Proxy::Child(process) => process.stop().await,
    }
}
