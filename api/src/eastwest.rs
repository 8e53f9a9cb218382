//! An east-west gateway's side of a cluster set: which endpoints callers
//! from other networks may open tunnels to (the sidecars of this cluster's
//! exported services, nothing else), and who may.

use crate::TlsCertificate;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// A Gateway listener of protocol `weft.dev/EastWest`: mutual TLS with the
/// mesh's roots, HTTP/2 `CONNECT` to an endpoint named by its address.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EastWest {
    /// The endpoints a tunnel may go to, each with the exported service it
    /// serves (`<svc>.<ns>.svc.<cluster domain>`, as metrics name it).
    pub targets: BTreeMap<SocketAddr, String>,
    /// The Access (by name in `GatewayConfig::access`) deciding who may
    /// open a tunnel: the AuthorizationPolicies on the Gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<String>,
    /// The gateway's own certificate, added by the proxy from its identity
    /// (the controller never sees it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<TlsCertificate>,
}
