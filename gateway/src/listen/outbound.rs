//! A sidecar's outbound port, for TLS its workload does itself: an HTTP
//! `CONNECT host:port` (HTTPS through the sidecar as a proxy), or a
//! captured connection whose first bytes are a TLS ClientHello (its
//! server name and the port it was bound for). A host the mesh declares
//! (`Port::stream_hosts`, as `host:port`) goes to its route whole: to the
//! egress gateway over mutual TLS, which routes TLS by its server name and
//! TCP by the port. A `CONNECT` may carry any protocol. Any
//! other goes straight where it was meant to under `AllowAny`; under
//! `RegistryOnly` it is refused (a `CONNECT` gets 502 saying why, a
//! captured connection is closed) and counted as `BlackHoleCluster`.

use crate::config::snapshot::{PortTable, Snapshot};
use crate::listen::hello::{read_sni, Replayed, HELLO_TIMEOUT};
use crate::listen::l4::{forward, splice, Outside};
use crate::telemetry::Metrics;
use crate::upstream::balancer::CONNECT_TIMEOUT;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The longest `CONNECT` request head read.
const MAX_HEAD: usize = 8 * 1024;
const TLS_HANDSHAKE: u8 = 0x16;

/// What a connection to the outbound port starts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opening {
    /// A TLS ClientHello (a captured connection).
    Tls,
    /// An HTTP `CONNECT`.
    Connect,
    /// Anything else: HTTP for the proxy.
    Http,
}

/// Looks at a new connection's first bytes without taking them.
pub async fn opening(tcp: &TcpStream) -> Opening {
    let mut first = [0u8; 8];
    let peeked = tokio::time::timeout(HELLO_TIMEOUT, tcp.peek(&mut first)).await;
    match peeked {
        Ok(Ok(n)) if n >= 1 && first[0] == TLS_HANDSHAKE => Opening::Tls,
        Ok(Ok(8)) if &first == b"CONNECT " => Opening::Connect,
        _ => Opening::Http,
    }
}

/// Serves a connection that opened with `opening` (`Tls` or `Connect`).
pub async fn serve(
    mut tcp: TcpStream,
    opening: Opening,
    port: u16,
    snapshot: Arc<Snapshot>,
    metrics: Arc<Metrics>,
) {
    let Some(table) = snapshot.ports.get(&port) else {
        return;
    };
    let idle = Duration::from_secs(snapshot.config.limits.l4_idle_seconds);
    match opening {
        Opening::Connect => {
            let Some((host, to, rest)) = read_connect(&mut tcp).await else {
                let _ = tcp.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
                return;
            };
            let key = format!("{host}:{to}");
            if let Some(route) = declared(table, &key) {
                if tcp.write_all(ESTABLISHED).await.is_err() {
                    return;
                }
                let down = Replayed::new(rest, tcp);
                return forward(down, &route, &metrics, false, idle, Outside::default()).await;
            }
            if table.passthrough {
                let Some(mut up) = dial(&host, to).await else {
                    let _ = tcp.write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
                    return;
                };
                if tcp.write_all(ESTABLISHED).await.is_err() || up.write_all(&rest).await.is_err() {
                    return;
                }
                splice(&mut tcp, &mut up, idle).await;
                return;
            }
            metrics.blackhole_connection();
            let body = format!(
                "weft: {key} is not declared in the mesh, and the outbound policy (RegistryOnly) refuses undeclared hosts\n"
            );
            let head = format!(
                "HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = tcp.write_all(format!("{head}{body}").as_bytes()).await;
        }
        Opening::Tls => {
            let Some(bound) = crate::listen::conn::original_dst(&tcp) else {
                return;
            };
            let Some((sni, hello)) = read_sni(&mut tcp).await else {
                return;
            };
            if let Some(route) = declared(table, &format!("{sni}:{}", bound.port())) {
                let down = Replayed::new(hello, tcp);
                return forward(down, &route, &metrics, false, idle, Outside::default()).await;
            }
            if table.passthrough {
                let Ok(Ok(mut up)) =
                    tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(bound)).await
                else {
                    return;
                };
                if up.write_all(&hello).await.is_ok() {
                    splice(&mut tcp, &mut up, idle).await;
                }
                return;
            }
            // Refused: closed without a word.
            metrics.blackhole_connection();
        }
        Opening::Http => {}
    }
}

const ESTABLISHED: &[u8] = b"HTTP/1.1 200 Connection established\r\n\r\n";

/// The route of a declared host for whole connections.
fn declared(table: &PortTable, key: &str) -> Option<Arc<crate::config::snapshot::CompiledRoute>> {
    table.streams.as_ref()?.first_route(key).cloned()
}

/// Reads a `CONNECT` request's head: its host (lowercase) and port, and
/// the bytes read past the head (the start of the tunnel).
async fn read_connect(tcp: &mut TcpStream) -> Option<(String, u16, Vec<u8>)> {
    let read = async {
        let mut buf = Vec::with_capacity(512);
        let mut chunk = [0u8; 1024];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                return Some((buf[..end].to_vec(), buf[end + 4..].to_vec()));
            }
            if buf.len() >= MAX_HEAD {
                return None;
            }
            let n = tcp.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    let (head, rest) = tokio::time::timeout(HELLO_TIMEOUT, read).await.ok()??;
    let (host, port) = authority(&head)?;
    Some((host, port, rest))
}

/// The `host:port` of a `CONNECT` request line, checked.
fn authority(head: &[u8]) -> Option<(String, u16)> {
    let line = std::str::from_utf8(head).ok()?.lines().next()?;
    let mut words = line.split(' ');
    let (Some("CONNECT"), Some(target), Some(version), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return None;
    };
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    let (host, port) = target.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p > 0)?;
    let host = host.to_ascii_lowercase();
    let ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => {
            !host.is_empty()
                && host.len() <= 253
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        }
    };
    ok.then_some((host, port))
}

/// A connection straight to `host:port` (`AllowAny`), its name resolved
/// by the system.
async fn dial(host: &str, port: u16) -> Option<TcpStream> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let dial = async {
        let addr: SocketAddr = tokio::net::lookup_host((host, port)).await.ok()?.next()?;
        TcpStream::connect(addr).await.ok()
    };
    tokio::time::timeout(CONNECT_TIMEOUT, dial).await.ok()?
}

#[cfg(test)]
mod tests {
    use super::authority;

    #[test]
    fn connect_targets_are_checked() {
        let ok = |line: &str| authority(line.as_bytes());
        assert_eq!(
            ok("CONNECT Secure.Partner.test:443 HTTP/1.1\r\nHost: x"),
            Some(("secure.partner.test".into(), 443))
        );
        assert_eq!(
            ok("CONNECT [::1]:8443 HTTP/1.1"),
            Some(("[::1]".into(), 8443))
        );
        for bad in [
            "CONNECT secure.partner.test HTTP/1.1",
            "CONNECT secure.partner.test:0 HTTP/1.1",
            "CONNECT secure.partner.test:99999 HTTP/1.1",
            "CONNECT a b:443 HTTP/1.1",
            "CONNECT bad_host!:443 HTTP/1.1",
            "GET secure.partner.test:443 HTTP/1.1",
            "CONNECT secure.partner.test:443 SPDY/3",
        ] {
            assert_eq!(ok(bad), None, "{bad}");
        }
    }
}
