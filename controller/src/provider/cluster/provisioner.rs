//! Gateway provisioning, the half that writes: while this replica leads,
//! the objects `provision::desired` gives for each Gateway are applied by
//! server-side apply (field manager `weft`), only when they changed since
//! they were last applied, and all of them again now and then, so that one
//! deleted by hand comes back. A Gateway's objects go with it: the API
//! server collects them through their owner reference; when a Gateway
//! leaves weft's class, they are deleted here.

use super::writeback::{Statuses, FIELD_MANAGER};
use super::Cluster;
use crate::provision::{self, Infra, GATEWAY_NAME_LABEL, MANAGED_BY};
use crate::resources::ObjKey;
use crate::store::Store;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How often every object is applied again.
const REAPPLY: Duration = Duration::from_secs(30);

pub struct Provisioner {
    cluster: Cluster,
    infra: Infra,
    /// What was applied last, per Gateway.
    applied: BTreeMap<ObjKey, Vec<Value>>,
    reapplied: Instant,
}

/// Where the API serves a provisioned object's kind.
fn resource(object: &Value) -> Option<ApiResource> {
    let api_version = object["apiVersion"].as_str()?;
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let kind = object["kind"].as_str()?;
    let plural = match kind {
        "ServiceAccount" => "serviceaccounts",
        "ConfigMap" => "configmaps",
        "Deployment" => "deployments",
        "Service" => "services",
        "PodDisruptionBudget" => "poddisruptionbudgets",
        _ => return None,
    };
    let gvk = GroupVersionKind::gvk(group, version, kind);
    Some(ApiResource::from_gvk_with_plural(&gvk, plural))
}

impl Provisioner {
    pub fn new(cluster: Cluster, infra: Infra) -> Provisioner {
        Provisioner {
            cluster,
            infra,
            applied: BTreeMap::new(),
            reapplied: Instant::now(),
        }
    }

    pub async fn run(
        mut self,
        mut input: watch::Receiver<Option<Statuses>>,
        mut leader: watch::Receiver<bool>,
    ) {
        loop {
            let leading = *leader.borrow_and_update();
            let latest = input.borrow_and_update().clone();
            if !leading {
                self.applied.clear();
            } else if let Some(latest) = latest {
                if self.reapplied.elapsed() >= REAPPLY {
                    self.applied.clear();
                    self.reapplied = Instant::now();
                }
                self.sync(&latest.0).await;
            }
            tokio::select! {
                r = input.changed() => if r.is_err() { return },
                r = leader.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(REAPPLY) => {}
            }
        }
    }

    fn api(&self, ar: &ApiResource, namespace: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.cluster.client().clone(), namespace, ar)
    }

    async fn sync(&mut self, store: &Store) {
        let desired = provision::desired(store, &self.infra);
        let gone: Vec<ObjKey> = self
            .applied
            .keys()
            .filter(|k| !desired.contains_key(k))
            .cloned()
            .collect();
        for key in gone {
            let objects = self.applied.remove(&key).unwrap_or_default();
            // Deleted with the Gateway by the API server; here only when
            // the Gateway itself is still there.
            if store.get(&key).is_some() {
                self.delete(&key, &objects).await;
            }
        }
        for (key, objects) in desired {
            // Invalid parameters: what runs now stays as it is.
            let Some(objects) = objects else { continue };
            if self.applied.get(&key) == Some(&objects) {
                continue;
            }
            if self.apply(&key, &objects).await {
                self.applied.insert(key, objects);
            }
        }
    }

    async fn apply(&self, key: &ObjKey, objects: &[Value]) -> bool {
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let mut all = true;
        for object in objects {
            let (Some(ar), Some(name)) = (resource(object), object["metadata"]["name"].as_str())
            else {
                continue;
            };
            let api = self.api(&ar, &key.namespace);
            if let Err(e) = api.patch(name, &params, &Patch::Apply(object)).await {
                tracing::warn!(gateway = %key, kind = %ar.kind, name, "provisioning: {e}");
                all = false;
            }
        }
        if all {
            tracing::info!(gateway = %key, "provisioned");
        }
        all
    }

    /// Deletes the objects of a Gateway that is no longer weft's, each only
    /// if it still carries weft's labels for that Gateway.
    async fn delete(&self, key: &ObjKey, objects: &[Value]) {
        for object in objects {
            let (Some(ar), Some(name)) = (resource(object), object["metadata"]["name"].as_str())
            else {
                continue;
            };
            let api = self.api(&ar, &key.namespace);
            let Ok(Some(live)) = api.get_opt(name).await else {
                continue;
            };
            let labels = live.metadata.labels.unwrap_or_default();
            let ours = labels.get(GATEWAY_NAME_LABEL) == Some(&key.name)
                && labels.get(MANAGED_BY.0).map(String::as_str) == Some(MANAGED_BY.1);
            if ours {
                if let Err(e) = api.delete(name, &DeleteParams::background()).await {
                    tracing::warn!(gateway = %key, kind = %ar.kind, name, "unprovisioning: {e}");
                }
            }
        }
        tracing::info!(gateway = %key, "unprovisioned: no longer of a weft GatewayClass");
    }
}
