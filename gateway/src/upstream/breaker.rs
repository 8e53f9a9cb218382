//! Circuit breaking: bounds on what one proxy sends a cluster at once. A
//! request is admitted while fewer than `max_parallel_requests` are in
//! flight; it then holds one of `max_connections` slots (an HTTP/1 request
//! holds a connection for its whole exchange), or waits for one if fewer
//! than `max_pending_requests` wait already. Anything over a bound is
//! refused at once, and a wait ends by its deadline: nothing queues
//! without bound. The counters outlive snapshots (`crate::upstream::health`
//! keeps them by cluster), so a config change does not reset them.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use weft_api::CircuitBreaker;

#[derive(Debug, Default)]
pub struct Breaker {
    max_connections: AtomicU32,
    max_pending: AtomicU32,
    max_parallel: AtomicU32,
    in_flight: AtomicU32,
    holding: AtomicU32,
    pending: AtomicU32,
    freed: Notify,
}

/// A request let through: it holds its place until dropped.
#[derive(Debug)]
pub struct Admission {
    breaker: Arc<Breaker>,
    held: bool,
}

impl Drop for Admission {
    fn drop(&mut self) {
        let b = &self.breaker;
        if self.held {
            b.holding.fetch_sub(1, Ordering::AcqRel);
            if b.pending.load(Ordering::Acquire) > 0 {
                b.freed.notify_one();
            }
        }
        b.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Counts a waiting request while it waits (its future may be dropped).
struct Waiting<'a>(&'a Breaker);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Breaker {
    /// Takes the limits of the newest snapshot.
    pub fn set_limits(&self, limits: &CircuitBreaker) {
        self.max_connections
            .store(limits.max_connections, Ordering::Relaxed);
        self.max_pending
            .store(limits.max_pending_requests, Ordering::Relaxed);
        self.max_parallel
            .store(limits.max_parallel_requests, Ordering::Relaxed);
    }

    /// Admits a request, waiting at most `wait` for a connection slot;
    /// `None` when a bound is reached (the request is overflow).
    pub async fn admit(self: &Arc<Self>, wait: Duration) -> Option<Admission> {
        let parallel = self.max_parallel.load(Ordering::Relaxed);
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= parallel {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let mut admission = Admission {
            breaker: self.clone(),
            held: false,
        };
        if self.try_hold() {
            admission.held = true;
            return Some(admission);
        }
        let pending = self.max_pending.load(Ordering::Relaxed);
        if self.pending.fetch_add(1, Ordering::AcqRel) >= pending {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let _waiting = Waiting(self);
        let waited = tokio::time::timeout(wait, async {
            loop {
                let freed = self.freed.notified();
                tokio::pin!(freed);
                freed.as_mut().enable();
                if self.try_hold() {
                    return;
                }
                freed.await;
            }
        })
        .await;
        match waited {
            Ok(()) => {
                admission.held = true;
                Some(admission)
            }
            Err(_) => None,
        }
    }

    fn try_hold(&self) -> bool {
        let max = self.max_connections.load(Ordering::Relaxed);
        self.holding
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |h| {
                (h < max).then_some(h + 1)
            })
            .is_ok()
    }

    /// Requests in flight, waiting ones included.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(connections: u32, pending: u32, parallel: u32) -> Arc<Breaker> {
        let b = Arc::new(Breaker::default());
        b.set_limits(&CircuitBreaker {
            max_connections: connections,
            max_pending_requests: pending,
            max_parallel_requests: parallel,
            max_requests_per_connection: 0,
        });
        b
    }

    const WAIT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn parallel_requests_are_bounded() {
        let b = breaker(10, 10, 2);
        let one = b.admit(WAIT).await.unwrap();
        let _two = b.admit(WAIT).await.unwrap();
        assert!(b.admit(WAIT).await.is_none());
        drop(one);
        assert!(b.admit(WAIT).await.is_some());
    }

    #[tokio::test]
    async fn a_waiting_request_gets_the_freed_slot() {
        let b = breaker(1, 1, 10);
        let first = b.admit(WAIT).await.unwrap();
        let waiter = tokio::spawn({
            let b = b.clone();
            async move { b.admit(WAIT).await.is_some() }
        });
        // The second waits; a third finds the queue full.
        while b.pending.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        assert!(b.admit(WAIT).await.is_none());
        drop(first);
        assert!(waiter.await.unwrap());
        assert_eq!(b.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_wait_ends_by_its_deadline() {
        let b = breaker(1, 5, 10);
        let _held = b.admit(WAIT).await.unwrap();
        assert!(b.admit(Duration::from_millis(20)).await.is_none());
        assert_eq!(b.pending.load(Ordering::Acquire), 0);
        assert_eq!(b.in_flight(), 1);
    }
}
