//! ListenerSets: listeners attached to a Gateway from other resources,
//! possibly in other namespaces. A Gateway takes none unless its
//! `spec.allowedListeners` allows the ListenerSet's namespace; the listeners
//! of those it takes come after its own, oldest ListenerSet first, and an
//! earlier listener wins a conflict. Routes attach to them with a
//! ListenerSet parentRef. Each ListenerSet gets a status of its own.

use super::conditions::Verdict;
use super::gateway::{listener, listener_status, GatewayCtx, ListenerCtx};
use super::selector::selector_of;
use crate::resources::{Kind, ObjKey, Object, GATEWAY_GROUP};
use crate::store::Store;
use gateway_api::gateways::{Gateway, GatewayAllowedListenersNamespacesFrom as From};
use gateway_api::listenersets::ListenerSet;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// A ListenerSet that names a Gateway its parent, and whether the Gateway
/// takes it: `Err` holds the reason and message when it does not.
pub struct Attached {
    pub key: ObjKey,
    pub generation: i64,
    pub allowed: Result<(), (&'static str, String)>,
}

impl Attached {
    /// Allowed, with at least one listener that serves.
    pub fn accepted(&self, gw: &GatewayCtx) -> bool {
        self.allowed.is_ok() && self.own(gw).any(|l| l.usable())
    }

    fn own<'a>(&'a self, gw: &'a GatewayCtx) -> impl Iterator<Item = &'a ListenerCtx> + 'a {
        gw.listeners
            .iter()
            .filter(|l| l.owner.as_ref() == Some(&self.key))
    }
}

/// Whether `gw` allows ListenerSets from `ns`.
fn allowed(store: &Store, gw_key: &ObjKey, gw: &Gateway, ns: &str) -> bool {
    let namespaces = gw
        .spec
        .allowed_listeners
        .as_ref()
        .and_then(|a| a.namespaces.as_ref());
    match namespaces.and_then(|n| n.from.as_ref()) {
        None | Some(From::None) => false,
        Some(From::Same) => ns == gw_key.namespace,
        Some(From::All) => true,
        Some(From::Selector) => {
            let selector = selector_of!(namespaces.and_then(|n| n.selector.as_ref()));
            selector
                .matches(&store.namespace_labels(ns))
                .unwrap_or(false)
        }
    }
}

/// Appends to `listeners` those of every ListenerSet `gw` takes, oldest
/// first, and returns every ListenerSet that names `gw` its parent.
pub fn merge(
    store: &Store,
    gw_key: &ObjKey,
    gw: &Gateway,
    listeners: &mut Vec<ListenerCtx>,
) -> Vec<Attached> {
    let mut sets: Vec<(&ObjKey, &ListenerSet, i64)> = store
        .of_kind(Kind::ListenerSet)
        .filter_map(|(key, entry)| match &entry.object {
            Object::ListenerSet(ls) => Some((key, ls, entry.generation)),
            _ => None,
        })
        .filter(|(key, ls, _)| {
            let p = &ls.spec.parent_ref;
            p.group.as_deref().unwrap_or(GATEWAY_GROUP) == GATEWAY_GROUP
                && p.kind.as_deref().unwrap_or("Gateway") == "Gateway"
                && p.namespace.as_deref().unwrap_or(&key.namespace) == gw_key.namespace
                && p.name == gw_key.name
        })
        .collect();
    sets.sort_by_key(|(key, ls, _)| {
        let created = ls.metadata.creation_timestamp.as_ref().map(|t| t.0);
        (created, key.namespace.clone(), key.name.clone())
    });
    let mut out = Vec::new();
    for (key, ls, generation) in sets {
        let ok = allowed(store, gw_key, gw, &key.namespace);
        if ok {
            for l in &ls.spec.listeners {
                // The same fields as a Gateway's listener.
                let as_gateway = serde_json::to_value(l)
                    .ok()
                    .and_then(|v| serde_json::from_value(v).ok());
                if let Some(as_gateway) = as_gateway {
                    let tls = gw.spec.tls.as_ref();
                    listeners.push(listener(
                        store,
                        &gw_key.namespace,
                        Some(key),
                        tls,
                        &as_gateway,
                    ));
                }
            }
        }
        out.push(Attached {
            key: key.clone(),
            generation,
            allowed: if ok {
                Ok(())
            } else {
                Err((
                    "NotAllowed",
                    format!(
                        "Gateway {} does not allow ListenerSets from namespace {}",
                        gw_key.name, key.namespace
                    ),
                ))
            },
        });
    }
    out
}

/// The status of each ListenerSet of `gw`: Accepted and Programmed, and
/// its listeners as a Gateway reports its own.
pub fn statuses(gw: &GatewayCtx, gateway_accepted: bool, out: &mut BTreeMap<ObjKey, Value>) {
    for ls in &gw.listener_sets {
        let g = ls.generation;
        let mut accepted = Verdict::ok("Accepted");
        let mut programmed = Verdict::ok("Programmed");
        let listeners: Vec<Value> = ls.own(gw).map(|l| listener_status(l, g)).collect();
        match &ls.allowed {
            Err((reason, message)) => {
                accepted.fail(reason, message.clone());
                programmed.fail(reason, message.clone());
            }
            Ok(()) if !gateway_accepted => {
                accepted.fail("ParentNotAccepted", "the parent Gateway is not accepted");
                programmed.fail("ParentNotProgrammed", "the parent Gateway is not accepted");
            }
            Ok(()) if !ls.own(gw).any(|l| l.usable()) => {
                accepted.fail("ListenersNotValid", "no listener is valid");
                programmed.fail("ListenersNotValid", "no listener is valid");
            }
            Ok(()) => {}
        }
        let mut status = json!({
            "conditions": [
                accepted.condition("Accepted", "Accepted", g),
                programmed.condition("Programmed", "Programmed", g),
            ],
        });
        if ls.allowed.is_ok() {
            status["listeners"] = json!(listeners);
        }
        out.insert(ls.key.clone(), status);
    }
}
