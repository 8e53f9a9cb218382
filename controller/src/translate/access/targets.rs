//! Where SecurityPolicies attach, and their status. A policy targets a
//! Gateway, an HTTPRoute or a GRPCRoute of its namespace, optionally one
//! listener or one named rule (`sectionName`). The one that applies to a
//! route's rule is the most specific: the rule's own, the route's, the
//! listener's, the Gateway's; of two on the same target the older (then
//! the first by name) wins and the other is Conflicted.

use super::status::{self, Ancestors};
use super::{by_age, security};
use crate::policies::{SecurityPolicy, TargetRef};
use crate::resources::{Kind, ObjKey, Object, GATEWAY_GROUP};
use crate::store::Store;
use crate::translate::gateway::GatewayCtx;
use serde_json::Value;
use std::collections::BTreeMap;
use weft_api::Access;

/// A target: kind, namespace, name, sectionName.
type Target = (String, String, String, Option<String>);

/// The kinds a SecurityPolicy may target.
const KINDS: [&str; 3] = ["Gateway", "HTTPRoute", "GRPCRoute"];

fn target(ns: &str, t: &TargetRef) -> Option<Target> {
    (t.group == GATEWAY_GROUP && KINDS.contains(&t.kind.as_str())).then(|| {
        (
            t.kind.clone(),
            ns.into(),
            t.name.clone(),
            t.section_name.clone(),
        )
    })
}

/// Every SecurityPolicy checked once: the one that applies to each target,
/// and the Access each asks for.
pub struct Security<'s> {
    winners: BTreeMap<Target, &'s ObjKey>,
    compiled: BTreeMap<&'s ObjKey, Access>,
}

impl<'s> Security<'s> {
    pub fn new(store: &'s Store) -> Security<'s> {
        let mut winners = BTreeMap::new();
        let mut compiled = BTreeMap::new();
        for (key, policy) in policies(store) {
            compiled.insert(key, security::compile(store, key, policy));
            for t in policy.spec.target_refs.iter() {
                if let Some(t) = target(&key.namespace, t) {
                    // Oldest first: the first to claim a target keeps it.
                    winners.entry(t).or_insert(key);
                }
            }
        }
        Security { winners, compiled }
    }

    /// The policy that applies to rule `rule` (its name) of the HTTP-like
    /// `route`, served by `gateway` on the listener named `listener` (the
    /// Gateway's own; `None` for a ListenerSet's).
    pub fn for_route(
        &self,
        gateway: &ObjKey,
        listener: Option<&str>,
        route: &ObjKey,
        rule: Option<&str>,
    ) -> Option<(&'s ObjKey, &Access)> {
        let of_route = |section: Option<&str>| {
            let kind = route.kind.name().to_string();
            (
                kind,
                route.namespace.clone(),
                route.name.clone(),
                section.map(String::from),
            )
        };
        let of_gateway = |section: Option<&str>| {
            let (ns, name) = (gateway.namespace.clone(), gateway.name.clone());
            ("Gateway".to_string(), ns, name, section.map(String::from))
        };
        let candidates = [
            rule.map(|r| of_route(Some(r))),
            Some(of_route(None)),
            listener.map(|l| of_gateway(Some(l))),
            Some(of_gateway(None)),
        ];
        let key = candidates
            .into_iter()
            .flatten()
            .find_map(|t| self.winners.get(&t))?;
        Some((key, &self.compiled[key]))
    }

    /// The status of every SecurityPolicy whose target is a weft Gateway,
    /// a route attached to one, or not found.
    pub fn statuses(
        &self,
        store: &Store,
        gateways: &[GatewayCtx],
        out: &mut BTreeMap<ObjKey, Value>,
    ) {
        for (key, policy) in policies(store) {
            let ns = &key.namespace;
            let invalid = self.compiled[key].invalid.clone();
            let applied = |t: &Target| {
                if self.winners.get(t) != Some(&key) {
                    let message = "an older SecurityPolicy has the same target";
                    status::verdict(Some(("Conflicted", message.into())))
                } else {
                    status::verdict(invalid.clone().map(|m| ("Invalid", m)))
                }
            };
            let mut ancestors = Ancestors::default();
            for t in &policy.spec.target_refs {
                let not_found = |what: String| status::verdict(Some(("TargetNotFound", what)));
                let Some(target) = target(ns, t) else {
                    let message = format!(
                        "targetRef {}/{} is not supported: target a Gateway, HTTPRoute or GRPCRoute",
                        t.group, t.kind
                    );
                    ancestors.add(
                        status::target(ns, t),
                        status::verdict(Some(("Invalid", message))),
                    );
                    continue;
                };
                let section = t.section_name.as_deref();
                if t.kind == "Gateway" {
                    let gw = gateways
                        .iter()
                        .find(|g| g.key.namespace == *ns && g.key.name == t.name);
                    match gw {
                        // Another controller's Gateway: not ours to report on.
                        None if store.lookup(Kind::Gateway, ns, &t.name).is_some() => {}
                        None => ancestors.add(
                            status::target(ns, t),
                            not_found(format!("Gateway {} does not exist", t.name)),
                        ),
                        Some(gw) if section.is_some_and(|s| !own_listener(gw, s)) => {
                            let message = format!(
                                "Gateway {} has no listener named {}",
                                t.name,
                                section.unwrap_or_default()
                            );
                            ancestors.add(status::target(ns, t), not_found(message));
                        }
                        Some(gw) => {
                            ancestors.add(status::gateway(&gw.key, section), applied(&target))
                        }
                    }
                    continue;
                }
                let kind = if t.kind == "HTTPRoute" {
                    Kind::HttpRoute
                } else {
                    Kind::GrpcRoute
                };
                let route_key = ObjKey {
                    kind,
                    namespace: ns.clone(),
                    name: t.name.clone(),
                };
                let Some(entry) = store.get(&route_key) else {
                    let message = format!("{} {} does not exist", t.kind, t.name);
                    ancestors.add(status::target(ns, t), not_found(message));
                    continue;
                };
                if let Some(s) = section.filter(|s| !rule_names(&entry.spec).contains(s)) {
                    let message = format!("{} {} has no rule named {s}", t.kind, t.name);
                    ancestors.add(status::target(ns, t), not_found(message));
                    continue;
                }
                let pair = (ns.clone(), t.name.clone());
                for gw in gateways {
                    if gw.listeners.iter().any(|l| l.attached.contains(&pair)) {
                        ancestors.add(status::gateway(&gw.key, None), applied(&target));
                    }
                }
            }
            let generation = store.get(key).map_or(1, |e| e.generation);
            if let Some(s) = ancestors.status(generation) {
                out.insert(key.clone(), s);
            }
        }
    }
}

/// The SecurityPolicies, oldest first.
fn policies(store: &Store) -> Vec<(&ObjKey, &SecurityPolicy)> {
    let all = store
        .of_kind(Kind::SecurityPolicy)
        .filter_map(|(key, entry)| match &entry.object {
            Object::SecurityPolicy(p) => Some((key, p)),
            _ => None,
        });
    by_age(all, |p| &p.metadata)
}

fn own_listener(gw: &GatewayCtx, name: &str) -> bool {
    gw.listeners
        .iter()
        .any(|l| l.owner.is_none() && l.name == name)
}

/// The names of a route's rules, as every route kind spells them.
fn rule_names(doc: &Value) -> Vec<&str> {
    let rules = doc["spec"]["rules"].as_array().into_iter().flatten();
    rules.filter_map(|r| r["name"].as_str()).collect()
}
