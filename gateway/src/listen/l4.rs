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
//! connection on which no byte has moved either way for the port's
//! `l4_idle_seconds` (a peer that stops reading included) is closed.
//!
//! A route's access policy decides on the connection before any backend
//! is dialled, on what a connection shows: the client's address and, for
//! a mesh peer's connection to a sidecar, its verified identity. A refused
//! connection is closed at once.

use crate::config::snapshot::{CompiledRoute, ListenerTable, PortTable, Snapshot};
use crate::listen::hello::{read_sni, Replayed, HELLO_TIMEOUT};
use crate::telemetry::Metrics;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
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
    let client = tcp.peer_addr().ok().map(|a| a.ip());
    match table.protocol {
        // Served by `crate::listen::tunnel`; never here.
        Protocol::EastWest => {}
        Protocol::Tcp => {
            let Some(route) = table.listeners.first().and_then(|l| l.first_route("")) else {
                return;
            };
            if !admitted(route, client, None, None, &metrics) {
                return;
            }
            let outside = Outside {
                host: None,
                source: snapshot.config.egress_source,
            };
            forward(tcp, route, &metrics, false, idle, outside).await;
        }
        Protocol::Tls => {
            let Some((sni, hello, listener, route)) = by_server_name(table, &mut tcp).await else {
                return;
            };
            let down = Replayed::new(hello, tcp);
            let host = Some(sni.as_str());
            let outside = Outside {
                host,
                source: snapshot.config.egress_source,
            };
            match (&listener.cert, terminate) {
                (Some(_), Some(acceptor)) => {
                    let Ok(Ok(tls)) =
                        tokio::time::timeout(HELLO_TIMEOUT, acceptor.accept(down)).await
                    else {
                        return;
                    };
                    // TLS listeners ask for no client certificate: the
                    // client has no identity to decide on.
                    if !admitted(route, client, None, host, &metrics) {
                        return;
                    }
                    forward(tls, route, &metrics, false, idle, outside).await;
                }
                _ => {
                    if !admitted(route, client, None, host, &metrics) {
                        return;
                    }
                    forward(down, route, &metrics, false, idle, outside).await
                }
            }
        }
        Protocol::Http | Protocol::Https => {}
    }
}

/// Reads a TLS client's hello from `stream` and finds the listener and
/// route of `table` for its server name: the name, the bytes read (to
/// replay), the listener and the route.
pub(crate) async fn by_server_name<'t, S: AsyncRead + Unpin>(
    table: &'t PortTable,
    stream: &mut S,
) -> Option<(String, Vec<u8>, &'t ListenerTable, &'t Arc<CompiledRoute>)> {
    let (sni, hello) = read_sni(stream).await?;
    let listener = &table.listeners[table.listener(&sni)?];
    let route = listener.first_route(&sni)?;
    Some((sni, hello, listener, route))
}

/// Serves a whole connection a mesh peer opened over mutual TLS on a
/// sidecar's inbound `port`: its bytes go to the port's application.
/// `peer` is the client's address and verified identity.
pub async fn serve_mesh<S>(
    stream: S,
    port: u16,
    snapshot: Arc<Snapshot>,
    metrics: Arc<Metrics>,
    peer: (Option<IpAddr>, Option<&str>),
) where
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
    if !admitted(route, peer.0, peer.1, None, &metrics) {
        return;
    }
    let idle = Duration::from_secs(snapshot.config.limits.l4_idle_seconds);
    forward(stream, route, &metrics, true, idle, Outside::default()).await;
}

/// Whether the route's access policy lets the connection through.
pub(crate) fn admitted(
    route: &CompiledRoute,
    client: Option<IpAddr>,
    identity: Option<&str>,
    host: Option<&str>,
    metrics: &Metrics,
) -> bool {
    let Some(access) = &route.access else {
        return true;
    };
    match access.check_connection(client, identity, host) {
        Ok(()) => {
            metrics.policy_decision(&access.name, true, "allowed");
            true
        }
        Err(d) => {
            tracing::debug!(policy = %d.policy, reason = d.reason, ?identity, "connection refused");
            metrics.policy_decision(&d.policy, false, d.reason);
            false
        }
    }
}

/// Where a connection to a host outside the mesh goes: the name asked for
/// (a TLS server name, for a wildcard XBackend) and the address it
/// leaves from (an egress gateway's).
#[derive(Clone, Copy, Default)]
pub(crate) struct Outside<'a> {
    pub host: Option<&'a str>,
    pub source: Option<IpAddr>,
}

/// Connects to an endpoint of one of the route's backends (another one if
/// it refuses), over TLS when its cluster asks for it, and copies both
/// ways until either side closes or the connection idles for `idle`.
pub(crate) async fn forward<S>(
    down: S,
    route: &CompiledRoute,
    metrics: &Metrics,
    mtls: bool,
    idle: Duration,
    outside: Outside<'_>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Some(cluster) = route
        .pick_backend()
        .and_then(|b| route.backends[b].target.as_ref().ok())
    else {
        return;
    };
    if cluster.external.is_some() {
        return crate::listen::egress::forward_out(down, cluster, metrics, mtls, idle, outside)
            .await;
    }
    let mut down = down;
    let mut failed = None;
    for _ in 0..CONNECT_TRIES {
        let Some(i) = cluster.pick(failed) else {
            return;
        };
        let addr = cluster.endpoints[i];
        let connected = tokio::time::timeout(CONNECT_TIMEOUT, async {
            // On another network: through its east-west gateway, then
            // mutual TLS with its sidecar inside the tunnel.
            if let (Some((tunnels, gateway)), Some(tls)) = (cluster.tunnel_of(i), &cluster.tls) {
                let stream = tunnels
                    .open(gateway, addr)
                    .await
                    .map_err(std::io::Error::other)?;
                return Ok(Upstream::Tunneled(Box::new(
                    tls.handshake_l4(stream).await?,
                )));
            }
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
            Upstream::Tunneled(s) => splice(&mut down, s.as_mut(), idle).await,
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
    Tunneled(Box<tokio_rustls::client::TlsStream<crate::upstream::h2stream::H2Stream>>),
}

/// Copies both ways until both sides have closed, either fails, or no
/// byte moves for `idle`; the bytes copied each way. The two directions
/// run on their own, so neither waits on the other: a side writing while
/// its peer writes too is read all the same.
pub(crate) async fn splice<A, B>(a: &mut A, b: &mut B, idle: Duration) -> (u64, u64)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (mut a_read, mut a_write) = tokio::io::split(a);
    let (mut b_read, mut b_write) = tokio::io::split(b);
    let clock = Activity::new();
    let (to_b, to_a) = (AtomicU64::new(0), AtomicU64::new(0));
    let both = async {
        tokio::join!(
            one_way(&mut a_read, &mut b_write, &to_b, &clock),
            one_way(&mut b_read, &mut a_write, &to_a, &clock),
        )
    };
    tokio::select! {
        _ = both => {}
        () = clock.idle_for(idle) => tracing::debug!("closing an idle L4 connection"),
    }
    (to_b.into_inner(), to_a.into_inner())
}

/// Copies `from` to `to` until `from` ends (then shuts `to` down) or
/// either fails, counting bytes and telling `clock` each time some move.
async fn one_way<R, W>(from: &mut R, to: &mut W, count: &AtomicU64, clock: &Activity)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; COPY_BUFFER];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return;
            }
            Ok(n) => {
                clock.moved();
                if to.write_all(&buf[..n]).await.is_err() {
                    return;
                }
                clock.moved();
                count.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
    }
}

/// When bytes last moved on a connection, either way.
struct Activity {
    started: tokio::time::Instant,
    /// Milliseconds from `started`.
    last: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            started: tokio::time::Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    fn moved(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.last.store(ms, Ordering::Relaxed);
    }

    /// Returns once nothing has moved for `idle`.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let last = self.started + Duration::from_millis(self.last.load(Ordering::Relaxed));
            let until = last + idle;
            if tokio::time::Instant::now() >= until {
                return;
            }
            tokio::time::sleep_until(until).await;
        }
    }
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

    #[tokio::test]
    async fn one_direction_waiting_does_not_hold_up_the_other() {
        const SIZE: usize = 1 << 20;
        let (mut a, a_peer) = tokio::io::duplex(1024);
        let (mut b, mut b_peer) = tokio::io::duplex(1024);
        let copy =
            tokio::spawn(async move { splice(&mut a, &mut b, Duration::from_secs(30)).await });
        // `a` sends and reads at once; `b` sends all it has before it
        // reads, so a→b waits until b→a has crossed whole.
        let (mut a_in, mut a_out) = tokio::io::split(a_peer);
        let a_end = async move {
            let send = async {
                a_out.write_all(&vec![1u8; SIZE]).await.unwrap();
                a_out.shutdown().await.unwrap();
            };
            let mut got = Vec::new();
            let (_, read) = tokio::join!(send, a_in.read_to_end(&mut got));
            read.unwrap();
            got.len()
        };
        let b_end = async move {
            b_peer.write_all(&vec![2u8; SIZE]).await.unwrap();
            b_peer.shutdown().await.unwrap();
            let mut got = Vec::new();
            b_peer.read_to_end(&mut got).await.unwrap();
            got.len()
        };
        let both = async { tokio::join!(a_end, b_end) };
        let got = tokio::time::timeout(Duration::from_secs(20), both)
            .await
            .expect("the copy stalled");
        assert_eq!(got, (SIZE, SIZE));
        assert_eq!(copy.await.unwrap(), (SIZE as u64, SIZE as u64));
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_stops_reading_is_let_go() {
        let (mut a, mut a_peer) = tokio::io::duplex(1024);
        let (mut b, _b_peer_never_reads) = tokio::io::duplex(1024);
        let copy =
            tokio::spawn(async move { splice(&mut a, &mut b, Duration::from_secs(30)).await });
        // More than the buffers hold; nothing moves once they are full.
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            a_peer.write_all(&vec![1u8; 64 * 1024]),
        )
        .await;
        let (to_b, _) = tokio::time::timeout(Duration::from_secs(120), copy)
            .await
            .expect("the stalled copy was never cut")
            .unwrap();
        assert!(to_b < 64 * 1024);
    }
}
