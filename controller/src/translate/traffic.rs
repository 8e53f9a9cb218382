//! BackendTrafficPolicy: circuit breaking, active and passive health checks
//! and the balancing of a Service's endpoints, for every proxy (gateway or
//! sidecar) that sends to them; and faults and rate limits, for requests
//! to a Service or on an HTTPRoute or GRPCRoute (or one named rule of
//! one), where a route's policy overrides its backend Service's.
//!
//! A policy naming a port or rule (`sectionName`) wins over one on the
//! whole target; of two on the same target, the older (then the first by
//! name) wins and the other is Conflicted. A policy that cannot be built
//! (`traffic_check`) is not accepted (Invalid) and changes nothing. Its
//! status has one ancestor per target: the Service or route itself.

use super::access::status::{self, Ancestors};
use super::traffic_check::check;
pub use super::traffic_check::Traffic;
use crate::policies::TargetRef;
use crate::resources::{Kind, ObjKey, Object, GATEWAY_GROUP};
use crate::store::Store;
use crate::traffic_policy::BackendTrafficPolicy;
use serde_json::Value;
use std::collections::BTreeMap;
use weft_api::TrafficRules;

/// The BackendTrafficPolicies in namespace `ns`.
fn policies_in<'a, 'n>(
    store: &'a Store,
    ns: &'n str,
) -> impl Iterator<Item = (&'a ObjKey, &'a BackendTrafficPolicy)> + use<'a, 'n> {
    store
        .of_kind(Kind::BackendTrafficPolicy)
        .filter(move |(key, _)| key.namespace == ns)
        .filter_map(|(key, entry)| match &entry.object {
            Object::BackendTrafficPolicy(p) => Some((key, p)),
            _ => None,
        })
}

/// What a policy may target: a Service (port), or a route (rule).
struct Target<'a> {
    group: &'a str,
    kind: &'a str,
    name: &'a str,
    /// The port's or rule's name, if it has one.
    section: Option<&'a str>,
}

impl Target<'_> {
    fn named_by(&self, t: &TargetRef) -> bool {
        t.group == self.group && t.kind == self.kind && t.name == self.name
    }
}

/// The policies whose targets reach `target`: the one that applies first
/// (one naming the section, then the oldest, then by name).
fn targeting<'a>(
    store: &'a Store,
    ns: &str,
    target: &Target<'_>,
) -> Vec<(&'a ObjKey, &'a BackendTrafficPolicy)> {
    let mut out: Vec<_> = policies_in(store, ns)
        .filter_map(|(key, p)| {
            let t = p.spec.target_refs.iter().find(|t| {
                target.named_by(t)
                    && t.section_name
                        .as_deref()
                        .is_none_or(|s| target.section == Some(s))
            })?;
            Some((key, p, t.section_name.is_some()))
        })
        .collect();
    out.sort_by_key(|(key, p, specific)| {
        let created = p.metadata.creation_timestamp.as_ref().map(|t| t.0);
        (!specific, created, key.name.clone())
    });
    out.into_iter().map(|(k, p, _)| (k, p)).collect()
}

fn name_of(key: &ObjKey) -> String {
    format!("{}/{}", key.namespace, key.name)
}

/// What applies to the endpoints of Service `svc`'s port `port_name`:
/// `None` when no valid policy wins there. `store`: whether global rate
/// limits have somewhere to be counted.
pub fn for_port(
    store: &Store,
    ns: &str,
    svc: &str,
    port_name: Option<&str>,
    rate_store: bool,
) -> Option<Traffic> {
    let target = Target {
        group: "",
        kind: "Service",
        name: svc,
        section: port_name,
    };
    let (key, policy) = targeting(store, ns, &target).into_iter().next()?;
    check(&name_of(key), &policy.spec, rate_store).ok()
}

/// The faults and rate limits of the rule `rule_name` of route `route` (an
/// HTTPRoute or GRPCRoute, `kind`) in `ns`: `None` when no valid policy
/// targets it (its backends' then apply).
pub fn for_rule(
    store: &Store,
    ns: &str,
    kind: &str,
    route: &str,
    rule_name: Option<&str>,
    rate_store: bool,
) -> Option<TrafficRules> {
    let target = Target {
        group: GATEWAY_GROUP,
        kind,
        name: route,
        section: rule_name,
    };
    let (key, policy) = targeting(store, ns, &target).into_iter().next()?;
    let traffic = check(&name_of(key), &policy.spec, rate_store).ok()?;
    if !traffic.service_only.is_empty() {
        return None;
    }
    traffic.resilience.traffic
}

/// The status of every BackendTrafficPolicy: per target, Accepted, Invalid
/// (it cannot be built, or a route target is given what only a Service
/// takes), Conflicted (an older policy has the same target) or
/// TargetNotFound.
pub fn statuses(store: &Store, rate_store: bool, out: &mut BTreeMap<ObjKey, Value>) {
    for (key, entry) in store.of_kind(Kind::BackendTrafficPolicy) {
        let Object::BackendTrafficPolicy(policy) = &entry.object else {
            continue;
        };
        let ns = &key.namespace;
        let checked = check(&name_of(key), &policy.spec, rate_store);
        let mut ancestors = Ancestors::default();
        for t in &policy.spec.target_refs {
            let ancestor = status::target(ns, t);
            let route = match (t.group.as_str(), t.kind.as_str()) {
                ("", "Service") => false,
                (GATEWAY_GROUP, "HTTPRoute" | "GRPCRoute") => true,
                (group, kind) => {
                    let message = format!(
                        "targetRef {group}/{kind} is not supported: target a Service, an HTTPRoute or a GRPCRoute"
                    );
                    ancestors.add(ancestor, status::verdict(Some(("Invalid", message))));
                    continue;
                }
            };
            let invalid = match &checked {
                Err(why) => Some(why.clone()),
                Ok(traffic) if route && !traffic.service_only.is_empty() => Some(format!(
                    "{} apply to a Service's endpoints: target the Service",
                    traffic.service_only.join(", ")
                )),
                Ok(_) => None,
            };
            let problem = match route {
                false => service_problem(store, ns, t),
                true => route_problem(store, ns, t),
            };
            let failure = match (problem, invalid, older_on(store, ns, key, t)) {
                (Some(message), _, _) => Some(("TargetNotFound", message)),
                (None, Some(why), _) => Some(("Invalid", why)),
                (None, None, Some(older)) => Some((
                    "Conflicted",
                    format!("BackendTrafficPolicy {older} has the same target and is older"),
                )),
                (None, None, None) => None,
            };
            ancestors.add(ancestor, status::verdict(failure));
        }
        if let Some(s) = ancestors.status(entry.generation) {
            out.insert(key.clone(), s);
        }
    }
}

/// Why a Service target is not found: no such Service, or no such port.
fn service_problem(store: &Store, ns: &str, t: &TargetRef) -> Option<String> {
    let Some(Object::Service(svc)) = store.lookup(Kind::Service, ns, &t.name) else {
        return Some(format!("Service {} does not exist", t.name));
    };
    let section = t.section_name.as_deref()?;
    let ports = svc.spec.iter().flat_map(|s| s.ports.iter().flatten());
    let named = ports
        .filter_map(|p| p.name.as_deref())
        .any(|n| n == section);
    (!named).then(|| format!("Service {} has no port named {section}", t.name))
}

/// Why a route target is not found: no such route, or no such rule.
fn route_problem(store: &Store, ns: &str, t: &TargetRef) -> Option<String> {
    let kind = match t.kind.as_str() {
        "HTTPRoute" => Kind::HttpRoute,
        _ => Kind::GrpcRoute,
    };
    let Some(entry) = store.get(&ObjKey {
        kind,
        namespace: ns.to_string(),
        name: t.name.clone(),
    }) else {
        return Some(format!("{} {} does not exist", t.kind, t.name));
    };
    let section = t.section_name.as_deref()?;
    let rules = entry.spec["spec"]["rules"].as_array().into_iter().flatten();
    let named = rules
        .filter_map(|r| r["name"].as_str())
        .any(|n| n == section);
    (!named).then(|| format!("{} {} has no rule named {section}", t.kind, t.name))
}

/// The policy that wins over `key` on exactly target `t`, if any.
fn older_on(store: &Store, ns: &str, key: &ObjKey, t: &TargetRef) -> Option<String> {
    let same = |o: &TargetRef| {
        o.group == t.group
            && o.kind == t.kind
            && o.name == t.name
            && o.section_name == t.section_name
    };
    let mut rivals: Vec<_> = policies_in(store, ns)
        .filter(|(_, p)| p.spec.target_refs.iter().any(same))
        .map(|(k, p)| {
            let created = p.metadata.creation_timestamp.as_ref().map(|t| t.0);
            (created, k.name.clone())
        })
        .collect();
    rivals.sort();
    let (_, winner) = rivals.into_iter().next()?;
    (winner != key.name).then_some(winner)
}
