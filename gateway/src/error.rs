use thiserror::Error;

#[derive(Debug, Error)]
pub enum GatewayError {
    /// A snapshot that cannot be served; the proxy NACKs it.
    #[error("invalid snapshot: {0}")]
    Snapshot(String),
    #[error("cannot reach the controller at {addr}: {message}")]
    Controller { addr: String, message: String },
    #[error("cannot serve the admin endpoint on {addr}: {cause}")]
    Admin {
        addr: std::net::SocketAddr,
        cause: std::io::Error,
    },
}
