//! Upgrades (WebSocket) start on a connection of their own whose first read
//! waits until the upgrade request has been passed on whole.
//!
//! Pingora 0.9 tears an upgraded tunnel down right after the `101` when it
//! reads the backend's `101` before it has passed on the end of the
//! upgrade request's (empty) body: it takes that end for the end of the
//! tunnel (cloudflare/pingora#946). A fast backend answers before that
//! end is handled, on plain TCP and over TLS alike.
//!
//! The end of the request shows on the connection as a flush: Pingora
//! flushes once after writing the request head and once more when it
//! finishes the request body, which it does when it handles that end. So
//! the backend's answer is held back until the second flush, and Pingora
//! then reads the `101` after the end it would have mistaken, the order it
//! handles. Should the second flush never come (a request body the client
//! does not finish), the answer is let through after `HOLD_LIMIT`.
//!
//! Over TLS the handshake is weft's (`MeshConnector::handshake`, the same
//! checks as Pingora's connector), so that the flushes counted are the
//! HTTP ones. Upgrades never share connections, so nothing is lost to the
//! pool. Remove this once Pingora carries the fix.

use crate::upstream::balancer::{ClusterState, CONNECT_TIMEOUT};
use crate::upstream::connector::{connect_tcp, MeshConnector, OverTcp, Socket};
use async_trait::async_trait;
use pingora::protocols::l4::socket::SocketAddr as PingoraAddr;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::l4::virt::{VirtualSockOpt, VirtualSocket, VirtualSocketStream};
use pingora::upstreams::peer::HttpPeer;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Flushes that make a whole upgrade request: its head, then its body's end.
const REQUEST_FLUSHES: u32 = 2;
/// The longest the answer is held back.
const HOLD_LIMIT: Duration = Duration::from_secs(1);

/// The peer an upgrade request goes to at `addr`: a connection of its own
/// (a key no pool holds), through `UpgradeConnector`.
pub fn peer(cluster: &ClusterState, addr: std::net::SocketAddr) -> HttpPeer {
    let mut peer = HttpPeer::new(addr, false, String::new());
    peer.options.custom_l4 = Some(Arc::new(UpgradeConnector {
        tls: cluster.tls.clone(),
    }));
    peer.options.connection_timeout = Some(CONNECT_TIMEOUT);
    peer.group_key = rand::random();
    peer
}

/// Connects for an upgrade request (see the module doc): TCP, then TLS
/// when the cluster asks for it.
#[derive(Debug)]
pub struct UpgradeConnector {
    tls: Option<Arc<MeshConnector>>,
}

#[async_trait]
impl pingora::connectors::L4Connect for UpgradeConnector {
    async fn connect(&self, addr: &PingoraAddr) -> pingora::Result<L4Stream> {
        let tcp = connect_tcp(addr).await?;
        let stream: Box<dyn VirtualSocket> = match &self.tls {
            Some(tls) => Box::new(HeldAnswer::new(tls.handshake(tcp).await?)),
            None => Box::new(HeldAnswer::new(tcp)),
        };
        Ok(VirtualSocketStream::new(stream).into())
    }
}

/// A stream whose reads wait for the request to be written whole.
#[derive(Debug)]
struct HeldAnswer<S> {
    inner: Socket<S>,
    flushes: u32,
    /// The reader waiting for the request's end.
    reader: Option<Waker>,
    limit: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> HeldAnswer<S> {
    fn new(inner: S) -> Self {
        HeldAnswer {
            inner: Socket(inner),
            flushes: 0,
            reader: None,
            limit: None,
        }
    }

    fn held(&self) -> bool {
        self.flushes < REQUEST_FLUSHES
    }
}

impl<S> VirtualSocket for HeldAnswer<S>
where
    S: OverTcp + AsyncRead + AsyncWrite + Unpin + Send + Sync + std::fmt::Debug,
{
    fn set_socket_option(&self, opt: VirtualSockOpt) -> std::io::Result<()> {
        self.inner.set_socket_option(opt)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for HeldAnswer<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.held() {
            let limit = self
                .limit
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(HOLD_LIMIT)));
            if limit.as_mut().poll(cx).is_pending() {
                self.reader = Some(cx.waker().clone());
                return Poll::Pending;
            }
            self.flushes = REQUEST_FLUSHES;
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for HeldAnswer<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        if poll.is_ready() && self.held() {
            self.flushes += 1;
            if !self.held() {
                if let Some(reader) = self.reader.take() {
                    reader.wake();
                }
            }
        }
        poll
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn the_answer_waits_for_the_request_head_and_its_end() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        // The backend answers before it has read anything.
        server.write_all(b"HTTP/1.1 101\r\n\r\n").await.unwrap();
        let mut s = HeldAnswer::new(client);
        let mut buf = [0u8; 64];
        let early = tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await;
        assert!(early.is_err(), "nothing is read before the request is out");
        s.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        s.flush().await.unwrap();
        let early = tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await;
        assert!(early.is_err(), "the head alone is not the whole request");
        s.flush().await.unwrap();
        let n = s.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"HTTP/1.1 101\r\n\r\n");
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_that_never_ends_gets_its_answer_after_the_limit() {
        let (client, mut server) = tokio::io::duplex(64);
        server.write_all(b"HTTP/1.1 400\r\n\r\n").await.unwrap();
        let mut s = HeldAnswer::new(client);
        let mut buf = [0u8; 64];
        let started = tokio::time::Instant::now();
        let n = s.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"HTTP/1.1 400\r\n\r\n");
        assert!(started.elapsed() >= HOLD_LIMIT);
    }
}
