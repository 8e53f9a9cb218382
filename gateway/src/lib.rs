//! `weft-gateway` owns the data-plane engine: a Pingora `ProxyHttp` built from
//! small phases (`proxy`), the snapshot it reads (`snapshot`, compiled from
//! the IR and swapped whole), matching and filters, endpoint balancing,
//! downstream TLS chosen by SNI, the accept loops that follow the snapshot's
//! ports, the config client that subscribes to the controller (`client`,
//! for any `ConfigTarget`), on-demand discovery of hosts (`discovery`), and
//! the admin endpoint (`/ready`, `/config_dump`, `/metrics`).
//!
//! It knows nothing of Kubernetes: its only input is `weft_api::GatewayConfig`.

mod access_log;
pub mod admin;
mod balancer;
pub mod client;
mod conn;
mod cors;
pub mod discovery;
mod error;
mod filters;
mod grpc;
mod hosts;
pub mod identity;
mod l4;
mod listener;
mod matcher;
mod mirror;
mod proxy;
mod records;
mod rescue;
mod retry;
mod routing;
mod snapshot;
pub mod telemetry;
mod tls;
pub mod trace;
mod upgrade;
mod upstream_tls;
mod verify;

pub use async_trait::async_trait;
pub use error::GatewayError;
pub use snapshot::Snapshot;
pub use tls::spiffe_id;
pub use verify::ServerVerifier;

use arc_swap::ArcSwapOption;
use pingora::apps::HttpServerOptions;
use pingora::server::configuration::ServerConf;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::Mutex;
use weft_api::GatewayConfig;

/// One gateway: the current snapshot and the sockets that serve it.
pub struct Gateway {
    snapshot: Arc<ArcSwapOption<Snapshot>>,
    pub metrics: Arc<telemetry::Metrics>,
    listeners: Mutex<listener::Listeners>,
    bind_errors: Mutex<Vec<String>>,
    /// The last snapshot refused: its version and why.
    rejected: std::sync::Mutex<Option<(String, String)>>,
    pub(crate) interest: Option<Arc<discovery::Interest>>,
}

impl Gateway {
    pub fn new() -> Arc<Self> {
        Gateway::build(telemetry::Metrics::new(Default::default()), None)
    }

    /// A gateway recording into `metrics`; with `interest`, a host its
    /// snapshot lacks is asked for on demand before the request is answered.
    pub fn build(
        metrics: telemetry::Metrics,
        interest: Option<Arc<discovery::Interest>>,
    ) -> Arc<Self> {
        let snapshot = Arc::new(ArcSwapOption::empty());
        let me = metrics.reporter();
        let spans = trace::Exporter::from_env(&format!("{}.{}", me.workload, me.namespace));
        let metrics = Arc::new(metrics);
        let conf = Arc::new(ServerConf::default());
        let mut proxy = pingora::proxy::http_proxy(
            &conf,
            proxy::WeftProxy {
                snapshot: snapshot.clone(),
                metrics: metrics.clone(),
                access_log: access_log::AccessLog::start(),
                interest: interest.clone(),
                spans,
            },
        );
        let mut options = HttpServerOptions::default();
        options.h2c = true;
        proxy.server_options = Some(options);
        Arc::new(Gateway {
            listeners: Mutex::new(listener::Listeners::new(
                Arc::new(proxy),
                snapshot.clone(),
                metrics.clone(),
            )),
            metrics,
            snapshot,
            bind_errors: Mutex::new(Vec::new()),
            rejected: std::sync::Mutex::new(None),
            interest,
        })
    }

    /// Validates and compiles `config`, swaps it in, and binds its ports.
    /// `Err` means the snapshot was refused and the previous one still serves;
    /// `Ok` carries the addresses that could not be bound.
    pub async fn apply(
        &self,
        version: String,
        config: GatewayConfig,
    ) -> Result<Vec<String>, GatewayError> {
        let snapshot = Arc::new(Snapshot::build(version, config)?);
        let mut listeners = self.listeners.lock().await;
        self.snapshot.store(Some(snapshot.clone()));
        let errors = listeners.reconcile(&snapshot).await;
        *self.bind_errors.lock().await = errors.clone();
        Ok(errors)
    }

    /// Records a snapshot that was refused, for `/config_dump`.
    pub fn reject(&self, version: String, error: String) {
        *self.rejected.lock().unwrap_or_else(|p| p.into_inner()) = Some((version, error));
    }

    /// The last snapshot refused: its version and why.
    pub fn last_rejected(&self) -> Option<(String, String)> {
        self.rejected
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn current(&self) -> Option<Arc<Snapshot>> {
        self.snapshot.load_full()
    }

    pub async fn bound(&self) -> Vec<SocketAddr> {
        self.listeners.lock().await.bound()
    }

    pub async fn bind_errors(&self) -> Vec<String> {
        self.bind_errors.lock().await.clone()
    }

    /// Closes every socket; open connections finish their current request.
    pub async fn shutdown(&self) {
        self.listeners.lock().await.shutdown();
    }
}
