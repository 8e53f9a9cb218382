//! Access policies: weft's `SecurityPolicy` (JWT and authorization at
//! gateways) and `AuthorizationPolicy` (the mesh's) to the IR's `Access`.
//!
//! A gateway route's Access is named in `GatewayConfig::access` after what
//! it is made of: the SecurityPolicy that applies to the route's rule
//! (`SecurityPolicy/<ns>/<name>`), then the AuthorizationPolicies on the
//! route's Gateway (`AuthorizationPolicy/<ns>/<gateway>`), joined by `+`.
//! A sidecar's inbound port carries its Access itself (`inbound`). Any
//! part that cannot be built makes the whole Access refuse everything.

mod authz;
mod authz_status;
pub(super) mod checks;
mod inbound;
mod jwt;
mod security;
pub(super) mod status;
mod targets;

pub use inbound::inbound;

use super::backend::RouteKind;
use super::gateway::{GatewayCtx, ListenerCtx};
use crate::resources::{Kind, ObjKey};
use crate::store::Store;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;
use std::collections::BTreeMap;
use weft_api::{Access, Authorization};

/// Objects oldest first (creation time, then namespace and name): which
/// of two policies wins, and the order their rules are tried in.
fn by_age<'a, T>(
    items: impl IntoIterator<Item = (&'a ObjKey, &'a T)>,
    meta: impl Fn(&T) -> &ObjectMeta,
) -> Vec<(&'a ObjKey, &'a T)> {
    let mut out: Vec<_> = items.into_iter().collect();
    out.sort_by_key(|(key, item)| {
        let created = meta(item).creation_timestamp.as_ref().map(|t| t.0);
        (created, key.namespace.clone(), key.name.clone())
    });
    out
}

/// Finds the Access of each gateway route, and keeps every Access it
/// named.
pub struct Resolver<'s> {
    store: &'s Store,
    trust_domain: &'s str,
    security: targets::Security<'s>,
    /// The AuthorizationPolicies on each Gateway some policy targets, as
    /// one Authorization, or why one of them is invalid.
    gateways: BTreeMap<ObjKey, Result<Authorization, String>>,
    /// Every Access a route names, by name.
    pub accesses: BTreeMap<String, Access>,
}

impl<'s> Resolver<'s> {
    pub fn new(store: &'s Store, trust_domain: &'s str) -> Resolver<'s> {
        let mut gateways = BTreeMap::new();
        for (key, entry) in store.of_kind(Kind::AuthorizationPolicy) {
            let crate::resources::Object::AuthorizationPolicy(p) = &entry.object else {
                continue;
            };
            let refs = p.spec.target_refs.iter();
            for t in
                refs.filter(|t| t.group == crate::resources::GATEWAY_GROUP && t.kind == "Gateway")
            {
                let gw = ObjKey {
                    kind: Kind::Gateway,
                    namespace: key.namespace.clone(),
                    name: t.name.clone(),
                };
                if gateways.contains_key(&gw) {
                    continue;
                }
                let policies = authz::targeting(store, "Gateway", &gw.namespace, &gw.name);
                let name = format!("AuthorizationPolicy/{}/{}", gw.namespace, gw.name);
                // The namespace's default is for workloads, not Gateways.
                let all = authz::NamespaceDefault::All;
                gateways.insert(gw, authz::combine(&policies, trust_domain, name, all));
            }
        }
        Resolver {
            store,
            trust_domain,
            security: targets::Security::new(store),
            gateways,
            accesses: BTreeMap::new(),
        }
    }

    /// The name of the Access of rule `rule` (its name) of `route`, of
    /// `kind`, served by `gateway` on `listener`; `None` when nothing
    /// guards it.
    pub fn for_route(
        &mut self,
        gateway: &ObjKey,
        listener: &ListenerCtx,
        route: &ObjKey,
        kind: RouteKind,
        rule: Option<&str>,
    ) -> Option<String> {
        let mut names = Vec::new();
        let mut access = Access::default();
        // SecurityPolicies guard HTTP requests only.
        if matches!(kind, RouteKind::Http | RouteKind::Grpc) {
            let own = listener.owner.is_none().then_some(listener.name.as_str());
            if let Some((key, a)) = self.security.for_route(gateway, own, route, rule) {
                names.push(format!("SecurityPolicy/{}/{}", key.namespace, key.name));
                access = a.clone();
            }
        }
        if let Some(on_gateway) = self.gateways.get(gateway) {
            names.push(format!(
                "AuthorizationPolicy/{}/{}",
                gateway.namespace, gateway.name
            ));
            match on_gateway {
                Ok(a) => access.authorization.push(a.clone()),
                Err(message) => {
                    access.invalid.get_or_insert_with(|| message.clone());
                }
            }
        }
        if names.is_empty() {
            return None;
        }
        if let Some(message) = access.invalid {
            access = Access {
                invalid: Some(message),
                ..Default::default()
            };
        }
        let name = names.join("+");
        self.accesses.entry(name.clone()).or_insert(access);
        Some(name)
    }

    /// The name of the Access of the AuthorizationPolicies on `gateway`
    /// as a whole (an east-west gateway's tunnels); `None` when none
    /// targets it.
    pub fn for_gateway(&mut self, gateway: &ObjKey) -> Option<(String, Access)> {
        let on_gateway = self.gateways.get(gateway)?;
        let name = format!("AuthorizationPolicy/{}/{}", gateway.namespace, gateway.name);
        let access = match on_gateway {
            Ok(a) => Access {
                authorization: vec![a.clone()],
                ..Default::default()
            },
            Err(message) => Access {
                invalid: Some(message.clone()),
                ..Default::default()
            },
        };
        self.accesses.insert(name.clone(), access.clone());
        Some((name, access))
    }

    /// The status of every SecurityPolicy and AuthorizationPolicy, once
    /// routes have attached to `gateways`.
    pub fn statuses(&self, gateways: &[GatewayCtx], out: &mut BTreeMap<ObjKey, Value>) {
        self.security.statuses(self.store, gateways, out);
        authz_status::statuses(self.store, gateways, self.trust_domain, out);
    }
}
