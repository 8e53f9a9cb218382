//! `weft gateway`: one gateway as a process of its own. It gets its first
//! certificate from the CA's signing service with a one-time join token
//! (on Kubernetes, its service-account token), keeps it fresh, and takes
//! its config from the controller over mutual TLS, both servers checked as
//! the control plane under the trust bundle given (`Control`, shared with
//! the sidecar's process in `weft_sidecar::process`).

use std::net::SocketAddr;
use std::sync::Arc;
use weft_ca::workload::{manage, GrpcCa};
use weft_ca::SpiffeId;
use weft_gateway::control::client::Dial;
pub use weft_sidecar::process::Control;

pub struct GatewayOptions {
    pub control: Control,
    /// namespace/name
    pub gateway: String,
    pub trust_domain: String,
    pub admin: SocketAddr,
}

pub async fn gateway(o: GatewayOptions) -> anyhow::Result<()> {
    let (ns, name) = o
        .gateway
        .split_once('/')
        .ok_or_else(|| anyhow::anyhow!("--gateway takes namespace/name"))?;
    let bundle = o.control.bundle()?;
    let server = SpiffeId::control_plane(&o.trust_domain)?;
    let id = SpiffeId::new(&o.trust_domain, ns, name)?;
    let ca = Arc::new(GrpcCa::new(&o.control.ca, &server, &bundle)?);
    let (tx, svids) = tokio::sync::watch::channel(None);
    let identity = tokio::spawn(manage(ca, o.control.token()?, o.control.ttl(), tx));
    let gw = weft_gateway::Gateway::new();
    let (bound, _admin) = weft_gateway::control::admin::serve(gw.clone(), o.admin).await?;
    eprintln!("gateway {}: {id}, admin on http://{bound}", o.gateway);
    let target = weft_gateway::control::identity::Identified::start(gw.clone(), svids.clone());
    let dial = Dial {
        addr: o.control.controller,
        server,
        bundle,
        svids,
    };
    let client = tokio::spawn(weft_gateway::control::client::run(
        target,
        dial,
        weft_api::wire::gateway_node(ns, name),
    ));
    crate::up::stopped().await;
    client.abort();
    identity.abort();
    gw.shutdown().await;
    Ok(())
}
