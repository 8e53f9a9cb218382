//! A BackendTrafficPolicy's fields checked and turned into the IR: each
//! bad value is an error that says what is wrong (the policy's Invalid
//! condition), and absent values take Envoy Gateway's defaults.

use super::access::checks::{cidr, duration, header_name};
use crate::traffic_policy::{
    ActiveHealthCheckSpec, BackendTrafficPolicySpec, ClientSelector, ConsistentHashSpec,
    FaultInjectionSpec, PassiveHealthCheckSpec, RateLimitRule as RuleSpec, RateLimitSpec,
    SelectorMatch, SelectorValue,
};
use weft_api::{
    CircuitBreaker, ClientMatch, ConsistentHash, FaultAbort, FaultDelay, Faults, HashOn,
    HealthCheck, HttpCheck, LbPolicy, Outlier, RateLimitRule, RateLimits, Resilience, TrafficRules,
    ValueMatch, ZoneAware,
};

/// What a policy asks for.
#[derive(Clone, Debug, PartialEq)]
pub struct Traffic {
    /// For the endpoints of a targeted Service (`traffic` included).
    pub resilience: Resilience,
    /// The balancing it asks for, over the Service's annotation.
    pub lb: Option<LbPolicy>,
    /// What a request is hashed on (`lb` ConsistentHash).
    pub hash: Option<ConsistentHash>,
    /// The fields that only a Service target can take, that it sets.
    pub service_only: Vec<&'static str>,
}

type Invalid = String;

/// The policy `name` (`<namespace>/<name>`) built, or why it cannot be;
/// `store`: whether global rate limits have somewhere to be counted.
pub fn check(name: &str, spec: &BackendTrafficPolicySpec, store: bool) -> Result<Traffic, Invalid> {
    let mut resilience = Resilience::default();
    let mut rules = TrafficRules::default();
    if let Some(f) = &spec.fault_injection {
        rules.faults = Some(faults(f)?);
    }
    if let Some(r) = &spec.rate_limit {
        rules.rate_limit = Some(rate_limits(name, r, store)?);
    }
    if rules != TrafficRules::default() {
        resilience.traffic = Some(rules);
    }
    let service_only: Vec<&'static str> = [
        ("circuitBreaker", spec.circuit_breaker.is_some()),
        ("healthCheck", spec.health_check.is_some()),
        ("loadBalancer", spec.load_balancer.is_some()),
    ]
    .into_iter()
    .filter_map(|(field, set)| set.then_some(field))
    .collect();
    if let Some(cb) = &spec.circuit_breaker {
        let d = CircuitBreaker::default();
        resilience.circuit_breaker = CircuitBreaker {
            max_connections: count("maxConnections", cb.max_connections, 1, d.max_connections)?,
            max_pending_requests: count(
                "maxPendingRequests",
                cb.max_pending_requests,
                0,
                d.max_pending_requests,
            )?,
            max_parallel_requests: count(
                "maxParallelRequests",
                cb.max_parallel_requests,
                1,
                d.max_parallel_requests,
            )?,
            max_requests_per_connection: count(
                "maxRequestsPerConnection",
                cb.max_requests_per_connection,
                0,
                0,
            )?,
        };
    }
    if let Some(hc) = &spec.health_check {
        if let Some(active) = &hc.active {
            resilience.health_check = Some(active_check(active)?);
        }
        if let Some(passive) = &hc.passive {
            resilience.outlier = Some(outlier(passive)?);
        }
        let panic = count("panicThreshold", hc.panic_threshold, 0, 50)?;
        if panic > 100 {
            return Err(format!("panicThreshold {panic} is over 100"));
        }
        resilience.panic_threshold = panic;
    }
    let mut hash = None;
    let lb = match &spec.load_balancer {
        None => None,
        Some(lb) => {
            if let Some(z) = &lb.zone_aware {
                let Some(local) = &z.prefer_local else {
                    return Err("loadBalancer.zoneAware needs preferLocal".into());
                };
                let min = local.min_endpoints_threshold;
                resilience.zone_aware = Some(ZoneAware {
                    min_endpoints: count("preferLocal.minEndpointsThreshold", min, 1, 1)?,
                });
            }
            if lb.consistent_hash.is_some() && lb.type_ != "ConsistentHash" {
                return Err("loadBalancer.consistentHash needs type ConsistentHash".into());
            }
            Some(match lb.type_.as_str() {
                "RoundRobin" => LbPolicy::RoundRobin,
                "LeastRequest" => LbPolicy::LeastRequest,
                "Random" => LbPolicy::Random,
                "ConsistentHash" => {
                    let Some(h) = &lb.consistent_hash else {
                        return Err("loadBalancer type ConsistentHash needs consistentHash".into());
                    };
                    hash = Some(consistent_hash(h)?);
                    LbPolicy::ConsistentHash
                }
                other => {
                    return Err(format!(
                        "loadBalancer type {other:?} is not RoundRobin, LeastRequest, Random or ConsistentHash"
                    ))
                }
            })
        }
    };
    Ok(Traffic {
        resilience,
        lb,
        hash,
        service_only,
    })
}

/// A count of at least `min` (and at most `u32::MAX`), `default` if absent.
fn count(field: &str, value: Option<i64>, min: i64, default: u32) -> Result<u32, Invalid> {
    match value {
        None => Ok(default),
        Some(v) if v < min => Err(format!("{field} {v} is below {min}")),
        Some(v) => u32::try_from(v).map_err(|_| format!("{field} {v} is too large")),
    }
}

/// A duration in whole milliseconds (at least one), `default` if absent.
fn millis(field: &str, value: Option<&str>, default: u64) -> Result<u64, Invalid> {
    let Some(text) = value else {
        return Ok(default);
    };
    let d = duration(text).map_err(|e| format!("{field}: {e}"))?;
    match u64::try_from(d.as_millis()) {
        Ok(0) => Err(format!("{field} {text:?} is under a millisecond")),
        Ok(ms) => Ok(ms),
        Err(_) => Err(format!("{field} {text:?} is too long")),
    }
}

fn active_check(a: &ActiveHealthCheckSpec) -> Result<HealthCheck, Invalid> {
    let http = match (a.type_.as_deref(), &a.http) {
        (Some("HTTP"), Some(h)) => {
            if !h.path.starts_with('/') {
                return Err(format!(
                    "healthCheck.active.http.path {:?} does not start with /",
                    h.path
                ));
            }
            let method = h.method.clone().unwrap_or_else(|| "GET".into());
            if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(format!(
                    "healthCheck.active.http.method {method:?} is not a method"
                ));
            }
            let mut expected = Vec::new();
            for s in &h.expected_statuses {
                match u16::try_from(*s) {
                    Ok(code) if (100..600).contains(&code) => expected.push(code),
                    _ => return Err(format!("expectedStatuses: {s} is not an HTTP status")),
                }
            }
            if expected.is_empty() {
                expected.push(200);
            }
            Some(HttpCheck {
                path: h.path.clone(),
                method,
                host: h.hostname.clone(),
                expected_statuses: expected,
            })
        }
        (Some("HTTP"), None) => return Err("healthCheck.active type HTTP needs http".into()),
        (Some("TCP"), None) => None,
        (Some("TCP"), Some(_)) => return Err("healthCheck.active type TCP takes no http".into()),
        (other, _) => {
            return Err(format!(
                "healthCheck.active type {:?} is not HTTP or TCP",
                other.unwrap_or("")
            ))
        }
    };
    Ok(HealthCheck {
        http,
        interval_ms: millis("healthCheck.active.interval", a.interval.as_deref(), 3000)?,
        timeout_ms: millis("healthCheck.active.timeout", a.timeout.as_deref(), 1000)?,
        unhealthy_threshold: count("unhealthyThreshold", a.unhealthy_threshold, 1, 3)?,
        healthy_threshold: count("healthyThreshold", a.healthy_threshold, 1, 1)?,
    })
}

fn outlier(p: &PassiveHealthCheckSpec) -> Result<Outlier, Invalid> {
    let percent = count("maxEjectionPercent", p.max_ejection_percent, 0, 10)?;
    if percent > 100 {
        return Err(format!("maxEjectionPercent {percent} is over 100"));
    }
    Ok(Outlier {
        consecutive_5xx: count("consecutive5XxErrors", p.consecutive_5xx_errors, 0, 5)?,
        consecutive_gateway_errors: count(
            "consecutiveGatewayErrors",
            p.consecutive_gateway_errors,
            0,
            0,
        )?,
        interval_ms: millis("healthCheck.passive.interval", p.interval.as_deref(), 3000)?,
        base_ejection_ms: millis(
            "healthCheck.passive.baseEjectionTime",
            p.base_ejection_time.as_deref(),
            30_000,
        )?,
        max_ejection_percent: percent,
    })
}

fn consistent_hash(h: &ConsistentHashSpec) -> Result<ConsistentHash, Invalid> {
    let on = match (h.type_.as_str(), &h.header, &h.cookie) {
        ("SourceIP", None, None) => HashOn::SourceIp,
        ("Header", Some(header), None) => HashOn::Header(
            header_name(&header.name).map_err(|e| format!("consistentHash.header: {e}"))?,
        ),
        ("Cookie", None, Some(c)) => {
            if !weft_api::is_token(&c.name) {
                return Err(format!(
                    "consistentHash.cookie.name {:?} is not a cookie name",
                    c.name
                ));
            }
            let ttl_seconds = match c.ttl.as_deref() {
                None => None,
                Some(t) => Some(millis("consistentHash.cookie.ttl", Some(t), 0)?.div_ceil(1000)),
            };
            HashOn::Cookie {
                name: c.name.clone(),
                ttl_seconds,
            }
        }
        ("SourceIP" | "Header" | "Cookie", _, _) => {
            return Err(format!(
                "consistentHash type {} takes {}",
                h.type_,
                match h.type_.as_str() {
                    "Header" => "header (and no cookie)",
                    "Cookie" => "cookie (and no header)",
                    _ => "neither header nor cookie",
                }
            ))
        }
        (other, _, _) => {
            return Err(format!(
                "consistentHash type {other:?} is not SourceIP, Header or Cookie"
            ))
        }
    };
    let table_size = match h.table_size {
        None => 65_537,
        Some(n) => match u32::try_from(n) {
            Ok(n) if ConsistentHash::table_size_ok(n) => n,
            _ => {
                return Err(format!(
                    "consistentHash.tableSize {n} is not a prime up to 5000011"
                ))
            }
        },
    };
    Ok(ConsistentHash { by: on, table_size })
}

/// A percentage (fractions allowed), 100 if absent.
fn percent(field: &str, value: Option<f64>) -> Result<f64, Invalid> {
    match value {
        None => Ok(100.0),
        Some(p) if p.is_finite() && (0.0..=100.0).contains(&p) => Ok(p),
        Some(p) => Err(format!("{field} {p} is not a percentage (0 to 100)")),
    }
}

fn faults(f: &FaultInjectionSpec) -> Result<Faults, Invalid> {
    if f.delay.is_none() && f.abort.is_none() {
        return Err("faultInjection needs a delay or an abort".into());
    }
    let delay = match &f.delay {
        None => None,
        Some(d) => {
            let Some(fixed) = d.fixed_delay.as_deref() else {
                return Err("faultInjection.delay needs fixedDelay".into());
            };
            Some(FaultDelay {
                delay_ms: millis("faultInjection.delay.fixedDelay", Some(fixed), 0)?,
                percent: percent("faultInjection.delay.percentage", d.percentage)?,
            })
        }
    };
    let abort = match &f.abort {
        None => None,
        Some(a) => {
            let grpc_status = match a.grpc_status {
                None => None,
                Some(g) if (0..=16).contains(&g) => Some(g as u32),
                Some(g) => {
                    return Err(format!(
                        "faultInjection.abort.grpcStatus {g} is not a gRPC status"
                    ))
                }
            };
            let http_status = match (a.http_status, grpc_status) {
                (None, None) => {
                    return Err("faultInjection.abort needs httpStatus or grpcStatus".into())
                }
                // HTTP callers of a gRPC-only abort get 503.
                (None, Some(_)) => 503,
                (Some(s), _) => match u16::try_from(s) {
                    Ok(s) if (200..600).contains(&s) => s,
                    _ => {
                        return Err(format!(
                            "faultInjection.abort.httpStatus {s} is not a status from 200 to 599"
                        ))
                    }
                },
            };
            Some(FaultAbort {
                http_status,
                grpc_status,
                percent: percent("faultInjection.abort.percentage", a.percentage)?,
            })
        }
    };
    Ok(Faults { delay, abort })
}

fn rate_limits(name: &str, r: &RateLimitSpec, store: bool) -> Result<RateLimits, Invalid> {
    let local: Vec<RateLimitRule> = match &r.local {
        None => Vec::new(),
        Some(l) => l.rules.iter().map(rule).collect::<Result<_, _>>()?,
    };
    let (global, fail_closed) = match &r.global {
        None => (Vec::new(), false),
        Some(g) => {
            if !store {
                return Err("global rate limits need Redis: run weft up with redis-server installed, or give the controller --redis".into());
            }
            let closed = match g.failure_mode.as_deref() {
                None | Some("Open") => false,
                Some("Closed") => true,
                Some(other) => {
                    return Err(format!(
                        "rateLimit.global.failureMode {other:?} is not Open or Closed"
                    ))
                }
            };
            let rules = g.rules.iter().map(rule).collect::<Result<_, _>>()?;
            (rules, closed)
        }
    };
    if local.is_empty() && global.is_empty() {
        return Err("rateLimit has no rules".into());
    }
    Ok(RateLimits {
        policy: name.to_string(),
        local,
        global,
        fail_closed,
    })
}

fn rule(r: &RuleSpec) -> Result<RateLimitRule, Invalid> {
    let requests = u64::try_from(r.limit.requests)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("rate limit requests {} is not above 0", r.limit.requests))?;
    let unit_seconds = match r.limit.unit.as_str() {
        "Second" => 1,
        "Minute" => 60,
        "Hour" => 3600,
        "Day" => 86_400,
        other => {
            return Err(format!(
                "rate limit unit {other:?} is not Second, Minute, Hour or Day"
            ))
        }
    };
    let mut selectors = Vec::new();
    for s in &r.client_selectors {
        selectors.extend(selector(s)?);
    }
    Ok(RateLimitRule {
        selectors,
        requests,
        unit_seconds,
    })
}

fn selector(s: &ClientSelector) -> Result<Vec<ClientMatch>, Invalid> {
    let mut out = Vec::new();
    for h in &s.headers {
        let name = header_name(&h.name).map_err(|e| format!("clientSelectors.headers: {e}"))?;
        out.push(ClientMatch::Header {
            name,
            value: named_match("clientSelectors.headers", h)?,
        });
    }
    if let Some(c) = &s.source_cidr {
        let Some(value) = c.value.as_deref() else {
            return Err("clientSelectors.sourceCIDR needs a value".into());
        };
        cidr(value).map_err(|e| format!("clientSelectors.sourceCIDR: {e}"))?;
        let distinct = match c.type_.as_deref() {
            None | Some("Exact") => false,
            Some("Distinct") => true,
            Some(other) => {
                return Err(format!(
                    "clientSelectors.sourceCIDR type {other:?} is not Exact or Distinct"
                ))
            }
        };
        out.push(ClientMatch::SourceCidr {
            cidr: value.to_string(),
            distinct,
        });
    }
    if let Some(id) = &s.spiffe_id {
        out.push(ClientMatch::SpiffeId(spiffe_match(id)?));
    }
    for c in &s.jwt_claims {
        if c.name.is_empty() {
            return Err("clientSelectors.jwtClaims: a claim needs a name".into());
        }
        out.push(ClientMatch::JwtClaim {
            name: c.name.clone(),
            value: named_match("clientSelectors.jwtClaims", c)?,
        });
    }
    Ok(out)
}

fn named_match(field: &str, m: &SelectorMatch) -> Result<ValueMatch, Invalid> {
    match (m.type_.as_deref(), &m.value) {
        (None | Some("Exact"), Some(v)) => Ok(ValueMatch::Exact(v.clone())),
        (Some("RegularExpression"), Some(v)) => {
            regex::Regex::new(v).map_err(|e| format!("{field} {}: {e}", m.name))?;
            Ok(ValueMatch::Regex(v.clone()))
        }
        (Some("Distinct"), None) => Ok(ValueMatch::Distinct),
        (Some("Distinct"), Some(_)) => Err(format!("{field} {}: Distinct takes no value", m.name)),
        (None | Some("Exact") | Some("RegularExpression"), None) => {
            Err(format!("{field} {}: needs a value", m.name))
        }
        (Some(other), _) => Err(format!(
            "{field} {}: type {other:?} is not Exact, RegularExpression or Distinct",
            m.name
        )),
    }
}

fn spiffe_match(v: &SelectorValue) -> Result<ValueMatch, Invalid> {
    match (v.type_.as_deref(), &v.value) {
        (None | Some("Exact"), Some(id)) if id.starts_with("spiffe://") => {
            Ok(ValueMatch::Exact(id.clone()))
        }
        (None | Some("Exact"), _) => {
            Err("clientSelectors.spiffeID needs a value starting spiffe://".into())
        }
        (Some("Distinct"), None) => Ok(ValueMatch::Distinct),
        (Some(other), _) => Err(format!(
            "clientSelectors.spiffeID type {other:?} with that value is not Exact or Distinct"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_limits_need_somewhere_to_be_counted() {
        let spec: BackendTrafficPolicySpec = serde_json::from_value(serde_json::json!({
            "rateLimit": {"global": {"rules": [{"limit": {"requests": 1, "unit": "Second"}}]}}
        }))
        .unwrap();
        let err = check("default/p", &spec, false).unwrap_err();
        assert!(err.contains("need Redis"), "{err}");
        let ok = check("default/p", &spec, true).unwrap();
        let limits = ok.resilience.traffic.unwrap().rate_limit.unwrap();
        assert_eq!((limits.global.len(), limits.fail_closed), (1, false));
    }
}
