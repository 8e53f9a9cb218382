//! `WeftProxy`: the gateway's Pingora `ProxyHttp`, the request's journey.
//! Each phase is a short step over the snapshot the request loaded once
//! when it arrived (what a request carries: `ctx`; longer steps: `steps`):
//!
//! - `request_filter` makes the request canonical (`crate::route::normalize`:
//!   400 for what cannot be), then routes: port → listener (by Host; by SNI
//!   for TLS, with 421 when the two disagree) → virtual host → first
//!   matching route. It answers on its own what needs no backend: 404 no
//!   route, redirects, 500 for a rule whose backends are all invalid; and
//!   what the route's access policy refuses (`guard`), what its rate
//!   limits refuse and the faults it injects (`shape`), and what the
//!   cluster's circuit breaker refuses (503, `x-weft-overloaded`). It
//!   starts the request's deadline and the copy for its mirrors.
//! - `request_body_filter` copies the body for the mirrors, and sends the
//!   copies once it is whole.
//! - `upstream_peer` picks an endpoint of the chosen backend's cluster; 503
//!   when the cluster has none.
//! - `connected_to_upstream` tells the deadline which socket to cut, and
//!   closes a connection that has carried its share of requests.
//! - `upstream_request_filter` says who the client is
//!   (`crate::filters::forwarded`) and applies request filters and rewrites.
//! - `upstream_response_filter` counts the answer for outlier detection
//!   and retries on status; `response_filter` applies response header
//!   filters, CORS and the `x-ratelimit-*` headers.
//! - `upstream_response_body_filter` ends the deadline with the body.
//! - `error_while_proxy` and `fail_to_connect` count the failure for
//!   outlier detection and decide retries (`crate::upstream::retry`):
//!   every try counts.
//! - `fail_to_proxy` maps failures to status codes (`crate::filters::rescue`).
//! - `logging` releases the endpoint and the breaker's place, and records
//!   metrics (with Envoy's response flags), logs and spans.
//!
//! What the gateway answers itself, a gRPC caller gets as a gRPC status
//! (`crate::filters::grpc`).

mod affinity;
mod ctx;
mod guard;
mod shape;
mod steps;

use crate::config::snapshot::Snapshot;
use crate::filters::forwarded::{self, PEER_WORKLOAD_NAME};
use crate::filters::headers;
use crate::filters::mirror::{Copy, Mirrors};
use crate::listen::conn::ConnInfo;
use crate::route::select::{self, Decision};
use crate::telemetry::records;
use crate::telemetry::trace::TraceContext;
use crate::upstream::deadline::Deadline;
use crate::upstream::health::Outcome;
use crate::upstream::retry::{Failure, Verdict};
use arc_swap::ArcSwapOption;
use async_trait::async_trait;
pub use ctx::RequestCtx;
use ctx::{incoming_traceparent, told};
use guard::Chosen;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, ProxyWarnLogContext, Session};
use std::sync::Arc;
use std::time::Duration;
use steps::{canonical, mirror_head, passthrough_peer, respond};
use weft_api::HttpFilter;

/// How long a request for an unknown host waits for the controller's answer.
const DISCOVERY_WAIT: Duration = Duration::from_secs(2);
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

#[async_trait]
impl ProxyHttp for WeftProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new()
    }

    /// No downstream modules (Pingora adds a disabled compression module
    /// by default): weft compresses nothing, and an empty list costs no
    /// per-request context nor a walk of every body chunk.
    fn init_downstream_modules(&self, _modules: &mut pingora::modules::http::HttpModules) {}

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
        let arrival = arrival_of(port, conn);
        let mut decision = select::decide(&snapshot, arrival, req);
        if let (Decision::UnknownHost { host, .. }, Some(interest)) = (&decision, &self.interest) {
            if interest.discover(host, DISCOVERY_WAIT).await {
                if let Some(newer) = self.snapshot.load_full() {
                    snapshot = newer;
                    decision = select::decide(&snapshot, arrival, req);
                }
            }
        }
        steps::start(ctx, &snapshot, req, port, conn);
        let (route, backend, cluster) = match decision {
            Decision::Forward {
                route,
                backend,
                cluster,
            } => (route, backend, cluster),
            Decision::UnknownHost {
                host,
                passthrough: true,
                ..
            } => {
                ctx.passthrough = Some((host, conn.and_then(|c| c.original_dst)));
                return Ok(false);
            }
            Decision::UnknownHost {
                host,
                blackhole: true,
                ..
            } => return steps::undeclared(session, ctx, &host).await,
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
        // Nothing reaches a backend before the route's policy allows it.
        let chosen = Chosen {
            route,
            backend,
            cluster,
        };
        let Chosen {
            route,
            backend,
            cluster,
        } = match guard::pass(session, ctx, &self.metrics, &snapshot, port, chosen).await? {
            Some(chosen) => chosen,
            None => return Ok(true),
        };
        let (backend, cluster) = affinity::prepare(session, ctx, &route, (backend, cluster));
        // From here the request counts against its cluster (in flight for
        // the retry budget, until `logging`).
        cluster.budget.start();
        ctx.backend = backend;
        ctx.cluster = Some(cluster.clone());
        ctx.route = Some(route.clone());
        // Rate limits and faults, before anything is sent or mirrored.
        if let Some(t) = route.backends.get(backend).and_then(|b| b.traffic.as_ref()) {
            let store = snapshot.rate_store.as_ref();
            if shape::shape(session, ctx, &self.metrics, t, store).await? {
                return Ok(true);
            }
        }
        // An injected delay is not the backend's time.
        ctx.retry.deadline = route
            .timeouts
            .request_ms
            .map(|ms| ctx.started + ctx.injected_delay + Duration::from_millis(ms));
        // A tunnel outlives the request that opened it, and its "body" is
        // never replayed; other requests get the deadline, and keep their
        // body for a retry (Pingora buffers a bounded amount).
        if !session.is_upgrade_req() {
            ctx.deadline = ctx.retry.deadline.map(Deadline::start);
            session.enable_retry_buffering();
        }
        if steps::through_breaker(session, ctx, &cluster).await? {
            return Ok(true);
        }
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
        if cluster.external.is_some() {
            return steps::external_peer(session, ctx, &cluster.clone()).await;
        }
        let hint = affinity::hint(&mut ctx.pinned, ctx.hash_key);
        let Some(i) = cluster.pick_for(ctx.failed_endpoint, hint) else {
            ctx.response_flags = "UH";
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
            cluster.peer(i)
        };
        steps::per_try(ctx, &mut peer);
        Ok(Box::new(peer))
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        reused: bool,
        _peer: &HttpPeer,
        fd: std::os::unix::io::RawFd,
        _digest: Option<&pingora::protocols::Digest>,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        // An HTTP/1 connection carries at most the cluster's share of
        // requests: the last asks the endpoint to close it.
        if let Some(c) = &ctx.cluster {
            let max = c.resilience.circuit_breaker.max_requests_per_connection;
            if max > 0 && c.protocol != weft_api::AppProtocol::H2c {
                ctx.last_on_connection = c.health.last_on_connection(fd, !reused, max);
            }
        }
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
        // Only weft says who the client is, and never to a host outside.
        let external = ctx.cluster.as_ref().is_some_and(|c| c.external.is_some());
        let client = forwarded::Client {
            identity: ConnInfo::of(session.digest())
                .and_then(|c| c.peer_identity.as_deref())
                .filter(|_| !external),
            edge: ctx.edge,
            request_id: &ctx.request_id,
        };
        forwarded::apply(&client, upstream)?;
        if let Some(c) = ctx
            .cluster
            .as_ref()
            .filter(|c| c.tls.as_ref().is_some_and(|t| t.mesh))
        {
            let me = (self.metrics.reporter().workload.as_str(), ctx.home());
            forwarded::tell_mesh(upstream, &c.service, me)?;
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
        steps::backend_filters(ctx, upstream)?;
        if ctx.last_on_connection {
            upstream.insert_header(http::header::CONNECTION, "close")?;
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
        ctx.destination_workload =
            told(&resp.headers, &PEER_WORKLOAD_NAME, mesh).map(str::to_string);
        resp.remove_header(&PEER_WORKLOAD_NAME);
        let status = resp.status.as_u16();
        if let (Some(c), Some(i)) = (&ctx.cluster, ctx.endpoint) {
            c.record(i, Outcome::Status(status));
        }
        // No body follows: the answer has ended with its header, and the
        // body filter will not see it end.
        if let Some(deadline) = &ctx.deadline {
            if steps::bodiless(session.req_header(), resp) {
                deadline.finish();
            }
        }
        if status < 400 {
            return Ok(());
        }
        match steps::may_retry(session, ctx, Failure::Status(status)) {
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
        if e.esource() == &ErrorSource::Upstream {
            if let (Some(c), Some(i)) = (&ctx.cluster, ctx.endpoint) {
                c.record(i, Outcome::LocalFailure);
            }
        }
        // Every try counts, a reconnect after a pooled connection the
        // upstream had closed included: the route's attempts are a bound.
        let failure = match e.etype() {
            ErrorType::ReadTimedout | ErrorType::WriteTimedout => Failure::Timeout,
            _ => Failure::Reset,
        };
        let retry = steps::may_retry(session, ctx, failure) == Verdict::Retry;
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
            resp.insert_header(
                PEER_WORKLOAD_NAME,
                self.metrics.reporter().workload.as_str(),
            )?;
        }
        for f in ctx.backend_filters() {
            if let HttpFilter::ResponseHeaders(m) = f {
                headers::modify_response(m, resp);
            }
        }
        if let Some(q) = &ctx.quota {
            shape::quota_headers(resp, q)?;
        }
        affinity::answer(resp, ctx)?;
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
        if let (Some(c), Some(i)) = (&ctx.cluster, ctx.endpoint) {
            c.record(i, Outcome::LocalFailure);
        }
        // Another endpoint, if the route's attempts allow it.
        let retry = steps::may_retry(session, ctx, Failure::Connect) == Verdict::Retry;
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
        ctx.admission = None;
        if let Some(cluster) = &ctx.cluster {
            // Kept: the metrics name the endpoint's cluster.
            if let Some(i) = ctx.endpoint {
                cluster.finish(i);
            }
            cluster.budget.end();
            if ctx.retry.in_budget {
                cluster.budget.release();
            }
        }
        // A frontend client certificate is not a mesh identity.
        let peer = ConnInfo::of(session.digest())
            .filter(|c| c.mesh_peer)
            .and_then(|c| c.peer_identity.as_deref());
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        if ctx.access_log {
            let hop = ctx.hop(session, ctx.trace.as_ref());
            self.access_log
                .write(records::access_line(session, &hop, status, peer));
        }
        let trace = self.spans.as_ref().map(|_| {
            ctx.trace
                .take()
                .unwrap_or_else(|| TraceContext::next(incoming_traceparent(session)))
        });
        let record = ctx.record(session, peer, status);
        self.metrics.record(&record);
        self.metrics
            .downstream_version(session.req_header().version);
        if let (Some(spans), Some(trace)) = (&self.spans, trace) {
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

/// What the connection tells of where a request arrived.
pub(crate) fn arrival_of(port: Option<u16>, conn: Option<&ConnInfo>) -> select::Arrival<'_> {
    select::Arrival {
        port,
        sni: conn.and_then(|c| c.sni.as_deref()),
        original_port: conn.and_then(|c| c.original_dst).map(|a| a.port()),
    }
}
