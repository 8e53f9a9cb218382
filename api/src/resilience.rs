//! Resilience in the IR: what a `BackendTrafficPolicy` asks of a cluster
//! (circuit breaking, passive outlier detection, active health checks, the
//! panic threshold). Every cluster carries one; the defaults (no policy)
//! are Envoy's: 1024 of each circuit-breaker limit, no outlier detection,
//! no active checks, panic at 50%.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
}

impl Default for Resilience {
    fn default() -> Self {
        Resilience {
            circuit_breaker: CircuitBreaker::default(),
            outlier: None,
            health_check: None,
            panic_threshold: 50,
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
        Ok(())
    }

    /// Whether endpoints may be taken out of the balance.
    pub fn guarded(&self) -> bool {
        self.outlier.is_some() || self.health_check.is_some()
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
