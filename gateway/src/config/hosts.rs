//! Choosing by hostname: which listener of a port serves a Host or SNI name
//! (the most specific hostname wins, so listeners stay isolated), and which
//! virtual host of a listener.

use std::collections::HashMap;

/// Names (exact, `*.suffix`, or the catch-all) mapped to indices, looked up
/// most specific first. Built once per snapshot.
#[derive(Debug, Default)]
pub struct HostTable {
    exact: HashMap<String, usize>,
    /// (`.suffix`, index), longest suffix first.
    wildcard: Vec<(String, usize)>,
    any: Option<usize>,
}

impl HostTable {
    /// `names[i]` is the hostname of entry `i`: `None` or `*` for the catch-all.
    pub fn new<'a>(names: impl IntoIterator<Item = Option<&'a str>>) -> Self {
        let mut table = HostTable::default();
        for (i, name) in names.into_iter().enumerate() {
            match name {
                None | Some("*") => {
                    table.any.get_or_insert(i);
                }
                Some(n) => match n.strip_prefix('*') {
                    Some(suffix) => table.wildcard.push((suffix.to_ascii_lowercase(), i)),
                    None => {
                        table.exact.entry(n.to_ascii_lowercase()).or_insert(i);
                    }
                },
            }
        }
        table.wildcard.sort_by_key(|w| std::cmp::Reverse(w.0.len()));
        table
    }

    /// The entry for `host` (lowercase, no port).
    pub fn find(&self, host: &str) -> Option<usize> {
        if let Some(i) = self.exact.get(host) {
            return Some(*i);
        }
        for (suffix, i) in &self.wildcard {
            if host.len() > suffix.len() && host.ends_with(suffix.as_str()) {
                return Some(*i);
            }
        }
        self.any
    }
}

/// The host of a `Host` header or `:authority`: lowercased, without port.
/// Borrows when it can.
pub fn normalize(host: &str) -> std::borrow::Cow<'_, str> {
    let host = if host.starts_with('[') {
        host.split_inclusive(']').next().unwrap_or(host)
    } else {
        host.rsplit_once(':').map_or(host, |(h, p)| {
            if p.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                host
            }
        })
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(host.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(host)
    }
}

/// The host of a request as an HTTP proxy port names it: lowercased, with
/// its port (`default_port` when none is given, else 80).
pub fn with_port(host: &str, default_port: Option<u16>) -> String {
    let host = host.to_ascii_lowercase();
    let has_port = match host.rfind(']') {
        Some(end) => host[end..].contains(':'),
        None => host.contains(':'),
    };
    if has_port {
        host
    } else {
        let port = default_port.unwrap_or(80);
        format!("{}:{port}", host.strip_suffix('.').unwrap_or(&host))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_specific_wins() {
        let t = HostTable::new([
            Some("*.example.com"),
            None,
            Some("a.example.com"),
            Some("*.b.example.com"),
        ]);
        assert_eq!(t.find("a.example.com"), Some(2));
        assert_eq!(t.find("x.b.example.com"), Some(3));
        assert_eq!(t.find("b.example.com"), Some(0));
        assert_eq!(t.find("example.com"), Some(1));
        assert_eq!(t.find("other.org"), Some(1));
        let t = HostTable::new([Some("a.example.com")]);
        assert_eq!(t.find("b.example.com"), None);
    }

    #[test]
    fn proxy_hosts_keep_their_port() {
        assert_eq!(with_port("Backend.shop", None), "backend.shop:80");
        assert_eq!(with_port("backend:8080", Some(9080)), "backend:8080");
        assert_eq!(with_port("backend", Some(9080)), "backend:9080");
        assert_eq!(with_port("[::1]", None), "[::1]:80");
    }

    #[test]
    fn normalizes_hosts() {
        assert_eq!(normalize("Shop.Example.com:8080"), "shop.example.com");
        assert_eq!(normalize("shop.example.com."), "shop.example.com");
        assert_eq!(normalize("[::1]:80"), "[::1]");
        assert_eq!(normalize("a.com"), "a.com");
    }
}
