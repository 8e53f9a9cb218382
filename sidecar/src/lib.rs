//! `weft-sidecar` owns the reduced per-workload proxy, built on the engine of
//! `weft-gateway` rather than a copy of it. So far, the inbound side: mutual
//! TLS terminated with the workload's SPIFFE certificate (rotated with no
//! restart), client certificates required to chain to the trust bundle
//! (STRICT) or plaintext also accepted (PERMISSIVE), the caller's identity
//! passed to the application, which it reaches on its local port.

pub mod inbound;
