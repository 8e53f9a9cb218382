//! RequestMirror: a copy of the request head goes to one endpoint of the
//! mirror cluster, fire and forget; its answer is read and dropped. The
//! mirrored copy carries no body (mirrors see GETs and heads of others).

use crate::upstream::balancer::ClusterState;
use pingora::http::RequestHeader;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MIRROR_TIMEOUT: Duration = Duration::from_secs(5);

/// Headers not copied: hop-by-hop and framing (the copy has no body).
const SKIPPED: [&str; 5] = [
    "connection",
    "content-length",
    "transfer-encoding",
    "keep-alive",
    "upgrade",
];

pub fn send(cluster: &Arc<ClusterState>, req: &RequestHeader, host: &str) {
    let Some(i) = cluster.pick(None) else { return };
    let addr = cluster.endpoints[i];
    let target = req.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut head = format!("{} {target} HTTP/1.1\r\n", req.method);
    let mut has_host = false;
    for (name, value) in req.headers.iter() {
        if SKIPPED.contains(&name.as_str()) {
            continue;
        }
        has_host |= name == http::header::HOST;
        let _ = write!(
            head,
            "{name}: {}\r\n",
            String::from_utf8_lossy(value.as_bytes())
        );
    }
    if !has_host {
        let _ = write!(head, "host: {host}\r\n");
    }
    head.push_str("content-length: 0\r\nconnection: close\r\n\r\n");
    let cluster = cluster.clone();
    tokio::spawn(async move {
        let sent = tokio::time::timeout(MIRROR_TIMEOUT, async {
            let mut s = tokio::net::TcpStream::connect(addr).await?;
            s.write_all(head.as_bytes()).await?;
            let mut buf = [0u8; 1024];
            while s.read(&mut buf).await? > 0 {}
            Ok::<_, std::io::Error>(())
        })
        .await;
        if let Ok(Err(e)) = sent {
            tracing::debug!(%addr, "mirror failed: {e}");
        }
        cluster.finish(i);
    });
}
