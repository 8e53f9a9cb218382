//! Routes (HTTPRoute and GRPCRoute): attaching each parentRef to Gateway
//! listeners, adding the route's rules to the listeners' virtual hosts, and
//! the route's status.

use super::backend::{Caller, RouteKind};
use super::conditions::{Condition, Verdict};
use super::gateway::{AllowedFrom, GatewayCtx, ListenerCtx};
use super::hostname;
use super::l4;
use super::rules::{self, Problems, Rule};
use crate::resources::{Kind, ObjKey, Object, GATEWAY_GROUP};
use crate::store::Store;
use crate::CONTROLLER_NAME;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use weft_api::{Cluster, Route};

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

/// A backendRef of a TLSRoute or TCPRoute.
macro_rules! l4_backend {
    ($b:expr) => {
        l4::L4Backend {
            r: super::backend::BackendRef {
                group: $b.group.as_deref(),
                kind: $b.kind.as_deref(),
                name: &$b.name,
                namespace: $b.namespace.as_deref(),
                port: $b.port,
            },
            weight: $b.weight,
        }
    };
}

/// What attaching needs of a route, whatever its kind: its rules already
/// converted.
struct Attaching<'a> {
    key: &'a ObjKey,
    kind: RouteKind,
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
) {
    let caller = Caller::Gateway(trust);
    for (key, entry) in store.of_kind(Kind::HttpRoute) {
        let Object::HttpRoute(route) = &entry.object else {
            continue;
        };
        let (converted, problems) = rules::convert_route(store, caller, key, route, clusters);
        let route = Attaching {
            key,
            kind: RouteKind::Http,
            generation: entry.generation,
            hostnames: route.spec.hostnames.clone().unwrap_or_default(),
            parents: parent_refs!(route.spec.parent_refs),
            converted,
            problems,
        };
        attach_all(store, gateways, statuses, route);
    }
    for (key, entry) in store.of_kind(Kind::GrpcRoute) {
        let Object::GrpcRoute(route) = &entry.object else {
            continue;
        };
        let (converted, problems) = super::grpc::convert_route(store, caller, key, route, clusters);
        let route = Attaching {
            key,
            kind: RouteKind::Grpc,
            generation: entry.generation,
            hostnames: route.spec.hostnames.clone().unwrap_or_default(),
            parents: parent_refs!(route.spec.parent_refs),
            converted,
            problems,
        };
        attach_all(store, gateways, statuses, route);
    }
    for (key, entry) in store.of_kind(Kind::TlsRoute) {
        let Object::TlsRoute(route) = &entry.object else {
            continue;
        };
        let rules = route
            .spec
            .rules
            .iter()
            .map(|r| r.backend_refs.iter().map(|b| l4_backend!(b)).collect());
        let (converted, problems) = l4::convert_route(
            store,
            caller,
            RouteKind::Tls,
            key,
            &route.metadata,
            rules,
            clusters,
        );
        let route = Attaching {
            key,
            kind: RouteKind::Tls,
            generation: entry.generation,
            hostnames: route.spec.hostnames.clone(),
            parents: parent_refs!(route.spec.parent_refs),
            converted,
            problems,
        };
        attach_all(store, gateways, statuses, route);
    }
    for (key, entry) in store.of_kind(Kind::TcpRoute) {
        let Object::TcpRoute(route) = &entry.object else {
            continue;
        };
        let rules = route
            .spec
            .rules
            .iter()
            .map(|r| r.backend_refs.iter().map(|b| l4_backend!(b)).collect());
        let (converted, problems) = l4::convert_route(
            store,
            caller,
            RouteKind::Tcp,
            key,
            &route.metadata,
            rules,
            clusters,
        );
        let route = Attaching {
            key,
            kind: RouteKind::Tcp,
            generation: entry.generation,
            hostnames: Vec::new(),
            parents: parent_refs!(route.spec.parent_refs),
            converted,
            problems,
        };
        attach_all(store, gateways, statuses, route);
    }
}

fn attach_all(
    store: &Store,
    gateways: &mut [GatewayCtx],
    statuses: &mut BTreeMap<ObjKey, Value>,
    route: Attaching<'_>,
) {
    let key = route.key;
    let g = route.generation;
    let mut parents = Vec::new();
    for parent in &route.parents {
        let group = parent.group.as_deref().unwrap_or(GATEWAY_GROUP);
        let kind = parent.kind.as_deref().unwrap_or("Gateway");
        let parent_ns = parent.namespace.as_deref().unwrap_or(&key.namespace);
        // A Gateway parent means its own listeners; a ListenerSet parent,
        // that ListenerSet's listeners on whichever Gateway took them.
        let owner = match (group, kind) {
            (GATEWAY_GROUP, "Gateway") => None,
            (GATEWAY_GROUP, "ListenerSet") => Some(ObjKey {
                kind: Kind::ListenerSet,
                namespace: parent_ns.to_string(),
                name: parent.name.clone(),
            }),
            _ => continue,
        };
        let gw = gateways.iter_mut().find(|g| match &owner {
            None => g.key.namespace == parent_ns && g.key.name == parent.name,
            Some(ls) => g.listeners.iter().any(|l| l.owner.as_ref() == Some(ls)),
        });
        let Some(gw) = gw else {
            continue;
        };
        let mut accepted = Verdict::ok("Accepted");
        let unsupported = &route.problems.unsupported;
        match attach(store, &route, parent, gw, owner.as_ref()) {
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
                    program(listener, &route);
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
            "parentRef": parent_ref(parent, &key.namespace),
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

/// Adds the route's rules to the listener's virtual hosts.
fn program(listener: &mut ListenerCtx, route: &Attaching<'_>) {
    if !listener.usable() {
        return;
    }
    let key = route.key;
    for host in hostname::effective(&route.hostnames, listener.hostname.as_deref()) {
        let vhost = listener.vhosts.entry(host).or_default();
        for (i, rule) in &route.converted {
            for (j, (sort, m)) in rule.matches.iter().enumerate() {
                vhost.push((
                    sort.clone(),
                    Route {
                        name: format!("{}/{}/rule/{i}/match/{j}", key.namespace, key.name),
                        matches: m.clone(),
                        filters: rule.filters.clone(),
                        backends: rule.backends.clone(),
                        timeouts: rule.timeouts.clone(),
                        retry: rule.retry.clone(),
                    },
                ));
            }
        }
    }
}

/// The parentRef as the status spells it: group and kind always, namespace
/// when it is not the route's.
fn parent_ref(p: &ParentRef, route_ns: &str) -> Value {
    let mut m = Map::new();
    m.insert(
        "group".into(),
        json!(p.group.as_deref().unwrap_or(GATEWAY_GROUP)),
    );
    m.insert("kind".into(), json!(p.kind.as_deref().unwrap_or("Gateway")));
    if let Some(ns) = p.namespace.as_deref().filter(|ns| *ns != route_ns) {
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
