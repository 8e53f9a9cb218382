//! The store: every object the providers read, keyed by kind, namespace and
//! name, with the `metadata.generation` the API server would have given it.

use crate::resources::{Doc, Kind, ObjKey, Object, Parsed};
use std::collections::BTreeMap;
use std::ops::Deref;
use std::path::PathBuf;
use std::sync::Arc;

/// An object in the store: its document (shared with the provider's cache,
/// so building a store copies no objects) and what the store adds.
#[derive(Clone, Debug)]
pub struct Entry {
    pub doc: Arc<Doc>,
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
    pub fn build(previous: &Store, docs: Vec<(PathBuf, Parsed)>, problems: Vec<Problem>) -> Store {
        let mut store = Store {
            entries: BTreeMap::new(),
            problems,
            sources: Vec::new(),
        };
        for (file, parsed) in docs {
            let Parsed::Object { key, doc } = parsed else {
                continue;
            };
            let generation = match previous.entries.get(&key) {
                // The same parse of an unchanged file needs no comparison.
                Some(old) if Arc::ptr_eq(&old.doc, &doc) || old.spec == doc.spec => old.generation,
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
            let entry = Entry {
                doc,
                generation,
                file,
            };
            store.entries.insert(key, entry);
        }
        store
    }

    pub fn get(&self, key: &ObjKey) -> Option<&Entry> {
        self.entries.get(key)
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
        Store::build(previous, parsed, vec![])
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

    #[test]
    fn duplicates_are_problems() {
        let store = build(&Store::default(), &format!("{ROUTE}---\n{ROUTE}"));
        assert_eq!(store.of_kind(Kind::HttpRoute).count(), 1);
        assert_eq!(store.problems.len(), 1);
    }
}
