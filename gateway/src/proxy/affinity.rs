//! Affinity: requests that go where others like them went.
//!
//! - Consistent hashing (`ConsistentHash` balancing): the request's key is
//!   a header, a cookie (a client without it is given one, so its next
//!   requests carry it) or the client's address.
//! - Session persistence (GEP-1619): the answer carries a token, in a
//!   cookie or a header, naming the endpoint that served it; a request
//!   carrying it goes there (over the backends' weights) while that
//!   endpoint is usable and the session has not timed out, and otherwise
//!   wherever the balancer says, with a new token. The token is opaque: a
//!   hash of the cluster and endpoint, and the session's start and last
//!   use (hex). A token a client makes up can only name an endpoint the
//!   route already sends to, or nothing.

use super::ctx::RequestCtx;
use crate::config::snapshot::CompiledRoute;
use crate::listen::conn::ConnInfo;
use crate::upstream::balancer::{ClusterState, Hint};
use crate::upstream::maglev::fnv1a;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::Session;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use weft_api::{ConsistentHash, HashOn, SessionPersistence};

/// The longest token read; longer ones are ignored.
const MAX_TOKEN: usize = 64;

/// A session as its token says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Token {
    endpoint: u64,
    began: u64,
    last: u64,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The value of cookie `name` among the request's `Cookie` headers.
fn cookie<'a>(req: &'a RequestHeader, name: &str) -> Option<&'a str> {
    req.headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim())
}

impl Token {
    fn parse(text: &str) -> Option<Token> {
        if text.len() > MAX_TOKEN {
            return None;
        }
        let mut parts = text.split('-').map(|p| u64::from_str_radix(p, 16).ok());
        let token = Token {
            endpoint: parts.next()??,
            began: parts.next()??,
            last: parts.next()??,
        };
        parts.next().is_none().then_some(token)
    }

    fn text(&self) -> String {
        format!("{:016x}-{:x}-{:x}", self.endpoint, self.began, self.last)
    }

    /// Whether the session is over at `now` (unix seconds).
    fn expired(&self, sp: &SessionPersistence, now: u64) -> bool {
        let past =
            |since: u64, limit: Option<u64>| limit.is_some_and(|l| now.saturating_sub(since) > l);
        past(self.began, sp.absolute_seconds) || past(self.last, sp.idle_seconds)
    }
}

/// The backend (index and cluster) the request goes to: where its
/// session takes it, else `chosen`; with its consistent-hashing key when
/// that backend hashes.
pub(super) fn prepare(
    session: &Session,
    ctx: &mut RequestCtx,
    route: &CompiledRoute,
    chosen: (usize, Arc<ClusterState>),
) -> (usize, Arc<ClusterState>) {
    let req = session.req_header();
    let (backend, cluster) = choose(req, ctx, route, chosen);
    if let Some(h) = &cluster.hash {
        let conn = ConnInfo::of(session.digest());
        let client = conn.and_then(|c| c.client).map(|a| a.ip());
        (ctx.hash_key, ctx.set_cookie) = hash_key(req, client, h);
    }
    (backend, cluster)
}

/// What the request brings to the choice of its endpoint: its pinned
/// endpoint (the first try only), else its key.
pub(super) fn hint(pinned: &mut Option<usize>, hash_key: Option<u64>) -> Hint {
    match (pinned.take(), hash_key) {
        (Some(i), _) => Hint::Pinned(i),
        (None, Some(key)) => Hint::Hash(key),
        (None, None) => Hint::None,
    }
}

/// What the answer carries: the session's token, and a hashing cookie
/// the client lacked.
pub(super) fn answer(resp: &mut ResponseHeader, ctx: &mut RequestCtx) -> Result<()> {
    if let Some(route) = &ctx.route {
        let secure = ctx.edge.is_some_and(|(_, scheme)| scheme == "https");
        issue(resp, ctx, route, secure)?;
    }
    if let Some(cookie) = ctx.set_cookie.take() {
        resp.append_header(http::header::SET_COOKIE, cookie)?;
    }
    Ok(())
}

/// The backend (index and cluster) of `route` a request's session takes
/// it to, with its endpoint pinned in `ctx`; `chosen` when it has no
/// session there.
fn choose(
    req: &RequestHeader,
    ctx: &mut RequestCtx,
    route: &CompiledRoute,
    chosen: (usize, Arc<ClusterState>),
) -> (usize, Arc<ClusterState>) {
    let Some(sp) = &route.session else {
        return chosen;
    };
    let carried = match sp.header {
        true => req
            .headers
            .get(sp.name.as_str())
            .and_then(|v| v.to_str().ok()),
        false => cookie(req, &sp.name),
    };
    let Some(token) = carried.and_then(Token::parse) else {
        return chosen;
    };
    if token.expired(sp, now_secs()) {
        return chosen;
    }
    for (b, backend) in route.backends.iter().enumerate() {
        let Ok(cluster) = &backend.target else {
            continue;
        };
        let found = cluster
            .session_tags
            .iter()
            .position(|t| *t == token.endpoint);
        if let Some(i) = found {
            ctx.pinned = Some(i);
            ctx.session = Some(token);
            return (b, cluster.clone());
        }
    }
    chosen
}

/// Gives the answer the session's token for the endpoint that served it:
/// the same session while the endpoint is the one pinned, else a new one.
fn issue(
    resp: &mut ResponseHeader,
    ctx: &RequestCtx,
    route: &CompiledRoute,
    secure: bool,
) -> Result<()> {
    let (Some(sp), Some(cluster), Some(i)) = (&route.session, &ctx.cluster, ctx.endpoint) else {
        return Ok(());
    };
    let now = now_secs();
    let endpoint = cluster.session_tags[i];
    let began = match ctx.session {
        Some(t) if t.endpoint == endpoint => t.began,
        _ => now,
    };
    let token = Token {
        endpoint,
        began,
        last: now,
    }
    .text();
    if sp.header {
        return resp.insert_header(sp.name.clone(), token);
    }
    let mut cookie = format!("{}={token}; Path={}; HttpOnly", sp.name, route.session_path);
    if secure {
        cookie.push_str("; Secure");
    }
    if let (true, Some(s)) = (sp.permanent, sp.absolute_seconds) {
        cookie.push_str(&format!("; Max-Age={}", s.saturating_sub(now - began)));
    }
    resp.append_header(http::header::SET_COOKIE, cookie)?;
    Ok(())
}

/// The key of a request to a cluster that hashes (`None` without one),
/// and, for a cookie the client lacks, the `Set-Cookie` that gives it.
fn hash_key(
    req: &RequestHeader,
    client: Option<IpAddr>,
    h: &ConsistentHash,
) -> (Option<u64>, Option<String>) {
    match &h.by {
        HashOn::Header(name) => {
            let value = req.headers.get(name.as_str()).map(|v| fnv1a(v.as_bytes()));
            (value, None)
        }
        HashOn::SourceIp => {
            let key = client.map(|ip| match ip {
                IpAddr::V4(v4) => fnv1a(&v4.octets()),
                IpAddr::V6(v6) => fnv1a(&v6.octets()),
            });
            (key, None)
        }
        HashOn::Cookie { name, ttl_seconds } => {
            if let Some(v) = cookie(req, name) {
                return (Some(fnv1a(v.as_bytes())), None);
            }
            let value = format!("{:016x}", rand::random::<u64>());
            let mut set = format!("{name}={value}; Path=/; HttpOnly");
            if let Some(ttl) = ttl_seconds {
                set.push_str(&format!("; Max-Age={ttl}"));
            }
            (Some(fnv1a(value.as_bytes())), Some(set))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sp(absolute: Option<u64>, idle: Option<u64>) -> SessionPersistence {
        SessionPersistence {
            name: "s".into(),
            header: false,
            absolute_seconds: absolute,
            idle_seconds: idle,
            permanent: false,
        }
    }

    #[test]
    fn tokens_read_back_and_refuse_what_is_not_theirs() {
        let t = Token {
            endpoint: 0xdead_beef,
            began: 100,
            last: 160,
        };
        assert_eq!(Token::parse(&t.text()), Some(t));
        for bad in ["", "zz-1-2", "1-2", "1-2-3-4", &"f".repeat(80)] {
            assert_eq!(Token::parse(bad), None, "{bad}");
        }
        assert!(!t.expired(&sp(Some(100), Some(60)), 200));
        assert!(t.expired(&sp(Some(60), None), 200), "absolute");
        assert!(t.expired(&sp(None, Some(30)), 200), "idle");
    }

    #[test]
    fn cookies_are_found_among_several() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.append_header("cookie", "a=1; s=tok").unwrap();
        req.append_header("cookie", "b=2").unwrap();
        assert_eq!(cookie(&req, "s"), Some("tok"));
        assert_eq!(cookie(&req, "b"), Some("2"));
        assert_eq!(cookie(&req, "c"), None);
    }
}
