//! The access step of `request_filter`: the route's policy
//! (`crate::policy`) decides; a refused request is answered here (401 with
//! `WWW-Authenticate`, 403, or 500 for a policy that could not be built;
//! gRPC callers get the gRPC codes) and never reaches a backend; an allowed
//! one is rewritten for the backend.

use super::ctx::RequestCtx;
use crate::config::snapshot::{CompiledRoute, Snapshot};
use crate::listen::conn::ConnInfo;
use crate::policy::{rewrite, CompiledAccess, Denied, Request};
use crate::route::select::{self, Decision};
use crate::telemetry::Metrics;
use crate::upstream::balancer::ClusterState;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;
use std::sync::Arc;

/// Where a request is going: its route, the backend picked, its cluster.
pub(crate) struct Chosen {
    pub route: Arc<CompiledRoute>,
    pub backend: usize,
    pub cluster: Arc<ClusterState>,
}

/// The route's policy decides on the request. `None`: refused and
/// answered. A policy that writes claims as headers with
/// `recomputeRoute` has the route chosen again, once; another policy on
/// the new route decides too.
pub(super) async fn pass(
    session: &mut Session,
    ctx: &mut RequestCtx,
    metrics: &Metrics,
    snapshot: &Snapshot,
    port: Option<u16>,
    chosen: Chosen,
) -> Result<Option<Chosen>> {
    if chosen.cluster.external.is_some() {
        ctx.external = Some(chosen.cluster.clone());
    }
    let Some(access) = chosen.route.access.clone() else {
        return Ok(Some(chosen));
    };
    ctx.route = Some(chosen.route.clone());
    match admit(session, ctx, metrics, &access).await? {
        Admission::Answered => return Ok(None),
        Admission::Allowed(false) => return Ok(Some(chosen)),
        Admission::Allowed(true) => {}
    }
    let arrival = super::arrival_of(port, ConnInfo::of(session.digest()));
    let (route, backend, cluster) = match select::decide(snapshot, arrival, session.req_header()) {
        Decision::Forward {
            route,
            backend,
            cluster,
        } => (route, backend, cluster),
        Decision::Respond(status, location) => {
            super::steps::respond(session, status, location).await?;
            return Ok(None);
        }
        _ => {
            super::steps::respond(session, 404, None).await?;
            return Ok(None);
        }
    };
    ctx.external = cluster.external.is_some().then(|| cluster.clone());
    if let Some(other) = route.access.clone().filter(|a| !Arc::ptr_eq(a, &access)) {
        if let Admission::Answered = admit(session, ctx, metrics, &other).await? {
            return Ok(None);
        }
    }
    Ok(Some(Chosen {
        route,
        backend,
        cluster,
    }))
}

/// What the policy made of the request.
enum Admission {
    /// Refused, and answered.
    Answered,
    /// Allowed; `true`: its route is to be chosen again (its claims are
    /// now headers a route may match).
    Allowed(bool),
}

async fn admit(
    session: &mut Session,
    ctx: &mut RequestCtx,
    metrics: &Metrics,
    access: &CompiledAccess,
) -> Result<Admission> {
    let conn = ConnInfo::of(session.digest());
    let req = session.req_header();
    let host = crate::config::hosts::normalize(crate::route::select::request_host(req));
    let request = Request {
        method: &req.method,
        path: req.uri.path(),
        query: req.uri.query(),
        headers: &req.headers,
        client: conn.and_then(|c| c.client).map(|a| a.ip()),
        identity: conn.and_then(|c| c.peer_identity.as_deref()),
        host: Some(&host),
    };
    let allowed = match access.check(&request).await {
        Ok(a) => a,
        Err(denied) => {
            metrics.policy_decision(&denied.policy, false, denied.reason);
            ctx.policy_decision = Some(denied.reason);
            ctx.policy_rule = denied.rule.clone();
            ctx.token = denied.token.clone();
            refuse(session, &denied).await?;
            return Ok(Admission::Answered);
        }
    };
    let reason = match (&allowed.rule, &allowed.jwt) {
        (Some(_), _) => "allowed_by_rule",
        (None, Some(_)) if !access.has_authorization() => "authenticated",
        (None, None) if !access.has_authorization() => "anonymous",
        (None, _) => "allowed_by_default",
    };
    metrics.policy_decision(&access.name, true, reason);
    ctx.policy_decision = Some(reason);
    ctx.token = allowed.jwt.as_ref().map(|(_, v, _)| v.clone());
    ctx.policy_rule = allowed.rule.clone();
    let recompute = rewrite::apply(access, &allowed, session.req_header_mut())?;
    Ok(Admission::Allowed(recompute))
}

/// Answers a refused request.
async fn refuse(session: &mut Session, denied: &Denied) -> Result<()> {
    let status = denied.status;
    let mut resp = if crate::filters::grpc::is_grpc(session.req_header()) {
        crate::filters::grpc::error_response(status)?
    } else {
        let mut r = ResponseHeader::build(status, Some(3))?;
        r.insert_header(http::header::CONTENT_LENGTH, "0")?;
        r
    };
    if status == 401 {
        let host = crate::route::select::request_host(session.req_header());
        let realm: String = host
            .chars()
            .filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\')
            .collect();
        let mut challenge = format!("Bearer realm=\"{realm}\"");
        if denied.reason == "jwt_invalid" {
            challenge.push_str(", error=\"invalid_token\"");
        }
        resp.insert_header(http::header::WWW_AUTHENTICATE, challenge)?;
    }
    session.write_response_header(Box::new(resp), true).await?;
    Ok(())
}
