//! The HTTPRoute CORS filter on the request path. A preflight (`OPTIONS`
//! with `Origin` and `Access-Control-Request-Method`) on a route with the
//! filter is answered here and never reaches the backend; other requests
//! from an allowed origin get `Access-Control-*` headers on their response.
//! The origin is always echoed, never `*`, which is right whether or not
//! credentials are allowed.

use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;
use weft_api::Cors;

/// A CORS filter ready for the request path.
#[derive(Debug)]
pub struct CompiledCors {
    any_origin: bool,
    origins: Vec<Origin>,
    /// `None` when any method is allowed (the requested one is echoed).
    methods: Option<HeaderValue>,
    /// `None` when any header is allowed (the requested ones are echoed).
    headers: Option<HeaderValue>,
    expose: Option<HeaderValue>,
    credentials: bool,
    max_age: HeaderValue,
}

/// An allowed origin: scheme, host (or a `*.` suffix), port.
#[derive(Debug, PartialEq)]
struct Origin {
    scheme: String,
    /// `Some(".example.com")` for `*.example.com`.
    suffix: Option<String>,
    host: String,
    port: u16,
}

fn default_port(scheme: &str) -> u16 {
    if scheme == "https" {
        443
    } else {
        80
    }
}

/// `scheme://host[:port]`, lowercased, the port made explicit.
fn parse(origin: &str) -> Option<(String, String, u16)> {
    let (scheme, rest) = origin.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            (h, p.parse().ok()?)
        }
        _ => (rest, default_port(&scheme)),
    };
    if host.is_empty() || host.contains('/') {
        return None;
    }
    Some((scheme, host.to_ascii_lowercase(), port))
}

fn joined(items: &[String]) -> Option<HeaderValue> {
    if items.is_empty() {
        return None;
    }
    HeaderValue::from_str(&items.join(", ")).ok()
}

impl CompiledCors {
    pub fn compile(c: &Cors) -> CompiledCors {
        let origins = c
            .allow_origins
            .iter()
            .filter(|o| *o != "*")
            .filter_map(|o| {
                let (scheme, host, port) = parse(o)?;
                let suffix = host.strip_prefix('*').map(str::to_string);
                Some(Origin {
                    scheme,
                    suffix,
                    host,
                    port,
                })
            })
            .collect();
        let star = |v: &[String]| v.iter().any(|m| m == "*");
        // Expose-Headers `*` means "all" only without credentials.
        let expose: Vec<String> = c
            .expose_headers
            .iter()
            .filter(|h| !(c.allow_credentials && *h == "*"))
            .cloned()
            .collect();
        CompiledCors {
            any_origin: c.allow_origins.iter().any(|o| o == "*"),
            origins,
            methods: if star(&c.allow_methods) {
                None
            } else {
                joined(&c.allow_methods)
            },
            headers: if star(&c.allow_headers) {
                None
            } else {
                joined(&c.allow_headers)
            },
            expose: joined(&expose),
            credentials: c.allow_credentials,
            max_age: HeaderValue::from(c.max_age),
        }
    }

    /// Whether requests from `origin` may be shared.
    pub fn allows(&self, origin: &str) -> bool {
        if self.any_origin {
            return true;
        }
        let Some((scheme, host, port)) = parse(origin) else {
            return false;
        };
        self.origins.iter().any(|o| {
            o.scheme == scheme
                && o.port == port
                && match &o.suffix {
                    Some(suffix) => host.len() > suffix.len() && host.ends_with(suffix.as_str()),
                    None => o.host == host,
                }
        })
    }

    /// The headers answering a preflight from an allowed `origin`.
    pub fn preflight(
        &self,
        origin: &HeaderValue,
        req: &HeaderMap,
    ) -> Vec<(HeaderName, HeaderValue)> {
        use http::header::*;
        let mut out = self.common(origin);
        let requested = |name| req.get(name).cloned();
        let methods = match &self.methods {
            Some(m) => Some(m.clone()),
            None => requested(ACCESS_CONTROL_REQUEST_METHOD),
        };
        let headers = match &self.headers {
            Some(h) => Some(h.clone()),
            None => requested(ACCESS_CONTROL_REQUEST_HEADERS),
        };
        out.extend(methods.map(|m| (ACCESS_CONTROL_ALLOW_METHODS, m)));
        out.extend(headers.map(|h| (ACCESS_CONTROL_ALLOW_HEADERS, h)));
        out.push((ACCESS_CONTROL_MAX_AGE, self.max_age.clone()));
        out
    }

    /// The headers added to an actual response for an allowed `origin`.
    pub fn response(&self, origin: &HeaderValue) -> Vec<(HeaderName, HeaderValue)> {
        self.common(origin)
    }

    fn common(&self, origin: &HeaderValue) -> Vec<(HeaderName, HeaderValue)> {
        use http::header::*;
        let mut out = vec![
            (ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone()),
            (VARY, HeaderValue::from_static("Origin")),
        ];
        if self.credentials {
            out.push((
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            ));
        }
        out.extend(
            self.expose
                .clone()
                .map(|e| (ACCESS_CONTROL_EXPOSE_HEADERS, e)),
        );
        out
    }
}

/// Whether a request is a CORS preflight.
pub fn is_preflight(method: &http::Method, headers: &HeaderMap) -> bool {
    method == http::Method::OPTIONS
        && headers.contains_key(http::header::ORIGIN)
        && headers.contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(origins: &[&str], credentials: bool) -> CompiledCors {
        CompiledCors::compile(&Cors {
            allow_origins: origins.iter().map(|o| o.to_string()).collect(),
            allow_methods: vec!["GET".into(), "OPTIONS".into()],
            allow_headers: vec!["x-header-1".into()],
            expose_headers: vec!["x-header-3".into(), "*".into()],
            allow_credentials: credentials,
            max_age: 3600,
        })
    }

    #[test]
    fn matches_origins_with_wildcards_and_default_ports() {
        let c = cors(
            &[
                "https://www.foo.com",
                "https://*.bar.com",
                "http://a.test:8080",
            ],
            true,
        );
        assert!(c.allows("https://www.foo.com"));
        assert!(c.allows("https://www.foo.com:443"));
        assert!(c.allows("HTTPS://WWW.FOO.COM"));
        assert!(!c.allows("http://www.foo.com"));
        assert!(!c.allows("https://www.foo.com:8443"));
        assert!(c.allows("https://www.bar.com"));
        assert!(c.allows("https://xpto.www.bar.com"));
        assert!(!c.allows("https://bar.com"));
        assert!(!c.allows("https://foobar.com"));
        assert!(c.allows("http://a.test:8080"));
        assert!(!c.allows("http://a.test"));
        assert!(!c.allows("null"));
        assert!(cors(&["*"], false).allows("https://foobar.com:12345"));
    }

    #[test]
    fn preflight_and_response_headers() {
        let c = cors(&["https://www.foo.com"], true);
        let origin = HeaderValue::from_static("https://www.foo.com");
        let mut req = HeaderMap::new();
        req.insert(
            "access-control-request-method",
            HeaderValue::from_static("GET"),
        );
        let got: HeaderMap = c.preflight(&origin, &req).into_iter().collect();
        assert_eq!(got["access-control-allow-origin"], "https://www.foo.com");
        assert_eq!(got["access-control-allow-methods"], "GET, OPTIONS");
        assert_eq!(got["access-control-allow-headers"], "x-header-1");
        assert_eq!(got["access-control-max-age"], "3600");
        assert_eq!(got["access-control-allow-credentials"], "true");
        // `*` is not "all" with credentials.
        assert_eq!(got["access-control-expose-headers"], "x-header-3");
        let got: HeaderMap = c.response(&origin).into_iter().collect();
        assert!(got.get("access-control-allow-methods").is_none());
        assert_eq!(got["vary"], "Origin");
    }

    #[test]
    fn wildcard_methods_and_headers_echo_the_request() {
        let c = CompiledCors::compile(&Cors {
            allow_origins: vec!["*".into()],
            allow_methods: vec!["*".into()],
            allow_headers: vec!["*".into()],
            max_age: 5,
            ..Default::default()
        });
        let origin = HeaderValue::from_static("https://other.foo.com");
        let mut req = HeaderMap::new();
        req.insert(
            "access-control-request-method",
            HeaderValue::from_static("PUT"),
        );
        req.insert(
            "access-control-request-headers",
            HeaderValue::from_static("x-a, x-b"),
        );
        let got: HeaderMap = c.preflight(&origin, &req).into_iter().collect();
        assert_eq!(got["access-control-allow-origin"], "https://other.foo.com");
        assert_eq!(got["access-control-allow-methods"], "PUT");
        assert_eq!(got["access-control-allow-headers"], "x-a, x-b");
        assert!(got.get("access-control-allow-credentials").is_none());
    }
}
