//! The gateway's sockets: one accept loop per bound (address, port), started
//! and stopped as snapshots add and remove ports. A stopped loop closes its
//! socket; its open connections finish their requests and then close.

use crate::conn::{ConnInfo, ConnStream};
use crate::proxy::WeftProxy;
use crate::snapshot::Snapshot;
use crate::tls::SniResolver;
use arc_swap::ArcSwapOption;
use pingora::apps::ServerApp;
use pingora::listeners::tls::Acceptor;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::{Ssl, Stream};
use pingora::proxy::HttpProxy;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use weft_api::Protocol;

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub type Proxy = Arc<HttpProxy<WeftProxy>>;

struct Running {
    protocol: Protocol,
    stop: watch::Sender<bool>,
}

/// The accept loops, by bound address.
pub struct Listeners {
    proxy: Proxy,
    snapshot: Arc<ArcSwapOption<Snapshot>>,
    running: HashMap<SocketAddr, Running>,
}

impl Listeners {
    pub fn new(proxy: Proxy, snapshot: Arc<ArcSwapOption<Snapshot>>) -> Self {
        Listeners {
            proxy,
            snapshot,
            running: HashMap::new(),
        }
    }

    /// Makes the bound sockets those of `snapshot`; returns the addresses that
    /// could not be bound, with why.
    pub async fn reconcile(&mut self, snapshot: &Snapshot) -> Vec<String> {
        let mut wanted: HashMap<SocketAddr, Protocol> = HashMap::new();
        for port in &snapshot.config.ports {
            for addr in &port.addresses {
                wanted.insert(SocketAddr::new(*addr, port.port), port.protocol);
            }
        }
        self.running.retain(|addr, running| {
            let keep = wanted.get(addr) == Some(&running.protocol);
            if !keep {
                tracing::info!(%addr, "closing listener");
                let _ = running.stop.send(true);
            }
            keep
        });
        let mut errors = Vec::new();
        for (addr, protocol) in wanted {
            if self.running.contains_key(&addr) {
                continue;
            }
            match self.start(addr, protocol).await {
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

    async fn start(&self, addr: SocketAddr, protocol: Protocol) -> std::io::Result<Running> {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        let listener = socket.listen(1024)?;
        let acceptor = match protocol {
            Protocol::Https => Some(Arc::new(tls_acceptor(addr.port(), self.snapshot.clone()))),
            Protocol::Http => None,
        };
        let (stop, stopped) = watch::channel(false);
        tracing::info!(%addr, ?protocol, "listening");
        tokio::spawn(accept_loop(listener, acceptor, self.proxy.clone(), stopped));
        Ok(Running { protocol, stop })
    }
}

fn tls_acceptor(port: u16, snapshot: Arc<ArcSwapOption<Snapshot>>) -> Acceptor {
    let versions = [&rustls::version::TLS13, &rustls::version::TLS12];
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .expect("ring supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver { port, snapshot }));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Acceptor::from_server_config(Arc::new(config))
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<Arc<Acceptor>>,
    proxy: Proxy,
    mut stop: watch::Receiver<bool>,
) {
    let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
    loop {
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
        let (tls, proxy, stop) = (tls.clone(), proxy.clone(), stop.clone());
        tokio::spawn(async move {
            let l4: L4Stream = tcp.into();
            let (stream, sni): (Stream, Option<String>) = match tls {
                None => (Box::new(l4), None),
                Some(acceptor) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.tls_handshake(l4))
                        .await
                    {
                        Ok(Ok(tls)) => {
                            let sni = tls
                                .get_ssl()
                                .and_then(|s| s.server_name())
                                .map(str::to_ascii_lowercase);
                            (Box::new(tls), Some(sni.unwrap_or_default()))
                        }
                        Ok(Err(e)) => {
                            tracing::debug!("TLS handshake failed: {e}");
                            return;
                        }
                        Err(_) => return,
                    }
                }
            };
            let mut next =
                Some(Box::new(ConnStream::new(stream, ConnInfo { port, sni })) as Stream);
            while let Some(stream) = next.take() {
                next = proxy.process_new(stream, &stop).await;
            }
        });
    }
}
