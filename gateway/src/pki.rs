//! Certificates as rustls takes them: PEM chains and keys parsed, trust
//! bundles turned into root stores (a certificate's SANs are read by
//! `weft_ca::tls`). A leaf: the listeners, the snapshot and the upstream
//! connectors all use it.

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
