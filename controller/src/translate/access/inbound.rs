//! Who may call a meshed workload's port: the AuthorizationPolicies on the
//! Services whose `targetPort` it is, with its namespace's default. A port
//! no policy covers in a namespace that allows all gets no access check.

use super::authz::{self, NamespaceDefault};
use super::by_age;
use crate::resources::{Kind, Object};
use crate::store::Store;
use crate::translate::backend;
use crate::workload::{Workload, WorkloadPort};
use weft_api::Access;

/// The access of `port` of Workload `w` in `ns`; `None`: anyone may call.
pub fn inbound(
    store: &Store,
    trust_domain: &str,
    ns: &str,
    w: &Workload,
    port: &WorkloadPort,
) -> Option<Access> {
    let services = store
        .of_kind(Kind::Service)
        .filter(|(key, _)| key.namespace == ns)
        .filter_map(|(key, entry)| match &entry.object {
            Object::Service(svc) if backend::selects(svc, w) => Some((key, svc)),
            _ => None,
        })
        .filter(|(_, svc)| {
            let mut ports = svc.spec.iter().flat_map(|s| s.ports.iter().flatten());
            ports.any(|sp| backend::targets(sp, port))
        });
    let mut targeted = Vec::new();
    let mut policies = Vec::new();
    for (key, _) in services {
        let on_service = authz::targeting(store, "Service", ns, &key.name);
        if !on_service.is_empty() {
            targeted.push(key.name.as_str());
        }
        for p in on_service {
            if !policies.iter().any(|(k, _)| *k == p.0) {
                policies.push(p);
            }
        }
    }
    let policies = by_age(policies, |p| &p.metadata);
    let default = authz::namespace_default(store, ns);
    if policies.is_empty() && default == NamespaceDefault::All {
        return None;
    }
    let name = if targeted.is_empty() {
        format!("Namespace/{ns}")
    } else {
        format!("AuthorizationPolicy/{ns}/{}", targeted.join(","))
    };
    Some(
        match authz::combine(&policies, trust_domain, name, default) {
            Ok(authorization) => Access {
                authorization: vec![authorization],
                ..Default::default()
            },
            Err(message) => Access {
                invalid: Some(message),
                ..Default::default()
            },
        },
    )
}
