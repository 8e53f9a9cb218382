//! Upstream clusters: a service's endpoints and how the proxy reaches
//! them (protocol, TLS, balancing, and for a service of the cluster set,
//! which of its endpoints are in other clusters and through which
//! east-west gateway).

use crate::{ConsistentHash, Resilience, TlsCertificate};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cluster {
    pub protocol: AppProtocol,
    pub endpoints: Vec<SocketAddr>,
    pub lb: LbPolicy,
    /// TLS to the endpoints (mutual TLS to mesh sidecars); plaintext if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<UpstreamTls>,
    /// The Service the endpoints serve, as metrics name it
    /// (`<svc>.<ns>.svc.<cluster domain>`); the cluster's name if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Circuit breaking, outlier detection, health checks
    /// (`BackendTrafficPolicy`).
    #[serde(default, skip_serializing_if = "Resilience::is_default")]
    pub resilience: Resilience,
    /// What a request is hashed on (`lb: ConsistentHash`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<ConsistentHash>,
    /// Each endpoint's zone (empty: unknown), when the cluster is
    /// zone-aware.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<String>,
    /// Where each endpoint is, when some are in other clusters of the
    /// cluster set (a `clusterset.local` service); empty when all are here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub origins: Vec<Origin>,
    /// A host outside the mesh (an `XBackend` of type `ExternalHostname`):
    /// `endpoints` is empty and the proxy resolves the name itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalHost>,
}

impl Cluster {
    /// Plaintext HTTP/1.1 to `endpoints`, round robin.
    pub fn http1(endpoints: Vec<SocketAddr>) -> Cluster {
        Cluster {
            protocol: AppProtocol::Http1,
            endpoints,
            lb: LbPolicy::RoundRobin,
            tls: None,
            service: None,
            resilience: Resilience::default(),
            hash: None,
            zones: Vec::new(),
            origins: Vec::new(),
            external: None,
        }
    }
}

/// Where a cluster of an external host sends: the name is resolved by the
/// proxy (DNS, honouring the answers' TTLs), on every request if need be.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalHost {
    /// A DNS name, or `*.suffix`: then the request's own host (or TLS
    /// server name), which must fall under the suffix.
    pub hostname: String,
    pub port: u16,
}

impl ExternalHost {
    /// The name to resolve (and to send as SNI) for a request to `host`
    /// (lowercase, no port): the cluster's own name, or under a wildcard
    /// the request's host when the wildcard covers it.
    pub fn target<'a>(&'a self, host: &'a str) -> Option<&'a str> {
        match self.hostname.strip_prefix('*') {
            None => Some(&self.hostname),
            Some(suffix) => (host.len() > suffix.len() && host.ends_with(suffix)).then_some(host),
        }
    }
}

/// How the gateway originates TLS to a cluster's endpoints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UpstreamTls {
    /// The SNI name sent.
    pub sni: String,
    /// The roots the server's chain must lead to.
    pub roots_pem: Vec<String>,
    /// SPIFFE IDs allowed to serve (the server's URI SAN); empty allows any
    /// the roots vouch for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identities: Vec<String>,
    /// The client certificate presented (mutual TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<TlsCertificate>,
    /// TLS a BackendTLSPolicy asks for, to a backend outside the mesh: the
    /// server is checked as the policy says instead of by SPIFFE identity,
    /// and the proxy's workload certificate is not presented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyTls>,
}

/// How a BackendTLSPolicy checks the server.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PolicyTls {
    /// The certificate must carry one of these; when empty, the SNI name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_alt_names: Vec<SubjectAltName>,
    /// Trust the system's roots (`wellKnownCACertificates: System`) instead
    /// of `roots_pem`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub system_roots: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SubjectAltName {
    Dns(String),
    Uri(String),
}

/// How the gateway talks to a cluster's endpoints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum AppProtocol {
    #[default]
    Http1,
    /// HTTP/2 with prior knowledge (`kubernetes.io/h2c`).
    H2c,
    /// HTTP/1.1 with WebSocket upgrades (`kubernetes.io/ws`).
    WebSocket,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum LbPolicy {
    #[default]
    RoundRobin,
    LeastRequest,
    /// An endpoint picked at random.
    Random,
    /// By the request's key (`Cluster::hash`).
    ConsistentHash,
}

/// Where one endpoint of a cluster is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Origin {
    /// The cluster (control plane) it is in; empty for this one. Callers
    /// use other clusters' endpoints only while none of theirs is usable.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster: String,
    /// The east-west gateway it is reached through, when it is on another
    /// network: the caller opens mutual TLS to the gateway and, inside a
    /// tunnel to the endpoint, mutual TLS to the endpoint's sidecar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<SocketAddr>,
}

impl Origin {
    pub fn is_local(&self) -> bool {
        self.cluster.is_empty()
    }
}
