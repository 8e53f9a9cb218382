//! Requests made canonical before anything matches them, and sent on in
//! that form, so that a route on `/admin` sees every spelling of `/admin`
//! (`//admin`, `/%61dmin`, `/x/../admin`) and the backend gets the path the
//! route matched.
//!
//! The path, as RFC 3986 §6 normalises it: percent-encoded unreserved
//! characters decoded, other escapes with upper-case hex, characters a
//! path may not hold raw (non-ASCII, `"<>^`{|}` and space) escaped, dot
//! segments removed, runs of `/` merged. Refused with 400: `%2F` and `%5C`
//! (a slash the router would not see), a raw `\`, a malformed escape, a
//! control character raw or escaped, a dot segment carrying parameters
//! (`..;x`: servers disagree on what it is), and on HTTP/1 a `#` or a
//! control character anywhere in the request line's target. The query is
//! kept as sent. Path parameters (`/a;b`) are part of their segment, as
//! RFC 3986 and Gateway API have them: `/admin;x` is not `/admin`.
//!
//! The host: an absolute-form target's authority is the host (RFC 9112
//! §3.2.2), and the target goes on in origin form; two `Host` fields, a
//! `Host` that contradicts the target's authority or HTTP/2's
//! `:authority`, or a host that is not an authority are refused (Pingora
//! refuses some of these itself, byte for byte). Listener, virtual host and
//! SNI matching then compare hosts case-insensitively, without a trailing
//! dot or a port (`crate::config::hosts::normalize`).

use http::header::HOST;
use pingora::http::RequestHeader;
use std::borrow::Cow;

/// Why a request was refused (400).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejected {
    /// `%2F` or `%5C` in the path.
    EncodedSlash,
    /// A raw `\` in the path.
    Backslash,
    /// `%` not followed by two hex digits.
    BadEscape,
    /// A control character (raw, or escaped in the path).
    Control,
    /// A `#` in the request target.
    Fragment,
    /// `.;x` or `..;x` as a segment.
    DotSegmentWithParameters,
    /// A target that is neither origin-form, absolute-form nor `*`.
    BadTarget,
    /// More than one `Host`, one that contradicts `:authority`, or one that
    /// is not an authority.
    BadHost,
}

/// What normalising changes in a request.
#[derive(Debug, Default, PartialEq)]
pub struct Rewrite {
    /// The origin-form target to set (normalised path and the query as sent).
    pub target: Option<String>,
    /// The host to set (an absolute-form target's authority).
    pub host: Option<String>,
}

impl Rewrite {
    pub fn is_empty(&self) -> bool {
        self.target.is_none() && self.host.is_none()
    }

    /// Applies the rewrite to the request.
    pub fn apply(self, req: &mut RequestHeader) -> Result<(), Rejected> {
        if let Some(target) = self.target {
            // An HTTP/2 request keeps its `:scheme` and `:authority`.
            let mut parts = http::uri::Parts::default();
            if req.uri.authority().is_some() && self.host.is_none() {
                parts.scheme = req.uri.scheme().cloned();
                parts.authority = req.uri.authority().cloned();
            }
            parts.path_and_query = Some(target.parse().map_err(|_| Rejected::BadTarget)?);
            let uri = http::Uri::from_parts(parts).map_err(|_| Rejected::BadTarget)?;
            req.set_uri(uri);
        }
        if let Some(host) = self.host {
            req.insert_header(HOST, host)
                .map_err(|_| Rejected::BadHost)?;
        }
        Ok(())
    }
}

/// Checks the target as it appeared on an HTTP/1 request line (Pingora
/// has already dropped a fragment from the parsed one).
pub fn check_request_line(head: &[u8]) -> Result<(), Rejected> {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let target = line.split(|&b| b == b' ').nth(1).unwrap_or_default();
    for &b in target {
        match b {
            b'#' => return Err(Rejected::Fragment),
            b if b < 0x20 || b == 0x7f => return Err(Rejected::Control),
            _ => {}
        }
    }
    Ok(())
}

/// What must change in `req` for it to be canonical; `Err` when it is
/// refused. Borrows and allocates nothing for a request already canonical.
pub fn request(req: &RequestHeader) -> Result<Rewrite, Rejected> {
    let mut rewrite = Rewrite::default();
    if !req.raw_path_is_utf8() {
        return Err(Rejected::BadTarget);
    }
    let raw = req.raw_path();
    if raw == b"*" {
        check_host(req)?;
        return Ok(rewrite);
    }
    if raw.first() == Some(&b'/') {
        check_host(req)?;
        if let Cow::Owned(normal) = path_of(req.uri.path())? {
            rewrite.target = Some(join(&normal, req.uri.query()));
        }
        return Ok(rewrite);
    }
    // Absolute-form: the host is the target's authority.
    let uri: http::Uri = std::str::from_utf8(raw)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(Rejected::BadTarget)?;
    let scheme_ok = uri
        .scheme_str()
        .is_some_and(|s| s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https"));
    let authority = uri.authority().ok_or(Rejected::BadTarget)?.as_str();
    if !scheme_ok || authority.contains('@') || !valid_host(authority) {
        return Err(Rejected::BadTarget);
    }
    rewrite.host = Some(authority.to_string());
    rewrite.target = Some(join(&path_of(uri.path())?, uri.query()));
    Ok(rewrite)
}

fn join(path: &str, query: Option<&str>) -> String {
    match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    }
}

/// One `Host` at most, an authority, and the same as `:authority` when
/// the request has one (HTTP/2).
fn check_host(req: &RequestHeader) -> Result<(), Rejected> {
    let mut hosts = req.headers.get_all(HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(Rejected::BadHost);
    }
    if let Some(host) = host {
        let host = host.to_str().map_err(|_| Rejected::BadHost)?;
        if !valid_host(host) {
            return Err(Rejected::BadHost);
        }
        if let Some(authority) = req.uri.authority() {
            if !authority.as_str().eq_ignore_ascii_case(host) {
                return Err(Rejected::BadHost);
            }
        }
    }
    Ok(())
}

/// Whether `host` is an authority without userinfo: a registered name or
/// IPv4 address, or an IPv6 literal in brackets, then `:port` if any.
pub fn valid_host(host: &str) -> bool {
    let (name, port) = match host.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((v6, port)) => {
                if v6.parse::<std::net::Ipv6Addr>().is_err() {
                    return false;
                }
                (None, port)
            }
            None => return false,
        },
        None => match host.rsplit_once(':') {
            Some((name, _)) => (Some(name), &host[name.len()..]),
            None => (Some(host), ""),
        },
    };
    let port_ok = match port.strip_prefix(':') {
        Some(digits) => digits.bytes().all(|b| b.is_ascii_digit()) && digits.len() <= 5,
        None => port.is_empty(),
    };
    let name_ok = name.is_none_or(|n| {
        n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%".contains(&b))
    });
    port_ok && name_ok
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Characters a path may hold as they are (RFC 3986 `pchar` and `/`).
fn path_char(b: u8) -> bool {
    unreserved(b) || b"!$&'()*+,;=:@/".contains(&b)
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// The normalised form of an origin-form path (no query); borrowed when
/// the path is already normal.
pub fn path_of(path: &str) -> Result<Cow<'_, str>, Rejected> {
    if is_normal(path.as_bytes())? {
        return Ok(Cow::Borrowed(path));
    }
    // Escapes settled first, so that `%2e%2e` is a dot segment too.
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len() + 8);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                let (Some(hi), Some(lo)) = (
                    bytes.get(i + 1).copied().and_then(hex),
                    bytes.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err(Rejected::BadEscape);
                };
                let v = hi << 4 | lo;
                match v {
                    b'/' | b'\\' => return Err(Rejected::EncodedSlash),
                    v if v < 0x20 || v == 0x7f => return Err(Rejected::Control),
                    v if unreserved(v) => decoded.push(v),
                    v => decoded.extend_from_slice(&[
                        b'%',
                        HEX[(v >> 4) as usize],
                        HEX[(v & 15) as usize],
                    ]),
                }
                i += 3;
                continue;
            }
            b'\\' => return Err(Rejected::Backslash),
            b if b < 0x20 || b == 0x7f => return Err(Rejected::Control),
            b if path_char(b) => decoded.push(b),
            b => decoded.extend_from_slice(&[b'%', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]),
        }
        i += 1;
    }
    // Then the segments: empty ones (runs of `/`) and `.` dropped, `..`
    // taking the one before it away.
    let mut out: Vec<&[u8]> = Vec::new();
    let mut trailing_slash = false;
    for segment in decoded.split(|&b| b == b'/').skip(1) {
        trailing_slash = false;
        match segment {
            b"" | b"." => trailing_slash = true,
            b".." => {
                out.pop();
                trailing_slash = true;
            }
            s if s.starts_with(b".;") || s.starts_with(b"..;") => {
                return Err(Rejected::DotSegmentWithParameters)
            }
            s => out.push(s),
        }
    }
    let mut normal = String::with_capacity(decoded.len() + 1);
    for segment in &out {
        normal.push('/');
        // Only ASCII was kept raw above.
        normal.push_str(std::str::from_utf8(segment).map_err(|_| Rejected::BadTarget)?);
    }
    if trailing_slash || out.is_empty() {
        normal.push('/');
    }
    Ok(Cow::Owned(normal))
}

/// Whether `path` needs no change; `Err` for what is refused outright.
fn is_normal(bytes: &[u8]) -> Result<bool, Rejected> {
    if bytes.first() != Some(&b'/') {
        return Ok(false);
    }
    let mut normal = true;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'%' | b'\\' => normal = false,
            b'/' => {
                let rest = &bytes[i + 1..];
                let segment = rest.split(|&b| b == b'/').next().unwrap_or_default();
                // An empty segment is normal only at the end (a trailing `/`).
                if segment.is_empty() && !rest.is_empty()
                    || matches!(segment, b"." | b"..")
                    || segment.starts_with(b".;")
                    || segment.starts_with(b"..;")
                {
                    normal = false;
                }
            }
            b if b < 0x20 || b == 0x7f => return Err(Rejected::Control),
            b if !path_char(b) => normal = false,
            _ => {}
        }
        if !normal {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(p: &str) -> Result<String, Rejected> {
        path_of(p).map(Cow::into_owned)
    }

    #[test]
    fn canonical_paths_are_borrowed() {
        for p in [
            "/",
            "/a",
            "/a/b/",
            "/a;b=c/d",
            "/a.b/c..d/.e",
            "/~x-y_z",
            "/a:b@c",
        ] {
            assert!(matches!(path_of(p), Ok(Cow::Borrowed(_))), "{p}");
        }
    }

    #[test]
    fn rfc_3986_normalisation() {
        let cases = [
            ("//admin", "/admin"),
            ("/%61dmin", "/admin"),
            ("/x/../admin", "/admin"),
            ("/x/./admin", "/x/admin"),
            ("/a//b///c", "/a/b/c"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/..", "/"),
            ("/../../admin", "/admin"),
            ("/%2e%2e/admin", "/admin"),
            ("/x/%2E%2E/admin", "/admin"),
            ("/a%2db", "/a-b"),
            ("/a%7eb", "/a~b"),
            ("/a%3fb", "/a%3Fb"),
            ("/a%25b", "/a%25b"),
            ("/%252e%252e/admin", "/%252e%252e/admin"),
            ("/caf\u{e9}", "/caf%C3%A9"),
            ("/a b", "/a%20b"),
            ("/a\"b", "/a%22b"),
            ("/a/", "/a/"),
            ("/a//", "/a/"),
            ("/", "/"),
        ];
        for (raw, want) in cases {
            assert_eq!(norm(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn hostile_paths_are_refused() {
        let cases = [
            ("/a%2fb", Rejected::EncodedSlash),
            ("/a%2Fadmin", Rejected::EncodedSlash),
            ("/a%5cb", Rejected::EncodedSlash),
            ("/a\\b", Rejected::Backslash),
            ("/a%00b", Rejected::Control),
            ("/a%0d%0ab", Rejected::Control),
            ("/a%7Fb", Rejected::Control),
            ("/a%zz", Rejected::BadEscape),
            ("/a%4", Rejected::BadEscape),
            ("/x/..;/admin", Rejected::DotSegmentWithParameters),
            ("/.;/admin", Rejected::DotSegmentWithParameters),
            ("/a\u{1}", Rejected::Control),
        ];
        for (raw, want) in cases {
            assert_eq!(norm(raw), Err(want), "{raw:?}");
        }
    }

    #[test]
    fn request_lines_with_fragments_or_controls_are_refused() {
        assert_eq!(
            check_request_line(b"GET /a HTTP/1.1\r\nHost: x\r\n"),
            Ok(())
        );
        assert_eq!(
            check_request_line(b"GET /a#b HTTP/1.1\r\n"),
            Err(Rejected::Fragment)
        );
        assert_eq!(
            check_request_line(b"GET /a\x01 HTTP/1.1\r\n"),
            Err(Rejected::Control)
        );
    }

    fn req(target: &str, hosts: &[&str]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", target.as_bytes(), None).unwrap();
        for h in hosts {
            r.append_header(HOST, *h).unwrap();
        }
        r
    }

    #[test]
    fn absolute_form_takes_its_authority_as_the_host() {
        let rw = request(&req(
            "http://Admin.example.com/x/../y?q=%2F",
            &["public.example.com"],
        ))
        .unwrap();
        assert_eq!(rw.host.as_deref(), Some("Admin.example.com"));
        assert_eq!(rw.target.as_deref(), Some("/y?q=%2F"));
        let rw = request(&req("http://a.example.com", &[])).unwrap();
        assert_eq!(rw.target.as_deref(), Some("/"));
        assert_eq!(
            request(&req("ftp://a.example.com/", &[])),
            Err(Rejected::BadTarget)
        );
        assert_eq!(
            request(&req("http://user@a.example.com/", &[])),
            Err(Rejected::BadTarget)
        );
    }

    #[test]
    fn hosts_are_checked() {
        assert!(request(&req("/", &["a.example.com:8080"]))
            .unwrap()
            .is_empty());
        assert!(request(&req("/", &["[::1]:80"])).unwrap().is_empty());
        assert_eq!(
            request(&req("/", &["a.example.com", "b.example.com"])),
            Err(Rejected::BadHost)
        );
        for bad in ["a/b", "a b", "user@a", "a:x", "[zz]"] {
            assert_eq!(request(&req("/", &[bad])), Err(Rejected::BadHost), "{bad}");
        }
    }

    #[test]
    fn the_query_is_kept_as_sent() {
        let rw = request(&req("//a?x=%2f&y=..", &[])).unwrap();
        assert_eq!(rw.target.as_deref(), Some("/a?x=%2f&y=.."));
    }
}
