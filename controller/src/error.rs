use std::path::PathBuf;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ControllerError {
    #[error("{path}: {message}")]
    Manifest { path: PathBuf, message: String },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot watch {path}: {source}")]
    Watch {
        path: PathBuf,
        source: notify::Error,
    },
    #[error("cannot serve on {addr}: {source}")]
    Serve {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}
