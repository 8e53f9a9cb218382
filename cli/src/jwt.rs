//! `weft jwt`: a small token issuer for demos and tests, so JWT examples
//! work offline. It makes keys (`keygen`), prints the public JWKS of a key
//! (`jwks`), signs tokens (`token`), and serves the JWKS and a token
//! endpoint over HTTP (`serve`). Not an identity provider: anyone who can
//! reach `serve` gets tokens. It uses nothing else of the binary, so the
//! integration tests include it to make their keys and tokens (and test it
//! there: `jwt_tokens` signs with every algorithm it knows).

use anyhow::{anyhow, bail, Context};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Map, Value};
use std::net::SocketAddr;
use std::str::FromStr;

/// A private key (PKCS#8 PEM) for `alg`.
pub fn keygen(alg: Algorithm) -> anyhow::Result<String> {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature as sig;
    let der: Vec<u8> = match alg {
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => {
            let k = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .map_err(|_| anyhow!("RSA key generation failed"))?;
            k.as_der()
                .map_err(|_| anyhow!("RSA key encoding failed"))?
                .as_ref()
                .to_vec()
        }
        Algorithm::ES256 | Algorithm::ES384 => {
            let curve = if alg == Algorithm::ES256 {
                &sig::ECDSA_P256_SHA256_FIXED_SIGNING
            } else {
                &sig::ECDSA_P384_SHA384_FIXED_SIGNING
            };
            let k = sig::EcdsaKeyPair::generate(curve)
                .map_err(|_| anyhow!("EC key generation failed"))?;
            k.to_pkcs8v1()
                .map_err(|_| anyhow!("EC key encoding failed"))?
                .as_ref()
                .to_vec()
        }
        Algorithm::EdDSA => {
            let k = sig::Ed25519KeyPair::generate()
                .map_err(|_| anyhow!("Ed25519 key generation failed"))?;
            k.to_pkcs8v1()
                .map_err(|_| anyhow!("Ed25519 key encoding failed"))?
                .as_ref()
                .to_vec()
        }
        other => bail!("{other:?} uses a shared secret, not a key pair"),
    };
    Ok(pem("PRIVATE KEY", &der))
}

fn pem(label: &str, der: &[u8]) -> String {
    pem::encode(&pem::Pem::new(label, der.to_vec()))
}

/// A signing key and the JWK of its public half.
pub struct Signer {
    pub alg: Algorithm,
    pub kid: String,
    key: EncodingKey,
    pub jwk: Jwk,
}

impl Signer {
    pub fn from_pem(pem: &str, alg: Algorithm, kid: &str) -> anyhow::Result<Signer> {
        let bytes = pem.as_bytes();
        let key = match alg {
            Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(bytes),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(bytes),
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                EncodingKey::from_secret(pem.trim().as_bytes())
            }
            _ => EncodingKey::from_rsa_pem(bytes),
        }
        .context("the key does not fit the algorithm")?;
        let mut jwk = Jwk::from_encoding_key(&key, alg).context("public key")?;
        jwk.common.key_id = Some(kid.to_string());
        Ok(Signer {
            alg,
            kid: kid.to_string(),
            key,
            jwk,
        })
    }

    /// The JWKS holding this key's public half.
    pub fn jwks(&self) -> String {
        serde_json::to_string_pretty(&JwkSet {
            keys: vec![self.jwk.clone()],
        })
        .expect("a JWKS serializes")
    }

    /// A token with `claims`, `iat` and `exp` (now + `ttl` seconds) added.
    pub fn token(&self, mut claims: Map<String, Value>, ttl: u64) -> anyhow::Result<String> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs();
        claims.entry("iat").or_insert(json!(now));
        claims.entry("exp").or_insert(json!(now + ttl));
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        self.sign_with(&header, &Value::Object(claims))
    }

    /// A token with exactly this header and these claims, signed.
    pub fn sign_with(&self, header: &Header, claims: &Value) -> anyhow::Result<String> {
        Ok(jsonwebtoken::encode(header, claims, &self.key)?)
    }
}

/// `name=value` claims: a value that is JSON (`["a","b"]`, `42`) is taken
/// as such, anything else as a string.
pub fn claims(pairs: &[String]) -> anyhow::Result<Map<String, Value>> {
    let mut out = Map::new();
    for p in pairs {
        let (name, value) = p
            .split_once('=')
            .ok_or_else(|| anyhow!("claim {p:?} is not name=value"))?;
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.into()));
        out.insert(name.to_string(), value);
    }
    Ok(out)
}

pub fn algorithm(s: &str) -> anyhow::Result<Algorithm> {
    Algorithm::from_str(s).map_err(|_| anyhow!("unknown algorithm {s}"))
}

/// Serves `GET /jwks.json` and `GET /token?sub=..&<claim>=..` (each query
/// parameter a claim, as `claims` reads them; `ttl` in seconds) until
/// `stop` completes.
pub async fn serve(
    listen: SocketAddr,
    signer: Signer,
    issuer: String,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    use axum::extract::Query;
    use axum::routing::get;
    let signer = std::sync::Arc::new(signer);
    let jwks = signer.jwks();
    let minting = signer.clone();
    let app = axum::Router::new()
        .route(
            "/jwks.json",
            get(move || {
                let jwks = jwks.clone();
                async move { ([("content-type", "application/json")], jwks) }
            }),
        )
        .route(
            "/token",
            get(move |Query(q): Query<Vec<(String, String)>>| {
                let signer = minting.clone();
                let issuer = issuer.clone();
                async move {
                    let ttl = q
                        .iter()
                        .find(|(k, _)| k == "ttl")
                        .and_then(|(_, v)| v.parse().ok())
                        .unwrap_or(3600);
                    let pairs: Vec<String> = q
                        .iter()
                        .filter(|(k, _)| k != "ttl")
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    let mut c = claims(&pairs)
                        .map_err(|e| (axum::http::StatusCode::BAD_REQUEST, e.to_string()))?;
                    c.entry("iss").or_insert(json!(issuer));
                    signer
                        .token(c, ttl)
                        .map_err(|e| (axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind(listen).await?;
    eprintln!("JWT issuer listening on {}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await?;
    Ok(())
}
