//! `weft-ca` owns workload identity: the root and intermediate keys, issuing
//! SPIFFE X.509 SVIDs (`spiffe://<trust-domain>/ns/<ns>/sa/<sa>`) from CSRs,
//! the gRPC signing service, and workload authentication (today one-time join
//! tokens for standalone mode; Kubernetes service-account tokens plug into the
//! same `Authenticator` trait), the roster of identities that may hold
//! certificates, and the mutual TLS between proxies and the control plane
//! (`tls`). It knows nothing of routing.

mod auth;
mod authority;
mod error;
pub mod holder;
mod identity;
pub mod service;
pub mod tls;
pub mod workload;

pub use auth::{Authenticator, JoinTokens, Roster, JOIN_TOKEN_TTL};
pub use authority::{Authority, Issued};
pub use error::CaError;
pub use identity::SpiffeId;
