//! The cluster set (Multi-Cluster Services API): this cluster's exports
//! (`ServiceExport`), its links to peers (`ClusterLink`), the peers'
//! exports (which arrive by peering, `crate::peering`, and are an input
//! here like the store), the `ServiceImport`s they make together
//! (namespace sameness: `shop/reviews` exported anywhere is one import),
//! and the clusters behind `<svc>.<ns>.svc.clusterset.local`: this
//! cluster's endpoints, then each peer's, reached directly on the same
//! network and through the peer's east-west gateway on another.

use super::backend::{self, Caller, Unresolved};
use super::conditions::Condition;
use crate::multicluster::{ClusterLink, CLUSTERSET_DOMAIN, LINK_NAMESPACE, MCS_GROUP};
use crate::resources::{Kind, ObjKey, Object};
use crate::store::Store;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use weft_api::peering::{ExportSet, ExportedPort, ExportedService, RemoteEndpoint};
use weft_api::{AppProtocol, Cluster, LbPolicy, Origin, UpstreamTls};

/// How long a lost peer's exports stay in use, unless its link says.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(300);

/// What peering knows of one linked cluster.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PeerState {
    /// Its last good exports (kept through the grace period when lost).
    pub exports: Option<Arc<ExportSet>>,
    pub connected: bool,
    /// Why it is not connected, or what it last sent that was refused.
    pub message: String,
}

/// Peering's view of every linked cluster, by cluster name.
pub type Peers = BTreeMap<String, PeerState>;

/// A valid link: what the peering client dials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub cluster: String,
    pub network: String,
    pub peering: String,
    pub gateways: Vec<SocketAddr>,
    pub grace: Duration,
}

/// One peer with exports, as translation uses it.
#[derive(Clone, Debug)]
struct Peer {
    cluster: String,
    same_network: bool,
    gateways: Vec<SocketAddr>,
    exports: Arc<ExportSet>,
}

/// Everything translation knows of the cluster set.
#[derive(Clone, Debug, Default)]
pub struct ClusterSet {
    pub cluster: String,
    pub network: String,
    pub links: Vec<Link>,
    /// The Services this cluster exports (valid `ServiceExport`s).
    exported: BTreeSet<(String, String)>,
    peers: Vec<Peer>,
    /// Every ServiceImport, by `(namespace, name)`, made once.
    pub imports: BTreeMap<(String, String), Import>,
}

impl ClusterSet {
    /// Reads the links and exports of `store`, with the peers' exports,
    /// and writes the status of every ServiceExport and ClusterLink.
    pub fn build(
        store: &Store,
        cluster: &str,
        network: &str,
        peers: &Peers,
        statuses: &mut BTreeMap<ObjKey, Value>,
    ) -> ClusterSet {
        let mut set = ClusterSet {
            cluster: cluster.to_string(),
            network: network.to_string(),
            ..ClusterSet::default()
        };
        for (key, entry) in store.of_kind(Kind::ClusterLink) {
            let Object::ClusterLink(link) = &entry.object else {
                continue;
            };
            let taken = set.links.iter().any(|l| l.cluster == link.spec.cluster);
            let accepted = check_link(key, link, cluster, taken);
            let g = entry.generation;
            let mut conditions = Vec::new();
            match accepted {
                Ok(l) => {
                    conditions.push(Condition::new("Accepted", true, "Accepted", "", g));
                    let state = peers.get(&l.cluster).cloned().unwrap_or_default();
                    let (reason, message) = match (&state.connected, &state.exports) {
                        (true, _) => ("Connected", "peering with the cluster".to_string()),
                        (false, Some(_)) => ("Lost", keeping(&state.message)),
                        (false, None) => ("Connecting", state.message.clone()),
                    };
                    conditions.push(Condition::new(
                        "Connected",
                        state.connected,
                        reason,
                        message,
                        g,
                    ));
                    if let Some(exports) = state.exports {
                        let gateways = match l.gateways.is_empty() {
                            true => exports.gateways.clone(),
                            false => l.gateways.clone(),
                        };
                        set.peers.push(Peer {
                            cluster: l.cluster.clone(),
                            same_network: l.network == network,
                            gateways,
                            exports,
                        });
                    }
                    set.links.push(l);
                }
                Err((reason, message)) => {
                    conditions.push(Condition::new("Accepted", false, reason, message, g));
                }
            }
            statuses.insert(key.clone(), json!({"conditions": conditions}));
        }
        for (key, entry) in store.of_kind(Kind::ServiceExport) {
            let g = entry.generation;
            let service = store.lookup(Kind::Service, &key.namespace, &key.name);
            let valid = match service {
                Some(_) => Condition::new("Valid", true, "Valid", "exported to the cluster set", g),
                None => Condition::new(
                    "Valid",
                    false,
                    "ServiceNotFound",
                    format!("Service {}/{} does not exist", key.namespace, key.name),
                    g,
                ),
            };
            if service.is_some() {
                set.exported
                    .insert((key.namespace.clone(), key.name.clone()));
            }
            let conflict = set.conflict(store, &key.namespace, &key.name);
            let conflict = match conflict {
                Some(m) => Condition::new("Conflict", true, "PortConflict", m, g),
                None => Condition::new("Conflict", false, "NoConflicts", "", g),
            };
            statuses.insert(key.clone(), json!({"conditions": [valid, conflict]}));
        }
        set.imports = set.imports_of(store);
        set
    }

    /// A port this cluster's Service has that a peer exports with another
    /// protocol.
    fn conflict(&self, store: &Store, ns: &str, name: &str) -> Option<String> {
        let Some(Object::Service(svc)) = store.lookup(Kind::Service, ns, name) else {
            return None;
        };
        for sp in svc.spec.iter().flat_map(|s| s.ports.iter().flatten()) {
            let Some(mine) = backend::app_protocol(sp) else {
                continue;
            };
            for p in &self.peers {
                let theirs = p
                    .exports
                    .service(ns, name)
                    .into_iter()
                    .flat_map(|s| &s.ports);
                if let Some(other) = theirs
                    .filter(|o| i32::from(o.port) == sp.port)
                    .find(|o| o.protocol.is_some_and(|theirs| theirs != mine))
                {
                    return Some(format!(
                        "port {} is {:?} here and {:?} in cluster {}",
                        sp.port,
                        mine,
                        other.protocol.unwrap_or_default(),
                        p.cluster
                    ));
                }
            }
        }
        None
    }

    /// What this cluster sends its peers: each exported Service with its
    /// ports, meshed endpoints and identities.
    pub fn exports(
        &self,
        store: &Store,
        trust_domain: &str,
        gateways: Vec<SocketAddr>,
    ) -> ExportSet {
        let mut services = Vec::new();
        for (ns, name) in &self.exported {
            let Some(Object::Service(svc)) = store.lookup(Kind::Service, ns, name) else {
                continue;
            };
            let mut identities = BTreeSet::new();
            let mut ports = Vec::new();
            for sp in svc.spec.iter().flat_map(|s| s.ports.iter().flatten()) {
                let Ok(port) = u16::try_from(sp.port) else {
                    continue;
                };
                let (addrs, ids) = backend::mesh_endpoints(store, ns, svc, sp, trust_domain);
                identities.extend(ids);
                ports.push(ExportedPort {
                    name: sp.name.clone(),
                    port,
                    protocol: backend::app_protocol(sp),
                    endpoints: addrs
                        .into_iter()
                        .map(|address| RemoteEndpoint {
                            address,
                            zone: backend::zone_of(store, ns, svc, address.ip()),
                        })
                        .collect(),
                });
            }
            services.push(ExportedService {
                namespace: ns.clone(),
                name: name.clone(),
                identities: identities.into_iter().collect(),
                ports,
            });
        }
        ExportSet {
            cluster: self.cluster.clone(),
            network: self.network.clone(),
            gateways,
            services,
        }
    }

    /// Every ServiceImport: `(namespace, name)` with its ports and the
    /// clusters that export it.
    fn imports_of(&self, store: &Store) -> BTreeMap<(String, String), Import> {
        let mut out: BTreeMap<(String, String), Import> = BTreeMap::new();
        for (ns, name) in &self.exported {
            let Some(Object::Service(svc)) = store.lookup(Kind::Service, ns, name) else {
                continue;
            };
            let import = out.entry((ns.clone(), name.clone())).or_default();
            import.clusters.push(self.cluster.clone());
            for sp in svc.spec.iter().flat_map(|s| s.ports.iter().flatten()) {
                if let Ok(port) = u16::try_from(sp.port) {
                    import.ports.insert(port, backend::app_protocol(sp));
                }
            }
        }
        for p in &self.peers {
            for s in &p.exports.services {
                let import = out
                    .entry((s.namespace.clone(), s.name.clone()))
                    .or_default();
                import.clusters.push(p.cluster.clone());
                for port in &s.ports {
                    let known = import.ports.entry(port.port).or_insert(port.protocol);
                    *known = known.or(port.protocol);
                }
            }
        }
        out
    }
}

/// One ServiceImport: its ports (the protocol the first cluster that says
/// one gives each) and the clusters exporting it.
#[derive(Clone, Debug, Default)]
pub struct Import {
    pub ports: BTreeMap<u16, Option<AppProtocol>>,
    pub clusters: Vec<String>,
}

/// The ServiceImports as `/status` shows them.
pub fn import_items(imports: &BTreeMap<(String, String), Import>) -> Vec<Value> {
    imports
        .iter()
        .map(|((ns, name), i)| {
            let ports: Vec<Value> = i
                .ports
                .iter()
                .map(|(port, p)| match p {
                    Some(p) => json!({"port": port, "protocol": "TCP", "appProtocol": app_protocol_name(*p)}),
                    None => json!({"port": port, "protocol": "TCP"}),
                })
                .collect();
            let clusters: Vec<Value> = i.clusters.iter().map(|c| json!({"cluster": c})).collect();
            json!({
                "apiVersion": format!("{MCS_GROUP}/v1alpha1"),
                "kind": "ServiceImport",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"type": "ClusterSetIP", "ports": ports},
                "status": {"clusters": clusters},
            })
        })
        .collect()
}

fn app_protocol_name(p: AppProtocol) -> &'static str {
    match p {
        AppProtocol::Http1 => "http",
        AppProtocol::H2c => "kubernetes.io/h2c",
        AppProtocol::WebSocket => "kubernetes.io/ws",
    }
}

fn keeping(message: &str) -> String {
    format!("lost ({message}); its last exports are kept for the grace period")
}

/// A link's spec checked: in the control plane's namespace, naming
/// another cluster once, with addresses that parse.
fn check_link(
    key: &ObjKey,
    link: &ClusterLink,
    own: &str,
    taken: bool,
) -> Result<Link, (&'static str, String)> {
    let s = &link.spec;
    let invalid = |m: String| Err(("Invalid", m));
    if key.namespace != LINK_NAMESPACE {
        return Err((
            "NotAllowed",
            format!("ClusterLinks are read in {LINK_NAMESPACE} only"),
        ));
    }
    if !weft_api::peering::is_dns_label(&s.cluster) {
        return invalid(format!("cluster {:?} is not a DNS label", s.cluster));
    }
    if s.cluster == own {
        return invalid(format!("cluster {own} is this cluster"));
    }
    if taken {
        return Err((
            "Conflicted",
            format!("another ClusterLink names cluster {}", s.cluster),
        ));
    }
    if !valid_host_port(&s.peering) {
        return invalid(format!("peering {:?} is not host:port", s.peering));
    }
    let mut gateways = Vec::new();
    for g in &s.gateways {
        match g.parse::<SocketAddr>() {
            Ok(a) if a.port() != 0 => gateways.push(a),
            _ => return invalid(format!("gateway {g:?} is not ip:port")),
        }
    }
    let grace = match &s.import_grace_period {
        None => DEFAULT_GRACE,
        Some(d) => super::access::checks::duration(d)
            .map_err(|e| ("Invalid", format!("importGracePeriod: {e}")))?,
    };
    Ok(Link {
        cluster: s.cluster.clone(),
        network: s.network.clone(),
        peering: s.peering.clone(),
        gateways,
        grace,
    })
}

fn valid_host_port(s: &str) -> bool {
    if s.parse::<SocketAddr>().is_ok() {
        return true;
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return false;
    };
    port.parse::<u16>().is_ok_and(|p| p != 0)
        && !host.is_empty()
        && host.split('.').all(weft_api::peering::is_dns_label)
}

/// The name of the clusterset cluster for a port of an import.
fn cluster_name(ns: &str, name: &str, port: u16) -> String {
    format!("{ns}/{name}:{port}@clusterset")
}

/// The host name of an import, with its port, as callers name it.
pub fn host(ns: &str, name: &str, port: u16) -> String {
    format!("{name}.{ns}.svc.{CLUSTERSET_DOMAIN}:{port}")
}

/// The cluster for `port` of the import `ns/name`: this cluster's
/// endpoints when it exports the Service (with its BackendTrafficPolicy),
/// then every peer's, each with its origin.
pub fn resolve(
    store: &Store,
    caller: Caller<'_>,
    route_kind: backend::RouteKind,
    ns: &str,
    name: &str,
    port: u16,
    clusters: &mut BTreeMap<String, Cluster>,
) -> Result<String, Unresolved> {
    let trust = caller.trust();
    let set = trust.cluster_set;
    let remote: Vec<(&Peer, &ExportedService, &ExportedPort)> = set
        .peers
        .iter()
        .filter_map(|p| {
            let s = p.exports.service(ns, name)?;
            Some((p, s, s.ports.iter().find(|x| x.port == port)?))
        })
        .collect();
    let exported_here = set.exported.contains(&(ns.to_string(), name.to_string()));
    if remote.is_empty() && !exported_here {
        return Err((
            "BackendNotFound",
            format!("no cluster exports port {port} of {ns}/{name}"),
        ));
    }
    // This cluster's part, as a backendRef to the Service would make it
    // (its protocol, TLS and BackendTrafficPolicy).
    let local = match store.lookup(Kind::Service, ns, name) {
        Some(_) => {
            let r = backend::BackendRef {
                group: None,
                kind: None,
                name,
                namespace: Some(ns),
                port: Some(i32::from(port)),
            };
            backend::resolve(store, caller, route_kind, ns, &r, clusters)
                .ok()
                .and_then(|c| clusters.get(&c).cloned())
        }
        None => None,
    };
    let mut cluster = local.unwrap_or_else(|| Cluster {
        protocol: match (remote[0].2.protocol, route_kind) {
            (Some(p), _) => p,
            (None, backend::RouteKind::Grpc) => AppProtocol::H2c,
            (None, _) => AppProtocol::Http1,
        },
        lb: LbPolicy::RoundRobin,
        ..Cluster::http1(Vec::new())
    });
    // Only meshed endpoints are in the set (the caller's identity must
    // reach them end to end).
    if !exported_here || cluster.tls.as_ref().is_none_or(|t| t.policy.is_some()) {
        cluster.tls = None;
        cluster.endpoints.clear();
        cluster.zones.clear();
    }
    let zoned = !cluster.zones.is_empty() || cluster.resilience.zone_aware.is_some();
    if zoned && cluster.zones.len() != cluster.endpoints.len() {
        cluster.zones = vec![String::new(); cluster.endpoints.len()];
    }
    cluster.origins = vec![Origin::default(); cluster.endpoints.len()];
    let mut identities: BTreeSet<String> = cluster
        .tls
        .as_ref()
        .map(|t| t.identities.iter().cloned().collect())
        .unwrap_or_default();
    for (peer, service, p) in remote {
        // A port exported with another protocol (a conflict, shown on the
        // ServiceExport) is left out; so are peers with no way in.
        let other = p.protocol.is_some_and(|theirs| theirs != cluster.protocol);
        if other || (!peer.same_network && peer.gateways.is_empty()) {
            continue;
        }
        identities.extend(service.identities.iter().cloned());
        for (i, e) in p.endpoints.iter().enumerate() {
            let via = (!peer.same_network).then(|| peer.gateways[i % peer.gateways.len()]);
            cluster.endpoints.push(e.address);
            cluster.origins.push(Origin {
                cluster: peer.cluster.clone(),
                via,
            });
            if zoned {
                cluster.zones.push(e.zone.clone());
            }
        }
    }
    let sni = format!("{name}.{ns}.svc.{}", trust.cluster_domain);
    let tls = cluster.tls.get_or_insert_with(|| UpstreamTls {
        sni,
        roots_pem: trust.bundle.to_vec(),
        identities: Vec::new(),
        client_cert: None,
        policy: None,
    });
    tls.identities = identities.into_iter().collect();
    cluster.service = Some(format!("{name}.{ns}.svc.{CLUSTERSET_DOMAIN}"));
    // gRPC to a port that does not say its protocol is HTTP/2, and HTTP
    // HTTP/1.1: two clusters, as for a Service.
    let mut cname = cluster_name(ns, name, port);
    if cluster.protocol == AppProtocol::H2c {
        cname.push_str("/h2c");
    }
    clusters.entry(cname.clone()).or_insert(cluster);
    Ok(cname)
}

/// The suffix of a clusterset cluster that spreads its requests over
/// every cluster's endpoints alike.
const SPREAD: &str = "+spread";

/// Weights among a rule's backends decide shares of traffic: a
/// ServiceImport among several backends takes its share over every
/// cluster's endpoints alike (as MCS's ClusterSetIP does), not this
/// cluster's first, so that `Service reviews: 90, ServiceImport reviews:
/// 10` sends a tenth across the cluster set. Alone in its rule (or as the
/// clusterset name) it keeps to this cluster while it can. Rewrites the
/// routes of `config` so, adding the spread clusters it needs; `own` names
/// this cluster (its endpoints' origin in a spread cluster, so their
/// health and metrics stay theirs).
pub fn spread_weighted(config: &mut weft_api::GatewayConfig, own: &str) {
    let routes = config
        .ports
        .iter_mut()
        .flat_map(|p| p.listeners.iter_mut())
        .flat_map(|l| l.virtual_hosts.iter_mut())
        .flat_map(|v| v.routes.iter_mut())
        .filter(|r| r.backends.len() > 1);
    let mut wanted = BTreeSet::new();
    for route in routes {
        for b in route.backends.iter_mut() {
            if let weft_api::BackendTarget::Cluster(name) = &mut b.target {
                if name.contains("@clusterset") && !name.ends_with(SPREAD) {
                    name.push_str(SPREAD);
                    wanted.insert(name.clone());
                }
            }
        }
    }
    for name in wanted {
        let Some(base) = config.clusters.get(name.trim_end_matches(SPREAD)) else {
            continue;
        };
        let mut spread = base.clone();
        for o in spread.origins.iter_mut().filter(|o| o.is_local()) {
            o.cluster = own.to_string();
        }
        config.clusters.insert(name, spread);
    }
    // A local-first cluster no route uses any more goes (it would be
    // probed twice).
    let used: BTreeSet<String> = config
        .ports
        .iter()
        .flat_map(|p| &p.listeners)
        .flat_map(|l| &l.virtual_hosts)
        .flat_map(|v| &v.routes)
        .flat_map(weft_api::Route::clusters)
        .map(str::to_string)
        .collect();
    config.clusters.retain(|name, _| {
        (!name.ends_with("@clusterset") && !name.ends_with("@clusterset/h2c"))
            || used.contains(name)
    });
}
