//! TLS between proxies and the control plane (the config server and the
//! CA's signing service), with workload identities on both ends.
//!
//! Each end presents the newest certificate of its identity manager, so a
//! rotation needs no restart. A client checks the server as the control
//! plane's identity (`SpiffeId::control_plane`, by the DNS name every SVID
//! carries beside its URI); a server that asks for client certificates
//! reads the caller's SPIFFE ID off the chain it verified and hands it to
//! the request as a `Peer` (tonic request extensions).

use crate::workload::{Svid, Svids};
use crate::{CaError, SpiffeId};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::sign::CertifiedKey;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;
use tonic::transport::{Channel, Endpoint};

/// How long a client has to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes under way at once; a flood waits its turn and times out.
const MAX_HANDSHAKES: usize = 256;

/// Who is on the other end of a connection the server accepted.
#[derive(Clone, Debug)]
pub struct Peer {
    /// The SPIFFE ID of the client's verified certificate.
    pub identity: Option<SpiffeId>,
    pub remote: Option<SocketAddr>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_error(e: impl std::fmt::Display) -> CaError {
    CaError::Tls(e.to_string())
}

/// The roots of a trust bundle (PEM).
fn roots(bundle: &[String]) -> Result<rustls::RootCertStore, CaError> {
    let mut store = rustls::RootCertStore::empty();
    for pem in bundle {
        for der in rustls_pemfile::certs(&mut pem.as_bytes()) {
            store.add(der.map_err(tls_error)?).map_err(tls_error)?;
        }
    }
    if store.is_empty() {
        return Err(CaError::Tls("an empty trust bundle".into()));
    }
    Ok(store)
}

/// The newest certificate of an identity manager, as rustls presents it
/// (parsed once per certificate).
#[derive(Debug)]
struct Presenting {
    svids: Svids,
    cache: Mutex<Option<(Arc<Svid>, Arc<CertifiedKey>)>>,
}

impl Presenting {
    fn current(&self) -> Option<Arc<CertifiedKey>> {
        let svid = self.svids.borrow().clone()?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((cached, key)) = cache.as_ref() {
            if Arc::ptr_eq(cached, &svid) {
                return Some(key.clone());
            }
        }
        let key = Arc::new(certified_key(&svid).ok()?);
        *cache = Some((svid, key.clone()));
        Some(key)
    }
}

fn certified_key(svid: &Svid) -> Result<CertifiedKey, CaError> {
    let chain: Vec<CertificateDer<'static>> = svid
        .chain
        .iter()
        .flat_map(|pem| rustls_pemfile::certs(&mut pem.as_bytes()).collect::<Vec<_>>())
        .collect::<Result<_, _>>()
        .map_err(tls_error)?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut svid.key_pem.as_bytes())
        .map_err(tls_error)?
        .ok_or_else(|| CaError::Tls("no private key".into()))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key).map_err(tls_error)?;
    Ok(CertifiedKey::new(chain, signing))
}

impl rustls::server::ResolvesServerCert for Presenting {
    fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current()
    }
}

impl rustls::client::ResolvesClientCert for Presenting {
    fn resolve(&self, _: &[&[u8]], _: &[rustls::SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.current()
    }

    fn has_certs(&self) -> bool {
        self.svids.borrow().is_some()
    }
}

fn presenting(svids: Svids) -> Arc<Presenting> {
    Arc::new(Presenting {
        svids,
        cache: Mutex::new(None),
    })
}

/// A server presenting `svids`' newest certificate; with `client_roots`,
/// clients must present a certificate chaining to them (mutual TLS).
pub fn server_config(
    svids: Svids,
    client_roots: Option<&[String]>,
) -> Result<Arc<rustls::ServerConfig>, CaError> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_error)?;
    let builder = match client_roots {
        Some(bundle) => builder.with_client_cert_verifier(
            rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots(bundle)?),
                provider(),
            )
            .build()
            .map_err(tls_error)?,
        ),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(presenting(svids));
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// A client trusting `bundle` for the server, and presenting `svids`'
/// newest certificate when given.
pub fn client_config(
    svids: Option<Svids>,
    bundle: &[String],
) -> Result<Arc<rustls::ClientConfig>, CaError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_error)?
        .with_root_certificates(roots(bundle)?);
    let mut config = match svids {
        Some(svids) => builder.with_client_cert_resolver(presenting(svids)),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// How often an idle channel pings its server, and how long it waits for
/// the answer: a server gone silent (a peer cut off, not just closed) is
/// noticed within twice this.
const KEEPALIVE: Duration = Duration::from_secs(5);

/// A gRPC channel to `addr` (`host:port`) over TLS with `config`, the
/// server checked as `server`. It connects on first use and again after
/// a failure, and pings while idle (`KEEPALIVE`).
pub fn channel(
    addr: &str,
    server: &SpiffeId,
    config: Arc<rustls::ClientConfig>,
) -> Result<Channel, CaError> {
    let name = ServerName::try_from(server.dns_name()).map_err(tls_error)?;
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(tls_error)?
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(KEEPALIVE)
        .keep_alive_timeout(KEEPALIVE)
        .keep_alive_while_idle(true);
    let addr = addr.to_string();
    let connector = tower::service_fn(move |_: http::Uri| {
        let (addr, name) = (addr.clone(), name.clone());
        let connector = tokio_rustls::TlsConnector::from(config.clone());
        async move {
            let tcp = TcpStream::connect(&addr).await?;
            let _ = tcp.set_nodelay(true);
            let tls = connector.connect(name, tcp).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
        }
    });
    Ok(endpoint.connect_with_connector_lazy(connector))
}

/// A connection the server accepted, TLS done.
pub struct TlsConn {
    inner: tokio_rustls::server::TlsStream<TcpStream>,
    peer: Peer,
}

impl Connected for TlsConn {
    type ConnectInfo = Peer;

    fn connect_info(&self) -> Peer {
        self.peer.clone()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
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

/// The connections `listener` accepts, TLS done with `config`: what a
/// tonic server serves. A failed or slow handshake is dropped alone.
pub fn incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
) -> ReceiverStream<Result<TlsConn, std::io::Error>> {
    let (tx, rx) = mpsc::channel(64);
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    tokio::spawn(async move {
        loop {
            let (tcp, remote) = match listener.accept().await {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = handshakes.clone().acquire_owned().await else {
                return;
            };
            let (acceptor, conns) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let _permit = permit;
                let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
                {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(%remote, "control-plane TLS handshake failed: {e}");
                        return;
                    }
                    Err(_) => return,
                };
                let identity = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(|der| spiffe_id_of(der));
                let peer = Peer {
                    identity,
                    remote: Some(remote),
                };
                let _ = conns.send(Ok(TlsConn { inner: tls, peer })).await;
            });
            if tx.is_closed() {
                return;
            }
        }
    });
    ReceiverStream::new(rx)
}

/// The URI SANs of a certificate (DER), handed to `f`; `None` when it
/// does not parse or has no SAN extension.
fn with_uris<R>(der: &[u8], f: impl FnOnce(&mut dyn Iterator<Item = &str>) -> R) -> Option<R> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    let mut uris = san.value.general_names.iter().filter_map(|n| match n {
        GeneralName::URI(u) => Some(*u),
        _ => None,
    });
    Some(f(&mut uris))
}

/// Every URI SAN of a certificate (DER).
pub fn uri_sans(der: &[u8]) -> Vec<String> {
    with_uris(der, |uris| uris.map(str::to_string).collect()).unwrap_or_default()
}

/// The SPIFFE ID a certificate names, as written: its one `spiffe://` URI
/// SAN (none when it has two).
pub fn spiffe_uri(der: &[u8]) -> Option<String> {
    with_uris(der, |uris| {
        let mut spiffe = uris.filter(|u| u.starts_with("spiffe://"));
        match (spiffe.next(), spiffe.next()) {
            (Some(uri), None) => Some(uri.to_string()),
            _ => None,
        }
    })?
}

/// The SPIFFE ID a certificate names (`spiffe_uri`), when it is a
/// workload identity.
pub fn spiffe_id_of(der: &[u8]) -> Option<SpiffeId> {
    SpiffeId::parse(&spiffe_uri(der)?).ok()
}
