//! The config client: subscribes to the controller, applies each snapshot it
//! sends, and answers ACK or NACK. When the controller goes away the proxy
//! keeps serving its last good snapshot and reconnects with backoff.
//!
//! It drives any `ConfigTarget`: a gateway, or a sidecar (whose snapshot
//! holds both its sides). A target with an `Interest` also sends the hosts
//! its proxy asks for, and learns which hosts each snapshot answers.
//!
//! The stream is mutual TLS (`weft_ca::tls`): the proxy presents its
//! workload certificate, and the controller must prove the control plane's
//! identity under the trust bundle the proxy was given. Before its first
//! certificate a proxy does not dial.

use crate::route::discovery::Interest;
use crate::Gateway;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use weft_api::wire::{self, ConfigDiscoveryClient, ConfigRequest};
use weft_ca::workload::Svids;
use weft_ca::SpiffeId;

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What a config stream configures.
#[async_trait::async_trait]
pub trait ConfigTarget: Send + Sync {
    /// The version running now; empty before the first snapshot.
    fn running_version(&self) -> String;
    /// Decodes, validates and applies a snapshot. `Err` refuses it (the
    /// running one stays, the refusal is recorded); `Ok` carries the
    /// addresses that could not be bound.
    async fn apply_snapshot(&self, version: String, snapshot: &[u8])
        -> Result<Vec<String>, String>;
    async fn bind_errors(&self) -> Vec<String>;
    /// The hosts asked for on demand, when this target has them.
    fn interest(&self) -> Option<Arc<Interest>> {
        None
    }
    /// The config stream came up (`true`) or went down.
    fn connected(&self, up: bool);
}

/// The config a target accepted last, with its version: kept to answer
/// `running_version` and to apply again when something beside the config
/// changes (a new certificate).
pub struct Running<C>(std::sync::Mutex<Option<(String, C)>>);

impl<C: Clone> Running<C> {
    pub fn new() -> Self {
        Running(std::sync::Mutex::new(None))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(String, C)>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self) -> Option<(String, C)> {
        self.lock().clone()
    }

    /// The version; empty before the first config.
    pub fn version(&self) -> String {
        self.lock()
            .as_ref()
            .map(|(v, _)| v.clone())
            .unwrap_or_default()
    }

    pub fn set(&self, version: String, config: C) {
        *self.lock() = Some((version, config));
    }
}

impl<C: Clone> Default for Running<C> {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait::async_trait]
impl ConfigTarget for Gateway {
    fn running_version(&self) -> String {
        self.current()
            .map(|s| s.version.clone())
            .unwrap_or_default()
    }

    async fn apply_snapshot(
        &self,
        version: String,
        snapshot: &[u8],
    ) -> Result<Vec<String>, String> {
        let result = match wire::decode(snapshot) {
            Ok(config) => self
                .apply(version.clone(), config)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = &result {
            self.reject(version, e.clone());
        }
        result
    }

    async fn bind_errors(&self) -> Vec<String> {
        Gateway::bind_errors(self).await
    }

    fn interest(&self) -> Option<Arc<Interest>> {
        self.interest.clone()
    }

    fn connected(&self, up: bool) {
        self.set_controller_connected(up);
    }
}

/// How a proxy reaches its controller.
#[derive(Clone, Debug)]
pub struct Dial {
    /// The config server, `host:port`.
    pub addr: String,
    /// The identity the server must prove (`SpiffeId::control_plane`).
    pub server: SpiffeId,
    /// The roots the server's certificate must chain to.
    pub bundle: Vec<String>,
    /// The proxy's own certificates, presented to the server.
    pub svids: Svids,
}

/// Runs until the task is dropped.
pub async fn run(target: Arc<dyn ConfigTarget>, dial: Dial, node: String) {
    let mut backoff = MIN_BACKOFF;
    let controller = dial.addr.clone();
    loop {
        let ended = session(target.as_ref(), &dial, &node, &mut backoff).await;
        target.connected(false);
        match ended {
            Ok(()) => tracing::warn!(%controller, "config stream ended; reconnecting"),
            Err(e) => tracing::warn!(%controller, "config stream failed: {e}; reconnecting"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn session(
    target: &dyn ConfigTarget,
    dial: &Dial,
    node: &str,
    backoff: &mut Duration,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut svids = dial.svids.clone();
    svids.wait_for(Option::is_some).await?;
    let tls = weft_ca::tls::client_config(Some(svids), &dial.bundle)?;
    let channel = weft_ca::tls::channel(&dial.addr, &dial.server, tls)?;
    let mut client = ConfigDiscoveryClient::new(channel);
    let interest = target.interest();
    let hosts = || interest.as_ref().map(|i| i.hosts()).unwrap_or_default();
    let (tx, rx) = mpsc::channel(4);
    tx.send(ConfigRequest {
        node: node.to_string(),
        version: target.running_version(),
        hosts: hosts(),
        ..Default::default()
    })
    .await?;
    let mut responses = client
        .subscribe(ReceiverStream::new(rx))
        .await?
        .into_inner();
    *backoff = MIN_BACKOFF;
    target.connected(true);
    loop {
        let asked = async {
            match &interest {
                Some(i) => i.asked().await,
                None => std::future::pending().await,
            }
        };
        let resp = tokio::select! {
            resp = responses.message() => match resp? {
                Some(resp) => resp,
                None => return Ok(()),
            },
            () = asked => {
                tx.send(ConfigRequest {
                    node: node.to_string(),
                    version: target.running_version(),
                    hosts: hosts(),
                    ..Default::default()
                })
                .await?;
                continue;
            }
        };
        let result = target
            .apply_snapshot(resp.version.clone(), &resp.snapshot)
            .await;
        let mut reply = ConfigRequest {
            node: node.to_string(),
            version: target.running_version(),
            response_nonce: resp.nonce,
            hosts: hosts(),
            ..Default::default()
        };
        match result {
            Ok(bind_errors) => {
                tracing::info!(version = %resp.version, "applied config");
                if let Some(i) = &interest {
                    i.answered(resp.hosts);
                }
                reply.bind_errors = bind_errors;
            }
            Err(error) => {
                tracing::error!(version = %resp.version, "refused config: {error}");
                reply.error = error;
                reply.bind_errors = target.bind_errors().await;
            }
        }
        tx.send(reply).await?;
    }
}
