//! Reaching a backend: a cluster's endpoints and the choice among them
//! (`balancer`), their health (`health`: outlier detection; `probe`: active
//! checks) and the bounds on what is sent them (`breaker`), TLS and mutual TLS originated to them (`connector`,
//! checked by `verify`), retries and their budget (`retry`), the request
//! deadline that cuts a trickling answer (`deadline`), the
//! connections upgrades (WebSocket) start on (`upgrade`), and tunnels to
//! other networks' endpoints through east-west gateways (`tunnel`, over
//! `h2stream`), and hosts outside the mesh resolved by name (`external`).

pub mod balancer;
pub mod breaker;
pub mod connector;
pub mod deadline;
pub mod external;
pub mod h2stream;
pub mod health;
pub mod maglev;
pub mod probe;
pub mod retry;
pub mod tunnel;
pub mod upgrade;
pub mod verify;
