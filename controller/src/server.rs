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
}

impl ConfigService {
    pub fn new(
        state: watch::Receiver<Arc<Published>>,
        reports: mpsc::Sender<BindReport>,
    ) -> ConfigDiscoveryServer<Self> {
        ConfigDiscoveryServer::new(ConfigService {
            state,
            reports,
            nonce: Arc::new(AtomicU64::new(0)),
        })
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

type ResponseStream = Pin<Box<dyn Stream<Item = Result<ConfigResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ConfigDiscovery for ConfigService {
    type SubscribeStream = ResponseStream;

    async fn subscribe(
        &self,
        req: Request<Streaming<ConfigRequest>>,
    ) -> Result<Response<ResponseStream>, Status> {
        let mut inbound = req.into_inner();
        let hello = inbound
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("no request"))?;
        let node = Node::parse(&hello.node)
            .ok_or_else(|| Status::invalid_argument(format!("unknown node {:?}", hello.node)))?;
        tracing::info!(node = %hello.node, "proxy subscribed");
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
