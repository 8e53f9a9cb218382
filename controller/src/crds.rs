//! The CustomResourceDefinitions of weft's kinds that live on a cluster
//! (`SecurityPolicy`, `AuthorizationPolicy`, `BackendTrafficPolicy`,
//! `ClusterLink`), and of Gateway API's `XBackend`, made from their Rust types
//! (`crate::policies`) so the schemas never drift from what the controller
//! reads. `Workload` is standalone-only and has none. `weft crds` prints
//! them; the chart carries them in `charts/weft/crds/`.

use crate::multicluster::ClusterLink;
use crate::policies::{AuthorizationPolicy, SecurityPolicy};
use crate::traffic_policy::BackendTrafficPolicy;
use kube::CustomResourceExt;

/// Gateway API's experimental `XBackend`, as weft reads it, for clusters
/// whose Gateway API install lacks it (Helm leaves an existing CRD of the
/// same name alone).
pub fn experimental_yaml() -> String {
    let crd = crate::egress::XBackend::crd();
    format!(
        "# Gateway API's XBackend (GEP-4894), for clusters that lack it.\n{}",
        serde_yaml::to_string(&crd).expect("a CRD serializes")
    )
}

/// Every CRD of weft's own kinds, as one multi-document YAML text.
pub fn yaml() -> String {
    let crds = [
        SecurityPolicy::crd(),
        AuthorizationPolicy::crd(),
        BackendTrafficPolicy::crd(),
        ClusterLink::crd(),
    ];
    crds.iter()
        .map(|crd| serde_yaml::to_string(crd).expect("a CRD serializes"))
        .collect::<Vec<_>>()
        .join("---\n")
}
