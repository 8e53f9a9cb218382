//! The IR: what one gateway needs to serve traffic, with every reference
//! resolved. The controller builds it; the gateway compiles it into its
//! request-path snapshot.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

pub use crate::affinity::*;
pub use crate::cluster::*;
pub use crate::eastwest::*;
pub use crate::policy::*;
pub use crate::resilience::*;

/// The whole configuration of one gateway: one snapshot, one version.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GatewayConfig {
    pub namespace: String,
    pub name: String,
    /// Every (addresses, port) the gateway listens on.
    pub ports: Vec<Port>,
    /// Upstream clusters by name (`<namespace>/<service>:<port>`).
    pub clusters: BTreeMap<String, Cluster>,
    /// One JSON line per request on the proxy's standard output.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub access_log: bool,
    /// The SPIFFE ID the proxy presents to meshed backends (clusters with
    /// `UpstreamTls`); its certificate comes from the CA, not the config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// The bounds the proxy keeps under load.
    #[serde(default, skip_serializing_if = "Limits::is_default")]
    pub limits: Limits,
    /// Access policies by name, for routes to refer to.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub access: BTreeMap<String, Access>,
    /// Where global rate limits are counted (`redis://host:port`), when a
    /// route or cluster here has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_store: Option<String>,
    /// The zone the proxy runs in (`topology.kubernetes.io/zone` of its
    /// Workload, or of its Gateway's `spec.infrastructure.labels`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// An east-west gateway's tunnels (its `EastWest` port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub east_west: Option<EastWest>,
    /// The cluster (control plane) the proxy is in, for metrics.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster: String,
    /// The address connections to external hosts leave from (an egress
    /// gateway's own, so that firewalls can let it alone through).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_source: Option<IpAddr>,
}

impl GatewayConfig {
    /// Whether a route or cluster here has global rate limits.
    pub fn has_global_limits(&self) -> bool {
        let global = |t: &Option<TrafficRules>| {
            t.as_ref()
                .and_then(|t| t.rate_limit.as_ref())
                .is_some_and(|r| !r.global.is_empty())
        };
        let routes = self
            .ports
            .iter()
            .flat_map(|p| &p.listeners)
            .flat_map(|l| &l.virtual_hosts)
            .flat_map(|v| &v.routes);
        routes.into_iter().any(|r| global(&r.traffic))
            || self
                .clusters
                .values()
                .any(|c| global(&c.resilience.traffic))
    }
}

/// Bounds a proxy keeps under hostile load (a Gateway's annotations may
/// change them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Limits {
    /// Open downstream connections per listening address; more wait in
    /// the kernel's backlog until one closes.
    pub max_connections: u32,
    /// The largest request body copied to a mirror.
    pub mirror_body_bytes: u64,
    /// A TCP or TLS (L4) connection idle this long, both ways, is closed.
    pub l4_idle_seconds: u64,
    /// An HTTP/1 request header must arrive whole within this long of its
    /// first byte (of the connection, for the first request).
    pub request_header_seconds: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 10_000,
            mirror_body_bytes: 64 * 1024,
            l4_idle_seconds: 3600,
            request_header_seconds: 10,
        }
    }
}

impl Limits {
    pub fn is_default(&self) -> bool {
        *self == Limits::default()
    }
}

/// A listening port: the unit the gateway binds, holding every Gateway
/// listener that shares the port.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Port {
    pub addresses: Vec<IpAddr>,
    pub port: u16,
    pub protocol: Protocol,
    /// The listeners on this port; a request is served by the one whose
    /// hostname matches it most specifically (listener isolation).
    pub listeners: Vec<Listener>,
    /// HTTPS ports only: client certificates required (mutual TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_auth: Option<ClientAuth>,
    /// Virtual hosts are named `host:port` (port 80 when the request names
    /// none), as an HTTP proxy port needs: a sidecar's outbound side.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub host_with_port: bool,
    /// A request for a host no virtual host serves goes to the host it
    /// names, as plain HTTP (a sidecar's calls leaving the mesh), instead
    /// of getting 404.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub passthrough: bool,
    /// A request for a host no virtual host serves is refused as
    /// undeclared: 502 with a body saying so, counted with the destination
    /// service `BlackHoleCluster` (the mesh's `RegistryOnly` policy).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub blackhole: bool,
    /// A sidecar's outbound port: whole connections its workload opens to
    /// hosts outside the mesh (after an HTTP `CONNECT host:port`; TLS also
    /// when captured, by its server name and the port it was bound for),
    /// by `host:port`, each to the route that carries it whole.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stream_hosts: Vec<VirtualHost>,
    /// A sidecar's port: the caller is the workload or a mesh peer, not a
    /// client to name in `x-forwarded-for` (which gateways append).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sidecar: bool,
}

impl Port {
    /// A gateway's mesh port (an egress gateway's): it takes mutual TLS
    /// from mesh workloads with the proxy's own certificate, put in from
    /// its identity, whatever server name a caller asks for.
    pub fn takes_own_cert(&self) -> bool {
        !self.sidecar && self.client_auth.as_ref().is_some_and(|a| a.mesh)
    }
}

/// Mutual TLS on a port: client certificates must chain to these roots.
/// The client's SPIFFE ID (its certificate's URI SAN) is passed upstream in
/// `x-forwarded-client-cert`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientAuth {
    pub roots_pem: Vec<String>,
    /// Also accept plaintext connections (mesh mode PERMISSIVE).
    #[serde(default)]
    pub allow_plaintext: bool,
    /// Ask for a client certificate but accept the connection without one,
    /// or with one that does not verify (Gateway API
    /// `AllowInsecureFallback`); such a peer has no identity.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_fallback: bool,
    /// The roots are the mesh's: a verified client is a workload, and its
    /// SPIFFE ID its identity (telemetry, `x-weft-*` metadata). Otherwise
    /// (Gateway `spec.tls.frontend`) the client is outside the mesh, and a
    /// SPIFFE ID in its certificate is only passed on, in XFCC.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mesh: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Protocol {
    Http,
    Https,
    /// Whole TCP connections (TCPRoute): one virtual host `*` whose first
    /// route takes every connection.
    Tcp,
    /// TLS connections routed by SNI (TLSRoute): a listener with a
    /// certificate terminates TLS, one without passes it through; the first
    /// route of the virtual host for the SNI takes the connection.
    Tls,
    /// An east-west gateway's tunnel port (`GatewayConfig::east_west`).
    EastWest,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Listener {
    pub name: String,
    /// Exact (`a.example.com`) or wildcard (`*.example.com`); `None` matches all.
    pub hostname: Option<String>,
    /// For HTTPS listeners: the certificate served to clients naming it.
    pub tls: Option<TlsCertificate>,
    /// Virtual hosts, each holding its routes in precedence order.
    pub virtual_hosts: Vec<VirtualHost>,
}

impl Listener {
    /// A listener for every hostname with one virtual host, `*`.
    pub fn any_host(
        name: impl Into<String>,
        tls: Option<TlsCertificate>,
        routes: Vec<Route>,
    ) -> Listener {
        Listener {
            name: name.into(),
            hostname: None,
            tls,
            virtual_hosts: vec![VirtualHost {
                hostname: "*".into(),
                routes,
            }],
        }
    }
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct TlsCertificate {
    pub cert_chain_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for TlsCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsCertificate")
            .field(
                "cert_chain_pem",
                &format!("{} bytes", self.cert_chain_pem.len()),
            )
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VirtualHost {
    /// `*`, `*.example.com` or `a.example.com`.
    pub hostname: String,
    /// In the Gateway API's precedence order: the first that matches wins.
    pub routes: Vec<Route>,
}

/// One match of one HTTPRoute rule, with that rule's action.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Route {
    /// `<namespace>/<route>/rule/<i>/match/<j>`, for logs and config dumps.
    pub name: String,
    #[serde(rename = "match")]
    pub matches: HttpMatch,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<HttpFilter>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<WeightedBackend>,
    #[serde(default, skip_serializing_if = "Timeouts::is_empty")]
    pub timeouts: Timeouts,
    /// HTTPRoute `retry`; without it the proxy's default policy applies
    /// (idempotent requests retried on reset and 503, twice at most).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
    /// The entry of `GatewayConfig::access` a request must pass first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<String>,
    /// Faults and rate limits of a BackendTrafficPolicy on the route (or
    /// its rule); the backend Service's apply when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic: Option<TrafficRules>,
    /// The rule's `sessionPersistence`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionPersistence>,
}

/// When and how often a request is tried again on another endpoint. Every
/// retry is also bounded by the cluster's retry budget.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retry {
    /// Retries after the first try.
    pub attempts: u32,
    /// The least wait before a retry; later retries wait longer.
    pub backoff_ms: u64,
    /// Response codes that are retried, whatever the method.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub codes: Vec<u16>,
}

impl Route {
    /// The clusters this route sends to: its backends' and its mirrors'.
    pub fn clusters(&self) -> impl Iterator<Item = &str> {
        let backends = self.backends.iter().filter_map(|b| match &b.target {
            BackendTarget::Cluster(c) => Some(c.as_str()),
            BackendTarget::Invalid { .. } => None,
        });
        let filters = self
            .filters
            .iter()
            .chain(self.backends.iter().flat_map(|b| &b.filters));
        let mirrors = filters.filter_map(|f| match f {
            HttpFilter::Mirror(m) => Some(m.cluster.as_str()),
            _ => None,
        });
        backends.chain(mirrors)
    }

    /// A route sending what `matches` matches to one cluster, with no
    /// filters and no timeouts.
    pub fn to_cluster(
        name: impl Into<String>,
        matches: HttpMatch,
        cluster: impl Into<String>,
    ) -> Route {
        Route {
            name: name.into(),
            matches,
            filters: vec![],
            backends: vec![WeightedBackend {
                weight: 1,
                target: BackendTarget::Cluster(cluster.into()),
                filters: vec![],
            }],
            timeouts: Timeouts::default(),
            retry: None,
            access: None,
            traffic: None,
            session: None,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HttpMatch {
    pub path: PathMatch,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<KeyMatch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query_params: Vec<KeyMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PathMatch {
    Exact(String),
    /// Matches whole path segments: `/foo` matches `/foo` and `/foo/x`, not `/foobar`.
    Prefix(String),
    Regex(String),
}

impl Default for PathMatch {
    fn default() -> Self {
        PathMatch::Prefix("/".into())
    }
}

/// A header (name case-insensitive) or query parameter (name exact) match.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyMatch {
    pub name: String,
    pub value: StringMatch,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StringMatch {
    Exact(String),
    Regex(String),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum HttpFilter {
    RequestHeaders(HeaderModifier),
    ResponseHeaders(HeaderModifier),
    Redirect(Redirect),
    Rewrite(Rewrite),
    Mirror(Mirror),
    Cors(Cors),
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HeaderModifier {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Redirect {
    pub scheme: Option<String>,
    pub hostname: Option<String>,
    pub port: Option<u16>,
    pub path: Option<PathModifier>,
    pub status: u16,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PathModifier {
    ReplaceFullPath(String),
    /// Replaces the part of the path the rule's `Prefix` match matched.
    ReplacePrefixMatch(String),
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Rewrite {
    pub hostname: Option<String>,
    pub path: Option<PathModifier>,
}

/// Cross-origin resource sharing: the gateway answers preflight requests
/// itself and adds `Access-Control-*` headers to responses for allowed
/// origins.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cors {
    /// `scheme://host[:port]`, the host may start with `*.`; `*` allows all.
    pub allow_origins: Vec<String>,
    /// `*` allows any method.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_methods: Vec<String>,
    /// `*` allows any header.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_headers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose_headers: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_credentials: bool,
    /// Seconds a browser may cache a preflight's answer.
    pub max_age: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Mirror {
    pub cluster: String,
    /// Share of requests mirrored, 0 to 100.
    pub percent: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WeightedBackend {
    pub weight: u32,
    pub target: BackendTarget,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<HttpFilter>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BackendTarget {
    Cluster(String),
    /// A backendRef that could not be resolved: its share of traffic gets
    /// this status (500, as the Gateway API prescribes).
    Invalid {
        status: u16,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeouts {
    /// Whole request, from the gateway receiving it to the response's end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_ms: Option<u64>,
    /// One attempt at a backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_request_ms: Option<u64>,
}

impl Timeouts {
    pub fn is_empty(&self) -> bool {
        self.request_ms.is_none() && self.backend_request_ms.is_none()
    }
}

/// What one sidecar needs: where it listens for its workload, and the
/// services its workload may call.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SidecarConfig {
    pub namespace: String,
    pub workload: String,
    /// The workload's SPIFFE ID.
    pub identity: String,
    /// The roots mesh certificates chain to (the inbound side trusts them
    /// besides those that came with the workload's own certificate).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trust_bundle: Vec<String>,
    pub mode: MtlsMode,
    /// For each application port: the mutual-TLS address the sidecar takes
    /// inbound connections on, and the application's address.
    pub inbound: Vec<InboundPort>,
    /// The outbound side, in the gateway's terms: one HTTP proxy port whose
    /// virtual hosts are the services' names with their ports
    /// (`svc.ns.svc.cluster.local:80`, `svc.ns:80`, and `svc:80` within the
    /// namespace). Clusters of meshed services carry `UpstreamTls` with the
    /// identities expected of them; the sidecar adds its own certificate and
    /// the trust bundle, which the controller never sees.
    pub outbound: GatewayConfig,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum MtlsMode {
    /// Only mutual TLS from the mesh.
    #[default]
    Strict,
    /// Mutual TLS, or plaintext.
    Permissive,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundPort {
    pub listen: SocketAddr,
    pub app: SocketAddr,
    /// How the sidecar talks to the application on this port (from the
    /// `appProtocol` of the Service ports that target it).
    #[serde(default, skip_serializing_if = "is_http1")]
    pub protocol: AppProtocol,
    /// Who may call this port (the mesh's AuthorizationPolicies and the
    /// namespace's default); everyone when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<Access>,
}

fn is_http1(p: &AppProtocol) -> bool {
    *p == AppProtocol::Http1
}
