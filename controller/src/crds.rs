//! The CustomResourceDefinitions of weft's kinds that live on a cluster
//! (`SecurityPolicy`, `AuthorizationPolicy`, `BackendTrafficPolicy`,
//! `ClusterLink`), made from their Rust types
//! (`crate::policies`) so the schemas never drift from what the controller
//! reads. `Workload` is standalone-only and has none. `weft crds` prints
//! them; the chart carries them in `charts/weft/crds/`.

use crate::multicluster::ClusterLink;
use crate::policies::{AuthorizationPolicy, SecurityPolicy};
use crate::traffic_policy::BackendTrafficPolicy;
use kube::CustomResourceExt;

/// Every CRD, as one multi-document YAML text.
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
