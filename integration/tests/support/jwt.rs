//! A test issuer: keys of every algorithm (made by `weft jwt`'s own code),
//! tokens signed with them or forged, and JWKS servers on loopback that
//! count their fetches and rotate their keys.

#[path = "../../../cli/src/jwt.rs"]
#[allow(dead_code)]
mod tool;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use serde_json::{json, Map, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
pub use tool::Signer;

pub const ISSUER: &str = "https://idp.test";
pub const AUDIENCE: &str = "api.test";

/// A signer for `alg` (`HS*`: a shared secret) with key id `kid`.
pub fn signer(alg: &str, kid: &str) -> Signer {
    let algorithm = tool::algorithm(alg).unwrap();
    let key = if alg.starts_with("HS") {
        format!("secret-of-{kid}-that-is-long-enough-for-{alg}")
    } else {
        tool::keygen(algorithm).unwrap()
    };
    Signer::from_pem(&key, algorithm, kid).unwrap()
}

/// Claims a provider with `ISSUER` and `AUDIENCE` accepts, for `sub`.
pub fn claims(sub: &str) -> Map<String, Value> {
    let Value::Object(m) = json!({"iss": ISSUER, "aud": AUDIENCE, "sub": sub}) else {
        unreachable!()
    };
    m
}

/// A good token for `sub` with `extra` claims.
pub fn token(s: &Signer, sub: &str, extra: Value) -> String {
    let mut c = claims(sub);
    if let Value::Object(extra) = extra {
        c.extend(extra);
    }
    s.token(c, 3600).unwrap()
}

/// A JWKS document of these keys.
pub fn jwks(keys: &[&Signer]) -> String {
    serde_json::to_string(&JwkSet {
        keys: keys.iter().map(|s| s.jwk.clone()).collect(),
    })
    .unwrap()
}

pub fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// A token put together by hand: header and claims as given, `signature`
/// as given (already base64url).
pub fn forged(header: Value, claims: Value, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

/// A JWKS server on `ip`: `GET /jwks.json` answers the keys set now.
pub struct JwksServer {
    pub addr: SocketAddr,
    keys: Arc<Mutex<Vec<Jwk>>>,
    fetches: Arc<AtomicUsize>,
}

impl JwksServer {
    pub async fn start(ip: &str, keys: &[&Signer]) -> JwksServer {
        let listener = tokio::net::TcpListener::bind(format!("{ip}:0"))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let server = JwksServer {
            addr,
            keys: Arc::new(Mutex::new(Vec::new())),
            fetches: Arc::default(),
        };
        server.set(keys);
        let (keys, fetches) = (server.keys.clone(), server.fetches.clone());
        let app = axum::Router::new().route(
            "/jwks.json",
            axum::routing::get(move || {
                let (keys, fetches) = (keys.clone(), fetches.clone());
                async move {
                    fetches.fetch_add(1, Ordering::SeqCst);
                    let set = JwkSet {
                        keys: keys.lock().unwrap().clone(),
                    };
                    serde_json::to_string(&set).unwrap()
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        server
    }

    pub fn uri(&self) -> String {
        format!("http://{}/jwks.json", self.addr)
    }

    /// Replaces the keys served.
    pub fn set(&self, keys: &[&Signer]) {
        *self.keys.lock().unwrap() = keys.iter().map(|s| s.jwk.clone()).collect();
    }

    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}
