//! The snapshot a request reads: a `GatewayConfig` compiled once, off the
//! request path, into host tables (`hosts`), route matchers (`matcher`),
//! certificates and cluster state (`snapshot`), and then only read; with
//! what a proxy keeps from one snapshot to the next (`kept`).

pub mod hosts;
pub mod kept;
pub mod matcher;
pub mod snapshot;
