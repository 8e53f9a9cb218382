//! Peering between linked clusters' controllers (`proto/peering.proto`),
//! over mutual TLS with the control planes' certificates, both issued under
//! the cluster set's shared root.
//!
//! - The server answers a caller only if its certificate chains to this
//!   cluster's roots (a foreign root fails the handshake), names the
//!   control plane's identity (a workload's certificate under the same
//!   root is refused), and the cluster it says it is has a ClusterLink
//!   here. It streams this cluster's exports, again whenever they change.
//! - The client dials every linked peer and keeps what each sent last as
//!   `Peers`, which the controller translates with. A peer that is lost
//!   keeps its last good exports for its link's grace period, then they go;
//!   it is dialled again every few seconds meanwhile.

use crate::runtime::Published;
use crate::translate::multicluster::{Link, PeerState, Peers};
use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use weft_api::peering::{
    ClusterPeering, ClusterPeeringClient, ClusterPeeringServer, ExportSet, Exports, Hello,
};
use weft_ca::SpiffeId;

/// How long a client waits between tries to reach a peer.
const REDIAL: Duration = Duration::from_secs(1);

pub struct PeeringService {
    state: watch::Receiver<Arc<Published>>,
    /// The identity a caller must prove: the control plane's.
    controller: String,
}

impl PeeringService {
    pub fn new(
        state: watch::Receiver<Arc<Published>>,
        trust_domain: &str,
    ) -> ClusterPeeringServer<Self> {
        let controller = SpiffeId::control_plane(trust_domain)
            .map(|id| id.to_string())
            .unwrap_or_default();
        ClusterPeeringServer::new(PeeringService { state, controller })
    }
}

type ExportStream = Pin<Box<dyn Stream<Item = Result<Exports, Status>> + Send>>;

#[tonic::async_trait]
impl ClusterPeering for PeeringService {
    type WatchStream = ExportStream;

    async fn watch(&self, req: Request<Hello>) -> Result<Response<ExportStream>, Status> {
        let peer = crate::server::peer_identity(&req)?;
        if peer != self.controller {
            tracing::warn!(%peer, "refused peering: not a control plane");
            return Err(Status::permission_denied(format!(
                "{peer} is not a control plane"
            )));
        }
        let hello = req.into_inner();
        let cluster = hello.cluster.clone();
        let linked = move |p: &Published| p.links.iter().any(|l| l.cluster == cluster);
        if !linked(&self.state.borrow()) {
            tracing::warn!(cluster = %hello.cluster, "refused peering: no ClusterLink names it");
            return Err(Status::permission_denied(format!(
                "no ClusterLink names cluster {:?}",
                hello.cluster
            )));
        }
        tracing::info!(cluster = %hello.cluster, network = %hello.network, "peer watching exports");
        let (tx, rx) = mpsc::channel(4);
        let mut state = self.state.clone();
        tokio::spawn(async move {
            let mut sent: Option<Vec<u8>> = None;
            loop {
                let published = state.borrow_and_update().clone();
                if !linked(&published) {
                    let _ = tx
                        .send(Err(Status::permission_denied("the link is gone")))
                        .await;
                    break;
                }
                let bytes = published.exports.encode();
                if sent.as_ref() != Some(&bytes) {
                    if tx
                        .send(Ok(Exports {
                            export_set: bytes.clone(),
                        }))
                        .await
                        .is_err()
                    {
                        break;
                    }
                    sent = Some(bytes);
                }
                tokio::select! {
                    changed = state.changed() => if changed.is_err() { break },
                    _ = tx.closed() => break,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// How this cluster dials its peers.
#[derive(Clone)]
pub struct Dial {
    pub cluster: String,
    pub network: String,
    pub trust_domain: String,
    /// Mutual TLS with the control plane's certificate, trusting the
    /// cluster set's root.
    pub tls: Arc<rustls::ClientConfig>,
}

/// Dials the peers the links of `state` name, and sends what they know
/// to `peers` whenever it changes, until `state` closes.
pub async fn run(
    mut state: watch::Receiver<Arc<Published>>,
    dial: Dial,
    peers: watch::Sender<Arc<Peers>>,
) {
    let known: Arc<Mutex<Peers>> = Arc::default();
    let mut clients: BTreeMap<String, (Link, JoinHandle<()>)> = BTreeMap::new();
    let (changed_tx, mut changed_rx) = mpsc::channel::<()>(16);
    loop {
        let links = state.borrow_and_update().links.clone();
        let gone: Vec<String> = clients
            .iter()
            .filter(|(c, (l, _))| !links.iter().any(|n| &n.cluster == *c && n == l))
            .map(|(c, _)| c.clone())
            .collect();
        for c in gone {
            if let Some((_, task)) = clients.remove(&c) {
                task.abort();
            }
            known.lock().unwrap().remove(&c);
            let _ = changed_tx.try_send(());
        }
        for link in links {
            if clients.contains_key(&link.cluster) {
                continue;
            }
            let task = tokio::spawn(client(
                link.clone(),
                dial.clone(),
                known.clone(),
                changed_tx.clone(),
            ));
            clients.insert(link.cluster.clone(), (link, task));
        }
        tokio::select! {
            c = state.changed() => if c.is_err() { break },
            Some(()) = changed_rx.recv() => {
                let now = known.lock().unwrap().clone();
                if **peers.borrow() != now {
                    peers.send_replace(Arc::new(now));
                }
            }
        }
    }
    for (_, (_, task)) in clients {
        task.abort();
    }
}

/// One peer: watch its exports; on loss keep them for the grace period.
async fn client(link: Link, dial: Dial, known: Arc<Mutex<Peers>>, changed: mpsc::Sender<()>) {
    let update = |f: &dyn Fn(&mut PeerState)| {
        let mut k = known.lock().unwrap();
        let state = k.entry(link.cluster.clone()).or_default();
        let before = state.clone();
        f(state);
        if *state != before {
            let _ = changed.try_send(());
        }
    };
    let mut lost_at: Option<Instant> = None;
    loop {
        let result = session(&link, &dial, &mut |set| {
            lost_at = None;
            update(&|s| {
                s.exports = Some(Arc::new(set.clone()));
                s.connected = true;
                s.message.clear();
            })
        })
        .await;
        let message = match result {
            Ok(()) => "the peer ended the stream".to_string(),
            Err(e) => e,
        };
        let since = *lost_at.get_or_insert_with(Instant::now);
        let expired = since.elapsed() >= link.grace;
        update(&|s| {
            if s.connected {
                tracing::warn!(cluster = %link.cluster, "peer lost: {message}");
            }
            s.connected = false;
            s.message = message.clone();
            if expired && s.exports.is_some() {
                tracing::warn!(cluster = %link.cluster, "grace period over: dropping the peer's imports");
                s.exports = None;
            }
        });
        tokio::time::sleep(REDIAL).await;
    }
}

/// One watch of a peer's exports, `got` called with each good set; ends
/// with why it ended.
async fn session(
    link: &Link,
    dial: &Dial,
    got: &mut (dyn FnMut(&ExportSet) + Send),
) -> Result<(), String> {
    let server = SpiffeId::control_plane(&dial.trust_domain).map_err(|e| e.to_string())?;
    let channel = weft_ca::tls::channel(&link.peering, &server, dial.tls.clone())
        .map_err(|e| e.to_string())?;
    let mut client = ClusterPeeringClient::new(channel);
    let hello = Hello {
        cluster: dial.cluster.clone(),
        network: dial.network.clone(),
    };
    let mut stream = client
        .watch(hello)
        .await
        .map_err(|s| format!("{}: {}", link.peering, s.message()))?
        .into_inner();
    tracing::info!(cluster = %link.cluster, peering = %link.peering, "peering with cluster");
    while let Some(msg) = stream
        .message()
        .await
        .map_err(|s| s.message().to_string())?
    {
        match ExportSet::decode(&msg.export_set, &link.cluster, &dial.trust_domain) {
            Ok(set) => got(&set),
            Err(e) => return Err(format!("refused the peer's exports: {e}")),
        }
    }
    Ok(())
}
