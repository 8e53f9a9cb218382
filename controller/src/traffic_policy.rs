//! weft's resilience kind (`weft.dev/v1alpha1`), as written: the
//! `BackendTrafficPolicy`, with Envoy Gateway's field names where it has
//! them. It targets Services (a port of one by `sectionName`); only its
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
    pub health_check: Option<HealthCheckSpec>,
    #[serde(default)]
    pub load_balancer: Option<LoadBalancerSpec>,
    /// Not built yet: a policy with it is not accepted.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
    pub rate_limit: Option<serde_json::Value>,
    /// Not built yet: a policy with it is not accepted.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
    pub fault_injection: Option<serde_json::Value>,
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
    /// `RoundRobin`, `LeastRequest`, `Random` (`ConsistentHash` is not built
    /// yet).
    #[serde(default, rename = "type")]
    pub type_: String,
    #[serde(default)]
    #[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
    pub consistent_hash: Option<serde_json::Value>,
    #[serde(default)]
    #[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
    pub zone_aware: Option<serde_json::Value>,
}
