//! A rule's options beside its matches, filters and backends: its retry
//! policy and timeouts (Gateway API durations), and its session
//! persistence (GEP-1619, with the rules the API server's CEL would
//! enforce: a Permanent cookie needs an absolute timeout, and cookie
//! settings belong to cookie sessions).

use gateway_api::experimental::httproutes::{
    HttpRouteRules, HttpRouteRulesSessionPersistence,
    HttpRouteRulesSessionPersistenceCookieConfigLifetimeType as Lifetime,
    HttpRouteRulesSessionPersistenceType as SessionType,
};
use weft_api::{Retry, SessionPersistence, Timeouts};

/// The session's name when the rule gives none.
pub const DEFAULT_SESSION_NAME: &str = "weft-session";

/// A Gateway API duration in milliseconds; `None` for zero (no limit).
fn millis(s: &Option<String>, what: &str) -> Result<Option<u64>, String> {
    let Some(s) = s else { return Ok(None) };
    let d: gateway_api::Duration = s.parse().map_err(|e| format!("{what} {s:?}: {e}"))?;
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    Ok((ms > 0).then_some(ms))
}

/// Retries when none are set: as Envoy's default backoff.
const DEFAULT_ATTEMPTS: u32 = 2;
const DEFAULT_BACKOFF_MS: u64 = 25;

pub fn retry(rule: &HttpRouteRules) -> Result<Option<Retry>, String> {
    let Some(r) = &rule.retry else {
        return Ok(None);
    };
    let attempts = match r.attempts {
        None => DEFAULT_ATTEMPTS,
        Some(n) => u32::try_from(n).map_err(|_| format!("retry attempts {n} is negative"))?,
    };
    let codes = r
        .codes
        .iter()
        .flatten()
        .map(|c| match u16::try_from(*c) {
            Ok(c) if (400..600).contains(&c) => Ok(c),
            _ => Err(format!("retry code {c} is not an HTTP error status")),
        })
        .collect::<Result<Vec<u16>, String>>()?;
    Ok(Some(Retry {
        attempts,
        backoff_ms: millis(&r.backoff, "retry backoff")?.unwrap_or(DEFAULT_BACKOFF_MS),
        codes,
    }))
}

pub fn timeouts(rule: &HttpRouteRules) -> Result<Timeouts, String> {
    let Some(t) = &rule.timeouts else {
        return Ok(Timeouts::default());
    };
    let out = Timeouts {
        request_ms: millis(&t.request, "timeout")?,
        backend_request_ms: millis(&t.backend_request, "timeout")?,
    };
    if let (Some(req), Some(be)) = (out.request_ms, out.backend_request_ms) {
        if be > req {
            return Err("timeouts.backendRequest must not exceed timeouts.request".into());
        }
    }
    Ok(out)
}

/// A rule's `sessionPersistence` (a GRPCRoute's has the same shape).
pub fn session(sp: &HttpRouteRulesSessionPersistence) -> Result<SessionPersistence, String> {
    let header = matches!(sp.r#type, Some(SessionType::Header));
    if header && sp.cookie_config.is_some() {
        return Err("sessionPersistence.cookieConfig is for Cookie sessions only".into());
    }
    let permanent = sp
        .cookie_config
        .as_ref()
        .is_some_and(|c| matches!(c.lifetime_type, Some(Lifetime::Permanent)));
    let seconds = |s: &Option<String>, what| -> Result<Option<u64>, String> {
        Ok(millis(s, what)?.map(|ms| ms.div_ceil(1000)))
    };
    let absolute_seconds = seconds(&sp.absolute_timeout, "sessionPersistence.absoluteTimeout")?;
    let idle_seconds = seconds(&sp.idle_timeout, "sessionPersistence.idleTimeout")?;
    if permanent && absolute_seconds.is_none() {
        return Err("a Permanent session cookie needs sessionPersistence.absoluteTimeout".into());
    }
    let name = sp
        .session_name
        .clone()
        .unwrap_or_else(|| DEFAULT_SESSION_NAME.to_string());
    if !weft_api::is_token(&name) {
        return Err(format!(
            "sessionPersistence.sessionName {name:?} is not a cookie or header name"
        ));
    }
    Ok(SessionPersistence {
        name,
        header,
        absolute_seconds,
        idle_seconds,
        permanent,
    })
}
