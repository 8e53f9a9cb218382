//! Renewal without a new credential: a workload proves it holds its current
//! certificate by signing its new CSR with the current key. The CA checks
//! that the certificate is one it issued and still valid, and renews it for
//! the same identity.

use crate::{Authority, CaError, SpiffeId};
use rcgen::{KeyPair, SigningKey};
use x509_parser::prelude::*;

/// The proof for a renewal: `csr_pem` signed with the current key.
pub fn prove(current_key_pem: &str, csr_pem: &str) -> Result<Vec<u8>, CaError> {
    let key = KeyPair::from_pem(current_key_pem)?;
    Ok(key.sign(csr_pem.as_bytes())?)
}

fn der_of(pem: &str) -> Result<Vec<u8>, CaError> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| CaError::Unauthenticated(format!("current certificate: {e}")))?;
    Ok(pem.contents)
}

impl Authority {
    /// The identity of a caller presenting `chain` (leaf first) and `proof`
    /// for `csr_pem`: the leaf must have been signed by this authority's
    /// intermediate, be valid now, name one SPIFFE ID, and the proof must
    /// verify with its key.
    pub fn holder(
        &self,
        chain: &[String],
        proof: &[u8],
        csr_pem: &str,
    ) -> Result<SpiffeId, CaError> {
        let no = |m: &str| CaError::Unauthenticated(m.to_string());
        let leaf_der = der_of(chain.first().ok_or_else(|| no("no current certificate"))?)?;
        let (_, leaf) = X509Certificate::from_der(&leaf_der)
            .map_err(|_| no("current certificate does not parse"))?;
        let inter_der = der_of(self.intermediate_pem())?;
        let (_, inter) = X509Certificate::from_der(&inter_der).map_err(|_| no("CA state"))?;
        leaf.verify_signature(Some(inter.public_key()))
            .map_err(|_| no("the current certificate was not issued by this CA"))?;
        if !leaf.validity().is_valid() {
            return Err(no("the current certificate has expired"));
        }
        let san = leaf
            .subject_alternative_name()
            .ok()
            .flatten()
            .ok_or_else(|| no("the current certificate has no SAN"))?;
        let uris: Vec<&str> = san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::URI(u) => Some(*u),
                _ => None,
            })
            .collect();
        let [uri] = uris.as_slice() else {
            return Err(no("the current certificate must name exactly one URI"));
        };
        let id = SpiffeId::parse(uri)?;
        let key = ring::signature::UnparsedPublicKey::new(
            &ring::signature::ECDSA_P256_SHA256_ASN1,
            leaf.public_key().subject_public_key.data.as_ref(),
        );
        key.verify(csr_pem.as_bytes(), proof)
            .map_err(|_| no("the proof does not match the current certificate"))?;
        Ok(id)
    }
}
