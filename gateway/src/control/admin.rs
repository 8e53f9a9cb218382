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

/// Private keys, and the shared secrets (`oct` keys) of a JWKS given in
/// the config, become `<redacted>`.
fn redact_keys(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            if map.contains_key("key_pem") {
                map.insert("key_pem".into(), json!("<redacted>"));
            }
            if let Some(serde_json::Value::String(jwks)) = map.get_mut("Local") {
                *jwks = redact_secrets(jwks);
            }
            map.values_mut().for_each(redact_keys);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact_keys),
        _ => {}
    }
}

/// A JWKS document with the value of every `oct` key redacted; a text
/// that is not one is redacted whole.
fn redact_secrets(jwks: &str) -> String {
    let Ok(mut doc) = serde_json::from_str::<serde_json::Value>(jwks) else {
        return "<redacted>".into();
    };
    if let Some(keys) = doc.get_mut("keys").and_then(|k| k.as_array_mut()) {
        for key in keys.iter_mut().filter(|k| k["kty"] == "oct") {
            key["k"] = json!("<redacted>");
        }
    }
    doc.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_secrets_stay_out_of_dumps() {
        let mut v = json!({"keys": {"Local": r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"},{"kty":"EC","x":"pub"}]}"#}});
        redact_keys(&mut v);
        let text = v.to_string();
        assert!(!text.contains("c2VjcmV0") && text.contains("pub"), "{text}");
    }
}
