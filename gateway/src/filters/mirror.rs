//! RequestMirror: a copy of the request, body included, goes to one
//! endpoint of each mirror cluster, fire and forget; the answer is read
//! and dropped. The copy goes the way a real request to that cluster goes
//! (its TLS, mutual TLS and HTTP/2 included: `ClusterState::peer`), and
//! says of the client what the proxy says (`crate::filters::forwarded`):
//! identity headers the client sent never reach a mirror.
//!
//! The body is copied as it streams to the backend; one longer than the
//! limit is not mirrored. At most `MAX_IN_FLIGHT` copies are under way at
//! once; more are dropped. Each outcome is counted
//! (`weft_mirror_requests_total{result}`).

use crate::filters::forwarded::{MESH_SERVICE, SOURCE_WORKLOAD};
use crate::telemetry::Metrics;
use crate::upstream::balancer::ClusterState;
use bytes::{Bytes, BytesMut};
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::protocols::http::client::HttpSession;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Mirrored requests under way at once, per proxy.
const MAX_IN_FLIGHT: usize = 256;
/// The longest a mirrored exchange may take.
const TIMEOUT: Duration = Duration::from_secs(5);
/// The largest body mirrored, unless the config says otherwise.
pub const DEFAULT_MAX_BODY: usize = 64 * 1024;
/// Pooled connections to mirrors are kept this long.
const IDLE: Duration = Duration::from_secs(60);

/// Headers a copy does not take: hop-by-hop ones.
const HOP_BY_HOP: [&str; 5] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "upgrade",
    "te",
];

/// The mirrors of one proxy: their connection pools and their bound.
pub struct Mirrors {
    connector: Connector,
    slots: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

/// A request being copied as its body arrives.
pub struct Copy {
    clusters: Vec<Arc<ClusterState>>,
    head: RequestHeader,
    body: BytesMut,
    max_body: usize,
    too_large: bool,
}

impl Copy {
    /// A copy of a request whose head (as sent on) is `head`, for `clusters`.
    pub fn new(clusters: Vec<Arc<ClusterState>>, mut head: RequestHeader, max_body: usize) -> Copy {
        for name in HOP_BY_HOP {
            head.remove_header(name);
        }
        Copy {
            clusters,
            head,
            body: BytesMut::new(),
            max_body,
            too_large: false,
        }
    }

    /// Adds a piece of the body.
    pub fn push(&mut self, chunk: &[u8]) {
        if self.too_large {
            return;
        }
        if self.body.len() + chunk.len() > self.max_body {
            self.too_large = true;
            self.body = BytesMut::new();
            return;
        }
        self.body.extend_from_slice(chunk);
    }
}

impl Mirrors {
    pub fn new(metrics: Arc<Metrics>) -> Arc<Mirrors> {
        Arc::new(Mirrors {
            connector: Connector::new(None),
            slots: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            metrics,
        })
    }

    /// Sends `copy`, its body whole, to each of its clusters.
    pub fn send(self: &Arc<Self>, copy: Copy) {
        if copy.too_large {
            for _ in &copy.clusters {
                self.metrics.mirror("body_too_large");
            }
            return;
        }
        let body = copy.body.freeze();
        for cluster in copy.clusters {
            let Ok(slot) = self.slots.clone().try_acquire_owned() else {
                self.metrics.mirror("too_many");
                continue;
            };
            let (this, mut head, body) = (self.clone(), copy.head.clone(), body.clone());
            if cluster.tls.is_some() {
                // A mesh peer learns the service and who calls, as for the
                // real request.
                let me = self.metrics.reporter().workload.as_str();
                let told = head
                    .insert_header(MESH_SERVICE, cluster.service.as_str())
                    .and_then(|()| head.insert_header(SOURCE_WORKLOAD, me));
                if told.is_err() {
                    self.metrics.mirror("failed");
                    continue;
                }
            }
            tokio::spawn(async move {
                let _slot = slot;
                let Some(i) = cluster.pick(None) else {
                    this.metrics.mirror("no_endpoint");
                    return;
                };
                let sent =
                    tokio::time::timeout(TIMEOUT, this.exchange(&cluster, i, head, body)).await;
                cluster.finish(i);
                match sent {
                    Ok(Ok(())) => this.metrics.mirror("sent"),
                    Ok(Err(e)) => {
                        tracing::debug!(cluster = %cluster.name, "mirror failed: {e}");
                        this.metrics.mirror("failed");
                    }
                    Err(_) => this.metrics.mirror("timed_out"),
                }
            });
        }
    }

    async fn exchange(
        &self,
        cluster: &ClusterState,
        i: usize,
        mut head: RequestHeader,
        body: Bytes,
    ) -> pingora::Result<()> {
        let peer = cluster.peer(i);
        let (mut session, _) = self.connector.get_http_session(&peer).await?;
        if let HttpSession::H2(_) = session {
            to_h2(&mut head, cluster.tls.is_some())?;
        } else {
            head.remove_header(&http::header::TRANSFER_ENCODING);
            head.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
        }
        session.write_request_header(Box::new(head)).await?;
        session.write_request_body(body, true).await?;
        session.finish_request_body().await?;
        session.read_response_header().await?;
        while session.read_response_body().await?.is_some() {}
        self.connector
            .release_http_session(session, &peer, Some(IDLE))
            .await;
        Ok(())
    }
}

/// The head of an HTTP/2 request: scheme and authority in the URI.
fn to_h2(head: &mut RequestHeader, tls: bool) -> pingora::Result<()> {
    let authority = match head.headers.get(http::header::HOST) {
        Some(h) => h.as_bytes().to_vec(),
        None => head
            .uri
            .authority()
            .map(|a| a.as_str().as_bytes().to_vec())
            .unwrap_or_default(),
    };
    head.remove_header(&http::header::HOST);
    head.remove_header(&http::header::TRANSFER_ENCODING);
    let authority = http::uri::Authority::try_from(authority.as_slice()).map_err(|e| {
        pingora::Error::because(pingora::ErrorType::InvalidHTTPHeader, "mirror authority", e)
    })?;
    let uri = http::Uri::builder()
        .scheme(if tls { "https" } else { "http" })
        .authority(authority)
        .path_and_query(head.uri.path_and_query().map_or("/", |p| p.as_str()))
        .build()
        .map_err(|e| {
            pingora::Error::because(pingora::ErrorType::InvalidHTTPHeader, "mirror URI", e)
        })?;
    head.set_uri(uri);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_over_the_limit_is_not_kept() {
        let head = RequestHeader::build("POST", b"/", None).unwrap();
        let mut copy = Copy::new(vec![], head, 8);
        copy.push(b"12345");
        assert_eq!(&copy.body[..], b"12345");
        copy.push(b"6789");
        assert!(copy.too_large);
        assert!(copy.body.is_empty());
        copy.push(b"1");
        assert!(copy.body.is_empty());
    }
}
