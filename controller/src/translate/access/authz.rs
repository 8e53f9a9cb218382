//! AuthorizationPolicies (the mesh's, GEP-3779 shape): each rule becomes an
//! `AuthzRule`, and the policies on one target become one `Authorization`:
//! every Deny policy's rules, then every Allow policy's, oldest policy
//! first; Deny by default once an Allow policy applies, else the default of
//! the namespace (`weft.dev/default-inbound`, for workloads only).

use super::{by_age, checks};
use crate::policies::{AuthorizationPolicy, AuthorizationRule, PolicyAction, Source};
use crate::resources::{Kind, ObjKey, Object, GATEWAY_GROUP};
use crate::store::Store;
use std::collections::BTreeMap;
use weft_api::{Action, Authorization, AuthzRule};

/// The annotation (or label) of a Namespace saying who may call its
/// workloads when no AuthorizationPolicy allows: `all` (the default),
/// `deny`, or `all-authenticated`.
pub const DEFAULT_INBOUND: &str = "weft.dev/default-inbound";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NamespaceDefault {
    All,
    Deny,
    AllAuthenticated,
}

/// The default of namespace `ns`; an unknown value denies (fail closed).
pub fn namespace_default(store: &Store, ns: &str) -> NamespaceDefault {
    let Some(Object::Namespace(n)) = store.lookup(Kind::Namespace, "", ns) else {
        return NamespaceDefault::All;
    };
    let meta = &n.metadata;
    let of = |m: &Option<BTreeMap<String, String>>| m.as_ref()?.get(DEFAULT_INBOUND).cloned();
    match of(&meta.annotations)
        .or_else(|| of(&meta.labels))
        .as_deref()
    {
        None | Some("all") => NamespaceDefault::All,
        Some("all-authenticated") => NamespaceDefault::AllAuthenticated,
        Some(_) => NamespaceDefault::Deny,
    }
}

/// The policies in `ns` targeting the Service or Gateway `name`, oldest
/// first.
pub fn targeting<'s>(
    store: &'s Store,
    kind: &str,
    ns: &str,
    name: &str,
) -> Vec<(&'s ObjKey, &'s AuthorizationPolicy)> {
    let group = if kind == "Gateway" { GATEWAY_GROUP } else { "" };
    let all = store
        .of_kind(Kind::AuthorizationPolicy)
        .filter(|(key, _)| key.namespace == ns)
        .filter_map(|(key, entry)| match &entry.object {
            Object::AuthorizationPolicy(p) => Some((key, p)),
            _ => None,
        })
        .filter(|(_, p)| {
            let t = &p.spec.target_refs;
            t.iter()
                .any(|t| t.group == group && t.kind == kind && t.name == name)
        });
    by_age(all, |p| &p.metadata)
}

/// The action and rules of one policy, or why it is invalid.
pub fn compile(
    key: &ObjKey,
    policy: &AuthorizationPolicy,
    trust_domain: &str,
) -> Result<(Action, Vec<AuthzRule>), String> {
    let action = match policy.spec.action {
        Some(PolicyAction::Allow) => Action::Allow,
        Some(PolicyAction::Deny) => Action::Deny,
        None => return Err("no action (Allow or Deny)".into()),
    };
    if let Some(t) = policy
        .spec
        .target_refs
        .iter()
        .find(|t| t.section_name.is_some())
    {
        return Err(format!(
            "targetRef {}: sectionName is not supported",
            t.name
        ));
    }
    let rules = policy
        .spec
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let name = format!("{}/{}/rule-{i}", key.namespace, key.name);
            rule(name, action, r, &key.namespace, trust_domain)
                .map_err(|e| format!("rule {i}: {e}"))
        })
        .collect::<Result<_, _>>()?;
    Ok((action, rules))
}

fn rule(
    name: String,
    action: Action,
    r: &AuthorizationRule,
    ns: &str,
    trust_domain: &str,
) -> Result<AuthzRule, String> {
    for p in &r.paths {
        checks::path_pattern(p)?;
    }
    if let Some(bad) = r.hosts.iter().find(|h| !super::super::hostname::valid(h)) {
        return Err(format!("host {bad:?} is not a DNS name or *.suffix"));
    }
    let spiffe_ids = r
        .sources
        .iter()
        .map(|s| source(s, ns, trust_domain))
        .collect::<Result<_, _>>()?;
    Ok(AuthzRule {
        name,
        action,
        methods: r.methods.iter().map(|m| m.to_ascii_uppercase()).collect(),
        paths: r.paths.clone(),
        spiffe_ids,
        hosts: r.hosts.clone(),
        ..Default::default()
    })
}

/// The SPIFFE ID (or pattern) a source stands for.
fn source(s: &Source, ns: &str, trust_domain: &str) -> Result<String, String> {
    match s.type_.as_str() {
        "ServiceAccount" => {
            let sa = s.service_account.as_ref().filter(|sa| !sa.name.is_empty());
            let sa = sa.ok_or("a ServiceAccount source needs serviceAccount.name")?;
            let sa_ns = sa.namespace.as_deref().filter(|n| !n.is_empty());
            let sa_ns = sa_ns.unwrap_or(ns);
            Ok(format!("spiffe://{trust_domain}/ns/{sa_ns}/sa/{}", sa.name))
        }
        "SPIFFE" => match s.spiffe.as_deref().unwrap_or_default() {
            "" => Err("a SPIFFE source has no spiffe ID".into()),
            id if !id.starts_with("spiffe://") => {
                Err(format!("spiffe {id:?} does not start with spiffe://"))
            }
            id => Ok(id.to_string()),
        },
        other => Err(format!(
            "source type {other:?} is not ServiceAccount or SPIFFE"
        )),
    }
}

/// One Authorization named `name` of `policies` (oldest first), with
/// `default` when no Allow policy is among them; `Err` names the first
/// invalid policy.
pub fn combine(
    policies: &[(&ObjKey, &AuthorizationPolicy)],
    trust_domain: &str,
    name: String,
    default: NamespaceDefault,
) -> Result<Authorization, String> {
    let (mut rules, mut allow) = (Vec::new(), Vec::new());
    for (key, policy) in policies {
        let (action, compiled) = compile(key, policy, trust_domain)
            .map_err(|e| format!("AuthorizationPolicy {}/{}: {e}", key.namespace, key.name))?;
        match action {
            Action::Deny => rules.extend(compiled),
            Action::Allow => allow.push(compiled),
        }
    }
    let any_allow = !allow.is_empty();
    rules.extend(allow.into_iter().flatten());
    let default_action = match (any_allow, default) {
        (true, _) | (false, NamespaceDefault::Deny) => Action::Deny,
        (false, NamespaceDefault::All) => Action::Allow,
        (false, NamespaceDefault::AllAuthenticated) => {
            rules.push(AuthzRule {
                name: "default-inbound".into(),
                action: Action::Allow,
                authenticated: true,
                ..Default::default()
            });
            Action::Deny
        }
    };
    Ok(Authorization {
        policy: name,
        default_action,
        rules,
    })
}
