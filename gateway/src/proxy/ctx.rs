//! What one request carries through the phases of `WeftProxy`
//! (`RequestCtx`), and what it leaves in logs, spans and metrics.

use crate::config::snapshot::CompiledRoute;
use crate::filters::forwarded::{MESH_SERVICE_NAME, SOURCE_CLUSTER_NAME, SOURCE_WORKLOAD_NAME};
use crate::filters::grpc::is_grpc;
use crate::filters::mirror::Copy;
use crate::route::select;
use crate::telemetry::records;
use crate::telemetry::trace::TraceContext;
use crate::telemetry::RequestRecord;
use crate::upstream::balancer::ClusterState;
use crate::upstream::deadline::Deadline;
use crate::upstream::retry::RetryState;
use pingora::proxy::Session;
use std::sync::Arc;
use weft_api::HttpFilter;

/// The destination service of a request refused as undeclared (Istio's
/// name for it).
pub const BLACKHOLE: &str = "BlackHoleCluster";

pub struct RequestCtx {
    pub(crate) started: std::time::Instant,
    /// Whether the snapshot the request loaded asks for access logs.
    pub(crate) access_log: bool,
    /// This hop of the request's trace (its span ID went upstream).
    pub(crate) trace: Option<TraceContext>,
    pub(crate) route: Option<Arc<CompiledRoute>>,
    pub(crate) backend: usize,
    pub(crate) cluster: Option<Arc<ClusterState>>,
    pub(crate) endpoint: Option<usize>,
    pub(crate) failed_endpoint: Option<usize>,
    pub(crate) retry: RetryState,
    /// The workload that answered, as its sidecar said.
    pub(crate) destination_workload: Option<String>,
    /// A host outside the config, sent on as plain HTTP: `host:port`, and
    /// where a captured connection was bound.
    pub(crate) passthrough: Option<(String, Option<std::net::SocketAddr>)>,
    /// The request's `x-request-id`, kept or made here.
    pub(crate) request_id: String,
    /// At a gateway: the client's address and the listener's scheme.
    pub(crate) edge: Option<(std::net::IpAddr, &'static str)>,
    /// The copy for the route's mirrors, sent once the body is whole.
    pub(crate) mirror: Option<Copy>,
    /// `timeouts.request`, enforced on the whole exchange.
    pub(crate) deadline: Option<Deadline>,
    /// The verified token (its subject goes in the access log).
    pub(crate) token: Option<crate::policy::jwt::Verified>,
    /// The authorization rule that allowed or refused the request.
    pub(crate) policy_rule: Option<std::sync::Arc<str>>,
    /// Why the access policy allowed or refused it (the metrics' reason).
    pub(crate) policy_decision: Option<&'static str>,
    /// Its place under the cluster's circuit breaker, held to the end.
    pub(crate) admission: Option<crate::upstream::breaker::Admission>,
    /// Envoy's response flags (`-` for none).
    pub(crate) response_flags: &'static str,
    /// The upstream connection closes after this request
    /// (`maxRequestsPerConnection`).
    pub(crate) last_on_connection: bool,
    /// The tightest rate limit that applied, for `x-ratelimit-*`.
    pub(crate) quota: Option<crate::policy::ratelimit::Quota>,
    /// A delay a fault injected (not counted in the request's timeout).
    pub(crate) injected_delay: std::time::Duration,
    /// The endpoint the request's session is pinned to (its first try).
    pub(crate) pinned: Option<usize>,
    /// The session the request carried.
    pub(crate) session: Option<super::affinity::Token>,
    /// The request's consistent-hashing key, and the cookie that gives a
    /// client the key it lacked.
    pub(crate) hash_key: Option<u64>,
    pub(crate) set_cookie: Option<String>,
    /// The proxy's cluster, from the snapshot (`Snapshot::home`); none
    /// before a snapshot is loaded.
    pub(crate) home: Option<Arc<str>>,
    /// Where connections to external hosts leave from (the snapshot's
    /// `egress_source`).
    pub(crate) egress_source: Option<std::net::IpAddr>,
    /// The request was for a host the mesh does not declare, and refused.
    pub(crate) undeclared: bool,
    /// The cluster of the host outside the mesh the request is for, from
    /// before its policy decides (refusals are counted too).
    pub(crate) external: Option<Arc<ClusterState>>,
}

impl RequestCtx {
    pub fn new() -> RequestCtx {
        RequestCtx {
            started: std::time::Instant::now(),
            access_log: false,
            trace: None,
            route: None,
            backend: 0,
            cluster: None,
            endpoint: None,
            failed_endpoint: None,
            retry: RetryState::default(),
            destination_workload: None,
            passthrough: None,
            request_id: String::new(),
            edge: None,
            mirror: None,
            deadline: None,
            token: None,
            policy_rule: None,
            policy_decision: None,
            admission: None,
            response_flags: "-",
            last_on_connection: false,
            quota: None,
            injected_delay: std::time::Duration::ZERO,
            pinned: None,
            session: None,
            hash_key: None,
            set_cookie: None,
            home: None,
            egress_source: None,
            undeclared: false,
            external: None,
        }
    }

    /// What logs and spans tell of this request.
    pub(super) fn hop<'a>(
        &'a self,
        session: &'a Session,
        trace: Option<&'a TraceContext>,
    ) -> records::Hop<'a> {
        records::Hop {
            started: self.started,
            host: select::request_host(session.req_header()),
            route: self.route.as_deref().map(|r| r.name.as_str()),
            cluster: self.cluster.as_deref().map(|c| c.name.as_str()),
            upstream: match (&self.cluster, self.endpoint) {
                (Some(c), Some(i)) => c.endpoints.get(i).copied(),
                _ => None,
            },
            trace,
            request_id: &self.request_id,
            subject: self.token.as_ref().and_then(|t| t.subject()),
            policy_rule: self.policy_rule.as_deref(),
            policy_decision: self.policy_decision,
        }
    }

    pub(super) fn backend_filters(&self) -> impl Iterator<Item = &HttpFilter> {
        let route = self.route.as_deref();
        let rule = route.into_iter().flat_map(|r| &r.filters);
        let backend = route
            .and_then(|r| r.backends.get(self.backend))
            .into_iter()
            .flat_map(|b| &b.filters);
        rule.chain(backend)
    }

    /// The proxy's cluster, for metrics and mesh peers.
    pub(crate) fn home(&self) -> &str {
        self.home
            .as_deref()
            .unwrap_or(crate::config::snapshot::UNKNOWN_CLUSTER)
    }

    /// The request as the metrics record it. Only a mesh peer (`peer`, its
    /// identity) may say which service it called and who it is.
    pub(super) fn record<'a>(
        &'a self,
        session: &'a Session,
        peer: Option<&'a str>,
        status: u16,
    ) -> RequestRecord<'a> {
        let headers = &session.req_header().headers;
        let told_service = told(headers, &MESH_SERVICE_NAME, peer.is_some());
        RequestRecord {
            source_principal: peer,
            destination_service: match (told_service, &self.cluster, &self.passthrough) {
                _ if self.undeclared => BLACKHOLE,
                (Some(told), Some(_), _) => told,
                (None, Some(c), _) => c.service.as_str(),
                (_, None, Some((host, _))) => host.as_str(),
                (_, None, None) => "unknown",
            },
            destination_principal: self
                .cluster
                .as_ref()
                .and_then(|c| c.tls.as_ref())
                .and_then(|t| t.principal.as_deref()),
            source_workload: told(headers, &SOURCE_WORKLOAD_NAME, peer.is_some()),
            source_cluster: told(headers, &SOURCE_CLUSTER_NAME, peer.is_some()),
            home: self.home(),
            // The endpoint's cluster, as the config says.
            destination_cluster: match (&self.cluster, self.endpoint) {
                (Some(c), Some(i)) => Some(
                    c.origins
                        .get(i)
                        .filter(|o| !o.is_empty())
                        .map_or(self.home(), String::as_str),
                ),
                _ => None,
            },
            destination_workload: self.destination_workload.as_deref(),
            protocol: if is_grpc(session.req_header()) {
                "grpc"
            } else {
                "http"
            },
            status,
            response_flags: self.response_flags,
            mutual_tls: peer.is_some(),
            duration_ms: self.started.elapsed().as_secs_f64() * 1000.0,
            request_bytes: session.body_bytes_read(),
            response_bytes: session.body_bytes_sent(),
            external: self.external.as_deref().map(|c| c.service.as_str()),
        }
    }
}

/// A header sent by a mesh peer (mutual TLS), as a label value.
pub(super) fn told<'a>(
    headers: &'a http::HeaderMap,
    name: &http::HeaderName,
    mesh: bool,
) -> Option<&'a str> {
    if !mesh {
        return None;
    }
    headers.get(name).and_then(|v| v.to_str().ok()).filter(|s| {
        s.len() <= 253
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    })
}

/// The trace context the request came with.
pub(super) fn incoming_traceparent(session: &Session) -> Option<&str> {
    session
        .req_header()
        .headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
}
