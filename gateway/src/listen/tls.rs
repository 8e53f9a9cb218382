//! Downstream TLS: certificates from the snapshot, chosen by SNI through the
//! port's listeners, so a swap of snapshot changes them with no restart;
//! and the verifiers of client certificates (mutual TLS).

use crate::config::snapshot::Snapshot;
use arc_swap::ArcSwapOption;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::sync::Arc;

/// Verifies client certificates against `roots_pem` (mutual TLS).
pub fn client_verifier(
    roots_pem: &[String],
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, String> {
    let roots = crate::pki::root_store(roots_pem)?;
    rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| format!("client certificate roots: {e}"))
}

/// Asks for a client certificate and checks it like `inner`, but lets the
/// connection through whatever the outcome (`AllowInsecureFallback`). The
/// listener must then not take the peer's certificate as its identity.
#[derive(Debug)]
pub struct FallbackVerifier(pub Arc<dyn rustls::server::danger::ClientCertVerifier>);

impl rustls::server::danger::ClientCertVerifier for FallbackVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        if let Err(e) = self.0.verify_client_cert(end_entity, intermediates, now) {
            tracing::debug!("client certificate does not verify, accepted anyway: {e}");
        }
        Ok(rustls::server::danger::ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The SPIFFE ID of a mutual-TLS client's verified certificate.
pub fn peer_spiffe_id(conn: &rustls::ServerConnection) -> Option<String> {
    let leaf = conn.peer_certificates()?.first()?;
    weft_ca::tls::spiffe_uri(leaf)
}

/// Resolves the certificate of one port from whatever snapshot is current.
#[derive(Debug)]
pub struct SniResolver {
    pub port: u16,
    pub snapshot: Arc<ArcSwapOption<Snapshot>>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let snapshot = self.snapshot.load();
        let port = snapshot.as_ref()?.ports.get(&self.port)?;
        if port.own_cert {
            return port.listeners.iter().find_map(|l| l.cert.clone());
        }
        let name = hello
            .server_name()
            .map(|n| n.to_ascii_lowercase())
            .unwrap_or_default();
        let listener = port
            .listener(&name)
            .or(if name.is_empty() { Some(0) } else { None })?;
        port.listeners.get(listener)?.cert.clone()
    }
}
