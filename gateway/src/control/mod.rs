//! The proxy's control side: the config client that subscribes to the
//! controller and swaps snapshots (`client`), the workload identity put
//! into every mutual-TLS cluster (`identity`), and the admin endpoint
//! (`admin`). It drives the `Gateway`; nothing on the request path imports
//! it.

pub mod admin;
pub mod client;
pub mod identity;
