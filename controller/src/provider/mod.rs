//! Providers fill the store. Today: a folder of YAML (standalone mode). The
//! Kubernetes provider will feed the same store and the same translator.

pub mod folder;
