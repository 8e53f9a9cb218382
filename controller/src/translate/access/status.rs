//! `status.ancestors` of weft's access policies (GEP-713): one entry per
//! ancestor (a Gateway, a Service, or the target itself when it is not
//! found) with one condition, Accepted. Two targets of one policy under
//! the same ancestor share its entry, and the first failure shows.

use super::super::conditions::Verdict;
use crate::policies::TargetRef;
use crate::resources::{ObjKey, GATEWAY_GROUP};
use crate::CONTROLLER_NAME;
use serde_json::{json, Value};

/// The ancestors of one policy, in the order they were found.
#[derive(Default)]
pub struct Ancestors(Vec<(Value, Verdict)>);

impl Ancestors {
    pub fn add(&mut self, ancestor: Value, verdict: Verdict) {
        match self.0.iter_mut().find(|(a, _)| *a == ancestor) {
            Some((_, seen)) => {
                if let Some((reason, message)) = verdict.failure {
                    seen.fail(&reason, message);
                }
            }
            None => self.0.push((ancestor, verdict)),
        }
    }

    /// The policy's status; `None` when it has no ancestor to report to.
    pub fn status(self, generation: i64) -> Option<Value> {
        if self.0.is_empty() {
            return None;
        }
        let list: Vec<Value> = self
            .0
            .into_iter()
            .map(|(ancestor, verdict)| {
                json!({
                    "ancestorRef": ancestor,
                    "controllerName": CONTROLLER_NAME,
                    "conditions": [verdict.condition("Accepted", "Accepted", generation)],
                })
            })
            .collect();
        Some(json!({ "ancestors": list }))
    }
}

/// A Gateway as an ancestor, with the listener the target named.
pub fn gateway(gw: &ObjKey, section: Option<&str>) -> Value {
    let mut out = json!({
        "group": GATEWAY_GROUP,
        "kind": "Gateway",
        "namespace": gw.namespace,
        "name": gw.name,
    });
    if let Some(s) = section {
        out["sectionName"] = json!(s);
    }
    out
}

/// A target as its own ancestor (a Service, or a target not found): as
/// the policy in `ns` wrote it, with the namespace filled in.
pub fn target(ns: &str, t: &TargetRef) -> Value {
    let mut out = json!({
        "group": t.group,
        "kind": t.kind,
        "namespace": ns,
        "name": t.name,
    });
    if let Some(s) = &t.section_name {
        out["sectionName"] = json!(s);
    }
    out
}

/// Accepted, or not for `reason`.
pub fn verdict(failure: Option<(&str, String)>) -> Verdict {
    let mut v = Verdict::ok("Accepted");
    if let Some((reason, message)) = failure {
        v.fail(reason, message);
    }
    v
}
