//! The controller's admin endpoint: `GET /ready` says whether it has read
//! its resources and published; `GET /status` lists every resource read,
//! with its status as the Kubernetes API would show it, the problems met
//! reading the manifests, and each file read with a digest of the content
//! loaded.

use crate::runtime::Published;
use crate::ControllerError;
use axum::extract::State;
use axum::response::Json;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub fn router(state: watch::Receiver<Arc<Published>>) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/ready", get(ready))
        .with_state(state)
}

pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ControllerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|cause| ControllerError::Serve { addr, cause })
}

/// Ready once the first translation is published (on Kubernetes, once
/// every watcher has listed): 200, else 503.
async fn ready(State(state): State<watch::Receiver<Arc<Published>>>) -> axum::http::StatusCode {
    if state.borrow().items.is_empty() {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    } else {
        axum::http::StatusCode::OK
    }
}

async fn status(State(state): State<watch::Receiver<Arc<Published>>>) -> Json<Value> {
    let published = state.borrow().clone();
    Json(json!({
        "items": *published.items,
        "problems": published.problems,
        "files": published.sources,
    }))
}
