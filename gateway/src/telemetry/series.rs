//! The request series of one label set (`istio_requests_total` and the
//! three histograms), looked up once per set per data-plane thread and then
//! found in that thread's cache: a request records with one hash of its
//! label values and no lock, where asking Prometheus's families costs four
//! hashes, four read locks and four reference counts.
//!
//! The cache is keyed by the label values as the request gave them, before
//! told values are bounded (`Admit`), so a known set skips that too. It holds
//! at most `CAPACITY` sets per thread and starts over when full: a peer that
//! sends ever new values gets no more series than before (they are bounded
//! where they are made), only misses.

use prometheus::{Histogram, IntCounter};
use std::cell::RefCell;
use std::hash::{Hash, Hasher};

/// Label sets cached per thread before the cache starts over.
pub(crate) const CAPACITY: usize = 4096;

/// The four request series of one label set.
#[derive(Clone)]
pub(crate) struct Series {
    pub requests: IntCounter,
    pub duration: Histogram,
    pub request_bytes: Histogram,
    pub response_bytes: Histogram,
}

/// A cached label set: the families it belongs to (one per `Metrics::new`)
/// and its label values (`LABELS`, in order).
struct Key {
    families: u64,
    labels: [Box<str>; 14],
}

/// A label set as a request has it, to look up without allocating.
struct Lookup<'a> {
    families: u64,
    labels: &'a [&'a str; 14],
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.families.hash(h);
        for l in &self.labels {
            l.as_ref().hash(h);
        }
    }
}

impl Hash for Lookup<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.families.hash(h);
        for l in self.labels {
            l.hash(h);
        }
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.families == other.families && self.labels == other.labels
    }
}

impl Eq for Key {}

impl hashbrown::Equivalent<Key> for Lookup<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        self.families == key.families
            && self
                .labels
                .iter()
                .zip(&key.labels)
                .all(|(a, b)| *a == b.as_ref())
    }
}

thread_local! {
    static CACHE: RefCell<hashbrown::HashMap<Key, Series>> = RefCell::new(hashbrown::HashMap::new());
}

/// Calls `record` with the series of `labels` in the families `families`,
/// from this thread's cache, else made by `resolve` and cached.
pub(crate) fn with(
    families: u64,
    labels: &[&str; 14],
    resolve: impl FnOnce() -> Series,
    record: impl FnOnce(&Series),
) {
    CACHE.with(|cache| {
        let lookup = Lookup { families, labels };
        if let Some(s) = cache.borrow().get(&lookup) {
            return record(s);
        }
        let series = resolve();
        record(&series);
        let mut cache = cache.borrow_mut();
        if cache.len() >= CAPACITY {
            cache.clear();
        }
        let key = Key {
            families,
            labels: labels.map(Box::from),
        };
        cache.insert(key, series);
    })
}

/// How many label sets this thread has cached.
#[cfg(test)]
pub(crate) fn cached() -> usize {
    CACHE.with(|c| c.borrow().len())
}
