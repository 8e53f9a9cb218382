//! What a BackendTrafficPolicy does to requests before they reach a
//! backend, compiled once per snapshot: rate limits (`ratelimit`, counted
//! here or in Redis through `global`), then faults (a delay, an abort).
//! A route's own rules apply; otherwise its backend Service's.

use crate::policy::global::GlobalStore;
use crate::policy::ratelimit::{Client, Limiters, Limits, Quota};
use std::sync::Arc;
use std::time::Duration;
use weft_api::{Faults, TrafficRules};

pub struct CompiledTraffic {
    pub faults: Option<Faults>,
    pub limits: Option<Limits>,
}

impl CompiledTraffic {
    pub fn compile(t: &TrafficRules, limiters: &Limiters) -> Result<CompiledTraffic, String> {
        Ok(CompiledTraffic {
            faults: t.faults.clone(),
            limits: match &t.rate_limit {
                Some(r) => Some(Limits::compile(r, limiters)?),
                None => None,
            },
        })
    }
}

/// What the rate limits make of a request.
#[derive(Debug, PartialEq)]
pub enum Limited {
    /// It passes; the tightest limit's numbers, when one applied.
    Pass(Option<Quota>),
    /// Over a limit: 429.
    Over(Quota),
    /// The store could not count it, and the policy fails closed: 503.
    StoreDown,
}

/// What a request's rate limits decided, and what the store's failure
/// came to if it failed (for the metrics).
pub struct Decision {
    pub limited: Limited,
    /// Whether the store failed (the request passing or not).
    pub store_failed: bool,
    pub global: bool,
}

/// Checks `client` against `limits`: local rules first, then global ones
/// in `store` (none configured counts as unreachable).
pub async fn check(
    limits: &Limits,
    client: &Client<'_>,
    store: Option<&Arc<GlobalStore>>,
) -> Decision {
    let local = match limits.take_local(client) {
        Err(q) => {
            return Decision {
                limited: Limited::Over(q),
                store_failed: false,
                global: false,
            }
        }
        Ok(q) => q,
    };
    let mut tightest = local;
    for rule in &limits.global {
        let Some(key) = rule.key(client) else {
            continue;
        };
        let counted = match store {
            Some(s) => s.hit(&rule.id, &key, rule.unit).await,
            None => Err("no store".into()),
        };
        match counted {
            Ok(c) => {
                let quota = Quota {
                    limit: rule.requests,
                    remaining: rule.requests.saturating_sub(c.count),
                    reset_secs: c.reset_secs,
                };
                if c.count > rule.requests {
                    return Decision {
                        limited: Limited::Over(quota),
                        store_failed: false,
                        global: true,
                    };
                }
                if tightest.is_none_or(|t| quota.remaining < t.remaining) {
                    tightest = Some(quota);
                }
            }
            Err(e) => {
                tracing::debug!(policy = %limits.policy, "rate limit store: {e}");
                let limited = match limits.fail_closed {
                    true => Limited::StoreDown,
                    false => Limited::Pass(tightest),
                };
                return Decision {
                    limited,
                    store_failed: true,
                    global: true,
                };
            }
        }
    }
    Decision {
        limited: Limited::Pass(tightest),
        store_failed: false,
        global: false,
    }
}

/// Whether a share of `percent` percent of requests is hit.
pub fn roll(percent: f64) -> bool {
    percent >= 100.0 || rand::random::<f64>() * 100.0 < percent
}

/// The delay injected into this request, if any.
pub fn delay(faults: &Faults) -> Option<Duration> {
    let d = faults.delay.as_ref()?;
    roll(d.percent).then(|| Duration::from_millis(d.delay_ms))
}
