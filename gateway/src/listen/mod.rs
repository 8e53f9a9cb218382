//! Accepting connections: the accept loops that follow the snapshot's
//! ports (`listener`), what each connection carries to the request phases
//! (`conn`), downstream TLS (`tls`), and TCP and TLS listeners that forward
//! whole connections (`l4`, after reading a TLS client's hello: `hello`),
//! and an east-west gateway's tunnels from other networks (`tunnel`).
//! Every accept loop runs on each of the data plane's threads (`workers`).

pub mod conn;
pub mod header_clock;
pub mod hello;
pub mod l4;
pub mod listener;
pub mod tls;
pub mod tunnel;
pub mod workers;
