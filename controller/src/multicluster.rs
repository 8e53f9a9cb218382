//! The multi-cluster kinds, as written: the Multi-Cluster Services API's
//! `ServiceExport` (`multicluster.x-k8s.io/v1alpha1`; it exports the
//! Service of the same name and namespace to every linked cluster) and
//! weft's `ClusterLink` (`weft.dev/v1alpha1`; it names one peer cluster).
//! `ServiceImport`s are not read: the controller derives them from the
//! exports of this cluster and its peers (`crate::translate::multicluster`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The group of the Multi-Cluster Services API.
pub const MCS_GROUP: &str = "multicluster.x-k8s.io";
/// The DNS zone of the cluster set: `<svc>.<ns>.svc.clusterset.local`.
pub const CLUSTERSET_DOMAIN: &str = "clusterset.local";
/// The namespace ClusterLinks must be in: linking a cluster changes what
/// every workload's `clusterset.local` names reach, so it is the mesh
/// operator's, like the CA's Secret.
pub const LINK_NAMESPACE: &str = "weft-system";

/// Exports the Service of the same namespace and name to the cluster set.
/// It has no spec (its CRD is the Multi-Cluster Services API's own), so
/// it is not derived as weft's kinds are.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ServiceExport {
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub status: Option<ConditionsStatus>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
pub struct ConditionsStatus {
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// A peer cluster: its name and network, where its controller takes
/// peering calls, and its east-west gateways.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, CustomResource)]
#[kube(
    group = "weft.dev",
    version = "v1alpha1",
    kind = "ClusterLink",
    plural = "clusterlinks",
    namespaced,
    status = "ConditionsStatus"
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterLinkSpec {
    /// The peer's cluster name (`weft up --cluster`).
    pub cluster: String,
    /// The peer's network (`weft up --network`); callers on the same
    /// network reach its endpoints directly, others through its east-west
    /// gateways.
    #[serde(default)]
    pub network: String,
    /// The peer controller's peering address, `host:port`.
    pub peering: String,
    /// The peer's east-west gateways, `host:port` each.
    #[serde(default)]
    pub gateways: Vec<String>,
    /// How long the peer's last exports stay in use after it is lost
    /// (Gateway API duration; 5m when absent).
    #[serde(default)]
    pub import_grace_period: Option<String>,
}
