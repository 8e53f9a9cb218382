//! Accepting connections: the accept loops that follow the snapshot's
//! ports (`listener`), what each connection carries to the request phases
//! (`conn`), downstream TLS (`tls`), and TCP and TLS listeners that forward
//! whole connections (`l4`, after reading a TLS client's hello: `hello`),
//! an east-west gateway's tunnels from other networks (`tunnel`), an
//! egress gateway's TLS and TCP ports (`egress`), and the TLS a sidecar's
//! workload does itself (`outbound`).
//! Every accept loop runs on each of the data plane's threads (`workers`).

pub mod conn;
pub mod egress;
pub mod header_clock;
pub mod hello;
pub mod l4;
pub mod listener;
pub mod outbound;
pub mod tls;
pub mod tunnel;
pub mod workers;
