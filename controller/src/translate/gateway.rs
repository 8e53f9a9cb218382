//! GatewayClasses and Gateways: which Gateways weft owns, their addresses,
//! and each listener's validity, conflicts and certificates. Routes attach to
//! the `ListenerCtx`s built here.

use super::conditions::{Condition, Verdict};
use super::selector::{selector_of, Selector};
use super::{hostname, tls, Options};
use crate::resources::{Kind, ObjKey, Object, GATEWAY_GROUP};
use crate::store::Store;
use crate::CONTROLLER_NAME;
use gateway_api::gateways::{
    Gateway, GatewayListeners, GatewayListenersAllowedRoutesNamespacesFrom as From,
};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use weft_api::{Protocol, Route, TlsCertificate};

pub const ACCESS_LOG_ANNOTATION: &str = "weft.dev/access-log";

pub enum AllowedFrom {
    Same,
    All,
    Selector(Selector),
}

pub struct ListenerCtx {
    pub name: String,
    /// The ListenerSet that brought it, or `None` for the Gateway's own.
    pub owner: Option<ObjKey>,
    /// Its resource's namespace: `allowedRoutes` `Same` means this one.
    pub namespace: String,
    pub port: u16,
    pub protocol: Option<Protocol>,
    pub hostname: Option<String>,
    pub allowed_from: AllowedFrom,
    /// Route kinds this listener accepts (all of them valid).
    pub kinds: Vec<&'static str>,
    pub tls: Option<TlsCertificate>,
    /// HTTPS: the client certificates it asks for (`spec.tls.frontend`).
    pub client_auth: Option<weft_api::ClientAuth>,
    /// A TLS listener in Passthrough mode: no certificate of its own.
    pub passthrough: bool,
    pub accepted: Verdict,
    pub resolved: Verdict,
    pub conflict: Option<&'static str>,
    /// Routes attached (namespace/name), for `attachedRoutes`.
    pub attached: BTreeSet<(String, String)>,
    /// Virtual hosts by hostname: routes with their precedence keys.
    pub vhosts: BTreeMap<String, Vec<(super::rules::SortKey, Route)>>,
}

impl ListenerCtx {
    /// Whether the listener takes routes and serves traffic.
    pub fn usable(&self) -> bool {
        self.accepted.is_ok() && self.conflict.is_none() && self.protocol.is_some()
    }

    /// Whether it is programmed: usable, and a listener that terminates
    /// TLS has a certificate. Exactly the listeners that reach the IR.
    pub fn programmed(&self) -> bool {
        let needs_cert = match self.protocol {
            Some(Protocol::Https) => true,
            Some(Protocol::Tls) => !self.passthrough,
            _ => false,
        };
        self.usable() && (!needs_cert || self.tls.is_some())
    }
}

pub struct GatewayCtx {
    pub key: ObjKey,
    /// The annotation `weft.dev/access-log: "true"` turns on access logs.
    pub access_log: bool,
    /// Bounds under load, from annotations (`super::limits`), and what
    /// was wrong with those annotations.
    pub limits: weft_api::Limits,
    pub limits_problems: Vec<String>,
    pub generation: i64,
    pub addresses: Vec<IpAddr>,
    pub address_problem: Option<String>,
    /// `spec.infrastructure.parametersRef` names nothing weft can read.
    pub parameters_problem: Option<String>,
    pub listeners: Vec<ListenerCtx>,
    /// Some port validates client certificates in `AllowInsecureFallback`.
    pub insecure_frontend: bool,
    /// `spec.tls.backend.clientCertificateRef`, presented to backends a
    /// BackendTLSPolicy sends TLS to; or why it is unusable.
    pub backend_client_cert: Option<TlsCertificate>,
    pub client_cert_problem: Option<(&'static str, String)>,
    /// The ListenerSets that name this Gateway their parent.
    pub listener_sets: Vec<super::listenerset::Attached>,
    /// Its zone: `spec.infrastructure.labels` `topology.kubernetes.io/zone`.
    pub zone: Option<String>,
}

/// The GatewayClasses weft owns, with their statuses; the names of the
/// accepted ones are returned.
pub fn classes(store: &Store, statuses: &mut BTreeMap<ObjKey, Value>) -> BTreeSet<String> {
    let mut accepted = BTreeSet::new();
    for (key, entry) in store.of_kind(Kind::GatewayClass) {
        let Object::GatewayClass(class) = &entry.object else {
            continue;
        };
        if class.spec.controller_name != CONTROLLER_NAME {
            continue;
        }
        let g = entry.generation;
        let mut verdict = Verdict::ok("Accepted");
        if let Some(p) = &class.spec.parameters_ref {
            verdict.fail(
                "InvalidParameters",
                format!(
                    "weft takes no parameters; parametersRef {}/{} {} is not supported",
                    p.group, p.kind, p.name
                ),
            );
        }
        if verdict.is_ok() {
            accepted.insert(key.name.clone());
        }
        let conditions = vec![
            verdict.condition("Accepted", "Accepted by weft", g),
            Condition::new(
                "SupportedVersion",
                true,
                "SupportedVersion",
                "Gateway API version is supported",
                g,
            ),
        ];
        statuses.insert(key.clone(), json!({ "conditions": conditions }));
    }
    accepted
}

/// Builds the context of every Gateway of an accepted weft class.
pub fn gateways(store: &Store, classes: &BTreeSet<String>, opts: &Options) -> Vec<GatewayCtx> {
    let mut out = Vec::new();
    for (key, entry) in store.of_kind(Kind::Gateway) {
        let Object::Gateway(gw) = &entry.object else {
            continue;
        };
        if !classes.contains(&gw.spec.gateway_class_name) {
            continue;
        }
        out.push(gateway(store, key, entry.generation, gw, opts));
    }
    out
}

fn gateway(
    store: &Store,
    key: &ObjKey,
    generation: i64,
    gw: &Gateway,
    opts: &Options,
) -> GatewayCtx {
    let mut addresses = Vec::new();
    let mut address_problem = None;
    for a in gw.spec.addresses.iter().flatten() {
        let type_ = a.r#type.as_deref().unwrap_or("IPAddress");
        match (type_, a.value.as_deref()) {
            ("IPAddress", None | Some("")) => addresses.push(opts.default_address),
            ("IPAddress", Some(v)) => match v.parse::<IpAddr>() {
                Ok(ip) => addresses.push(ip),
                Err(_) => address_problem = Some(format!("{v:?} is not an IP address")),
            },
            (t, _) => {
                address_problem = Some(format!("address type {t} is not supported; use IPAddress"))
            }
        }
    }
    if addresses.is_empty() {
        addresses.push(opts.default_address);
    }
    addresses.sort();
    addresses.dedup();
    let mut listeners: Vec<ListenerCtx> = gw
        .spec
        .listeners
        .iter()
        .map(|l| listener(store, &key.namespace, None, gw.spec.tls.as_ref(), l))
        .collect();
    let listener_sets = super::listenerset::merge(store, key, gw, &mut listeners);
    mark_conflicts(&mut listeners);
    let client_ref = gw.spec.tls.as_ref().and_then(|t| t.backend.as_ref());
    let client_ref = client_ref.and_then(|b| b.client_certificate_ref.as_ref());
    let (backend_client_cert, client_cert_problem) = match client_ref {
        None => (None, None),
        Some(r) => {
            let r = gateway_api::gateways::GatewayListenersTlsCertificateRefs {
                group: r.group.clone(),
                kind: r.kind.clone(),
                name: r.name.clone(),
                namespace: r.namespace.clone(),
            };
            match tls::resolve(store, &key.namespace, "Gateway", &r) {
                Ok(cert) => (Some(cert), None),
                Err(("RefNotPermitted", message)) => (None, Some(("RefNotPermitted", message))),
                Err((_, message)) => (None, Some(("InvalidClientCertificateRef", message))),
            }
        }
    };
    let annotations = gw.metadata.annotations.as_ref();
    let access_log = annotations
        .and_then(|a| a.get(ACCESS_LOG_ANNOTATION))
        .is_some_and(|v| v == "true");
    let (limits, limits_problems) = super::limits::from_annotations(annotations);
    let parameters_problem = gw
        .spec
        .infrastructure
        .as_ref()
        .and_then(|i| i.parameters_ref.as_ref())
        .and_then(|r| {
            let kind = match (r.group.as_str(), r.kind.as_str()) {
                ("", "ConfigMap") => Some(crate::resources::Kind::ConfigMap),
                ("", "Secret") => Some(crate::resources::Kind::Secret),
                _ => None,
            };
            let found = kind.and_then(|k| store.lookup(k, &key.namespace, &r.name));
            let Some(found) = found else {
                let group = if r.group.is_empty() { "core" } else { &r.group };
                return Some(format!(
                    "parametersRef {} {} (group {group}): no such object weft can read",
                    r.kind, r.name
                ));
            };
            match found {
                crate::resources::Object::ConfigMap(cm) => crate::provision::check_parameters(
                    cm.data.as_ref().unwrap_or(&Default::default()),
                )
                .err()
                .map(|e| format!("parametersRef ConfigMap {}: {e}", r.name)),
                _ => None,
            }
        });
    GatewayCtx {
        key: key.clone(),
        access_log,
        limits,
        limits_problems,
        generation,
        addresses,
        address_problem,
        parameters_problem,
        listeners,
        insecure_frontend: super::frontend::insecure(gw.spec.tls.as_ref()),
        backend_client_cert,
        client_cert_problem,
        listener_sets,
        zone: gw
            .spec
            .infrastructure
            .as_ref()
            .and_then(|i| i.labels.as_ref())
            .and_then(|l| l.get(super::backend::ZONE_LABEL))
            .cloned(),
    }
}

/// The route kinds a listener of `protocol` takes.
fn route_kinds(protocol: Option<Protocol>) -> &'static [&'static str] {
    match protocol {
        Some(Protocol::Http | Protocol::Https) => &["HTTPRoute", "GRPCRoute"],
        Some(Protocol::Tcp) => &["TCPRoute"],
        Some(Protocol::Tls) => &["TLSRoute"],
        // An east-west gateway's tunnels go to exported services only.
        Some(Protocol::EastWest) | None => &[],
    }
}

/// One listener of a Gateway in `gateway_ns`, or of the ListenerSet `owner`
/// (its certificate references are the ListenerSet's to make).
pub fn listener(
    store: &Store,
    gateway_ns: &str,
    owner: Option<&ObjKey>,
    gateway_tls: Option<&gateway_api::gateways::GatewayTls>,
    l: &GatewayListeners,
) -> ListenerCtx {
    let (ref_ns, from_kind) = match owner {
        Some(ls) => (ls.namespace.as_str(), "ListenerSet"),
        None => (gateway_ns, "Gateway"),
    };
    let mut accepted = Verdict::ok("Accepted");
    let mut resolved = Verdict::ok("ResolvedRefs");
    let protocol = match l.protocol.as_str() {
        "HTTP" => Some(Protocol::Http),
        "HTTPS" => Some(Protocol::Https),
        "TCP" => Some(Protocol::Tcp),
        "TLS" => Some(Protocol::Tls),
        super::eastwest::PROTOCOL => Some(Protocol::EastWest),
        other => {
            accepted.fail(
                "UnsupportedProtocol",
                format!("protocol {other} is not supported"),
            );
            None
        }
    };
    let port = u16::try_from(l.port)
        .ok()
        .filter(|p| *p != 0)
        .unwrap_or_else(|| {
            accepted.fail(
                "PortUnavailable",
                format!("port {} is out of range", l.port),
            );
            0
        });
    // A TCP listener serves every connection on its port.
    let hostname = l
        .hostname
        .clone()
        .filter(|h| !h.is_empty() && protocol != Some(Protocol::Tcp));
    if let Some(h) = &hostname {
        if !hostname::valid(h) {
            accepted.fail(
                "UnsupportedValue",
                format!("hostname {h:?} is not a valid hostname"),
            );
        }
    }
    let allowed = l.allowed_routes.as_ref();
    let namespaces = allowed.and_then(|a| a.namespaces.as_ref());
    let allowed_from = match namespaces.and_then(|n| n.from.as_ref()) {
        None | Some(From::Same) => AllowedFrom::Same,
        Some(From::All) => AllowedFrom::All,
        Some(From::Selector) => {
            AllowedFrom::Selector(selector_of!(namespaces.and_then(|n| n.selector.as_ref())))
        }
    };
    let mut kinds = Vec::new();
    match allowed.and_then(|a| a.kinds.as_ref()) {
        Some(requested) if !requested.is_empty() => {
            for k in requested {
                let group = k.group.as_deref().unwrap_or(GATEWAY_GROUP);
                let known = route_kinds(protocol).iter().find(|known| **known == k.kind);
                if let (true, Some(known), Some(_)) = (group == GATEWAY_GROUP, known, protocol) {
                    if !kinds.contains(known) {
                        kinds.push(*known);
                    }
                } else {
                    resolved.fail(
                        "InvalidRouteKinds",
                        format!("route kind {group}/{} is not supported", k.kind),
                    );
                }
            }
        }
        _ => kinds.extend(route_kinds(protocol)),
    }
    let mut tls_cert = None;
    let config = l.tls.as_ref();
    let passthrough = matches!(
        config.and_then(|t| t.mode.as_ref()),
        Some(gateway_api::gateways::GatewayListenersTlsMode::Passthrough)
    );
    if protocol == Some(Protocol::Https) && passthrough {
        accepted.fail(
            "UnsupportedValue",
            "TLS mode Passthrough needs a TLS listener",
        );
    }
    let terminates = match protocol {
        Some(Protocol::Https) => true,
        Some(Protocol::Tls) => !passthrough,
        _ => false,
    };
    if terminates {
        let refs = config
            .and_then(|t| t.certificate_refs.as_deref())
            .unwrap_or_default();
        if refs.is_empty() {
            resolved.fail(
                "InvalidCertificateRef",
                "a listener that terminates TLS needs a certificateRef",
            );
        }
        for r in refs {
            match tls::resolve(store, ref_ns, from_kind, r) {
                Ok(cert) => {
                    tls_cert.get_or_insert(cert);
                }
                Err((reason, message)) => resolved.fail(reason, message),
            }
        }
    }
    let mut client_auth = None;
    if protocol == Some(Protocol::Https) {
        if let Some(v) = super::frontend::for_port(store, gateway_ns, gateway_tls, port) {
            for (reason, message) in v.problems {
                resolved.fail(reason, message);
            }
            match v.client_auth {
                Some(auth) => client_auth = Some(auth),
                // Never serve without the validation asked for.
                None => accepted.fail(
                    "NoValidCACertificate",
                    "no caCertificateRef of the client certificate validation is usable",
                ),
            }
        }
    }
    ListenerCtx {
        name: l.name.clone(),
        owner: owner.cloned(),
        namespace: ref_ns.to_string(),
        port,
        protocol,
        hostname,
        allowed_from,
        kinds,
        tls: tls_cert,
        client_auth,
        passthrough: passthrough && protocol == Some(Protocol::Tls),
        accepted,
        resolved,
        conflict: None,
        attached: BTreeSet::new(),
        vhosts: BTreeMap::new(),
    }
}

/// Listeners sharing a port must agree on the protocol and differ by
/// hostname; those that do not are Conflicted. Between a Gateway and its
/// ListenerSets (or two ListenerSets) the earlier listener keeps its place
/// and only the later one is Conflicted.
fn mark_conflicts(listeners: &mut [ListenerCtx]) {
    let n = listeners.len();
    for i in 0..n {
        for j in 0..n {
            if i == j || listeners[i].port != listeners[j].port || listeners[j].protocol.is_none() {
                continue;
            }
            if listeners[i].owner != listeners[j].owner && j > i {
                continue;
            }
            if listeners[i].protocol != listeners[j].protocol {
                listeners[i].conflict = Some("ProtocolConflict");
            } else if listeners[i].hostname == listeners[j].hostname
                && listeners[i].conflict.is_none()
            {
                listeners[i].conflict = Some("HostnameConflict");
            }
        }
    }
}

/// The status of a Gateway once routes have attached.
pub fn status(gw: &GatewayCtx, bind_errors: &[String]) -> Value {
    let g = gw.generation;
    let mut accepted = Verdict::ok("Accepted");
    let mut programmed = Verdict::ok("Programmed");
    if let Some(problem) = &gw.address_problem {
        accepted.fail("UnsupportedAddress", problem.clone());
        programmed.fail("Invalid", "the Gateway is not accepted");
    }
    if let Some(problem) = &gw.parameters_problem {
        accepted.fail("InvalidParameters", problem.clone());
        programmed.fail("Invalid", "the Gateway is not accepted");
    }
    if !bind_errors.is_empty() {
        programmed.fail(
            "AddressNotUsable",
            format!("cannot listen: {}", bind_errors.join("; ")),
        );
    }
    // A Gateway's status is about its own listeners.
    let own: Vec<&ListenerCtx> = gw.listeners.iter().filter(|l| l.owner.is_none()).collect();
    let valid = own.iter().filter(|l| l.usable()).count();
    if valid == 0 && !own.is_empty() && accepted.is_ok() {
        accepted.fail("ListenersNotValid", "no listener is valid");
        programmed.fail("Invalid", "no listener is valid");
    }
    let mut conditions = vec![
        accepted.condition("Accepted", "Accepted by weft", g),
        programmed.condition("Programmed", "Programmed by weft", g),
    ];
    if valid < own.len() && valid > 0 && accepted.is_ok() {
        conditions[0].reason = "ListenersNotValid".into();
        conditions[0].message = "some listeners are not valid".into();
    }
    let mut resolved = Verdict::ok("ResolvedRefs");
    if let Some((reason, message)) = &gw.client_cert_problem {
        resolved.fail(reason, format!("backend client certificate: {message}"));
    }
    conditions.push(resolved.condition("ResolvedRefs", "References resolved", g));
    if !gw.limits_problems.is_empty() {
        conditions.push(Condition::new(
            "weft.dev/Limits",
            false,
            "InvalidAnnotation",
            gw.limits_problems.join("; "),
            g,
        ));
    }
    if gw.insecure_frontend {
        conditions.push(Condition::new(
            "InsecureFrontendValidationMode",
            true,
            "ConfigurationChanged",
            "client certificates are asked for but not required (AllowInsecureFallback)",
            g,
        ));
    }
    let listeners: Vec<Value> = own.iter().map(|l| listener_status(l, g)).collect();
    // Addresses that could not be bound are not the Gateway's.
    // Each error reads "<address>:<port>: <reason>".
    let unusable = |a: &IpAddr| {
        bind_errors.iter().any(|e| {
            let addr = e.split_once(": ").map_or(e.as_str(), |(addr, _)| addr);
            addr.parse::<std::net::SocketAddr>()
                .is_ok_and(|s| s.ip() == *a)
        })
    };
    let addresses: Vec<Value> = gw
        .addresses
        .iter()
        .filter(|a| !unusable(a))
        .map(|a| json!({"type": "IPAddress", "value": a.to_string()}))
        .collect();
    let mut status =
        json!({ "addresses": addresses, "conditions": conditions, "listeners": listeners });
    if !gw.listener_sets.is_empty() {
        let attached = gw.listener_sets.iter().filter(|ls| ls.accepted(gw)).count();
        status["attachedListenerSets"] = json!(attached);
    }
    status
}

pub fn listener_status(l: &ListenerCtx, g: i64) -> Value {
    let mut accepted = l.accepted.clone();
    if let Some(reason) = l.conflict {
        accepted.fail(
            reason,
            "another listener on this port conflicts with this one",
        );
    }
    let mut programmed = Verdict::ok("Programmed");
    if let Some(reason) = l.conflict {
        programmed.fail(reason, "conflicts with another listener on this port");
    } else if !l.programmed() {
        programmed.fail(
            "Invalid",
            "the listener is not valid or has no usable certificate",
        );
    }
    let conflicted = match l.conflict {
        Some(reason) => Condition::new(
            "Conflicted",
            true,
            reason,
            "conflicts with another listener on this port",
            g,
        ),
        None => Condition::new("Conflicted", false, "NoConflicts", "no conflict", g),
    };
    // A conflicted listener takes no routes of any kind.
    let kinds: Vec<Value> = l
        .kinds
        .iter()
        .filter(|_| l.conflict.is_none())
        .map(|k| json!({"group": GATEWAY_GROUP, "kind": k}))
        .collect();
    json!({
        "name": l.name,
        "supportedKinds": kinds,
        "attachedRoutes": l.attached.len(),
        "conditions": [
            accepted.condition("Accepted", "Accepted", g),
            programmed.condition("Programmed", "Programmed", g),
            l.resolved.condition("ResolvedRefs", "References resolved", g),
            conflicted,
        ],
    })
}
