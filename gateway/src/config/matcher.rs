//! Matching a request against one route's match: path, method, headers and
//! query parameters, with regexes compiled when the snapshot is built.

use crate::error::GatewayError;
use crate::filters::headers::prefix_matches;
use http::HeaderMap;
use regex::Regex;
use weft_api::{HttpMatch, PathMatch, StringMatch};

#[derive(Debug)]
pub enum Path {
    Exact(String),
    /// Segment-wise prefix, without trailing slash (`/` matches all).
    Prefix(String),
    Regex(Regex),
}

#[derive(Debug)]
pub enum Value {
    Exact(String),
    Regex(Regex),
}

impl Value {
    fn compile(m: &StringMatch) -> Result<Self, GatewayError> {
        Ok(match m {
            StringMatch::Exact(v) => Value::Exact(v.clone()),
            StringMatch::Regex(r) => Value::Regex(full_regex(r)?),
        })
    }

    fn matches(&self, v: &str) -> bool {
        match self {
            Value::Exact(e) => e == v,
            Value::Regex(r) => r.is_match(v),
        }
    }
}

#[derive(Debug)]
pub struct Matcher {
    pub path: Path,
    method: Option<http::Method>,
    headers: Vec<(http::HeaderName, Value)>,
    query: Vec<(String, Value)>,
}

/// Gateway API regexes match the whole value.
fn full_regex(r: &str) -> Result<Regex, GatewayError> {
    Regex::new(&format!("^(?:{r})$"))
        .map_err(|e| GatewayError::Snapshot(format!("regex {r:?}: {e}")))
}

impl Matcher {
    pub fn compile(m: &HttpMatch) -> Result<Self, GatewayError> {
        let path = match &m.path {
            PathMatch::Exact(p) => Path::Exact(p.clone()),
            PathMatch::Prefix(p) => Path::Prefix(p.trim_end_matches('/').to_string()),
            PathMatch::Regex(r) => Path::Regex(full_regex(r)?),
        };
        let method = match &m.method {
            Some(name) => Some(
                http::Method::from_bytes(name.as_bytes())
                    .map_err(|_| GatewayError::Snapshot(format!("method {name:?}")))?,
            ),
            None => None,
        };
        let headers = m
            .headers
            .iter()
            .map(|h| {
                let name = http::HeaderName::from_bytes(h.name.as_bytes())
                    .map_err(|_| GatewayError::Snapshot(format!("header name {:?}", h.name)))?;
                Ok((name, Value::compile(&h.value)?))
            })
            .collect::<Result<_, GatewayError>>()?;
        let query = m
            .query_params
            .iter()
            .map(|q| Ok((q.name.clone(), Value::compile(&q.value)?)))
            .collect::<Result<_, GatewayError>>()?;
        Ok(Matcher {
            path,
            method,
            headers,
            query,
        })
    }

    /// `path` is the request path without its query; `query` the raw query.
    pub fn matches(
        &self,
        method: &http::Method,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> bool {
        let path_ok = match &self.path {
            Path::Exact(p) => p == path,
            Path::Prefix(p) => prefix_matches(p, path),
            Path::Regex(r) => r.is_match(path),
        };
        if !path_ok || self.method.as_ref().is_some_and(|m| m != method) {
            return false;
        }
        for (name, value) in &self.headers {
            // Several values of one header are matched as one, comma-joined.
            let mut values = headers.get_all(name).iter();
            let ok = match (values.next(), values.next()) {
                (None, _) => false,
                (Some(v), None) => v.to_str().is_ok_and(|v| value.matches(v)),
                (Some(_), Some(_)) => {
                    let joined: Vec<&str> = headers
                        .get_all(name)
                        .iter()
                        .filter_map(|v| v.to_str().ok())
                        .collect();
                    value.matches(&joined.join(","))
                }
            };
            if !ok {
                return false;
            }
        }
        self.query.iter().all(|(name, value)| {
            query_value(query.unwrap_or(""), name).is_some_and(|v| value.matches(&v))
        })
    }
}

/// The first value of query parameter `name`, percent-decoded.
fn query_value(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(k) == name).then(|| decode(v))
    })
}

fn decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                out.push(hi << 4 | lo);
                i += 2;
            }
            (b'+', _, _) => out.push(b' '),
            (b, _, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_api::KeyMatch;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn prefixes_are_segment_wise() {
        assert!(prefix_matches("/foo", "/foo"));
        assert!(prefix_matches("/foo", "/foo/bar"));
        assert!(!prefix_matches("/foo", "/foobar"));
        assert!(prefix_matches("", "/anything"));
    }

    #[test]
    fn full_match() {
        let m = Matcher::compile(&HttpMatch {
            path: PathMatch::Regex("/items/[0-9]+".into()),
            headers: vec![KeyMatch {
                name: "x-version".into(),
                value: StringMatch::Exact("2".into()),
            }],
            query_params: vec![KeyMatch {
                name: "q".into(),
                value: StringMatch::Regex("a.c".into()),
            }],
            method: Some("GET".into()),
        })
        .unwrap();
        let get = http::Method::GET;
        let h = headers(&[("X-Version", "2")]);
        assert!(m.matches(&get, "/items/12", Some("q=abc"), &h));
        assert!(!m.matches(&get, "/items/12x", Some("q=abc"), &h));
        assert!(!m.matches(&get, "/items/12", Some("q=abcd"), &h));
        assert!(!m.matches(&http::Method::POST, "/items/12", Some("q=abc"), &h));
        assert!(!m.matches(
            &get,
            "/items/12",
            Some("q=abc"),
            &headers(&[("x-version", "3")])
        ));
        assert!(m.matches(&get, "/items/1", Some("x=1&q=a%20c"), &h));
    }
}
