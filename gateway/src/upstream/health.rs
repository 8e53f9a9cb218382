//! Endpoint health, which outlives snapshots: a proxy's `Registry` keeps,
//! per cluster name, the circuit breaker's counters and each endpoint's
//! state, and every snapshot's `ClusterState` takes them from it, so a
//! config change neither forgets an ejection nor resets a breaker.
//!
//! An endpoint is unusable while ejected by outlier detection (passive:
//! failures in a row, counted here from each try's outcome) or marked
//! unhealthy by active checks (`crate::upstream::probe`). Ejection follows
//! Envoy: it lasts the base time times the number of times the endpoint
//! has been ejected (that number falls by one per quiet interval), at most
//! 300 s (or the base time, if longer); and no more than the policy's
//! share of endpoints is ejected at once, though one always may be.

use crate::upstream::breaker::Breaker;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;
use weft_api::Outlier;

/// The longest ejection, unless the base time is longer.
const MAX_EJECTION_MS: u64 = 300_000;

/// Milliseconds on the process's clock (never 0).
pub fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One endpoint's health.
#[derive(Debug, Default)]
pub struct EndpointHealth {
    consecutive_5xx: AtomicU32,
    consecutive_gateway: AtomicU32,
    /// Ejected until then (`now_ms`); not ejected once it has passed.
    pub(crate) ejected_until: AtomicU64,
    times_ejected: AtomicU32,
    /// Active checks say it is unhealthy.
    pub(crate) check_failed: AtomicBool,
    /// Checks failed, and passed, in a row (the prober's own counts).
    pub(crate) checks_failed: AtomicU32,
    pub(crate) checks_passed: AtomicU32,
}

impl EndpointHealth {
    pub fn usable(&self, now: u64) -> bool {
        !self.check_failed.load(Ordering::Relaxed) && !self.ejected(now)
    }

    pub fn ejected(&self, now: u64) -> bool {
        self.ejected_until.load(Ordering::Relaxed) > now
    }

    fn reset_counts(&self) {
        for c in [&self.consecutive_5xx, &self.consecutive_gateway] {
            if c.load(Ordering::Relaxed) != 0 {
                c.store(0, Ordering::Relaxed);
            }
        }
    }
}

/// What one try at an endpoint came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The endpoint answered with this status.
    Status(u16),
    /// No answer: the connection failed, was reset, or timed out (counted
    /// as a gateway error, as Envoy does).
    LocalFailure,
}

/// An endpoint: its address, and the east-west gateway it is reached
/// through when it is on another network (two networks may use the same
/// addresses).
pub type EndpointKey = (SocketAddr, Option<SocketAddr>);

/// The state of one cluster's endpoints that outlives snapshots.
#[derive(Debug, Default)]
pub struct ClusterHealth {
    endpoints: Mutex<HashMap<EndpointKey, Arc<EndpointHealth>>>,
    pub breaker: Arc<Breaker>,
    /// Ejections are decided one at a time, so that two at once cannot
    /// pass the share allowed.
    ejecting: Mutex<()>,
    /// No endpoint is ejected past this (`now_ms`): until then, picks look
    /// at each endpoint's health.
    ejections_until: AtomicU64,
    /// Endpoints active checks mark unhealthy.
    pub(crate) failing_checks: AtomicUsize,
    /// Requests each upstream connection has carried (by socket), when
    /// `max_requests_per_connection` bounds them.
    connection_uses: Mutex<HashMap<i32, u32>>,
}

impl ClusterHealth {
    /// The state of each of `keys`, made for new ones; endpoints no
    /// longer there are forgotten.
    pub fn endpoints(&self, keys: &[EndpointKey]) -> Vec<Arc<EndpointHealth>> {
        let mut known = lock(&self.endpoints);
        known.retain(|a, _| keys.contains(a));
        keys.iter()
            .map(|a| known.entry(*a).or_default().clone())
            .collect()
    }

    /// Whether some endpoint may be unusable now.
    pub fn may_be_unusable(&self, now: u64) -> bool {
        self.failing_checks.load(Ordering::Relaxed) > 0
            || self.ejections_until.load(Ordering::Relaxed) > now
    }

    /// Counts a request on the connection at `fd` (`fresh`: just opened);
    /// true when it is the connection's last under `max`.
    pub fn last_on_connection(&self, fd: i32, fresh: bool, max: u32) -> bool {
        let mut uses = lock(&self.connection_uses);
        let n = uses.entry(fd).or_insert(0);
        *n = if fresh { 1 } else { *n + 1 };
        if *n >= max {
            uses.remove(&fd);
            return true;
        }
        false
    }

    /// Counts `outcome` of a try at `endpoints[i]` and ejects it when the
    /// policy says so.
    pub fn record(
        &self,
        endpoints: &[Arc<EndpointHealth>],
        i: usize,
        outcome: Outcome,
        o: &Outlier,
    ) {
        let Some(e) = endpoints.get(i) else {
            return;
        };
        let (error, gateway) = match outcome {
            Outcome::Status(s) => (s >= 500, matches!(s, 502..=504)),
            Outcome::LocalFailure => (true, true),
        };
        if !error {
            e.reset_counts();
            return;
        }
        let n5 = e.consecutive_5xx.fetch_add(1, Ordering::Relaxed) + 1;
        let ng = if gateway {
            e.consecutive_gateway.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            e.consecutive_gateway.store(0, Ordering::Relaxed);
            0
        };
        let tripped = (o.consecutive_5xx > 0 && n5 >= o.consecutive_5xx)
            || (o.consecutive_gateway_errors > 0 && ng >= o.consecutive_gateway_errors);
        if tripped {
            self.eject(endpoints, i, o);
        }
    }

    fn eject(&self, endpoints: &[Arc<EndpointHealth>], i: usize, o: &Outlier) {
        let _one_at_a_time = lock(&self.ejecting);
        let now = now_ms();
        let e = &endpoints[i];
        e.reset_counts();
        if e.ejected(now) {
            return;
        }
        let ejected = endpoints.iter().filter(|e| e.ejected(now)).count();
        let allowed = o.max_ejection_percent as usize * endpoints.len();
        if ejected > 0 && (ejected + 1) * 100 > allowed {
            tracing::debug!("not ejecting: {ejected} of {} already are", endpoints.len());
            return;
        }
        // The count falls by one per quiet interval since the last ejection ended.
        let ended = e.ejected_until.load(Ordering::Relaxed);
        let quiet = if ended == 0 {
            0
        } else {
            now.saturating_sub(ended) / o.interval_ms.max(1)
        };
        let before = e.times_ejected.load(Ordering::Relaxed);
        let times = before.saturating_sub(quiet.min(u32::MAX as u64) as u32) + 1;
        e.times_ejected.store(times, Ordering::Relaxed);
        let cap = MAX_EJECTION_MS.max(o.base_ejection_ms);
        let ms = o.base_ejection_ms.saturating_mul(times as u64).min(cap);
        let until = now + ms;
        e.ejected_until.store(until, Ordering::Relaxed);
        self.ejections_until.fetch_max(until, Ordering::Relaxed);
        tracing::info!(endpoint = i, ms, times, "endpoint ejected");
    }
}

/// Every cluster's health, by cluster name, for one proxy.
#[derive(Debug, Default)]
pub struct Registry {
    clusters: Mutex<HashMap<String, Arc<ClusterHealth>>>,
}

impl Registry {
    /// The health of cluster `name`, made the first time.
    pub fn cluster(&self, name: &str) -> Arc<ClusterHealth> {
        lock(&self.clusters)
            .entry(name.to_string())
            .or_default()
            .clone()
    }

    /// Forgets clusters `keep` says are gone.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        lock(&self.clusters).retain(|name, _| keep(name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outlier(percent: u32) -> Outlier {
        Outlier {
            consecutive_5xx: 3,
            consecutive_gateway_errors: 0,
            interval_ms: 10_000,
            base_ejection_ms: 30_000,
            max_ejection_percent: percent,
        }
    }

    fn cluster(n: u16) -> (ClusterHealth, Vec<Arc<EndpointHealth>>) {
        let c = ClusterHealth::default();
        let addrs: Vec<SocketAddr> = (0..n).map(|i| ([127, 0, 0, 1], 1000 + i).into()).collect();
        let keys: Vec<EndpointKey> = addrs.iter().map(|a| (*a, None)).collect();
        let e = c.endpoints(&keys);
        (c, e)
    }

    #[test]
    fn ejects_after_the_count_in_a_row_only() {
        let (c, e) = cluster(4);
        let o = outlier(100);
        for _ in 0..2 {
            c.record(&e, 0, Outcome::Status(500), &o);
        }
        c.record(&e, 0, Outcome::Status(200), &o);
        c.record(&e, 0, Outcome::LocalFailure, &o);
        c.record(&e, 0, Outcome::Status(503), &o);
        assert!(e[0].usable(now_ms()), "the count restarted after a success");
        c.record(&e, 0, Outcome::Status(500), &o);
        assert!(!e[0].usable(now_ms()));
        assert!(c.may_be_unusable(now_ms()));
    }

    #[test]
    fn gateway_errors_have_their_own_count() {
        let (c, e) = cluster(2);
        let mut o = outlier(100);
        o.consecutive_5xx = 0;
        o.consecutive_gateway_errors = 2;
        c.record(&e, 1, Outcome::Status(500), &o);
        c.record(&e, 1, Outcome::Status(500), &o);
        assert!(e[1].usable(now_ms()), "500 is not a gateway error");
        c.record(&e, 1, Outcome::Status(502), &o);
        c.record(&e, 1, Outcome::LocalFailure, &o);
        assert!(!e[1].usable(now_ms()));
    }

    #[test]
    fn ejects_no_more_than_the_share_but_always_one() {
        let (c, e) = cluster(4);
        for percent in [0, 50] {
            let o = outlier(percent);
            for i in 0..4 {
                for _ in 0..3 {
                    c.record(&e, i, Outcome::Status(500), &o);
                }
            }
            let ejected = e.iter().filter(|e| e.ejected(now_ms())).count();
            assert_eq!(ejected, if percent == 0 { 1 } else { 2 }, "{percent}%");
        }
    }

    #[test]
    fn ejections_lengthen_and_keep_across_snapshots() {
        let (c, e) = cluster(2);
        let o = outlier(100);
        let eject = |e: &[Arc<EndpointHealth>]| {
            for _ in 0..3 {
                c.record(e, 0, Outcome::Status(500), &o);
            }
        };
        eject(&e);
        let first = e[0].ejected_until.load(Ordering::Relaxed) - now_ms();
        // The ejection ends; the next comes before a quiet interval passes.
        e[0].ejected_until.store(now_ms() - 1, Ordering::Relaxed);
        // A new snapshot's list shares the state.
        let again = c.endpoints(&[
            (([127, 0, 0, 1], 1000).into(), None),
            (([127, 0, 0, 1], 1001).into(), None),
        ]);
        assert!(Arc::ptr_eq(&again[0], &e[0]));
        eject(&again);
        let second = e[0].ejected_until.load(Ordering::Relaxed) - now_ms();
        assert!(first <= 30_001 && second > 59_000, "{first} {second}");
    }

    #[test]
    fn a_connection_is_closed_after_its_share_of_requests() {
        let c = ClusterHealth::default();
        assert!(!c.last_on_connection(7, true, 3));
        assert!(!c.last_on_connection(7, false, 3));
        assert!(c.last_on_connection(7, false, 3));
        // A new connection on the same socket number starts again.
        assert!(!c.last_on_connection(7, true, 3));
    }
}
