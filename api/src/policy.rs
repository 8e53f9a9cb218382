//! Access policies in the IR: who may use a route. A `SecurityPolicy`
//! (JWT authentication, then authorization) and the mesh's
//! `AuthorizationPolicy`s both become an [`Access`]; a route names the one
//! that applies to it, and the proxy checks it before anything reaches a
//! backend.

use serde::{Deserialize, Serialize};

/// What a request (or, on an L4 port, a connection) must pass: a JWT when
/// `jwt` is set, then every authorization in order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<Jwt>,
    /// All must allow; each decides on its own (first matching rule, else
    /// its default).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorization: Vec<Authorization>,
    /// The policy could not be built (a bad field, a missing reference):
    /// the route refuses everything with 500 rather than run unprotected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid: Option<String>,
}

/// JWT authentication: a token is good if one provider accepts it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwt {
    /// A request with no token passes as anonymous (a bad token does not).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
    pub providers: Vec<JwtProvider>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwtProvider {
    pub name: String,
    /// `iss` must equal it; not checked when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// `aud` must hold one of them; not checked when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    pub keys: JwksSource,
    /// Where the token is looked for, in order; never empty (the
    /// controller fills in `Authorization: Bearer`).
    pub extract_from: Vec<TokenSource>,
    /// Claims written to request headers: (header, claim path with `.`
    /// between nested names).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claim_to_headers: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forward_original_token: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recompute_route: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JwksSource {
    /// Fetched by the proxy, cached, refreshed in the background.
    Remote {
        uri: String,
        cache_seconds: u64,
        /// Roots an `https` server must chain to; the system's when empty.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        roots_pem: Vec<String>,
    },
    /// A JWKS document given in the config (inline or from a ConfigMap).
    Local(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenSource {
    /// A header, the token after `prefix` (`Bearer `, compared without case).
    Header {
        name: String,
        prefix: String,
    },
    Cookie(String),
    /// A query parameter.
    Param(String),
}

impl TokenSource {
    /// `Authorization: Bearer <token>`.
    pub fn bearer() -> TokenSource {
        TokenSource::Header {
            name: "authorization".into(),
            prefix: "Bearer ".into(),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    Allow,
    #[default]
    Deny,
}

/// Rules in order, the first that matches decides; none: `default_action`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authorization {
    /// Names the policy in metrics and logs (`<Kind>/<namespace>/<name>`).
    pub policy: String,
    pub default_action: Action,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<AuthzRule>,
}

/// Matches when every field given matches; within a field, any value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthzRule {
    pub name: String,
    pub action: Action,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// `/exact`, `/prefix/*`, `*suffix`, or `*` for any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// Client addresses (CIDR); the direct peer's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub client_cidrs: Vec<String>,
    /// The verified client certificate's SPIFFE ID; a trailing `*` matches
    /// any rest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spiffe_ids: Vec<String>,
    /// The client has a verified identity (any).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub authenticated: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtPrincipal>,
    /// Request headers: (name, values); the header must hold one of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, Vec<String>)>,
    /// The host asked for (an HTTP request's, without port; a TLS
    /// connection's server name): exact, or `*.suffix`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
}

impl AuthzRule {
    /// Whether the rule can be decided on a connection alone (an L4 port):
    /// it asks only about the client's address and identity.
    pub fn l4(&self) -> bool {
        self.methods.is_empty()
            && self.paths.is_empty()
            && self.jwt.is_none()
            && self.headers.is_empty()
    }
}

/// What a rule asks of the request's verified JWT.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwtPrincipal {
    /// The provider that accepted the token; any when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claims: Vec<ClaimMatch>,
    /// Each must be in the token's `scope` (space-separated).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimMatch {
    /// A claim path, `.` between nested names.
    pub name: String,
    /// `StringArray`: the claim is an array of strings holding one of the
    /// values; otherwise a string equal to one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub array: bool,
    pub values: Vec<String>,
}

/// The most providers one policy may name.
pub const MAX_PROVIDERS: usize = 4;

impl Access {
    /// Checks what a proxy cannot work without; the first problem found.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(jwt) = &self.jwt {
            if jwt.providers.is_empty() || jwt.providers.len() > MAX_PROVIDERS {
                return Err(format!(
                    "1 to {MAX_PROVIDERS} JWT providers, not {}",
                    jwt.providers.len()
                ));
            }
            for p in &jwt.providers {
                if p.extract_from.is_empty() {
                    return Err(format!("provider {}: no place to find a token", p.name));
                }
                for s in &p.extract_from {
                    match s {
                        TokenSource::Header { name, .. } => {
                            crate::validate::http_header_name(name)?
                        }
                        TokenSource::Cookie(n) | TokenSource::Param(n) if n.is_empty() => {
                            return Err(format!("provider {}: empty cookie or parameter", p.name));
                        }
                        _ => {}
                    }
                }
                for (header, claim) in &p.claim_to_headers {
                    crate::validate::http_header_name(header)?;
                    if claim.is_empty() {
                        return Err(format!("provider {}: empty claim", p.name));
                    }
                }
                if let JwksSource::Remote { uri, .. } = &p.keys {
                    if !(uri.starts_with("http://") || uri.starts_with("https://")) {
                        return Err(format!(
                            "provider {}: JWKS URI {uri:?} is not http(s)",
                            p.name
                        ));
                    }
                }
            }
        }
        for a in &self.authorization {
            for r in &a.rules {
                for (name, _) in &r.headers {
                    crate::validate::http_header_name(name)?;
                }
            }
        }
        Ok(())
    }
}
