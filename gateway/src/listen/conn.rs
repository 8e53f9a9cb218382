//! `ConnStream`: a downstream connection as Pingora sees it, carrying what
//! the accept loop learned (the port, the SNI name) to the request phases.
//! The facts ride in the connection's proxy digest, so reading them on the
//! request path takes neither a lock nor an allocation. Bytes read and
//! written are counted on the way (`istio_tcp_*_bytes_total`).
//!
//! Writes are buffered until Pingora flushes, so a response's header and a
//! small body leave in one `send()`. Pingora's own listeners size the
//! stream's write buffer after accept; a stream built from an accepted
//! socket, as ours are, has none, and each header and body went out alone.

use crate::listen::header_clock::HeaderClock;
use crate::telemetry::ByteCounters;
use async_trait::async_trait;
use pingora::http::ResponseHeader;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What the accept loop knows about a connection.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub port: u16,
    /// The SNI name of a TLS connection, lowercased; empty when none was sent.
    pub sni: Option<String>,
    /// The client's SPIFFE ID, when it presented a certificate (mutual TLS).
    pub peer_identity: Option<String>,
    /// The client is a mesh workload (its certificate verified against the
    /// mesh's roots), so `peer_identity` is who it is.
    pub mesh_peer: bool,
    /// Where the client meant to connect, when iptables redirected it here
    /// (`SO_ORIGINAL_DST`): transparent capture.
    pub original_dst: Option<std::net::SocketAddr>,
    /// The client's address.
    pub client: Option<std::net::SocketAddr>,
}

/// The destination a redirected connection was bound for; `None` when it
/// was not redirected (or the kernel does not say).
pub fn original_dst(tcp: &tokio::net::TcpStream) -> Option<std::net::SocketAddr> {
    let local = tcp.local_addr().ok()?;
    let sock = socket2::SockRef::from(tcp);
    let original = match local {
        std::net::SocketAddr::V4(_) => sock.original_dst_v4(),
        std::net::SocketAddr::V6(_) => sock.original_dst_v6(),
    };
    original
        .ok()
        .and_then(|a| a.as_socket())
        .filter(|a| *a != local)
}

impl ConnInfo {
    /// The info of the connection a session arrived on.
    pub fn of(digest: Option<&pingora::protocols::Digest>) -> Option<&ConnInfo> {
        digest?
            .proxy_digest
            .as_ref()?
            .user_data
            .as_ref()?
            .downcast_ref()
    }
}

/// Pingora's own write buffer size: one TCP segment.
const WRITE_BUFFER: usize = pingora::protocols::l4::stream::DEFAULT_L4_WRITE_BUFFER_SIZE;

pub struct ConnStream {
    inner: tokio::io::BufWriter<Stream>,
    info: Arc<ProxyDigest>,
    bytes: Option<ByteCounters>,
    /// The request header deadline (HTTP/1).
    clock: Option<HeaderClock>,
}

impl ConnStream {
    pub fn new(
        inner: Stream,
        info: ConnInfo,
        bytes: Option<ByteCounters>,
        clock: Option<HeaderClock>,
    ) -> Self {
        let response = ResponseHeader::build(200, Some(0)).expect("a 200 header builds");
        let digest = ProxyDigest {
            response: Box::new(response),
            user_data: Some(Box::new(info)),
        };
        ConnStream {
            inner: tokio::io::BufWriter::with_capacity(WRITE_BUFFER, inner),
            info: Arc::new(digest),
            bytes,
            clock,
        }
    }
}

impl ConnStream {
    fn count_sent(&mut self, poll: &Poll<std::io::Result<usize>>, first: &[u8]) {
        if let Poll::Ready(Ok(n)) = poll {
            if let Some(b) = &self.bytes {
                b.sent.inc_by(*n as u64);
            }
            if let Some(clock) = &mut self.clock {
                clock.wrote(&first[..(*n).min(first.len())]);
            }
        }
    }
}

impl std::fmt::Debug for ConnStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnStream")
            .field("inner", &self.inner)
            .finish()
    }
}

impl AsyncRead for ConnStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if let Some(clock) = &mut self.clock {
            if clock.late(cx) {
                return Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "request header not received in time",
                )));
            }
        }
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &poll {
            let read = &buf.filled()[before..];
            if let Some(b) = &self.bytes {
                b.received.inc_by(read.len() as u64);
            }
            if let Some(clock) = &mut self.clock {
                clock.read(read);
            }
        }
        poll
    }
}

impl AsyncWrite for ConnStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.count_sent(&poll, buf);
        poll
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        let first = bufs.first().map_or(&[][..], |b| &b[..]);
        self.count_sent(&poll, first);
        poll
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for ConnStream {
    async fn shutdown(&mut self) {
        // Whatever is buffered goes out first.
        let _ = tokio::io::AsyncWriteExt::flush(&mut self.inner).await;
        self.inner.get_mut().shutdown().await
    }
}

impl UniqueID for ConnStream {
    fn id(&self) -> UniqueIDType {
        self.inner.get_ref().id()
    }
}

impl Ssl for ConnStream {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ref().get_ssl()
    }
    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ref().get_ssl_digest()
    }
    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.get_ref().selected_alpn_proto()
    }
}

impl GetTimingDigest for ConnStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_ref().get_timing_digest()
    }
}

impl GetProxyDigest for ConnStream {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        Some(self.info.clone())
    }
}

impl GetSocketDigest for ConnStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_ref().get_socket_digest()
    }
}

#[async_trait]
impl Peek for ConnStream {
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        // Pingora peeks for the HTTP/2 preface before it reads a request:
        // a client that sends nothing is timed here too.
        let ConnStream { inner, clock, .. } = self;
        let Some(clock) = clock else {
            return inner.get_mut().try_peek(buf).await;
        };
        let late = std::future::poll_fn(|cx| {
            if clock.late(cx) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        });
        tokio::select! {
            peeked = inner.get_mut().try_peek(buf) => peeked,
            () = late => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no request in time",
            )),
        }
    }
}
