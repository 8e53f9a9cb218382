//! `weft gateway` and `weft sidecar run`: one proxy as a process of its
//! own. Each gets its first certificate from the CA's signing service with
//! a one-time join token (on Kubernetes, its service-account token), keeps
//! it fresh, and takes its config from the
//! controller over mutual TLS, both servers checked as the control plane
//! under the trust bundle given.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use weft_ca::workload::{manage, GrpcCa};
use weft_ca::SpiffeId;
use weft_gateway::control::client::Dial;

/// Where the control plane is, what it must prove, and how a proxy
/// proves itself to it.
#[derive(clap::Args)]
pub struct Control {
    /// The controller's config server, host:port (mutual TLS).
    #[arg(long)]
    pub controller: String,
    /// The CA's signing service, host:port (TLS).
    #[arg(long)]
    pub ca: String,
    /// The roots (PEM) the control plane's certificates chain to.
    #[arg(long, required_unless_present = "trust_bundle_pem")]
    pub trust_bundle: Option<PathBuf>,
    /// The same roots as PEM text (on Kubernetes, in the environment).
    #[arg(
        long,
        env = "WEFT_TRUST_BUNDLE",
        hide_env_values = true,
        conflicts_with = "trust_bundle"
    )]
    pub trust_bundle_pem: Option<String>,
    /// The one-time join token for the first certificate.
    #[arg(
        long,
        env = "WEFT_JOIN_TOKEN",
        hide_env_values = true,
        required_unless_present = "token_file"
    )]
    pub token: Option<String>,
    /// A file holding the token instead: on Kubernetes, the projected
    /// service-account token (audience weft-ca), read when the proxy
    /// starts; later certificates are renewals that prove the current one.
    #[arg(long, conflicts_with = "token")]
    pub token_file: Option<PathBuf>,
    /// Lifetime asked for the proxy's certificates, in seconds.
    #[arg(long, default_value_t = 24 * 3600)]
    pub cert_ttl_seconds: u64,
}

impl Control {
    fn bundle(&self) -> anyhow::Result<Vec<String>> {
        let pem = match (&self.trust_bundle_pem, &self.trust_bundle) {
            (Some(pem), _) => pem.clone(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
            (None, None) => anyhow::bail!("give --trust-bundle or WEFT_TRUST_BUNDLE"),
        };
        anyhow::ensure!(
            pem.contains("BEGIN CERTIFICATE"),
            "the trust bundle holds no certificate"
        );
        Ok(vec![pem])
    }

    /// The token given, or the one in the token file.
    fn token(&self) -> anyhow::Result<String> {
        match (&self.token, &self.token_file) {
            (Some(t), _) => Ok(t.clone()),
            (None, Some(path)) => Ok(std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
                .trim()
                .to_string()),
            (None, None) => anyhow::bail!("give --token or --token-file"),
        }
    }

    fn ttl(&self) -> Duration {
        Duration::from_secs(self.cert_ttl_seconds)
    }
}

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

pub struct SidecarOptions {
    pub control: Control,
    /// namespace/name
    pub workload: String,
    pub identity: String,
    pub admin: Option<SocketAddr>,
}

pub async fn sidecar(o: SidecarOptions) -> anyhow::Result<()> {
    let (namespace, name) = o
        .workload
        .split_once('/')
        .ok_or_else(|| anyhow::anyhow!("--workload {:?} is not namespace/name", o.workload))?;
    let bundle = o.control.bundle()?;
    let id = SpiffeId::parse(&o.identity)?;
    let server = SpiffeId::control_plane(&id.trust_domain)?;
    let identity = weft_sidecar::Identity {
        ca: Arc::new(GrpcCa::new(&o.control.ca, &server, &bundle)?),
        id,
        token: o.control.token()?,
        ttl: o.control.ttl(),
    };
    let running = weft_sidecar::run::start(weft_sidecar::run::Options {
        namespace: namespace.to_string(),
        name: name.to_string(),
        identity,
        controller: o.control.controller,
        bundle,
        admin: o.admin,
    });
    crate::up::stopped().await;
    running.stop().await;
    Ok(())
}
