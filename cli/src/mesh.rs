//! `weft up`'s mesh: the CA (root kept in a state folder, signing service on
//! loopback over TLS) and one sidecar per meshed Workload, in this process.
//! Each sidecar gets a one-time join token for its Workload's identity,
//! fetches and rotates its certificate through the signing service,
//! subscribes to the config server over mutual TLS, and serves its admin
//! port on the Workload's address (`weft_sidecar::run`); with
//! `--sidecar-processes` each sidecar is a supervised `weft sidecar run`
//! process instead (`sidecar_process`). Gateways get their identities here
//! too, and so does the control plane itself (its servers' certificate).
//! The roster follows the running proxies: an identity no proxy has any
//! more gets no renewal.

use crate::sidecar_process::SidecarProcess;
use anyhow::Context;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use weft_api::SidecarConfig;
use weft_ca::service::SigningService;
use weft_ca::workload::{manage, GrpcCa, LocalCa, Svids};
use weft_ca::{Authority, JoinTokens, Roster, SpiffeId};
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
    /// The signing service, `host:port`.
    ca: String,
    bundle: Vec<String>,
    /// The bundle as a file, for sidecar processes.
    bundle_file: std::path::PathBuf,
    /// The identity the control plane's servers prove.
    control_plane: SpiffeId,
    control_plane_svids: Svids,
    controller: String,
    tokens: Arc<JoinTokens>,
    roster: Arc<Roster>,
    ttl: Duration,
    _tasks: Vec<JoinHandle<()>>,
    /// Sidecars run as `weft sidecar run` processes.
    processes: bool,
    sidecars: BTreeMap<ObjKey, Running>,
}

impl Mesh {
    /// Loads or creates the CA in `state` (or takes the one the user plugs
    /// in with `ca_secret`), gives the control plane its certificate, and
    /// serves the signing service over TLS; sidecars will take their config
    /// from `controller` (`host:port`).
    pub async fn start(
        state: &Path,
        trust_domain: &str,
        ttl: Duration,
        controller: String,
        ca_secret: Option<&BTreeMap<String, String>>,
        processes: bool,
    ) -> anyhow::Result<Mesh> {
        let authority = Arc::new(authority(state, trust_domain, ttl, ca_secret)?);
        let bundle = authority.trust_bundle();
        std::fs::create_dir_all(state)?;
        let bundle_file = state.join("trust-bundle.pem");
        std::fs::write(&bundle_file, bundle.concat())
            .with_context(|| format!("writing {}", bundle_file.display()))?;
        let control_plane = SpiffeId::control_plane(trust_domain)?;
        let (tx, control_plane_svids) = watch::channel(None);
        let local = Arc::new(LocalCa {
            authority: authority.clone(),
            id: control_plane.clone(),
        });
        let identity = tokio::spawn(manage(local, String::new(), ttl, tx));
        let tokens = Arc::new(JoinTokens::default());
        let roster = Arc::new(Roster::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let service = SigningService::server(authority, tokens.clone(), roster.clone());
        let tls = weft_ca::tls::server_config(control_plane_svids.clone(), None)?;
        let serving = tokio::spawn(async move {
            let server = tonic::transport::Server::builder().add_service(service);
            if let Err(e) = server
                .serve_with_incoming(weft_ca::tls::incoming(listener, tls))
                .await
            {
                tracing::error!("CA signing service failed: {e}");
            }
        });
        Ok(Mesh {
            ca: addr.to_string(),
            bundle,
            bundle_file,
            control_plane,
            control_plane_svids,
            controller,
            tokens,
            roster,
            ttl,
            processes,
            sidecars: BTreeMap::new(),
            _tasks: vec![identity, serving],
        })
    }

    /// The signing service's address.
    pub fn ca_addr(&self) -> &str {
        &self.ca
    }

    /// The control plane's identity and its certificates, for the config
    /// server's TLS.
    pub fn control_plane(&self) -> (SpiffeId, Svids) {
        (self.control_plane.clone(), self.control_plane_svids.clone())
    }

    /// From now on only `ids` (and the control plane) get certificates.
    pub fn set_roster(&self, ids: impl IntoIterator<Item = SpiffeId>) {
        self.roster
            .set(ids.into_iter().chain([self.control_plane.clone()]));
    }

    fn ca_client(&self) -> anyhow::Result<Arc<GrpcCa>> {
        Ok(Arc::new(GrpcCa::new(
            &self.ca,
            &self.control_plane,
            &self.bundle,
        )?))
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
                bundle_file: self.bundle_file.clone(),
                ttl: self.ttl,
                admin,
            };
            Proxy::Child(SidecarProcess::start(spec, self.tokens.clone()))
        } else {
            let identity = Identity {
                token: self.tokens.issue(id.clone()),
                id,
                ca: self.ca_client()?,
                ttl: self.ttl,
            };
            Proxy::InProcess(weft_sidecar::run::start(weft_sidecar::run::Options {
                namespace: key.namespace.clone(),
                name: key.name.clone(),
                identity,
                controller: self.controller.clone(),
                bundle: self.bundle.clone(),
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
        let task = tokio::spawn(manage(
            self.ca_client()?,
            self.tokens.issue(id),
            self.ttl,
            tx,
        ));
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
