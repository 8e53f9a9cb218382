//! East-west gateways: a Gateway listener of protocol `weft.dev/EastWest`
//! (port 15443 by convention) takes tunnels from other networks' sidecars
//! over mutual TLS with the mesh's roots, each to one endpoint of a
//! Service this cluster exports, and to nothing else. The
//! AuthorizationPolicies on the Gateway decide which callers may. Its
//! addresses are what this cluster tells its peers to reach it by.

use super::backend::Trust;
use super::gateway::GatewayCtx;
use std::net::SocketAddr;
use weft_api::peering::ExportSet;
use weft_api::{ClientAuth, EastWest, GatewayConfig, Protocol};

/// The listener protocol of an east-west gateway.
pub const PROTOCOL: &str = "weft.dev/EastWest";

/// The tunnel addresses of every east-west listener of `gateways`.
pub fn addresses(gateways: &[GatewayCtx]) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for gw in gateways {
        if gw.address_problem.is_some() || gw.parameters_problem.is_some() {
            continue;
        }
        for l in &gw.listeners {
            if l.protocol == Some(Protocol::EastWest) && l.programmed() {
                out.extend(gw.addresses.iter().map(|a| SocketAddr::new(*a, l.port)));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Gives `config` its tunnels when `gw` has an east-west listener: mutual
/// TLS with the mesh's roots on the port, the exported endpoints as the
/// only targets, and the Gateway's AuthorizationPolicies.
pub fn configure(
    config: &mut GatewayConfig,
    gw: &GatewayCtx,
    exports: &ExportSet,
    trust: Trust<'_>,
    resolver: &mut super::access::Resolver<'_>,
) {
    let mut any = false;
    for p in config
        .ports
        .iter_mut()
        .filter(|p| p.protocol == Protocol::EastWest)
    {
        any = true;
        p.client_auth = Some(ClientAuth {
            roots_pem: trust.bundle.to_vec(),
            allow_plaintext: false,
            insecure_fallback: false,
            mesh: true,
        });
    }
    if !any {
        return;
    }
    let mut ew = EastWest::default();
    for s in &exports.services {
        let service = format!("{}.{}.svc.{}", s.name, s.namespace, trust.cluster_domain);
        for e in s.ports.iter().flat_map(|p| &p.endpoints) {
            ew.targets.insert(e.address, service.clone());
        }
    }
    if let Some((name, access)) = resolver.for_gateway(&gw.key) {
        config.access.insert(name.clone(), access);
        ew.access = Some(name);
    }
    config.east_west = Some(ew);
}
