//! `weft up DIR`: the controller, its config server and admin endpoint, one
//! gateway per Gateway (in this process, subscribed over gRPC like any
//! other), and the folder's Workloads; until Ctrl-C or SIGTERM.

use crate::mesh::Mesh;
use crate::workloads::Supervisor;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use weft_controller::resources::ObjKey;
use weft_controller::runtime::{Controller, Published};
use weft_controller::server::ConfigService;
use weft_controller::translate::Options;
use weft_controller::workload::{EnvVar, Workload};
use weft_gateway::control::identity::Identified;
use weft_gateway::telemetry::{Metrics, Reporter};
use weft_gateway::Gateway;

/// Time given to in-flight requests once a stop is asked for.
const DRAIN: Duration = Duration::from_secs(3);

pub use weft_sidecar::process::stopped;

struct RunningGateway {
    gateway: Arc<Gateway>,
    client: JoinHandle<()>,
    /// The identity manager of the gateway's certificate.
    identity: Option<JoinHandle<()>>,
    admin_task: JoinHandle<()>,
    admin: SocketAddr,
}

/// How `weft up` is run.
pub struct UpOptions {
    pub dir: PathBuf,
    pub admin: SocketAddr,
    pub default_address: IpAddr,
    /// Where the CA keeps its keys.
    pub state_dir: PathBuf,
    /// Lifetime of workload certificates.
    pub cert_ttl: Duration,
    /// Sidecars as `weft sidecar run` processes, not in this one.
    pub sidecar_processes: bool,
    /// The SPIFFE trust domain of every identity.
    pub trust_domain: String,
    /// The DNS suffix of Service names.
    pub cluster_domain: String,
    /// The Redis global rate limits count in (`--redis`); without it, one
    /// of weft up's own when `redis-server` is installed.
    pub redis: Option<String>,
    /// Its cluster name, network and peering address.
    pub cluster_set: crate::peering::ClusterSetArgs,
    /// What sidecars do with hosts the mesh does not declare.
    pub outbound_policy: weft_controller::egress::OutboundPolicy,
}

pub async fn run(opts: UpOptions) -> anyhow::Result<()> {
    let UpOptions {
        dir,
        admin,
        default_address,
        state_dir,
        cert_ttl,
        sidecar_processes,
        trust_domain,
        cluster_domain,
        redis,
        cluster_set,
        outbound_policy,
    } = opts;
    cluster_set.check()?;
    let mut rate_store = crate::redis::RateStore::plan(redis)?;
    let (mut controller, state) = Controller::new(
        dir.clone(),
        Options {
            default_address,
            trust_domain: trust_domain.clone(),
            cluster_domain,
            rate_limit_store: rate_store.url(),
            cluster: cluster_set.cluster.clone(),
            network: cluster_set.network.clone(),
            outbound_policy,
            ..Options::default()
        },
    );
    controller.reload()?;

    let admin_listener = weft_controller::admin::bind(admin).await?;
    let admin = admin_listener.local_addr()?;
    let router = weft_controller::admin::router(state.clone());
    tokio::spawn(async move { axum::serve(admin_listener, router).await });

    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let grpc_addr = grpc.local_addr()?;
    let ca_secret = state.borrow().ca_secret.clone();
    let mut mesh = Mesh::start(
        &state_dir,
        &trust_domain,
        cert_ttl,
        grpc_addr.to_string(),
        ca_secret.as_ref(),
        sidecar_processes,
    )
    .await?;
    // Every proxy's config carries the CA's roots.
    controller.set_trust_bundle(mesh.trust_bundle());
    // The config server: mutual TLS, each proxy its own node only.
    let (reports_tx, reports_rx) = mpsc::channel(64);
    let service = ConfigService::new(state.clone(), reports_tx, &trust_domain);
    let (control_plane, control_plane_svids) = mesh.control_plane();
    let tls = weft_ca::tls::server_config(control_plane_svids.clone(), Some(&mesh.trust_bundle()))?;
    tokio::spawn(async move {
        let server = tonic::transport::Server::builder().add_service(service);
        if let Err(e) = server
            .serve_with_incoming(weft_ca::tls::incoming(grpc, tls))
            .await
        {
            tracing::error!("config server failed: {e}");
        }
    });
    let peers = crate::peering::start(
        &cluster_set,
        state.clone(),
        control_plane_svids.clone(),
        &mesh.trust_bundle(),
        &trust_domain,
    )
    .await?;
    controller.follow_peers(peers);
    let bundle = mesh.trust_bundle();
    let dial = |svids| weft_gateway::control::client::Dial {
        addr: grpc_addr.to_string(),
        server: control_plane.clone(),
        bundle: bundle.clone(),
        svids,
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let control = tokio::spawn(controller.run(reports_rx, stop_rx));
    let mut gateways: BTreeMap<ObjKey, RunningGateway> = BTreeMap::new();
    let mut workloads = Supervisor::default();
    let mut state_rx = state.clone();
    let mut last_table = String::new();
    let mut ca_secret_warned = false;
    let stop = stopped();
    tokio::pin!(stop);
    loop {
        let published = state_rx.borrow_and_update().clone();
        if published.ca_secret != ca_secret && !ca_secret_warned {
            tracing::warn!("the CA Secret changed; restart weft up to use it");
            ca_secret_warned = true;
        }
        mesh.set_roster(roster(&published));
        rate_store.ensure(needs_rate_store(&published));
        reconcile_gateways(&mut gateways, &published, &dial, &mesh).await?;
        mesh.reconcile(&published.sidecars).await;
        workloads.reconcile(&with_proxy(&published, &mesh)).await;
        let table = table(&dir, admin, grpc_addr, &gateways, &published, &mesh);
        if table != last_table {
            println!("{table}");
            last_table = table;
        }
        tokio::select! {
            changed = state_rx.changed() => if changed.is_err() { break },
            _ = &mut stop => break,
        }
    }
    eprintln!("weft up: stopping");
    for g in gateways.values() {
        stop_gateway(g).await;
    }
    // Listeners are closed; let in-flight requests finish.
    tokio::time::sleep(DRAIN).await;
    workloads.stop_all().await;
    mesh.stop_all().await;
    rate_store.stop().await;
    let _ = stop_tx.send(true);
    let _ = control.await;
    Ok(())
}

/// The identities of every proxy `published` runs: they alone may hold
/// certificates.
pub(crate) fn roster(published: &Published) -> Vec<weft_ca::SpiffeId> {
    let sidecars = published.sidecars.values().map(|s| s.identity.as_str());
    let gateways = published
        .gateways
        .values()
        .filter_map(|g| g.config.identity.as_deref());
    sidecars
        .chain(gateways)
        .filter_map(|id| weft_ca::SpiffeId::parse(id).ok())
        .collect()
}

/// Whether a proxy `published` runs counts global rate limits.
fn needs_rate_store(published: &Published) -> bool {
    let gateways = published.gateways.values().map(|g| &g.config);
    let sidecars = published.sidecars.values().map(|s| &s.outbound);
    gateways
        .chain(sidecars)
        .any(|c| c.rate_limit_store.is_some())
}

/// The Workloads with their sidecar's outbound port as HTTP proxy, so
/// ordinary HTTP clients are meshed with no change.
fn with_proxy(published: &Published, mesh: &Mesh) -> BTreeMap<ObjKey, Workload> {
    let mut out = published.workloads.clone();
    for (key, w) in out.iter_mut() {
        if let Some(proxy) = mesh.proxy_of(key) {
            for name in ["HTTP_PROXY", "http_proxy"] {
                w.spec.env.push(EnvVar {
                    name: name.into(),
                    value: format!("http://{proxy}"),
                });
            }
        }
    }
    out
}

async fn stop_gateway(g: &RunningGateway) {
    g.client.abort();
    g.admin_task.abort();
    if let Some(t) = &g.identity {
        t.abort();
    }
    g.gateway.shutdown().await;
}

async fn reconcile_gateways(
    gateways: &mut BTreeMap<ObjKey, RunningGateway>,
    published: &Published,
    dial: &impl Fn(weft_ca::workload::Svids) -> weft_gateway::control::client::Dial,
    mesh: &Mesh,
) -> anyhow::Result<()> {
    let gone: Vec<ObjKey> = gateways
        .keys()
        .filter(|k| !published.gateways.contains_key(k))
        .cloned()
        .collect();
    for key in gone {
        if let Some(g) = gateways.remove(&key) {
            stop_gateway(&g).await;
        }
    }
    for (key, served) in &published.gateways {
        if gateways.contains_key(key) {
            continue;
        }
        let reporter = Reporter {
            reporter: "source",
            workload: key.name.clone(),
            namespace: key.namespace.clone(),
            principal: served.config.identity.clone().unwrap_or("unknown".into()),
        };
        let gateway = Gateway::build(Metrics::new(reporter), None);
        let (admin, admin_task) =
            weft_gateway::control::admin::serve(gateway.clone(), "127.0.0.1:0".parse()?).await?;
        let node = weft_api::wire::gateway_node(&key.namespace, &key.name);
        // Its identity: for the config stream, and for calls to meshed
        // workloads over mutual TLS.
        let Some(id) = &served.config.identity else {
            tracing::error!(gateway = %key, "a Gateway without an identity cannot subscribe");
            continue;
        };
        let (svids, task) = mesh.identity(id)?;
        let identity = Some(task);
        let target = Identified::start(gateway.clone(), svids.clone());
        let client = tokio::spawn(weft_gateway::control::client::run(
            target,
            dial(svids),
            node,
        ));
        gateways.insert(
            key.clone(),
            RunningGateway {
                gateway,
                client,
                identity,
                admin_task,
                admin,
            },
        );
    }
    Ok(())
}

fn table(
    dir: &std::path::Path,
    admin: SocketAddr,
    config: SocketAddr,
    gateways: &BTreeMap<ObjKey, RunningGateway>,
    published: &Published,
    mesh: &Mesh,
) -> String {
    let mut out = format!(
        "weft up {}\n  controller  http://{admin}/status\n  config      {config} (mutual TLS)\n  ca          {} (TLS)\n",
        dir.display(),
        mesh.ca_addr()
    );
    for (key, g) in gateways {
        let mut listens = Vec::new();
        if let Some(served) = published.gateways.get(key) {
            for port in &served.config.ports {
                let scheme = match port.protocol {
                    weft_api::Protocol::Http => "http",
                    weft_api::Protocol::Https => "https",
                    weft_api::Protocol::Tcp => "tcp",
                    weft_api::Protocol::Tls => "tls",
                    weft_api::Protocol::EastWest => "east-west",
                };
                for addr in &port.addresses {
                    listens.push(format!("{scheme}://{}", SocketAddr::new(*addr, port.port)));
                }
            }
        }
        out.push_str(&format!(
            "  gateway     {}/{}  {}  admin http://{}\n",
            key.namespace,
            key.name,
            listens.join(" "),
            g.admin
        ));
    }
    for (key, w) in &published.workloads {
        let ports: Vec<String> = w
            .spec
            .ports
            .iter()
            .map(|p| SocketAddr::new(w.address(), p.container_port).to_string())
            .collect();
        let sidecar = published
            .sidecars
            .get(key)
            .map(|s| {
                let inbound: Vec<String> = s.inbound.iter().map(|p| p.listen.to_string()).collect();
                let out = s
                    .outbound
                    .ports
                    .first()
                    .map(|p| format!("{}:{}", p.addresses[0], p.port));
                let admin = mesh
                    .admin_of(key)
                    .map(|a| format!(" admin http://{a}"))
                    .unwrap_or_default();
                format!(
                    "  sidecar in {} out {}{admin}",
                    inbound.join(","),
                    out.unwrap_or_default()
                )
            })
            .unwrap_or_default();
        out.push_str(&format!(
            "  workload    {}/{}  {}{sidecar}\n",
            key.namespace,
            key.name,
            ports.join(" ")
        ));
    }
    out.trim_end().to_string()
}
