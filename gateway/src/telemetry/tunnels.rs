//! An east-west gateway's count of tunnels: who asked (the caller's
//! verified SPIFFE ID, as Istio's `source_principal`), to which exported
//! service, and what came of it. Principals are the mesh's identities and
//! services the exported ones, so the series stay bounded; a target that
//! is not exported is counted as `unknown`.

use super::Metrics;
use prometheus::{IntCounterVec, Opts};

pub(crate) fn family() -> IntCounterVec {
    IntCounterVec::new(
        Opts::new(
            "weft_tunnels_total",
            "Tunnels asked of an east-west gateway: opened, denied (by policy), not_exported, unreachable",
        ),
        &["reporter", "source_principal", "destination_service", "result"],
    )
    .expect("valid metric")
}

impl Metrics {
    pub fn tunnel(&self, principal: &str, service: &str, result: &str) {
        self.tunnels
            .with_label_values(&[self.reporter().reporter, principal, service, result])
            .inc();
    }
}
