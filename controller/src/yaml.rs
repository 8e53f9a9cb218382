//! Manifests read within bounds: a file larger than `MAX_FILE_BYTES` is
//! refused before it is read (by the providers), and a document is built
//! node by node against
//! a budget, so that YAML aliases cannot expand a small file into billions
//! of nodes or gigabytes of text (a "billion laughs" file). serde_yaml
//! already stops an alias explosion counted in events; the budget also
//! stops one counted in bytes (a long anchored string aliased many times),
//! before anything is allocated for it.

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::cell::Cell;
use std::fmt;

/// The largest manifest file read.
pub const MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;
/// Nodes (values, keys included) a file's documents may hold in all.
const MAX_NODES: usize = 2_000_000;
/// Bytes of strings a file's documents may hold in all.
const MAX_STRING_BYTES: usize = 64 * 1024 * 1024;

/// What is left of a file's budget.
pub struct Budget {
    nodes: Cell<usize>,
    bytes: Cell<usize>,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            nodes: Cell::new(MAX_NODES),
            bytes: Cell::new(MAX_STRING_BYTES),
        }
    }
}

impl Budget {
    fn spend<E: serde::de::Error>(&self, bytes: usize) -> Result<(), E> {
        let nodes = self.nodes.get().checked_sub(1);
        let left = self.bytes.get().checked_sub(bytes);
        match (nodes, left) {
            (Some(n), Some(b)) => {
                self.nodes.set(n);
                self.bytes.set(b);
                Ok(())
            }
            _ => Err(E::custom(format!(
                "the file expands to more than {MAX_NODES} nodes or {} MiB of text (YAML aliases?)",
                MAX_STRING_BYTES >> 20
            ))),
        }
    }
}

/// The YAML documents of `text`, each within what is left of `budget`.
pub fn documents(text: &str, budget: &Budget) -> Result<Vec<Value>, String> {
    let mut docs = Vec::new();
    for de in serde_yaml::Deserializer::from_str(text) {
        let value = Seed(budget).deserialize(de).map_err(|e| e.to_string())?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

/// Builds a `serde_json::Value`, spending the budget on every node.
#[derive(Clone, Copy)]
struct Seed<'b>(&'b Budget);

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML value")
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Value, E> {
        self.0.spend(0)?;
        Ok(Value::Null)
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Value, E> {
        self.0.spend(0)?;
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Value, E> {
        self.0.spend(0)?;
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Value, E> {
        self.0.spend(0)?;
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        self.0.spend(0)?;
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Value, E> {
        self.0.spend(v.len())?;
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Value, E> {
        self.0.spend(v.len())?;
        Ok(Value::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.0.spend(0)?;
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(self)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.0.spend(0)?;
        let mut out = Map::new();
        while let Some(key) = map.next_key_seed(self)? {
            let key = match key {
                Value::String(s) => s,
                other => other.to_string(),
            };
            let value = map.next_value_seed(self)?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_documents_read_as_before() {
        let text = "a: 1\nb: [x, {c: true}]\nd: &v hello\ne: *v\n---\nf: null\n";
        let docs = documents(text, &Budget::default()).unwrap();
        assert_eq!(
            docs[0],
            serde_json::json!({"a": 1, "b": ["x", {"c": true}], "d": "hello", "e": "hello"})
        );
        assert_eq!(docs.len(), 2);
    }

    #[test]
    fn a_long_string_aliased_many_times_is_refused() {
        // About 1 MB of text that would expand to about 80 GB.
        let long = "x".repeat(500_000);
        let aliases = "*s,".repeat(160_000);
        let text = format!("s: &s {long}\nt: [{aliases}]\n");
        let err = documents(&text, &Budget::default()).unwrap_err();
        assert!(err.contains("expands to more than"), "{err}");
    }
}
