//! Certificates for the sidecar tests, from the real CA.

use std::time::{Duration, SystemTime};
use weft_ca::workload::{key_and_csr, Svid};
use weft_ca::{Authority, SpiffeId};

/// A workload certificate for `ns`/`sa`, as the identity manager would hold it.
pub fn svid(ca: &Authority, ns: &str, sa: &str) -> Svid {
    let id = SpiffeId::new("cluster.local", ns, sa).unwrap();
    let (key_pem, csr) = key_and_csr(None).unwrap();
    let issued = ca.sign(&csr, &id, None).unwrap();
    Svid {
        id,
        chain: issued.chain,
        key_pem,
        bundle: ca.trust_bundle(),
        not_after: SystemTime::now() + Duration::from_secs(3600),
        received: SystemTime::now(),
        renewals: 0,
    }
}
