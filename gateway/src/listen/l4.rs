//! TCP and TLS listeners (TCPRoute, TLSRoute): whole connections, not
//! requests. A TCP port sends each connection to a backend of its route,
//! chosen by weight. A TLS port reads the client's ClientHello
//! (`crate::listen::hello`), finds the listener and route for its SNI, and
//! either passes the encrypted bytes through (Passthrough) or terminates
//! TLS with the listener's certificate (Terminate). A connection no route
//! takes is closed without a word.
//!
//! Upstream, a backend reached over TLS stays so: to a meshed Service the
//! connection goes over mutual TLS to the destination's sidecar, which
//! passes the bytes to its application (`MESH_TCP_ALPN`, `serve_mesh`); to
//! one a BackendTLSPolicy names, TLS checked as the policy says. A
//! connection idle both ways for the port's `l4_idle_seconds` is closed.

use crate::config::snapshot::{CompiledRoute, Snapshot};
use crate::listen::hello::{read_sni, Replayed, HELLO_TIMEOUT};
use crate::telemetry::Metrics;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use weft_api::Protocol;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TRIES: usize = 3;
const COPY_BUFFER: usize = 16 * 1024;

/// Serves one accepted connection on an L4 `port` under the current snapshot.
pub async fn serve(
    mut tcp: TcpStream,
    port: u16,
    snapshot: Arc<Snapshot>,
    terminate: Option<tokio_rustls::TlsAcceptor>,
    metrics: Arc<Metrics>,
) {
    let Some(table) = snapshot.ports.get(&port) else {
        return;
    };
    let idle = Duration::from_secs(snapshot.config.limits.l4_idle_seconds);
    match table.protocol {
        Protocol::Tcp => {
            let Some(route) = table.listeners.first().and_then(|l| l.first_route("")) else {
                return;
            };
            forward(tcp, route, &metrics, false, idle).await;
        }
        Protocol::Tls => {
            let Some((sni, hello)) = read_sni(&mut tcp).await else {
                return;
            };
            let Some(listener) = table.listener(&sni).map(|i| &table.listeners[i]) else {
                return;
            };
            let Some(route) = listener.first_route(&sni) else {
                return;
            };
            let client = Replayed::new(hello, tcp);
            match (&listener.cert, terminate) {
                (Some(_), Some(acceptor)) => {
                    let Ok(Ok(tls)) =
                        tokio::time::timeout(HELLO_TIMEOUT, acceptor.accept(client)).await
                    else {
                        return;
                    };
                    forward(tls, route, &metrics, false, idle).await;
                }
                _ => forward(client, route, &metrics, false, idle).await,
            }
        }
        Protocol::Http | Protocol::Https => {}
    }
}

/// Serves a whole connection a mesh peer opened over mutual TLS on a
/// sidecar's inbound `port`: its bytes go to the port's application.
pub async fn serve_mesh<S>(stream: S, port: u16, snapshot: Arc<Snapshot>, metrics: Arc<Metrics>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Some(route) = snapshot
        .ports
        .get(&port)
        .and_then(|t| t.listeners.first())
        .and_then(|l| l.first_route(""))
    else {
        return;
    };
    let idle = Duration::from_secs(snapshot.config.limits.l4_idle_seconds);
    forward(stream, route, &metrics, true, idle).await;
}

/// Connects to an endpoint of one of the route's backends (another one if
/// it refuses), over TLS when its cluster asks for it, and copies both
/// ways until either side closes or the connection idles for `idle`.
async fn forward<S>(
    mut down: S,
    route: &CompiledRoute,
    metrics: &Metrics,
    mtls: bool,
    idle: Duration,
) where
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
        let connected = tokio::time::timeout(CONNECT_TIMEOUT, async {
            let tcp = TcpStream::connect(addr).await?;
            let _ = tcp.set_nodelay(true);
            match &cluster.tls {
                Some(tls) => Ok(Upstream::Tls(Box::new(tls.handshake_l4(tcp).await?))),
                None => Ok::<_, std::io::Error>(Upstream::Plain(tcp)),
            }
        })
        .await;
        let Ok(Ok(mut up)) = connected else {
            tracing::debug!(%addr, cluster = %cluster.name, "cannot connect");
            cluster.finish(i);
            failed = Some(i);
            continue;
        };
        metrics.connection_opened(mtls);
        let counters = metrics.byte_counters(mtls);
        let (to_up, to_down) = match &mut up {
            Upstream::Plain(s) => splice(&mut down, s, idle).await,
            Upstream::Tls(s) => splice(&mut down, s.as_mut(), idle).await,
        };
        counters.received.inc_by(to_up);
        counters.sent.inc_by(to_down);
        metrics.connection_closed(mtls);
        cluster.finish(i);
        return;
    }
}

enum Upstream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// Copies both ways until both sides have closed, either fails, or no
/// byte moves for `idle`; the bytes copied each way.
async fn splice<A, B>(a: &mut A, b: &mut B, idle: Duration) -> (u64, u64)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (mut a_read, mut a_write) = tokio::io::split(a);
    let (mut b_read, mut b_write) = tokio::io::split(b);
    let (mut from_a, mut from_b) = (vec![0u8; COPY_BUFFER], vec![0u8; COPY_BUFFER]);
    let (mut a_open, mut b_open) = (true, true);
    let (mut to_b, mut to_a) = (0u64, 0u64);
    while a_open || b_open {
        tokio::select! {
            read = a_read.read(&mut from_a), if a_open => match read {
                Ok(0) | Err(_) => {
                    a_open = false;
                    let _ = b_write.shutdown().await;
                }
                Ok(n) => {
                    if b_write.write_all(&from_a[..n]).await.is_err() {
                        break;
                    }
                    to_b += n as u64;
                }
            },
            read = b_read.read(&mut from_b), if b_open => match read {
                Ok(0) | Err(_) => {
                    b_open = false;
                    let _ = a_write.shutdown().await;
                }
                Ok(n) => {
                    if a_write.write_all(&from_b[..n]).await.is_err() {
                        break;
                    }
                    to_a += n as u64;
                }
            },
            () = tokio::time::sleep(idle) => {
                tracing::debug!("closing an idle L4 connection");
                break;
            }
        }
    }
    (to_b, to_a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_is_closed() {
        let (mut a, _a_peer) = tokio::io::duplex(64);
        let (mut b, _b_peer) = tokio::io::duplex(64);
        let started = tokio::time::Instant::now();
        let copied = splice(&mut a, &mut b, Duration::from_secs(30)).await;
        assert_eq!(copied, (0, 0));
        assert!(started.elapsed() >= Duration::from_secs(30));
    }

    #[tokio::test]
    async fn bytes_cross_both_ways() {
        let (mut a, mut a_peer) = tokio::io::duplex(64);
        let (mut b, mut b_peer) = tokio::io::duplex(64);
        let copy =
            tokio::spawn(async move { splice(&mut a, &mut b, Duration::from_secs(30)).await });
        a_peer.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        b_peer.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        b_peer.write_all(b"pong!").await.unwrap();
        let mut buf = [0u8; 5];
        a_peer.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong!");
        drop(a_peer);
        drop(b_peer);
        assert_eq!(copy.await.unwrap(), (4, 5));
    }
}
