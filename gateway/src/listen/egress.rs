//! An egress gateway's TLS and TCP ports. Sidecars open mutual TLS to them
//! (ALPN `weft-tcp`) with their workload's certificate, so the caller is
//! known by its SPIFFE ID; inside is the workload's own connection. On a
//! TLS port its ClientHello names the external host: the listener and
//! route are chosen by that name and the bytes pass through untouched (the
//! workload and the external server do their own TLS). On a TCP port the
//! port's route says where. The route's policy decides on the identity and
//! the host before anything is dialled; then the external name is resolved
//! (`crate::upstream::external`) and connected to from the gateway's own
//! address.

use crate::config::snapshot::Snapshot;
use crate::listen::hello::{Replayed, HELLO_TIMEOUT};
use crate::listen::l4::{admitted, by_server_name, forward, splice, Outside};
use crate::telemetry::Metrics;
use crate::upstream::balancer::{ClusterState, CONNECT_TIMEOUT};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpSocket, TcpStream};
use weft_api::Protocol;

/// Tries at an external host's addresses before giving up.
const TRIES: usize = 3;

/// Serves one connection accepted on an egress gateway's mesh port `port`.
pub async fn serve(
    tcp: TcpStream,
    acceptor: tokio_rustls::TlsAcceptor,
    port: u16,
    snapshot: Arc<Snapshot>,
    metrics: Arc<Metrics>,
) {
    let client = tcp.peer_addr().ok().map(|a| a.ip());
    let Ok(Ok(mut tls)) = tokio::time::timeout(HELLO_TIMEOUT, acceptor.accept(tcp)).await else {
        return;
    };
    // The verifier demands a certificate; one without a SPIFFE ID is no
    // workload.
    let identity = crate::listen::tls::peer_spiffe_id(tls.get_ref().1);
    let Some(identity) = identity else { return };
    let Some(table) = snapshot.ports.get(&port) else {
        return;
    };
    let idle = Duration::from_secs(snapshot.config.limits.l4_idle_seconds);
    let source = snapshot.config.egress_source;
    match table.protocol {
        Protocol::Tls => {
            let Some((sni, hello, _, route)) = by_server_name(table, &mut tls).await else {
                return;
            };
            if !admitted(route, client, Some(&identity), Some(&sni), &metrics) {
                return;
            }
            let outside = Outside {
                host: Some(&sni),
                source,
            };
            forward(
                Replayed::new(hello, tls),
                route,
                &metrics,
                true,
                idle,
                outside,
            )
            .await;
        }
        Protocol::Tcp => {
            let Some(route) = table.listeners.first().and_then(|l| l.first_route("")) else {
                return;
            };
            // The host is the one external host the route sends to.
            let host = route
                .backends
                .iter()
                .filter_map(|b| b.target.as_ref().ok())
                .find_map(|c| c.external.as_ref())
                .map(|e| e.hostname.clone());
            if !admitted(route, client, Some(&identity), host.as_deref(), &metrics) {
                return;
            }
            let outside = Outside { host: None, source };
            forward(tls, route, &metrics, true, idle, outside).await;
        }
        Protocol::Http | Protocol::Https | Protocol::EastWest => {}
    }
}

/// `forward` for a cluster outside the mesh: its name resolved now, each
/// try at the next address, over TLS when the cluster asks for it.
pub(crate) async fn forward_out<S>(
    mut down: S,
    cluster: &ClusterState,
    metrics: &Metrics,
    mtls: bool,
    idle: Duration,
    outside: Outside<'_>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Some(ext) = &cluster.external else { return };
    let Some(target) = ext.target(outside.host.unwrap_or("")) else {
        return;
    };
    let addrs = match crate::upstream::external::resolve(target).await {
        Ok(a) => a,
        Err(e) => {
            tracing::debug!(cluster = %cluster.name, "cannot resolve: {e:?}");
            return;
        }
    };
    for ip in addrs.iter().take(TRIES) {
        let addr = SocketAddr::new(*ip, ext.port);
        let Ok(Ok(tcp)) =
            tokio::time::timeout(CONNECT_TIMEOUT, connect(addr, outside.source)).await
        else {
            tracing::debug!(%addr, cluster = %cluster.name, "cannot connect");
            continue;
        };
        metrics.connection_opened(mtls);
        let counters = metrics.byte_counters(mtls);
        let (to_up, to_down) = match &cluster.tls {
            Some(tls) => {
                let Ok(mut up) = tls.handshake_l4(tcp).await else {
                    metrics.connection_closed(mtls);
                    return;
                };
                splice(&mut down, &mut up, idle).await
            }
            None => {
                let mut up = tcp;
                splice(&mut down, &mut up, idle).await
            }
        };
        counters.received.inc_by(to_up);
        counters.sent.inc_by(to_down);
        metrics.connection_closed(mtls);
        return;
    }
}

/// A TCP connection to `addr`, from `source` when given.
pub(crate) async fn connect(
    addr: SocketAddr,
    source: Option<IpAddr>,
) -> std::io::Result<TcpStream> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let Some(ip) = source.filter(|ip| ip.is_ipv4() == addr.is_ipv4()) {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let tcp = socket.connect(addr).await?;
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}
