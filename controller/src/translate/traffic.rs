//! BackendTrafficPolicy: circuit breaking, active and passive health checks
//! and the balancing of a Service's endpoints, for every proxy (gateway or
//! sidecar) that sends to them. A policy naming the port (`sectionName`)
//! wins over one on the whole Service; of two on the same target, the
//! older (then the first by name) wins and the other is Conflicted. A
//! policy that cannot be built is not accepted (Invalid) and changes
//! nothing: the Service's endpoints keep the defaults. Its status has one
//! ancestor per target, the Service itself.

use super::access::checks::duration;
use super::access::status::{self, Ancestors};
use crate::policies::TargetRef;
use crate::resources::{Kind, ObjKey, Object};
use crate::store::Store;
use crate::traffic_policy::{
    ActiveHealthCheckSpec, BackendTrafficPolicy, BackendTrafficPolicySpec, PassiveHealthCheckSpec,
};
use serde_json::Value;
use std::collections::BTreeMap;
use weft_api::{CircuitBreaker, HealthCheck, HttpCheck, LbPolicy, Outlier, Resilience};

/// What a policy asks of the endpoints it targets.
#[derive(Clone, Debug, PartialEq)]
pub struct Traffic {
    pub resilience: Resilience,
    /// The balancing it asks for, over the Service's annotation.
    pub lb: Option<LbPolicy>,
}

type Invalid = String;

/// The BackendTrafficPolicies in namespace `ns`.
fn policies_in<'a, 'n>(
    store: &'a Store,
    ns: &'n str,
) -> impl Iterator<Item = (&'a ObjKey, &'a BackendTrafficPolicy)> + use<'a, 'n> {
    store
        .of_kind(Kind::BackendTrafficPolicy)
        .filter(move |(key, _)| key.namespace == ns)
        .filter_map(|(key, entry)| match &entry.object {
            Object::BackendTrafficPolicy(p) => Some((key, p)),
            _ => None,
        })
}

fn names_service(t: &TargetRef, svc: &str) -> bool {
    t.group.is_empty() && t.kind == "Service" && t.name == svc
}

/// The policies on Service `svc` in `ns` that reach port `port_name`: the
/// one that applies first (a port's own, then the oldest, then by name).
fn targeting<'a>(
    store: &'a Store,
    ns: &str,
    svc: &str,
    port_name: Option<&str>,
) -> Vec<(&'a ObjKey, &'a BackendTrafficPolicy, bool)> {
    let mut out: Vec<_> = policies_in(store, ns)
        .filter_map(|(key, p)| {
            let t = p.spec.target_refs.iter().find(|t| {
                names_service(t, svc)
                    && t.section_name
                        .as_deref()
                        .is_none_or(|s| port_name == Some(s))
            })?;
            Some((key, p, t.section_name.is_some()))
        })
        .collect();
    out.sort_by_key(|(key, p, specific)| {
        let created = p.metadata.creation_timestamp.as_ref().map(|t| t.0);
        (!specific, created, key.name.clone())
    });
    out
}

/// What applies to the endpoints of Service `svc`'s port `port_name`:
/// `None` when no valid policy wins there.
pub fn for_port(store: &Store, ns: &str, svc: &str, port_name: Option<&str>) -> Option<Traffic> {
    let (_, policy, _) = targeting(store, ns, svc, port_name).into_iter().next()?;
    check(&policy.spec).ok()
}

/// The policy built, or why it cannot be.
pub fn check(spec: &BackendTrafficPolicySpec) -> Result<Traffic, Invalid> {
    if spec.rate_limit.is_some() {
        return Err("rateLimit is not supported yet".into());
    }
    if spec.fault_injection.is_some() {
        return Err("faultInjection is not supported yet".into());
    }
    let mut resilience = Resilience::default();
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
    let lb = match &spec.load_balancer {
        None => None,
        Some(lb) => {
            if lb.zone_aware.is_some() {
                return Err("loadBalancer.zoneAware is not supported yet".into());
            }
            if lb.consistent_hash.is_some() && lb.type_ != "ConsistentHash" {
                return Err("loadBalancer.consistentHash needs type ConsistentHash".into());
            }
            Some(match lb.type_.as_str() {
                "RoundRobin" => LbPolicy::RoundRobin,
                "LeastRequest" => LbPolicy::LeastRequest,
                "Random" => LbPolicy::Random,
                "ConsistentHash" => {
                    return Err("loadBalancer type ConsistentHash is not supported yet".into())
                }
                other => {
                    return Err(format!(
                        "loadBalancer type {other:?} is not RoundRobin, LeastRequest or Random"
                    ))
                }
            })
        }
    };
    Ok(Traffic { resilience, lb })
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

/// The status of every BackendTrafficPolicy: per target, Accepted, Invalid
/// (it cannot be built, or targets what it cannot), Conflicted (an older
/// policy has the same target) or TargetNotFound.
pub fn statuses(store: &Store, out: &mut BTreeMap<ObjKey, Value>) {
    for (key, entry) in store.of_kind(Kind::BackendTrafficPolicy) {
        let Object::BackendTrafficPolicy(policy) = &entry.object else {
            continue;
        };
        let ns = &key.namespace;
        let invalid = check(&policy.spec).err();
        let mut ancestors = Ancestors::default();
        for t in &policy.spec.target_refs {
            let ancestor = status::target(ns, t);
            if !(t.group.is_empty() && t.kind == "Service") {
                let message = format!(
                    "targetRef {}/{} is not supported: target a Service",
                    t.group, t.kind
                );
                ancestors.add(ancestor, status::verdict(Some(("Invalid", message))));
                continue;
            }
            let failure = match target_problem(store, ns, t) {
                Some(message) => Some(("TargetNotFound", message)),
                None => match (&invalid, older_on(store, ns, key, t)) {
                    (Some(why), _) => Some(("Invalid", why.clone())),
                    (None, Some(older)) => Some((
                        "Conflicted",
                        format!("BackendTrafficPolicy {older} has the same target and is older"),
                    )),
                    (None, None) => None,
                },
            };
            ancestors.add(ancestor, status::verdict(failure));
        }
        if let Some(s) = ancestors.status(entry.generation) {
            out.insert(key.clone(), s);
        }
    }
}

/// Why a Service target is not found: no such Service, or no such port.
fn target_problem(store: &Store, ns: &str, t: &TargetRef) -> Option<String> {
    let Some(Object::Service(svc)) = store.lookup(Kind::Service, ns, &t.name) else {
        return Some(format!("Service {} does not exist", t.name));
    };
    let section = t.section_name.as_deref()?;
    let ports = svc.spec.iter().flat_map(|s| s.ports.iter().flatten());
    let named = ports
        .filter_map(|p| p.name.as_deref())
        .any(|n| n == section);
    (!named).then(|| format!("Service {} has no port named {section}", t.name))
}

/// The policy that wins over `key` on exactly target `t`, if any.
fn older_on(store: &Store, ns: &str, key: &ObjKey, t: &TargetRef) -> Option<String> {
    let same = |o: &TargetRef| names_service(o, &t.name) && o.section_name == t.section_name;
    let mut rivals: Vec<_> = policies_in(store, ns)
        .filter(|(_, p)| p.spec.target_refs.iter().any(same))
        .map(|(k, p)| {
            let created = p.metadata.creation_timestamp.as_ref().map(|t| t.0);
            (created, k.name.clone())
        })
        .collect();
    rivals.sort();
    let (_, winner) = rivals.into_iter().next()?;
    (winner != key.name).then_some(winner)
}
