//! The status of every AuthorizationPolicy: one ancestor per target — the
//! Service itself, or the weft Gateway — Accepted, Invalid (the policy
//! cannot be built, so its targets refuse everything) or TargetNotFound.
//! A Gateway of another controller gets no report.

use super::authz;
use super::status::{self, Ancestors};
use crate::resources::{Kind, ObjKey, Object, GATEWAY_GROUP};
use crate::store::Store;
use crate::translate::gateway::GatewayCtx;
use serde_json::Value;
use std::collections::BTreeMap;

pub fn statuses(
    store: &Store,
    gateways: &[GatewayCtx],
    trust_domain: &str,
    out: &mut BTreeMap<ObjKey, Value>,
) {
    for (key, entry) in store.of_kind(Kind::AuthorizationPolicy) {
        let Object::AuthorizationPolicy(policy) = &entry.object else {
            continue;
        };
        let ns = &key.namespace;
        let invalid = authz::compile(key, policy, trust_domain).err();
        let applied = || status::verdict(invalid.clone().map(|m| ("Invalid", m)));
        let not_found = |what: String| status::verdict(Some(("TargetNotFound", what)));
        let mut ancestors = Ancestors::default();
        for t in &policy.spec.target_refs {
            let ancestor = status::target(ns, t);
            match (t.group.as_str(), t.kind.as_str()) {
                ("", "Service") => {
                    if store.lookup(Kind::Service, ns, &t.name).is_some() {
                        ancestors.add(ancestor, applied());
                    } else {
                        let message = format!("Service {} does not exist", t.name);
                        ancestors.add(ancestor, not_found(message));
                    }
                }
                (GATEWAY_GROUP, "Gateway") => {
                    let ours = gateways
                        .iter()
                        .find(|g| g.key.namespace == *ns && g.key.name == t.name);
                    if let Some(gw) = ours {
                        ancestors.add(status::gateway(&gw.key, None), applied());
                    } else if store.lookup(Kind::Gateway, ns, &t.name).is_none() {
                        let message = format!("Gateway {} does not exist", t.name);
                        ancestors.add(ancestor, not_found(message));
                    }
                }
                (group, kind) => {
                    let message = format!(
                        "targetRef {group}/{kind} is not supported: target a Service or a Gateway"
                    );
                    ancestors.add(ancestor, status::verdict(Some(("Invalid", message))));
                }
            }
        }
        if let Some(s) = ancestors.status(entry.generation) {
            out.insert(key.clone(), s);
        }
    }
}
