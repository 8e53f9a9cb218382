//! The controller's loop in standalone mode: read the folder, translate,
//! publish the result to the config server and `/status`; again on every
//! change of the folder and every bind report from a gateway.

use crate::provider::folder::{self, FolderState};
use crate::resources::{Kind, ObjKey};
use crate::status::{self, TransitionClock};
use crate::store::{Problem, Source, Store};
use crate::translate::multicluster::Peers;
use crate::translate::{translate, BindErrors, Options};
use crate::ControllerError;
use serde_json::Value;
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use weft_api::{wire, GatewayConfig};

/// One Gateway's config as served: a content version and the encoding.
#[derive(Clone, Debug, PartialEq)]
pub struct Served {
    pub version: String,
    pub config: GatewayConfig,
    pub encoded: Vec<u8>,
}

/// Everything the controller publishes after a translation.
#[derive(Clone, Debug, Default)]
pub struct Published {
    /// Config of each Gateway weft owns.
    pub gateways: BTreeMap<ObjKey, Arc<Served>>,
    /// `/status` items.
    pub items: Arc<Vec<Value>>,
    pub problems: Vec<Problem>,
    /// The files read and the content of each that is loaded.
    pub sources: Vec<Source>,
    /// The Workloads to run (standalone mode).
    pub workloads: BTreeMap<ObjKey, crate::workload::Workload>,
    /// The sidecar config of each Workload.
    pub sidecars: BTreeMap<ObjKey, weft_api::SidecarConfig>,
    /// The CA the user plugs in: the fields of the Secret `CA_SECRET`.
    pub ca_secret: Option<BTreeMap<String, String>>,
    /// What this cluster exports to its peers, and the peers it links to.
    pub exports: Arc<weft_api::peering::ExportSet>,
    pub links: Vec<crate::translate::multicluster::Link>,
}

/// The Secret (namespace, name) whose keys replace the CA weft would
/// create: `root-cert.pem` and `root-key.pem`, or Istio's `ca-cert.pem`,
/// `ca-key.pem` and `root-cert.pem`.
pub const CA_SECRET: (&str, &str) = ("weft-system", "cacerts");

/// Every field of a Secret as text (`stringData` over `data`).
fn secret_fields(secret: &k8s_openapi::api::core::v1::Secret) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = secret
        .data
        .iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), String::from_utf8(v.0.clone()).ok()?)))
        .collect();
    out.extend(secret.string_data.clone().unwrap_or_default());
    out
}

/// A bind report from a gateway: its key and the addresses it could not bind.
pub type BindReport = (ObjKey, Vec<String>);

/// Translates a store and publishes the result: the configs first, then
/// `/status`. Shared by both providers' loops.
pub struct Publisher {
    opts: Options,
    bind_errors: BindErrors,
    clock: TransitionClock,
    publish: watch::Sender<Arc<Published>>,
    /// The problems of the last publish, so each is logged once.
    logged: BTreeSet<String>,
    /// What peering learns of linked clusters, when this cluster peers.
    peers: Option<watch::Receiver<Arc<Peers>>>,
}

impl Publisher {
    pub fn new(opts: Options) -> (Self, watch::Receiver<Arc<Published>>) {
        let (publish, rx) = watch::channel(Arc::new(Published::default()));
        let p = Publisher {
            opts,
            bind_errors: BindErrors::new(),
            clock: TransitionClock::default(),
            publish,
            logged: BTreeSet::new(),
            peers: None,
        };
        (p, rx)
    }

    /// The roots to send every proxy (the CA's, once it is up).
    pub fn set_trust_bundle(&mut self, bundle: Vec<String>) {
        self.opts.trust_bundle = bundle;
    }

    /// Translates again with each change of what peering knows (the
    /// loop that publishes waits on `peers_changed`).
    pub fn follow_peers(&mut self, peers: watch::Receiver<Arc<Peers>>) {
        self.peers = Some(peers);
    }

    /// Waits until what peering knows changes, and takes it in; never
    /// returns without peering.
    pub async fn peers_changed(&mut self) {
        let Some(rx) = self.peers.as_mut() else {
            return std::future::pending().await;
        };
        if rx.changed().await.is_err() {
            self.peers = None;
            return std::future::pending().await;
        }
        self.opts.peers = rx.borrow_and_update().clone();
    }

    /// Takes a gateway's bind report; true when it changed anything.
    pub fn bind_report(&mut self, (key, errors): BindReport) -> bool {
        let old = self.bind_errors.get(&key).cloned().unwrap_or_default();
        if old == errors {
            return false;
        }
        if errors.is_empty() {
            self.bind_errors.remove(&key);
        } else {
            self.bind_errors.insert(key, errors);
        }
        true
    }

    /// Translates `store` and publishes; returns the statuses translated
    /// (without `lastTransitionTime`).
    pub fn publish(&mut self, store: &Store) -> BTreeMap<ObjKey, Value> {
        let t = translate(store, &self.opts, &self.bind_errors);
        let previous = self.publish.borrow().clone();
        let gateways = t
            .gateways
            .into_iter()
            .map(|(key, config)| {
                let encoded = wire::encode(&config);
                let served = match previous.gateways.get(&key) {
                    Some(old) if old.encoded == encoded => old.clone(),
                    _ => Arc::new(Served {
                        version: version_of(&encoded, &[]),
                        config,
                        encoded,
                    }),
                };
                (key, served)
            })
            .collect();
        let problems: BTreeSet<String> = t
            .statuses
            .iter()
            .flat_map(|(key, s)| {
                status::problems(s)
                    .into_iter()
                    .map(move |p| format!("{key}: {p}"))
            })
            .collect();
        for p in problems.difference(&self.logged) {
            tracing::warn!("{p}");
        }
        self.logged = problems;
        // Configs go out first: the proxies need not wait for `/status`,
        // which is built from every object and follows at once.
        let mut published = Published {
            gateways,
            items: previous.items.clone(),
            problems: store.problems.clone(),
            // With the statuses of the same read, below.
            sources: previous.sources.clone(),
            sidecars: t.sidecars,
            exports: match &previous.exports {
                e if **e == t.exports => e.clone(),
                _ => Arc::new(t.exports),
            },
            links: t.links,
            ca_secret: match store.lookup(Kind::Secret, CA_SECRET.0, CA_SECRET.1) {
                Some(crate::resources::Object::Secret(secret)) => Some(secret_fields(secret)),
                _ => None,
            },
            workloads: store
                .of_kind(Kind::Workload)
                .filter_map(|(k, e)| match &e.object {
                    crate::resources::Object::Workload(w) => Some((k.clone(), w.clone())),
                    _ => None,
                })
                .collect(),
        };
        let same_version = |(a, x): (&ObjKey, &Arc<Served>), (b, y): (&ObjKey, &Arc<Served>)| {
            a == b && x.version == y.version
        };
        let configs_changed = published.gateways.len() != previous.gateways.len()
            || !published
                .gateways
                .iter()
                .zip(&previous.gateways)
                .all(|(p, q)| same_version(p, q))
            || published.sidecars != previous.sidecars;
        if configs_changed {
            self.publish.send_replace(Arc::new(published.clone()));
        }
        let mut items = status::items(store, &t.statuses, &mut self.clock, &status::now());
        items.extend(t.service_imports);
        published.items = Arc::new(items);
        published.sources = store.sources.clone();
        self.publish.send_replace(Arc::new(published));
        t.statuses
    }
}

/// The controller in standalone mode: a folder of manifests.
pub struct Controller {
    dir: PathBuf,
    folder: FolderState,
    store: Store,
    publisher: Publisher,
}

impl Controller {
    pub fn new(dir: PathBuf, opts: Options) -> (Self, watch::Receiver<Arc<Published>>) {
        let (publisher, rx) = Publisher::new(opts);
        let c = Controller {
            dir,
            folder: FolderState::default(),
            store: Store::default(),
            publisher,
        };
        (c, rx)
    }

    /// The roots to send every proxy (the CA's, once it is up).
    pub fn set_trust_bundle(&mut self, bundle: Vec<String>) {
        self.publisher.set_trust_bundle(bundle);
        self.publisher.publish(&self.store);
    }

    /// Translates again with each change of what peering knows.
    pub fn follow_peers(&mut self, peers: watch::Receiver<Arc<Peers>>) {
        self.publisher.follow_peers(peers);
    }

    /// Reads the folder and publishes; the first read must succeed.
    pub fn reload(&mut self) -> Result<(), ControllerError> {
        self.store = self.folder.read(&self.dir, &self.store)?;
        self.publisher.publish(&self.store);
        Ok(())
    }

    /// Runs until `stop` fires: re-reads on folder changes, re-publishes on
    /// bind reports.
    pub async fn run(
        mut self,
        mut reports: mpsc::Receiver<BindReport>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), ControllerError> {
        let (_watcher, mut changes) = folder::watch(&self.dir)?;
        loop {
            tokio::select! {
                () = self.publisher.peers_changed() => {
                    self.publisher.publish(&self.store);
                }
                Some(()) = changes.recv() => {
                    match self.folder.read(&self.dir, &self.store) {
                        Ok(store) => {
                            self.store = store;
                            self.publisher.publish(&self.store);
                        }
                        Err(e) => tracing::error!("{e}"),
                    }
                }
                Some(report) = reports.recv() => {
                    if self.publisher.bind_report(report) {
                        self.publisher.publish(&self.store);
                    }
                }
                _ = stop.changed() => return Ok(()),
            }
        }
    }
}

/// A proxy, from the node name it subscribes with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    /// `gateway/<namespace>/<name>`
    Gateway(ObjKey),
    /// `sidecar/<namespace>/<workload>`
    Sidecar(ObjKey),
}

impl Node {
    pub fn parse(node: &str) -> Option<Node> {
        let mut parts = node.splitn(3, '/');
        let (role, ns, name) = (parts.next()?, parts.next()?, parts.next()?);
        if ns.is_empty() || name.is_empty() {
            return None;
        }
        let key = |kind| ObjKey {
            kind,
            namespace: ns.to_string(),
            name: name.to_string(),
        };
        match role {
            "gateway" => Some(Node::Gateway(key(Kind::Gateway))),
            "sidecar" => Some(Node::Sidecar(key(Kind::Workload))),
            _ => None,
        }
    }
}

/// A content version for `bytes` (with whatever else went into them).
pub fn version_of(bytes: &[u8], extra: &[String]) -> String {
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    extra.hash(&mut h);
    format!("{:016x}", h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_node_names() {
        let gw = Node::parse("gateway/default/edge").unwrap();
        assert_eq!(
            gw,
            Node::Gateway(ObjKey {
                kind: Kind::Gateway,
                namespace: "default".into(),
                name: "edge".into()
            })
        );
        assert!(
            matches!(Node::parse("sidecar/shop/cart"), Some(Node::Sidecar(k)) if k.kind == Kind::Workload)
        );
        assert_eq!(Node::parse("sidecar/shop"), None);
        assert_eq!(Node::parse("other/a/b"), None);
        assert_eq!(Node::parse("gateway//b"), None);
    }
}
