//! What a finished request leaves behind besides its metrics: its span
//! (`crate::trace`) and its JSON access-log line (`crate::access_log`).

use crate::proxy::RequestCtx;
use crate::routing;
use crate::trace::TraceContext;
use pingora::proxy::Session;

/// The span of a finished request.
pub fn span_of(
    session: &Session,
    ctx: &RequestCtx,
    trace: TraceContext,
    record: &crate::telemetry::RequestRecord<'_>,
    peer: Option<&str>,
    reporter: &crate::telemetry::Reporter,
) -> crate::trace::Finished {
    let req = session.req_header();
    let mut attributes = vec![
        ("http.request.method", req.method.to_string()),
        ("url.path", req.uri.path().to_string()),
        ("server.address", routing::request_host(req).to_string()),
        (
            "weft.destination_service",
            record.destination_service.to_string(),
        ),
    ];
    if let Some(route) = &ctx.route {
        attributes.push(("weft.route", route.name.clone()));
    }
    if let Some(peer) = peer {
        attributes.push(("weft.peer_principal", peer.to_string()));
    }
    let end = std::time::SystemTime::now();
    crate::trace::Finished {
        trace,
        name: format!("{} {}", req.method, record.destination_service),
        server: reporter.reporter == "destination",
        start: end - ctx.started.elapsed(),
        end,
        status: record.status,
        attributes,
    }
}

/// One access-log line, JSON.
pub fn access_line(session: &Session, ctx: &RequestCtx, status: u16, peer: Option<&str>) -> String {
    let req = session.req_header();
    let header = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok());
    let upstream = match (&ctx.cluster, ctx.endpoint) {
        (Some(c), Some(i)) => c.endpoints.get(i).map(ToString::to_string),
        _ => None,
    };
    serde_json::json!({
        "start_time_unix_ms": (std::time::SystemTime::now() - ctx.started.elapsed())
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        "method": req.method.as_str(),
        "path": req.uri.path_and_query().map(|p| p.as_str()),
        "protocol": format!("{:?}", req.version),
        "authority": header("host").or_else(|| req.uri.authority().map(|a| a.as_str())),
        "response_code": status,
        "duration_ms": ctx.started.elapsed().as_millis() as u64,
        "bytes_received": session.body_bytes_read(),
        "bytes_sent": session.body_bytes_sent(),
        "route_name": ctx.route.as_ref().map(|r| r.name.as_str()),
        "upstream_cluster": ctx.cluster.as_ref().map(|c| c.name.as_str()),
        "upstream_host": upstream,
        "user_agent": header("user-agent"),
        "downstream_peer_principal": peer,
        "traceparent": ctx.trace.as_ref().map(TraceContext::header),
    })
    .to_string()
}
