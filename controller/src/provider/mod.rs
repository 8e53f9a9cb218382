//! Providers fill the store: a folder of YAML (standalone mode) and a
//! Kubernetes API server (`cluster`). Both feed the same store and the same
//! translator.

pub mod cluster;
pub mod folder;
