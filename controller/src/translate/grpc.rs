//! GRPCRoute rules to IR routes. A gRPC call is an HTTP/2 POST to
//! `/<service>/<method>`, so a method match becomes a path match and the
//! rest (headers, filters, weights) is what HTTPRoutes use. Backends speak
//! h2c unless their Service port says otherwise.

use super::backend::{backend_ref, Caller, RouteKind};
use super::rules::{self, Ctx, Problems, RouteOrder, Rule, SortKey};
use crate::resources::ObjKey;
use crate::store::Store;
use gateway_api::experimental::grpcroutes::{
    GrpcRoute, GrpcRouteRules, GrpcRouteRulesMatches, GrpcRouteRulesMatchesHeadersType,
    GrpcRouteRulesMatchesMethodType,
};
use std::cmp::Reverse;
use std::collections::BTreeMap;
use weft_api::{Cluster, HttpMatch, KeyMatch, PathMatch, Timeouts};

/// Converts every rule of the GRPCRoute `key` for `caller`: the rules that
/// could be converted, with their indices, and what went wrong.
pub fn convert_route(
    store: &Store,
    caller: Caller<'_>,
    key: &ObjKey,
    route: &GrpcRoute,
    clusters: &mut BTreeMap<String, Cluster>,
) -> (Vec<(usize, Rule)>, Problems) {
    let mut cx = Ctx::new(
        store,
        caller,
        RouteKind::Grpc,
        key,
        &route.metadata,
        clusters,
    );
    let mut problems = Problems::default();
    let converted = route
        .spec
        .rules
        .iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, r)| convert(&mut cx, r, i, &mut problems).map(|rule| (i, rule)))
        .collect();
    (converted, problems)
}

fn convert(
    cx: &mut Ctx<'_>,
    rule: &GrpcRouteRules,
    index: usize,
    problems: &mut Problems,
) -> Option<Rule> {
    let default_match = [GrpcRouteRulesMatches::default()];
    let matches = match rule.matches.as_deref() {
        Some(m) if !m.is_empty() => m,
        _ => &default_match[..],
    };
    let mut out = Vec::new();
    for (j, m) in matches.iter().enumerate() {
        match convert_match(m, &cx.order, index, j) {
            Ok(converted) => out.push(converted),
            Err(e) => {
                problems.unsupported.get_or_insert(e);
                return None;
            }
        }
    }
    let raw = rules::as_http_filters(&rule.filters);
    let filters = match rules::filters(cx, &raw, false, problems) {
        Ok(f) => f,
        Err(e) => {
            problems.unsupported.get_or_insert(e);
            return None;
        }
    };
    let refs = rule.backend_refs.iter().flatten();
    let refs = refs.map(|b| (backend_ref!(b), b.weight, &b.filters));
    let backends = rules::backends(cx, refs, false, problems)?;
    // The same shape as an HTTPRoute rule's.
    let session = rule
        .session_persistence
        .as_ref()
        .map(|sp| {
            let text = serde_json::to_value(sp).map_err(|e| e.to_string())?;
            serde_json::from_value(text)
                .map_err(|e| e.to_string())
                .and_then(|sp| rules::session(&sp))
        })
        .transpose();
    let session = match session {
        Ok(s) => s,
        Err(e) => {
            problems.unsupported.get_or_insert(e);
            return None;
        }
    };
    Some(Rule {
        name: rule.name.clone(),
        matches: out,
        filters,
        backends,
        timeouts: Timeouts::default(),
        retry: None,
        traffic: Rule::traffic_of(cx, rule.name.as_deref()),
        session,
    })
}

/// A service or method name as an exact match allows (no `/`, no regex).
fn name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

/// One GRPCRoute match as an HTTP match, with its precedence: more
/// characters of service, then of method, then more header matches win (the
/// GRPCRoute rules), then the route's age and name.
fn convert_match(
    m: &GrpcRouteRulesMatches,
    order: &RouteOrder,
    rule: usize,
    index: usize,
) -> Result<(SortKey, HttpMatch), String> {
    let method = m.method.as_ref();
    let service = method
        .and_then(|m| m.service.as_deref())
        .filter(|s| !s.is_empty());
    let name = method
        .and_then(|m| m.method.as_deref())
        .filter(|s| !s.is_empty());
    let regex = matches!(
        method.and_then(|m| m.r#type.as_ref()),
        Some(GrpcRouteRulesMatchesMethodType::RegularExpression)
    );
    if method.is_some() && service.is_none() && name.is_none() {
        return Err("a method match needs a service or a method".into());
    }
    let path = if regex {
        for part in [service, name].into_iter().flatten() {
            regex::Regex::new(part).map_err(|e| format!("method regex {part:?}: {e}"))?;
        }
        PathMatch::Regex(format!(
            "/(?:{})/(?:{})",
            service.unwrap_or("[^/]+"),
            name.unwrap_or("[^/]+")
        ))
    } else {
        for part in [service, name].into_iter().flatten() {
            if !name_ok(part) {
                return Err(format!("{part:?} is not a gRPC service or method name"));
            }
        }
        match (service, name) {
            (Some(s), Some(n)) => PathMatch::Exact(format!("/{s}/{n}")),
            (Some(s), None) => PathMatch::Prefix(format!("/{s}")),
            (None, Some(n)) => PathMatch::Regex(format!("/[^/]+/{}", regex::escape(n))),
            (None, None) => PathMatch::Prefix("/".into()),
        }
    };
    let mut headers: Vec<KeyMatch> = Vec::new();
    for h in m.headers.iter().flatten() {
        // Only the first of several matches on one header name counts.
        if headers.iter().any(|k| k.name.eq_ignore_ascii_case(&h.name)) {
            continue;
        }
        let regex = matches!(
            h.r#type,
            Some(GrpcRouteRulesMatchesHeadersType::RegularExpression)
        );
        headers.push(KeyMatch {
            name: h.name.to_ascii_lowercase(),
            value: rules::string_match(regex, &h.value)?,
        });
    }
    let key = (
        0,
        Reverse(service.map_or(0, str::len)),
        Reverse(false),
        Reverse(name.map_or(0, str::len)),
        Reverse(headers.len()),
        order.clone(),
        rule,
        index,
    );
    let matches = HttpMatch {
        path,
        headers,
        query_params: vec![],
        method: None,
    };
    Ok((key, matches))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_api::experimental::grpcroutes::GrpcRouteRulesMatchesMethod;

    fn method(service: Option<&str>, name: Option<&str>, regex: bool) -> GrpcRouteRulesMatches {
        GrpcRouteRulesMatches {
            method: Some(GrpcRouteRulesMatchesMethod {
                service: service.map(String::from),
                method: name.map(String::from),
                r#type: Some(if regex {
                    GrpcRouteRulesMatchesMethodType::RegularExpression
                } else {
                    GrpcRouteRulesMatchesMethodType::Exact
                }),
            }),
            headers: None,
        }
    }

    fn path(m: GrpcRouteRulesMatches) -> Result<PathMatch, String> {
        convert_match(&m, &Default::default(), 0, 0).map(|(_, m)| m.path)
    }

    #[test]
    fn methods_become_paths() {
        let svc = "pkg.Echo";
        assert_eq!(
            path(method(Some(svc), Some("Say"), false)),
            Ok(PathMatch::Exact("/pkg.Echo/Say".into()))
        );
        assert_eq!(
            path(method(Some(svc), None, false)),
            Ok(PathMatch::Prefix("/pkg.Echo".into()))
        );
        assert_eq!(
            path(method(None, Some("Say"), false)),
            Ok(PathMatch::Regex("/[^/]+/Say".into()))
        );
        assert_eq!(
            path(method(Some(r"pkg\..*"), None, true)),
            Ok(PathMatch::Regex(r"/(?:pkg\..*)/(?:[^/]+)".into()))
        );
        assert!(path(method(Some("a/b"), Some("c"), false)).is_err());
        assert!(path(method(Some("("), None, true)).is_err());
        assert!(path(method(None, None, false)).is_err());
    }

    #[test]
    fn service_then_method_then_headers_take_precedence() {
        let key = |m| convert_match(&m, &Default::default(), 0, 0).unwrap().0;
        let both = key(method(Some("pkg.Echo"), Some("Say"), false));
        let service = key(method(Some("pkg.Echo"), None, false));
        let longer_service = key(method(Some("pkg.EchoLonger"), None, false));
        let only_method = key(method(None, Some("Say"), false));
        assert!(both < service);
        assert!(longer_service < both);
        assert!(service < only_method);
    }
}
