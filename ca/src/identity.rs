//! SPIFFE IDs of workloads: `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`.

use crate::CaError;
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    pub trust_domain: String,
    pub namespace: String,
    pub service_account: String,
}

impl SpiffeId {
    /// The DNS name an SVID also carries, so that ordinary TLS clients can
    /// check the identity as a host name: `<sa>.<ns>.sa.<trust-domain>`
    /// (namespaces have no dots, so the name reads back unambiguously).
    pub fn dns_name(&self) -> String {
        format!(
            "{}.{}.sa.{}",
            self.service_account, self.namespace, self.trust_domain
        )
    }

    /// The control plane's identity (the config server and the CA's
    /// signing service), which proxies check those servers against.
    pub fn control_plane(trust_domain: &str) -> Result<Self, CaError> {
        SpiffeId::new(trust_domain, "weft-system", "weft-controller")
    }

    pub fn new(
        trust_domain: &str,
        namespace: &str,
        service_account: &str,
    ) -> Result<Self, CaError> {
        let id = SpiffeId {
            trust_domain: trust_domain.to_string(),
            namespace: namespace.to_string(),
            service_account: service_account.to_string(),
        };
        let segment_ok = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
        };
        let domain_ok = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-._".contains(c))
        };
        if domain_ok(trust_domain) && segment_ok(namespace) && segment_ok(service_account) {
            Ok(id)
        } else {
            Err(CaError::SpiffeId(id.to_string()))
        }
    }

    pub fn parse(uri: &str) -> Result<Self, CaError> {
        let bad = || CaError::SpiffeId(uri.to_string());
        let rest = uri.strip_prefix("spiffe://").ok_or_else(bad)?;
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            [td, "ns", ns, "sa", sa] => SpiffeId::new(td, ns, sa).map_err(|_| bad()),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "spiffe://{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_bad_ids() {
        let id = SpiffeId::new("cluster.local", "shop", "frontend").unwrap();
        assert_eq!(id.to_string(), "spiffe://cluster.local/ns/shop/sa/frontend");
        assert_eq!(SpiffeId::parse(&id.to_string()).unwrap(), id);
        assert!(SpiffeId::parse("spiffe://cluster.local/ns/shop").is_err());
        assert!(SpiffeId::parse("https://cluster.local/ns/a/sa/b").is_err());
        assert!(SpiffeId::new("cluster.local", "a/b", "c").is_err());
    }
}
