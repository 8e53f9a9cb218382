//! Downstream TLS: certificates from the snapshot, chosen by SNI through the
//! port's listeners, so a swap of snapshot changes them with no restart.

use crate::snapshot::Snapshot;
use arc_swap::ArcSwapOption;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::sync::Arc;
use weft_api::TlsCertificate;

/// Parses a PEM chain and key into what rustls serves.
pub fn certified_key(tls: &TlsCertificate) -> Result<Arc<CertifiedKey>, String> {
    let certs = rustls_pemfile::certs(&mut tls.cert_chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no certificate".into());
    }
    let key = rustls_pemfile::private_key(&mut tls.key_pem.as_bytes())
        .map_err(|e| e.to_string())?
        .ok_or("no private key")?;
    let signing =
        rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| e.to_string())?;
    let ck = CertifiedKey::new(certs, signing);
    if let Err(e) = ck.keys_match() {
        if !matches!(
            e,
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)
        ) {
            return Err(format!(
                "the private key does not match the certificate: {e}"
            ));
        }
    }
    Ok(Arc::new(ck))
}

/// The system's roots (`wellKnownCACertificates: System`).
pub fn system_roots() -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    let certs =
        rustls_native_certs::load_native_certs().map_err(|e| format!("system roots: {e}"))?;
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err("no system roots".into());
    }
    Ok(roots)
}

/// The roots of a trust bundle, PEM.
pub fn root_store(roots_pem: &[String]) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    for pem in roots_pem {
        for der in rustls_pemfile::certs(&mut pem.as_bytes()) {
            roots
                .add(der.map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(roots)
}

/// Verifies client certificates against `roots_pem` (mutual TLS).
pub fn client_verifier(
    roots_pem: &[String],
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, String> {
    let roots = root_store(roots_pem)?;
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

/// The SPIFFE ID of a certificate: its one `spiffe://` URI SAN.
pub fn spiffe_id(der: &[u8]) -> Option<String> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    let mut uris = san.value.general_names.iter().filter_map(|n| match n {
        GeneralName::URI(u) if u.starts_with("spiffe://") => Some(u.to_string()),
        _ => None,
    });
    match (uris.next(), uris.next()) {
        (Some(uri), None) => Some(uri),
        _ => None,
    }
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
