//! A sidecar's admin port: `/ready` (200 once both sides serve), `/metrics`
//! (Prometheus text, inbound as reporter `destination` and outbound as
//! `source`), and `/config_dump` (its identity and certificate, the running
//! version, and each side's snapshot with keys left out).

use crate::Sidecar;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use axum::Router;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::UNIX_EPOCH;
use tokio::net::TcpListener;

pub fn router(sidecar: Arc<Sidecar>) -> Router {
    Router::new()
        .route("/ready", get(ready))
        .route("/config_dump", get(config_dump))
        .route("/metrics", get(metrics))
        .with_state(sidecar)
}

/// Binds `addr` and serves; returns the bound address and the serving task.
pub async fn serve(
    sidecar: Arc<Sidecar>,
    addr: SocketAddr,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router(sidecar)).await {
            tracing::error!("sidecar admin endpoint failed: {e}");
        }
    });
    Ok((bound, task))
}

async fn ready(State(s): State<Arc<Sidecar>>) -> impl IntoResponse {
    match (
        s.running(),
        s.svid(),
        s.inbound.current(),
        s.outbound.current(),
    ) {
        (Some((version, _)), Some(_), Some(_), Some(_)) => {
            (StatusCode::OK, format!("ready {version}\n"))
        }
        (None, ..) => (StatusCode::SERVICE_UNAVAILABLE, "no config yet\n".into()),
        (_, None, ..) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "no certificate yet\n".into(),
        ),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "starting\n".into()),
    }
}

async fn metrics(State(s): State<Arc<Sidecar>>) -> impl IntoResponse {
    (
        [("content-type", "text/plain; version=0.0.4")],
        s.outbound.metrics.text(),
    )
}

async fn config_dump(State(s): State<Arc<Sidecar>>) -> impl IntoResponse {
    let certificate = s.svid().map(|svid| {
        json!({
            "spiffeId": svid.id.to_string(),
            "notAfterUnix": svid.not_after.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            "renewals": svid.renewals,
        })
    });
    Json(json!({
        "identity": s.id.to_string(),
        "version": s.running().map(|(v, _)| v),
        "certificate": certificate,
        "inbound": weft_gateway::control::admin::dump(&s.inbound).await,
        "outbound": weft_gateway::control::admin::dump(&s.outbound).await,
    }))
}
