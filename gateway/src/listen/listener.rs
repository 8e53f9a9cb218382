//! The gateway's sockets: one accept loop per bound (address, port), started
//! and stopped as snapshots add and remove ports. A stopped loop closes its
//! socket; its open connections finish their requests and then close.

use crate::config::snapshot::Snapshot;
use crate::listen::conn::{ConnInfo, ConnStream};
use crate::listen::header_clock::HeaderClock;
use crate::listen::tls::SniResolver;
use crate::telemetry::Metrics;
use crate::upstream::connector::MESH_TCP_ALPN;
use arc_swap::ArcSwapOption;
use pingora::apps::ServerApp;
use pingora::listeners::tls::Acceptor;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::{Ssl, Stream};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use weft_api::{ClientAuth, Protocol};

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What serves the HTTP connections accepted (the gateway's Pingora proxy).
pub trait App: ServerApp + Send + Sync + 'static {}
impl<A: ServerApp + Send + Sync + 'static> App for A {}

/// What is bound on an address; a change rebinds it.
#[derive(Clone, Debug, PartialEq)]
struct Binding {
    protocol: Protocol,
    client_auth: Option<ClientAuth>,
    /// Connections open at once; more wait in the backlog.
    max_connections: u32,
    /// The request header deadline.
    header_timeout: Duration,
    /// A sidecar's port (its outbound side takes TLS and `CONNECT` too).
    sidecar: bool,
}

/// The accept loops of one socket, one on each data-plane thread. Dropping
/// it (its `stop` sender) ends them.
struct Running {
    binding: Binding,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// The accept loops, by bound address.
pub struct Listeners<A> {
    proxy: Arc<A>,
    metrics: Arc<Metrics>,
    snapshot: Arc<ArcSwapOption<Snapshot>>,
    running: HashMap<SocketAddr, Running>,
}

impl<A: App> Listeners<A> {
    pub fn new(
        proxy: Arc<A>,
        snapshot: Arc<ArcSwapOption<Snapshot>>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Listeners {
            proxy,
            metrics,
            snapshot,
            running: HashMap::new(),
        }
    }

    /// Makes the bound sockets those of `snapshot`; returns the addresses that
    /// could not be bound, with why.
    pub async fn reconcile(&mut self, snapshot: &Snapshot) -> Vec<String> {
        let mut wanted: HashMap<SocketAddr, Binding> = HashMap::new();
        for port in &snapshot.config.ports {
            for addr in &port.addresses {
                let binding = Binding {
                    protocol: port.protocol,
                    client_auth: port.client_auth.clone(),
                    sidecar: port.sidecar,
                    max_connections: snapshot.config.limits.max_connections,
                    header_timeout: Duration::from_secs(
                        snapshot.config.limits.request_header_seconds,
                    ),
                };
                wanted.insert(SocketAddr::new(*addr, port.port), binding);
            }
        }
        let changed: Vec<SocketAddr> = self
            .running
            .iter()
            .filter(|(a, r)| wanted.get(a) != Some(&r.binding))
            .map(|(a, _)| *a)
            .collect();
        for addr in changed {
            if let Some(running) = self.running.remove(&addr) {
                tracing::info!(%addr, "closing listener");
                let _ = running.stop.send(true);
                // The socket is closed once the loops have returned; open
                // connections carry on.
                for task in running.tasks {
                    let _ = task.await;
                }
            }
        }
        let mut errors = Vec::new();
        for (addr, binding) in wanted {
            if self.running.contains_key(&addr) {
                continue;
            }
            match self.start(addr, binding).await {
                Ok(running) => {
                    self.running.insert(addr, running);
                }
                Err(e) => {
                    tracing::error!(%addr, "cannot listen: {e}");
                    errors.push(format!("{addr}: {e}"));
                }
            }
        }
        errors.sort();
        errors
    }

    /// The addresses bound now.
    pub fn bound(&self) -> Vec<SocketAddr> {
        let mut v: Vec<_> = self.running.keys().copied().collect();
        v.sort();
        v
    }

    /// Stops every accept loop and tells open connections to finish.
    pub fn shutdown(&mut self) {
        for (_, running) in self.running.drain() {
            let _ = running.stop.send(true);
        }
    }

    async fn start(&self, addr: SocketAddr, binding: Binding) -> std::io::Result<Running> {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        // Each data-plane thread accepts on its own copy of the socket.
        let listener = socket.listen(1024)?.into_std()?;
        let tunnel = match (binding.protocol, &binding.client_auth) {
            (Protocol::EastWest, Some(auth)) => Some(tokio_rustls::TlsAcceptor::from(
                crate::listen::tunnel::server_config(self.snapshot.clone(), &auth.roots_pem)
                    .map_err(std::io::Error::other)?,
            )),
            (Protocol::EastWest, None) => {
                return Err(std::io::Error::other(
                    "an east-west port needs the mesh's roots",
                ))
            }
            _ => None,
        };
        // An egress gateway's TLS and TCP ports: mutual TLS from the mesh
        // first, with the workload's connection inside.
        let mesh_l4 = match (binding.protocol, &binding.client_auth) {
            (Protocol::Tls | Protocol::Tcp, Some(auth)) if auth.mesh && !binding.sidecar => {
                let mut config = tls_config(addr.port(), self.snapshot.clone(), Some(auth))
                    .map_err(std::io::Error::other)?;
                Arc::make_mut(&mut config).alpn_protocols = vec![MESH_TCP_ALPN.to_vec()];
                Some(tokio_rustls::TlsAcceptor::from(config))
            }
            _ => None,
        };
        let (acceptor, l4) = match binding.protocol {
            Protocol::EastWest => (None, None),
            _ if mesh_l4.is_some() => (None, None),
            Protocol::Https => {
                let config = tls_config(
                    addr.port(),
                    self.snapshot.clone(),
                    binding.client_auth.as_ref(),
                )
                .map_err(std::io::Error::other)?;
                (Some(Arc::new(Acceptor::from_server_config(config))), None)
            }
            Protocol::Http => (None, None),
            Protocol::Tcp => (None, Some(None)),
            Protocol::Tls => {
                let mut config = tls_config(addr.port(), self.snapshot.clone(), None)
                    .map_err(std::io::Error::other)?;
                // What follows the handshake is the backend's protocol.
                Arc::make_mut(&mut config).alpn_protocols.clear();
                (None, Some(Some(tokio_rustls::TlsAcceptor::from(config))))
            }
        };
        let plaintext_too = binding
            .client_auth
            .as_ref()
            .is_some_and(|c| c.allow_plaintext);
        let (stop, stopped) = watch::channel(false);
        tracing::info!(%addr, protocol = ?binding.protocol, mtls = binding.client_auth.is_some(), "listening");
        let serving = Arc::new(Serving {
            trust_peer: !binding
                .client_auth
                .as_ref()
                .is_some_and(|c| c.insecure_fallback),
            mesh_peers: binding.client_auth.as_ref().is_some_and(|c| c.mesh),
            slots: Arc::new(tokio::sync::Semaphore::new(
                binding.max_connections.max(1) as usize
            )),
            header_timeout: binding.header_timeout,
            tls: acceptor,
            l4,
            tunnel,
            mesh_l4,
            outbound: binding.sidecar && binding.protocol == Protocol::Http,
            snapshot: self.snapshot.clone(),
            plaintext_too,
            proxy: self.proxy.clone(),
            metrics: self.metrics.clone(),
        });
        let mut tasks = Vec::new();
        for worker in crate::listen::workers::handles() {
            let (listener, serving, stopped) =
                (listener.try_clone()?, serving.clone(), stopped.clone());
            tasks.push(worker.spawn(async move {
                match TcpListener::from_std(listener) {
                    Ok(listener) => accept_loop(listener, serving, stopped).await,
                    Err(e) => tracing::error!("cannot accept: {e}"),
                }
            }));
        }
        Ok(Running {
            binding,
            stop,
            tasks,
        })
    }
}

fn tls_config(
    port: u16,
    snapshot: Arc<ArcSwapOption<Snapshot>>,
    client_auth: Option<&ClientAuth>,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let versions = [&rustls::version::TLS13, &rustls::version::TLS12];
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .expect("ring supports TLS 1.2 and 1.3");
    let builder = match client_auth {
        None => builder.with_no_client_auth(),
        Some(auth) => {
            let verifier = crate::listen::tls::client_verifier(&auth.roots_pem, provider)?;
            if auth.insecure_fallback {
                builder.with_client_cert_verifier(Arc::new(crate::listen::tls::FallbackVerifier(
                    verifier,
                )))
            } else {
                builder.with_client_cert_verifier(verifier)
            }
        }
    };
    let mut config = builder.with_cert_resolver(Arc::new(SniResolver { port, snapshot }));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    if client_auth.is_some_and(|a| a.mesh) {
        // A mesh peer's whole connection (TCPRoute, TLSRoute) for the app.
        config.alpn_protocols.push(MESH_TCP_ALPN.to_vec());
    }
    Ok(Arc::new(config))
}

/// TLS records start with a handshake byte; HTTP with a method's letter.
const TLS_HANDSHAKE: u8 = 0x16;

/// What an accept loop serves its connections with.
struct Serving<A> {
    tls: Option<Arc<Acceptor>>,
    /// TCP and TLS ports (`crate::listen::l4`), with the acceptor of TLS ports for
    /// listeners that terminate.
    l4: Option<Option<tokio_rustls::TlsAcceptor>>,
    snapshot: Arc<ArcSwapOption<Snapshot>>,
    /// PERMISSIVE: plaintext accepted beside TLS.
    plaintext_too: bool,
    /// An east-west gateway's tunnel port (`crate::listen::tunnel`).
    tunnel: Option<tokio_rustls::TlsAcceptor>,
    /// An egress gateway's TLS or TCP port (`crate::listen::egress`).
    mesh_l4: Option<tokio_rustls::TlsAcceptor>,
    /// A sidecar's outbound port, which also takes TLS its workload does
    /// itself (`crate::listen::outbound`).
    outbound: bool,
    /// Whether a client certificate is an identity (not under
    /// `AllowInsecureFallback`, where it need not verify).
    trust_peer: bool,
    /// Whether verified clients are mesh workloads (`ClientAuth::mesh`).
    mesh_peers: bool,
    /// One permit per open connection (`Limits::max_connections`).
    slots: Arc<tokio::sync::Semaphore>,
    header_timeout: Duration,
    proxy: Arc<A>,
    metrics: Arc<Metrics>,
}

async fn accept_loop<A: App>(
    listener: TcpListener,
    serving: Arc<Serving<A>>,
    mut stop: watch::Receiver<bool>,
) {
    let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
    loop {
        // At the cap, no more is accepted until a connection closes.
        let slot = tokio::select! {
            slot = serving.slots.clone().acquire_owned() => slot,
            _ = stop.changed() => break,
        };
        let Ok(slot) = slot else { break };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => break,
        };
        let (tcp, _) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let (serving, stop) = (serving.clone(), stop.clone());
        if let Some(acceptor) = &serving.tunnel {
            let (acceptor, metrics) = (acceptor.clone(), serving.metrics.clone());
            let snapshot = serving.snapshot.clone();
            tokio::spawn(async move {
                let _slot = slot;
                crate::listen::tunnel::serve(tcp, acceptor, snapshot, metrics).await;
            });
            continue;
        }
        if let Some(acceptor) = &serving.mesh_l4 {
            if let Some(snapshot) = serving.snapshot.load_full() {
                let (acceptor, metrics) = (acceptor.clone(), serving.metrics.clone());
                tokio::spawn(async move {
                    let _slot = slot;
                    crate::listen::egress::serve(tcp, acceptor, port, snapshot, metrics).await;
                });
            }
            continue;
        }
        if let Some(terminate) = &serving.l4 {
            if let Some(snapshot) = serving.snapshot.load_full() {
                let metrics = serving.metrics.clone();
                let terminate = terminate.clone();
                tokio::spawn(async move {
                    let _slot = slot;
                    crate::listen::l4::serve(tcp, port, snapshot, terminate, metrics).await;
                });
            }
            continue;
        }
        tokio::spawn(async move {
            let _slot = slot;
            if serving.outbound {
                use crate::listen::outbound::{opening, serve, Opening};
                let opened = opening(&tcp).await;
                if opened != Opening::Http {
                    if let Some(snapshot) = serving.snapshot.load_full() {
                        serve(tcp, opened, port, snapshot, serving.metrics.clone()).await;
                    }
                    return;
                }
            }
            let tls = serving.tls.clone();
            let handshaken = handshake(tcp, port, tls, serving.plaintext_too).await;
            if let Some((inner, mut info)) = handshaken {
                if !serving.trust_peer {
                    info.peer_identity = None;
                }
                info.mesh_peer = serving.mesh_peers && info.peer_identity.is_some();
                if info.mesh_peer && is_mesh_tcp(&inner) {
                    if let Some(snapshot) = serving.snapshot.load_full() {
                        let metrics = serving.metrics.clone();
                        let peer = (info.client.map(|a| a.ip()), info.peer_identity.as_deref());
                        crate::listen::l4::serve_mesh(inner, port, snapshot, metrics, peer).await;
                    }
                    return;
                }
                let mtls = info.peer_identity.is_some();
                serving.metrics.connection_opened(mtls);
                let bytes = serving.metrics.byte_counters(mtls);
                let clock = match inner.selected_alpn_proto() {
                    Some(pingora::protocols::ALPN::H2) => None,
                    _ => Some(HeaderClock::start(serving.header_timeout)),
                };
                let stream: Stream = Box::new(ConnStream::new(inner, info, Some(bytes), clock));
                let mut next = Some(stream);
                while let Some(stream) = next.take() {
                    next = serving.proxy.process_new(stream, &stop).await;
                }
                serving.metrics.connection_closed(mtls);
            }
        });
    }
}

/// Whether a mesh peer asked for its connection to go to the application
/// as it is (`MESH_TCP_ALPN`).
fn is_mesh_tcp(stream: &Stream) -> bool {
    matches!(
        stream.selected_alpn_proto(),
        Some(pingora::protocols::ALPN::Custom(c)) if c.protocol() == MESH_TCP_ALPN
    )
}

/// Turns an accepted socket into the stream Pingora serves: TLS terminated
/// where the port has TLS (PERMISSIVE ports also take plaintext, told apart
/// by the first byte), and what was learned on the way.
async fn handshake(
    tcp: TcpStream,
    port: u16,
    tls: Option<Arc<Acceptor>>,
    plaintext_too: bool,
) -> Option<(Stream, ConnInfo)> {
    let tls = match tls {
        Some(acceptor) if plaintext_too => {
            let mut first = [0u8; 1];
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tcp.peek(&mut first)).await {
                Ok(Ok(1)) => (first[0] == TLS_HANDSHAKE).then_some(acceptor),
                _ => return None,
            }
        }
        other => other,
    };
    let original_dst = crate::listen::conn::original_dst(&tcp);
    let client = tcp.peer_addr().ok();
    let l4: L4Stream = tcp.into();
    let Some(acceptor) = tls else {
        let info = ConnInfo {
            port,
            sni: None,
            peer_identity: None,
            mesh_peer: false,
            original_dst,
            client,
        };
        return Some((Box::new(l4), info));
    };
    let tls = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.tls_handshake(l4)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!("TLS handshake failed: {e}");
            return None;
        }
        Err(_) => return None,
    };
    let ssl = tls.get_ssl();
    let info = ConnInfo {
        port,
        sni: Some(
            ssl.and_then(|s| s.server_name())
                .map(str::to_ascii_lowercase)
                .unwrap_or_default(),
        ),
        peer_identity: ssl
            .and_then(|s| s.peer_certificate_der())
            .and_then(weft_ca::tls::spiffe_uri),
        mesh_peer: false,
        original_dst,
        client,
    };
    Some((Box::new(tls), info))
}
