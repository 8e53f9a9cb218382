//! The status of XBackends (GEP-4894): one ancestor per Gateway whose
//! attached routes refer to the XBackend, `Accepted` when every kind of
//! route that does can use it, else False with why (the route's own
//! `ResolvedRefs` says so too).

use super::backend::{RouteKind, Trust};
use super::conditions::Verdict;
use super::gateway::GatewayCtx;
use crate::resources::{Kind, ObjKey, Object};
use crate::store::Store;
use crate::CONTROLLER_NAME;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// At most this many ancestors in one status, as the CRD allows.
const MAX_ANCESTORS: usize = 32;

/// Adds the status of every XBackend an attached route refers to.
pub fn statuses(
    store: &Store,
    gateways: &[GatewayCtx],
    trust: Trust<'_>,
    out: &mut BTreeMap<ObjKey, Value>,
) {
    // XBackend → Gateway → the route kinds that use it there.
    let mut uses: BTreeMap<ObjKey, BTreeMap<ObjKey, Vec<RouteKind>>> = BTreeMap::new();
    for gw in gateways {
        for (route_ns, route_kind, r) in super::backend::attached_refs(store, gw) {
            let ours = r["group"] == crate::egress::X_GROUP && r["kind"] == "XBackend";
            let Some(name) = r["name"].as_str().filter(|_| ours) else {
                continue;
            };
            let x = ObjKey {
                kind: Kind::XBackend,
                namespace: r["namespace"].as_str().unwrap_or(route_ns).to_string(),
                name: name.to_string(),
            };
            let kinds = uses
                .entry(x)
                .or_default()
                .entry(gw.key.clone())
                .or_default();
            if !kinds.contains(&route_kind) {
                kinds.push(route_kind);
            }
        }
    }
    for (x, by_gateway) in uses {
        let Some(Object::XBackend(backend)) = store.lookup(Kind::XBackend, &x.namespace, &x.name)
        else {
            continue;
        };
        let generation = backend.metadata.generation.unwrap_or(0);
        let ancestors: Vec<Value> = by_gateway
            .iter()
            .take(MAX_ANCESTORS)
            .map(|(gw, kinds)| {
                let mut accepted = Verdict::ok("Accepted");
                for kind in kinds {
                    let checked = super::egress::check(store, &x.namespace, backend, *kind, trust);
                    if let Err(message) = checked {
                        accepted.fail("Invalid", message);
                    }
                }
                json!({
                    "ancestorRef": {
                        "group": crate::resources::GATEWAY_GROUP,
                        "kind": "Gateway",
                        "namespace": gw.namespace,
                        "name": gw.name,
                    },
                    "controllerName": CONTROLLER_NAME,
                    "conditions": [accepted.condition("Accepted", "Accepted", generation)],
                })
            })
            .collect();
        out.insert(x, json!({ "ancestors": ancestors }));
    }
}
