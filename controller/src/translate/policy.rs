//! BackendTLSPolicy: TLS from gateways to the backends of a Service port,
//! checked against the policy's CA (a ConfigMap's `ca.crt`, or the system's
//! roots) and its hostname or subjectAltNames. A policy naming the port
//! (`sectionName`) wins over one on the whole Service; of two on the same
//! target, the older (then the first by name) wins and the other is
//! Conflicted; one naming a port the Service lacks attaches nowhere. Its
//! status lists the Gateways whose routes use the Service.

use super::conditions::Verdict;
use crate::resources::{Kind, ObjKey, Object};
use crate::store::Store;
use crate::CONTROLLER_NAME;
use gateway_api::backendtlspolicies::{
    BackendTlsPolicy, BackendTlsPolicyValidation,
    BackendTlsPolicyValidationSubjectAltNamesType as SanType,
};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use weft_api::{PolicyTls, SubjectAltName, UpstreamTls};

/// A Service port a Gateway's routes send to: namespace, Service, port name.
pub type ServicePort = (String, String, Option<String>);

/// A policy checked on its own: the TLS it asks for (`None` when it cannot
/// be met), and what its Accepted and ResolvedRefs conditions say when not
/// True: (reason, message).
struct Checked {
    tls: Option<UpstreamTls>,
    accepted: Option<(&'static str, String)>,
    resolved: Option<(&'static str, String)>,
}

/// The BackendTLSPolicies in namespace `ns`.
fn policies_in<'a, 'n>(
    store: &'a Store,
    ns: &'n str,
) -> impl Iterator<Item = (&'a ObjKey, &'a BackendTlsPolicy)> + use<'a, 'n> {
    store
        .of_kind(Kind::BackendTlsPolicy)
        .filter(move |(key, _)| key.namespace == ns)
        .filter_map(|(key, entry)| match &entry.object {
            Object::BackendTlsPolicy(p) => Some((key, p)),
            _ => None,
        })
}

/// The policies that target Service `svc` in `ns`, for port `port_name`:
/// the one that applies first, then the others, each with its key.
fn targeting<'a>(
    store: &'a Store,
    ns: &str,
    svc: &str,
    port_name: Option<&str>,
) -> Vec<(&'a ObjKey, &'a BackendTlsPolicy, bool)> {
    let mut out: Vec<(&ObjKey, &BackendTlsPolicy, bool)> = policies_in(store, ns)
        .filter_map(|(key, p)| {
            let target = p.spec.target_refs.iter().find(|t| {
                t.group.is_empty()
                    && t.kind == "Service"
                    && t.name == svc
                    && t.section_name
                        .as_deref()
                        .is_none_or(|s| port_name == Some(s))
            })?;
            Some((key, p, target.section_name.is_some()))
        })
        .collect();
    // Port-specific first; then the oldest; then by name.
    out.sort_by_key(|(key, p, specific)| {
        let created = p.metadata.creation_timestamp.as_ref().map(|t| t.0);
        (!specific, created, key.name.clone())
    });
    out
}

/// The TLS the policy that applies to a Service port asks for; `Err` when
/// that policy cannot be met.
pub fn for_port(
    store: &Store,
    ns: &str,
    svc: &str,
    port_name: Option<&str>,
) -> Option<Result<UpstreamTls, String>> {
    let (key, policy, _) = targeting(store, ns, svc, port_name).into_iter().next()?;
    let checked = check(store, ns, policy);
    Some(checked.tls.ok_or_else(|| {
        let (_, message) = checked.accepted.unwrap_or_default();
        format!("BackendTLSPolicy {}: {message}", key.name)
    }))
}

fn check(store: &Store, ns: &str, policy: &BackendTlsPolicy) -> Checked {
    validation(store, ns, &policy.spec.validation)
}

/// The TLS a `validation` (BackendTLSPolicy's, or an XBackend's) asks
/// for, with what is wrong with it: (reason, message).
pub fn tls_of(
    store: &Store,
    ns: &str,
    v: &BackendTlsPolicyValidation,
) -> Result<UpstreamTls, (&'static str, String)> {
    let checked = validation(store, ns, v);
    match (checked.tls, checked.accepted, checked.resolved) {
        (Some(tls), None, None) => Ok(tls),
        (_, Some(problem), _) | (_, None, Some(problem)) => Err(problem),
        (None, None, None) => Err(("Invalid", "no TLS".into())),
    }
}

fn validation(store: &Store, ns: &str, v: &BackendTlsPolicyValidation) -> Checked {
    let mut roots = Vec::new();
    let mut resolved = None;
    for r in v.ca_certificate_refs.iter().flatten() {
        let problem = if !r.group.is_empty() || r.kind != "ConfigMap" {
            let message = format!("caCertificateRef {}/{} is not a ConfigMap", r.group, r.kind);
            Some(("InvalidKind", message))
        } else {
            let text = match store.lookup(Kind::ConfigMap, ns, &r.name) {
                Some(Object::ConfigMap(cm)) => {
                    cm.data.as_ref().and_then(|d| d.get("ca.crt")).cloned()
                }
                _ => None,
            };
            match text {
                Some(pem) if super::frontend::pem_certificates(&pem) => {
                    roots.push(pem);
                    None
                }
                Some(_) => Some((
                    "InvalidCACertificateRef",
                    format!("ConfigMap {} has no usable ca.crt", r.name),
                )),
                None => Some((
                    "InvalidCACertificateRef",
                    format!("ConfigMap {} or its ca.crt does not exist", r.name),
                )),
            }
        };
        if let Some(p) = problem {
            resolved.get_or_insert(p);
        }
    }
    let unmet = |accepted: (&'static str, String), resolved| Checked {
        tls: None,
        accepted: Some(accepted),
        resolved,
    };
    let system = match v.well_known_ca_certificates.as_deref() {
        None => false,
        Some("System") => true,
        Some(other) => {
            let message = format!("wellKnownCACertificates {other:?} is not supported");
            return unmet(("Invalid", message), resolved);
        }
    };
    if roots.is_empty() && !system {
        let message = resolved
            .as_ref()
            .map_or("no caCertificateRefs".into(), |(_, m)| m.clone());
        return unmet(("NoValidCACertificate", message), resolved);
    }
    let subject_alt_names = v
        .subject_alt_names
        .iter()
        .flatten()
        .filter_map(|san| match san.r#type {
            SanType::Hostname => san.hostname.clone().map(SubjectAltName::Dns),
            SanType::Uri => san.uri.clone().map(SubjectAltName::Uri),
        })
        .collect();
    Checked {
        tls: Some(UpstreamTls {
            sni: v.hostname.clone(),
            roots_pem: roots,
            identities: Vec::new(),
            client_cert: None,
            policy: Some(PolicyTls {
                subject_alt_names,
                system_roots: system,
            }),
        }),
        accepted: None,
        resolved,
    }
}

/// The policies in `ns` whose target names a port Service `svc` lacks
/// (the Service existing), with that name.
fn dangling<'a>(store: &'a Store, ns: &str, svc: &str) -> Vec<(&'a ObjKey, &'a str)> {
    let Some(Object::Service(service)) = store.lookup(Kind::Service, ns, svc) else {
        return Vec::new();
    };
    let names: Vec<&str> = service
        .spec
        .iter()
        .flat_map(|s| s.ports.iter().flatten())
        .filter_map(|p| p.name.as_deref())
        .collect();
    let names = &names;
    policies_in(store, ns)
        .flat_map(|(key, p)| {
            p.spec.target_refs.iter().filter_map(move |t| {
                let section = t.section_name.as_deref()?;
                let ours = t.group.is_empty() && t.kind == "Service" && t.name == svc;
                (ours && !names.contains(&section)).then_some((key, section))
            })
        })
        .collect()
}

/// The status of every BackendTLSPolicy: one ancestor per Gateway (in
/// `users`, by the Services' ports its routes send to) for each policy
/// targeting one of those ports, the policy that applies Accepted as its
/// check says, the others Conflicted when they share its target; a policy
/// naming a port the Service lacks is not accepted (TargetNotFound).
pub fn statuses(
    store: &Store,
    users: &BTreeMap<ObjKey, Vec<ServicePort>>,
    statuses: &mut BTreeMap<ObjKey, Value>,
) {
    let mut ancestors: BTreeMap<ObjKey, Vec<Value>> = BTreeMap::new();
    let mut report = |key: &ObjKey, gateway: &ObjKey, accepted: Verdict, resolved: Verdict| {
        let g = store.get(key).map_or(1, |e| e.generation);
        ancestors.entry(key.clone()).or_default().push(json!({
            "ancestorRef": {
                "group": crate::resources::GATEWAY_GROUP,
                "kind": "Gateway",
                "namespace": gateway.namespace,
                "name": gateway.name,
            },
            "controllerName": CONTROLLER_NAME,
            "conditions": vec![
                accepted.condition("Accepted", "Accepted", g),
                resolved.condition("ResolvedRefs", "References resolved", g),
            ],
        }));
    };
    for (gateway, ports) in users {
        let mut seen = std::collections::BTreeSet::new();
        for (ns, svc, port_name) in ports {
            // A policy naming a port the Service lacks attaches nowhere.
            for (key, section) in dangling(store, ns, svc) {
                if seen.insert(key.clone()) {
                    let mut accepted = Verdict::ok("Accepted");
                    let message = format!("Service {svc} has no port named {section}");
                    accepted.fail("TargetNotFound", message);
                    report(key, gateway, accepted, Verdict::ok("ResolvedRefs"));
                }
            }
            let all = targeting(store, ns, svc, port_name.as_deref());
            let winner_specific = all.first().map(|(_, _, specific)| *specific);
            for (i, (key, policy, specific)) in all.iter().enumerate() {
                if !seen.insert((*key).clone()) {
                    continue;
                }
                let checked = check(store, ns, policy);
                let mut accepted = Verdict::ok("Accepted");
                let mut resolved = Verdict::ok("ResolvedRefs");
                // Losing to a policy on the same target is a conflict; a
                // whole-Service policy beside a port's own is not.
                if i > 0 && Some(*specific) == winner_specific {
                    accepted.fail("Conflicted", "another policy on the same target is older");
                } else if let Some((reason, message)) = checked.accepted {
                    accepted.fail(reason, message);
                }
                if let Some((reason, message)) = checked.resolved {
                    resolved.fail(reason, message);
                }
                report(key, gateway, accepted, resolved);
            }
        }
    }
    for (key, list) in ancestors {
        statuses.insert(key, json!({ "ancestors": list }));
    }
}

/// The Service ports each Gateway's attached routes send to (valid or
/// not), with the port's name: the Gateways a policy reports to.
pub fn users(
    store: &Store,
    gateways: &[super::gateway::GatewayCtx],
) -> BTreeMap<ObjKey, Vec<ServicePort>> {
    let mut out = BTreeMap::new();
    for gw in gateways {
        let mut ports = Vec::new();
        for (route_ns, _, r) in super::backend::attached_refs(store, gw) {
            let core = r["group"].as_str().unwrap_or("").is_empty()
                && r["kind"].as_str().unwrap_or("Service") == "Service";
            let (Some(svc), Some(port)) = (r["name"].as_str(), r["port"].as_i64()) else {
                continue;
            };
            if !core {
                continue;
            }
            let ns = r["namespace"].as_str().unwrap_or(route_ns).to_string();
            let port_name = match store.lookup(Kind::Service, &ns, svc) {
                Some(Object::Service(s)) => s
                    .spec
                    .iter()
                    .flat_map(|s| s.ports.iter().flatten())
                    .find(|p| i64::from(p.port) == port)
                    .and_then(|p| p.name.clone()),
                _ => None,
            };
            let entry = (ns, svc.to_string(), port_name);
            if !ports.contains(&entry) {
                ports.push(entry);
            }
        }
        out.insert(gw.key.clone(), ports);
    }
    out
}
