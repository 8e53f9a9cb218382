//! An egress gateway's count of what left the mesh: who asked (the
//! caller's verified SPIFFE ID, as Istio's `source_principal`; `unknown`
//! for a caller without one), for which external host (the XBackend's
//! hostname, so the series stay bounded), and the answer's code. Istio's
//! own metrics name the gateway itself as the source; this names the
//! workload behind it, for audit.

use super::Metrics;
use prometheus::{IntCounterVec, Opts};

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
    pub(crate) fn egress(&self, principal: &str, service: &str, status: &str) {
        self.egress
            .with_label_values(&[principal, service, status])
            .inc();
    }
}
