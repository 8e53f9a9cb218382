//! Authorization: rules compiled once per snapshot, matched against what is
//! known of a request (or, on an L4 port, of a connection). The first rule
//! that matches decides; none: the default action. A request is checked
//! only against the rules its path can match (`authz_index`).

use super::authz_index::{PathIndex, Pattern};
use super::jwt::{claim, Verified};
use ipnet::IpNet;
use std::net::IpAddr;
use std::sync::Arc;
use weft_api::{Action, Authorization, AuthzRule, ClaimMatch};

/// What a rule may ask about.
pub struct Facts<'a> {
    /// The request; `None` on an L4 port.
    pub http: Option<HttpFacts<'a>>,
    /// The direct peer's address.
    pub client: Option<IpAddr>,
    /// The verified client certificate's SPIFFE ID.
    pub identity: Option<&'a str>,
    pub jwt: Option<&'a Verified>,
    /// The host asked for, lowercase without port: the request's, or on
    /// an L4 port the TLS server name (or the route's external host).
    pub host: Option<&'a str>,
}

pub struct HttpFacts<'a> {
    pub method: &'a http::Method,
    /// Canonical, without the query.
    pub path: &'a str,
    pub headers: &'a http::HeaderMap,
}

pub struct Compiled {
    pub policy: String,
    default_action: Action,
    rules: Vec<Rule>,
    /// The rules by their paths, for requests.
    index: PathIndex,
}

struct Rule {
    name: Arc<str>,
    action: Action,
    l4: bool,
    methods: Vec<String>,
    paths: Vec<Pattern>,
    cidrs: Vec<IpNet>,
    identities: Vec<Pattern>,
    authenticated: bool,
    jwt: Option<weft_api::JwtPrincipal>,
    headers: Vec<(http::HeaderName, Vec<String>)>,
    /// Exact names, and `*.suffix` kept as `.suffix`.
    hosts: Vec<String>,
}

/// What decided, for logs and metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decided {
    pub allow: bool,
    /// The rule that matched; `None` for the default action.
    pub rule: Option<Arc<str>>,
}

impl Compiled {
    pub fn compile(a: &Authorization) -> Result<Compiled, String> {
        let rules: Vec<Rule> = a
            .rules
            .iter()
            .map(compile_rule)
            .collect::<Result<_, String>>()?;
        let mut index = PathIndex::default();
        for (i, rule) in rules.iter().enumerate() {
            let i = u32::try_from(i).map_err(|_| "too many rules".to_string())?;
            index.add(i, &rule.paths);
        }
        Ok(Compiled {
            policy: a.policy.clone(),
            default_action: a.default_action,
            rules,
            index,
        })
    }

    pub fn decide(&self, facts: &Facts<'_>) -> Decided {
        let first = match &facts.http {
            Some(http) => self
                .index
                .first(http.path, |i| self.rules[i].matches(facts)),
            // On a connection, a rule about requests cannot be decided: as
            // a Deny rule it refuses (the safer reading), as an Allow rule
            // it does not match.
            None => self.rules.iter().position(|rule| {
                if rule.l4 {
                    rule.matches(facts)
                } else {
                    rule.action == Action::Deny
                }
            }),
        };
        match first.map(|i| &self.rules[i]) {
            Some(rule) => Decided {
                allow: rule.action == Action::Allow,
                rule: Some(rule.name.clone()),
            },
            None => Decided {
                allow: self.default_action == Action::Allow,
                rule: None,
            },
        }
    }
}

fn compile_rule(r: &AuthzRule) -> Result<Rule, String> {
    let cidrs = r
        .client_cidrs
        .iter()
        .map(|c| {
            c.parse::<IpNet>()
                .or_else(|_| c.parse::<IpAddr>().map(IpNet::from))
                .map_err(|e| format!("rule {}: CIDR {c:?}: {e}", r.name))
        })
        .collect::<Result<_, _>>()?;
    let headers = r
        .headers
        .iter()
        .map(|(name, values)| {
            let name = http::HeaderName::try_from(name.as_str())
                .map_err(|e| format!("rule {}: header {name:?}: {e}", r.name))?;
            Ok((name, values.clone()))
        })
        .collect::<Result<_, String>>()?;
    Ok(Rule {
        name: r.name.as_str().into(),
        action: r.action,
        l4: r.l4(),
        methods: r.methods.iter().map(|m| m.to_ascii_uppercase()).collect(),
        paths: r.paths.iter().map(|p| Pattern::new(p)).collect(),
        cidrs,
        identities: r.spiffe_ids.iter().map(|p| Pattern::new(p)).collect(),
        authenticated: r.authenticated,
        jwt: r.jwt.clone(),
        headers,
        hosts: r
            .hosts
            .iter()
            .map(|h| h.strip_prefix('*').unwrap_or(h).to_ascii_lowercase())
            .collect(),
    })
}

/// Whether `host` is one of `hosts` (exact, or under a `.suffix`).
fn host_matches(hosts: &[String], host: &str) -> bool {
    hosts.iter().any(|h| match h.starts_with('.') {
        true => host.len() > h.len() && host.ends_with(h.as_str()),
        false => h == host,
    })
}

impl Rule {
    fn matches(&self, f: &Facts<'_>) -> bool {
        if !self.cidrs.is_empty() {
            let Some(ip) = f.client else { return false };
            let ip = canonical_ip(ip);
            if !self.cidrs.iter().any(|n| n.contains(&ip)) {
                return false;
            }
        }
        if self.authenticated && f.identity.is_none() {
            return false;
        }
        if !self.identities.is_empty() {
            let Some(id) = f.identity else { return false };
            if !self.identities.iter().any(|p| p.matches(id)) {
                return false;
            }
        }
        if let Some(want) = &self.jwt {
            let Some(jwt) = f.jwt else { return false };
            if !jwt_matches(want, jwt) {
                return false;
            }
        }
        if !self.hosts.is_empty() && !f.host.is_some_and(|h| host_matches(&self.hosts, h)) {
            return false;
        }
        let Some(http) = &f.http else {
            return true;
        };
        if !self.methods.is_empty() && !self.methods.iter().any(|m| m == http.method.as_str()) {
            return false;
        }
        if !self.paths.is_empty() && !self.paths.iter().any(|p| p.matches(http.path)) {
            return false;
        }
        self.headers.iter().all(|(name, values)| {
            http.headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(|v| values.iter().any(|want| want == v))
        })
    }
}

/// An IPv4 client on a dual-stack socket (`::ffff:a.b.c.d`) is the IPv4
/// address, for IPv4 CIDRs.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn jwt_matches(want: &weft_api::JwtPrincipal, jwt: &Verified) -> bool {
    if want.provider.as_ref().is_some_and(|p| **p != *jwt.provider) {
        return false;
    }
    if !want.claims.iter().all(|c| claim_matches(c, &jwt.claims)) {
        return false;
    }
    let scopes: Vec<&str> = jwt
        .claims
        .get("scope")
        .and_then(|s| s.as_str())
        .map(|s| s.split(' ').filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    want.scopes.iter().all(|s| scopes.contains(&s.as_str()))
}

/// A claim of the wrong type does not match.
fn claim_matches(want: &ClaimMatch, claims: &serde_json::Value) -> bool {
    let Some(v) = claim(claims, &want.name) else {
        return false;
    };
    if want.array {
        v.as_array().is_some_and(|items| {
            items
                .iter()
                .filter_map(|i| i.as_str())
                .any(|i| want.values.iter().any(|w| w == i))
        })
    } else {
        v.as_str()
            .is_some_and(|s| want.values.iter().any(|w| w == s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_api::JwtPrincipal;

    fn rule(action: Action) -> AuthzRule {
        AuthzRule {
            name: "r".into(),
            action,
            ..Default::default()
        }
    }

    fn authz(rules: Vec<AuthzRule>, default_action: Action) -> Compiled {
        Compiled::compile(&Authorization {
            policy: "p".into(),
            default_action,
            rules,
        })
        .unwrap()
    }

    fn facts<'a>(
        method: &'a http::Method,
        path: &'a str,
        headers: &'a http::HeaderMap,
        jwt: Option<&'a Verified>,
    ) -> Facts<'a> {
        Facts {
            http: Some(HttpFacts {
                method,
                path,
                headers,
            }),
            client: Some("::ffff:10.1.2.3".parse().unwrap()),
            identity: Some("spiffe://cluster.local/ns/shop/sa/productpage"),
            jwt,
            host: Some("api.partner.test"),
        }
    }

    #[test]
    fn every_field_given_must_match() {
        let mut r = rule(Action::Allow);
        r.methods = vec!["get".into()];
        r.paths = vec!["/reviews/*".into()];
        r.client_cidrs = vec!["10.0.0.0/8".into()];
        r.spiffe_ids = vec!["spiffe://cluster.local/ns/shop/sa/*".into()];
        r.headers = vec![("x-tenant".into(), vec!["a".into(), "b".into()])];
        let a = authz(vec![r], Action::Deny);
        let mut h = http::HeaderMap::new();
        h.insert("x-tenant", "b".parse().unwrap());
        let get = http::Method::GET;
        assert!(a.decide(&facts(&get, "/reviews/1", &h, None)).allow);
        assert!(
            !a.decide(&facts(&http::Method::POST, "/reviews/1", &h, None))
                .allow
        );
        assert!(!a.decide(&facts(&get, "/ratings", &h, None)).allow);
        let empty = http::HeaderMap::new();
        assert!(!a.decide(&facts(&get, "/reviews/1", &empty, None)).allow);
    }

    #[test]
    fn claims_and_scopes_of_the_right_type() {
        let mut r = rule(Action::Allow);
        r.jwt = Some(JwtPrincipal {
            provider: Some("idp".into()),
            claims: vec![ClaimMatch {
                name: "groups".into(),
                array: true,
                values: vec!["admin".into()],
            }],
            scopes: vec!["read".into()],
        });
        let a = authz(vec![r], Action::Deny);
        let h = http::HeaderMap::new();
        let get = http::Method::GET;
        let token = |claims: serde_json::Value| Verified {
            provider: "idp".into(),
            claims: std::sync::Arc::new(claims),
        };
        let ok = token(serde_json::json!({"groups": ["x", "admin"], "scope": "read write"}));
        assert!(a.decide(&facts(&get, "/", &h, Some(&ok))).allow);
        let string = token(serde_json::json!({"groups": "admin", "scope": "read"}));
        assert!(!a.decide(&facts(&get, "/", &h, Some(&string))).allow);
        let no_scope = token(serde_json::json!({"groups": ["admin"], "scope": "write"}));
        assert!(!a.decide(&facts(&get, "/", &h, Some(&no_scope))).allow);
        assert!(!a.decide(&facts(&get, "/", &h, None)).allow);
    }

    /// The index by path decides as a scan of every rule would: rule sets
    /// and requests drawn (deterministically) from a few paths, so that
    /// exact, prefix, suffix and any-path patterns often meet.
    #[test]
    fn the_index_decides_as_a_scan_of_every_rule() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let pieces = [
            "", "/", "/a", "/a/", "/a/b", "/ab", "/b", "/b/a", "a", "/a/b/c",
        ];
        let methods = [http::Method::GET, http::Method::POST];
        let h = http::HeaderMap::new();
        let mut decided = 0;
        for _ in 0..400 {
            let mut rules = Vec::new();
            for i in 0..1 + next(12) {
                let mut r = rule(if next(2) == 0 {
                    Action::Allow
                } else {
                    Action::Deny
                });
                r.name = format!("r{i}");
                for _ in 0..next(4) {
                    let p = pieces[next(pieces.len())];
                    r.paths.push(match next(4) {
                        0 => p.to_string(),
                        1 => format!("{p}*"),
                        2 => format!("*{p}"),
                        _ => "*".into(),
                    });
                }
                if next(3) == 0 {
                    r.methods.push(methods[next(2)].to_string());
                }
                rules.push(r);
            }
            let a = authz(rules, Action::Deny);
            for _ in 0..20 {
                let path = format!("{}{}", pieces[next(pieces.len())], pieces[next(3)]);
                let f = facts(&methods[next(2)], &path, &h, None);
                let scan = a.rules.iter().position(|r| r.matches(&f));
                let want = scan.map(|i| a.rules[i].name.clone());
                decided += usize::from(want.is_some());
                assert_eq!(a.decide(&f).rule, want, "{path}");
            }
        }
        // Most requests met a rule: the comparison is not of defaults.
        assert!(decided > 4000, "{decided}");
    }

    #[test]
    fn on_a_connection_request_rules_deny_but_never_allow() {
        let mut allow = rule(Action::Allow);
        allow.paths = vec!["/x".into()];
        let a = authz(vec![allow], Action::Deny);
        let l4 = Facts {
            http: None,
            client: None,
            identity: Some("spiffe://td/ns/a/sa/b"),
            jwt: None,
            host: None,
        };
        assert!(!a.decide(&l4).allow);
        let mut deny = rule(Action::Deny);
        deny.methods = vec!["GET".into()];
        let a = authz(vec![deny], Action::Allow);
        assert_eq!(a.decide(&l4).rule.as_deref(), Some("r"));
        assert!(!a.decide(&l4).allow);
    }

    #[test]
    fn hosts_match_exactly_or_under_a_wildcard_on_requests_and_connections() {
        let mut r = rule(Action::Allow);
        r.hosts = vec!["API.partner.test".into(), "*.files.test".into()];
        let a = authz(vec![r], Action::Deny);
        let h = http::HeaderMap::new();
        let get = http::Method::GET;
        let at = |host: Option<&'static str>| Facts {
            host,
            ..facts(&get, "/", &h, None)
        };
        assert!(a.decide(&at(Some("api.partner.test"))).allow);
        assert!(a.decide(&at(Some("eu.files.test"))).allow);
        for refused in [
            Some("files.test"),
            Some("other.partner.test"),
            Some("api.partner.test.evil"),
            Some("xfiles.test"),
            None,
        ] {
            assert!(!a.decide(&at(refused)).allow, "{refused:?}");
        }
        let l4 = |host| Facts {
            http: None,
            client: None,
            identity: None,
            jwt: None,
            host,
        };
        assert!(a.decide(&l4(Some("a.files.test"))).allow);
        assert!(!a.decide(&l4(Some("b.partner.test"))).allow);
    }
}
