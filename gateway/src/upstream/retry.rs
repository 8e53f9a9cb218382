//! Retries: which failed tries are tried again, how long to wait first, and
//! the budget that keeps retries from amplifying an outage.
//!
//! A route's `Retry` says how often and on which response codes; without
//! one the default applies, as in Istio: idempotent requests are retried
//! twice on a reset connection or a 503. A connection that could not be
//! made is retried for any request (nothing was sent). Every retry counts
//! against the attempts, whatever failed, Pingora's reconnects on a pooled
//! connection included. A retry also needs a replayable request (nothing
//! of the response sent downstream, the body still buffered), time left
//! before the request's deadline (a retry the deadline stops ends the
//! request as a timeout), and room in the cluster's budget: at most a fifth
//! of its requests in flight (or 10, whichever is more) may be in retry at
//! once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use weft_api::Retry;

/// The policy of routes that set none.
static DEFAULT: Retry = Retry {
    attempts: 2,
    backoff_ms: 25,
    codes: Vec::new(),
};
/// Retries in flight allowed per 100 requests in flight...
const BUDGET_PERCENT: usize = 20;
/// ...and at least this many.
const MIN_CONCURRENT_RETRIES: usize = 10;
/// Backoff grows to at most this many times the route's least wait.
const MAX_BACKOFF_FACTOR: u32 = 10;

/// How a try failed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Failure {
    /// The upstream answered with this status.
    Status(u16),
    /// The connection broke before a response.
    Reset,
    /// No response within the per-try timeout.
    Timeout,
    /// No connection could be made.
    Connect,
}

/// Whether a failed try is tried again.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Verdict {
    Retry,
    No,
    /// A retry was due, but the request's deadline leaves no time for it.
    PastDeadline,
}

/// A cluster's requests and retries in flight.
#[derive(Debug, Default)]
pub struct Budget {
    in_flight: AtomicUsize,
    retrying: AtomicUsize,
}

impl Budget {
    pub fn start(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub fn end(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// Takes a place among the requests in retry, if there is room.
    pub fn acquire(&self) -> bool {
        let limit = (self.in_flight.load(Ordering::Relaxed) * BUDGET_PERCENT / 100)
            .max(MIN_CONCURRENT_RETRIES);
        self.retrying
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_ok()
    }

    pub fn release(&self) {
        self.retrying.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What one request has used of its retries.
#[derive(Debug, Default)]
pub struct RetryState {
    pub retries: u32,
    /// Holds a place in the cluster's budget (released when the request ends).
    pub in_budget: bool,
    /// The wait before the next try.
    pub wait: Option<Duration>,
    /// The last try failed on its status and is being retried.
    pub on_status: bool,
    /// Retrying stopped at the deadline: the request timed out.
    pub timed_out: bool,
    /// When the whole request (all tries) must be done.
    pub deadline: Option<Instant>,
}

/// What the request allows, apart from the policy.
pub struct Request {
    pub idempotent: bool,
    /// The body can be sent again and nothing was sent downstream.
    pub replayable: bool,
}

impl RetryState {
    /// Whether a try that failed with `failure` is tried again; if so the
    /// retry is counted and its wait set.
    pub fn allow(
        &mut self,
        policy: Option<&Retry>,
        failure: Failure,
        req: &Request,
        budget: &Budget,
    ) -> Verdict {
        let wanted = match (policy, failure) {
            (_, Failure::Connect) => true,
            (None, Failure::Status(503) | Failure::Reset) => req.idempotent,
            (None, _) => false,
            (Some(p), Failure::Status(code)) => p.codes.contains(&code),
            (Some(_), Failure::Reset | Failure::Timeout) => req.idempotent,
        };
        let policy = policy.unwrap_or(&DEFAULT);
        if !wanted || !req.replayable || self.retries >= policy.attempts {
            return Verdict::No;
        }
        let wait = backoff(policy, self.retries + 1);
        if self.deadline.is_some_and(|d| Instant::now() + wait >= d) {
            self.timed_out = true;
            return Verdict::PastDeadline;
        }
        if !self.in_budget {
            if !budget.acquire() {
                tracing::debug!("retry budget exhausted");
                return Verdict::No;
            }
            self.in_budget = true;
        }
        self.retries += 1;
        self.wait = Some(wait);
        Verdict::Retry
    }

    /// The time left before the deadline, if there is one.
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }
}

/// The wait before retry `n` (from 1): the route's least wait, doubled for
/// each later retry up to a cap, plus up to half of it again as jitter.
fn backoff(policy: &Retry, n: u32) -> Duration {
    let base = policy.backoff_ms;
    let grown = base
        .saturating_mul(1u64 << (n - 1).min(16))
        .min(base.saturating_mul(u64::from(MAX_BACKOFF_FACTOR)));
    let jitter = if base > 1 {
        rand::random::<u64>() % (base / 2 + 1)
    } else {
        0
    };
    Duration::from_millis(grown + jitter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Verdict::{No, PastDeadline, Retry as Yes};

    const GET: Request = Request {
        idempotent: true,
        replayable: true,
    };
    const POST: Request = Request {
        idempotent: false,
        replayable: true,
    };

    #[test]
    fn default_policy_retries_idempotent_resets_and_503_twice() {
        let budget = Budget::default();
        let mut s = RetryState::default();
        assert_eq!(s.allow(None, Failure::Reset, &GET, &budget), Yes);
        assert_eq!(s.allow(None, Failure::Status(503), &GET, &budget), Yes);
        assert_eq!(
            s.allow(None, Failure::Reset, &GET, &budget),
            No,
            "two at most"
        );
        let mut s = RetryState::default();
        assert_eq!(s.allow(None, Failure::Reset, &POST, &budget), No);
        assert_eq!(s.allow(None, Failure::Status(500), &GET, &budget), No);
        assert_eq!(s.allow(None, Failure::Timeout, &GET, &budget), No);
    }

    #[test]
    fn route_policy_retries_its_codes_for_any_method() {
        let policy = Retry {
            attempts: 3,
            backoff_ms: 10,
            codes: vec![500, 502],
        };
        let budget = Budget::default();
        let mut s = RetryState::default();
        assert_eq!(
            s.allow(Some(&policy), Failure::Status(500), &POST, &budget),
            Yes
        );
        assert_eq!(
            s.allow(Some(&policy), Failure::Status(503), &POST, &budget),
            No
        );
        assert_eq!(s.allow(Some(&policy), Failure::Timeout, &GET, &budget), Yes);
        assert_eq!(
            s.allow(Some(&policy), Failure::Status(502), &GET, &budget),
            Yes
        );
        assert_eq!(
            s.allow(Some(&policy), Failure::Status(502), &GET, &budget),
            No
        );
        let unreplayable = Request {
            idempotent: true,
            replayable: false,
        };
        let mut s = RetryState::default();
        assert_eq!(
            s.allow(Some(&policy), Failure::Status(500), &unreplayable, &budget),
            No
        );
    }

    #[test]
    fn every_failure_counts_against_the_attempts() {
        let policy = Retry {
            attempts: 3,
            backoff_ms: 1,
            codes: vec![],
        };
        let budget = Budget::default();
        let mut s = RetryState::default();
        // A connection not made is retried even for a POST, and counts.
        assert_eq!(
            s.allow(Some(&policy), Failure::Connect, &POST, &budget),
            Yes
        );
        assert_eq!(s.allow(Some(&policy), Failure::Reset, &GET, &budget), Yes);
        assert_eq!(s.allow(Some(&policy), Failure::Connect, &GET, &budget), Yes);
        assert_eq!(s.allow(Some(&policy), Failure::Connect, &GET, &budget), No);
        assert_eq!(s.retries, 3);
    }

    #[test]
    fn backoff_waits_at_least_the_minimum_and_grows_to_a_cap() {
        let policy = Retry {
            attempts: 20,
            backoff_ms: 100,
            codes: vec![],
        };
        for n in 1..20 {
            let w = backoff(&policy, n).as_millis() as u64;
            let floor = (100u64 << (n - 1).min(16)).min(1000);
            assert!((floor..=floor + 50).contains(&w), "retry {n}: {w} ms");
        }
    }

    #[test]
    fn a_retry_the_deadline_stops_is_a_timeout() {
        let budget = Budget::default();
        let mut s = RetryState {
            deadline: Some(Instant::now() + Duration::from_millis(5)),
            ..Default::default()
        };
        assert_eq!(s.allow(None, Failure::Reset, &GET, &budget), PastDeadline);
        assert!(s.timed_out);
        // One that was not due is not.
        let mut s = RetryState {
            deadline: Some(Instant::now() + Duration::from_millis(5)),
            ..Default::default()
        };
        assert_eq!(s.allow(None, Failure::Reset, &POST, &budget), No);
        assert!(!s.timed_out);
    }

    #[test]
    fn the_budget_bounds_concurrent_retries() {
        let budget = Budget::default();
        for _ in 0..100 {
            budget.start();
        }
        let mut states: Vec<RetryState> = (0..30).map(|_| RetryState::default()).collect();
        let allowed = states
            .iter_mut()
            .map(|s| s.allow(None, Failure::Reset, &GET, &budget))
            .filter(|v| *v == Yes)
            .count();
        assert_eq!(allowed, 20, "a fifth of 100 in flight");
        // A request already in retry keeps its place for its next retry.
        assert_eq!(states[0].allow(None, Failure::Reset, &GET, &budget), Yes);
        budget.release();
        let mut late = RetryState::default();
        assert_eq!(late.allow(None, Failure::Reset, &GET, &budget), Yes);
    }
}
