use std::path::PathBuf;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ControllerError {
    #[error("{path}: {message}")]
    Manifest { path: PathBuf, message: String },
    #[error("cannot read {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("cannot watch {path}: {cause}")]
    Watch { path: PathBuf, cause: notify::Error },
    #[error("cannot serve on {addr}: {cause}")]
    Serve {
        addr: std::net::SocketAddr,
        cause: std::io::Error,
    },
    #[error("the Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("the CA: {0}")]
    Ca(#[from] weft_ca::CaError),
    #[error("{0}")]
    Config(String),
}
