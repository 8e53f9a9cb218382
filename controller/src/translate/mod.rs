//! The translation: a pure function from the store (and what gateways
//! reported about binding their addresses) to the IR of every Gateway and the
//! status of every resource weft owns. No I/O, no clock.

mod access;
mod backend;
pub mod conditions;
mod eastwest;
mod egress;
mod egress_status;
mod frontend;
mod gateway;
mod grpc;
pub mod hostname;
mod l4;
mod limits;
mod listenerset;
pub mod mesh;
pub mod multicluster;
mod policy;
mod program;
mod refs;
mod route;
mod rule_options;
mod rules;
mod selector;
mod tls;
mod traffic;
mod traffic_check;

/// Where a sidecar takes inbound connections for its workload's `i`-th port.
pub use backend::INBOUND_BASE_PORT;

use crate::resources::ObjKey;
use crate::store::Store;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use weft_api::{GatewayConfig, Listener, Port, SidecarConfig, VirtualHost};

#[derive(Clone, Debug)]
pub struct Options {
    /// The address a Gateway without `spec.addresses` binds to.
    pub default_address: IpAddr,
    /// The SPIFFE trust domain of workload identities.
    pub trust_domain: String,
    /// The cluster's DNS suffix: Services are `<svc>.<ns>.svc.<domain>`.
    pub cluster_domain: String,
    /// The roots workload certificates chain to, sent to every proxy.
    pub trust_bundle: Vec<String>,
    /// Where proxies count global rate limits (`redis://host:port`).
    pub rate_limit_store: Option<String>,
    /// This cluster's name and network in the cluster set.
    pub cluster: String,
    pub network: String,
    /// What peering knows of the linked clusters.
    pub peers: std::sync::Arc<multicluster::Peers>,
    /// What sidecars do with hosts the mesh does not declare.
    pub outbound_policy: crate::egress::OutboundPolicy,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            default_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            trust_domain: "cluster.local".into(),
            cluster_domain: "cluster.local".into(),
            trust_bundle: Vec::new(),
            rate_limit_store: None,
            cluster: DEFAULT_CLUSTER.into(),
            network: String::new(),
            peers: Default::default(),
            outbound_policy: Default::default(),
        }
    }
}

/// The cluster name of a control plane not given one.
pub const DEFAULT_CLUSTER: &str = "cluster-1";

/// What the gateways reported: per Gateway, the addresses they failed to bind.
pub type BindErrors = BTreeMap<ObjKey, Vec<String>>;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Translation {
    /// The IR of each Gateway weft owns, by the Gateway's key.
    pub gateways: BTreeMap<ObjKey, GatewayConfig>,
    /// The config of each Workload's sidecar, by the Workload's key.
    pub sidecars: BTreeMap<ObjKey, SidecarConfig>,
    /// The status of each resource weft owns, without `lastTransitionTime`.
    pub statuses: BTreeMap<ObjKey, Value>,
    /// What this cluster exports to its peers.
    pub exports: weft_api::peering::ExportSet,
    /// The peers to dial.
    pub links: Vec<multicluster::Link>,
    /// The ServiceImports, as `/status` shows them.
    pub service_imports: Vec<Value>,
}

pub fn translate(store: &Store, opts: &Options, bind_errors: &BindErrors) -> Translation {
    let mut statuses = BTreeMap::new();
    let classes = gateway::classes(store, &mut statuses);
    let mut gateways = gateway::gateways(store, &classes, opts);
    let mut clusters = BTreeMap::new();
    let td = &opts.trust_domain;
    let cluster_set = multicluster::ClusterSet::build(
        store,
        &opts.cluster,
        &opts.network,
        &opts.peers,
        &mut statuses,
    );
    let trust = backend::Trust {
        domain: td,
        cluster_domain: &opts.cluster_domain,
        bundle: &opts.trust_bundle,
        rate_limit_store: opts.rate_limit_store.is_some(),
        cluster_set: &cluster_set,
    };
    let mut resolver = access::Resolver::new(store, td);
    route::routes(
        store,
        &mut gateways,
        &mut clusters,
        &mut statuses,
        trust,
        &mut resolver,
    );
    let mut sidecars = mesh::sidecars(store, trust, &mut statuses);
    egress_status::statuses(store, &gateways, trust, &mut statuses);
    let policy = opts.outbound_policy;
    egress::declare(store, &gateways, &clusters, trust, policy, &mut sidecars);
    // Only the proxies with global rate limits learn where they are counted.
    for s in sidecars.values_mut() {
        multicluster::spread_weighted(&mut s.outbound, &opts.cluster);
        if s.outbound.has_global_limits() {
            s.outbound.rate_limit_store = opts.rate_limit_store.clone();
        }
    }
    // What this cluster exports, with its east-west gateways' addresses.
    let exports = cluster_set.exports(store, td, eastwest::addresses(&gateways));
    let mut out = BTreeMap::new();
    for gw in &gateways {
        let errors = bind_errors
            .get(&gw.key)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut status = gateway::status(gw, errors);
        // On Kubernetes a provisioned Gateway is reached through its
        // Service: its load balancer's addresses are the Gateway's.
        let (ns, name) = (&gw.key.namespace, &gw.key.name);
        if let Some(addresses) = crate::provision::service_addresses(store, ns, name) {
            status["addresses"] = serde_json::Value::Array(addresses);
        }
        let accepted = status["conditions"][0]["status"] == "True";
        statuses.insert(gw.key.clone(), status);
        listenerset::statuses(gw, accepted, &mut statuses);
        if gw.address_problem.is_none() && gw.parameters_problem.is_none() {
            let mut config = ir(gw, &clusters, &resolver.accesses);
            eastwest::configure(&mut config, gw, &exports, trust, &mut resolver);
            config.cluster = opts.cluster.clone();
            multicluster::spread_weighted(&mut config, &opts.cluster);
            config.identity = Some(gateway_identity(td, &gw.key));
            if egress::is_egress(store, &gw.key) {
                egress::configure(&mut config, gw, trust);
            }
            if config.has_global_limits() {
                config.rate_limit_store = opts.rate_limit_store.clone();
            }
            out.insert(gw.key.clone(), config);
        }
    }
    policy::statuses(store, &policy::users(store, &gateways), &mut statuses);
    resolver.statuses(&gateways, &mut statuses);
    traffic::statuses(store, opts.rate_limit_store.is_some(), &mut statuses);
    Translation {
        gateways: out,
        sidecars,
        statuses,
        exports,
        links: cluster_set.links.clone(),
        service_imports: multicluster::import_items(&cluster_set.imports),
    }
}

/// A Gateway's SPIFFE ID: the service account named after it, in its
/// namespace. It presents it to meshed backends.
pub fn gateway_identity(trust_domain: &str, gateway: &ObjKey) -> String {
    format!(
        "spiffe://{trust_domain}/ns/{}/sa/{}",
        gateway.namespace, gateway.name
    )
}

/// The IR of one Gateway: its programmed listeners grouped by port, and the
/// clusters and access policies its routes use.
fn ir(
    gw: &gateway::GatewayCtx,
    clusters: &BTreeMap<String, weft_api::Cluster>,
    accesses: &BTreeMap<String, weft_api::Access>,
) -> GatewayConfig {
    let mut ports: Vec<Port> = Vec::new();
    let mut used = BTreeSet::new();
    let mut guards = BTreeSet::new();
    for l in &gw.listeners {
        let Some(protocol) = l.protocol else { continue };
        if !l.programmed() {
            continue;
        }
        let virtual_hosts = l
            .vhosts
            .iter()
            .map(|(hostname, routes)| {
                let mut routes = routes.clone();
                routes.sort_by(|a, b| a.0.cmp(&b.0));
                VirtualHost {
                    hostname: hostname.clone(),
                    routes: routes.into_iter().map(|(_, r)| r).collect(),
                }
            })
            .collect::<Vec<_>>();
        for route in virtual_hosts.iter().flat_map(|v| &v.routes) {
            used.extend(route.clusters().map(str::to_string));
            guards.extend(route.access.clone());
        }
        let listener = Listener {
            name: l.name.clone(),
            hostname: l.hostname.clone(),
            tls: l.tls.clone(),
            virtual_hosts,
        };
        match ports.iter_mut().find(|p| p.port == l.port) {
            Some(p) => p.listeners.push(listener),
            None => ports.push(Port {
                addresses: gw.addresses.clone(),
                port: l.port,
                protocol,
                listeners: vec![listener],
                // The same for every HTTPS listener on the port.
                client_auth: l.client_auth.clone(),
                host_with_port: false,
                passthrough: false,
                blackhole: false,
                stream_hosts: Vec::new(),
                sidecar: false,
            }),
        }
    }
    // The Gateway's backend client certificate goes with every TLS a
    // BackendTLSPolicy asks for.
    let with_client_cert = |mut c: weft_api::Cluster| {
        if let Some(tls) = c
            .tls
            .as_mut()
            .filter(|t| t.policy.is_some() && c.external.is_none())
        {
            tls.client_cert = gw.backend_client_cert.clone();
        }
        c
    };
    GatewayConfig {
        namespace: gw.key.namespace.clone(),
        name: gw.key.name.clone(),
        ports,
        clusters: used
            .into_iter()
            .filter_map(|c| clusters.get(&c).map(|v| (c, with_client_cert(v.clone()))))
            .collect(),
        access_log: gw.access_log,
        limits: gw.limits.clone(),
        access: guards
            .into_iter()
            .filter_map(|a| accesses.get(&a).map(|v| (a, v.clone())))
            .collect(),
        identity: None,
        rate_limit_store: None,
        zone: gw.zone.clone(),
        east_west: None,
        cluster: String::new(),
        egress_source: None,
    }
}
