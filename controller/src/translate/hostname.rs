//! Hostname matching and intersection between listeners and routes, as the
//! Gateway API defines them: `*.example.com` matches any name with at least
//! one more label, never `example.com` itself.

/// Does `name` (exact or wildcard) fall within `pattern` (exact or wildcard)?
/// A wildcard name falls within a wildcard pattern when it is at least as
/// specific.
pub fn within(name: &str, pattern: &str) -> bool {
    match pattern.strip_prefix('*') {
        None => name.eq_ignore_ascii_case(pattern),
        Some(suffix) => {
            let name_body = name.strip_prefix('*').unwrap_or(name);
            name_body.len() > suffix.len() && ends_with_ignore_case(name_body, suffix)
                || (name.starts_with('*') && name_body.eq_ignore_ascii_case(suffix))
        }
    }
}

fn ends_with_ignore_case(s: &str, suffix: &str) -> bool {
    s.len() >= suffix.len() && s[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
}

/// The hostname a route hostname and a listener hostname have in common: the
/// more specific of the two, or `None` when they do not intersect. A missing
/// listener hostname matches everything.
pub fn intersect(route: &str, listener: Option<&str>) -> Option<String> {
    let Some(listener) = listener else {
        return Some(route.to_ascii_lowercase());
    };
    if within(route, listener) {
        Some(route.to_ascii_lowercase())
    } else if within(listener, route) {
        Some(listener.to_ascii_lowercase())
    } else {
        None
    }
}

/// The effective hostnames of a route on a listener: `*` when neither names
/// any.
pub fn effective(route_hostnames: &[String], listener: Option<&str>) -> Vec<String> {
    if route_hostnames.is_empty() {
        return vec![listener.unwrap_or("*").to_ascii_lowercase()];
    }
    let mut out: Vec<String> = route_hostnames
        .iter()
        .filter_map(|h| intersect(h, listener))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// RFC 1123 hostname, optionally with a leading `*.` label; no IP addresses.
pub fn valid(hostname: &str) -> bool {
    let body = hostname.strip_prefix("*.").unwrap_or(hostname);
    if body.is_empty() || hostname.len() > 253 || body.parse::<std::net::IpAddr>().is_ok() {
        return false;
    }
    body.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_need_one_more_label() {
        assert!(within("foo.example.com", "*.example.com"));
        assert!(within("a.b.example.com", "*.example.com"));
        assert!(!within("example.com", "*.example.com"));
        assert!(within("*.a.example.com", "*.example.com"));
        assert!(within("*.example.com", "*.example.com"));
        assert!(!within("*.example.com", "*.a.example.com"));
        assert!(within("Foo.Example.com", "foo.example.com"));
    }

    #[test]
    fn intersection_keeps_the_more_specific() {
        assert_eq!(
            intersect("a.example.com", Some("*.example.com")).as_deref(),
            Some("a.example.com")
        );
        assert_eq!(
            intersect("*.example.com", Some("a.example.com")).as_deref(),
            Some("a.example.com")
        );
        assert_eq!(
            intersect("*.example.com", Some("*.a.example.com")).as_deref(),
            Some("*.a.example.com")
        );
        assert_eq!(intersect("a.example.net", Some("*.example.com")), None);
        assert_eq!(
            intersect("a.example.net", None).as_deref(),
            Some("a.example.net")
        );
    }

    #[test]
    fn effective_defaults_to_listener_or_star() {
        assert_eq!(effective(&[], None), vec!["*"]);
        assert_eq!(effective(&[], Some("a.com")), vec!["a.com"]);
        let names = vec!["a.example.com".to_string(), "b.other.com".to_string()];
        assert_eq!(
            effective(&names, Some("*.example.com")),
            vec!["a.example.com"]
        );
    }

    #[test]
    fn validity() {
        assert!(valid("a.example.com"));
        assert!(valid("*.example.com"));
        assert!(!valid("1.2.3.4"));
        assert!(!valid("a..com"));
        assert!(!valid("*"));
        assert!(!valid("A.com"));
    }
}
