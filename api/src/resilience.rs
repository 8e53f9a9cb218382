//! Resilience in the IR: what a `BackendTrafficPolicy` asks of a cluster
//! (circuit breaking, passive outlier detection, active health checks, the
//! panic threshold). Every cluster carries one; the defaults (no policy)
//! are Envoy's: 1024 of each circuit-breaker limit, no outlier detection,
//! no active checks, panic at 50%.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Resilience {
    #[serde(skip_serializing_if = "CircuitBreaker::is_default")]
    pub circuit_breaker: CircuitBreaker,
    /// Passive health checking: endpoints that fail in a row are ejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outlier: Option<Outlier>,
    /// Active health checking, from each proxy that uses the cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// When fewer than this share (percent) of the endpoints are healthy,
    /// the proxy ignores health and balances over all of them.
    pub panic_threshold: u32,
    /// Faults and rate limits for requests to the cluster, unless their
    /// route has its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traffic: Option<TrafficRules>,
    /// Endpoints in the proxy's zone first (`Cluster::zones`,
    /// `GatewayConfig::zone`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone_aware: Option<ZoneAware>,
}

/// Locality: while the proxy's zone has at least `min_endpoints` usable
/// endpoints, only those take its requests; with fewer, all do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ZoneAware {
    pub min_endpoints: u32,
}

impl Default for Resilience {
    fn default() -> Self {
        Resilience {
            circuit_breaker: CircuitBreaker::default(),
            outlier: None,
            health_check: None,
            panic_threshold: 50,
            traffic: None,
            zone_aware: None,
        }
    }
}

impl Resilience {
    pub fn is_default(&self) -> bool {
        *self == Resilience::default()
    }

    /// What a proxy cannot run: zero intervals and thresholds, shares
    /// over 100%, statuses that are not statuses.
    pub fn validate(&self) -> Result<(), String> {
        if self.panic_threshold > 100 {
            return Err("panic threshold over 100%".into());
        }
        if let Some(o) = &self.outlier {
            if o.max_ejection_percent > 100 || o.base_ejection_ms == 0 || o.interval_ms == 0 {
                return Err("outlier detection needs times above 0 and at most 100%".into());
            }
        }
        if let Some(h) = &self.health_check {
            if h.interval_ms == 0 || h.timeout_ms == 0 {
                return Err("health check interval and timeout must be above 0".into());
            }
            if h.unhealthy_threshold == 0 || h.healthy_threshold == 0 {
                return Err("health check thresholds must be above 0".into());
            }
            if let Some(http) = &h.http {
                if http.method.is_empty() {
                    return Err("health check method is empty".into());
                }
                if !http.path.starts_with('/') {
                    return Err(format!(
                        "health check path {:?} does not start with /",
                        http.path
                    ));
                }
                if http
                    .expected_statuses
                    .iter()
                    .any(|s| !(100..600).contains(s))
                {
                    return Err("health check expects a status outside 100-599".into());
                }
            }
        }
        if let Some(t) = &self.traffic {
            t.validate()?;
        }
        Ok(())
    }

    /// Whether endpoints may be taken out of the balance.
    pub fn guarded(&self) -> bool {
        self.outlier.is_some() || self.health_check.is_some() || self.zone_aware.is_some()
    }
}

/// Bounds on what one proxy sends a cluster at once. Over a bound, a
/// request is answered 503 at once (`x-weft-overloaded: true`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct CircuitBreaker {
    /// Requests that may hold a connection to the cluster at once (each
    /// HTTP/1 request holds one); more wait, up to `max_pending_requests`.
    pub max_connections: u32,
    /// Requests that may wait for a connection.
    pub max_pending_requests: u32,
    /// Requests in flight to the cluster, waiting ones included.
    pub max_parallel_requests: u32,
    /// Requests one upstream connection serves before it is closed; 0 for
    /// no limit.
    pub max_requests_per_connection: u32,
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        CircuitBreaker {
            max_connections: 1024,
            max_pending_requests: 1024,
            max_parallel_requests: 1024,
            max_requests_per_connection: 0,
        }
    }
}

impl CircuitBreaker {
    pub fn is_default(&self) -> bool {
        *self == CircuitBreaker::default()
    }
}

/// Passive health checking (Envoy's outlier detection).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Outlier {
    /// 5xx answers (and failures to connect or to get an answer) in a row
    /// that eject an endpoint; 0 turns the check off.
    pub consecutive_5xx: u32,
    /// 502, 503, 504 answers and failures in a row that eject; 0: off.
    pub consecutive_gateway_errors: u32,
    /// A quiet interval after which an endpoint's ejection count falls by
    /// one.
    pub interval_ms: u64,
    /// An ejection lasts this long times the number of times the endpoint
    /// has been ejected (at most 300 s, or this if it is longer).
    pub base_ejection_ms: u64,
    /// The most endpoints ejected at once, as a share of all; one may
    /// always be.
    pub max_ejection_percent: u32,
}

/// Active health checking.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    /// `None`: a TCP connection (TLS handshake included) that opens passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpCheck>,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    /// Failed checks in a row that mark an endpoint unhealthy.
    pub unhealthy_threshold: u32,
    /// Passed checks in a row that mark it healthy again.
    pub healthy_threshold: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpCheck {
    pub path: String,
    pub method: String,
    /// The `Host` sent; the cluster's service name when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Answers that pass.
    pub expected_statuses: Vec<u16>,
}

/// What a route (or a Service, for the routes without their own) does to
/// requests before they reach a backend: faults, then rate limits.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TrafficRules {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub faults: Option<Faults>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimits>,
}

impl TrafficRules {
    pub fn validate(&self) -> Result<(), String> {
        let share = |p: f64| (0.0..=100.0).contains(&p);
        if let Some(f) = &self.faults {
            if f.delay.as_ref().is_some_and(|d| !share(d.percent))
                || f.abort.as_ref().is_some_and(|a| !share(a.percent))
            {
                return Err("a fault's percentage is outside 0-100".into());
            }
            if f.abort
                .as_ref()
                .is_some_and(|a| !(200..600).contains(&a.http_status))
            {
                return Err("a fault's status is outside 200-599".into());
            }
        }
        if let Some(r) = &self.rate_limit {
            for rule in r.local.iter().chain(&r.global) {
                if rule.requests == 0 || rule.unit_seconds == 0 {
                    return Err("a rate limit of zero requests or a zero unit".into());
                }
            }
        }
        Ok(())
    }
}

/// Faults injected into a share of requests.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Faults {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay: Option<FaultDelay>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub abort: Option<FaultAbort>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultDelay {
    pub delay_ms: u64,
    /// Percent of requests delayed.
    pub percent: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultAbort {
    /// The answer to HTTP requests (and to gRPC ones without `grpc_status`,
    /// as its gRPC equivalent).
    pub http_status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_status: Option<u32>,
    /// Percent of requests aborted.
    pub percent: f64,
}

/// Rate limits of one policy: `local` ones counted by each proxy alone,
/// `global` ones shared by every proxy through the store
/// (`GatewayConfig::rate_limit_store`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RateLimits {
    /// `<namespace>/<policy>`: the limits' name in keys and metrics.
    pub policy: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub local: Vec<RateLimitRule>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub global: Vec<RateLimitRule>,
    /// When the store cannot be reached, refuse (503) rather than pass.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub fail_closed: bool,
}

/// `requests` per `unit_seconds` for the requests every selector matches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitRule {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub selectors: Vec<ClientMatch>,
    pub requests: u64,
    pub unit_seconds: u64,
}

/// One condition on the client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientMatch {
    Header {
        name: String,
        value: ValueMatch,
    },
    /// The client's address within `cidr`; `distinct`: each address its
    /// own limit.
    SourceCidr {
        cidr: String,
        distinct: bool,
    },
    /// The caller's SPIFFE ID (a mutual-TLS peer).
    SpiffeId(ValueMatch),
    JwtClaim {
        name: String,
        value: ValueMatch,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ValueMatch {
    Exact(String),
    Regex(String),
    /// Any value, each its own limit.
    Distinct,
}
