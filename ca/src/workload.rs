//! The workload side: a key pair generated locally and the CSR that asks the
//! CA for a certificate; the private key never leaves the workload's proxy.

use crate::{CaError, SpiffeId};
use rcgen::{CertificateParams, KeyPair, SanType, PKCS_ECDSA_P256_SHA256};

/// A fresh key pair and a CSR for it, PEM: (key, csr). With `id`, the CSR
/// names it as its one URI SAN; without, the CA fills in the caller's.
pub fn key_and_csr(id: Option<&SpiffeId>) -> Result<(String, String), CaError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    if let Some(id) = id {
        let uri = id.to_string();
        params.subject_alt_names = vec![SanType::URI(
            uri.clone().try_into().map_err(|_| CaError::SpiffeId(uri))?,
        )];
    }
    let csr = params.serialize_request(&key)?;
    Ok((key.serialize_pem(), csr.pem()?))
}
