//! `weft up`'s place in a cluster set: its cluster name and network, and
//! the peering server (on `--peering`) and clients that link it to the
//! clusters its ClusterLinks name (`weft_controller::peering`), both with
//! the control plane's certificate.

use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;
use weft_ca::workload::Svids;
use weft_controller::runtime::Published;
use weft_controller::translate::multicluster::Peers;
use weft_controller::translate::DEFAULT_CLUSTER;

#[derive(clap::Args, Clone, Debug)]
pub struct ClusterSetArgs {
    /// This cluster's name in the cluster set.
    #[arg(long = "cluster", default_value = DEFAULT_CLUSTER)]
    pub cluster: String,
    /// This cluster's network: peers on the same network are reached pod
    /// to pod, others through their east-west gateways.
    #[arg(long, default_value = "")]
    pub network: String,
    /// Where peer controllers call this one (mutual TLS); no peering
    /// server without it (this cluster still dials the peers it links to).
    #[arg(long)]
    pub peering: Option<SocketAddr>,
}

impl ClusterSetArgs {
    /// A cluster name must be a DNS label: peers name it in their links.
    pub fn check(&self) -> anyhow::Result<()> {
        if !weft_api::peering::is_dns_label(&self.cluster) {
            anyhow::bail!("--cluster {:?} is not a DNS label", self.cluster);
        }
        Ok(())
    }
}

/// Starts the peering server (when asked for) and the clients; returns
/// what the clients learn, for the controller to translate with.
pub async fn start(
    args: &ClusterSetArgs,
    state: watch::Receiver<Arc<Published>>,
    svids: Svids,
    bundle: &[String],
    trust_domain: &str,
) -> anyhow::Result<watch::Receiver<Arc<Peers>>> {
    if let Some(addr) = args.peering {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("--peering {addr}: {e}"))?;
        let tls = weft_ca::tls::server_config(svids.clone(), Some(bundle))?;
        let service = weft_controller::peering::PeeringService::new(state.clone(), trust_domain);
        tokio::spawn(async move {
            let server = tonic::transport::Server::builder().add_service(service);
            if let Err(e) = server
                .serve_with_incoming(weft_ca::tls::incoming(listener, tls))
                .await
            {
                tracing::error!("peering server failed: {e}");
            }
        });
    }
    let dial = weft_controller::peering::Dial {
        cluster: args.cluster.clone(),
        network: args.network.clone(),
        trust_domain: trust_domain.to_string(),
        tls: weft_ca::tls::client_config(Some(svids), bundle)?,
    };
    let (tx, rx) = watch::channel(Arc::default());
    tokio::spawn(weft_controller::peering::run(state, dial, tx));
    Ok(rx)
}
