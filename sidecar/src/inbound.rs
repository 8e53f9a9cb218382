//! The inbound side. It is a gateway snapshot: for each application port,
//! one HTTPS port with client authentication whose only route sends every
//! request (or mesh TCP connection) to the application, once the port's
//! access policy (AuthorizationPolicies) has allowed the caller. Each new certificate from the identity
//! manager becomes a new snapshot, swapped in with no dropped connection.

use std::collections::BTreeMap;
use weft_api::*;
use weft_ca::workload::Svid;

/// What the inbound side serves.
#[derive(Clone, Debug, PartialEq)]
pub struct Spec {
    pub ports: Vec<InboundPort>,
    pub mode: MtlsMode,
    /// One JSON line per request, as the outbound side's config says.
    pub access_log: bool,
    /// Roots the config distributes, trusted beside the certificate's own.
    pub trust_bundle: Vec<String>,
    /// The cluster the workload is in, for metrics.
    pub cluster: String,
}

/// The snapshot serving `spec` with `svid`.
pub fn config(spec: &Spec, svid: &Svid) -> GatewayConfig {
    let mut ports = Vec::new();
    let mut clusters = BTreeMap::new();
    let mut access = BTreeMap::new();
    let cert = TlsCertificate {
        cert_chain_pem: svid.chain.concat(),
        key_pem: svid.key_pem.clone(),
    };
    for p in &spec.ports {
        let cluster = format!("inbound|{}", p.app);
        let mut app = Cluster::http1(vec![p.app]);
        app.protocol = p.protocol;
        clusters.insert(cluster.clone(), app);
        let mut route = Route::to_cluster(cluster.clone(), HttpMatch::default(), cluster.clone());
        // Who may call this port: decided on the caller's verified identity.
        if let Some(a) = &p.access {
            access.insert(cluster.clone(), a.clone());
            route.access = Some(cluster);
        }
        ports.push(Port {
            addresses: vec![p.listen.ip()],
            port: p.listen.port(),
            protocol: Protocol::Https,
            client_auth: Some(ClientAuth {
                roots_pem: weft_gateway::control::identity::union(&spec.trust_bundle, &svid.bundle),
                allow_plaintext: spec.mode == MtlsMode::Permissive,
                insecure_fallback: false,
                mesh: true,
            }),
            host_with_port: false,
            passthrough: false,
            blackhole: false,
            stream_hosts: Vec::new(),
            sidecar: true,
            listeners: vec![Listener::any_host(
                format!("inbound-{}", p.app.port()),
                Some(cert.clone()),
                vec![route],
            )],
        });
    }
    GatewayConfig {
        namespace: svid.id.namespace.clone(),
        name: format!("inbound/{}", svid.id.service_account),
        ports,
        clusters,
        access_log: spec.access_log,
        identity: None,
        limits: Default::default(),
        access,
        rate_limit_store: None,
        zone: None,
        east_west: None,
        cluster: spec.cluster.clone(),
        egress_source: None,
    }
}
