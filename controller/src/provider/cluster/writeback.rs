//! Status write-back: the leader writes each status the translation gives
//! to the object's status subresource by server-side apply (field manager
//! `weft`), only when it differs from what the object shows. Lists shared
//! with other controllers (a route's `parents`, a policy's `ancestors`) keep
//! the other controllers' entries, and the write carries the
//! resourceVersion it was computed from, so a write that raced another one
//! fails with a conflict and is done again from the newer object. Writes
//! are paced by a token bucket, and an API server that answers 429 is left
//! alone for a while.

use super::Cluster;
use crate::resources::ObjKey;
use crate::store::Store;
use crate::CONTROLLER_NAME;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The field manager of every status write.
pub const FIELD_MANAGER: &str = "weft";
/// Writes per second, and the burst allowed.
const QPS: f64 = 20.0;
const BURST: f64 = 40.0;
/// How often everything is compared again, to retry failed writes.
const RESYNC: Duration = Duration::from_secs(5);
/// The pause after a 429 (Too Many Requests).
const THROTTLED: Duration = Duration::from_secs(2);

/// What the writer works from: a store and the statuses translated from it.
pub type Statuses = Arc<(Store, BTreeMap<ObjKey, Value>)>;

pub struct Writer {
    cluster: Cluster,
    /// Tokens of the bucket, and when it was last filled.
    tokens: f64,
    filled: Instant,
    /// What was written last per object, and the resourceVersion it was
    /// written over: not written again until the object changes.
    written: HashMap<ObjKey, (String, Value)>,
}

impl Writer {
    pub fn new(cluster: Cluster) -> Writer {
        Writer {
            cluster,
            tokens: BURST,
            filled: Instant::now(),
            written: HashMap::new(),
        }
    }

    /// Writes while this replica leads, from the latest `statuses`.
    pub async fn run(
        mut self,
        mut statuses: watch::Receiver<Option<Statuses>>,
        mut leader: watch::Receiver<bool>,
    ) {
        loop {
            let leading = *leader.borrow_and_update();
            let latest = statuses.borrow_and_update().clone();
            if leading {
                if let Some(latest) = latest {
                    self.sync(&latest.0, &latest.1).await;
                }
            } else {
                self.written.clear();
            }
            tokio::select! {
                r = statuses.changed() => if r.is_err() { return },
                r = leader.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(RESYNC) => {}
            }
        }
    }

    async fn sync(&mut self, store: &Store, statuses: &BTreeMap<ObjKey, Value>) {
        let now = crate::status::now();
        for (key, status) in statuses {
            let Some(entry) = store.get(key) else {
                continue;
            };
            // Only a kind the API serves as itself: a Workload made from a
            // pod has no status of weft's to write into the pod.
            let Some(ar) = self
                .cluster
                .resource(key.kind)
                .filter(|ar| ar.kind == key.kind.name())
            else {
                continue;
            };
            let live = &entry.doc.status;
            let mut desired = with_others(status.clone(), live);
            carry_times(&mut desired, live, &now);
            if shows(live, &desired) {
                continue;
            }
            let meta = entry.object.metadata();
            let rv = meta.resource_version.clone().unwrap_or_default();
            if self.written.get(key) == Some(&(rv.clone(), desired.clone())) {
                // Written; the watch has not brought the new version yet.
                continue;
            }
            let mut metadata = Map::new();
            metadata.insert("name".into(), json!(key.name));
            if !key.namespace.is_empty() {
                metadata.insert("namespace".into(), json!(key.namespace));
            }
            metadata.insert("resourceVersion".into(), json!(rv));
            let body = json!({
                "apiVersion": ar.api_version,
                "kind": ar.kind,
                "metadata": metadata,
                "status": desired,
            });
            self.take_token().await;
            let api: Api<DynamicObject> = if key.namespace.is_empty() {
                Api::all_with(self.cluster.client().clone(), &ar)
            } else {
                Api::namespaced_with(self.cluster.client().clone(), &key.namespace, &ar)
            };
            let params = PatchParams::apply(FIELD_MANAGER).force();
            match api
                .patch_status(&key.name, &params, &Patch::Apply(&body))
                .await
            {
                Ok(_) => {
                    tracing::debug!(object = %key, "status written");
                    self.written.insert(key.clone(), (rv, desired));
                }
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    // Changed since it was read: done again from the newer
                    // object, which the watch brings.
                    tracing::debug!(object = %key, "status conflict: {}", s.message);
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(kube::Error::Api(s)) if s.code == 429 => {
                    tracing::warn!("the API server is throttling status writes; pausing");
                    tokio::time::sleep(THROTTLED).await;
                    return;
                }
                Err(e) => tracing::warn!(object = %key, "writing status: {e}"),
            }
        }
    }

    async fn take_token(&mut self) {
        loop {
            let now = Instant::now();
            let elapsed = now.duration_since(self.filled).as_secs_f64();
            self.tokens = (self.tokens + elapsed * QPS).min(BURST);
            self.filled = now;
            if self.tokens >= 1.0 {
                self.tokens -= 1.0;
                return;
            }
            let wait = (1.0 - self.tokens) / QPS;
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
        }
    }
}

/// The lists other controllers write into too.
const SHARED: &[&str] = &["parents", "ancestors"];

/// `status` with the entries of other controllers kept from `live`, after
/// weft's own.
fn with_others(mut status: Value, live: &Value) -> Value {
    for field in SHARED {
        let Some(Value::Array(theirs)) = live.get(field) else {
            continue;
        };
        let others = theirs
            .iter()
            .filter(|e| e.get("controllerName").and_then(Value::as_str) != Some(CONTROLLER_NAME));
        if let Some(Value::Array(ours)) = status.get_mut(field) {
            ours.extend(others.cloned());
        }
    }
    status
}

/// Gives every condition of `desired` the `lastTransitionTime` of the same
/// condition in `live` when its status is unchanged, else `now`.
fn carry_times(desired: &mut Value, live: &Value, now: &str) {
    match desired {
        Value::Object(map) => {
            if map.contains_key("type") && map.contains_key("status") {
                let same = live.get("status") == map.get("status");
                let time = match live.get("lastTransitionTime") {
                    Some(t) if same => t.clone(),
                    _ => json!(now),
                };
                map.insert("lastTransitionTime".into(), time);
                return;
            }
            for (k, child) in map.iter_mut() {
                carry_times(child, live.get(k).unwrap_or(&Value::Null), now);
            }
        }
        Value::Array(items) => {
            let theirs = live.as_array().map(Vec::as_slice).unwrap_or_default();
            for (i, item) in items.iter_mut().enumerate() {
                let twin = theirs
                    .iter()
                    .find(|t| same_entry(item, t))
                    .or_else(|| theirs.get(i).filter(|t| same_entry(item, t)))
                    .unwrap_or(&Value::Null);
                carry_times(item, twin, now);
            }
        }
        _ => {}
    }
}

/// Whether two list entries are the same entry: a condition by type, a
/// listener by name, a route parent or policy ancestor by its reference and
/// controller.
fn same_entry(a: &Value, b: &Value) -> bool {
    for keys in [
        &["type"][..],
        &["name"],
        &["parentRef", "controllerName"],
        &["ancestorRef", "controllerName"],
    ] {
        if keys.iter().all(|k| a.get(k).is_some()) {
            return keys.iter().all(|k| a.get(k) == b.get(k));
        }
    }
    false
}

/// Whether `live` already shows `desired`: every field of `desired` is
/// there with the same value (lists compared whole); fields other writers
/// keep beside weft's are ignored.
fn shows(live: &Value, desired: &Value) -> bool {
    match (live, desired) {
        (Value::Object(l), Value::Object(d)) => d
            .iter()
            .all(|(k, v)| l.get(k).is_some_and(|lv| shows(lv, v)) || v.is_null()),
        _ => live == desired,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parent(name: &str, controller: &str, ok: &str, at: &str) -> Value {
        json!({"parentRef": {"name": name}, "controllerName": controller,
            "conditions": [{"type": "Accepted", "status": ok, "lastTransitionTime": at}]})
    }

    #[test]
    fn other_controllers_keep_their_parents() {
        let live = json!({"parents": [parent("a", "other.example/x", "True", "t0"), parent("g", CONTROLLER_NAME, "True", "t0")]});
        let desired = json!({"parents": [{"parentRef": {"name": "g"}, "controllerName": CONTROLLER_NAME,
            "conditions": [{"type": "Accepted", "status": "True"}]}]});
        let mut merged = with_others(desired, &live);
        carry_times(&mut merged, &live, "t1");
        let parents = merged["parents"].as_array().unwrap();
        assert_eq!(parents.len(), 2);
        assert_eq!(parents[0]["conditions"][0]["lastTransitionTime"], "t0");
        assert_eq!(parents[1]["controllerName"], "other.example/x");
        assert!(shows(
            &json!({"parents": [parents[0].clone(), parents[1].clone()]}),
            &merged
        ));
    }

    #[test]
    fn times_move_only_with_status_and_removals_are_seen() {
        let live = json!({"conditions": [{"type": "Accepted", "status": "True", "lastTransitionTime": "t0"}],
            "listeners": [{"name": "a"}, {"name": "b"}], "addresses": [{"value": "10.0.0.1"}]});
        let mut d = json!({"conditions": [{"type": "Accepted", "status": "False"}], "listeners": [{"name": "a"}]});
        carry_times(&mut d, &live, "t1");
        assert_eq!(d["conditions"][0]["lastTransitionTime"], "t1");
        assert!(!shows(&live, &d));
        let mut same = json!({"conditions": [{"type": "Accepted", "status": "True"}],
            "listeners": [{"name": "a"}, {"name": "b"}]});
        carry_times(&mut same, &live, "t1");
        // Another writer's addresses do not make it differ.
        assert!(shows(&live, &same));
    }
}
