//! Cross-namespace references: a reference from one namespace to an object in
//! another is allowed only by a ReferenceGrant in the target namespace.

use crate::resources::{Kind, Object};
use crate::store::Store;

pub struct From<'a> {
    pub group: &'a str,
    pub kind: &'a str,
    pub namespace: &'a str,
}

pub struct To<'a> {
    pub group: &'a str,
    pub kind: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
}

/// Is a reference `from` → `to` allowed? Same-namespace references always are.
pub fn permitted(store: &Store, from: &From<'_>, to: &To<'_>) -> bool {
    if from.namespace == to.namespace {
        return true;
    }
    store.of_kind(Kind::ReferenceGrant).any(|(key, entry)| {
        let Object::ReferenceGrant(grant) = &entry.object else {
            return false;
        };
        key.namespace == to.namespace
            && grant.spec.from.iter().any(|f| {
                f.group == from.group && f.kind == from.kind && f.namespace == from.namespace
            })
            && grant.spec.to.iter().any(|t| {
                t.group == to.group
                    && t.kind == to.kind
                    && t.name
                        .as_deref()
                        .is_none_or(|n| n.is_empty() || n == to.name)
            })
    })
}
