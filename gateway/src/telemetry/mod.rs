//! What the proxy tells of its traffic: Istio's metrics (`metrics`), OTLP
//! spans (`trace`), JSON access-log lines (`access_log`), and what a
//! finished request leaves in the last two (`records`).

pub mod access_log;
mod egress;
pub mod metrics;
pub mod records;
mod series;
mod told;
pub mod trace;
pub mod tunnels;

pub use metrics::{ByteCounters, Metrics, Reporter, RequestRecord};
