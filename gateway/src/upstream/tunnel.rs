//! Tunnels to endpoints on other networks, through the east-west gateway
//! of their cluster, in the manner of Istio's HBONE:
//!
//! 1. mutual TLS to the gateway with this proxy's own certificate (so the
//!    gateway knows, and may authorize, the caller); the gateway must
//!    chain to the mesh's roots; one HTTP/2 connection per gateway carries
//!    every tunnel through it;
//! 2. an HTTP/2 `CONNECT` naming the endpoint's address: the gateway
//!    checks it is an endpoint of a Service its cluster exports;
//! 3. inside that stream, mutual TLS to the endpoint's sidecar, end to end,
//!    exactly as on one network: the caller checks the sidecar's
//!    identity, the sidecar checks the caller's. The gateway sees only
//!    ciphertext.
//!
//! Pingora sees the result as the endpoint's connection (a custom L4
//! stream, TLS already done).

use crate::upstream::balancer::CONNECT_TIMEOUT;
use crate::upstream::connector::{MeshConnector, Socket};
use crate::upstream::h2stream::H2Stream;
use crate::upstream::verify::ServerVerifier;
use async_trait::async_trait;
use bytes::Bytes;
use h2::client::SendRequest;
use pingora::protocols::l4::socket::SocketAddr as PingoraAddr;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::l4::virt::VirtualSocketStream;
use pingora::{Error, ErrorType, OrErr};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;
use weft_api::UpstreamTls;

/// Mutual TLS to east-west gateways, and the HTTP/2 connection to each.
pub struct Tunnels {
    outer: tokio_rustls::TlsConnector,
    sni: rustls::pki_types::ServerName<'static>,
    conns: tokio::sync::Mutex<HashMap<SocketAddr, SendRequest<Bytes>>>,
}

impl std::fmt::Debug for Tunnels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tunnels")
    }
}

impl Tunnels {
    /// For a cluster whose mesh TLS is `tls`: the same certificate and
    /// roots, any identity the roots vouch for on the gateway's side.
    pub fn new(tls: &UpstreamTls) -> Result<Self, String> {
        let verifier = ServerVerifier::spiffe(&tls.roots_pem, Vec::new())?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier));
        let cert = tls
            .client_cert
            .as_ref()
            .ok_or("a tunnel needs the proxy's own certificate")?;
        let key = crate::pki::certified_key(cert)?;
        let mut config =
            builder.with_client_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(key)));
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Tunnels {
            outer: tokio_rustls::TlsConnector::from(Arc::new(config)),
            sni: rustls::pki_types::ServerName::try_from(tls.sni.clone())
                .map_err(|e| format!("sni: {e}"))?,
            conns: Default::default(),
        })
    }

    /// The HTTP/2 connection to `gateway`: the open one, else a new one.
    async fn sender(&self, gateway: SocketAddr) -> pingora::Result<SendRequest<Bytes>> {
        let mut conns = self.conns.lock().await;
        if let Some(open) = conns.get(&gateway).cloned() {
            if let Ok(ready) = open.ready().await {
                return Ok(ready);
            }
            conns.remove(&gateway);
        }
        let connecting = async {
            let tcp = TcpStream::connect(gateway).await.or_err(
                ErrorType::ConnectRefused,
                "connecting to the east-west gateway",
            )?;
            let _ = tcp.set_nodelay(true);
            let tls = self
                .outer
                .connect(self.sni.clone(), tcp)
                .await
                .or_err(ErrorType::TLSHandshakeFailure, "east-west gateway TLS")?;
            h2::client::Builder::new()
                .handshake::<_, Bytes>(tls)
                .await
                .or_err(ErrorType::ConnectError, "HTTP/2 to the east-west gateway")
        };
        let (send, conn) = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .or_err(ErrorType::ConnectTimedout, "east-west gateway")??;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%gateway, "tunnel connection ended: {e}");
            }
        });
        conns.insert(gateway, send.clone());
        Ok(send)
    }

    /// A tunnel through `gateway` to `target`.
    pub async fn open(&self, gateway: SocketAddr, target: SocketAddr) -> pingora::Result<H2Stream> {
        let mut send = self.sender(gateway).await?;
        let request = http::Request::builder()
            .method(http::Method::CONNECT)
            .uri(target.to_string())
            .body(())
            .or_err(ErrorType::InternalError, "tunnel request")?;
        let (answer, stream) = send
            .send_request(request, false)
            .or_err(ErrorType::ConnectError, "opening a tunnel")?;
        let answer = tokio::time::timeout(CONNECT_TIMEOUT, answer)
            .await
            .or_err(ErrorType::ConnectTimedout, "tunnel")?
            .or_err(ErrorType::ConnectError, "tunnel answer")?;
        if answer.status() != http::StatusCode::OK {
            return Error::e_explain(
                ErrorType::ConnectRefused,
                format!(
                    "the east-west gateway answered {} for {target}",
                    answer.status()
                ),
            );
        }
        Ok(H2Stream::new(stream, answer.into_body()))
    }
}

/// An endpoint reached through `gateway`: what Pingora connects with.
#[derive(Debug)]
pub struct TunnelPeer {
    pub mesh: Arc<MeshConnector>,
    pub tunnels: Arc<Tunnels>,
    pub gateway: SocketAddr,
}

#[async_trait]
impl pingora::connectors::L4Connect for TunnelPeer {
    async fn connect(&self, addr: &PingoraAddr) -> pingora::Result<L4Stream> {
        let target = *addr
            .as_inet()
            .ok_or_else(|| Error::explain(ErrorType::ConnectError, "not an inet address"))?;
        let stream = self.tunnels.open(self.gateway, target).await?;
        let tls = self.mesh.handshake_over(stream).await?;
        Ok(VirtualSocketStream::new(Box::new(Socket(tls))).into())
    }
}
