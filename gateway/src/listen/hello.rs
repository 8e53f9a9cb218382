//! Reading a TLS client's ClientHello before deciding where its connection
//! goes (TLSRoute): the bytes are read, bounded in size and time, and
//! handed back in front of the rest of the stream (`Replayed`), so the
//! connection can still be passed through or terminated whole.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// How long a client has to send its ClientHello.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// The most read looking for a whole ClientHello: one record of the
/// largest size, with its header (a hello spanning several is refused).
const MAX_HELLO: usize = 16 * 1024 + 5;

/// The server name a TLS client asks for, and the bytes read to learn it.
/// `None` when the client sends no SNI, no TLS, too much, or too slowly.
pub async fn read_sni<S: AsyncRead + Unpin>(stream: &mut S) -> Option<(String, Vec<u8>)> {
    let read = async {
        let mut buf = Vec::with_capacity(1024);
        let mut chunk = [0u8; 4096];
        loop {
            let room = MAX_HELLO - buf.len();
            if room == 0 {
                return None;
            }
            let n = stream.read(&mut chunk[..room.min(4096)]).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
            let mut acceptor = rustls::server::Acceptor::default();
            let mut rest = &buf[..];
            while !rest.is_empty() {
                acceptor.read_tls(&mut rest).ok()?;
            }
            match acceptor.accept() {
                Ok(Some(accepted)) => {
                    let name = accepted.client_hello().server_name()?.to_ascii_lowercase();
                    return Some((name, buf));
                }
                // Part of the hello is still on its way.
                Ok(None) => {}
                Err(_) => return None,
            }
        }
    };
    tokio::time::timeout(HELLO_TIMEOUT, read).await.ok()?
}

/// A stream that gives back `prefix` before reading on from `inner`.
pub struct Replayed<S> {
    prefix: Vec<u8>,
    at: usize,
    inner: S,
}

impl<S> Replayed<S> {
    pub fn new(prefix: Vec<u8>, inner: S) -> Self {
        Replayed {
            prefix,
            at: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Replayed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.at < self.prefix.len() {
            let n = (self.prefix.len() - self.at).min(buf.remaining());
            let at = self.at;
            buf.put_slice(&self.prefix[at..at + n]);
            self.at += n;
            if self.at == self.prefix.len() {
                self.prefix = Vec::new();
                self.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Replayed<S> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_hello_that_never_ends_is_given_up_on_without_reading_forever() {
        let (mut client, mut server) = tokio::io::duplex(1 << 20);
        // A TLS handshake record header claiming 16 KiB, then endless bytes.
        client
            .write_all(&[0x16, 0x03, 0x01, 0x40, 0x00])
            .await
            .unwrap();
        client.write_all(&vec![0u8; 40 * 1024]).await.unwrap();
        assert!(read_sni(&mut server).await.is_none());
    }

    #[tokio::test]
    async fn the_bytes_read_come_back_first() {
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(b" world").await.unwrap();
        drop(client);
        let mut replayed = Replayed::new(b"hello".to_vec(), server);
        let mut all = String::new();
        replayed.read_to_string(&mut all).await.unwrap();
        assert_eq!(all, "hello world");
    }
}
