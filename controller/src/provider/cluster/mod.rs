//! The Kubernetes provider: one watcher per kind weft reads (Secrets only of
//! the types weft uses), each listing and then watching through the API
//! server, its objects parsed once per resourceVersion by the same `parse`
//! the folder provider uses, and all of them together built into the same
//! `Store`. Kinds whose CRDs are not installed are looked for again until
//! they are.

pub mod cabundle;
pub mod class;
pub mod lease;
pub mod pods;
pub mod provisioner;
mod watch;
pub mod writeback;

use crate::resources::{Kind, GATEWAY_GROUP, WEFT_GROUP};
use crate::store::{Problem, Store};
use kube::core::{ApiResource, GroupVersionKind};
use kube::Client;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch as signal;
pub use watch::Objects;

/// How often kinds that are not served yet (their CRD missing) are looked
/// for again.
const REDISCOVER: Duration = Duration::from_secs(10);

/// A kind weft watches: where the API serves it, newest version first.
struct Wanted {
    /// The kind it is stored as.
    kind: Kind,
    /// The kind the API serves (a Pod is stored as a Workload).
    api_kind: &'static str,
    group: &'static str,
    versions: &'static [&'static str],
    /// Field selectors: one watch each (several when one selector cannot
    /// say "any of these").
    selectors: &'static [Option<&'static str>],
}

/// A kind watched whole.
const fn all(kind: Kind, group: &'static str, versions: &'static [&'static str]) -> Wanted {
    Wanted {
        kind,
        api_kind: kind.name(),
        group,
        versions,
        selectors: &[None],
    }
}

const V1: &[&str] = &["v1"];
const V1_BETA: &[&str] = &["v1", "v1beta1"];

/// Every kind the folder provider reads; Workloads are made from pods.
const WANTED: &[Wanted] = &[
    all(Kind::Namespace, "", V1),
    all(Kind::Service, "", V1),
    all(Kind::ConfigMap, "", V1),
    // Certificates and CA keys only: never service-account tokens, Helm
    // releases or image pull secrets.
    Wanted {
        kind: Kind::Secret,
        api_kind: "Secret",
        group: "",
        versions: V1,
        selectors: &[Some("type=kubernetes.io/tls"), Some("type=Opaque")],
    },
    all(Kind::EndpointSlice, "discovery.k8s.io", V1),
    // Pods with a sidecar, as Workloads: identities, labels, addresses.
    Wanted {
        kind: Kind::Workload,
        api_kind: "Pod",
        group: "",
        versions: V1,
        selectors: &[Some("status.phase!=Succeeded,status.phase!=Failed")],
    },
    all(Kind::GatewayClass, GATEWAY_GROUP, V1_BETA),
    all(Kind::Gateway, GATEWAY_GROUP, V1_BETA),
    all(Kind::HttpRoute, GATEWAY_GROUP, V1_BETA),
    all(Kind::GrpcRoute, GATEWAY_GROUP, V1),
    all(
        Kind::TlsRoute,
        GATEWAY_GROUP,
        &["v1", "v1alpha3", "v1alpha2"],
    ),
    all(Kind::TcpRoute, GATEWAY_GROUP, &["v1", "v1alpha2"]),
    all(Kind::ListenerSet, GATEWAY_GROUP, V1),
    all(Kind::BackendTlsPolicy, GATEWAY_GROUP, &["v1", "v1alpha3"]),
    all(Kind::ReferenceGrant, GATEWAY_GROUP, V1_BETA),
    all(Kind::SecurityPolicy, WEFT_GROUP, &["v1alpha1"]),
    all(Kind::AuthorizationPolicy, WEFT_GROUP, &["v1alpha1"]),
    all(Kind::BackendTrafficPolicy, WEFT_GROUP, &["v1alpha1"]),
    all(Kind::ClusterLink, WEFT_GROUP, &["v1alpha1"]),
    all(
        Kind::ServiceExport,
        crate::multicluster::MCS_GROUP,
        &["v1alpha1"],
    ),
    all(Kind::XBackend, crate::egress::X_GROUP, &["v1alpha1"]),
];

/// What discovery said of a kind.
enum Found {
    Served(ApiResource),
    NotServed,
    /// The API server did not answer.
    Unanswered,
}

/// The provider: its watchers run in the background; `changes` ticks after
/// every event, and `store` builds the store from what they hold.
#[derive(Clone)]
pub struct Cluster {
    client: Client,
    objects: Arc<Mutex<Objects>>,
    /// Where each kind is served, once found.
    resources: Arc<Mutex<BTreeMap<Kind, ApiResource>>>,
    changes: signal::Sender<u64>,
}

impl Cluster {
    /// Starts every watcher (and the search for kinds not served yet).
    /// The objects of `private` (the CA's Secrets) are never held.
    pub fn start(client: Client, private: Vec<crate::resources::ObjKey>) -> Cluster {
        let (changes, _) = signal::channel(0);
        let cluster = Cluster {
            client,
            objects: Arc::new(Mutex::new(Objects::new(private))),
            resources: Arc::new(Mutex::new(BTreeMap::new())),
            changes,
        };
        let finder = cluster.clone();
        tokio::spawn(async move { finder.discover().await });
        cluster
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Ticks whenever an object changes or a watcher finishes a list.
    pub fn changes(&self) -> signal::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Where the API serves `kind`, once discovered.
    pub fn resource(&self, kind: Kind) -> Option<ApiResource> {
        self.resources.lock().ok()?.get(&kind).cloned()
    }

    /// True once every kind has been looked for and every watcher of a
    /// served kind has listed its objects: a store built before would miss
    /// objects and say wrong things about the ones that refer to them.
    pub fn synced(&self) -> bool {
        self.objects.lock().is_ok_and(|o| o.synced())
    }

    /// A namespace's labels as the watchers hold them now (with the
    /// `kubernetes.io/metadata.name` label every namespace has).
    pub fn namespace_labels(&self, namespace: &str) -> BTreeMap<String, String> {
        let key = crate::resources::ObjKey {
            kind: Kind::Namespace,
            namespace: String::new(),
            name: namespace.to_string(),
        };
        let doc = self.objects.lock().ok().and_then(|o| o.find(&key));
        let mut labels = doc
            .and_then(|d| d.object.metadata().labels.clone())
            .unwrap_or_default();
        labels.insert("kubernetes.io/metadata.name".into(), namespace.into());
        labels
    }

    /// The store of everything the watchers hold now.
    pub fn store(&self) -> Store {
        let objects = self.objects.lock().expect("objects lock");
        let problems: Vec<Problem> = objects.problems().cloned().collect();
        Store::observed(objects.entries(), problems)
    }

    /// Finds where each wanted kind is served and starts its watchers;
    /// looks again for the ones not found, until every kind is.
    async fn discover(self) {
        let mut pending: Vec<&'static Wanted> = WANTED.iter().collect();
        let mut discovered = false;
        loop {
            let (mut still, mut unanswered) = (Vec::new(), false);
            for w in pending {
                match self.find(w).await {
                    Found::Served(ar) => self.watch(w, ar),
                    Found::NotServed => still.push(w),
                    Found::Unanswered => {
                        unanswered = true;
                        still.push(w);
                    }
                }
            }
            // The cluster counts as read only once every kind is known to
            // be served or not: a store built while the API server did not
            // answer would be empty, and empty configs would go to proxies.
            if !discovered && !unanswered {
                let names: Vec<&str> = still.iter().map(|w| w.kind.name()).collect();
                if !names.is_empty() {
                    tracing::warn!(
                        "the API server does not serve {}; looking again every {}s (are the CRDs installed?)",
                        names.join(", "),
                        REDISCOVER.as_secs()
                    );
                }
                if let Ok(mut o) = self.objects.lock() {
                    o.discovered();
                }
                self.changes.send_modify(|n| *n += 1);
                discovered = true;
            }
            if still.is_empty() {
                return;
            }
            pending = still;
            let wait = if discovered {
                REDISCOVER
            } else {
                Duration::from_secs(1)
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Where the API serves `w`, newest version first.
    async fn find(&self, w: &Wanted) -> Found {
        let mut unanswered = false;
        for version in w.versions {
            let gvk = GroupVersionKind::gvk(w.group, version, w.api_kind);
            match kube::discovery::pinned_kind(&self.client, &gvk).await {
                Ok((ar, _)) => return Found::Served(ar),
                // The group or version is not served, or it is without
                // this kind.
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(kube::Error::Discovery(_)) => {}
                Err(e) => {
                    tracing::warn!(kind = %w.kind, version, "discovery: {e}");
                    unanswered = true;
                }
            }
        }
        if unanswered {
            Found::Unanswered
        } else {
            Found::NotServed
        }
    }

    fn watch(&self, w: &Wanted, ar: ApiResource) {
        if let Ok(mut r) = self.resources.lock() {
            r.insert(w.kind, ar.clone());
        }
        for selector in w.selectors {
            let id = self.objects.lock().expect("objects lock").add_watch(w.kind);
            tokio::spawn(watch::run(
                self.client.clone(),
                ar.clone(),
                *selector,
                id,
                self.objects.clone(),
                self.changes.clone(),
            ));
        }
    }
}
