//! The config server (gRPC): each gateway subscribes under its node name and
//! receives its Gateway's config whenever it changes; its ACKs and NACKs are
//! logged and its bind reports fed back into the Gateway's status.

use crate::runtime::{gateway_key, BindReport, Published};
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
        let key = gateway_key(&hello.node)
            .ok_or_else(|| Status::invalid_argument(format!("unknown node {:?}", hello.node)))?;
        tracing::info!(node = %hello.node, "proxy subscribed");
        let (tx, rx) = mpsc::channel(4);
        let (mut state, reports, nonces) =
            (self.state.clone(), self.reports.clone(), self.nonce.clone());
        tokio::spawn(async move {
            // What was last sent (or what the proxy already runs): a NACKed version
            // is not sent again until the config changes.
            let mut sent = hello.version;
            loop {
                let published = state.borrow_and_update().clone();
                let (version, snapshot) = match published.gateways.get(&key) {
                    Some(served) => (served.version.clone(), served.encoded.clone()),
                    // A Gateway that is gone (or not ours) gets an empty config.
                    None => {
                        let empty = GatewayConfig {
                            namespace: key.namespace.clone(),
                            name: key.name.clone(),
                            ..Default::default()
                        };
                        ("empty".to_string(), wire::encode(&empty))
                    }
                };
                if version != sent {
                    let nonce = nonces.fetch_add(1, Ordering::Relaxed).to_string();
                    let resp = ConfigResponse {
                        version: version.clone(),
                        nonce,
                        snapshot,
                    };
                    if tx.send(Ok(resp)).await.is_err() {
                        break;
                    }
                    sent = version;
                }
                tokio::select! {
                    changed = state.changed() => if changed.is_err() { break },
                    msg = inbound.message() => match msg {
                        Ok(Some(m)) => {
                            if m.error.is_empty() {
                                tracing::debug!(node = %m.node, version = %m.version, "ACK");
                            } else {
                                tracing::warn!(node = %m.node, version = %m.version, "NACK: {}", m.error);
                            }
                            let _ = reports.send((key.clone(), m.bind_errors)).await;
                        }
                        _ => {
                            tracing::info!(gateway = %key, "proxy disconnected");
                            break;
                        }
                    },
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
