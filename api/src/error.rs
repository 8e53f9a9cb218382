use thiserror::Error;

/// Everything that can be wrong with an IR snapshot or its encoding.
#[derive(Debug, Error)]
pub enum ApiError {
    #[error("invalid snapshot: {0}")]
    Invalid(String),
    #[error("cannot decode snapshot: {0}")]
    Decode(#[from] serde_json::Error),
}
