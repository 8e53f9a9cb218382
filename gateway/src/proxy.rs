//! `WeftProxy`: the gateway's Pingora `ProxyHttp`. Each phase is a short
//! step over the snapshot the request loaded once when it arrived:
//!
//! - `request_filter` makes the request canonical (`crate::route::normalize`:
//!   400 for what cannot be), then routes: port → listener (by Host; by SNI for TLS, with
//!   421 when the two disagree) → virtual host → first matching route. It
//!   answers on its own what needs no backend: 404 no route, redirects, 500
//!   for a rule whose backends are all invalid.
//! - `upstream_peer` picks an endpoint of the chosen backend's cluster; 503
//!   when the cluster has none.
//! - `upstream_request_filter` applies request header filters and rewrites.
//! - `response_filter` applies response header filters.
//! - `fail_to_connect` retries a failed connection on another endpoint.
//! - `fail_to_proxy` maps failures to status codes (`crate::filters::rescue`).
//! - `logging` releases the endpoint for least-request balancing.
//!
//! What the gateway answers itself, a gRPC caller gets as a gRPC status
//! (`crate::filters::grpc`).

use crate::config::snapshot::{CompiledRoute, Snapshot};
use crate::filters::forwarded::{self, MESH_SERVICE, PEER_WORKLOAD, SOURCE_WORKLOAD};
use crate::filters::headers;
use crate::filters::mirror::{Copy, Mirrors};
use crate::listen::conn::ConnInfo;
use crate::route::normalize;
use crate::route::select::{self, Decision};
use crate::telemetry::records;
use crate::telemetry::trace::TraceContext;
use crate::upstream::balancer::ClusterState;
use crate::upstream::deadline::Deadline;
use crate::upstream::retry::{Failure, Request, RetryState, Verdict};
use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, ProxyWarnLogContext, Session};
use std::sync::Arc;
use std::time::Duration;
use weft_api::HttpFilter;

/// How long a request for an unknown host waits for the controller's answer.
const DISCOVERY_WAIT: Duration = Duration::from_secs(2);
/// A header sent by a mesh peer (mutual TLS), as a label value.
fn told<'a>(headers: &'a http::HeaderMap, name: &str, mesh: bool) -> Option<&'a str> {
    headers
        .get(name)
        .filter(|_| mesh)
        .and_then(|v| v.to_str().ok())
        .filter(|s| {
            s.len() <= 253
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        })
}

/// The gateway's HTTP server: Pingora's proxy running `WeftProxy`.
pub type Proxy = pingora::proxy::HttpProxy<WeftProxy>;

pub struct WeftProxy {
    pub snapshot: Arc<ArcSwapOption<Snapshot>>,
    pub metrics: Arc<crate::telemetry::Metrics>,
    pub access_log: crate::telemetry::access_log::AccessLog,
    /// Where RequestMirror copies go.
    pub mirrors: Arc<Mirrors>,
    /// Hosts asked for on demand (a sidecar's outbound side).
    pub interest: Option<Arc<crate::route::discovery::Interest>>,
    /// Where spans go, when a collector is configured.
    pub spans: Option<crate::telemetry::trace::Exporter>,
}

fn incoming_traceparent(session: &Session) -> Option<&str> {
    session
        .req_header()
        .headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
}

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
}

impl RequestCtx {
    /// What logs and spans tell of this request.
    fn hop<'a>(
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
        }
    }

    fn backend_filters(&self) -> impl Iterator<Item = &HttpFilter> {
        let route = self.route.as_deref();
        let rule = route.into_iter().flat_map(|r| &r.filters);
        let backend = route
            .and_then(|r| r.backends.get(self.backend))
            .into_iter()
            .flat_map(|b| &b.filters);
        rule.chain(backend)
    }
}

async fn respond(session: &mut Session, status: u16, location: Option<String>) -> Result<bool> {
    if status >= 400 && crate::filters::grpc::is_grpc(session.req_header()) {
        let resp = crate::filters::grpc::error_response(status)?;
        session.write_response_header(Box::new(resp), true).await?;
        return Ok(true);
    }
    let mut resp = ResponseHeader::build(status, Some(2))?;
    resp.insert_header(http::header::CONTENT_LENGTH, "0")?;
    if let Some(l) = location {
        resp.insert_header(http::header::LOCATION, l)?;
    }
    session.write_response_header(Box::new(resp), true).await?;
    Ok(true)
}

#[async_trait]
impl ProxyHttp for WeftProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
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
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        // Canonical before anything reads it, and sent on that way.
        if let Err(why) = canonical(session) {
            tracing::debug!(?why, "request refused");
            return respond(session, 400, None).await;
        }
        let Some(mut snapshot) = self.snapshot.load_full() else {
            return respond(session, 503, None).await;
        };
        let conn = ConnInfo::of(session.digest());
        let port = conn.map(|c| c.port).or_else(|| {
            session
                .server_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.port())
        });
        let req = session.req_header();
        let arrival = select::Arrival {
            port,
            sni: conn.and_then(|c| c.sni.as_deref()),
            original_port: conn.and_then(|c| c.original_dst).map(|a| a.port()),
        };
        let mut decision = select::decide(&snapshot, arrival, req);
        if let (Decision::UnknownHost { host, .. }, Some(interest)) = (&decision, &self.interest) {
            if interest.discover(host, DISCOVERY_WAIT).await {
                if let Some(newer) = self.snapshot.load_full() {
                    snapshot = newer;
                    decision = select::decide(&snapshot, arrival, req);
                }
            }
        }
        ctx.access_log = snapshot.config.access_log;
        ctx.request_id = forwarded::request_id(req);
        ctx.edge = port
            .and_then(|p| snapshot.ports.get(&p))
            .filter(|t| !t.sidecar)
            .and_then(|t| {
                let addr = conn?.client?.ip();
                let scheme = match t.protocol {
                    weft_api::Protocol::Https | weft_api::Protocol::Tls => "https",
                    weft_api::Protocol::Http | weft_api::Protocol::Tcp => "http",
                };
                Some((addr, scheme))
            });
        let (route, backend, cluster) = match decision {
            Decision::Forward {
                route,
                backend,
                cluster,
            } => (route, backend, cluster),
            Decision::UnknownHost {
                host,
                passthrough: true,
            } => {
                ctx.passthrough = Some((host, conn.and_then(|c| c.original_dst)));
                return Ok(false);
            }
            Decision::UnknownHost { .. } => return respond(session, 404, None).await,
            Decision::Respond(status, location) => return respond(session, status, location).await,
            Decision::Preflight(headers) => {
                let mut resp = ResponseHeader::build(204, Some(headers.len()))?;
                for (name, value) in headers {
                    resp.append_header(name, value)?;
                }
                session.write_response_header(Box::new(resp), true).await?;
                return Ok(true);
            }
        };
        let mirrored: Vec<_> = route
            .mirrors
            .iter()
            .filter(|(_, percent)| *percent >= 100.0 || rand::random::<f64>() * 100.0 < *percent)
            .map(|(cluster, _)| cluster.clone())
            .collect();
        if !mirrored.is_empty() {
            let head = mirror_head(session, ctx, &route)?;
            let limit = snapshot.config.limits.mirror_body_bytes;
            ctx.mirror = Some(Copy::new(mirrored, head, limit as usize));
        }
        cluster.budget.start();
        ctx.retry.deadline = route
            .timeouts
            .request_ms
            .map(|ms| ctx.started + Duration::from_millis(ms));
        // A tunnel outlives the request that opened it.
        if !session.is_upgrade_req() {
            ctx.deadline = ctx.retry.deadline.map(Deadline::start);
        }
        // Keep the body for a retry (Pingora buffers a bounded amount); an
        // upgrade's "body" is the tunnel, never replayed.
        if !session.is_upgrade_req() {
            session.enable_retry_buffering();
        }
        ctx.backend = backend;
        ctx.cluster = Some(cluster);
        ctx.route = Some(route);
        Ok(false)
    }

    /// The body streams to the backend; a copy goes to the route's mirrors
    /// once it is whole.
    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(copy) = ctx.mirror.as_mut() {
            if let Some(chunk) = body {
                copy.push(chunk);
            }
            if end_of_stream {
                if let Some(copy) = ctx.mirror.take() {
                    self.mirrors.send(copy);
                }
            }
        }
        Ok(())
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        if let Some((host, original_dst)) = &ctx.passthrough {
            return passthrough_peer(host, *original_dst).await;
        }
        let cluster = ctx
            .cluster
            .as_ref()
            .ok_or_else(|| Error::explain(HTTPStatus(500), "no cluster"))?;
        if let Some(previous) = ctx.endpoint.take() {
            cluster.finish(previous);
        }
        if let Some(wait) = ctx.retry.wait.take() {
            tokio::time::sleep(wait).await;
        }
        if ctx.retry.remaining() == Some(Duration::ZERO) {
            return Err(Error::explain(HTTPStatus(504), "request timeout"));
        }
        let Some(i) = cluster.pick(ctx.failed_endpoint) else {
            return Err(Error::explain(
                HTTPStatus(503),
                format!("cluster {} has no endpoint", cluster.name),
            ));
        };
        ctx.endpoint = Some(i);
        let addr = cluster.endpoints[i];
        let mut peer = if session.is_upgrade_req() {
            // A tunnel is never tried again, so it starts on a connection
            // of its own, one that works around a Pingora race
            // (`crate::upstream::upgrade`).
            crate::upstream::upgrade::peer(cluster, addr)
        } else {
            cluster.peer(addr)
        };
        // The per-try timeout, cut to what is left of the request's.
        let per_try = ctx
            .route
            .as_ref()
            .and_then(|r| r.timeouts.backend_request_ms)
            .map(Duration::from_millis);
        let timeout = match (per_try, ctx.retry.remaining()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        peer.options.read_timeout = timeout;
        if let Some(t) = timeout {
            peer.options.connection_timeout =
                Some(t.min(crate::upstream::balancer::CONNECT_TIMEOUT));
        }
        Ok(Box::new(peer))
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        _reused: bool,
        _peer: &HttpPeer,
        fd: std::os::unix::io::RawFd,
        _digest: Option<&pingora::protocols::Digest>,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(deadline) = &ctx.deadline {
            let h2 = ctx
                .cluster
                .as_ref()
                .is_some_and(|c| c.protocol == weft_api::AppProtocol::H2c);
            if h2 {
                deadline.off_socket();
            } else {
                deadline.on_socket(fd);
            }
        }
        Ok(())
    }

    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        _body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Duration>> {
        if let Some(deadline) = &ctx.deadline {
            if end_of_stream {
                deadline.finish();
            } else if deadline.passed() {
                return Err(Error::explain(ReadTimedout, "request deadline").into_up());
            }
        }
        Ok(None)
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        // Only weft says who the client is.
        let client = forwarded::Client {
            identity: ConnInfo::of(session.digest()).and_then(|c| c.peer_identity.as_deref()),
            edge: ctx.edge,
            request_id: &ctx.request_id,
        };
        forwarded::apply(&client, upstream)?;
        if let Some(c) = ctx.cluster.as_ref().filter(|c| c.tls.is_some()) {
            upstream.insert_header(MESH_SERVICE, c.service.as_str())?;
            upstream.insert_header(SOURCE_WORKLOAD, self.metrics.reporter().workload.as_str())?;
        }
        let trace = ctx
            .trace
            .get_or_insert_with(|| TraceContext::next(incoming_traceparent(session)));
        upstream.insert_header("traceparent", trace.header())?;
        if upstream.headers.get(http::header::HOST).is_none() {
            if let Some(authority) = session.req_header().uri.authority().map(|a| a.to_string()) {
                upstream.insert_header(http::header::HOST, authority)?;
            }
        }
        // A proxy request's absolute URI goes upstream in origin form.
        if upstream.uri.authority().is_some() {
            let target = upstream.uri.path_and_query().map_or("/", |p| p.as_str());
            let uri = target
                .parse()
                .map_err(|e| Error::because(InternalError, "origin-form URI", e))?;
            upstream.set_uri(uri);
        }
        let route = ctx.route.clone();
        let prefix = route.as_deref().and_then(CompiledRoute::prefix);
        for f in ctx.backend_filters() {
            match f {
                HttpFilter::RequestHeaders(m) => headers::modify_request(m, upstream),
                HttpFilter::Rewrite(r) => {
                    if let Some(h) = &r.hostname {
                        upstream.insert_header(http::header::HOST, h.as_str())?;
                    }
                    if let Some(p) = &r.path {
                        let path = headers::rewrite_path(p, upstream.uri.path(), prefix);
                        let uri = match upstream.uri.query() {
                            Some(q) => format!("{path}?{q}"),
                            None => path,
                        };
                        let uri = uri
                            .parse()
                            .map_err(|e| Error::because(InternalError, "rewritten URI", e))?;
                        upstream.set_uri(uri);
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let mesh = ctx.cluster.as_ref().is_some_and(|c| c.tls.is_some());
        ctx.destination_workload = told(&resp.headers, PEER_WORKLOAD, mesh).map(str::to_string);
        resp.remove_header(PEER_WORKLOAD);
        let status = resp.status.as_u16();
        if status < 400 {
            return Ok(());
        }
        match self.may_retry(session, ctx, Failure::Status(status)) {
            Verdict::Retry => {
                ctx.retry.on_status = true;
                let mut e = Error::explain(HTTPStatus(status), "retrying on status");
                e.set_retry(true);
                Err(e)
            }
            // The retry this answer called for has no time left.
            Verdict::PastDeadline => Err(Error::explain(HTTPStatus(504), "request timeout")),
            Verdict::No => Ok(()),
        }
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        _client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        if std::mem::take(&mut ctx.retry.on_status) {
            return e;
        }
        // Every try counts, a reconnect after a pooled connection the
        // upstream had closed included: the route's attempts are a bound.
        let failure = match e.etype() {
            ErrorType::ReadTimedout | ErrorType::WriteTimedout => Failure::Timeout,
            _ => Failure::Reset,
        };
        let retry = self.may_retry(session, ctx, failure) == Verdict::Retry;
        e.set_retry(retry);
        e
    }

    /// Retries are logged at debug by `may_retry`, not as warnings.
    fn suppress_proxy_warn_log(
        &self,
        _session: &Session,
        _ctx: &RequestCtx,
        _error: &Error,
        context: ProxyWarnLogContext,
    ) -> bool {
        matches!(context, ProxyWarnLogContext::UpstreamRetry)
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        // A mesh caller learns which workload answered.
        if ConnInfo::of(session.digest()).is_some_and(|c| c.mesh_peer) {
            resp.insert_header(PEER_WORKLOAD, self.metrics.reporter().workload.as_str())?;
        }
        for f in ctx.backend_filters() {
            if let HttpFilter::ResponseHeaders(m) = f {
                headers::modify_response(m, resp);
            }
        }
        let cors = ctx.route.as_ref().and_then(|r| r.cors.as_ref());
        let origin = session.req_header().headers.get(http::header::ORIGIN);
        if let (Some(cors), Some(origin)) = (cors, origin) {
            if origin.to_str().is_ok_and(|o| cors.allows(o)) {
                for (name, value) in cors.response(origin) {
                    if name == http::header::VARY {
                        resp.append_header(name, value)?;
                    } else {
                        resp.insert_header(name, value)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn fail_to_connect(
        &self,
        session: &mut Session,
        _p: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        // Another endpoint, if the route's attempts allow it.
        let retry = self.may_retry(session, ctx, Failure::Connect) == Verdict::Retry;
        e.set_retry(retry);
        e
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        // Whatever broke the exchange, past the deadline (or with no time
        // left for the retry it needed) it is a timeout.
        let code = match &ctx.deadline {
            Some(d) if d.passed() => 504,
            _ if ctx.retry.timed_out => 504,
            _ => crate::filters::rescue::status_for(e),
        };
        let sent = if code == 0 {
            Ok(())
        } else if crate::filters::grpc::is_grpc(session.req_header()) {
            respond(session, code, None).await.map(|_| ())
        } else {
            session.respond_error(code).await
        };
        if let Err(err) = sent {
            tracing::debug!("cannot send {code} downstream: {err}");
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        if let Some(cluster) = &ctx.cluster {
            if let Some(i) = ctx.endpoint.take() {
                cluster.finish(i);
            }
            cluster.budget.end();
            if ctx.retry.in_budget {
                cluster.budget.release();
            }
        }
        let grpc = crate::filters::grpc::is_grpc(session.req_header());
        // A frontend client certificate is not a mesh identity.
        let peer = ConnInfo::of(session.digest())
            .filter(|c| c.mesh_peer)
            .and_then(|c| c.peer_identity.as_deref());
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        // Only a mesh peer may say which service it called, and who it is.
        let headers = &session.req_header().headers;
        let told_service = told(headers, MESH_SERVICE, peer.is_some());
        let source_workload = told(headers, SOURCE_WORKLOAD, peer.is_some());
        if ctx.access_log {
            let hop = ctx.hop(session, ctx.trace.as_ref());
            self.access_log
                .write(records::access_line(session, &hop, status, peer));
        }
        let record = crate::telemetry::RequestRecord {
            source_principal: peer,
            destination_service: match (told_service, &ctx.cluster, &ctx.passthrough) {
                (Some(told), Some(_), _) => told,
                (None, Some(c), _) => c.service.as_str(),
                (_, None, Some((host, _))) => host.as_str(),
                (_, None, None) => "unknown",
            },
            destination_principal: ctx
                .cluster
                .as_ref()
                .and_then(|c| c.tls.as_ref())
                .and_then(|t| t.principal.as_deref()),
            source_workload,
            destination_workload: ctx.destination_workload.as_deref(),
            protocol: if grpc { "grpc" } else { "http" },
            status,
            mutual_tls: peer.is_some(),
            duration_ms: ctx.started.elapsed().as_secs_f64() * 1000.0,
            request_bytes: session.body_bytes_read(),
            response_bytes: session.body_bytes_sent(),
        };
        self.metrics.record(&record);
        self.metrics
            .downstream_version(session.req_header().version);
        if let Some(spans) = &self.spans {
            let trace = ctx
                .trace
                .take()
                .unwrap_or_else(|| TraceContext::next(incoming_traceparent(session)));
            spans.record(records::span_of(
                session,
                &ctx.hop(session, None),
                trace,
                &record,
                peer,
                self.metrics.reporter(),
            ));
        }
    }
}

impl WeftProxy {
    /// Whether the failed try is tried again (on another endpoint).
    fn may_retry(&self, session: &Session, ctx: &mut RequestCtx, failure: Failure) -> Verdict {
        let Some(cluster) = ctx.cluster.clone() else {
            return Verdict::No;
        };
        let req = Request {
            idempotent: session.req_header().method.is_idempotent(),
            // An upgrade's "body" is the tunnel: it cannot be replayed.
            replayable: !session.as_ref().retry_buffer_truncated()
                && session.response_written().is_none()
                && !session.is_upgrade_req(),
        };
        let policy = ctx.route.as_ref().and_then(|r| r.retry.as_ref());
        let verdict = ctx.retry.allow(policy, failure, &req, &cluster.budget);
        if verdict == Verdict::Retry {
            tracing::debug!(?failure, cluster = %cluster.name, "retrying");
            ctx.failed_endpoint = ctx.endpoint;
        }
        verdict
    }
}

/// The head a mirror gets: the request as the proxy sends it on, with the
/// rule's request header filters, in origin form with a `Host`.
fn mirror_head(
    session: &Session,
    ctx: &RequestCtx,
    route: &CompiledRoute,
) -> Result<RequestHeader> {
    let mut head = session.req_header().clone();
    let client = forwarded::Client {
        identity: ConnInfo::of(session.digest()).and_then(|c| c.peer_identity.as_deref()),
        edge: ctx.edge,
        request_id: &ctx.request_id,
    };
    forwarded::apply(&client, &mut head)?;
    for f in &route.filters {
        if let HttpFilter::RequestHeaders(m) = f {
            headers::modify_request(m, &mut head);
        }
    }
    if head.headers.get(http::header::HOST).is_none() {
        if let Some(authority) = head.uri.authority().map(|a| a.to_string()) {
            head.insert_header(http::header::HOST, authority)?;
        }
    }
    if head.uri.authority().is_some() {
        let target = head.uri.path_and_query().map_or("/", |p| p.as_str());
        let uri = target
            .parse()
            .map_err(|e| Error::because(InternalError, "origin-form URI", e))?;
        head.set_uri(uri);
    }
    Ok(head)
}

/// Makes the request canonical (`crate::route::normalize`), or says why it
/// is refused.
fn canonical(session: &mut Session) -> std::result::Result<(), normalize::Rejected> {
    if let Some(h1) = session.as_downstream().as_http1() {
        normalize::check_request_line(&h1.get_headers_raw_bytes())?;
    }
    if session.req_header().method == http::Method::CONNECT {
        return Ok(());
    }
    let rewrite = normalize::request(session.req_header())?;
    if !rewrite.is_empty() {
        rewrite.apply(session.req_header_mut())?;
    }
    Ok(())
}

/// The peer for a host outside the config, plain HTTP: where a captured
/// connection was bound, else the host's name resolved now (off the
/// runtime's threads).
async fn passthrough_peer(
    host: &str,
    original_dst: Option<std::net::SocketAddr>,
) -> Result<Box<HttpPeer>> {
    let addr = match original_dst {
        Some(addr) => addr,
        None => tokio::net::lookup_host(host)
            .await
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| Error::explain(HTTPStatus(502), format!("cannot resolve {host}")))?,
    };
    let mut peer = HttpPeer::new(addr, false, String::new());
    peer.options.connection_timeout = Some(crate::upstream::balancer::CONNECT_TIMEOUT);
    Ok(Box::new(peer))
}
