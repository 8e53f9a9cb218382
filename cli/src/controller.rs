//! `weft controller`: the control plane on Kubernetes. It reads every kind
//! weft uses from the API server (kubeconfig, or the pod's service account),
//! translates as `weft up` does, serves config to proxies and `/status`,
//! runs the CA (its keys in a Secret every replica shares; callers
//! authenticated by their service-account tokens), and, while it holds the
//! Lease, writes statuses back. Several replicas may run; one leads.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use weft_ca::service::SigningService;
use weft_ca::workload::{manage, LocalCa};
use weft_ca::{Roster, SpiffeId};
use weft_controller::ca_secret::OWN_SECRET;
use weft_controller::provider::cluster::cabundle::CaBundle;
use weft_controller::provider::cluster::lease::Election;
use weft_controller::provider::cluster::Cluster;
use weft_controller::provision::Infra;
use weft_controller::resources::{Kind, ObjKey};
use weft_controller::runtime::Publisher;
use weft_controller::runtime::CA_SECRET;
use weft_controller::server::ConfigService;
use weft_controller::tokenreview::ServiceAccountTokens;
use weft_controller::translate::Options;

#[derive(clap::Args)]
pub struct Args {
    /// A kubeconfig file; without it, $KUBECONFIG, ~/.kube/config or the
    /// pod's service account.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// The namespace weft runs in (its Lease is there).
    #[arg(long, env = "POD_NAMESPACE", default_value = "weft-system")]
    namespace: String,
    /// This replica's name in the Lease; the pod's name on Kubernetes.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// The controller's admin endpoint (`/status`).
    #[arg(long, default_value = "0.0.0.0:15000")]
    admin: SocketAddr,
    /// The config server proxies subscribe to (mutual TLS).
    #[arg(long, default_value = "0.0.0.0:15010")]
    config_listen: SocketAddr,
    /// The CA's signing service (TLS; callers prove themselves with their
    /// service-account token).
    #[arg(long, default_value = "0.0.0.0:15012")]
    ca_listen: SocketAddr,
    /// The image of provisioned gateways (`weft gateway`).
    #[arg(long, env = "WEFT_PROXY_IMAGE", default_value = concat!("ghcr.io/weft-mesh/weft:", env!("CARGO_PKG_VERSION")))]
    proxy_image: String,
    /// Do not provision Gateways (run them yourself with `weft gateway`).
    #[arg(long)]
    no_provisioning: bool,
    /// The Service proxies reach this controller by, in --namespace.
    #[arg(long, default_value = "weft-controller")]
    service_name: String,
    /// Where Gateways without spec.addresses listen in their pods.
    #[arg(long, default_value = "0.0.0.0")]
    default_address: std::net::IpAddr,
    /// The Redis global rate limits count in (`redis://host:port`); without
    /// it, policies with global limits are not accepted.
    #[arg(long, env = "WEFT_REDIS")]
    redis: Option<String>,
    /// The GatewayClass the leader makes when it is missing; empty for none.
    #[arg(long, default_value = "weft")]
    gateway_class: String,
    /// The sidecar injection webhook (HTTPS; the API server calls it).
    #[arg(long, default_value = "0.0.0.0:15017")]
    webhook_listen: SocketAddr,
    /// The MutatingWebhookConfiguration whose caBundle the leader keeps
    /// equal to weft's roots.
    #[arg(long, default_value = "weft-sidecar-injector")]
    webhook_config: String,
    /// Lifetime of workload certificates, in seconds (rotated at half).
    #[arg(long, default_value_t = 24 * 3600)]
    cert_ttl_seconds: u64,
    /// How long a leader's Lease lasts unrenewed before another replica
    /// takes it, and how soon a leader that cannot renew steps down.
    #[arg(long, default_value_t = 15)]
    lease_duration_seconds: u64,
    #[arg(long, default_value_t = 10)]
    renew_deadline_seconds: u64,
    #[arg(long, default_value_t = 2)]
    retry_period_seconds: u64,
    /// The SPIFFE trust domain of every identity.
    #[arg(long, default_value = "cluster.local")]
    trust_domain: String,
    /// The DNS suffix of Service names (`<svc>.<ns>.svc.<domain>`).
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// This cluster's name, network and peering address in a cluster set.
    #[command(flatten)]
    cluster_set: crate::peering::ClusterSetArgs,
    /// What sidecars do with a host the mesh does not declare: AllowAny
    /// or RegistryOnly.
    #[arg(long, default_value = "AllowAny", value_parser = crate::egress::policy)]
    outbound_traffic_policy: weft_controller::egress::OutboundPolicy,
}

async fn client(kubeconfig: Option<PathBuf>) -> anyhow::Result<kube::Client> {
    use kube::config::{KubeConfigOptions, Kubeconfig};
    let config = match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(&path)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default()).await?
        }
        None => kube::Config::infer().await?,
    };
    Ok(kube::Client::try_from(config)?)
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let client = client(args.kubeconfig).await?;
    let identity = args.identity.unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{:08x}", host.trim(), rand_suffix())
    });
    let mut election = Election::new(&args.namespace, "weft-controller", identity);
    election.lease_duration = Duration::from_secs(args.lease_duration_seconds);
    election.renew_deadline = Duration::from_secs(args.renew_deadline_seconds);
    election.retry = Duration::from_secs(args.retry_period_seconds);
    anyhow::ensure!(
        election.renew_deadline < election.lease_duration,
        "--renew-deadline-seconds must be shorter than --lease-duration-seconds"
    );
    let td = args.trust_domain.clone();
    args.cluster_set.check()?;
    if let Some(url) = &args.redis {
        crate::redis::check_url(url)?;
    }
    let (mut publisher, state) = Publisher::new(Options {
        trust_domain: args.trust_domain,
        cluster_domain: args.cluster_domain.clone(),
        default_address: args.default_address,
        rate_limit_store: args.redis.clone(),
        cluster: args.cluster_set.cluster.clone(),
        network: args.cluster_set.network.clone(),
        outbound_policy: args.outbound_traffic_policy,
        ..Options::default()
    });
    let admin = weft_controller::admin::bind(args.admin).await?;
    println!(
        "weft controller: admin http://{}/status",
        admin.local_addr()?
    );
    let router = weft_controller::admin::router(state.clone());
    tokio::spawn(async move { axum::serve(admin, router).await });
    let ttl = Duration::from_secs(args.cert_ttl_seconds);
    let authority =
        weft_controller::ca_secret::authority(client.clone(), &args.namespace, &td, ttl).await?;
    let authority = Arc::new(authority);
    let bundle = authority.trust_bundle();
    publisher.set_trust_bundle(bundle.clone());
    // The control plane's own certificate, for both servers.
    let (svids_tx, svids) = watch::channel(None);
    let local = Arc::new(LocalCa {
        authority: authority.clone(),
        id: SpiffeId::control_plane(&td)?,
    });
    tokio::spawn(manage(local, String::new(), ttl, svids_tx));
    let auth = Arc::new(ServiceAccountTokens::new(client.clone(), &td));
    // Only the identities of proxies the cluster runs (meshed pods and
    // Gateways) may get or renew certificates, once the cluster is read.
    let roster = Arc::new(Roster::default());
    let mut published = state.clone();
    let holders = roster.clone();
    tokio::spawn(async move {
        loop {
            let p = published.borrow_and_update().clone();
            if !p.items.is_empty() {
                holders.set(crate::up::roster(&p));
            }
            if published.changed().await.is_err() {
                return;
            }
        }
    });
    let signing = SigningService::server(authority.clone(), auth, roster);
    let ca = tokio::net::TcpListener::bind(args.ca_listen).await?;
    println!("weft controller: ca {}", ca.local_addr()?);
    let tls = weft_ca::tls::server_config(svids.clone(), None)?;
    tokio::spawn(async move {
        let server = tonic::transport::Server::builder().add_service(signing);
        if let Err(e) = server
            .serve_with_incoming(weft_ca::tls::incoming(ca, tls))
            .await
        {
            tracing::error!("CA signing service failed: {e}");
        }
    });
    // Gateways report what they could not bind over the config stream.
    let (reports_tx, reports) = mpsc::channel(64);
    let config = tokio::net::TcpListener::bind(args.config_listen).await?;
    println!("weft controller: config {}", config.local_addr()?);
    // Every replica peers (each serves config, so each needs the imports).
    let peers = crate::peering::start(
        &args.cluster_set,
        state.clone(),
        svids.clone(),
        &bundle,
        &td,
    )
    .await?;
    publisher.follow_peers(peers);
    let service = ConfigService::new(state, reports_tx, &td);
    let tls = weft_ca::tls::server_config(svids.clone(), Some(&bundle))?;
    tokio::spawn(async move {
        let server = tonic::transport::Server::builder().add_service(service);
        if let Err(e) = server
            .serve_with_incoming(weft_ca::tls::incoming(config, tls))
            .await
        {
            tracing::error!("config server failed: {e}");
        }
    });
    let service = format!(
        "{}.{}.svc.{}",
        args.service_name, args.namespace, args.cluster_domain
    );
    // What the proxies weft makes (provisioned gateways, injected
    // sidecars) are told of the control plane.
    let proxies = Infra {
        image: args.proxy_image.clone(),
        controller: format!("{service}:15010"),
        ca: format!("{service}:15012"),
        trust_domain: td.clone(),
        roots: bundle.concat(),
    };
    let infra = (!args.no_provisioning).then(|| proxies.clone());
    // The CA's own Secrets never reach the store (nor any proxy).
    let private = [CA_SECRET.1, OWN_SECRET].map(|name| ObjKey {
        kind: Kind::Secret,
        namespace: args.namespace.clone(),
        name: name.to_string(),
    });
    let cluster = Cluster::start(client.clone(), private.to_vec());
    let (leader, _) = watch::channel(false);
    // Sidecar injection: every replica answers; the leader keeps the
    // webhook's caBundle.
    let webhook = tokio::net::TcpListener::bind(args.webhook_listen).await?;
    println!("weft controller: webhook {}", webhook.local_addr()?);
    let short = format!("{}.{}", args.service_name, args.namespace);
    let names = vec![
        format!("{short}.svc"),
        format!("{short}.svc.{}", args.cluster_domain),
        short,
    ];
    let webhook_cluster = cluster.clone();
    tokio::spawn(async move {
        let served =
            weft_controller::webhook::serve(webhook, authority, names, webhook_cluster, proxies);
        if let Err(e) = served.await {
            tracing::error!("the injection webhook failed: {e}");
        }
    });
    let keeper = CaBundle {
        client,
        config: args.webhook_config.clone(),
        service: (args.namespace.clone(), args.service_name.clone()),
        roots: bundle.concat(),
    };
    tokio::spawn(keeper.run(leader.subscribe()));
    if !args.gateway_class.is_empty() {
        let class = weft_controller::provider::cluster::class::ensure(
            cluster.client().clone(),
            args.gateway_class.clone(),
            leader.subscribe(),
        );
        tokio::spawn(class);
    }
    let (stop_tx, stop) = watch::channel(false);
    let task = tokio::spawn(weft_controller::cluster::run(
        cluster, publisher, election, infra, leader, reports, stop,
    ));
    crate::up::stopped().await;
    eprintln!("weft controller: stopping");
    let _ = stop_tx.send(true);
    let _ = task.await;
    Ok(())
}

fn rand_suffix() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    nanos ^ std::process::id().rotate_left(16)
}
