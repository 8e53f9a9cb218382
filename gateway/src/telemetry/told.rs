//! Label values a peer or a request chooses (the workloads and service a
//! mesh peer tells, a passthrough host), admitted up to `MAX_TOLD`
//! distinct values per label and `other` beyond, so that nobody can grow
//! the metric series without bound.

use std::collections::HashSet;
use std::sync::RwLock;

/// Distinct values a told label may take; more are recorded as `other`.
pub(crate) const MAX_TOLD: usize = 1000;

/// The values of one told label seen so far.
#[derive(Default)]
pub(crate) struct Told(RwLock<HashSet<String>>);

impl Told {
    /// `value` if it is known or there is room for it, else `other`. A
    /// known value (nearly every request's) takes only the read lock.
    pub(crate) fn admit<'a>(&self, value: &'a str) -> &'a str {
        if self
            .0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(value)
        {
            return value;
        }
        let mut seen = self.0.write().unwrap_or_else(|p| p.into_inner());
        if seen.contains(value) {
            return value;
        }
        if seen.len() >= MAX_TOLD {
            return "other";
        }
        seen.insert(value.to_string());
        value
    }
}

/// The told labels of one set of metric families.
#[derive(Default)]
pub(crate) struct Bounds {
    pub(crate) source_workload: Told,
    pub(crate) destination_workload: Told,
    pub(crate) destination_service: Told,
    pub(crate) source_cluster: Told,
}
