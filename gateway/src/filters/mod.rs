//! What a route does to a request beside sending it on: what every proxy
//! says of the client (`forwarded`), header modifiers,
//! redirects and rewrites (`headers`), CORS (`cors`), mirrors (`mirror`),
//! and the answers the gateway gives itself: gRPC statuses (`grpc`) and the
//! status of a failed request (`rescue`).

pub mod cors;
pub mod forwarded;
pub mod grpc;
pub mod headers;
pub mod mirror;
pub mod rescue;
