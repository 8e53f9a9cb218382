//! What an allowed request carries on: the accepted token's claims as
//! headers (`claimToHeaders`), every copy the client sent of those headers
//! removed first, whatever the token; and the token itself taken out of
//! where it was found, unless the provider forwards it.

use super::jwt::claim_text;
use super::{Allowed, CompiledAccess};
use pingora::http::RequestHeader;
use weft_api::TokenSource;

/// Rewrites `req` for the backend. Returns whether the route is to be
/// chosen again (the accepting provider's `recomputeRoute`).
pub fn apply(
    access: &CompiledAccess,
    allowed: &Allowed<'_>,
    req: &mut RequestHeader,
) -> pingora::Result<bool> {
    for p in access.providers() {
        for (header, _) in &p.config.claim_to_headers {
            req.remove_header(header.as_str());
        }
    }
    let Some((i, verified, found)) = &allowed.jwt else {
        return Ok(false);
    };
    let Some(provider) = access.providers().get(*i) else {
        return Ok(false);
    };
    for (header, path) in &provider.config.claim_to_headers {
        let Some(text) = claim_text(&verified.claims, path) else {
            continue;
        };
        // A claim that is no header value (a newline in it) is left out.
        if let Ok(value) = http::HeaderValue::from_str(&text) {
            req.insert_header(header.clone(), value)?;
        }
    }
    if !provider.config.forward_original_token {
        remove(found, req)?;
    }
    Ok(provider.config.recompute_route)
}

fn remove(found: &TokenSource, req: &mut RequestHeader) -> pingora::Result<()> {
    match found {
        TokenSource::Header { name, .. } => {
            req.remove_header(name.as_str());
        }
        TokenSource::Cookie(name) => {
            let kept: Vec<String> = req
                .headers
                .get_all(http::header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .map(str::trim)
                .filter(|pair| {
                    !pair.is_empty() && pair.split_once('=').is_none_or(|(k, _)| k != name)
                })
                .map(str::to_string)
                .collect();
            req.remove_header(&http::header::COOKIE);
            if !kept.is_empty() {
                req.insert_header(http::header::COOKIE, kept.join("; "))?;
            }
        }
        TokenSource::Param(name) => {
            let Some(query) = req.uri.query() else {
                return Ok(());
            };
            let kept: Vec<&str> = query
                .split('&')
                .filter(|pair| pair.split_once('=').map_or(*pair, |(k, _)| k) != name)
                .collect();
            let path = req.uri.path();
            let target = if kept.is_empty() {
                path.to_string()
            } else {
                format!("{path}?{}", kept.join("&"))
            };
            let mut parts = req.uri.clone().into_parts();
            parts.path_and_query = Some(target.parse().map_err(|e| {
                pingora::Error::because(pingora::ErrorType::InternalError, "query without token", e)
            })?);
            let uri = http::Uri::from_parts(parts).map_err(|e| {
                pingora::Error::because(pingora::ErrorType::InternalError, "query without token", e)
            })?;
            req.set_uri(uri);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_leave_their_cookie_and_parameter() {
        let mut req = RequestHeader::build("GET", b"/a?x=1&access_token=t.o.k&y=2", None).unwrap();
        req.insert_header("cookie", "a=1; session=t.o.k; b=2")
            .unwrap();
        remove(&TokenSource::Cookie("session".into()), &mut req).unwrap();
        assert_eq!(req.headers["cookie"], "a=1; b=2");
        remove(&TokenSource::Param("access_token".into()), &mut req).unwrap();
        assert_eq!(req.uri.to_string(), "/a?x=1&y=2");
        let mut only = RequestHeader::build("GET", b"/a?access_token=t", None).unwrap();
        only.insert_header("cookie", "session=t").unwrap();
        remove(&TokenSource::Param("access_token".into()), &mut only).unwrap();
        remove(&TokenSource::Cookie("session".into()), &mut only).unwrap();
        assert_eq!(only.uri.to_string(), "/a");
        assert!(only.headers.get("cookie").is_none());
    }
}
