//! The config server (gRPC). Each proxy subscribes under its node name:
//!
//! - a gateway (`gateway/<ns>/<name>`) receives its Gateway's config whenever
//!   it changes, and its bind reports feed the Gateway's status;
//! - a sidecar (`sidecar/<ns>/<workload>`) receives its Workload's sidecar
//!   config with the outbound side scoped to the hosts it has asked for, and
//!   a new snapshot whenever the config or its interest changes.
//!
//! ACKs and NACKs are logged; a NACKed version is not sent again until the
//! config changes.
//!
//! It is served over mutual TLS (`weft_ca::tls`), and a proxy may subscribe
//! only as the node its certificate names: a gateway's identity is the one
//! `translate::gateway_identity` gives its Gateway, a sidecar's the one its
//! Workload's config carries. Anything else is refused, and a stream whose
//! node stops matching (the Workload gone, its service account changed) is
//! ended, so keys go only to the proxy that owns them.

use crate::runtime::{version_of, BindReport, Node, Published};
use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};
use weft_api::wire::{self, ConfigDiscovery, ConfigDiscoveryServer, ConfigRequest, ConfigResponse};
use weft_api::GatewayConfig;

pub struct ConfigService {
    state: watch::Receiver<Arc<Published>>,
    reports: mpsc::Sender<BindReport>,
    nonce: Arc<AtomicU64>,
    trust_domain: String,
}

impl ConfigService {
    pub fn new(
        state: watch::Receiver<Arc<Published>>,
        reports: mpsc::Sender<BindReport>,
        trust_domain: &str,
    ) -> ConfigDiscoveryServer<Self> {
        ConfigDiscoveryServer::new(ConfigService {
            state,
            reports,
            nonce: Arc::new(AtomicU64::new(0)),
            trust_domain: trust_domain.to_string(),
        })
    }
}

/// Whether `peer` may receive `node`'s config under `published`.
pub fn may_subscribe(node: &Node, peer: &str, published: &Published, trust_domain: &str) -> bool {
    match node {
        Node::Gateway(key) => crate::translate::gateway_identity(trust_domain, key) == peer,
        Node::Sidecar(key) => published
            .sidecars
            .get(key)
            .is_some_and(|s| s.identity == peer),
    }
}

/// What one proxy should run now: its version and encoded snapshot, and
/// for a sidecar the hosts it answers. `None` while there is nothing for it.
fn snapshot_for(
    node: &Node,
    published: &Published,
    hosts: &BTreeSet<String>,
) -> Option<ConfigResponse> {
    match node {
        Node::Gateway(key) => Some(match published.gateways.get(key) {
            Some(served) => ConfigResponse {
                version: served.version.clone(),
                snapshot: served.encoded.clone(),
                ..Default::default()
            },
            // A Gateway that is gone (or not ours) gets an empty config.
            None => ConfigResponse {
                version: "empty".to_string(),
                snapshot: wire::encode(&GatewayConfig {
                    namespace: key.namespace.clone(),
                    name: key.name.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        }),
        Node::Sidecar(key) => {
            let mut config = published.sidecars.get(key)?.clone();
            config.outbound = config.outbound.scoped_to_hosts(hosts);
            let snapshot = wire::encode(&config);
            let hosts: Vec<String> = hosts.iter().cloned().collect();
            Some(ConfigResponse {
                version: version_of(&snapshot, &hosts),
                snapshot,
                hosts,
                ..Default::default()
            })
        }
    }
}

/// The SPIFFE ID of the client certificate a request came with (the
/// servers ask for one and verify it).
pub fn peer_identity<T>(req: &Request<T>) -> Result<String, Status> {
    req.extensions()
        .get::<weft_ca::tls::Peer>()
        .and_then(|p| p.identity.as_ref())
        .map(ToString::to_string)
        .ok_or_else(|| Status::unauthenticated("no client certificate"))
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<ConfigResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ConfigDiscovery for ConfigService {
    type SubscribeStream = ResponseStream;

    async fn subscribe(
        &self,
        req: Request<Streaming<ConfigRequest>>,
    ) -> Result<Response<ResponseStream>, Status> {
        let peer = peer_identity(&req)?;
        let mut inbound = req.into_inner();
        let hello = inbound
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("no request"))?;
        let node = Node::parse(&hello.node)
            .ok_or_else(|| Status::invalid_argument(format!("unknown node {:?}", hello.node)))?;
        let trust_domain = self.trust_domain.clone();
        if !may_subscribe(&node, &peer, &self.state.borrow(), &trust_domain) {
            tracing::warn!(node = %hello.node, %peer, "refused a subscription for another node");
            return Err(Status::permission_denied(format!(
                "{peer} may not subscribe as {}",
                hello.node
            )));
        }
        tracing::info!(node = %hello.node, %peer, "proxy subscribed");
        let (tx, rx) = mpsc::channel(4);
        let (mut state, reports, nonces) =
            (self.state.clone(), self.reports.clone(), self.nonce.clone());
        tokio::spawn(async move {
            let name = hello.node.clone();
            let mut hosts: BTreeSet<String> = hello.hosts.into_iter().collect();
            // What was last sent (or what the proxy already runs).
            let mut sent = hello.version;
            loop {
                let published = state.borrow_and_update().clone();
                if !may_subscribe(&node, &peer, &published, &trust_domain) {
                    tracing::warn!(node = %name, %peer, "node no longer this identity's; ending its stream");
                    let _ = tx
                        .send(Err(Status::permission_denied(
                            "the node is no longer yours",
                        )))
                        .await;
                    break;
                }
                if let Some(mut resp) = snapshot_for(&node, &published, &hosts) {
                    if resp.version != sent {
                        resp.nonce = nonces.fetch_add(1, Ordering::Relaxed).to_string();
                        sent = resp.version.clone();
                        if tx.send(Ok(resp)).await.is_err() {
                            break;
                        }
                    }
                }
                tokio::select! {
                    changed = state.changed() => if changed.is_err() { break },
                    msg = inbound.message() => match msg {
                        Ok(Some(m)) => {
                            if m.response_nonce.is_empty() {
                                tracing::debug!(node = %name, hosts = ?m.hosts, "interest");
                            } else if m.error.is_empty() {
                                tracing::debug!(node = %name, version = %m.version, "ACK");
                            } else {
                                tracing::warn!(node = %name, version = %m.version, "NACK: {}", m.error);
                            }
                            hosts = m.hosts.into_iter().collect();
                            if let Node::Gateway(key) = &node {
                                let _ = reports.send((key.clone(), m.bind_errors)).await;
                            }
                        }
                        _ => {
                            tracing::info!(node = %name, "proxy disconnected");
                            break;
                        }
                    },
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
