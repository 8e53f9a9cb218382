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
}
