//! Upgrades (WebSocket) to plain-HTTP backends start on a connection whose
//! first read waits a few milliseconds.
//!
//! Pingora 0.9.1 tears an upgraded tunnel down right after the `101` when it
//! reads the backend's `101` before it has passed on the end of the upgrade
//! request's (empty) body: it takes that end for the end of the tunnel
//! (cloudflare/pingora#946, fix proposed in #947). On loopback, a fast
//! backend answers in microseconds and the tunnel often died. Holding the
//! first read back lets the request's end go first, which is the order
//! Pingora handles. Remove this once Pingora carries the fix.
//!
//! Upgrades to TLS backends (mesh mTLS, BackendTLSPolicy) do not go
//! through here: decrypting the `101` takes long enough that the race was
//! not seen in 200 upgrades over either TLS connector
//! (`backend_tls.rs::websockets_over_backend_tls`).

use async_trait::async_trait;
use pingora::protocols::l4::socket::SocketAddr as PingoraAddr;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::l4::virt::{VirtualSockOpt, VirtualSocket, VirtualSocketStream};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// How long the first read from the backend waits.
const FIRST_READ_DELAY: Duration = Duration::from_millis(5);

/// Connects for an upgrade request (see the module doc).
#[derive(Debug)]
pub struct UpgradeConnector;

#[async_trait]
impl pingora::connectors::L4Connect for UpgradeConnector {
    async fn connect(&self, addr: &PingoraAddr) -> pingora::Result<L4Stream> {
        let tcp = crate::upstream::connector::connect_tcp(addr).await?;
        let stream = DelayedFirstRead {
            inner: tcp,
            delay: Some(Box::pin(tokio::time::sleep(FIRST_READ_DELAY))),
        };
        Ok(VirtualSocketStream::new(Box::new(stream)).into())
    }
}

#[derive(Debug)]
struct DelayedFirstRead {
    inner: TcpStream,
    delay: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl VirtualSocket for DelayedFirstRead {
    fn set_socket_option(&self, opt: VirtualSockOpt) -> std::io::Result<()> {
        match opt {
            VirtualSockOpt::NoDelay => self.inner.set_nodelay(true),
            _ => Ok(()),
        }
    }
}

impl AsyncRead for DelayedFirstRead {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if let Some(delay) = self.delay.as_mut() {
            if delay.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.delay = None;
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for DelayedFirstRead {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
