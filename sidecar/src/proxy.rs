//! One workload's sidecar: the identity manager that fetches and rotates its
//! certificate, the inbound and outbound sides (two engines sharing one set
//! of metrics), and the `ConfigTarget` the config client drives with the
//! workload's `SidecarConfig`. The outbound side's config holds only the
//! hosts the workload has called (`weft_gateway::route::discovery`).

use crate::inbound;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use weft_api::SidecarConfig;
use weft_ca::workload::{manage, CaClient, Svid};
use weft_ca::SpiffeId;
use weft_gateway::control::client::{ConfigTarget, Running};
use weft_gateway::control::identity::with_identity;
use weft_gateway::route::discovery::Interest;
use weft_gateway::telemetry::{Metrics, Reporter};
use weft_gateway::{Gateway, Snapshot};

/// How often addresses that could not be bound are tried again.
const REBIND_EVERY: Duration = Duration::from_secs(1);

/// How the sidecar gets its certificate.
pub struct Identity {
    /// Who the workload is; a config for anyone else is refused.
    pub id: SpiffeId,
    pub ca: Arc<dyn CaClient>,
    /// The one-time join token for the first certificate.
    pub token: String,
    pub ttl: Duration,
}

pub struct Sidecar {
    pub id: SpiffeId,
    pub inbound: Arc<Gateway>,
    pub outbound: Arc<Gateway>,
    interest: Arc<Interest>,
    svids: watch::Receiver<Option<Arc<Svid>>>,
    /// The running config and its version.
    running: Running<SidecarConfig>,
    /// What the inbound side last served; held while applying, so applies
    /// of new configs and new certificates take turns.
    inbound_served: tokio::sync::Mutex<Option<(inbound::Spec, Arc<Svid>)>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Sidecar {
    /// Starts the identity manager and both sides; they serve once the
    /// first certificate and the first config are in.
    pub fn start(workload: &str, identity: Identity) -> Arc<Sidecar> {
        let Identity { id, ca, token, ttl } = identity;
        let reporter = |reporter| Reporter {
            reporter,
            workload: workload.to_string(),
            namespace: id.namespace.clone(),
            principal: id.to_string(),
        };
        let metrics = Metrics::new(reporter("source"));
        let interest = Interest::new();
        let (svid_tx, mut svids) = watch::channel(None);
        let sidecar = Arc::new(Sidecar {
            inbound: Gateway::build(metrics.with_reporter(reporter("destination")), None),
            outbound: Gateway::build(metrics, Some(interest.clone())),
            id,
            interest,
            svids: svids.clone(),
            running: Running::new(),
            inbound_served: tokio::sync::Mutex::new(None),
            tasks: Mutex::new(Vec::new()),
        });
        let weak = Arc::downgrade(&sidecar);
        let follow = tokio::spawn(async move {
            while svids.changed().await.is_ok() {
                let Some(sidecar) = weak.upgrade() else {
                    return;
                };
                sidecar.refresh(false).await;
            }
        });
        // An address that could not be bound (still held by a process on
        // its way out, say) is tried again until it can.
        let weak = Arc::downgrade(&sidecar);
        let rebind = tokio::spawn(async move {
            loop {
                tokio::time::sleep(REBIND_EVERY).await;
                let Some(sidecar) = weak.upgrade() else {
                    return;
                };
                if !sidecar.bind_errors().await.is_empty() {
                    sidecar.refresh(true).await;
                }
            }
        });
        let identity = tokio::spawn(manage(ca, token, ttl, svid_tx));
        *lock(&sidecar.tasks) = vec![identity, follow, rebind];
        sidecar
    }

    /// The certificates of the workload's identity, as they come.
    pub fn svids(&self) -> watch::Receiver<Option<Arc<Svid>>> {
        self.svids.clone()
    }

    /// The certificate in use.
    pub fn svid(&self) -> Option<Arc<Svid>> {
        self.svids.borrow().clone()
    }

    /// The config running, with its version.
    pub fn running(&self) -> Option<(String, SidecarConfig)> {
        self.running.get()
    }

    /// Stops the identity manager and closes both sides' sockets.
    pub async fn stop(&self) {
        for t in lock(&self.tasks).drain(..) {
            t.abort();
        }
        self.inbound.shutdown().await;
        self.outbound.shutdown().await;
    }

    /// Applies the running config with the current certificate to both
    /// sides (the inbound side only when its spec or certificate changed,
    /// or when `force`d). Returns the addresses that could not be bound.
    async fn refresh(&self, force: bool) -> Vec<String> {
        let mut served = self.inbound_served.lock().await;
        let (Some((version, config)), Some(svid)) = (self.running(), self.svid()) else {
            return vec![];
        };
        let spec = inbound::Spec {
            ports: config.inbound.clone(),
            mode: config.mode,
            access_log: config.outbound.access_log,
            trust_bundle: config.trust_bundle.clone(),
            cluster: config.outbound.cluster.clone(),
        };
        let mut errors = Vec::new();
        let unchanged = !force
            && served
                .as_ref()
                .is_some_and(|(s, c)| *s == spec && Arc::ptr_eq(c, &svid));
        if !unchanged {
            match self
                .inbound
                .apply(version.clone(), inbound::config(&spec, &svid))
                .await
            {
                Ok(e) => errors.extend(e),
                Err(e) => tracing::error!("inbound config refused: {e}"),
            }
            *served = Some((spec, svid.clone()));
        }
        match self
            .outbound
            .apply(version, with_identity(&config.outbound, &svid))
            .await
        {
            Ok(e) => errors.extend(e),
            Err(e) => tracing::error!("outbound config refused: {e}"),
        }
        for e in &errors {
            tracing::error!(id = %self.id, "sidecar cannot listen: {e}");
        }
        errors
    }

    /// Checks a config before it replaces the running one.
    fn check(&self, version: &str, config: &SidecarConfig) -> Result<(), String> {
        if config.identity != self.id.to_string() {
            return Err(format!(
                "the config is for {}, this sidecar is {}",
                config.identity, self.id
            ));
        }
        // The outbound side compiles only with a certificate in it; before
        // the first one, the config's own validation has to do.
        let Some(svid) = self.svid() else {
            return Ok(());
        };
        Snapshot::build(version.to_string(), with_identity(&config.outbound, &svid))
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[weft_gateway::async_trait]
impl ConfigTarget for Sidecar {
    fn running_version(&self) -> String {
        self.running.version()
    }

    async fn apply_snapshot(
        &self,
        version: String,
        snapshot: &[u8],
    ) -> Result<Vec<String>, String> {
        let config = weft_api::wire::decode_sidecar(snapshot).map_err(|e| e.to_string())?;
        if let Err(e) = self.check(&version, &config) {
            self.outbound.reject(version, e.clone());
            return Err(e);
        }
        self.running.set(version, config);
        Ok(self.refresh(false).await)
    }

    async fn bind_errors(&self) -> Vec<String> {
        let mut errors = self.inbound.bind_errors().await;
        errors.extend(self.outbound.bind_errors().await);
        errors
    }

    fn interest(&self) -> Option<Arc<Interest>> {
        Some(self.interest.clone())
    }

    fn connected(&self, up: bool) {
        self.inbound.set_controller_connected(up);
        self.outbound.set_controller_connected(up);
    }
}
