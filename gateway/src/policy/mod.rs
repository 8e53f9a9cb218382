//! Access policies on the request path: who may use a route.
//!
//! A route's `weft_api::Access` is compiled once per snapshot
//! ([`CompiledAccess`]) and checked for every request before anything
//! reaches a backend ([`CompiledAccess::check`]):
//!
//! - `jwt`: the request's token, found where a provider looks
//!   (`jwt::extract`), must pass one provider (`jwt::Provider::verify`);
//!   keys are local or fetched off the request path (`remote`); a token
//!   seen before with the same keys is not verified again (`cache`);
//! - `authz`: then each authorization decides on the request, its client
//!   and its token;
//! - `rewrite`: an allowed request gets its claims as headers (the client's
//!   own copies of those headers removed first) and loses its token.
//!
//! On an L4 port only what a connection shows is asked
//! ([`CompiledAccess::check_connection`]).
//!
//! Then what a BackendTrafficPolicy does to requests (`traffic`): rate
//! limits, local (`ratelimit`) and global (`global`, in Redis), and faults.

pub mod authz;
mod authz_index;
pub mod cache;
pub mod global;
pub mod jwt;
pub mod keys;
pub mod ratelimit;
pub mod remote;
pub mod rewrite;
pub mod traffic;

use authz::{Facts, HttpFacts};
use jwt::Verified;
use std::net::IpAddr;
use std::sync::Arc;
use weft_api::{Access, TokenSource};

pub struct CompiledAccess {
    pub name: String,
    invalid: Option<String>,
    jwt: Option<Authn>,
    authorization: Vec<authz::Compiled>,
}

struct Authn {
    optional: bool,
    providers: Vec<jwt::Provider>,
}

/// A request let through.
#[derive(Debug, Default)]
pub struct Allowed<'p> {
    /// The token that passed: its provider's index, what it said, and
    /// the provider's source that found it.
    pub jwt: Option<(usize, Verified, &'p TokenSource)>,
    /// The rule that allowed it (the last authorization's, when several).
    pub rule: Option<Arc<str>>,
}

/// A request refused, and why.
#[derive(Debug)]
pub struct Denied {
    /// 401 (no or bad token), 403 (authorization), 500 (invalid policy).
    pub status: u16,
    /// `jwt_missing`, `jwt_invalid`, `denied_by_rule`, `denied_by_default`,
    /// `policy_invalid`: the metrics' `reason` label.
    pub reason: &'static str,
    pub policy: String,
    pub rule: Option<Arc<str>>,
    /// A token that passed before authorization refused the request.
    pub token: Option<Verified>,
}

impl Denied {
    /// Refused by authorization `a` with `status`, as `d` decided.
    fn by(d: authz::Decided, a: &authz::Compiled, status: u16) -> Denied {
        Denied {
            status,
            reason: if d.rule.is_some() {
                "denied_by_rule"
            } else {
                "denied_by_default"
            },
            policy: a.policy.clone(),
            rule: d.rule,
            token: None,
        }
    }
}

/// What the request shows, for `check`.
pub struct Request<'a> {
    pub method: &'a http::Method,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a http::HeaderMap,
    pub client: Option<IpAddr>,
    pub identity: Option<&'a str>,
    /// The request's host, lowercase without port.
    pub host: Option<&'a str>,
}

impl CompiledAccess {
    /// Compiles an access policy; `Err` refuses the snapshot.
    pub fn compile(name: &str, access: &Access) -> Result<CompiledAccess, String> {
        let jwt = match &access.jwt {
            Some(j) => Some(Authn {
                optional: j.optional,
                providers: j
                    .providers
                    .iter()
                    .map(|p| {
                        jwt::Provider::compile(p).map_err(|e| format!("provider {}: {e}", p.name))
                    })
                    .collect::<Result<_, _>>()?,
            }),
            None => None,
        };
        let authorization = access
            .authorization
            .iter()
            .map(authz::Compiled::compile)
            .collect::<Result<_, _>>()?;
        Ok(CompiledAccess {
            name: name.to_string(),
            invalid: access.invalid.clone(),
            jwt,
            authorization,
        })
    }

    /// Whether any authorization decides after authentication.
    pub fn has_authorization(&self) -> bool {
        !self.authorization.is_empty()
    }

    /// The providers, for `rewrite`.
    pub fn providers(&self) -> &[jwt::Provider] {
        self.jwt.as_ref().map_or(&[], |j| &j.providers)
    }

    /// Decides on a request.
    pub async fn check(&self, req: &Request<'_>) -> Result<Allowed<'_>, Denied> {
        let denied = |status, reason, policy: &str, rule| Denied {
            status,
            reason,
            policy: policy.to_string(),
            rule,
            token: None,
        };
        if self.invalid.is_some() {
            return Err(denied(500, "policy_invalid", &self.name, None));
        }
        let mut allowed = Allowed::default();
        if let Some(authn) = &self.jwt {
            let mut seen = false;
            'providers: for (i, p) in authn.providers.iter().enumerate() {
                for (token, found) in jwt::extract(&p.config.extract_from, req.headers, req.query) {
                    seen = true;
                    match p.verify(token).await {
                        Ok(v) => {
                            allowed.jwt = Some((i, v, found));
                            break 'providers;
                        }
                        Err(why) => {
                            tracing::debug!(provider = %p.config.name, "token refused: {why}")
                        }
                    }
                }
            }
            match (&allowed.jwt, seen) {
                (Some(_), _) => {}
                (None, true) => return Err(denied(401, "jwt_invalid", &self.name, None)),
                (None, false) if authn.optional => {}
                (None, false) => return Err(denied(401, "jwt_missing", &self.name, None)),
            }
        }
        let facts = Facts {
            http: Some(HttpFacts {
                method: req.method,
                path: req.path,
                headers: req.headers,
            }),
            client: req.client,
            identity: req.identity,
            jwt: allowed.jwt.as_ref().map(|(_, v, _)| v),
            host: req.host,
        };
        for a in &self.authorization {
            let d = a.decide(&facts);
            if !d.allow {
                return Err(Denied {
                    token: allowed.jwt.map(|(_, v, _)| v),
                    ..Denied::by(d, a, 403)
                });
            }
            allowed.rule = d.rule.or(allowed.rule);
        }
        Ok(allowed)
    }

    /// Decides on a connection (an L4 port): no request, no token.
    pub fn check_connection(
        &self,
        client: Option<IpAddr>,
        identity: Option<&str>,
        host: Option<&str>,
    ) -> Result<(), Denied> {
        if self.invalid.is_some() || self.jwt.as_ref().is_some_and(|j| !j.optional) {
            return Err(Denied {
                status: 0,
                reason: if self.invalid.is_some() {
                    "policy_invalid"
                } else {
                    "jwt_missing"
                },
                policy: self.name.clone(),
                rule: None,
                token: None,
            });
        }
        let facts = Facts {
            http: None,
            client,
            identity,
            jwt: None,
            host,
        };
        for a in &self.authorization {
            let d = a.decide(&facts);
            if !d.allow {
                return Err(Denied::by(d, a, 0));
            }
        }
        Ok(())
    }
}
