//! A proxy with a workload identity: the certificate the identity manager
//! keeps fresh (`weft_ca::workload`) is put into every cluster that
//! originates mutual TLS, with the trust bundle that came with it, and the
//! config is applied again with each new certificate. Gateways run this way
//! under `weft up`, so their calls to meshed workloads go through the
//! workloads' sidecars; a sidecar's outbound side fills its clusters the
//! same way.

use crate::control::client::{ConfigTarget, Running};
use crate::route::discovery::Interest;
use crate::{Gateway, GatewayError};
use std::sync::Arc;
use tokio::sync::watch;
use weft_api::{GatewayConfig, TlsCertificate};
use weft_ca::workload::{Svid, Svids};

/// `config` with every cluster that originates mesh TLS presenting `svid`
/// and trusting the bundle the config carries and the one that came with
/// `svid` (not clusters whose TLS a BackendTLSPolicy asks for).
pub fn with_identity(config: &GatewayConfig, svid: &Svid) -> GatewayConfig {
    let mut config = config.clone();
    if let Some(ew) = config.east_west.as_mut() {
        ew.cert = Some(TlsCertificate {
            cert_chain_pem: svid.chain.concat(),
            key_pem: svid.key_pem.clone(),
        });
    }
    for ew_port in config
        .ports
        .iter_mut()
        .filter(|p| p.protocol == weft_api::Protocol::EastWest)
    {
        if let Some(auth) = ew_port.client_auth.as_mut() {
            auth.roots_pem = union(&auth.roots_pem, &svid.bundle);
        }
    }
    // A gateway's mesh ports (an egress gateway's) serve its own
    // certificate to the workloads calling.
    for port in config.ports.iter_mut().filter(|p| is_mesh_port(p)) {
        if let Some(auth) = port.client_auth.as_mut() {
            auth.roots_pem = union(&auth.roots_pem, &svid.bundle);
        }
        for l in port.listeners.iter_mut().filter(|l| l.tls.is_none()) {
            l.tls = Some(TlsCertificate {
                cert_chain_pem: svid.chain.concat(),
                key_pem: svid.key_pem.clone(),
            });
        }
    }
    for cluster in config.clusters.values_mut() {
        if let Some(tls) = cluster.tls.as_mut().filter(|t| t.policy.is_none()) {
            tls.roots_pem = union(&tls.roots_pem, &svid.bundle);
            tls.client_cert = Some(TlsCertificate {
                cert_chain_pem: svid.chain.concat(),
                key_pem: svid.key_pem.clone(),
            });
        }
    }
    config
}

/// The roots of both bundles, each once, in order.
pub fn union(a: &[String], b: &[String]) -> Vec<String> {
    let mut out = a.to_vec();
    for r in b {
        if !out.contains(r) {
            out.push(r.clone());
        }
    }
    out
}

/// Whether `config` can only serve once a certificate is in.
fn needs_identity(config: &GatewayConfig) -> bool {
    config.clusters.values().any(|c| c.tls.is_some())
        || config.east_west.is_some()
        || config.ports.iter().any(is_mesh_port)
}

/// A gateway port that takes mutual TLS from mesh workloads with the
/// proxy's own certificate (not a sidecar's: its inbound ports carry
/// theirs).
fn is_mesh_port(p: &weft_api::Port) -> bool {
    p.takes_own_cert()
        && matches!(
            p.protocol,
            weft_api::Protocol::Https | weft_api::Protocol::Tls | weft_api::Protocol::Tcp
        )
}

/// A gateway and the certificates of its identity.
pub struct Identified {
    pub gateway: Arc<Gateway>,
    svids: watch::Receiver<Option<Arc<Svid>>>,
    /// The config the controller sent last and this proxy accepted.
    running: Running<GatewayConfig>,
    /// Held while applying, so new configs and new certificates take turns.
    applying: tokio::sync::Mutex<()>,
}

impl Identified {
    /// Serves configs on `gateway` with the certificates `svids` brings;
    /// each new certificate is swapped in until `svids` closes.
    pub fn start(gateway: Arc<Gateway>, svids: watch::Receiver<Option<Arc<Svid>>>) -> Arc<Self> {
        let this = Arc::new(Identified {
            gateway,
            svids: svids.clone(),
            running: Running::new(),
            applying: tokio::sync::Mutex::new(()),
        });
        let weak = Arc::downgrade(&this);
        let mut svids = svids;
        tokio::spawn(async move {
            while svids.changed().await.is_ok() {
                let Some(this) = weak.upgrade() else { return };
                // Under the lock, so a config being applied is seen whole.
                let _turn = this.applying.lock().await;
                if let Some((version, config)) = this.running.get() {
                    if let Err(e) = this.apply_now(version, config).await {
                        tracing::error!("config refused with the new certificate: {e}");
                    }
                }
            }
        });
        this
    }

    /// The certificates of this proxy's identity.
    pub fn svids(&self) -> Svids {
        self.svids.clone()
    }

    /// Applies `config` with the current certificate; before the first
    /// one, a config that needs it is kept and applied when it comes.
    pub async fn apply(
        &self,
        version: String,
        config: GatewayConfig,
    ) -> Result<Vec<String>, GatewayError> {
        let _turn = self.applying.lock().await;
        self.apply_now(version, config).await
    }

    /// `apply`, with the turn already taken.
    async fn apply_now(
        &self,
        version: String,
        config: GatewayConfig,
    ) -> Result<Vec<String>, GatewayError> {
        let svid = self.svids.borrow().clone();
        let errors = match svid {
            Some(svid) => {
                self.gateway
                    .apply(version.clone(), with_identity(&config, &svid))
                    .await?
            }
            None if needs_identity(&config) => {
                tracing::info!("config waits for the proxy's first certificate");
                vec![]
            }
            None => self.gateway.apply(version.clone(), config.clone()).await?,
        };
        self.running.set(version, config);
        Ok(errors)
    }
}

#[async_trait::async_trait]
impl ConfigTarget for Identified {
    fn running_version(&self) -> String {
        self.running.version()
    }

    async fn apply_snapshot(
        &self,
        version: String,
        snapshot: &[u8],
    ) -> Result<Vec<String>, String> {
        let result = match weft_api::wire::decode(snapshot) {
            Ok(config) => self
                .apply(version.clone(), config)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = &result {
            self.gateway.reject(version, e.clone());
        }
        result
    }

    async fn bind_errors(&self) -> Vec<String> {
        self.gateway.bind_errors().await
    }

    fn interest(&self) -> Option<Arc<Interest>> {
        self.gateway.interest.clone()
    }

    fn connected(&self, up: bool) {
        self.gateway.set_controller_connected(up);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn bundles_join_without_repeats() {
        let a = vec!["r1".to_string(), "r2".to_string()];
        let b = vec!["r2".to_string(), "r3".to_string()];
        assert_eq!(super::union(&a, &b), ["r1", "r2", "r3"]);
        assert_eq!(super::union(&[], &b), ["r2", "r3"]);
    }
}
