use thiserror::Error;

#[derive(Debug, Error)]
pub enum CaError {
    #[error("invalid SPIFFE ID {0:?}")]
    SpiffeId(String),
    #[error("certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("invalid certificate signing request: {0}")]
    Csr(String),
    #[error("the request asks for {requested}, but the caller is {caller}")]
    IdentityMismatch { requested: String, caller: String },
    #[error("not authenticated: {0}")]
    Unauthenticated(String),
    #[error("{path}: {cause}")]
    State {
        path: std::path::PathBuf,
        cause: std::io::Error,
    },
    #[error("CA state: {0}")]
    BadState(String),
    #[error("TLS: {0}")]
    Tls(String),
}
