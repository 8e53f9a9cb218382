//! `weft-sidecar` owns the reduced per-workload proxy, built on the engine of
//! `weft-gateway` rather than a copy of it:
//!
//! - `inbound`: mutual TLS terminated with the workload's SPIFFE certificate
//!   (rotated with no restart), client certificates required to chain to the
//!   trust bundle (STRICT) or plaintext also accepted (PERMISSIVE), the
//!   caller's identity passed to the application on its local port;
//! - the outbound side: the workload's calls (HTTP_PROXY) routed by the
//!   controller's config (services, GAMMA routes, clusters with the
//!   identities expected of them), completed with the sidecar's certificate
//!   (`weft_gateway::control::identity`) and carried over mutual TLS to the
//!   destination's sidecar; hosts are discovered on demand and those
//!   outside the mesh pass through;
//! - `proxy`: one workload's sidecar — its identity manager, both sides,
//!   and the config it takes from the controller (`weft_gateway::control::client`);
//! - `run`: a sidecar with its config stream and admin port, as
//!   `weft sidecar run` runs it;
//! - `process`: a proxy as a process of its own: its control-plane
//!   arguments and the sidecar's run until SIGTERM (`weft-sidecar`,
//!   `weft sidecar run`);
//! - `admin`: its admin port (`/ready`, `/config_dump`, `/metrics`);
//! - `capture`: the iptables rules of transparent capture.

pub mod admin;
pub mod capture;
pub mod inbound;
pub mod process;
pub mod proxy;
pub mod run;

pub use proxy::{Identity, Sidecar};
