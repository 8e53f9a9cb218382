//! Affinity in the IR: requests that go where others like them went, by
//! consistent hashing of a key (`Cluster::hash`) or by a session a route
//! keeps (`Route::session`).

use serde::{Deserialize, Serialize};

/// Consistent hashing (Maglev): requests with the same key go to the same
/// endpoint while the endpoints stay the same, and few move when one
/// comes or goes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsistentHash {
    pub by: HashOn,
    /// The Maglev table's size: a prime.
    pub table_size: u32,
}

impl ConsistentHash {
    /// Whether `n` can size a Maglev table: a prime, at most 5000011.
    pub fn table_size_ok(n: u32) -> bool {
        (2..=5_000_011).contains(&n)
            && (2..)
                .take_while(|d: &u32| d * d <= n)
                .all(|d| !n.is_multiple_of(d))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HashOn {
    /// A request header's value.
    Header(String),
    /// A cookie's value; a request without it gets one (lasting
    /// `ttl_seconds`, or the browser session).
    Cookie {
        name: String,
        #[serde(
            default,
            rename = "ttlSeconds",
            skip_serializing_if = "Option::is_none"
        )]
        ttl_seconds: Option<u64>,
    },
    /// The client's address.
    SourceIp,
}

/// Session persistence (Gateway API GEP-1619): a cookie or header the
/// proxy gives the client names the endpoint that served it, and later
/// requests carrying it go there while it is usable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionPersistence {
    /// The cookie's or header's name.
    pub name: String,
    /// A header, not a cookie.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub header: bool,
    /// The session ends this long after it began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub absolute_seconds: Option<u64>,
    /// The session ends after this long without a request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_seconds: Option<u64>,
    /// A cookie that outlives the browser session (`Max-Age` of the
    /// absolute timeout).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub permanent: bool,
}

/// Whether `name` is an HTTP token (RFC 9110): what a cookie's or a
/// header's name must be.
pub fn is_token(name: &str) -> bool {
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    !name.is_empty() && name.bytes().all(tchar)
}
