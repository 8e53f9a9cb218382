//! Statuses as the Kubernetes API shows them: the translator's conditions
//! plus `lastTransitionTime`, which changes only when a condition's status
//! does; and the `/status` items.

use crate::resources::ObjKey;
use crate::store::Store;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};

/// Remembers when each condition last changed status.
#[derive(Default)]
pub struct TransitionClock {
    /// (object, path of the condition) → (status, time).
    seen: HashMap<(ObjKey, String), (String, String)>,
}

impl TransitionClock {
    /// Returns `status` with `lastTransitionTime` on every condition; `now` is
    /// used for conditions that are new or changed status.
    pub fn stamp(&mut self, key: &ObjKey, mut status: Value, now: &str) -> Value {
        self.walk(key, &mut status, String::new(), now);
        status
    }

    fn walk(&mut self, key: &ObjKey, v: &mut Value, path: String, now: &str) {
        match v {
            Value::Object(map) => {
                if let (Some(Value::String(type_)), Some(Value::String(status))) =
                    (map.get("type"), map.get("status"))
                {
                    let id = (key.clone(), format!("{path}/{type_}"));
                    let entry = self
                        .seen
                        .entry(id)
                        .or_insert_with(|| (status.clone(), now.to_string()));
                    if &entry.0 != status {
                        *entry = (status.clone(), now.to_string());
                    }
                    map.insert("lastTransitionTime".into(), json!(entry.1));
                    return;
                }
                let name = map.get("name").and_then(Value::as_str).map(str::to_string);
                for (k, child) in map.iter_mut() {
                    let p = match &name {
                        Some(n) => format!("{path}/{n}/{k}"),
                        None => format!("{path}/{k}"),
                    };
                    self.walk(key, child, p, now);
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    self.walk(key, item, format!("{path}/{i}"), now);
                }
            }
            _ => {}
        }
    }
}

/// Every object of the store as `/status` lists it.
pub fn items(
    store: &Store,
    statuses: &BTreeMap<ObjKey, Value>,
    clock: &mut TransitionClock,
    now: &str,
) -> Vec<Value> {
    store
        .entries()
        .map(|(key, entry)| {
            let mut metadata = Map::new();
            metadata.insert("name".into(), json!(key.name));
            if !key.namespace.is_empty() {
                metadata.insert("namespace".into(), json!(key.namespace));
            }
            metadata.insert("generation".into(), json!(entry.generation));
            let meta = entry.object.metadata();
            if let Some(created) = &meta.creation_timestamp {
                metadata.insert("creationTimestamp".into(), json!(created.0.to_string()));
            }
            if let Some(uid) = &meta.uid {
                metadata.insert("uid".into(), json!(uid));
            }
            if let Some(labels) = &entry.object.metadata().labels {
                metadata.insert("labels".into(), json!(labels));
            }
            let mut item = Map::new();
            item.insert("apiVersion".into(), json!(entry.api_version));
            item.insert("kind".into(), json!(key.kind.name()));
            item.insert("metadata".into(), Value::Object(metadata));
            if let Some(status) = statuses.get(key) {
                item.insert("status".into(), clock.stamp(key, status.clone(), now));
            }
            Value::Object(item)
        })
        .collect()
}

/// The conditions of a status that say something is wrong, as
/// "`<where>` `<type>` `<reason>`: `<message>`" lines: Accepted, Programmed or
/// ResolvedRefs False, Conflicted or PartiallyInvalid True.
pub fn problems(status: &Value) -> Vec<String> {
    let mut out = Vec::new();
    collect_problems(status, "", &mut out);
    out
}

fn collect_problems(v: &Value, at: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            let text = |k: &str| map.get(k).and_then(Value::as_str).unwrap_or("");
            let bad = matches!(
                (text("type"), text("status")),
                (
                    "Accepted" | "Programmed" | "ResolvedRefs" | "weft.dev/Limits",
                    "False"
                ) | ("Conflicted" | "PartiallyInvalid", "True")
            );
            if bad {
                out.push(format!(
                    "{at}{} {}: {}",
                    text("type"),
                    text("reason"),
                    text("message")
                ));
                return;
            }
            let here = match (
                map.get("name").and_then(Value::as_str),
                map.get("parentRef"),
            ) {
                (Some(name), _) => format!("listener {name}: "),
                (None, Some(p)) => format!(
                    "parent {}: ",
                    p.get("name").and_then(Value::as_str).unwrap_or("")
                ),
                _ => at.to_string(),
            };
            map.values().for_each(|c| collect_problems(c, &here, out));
        }
        Value::Array(items) => items.iter().for_each(|c| collect_problems(c, at, out)),
        _ => {}
    }
}

/// The current time as Kubernetes writes it (RFC 3339, seconds).
pub fn now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    k8s_openapi::jiff::Timestamp::from_second(secs as i64)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Kind;

    #[test]
    fn problems_name_where_they_are() {
        let s = json!({"listeners": [{"name": "https", "conditions": [
            {"type": "ResolvedRefs", "status": "False", "reason": "InvalidCertificateRef", "message": "no Secret"},
            {"type": "Conflicted", "status": "False", "reason": "NoConflicts", "message": ""}]}]});
        assert_eq!(
            problems(&s),
            vec!["listener https: ResolvedRefs InvalidCertificateRef: no Secret"]
        );
    }

    #[test]
    fn transition_time_moves_only_with_status() {
        let key = ObjKey {
            kind: Kind::Gateway,
            namespace: "d".into(),
            name: "g".into(),
        };
        let mut clock = TransitionClock::default();
        let s = |ok: &str| json!({"conditions": [{"type": "Accepted", "status": ok}]});
        let t = |v: &Value| {
            v["conditions"][0]["lastTransitionTime"]
                .as_str()
                .unwrap()
                .to_string()
        };
        assert_eq!(t(&clock.stamp(&key, s("True"), "t1")), "t1");
        assert_eq!(t(&clock.stamp(&key, s("True"), "t2")), "t1");
        assert_eq!(t(&clock.stamp(&key, s("False"), "t3")), "t3");
    }
}
