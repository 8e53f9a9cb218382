//! Egress: XBackends as backendRefs, the egress gateway's config, and what
//! every sidecar learns of the external hosts the mesh declares.
//!
//! - An `XBackend` of type `ExternalHostname` becomes a cluster with no
//!   endpoints and an `ExternalHost`: the gateway resolves the name itself
//!   and originates TLS as `spec.tls` says (system roots when no
//!   validation is given).
//! - On an egress gateway (`weft.dev/role: egress`), HTTP listeners take
//!   mutual TLS from mesh workloads (the gateway's own certificate, the
//!   mesh's roots), so the caller's identity is known to its routes'
//!   AuthorizationPolicies, and its connections out leave from its address.
//! - Each hostname of a route on an egress gateway's HTTP listener is a
//!   virtual host `<host>:<port>` in every sidecar, sent to the gateway
//!   over mutual TLS. Hosts nobody declared pass or are refused as the
//!   outbound policy says.

use super::backend::{BackendRef, Caller, RouteKind, Trust, Unresolved};
use super::gateway::GatewayCtx;
use crate::egress::{OutboundPolicy, XBackend, EGRESS_ROLE, ROLE_LABEL};
use crate::resources::{Kind, ObjKey, Object};
use crate::store::Store;
use gateway_api::backendtlspolicies::BackendTlsPolicyValidation;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use weft_api::{
    AppProtocol, ClientAuth, Cluster, ExternalHost, GatewayConfig, HttpMatch, LbPolicy, PolicyTls,
    Protocol, Route, SidecarConfig, UpstreamTls, VirtualHost,
};

/// Resolves a backendRef to an XBackend (from a route bound to a Gateway;
/// sidecars reach external hosts through an egress gateway).
pub fn resolve(
    store: &Store,
    caller: Caller<'_>,
    route_kind: RouteKind,
    route_ns: &str,
    r: &BackendRef<'_>,
    clusters: &mut BTreeMap<String, Cluster>,
) -> Result<String, Unresolved> {
    if matches!(caller, Caller::Sidecar(_)) {
        return Err((
            "InvalidKind",
            "an XBackend is reached through an egress gateway, not from a mesh route".into(),
        ));
    }
    let ns = r.namespace.unwrap_or(route_ns);
    let to = (crate::egress::X_GROUP, "XBackend", ns, r.name);
    super::backend::granted(store, caller, route_kind, route_ns, to)?;
    let Some(Object::XBackend(x)) = store.lookup(Kind::XBackend, ns, r.name) else {
        return Err((
            "BackendNotFound",
            format!("XBackend {ns}/{} does not exist", r.name),
        ));
    };
    // Checked for each route kind: what a TLSRoute may use differs.
    let cluster = cluster(store, ns, x, route_kind, caller.trust())
        .map_err(|m| ("UnsupportedValue", format!("XBackend {ns}/{}: {m}", r.name)))?;
    let name = match route_kind {
        RouteKind::Grpc if x.spec.protocol.is_none() => format!("xbackend/{ns}/{}/h2c", r.name),
        RouteKind::Tls | RouteKind::Tcp => format!("xbackend/{ns}/{}/l4", r.name),
        _ => format!("xbackend/{ns}/{}", r.name),
    };
    clusters.entry(name.clone()).or_insert(cluster);
    Ok(name)
}

/// Whether a route of `route_kind` can use the XBackend; why not.
pub(super) fn check(
    store: &Store,
    ns: &str,
    x: &XBackend,
    route_kind: RouteKind,
    trust: Trust<'_>,
) -> Result<(), String> {
    cluster(store, ns, x, route_kind, trust).map(|_| ())
}

/// The cluster of an XBackend, or why it cannot be used.
fn cluster(
    store: &Store,
    ns: &str,
    x: &XBackend,
    route_kind: RouteKind,
    trust: Trust<'_>,
) -> Result<Cluster, String> {
    let spec = &x.spec;
    if spec.type_ != "ExternalHostname" {
        return Err(format!("type {:?} is not supported", spec.type_));
    }
    let Some(hostname) = spec.external_hostname.as_ref().map(|e| &e.hostname) else {
        return Err("externalHostname is required".into());
    };
    if !super::hostname::valid(hostname) {
        return Err(format!("{hostname:?} is not a DNS name or *.suffix"));
    }
    let cluster_suffix = format!(".{}", trust.cluster_domain);
    if hostname.ends_with(&cluster_suffix) || hostname.ends_with(".cluster.local") {
        return Err(format!("{hostname:?} is a name inside the cluster"));
    }
    let port = u16::try_from(spec.port.number)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("port {} is out of range", spec.port.number))?;
    let stream = matches!(route_kind, RouteKind::Tcp | RouteKind::Tls);
    let protocol = match (spec.protocol.as_deref(), route_kind) {
        (None, RouteKind::Grpc) => AppProtocol::H2c,
        (None | Some("TCP"), _) if stream => AppProtocol::Http1,
        (Some(p), _) if stream => {
            return Err(format!(
                "protocol {p} cannot carry a {}'s connections",
                route_kind.name()
            ))
        }
        (None | Some("HTTP" | "HTTP11"), _) => AppProtocol::Http1,
        (Some("HTTP2" | "H2C" | "GRPC"), _) => AppProtocol::H2c,
        (Some(p), _) => return Err(format!("protocol {p} is not supported")),
    };
    let tls = spec.tls.as_ref().filter(|t| t.mode != "None");
    if route_kind == RouteKind::Tls && tls.is_some() {
        return Err(
            "a TLSRoute passes the workload's own TLS through: its XBackend takes no tls".into(),
        );
    }
    if route_kind == RouteKind::Tcp && hostname.starts_with('*') {
        return Err("a TCPRoute has no host name to stand for a wildcard".into());
    }
    if spec.protocol.as_deref() == Some("H2C") && tls.is_some() {
        return Err("H2C is HTTP/2 without TLS; HTTP2 is with".into());
    }
    if spec.protocol.as_deref() == Some("HTTP2") && tls.is_none() {
        return Err("HTTP2 needs tls; H2C is HTTP/2 without".into());
    }
    let tls = match tls {
        None => None,
        Some(t) => Some(upstream_tls(store, ns, hostname, t)?),
    };
    Ok(Cluster {
        protocol,
        endpoints: Vec::new(),
        lb: LbPolicy::RoundRobin,
        tls,
        service: Some(hostname.clone()),
        resilience: Default::default(),
        hash: None,
        zones: Vec::new(),
        origins: Vec::new(),
        external: Some(ExternalHost {
            hostname: hostname.clone(),
            port,
        }),
    })
}

/// TLS to an external host: the validation given (the hostname checked
/// is the external one unless it names another), else the system's roots;
/// with `ClientAndServer`, the client certificate of the Secret named.
fn upstream_tls(
    store: &Store,
    ns: &str,
    hostname: &str,
    t: &crate::egress::XBackendTls,
) -> Result<UpstreamTls, String> {
    let client = match (t.mode.as_str(), &t.client_certificate_ref) {
        ("ServerOnly", None) => None,
        ("ClientAndServer", Some(r)) => {
            let r = gateway_api::gateways::GatewayListenersTlsCertificateRefs {
                group: r.group.clone(),
                kind: r.kind.clone(),
                name: r.name.clone(),
                namespace: r.namespace.clone(),
            };
            let cert = super::tls::resolve(store, ns, "XBackend", &r).map_err(|(_, m)| m)?;
            Some(cert)
        }
        ("ServerOnly", Some(_)) => return Err("clientCertificateRef needs ClientAndServer".into()),
        ("ClientAndServer", None) => {
            return Err("ClientAndServer needs clientCertificateRef".into())
        }
        (mode, _) => return Err(format!("tls mode {mode:?} is not supported")),
    };
    let mut tls = match &t.validation {
        None => UpstreamTls {
            sni: hostname.to_string(),
            roots_pem: Vec::new(),
            identities: Vec::new(),
            client_cert: None,
            policy: Some(PolicyTls {
                subject_alt_names: Vec::new(),
                system_roots: true,
            }),
        },
        Some(v)
            if hostname.starts_with('*')
                && (v.hostname.is_some() || v.subject_alt_names.is_some()) =>
        {
            return Err("a wildcard XBackend checks each host's own name: no validation hostname or subjectAltNames".into());
        }
        Some(v) => {
            let v = BackendTlsPolicyValidation {
                ca_certificate_refs: v.ca_certificate_refs.clone(),
                hostname: v.hostname.clone().unwrap_or_else(|| hostname.to_string()),
                subject_alt_names: v.subject_alt_names.clone(),
                well_known_ca_certificates: v.well_known_ca_certificates.clone(),
            };
            super::policy::tls_of(store, ns, &v).map_err(|(_, m)| m)?
        }
    };
    tls.client_cert = client;
    Ok(tls)
}

/// Whether the Gateway is the mesh's egress gateway.
pub fn is_egress(store: &Store, key: &ObjKey) -> bool {
    let Some(Object::Gateway(gw)) = store.lookup(Kind::Gateway, &key.namespace, &key.name) else {
        return false;
    };
    gw.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(ROLE_LABEL))
        .is_some_and(|r| r == EGRESS_ROLE)
}

/// An egress gateway's config: its HTTP, TLS and TCP ports take mutual TLS
/// from the mesh (each listener's certificate is the gateway's own, put in
/// by the proxy), and its connections out leave from its address.
pub fn configure(config: &mut GatewayConfig, gw: &GatewayCtx, trust: Trust<'_>) {
    for p in &mut config.ports {
        match p.protocol {
            Protocol::Http => p.protocol = Protocol::Https,
            Protocol::Tls | Protocol::Tcp => {}
            Protocol::Https | Protocol::EastWest => continue,
        }
        p.client_auth = Some(ClientAuth {
            roots_pem: trust.bundle.to_vec(),
            allow_plaintext: false,
            insecure_fallback: false,
            mesh: true,
        });
        for l in &mut p.listeners {
            l.tls = None;
        }
    }
    config.egress_source = gw
        .addresses
        .iter()
        .find(|a| !a.is_loopback() && !a.is_unspecified())
        .copied();
}

/// One external host the mesh declares: `host:port` for sidecars, the
/// egress gateway that serves it, and whether workloads open whole
/// connections to it (a TLS or TCP listener) rather than send HTTP.
struct Declared {
    host: String,
    port: u16,
    gateway: ObjKey,
    addresses: Vec<IpAddr>,
    stream: bool,
}

/// The hosts every egress gateway's listeners route, each once (the first
/// gateway by name serves a host two declare): HTTP and TLS listeners'
/// by their routes' hostnames, TCP listeners' by the external host their
/// route sends to.
fn declared(
    store: &Store,
    gateways: &[GatewayCtx],
    clusters: &BTreeMap<String, Cluster>,
) -> Vec<Declared> {
    let mut out: BTreeMap<(String, u16), Declared> = BTreeMap::new();
    for gw in gateways {
        if gw.address_problem.is_some() || !is_egress(store, &gw.key) {
            continue;
        }
        for l in gw.listeners.iter().filter(|l| l.programmed()) {
            let hosts: Vec<String> = match l.protocol {
                Some(Protocol::Http | Protocol::Tls) => l
                    .vhosts
                    .keys()
                    .filter(|h| h.as_str() != "*")
                    .cloned()
                    .collect(),
                Some(Protocol::Tcp) => l
                    .vhosts
                    .values()
                    .flatten()
                    .flat_map(|(_, route)| route.clusters())
                    .filter_map(|c| clusters.get(c)?.external.as_ref())
                    .map(|e| e.hostname.clone())
                    .collect(),
                _ => continue,
            };
            let stream = l.protocol != Some(Protocol::Http);
            for host in hosts {
                out.entry((host.clone(), l.port))
                    .or_insert_with(|| Declared {
                        host,
                        port: l.port,
                        gateway: gw.key.clone(),
                        addresses: reach(store, gw),
                        stream,
                    });
            }
        }
    }
    out.into_values().collect()
}

/// Where sidecars reach an egress gateway: on Kubernetes its provisioned
/// Service's cluster IP; otherwise the addresses it listens on (not a
/// wildcard address).
fn reach(store: &Store, gw: &GatewayCtx) -> Vec<IpAddr> {
    let (ns, name) = (&gw.key.namespace, &gw.key.name);
    match crate::provision::cluster_ip(store, ns, name) {
        Some(ip) => vec![ip],
        None => gw
            .addresses
            .iter()
            .filter(|a| !a.is_unspecified())
            .copied()
            .collect(),
    }
}

/// Gives every sidecar the declared external hosts, each a virtual host
/// sent to its egress gateway over mutual TLS, and the outbound policy
/// for the rest.
pub fn declare(
    store: &Store,
    gateways: &[GatewayCtx],
    gateway_clusters: &BTreeMap<String, Cluster>,
    trust: Trust<'_>,
    policy: OutboundPolicy,
    sidecars: &mut BTreeMap<ObjKey, SidecarConfig>,
) {
    let declared = declared(store, gateways, gateway_clusters);
    let mut clusters = BTreeMap::new();
    let (mut hosts, mut stream_hosts) = (Vec::new(), Vec::new());
    for d in &declared {
        let name = format!(
            "egress/{}/{}:{}/{}",
            d.gateway.namespace, d.gateway.name, d.port, d.host
        );
        let identity = super::gateway_identity(trust.domain, &d.gateway);
        let cluster = Cluster {
            endpoints: d
                .addresses
                .iter()
                .map(|a| SocketAddr::new(*a, d.port))
                .collect(),
            tls: Some(UpstreamTls {
                sni: d.host.clone(),
                roots_pem: trust.bundle.to_vec(),
                identities: vec![identity],
                client_cert: None,
                policy: None,
            }),
            service: Some(d.host.clone()),
            // HTTP/2 over the mutual TLS to the gateway: gRPC too, and
            // one connection for many requests.
            protocol: match d.stream {
                true => AppProtocol::Http1,
                false => AppProtocol::H2c,
            },
            ..Cluster::http1(Vec::new())
        };
        clusters.insert(name.clone(), cluster);
        let hosts = match d.stream {
            true => &mut stream_hosts,
            false => &mut hosts,
        };
        hosts.push(VirtualHost {
            hostname: format!("{}:{}", d.host, d.port),
            routes: vec![Route::to_cluster(
                format!("egress/{}:{}", d.host, d.port),
                HttpMatch::default(),
                &name,
            )],
        });
    }
    for s in sidecars.values_mut() {
        let Some(port) = s.outbound.ports.iter_mut().find(|p| p.sidecar) else {
            continue;
        };
        port.passthrough = policy == OutboundPolicy::AllowAny;
        port.blackhole = policy == OutboundPolicy::RegistryOnly;
        for vhost in &stream_hosts {
            port.stream_hosts.push(vhost.clone());
            for c in vhost.routes.iter().flat_map(Route::clusters) {
                if let Some(cluster) = clusters.get(c) {
                    s.outbound.clusters.insert(c.to_string(), cluster.clone());
                }
            }
        }
        let Some(listener) = port.listeners.first_mut() else {
            continue;
        };
        for vhost in &hosts {
            // A mesh name of the same spelling wins.
            if listener
                .virtual_hosts
                .iter()
                .any(|v| v.hostname == vhost.hostname)
            {
                continue;
            }
            listener.virtual_hosts.push(vhost.clone());
            for c in vhost.routes.iter().flat_map(Route::clusters) {
                if let Some(cluster) = clusters.get(c) {
                    s.outbound.clusters.insert(c.to_string(), cluster.clone());
                }
            }
        }
    }
}
