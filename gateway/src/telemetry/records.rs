//! What a finished request leaves behind besides its metrics: its span
//! (`crate::telemetry::trace`) and its JSON access-log line (`crate::telemetry::access_log`).

use crate::telemetry::trace::TraceContext;
use pingora::proxy::Session;
use std::net::SocketAddr;
use std::time::Instant;

/// What the proxy did with a request, as logs and spans tell it.
pub struct Hop<'a> {
    pub started: Instant,
    /// The host the request named.
    pub host: &'a str,
    pub route: Option<&'a str>,
    pub cluster: Option<&'a str>,
    /// The endpoint of the last try.
    pub upstream: Option<SocketAddr>,
    /// This hop of the request's trace.
    pub trace: Option<&'a TraceContext>,
    pub request_id: &'a str,
    /// The verified token's subject.
    pub subject: Option<&'a str>,
    /// The access policy's rule that decided.
    pub policy_rule: Option<&'a str>,
    /// Why the access policy decided as it did.
    pub policy_decision: Option<&'static str>,
}

/// The span of a finished request.
pub fn span_of(
    session: &Session,
    hop: &Hop<'_>,
    trace: TraceContext,
    record: &crate::telemetry::RequestRecord<'_>,
    peer: Option<&str>,
    reporter: &crate::telemetry::Reporter,
) -> crate::telemetry::trace::Finished {
    let req = session.req_header();
    let mut attributes = vec![
        ("http.request.method", req.method.to_string()),
        ("url.path", req.uri.path().to_string()),
        ("server.address", hop.host.to_string()),
        (
            "weft.destination_service",
            record.destination_service.to_string(),
        ),
    ];
    if let Some(route) = hop.route {
        attributes.push(("weft.route", route.to_string()));
    }
    attributes.push(("weft.request_id", hop.request_id.to_string()));
    if let Some(peer) = peer {
        attributes.push(("weft.peer_principal", peer.to_string()));
    }
    let end = std::time::SystemTime::now();
    crate::telemetry::trace::Finished {
        trace,
        name: format!("{} {}", req.method, record.destination_service),
        server: reporter.reporter == "destination",
        start: end - hop.started.elapsed(),
        end,
        status: record.status,
        attributes,
    }
}

/// One access-log line, JSON.
pub fn access_line(session: &Session, hop: &Hop<'_>, status: u16, peer: Option<&str>) -> String {
    let req = session.req_header();
    let header = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok());
    serde_json::json!({
        "start_time_unix_ms": (std::time::SystemTime::now() - hop.started.elapsed())
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        "method": req.method.as_str(),
        "path": req.uri.path_and_query().map(|p| p.as_str()),
        "protocol": format!("{:?}", req.version),
        "authority": header("host").or_else(|| req.uri.authority().map(|a| a.as_str())),
        "response_code": status,
        "duration_ms": hop.started.elapsed().as_millis() as u64,
        "bytes_received": session.body_bytes_read(),
        "bytes_sent": session.body_bytes_sent(),
        "route_name": hop.route,
        "upstream_cluster": hop.cluster,
        "upstream_host": hop.upstream.map(|a| a.to_string()),
        "user_agent": header("user-agent"),
        "downstream_peer_principal": peer,
        "traceparent": hop.trace.map(|t| t.header().to_str().map(str::to_string).ok()),
        "request_id": hop.request_id,
        "subject": hop.subject,
        "policy_rule": hop.policy_rule,
        "policy_decision": hop.policy_decision,
    })
    .to_string()
}
