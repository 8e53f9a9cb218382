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

/// L4 backendRefs carry no filters.
const NO_FILTERS: &Option<Vec<()>> = &None;

/// Converts the rules of the L4 route `key`, each rule a list of
/// backendRefs with their weights.
pub fn convert_route<'a>(
    store: &Store,
    caller: Caller<'_>,
    kind: RouteKind,
    key: &ObjKey,
    metadata: &ObjectMeta,
    rules_: impl Iterator<Item = Vec<(BackendRef<'a>, Option<i32>)>>,
    clusters: &mut BTreeMap<String, Cluster>,
) -> (Vec<(usize, Rule)>, Problems) {
    let mut cx = Ctx::new(store, caller, kind, key, metadata, clusters);
    let mut problems = Problems::default();
    let mut converted = Vec::new();
    for (i, refs) in rules_.enumerate() {
        let refs = refs.into_iter().map(|(r, weight)| (r, weight, NO_FILTERS));
        let Some(backends) = rules::backends(&mut cx, refs, false, &mut problems) else {
            continue;
        };
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
            name: None,
            matches: vec![(key, HttpMatch::default())],
            filters: vec![],
            backends,
            timeouts: Timeouts::default(),
            retry: None,
            traffic: None,
            session: None,
        };
        converted.push((i, rule));
    }
    (converted, problems)
}
