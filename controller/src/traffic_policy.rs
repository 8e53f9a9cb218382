//! weft's resilience kind (`weft.dev/v1alpha1`), as written: the
//! `BackendTrafficPolicy`, with Envoy Gateway's field names where it has
//! them. It targets Services (a port of one by `sectionName`), and for
//! rate limits and faults also HTTPRoutes and GRPCRoutes (a rule of one by
//! `sectionName`), whose policy overrides the Service's; only its
//! shape lives here, and `crate::translate::traffic` checks it and builds
//! the IR. Numbers are signed and durations text, so that a bad value is a
//! status condition rather than a document that cannot be read.

use crate::policies::{PolicyStatus, TargetRef};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Circuit breaking, health checks and load balancing for a Service's
/// endpoints, in every proxy that sends to them.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, CustomResource)]
#[kube(
    group = "weft.dev",
    version = "v1alpha1",
    kind = "BackendTrafficPolicy",
    plural = "backendtrafficpolicies",
    namespaced,
    status = "PolicyStatus"
)]
#[serde(rename_all = "camelCase")]
pub struct BackendTrafficPolicySpec {
    #[serde(default)]
    pub target_refs: Vec<TargetRef>,
    #[serde(default)]
    pub circuit_breaker: Option<CircuitBreakerSpec>,
    #[serde(default)]
    pub health_check: Option<Box<HealthCheckSpec>>,
    #[serde(default)]
    pub load_balancer: Option<Box<LoadBalancerSpec>>,
    #[serde(default)]
    pub rate_limit: Option<Box<RateLimitSpec>>,
    #[serde(default)]
    pub fault_injection: Option<Box<FaultInjectionSpec>>,
}

/// Faults injected into a share of requests: a delay, then an answer
/// instead of the backend's.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FaultInjectionSpec {
    #[serde(default)]
    pub delay: Option<FaultDelaySpec>,
    #[serde(default)]
    pub abort: Option<FaultAbortSpec>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FaultDelaySpec {
    #[serde(default)]
    pub fixed_delay: Option<String>,
    /// Percent of requests (fractions allowed); 100 when absent.
    #[serde(default)]
    pub percentage: Option<f64>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FaultAbortSpec {
    /// The answer to HTTP requests (and to gRPC ones without `grpcStatus`).
    #[serde(default)]
    pub http_status: Option<i64>,
    /// The gRPC status of aborted gRPC requests.
    #[serde(default)]
    pub grpc_status: Option<i64>,
    /// Percent of requests (fractions allowed); 100 when absent.
    #[serde(default)]
    pub percentage: Option<f64>,
}

/// Rate limits: `local` ones per proxy, `global` ones shared by every
/// proxy through Redis.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitSpec {
    #[serde(default)]
    pub local: Option<RateLimitRules>,
    #[serde(default)]
    pub global: Option<GlobalRateLimitSpec>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitRules {
    #[serde(default)]
    pub rules: Vec<RateLimitRule>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GlobalRateLimitSpec {
    #[serde(default)]
    pub rules: Vec<RateLimitRule>,
    /// When Redis cannot be reached: `Open` (the default: requests pass,
    /// and are counted) or `Closed` (they are refused with 503).
    #[serde(default)]
    pub failure_mode: Option<String>,
}

/// A limit on the requests whose client every selector matches (all
/// requests when there is none).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitRule {
    #[serde(default)]
    pub client_selectors: Vec<ClientSelector>,
    pub limit: RateLimitValue,
}

/// Every condition given must hold. A `Distinct` condition gives each
/// value (each client address within the CIDR) a limit of its own.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientSelector {
    #[serde(default)]
    pub headers: Vec<SelectorMatch>,
    #[serde(default, rename = "sourceCIDR")]
    pub source_cidr: Option<SelectorValue>,
    /// The caller's SPIFFE ID (mutual TLS).
    #[serde(default, rename = "spiffeID")]
    pub spiffe_id: Option<SelectorValue>,
    /// Claims of the JWT a SecurityPolicy verified.
    #[serde(default)]
    pub jwt_claims: Vec<SelectorMatch>,
}

/// A named value (a header, a claim) matched `Exact` (the default),
/// `RegularExpression`, or `Distinct` (any value, each its own limit).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SelectorMatch {
    pub name: String,
    #[serde(default, rename = "type")]
    pub type_: Option<String>,
    #[serde(default)]
    pub value: Option<String>,
}

/// A value matched `Exact` (the default) or `Distinct`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SelectorValue {
    #[serde(default, rename = "type")]
    pub type_: Option<String>,
    #[serde(default)]
    pub value: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitValue {
    pub requests: i64,
    /// `Second`, `Minute`, `Hour` or `Day`.
    pub unit: String,
}

/// Each limit 1024 when absent.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CircuitBreakerSpec {
    #[serde(default)]
    pub max_connections: Option<i64>,
    #[serde(default)]
    pub max_pending_requests: Option<i64>,
    #[serde(default)]
    pub max_parallel_requests: Option<i64>,
    /// 0 (the default) for no limit.
    #[serde(default)]
    pub max_requests_per_connection: Option<i64>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheckSpec {
    #[serde(default)]
    pub active: Option<ActiveHealthCheckSpec>,
    #[serde(default)]
    pub passive: Option<PassiveHealthCheckSpec>,
    /// Percent; 50 when absent.
    #[serde(default)]
    pub panic_threshold: Option<i64>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActiveHealthCheckSpec {
    /// `HTTP` or `TCP`.
    #[serde(default, rename = "type")]
    pub type_: Option<String>,
    #[serde(default)]
    pub http: Option<HttpHealthCheckSpec>,
    /// 3s when absent.
    #[serde(default)]
    pub interval: Option<String>,
    /// 1s when absent.
    #[serde(default)]
    pub timeout: Option<String>,
    /// 3 when absent.
    #[serde(default)]
    pub unhealthy_threshold: Option<i64>,
    /// 1 when absent.
    #[serde(default)]
    pub healthy_threshold: Option<i64>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpHealthCheckSpec {
    #[serde(default)]
    pub path: String,
    /// GET when absent.
    #[serde(default)]
    pub method: Option<String>,
    /// The Service's name when absent.
    #[serde(default)]
    pub hostname: Option<String>,
    /// [200] when empty.
    #[serde(default)]
    pub expected_statuses: Vec<i64>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PassiveHealthCheckSpec {
    /// 5 when absent; 0 turns the check off.
    #[serde(default, rename = "consecutive5XxErrors")]
    pub consecutive_5xx_errors: Option<i64>,
    /// 0 (off) when absent.
    #[serde(default)]
    pub consecutive_gateway_errors: Option<i64>,
    /// 3s when absent.
    #[serde(default)]
    pub interval: Option<String>,
    /// 30s when absent.
    #[serde(default)]
    pub base_ejection_time: Option<String>,
    /// 10 when absent.
    #[serde(default)]
    pub max_ejection_percent: Option<i64>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerSpec {
    /// `RoundRobin`, `LeastRequest`, `Random` or `ConsistentHash`.
    #[serde(default, rename = "type")]
    pub type_: String,
    #[serde(default)]
    pub consistent_hash: Option<ConsistentHashSpec>,
    #[serde(default)]
    pub zone_aware: Option<ZoneAwareSpec>,
}

/// What a request is hashed on (Maglev).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsistentHashSpec {
    /// `SourceIP`, `Header` or `Cookie`.
    #[serde(default, rename = "type")]
    pub type_: String,
    #[serde(default)]
    pub header: Option<HashHeaderSpec>,
    #[serde(default)]
    pub cookie: Option<HashCookieSpec>,
    /// A prime up to 5000011; 65537 when absent.
    #[serde(default)]
    pub table_size: Option<i64>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
pub struct HashHeaderSpec {
    pub name: String,
}

/// A request without the cookie is given one.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
pub struct HashCookieSpec {
    pub name: String,
    /// How long the cookie given lasts; the browser session when absent.
    #[serde(default)]
    pub ttl: Option<String>,
}

/// Endpoints in the proxy's own zone first.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ZoneAwareSpec {
    #[serde(default)]
    pub prefer_local: Option<PreferLocalSpec>,
}

/// Only the proxy's zone takes its requests while it has at least
/// `minEndpointsThreshold` usable endpoints (1 when absent); with fewer,
/// every zone does.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreferLocalSpec {
    #[serde(default)]
    pub min_endpoints_threshold: Option<i64>,
}
