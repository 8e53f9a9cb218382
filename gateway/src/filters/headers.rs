//! The HTTPRoute filters applied on the request path: header modifiers,
//! redirects and URL rewrites.

use pingora::http::{RequestHeader, ResponseHeader};
use weft_api::{HeaderModifier, PathModifier, Redirect};

pub fn modify_request(m: &HeaderModifier, req: &mut RequestHeader) {
    for (name, value) in &m.set {
        let _ = req.insert_header(name.clone(), value.as_str());
    }
    for (name, value) in &m.add {
        let _ = req.append_header(name.clone(), value.as_str());
    }
    for name in &m.remove {
        req.remove_header(name.as_str());
    }
}

pub fn modify_response(m: &HeaderModifier, resp: &mut ResponseHeader) {
    for (name, value) in &m.set {
        let _ = resp.insert_header(name.clone(), value.as_str());
    }
    for (name, value) in &m.add {
        let _ = resp.append_header(name.clone(), value.as_str());
    }
    for name in &m.remove {
        resp.remove_header(name.as_str());
    }
}

/// `/foo` matches `/foo`, `/foo/` and `/foo/bar`, not `/foobar`.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    prefix.is_empty()
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The path after a path modifier. `prefix` is the rule's PathPrefix match,
/// for `ReplacePrefixMatch`.
pub fn rewrite_path(m: &PathModifier, path: &str, prefix: Option<&str>) -> String {
    match m {
        PathModifier::ReplaceFullPath(p) => p.clone(),
        PathModifier::ReplacePrefixMatch(replacement) => {
            let prefix = prefix.unwrap_or("");
            let rest = if prefix_matches(prefix, path) {
                &path[prefix.len()..]
            } else {
                path
            };
            let replacement = replacement.trim_end_matches('/');
            match (replacement.is_empty(), rest.is_empty()) {
                (true, true) => "/".to_string(),
                (true, false) => rest.to_string(),
                (false, _) => format!("{replacement}{rest}"),
            }
        }
    }
}

/// What a redirect needs to know of the request.
pub struct RequestParts<'a> {
    pub scheme: &'a str,
    pub host: &'a str,
    pub listener_port: u16,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub prefix: Option<&'a str>,
}

/// The `Location` of a redirect. The port, when not given, is the well-known
/// port of a new scheme, else the listener's; well-known ports are omitted.
pub fn location(r: &Redirect, req: &RequestParts<'_>) -> String {
    let scheme = r.scheme.as_deref().unwrap_or(req.scheme);
    let host = r.hostname.as_deref().unwrap_or(req.host);
    let port = match (r.port, &r.scheme) {
        (Some(p), _) => p,
        (None, Some(s)) => well_known(s),
        (None, None) => req.listener_port,
    };
    let path = match &r.path {
        Some(m) => rewrite_path(m, req.path, req.prefix),
        None => req.path.to_string(),
    };
    let mut out = format!("{scheme}://{host}");
    if port != well_known(scheme) {
        out.push_str(&format!(":{port}"));
    }
    out.push_str(&path);
    if let Some(q) = req.query {
        out.push('?');
        out.push_str(q);
    }
    out
}

fn well_known(scheme: &str) -> u16 {
    if scheme.eq_ignore_ascii_case("https") {
        443
    } else {
        80
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts<'a>(path: &'a str, prefix: Option<&'a str>) -> RequestParts<'a> {
        RequestParts {
            scheme: "http",
            host: "a.example.com",
            listener_port: 8080,
            path,
            query: Some("x=1"),
            prefix,
        }
    }

    #[test]
    fn prefix_replacement() {
        let m = PathModifier::ReplacePrefixMatch("/new".into());
        assert_eq!(rewrite_path(&m, "/old/a", Some("/old")), "/new/a");
        assert_eq!(rewrite_path(&m, "/old", Some("/old")), "/new");
        let root = PathModifier::ReplacePrefixMatch("/".into());
        assert_eq!(rewrite_path(&root, "/old/a", Some("/old")), "/a");
        assert_eq!(rewrite_path(&root, "/old", Some("/old")), "/");
        assert_eq!(rewrite_path(&m, "/x", Some("")), "/new/x");
    }

    #[test]
    fn redirect_ports() {
        let mut r = Redirect {
            scheme: None,
            hostname: None,
            port: None,
            path: None,
            status: 302,
        };
        assert_eq!(
            location(&r, &parts("/p", None)),
            "http://a.example.com:8080/p?x=1"
        );
        r.scheme = Some("https".into());
        assert_eq!(
            location(&r, &parts("/p", None)),
            "https://a.example.com/p?x=1"
        );
        r.port = Some(8443);
        r.hostname = Some("b.example.com".into());
        assert_eq!(
            location(&r, &parts("/p", None)),
            "https://b.example.com:8443/p?x=1"
        );
        r.scheme = None;
        r.port = Some(80);
        assert_eq!(
            location(&r, &parts("/p", None)),
            "http://b.example.com/p?x=1"
        );
    }
}
