//! TLSRoute and TCPRoute rules to IR routes: a rule is its weighted
//! backends, and takes whole connections. For TCP the oldest route on a
//! listener takes them all (precedence orders routes by age, then name).

use super::backend::{BackendRef, Caller, RouteKind};
use super::rules::{self, Ctx, Problems, Rule};
use crate::resources::ObjKey;
use crate::store::Store;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::cmp::Reverse;
use std::collections::BTreeMap;
use weft_api::{Cluster, HttpMatch, Timeouts};

/// A backendRef of an L4 route, as the generated types spell it.
pub struct L4Backend<'a> {
    pub r: BackendRef<'a>,
    pub weight: Option<i32>,
}

/// Converts the rules of the L4 route `key` (each rule a list of backends).
pub fn convert_route<'a>(
    store: &Store,
    caller: Caller<'_>,
    kind: RouteKind,
    key: &ObjKey,
    metadata: &ObjectMeta,
    rules_: impl Iterator<Item = Vec<L4Backend<'a>>>,
    clusters: &mut BTreeMap<String, Cluster>,
) -> (Vec<(usize, Rule)>, Problems) {
    let mut cx = Ctx::new(store, caller, kind, key, metadata, clusters);
    let mut problems = Problems::default();
    let mut converted = Vec::new();
    'rules: for (i, refs) in rules_.enumerate() {
        let mut backends = Vec::new();
        for b in refs {
            let none: Option<Vec<()>> = None;
            match rules::weighted(&mut cx, &b.r, b.weight, &none, false, &mut problems) {
                Ok(Some(backend)) => backends.push(backend),
                Ok(None) => {}
                Err(e) => {
                    problems.unsupported.get_or_insert(e);
                    continue 'rules;
                }
            }
        }
        let key = (
            0,
            Reverse(0),
            Reverse(false),
            Reverse(0),
            Reverse(0),
            cx.order.clone(),
            i,
            0,
        );
        let rule = Rule {
            matches: vec![(key, HttpMatch::default())],
            filters: vec![],
            backends,
            timeouts: Timeouts::default(),
            retry: None,
        };
        converted.push((i, rule));
    }
    (converted, problems)
}
