//! Routing a request over one snapshot, with no I/O: port → listener (by
//! Host; by SNI for TLS, with 421 when the two disagree) → virtual host →
//! first matching route → weighted backend. What needs no backend is
//! answered here: 404 for no route, redirects, CORS preflights, 500 for a
//! rule whose backends are all invalid. A host no virtual host serves is
//! reported as such, so the proxy can discover it or pass it through.

use crate::config::hosts::normalize;
use crate::config::snapshot::{CompiledRoute, Snapshot};
use crate::filters::headers as filters;
use crate::upstream::balancer::ClusterState;
use pingora::http::RequestHeader;
use std::borrow::Cow;
use std::sync::Arc;
use weft_api::{HttpFilter, Protocol};

pub enum Decision {
    /// Answer with this status (and redirect location) without a backend.
    Respond(u16, Option<String>),
    /// Answer a CORS preflight with these headers (none for an origin that
    /// is not allowed).
    Preflight(Vec<(http::HeaderName, http::HeaderValue)>),
    /// No virtual host serves `host` (as the port names hosts); `passthrough`
    /// when the port sends such requests on to the host itself (to where a
    /// captured connection was bound, else to the host's name resolved);
    /// `blackhole` when it refuses them as undeclared.
    UnknownHost {
        host: String,
        passthrough: bool,
        blackhole: bool,
    },
    Forward {
        route: Arc<CompiledRoute>,
        backend: usize,
        cluster: Arc<ClusterState>,
    },
}

/// A request's host: the `Host` header, else the URI's authority (HTTP/2).
pub fn request_host(req: &RequestHeader) -> &str {
    req.headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))
        .unwrap_or("")
}

/// What the connection a request came on tells of it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Arrival<'a> {
    /// The local port it was accepted on.
    pub port: Option<u16>,
    /// The SNI name of a TLS connection, lowercased.
    pub sni: Option<&'a str>,
    /// The port a captured connection was bound for (`SO_ORIGINAL_DST`).
    pub original_port: Option<u16>,
}

/// Where `req`, arrived as `arrival` says, goes under `snapshot`.
pub fn decide(snapshot: &Snapshot, arrival: Arrival<'_>, req: &RequestHeader) -> Decision {
    let port = arrival.port;
    let Some(table) = port.and_then(|p| snapshot.ports.get(&p)) else {
        return Decision::Respond(404, None);
    };
    let host = if table.host_with_port {
        // A captured connection's Host may leave out the port it was for.
        Cow::Owned(crate::config::hosts::with_port(
            request_host(req),
            arrival.original_port,
        ))
    } else {
        normalize(request_host(req))
    };
    let Some(li) = table.listener(&host) else {
        return Decision::Respond(404, None);
    };
    // A mesh port's callers name the proxy's identity as SNI.
    if table.protocol == Protocol::Https && !table.own_cert {
        let sni = arrival.sni.unwrap_or("");
        if !sni.is_empty() && table.listener(sni) != Some(li) {
            return Decision::Respond(421, None);
        }
    }
    let listener = &table.listeners[li];
    if !listener.serves(&host) {
        return Decision::UnknownHost {
            host: host.into_owned(),
            passthrough: table.passthrough,
            blackhole: table.blackhole,
        };
    }
    let path = req.uri.path();
    let query = req.uri.query();
    let Some(route) = listener.route(&host, &req.method, path, query, &req.headers) else {
        return Decision::Respond(404, None);
    };
    if let (Some(cors), Some(origin)) = (&route.cors, req.headers.get(http::header::ORIGIN)) {
        if crate::filters::cors::is_preflight(&req.method, &req.headers) {
            let allowed = origin.to_str().is_ok_and(|o| cors.allows(o));
            return Decision::Preflight(if allowed {
                cors.preflight(origin, &req.headers)
            } else {
                Vec::new()
            });
        }
    }
    // A redirect answers at once: the rule's, else the chosen backend's.
    let redirect = |r: &weft_api::Redirect| {
        // A sidecar's proxy port names hosts with the port of the service
        // called, and that is the port a redirect keeps (not the proxy's).
        let (host, listener_port) = match table.host_with_port {
            true => match host.rsplit_once(':') {
                Some((name, p)) => (name, p.parse().unwrap_or(80)),
                None => (&*host, 80),
            },
            false => (&*host, port.unwrap_or_default()),
        };
        let parts = filters::RequestParts {
            scheme: match table.protocol {
                Protocol::Https | Protocol::Tls | Protocol::EastWest => "https",
                Protocol::Http | Protocol::Tcp => "http",
            },
            host,
            listener_port,
            path,
            query,
            prefix: route.prefix(),
        };
        Decision::Respond(r.status, Some(filters::location(r, &parts)))
    };
    if let Some(r) = route.filters.iter().find_map(as_redirect) {
        return redirect(r);
    }
    let Some(backend) = route.pick_backend() else {
        return Decision::Respond(500, None);
    };
    if let Some(r) = route.backends[backend].filters.iter().find_map(as_redirect) {
        return redirect(r);
    }
    match &route.backends[backend].target {
        Ok(cluster) => Decision::Forward {
            cluster: cluster.clone(),
            route: route.clone(),
            backend,
        },
        Err(status) => Decision::Respond(*status, None),
    }
}

fn as_redirect(f: &HttpFilter) -> Option<&weft_api::Redirect> {
    match f {
        HttpFilter::Redirect(r) => Some(r),
        _ => None,
    }
}
