//! The mesh: one `SidecarConfig` per Workload — its inbound ports and the
//! services it may call — with the GAMMA routes (HTTPRoutes whose parent is
//! a Service) that shape that traffic, and the status of those routes.

use super::backend::{self, BackendRef, Caller, INBOUND_BASE_PORT};
use super::conditions::{Condition, Verdict};
use super::rules::{self, Rule, SortKey};
use crate::multicluster::MCS_GROUP;
use crate::resources::{Kind, ObjKey, Object};
use crate::store::Store;
use crate::CONTROLLER_NAME;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use weft_api::*;

/// Where a sidecar takes its workload's outbound calls (HTTP_PROXY).
pub const OUTBOUND_PORT: u16 = 15001;
/// `weft.dev/mtls-mode: permissive` on a Workload or its Namespace.
pub const MTLS_MODE_ANNOTATION: &str = "weft.dev/mtls-mode";
/// The label `weft.dev/mesh: enabled` on a Workload or its Namespace gives
/// the Workload a sidecar (like Istio's injection label).
pub const MESH_LABEL: &str = "weft.dev/mesh";

/// Whether a Workload is in the mesh.
pub fn meshed(store: &Store, ns: &str, w: &crate::workload::Workload) -> bool {
    let enabled = |l: Option<&BTreeMap<String, String>>| {
        l.and_then(|l| l.get(MESH_LABEL)).map(|v| v == "enabled")
    };
    let namespace = match store.lookup(Kind::Namespace, "", ns) {
        Some(Object::Namespace(n)) => enabled(n.metadata.labels.as_ref()),
        _ => None,
    };
    enabled(w.metadata.labels.as_ref())
        .or(namespace)
        .unwrap_or(false)
}

/// An HTTPRoute attached to a Service port.
struct MeshRoute {
    route_ns: String,
    route_name: String,
    service: (String, String),
    /// The parent is the ServiceImport of that name (GEP-1748): the route
    /// shapes calls to its clusterset name.
    import: bool,
    port: Option<i32>,
    rules: Vec<(usize, Rule)>,
}

pub fn sidecars(
    store: &Store,
    trust: backend::Trust<'_>,
    statuses: &mut BTreeMap<ObjKey, Value>,
) -> BTreeMap<ObjKey, SidecarConfig> {
    let caller = Caller::Sidecar(trust);
    let trust_domain = trust.domain;
    let mut clusters = BTreeMap::new();
    let routes = mesh_routes(store, caller, &mut clusters, statuses);
    // The routes by the Service they are for, and each namespace's virtual
    // hosts once (they depend on the caller's namespace alone): a
    // translation is linear in Services and routes, not their product
    // times workloads.
    let mut by_service: HashMap<(&str, &str, bool), Vec<&MeshRoute>> = HashMap::new();
    for r in &routes {
        by_service
            .entry((r.service.0.as_str(), r.service.1.as_str(), r.import))
            .or_default()
            .push(r);
    }
    let mut hosts_of: HashMap<String, Vec<VirtualHost>> = HashMap::new();
    let mut out = BTreeMap::new();
    for (key, entry) in store.of_kind(Kind::Workload) {
        let Object::Workload(w) = &entry.object else {
            continue;
        };
        if !meshed(store, &key.namespace, w) {
            continue;
        }
        let inbound = w
            .spec
            .ports
            .iter()
            .zip(INBOUND_BASE_PORT..)
            .map(|(p, listen)| InboundPort {
                listen: SocketAddr::new(w.address(), listen),
                app: SocketAddr::new(w.address(), p.container_port),
                protocol: backend::port_protocol(store, &key.namespace, w, p),
                access: super::access::inbound(store, trust_domain, &key.namespace, w, p),
            })
            .collect();
        let identity = backend::workload_identity(trust_domain, &key.namespace, w);
        let virtual_hosts = hosts_of
            .entry(key.namespace.clone())
            .or_insert_with(|| {
                virtual_hosts(store, caller, &key.namespace, &by_service, &mut clusters)
            })
            .clone();
        let used: BTreeSet<String> = virtual_hosts
            .iter()
            .flat_map(|v| &v.routes)
            .flat_map(Route::clusters)
            .map(str::to_string)
            .collect();
        let outbound = GatewayConfig {
            namespace: key.namespace.clone(),
            name: format!("sidecar/{}", key.name),
            ports: vec![Port {
                addresses: vec![w.address()],
                port: OUTBOUND_PORT,
                protocol: Protocol::Http,
                client_auth: None,
                host_with_port: true,
                passthrough: true,
                blackhole: false,
                stream_hosts: Vec::new(),
                sidecar: true,
                listeners: vec![Listener {
                    name: "outbound".into(),
                    hostname: None,
                    tls: None,
                    virtual_hosts,
                }],
            }],
            clusters: used
                .into_iter()
                .filter_map(|c| clusters.get(&c).map(|v| (c, v.clone())))
                .collect(),
            access_log: access_log(store, &key.namespace, w),
            identity: Some(identity.clone()),
            limits: Default::default(),
            access: Default::default(),
            rate_limit_store: None,
            zone: w
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(super::backend::ZONE_LABEL))
                .cloned(),
            east_west: None,
            cluster: trust.cluster_set.cluster.clone(),
            egress_source: None,
        };
        let config = SidecarConfig {
            namespace: key.namespace.clone(),
            workload: key.name.clone(),
            identity,
            trust_bundle: trust.bundle.to_vec(),
            mode: mode(store, &key.namespace, w),
            inbound,
            outbound,
        };
        out.insert(key.clone(), config);
    }
    out
}

/// An annotation of the Workload, else of its Namespace.
fn annotation(
    store: &Store,
    ns: &str,
    w: &crate::workload::Workload,
    name: &str,
) -> Option<String> {
    let of = |a: Option<&BTreeMap<String, String>>| a.and_then(|a| a.get(name)).cloned();
    of(w.metadata.annotations.as_ref()).or_else(|| match store.lookup(Kind::Namespace, "", ns) {
        Some(Object::Namespace(n)) => of(n.metadata.annotations.as_ref()),
        _ => None,
    })
}

fn mode(store: &Store, ns: &str, w: &crate::workload::Workload) -> MtlsMode {
    match annotation(store, ns, w, MTLS_MODE_ANNOTATION).as_deref() {
        Some("permissive" | "PERMISSIVE") => MtlsMode::Permissive,
        _ => MtlsMode::Strict,
    }
}

/// `weft.dev/access-log: "true"` on the Workload or its Namespace.
fn access_log(store: &Store, ns: &str, w: &crate::workload::Workload) -> bool {
    annotation(store, ns, w, super::gateway::ACCESS_LOG_ANNOTATION).as_deref() == Some("true")
}

/// A Service (or ServiceImport) a mesh route attaches to.
struct MeshParent {
    namespace: Option<String>,
    name: String,
    port: Option<i32>,
    import: bool,
}

/// The HTTPRoutes and GRPCRoutes whose parents are Services, converted
/// once, with the status of each such parent.
fn mesh_routes(
    store: &Store,
    caller: Caller<'_>,
    clusters: &mut BTreeMap<String, Cluster>,
    statuses: &mut BTreeMap<ObjKey, Value>,
) -> Vec<MeshRoute> {
    let mut out = Vec::new();
    let routes = store
        .of_kind(Kind::HttpRoute)
        .chain(store.of_kind(Kind::GrpcRoute));
    for (key, entry) in routes {
        // Service parents: (namespace, name, port), as both kinds spell them.
        macro_rules! services {
            ($refs:expr) => {
                $refs
                    .iter()
                    .flatten()
                    .filter_map(|p| {
                        let import = match (p.group.as_deref(), p.kind.as_deref()) {
                            (Some(""), Some("Service")) => false,
                            (Some(MCS_GROUP), Some("ServiceImport")) => true,
                            _ => return None,
                        };
                        Some(MeshParent {
                            namespace: p.namespace.clone(),
                            name: p.name.clone(),
                            port: p.port,
                            import,
                        })
                    })
                    .collect::<Vec<_>>()
            };
        }
        let (services, (converted, problems)) = match &entry.object {
            Object::HttpRoute(route) => {
                let services = services!(route.spec.parent_refs);
                if services.is_empty() {
                    continue;
                }
                let converted = rules::convert_route(store, caller, key, route, clusters);
                (services, converted)
            }
            Object::GrpcRoute(route) => {
                let services = services!(route.spec.parent_refs);
                if services.is_empty() {
                    continue;
                }
                let converted = super::grpc::convert_route(store, caller, key, route, clusters);
                (services, converted)
            }
            _ => continue,
        };
        let mut parents = Vec::new();
        let imports = &caller.trust().cluster_set.imports;
        for parent in services {
            let svc_ns = parent
                .namespace
                .clone()
                .unwrap_or_else(|| key.namespace.clone());
            let g = entry.generation;
            let mut accepted = Verdict::ok("Accepted");
            let import = imports.get(&(svc_ns.clone(), parent.name.clone()));
            match store.lookup(Kind::Service, &svc_ns, &parent.name) {
                _ if parent.import => match import {
                    Some(i)
                        if parent
                            .port
                            .is_some_and(|p| !i.ports.keys().any(|ip| i32::from(*ip) == p)) =>
                    {
                        accepted.fail("NoMatchingParent", "the ServiceImport has no such port")
                    }
                    Some(_) => {}
                    None => accepted.fail(
                        "NoMatchingParent",
                        format!("no cluster exports {svc_ns}/{}", parent.name),
                    ),
                },
                Some(Object::Service(svc)) => {
                    let ports = svc
                        .spec
                        .as_ref()
                        .and_then(|s| s.ports.as_deref())
                        .unwrap_or_default();
                    if parent
                        .port
                        .is_some_and(|p| !ports.iter().any(|sp| sp.port == p))
                    {
                        accepted.fail("NoMatchingParent", "the Service has no such port");
                    } else if converted.is_empty() && problems.unsupported.is_some() {
                        accepted.fail(
                            "UnsupportedValue",
                            problems.unsupported.clone().unwrap_or_default(),
                        );
                    }
                }
                _ => accepted.fail(
                    "NoMatchingParent",
                    format!("Service {svc_ns}/{} does not exist", parent.name),
                ),
            }
            let mut resolved = Verdict::ok("ResolvedRefs");
            if let Some((reason, message)) = &problems.unresolved {
                resolved.fail(reason, message.clone());
            }
            // As the route wrote it, group and kind filled in.
            let mut parent_ref = match parent.import {
                true => json!({"group": MCS_GROUP, "kind": "ServiceImport", "name": parent.name}),
                false => json!({"group": "", "kind": "Service", "name": parent.name}),
            };
            if let Some(ns) = &parent.namespace {
                parent_ref["namespace"] = json!(ns);
            }
            if let Some(port) = parent.port {
                parent_ref["port"] = json!(port);
            }
            let mut conditions = vec![
                accepted.condition("Accepted", "Accepted", g),
                resolved.condition("ResolvedRefs", "References resolved", g),
            ];
            if let (Some(message), false) = (&problems.unsupported, converted.is_empty()) {
                conditions.push(Condition::new(
                    "PartiallyInvalid",
                    true,
                    "UnsupportedValue",
                    format!("Dropped Rule: {message}"),
                    g,
                ));
            }
            parents.push(json!({
                "parentRef": parent_ref,
                "controllerName": CONTROLLER_NAME,
                "conditions": conditions,
            }));
            if accepted.is_ok() {
                out.push(MeshRoute {
                    route_ns: key.namespace.clone(),
                    route_name: key.name.clone(),
                    service: (svc_ns, parent.name.clone()),
                    import: parent.import,
                    port: parent.port,
                    rules: converted.iter().map(|(i, r)| (*i, r.clone())).collect(),
                });
            }
        }
        let status = statuses
            .entry(key.clone())
            .or_insert_with(|| json!({"parents": []}));
        if let Some(list) = status["parents"].as_array_mut() {
            list.extend(parents);
        }
    }
    out
}

/// One virtual host per Service port this namespace's workloads may call,
/// named with the port, holding the GAMMA routes that apply (a consumer's
/// own routes over the producer's) or a route to the Service itself.
fn virtual_hosts(
    store: &Store,
    caller: Caller<'_>,
    ns: &str,
    by_service: &HashMap<(&str, &str, bool), Vec<&MeshRoute>>,
    clusters: &mut BTreeMap<String, Cluster>,
) -> Vec<VirtualHost> {
    let mut out = Vec::new();
    for (key, entry) in store.of_kind(Kind::Service) {
        let Object::Service(svc) = &entry.object else {
            continue;
        };
        let routes = by_service
            .get(&(key.namespace.as_str(), key.name.as_str(), false))
            .map_or(&[][..], Vec::as_slice);
        for sp in svc
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_deref())
            .unwrap_or_default()
        {
            let mut routes = applying(routes, ns, &key.namespace, sp.port);
            if routes.is_empty() {
                let r = BackendRef {
                    group: None,
                    kind: None,
                    name: &key.name,
                    namespace: Some(&key.namespace),
                    port: Some(sp.port),
                };
                let http = backend::RouteKind::Http;
                let Ok(cluster) =
                    backend::resolve(store, caller, http, &key.namespace, &r, clusters)
                else {
                    continue;
                };
                let name = format!("{}/{}:{}", key.namespace, key.name, sp.port);
                routes.push(Route::to_cluster(name, HttpMatch::default(), cluster));
            }
            let mut names = vec![
                format!(
                    "{}.{}.svc.{}:{}",
                    key.name,
                    key.namespace,
                    caller.trust().cluster_domain,
                    sp.port
                ),
                format!("{}.{}:{}", key.name, key.namespace, sp.port),
            ];
            if key.namespace == ns {
                names.push(format!("{}:{}", key.name, sp.port));
            }
            for hostname in names {
                out.push(VirtualHost {
                    hostname,
                    routes: routes.clone(),
                });
            }
        }
    }
    // The cluster set's services, by their `clusterset.local` names, with
    // the routes whose parent is the ServiceImport.
    for ((ins, iname), import) in &caller.trust().cluster_set.imports {
        let attached = by_service
            .get(&(ins.as_str(), iname.as_str(), true))
            .map_or(&[][..], Vec::as_slice);
        for &port in import.ports.keys() {
            let routes = applying(attached, ns, ins, i32::from(port));
            if !routes.is_empty() {
                out.push(VirtualHost {
                    hostname: super::multicluster::host(ins, iname, port),
                    routes,
                });
                continue;
            }
            let http = backend::RouteKind::Http;
            let Ok(cluster) =
                super::multicluster::resolve(store, caller, http, ins, iname, port, clusters)
            else {
                continue;
            };
            let name = format!("{ins}/{iname}:{port}@clusterset");
            out.push(VirtualHost {
                hostname: super::multicluster::host(ins, iname, port),
                routes: vec![Route::to_cluster(name, HttpMatch::default(), cluster)],
            });
        }
    }
    out
}

/// The routes of `attached` (to one Service or ServiceImport in
/// `parent_ns`) that apply to `port` for callers in `ns`, in precedence
/// order: a consumer's own routes over the producer's (GEP-1294).
fn applying(attached: &[&MeshRoute], ns: &str, parent_ns: &str, port: i32) -> Vec<Route> {
    let applies = |r: &&&MeshRoute| r.port.is_none_or(|p| p == port);
    let consumer: Vec<&MeshRoute> = attached
        .iter()
        .filter(applies)
        .filter(|r| r.route_ns == ns && r.route_ns != parent_ns)
        .copied()
        .collect();
    let chosen: Vec<&MeshRoute> = if consumer.is_empty() {
        attached
            .iter()
            .filter(applies)
            .filter(|r| r.route_ns == parent_ns)
            .copied()
            .collect()
    } else {
        consumer
    };
    let mut entries: Vec<(SortKey, Route)> = Vec::new();
    for r in chosen {
        for (i, rule) in &r.rules {
            for (j, (sort, _)) in rule.matches.iter().enumerate() {
                let route = rule.route(&r.route_ns, &r.route_name, *i, j, None);
                entries.push((sort.clone(), route));
            }
        }
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    entries.into_iter().map(|(_, r)| r).collect()
}
