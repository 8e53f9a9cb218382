//! JWT authentication: finding a request's token where the providers look
//! for it, and checking it with `jsonwebtoken` against the provider's keys.
//!
//! What a token must be: three segments; a header whose `alg` is one the
//! key allows (`none` never is; `jku`, `x5u` and `jwk` are ignored); a good
//! signature; `exp` present and not past, `nbf` not ahead (60 s of skew);
//! `iss` equal to the provider's issuer; `aud` holding one of its
//! audiences; and every registered claim of its JSON type.

use super::cache::TokenCache;
use super::keys::KeySet;
use super::remote::RemoteKeys;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::Value;
use std::sync::Arc;
use weft_api::{JwksSource, JwtProvider, TokenSource};

/// Clock skew allowed on `exp` and `nbf`.
const LEEWAY_SECONDS: u64 = 60;
/// Longer tokens are refused unread.
pub const MAX_TOKEN: usize = 16 * 1024;

/// Where a provider's keys come from, compiled.
pub enum Keys {
    Local(Arc<KeySet>),
    Remote(Arc<RemoteKeys>),
}

pub struct Provider {
    pub config: JwtProvider,
    pub keys: Keys,
    /// Tokens this provider has verified (`super::cache`).
    cache: TokenCache,
}

/// A token that passed: who accepted it, and its claims.
#[derive(Clone, Debug)]
pub struct Verified {
    pub provider: Arc<str>,
    pub claims: Arc<Value>,
}

impl Verified {
    /// The token's subject (`sub`).
    pub fn subject(&self) -> Option<&str> {
        self.claims.get("sub")?.as_str()
    }
}

impl Provider {
    pub fn compile(config: &JwtProvider) -> Result<Provider, String> {
        let keys = match &config.keys {
            JwksSource::Local(text) => Keys::Local(Arc::new(KeySet::parse(text.as_bytes(), true)?)),
            JwksSource::Remote {
                uri,
                cache_seconds,
                roots_pem,
            } => Keys::Remote(RemoteKeys::get(
                uri,
                roots_pem,
                std::time::Duration::from_secs(*cache_seconds),
            )?),
        };
        Ok(Provider {
            config: config.clone(),
            keys,
            cache: TokenCache::default(),
        })
    }

    /// Checks `token`: its claims, or why it is refused.
    pub async fn verify(&self, token: &str) -> Result<Verified, String> {
        if token.len() > MAX_TOKEN {
            return Err("token too long".into());
        }
        let now = jsonwebtoken::get_current_timestamp();
        let current = match &self.keys {
            Keys::Local(k) => Some(k.clone()),
            Keys::Remote(r) => r.current(),
        };
        if let Some(hit) = current.as_ref().and_then(|k| self.cache.get(token, k, now)) {
            return Ok(hit);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| format!("header: {e}"))?;
        let kid = header.kid.as_deref();
        let keys = match &self.keys {
            Keys::Local(k) => Some(k.clone()),
            Keys::Remote(r) => match (r.current(), kid) {
                (Some(k), Some(kid)) if !k.knows(kid) => r.refetch().await.or(Some(k)),
                (None, _) => r.refetch().await,
                (k, _) => k,
            },
        };
        let Some(keys) = keys else {
            return Err("no keys".into());
        };
        let mut last = "no key for the token's kid and alg".to_string();
        for key in keys.candidates(kid, header.alg) {
            match jsonwebtoken::decode::<Value>(token, &key.decoding, &validation(header.alg)) {
                Ok(data) => {
                    self.check_claims(&data.claims)?;
                    let exp = data
                        .claims
                        .get("exp")
                        .and_then(Value::as_f64)
                        .unwrap_or(0.0);
                    let verified = Verified {
                        provider: self.config.name.as_str().into(),
                        claims: Arc::new(data.claims),
                    };
                    let until = (exp.max(0.0) as u64).saturating_add(LEEWAY_SECONDS);
                    self.cache.put(token, &keys, until, &verified, now);
                    return Ok(verified);
                }
                Err(e) => last = e.to_string(),
            }
        }
        Err(last)
    }

    /// What `jsonwebtoken` leaves to us: exact issuer, audiences, and the
    /// JSON types of the registered claims.
    fn check_claims(&self, claims: &Value) -> Result<(), String> {
        if !claims.is_object() {
            return Err("claims are not an object".into());
        }
        let number = |name: &str, required: bool| match claims.get(name) {
            None if !required => Ok(()),
            Some(Value::Number(n)) if n.is_u64() || n.is_f64() => Ok(()),
            _ => Err(format!("claim {name} missing or not a number")),
        };
        number("exp", true)?;
        number("nbf", false)?;
        number("iat", false)?;
        let string = |name: &str| match claims.get(name) {
            None | Some(Value::String(_)) => Ok(()),
            _ => Err(format!("claim {name} is not a string")),
        };
        string("iss")?;
        string("sub")?;
        string("scope")?;
        if let Some(issuer) = &self.config.issuer {
            if claims.get("iss").and_then(Value::as_str) != Some(issuer) {
                return Err("wrong issuer".into());
            }
        }
        let audiences: Vec<&str> = match claims.get("aud") {
            None => vec![],
            Some(Value::String(s)) => vec![s],
            Some(Value::Array(list)) => list
                .iter()
                .map(|v| v.as_str().ok_or("claim aud holds a non-string"))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err("claim aud is not a string or an array".into()),
        };
        let wanted = &self.config.audiences;
        if !wanted.is_empty() && !audiences.iter().any(|a| wanted.iter().any(|w| w == a)) {
            return Err("wrong audience".into());
        }
        Ok(())
    }
}

fn validation(alg: Algorithm) -> Validation {
    let mut v = Validation::new(alg);
    v.leeway = LEEWAY_SECONDS;
    v.validate_exp = true;
    v.validate_nbf = true;
    v.validate_aud = false;
    v.set_required_spec_claims(&["exp"]);
    v
}

/// The tokens a provider's sources find in the request, in its order, each
/// with the source that found it (to take it out before the backend).
/// Borrowed: nothing is copied unless a token is there.
pub fn extract<'a, 's>(
    sources: &'s [TokenSource],
    headers: &'a http::HeaderMap,
    query: Option<&'a str>,
) -> Vec<(&'a str, &'s TokenSource)> {
    let mut out = Vec::new();
    for source in sources {
        match source {
            TokenSource::Header { name, prefix } => {
                for v in headers.get_all(name.as_str()) {
                    let Ok(v) = v.to_str() else { continue };
                    let token = match v.get(..prefix.len()) {
                        Some(p) if p.eq_ignore_ascii_case(prefix) => &v[prefix.len()..],
                        _ => continue,
                    };
                    let token = token.trim();
                    if !token.is_empty() {
                        out.push((token, source));
                    }
                }
            }
            TokenSource::Cookie(name) => {
                for v in headers.get_all(http::header::COOKIE) {
                    let Ok(v) = v.to_str() else { continue };
                    for pair in v.split(';') {
                        if let Some((k, token)) = pair.trim().split_once('=') {
                            if k == name && !token.is_empty() {
                                out.push((token, source));
                            }
                        }
                    }
                }
            }
            TokenSource::Param(name) => {
                for pair in query.unwrap_or_default().split('&') {
                    if let Some((k, token)) = pair.split_once('=') {
                        if k == name && !token.is_empty() {
                            out.push((token, source));
                        }
                    }
                }
            }
        }
    }
    out
}

/// A claim by path (`org.id`: claim `org`, then its member `id`), as a
/// header value: strings as they are, numbers and booleans written out,
/// arrays of those joined with commas; objects and nulls are not written.
pub fn claim_text(claims: &Value, path: &str) -> Option<String> {
    let v = claim(claims, path)?;
    let scalar = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    match v {
        Value::Array(items) => items
            .iter()
            .map(scalar)
            .collect::<Option<Vec<_>>>()
            .map(|v| v.join(",")),
        v => scalar(v),
    }
}

/// A claim by path; a name holding a `.` itself is found too.
pub fn claim<'a>(claims: &'a Value, path: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    path.split('.').try_fold(claims, |v, name| v.get(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_found_where_the_provider_looks() {
        let mut h = http::HeaderMap::new();
        h.insert("authorization", "bearer abc.def.ghi".parse().unwrap());
        h.insert("cookie", "a=1; session=tok.en.x; b=2".parse().unwrap());
        let sources = [
            TokenSource::bearer(),
            TokenSource::Cookie("session".into()),
            TokenSource::Param("access_token".into()),
        ];
        let found = extract(&sources, &h, Some("x=1&access_token=q.r.s"));
        let tokens: Vec<&str> = found.iter().map(|(t, _)| *t).collect();
        assert_eq!(tokens, ["abc.def.ghi", "tok.en.x", "q.r.s"]);
        h.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(extract(&sources[..1], &h, None), vec![]);
    }

    #[test]
    fn claims_become_header_text() {
        let c =
            serde_json::json!({"sub": "alice", "org": {"id": 7}, "groups": ["a", "b"], "o": {}});
        assert_eq!(claim_text(&c, "sub").as_deref(), Some("alice"));
        assert_eq!(claim_text(&c, "org.id").as_deref(), Some("7"));
        assert_eq!(claim_text(&c, "groups").as_deref(), Some("a,b"));
        assert_eq!(claim_text(&c, "o"), None);
        assert_eq!(claim_text(&c, "nope"), None);
    }
}
