//! The store: every object the providers read, keyed by kind, namespace and
//! name, with what the API server would have given it: `metadata.generation`
//! (bumped by spec changes), and `creationTimestamp` and `uid` (set when the
//! object is first read, kept while it lives), so that "the oldest wins"
//! means in standalone mode what it means on Kubernetes.

use crate::resources::{Doc, Kind, ObjKey, Object, Parsed};
use std::collections::BTreeMap;
use std::ops::Deref;
use std::path::PathBuf;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

/// `doc` with the creation timestamp and uid of `from`.
fn stamp(doc: &Arc<Doc>, from: &ObjectMeta) -> Arc<Doc> {
    let meta = doc.object.metadata();
    if meta.creation_timestamp == from.creation_timestamp && meta.uid == from.uid {
        return doc.clone();
    }
    let mut d = Doc::clone(doc);
    let meta = d.object.metadata_mut();
    meta.creation_timestamp = from.creation_timestamp.clone();
    meta.uid = from.uid.clone();
    Arc::new(d)
}

/// A random uid, as the API server gives (a UUID).
fn new_uid() -> String {
    uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .to_string()
}

/// An object in the store: its document, with the creation timestamp and
/// uid the store gave it, and what the store adds.
#[derive(Clone, Debug)]
pub struct Entry {
    pub doc: Arc<Doc>,
    /// The document as the provider read it (shared with its cache, so an
    /// unchanged object is recognised without comparing it).
    source: Arc<Doc>,
    /// Bumped whenever the spec changes; unchanged by a reformatted file.
    pub generation: i64,
    pub file: PathBuf,
}

impl Deref for Entry {
    type Target = Doc;

    fn deref(&self) -> &Doc {
        &self.doc
    }
}

/// Something a provider could not read, kept for `/status`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Problem {
    pub file: PathBuf,
    pub message: String,
}

/// A file a provider read, as `/status` shows it: which content is loaded.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Source {
    pub file: PathBuf,
    /// A digest of the content loaded (the last one that parsed).
    pub digest: String,
    pub documents: usize,
}

#[derive(Clone, Debug, Default)]
pub struct Store {
    entries: BTreeMap<ObjKey, Entry>,
    pub problems: Vec<Problem>,
    /// The files read, in order.
    pub sources: Vec<Source>,
}

impl Store {
    /// Builds the store from parsed documents (in file order), carrying the
    /// generations of `previous` forward: an object keeps its generation while
    /// its spec is unchanged, and gets the next one when the spec changes.
    /// An object new to the store is created `now` (unless its manifest
    /// says when), with a new uid.
    pub fn build(
        previous: &Store,
        docs: Vec<(PathBuf, Parsed)>,
        problems: Vec<Problem>,
        now: &Time,
    ) -> Store {
        let mut store = Store {
            entries: BTreeMap::new(),
            problems,
            sources: Vec::new(),
        };
        for (file, parsed) in docs {
            let Parsed::Object { key, doc } = parsed else {
                continue;
            };
            let old = previous.entries.get(&key);
            let generation = match old {
                // The same parse of an unchanged file needs no comparison.
                Some(old) if Arc::ptr_eq(&old.source, &doc) || old.spec == doc.spec => {
                    old.generation
                }
                Some(old) => old.generation + 1,
                None => doc.object.metadata().generation.unwrap_or(1).max(1),
            };
            if let Some(first) = store.entries.get(&key) {
                store.problems.push(Problem {
                    file: file.clone(),
                    message: format!(
                        "{key} is also defined in {}; this one is ignored",
                        first.file.display()
                    ),
                });
                continue;
            }
            let stamped = match old {
                Some(old) if Arc::ptr_eq(&old.source, &doc) => old.doc.clone(),
                Some(old) => stamp(&doc, old.doc.object.metadata()),
                None => {
                    let meta = doc.object.metadata();
                    let born = ObjectMeta {
                        creation_timestamp: Some(
                            meta.creation_timestamp
                                .clone()
                                .unwrap_or_else(|| now.clone()),
                        ),
                        uid: Some(meta.uid.clone().unwrap_or_else(new_uid)),
                        ..Default::default()
                    };
                    stamp(&doc, &born)
                }
            };
            let entry = Entry {
                doc: stamped,
                source: doc,
                generation,
                file,
            };
            store.entries.insert(key, entry);
        }
        store
    }

    /// Builds the store from objects an API server holds. The server has
    /// given each its uid, creation time and generation; they are kept as
    /// they are. The path of each names where it came from, for `/status`.
    pub fn observed(
        objects: impl IntoIterator<Item = (ObjKey, Arc<Doc>, PathBuf)>,
        problems: Vec<Problem>,
    ) -> Store {
        let entries = objects
            .into_iter()
            .map(|(key, doc, file)| {
                let generation = doc.object.metadata().generation.unwrap_or(1).max(1);
                let entry = Entry {
                    doc: doc.clone(),
                    source: doc,
                    generation,
                    file,
                };
                (key, entry)
            })
            .collect();
        Store {
            entries,
            problems,
            sources: Vec::new(),
        }
    }

    /// The time an object is created at when it is first read.
    pub fn now() -> Time {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Time(k8s_openapi::jiff::Timestamp::from_second(secs as i64).unwrap_or_default())
    }

    pub fn get(&self, key: &ObjKey) -> Option<&Entry> {
        self.entries.get(key)
    }

    /// The entry of `key`, with the key as the store holds it.
    pub fn get_key_value(&self, key: &ObjKey) -> Option<(&ObjKey, &Entry)> {
        self.entries.get_key_value(key)
    }

    pub fn entries(&self) -> impl Iterator<Item = (&ObjKey, &Entry)> {
        self.entries.iter()
    }

    /// Every object of one kind, in key order.
    pub fn of_kind(&self, kind: Kind) -> impl Iterator<Item = (&ObjKey, &Entry)> {
        let start = ObjKey {
            kind,
            namespace: String::new(),
            name: String::new(),
        };
        self.entries
            .range(start..)
            .take_while(move |(k, _)| k.kind == kind)
    }

    pub fn lookup(&self, kind: Kind, namespace: &str, name: &str) -> Option<&Object> {
        let key = ObjKey {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
        };
        self.entries.get(&key).map(|e| &e.object)
    }

    /// A namespace's labels, including the `kubernetes.io/metadata.name` label
    /// Kubernetes sets on every namespace. Namespaces that are used but not
    /// declared exist with only that label.
    pub fn namespace_labels(&self, namespace: &str) -> BTreeMap<String, String> {
        let mut labels = match self.lookup(Kind::Namespace, "", namespace) {
            Some(Object::Namespace(ns)) => ns.metadata.labels.clone().unwrap_or_default(),
            _ => BTreeMap::new(),
        };
        labels.insert("kubernetes.io/metadata.name".into(), namespace.into());
        labels
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{documents, parse};

    fn build(previous: &Store, yaml: &str) -> Store {
        let docs = documents(yaml).unwrap();
        let parsed = docs
            .into_iter()
            .map(|d| ("f.yaml".into(), parse(d).unwrap()))
            .collect();
        Store::build(previous, parsed, vec![], &Store::now())
    }

    const ROUTE: &str = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec: {hostnames: [a.example.com]}\n";

    #[test]
    fn generation_follows_spec_changes_only() {
        let key = ObjKey {
            kind: Kind::HttpRoute,
            namespace: "default".into(),
            name: "r".into(),
        };
        let one = build(&Store::default(), ROUTE);
        assert_eq!(one.get(&key).unwrap().generation, 1);
        let reformatted = "kind: HTTPRoute\napiVersion: gateway.networking.k8s.io/v1\nmetadata:\n  name: r\n  labels: {x: y}\nspec:\n  hostnames:\n  - a.example.com\nstatus: {parents: []}\n";
        let same = build(&one, reformatted);
        assert_eq!(same.get(&key).unwrap().generation, 1);
        let changed = build(&same, &ROUTE.replace("a.example", "b.example"));
        assert_eq!(changed.get(&key).unwrap().generation, 2);
    }

    fn at(secs: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(secs).unwrap())
    }

    fn stamps(store: &Store, key: &ObjKey) -> (Time, String) {
        let meta = store.get(key).unwrap().object.metadata().clone();
        (meta.creation_timestamp.unwrap(), meta.uid.unwrap())
    }

    #[test]
    fn objects_are_created_when_first_read_and_keep_it_while_they_live() {
        let route = |name: &str, host: &str| {
            ROUTE
                .replace("name: r", &format!("name: {name}"))
                .replace("a.example.com", host)
        };
        let key = |name: &str| ObjKey {
            kind: Kind::HttpRoute,
            namespace: "default".into(),
            name: name.into(),
        };
        let read = |previous: &Store, yaml: &str, now: i64| {
            let parsed = documents(yaml)
                .unwrap()
                .into_iter()
                .map(|d| ("f.yaml".into(), parse(d).unwrap()))
                .collect();
            Store::build(previous, parsed, vec![], &at(now))
        };
        let one = read(&Store::default(), &route("b", "a.example.com"), 100);
        let (born, uid) = stamps(&one, &key("b"));
        assert_eq!(born, at(100));
        // Edited and joined by a newer object: it keeps its age and uid.
        let two = read(
            &one,
            &format!(
                "{}---\n{}",
                route("b", "c.example.com"),
                route("a", "a.example.com")
            ),
            200,
        );
        assert_eq!(stamps(&two, &key("b")), (at(100), uid.clone()));
        assert_eq!(stamps(&two, &key("a")).0, at(200));
        // Gone and back: a new object.
        let gone = read(&two, &route("a", "a.example.com"), 300);
        let back = read(&gone, &route("b", "a.example.com"), 400);
        let (again, new_uid) = stamps(&back, &key("b"));
        assert_eq!(again, at(400));
        assert_ne!(new_uid, uid);
    }

    #[test]
    fn duplicates_are_problems() {
        let store = build(&Store::default(), &format!("{ROUTE}---\n{ROUTE}"));
        assert_eq!(store.of_kind(Kind::HttpRoute).count(), 1);
        assert_eq!(store.problems.len(), 1);
    }
}
