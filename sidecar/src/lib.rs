//! `weft-sidecar` owns the reduced per-workload proxy, built on the engine of
//! `weft-gateway` rather than a copy of it:
//!
//! - `inbound`: mutual TLS terminated with the workload's SPIFFE certificate
//!   (rotated with no restart), client certificates required to chain to the
//!   trust bundle (STRICT) or plaintext also accepted (PERMISSIVE), the
//!   caller's identity passed to the application on its local port;
//! - `outbound`: the workload's calls (HTTP_PROXY) routed by the mesh config
//!   and carried over mutual TLS to the destination's sidecar, whose SPIFFE
//!   ID is checked against the one expected for the service.

pub mod inbound;
pub mod outbound;

use std::sync::Arc;
use tokio::sync::watch;
use weft_ca::workload::Svid;
use weft_gateway::Gateway;

/// Applies `build(svid)` to `gateway` for each certificate `svids` brings,
/// until the identity manager goes away.
async fn follow(
    gateway: Arc<Gateway>,
    mut svids: watch::Receiver<Option<Arc<Svid>>>,
    side: &str,
    build: impl Fn(&Svid) -> weft_api::GatewayConfig,
) {
    let mut generation = 0u64;
    loop {
        let svid = svids.borrow_and_update().clone();
        if let Some(svid) = svid {
            generation += 1;
            match gateway
                .apply(format!("{side}-{generation}"), build(&svid))
                .await
            {
                Ok(errors) if errors.is_empty() => tracing::info!(id = %svid.id, "{side} serving"),
                Ok(errors) => tracing::error!("{side} cannot listen: {}", errors.join("; ")),
                Err(e) => tracing::error!("{side} config refused: {e}"),
            }
        }
        if svids.changed().await.is_err() {
            return;
        }
    }
}
