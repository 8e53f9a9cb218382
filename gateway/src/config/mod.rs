//! The snapshot a request reads: a `GatewayConfig` compiled once, off the
//! request path, into host tables (`hosts`), route matchers (`matcher`),
//! certificates and cluster state (`snapshot`), and then only read.

pub mod hosts;
pub mod matcher;
pub mod snapshot;
