//! The inbound side on real sockets with certificates from the real CA:
//! STRICT refuses plaintext, a missing client certificate and one from
//! another root; a mesh client gets through and the application learns its
//! SPIFFE ID; PERMISSIVE also takes plaintext; a new certificate is served
//! with no restart.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weft_ca::workload::Svid;

mod support;
use support::svid;
use weft_api::{InboundPort, MtlsMode};
use weft_ca::Authority;
use weft_gateway::ServerVerifier;
use weft_sidecar::inbound::{self, Spec};

/// An application that answers with the x-forwarded-client-cert it got.
async fn app(ip: &str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind(format!("{ip}:0"))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let router = axum::Router::new().fallback(|headers: axum::http::HeaderMap| async move {
        headers
            .get("x-forwarded-client-cert")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_else(|| "none".into())
    });
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

fn ders(pem: &str) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap()
}

/// One GET over mutual TLS as `client`, trusting `roots` and expecting the
/// server to be `server_id`; the response body, or the error.
async fn mtls_get(
    addr: SocketAddr,
    client: Option<&Svid>,
    roots: &[String],
    server_id: &str,
) -> Result<String, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let verifier = ServerVerifier::spiffe(roots, vec![server_id.to_string()]).unwrap();
    let builder = rustls::ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let config = match client {
        Some(c) => {
            let chain: Vec<_> = c.chain.iter().flat_map(|p| ders(p)).collect();
            let key = rustls_pemfile::private_key(&mut c.key_pem.as_bytes())
                .unwrap()
                .unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from("backend.shop.svc.cluster.local").unwrap();
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    plain_exchange(&mut tls).await
}

async fn plain_exchange<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    s: &mut S,
) -> Result<String, String> {
    s.write_all(b"GET / HTTP/1.1\r\nHost: backend\r\nx-forwarded-client-cert: URI=spiffe://forged\r\nConnection: close\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or(format!("no response: {text:?}"))?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(head.to_string());
    }
    Ok(body.to_string())
}

async fn start(
    ip: &str,
    port: u16,
    mode: MtlsMode,
    server: Svid,
) -> ((Arc<weft_gateway::Gateway>, Spec), SocketAddr) {
    let listen: SocketAddr = format!("{ip}:{port}").parse().unwrap();
    let spec = Spec {
        ports: vec![InboundPort {
            listen,
            app: app(ip).await,
            protocol: Default::default(),
            access: None,
        }],
        mode,
        access_log: false,
        trust_bundle: vec![],
        cluster: String::new(),
    };
    let gw = weft_gateway::Gateway::new();
    gw.apply("1".into(), inbound::config(&spec, &server))
        .await
        .unwrap();
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(listen).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    ((gw, spec), listen)
}

const BACKEND: &str = "spiffe://cluster.local/ns/shop/sa/backend";

#[tokio::test]
async fn strict_inbound_takes_only_mesh_clients_and_tells_the_app_who_called() {
    let dir = tempfile::tempdir().unwrap();
    let ca =
        Authority::load_or_create(dir.path(), "cluster.local", Duration::from_secs(3600)).unwrap();
    let (tx, addr) = start(
        "127.0.81.1",
        15006,
        MtlsMode::Strict,
        svid(&ca, "shop", "backend"),
    )
    .await;
    let frontend = svid(&ca, "shop", "frontend");

    let body = mtls_get(addr, Some(&frontend), &ca.trust_bundle(), BACKEND)
        .await
        .unwrap();
    assert_eq!(
        body, "URI=spiffe://cluster.local/ns/shop/sa/frontend",
        "the forged XFCC is replaced"
    );

    // Plaintext is refused.
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert!(plain_exchange(&mut tcp).await.is_err());
    // No client certificate: refused.
    assert!(mtls_get(addr, None, &ca.trust_bundle(), BACKEND)
        .await
        .is_err());
    // A certificate from another root: refused.
    let other_dir = tempfile::tempdir().unwrap();
    let other =
        Authority::load_or_create(other_dir.path(), "cluster.local", Duration::from_secs(3600))
            .unwrap();
    let stranger = svid(&other, "shop", "frontend");
    assert!(mtls_get(addr, Some(&stranger), &ca.trust_bundle(), BACKEND)
        .await
        .is_err());
    // The client refuses a server that is not the identity it expects.
    let err = mtls_get(
        addr,
        Some(&frontend),
        &ca.trust_bundle(),
        "spiffe://cluster.local/ns/shop/sa/payments",
    )
    .await;
    assert!(err.is_err());

    // A new certificate is served with no restart.
    let renewed = svid(&ca, "shop", "backend");
    let renewed_leaf = ders(&renewed.chain[0]).remove(0);
    let (gw, spec) = tx;
    gw.apply("2".into(), inbound::config(&spec, &renewed))
        .await
        .unwrap();
    let mut served = None;
    for _ in 0..100 {
        let verifier = Arc::new(ServerVerifier::spiffe(&ca.trust_bundle(), vec![]).unwrap());
        let config = rustls::ClientConfig::builder()
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let chain: Vec<_> = frontend.chain.iter().flat_map(|p| ders(p)).collect();
        let key = rustls_pemfile::private_key(&mut frontend.key_pem.as_bytes())
            .unwrap()
            .unwrap();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(
            config.with_client_auth_cert(chain, key).unwrap(),
        ));
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let tls = connector
            .connect("backend".try_into().unwrap(), tcp)
            .await
            .unwrap();
        served = tls.get_ref().1.peer_certificates().map(|c| c[0].clone());
        if served.as_ref() == Some(&renewed_leaf) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(served, Some(renewed_leaf));
}

#[tokio::test]
async fn permissive_inbound_also_takes_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let ca =
        Authority::load_or_create(dir.path(), "cluster.local", Duration::from_secs(3600)).unwrap();
    let (_tx, addr) = start(
        "127.0.82.1",
        15006,
        MtlsMode::Permissive,
        svid(&ca, "shop", "backend"),
    )
    .await;
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert_eq!(
        plain_exchange(&mut tcp).await.unwrap(),
        "none",
        "plaintext callers have no identity"
    );
    let frontend = svid(&ca, "shop", "frontend");
    let body = mtls_get(addr, Some(&frontend), &ca.trust_bundle(), BACKEND)
        .await
        .unwrap();
    assert_eq!(body, "URI=spiffe://cluster.local/ns/shop/sa/frontend");
}
