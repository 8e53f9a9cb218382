//! Routes (HTTPRoute and GRPCRoute, TLSRoute and TCPRoute): attaching each
//! parentRef to Gateway listeners, and the route's status. `program` adds
//! an attached route's rules to the listeners' virtual hosts.

use super::access::Resolver;
use super::backend::{backend_ref, Caller, RouteKind};
use super::conditions::{Condition, Verdict};
use super::gateway::{AllowedFrom, GatewayCtx, ListenerCtx};
use super::hostname;
use super::l4;
use super::program::program;
use super::rules::{self, Problems, Rule};
use crate::resources::{Kind, ObjKey, Object, GATEWAY_GROUP};
use crate::store::Store;
use crate::CONTROLLER_NAME;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use weft_api::Cluster;

/// A parentRef as every route kind spells it.
pub struct ParentRef {
    pub group: Option<String>,
    pub kind: Option<String>,
    pub namespace: Option<String>,
    pub name: String,
    pub section_name: Option<String>,
    pub port: Option<i32>,
}

macro_rules! parent_refs {
    ($refs:expr) => {
        $refs
            .iter()
            .flatten()
            .map(|p| ParentRef {
                group: p.group.clone(),
                kind: p.kind.clone(),
                namespace: p.namespace.clone(),
                name: p.name.clone(),
                section_name: p.section_name.clone(),
                port: p.port,
            })
            .collect()
    };
}

/// What attaching needs of a route, whatever its kind: its rules already
/// converted.
struct Attaching<'a> {
    key: &'a ObjKey,
    kind: RouteKind,
    /// Creation time, namespace, name: which of two routes is older.
    order: rules::RouteOrder,
    generation: i64,
    hostnames: Vec<String>,
    parents: Vec<ParentRef>,
    converted: Vec<(usize, Rule)>,
    problems: Problems,
}

pub fn routes(
    store: &Store,
    gateways: &mut [GatewayCtx],
    clusters: &mut BTreeMap<String, Cluster>,
    statuses: &mut BTreeMap<ObjKey, Value>,
    trust: super::backend::Trust<'_>,
    resolver: &mut Resolver<'_>,
) {
    let caller = Caller::Gateway(trust);
    let mut http_like = Vec::new();
    // HTTPRoutes and GRPCRoutes are converted by their own modules and
    // attach alike.
    macro_rules! convert_http_like {
        ($kind:ident, $route_kind:expr, $convert:path) => {
            for (key, entry) in store.of_kind(Kind::$kind) {
                let Object::$kind(route) = &entry.object else {
                    continue;
                };
                let (converted, problems) = $convert(store, caller, key, route, clusters);
                http_like.push(Attaching {
                    key,
                    kind: $route_kind,
                    order: rules::route_order(key, &route.metadata),
                    generation: entry.generation,
                    hostnames: route.spec.hostnames.clone().unwrap_or_default(),
                    parents: parent_refs!(route.spec.parent_refs),
                    converted,
                    problems,
                });
            }
        };
    }
    convert_http_like!(HttpRoute, RouteKind::Http, rules::convert_route);
    convert_http_like!(GrpcRoute, RouteKind::Grpc, super::grpc::convert_route);
    // HTTPRoutes and GRPCRoutes may not share a hostname on a listener.
    let losers = cross_kind_losers(store, gateways, &http_like);
    for (i, route) in http_like.into_iter().enumerate() {
        let lost: Vec<usize> = losers
            .iter()
            .filter(|(r, _)| *r == i)
            .map(|(_, p)| *p)
            .collect();
        attach_all(store, gateways, statuses, route, &lost, resolver);
    }
    // TLSRoutes and TCPRoutes spell rules and backendRefs alike, as
    // distinct types.
    macro_rules! attach_l4 {
        ($kind:ident, $route_kind:expr, |$route:ident| $hostnames:expr) => {
            for (key, entry) in store.of_kind(Kind::$kind) {
                let Object::$kind($route) = &entry.object else {
                    continue;
                };
                let rules = $route.spec.rules.iter().map(|r| {
                    r.backend_refs
                        .iter()
                        .map(|b| (backend_ref!(b), b.weight))
                        .collect()
                });
                let (converted, problems) = l4::convert_route(
                    store,
                    caller,
                    $route_kind,
                    key,
                    &$route.metadata,
                    rules,
                    clusters,
                );
                let route = Attaching {
                    key,
                    kind: $route_kind,
                    order: rules::route_order(key, &$route.metadata),
                    generation: entry.generation,
                    hostnames: $hostnames,
                    parents: parent_refs!($route.spec.parent_refs),
                    converted,
                    problems,
                };
                attach_all(store, gateways, statuses, route, &[], resolver);
            }
        };
    }
    attach_l4!(TlsRoute, RouteKind::Tls, |route| route
        .spec
        .hostnames
        .clone());
    attach_l4!(TcpRoute, RouteKind::Tcp, |route| Vec::new());
}

/// The Gateway a parentRef names (by index), and the ListenerSet whose
/// listeners it means (`None`: the Gateway's own).
fn parent_gateway(
    gateways: &[GatewayCtx],
    route_ns: &str,
    parent: &ParentRef,
) -> Option<(usize, Option<ObjKey>)> {
    let group = parent.group.as_deref().unwrap_or(GATEWAY_GROUP);
    let kind = parent.kind.as_deref().unwrap_or("Gateway");
    let parent_ns = parent.namespace.as_deref().unwrap_or(route_ns);
    let owner = match (group, kind) {
        (GATEWAY_GROUP, "Gateway") => None,
        (GATEWAY_GROUP, "ListenerSet") => Some(ObjKey {
            kind: Kind::ListenerSet,
            namespace: parent_ns.to_string(),
            name: parent.name.clone(),
        }),
        _ => return None,
    };
    let gw = gateways.iter().position(|g| match &owner {
        None => g.key.namespace == parent_ns && g.key.name == parent.name,
        Some(ls) => g.listeners.iter().any(|l| l.owner.as_ref() == Some(ls)),
    })?;
    Some((gw, owner))
}

/// HTTPRoutes and GRPCRoutes that claim the same hostname on a listener:
/// the kind of the oldest such route keeps it, and the parents (route
/// index, parentRef index) through which the other kind claims it lose.
fn cross_kind_losers(
    store: &Store,
    gateways: &[GatewayCtx],
    routes: &[Attaching<'_>],
) -> BTreeSet<(usize, usize)> {
    type Claim<'r> = (&'r rules::RouteOrder, RouteKind, usize, usize);
    let mut claims: BTreeMap<(usize, usize, String), Vec<Claim<'_>>> = BTreeMap::new();
    for (ri, route) in routes.iter().enumerate() {
        // A route refused for its own rules claims nothing.
        if route.converted.is_empty() && route.problems.unsupported.is_some() {
            continue;
        }
        for (pi, parent) in route.parents.iter().enumerate() {
            let Some((gi, owner)) = parent_gateway(gateways, &route.key.namespace, parent) else {
                continue;
            };
            let gw = &gateways[gi];
            let Ok(listeners) = attach(store, route, parent, gw, owner.as_ref()) else {
                continue;
            };
            for li in listeners {
                let listener = gw.listeners[li].hostname.as_deref();
                for host in hostname::effective(&route.hostnames, listener) {
                    let claim = (&route.order, route.kind, ri, pi);
                    claims.entry((gi, li, host)).or_default().push(claim);
                }
            }
        }
    }
    let mut losers = BTreeSet::new();
    for list in claims.values() {
        let Some(oldest) = list.iter().min_by(|a, b| a.0.cmp(b.0)) else {
            continue;
        };
        for (_, kind, ri, pi) in list {
            if *kind != oldest.1 {
                losers.insert((*ri, *pi));
            }
        }
    }
    losers
}

/// Attaches `route` through each of its parents, except that the parents
/// at indices `lost` are refused (a route of another kind has the host).
fn attach_all(
    store: &Store,
    gateways: &mut [GatewayCtx],
    statuses: &mut BTreeMap<ObjKey, Value>,
    route: Attaching<'_>,
    lost: &[usize],
    resolver: &mut Resolver<'_>,
) {
    let key = route.key;
    let g = route.generation;
    let mut parents = Vec::new();
    for (pi, parent) in route.parents.iter().enumerate() {
        let Some((gi, owner)) = parent_gateway(gateways, &key.namespace, parent) else {
            continue;
        };
        let gw = &mut gateways[gi];
        let mut accepted = Verdict::ok("Accepted");
        let unsupported = &route.problems.unsupported;
        let attached = if lost.contains(&pi) {
            let message = "an older route of another kind (HTTPRoute or GRPCRoute) has this \
                           hostname on the listener";
            Err(("Conflicted", message.to_string()))
        } else {
            attach(store, &route, parent, gw, owner.as_ref())
        };
        match attached {
            Err((reason, message)) => accepted.fail(reason, message),
            Ok(_) if route.converted.is_empty() && unsupported.is_some() => {
                accepted.fail("UnsupportedValue", unsupported.clone().unwrap_or_default());
            }
            Ok(listeners) => {
                for li in listeners {
                    let listener = &mut gw.listeners[li];
                    // attachedRoutes counts accepted routes only.
                    listener
                        .attached
                        .insert((key.namespace.clone(), key.name.clone()));
                    let access = |l: &ListenerCtx, rule: &Rule| {
                        let rule_name = rule.name.as_deref();
                        resolver.for_route(&gw.key, l, key, route.kind, rule_name)
                    };
                    program(listener, key, &route.hostnames, &route.converted, access);
                }
            }
        }
        let mut resolved = Verdict::ok("ResolvedRefs");
        if let Some((reason, message)) = &route.problems.unresolved {
            resolved.fail(reason, message.clone());
        }
        let mut conditions = vec![
            accepted.condition("Accepted", "Accepted", g),
            resolved.condition("ResolvedRefs", "References resolved", g),
        ];
        if let (Some(message), false) = (unsupported, route.converted.is_empty()) {
            let message = format!("Dropped Rule: {message}");
            conditions.push(Condition::new(
                "PartiallyInvalid",
                true,
                "UnsupportedValue",
                message,
                g,
            ));
        }
        parents.push(json!({
            "parentRef": parent_ref(parent),
            "controllerName": CONTROLLER_NAME,
            "conditions": conditions,
        }));
    }
    if !parents.is_empty() {
        statuses.insert(key.clone(), json!({ "parents": parents }));
    }
}

/// The listeners of `gw` the route attaches to through `parent`, or why none.
fn attach(
    store: &Store,
    route: &Attaching<'_>,
    parent: &ParentRef,
    gw: &GatewayCtx,
    owner: Option<&ObjKey>,
) -> Result<Vec<usize>, (&'static str, String)> {
    let named: Vec<usize> = (0..gw.listeners.len())
        .filter(|&i| {
            let l = &gw.listeners[i];
            l.owner.as_ref() == owner
                && parent.section_name.as_deref().is_none_or(|s| s == l.name)
                && parent.port.is_none_or(|p| i32::from(l.port) == p)
        })
        .collect();
    if named.is_empty() {
        return Err((
            "NoMatchingParent",
            "no listener matches the parentRef's sectionName and port".into(),
        ));
    }
    let ns = &route.key.namespace;
    let ns_labels = store.namespace_labels(ns);
    let allowed: Vec<usize> = named
        .into_iter()
        .filter(|&i| {
            let l = &gw.listeners[i];
            let ns_ok = match &l.allowed_from {
                AllowedFrom::Same => *ns == l.namespace,
                AllowedFrom::All => true,
                AllowedFrom::Selector(sel) => sel.matches(&ns_labels).unwrap_or(false),
            };
            ns_ok && l.kinds.contains(&route.kind.name())
        })
        .collect();
    if allowed.is_empty() {
        return Err((
            "NotAllowedByListeners",
            "no listener allows this route".into(),
        ));
    }
    let matching: Vec<usize> = allowed
        .into_iter()
        .filter(|&i| {
            !hostname::effective(&route.hostnames, gw.listeners[i].hostname.as_deref()).is_empty()
        })
        .collect();
    if matching.is_empty() {
        return Err((
            "NoMatchingListenerHostname",
            "no listener hostname matches the route's hostnames".into(),
        ));
    }
    Ok(matching)
}

/// The parentRef as the status spells it: as the route wrote it (a
/// namespace it wrote stays, even its own), with group and kind filled in.
fn parent_ref(p: &ParentRef) -> Value {
    let mut m = Map::new();
    m.insert(
        "group".into(),
        json!(p.group.as_deref().unwrap_or(GATEWAY_GROUP)),
    );
    m.insert("kind".into(), json!(p.kind.as_deref().unwrap_or("Gateway")));
    if let Some(ns) = p.namespace.as_deref() {
        m.insert("namespace".into(), json!(ns));
    }
    m.insert("name".into(), json!(p.name));
    if let Some(s) = &p.section_name {
        m.insert("sectionName".into(), json!(s));
    }
    if let Some(port) = p.port {
        m.insert("port".into(), json!(port));
    }
    Value::Object(m)
}
