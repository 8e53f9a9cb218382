//! One SecurityPolicy to the IR's `Access`: its JWT providers, then its
//! authorization rules (first match wins, else the default action, Deny
//! unless it says). A policy that cannot be built still yields an `Access`,
//! one that refuses everything (`invalid`), so the routes it protects fail
//! closed.

use super::{checks, jwt};
use crate::policies::{AuthorizationSpec, PolicyAction, Principal, SecurityPolicy, SecurityRule};
use crate::policies::{ClaimValueType, JwtPrincipalSpec};
use crate::resources::ObjKey;
use crate::store::Store;
use weft_api::{Access, Action, Authorization, AuthzRule, ClaimMatch, Jwt, JwtPrincipal};

/// The IR action of a policy's action.
pub fn action(a: PolicyAction) -> Action {
    match a {
        PolicyAction::Allow => Action::Allow,
        PolicyAction::Deny => Action::Deny,
    }
}

/// The Access the policy `key` asks for; `invalid` says why when it cannot
/// be built.
pub fn compile(store: &Store, key: &ObjKey, policy: &SecurityPolicy) -> Access {
    build(store, key, policy).unwrap_or_else(|message| Access {
        invalid: Some(message),
        ..Default::default()
    })
}

fn build(store: &Store, key: &ObjKey, policy: &SecurityPolicy) -> Result<Access, String> {
    let spec = &policy.spec;
    if spec.jwt.is_none() && spec.authorization.is_none() {
        return Err("the policy sets neither jwt nor authorization".into());
    }
    let jwt = spec
        .jwt
        .as_ref()
        .map(|j| jwt::jwt(store, &key.namespace, j))
        .transpose()?;
    let authorization = spec
        .authorization
        .as_ref()
        .map(|a| authorization(key, a, jwt.as_ref()))
        .transpose()?;
    Ok(Access {
        jwt,
        authorization: authorization.into_iter().collect(),
        invalid: None,
    })
}

fn authorization(
    key: &ObjKey,
    spec: &AuthorizationSpec,
    jwt: Option<&Jwt>,
) -> Result<Authorization, String> {
    let rules = spec
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let name = r.name.clone().unwrap_or_else(|| format!("rule-{i}"));
            rule(&name, r, jwt).map_err(|e| format!("authorization rule {name:?}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Authorization {
        policy: format!("SecurityPolicy/{}/{}", key.namespace, key.name),
        default_action: spec.default_action.map_or(Action::Deny, action),
        rules,
    })
}

fn rule(name: &str, r: &SecurityRule, jwt: Option<&Jwt>) -> Result<AuthzRule, String> {
    let action = r.action.ok_or("no action (Allow or Deny)")?;
    let methods = r.operation.iter().flat_map(|o| &o.methods);
    let mut out = AuthzRule {
        name: name.to_string(),
        action: self::action(action),
        methods: methods.map(|m| m.to_ascii_uppercase()).collect(),
        ..Default::default()
    };
    if let Some(p) = &r.principal {
        principal(&mut out, p, jwt)?;
    }
    Ok(out)
}

fn principal(out: &mut AuthzRule, p: &Principal, jwt: Option<&Jwt>) -> Result<(), String> {
    for c in &p.client_cidrs {
        checks::cidr(c)?;
    }
    out.client_cidrs = p.client_cidrs.clone();
    for id in &p.spiffe_ids {
        if !id.starts_with("spiffe://") {
            return Err(format!("spiffeID {id:?} does not start with spiffe://"));
        }
    }
    out.spiffe_ids = p.spiffe_ids.clone();
    for h in &p.headers {
        out.headers
            .push((checks::header_name(&h.name)?, h.values.clone()));
    }
    if let Some(j) = &p.jwt {
        out.jwt = Some(jwt_principal(j, jwt)?);
    }
    Ok(())
}

fn jwt_principal(j: &JwtPrincipalSpec, jwt: Option<&Jwt>) -> Result<JwtPrincipal, String> {
    let Some(jwt) = jwt else {
        return Err("it asks about a JWT but the policy has no jwt section".into());
    };
    if let Some(provider) = &j.provider {
        if !jwt.providers.iter().any(|p| &p.name == provider) {
            return Err(format!(
                "jwt provider {provider:?} is not one of this policy's"
            ));
        }
    }
    let claims = j
        .claims
        .iter()
        .map(|c| {
            if c.name.is_empty() {
                return Err("a jwt claim has no name".to_string());
            }
            Ok(ClaimMatch {
                name: c.name.clone(),
                array: c.value_type == ClaimValueType::StringArray,
                values: c.values.clone(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(JwtPrincipal {
        provider: j.provider.clone(),
        claims,
        scopes: j.scopes.clone(),
    })
}
