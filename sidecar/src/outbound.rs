//! The outbound side: the controller's outbound config (services, GAMMA
//! routes, clusters with the identities expected of them) completed with
//! what only the sidecar holds — its certificate and the trust bundle — for
//! mutual TLS to the destinations' sidecars.

use std::sync::Arc;
use tokio::sync::watch;
use weft_api::{GatewayConfig, TlsCertificate};
use weft_ca::workload::Svid;
use weft_gateway::Gateway;

/// `outbound` with every meshed cluster presenting `svid` and trusting its bundle.
pub fn config(outbound: &GatewayConfig, svid: &Svid) -> GatewayConfig {
    let mut config = outbound.clone();
    for cluster in config.clusters.values_mut() {
        if let Some(tls) = cluster.tls.as_mut() {
            tls.roots_pem = svid.bundle.clone();
            tls.client_cert = Some(TlsCertificate {
                cert_chain_pem: svid.chain.concat(),
                key_pem: svid.key_pem.clone(),
            });
        }
    }
    config
}

/// Serves the outbound config `configs` holds on `gateway`, applying it
/// again on each new config and each new certificate, until either source
/// goes away.
pub async fn run(
    gateway: Arc<Gateway>,
    mut configs: watch::Receiver<GatewayConfig>,
    mut svids: watch::Receiver<Option<Arc<Svid>>>,
) {
    let mut generation = 0u64;
    loop {
        let outbound = configs.borrow_and_update().clone();
        let svid = svids.borrow_and_update().clone();
        if let Some(svid) = svid {
            generation += 1;
            match gateway
                .apply(format!("outbound-{generation}"), config(&outbound, &svid))
                .await
            {
                Ok(errors) if errors.is_empty() => {
                    tracing::debug!(id = %svid.id, "outbound serving")
                }
                Ok(errors) => tracing::error!("outbound cannot listen: {}", errors.join("; ")),
                Err(e) => tracing::error!("outbound config refused: {e}"),
            }
        }
        tokio::select! {
            changed = configs.changed() => if changed.is_err() { return },
            changed = svids.changed() => if changed.is_err() { return },
        }
    }
}
