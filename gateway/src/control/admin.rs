//! The gateway's admin endpoint: `/ready` (200 once a snapshot serves),
//! `/config_dump` (the running snapshot as JSON, certificates' keys left out)
//! and `/metrics` (Prometheus text).

use crate::{Gateway, GatewayError};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use axum::Router;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

pub fn router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route("/ready", get(ready))
        .route("/config_dump", get(config_dump))
        .route("/metrics", get(metrics))
        .with_state(gateway)
}

/// Binds `addr` and serves; returns the bound address and the serving task.
pub async fn serve(
    gateway: Arc<Gateway>,
    addr: SocketAddr,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), GatewayError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|cause| GatewayError::Admin { addr, cause })?;
    let bound = listener
        .local_addr()
        .map_err(|cause| GatewayError::Admin { addr, cause })?;
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router(gateway)).await {
            tracing::error!("admin endpoint failed: {e}");
        }
    });
    Ok((bound, task))
}

async fn ready(State(gw): State<Arc<Gateway>>) -> impl IntoResponse {
    match gw.current() {
        Some(s) => (StatusCode::OK, format!("ready {}\n", s.version)),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "no config yet\n".to_string(),
        ),
    }
}

async fn metrics(State(gw): State<Arc<Gateway>>) -> impl IntoResponse {
    (
        [("content-type", "text/plain; version=0.0.4")],
        gw.metrics.text(),
    )
}

async fn config_dump(State(gw): State<Arc<Gateway>>) -> impl IntoResponse {
    Json(dump(&gw).await)
}

/// The running snapshot, what is bound, and the last refusal, keys left out.
pub async fn dump(gw: &Gateway) -> serde_json::Value {
    let Some(s) = gw.current() else {
        return json!({"version": null, "config": null});
    };
    let mut config = serde_json::to_value(&s.config).unwrap_or_default();
    redact_keys(&mut config);
    let bound: Vec<String> = gw.bound().await.iter().map(ToString::to_string).collect();
    json!({
        "version": s.version,
        "bound": bound,
        "bindErrors": gw.bind_errors().await,
        "lastRejected": gw.last_rejected().map(|(version, error)| json!({"version": version, "error": error})),
        "controller": {"connected": gw.controller_connected()},
        "config": config,
    })
}

fn redact_keys(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            if map.contains_key("key_pem") {
                map.insert("key_pem".into(), json!("<redacted>"));
            }
            map.values_mut().for_each(redact_keys);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact_keys),
        _ => {}
    }
}
