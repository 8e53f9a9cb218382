//! TCP and TLS listeners (TCPRoute, TLSRoute): whole connections, not
//! requests. A TCP port sends each connection to a backend of its route,
//! chosen by weight. A TLS port reads the client's SNI from its ClientHello
//! without consuming it, finds the listener and route for that name, and
//! either passes the encrypted bytes through (Passthrough) or terminates
//! TLS with the listener's certificate and sends the plaintext over TCP
//! (Terminate). A connection no route takes is closed without a word.

use crate::config::snapshot::{CompiledRoute, Snapshot};
use crate::telemetry::Metrics;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use weft_api::Protocol;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TRIES: usize = 3;
/// How long a client has to send its ClientHello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest TLS record, with its header: a ClientHello fits in one.
const MAX_RECORD: usize = 16 * 1024 + 5;

/// Serves one accepted connection on an L4 `port` under the current snapshot.
pub async fn serve(
    tcp: TcpStream,
    port: u16,
    snapshot: Arc<Snapshot>,
    terminate: Option<tokio_rustls::TlsAcceptor>,
    metrics: Arc<Metrics>,
) {
    let Some(table) = snapshot.ports.get(&port) else {
        return;
    };
    match table.protocol {
        Protocol::Tcp => {
            let Some(route) = table.listeners.first().and_then(|l| l.first_route("")) else {
                return;
            };
            forward(tcp, route, &metrics).await;
        }
        Protocol::Tls => {
            let Some(sni) = client_hello_sni(&tcp).await else {
                return;
            };
            let Some(listener) = table.listener(&sni).map(|i| &table.listeners[i]) else {
                return;
            };
            let Some(route) = listener.first_route(&sni) else {
                return;
            };
            match (&listener.cert, terminate) {
                (Some(_), Some(acceptor)) => {
                    let Ok(Ok(tls)) =
                        tokio::time::timeout(HELLO_TIMEOUT, acceptor.accept(tcp)).await
                    else {
                        return;
                    };
                    forward(tls, route, &metrics).await;
                }
                _ => forward(tcp, route, &metrics).await,
            }
        }
        Protocol::Http | Protocol::Https => {}
    }
}

/// The server name a TLS client asks for, read from its ClientHello while
/// leaving every byte in the socket; `None` when it sends no SNI or no TLS.
async fn client_hello_sni(tcp: &TcpStream) -> Option<String> {
    let deadline = tokio::time::Instant::now() + HELLO_TIMEOUT;
    let mut buf = vec![0u8; MAX_RECORD];
    let mut seen = 0;
    loop {
        let n = tokio::time::timeout_at(deadline, tcp.peek(&mut buf))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        let mut acceptor = rustls::server::Acceptor::default();
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            acceptor.read_tls(&mut rest).ok()?;
        }
        match acceptor.accept() {
            Ok(Some(accepted)) => {
                let name = accepted.client_hello().server_name()?.to_ascii_lowercase();
                return Some(name);
            }
            // Part of the hello is still on its way.
            Ok(None) if n > seen && n < MAX_RECORD => seen = n,
            Ok(None) if n < MAX_RECORD => {}
            _ => return None,
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Connects to an endpoint of one of the route's backends (another one if
/// it refuses) and copies both ways until either side closes.
async fn forward<S>(mut down: S, route: &CompiledRoute, metrics: &Metrics)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Some(cluster) = route
        .pick_backend()
        .and_then(|b| route.backends[b].target.as_ref().ok())
    else {
        return;
    };
    let mut failed = None;
    for _ in 0..CONNECT_TRIES {
        let Some(i) = cluster.pick(failed) else {
            return;
        };
        let addr = cluster.endpoints[i];
        let up = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await;
        let Ok(Ok(mut up)) = up else {
            tracing::debug!(%addr, cluster = %cluster.name, "cannot connect");
            cluster.finish(i);
            failed = Some(i);
            continue;
        };
        let _ = up.set_nodelay(true);
        metrics.connection_opened(false);
        let counters = metrics.byte_counters(false);
        if let Ok((to_up, to_down)) = tokio::io::copy_bidirectional(&mut down, &mut up).await {
            counters.received.inc_by(to_up);
            counters.sent.inc_by(to_down);
        }
        metrics.connection_closed(false);
        cluster.finish(i);
        return;
    }
}
