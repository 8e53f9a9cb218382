//! WebSocket upgrades on both ends: a backend connection that accepts the
//! upgrade and then echoes bytes, and a client that upgrades through the
//! gateway and checks the tunnel carries bytes both ways.

use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Serves one backend connection: a request asking for a WebSocket gets a
/// `101` and then its bytes echoed; any other gets a `400` and the
/// connection is closed.
pub async fn backend<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) {
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap_or(0);
    let head = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
    if !head.contains("upgrade: websocket") {
        let _ = s
            .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            .await;
        let _ = s.shutdown().await;
        return;
    }
    let _ = s
        .write_all(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
        .await;
    loop {
        let n = s.read(&mut buf).await.unwrap_or(0);
        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
}

/// Upgrades a new connection to `addr` for `host`, and checks that two
/// messages come back through the tunnel.
pub async fn round_trip(addr: &str, host: &str) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET /chat HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    for msg in [&b"hello"[..], b"over the tunnel"] {
        s.write_all(msg).await.unwrap();
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("the tunnel answers")
            .unwrap();
        assert_eq!(&buf[..n], msg, "the tunnel echoes");
    }
}
