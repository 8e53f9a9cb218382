//! The `jwt` section of a SecurityPolicy to the IR's `Jwt`: its providers,
//! where each one's keys come from (a remote JWKS, an inline document, or a
//! ConfigMap), where the token is looked for, and the claims copied to
//! request headers.

use super::checks;
use crate::policies::{ClaimToHeader, RemoteJwks};
use crate::policies::{ExtractFrom, JwtProviderSpec, JwtSpec, LocalJwks, LocalJwksType, LocalRef};
use crate::resources::{Kind, Object};
use crate::store::Store;
use weft_api::{JwksSource, Jwt, JwtProvider, TokenSource, MAX_PROVIDERS};

/// How long a remote JWKS is kept when the policy does not say.
const DEFAULT_CACHE: &str = "300s";

/// The providers of a policy in namespace `ns`, or the first problem.
pub fn jwt(store: &Store, ns: &str, spec: &JwtSpec) -> Result<Jwt, String> {
    let n = spec.providers.len();
    if n == 0 || n > MAX_PROVIDERS {
        return Err(format!("jwt needs 1 to {MAX_PROVIDERS} providers, not {n}"));
    }
    let mut providers: Vec<JwtProvider> = Vec::new();
    for p in &spec.providers {
        if p.name.is_empty() {
            return Err("a jwt provider has no name".into());
        }
        if providers.iter().any(|q| q.name == p.name) {
            return Err(format!("jwt provider name {:?} is used twice", p.name));
        }
        let provider =
            provider(store, ns, p).map_err(|e| format!("jwt provider {:?}: {e}", p.name))?;
        providers.push(provider);
    }
    Ok(Jwt {
        optional: spec.optional,
        providers,
    })
}

fn provider(store: &Store, ns: &str, p: &JwtProviderSpec) -> Result<JwtProvider, String> {
    let keys = match (&p.remote_jwks, &p.local_jwks) {
        (Some(_), Some(_)) => return Err("remoteJWKS and localJWKS are both set".into()),
        (None, None) => return Err("no keys: set remoteJWKS or localJWKS".into()),
        (Some(remote), None) => self::remote(store, ns, remote)?,
        (None, Some(local)) => self::local(store, ns, local)?,
    };
    Ok(JwtProvider {
        name: p.name.clone(),
        issuer: p.issuer.clone().filter(|i| !i.is_empty()),
        audiences: p.audiences.clone(),
        keys,
        extract_from: token_sources(p.extract_from.as_ref())?,
        claim_to_headers: claim_to_headers(&p.claim_to_headers)?,
        forward_original_token: p.forward_original_token,
        recompute_route: p.recompute_route,
    })
}

fn remote(store: &Store, ns: &str, r: &RemoteJwks) -> Result<JwksSource, String> {
    let host = ["http://", "https://"]
        .iter()
        .find_map(|scheme| r.uri.strip_prefix(scheme));
    if host.is_none_or(str::is_empty) {
        return Err(format!(
            "remoteJWKS uri {:?} must be an http:// or https:// URL",
            r.uri
        ));
    }
    let cache = r.cache_duration.as_deref().unwrap_or(DEFAULT_CACHE);
    let cache = checks::duration(cache).map_err(|e| format!("remoteJWKS cacheDuration {e}"))?;
    let mut roots_pem = Vec::new();
    for c in &r.ca_certificate_refs {
        let pem = config_map(store, ns, c, "ca.crt")
            .map_err(|e| format!("remoteJWKS caCertificateRefs: {e}"))?;
        if !crate::translate::frontend::pem_certificates(&pem) {
            return Err(format!(
                "ConfigMap {} key ca.crt holds no certificate",
                c.name
            ));
        }
        roots_pem.push(pem);
    }
    Ok(JwksSource::Remote {
        uri: r.uri.clone(),
        cache_seconds: checks::ceil_seconds(cache),
        roots_pem,
    })
}

fn local(store: &Store, ns: &str, l: &LocalJwks) -> Result<JwksSource, String> {
    let type_ = match (l.type_, &l.inline, &l.value_ref) {
        (Some(t), _, _) => t,
        (None, Some(_), _) => LocalJwksType::Inline,
        (None, None, Some(_)) => LocalJwksType::ValueRef,
        (None, None, None) => return Err("localJWKS needs inline or valueRef".into()),
    };
    let text = match type_ {
        LocalJwksType::Inline => l
            .inline
            .clone()
            .ok_or("localJWKS of type Inline needs inline")?,
        LocalJwksType::ValueRef => {
            let r = l
                .value_ref
                .as_ref()
                .ok_or("localJWKS of type ValueRef needs valueRef")?;
            config_map(store, ns, r, "jwks").map_err(|e| format!("localJWKS valueRef: {e}"))?
        }
    };
    jwks_document(&text)?;
    Ok(JwksSource::Local(text))
}

/// A JWKS document is JSON with a `keys` array; the proxy reads the keys.
fn jwks_document(text: &str) -> Result<(), String> {
    let doc: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("the JWKS is not JSON: {e}"))?;
    if doc.get("keys").is_some_and(serde_json::Value::is_array) {
        Ok(())
    } else {
        Err("the JWKS has no \"keys\" array".into())
    }
}

/// The text under `key` of the ConfigMap `r` names in `ns`.
pub fn config_map(store: &Store, ns: &str, r: &LocalRef, key: &str) -> Result<String, String> {
    if !r.group.is_empty() || r.kind != "ConfigMap" {
        let group = if r.group.is_empty() { "core" } else { &r.group };
        return Err(format!(
            "{} {} (group {group}) is not a ConfigMap",
            r.kind, r.name
        ));
    }
    match store.lookup(Kind::ConfigMap, ns, &r.name) {
        Some(Object::ConfigMap(cm)) => cm
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .cloned()
            .ok_or_else(|| format!("ConfigMap {} has no key {key}", r.name)),
        _ => Err(format!("ConfigMap {} does not exist", r.name)),
    }
}

/// Headers, then cookies, then query parameters; `Authorization: Bearer`
/// when none is given.
fn token_sources(from: Option<&ExtractFrom>) -> Result<Vec<TokenSource>, String> {
    let mut out = Vec::new();
    if let Some(from) = from {
        for h in &from.headers {
            out.push(TokenSource::Header {
                name: checks::header_name(&h.name).map_err(|e| format!("extractFrom: {e}"))?,
                prefix: h.value_prefix.clone().unwrap_or_default(),
            });
        }
        for c in &from.cookies {
            if c.is_empty() {
                return Err("extractFrom has an empty cookie name".into());
            }
            out.push(TokenSource::Cookie(c.clone()));
        }
        for p in &from.params {
            if p.is_empty() {
                return Err("extractFrom has an empty parameter name".into());
            }
            out.push(TokenSource::Param(p.clone()));
        }
    }
    if out.is_empty() {
        out.push(TokenSource::bearer());
    }
    Ok(out)
}

fn claim_to_headers(list: &[ClaimToHeader]) -> Result<Vec<(String, String)>, String> {
    list.iter()
        .map(|c| {
            let header =
                checks::claim_header(&c.header).map_err(|e| format!("claimToHeaders: {e}"))?;
            if c.claim.is_empty() {
                return Err(format!(
                    "claimToHeaders: header {:?} names no claim",
                    c.header
                ));
            }
            Ok((header, c.claim.clone()))
        })
        .collect()
}
