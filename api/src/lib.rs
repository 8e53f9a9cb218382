//! `weft-api` owns weft's data-plane model — the IR that the controller
//! computes and the proxies run — with its `validate()`, and the wire protocol
//! (protobuf over gRPC) that carries it from the controller to the proxies.
//!
//! It does no I/O and knows neither Kubernetes nor Pingora.

mod affinity;
mod cluster;
mod eastwest;
mod error;
mod ir;
pub mod peering;
mod policy;
mod resilience;
mod scope;
mod validate;
pub mod wire;

pub use error::ApiError;
pub use ir::*;
