//! A cluster's endpoints and the choice among them: round robin, or least
//! request (the less busy of two endpoints picked at random).

use pingora::upstreams::peer::HttpPeer;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use weft_api::{AppProtocol, Cluster, LbPolicy};

/// How long a connection to an endpoint may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Pooled upstream connections unused this long are closed.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct ClusterState {
    pub name: String,
    /// The service as metrics name it: `<svc>.<ns>.svc.<cluster domain>`.
    pub service: String,
    pub protocol: AppProtocol,
    pub endpoints: Vec<SocketAddr>,
    /// One peer per endpoint, built with the snapshot; a request clones it.
    peers: Vec<HttpPeer>,
    lb: LbPolicy,
    /// TLS origination, when the cluster asks for it.
    pub tls: Option<Arc<crate::upstream::connector::MeshConnector>>,
    next: AtomicUsize,
    active: Vec<AtomicUsize>,
    /// Requests and retries in flight, for the retry budget.
    pub budget: crate::upstream::retry::Budget,
}

impl ClusterState {
    pub fn new(name: &str, c: &Cluster) -> Result<Self, String> {
        let tls = match &c.tls {
            Some(t) => Some(Arc::new(crate::upstream::connector::MeshConnector::new(
                t, c.protocol,
            )?)),
            None => None,
        };
        let peers = c
            .endpoints
            .iter()
            .map(|&addr| new_peer(tls.as_ref(), c.protocol, addr))
            .collect();
        Ok(ClusterState {
            service: c.service.clone().unwrap_or_else(|| name.to_string()),
            peers,
            tls,
            name: name.to_string(),
            protocol: c.protocol,
            endpoints: c.endpoints.clone(),
            lb: c.lb,
            next: AtomicUsize::new(0),
            active: c.endpoints.iter().map(|_| AtomicUsize::new(0)).collect(),
            budget: Default::default(),
        })
    }

    /// The peer for endpoint `i` (an index into `endpoints`).
    pub fn peer(&self, i: usize) -> HttpPeer {
        self.peers[i].clone()
    }

    /// The endpoint for the next request, marked active until `finish`.
    /// `skip` is an endpoint to avoid if there is another (a failed try).
    pub fn pick(&self, skip: Option<usize>) -> Option<usize> {
        let n = self.endpoints.len();
        if n == 0 {
            return None;
        }
        let mut i = match self.lb {
            LbPolicy::RoundRobin => self.next.fetch_add(1, Ordering::Relaxed) % n,
            LbPolicy::LeastRequest => {
                let a = rand::random_range(0..n);
                let b = rand::random_range(0..n);
                if self.active[b].load(Ordering::Relaxed) < self.active[a].load(Ordering::Relaxed) {
                    b
                } else {
                    a
                }
            }
        };
        if skip == Some(i) && n > 1 {
            i = (i + 1) % n;
        }
        self.active[i].fetch_add(1, Ordering::Relaxed);
        Some(i)
    }

    pub fn finish(&self, i: usize) {
        if let Some(a) = self.active.get(i) {
            a.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// The peer for the endpoint at `addr`: TLS as the cluster asks
/// (`crate::upstream::connector`), HTTP/2 to h2c clusters, pooled.
fn new_peer(
    tls: Option<&Arc<crate::upstream::connector::MeshConnector>>,
    protocol: AppProtocol,
    addr: SocketAddr,
) -> HttpPeer {
    let mut peer = match tls {
        Some(tls) => tls.peer(addr),
        None => HttpPeer::new(addr, false, String::new()),
    };
    peer.options.connection_timeout = Some(CONNECT_TIMEOUT);
    peer.options.idle_timeout = Some(POOL_IDLE_TIMEOUT);
    if protocol == AppProtocol::H2c {
        peer.options.set_http_version(2, 2);
    }
    peer
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(lb: LbPolicy, n: u16) -> ClusterState {
        let endpoints = (0..n)
            .map(|i| SocketAddr::from(([127, 0, 0, 1], 9000 + i)))
            .collect();
        ClusterState::new(
            "c",
            &Cluster {
                protocol: AppProtocol::Http1,
                endpoints,
                lb,
                tls: None,
                service: None,
            },
        )
        .unwrap()
    }

    #[test]
    fn round_robin_cycles() {
        let c = cluster(LbPolicy::RoundRobin, 3);
        let picks: Vec<_> = (0..6).map(|_| c.pick(None).unwrap()).collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
        assert_eq!(cluster(LbPolicy::RoundRobin, 0).pick(None), None);
    }

    #[test]
    fn least_request_avoids_the_busy_endpoint() {
        let c = cluster(LbPolicy::LeastRequest, 2);
        for _ in 0..50 {
            c.active[0].fetch_add(1, Ordering::Relaxed);
        }
        let ones = (0..100)
            .map(|_| {
                let i = c.pick(None).unwrap();
                c.finish(i);
                i
            })
            .filter(|&i| i == 1)
            .count();
        // Endpoint 0 wins only when both random picks land on it.
        assert!(ones > 50, "{ones}");
    }

    #[test]
    fn skips_a_failed_endpoint() {
        let c = cluster(LbPolicy::RoundRobin, 2);
        assert_eq!(c.pick(Some(0)), Some(1));
    }
}
