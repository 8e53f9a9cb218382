//! The traffic step of `request_filter`, after the access policy: the rate
//! limits and faults a BackendTrafficPolicy gives the request's route or
//! backend Service (`crate::policy::traffic`). A request over a limit is
//! answered 429 with `retry-after` and the `x-ratelimit-*` headers (a
//! passing one gets those headers too); with the global store unreachable
//! and the policy failing closed, 503. Then an injected delay, and an
//! injected abort (a gRPC caller gets the policy's gRPC status). What it
//! did shows in Envoy's response flags: `RL`, `RLSE`, `DI`, `FI`.

use super::ctx::RequestCtx;
use crate::filters::grpc;
use crate::listen::conn::ConnInfo;
use crate::policy::global::GlobalStore;
use crate::policy::ratelimit::{Client, Quota};
use crate::policy::traffic::{self, CompiledTraffic, Limited};
use crate::telemetry::Metrics;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;
use std::sync::Arc;
use weft_api::FaultAbort;

/// Applies `t` to the request; `true` when it was answered here.
pub(super) async fn shape(
    session: &mut Session,
    ctx: &mut RequestCtx,
    metrics: &Metrics,
    t: &CompiledTraffic,
    store: Option<&Arc<GlobalStore>>,
) -> Result<bool> {
    if let Some(limits) = &t.limits {
        let conn = ConnInfo::of(session.digest());
        let client = Client {
            headers: &session.req_header().headers,
            ip: conn.and_then(|c| c.client).map(|a| a.ip()),
            spiffe: conn
                .filter(|c| c.mesh_peer)
                .and_then(|c| c.peer_identity.as_deref()),
            claims: ctx.token.as_ref().map(|t| &*t.claims),
        };
        let decision = traffic::check(limits, &client, store).await;
        if decision.store_failed {
            let what = match limits.fail_closed {
                true => "store_unavailable_refused",
                false => "store_unavailable_passed",
            };
            metrics.rate_limit(&limits.policy, what);
        }
        match decision.limited {
            Limited::Pass(quota) => ctx.quota = quota,
            Limited::Over(quota) => {
                let what = match decision.global {
                    true => "over_global_limit",
                    false => "over_local_limit",
                };
                metrics.rate_limit(&limits.policy, what);
                ctx.response_flags = "RL";
                too_many(session, &quota).await?;
                return Ok(true);
            }
            Limited::StoreDown => {
                ctx.response_flags = "RLSE";
                super::steps::respond(session, 503, None).await?;
                return Ok(true);
            }
        }
    }
    if let Some(faults) = &t.faults {
        if let Some(delay) = traffic::delay(faults) {
            ctx.response_flags = "DI";
            ctx.injected_delay = delay;
            tokio::time::sleep(delay).await;
        }
        if let Some(a) = faults.abort.as_ref().filter(|a| traffic::roll(a.percent)) {
            ctx.response_flags = match ctx.response_flags {
                "DI" => "DI,FI",
                _ => "FI",
            };
            abort(session, a).await?;
            return Ok(true);
        }
    }
    Ok(false)
}

/// The `x-ratelimit-*` headers of a quota.
pub(super) fn quota_headers(resp: &mut ResponseHeader, q: &Quota) -> Result<()> {
    resp.insert_header("x-ratelimit-limit", q.limit.to_string())?;
    resp.insert_header("x-ratelimit-remaining", q.remaining.to_string())?;
    resp.insert_header("x-ratelimit-reset", q.reset_secs.to_string())?;
    Ok(())
}

async fn too_many(session: &mut Session, q: &Quota) -> Result<()> {
    let mut resp = if grpc::is_grpc(session.req_header()) {
        grpc::error_response(429)?
    } else {
        let mut r = ResponseHeader::build(429, Some(6))?;
        r.insert_header(http::header::CONTENT_LENGTH, "0")?;
        r
    };
    quota_headers(&mut resp, q)?;
    resp.insert_header(http::header::RETRY_AFTER, q.reset_secs.max(1).to_string())?;
    session.write_response_header(Box::new(resp), true).await
}

async fn abort(session: &mut Session, a: &FaultAbort) -> Result<()> {
    let resp = match (grpc::is_grpc(session.req_header()), a.grpc_status) {
        (true, Some(code)) => grpc::status_response(code, "fault%20filter%20abort")?,
        (true, None) => grpc::error_response(a.http_status)?,
        (false, _) => {
            let mut r = ResponseHeader::build(a.http_status, Some(2))?;
            r.insert_header(http::header::CONTENT_LENGTH, "0")?;
            r
        }
    };
    session.write_response_header(Box::new(resp), true).await
}
