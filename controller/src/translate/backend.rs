//! Backend references: from a route's `backendRef` to a Service port, its
//! endpoints (EndpointSlices, or Workloads matching the Service's selector)
//! and the cluster the gateway sends to.

use super::refs::{permitted, From, To};
use crate::resources::{Kind, Object, GATEWAY_GROUP};
use crate::store::Store;
use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use weft_api::{AppProtocol, Cluster, LbPolicy, UpstreamTls};

/// A reference as every route kind spells it.
pub struct BackendRef<'a> {
    pub group: Option<&'a str>,
    pub kind: Option<&'a str>,
    pub name: &'a str,
    pub namespace: Option<&'a str>,
    pub port: Option<i32>,
}

/// A backendRef of any generated route type, as a `BackendRef`.
macro_rules! backend_ref {
    ($b:expr) => {
        $crate::translate::backend::BackendRef {
            group: $b.group.as_deref(),
            kind: $b.kind.as_deref(),
            name: &$b.name,
            namespace: $b.namespace.as_deref(),
            port: $b.port,
        }
    };
}
pub(crate) use backend_ref;

/// The kind of route that makes a reference: what a ReferenceGrant must
/// allow it from, and how its backends speak when the Service port does not
/// say (gRPC is HTTP/2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteKind {
    Http,
    Grpc,
    Tls,
    Tcp,
}

impl RouteKind {
    pub fn name(self) -> &'static str {
        match self {
            RouteKind::Http => "HTTPRoute",
            RouteKind::Grpc => "GRPCRoute",
            RouteKind::Tls => "TLSRoute",
            RouteKind::Tcp => "TCPRoute",
        }
    }
}

/// Why a reference does not resolve: a route `ResolvedRefs` reason and message.
pub type Unresolved = (&'static str, String);

/// Who calls the backend. Both reach meshed workloads through their
/// sidecars over mutual TLS (the gateway with an identity of its own), and
/// other backends directly.
#[derive(Clone, Copy)]
pub enum Caller<'a> {
    Gateway(Trust<'a>),
    Sidecar(Trust<'a>),
}

/// The mesh's trust: its domain, and the roots its certificates chain to
/// (distributed with the config, so proxies learn a new root from it).
#[derive(Clone, Copy)]
pub struct Trust<'a> {
    pub domain: &'a str,
    /// The DNS suffix of Service names.
    pub cluster_domain: &'a str,
    pub bundle: &'a [String],
    /// Whether global rate limits have a store (Redis) to be counted in.
    pub rate_limit_store: bool,
    /// The cluster set: imports and the peers' endpoints.
    pub cluster_set: &'a super::multicluster::ClusterSet,
}

impl<'a> Caller<'a> {
    pub fn trust(&self) -> Trust<'a> {
        match self {
            Caller::Gateway(t) | Caller::Sidecar(t) => *t,
        }
    }
}

/// Where a workload's sidecar takes inbound connections for its `i`-th port.
pub const INBOUND_BASE_PORT: u16 = 15006;

/// Resolves `r`, made by a route of `route_kind` in `route_ns`, to a
/// cluster name, adding the cluster to `clusters` the first time.
pub fn resolve(
    store: &Store,
    caller: Caller<'_>,
    route_kind: RouteKind,
    route_ns: &str,
    r: &BackendRef<'_>,
    clusters: &mut BTreeMap<String, Cluster>,
) -> Result<String, Unresolved> {
    let group = r.group.unwrap_or("");
    let kind = r.kind.unwrap_or("Service");
    if (group, kind) == (crate::multicluster::MCS_GROUP, "ServiceImport") {
        return import(store, caller, route_kind, route_ns, r, clusters);
    }
    if (group, kind) == (crate::egress::X_GROUP, "XBackend") {
        return super::egress::resolve(store, caller, route_kind, route_ns, r, clusters);
    }
    if !group.is_empty() || kind != "Service" {
        return Err((
            "InvalidKind",
            format!("backendRef kind {group}/{kind} is not supported"),
        ));
    }
    let ns = r.namespace.unwrap_or(route_ns);
    granted(
        store,
        caller,
        route_kind,
        route_ns,
        ("", "Service", ns, r.name),
    )?;
    let Some(Object::Service(svc)) = store.lookup(Kind::Service, ns, r.name) else {
        return Err((
            "BackendNotFound",
            format!("Service {ns}/{} does not exist", r.name),
        ));
    };
    let Some(port) = r.port else {
        return Err((
            "BackendNotFound",
            format!("backendRef to Service {ns}/{} needs a port", r.name),
        ));
    };
    let ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or_default();
    let Some(service_port) = ports.iter().find(|p| p.port == port) else {
        return Err((
            "BackendNotFound",
            format!("Service {ns}/{} has no port {port}", r.name),
        ));
    };
    let protocol = match (app_protocol(service_port), route_kind) {
        (None, RouteKind::Grpc) => AppProtocol::H2c,
        (p, _) => p.unwrap_or_default(),
    };
    // A port without appProtocol is HTTP/1.1 to HTTPRoutes and h2c to
    // GRPCRoutes: two clusters.
    let name = match (service_port.app_protocol.is_none(), protocol) {
        (true, AppProtocol::H2c) => format!("{ns}/{}:{port}/h2c", r.name),
        _ => format!("{ns}/{}:{port}", r.name),
    };
    // TLS a BackendTLSPolicy asks for; one that cannot be met makes the
    // reference unusable rather than send plaintext.
    let policy = match super::policy::for_port(store, ns, r.name, service_port.name.as_deref()) {
        Some(Err(message)) => return Err(("InvalidBackendTLSPolicy", message)),
        Some(Ok(tls)) => Some(tls),
        None => None,
    };
    if !clusters.contains_key(&name) {
        let rate_store = caller.trust().rate_limit_store;
        let port_name = service_port.name.as_deref();
        let traffic = super::traffic::for_port(store, ns, r.name, port_name, rate_store);
        let mut cluster = Cluster {
            protocol,
            endpoints: endpoints(store, ns, r.name, svc, service_port),
            lb: traffic
                .as_ref()
                .and_then(|t| t.lb)
                .unwrap_or_else(|| lb_policy(svc)),
            tls: policy,
            service: Some(format!(
                "{}.{ns}.svc.{}",
                r.name,
                caller.trust().cluster_domain
            )),
            hash: traffic.as_ref().and_then(|t| t.hash.clone()),
            zones: Vec::new(),
            origins: Vec::new(),
            resilience: traffic.map(|t| t.resilience).unwrap_or_default(),
            external: None,
        };
        let (endpoints, identities) =
            mesh_endpoints(store, ns, svc, service_port, caller.trust().domain);
        if !endpoints.is_empty() {
            cluster.endpoints = endpoints;
            cluster.tls = Some(UpstreamTls {
                sni: format!("{}.{ns}.svc.{}", r.name, caller.trust().cluster_domain),
                roots_pem: caller.trust().bundle.to_vec(),
                identities,
                client_cert: None,
                policy: None,
            });
        }
        if cluster.resilience.zone_aware.is_some() {
            cluster.zones = cluster
                .endpoints
                .iter()
                .map(|a| zone_of(store, ns, svc, a.ip()))
                .collect();
        }
        clusters.insert(name.clone(), cluster);
    }
    Ok(name)
}

/// The backendRefs (as written) of the routes attached to `gw`, each with
/// its route's namespace and kind.
pub fn attached_refs<'s>(
    store: &'s Store,
    gw: &super::gateway::GatewayCtx,
) -> Vec<(&'s str, RouteKind, &'s serde_json::Value)> {
    let kinds = [
        (Kind::HttpRoute, RouteKind::Http),
        (Kind::GrpcRoute, RouteKind::Grpc),
        (Kind::TlsRoute, RouteKind::Tls),
        (Kind::TcpRoute, RouteKind::Tcp),
    ];
    let mut out = Vec::new();
    for (route_ns, route_name) in gw.listeners.iter().flat_map(|l| &l.attached) {
        for (kind, route_kind) in kinds {
            let key = crate::resources::ObjKey {
                kind,
                namespace: route_ns.clone(),
                name: route_name.clone(),
            };
            let Some((key, entry)) = store.get_key_value(&key) else {
                continue;
            };
            // Every route kind spells backendRefs alike.
            let rules = entry.spec["spec"]["rules"].as_array().into_iter().flatten();
            let refs = rules.flat_map(|r| r["backendRefs"].as_array().into_iter().flatten());
            out.extend(refs.map(|r| (key.namespace.as_str(), route_kind, r)));
        }
    }
    out
}

/// Whether a route of `route_kind` in `route_ns` may refer to `to`
/// (group, kind, namespace, name). Mesh routes augment what callers can
/// reach anyway, so they may send to any namespace without a
/// ReferenceGrant (GEP-1294); routes bound to Gateways expose backends and
/// need one.
pub(super) fn granted(
    store: &Store,
    caller: Caller<'_>,
    route_kind: RouteKind,
    route_ns: &str,
    (group, kind, namespace, name): (&str, &str, &str, &str),
) -> Result<(), Unresolved> {
    let from = From {
        group: GATEWAY_GROUP,
        kind: route_kind.name(),
        namespace: route_ns,
    };
    let to = To {
        group,
        kind,
        namespace,
        name,
    };
    if matches!(caller, Caller::Sidecar(_)) || permitted(store, &from, &to) {
        return Ok(());
    }
    Err((
        "RefNotPermitted",
        format!("no ReferenceGrant in {namespace} allows a reference to {kind} {name}"),
    ))
}

/// A backendRef to a ServiceImport (GEP-1748): the whole cluster set.
/// Like a Service, it needs a ReferenceGrant from another namespace.
fn import(
    store: &Store,
    caller: Caller<'_>,
    route_kind: RouteKind,
    route_ns: &str,
    r: &BackendRef<'_>,
    clusters: &mut BTreeMap<String, Cluster>,
) -> Result<String, Unresolved> {
    let ns = r.namespace.unwrap_or(route_ns);
    let to = (crate::multicluster::MCS_GROUP, "ServiceImport", ns, r.name);
    granted(store, caller, route_kind, route_ns, to)?;
    let Some(port) = r.port.and_then(|p| u16::try_from(p).ok()) else {
        return Err((
            "BackendNotFound",
            format!("backendRef to ServiceImport {ns}/{} needs a port", r.name),
        ));
    };
    super::multicluster::resolve(store, caller, route_kind, ns, r.name, port, clusters)
}

/// The label (on a Workload, and on a Gateway's infrastructure) naming
/// the zone it runs in, as Kubernetes nodes have it.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// The zone of the endpoint at `ip` of Service `svc`: its EndpointSlice's
/// `zone`, else its Workload's label; empty when unknown.
pub(crate) fn zone_of(store: &Store, ns: &str, svc: &Service, ip: std::net::IpAddr) -> String {
    let name = svc.metadata.name.as_deref().unwrap_or("");
    let from_slice = store
        .of_kind(Kind::EndpointSlice)
        .filter(|(key, _)| key.namespace == ns)
        .filter_map(|(_, e)| match &e.object {
            Object::EndpointSlice(s) => Some(s),
            _ => None,
        })
        .filter(|s| {
            let labels = s.metadata.labels.as_ref();
            labels
                .and_then(|l| l.get("kubernetes.io/service-name"))
                .map(String::as_str)
                == Some(name)
        })
        .flat_map(|s| s.endpoints.iter().flatten())
        .find(|ep| ep.addresses.iter().any(|a| a.parse() == Ok(ip)))
        .and_then(|ep| ep.zone.clone());
    from_slice
        .or_else(|| {
            selected_workloads(store, ns, svc)
                .find(|(_, w)| w.address() == ip)
                .and_then(|(_, w)| w.metadata.labels.as_ref()?.get(ZONE_LABEL).cloned())
        })
        .unwrap_or_default()
}

/// The annotation `weft.dev/load-balancer: least-request` picks the less busy
/// endpoint; round robin otherwise.
pub const LB_ANNOTATION: &str = "weft.dev/load-balancer";

fn lb_policy(svc: &Service) -> LbPolicy {
    let annotations = svc.metadata.annotations.as_ref();
    match annotations
        .and_then(|a| a.get(LB_ANNOTATION))
        .map(String::as_str)
    {
        Some("least-request") => LbPolicy::LeastRequest,
        _ => LbPolicy::RoundRobin,
    }
}

/// The SPIFFE ID of a Workload.
pub fn workload_identity(
    trust_domain: &str,
    namespace: &str,
    w: &crate::workload::Workload,
) -> String {
    let sa = w.spec.service_account_name.as_deref().unwrap_or("default");
    format!("spiffe://{trust_domain}/ns/{namespace}/sa/{sa}")
}

/// The sidecars behind a Service port: each selected Workload's inbound
/// address for the target port, and the identities they serve with.
pub(crate) fn mesh_endpoints(
    store: &Store,
    ns: &str,
    svc: &Service,
    port: &ServicePort,
    trust_domain: &str,
) -> (Vec<SocketAddr>, Vec<String>) {
    let (mut endpoints, mut identities) = (Vec::new(), Vec::new());
    // Where the Service has EndpointSlices (on Kubernetes), a pod's
    // readiness is theirs to say.
    let name = svc.metadata.name.as_deref().unwrap_or("");
    let usable: Option<Vec<std::net::IpAddr>> =
        slice_endpoints(store, ns, name, port).map(|eps| eps.iter().map(SocketAddr::ip).collect());
    for (key, w) in selected_workloads(store, ns, svc) {
        if !super::mesh::meshed(store, &key.namespace, w) {
            continue;
        }
        if usable
            .as_ref()
            .is_some_and(|ips| !ips.contains(&w.address()))
        {
            continue;
        }
        let index = w.spec.ports.iter().position(|p| match &port.target_port {
            None => i32::from(p.container_port) == port.port,
            Some(IntOrString::Int(n)) => i32::from(p.container_port) == *n,
            Some(IntOrString::String(n)) => p.name.as_deref() == Some(n),
        });
        let Some(index) = index.and_then(|i| u16::try_from(i).ok()) else {
            continue;
        };
        endpoints.push(SocketAddr::new(w.address(), INBOUND_BASE_PORT + index));
        identities.push(workload_identity(trust_domain, &key.namespace, w));
    }
    endpoints.sort();
    identities.sort();
    identities.dedup();
    (endpoints, identities)
}

/// How a Workload's port speaks, as the Service ports targeting it say
/// (`appProtocol`); HTTP/1.1 when none says.
pub fn port_protocol(
    store: &Store,
    ns: &str,
    w: &crate::workload::Workload,
    port: &crate::workload::WorkloadPort,
) -> AppProtocol {
    store
        .of_kind(Kind::Service)
        .filter(|(key, _)| key.namespace == ns)
        .filter_map(|(_, e)| match &e.object {
            Object::Service(svc) if selects(svc, w) => Some(svc),
            _ => None,
        })
        .flat_map(|svc| svc.spec.iter().flat_map(|s| s.ports.iter().flatten()))
        .find(|sp| targets(sp, port))
        .and_then(app_protocol)
        .unwrap_or_default()
}

/// Whether a Service port sends to a Workload's port.
pub fn targets(sp: &ServicePort, port: &crate::workload::WorkloadPort) -> bool {
    match &sp.target_port {
        None => sp.port == i32::from(port.container_port),
        Some(IntOrString::Int(n)) => *n == i32::from(port.container_port),
        Some(IntOrString::String(n)) => port.name.as_deref() == Some(n),
    }
}

/// Whether a Service's (non-empty) selector picks `w`.
pub fn selects(svc: &Service, w: &crate::workload::Workload) -> bool {
    let Some(selector) = svc
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .filter(|s| !s.is_empty())
    else {
        return false;
    };
    let labels = w.metadata.labels.as_ref();
    selector
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// The Workloads a Service's selector picks, in its namespace.
fn selected_workloads<'a>(
    store: &'a Store,
    ns: &'a str,
    svc: &'a Service,
) -> impl Iterator<Item = (&'a crate::resources::ObjKey, &'a crate::workload::Workload)> + 'a {
    store
        .of_kind(Kind::Workload)
        .filter_map(move |(key, entry)| match &entry.object {
            Object::Workload(w) if key.namespace == ns && selects(svc, w) => Some((key, w)),
            _ => None,
        })
}

/// What a Service port's `appProtocol` says, if it says something weft knows.
pub(crate) fn app_protocol(port: &ServicePort) -> Option<AppProtocol> {
    match port.app_protocol.as_deref()? {
        // Istio's names for HTTP/2 ports, too.
        "kubernetes.io/h2c" | "grpc" | "http2" => Some(AppProtocol::H2c),
        "kubernetes.io/ws" => Some(AppProtocol::WebSocket),
        _ => Some(AppProtocol::Http1),
    }
}

/// The endpoints of one Service port from its EndpointSlices (labelled
/// with the Service's name; the slice port of the same name gives the
/// target port), as the API defines their conditions: the ready ones; when
/// none is ready, the ones still serving while they terminate, so that a
/// rollout's last pods drain instead of failing. `None` when the Service
/// has no EndpointSlice at all.
fn slice_endpoints(
    store: &Store,
    ns: &str,
    name: &str,
    port: &ServicePort,
) -> Option<Vec<SocketAddr>> {
    let port_name = port.name.as_deref().unwrap_or("");
    let (mut ready, mut draining) = (Vec::new(), Vec::new());
    let mut any = false;
    for (key, entry) in store.of_kind(Kind::EndpointSlice) {
        let Object::EndpointSlice(slice) = &entry.object else {
            continue;
        };
        let labels = slice.metadata.labels.as_ref();
        if key.namespace != ns
            || labels
                .and_then(|l| l.get("kubernetes.io/service-name"))
                .map(String::as_str)
                != Some(name)
        {
            continue;
        }
        any = true;
        let slice_port = slice
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref().unwrap_or("") == port_name)
            .and_then(|p| p.port);
        let Some(target) = slice_port.and_then(|p| u16::try_from(p).ok()) else {
            continue;
        };
        for ep in slice.endpoints.iter().flatten() {
            let c = ep.conditions.clone().unwrap_or_default();
            // An unset condition is to be read as ready (serving follows
            // ready; terminating is false).
            let is_ready = c.ready.unwrap_or(true);
            let serving = c.serving.unwrap_or(is_ready);
            let terminating = c.terminating.unwrap_or(false);
            let into = if is_ready && !terminating {
                &mut ready
            } else if serving && terminating {
                &mut draining
            } else {
                continue;
            };
            into.extend(
                ep.addresses
                    .iter()
                    .filter_map(|a| a.parse().ok())
                    .map(|ip| SocketAddr::new(ip, target)),
            );
        }
    }
    let usable = if ready.is_empty() { draining } else { ready };
    any.then_some(usable)
}

/// The endpoints of one Service port: its EndpointSlices' when it has
/// any, else the Workloads its selector picks (standalone mode).
fn endpoints(
    store: &Store,
    ns: &str,
    name: &str,
    svc: &Service,
    port: &ServicePort,
) -> Vec<SocketAddr> {
    if let Some(mut out) = slice_endpoints(store, ns, name, port) {
        out.sort();
        out.dedup();
        return out;
    }
    let mut out = Vec::new();
    for (_, w) in selected_workloads(store, ns, svc) {
        let target = match &port.target_port {
            None => u16::try_from(port.port).ok(),
            Some(IntOrString::Int(p)) => u16::try_from(*p).ok(),
            Some(IntOrString::String(n)) => w
                .spec
                .ports
                .iter()
                .find(|p| p.name.as_deref() == Some(n))
                .map(|p| p.container_port),
        };
        if let Some(target) = target {
            out.push(SocketAddr::new(w.address(), target));
        }
    }
    out.sort();
    out.dedup();
    out
}
