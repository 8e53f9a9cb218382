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

/// Verifies a server's chain against the trust bundle and its identity
/// against the SPIFFE ID expected of it, instead of a DNS name: what a mesh
/// client checks of the sidecar it calls.
#[derive(Debug)]
pub struct SpiffeServerVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    expected: Vec<String>,
}

impl SpiffeServerVerifier {
    /// `expected`: the SPIFFE IDs allowed to serve; empty allows any the
    /// bundle vouches for.
    pub fn new(roots_pem: &[String], expected: Vec<String>) -> Result<Self, String> {
        let roots = root_store(roots_pem)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let inner =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| e.to_string())?;
        Ok(SpiffeServerVerifier { inner, expected })
    }
}

impl rustls::client::danger::ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        use rustls::{CertificateError, Error};
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            // The chain is good; identity is the SPIFFE ID, not a DNS name.
            Ok(_)
            | Err(Error::InvalidCertificate(CertificateError::NotValidForName))
            | Err(Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. })) => {}
            Err(e) => return Err(e),
        }
        let id = spiffe_id(end_entity)
            .ok_or(Error::InvalidCertificate(CertificateError::BadEncoding))?;
        if self.expected.is_empty() || self.expected.contains(&id) {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(Error::InvalidCertificate(CertificateError::Other(
                rustls::OtherError(Arc::new(UnexpectedIdentity(id))),
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Checks a backend's certificate as a BackendTLSPolicy says: its chain
/// against the policy's roots, and then either the SNI name (no
/// `subjectAltNames`) or any one of the names listed, DNS or URI.
#[derive(Debug)]
pub struct PolicyVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    names: Vec<weft_api::SubjectAltName>,
}

impl PolicyVerifier {
    pub fn new(
        roots: rustls::RootCertStore,
        names: Vec<weft_api::SubjectAltName>,
    ) -> Result<Self, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let inner =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| e.to_string())?;
        Ok(PolicyVerifier { inner, names })
    }
}

/// The URI SANs of a certificate.
fn uri_sans(der: &[u8]) -> Vec<String> {
    use x509_parser::prelude::*;
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return Vec::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(u) => Some(u.to_string()),
            _ => None,
        })
        .collect()
}

impl rustls::client::danger::ServerCertVerifier for PolicyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        use rustls::{CertificateError, Error};
        use weft_api::SubjectAltName;
        let verify = |name: &rustls::pki_types::ServerName<'_>| {
            self.inner
                .verify_server_cert(end_entity, intermediates, name, ocsp, now)
        };
        if self.names.is_empty() {
            return verify(server_name);
        }
        let mut uris = None;
        for name in &self.names {
            match name {
                SubjectAltName::Dns(host) => {
                    let Ok(host) = rustls::pki_types::ServerName::try_from(host.as_str()) else {
                        continue;
                    };
                    if verify(&host).is_ok() {
                        return Ok(rustls::client::danger::ServerCertVerified::assertion());
                    }
                }
                SubjectAltName::Uri(uri) => {
                    match verify(server_name) {
                        Ok(_)
                        | Err(Error::InvalidCertificate(CertificateError::NotValidForName))
                        | Err(Error::InvalidCertificate(
                            CertificateError::NotValidForNameContext { .. },
                        )) => {}
                        Err(e) => return Err(e),
                    }
                    if uris
                        .get_or_insert_with(|| uri_sans(end_entity))
                        .contains(uri)
                    {
                        return Ok(rustls::client::danger::ServerCertVerified::assertion());
                    }
                }
            }
        }
        Err(Error::InvalidCertificate(CertificateError::NotValidForName))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A peer that proved an identity other than the one expected.
#[derive(Debug)]
struct UnexpectedIdentity(String);

impl std::fmt::Display for UnexpectedIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the peer is {}, not an identity expected here", self.0)
    }
}

impl std::error::Error for UnexpectedIdentity {}

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
