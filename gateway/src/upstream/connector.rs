//! TLS originated to a cluster's endpoints: mutual TLS to mesh sidecars,
//! and TLS a BackendTLSPolicy asks for (checked by `verify::ServerVerifier`:
//! natively by Pingora when the SNI name is what is checked, through the
//! custom handshake when the policy lists subjectAltNames).
//!
//! When one identity serves the cluster (the usual case), Pingora's own
//! rustls connector does the handshake: the server must chain to the trust
//! bundle and carry the identity's DNS name (`SpiffeId::dns_name`, which
//! weft's SVIDs have beside their URI), and Pingora pools and reuses the
//! connections. When several identities may answer, the handshake is ours,
//! through Pingora's custom L4 hook, checking the URI SAN against the set;
//! Pingora cannot reuse such connections (it matches pooled connections by
//! socket, and a custom stream has none). Configs are built per snapshot.

use crate::pki::certified_key;
use crate::upstream::verify::ServerVerifier;
use async_trait::async_trait;
use pingora::protocols::l4::socket::SocketAddr as PingoraAddr;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::l4::virt::{VirtualSockOpt, VirtualSocket, VirtualSocketStream};
use pingora::upstreams::peer::HttpPeer;
use pingora::utils::tls::{parse_x509, CertKey, WrappedX509};
use pingora::{Error, ErrorType, OrErr};
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use weft_api::{AppProtocol, UpstreamTls};

/// What Pingora's own connector needs to originate mutual TLS.
struct Native {
    /// The identity's DNS name, sent as SNI and verified as the host name.
    sni: String,
    /// `None`: the system's roots.
    roots: Option<Arc<pingora::protocols::tls::CaType>>,
    cert_key: Option<Arc<CertKey>>,
}

/// The ALPN protocol that asks a sidecar's inbound port to pass the bytes
/// that follow the handshake to its application as they are: a TCP (L4)
/// stream carried over mutual TLS.
pub const MESH_TCP_ALPN: &[u8] = b"weft-tcp";

pub struct MeshConnector {
    native: Option<Native>,
    connector: tokio_rustls::TlsConnector,
    /// For whole connections (TCPRoute, TLSRoute): `MESH_TCP_ALPN` to a
    /// mesh sidecar, no ALPN to a backend a BackendTLSPolicy names.
    l4: tokio_rustls::TlsConnector,
    sni: rustls::pki_types::ServerName<'static>,
    /// Keeps pools apart when identity or trust changes.
    pub group_key: u64,
    /// The identity the upstream must prove, when exactly one is expected.
    pub principal: Option<String>,
    /// The upstream is a mesh proxy (checked by SPIFFE identity), not a
    /// backend a BackendTLSPolicy or an XBackend names.
    pub mesh: bool,
}

impl MeshConnector {
    pub fn new(tls: &UpstreamTls, protocol: AppProtocol) -> Result<Self, String> {
        let verifier: Arc<dyn rustls::client::danger::ServerCertVerifier> = match &tls.policy {
            None => Arc::new(ServerVerifier::spiffe(
                &tls.roots_pem,
                tls.identities.clone(),
            )?),
            Some(p) => {
                let roots = match p.system_roots {
                    true => crate::pki::system_roots()?,
                    false => crate::pki::root_store(&tls.roots_pem)?,
                };
                Arc::new(ServerVerifier::policy(roots, p.subject_alt_names.clone())?)
            }
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match &tls.client_cert {
            Some(cert) => {
                let ck = certified_key(cert)?;
                builder
                    .with_client_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(ck)))
            }
            None => builder.with_no_client_auth(),
        };
        let mut l4 = config.clone();
        l4.alpn_protocols = match &tls.policy {
            None => vec![MESH_TCP_ALPN.to_vec()],
            Some(_) => vec![],
        };
        // What Pingora will speak over the stream decides what we offer.
        config.alpn_protocols = match protocol {
            AppProtocol::H2c => vec![b"h2".to_vec()],
            AppProtocol::Http1 | AppProtocol::WebSocket => vec![b"http/1.1".to_vec()],
        };
        // A wildcard (an external host's) is never sent: each request's
        // own name is (`crate::upstream::external`).
        let sni = tls.sni.strip_prefix("*.").unwrap_or(&tls.sni).to_string();
        let sni = rustls::pki_types::ServerName::try_from(sni).map_err(|e| format!("sni: {e}"))?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (
            &tls.sni,
            &tls.roots_pem,
            &tls.identities,
            tls.client_cert.as_ref().map(|c| &c.cert_chain_pem),
            &tls.policy,
        )
            .hash(&mut h);
        Ok(MeshConnector {
            native: native(tls)?,
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            l4: tokio_rustls::TlsConnector::from(Arc::new(l4)),
            sni,
            group_key: h.finish(),
            mesh: tls.policy.is_none(),
            principal: match tls.identities.as_slice() {
                [one] => Some(one.clone()),
                _ => None,
            },
        })
    }
}

/// The native setup: when exactly one identity is expected (its DNS name
/// is checked), or a policy checks the SNI name itself.
fn native(tls: &UpstreamTls) -> Result<Option<Native>, String> {
    let sni = match (&tls.policy, tls.identities.as_slice()) {
        (Some(p), _) if p.subject_alt_names.is_empty() => tls.sni.clone(),
        (None, [identity]) => match weft_ca::SpiffeId::parse(identity) {
            Ok(id) => id.dns_name(),
            Err(_) => return Ok(None),
        },
        _ => return Ok(None),
    };
    let ders = |pem: &str| -> Result<Vec<Vec<u8>>, String> {
        rustls_pemfile::certs(&mut pem.as_bytes())
            .map(|c| c.map(|c| c.to_vec()).map_err(|e| e.to_string()))
            .collect()
    };
    let mut roots = Vec::new();
    for pem in &tls.roots_pem {
        for der in ders(pem)? {
            roots.push(WrappedX509::new(der, parse_x509));
        }
    }
    let system = tls.policy.as_ref().is_some_and(|p| p.system_roots);
    if roots.is_empty() && !system {
        return Err("no trust bundle".into());
    }
    let cert_key = match &tls.client_cert {
        Some(c) => {
            let chain = ders(&c.cert_chain_pem)?;
            let key = rustls_pemfile::private_key(&mut c.key_pem.as_bytes())
                .map_err(|e| e.to_string())?
                .ok_or("no private key")?;
            if chain.is_empty() {
                return Err("empty client certificate chain".into());
            }
            Some(Arc::new(CertKey::new(chain, key.secret_der().to_vec())))
        }
        None => None,
    };
    Ok(Some(Native {
        sni,
        roots: (!system).then(|| Arc::from(roots)),
        cert_key,
    }))
}

impl MeshConnector {
    /// The peer for `addr`: pooled native TLS, or the custom handshake.
    pub fn peer(self: &Arc<Self>, addr: std::net::SocketAddr) -> HttpPeer {
        let mut peer = match &self.native {
            Some(n) => {
                let mut peer = HttpPeer::new(addr, true, n.sni.clone());
                peer.options.ca = n.roots.clone();
                peer.client_cert_key = n.cert_key.clone();
                peer.options.verify_cert = true;
                peer.options.verify_hostname = true;
                peer
            }
            None => {
                let mut peer = HttpPeer::new(addr, false, String::new());
                peer.options.custom_l4 = Some(self.clone());
                peer
            }
        };
        peer.group_key = self.group_key;
        peer
    }
}

impl std::fmt::Debug for MeshConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshConnector")
            .field("sni", &self.sni)
            .finish()
    }
}

/// A TCP connection to `addr`, with Nagle off: what a custom L4 connector
/// starts from.
pub(crate) async fn connect_tcp(addr: &PingoraAddr) -> pingora::Result<TcpStream> {
    let inet = addr
        .as_inet()
        .ok_or_else(|| Error::explain(ErrorType::ConnectError, "not an inet address"))?;
    let tcp = TcpStream::connect(inet)
        .await
        .or_err(ErrorType::ConnectRefused, "connecting")?;
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

impl MeshConnector {
    /// The TLS handshake over `tcp`, the server checked as the cluster asks.
    pub async fn handshake(&self, tcp: TcpStream) -> pingora::Result<TlsStream<TcpStream>> {
        self.connector
            .connect(self.sni.clone(), tcp)
            .await
            .or_err(ErrorType::TLSHandshakeFailure, "upstream TLS handshake")
    }

    /// The TLS handshake over any stream (a tunnel's), the server checked
    /// as the cluster asks.
    pub async fn handshake_over<S>(&self, stream: S) -> pingora::Result<TlsStream<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        self.connector
            .connect(self.sni.clone(), stream)
            .await
            .or_err(ErrorType::TLSHandshakeFailure, "upstream TLS handshake")
    }

    /// The TLS handshake for a whole connection (L4) over `stream` (TCP,
    /// or a tunnel's).
    pub async fn handshake_l4<S>(&self, stream: S) -> std::io::Result<TlsStream<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        self.l4.connect(self.sni.clone(), stream).await
    }
}

#[async_trait]
impl pingora::connectors::L4Connect for MeshConnector {
    async fn connect(&self, addr: &PingoraAddr) -> pingora::Result<L4Stream> {
        let tls = self.handshake(connect_tcp(addr).await?).await?;
        Ok(VirtualSocketStream::new(Box::new(Socket(tls))).into())
    }
}

/// A stream over TCP handed to Pingora as a virtual socket, its socket
/// options set on the TCP connection beneath.
#[derive(Debug)]
pub struct Socket<S>(pub S);

/// A stream with a TCP connection of its own beneath it, or none (a
/// tunnel's streams share their connection, whose options are not theirs
/// to set).
pub trait OverTcp {
    fn tcp(&self) -> Option<&TcpStream>;
}

impl OverTcp for TcpStream {
    fn tcp(&self) -> Option<&TcpStream> {
        Some(self)
    }
}

impl OverTcp for TlsStream<TcpStream> {
    fn tcp(&self) -> Option<&TcpStream> {
        Some(self.get_ref().0)
    }
}

impl OverTcp for TlsStream<crate::upstream::h2stream::H2Stream> {
    fn tcp(&self) -> Option<&TcpStream> {
        None
    }
}

impl<S> VirtualSocket for Socket<S>
where
    S: OverTcp + AsyncRead + AsyncWrite + Unpin + Send + Sync + std::fmt::Debug,
{
    fn set_socket_option(&self, opt: VirtualSockOpt) -> std::io::Result<()> {
        match (opt, self.0.tcp()) {
            (VirtualSockOpt::NoDelay, Some(tcp)) => tcp.set_nodelay(true),
            _ => Ok(()),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Socket<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Socket<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
