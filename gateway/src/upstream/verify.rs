//! Upstream certificate checks: the chain against a root store, then the
//! name the upstream must prove, which is either a mesh identity (SPIFFE
//! URI SAN, not a DNS name) or what a BackendTLSPolicy lists.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, SignatureScheme};
use std::sync::Arc;
use weft_api::SubjectAltName;

/// What a server's certificate must name, once its chain verifies.
#[derive(Debug)]
enum Expected {
    /// A mesh server: its SPIFFE ID, one of these (any, when empty).
    Spiffe(Vec<String>),
    /// A BackendTLSPolicy: the SNI name when the list is empty, else any
    /// one of the names listed, DNS or URI.
    Policy(Vec<SubjectAltName>),
}

/// Verifies an upstream's certificate (see the module doc).
#[derive(Debug)]
pub struct ServerVerifier {
    inner: Arc<WebPkiServerVerifier>,
    expected: Expected,
}

impl ServerVerifier {
    /// What a mesh client checks of the sidecar it calls: the chain against
    /// the trust bundle, and one of the `expected` SPIFFE IDs (any the
    /// bundle vouches for, when empty).
    pub fn spiffe(roots_pem: &[String], expected: Vec<String>) -> Result<Self, String> {
        Self::new(
            crate::pki::root_store(roots_pem)?,
            Expected::Spiffe(expected),
        )
    }

    /// What a BackendTLSPolicy asks (see `Expected::Policy`).
    pub fn policy(
        roots: rustls::RootCertStore,
        names: Vec<SubjectAltName>,
    ) -> Result<Self, String> {
        Self::new(roots, Expected::Policy(names))
    }

    fn new(roots: rustls::RootCertStore, expected: Expected) -> Result<Self, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(ServerVerifier { inner, expected })
    }
}

/// Whether a check failed for the name alone: the chain itself is good.
fn chain_good(result: Result<ServerCertVerified, Error>) -> Result<(), Error> {
    match result {
        Ok(_)
        | Err(Error::InvalidCertificate(CertificateError::NotValidForName))
        | Err(Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. })) => Ok(()),
        Err(e) => Err(e),
    }
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let verify = |name: &ServerName<'_>| {
            self.inner
                .verify_server_cert(end_entity, intermediates, name, ocsp, now)
        };
        let names = match &self.expected {
            Expected::Spiffe(expected) => {
                chain_good(verify(server_name))?;
                let id = weft_ca::tls::spiffe_uri(end_entity)
                    .ok_or(Error::InvalidCertificate(CertificateError::BadEncoding))?;
                if expected.is_empty() || expected.contains(&id) {
                    return Ok(ServerCertVerified::assertion());
                }
                return Err(Error::InvalidCertificate(CertificateError::Other(
                    rustls::OtherError(Arc::new(UnexpectedIdentity(id))),
                )));
            }
            Expected::Policy(names) if names.is_empty() => return verify(server_name),
            Expected::Policy(names) => names,
        };
        let mut uris = None;
        for name in names {
            match name {
                SubjectAltName::Dns(host) => {
                    let Ok(host) = ServerName::try_from(host.as_str()) else {
                        continue;
                    };
                    if verify(&host).is_ok() {
                        return Ok(ServerCertVerified::assertion());
                    }
                }
                SubjectAltName::Uri(uri) => {
                    chain_good(verify(server_name))?;
                    if uris
                        .get_or_insert_with(|| weft_ca::tls::uri_sans(end_entity))
                        .contains(uri)
                    {
                        return Ok(ServerCertVerified::assertion());
                    }
                }
            }
        }
        Err(Error::InvalidCertificate(CertificateError::NotValidForName))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
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
