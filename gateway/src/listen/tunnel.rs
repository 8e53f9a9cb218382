//! An east-west gateway's tunnel port (`Protocol::EastWest`): mutual TLS
//! with the mesh's roots (a caller from another root fails the handshake),
//! then HTTP/2, each stream a `CONNECT` to one endpoint by address. A
//! stream is answered 200 and joined to a TCP connection to the endpoint
//! only when the endpoint is one of an exported service's (the snapshot's
//! `east_west.targets`; anything else in the cluster, whatever the caller
//! names, is 403) and the Gateway's AuthorizationPolicies allow the
//! caller's identity. What flows is the caller's own TLS session with the
//! endpoint's sidecar: the gateway never sees inside it.

use crate::config::snapshot::Snapshot;
use crate::telemetry::Metrics;
use crate::upstream::balancer::CONNECT_TIMEOUT;
use crate::upstream::h2stream::H2Stream;
use arc_swap::ArcSwapOption;
use bytes::Bytes;
use h2::server::SendResponse;
use http::{Method, Request, Response, StatusCode};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Tunnels open at once on one caller's connection.
const MAX_STREAMS: u32 = 512;

/// The TLS of the tunnel port: the gateway's certificate (from the
/// snapshot, so a rotation needs no rebind), clients verified against
/// `roots_pem`, HTTP/2 only.
pub fn server_config(
    snapshot: Arc<ArcSwapOption<Snapshot>>,
    roots_pem: &[String],
) -> Result<Arc<rustls::ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = crate::listen::tls::client_verifier(roots_pem, provider.clone())?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(OwnCert(snapshot)));
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

#[derive(Debug)]
struct OwnCert(Arc<ArcSwapOption<Snapshot>>);

impl ResolvesServerCert for OwnCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.load().as_ref()?.east_west.as_ref()?.key.clone()
    }
}

/// Serves one accepted connection until the caller closes it.
pub async fn serve(
    tcp: TcpStream,
    acceptor: tokio_rustls::TlsAcceptor,
    snapshot: Arc<ArcSwapOption<Snapshot>>,
    metrics: Arc<Metrics>,
) {
    let client = tcp.peer_addr().ok().map(|a| a.ip());
    let Ok(Ok(tls)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await else {
        return;
    };
    let identity = crate::listen::tls::peer_spiffe_id(tls.get_ref().1);
    // The verifier demands a certificate; one without a SPIFFE ID is no
    // workload.
    let Some(identity) = identity else { return };
    let identity: Arc<str> = identity.into();
    let handshake = h2::server::Builder::new()
        .max_concurrent_streams(MAX_STREAMS)
        .handshake::<_, Bytes>(tls);
    let Ok(Ok(mut conn)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await else {
        return;
    };
    while let Some(accepted) = conn.accept().await {
        let Ok((request, respond)) = accepted else {
            break;
        };
        let (snapshot, metrics, identity) = (snapshot.clone(), metrics.clone(), identity.clone());
        tokio::spawn(async move {
            one(request, respond, &identity, client, snapshot, &metrics).await;
        });
    }
}

fn answer(respond: &mut SendResponse<Bytes>, status: StatusCode) {
    let mut response = Response::new(());
    *response.status_mut() = status;
    let _ = respond.send_response(response, true);
}

/// One tunnel: checked, connected, then bytes both ways until either end
/// closes.
async fn one(
    request: Request<h2::RecvStream>,
    mut respond: SendResponse<Bytes>,
    identity: &str,
    client: Option<IpAddr>,
    snapshot: Arc<ArcSwapOption<Snapshot>>,
    metrics: &Metrics,
) {
    if request.method() != Method::CONNECT {
        return answer(&mut respond, StatusCode::METHOD_NOT_ALLOWED);
    }
    let target: Option<SocketAddr> = request
        .uri()
        .authority()
        .and_then(|a| a.as_str().parse().ok());
    let Some(snap) = snapshot.load_full() else {
        return answer(&mut respond, StatusCode::SERVICE_UNAVAILABLE);
    };
    let Some(ew) = &snap.east_west else {
        return answer(&mut respond, StatusCode::SERVICE_UNAVAILABLE);
    };
    let Some((target, service)) = target.and_then(|t| Some((t, ew.targets.get(&t)?))) else {
        tracing::debug!(%identity, uri = %request.uri(), "tunnel to what is not exported");
        metrics.tunnel(identity, "unknown", "not_exported");
        return answer(&mut respond, StatusCode::FORBIDDEN);
    };
    if let Some(access) = &ew.access {
        match access.check_connection(client, Some(identity), None) {
            Ok(()) => metrics.policy_decision(&access.name, true, "allowed"),
            Err(d) => {
                metrics.policy_decision(&d.policy, false, d.reason);
                metrics.tunnel(identity, service, "denied");
                return answer(&mut respond, StatusCode::FORBIDDEN);
            }
        }
    }
    let connected = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await;
    let Ok(Ok(mut up)) = connected else {
        metrics.tunnel(identity, service, "unreachable");
        return answer(&mut respond, StatusCode::SERVICE_UNAVAILABLE);
    };
    let _ = up.set_nodelay(true);
    let Ok(send) = respond.send_response(Response::new(()), false) else {
        return;
    };
    metrics.tunnel(identity, service, "opened");
    let mut down = H2Stream::new(send, request.into_body());
    if let Err(e) = tokio::io::copy_bidirectional(&mut down, &mut up).await {
        tracing::debug!(%target, "tunnel ended: {e}");
    }
}
