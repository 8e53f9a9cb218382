//! `weft-gateway` owns the data-plane engine: a Pingora `ProxyHttp` whose
//! phases (`proxy`, the request's journey) call into rooms by concern, each
//! importing only the rooms below it:
//!
//! - `control`: the config client, the workload identity, the admin endpoint;
//! - `listen`: accept loops, connection facts, downstream TLS, L4 forwarding;
//! - `route`: host and route selection, on-demand discovery of hosts;
//! - `config`: the snapshot compiled from the IR (hosts, matchers, clusters);
//! - `filters`: header modifiers, redirects, rewrites, CORS, mirrors, and
//!   the answers the gateway gives itself;
//! - `policy`: who may use a route (JWT authentication, authorization),
//!   compiled into the snapshot and checked before any backend;
//! - `upstream`: balancing, endpoint health (outlier detection, active
//!   checks), circuit breaking, connectors and verifiers, retries;
//! - `telemetry`: metrics, traces, access logs;
//!
//! and two leaves every room may use: `pki` (certificates) and `error`.
//! `Gateway` (here) holds one snapshot and the sockets that serve it.
//!
//! It knows nothing of Kubernetes: its only input is `weft_api::GatewayConfig`.

pub mod config;
pub mod control;
mod error;
pub mod filters;
pub mod listen;
mod pki;
pub mod policy;
mod proxy;
pub mod route;
pub mod telemetry;
pub mod upstream;

pub use async_trait::async_trait;
pub use config::snapshot::Snapshot;
pub use error::GatewayError;
pub use upstream::verify::ServerVerifier;

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
    listeners: Mutex<listen::listener::Listeners<proxy::Proxy>>,
    bind_errors: Mutex<Vec<String>>,
    /// The last snapshot refused: its version and why.
    rejected: std::sync::Mutex<Option<(String, String)>>,
    /// Whether the config stream to the controller is up.
    controller_connected: std::sync::atomic::AtomicBool,
    pub(crate) interest: Option<Arc<route::discovery::Interest>>,
    /// Endpoint health, breakers and rate-limit buckets, kept across
    /// snapshots.
    kept: config::kept::Kept,
    /// Active health checks of the current snapshot's clusters.
    probes: upstream::probe::Probes,
}

impl Gateway {
    pub fn new() -> Arc<Self> {
        Gateway::build(telemetry::Metrics::new(Default::default()), None)
    }

    /// A gateway recording into `metrics`; with `interest`, a host its
    /// snapshot lacks is asked for on demand before the request is answered.
    pub fn build(
        metrics: telemetry::Metrics,
        interest: Option<Arc<route::discovery::Interest>>,
    ) -> Arc<Self> {
        let snapshot = Arc::new(ArcSwapOption::empty());
        let me = metrics.reporter();
        let spans =
            telemetry::trace::Exporter::from_env(&format!("{}.{}", me.workload, me.namespace));
        let metrics = Arc::new(metrics);
        // HTTP/1 header names go on lowercase, as Envoy and HAProxy send
        // them: keeping each name's case costs a second map per header.
        pingora::protocols::http::v1::set_preserve_header_case(false);
        let conf = Arc::new(ServerConf::default());
        let mut proxy = pingora::proxy::http_proxy(
            &conf,
            proxy::WeftProxy {
                snapshot: snapshot.clone(),
                metrics: metrics.clone(),
                access_log: telemetry::access_log::AccessLog::start(),
                mirrors: filters::mirror::Mirrors::new(metrics.clone()),
                interest: interest.clone(),
                spans,
            },
        );
        let mut options = HttpServerOptions::default();
        options.h2c = true;
        proxy.server_options = Some(options);
        Arc::new(Gateway {
            listeners: Mutex::new(listen::listener::Listeners::new(
                Arc::new(proxy),
                snapshot.clone(),
                metrics.clone(),
            )),
            metrics,
            snapshot,
            bind_errors: Mutex::new(Vec::new()),
            rejected: std::sync::Mutex::new(None),
            controller_connected: Default::default(),
            interest,
            kept: Default::default(),
            probes: Default::default(),
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
        let snapshot = Arc::new(Snapshot::build_in(version, config, &self.kept)?);
        let mut listeners = self.listeners.lock().await;
        self.snapshot.store(Some(snapshot.clone()));
        let names: std::collections::HashSet<&str> =
            snapshot.clusters.iter().map(|c| c.name.as_str()).collect();
        self.kept.health.retain(|name| names.contains(name));
        self.probes.follow(&snapshot);
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

    /// Whether the config stream to the controller is up now.
    pub fn controller_connected(&self) -> bool {
        self.controller_connected
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Records whether the config stream to the controller is up.
    pub fn set_controller_connected(&self, up: bool) {
        self.controller_connected
            .store(up, std::sync::atomic::Ordering::Relaxed);
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
