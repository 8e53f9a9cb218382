//! Verification keys: a JWKS document parsed into keys, each with the
//! algorithms it may verify. The algorithm comes from the key (its `alg`,
//! else its type and curve), never from a token: an RSA key verifies only
//! RSA signatures, an `oct` (HMAC) key only when the JWKS came with the
//! config, never from a server.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

/// The most keys one JWKS may bring; more are ignored.
const MAX_KEYS: usize = 64;

pub struct Key {
    pub kid: Option<String>,
    pub algorithms: Vec<Algorithm>,
    pub decoding: DecodingKey,
}

/// The usable keys of one JWKS document.
#[derive(Default)]
pub struct KeySet {
    pub keys: Vec<Key>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<_> = self.keys.iter().map(|k| k.kid.as_deref()).collect();
        write!(f, "KeySet{kids:?}")
    }
}

impl KeySet {
    /// Parses a JWKS document. Keys weft cannot use (unknown types, keys
    /// for encryption, HMAC keys from a server) are skipped; a document
    /// that is not a JWKS is an error.
    pub fn parse(text: &[u8], local: bool) -> Result<KeySet, String> {
        let doc: serde_json::Value =
            serde_json::from_slice(text).map_err(|e| format!("JWKS is not JSON: {e}"))?;
        let Some(list) = doc.get("keys").and_then(|k| k.as_array()) else {
            return Err("JWKS has no `keys` array".into());
        };
        let keys = list
            .iter()
            .filter_map(|k| {
                let jwk: Jwk = serde_json::from_value(k.clone()).ok()?;
                key(&jwk, local)
            })
            .take(MAX_KEYS)
            .collect();
        Ok(KeySet { keys })
    }

    /// The keys that may verify a token with this `kid` and `alg`: the key
    /// with that kid, or every key when the token names none.
    pub fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: Algorithm,
    ) -> impl Iterator<Item = &'a Key> + 'a {
        self.keys.iter().filter(move |k| {
            k.algorithms.contains(&alg) && (kid.is_none() || k.kid.as_deref() == kid)
        })
    }

    /// Whether a key has this kid.
    pub fn knows(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }
}

fn key(jwk: &Jwk, local: bool) -> Option<Key> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    use Algorithm::*;
    let family: Vec<Algorithm> = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => vec![RS256, RS384, RS512, PS256, PS384, PS512],
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => vec![ES256],
            EllipticCurve::P384 => vec![ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            vec![EdDSA]
        }
        AlgorithmParameters::OctetKey(_) if local => vec![HS256, HS384, HS512],
        _ => return None,
    };
    let algorithms = match jwk.common.key_algorithm {
        None => family,
        // A named algorithm must fit the key, or the key is not used.
        Some(named) => {
            let alg = algorithm(named)?;
            if !family.contains(&alg) {
                return None;
            }
            vec![alg]
        }
    };
    let decoding = DecodingKey::from_jwk(jwk).ok()?;
    Some(Key {
        kid: jwk.common.key_id.clone(),
        algorithms,
        decoding,
    })
}

fn algorithm(a: KeyAlgorithm) -> Option<Algorithm> {
    use Algorithm as A;
    Some(match a {
        KeyAlgorithm::HS256 => A::HS256,
        KeyAlgorithm::HS384 => A::HS384,
        KeyAlgorithm::HS512 => A::HS512,
        KeyAlgorithm::ES256 => A::ES256,
        KeyAlgorithm::ES384 => A::ES384,
        KeyAlgorithm::RS256 => A::RS256,
        KeyAlgorithm::RS384 => A::RS384,
        KeyAlgorithm::RS512 => A::RS512,
        KeyAlgorithm::PS256 => A::PS256,
        KeyAlgorithm::PS384 => A::PS384,
        KeyAlgorithm::PS512 => A::PS512,
        KeyAlgorithm::EdDSA => A::EdDSA,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RSA: &str = r#"{"kty":"RSA","kid":"r","n":"sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw","e":"AQAB"}"#;
    const OCT: &str = r#"{"kty":"oct","kid":"h","k":"c2VjcmV0"}"#;

    #[test]
    fn the_algorithm_comes_from_the_key() {
        let set = KeySet::parse(format!(r#"{{"keys":[{RSA}]}}"#).as_bytes(), false).unwrap();
        assert_eq!(set.candidates(Some("r"), Algorithm::RS256).count(), 1);
        assert_eq!(set.candidates(Some("r"), Algorithm::PS384).count(), 1);
        // HS256 "signed with the RSA public key" finds no key.
        assert_eq!(set.candidates(Some("r"), Algorithm::HS256).count(), 0);
        assert_eq!(set.candidates(Some("other"), Algorithm::RS256).count(), 0);
        assert_eq!(set.candidates(None, Algorithm::RS256).count(), 1);
    }

    #[test]
    fn a_named_algorithm_narrows_the_key_and_must_fit_it() {
        let rs = RSA.replace(r#""kid":"r""#, r#""kid":"r","alg":"RS384""#);
        let set = KeySet::parse(format!(r#"{{"keys":[{rs}]}}"#).as_bytes(), false).unwrap();
        assert_eq!(set.candidates(None, Algorithm::RS256).count(), 0);
        assert_eq!(set.candidates(None, Algorithm::RS384).count(), 1);
        let wrong = RSA.replace(r#""kid":"r""#, r#""kid":"r","alg":"HS256""#);
        let set = KeySet::parse(format!(r#"{{"keys":[{wrong}]}}"#).as_bytes(), true).unwrap();
        assert!(set.keys.is_empty());
    }

    #[test]
    fn hmac_keys_only_from_the_config() {
        let doc = format!(r#"{{"keys":[{OCT}]}}"#);
        assert!(KeySet::parse(doc.as_bytes(), false)
            .unwrap()
            .keys
            .is_empty());
        let local = KeySet::parse(doc.as_bytes(), true).unwrap();
        assert_eq!(local.candidates(Some("h"), Algorithm::HS256).count(), 1);
    }

    #[test]
    fn documents_that_are_not_a_jwks_are_refused() {
        assert!(KeySet::parse(b"nope", false).is_err());
        assert!(KeySet::parse(b"{}", false).is_err());
        let odd = br#"{"keys":[{"kty":"weird"}]}"#;
        assert!(KeySet::parse(odd, false).unwrap().keys.is_empty());
    }
}
