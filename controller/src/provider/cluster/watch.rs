//! One watcher: list, then watch, of one kind (with one field selector),
//! re-listing after a `410 Gone` or a broken stream with kube-rs's backoff;
//! and `Objects`, what every watcher holds, each object parsed once.

use crate::resources::{parse, Doc, ObjKey, Parsed};
use crate::store::Problem;
use futures::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::core::ApiResource;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Client;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::watch as signal;

/// One object as a watcher holds it.
#[derive(Clone)]
enum Held {
    Object {
        key: ObjKey,
        doc: Arc<Doc>,
    },
    /// The API server holds it but weft cannot read it.
    Invalid(Problem),
    /// Not for weft (a pod without a sidecar).
    Ignored,
}

/// One watcher's objects, by namespace/name, with the resourceVersion they
/// were parsed at.
#[derive(Default)]
struct Set {
    kind: Option<crate::resources::Kind>,
    objects: BTreeMap<(String, String), (String, Held)>,
    /// Objects of a list in progress; they replace `objects` when it ends.
    listing: Option<BTreeMap<(String, String), (String, Held)>>,
    listed: bool,
}

/// What every watcher holds.
#[derive(Default)]
pub struct Objects {
    sets: Vec<Set>,
    /// Objects never held (the CA's Secrets).
    private: Vec<ObjKey>,
    /// Every wanted kind has been looked for once.
    discovered: bool,
}

impl Objects {
    pub(super) fn new(private: Vec<ObjKey>) -> Objects {
        Objects {
            private,
            ..Objects::default()
        }
    }

    pub(super) fn add_watch(&mut self, kind: crate::resources::Kind) -> usize {
        self.sets.push(Set {
            kind: Some(kind),
            ..Set::default()
        });
        self.sets.len() - 1
    }

    pub(super) fn discovered(&mut self) {
        self.discovered = true;
    }

    pub(super) fn synced(&self) -> bool {
        self.discovered && self.sets.iter().all(|s| s.listed)
    }

    pub(super) fn entries(&self) -> impl Iterator<Item = (ObjKey, Arc<Doc>, PathBuf)> + '_ {
        self.sets.iter().flat_map(|s| {
            s.objects.values().filter_map(|(_, held)| match held {
                Held::Object { key, doc } => Some((key.clone(), doc.clone(), origin(key))),
                Held::Invalid(_) | Held::Ignored => None,
            })
        })
    }

    /// One object, as held now.
    pub(super) fn find(&self, key: &ObjKey) -> Option<Arc<Doc>> {
        let name = (key.namespace.clone(), key.name.clone());
        self.sets
            .iter()
            .filter(|s| s.kind == Some(key.kind))
            .find_map(|s| match s.objects.get(&name) {
                Some((_, Held::Object { doc, .. })) => Some(doc.clone()),
                _ => None,
            })
    }

    pub(super) fn problems(&self) -> impl Iterator<Item = &Problem> {
        self.sets.iter().flat_map(|s| {
            s.objects.values().filter_map(|(_, held)| match held {
                Held::Invalid(p) => Some(p),
                Held::Object { .. } | Held::Ignored => None,
            })
        })
    }

    fn apply(&mut self, id: usize, ar: &ApiResource, obj: DynamicObject, init: bool) {
        let set = &mut self.sets[id];
        let name = (
            obj.metadata.namespace.clone().unwrap_or_default(),
            obj.metadata.name.clone().unwrap_or_default(),
        );
        let rv = obj.metadata.resource_version.clone().unwrap_or_default();
        // The same version as held (a re-list): parsed already.
        let held = match set.objects.get(&name) {
            Some((held_rv, held)) if *held_rv == rv && !rv.is_empty() => held.clone(),
            _ => match read(ar, obj) {
                Held::Object { key, .. } if self.private.contains(&key) => Held::Ignored,
                held => held,
            },
        };
        match (&mut set.listing, init) {
            (Some(listing), true) => listing.insert(name, (rv, held)),
            _ => set.objects.insert(name, (rv, held)),
        };
    }

    fn delete(&mut self, id: usize, obj: &DynamicObject) {
        let name = (
            obj.metadata.namespace.clone().unwrap_or_default(),
            obj.metadata.name.clone().unwrap_or_default(),
        );
        self.sets[id].objects.remove(&name);
    }
}

/// The path `/status` shows for an object read from the API server.
fn origin(key: &ObjKey) -> PathBuf {
    if key.namespace.is_empty() {
        PathBuf::from(format!("{}/{}", key.kind, key.name))
    } else {
        PathBuf::from(format!("{}/{}/{}", key.kind, key.namespace, key.name))
    }
}

/// Parses an object as the folder provider parses a document. List items
/// come without apiVersion and kind; they are the watched resource's.
fn read(ar: &ApiResource, obj: DynamicObject) -> Held {
    let where_ = format!(
        "{}/{}/{}",
        ar.kind,
        obj.metadata.namespace.as_deref().unwrap_or(""),
        obj.metadata.name.as_deref().unwrap_or("")
    );
    let mut value = match serde_json::to_value(obj) {
        Ok(v) => v,
        Err(e) => {
            return Held::Invalid(Problem {
                file: PathBuf::from(&where_),
                message: e.to_string(),
            })
        }
    };
    if let Value::Object(map) = &mut value {
        map.insert("apiVersion".into(), Value::String(ar.api_version.clone()));
        map.insert("kind".into(), Value::String(ar.kind.clone()));
    }
    if ar.kind == "Pod" {
        match super::pods::workload(&value) {
            Some(workload) => value = workload,
            None => return Held::Ignored,
        }
    }
    match parse(value) {
        Ok(Parsed::Object { key, doc }) => Held::Object { key, doc },
        Ok(Parsed::Unknown { .. }) => Held::Invalid(Problem {
            file: PathBuf::from(&where_),
            message: format!("{} is not a kind weft reads", ar.api_version),
        }),
        Err(message) => {
            tracing::error!(object = %where_, "{message}");
            Held::Invalid(Problem {
                file: PathBuf::from(where_),
                message,
            })
        }
    }
}

/// Runs one watcher until the process ends; every change ticks `changes`.
pub(super) async fn run(
    client: Client,
    ar: ApiResource,
    selector: Option<&'static str>,
    id: usize,
    objects: Arc<Mutex<Objects>>,
    changes: signal::Sender<u64>,
) {
    let api: Api<DynamicObject> = Api::all_with(client, &ar);
    let mut config = watcher::Config::default();
    if let Some(fields) = selector {
        config = config.fields(fields);
    }
    let mut stream = watcher::watcher(api, config).default_backoff().boxed();
    while let Some(event) = stream.next().await {
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                // The watcher lists again (a 410 Gone, a dropped stream)
                // after a backoff; what it holds stays until then.
                tracing::warn!(kind = %ar.kind, "watch: {e}");
                continue;
            }
        };
        let mut o = objects.lock().expect("objects lock");
        let tick = match event {
            Event::Init => {
                o.sets[id].listing = Some(BTreeMap::new());
                false
            }
            Event::InitApply(obj) => {
                o.apply(id, &ar, obj, true);
                false
            }
            Event::InitDone => {
                let set = &mut o.sets[id];
                if let Some(listed) = set.listing.take() {
                    set.objects = listed;
                }
                set.listed = true;
                true
            }
            Event::Apply(obj) => {
                o.apply(id, &ar, obj, false);
                true
            }
            Event::Delete(obj) => {
                o.delete(id, &obj);
                true
            }
        };
        drop(o);
        if tick {
            changes.send_modify(|n| *n += 1);
        }
    }
}
