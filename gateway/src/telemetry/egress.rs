//! An egress gateway's count of what left the mesh: who asked (the
//! caller's verified SPIFFE ID, as Istio's `source_principal`; `unknown`
//! for a caller without one), for which external host (the XBackend's
//! hostname, so the series stay bounded), and the answer's code. Istio's
//! own metrics name the gateway itself as the source; this names the
//! workload behind it, for audit.

use super::Metrics;
use prometheus::{IntCounterVec, Opts};

/// Connections a sidecar refused for hosts the mesh does not declare.
pub(crate) fn blackhole_family() -> IntCounterVec {
    IntCounterVec::new(
        Opts::new(
            "weft_blackhole_connections_total",
            "Connections refused for hosts the mesh does not declare (RegistryOnly), Istio's BlackHoleCluster",
        ),
        &["reporter", "destination_service"],
    )
    .expect("valid metric")
}

pub(crate) fn family() -> IntCounterVec {
    IntCounterVec::new(
        Opts::new(
            "weft_egress_requests_total",
            "Requests an egress gateway sent (or refused) to hosts outside the mesh, by caller",
        ),
        &["source_principal", "destination_service", "response_code"],
    )
    .expect("valid metric")
}

impl Metrics {
    /// A connection refused as undeclared.
    pub fn blackhole_connection(&self) {
        self.blackholes
            .with_label_values(&[self.reporter().reporter, "BlackHoleCluster"])
            .inc();
    }

    pub(crate) fn egress(&self, principal: &str, service: &str, status: &str) {
        self.egress
            .with_label_values(&[principal, service, status])
            .inc();
    }
}
