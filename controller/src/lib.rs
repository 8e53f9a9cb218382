//! `weft-controller` owns the control plane: providers that read Kubernetes
//! resources (a folder of YAML, or an API server), the store they fill, the pure
//! translation from resources to the IR of each gateway plus the status of
//! every resource, and the servers that hand both out — the gRPC config server
//! for proxies and the admin HTTP endpoint (`/status`) for people and tools —
//! and, on Kubernetes, leader election and status write-back.
//!
//! It never links Pingora: proxies learn everything through `weft-api`.

pub mod admin;
pub mod ca_secret;
pub mod cluster;
pub mod crds;
pub mod egress;
mod error;
pub mod inject;
pub mod multicluster;
pub mod peering;
pub mod policies;
pub mod preview;
pub mod provider;
pub mod provision;
pub mod resources;
pub mod runtime;
pub mod server;
pub mod status;
pub mod store;
pub mod tokenreview;
pub mod traffic_policy;
pub mod translate;
pub mod webhook;
pub mod workload;
pub mod yaml;

pub use error::ControllerError;

/// The GatewayClass `controllerName` weft owns.
pub const CONTROLLER_NAME: &str = "weft.dev/gateway-controller";
