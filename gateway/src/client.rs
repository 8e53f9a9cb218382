//! The config client: subscribes to the controller, applies each snapshot it
//! sends, and answers ACK or NACK. When the controller goes away the gateway
//! keeps serving its last good snapshot and reconnects with backoff.

use crate::Gateway;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use weft_api::wire::{self, ConfigDiscoveryClient, ConfigRequest};

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Runs until the task is dropped. `controller` is `http://host:port`.
pub async fn run(gateway: Arc<Gateway>, controller: String, node: String) {
    let mut backoff = MIN_BACKOFF;
    loop {
        match session(&gateway, &controller, &node, &mut backoff).await {
            Ok(()) => tracing::warn!(%controller, "config stream ended; reconnecting"),
            Err(e) => tracing::warn!(%controller, "config stream failed: {e}; reconnecting"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn session(
    gateway: &Gateway,
    controller: &str,
    node: &str,
    backoff: &mut Duration,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut client = ConfigDiscoveryClient::connect(controller.to_string()).await?;
    let (tx, rx) = mpsc::channel(4);
    let version = gateway
        .current()
        .map(|s| s.version.clone())
        .unwrap_or_default();
    tx.send(ConfigRequest {
        node: node.to_string(),
        version,
        ..Default::default()
    })
    .await?;
    let mut responses = client
        .subscribe(ReceiverStream::new(rx))
        .await?
        .into_inner();
    *backoff = MIN_BACKOFF;
    while let Some(resp) = responses.message().await? {
        let result = match wire::decode(&resp.snapshot) {
            Ok(config) => gateway
                .apply(resp.version.clone(), config)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = &result {
            gateway.reject(resp.version.clone(), e.clone());
        }
        let current = gateway
            .current()
            .map(|s| s.version.clone())
            .unwrap_or_default();
        let reply = match result {
            Ok(bind_errors) => {
                tracing::info!(version = %resp.version, "applied config");
                ConfigRequest {
                    node: node.to_string(),
                    version: current,
                    response_nonce: resp.nonce,
                    error: String::new(),
                    bind_errors,
                }
            }
            Err(error) => {
                tracing::error!(version = %resp.version, "refused config: {error}");
                ConfigRequest {
                    node: node.to_string(),
                    version: current,
                    response_nonce: resp.nonce,
                    error,
                    bind_errors: gateway.bind_errors().await,
                }
            }
        };
        tx.send(reply).await?;
    }
    Ok(())
}
