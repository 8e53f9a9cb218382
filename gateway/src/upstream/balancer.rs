//! A cluster's endpoints and the choice among them: round robin, least
//! request (the less busy of two endpoints picked at random), random, or
//! by the request's key (`crate::upstream::maglev`), among the endpoints
//! that are healthy (`crate::upstream::health`); among all of them when
//! fewer than the panic threshold's share are. A request whose session
//! names an endpoint goes there while it is usable.

use crate::upstream::health::{self, ClusterHealth, EndpointHealth, Outcome, Registry};
use pingora::upstreams::peer::HttpPeer;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use weft_api::{AppProtocol, Cluster, LbPolicy, Resilience};

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
    pub resilience: Resilience,
    /// What outlives the snapshot: the breaker, and each endpoint's health.
    pub health: Arc<ClusterHealth>,
    endpoint_health: Vec<Arc<EndpointHealth>>,
    /// The consistent-hashing table (`LbPolicy::ConsistentHash`), and
    /// what a request is hashed on.
    maglev: Option<crate::upstream::maglev::Maglev>,
    pub hash: Option<weft_api::ConsistentHash>,
    /// Zone-aware clusters: whether each endpoint is in the proxy's zone.
    local: Option<Vec<bool>>,
    /// Clusters of the cluster set: whether each endpoint is in this
    /// cluster (they go first; other clusters' only when none is usable).
    home: Option<Vec<bool>>,
    /// How many endpoints are in this cluster (the rest are in others).
    homes: usize,
    /// Which cluster of the cluster set each endpoint is in (empty: this
    /// one), for metrics.
    pub origins: Vec<String>,
    /// Tunnels to endpoints on other networks, and each endpoint's
    /// east-west gateway (none: reached directly).
    tunnels: Option<Arc<crate::upstream::tunnel::Tunnels>>,
    vias: Vec<Option<SocketAddr>>,
    /// Each endpoint's name in session tokens: a hash of the cluster's
    /// name and the endpoint's address, made once with the snapshot.
    pub session_tags: Vec<u64>,
    /// A host outside the mesh, resolved per request
    /// (`crate::upstream::external`); `endpoints` is empty.
    pub external: Option<weft_api::ExternalHost>,
}

/// What a request brings to the choice of its endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hint {
    None,
    /// Its key, for consistent hashing.
    Hash(u64),
    /// The endpoint its session is pinned to.
    Pinned(usize),
}

impl ClusterState {
    /// The state of cluster `name`, with the health `registry` keeps of
    /// it, for a proxy in `zone`.
    pub fn new(
        name: &str,
        c: &Cluster,
        registry: &Registry,
        zone: Option<&str>,
    ) -> Result<Self, String> {
        let tls = match &c.tls {
            Some(t) => Some(Arc::new(crate::upstream::connector::MeshConnector::new(
                t, c.protocol,
            )?)),
            None => None,
        };
        // Endpoints on other networks are reached through tunnels.
        let tunnels = match (&c.tls, c.origins.iter().any(|o| o.via.is_some())) {
            (Some(t), true) => Some(Arc::new(crate::upstream::tunnel::Tunnels::new(t)?)),
            _ => None,
        };
        let peers = c
            .endpoints
            .iter()
            .enumerate()
            .map(|(i, &addr)| {
                let via = c.origins.get(i).and_then(|o| o.via);
                let tunnel = match (&tls, &tunnels, via) {
                    (Some(mesh), Some(tunnels), Some(gateway)) => {
                        Some(crate::upstream::tunnel::TunnelPeer {
                            mesh: mesh.clone(),
                            tunnels: tunnels.clone(),
                            gateway,
                        })
                    }
                    _ => None,
                };
                new_peer(tls.as_ref(), tunnel, c.protocol, addr)
            })
            .collect();
        let health = registry.cluster(name);
        health.breaker.set_limits(&c.resilience.circuit_breaker);
        let keys: Vec<crate::upstream::health::EndpointKey> = match c.origins.is_empty() {
            true => c.endpoints.iter().map(|a| (*a, None)).collect(),
            false => c
                .endpoints
                .iter()
                .zip(&c.origins)
                .map(|(a, o)| (*a, o.via))
                .collect(),
        };
        Ok(ClusterState {
            endpoint_health: health.endpoints(&keys),
            homes: c.origins.iter().filter(|o| o.is_local()).count(),
            home: c
                .origins
                .iter()
                .any(|o| !o.is_local())
                .then(|| c.origins.iter().map(weft_api::Origin::is_local).collect()),
            origins: c.origins.iter().map(|o| o.cluster.clone()).collect(),
            vias: c.origins.iter().map(|o| o.via).collect(),
            tunnels,
            health,
            resilience: c.resilience.clone(),
            hash: c.hash.clone().filter(|_| c.lb == LbPolicy::ConsistentHash),
            session_tags: c
                .endpoints
                .iter()
                .map(|a| crate::upstream::maglev::fnv1a(format!("{name}|{a}").as_bytes()))
                .collect(),
            local: match (zone, &c.resilience.zone_aware) {
                (Some(zone), Some(_)) if c.zones.len() == c.endpoints.len() => {
                    Some(c.zones.iter().map(|z| z == zone).collect())
                }
                _ => None,
            },
            maglev: match (&c.hash, c.lb) {
                (Some(h), LbPolicy::ConsistentHash) => Some(crate::upstream::maglev::Maglev::new(
                    &c.endpoints,
                    h.table_size,
                )),
                _ => None,
            },
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
            external: c.external.clone(),
        })
    }

    /// The peer for address `addr` of the external host `name`: TLS as
    /// the cluster asks, with `name` as the server name checked.
    pub fn external_peer(&self, addr: SocketAddr, name: &str) -> HttpPeer {
        let mut peer = new_peer(self.tls.as_ref(), None, self.protocol, addr);
        if peer.is_tls() {
            peer.sni = name.to_string();
        }
        peer
    }

    /// The tunnels and the east-west gateway endpoint `i` is reached
    /// through, when it is on another network.
    pub fn tunnel_of(&self, i: usize) -> Option<(&crate::upstream::tunnel::Tunnels, SocketAddr)> {
        Some((self.tunnels.as_deref()?, (*self.vias.get(i)?)?))
    }

    /// The peer for endpoint `i` (an index into `endpoints`).
    pub fn peer(&self, i: usize) -> HttpPeer {
        self.peers[i].clone()
    }

    /// The endpoint for the next request, marked active until `finish`.
    /// `skip` is an endpoint to avoid if there is another (a failed try).
    pub fn pick(&self, skip: Option<usize>) -> Option<usize> {
        self.pick_for(skip, Hint::None)
    }

    /// As `pick`, for a request that brings `hint`: its pinned endpoint
    /// while usable; by its key, the first usable endpoint of the slots
    /// from the one it hashes to.
    pub fn pick_for(&self, skip: Option<usize>, hint: Hint) -> Option<usize> {
        let now = health::now_ms();
        let usable = |i: usize| {
            Some(i) != skip && self.endpoint_health.get(i).is_some_and(|e| e.usable(now))
        };
        let chosen = match (hint, &self.maglev) {
            (Hint::Pinned(i), _) if usable(i) => Some(i),
            // With no usable endpoint, the key still decides (panic).
            (Hint::Hash(key), Some(table)) => table
                .walk(key)
                .find(|i| usable(*i))
                .or_else(|| table.walk(key).find(|i| Some(*i) != skip)),
            _ => None,
        };
        if let Some(i) = chosen {
            self.active[i].fetch_add(1, Ordering::Relaxed);
            return Some(i);
        }
        let n = self.endpoints.len();
        if n == 0 {
            return None;
        }
        let mut usable = Usable {
            n,
            count: n,
            health: None,
            local: None,
            home: None,
        };
        // This cluster's endpoints while one of them is healthy (and not
        // the one that just failed), else the other clusters' while one of
        // theirs is; the panic threshold then applies within the tier, as
        // Envoy's does per priority.
        if let Some(home) = &self.home {
            let healthy_in = |here: bool| {
                (0..n).any(|i| {
                    home[i] == here && Some(i) != skip && self.endpoint_health[i].usable(now)
                })
            };
            let here = healthy_in(true) || !healthy_in(false);
            let size = |here: bool| if here { self.homes } else { n - self.homes };
            // A tier with no endpoint at all is no choice.
            let here = if size(here) == 0 { !here } else { here };
            usable.home = Some((home, here));
            usable.count = size(here);
        }
        let zoned = self.local.is_some();
        let checked = self.resilience.guarded() && (zoned || self.health.may_be_unusable(now));
        if checked {
            let tier = usable;
            let healthy = (0..n)
                .filter(|i| tier.ok(*i) && self.endpoint_health[*i].usable(now))
                .count();
            // Below the panic threshold, health is ignored.
            let threshold = self.resilience.panic_threshold as usize * tier.count;
            if healthy * 100 >= threshold && healthy > 0 {
                usable.health = Some((&self.endpoint_health, now));
                usable.count = healthy;
            }
        }
        if checked {
            // The proxy's zone alone, while it has enough of them.
            if let (Some(local), Some(z)) = (&self.local, &self.resilience.zone_aware) {
                let mine = Usable {
                    local: Some(local),
                    ..usable
                };
                let count = (0..n).filter(|i| mine.ok(*i)).count();
                if count >= (z.min_endpoints as usize).max(1) {
                    usable = Usable { count, ..mine };
                }
            }
        }
        let m = usable.count();
        let mut k = match self.lb {
            LbPolicy::RoundRobin => self.next.fetch_add(1, Ordering::Relaxed) % m,
            // Without a key (or a usable endpoint for it), any.
            LbPolicy::Random | LbPolicy::ConsistentHash => rand::random_range(0..m),
            LbPolicy::LeastRequest => {
                let a = rand::random_range(0..m);
                let b = rand::random_range(0..m);
                let load = |k| self.active[usable.nth(k)].load(Ordering::Relaxed);
                if load(b) < load(a) {
                    b
                } else {
                    a
                }
            }
        };
        if skip == Some(usable.nth(k)) && m > 1 {
            k = (k + 1) % m;
        }
        let i = usable.nth(k);
        self.active[i].fetch_add(1, Ordering::Relaxed);
        Some(i)
    }

    /// Counts what a try at endpoint `i` came to, for outlier detection.
    pub fn record(&self, i: usize, outcome: Outcome) {
        if let Some(o) = &self.resilience.outlier {
            self.health.record(&self.endpoint_health, i, outcome, o);
        }
    }

    /// Each endpoint with its health, for active checks.
    pub fn endpoint_health(&self) -> &[Arc<EndpointHealth>] {
        &self.endpoint_health
    }

    pub fn finish(&self, i: usize) {
        if let Some(a) = self.active.get(i) {
            a.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// The endpoints a pick chooses among: all, or those healthy at a time,
/// or (also) those in the proxy's zone; `count` of them.
#[derive(Clone, Copy)]
struct Usable<'a> {
    /// All endpoints.
    n: usize,
    count: usize,
    health: Option<(&'a [Arc<EndpointHealth>], u64)>,
    local: Option<&'a [bool]>,
    /// Only those in this cluster (`true`), or only those in others.
    home: Option<(&'a [bool], bool)>,
}

impl Usable<'_> {
    fn count(&self) -> usize {
        self.count
    }

    fn ok(&self, i: usize) -> bool {
        self.health.is_none_or(|(e, now)| e[i].usable(now))
            && self.local.is_none_or(|l| l[i])
            && self.home.is_none_or(|(h, here)| h[i] == here)
    }

    /// The index among all endpoints of the `k`-th usable one.
    fn nth(&self, k: usize) -> usize {
        if self.health.is_none() && self.local.is_none() && self.home.is_none() {
            return k;
        }
        (0..self.n).filter(|i| self.ok(*i)).nth(k).unwrap_or(0)
    }
}

/// The peer for the endpoint at `addr`: TLS as the cluster asks
/// (`crate::upstream::connector`), HTTP/2 to h2c clusters, pooled.
fn new_peer(
    tls: Option<&Arc<crate::upstream::connector::MeshConnector>>,
    tunnel: Option<crate::upstream::tunnel::TunnelPeer>,
    protocol: AppProtocol,
    addr: SocketAddr,
) -> HttpPeer {
    let mut peer = match (tunnel, tls) {
        (Some(tunnel), _) => {
            let mut peer = HttpPeer::new(addr, false, String::new());
            peer.group_key = tunnel.mesh.group_key;
            peer.options.custom_l4 = Some(Arc::new(tunnel));
            peer
        }
        (None, Some(tls)) => tls.peer(addr),
        (None, None) => HttpPeer::new(addr, false, String::new()),
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
        with_resilience(lb, n, Resilience::default())
    }

    fn with_resilience(lb: LbPolicy, n: u16, resilience: Resilience) -> ClusterState {
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
                resilience,
                hash: None,
                zones: Vec::new(),
                origins: Vec::new(),
                external: None,
            },
            &Registry::default(),
            None,
        )
        .unwrap()
    }

    fn ejecting() -> Resilience {
        Resilience {
            outlier: Some(weft_api::Outlier {
                consecutive_5xx: 1,
                consecutive_gateway_errors: 0,
                interval_ms: 1000,
                base_ejection_ms: 60_000,
                max_ejection_percent: 100,
            }),
            ..Resilience::default()
        }
    }

    #[test]
    fn ejected_endpoints_get_no_picks_until_too_few_are_left() {
        for lb in [
            LbPolicy::RoundRobin,
            LbPolicy::LeastRequest,
            LbPolicy::Random,
        ] {
            let c = with_resilience(lb, 4, ejecting());
            c.record(1, Outcome::Status(503));
            let picks: Vec<_> = (0..60).map(|_| c.pick(None).unwrap()).collect();
            assert!(!picks.contains(&1), "{lb:?}");
            for i in [0, 2, 3] {
                assert!(picks.contains(&i), "{lb:?} never picked {i}");
            }
            // Two of four left is the panic threshold (50%): still healthy
            // only; one of four is below it, and all are picked again.
            c.record(2, Outcome::LocalFailure);
            let picks: Vec<_> = (0..40).map(|_| c.pick(None).unwrap()).collect();
            assert!(!picks.contains(&1) && !picks.contains(&2), "{lb:?}");
            c.record(3, Outcome::Status(500));
            let picks: Vec<_> = (0..80).map(|_| c.pick(None).unwrap()).collect();
            assert!((0..4).all(|i| picks.contains(&i)), "{lb:?} in panic");
        }
    }

    #[test]
    fn the_proxys_zone_goes_first_while_it_has_a_usable_endpoint() {
        let mut resilience = ejecting();
        resilience.zone_aware = Some(weft_api::ZoneAware { min_endpoints: 1 });
        let endpoints: Vec<SocketAddr> =
            (0..3).map(|i| ([127, 0, 0, 1], 9000 + i).into()).collect();
        let cluster = Cluster {
            zones: vec!["a".into(), "b".into(), "b".into()],
            resilience,
            ..Cluster::http1(endpoints)
        };
        let c = ClusterState::new("c", &cluster, &Registry::default(), Some("a")).unwrap();
        assert!((0..20).all(|_| c.pick(None) == Some(0)));
        // The zone's one endpoint ejected: the others take over.
        c.record(0, Outcome::Status(503));
        let picks: Vec<_> = (0..20).map(|_| c.pick(None).unwrap()).collect();
        assert!(!picks.contains(&0) && picks.contains(&1) && picks.contains(&2));
        // A proxy whose zone is unknown uses every endpoint.
        let anywhere = ClusterState::new("d", &cluster, &Registry::default(), None).unwrap();
        let picks: Vec<_> = (0..9).map(|_| anywhere.pick(None).unwrap()).collect();
        assert!((0..3).all(|i| picks.contains(&i)));
    }

    #[test]
    fn other_clusters_take_over_only_when_none_here_is_usable() {
        let endpoints: Vec<SocketAddr> =
            (0..3).map(|i| ([127, 0, 0, 1], 9000 + i).into()).collect();
        let away = |cluster: &str, via: Option<SocketAddr>| weft_api::Origin {
            cluster: cluster.into(),
            via,
        };
        let cluster = Cluster {
            origins: vec![
                weft_api::Origin::default(),
                away("west", None),
                // Through a gateway: its health is its own.
                away("west", Some(([10, 0, 0, 1], 15443).into())),
            ],
            resilience: ejecting(),
            ..Cluster::http1(endpoints)
        };
        let c = ClusterState::new("c", &cluster, &Registry::default(), None).unwrap();
        assert!((0..20).all(|_| c.pick(None) == Some(0)));
        // A retry after this cluster's one endpoint failed goes away.
        assert!(matches!(c.pick(Some(0)), Some(1 | 2)));
        // Ejected: the other cluster takes every request, both endpoints.
        c.record(0, Outcome::Status(503));
        let picks: Vec<_> = (0..20).map(|_| c.pick(None).unwrap()).collect();
        assert!(!picks.contains(&0) && picks.contains(&1) && picks.contains(&2));
        // Back: home again.
        c.endpoint_health()[0]
            .ejected_until
            .store(0, std::sync::atomic::Ordering::Relaxed);
        assert!((0..20).all(|_| c.pick(None) == Some(0)));
        // A spread cluster (every endpoint named by its cluster, this
        // one's too) takes no side.
        let spread = Cluster {
            origins: vec![away("east", None), away("west", None), away("west", None)],
            ..cluster.clone()
        };
        let c = ClusterState::new("s", &spread, &Registry::default(), None).unwrap();
        let picks: Vec<_> = (0..9).map(|_| c.pick(None).unwrap()).collect();
        assert!((0..3).all(|i| picks.contains(&i)), "{picks:?}");
        // Below the panic threshold overall, but not in the other cluster:
        // its healthy endpoints take over all the same.
        let many = Cluster {
            endpoints: (0..5).map(|i| ([127, 0, 0, 1], 9100 + i).into()).collect(),
            origins: vec![
                weft_api::Origin::default(),
                weft_api::Origin::default(),
                weft_api::Origin::default(),
                away("west", None),
                away("west", None),
            ],
            ..cluster.clone()
        };
        let c = ClusterState::new("m", &many, &Registry::default(), None).unwrap();
        for i in 0..3 {
            c.record(i, Outcome::Status(503));
        }
        let picks: Vec<_> = (0..20).map(|_| c.pick(None).unwrap()).collect();
        assert!(
            picks.iter().all(|i| *i >= 3) && picks.contains(&3) && picks.contains(&4),
            "{picks:?}"
        );
        // Without outlier detection, the same holds for retries.
        let plain = Cluster {
            resilience: Resilience::default(),
            ..cluster
        };
        let c = ClusterState::new("d", &plain, &Registry::default(), None).unwrap();
        assert!((0..10).all(|_| c.pick(None) == Some(0)));
        assert!(matches!(c.pick(Some(0)), Some(1 | 2)));
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
