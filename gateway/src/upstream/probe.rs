//! Active health checks, from each proxy that uses a cluster: one task per
//! checked cluster probes every endpoint each interval (jittered by up to a
//! tenth, the first round at a random point of the first interval, so that
//! proxies started together do not probe together), with the same peer a
//! request would use (TLS and mutual TLS included). An endpoint that fails
//! `unhealthy_threshold` checks in a row is marked unhealthy, and one that
//! then passes `healthy_threshold` in a row healthy again; the balancer
//! skips unhealthy ones as it skips ejected ones. The task follows the
//! newest snapshot's state of its cluster and ends when the cluster, or
//! its check, is gone.

use crate::config::snapshot::Snapshot;
use crate::upstream::balancer::ClusterState;
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use weft_api::HealthCheck;

/// The checking task of each checked cluster, by name.
#[derive(Default)]
pub struct Probes {
    running: Mutex<HashMap<String, watch::Sender<Arc<ClusterState>>>>,
}

impl Probes {
    /// Starts checks for the clusters of `snapshot` that ask for them,
    /// hands the others' tasks the new state, and ends those not needed.
    pub fn follow(&self, snapshot: &Snapshot) {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let checked: HashMap<&str, &Arc<ClusterState>> = snapshot
            .clusters
            .iter()
            .filter(|c| c.resilience.health_check.is_some())
            .map(|c| (c.name.as_str(), c))
            .collect();
        // A dropped sender ends its task.
        running.retain(|name, _| checked.contains_key(name.as_str()));
        for (name, state) in checked {
            match running.get(name) {
                Some(tx) => {
                    tx.send_replace((*state).clone());
                }
                None => {
                    let (tx, rx) = watch::channel((*state).clone());
                    tokio::spawn(run(rx));
                    running.insert(name.to_string(), tx);
                }
            }
        }
    }
}

/// A random share (0 to `tenths`/10) of `d`.
fn jitter(d: Duration, tenths: u32) -> Duration {
    d.mul_f64(rand::random::<f64>() * f64::from(tenths) / 10.0)
}

async fn run(mut rx: watch::Receiver<Arc<ClusterState>>) {
    let connector = Connector::new(None);
    let first = {
        let state = rx.borrow();
        state
            .resilience
            .health_check
            .as_ref()
            .map(|h| h.interval_ms)
    };
    let Some(interval) = first else {
        return;
    };
    tokio::time::sleep(jitter(Duration::from_millis(interval), 10)).await;
    loop {
        let state = rx.borrow_and_update().clone();
        let Some(check) = state.resilience.health_check.clone() else {
            return;
        };
        let rounds = (0..state.endpoints.len()).map(|i| probe(&connector, &state, i, &check));
        let passed = futures::future::join_all(rounds).await;
        let mut failing = 0;
        for (i, ok) in passed.into_iter().enumerate() {
            if !mark(&state, i, ok, &check) {
                failing += 1;
            }
        }
        state
            .health
            .failing_checks
            .store(failing, Ordering::Relaxed);
        let interval = Duration::from_millis(check.interval_ms);
        let wait = interval + jitter(interval, 1);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            changed = rx.changed() => {
                if changed.is_err() {
                    return;
                }
                // A new snapshot: keep the rhythm, with its endpoints.
                tokio::time::sleep(wait).await;
            }
        }
        if rx.has_changed().is_err() {
            return;
        }
    }
}

/// Counts one check of endpoint `i`; whether it is healthy after it.
fn mark(state: &ClusterState, i: usize, ok: bool, check: &HealthCheck) -> bool {
    let e = &state.endpoint_health()[i];
    let addr = state.endpoints[i];
    let failed = e.check_failed.load(Ordering::Relaxed);
    if ok {
        e.checks_failed.store(0, Ordering::Relaxed);
        let passed = e.checks_passed.fetch_add(1, Ordering::Relaxed) + 1;
        if failed && passed >= check.healthy_threshold {
            e.check_failed.store(false, Ordering::Relaxed);
            tracing::info!(cluster = %state.name, %addr, "endpoint passes its health checks again");
            return true;
        }
        !failed
    } else {
        e.checks_passed.store(0, Ordering::Relaxed);
        let fails = e.checks_failed.fetch_add(1, Ordering::Relaxed) + 1;
        if !failed && fails >= check.unhealthy_threshold {
            e.check_failed.store(true, Ordering::Relaxed);
            tracing::info!(cluster = %state.name, %addr, "endpoint fails its health checks");
            return false;
        }
        !failed
    }
}

/// One check of endpoint `i`: a connection (TCP), or an HTTP request whose
/// answer must have one of the expected statuses, within the timeout.
async fn probe(connector: &Connector, state: &ClusterState, i: usize, check: &HealthCheck) -> bool {
    let timeout = Duration::from_millis(check.timeout_ms);
    let mut peer = state.peer(i);
    peer.options.connection_timeout = Some(timeout);
    let attempt = async {
        let (mut session, _) = connector.get_http_session(&peer).await.ok()?;
        let Some(http) = &check.http else {
            return Some(true);
        };
        session.set_read_timeout(Some(timeout));
        let mut req =
            RequestHeader::build(http.method.as_str(), http.path.as_bytes(), None).ok()?;
        let host = http.host.as_deref().unwrap_or(&state.service);
        req.insert_header(http::header::HOST, host).ok()?;
        req.insert_header(http::header::USER_AGENT, "weft-health-check")
            .ok()?;
        req.insert_header(http::header::CONTENT_LENGTH, "0").ok()?;
        session.write_request_header(Box::new(req)).await.ok()?;
        session.finish_request_body().await.ok()?;
        session.read_response_header().await.ok()?;
        let status = session.response_header()?.status.as_u16();
        session.shutdown().await;
        Some(http.expected_statuses.contains(&status))
    };
    matches!(tokio::time::timeout(timeout, attempt).await, Ok(Some(true)))
}
