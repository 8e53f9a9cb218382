//! What linked clusters tell each other (`proto/peering.proto`): the
//! services a cluster exports (`ServiceExport`), each with its ports, the
//! identities that serve it and where its endpoints are, and the cluster's
//! east-west gateways. What a peer sends is checked here before anything of
//! it is used.

use crate::{ApiError, AppProtocol};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::net::SocketAddr;

#[allow(clippy::all, missing_docs)]
mod pb {
    tonic::include_proto!("weft.peering.v1");
}
pub use pb::cluster_peering_client::ClusterPeeringClient;
pub use pb::cluster_peering_server::{ClusterPeering, ClusterPeeringServer};
pub use pb::{Exports, Hello};

/// At most this many services, and endpoints per port, from one peer.
pub const MAX_EXPORTED: usize = 10_000;
/// At most this many east-west gateways from one peer.
pub const MAX_GATEWAYS: usize = 64;

/// One cluster's exports, as its peers receive them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportSet {
    pub cluster: String,
    pub network: String,
    /// Its east-west gateways' tunnel addresses, for callers on other
    /// networks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<SocketAddr>,
    #[serde(default)]
    pub services: Vec<ExportedService>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportedService {
    pub namespace: String,
    pub name: String,
    /// The SPIFFE IDs of the workloads that serve it.
    #[serde(default)]
    pub identities: Vec<String>,
    pub ports: Vec<ExportedPort>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportedPort {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub port: u16,
    /// What the Service port's `appProtocol` says; none when it says
    /// nothing (HTTP/1.1 to HTTPRoutes, HTTP/2 to GRPCRoutes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<AppProtocol>,
    /// The mutual-TLS addresses of the sidecars serving the port, on the
    /// exporting cluster's network.
    #[serde(default)]
    pub endpoints: Vec<RemoteEndpoint>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteEndpoint {
    pub address: SocketAddr,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub zone: String,
}

impl ExportSet {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an export set always serializes")
    }

    /// Decodes a peer's exports and checks them: names that are DNS
    /// labels, ports, identities in `trust_domain`, bounded sizes, and the
    /// cluster the link expects.
    pub fn decode(bytes: &[u8], cluster: &str, trust_domain: &str) -> Result<Self, ApiError> {
        let set: ExportSet = serde_json::from_slice(bytes)?;
        set.check(cluster, trust_domain)?;
        Ok(set)
    }

    fn check(&self, cluster: &str, trust_domain: &str) -> Result<(), ApiError> {
        let bad = |m: String| Err(ApiError::Invalid(m));
        if self.cluster != cluster {
            return bad(format!(
                "the peer says it is cluster {:?}, not {cluster:?}",
                self.cluster
            ));
        }
        if self.services.len() > MAX_EXPORTED {
            return bad(format!("more than {MAX_EXPORTED} services"));
        }
        if self.gateways.len() > MAX_GATEWAYS || self.gateways.iter().any(|g| g.port() == 0) {
            return bad(format!(
                "more than {MAX_GATEWAYS} gateways, or one on port 0"
            ));
        }
        let mut seen = BTreeSet::new();
        let prefix = format!("spiffe://{trust_domain}/ns/");
        for s in &self.services {
            let name = format!("{}/{}", s.namespace, s.name);
            if !is_dns_label(&s.namespace) || !is_dns_label(&s.name) {
                return bad(format!("{name:?} is not a namespace/name of DNS labels"));
            }
            if !seen.insert((&s.namespace, &s.name)) {
                return bad(format!("{name} is exported twice"));
            }
            if let Some(id) = s.identities.iter().find(|id| {
                !id.starts_with(&prefix) || id.len() > 512 || id.chars().any(char::is_whitespace)
            }) {
                return bad(format!("{name}: identity {id:?} is not in {trust_domain}"));
            }
            let mut ports = BTreeSet::new();
            for p in &s.ports {
                if p.port == 0 || !ports.insert(p.port) {
                    return bad(format!("{name}: port {} is zero or repeated", p.port));
                }
                if p.endpoints.len() > MAX_EXPORTED {
                    return bad(format!("{name}:{}: too many endpoints", p.port));
                }
                if p.endpoints.iter().any(|e| e.address.port() == 0) {
                    return bad(format!("{name}:{}: an endpoint on port 0", p.port));
                }
            }
        }
        Ok(())
    }

    pub fn service(&self, namespace: &str, name: &str) -> Option<&ExportedService> {
        self.services
            .iter()
            .find(|s| s.namespace == namespace && s.name == name)
    }
}

/// A DNS label (RFC 1123), as Kubernetes names namespaces and Services.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> ExportSet {
        ExportSet {
            cluster: "west".into(),
            network: "net-west".into(),
            gateways: vec![],
            services: vec![ExportedService {
                namespace: "shop".into(),
                name: "reviews".into(),
                identities: vec!["spiffe://cluster.local/ns/shop/sa/reviews".into()],
                ports: vec![ExportedPort {
                    name: Some("http".into()),
                    port: 9080,
                    protocol: Some(AppProtocol::Http1),
                    endpoints: vec![RemoteEndpoint {
                        address: ([10, 0, 0, 1], 15006).into(),
                        zone: String::new(),
                    }],
                }],
            }],
        }
    }

    #[test]
    fn a_good_set_round_trips() {
        let s = set();
        assert_eq!(
            ExportSet::decode(&s.encode(), "west", "cluster.local").unwrap(),
            s
        );
    }

    #[test]
    fn hostile_sets_are_refused() {
        let refused = |f: &dyn Fn(&mut ExportSet), what: &str| {
            let mut s = set();
            f(&mut s);
            let e = ExportSet::decode(&s.encode(), "west", "cluster.local").unwrap_err();
            assert!(e.to_string().contains(what), "{e} lacks {what}");
        };
        refused(&|s| s.cluster = "east".into(), "not \"west\"");
        refused(&|s| s.services[0].name = "Reviews".into(), "DNS labels");
        refused(&|s| s.services[0].namespace = "../x".into(), "DNS labels");
        refused(
            &|s| s.services[0].identities[0] = "spiffe://evil.example/ns/a/sa/b".into(),
            "not in cluster.local",
        );
        refused(&|s| s.services.push(s.services[0].clone()), "twice");
        refused(&|s| s.services[0].ports[0].port = 0, "zero or repeated");
        refused(&|s| s.gateways = vec![([10, 0, 0, 1], 0).into()], "port 0");
        refused(
            &|s| {
                let e = s.services[0].ports[0].endpoints[0].clone();
                s.services[0].ports[0].endpoints = vec![e; MAX_EXPORTED + 1];
            },
            "too many",
        );
        assert!(ExportSet::decode(b"{not json", "west", "cluster.local").is_err());
    }
}
