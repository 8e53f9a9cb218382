//! The steps of `WeftProxy`'s phases that are more than a few lines: the
//! answers the proxy gives itself, the request made canonical, the circuit
//! breaker's admission, the head a mirror gets, the filters on what goes
//! upstream, the peer of a host outside the config, and whether a failed
//! try is tried again.

use super::ctx::RequestCtx;
use crate::config::snapshot::CompiledRoute;
use crate::filters::forwarded;
use crate::filters::headers;
use crate::listen::conn::ConnInfo;
use crate::route::normalize;
use crate::upstream::balancer::{ClusterState, CONNECT_TIMEOUT};
use crate::upstream::retry::{Failure, Request, Verdict};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::Session;
use weft_api::HttpFilter;

/// What the request takes from the snapshot it loaded and the connection
/// it came on: whether to log it, its id, the client at an edge, and the
/// proxy's cluster.
pub(super) fn start(
    ctx: &mut RequestCtx,
    snapshot: &crate::Snapshot,
    req: &RequestHeader,
    port: Option<u16>,
    conn: Option<&ConnInfo>,
) {
    ctx.access_log = snapshot.config.access_log;
    ctx.home = Some(snapshot.home.clone());
    ctx.egress_source = snapshot.config.egress_source;
    ctx.request_id = forwarded::request_id(req);
    ctx.edge = port
        .and_then(|p| snapshot.ports.get(&p))
        .filter(|t| !t.sidecar)
        .and_then(|t| {
            let addr = conn?.client?.ip();
            let scheme = match t.protocol {
                weft_api::Protocol::Https
                | weft_api::Protocol::Tls
                | weft_api::Protocol::EastWest => "https",
                weft_api::Protocol::Http | weft_api::Protocol::Tcp => "http",
            };
            Some((addr, scheme))
        });
}

/// Answers the request without a backend: `status` (a gRPC status to a
/// gRPC caller), with `location` for a redirect.
pub(super) async fn respond(
    session: &mut Session,
    status: u16,
    location: Option<String>,
) -> Result<bool> {
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

/// Refuses a request for a host the mesh does not declare (the outbound
/// policy `RegistryOnly`): 502, with a body that says why.
pub(super) async fn undeclared(
    session: &mut Session,
    ctx: &mut RequestCtx,
    host: &str,
) -> Result<bool> {
    ctx.undeclared = true;
    ctx.response_flags = "NR";
    if crate::filters::grpc::is_grpc(session.req_header()) {
        return respond(session, 502, None).await;
    }
    let body = format!(
        "weft: {host} is not declared in the mesh, and the outbound policy \
         (RegistryOnly) refuses undeclared hosts\n"
    );
    let mut resp = ResponseHeader::build(502, Some(3))?;
    resp.insert_header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")?;
    resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    session.write_response_header(Box::new(resp), false).await?;
    session
        .write_response_body(Some(bytes::Bytes::from(body)), true)
        .await?;
    Ok(true)
}

/// The peer for a try at a host outside the mesh: its name resolved now
/// (503 and the flag `DF`, as Envoy has it, when it does not resolve).
pub(super) async fn external_peer(
    session: &Session,
    ctx: &mut RequestCtx,
    cluster: &ClusterState,
) -> Result<Box<HttpPeer>> {
    use crate::upstream::external::{peer, Unreached};
    let Some(ext) = cluster.external.as_ref() else {
        return Err(Error::explain(HTTPStatus(500), "not an external cluster"));
    };
    let host =
        crate::config::hosts::normalize(crate::route::select::request_host(session.req_header()));
    let attempt = ctx.retry.retries as usize;
    match peer(cluster, ext, &host, ctx.egress_source, attempt).await {
        Ok(mut peer) => {
            peer.options.connection_timeout = Some(CONNECT_TIMEOUT);
            per_try(ctx, &mut peer);
            Ok(Box::new(peer))
        }
        Err(Unreached::NotCovered) => {
            ctx.response_flags = "NR";
            Err(Error::explain(
                HTTPStatus(502),
                format!("{host} is not under {}", ext.hostname),
            ))
        }
        Err(Unreached::Dns(why)) => {
            ctx.response_flags = "DF";
            Err(Error::explain(HTTPStatus(503), why))
        }
    }
}

/// The per-try timeout on `peer`, cut to what is left of the request's.
pub(super) fn per_try(ctx: &RequestCtx, peer: &mut HttpPeer) {
    let per_try = ctx
        .route
        .as_ref()
        .and_then(|r| r.timeouts.backend_request_ms)
        .map(std::time::Duration::from_millis);
    let timeout = match (per_try, ctx.retry.remaining()) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    peer.options.read_timeout = timeout;
    if let Some(t) = timeout {
        peer.options.connection_timeout = Some(t.min(CONNECT_TIMEOUT));
    }
}

/// Over the cluster's bounds (its circuit breaker), the request is
/// answered at once (`true`); it waits for a connection slot no longer
/// than it may wait for a connection.
pub(super) async fn through_breaker(
    session: &mut Session,
    ctx: &mut RequestCtx,
    cluster: &ClusterState,
) -> Result<bool> {
    let wait = ctx
        .retry
        .remaining()
        .map_or(CONNECT_TIMEOUT, |r| r.min(CONNECT_TIMEOUT));
    ctx.admission = cluster.health.breaker.admit(wait).await;
    if ctx.admission.is_some() {
        return Ok(false);
    }
    ctx.response_flags = "UO";
    overloaded(session).await
}

/// Answers a request a cluster's circuit breaker refused: 503 (gRPC
/// `UNAVAILABLE`) with `x-weft-overloaded: true`, at once.
async fn overloaded(session: &mut Session) -> Result<bool> {
    let mut resp = if crate::filters::grpc::is_grpc(session.req_header()) {
        crate::filters::grpc::error_response(503)?
    } else {
        let mut resp = ResponseHeader::build(503, Some(2))?;
        resp.insert_header(http::header::CONTENT_LENGTH, "0")?;
        resp
    };
    resp.insert_header("x-weft-overloaded", "true")?;
    session.write_response_header(Box::new(resp), true).await?;
    Ok(true)
}

/// The head a mirror gets: the request as the proxy sends it on, with the
/// rule's request header filters, in origin form with a `Host`.
pub(super) fn mirror_head(
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
pub(super) fn canonical(session: &mut Session) -> std::result::Result<(), normalize::Rejected> {
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
pub(super) async fn passthrough_peer(
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

/// The rule's and the backend's request filters on the request sent on:
/// header modifiers and URL rewrites.
pub(super) fn backend_filters(ctx: &RequestCtx, upstream: &mut RequestHeader) -> Result<()> {
    let prefix = ctx.route.as_deref().and_then(CompiledRoute::prefix);
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

/// Whether an answer to `req` with header `resp` has no body (RFC 9110
/// §6.4.1: HEAD, 1xx, 204 and 304; or a zero length).
pub(super) fn bodiless(req: &RequestHeader, resp: &ResponseHeader) -> bool {
    let status = resp.status.as_u16();
    req.method == http::Method::HEAD
        || (100..200).contains(&status)
        || status == 204
        || status == 304
        || resp
            .headers
            .get(http::header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() == b"0")
}

/// Whether the failed try is tried again (on another endpoint).
pub(super) fn may_retry(session: &Session, ctx: &mut RequestCtx, failure: Failure) -> Verdict {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_without_a_body_are_known_by_their_header() {
        let get = RequestHeader::build("GET", b"/", None).unwrap();
        let head = RequestHeader::build("HEAD", b"/", None).unwrap();
        let resp = |status: u16, length: Option<&str>| {
            let mut r = ResponseHeader::build(status, None).unwrap();
            if let Some(l) = length {
                r.insert_header("content-length", l).unwrap();
            }
            r
        };
        assert!(bodiless(&head, &resp(200, Some("12"))));
        assert!(bodiless(&get, &resp(204, None)));
        assert!(bodiless(&get, &resp(304, None)));
        assert!(bodiless(&get, &resp(200, Some("0"))));
        assert!(!bodiless(&get, &resp(200, Some("12"))));
        assert!(!bodiless(&get, &resp(200, None)));
    }
}
