//! The outbound side: the controller's outbound config (services, GAMMA
//! routes, clusters with the identities expected of them) completed with
//! what only the sidecar holds — its certificate and the trust bundle — for
//! mutual TLS to the destinations' sidecars.

use weft_api::{GatewayConfig, TlsCertificate};
use weft_ca::workload::Svid;

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
