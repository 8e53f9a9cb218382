//! The request-path snapshot: a `GatewayConfig` compiled once (host tables,
//! regexes, certificates, cluster state) and then only read. The gateway
//! holds one and swaps it whole.

use crate::config::hosts::HostTable;
use crate::config::kept::Kept;
use crate::config::matcher::{Matcher, Path};
use crate::error::GatewayError;
use crate::filters::cors::CompiledCors;
use crate::policy::global::GlobalStore;
use crate::policy::traffic::CompiledTraffic;
use crate::policy::CompiledAccess;
use crate::upstream::balancer::ClusterState;
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::sync::Arc;
use weft_api::{
    BackendTarget, GatewayConfig, HttpFilter, PathMatch, Protocol, Retry, Route, Timeouts,
};

pub struct Snapshot {
    pub version: String,
    pub config: GatewayConfig,
    pub ports: HashMap<u16, PortTable>,
    /// Every cluster, for what runs beside the requests (active checks).
    pub clusters: Vec<Arc<ClusterState>>,
    /// Where global rate limits are counted, when some route has them.
    pub rate_store: Option<Arc<GlobalStore>>,
    /// An east-west gateway's tunnels.
    pub east_west: Option<CompiledEastWest>,
    /// The proxy's cluster (`UNKNOWN_CLUSTER` when the config names none).
    pub home: Arc<str>,
}

/// The cluster label of a proxy whose config names no cluster.
pub const UNKNOWN_CLUSTER: &str = "unknown";

/// `weft_api::EastWest`, ready for the tunnel listener.
pub struct CompiledEastWest {
    /// The endpoints tunnels may go to, with their service.
    pub targets: HashMap<std::net::SocketAddr, String>,
    pub access: Option<Arc<CompiledAccess>>,
    /// The gateway's certificate; tunnels wait for it.
    pub key: Option<Arc<CertifiedKey>>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Snapshot({})", self.version)
    }
}

pub struct PortTable {
    pub protocol: Protocol,
    /// Hosts are matched with their port (an HTTP proxy port).
    pub host_with_port: bool,
    /// Unknown hosts go to the host they name (`weft_api::Port::passthrough`).
    pub passthrough: bool,
    /// Unknown hosts are refused as undeclared (`weft_api::Port::blackhole`).
    pub blackhole: bool,
    /// A sidecar's port (`weft_api::Port::sidecar`).
    pub sidecar: bool,
    /// A gateway's mesh port: its certificate is the proxy's own, whatever
    /// server name a caller asks for.
    pub own_cert: bool,
    pub listeners: Vec<ListenerTable>,
    hosts: HostTable,
    /// A sidecar's hosts for whole connections
    /// (`weft_api::Port::stream_hosts`).
    pub streams: Option<ListenerTable>,
}

pub struct ListenerTable {
    pub name: String,
    pub cert: Option<Arc<CertifiedKey>>,
    vhosts: Vec<Vec<Arc<CompiledRoute>>>,
    hosts: HostTable,
}

pub struct CompiledRoute {
    pub name: String,
    pub matcher: Matcher,
    pub filters: Vec<HttpFilter>,
    pub backends: Vec<CompiledBackend>,
    total_weight: u32,
    pub timeouts: Timeouts,
    pub retry: Option<Retry>,
    /// RequestMirror filters: the cluster and the share (0-100) mirrored.
    pub mirrors: Vec<(Arc<ClusterState>, f64)>,
    /// The CORS filter, if the rule has one.
    pub cors: Option<CompiledCors>,
    /// Who may use the route (`crate::policy`).
    pub access: Option<Arc<CompiledAccess>>,
    /// The rule's session persistence, and the path its cookie is for
    /// (the match's path; `/` for a regular expression).
    pub session: Option<weft_api::SessionPersistence>,
    pub session_path: String,
}

pub struct CompiledBackend {
    pub weight: u32,
    /// `Err(status)` for a backend that could not be resolved.
    pub target: Result<Arc<ClusterState>, u16>,
    pub filters: Vec<HttpFilter>,
    /// Rate limits and faults: the route's, else the backend Service's.
    pub traffic: Option<Arc<CompiledTraffic>>,
}

/// What routes are compiled against.
struct Parts<'a> {
    clusters: HashMap<&'a str, Arc<ClusterState>>,
    access: HashMap<&'a str, Arc<CompiledAccess>>,
    /// Each cluster's own rate limits and faults.
    traffic: HashMap<&'a str, Arc<CompiledTraffic>>,
    kept: &'a Kept,
}

impl Snapshot {
    /// Validates and compiles a config, with endpoint health of its own.
    /// Fails without side effects.
    pub fn build(version: String, config: GatewayConfig) -> Result<Self, GatewayError> {
        Snapshot::build_in(version, config, &Kept::default())
    }

    /// Validates and compiles a config that carries on from what `kept`
    /// holds (of the proxy that will run it).
    pub fn build_in(
        version: String,
        config: GatewayConfig,
        kept: &Kept,
    ) -> Result<Self, GatewayError> {
        config
            .validate()
            .map_err(|e| GatewayError::Snapshot(e.to_string()))?;
        let clusters: HashMap<&str, Arc<ClusterState>> = config
            .clusters
            .iter()
            .map(|(name, c)| {
                let state = ClusterState::new(name, c, &kept.health, config.zone.as_deref())
                    .map_err(|e| GatewayError::Snapshot(format!("cluster {name}: TLS: {e}")))?;
                Ok((name.as_str(), Arc::new(state)))
            })
            .collect::<Result<_, GatewayError>>()?;
        let access: HashMap<&str, Arc<CompiledAccess>> = config
            .access
            .iter()
            .map(|(name, a)| {
                let compiled = CompiledAccess::compile(name, a)
                    .map_err(|e| GatewayError::Snapshot(format!("access {name}: {e}")))?;
                Ok((name.as_str(), Arc::new(compiled)))
            })
            .collect::<Result<_, GatewayError>>()?;
        let traffic: HashMap<&str, Arc<CompiledTraffic>> = config
            .clusters
            .iter()
            .filter_map(|(name, c)| Some((name, c.resilience.traffic.as_ref()?)))
            .map(|(name, t)| {
                let compiled = CompiledTraffic::compile(t, &kept.limiters)
                    .map_err(|e| GatewayError::Snapshot(format!("cluster {name}: {e}")))?;
                Ok((name.as_str(), Arc::new(compiled)))
            })
            .collect::<Result<_, GatewayError>>()?;
        let rate_store = match &config.rate_limit_store {
            Some(url) => Some(kept.store(url).map_err(GatewayError::Snapshot)?),
            None => None,
        };
        let east_west = match &config.east_west {
            Some(ew) => Some(CompiledEastWest {
                targets: ew.targets.iter().map(|(a, s)| (*a, s.clone())).collect(),
                access: ew.access.as_deref().and_then(|a| access.get(a).cloned()),
                key: match &ew.cert {
                    Some(c) => Some(crate::pki::certified_key(c).map_err(|e| {
                        GatewayError::Snapshot(format!("east-west certificate: {e}"))
                    })?),
                    None => None,
                },
            }),
            None => None,
        };
        let parts = Parts {
            clusters,
            access,
            traffic,
            kept,
        };
        let mut ports = HashMap::new();
        for port in &config.ports {
            let mut listeners = Vec::new();
            let stream_hosts = (!port.stream_hosts.is_empty())
                .then(|| weft_api::Listener::any_host("streams", None, Vec::new()))
                .map(|mut l| {
                    l.virtual_hosts = port.stream_hosts.clone();
                    l
                });
            for l in port.listeners.iter().chain(&stream_hosts) {
                let cert = match &l.tls {
                    Some(tls) => Some(crate::pki::certified_key(tls).map_err(|e| {
                        GatewayError::Snapshot(format!("listener {}: certificate: {e}", l.name))
                    })?),
                    None => None,
                };
                let vhosts = l
                    .virtual_hosts
                    .iter()
                    .map(|v| {
                        v.routes
                            .iter()
                            .map(|r| compile_route(r, &parts).map(Arc::new))
                            .collect()
                    })
                    .collect::<Result<Vec<Vec<_>>, _>>()?;
                listeners.push(ListenerTable {
                    name: l.name.clone(),
                    cert,
                    hosts: HostTable::new(
                        l.virtual_hosts.iter().map(|v| Some(v.hostname.as_str())),
                    ),
                    vhosts,
                });
            }
            let streams = match stream_hosts {
                Some(_) => listeners.pop(),
                None => None,
            };
            let hosts = HostTable::new(port.listeners.iter().map(|l| l.hostname.as_deref()));
            ports.insert(
                port.port,
                PortTable {
                    protocol: port.protocol,
                    host_with_port: port.host_with_port,
                    passthrough: port.passthrough,
                    blackhole: port.blackhole,
                    sidecar: port.sidecar,
                    own_cert: port.takes_own_cert(),
                    listeners,
                    hosts,
                    streams,
                },
            );
        }
        let clusters = parts.clusters.into_values().collect();
        let home = match config.cluster.is_empty() {
            true => Arc::from(UNKNOWN_CLUSTER),
            false => Arc::from(config.cluster.as_str()),
        };
        Ok(Snapshot {
            version,
            config,
            ports,
            clusters,
            rate_store,
            east_west,
            home,
        })
    }
}

fn compile_route(r: &Route, parts: &Parts<'_>) -> Result<CompiledRoute, GatewayError> {
    let (clusters, access) = (&parts.clusters, &parts.access);
    let own = match &r.traffic {
        Some(t) => Some(Arc::new(
            CompiledTraffic::compile(t, &parts.kept.limiters)
                .map_err(|e| GatewayError::Snapshot(format!("route {}: {e}", r.name)))?,
        )),
        None => None,
    };
    let backends: Vec<CompiledBackend> = r
        .backends
        .iter()
        .map(|b| {
            let cluster = match &b.target {
                BackendTarget::Cluster(c) => Some(c.as_str()),
                BackendTarget::Invalid { .. } => None,
            };
            CompiledBackend {
                weight: b.weight,
                target: match &b.target {
                    BackendTarget::Cluster(c) => clusters.get(c.as_str()).cloned().ok_or(500),
                    BackendTarget::Invalid { status } => Err(*status),
                },
                filters: b.filters.clone(),
                traffic: own
                    .clone()
                    .or_else(|| cluster.and_then(|c| parts.traffic.get(c).cloned())),
            }
        })
        .collect();
    let mirrors = r
        .filters
        .iter()
        .filter_map(|f| match f {
            HttpFilter::Mirror(m) => clusters
                .get(m.cluster.as_str())
                .map(|c| (c.clone(), m.percent)),
            _ => None,
        })
        .collect();
    let cors = r.filters.iter().find_map(|f| match f {
        HttpFilter::Cors(c) => Some(CompiledCors::compile(c)),
        _ => None,
    });
    Ok(CompiledRoute {
        mirrors,
        cors,
        // `validate` saw that the name is defined.
        access: r.access.as_deref().and_then(|a| access.get(a).cloned()),
        name: r.name.clone(),
        matcher: Matcher::compile(&r.matches)?,
        filters: r.filters.clone(),
        total_weight: backends.iter().map(|b| b.weight).sum(),
        backends,
        timeouts: r.timeouts.clone(),
        retry: r.retry.clone(),
        session: r.session.clone(),
        session_path: match &r.matches.path {
            PathMatch::Exact(p) | PathMatch::Prefix(p) => p.clone(),
            PathMatch::Regex(_) => "/".into(),
        },
    })
}

impl PortTable {
    /// The listener serving `host` on this port.
    pub fn listener(&self, host: &str) -> Option<usize> {
        self.hosts.find(host)
    }
}

impl ListenerTable {
    /// The first route of the best virtual host for `host`, whatever the
    /// request: what a TCP or TLS connection takes.
    pub fn first_route(&self, host: &str) -> Option<&Arc<CompiledRoute>> {
        self.vhosts.get(self.hosts.find(host)?)?.first()
    }

    /// Whether a virtual host of this listener serves `host`.
    pub fn serves(&self, host: &str) -> bool {
        self.hosts.find(host).is_some()
    }

    /// The first route of the best virtual host that matches the request.
    pub fn route(
        &self,
        host: &str,
        method: &http::Method,
        path: &str,
        query: Option<&str>,
        headers: &http::HeaderMap,
    ) -> Option<&Arc<CompiledRoute>> {
        let vhost = self.vhosts.get(self.hosts.find(host)?)?;
        vhost
            .iter()
            .find(|r| r.matcher.matches(method, path, query, headers))
    }
}

impl CompiledRoute {
    /// The index of a backend chosen by weight; `None` when the rule has none.
    pub fn pick_backend(&self) -> Option<usize> {
        if self.total_weight == 0 {
            return None;
        }
        let mut n = if self.backends.len() == 1 {
            0
        } else {
            rand::random_range(0..self.total_weight)
        };
        for (i, b) in self.backends.iter().enumerate() {
            if n < b.weight {
                return Some(i);
            }
            n -= b.weight;
        }
        None
    }

    /// The PathPrefix this route matched, for ReplacePrefixMatch.
    pub fn prefix(&self) -> Option<&str> {
        match &self.matcher.path {
            Path::Prefix(p) => Some(p),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_api::*;

    fn route(name: &str, path: PathMatch, cluster: &str) -> Route {
        let matches = HttpMatch {
            path,
            ..Default::default()
        };
        Route::to_cluster(name, matches, cluster)
    }

    fn listener(name: &str, host: &str, r: Route) -> Listener {
        Listener {
            name: name.into(),
            hostname: Some(host.into()),
            tls: None,
            virtual_hosts: vec![VirtualHost {
                hostname: host.into(),
                routes: vec![r],
            }],
        }
    }

    #[test]
    fn listeners_are_isolated_by_most_specific_hostname() {
        let cluster = Cluster {
            protocol: AppProtocol::Http1,
            endpoints: vec!["127.0.0.1:1".parse().unwrap()],
            lb: LbPolicy::RoundRobin,
            tls: None,
            service: None,
            resilience: Default::default(),
            hash: None,
            zones: Vec::new(),
            origins: Vec::new(),
            external: None,
        };
        let config = GatewayConfig {
            namespace: "d".into(),
            name: "g".into(),
            ports: vec![Port {
                addresses: vec!["127.0.0.1".parse().unwrap()],
                port: 80,
                protocol: Protocol::Http,
                client_auth: None,
                host_with_port: false,
                passthrough: false,
                blackhole: false,
                stream_hosts: Vec::new(),
                sidecar: false,
                listeners: vec![
                    listener(
                        "wild",
                        "*.example.com",
                        route("wild", PathMatch::Prefix("/".into()), "a"),
                    ),
                    listener(
                        "foo",
                        "foo.example.com",
                        route("foo", PathMatch::Exact("/only".into()), "b"),
                    ),
                ],
            }],
            clusters: [
                ("a".to_string(), cluster.clone()),
                ("b".to_string(), cluster),
            ]
            .into(),
            access_log: false,
            identity: None,
            limits: Default::default(),
            access: Default::default(),
            rate_limit_store: None,
            zone: None,
            east_west: None,
            cluster: String::new(),
            egress_source: None,
        };
        let snap = Snapshot::build("1".into(), config).unwrap();
        let port = &snap.ports[&80];
        let find = |host: &str, path: &str| {
            let l = &port.listeners[port.listener(host)?];
            l.route(
                host,
                &http::Method::GET,
                path,
                None,
                &http::HeaderMap::new(),
            )
            .map(|r| r.name.clone())
        };
        assert_eq!(find("bar.example.com", "/x").as_deref(), Some("wild"));
        assert_eq!(find("foo.example.com", "/only").as_deref(), Some("foo"));
        // foo.example.com belongs to listener foo alone: no fallback to the wildcard.
        assert_eq!(find("foo.example.com", "/x"), None);
        assert_eq!(find("example.org", "/x"), None);
    }
}
