//! HTTPRoute rules to IR routes: matches, filters, backends and timeouts, and
//! the Gateway API precedence key that orders routes within a virtual host.

use super::backend::{self, BackendRef, Unresolved};
pub use super::rule_options::session;
use super::rule_options::{retry, timeouts};
use crate::store::Store;
use gateway_api::experimental::httproutes::{
    HttpRouteRules, HttpRouteRulesFilters, HttpRouteRulesFiltersType as FilterType,
    HttpRouteRulesMatches, HttpRouteRulesMatchesHeadersType as HeaderType,
    HttpRouteRulesMatchesPathType as PathType, HttpRouteRulesMatchesQueryParamsType as QueryType,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::cmp::Reverse;
use std::collections::BTreeMap;
use weft_api::{
    BackendTarget, Cluster, Cors, HeaderModifier, HttpFilter, HttpMatch, KeyMatch, Mirror,
    PathMatch, PathModifier, Redirect, Retry, Rewrite, Route, SessionPersistence, StringMatch,
    Timeouts, TrafficRules, WeightedBackend,
};

/// Orders routes within a virtual host, most specific first: exact paths,
/// then regular expressions, then longer prefixes; then a method match; then
/// more header matches; then more query matches; then the older route, the
/// route's namespace/name, and the rule and match order.
pub type SortKey = (
    u8,
    Reverse<usize>,
    Reverse<bool>,
    Reverse<usize>,
    Reverse<usize>,
    RouteOrder,
    usize,
    usize,
);

/// Creation timestamp, namespace, name: the tie-breakers between routes.
pub type RouteOrder = (String, String, String);

/// A rule converted: one IR match per HTTPRoute match, sharing the action.
#[derive(Clone)]
pub struct Rule {
    /// The rule's `name`: a policy may target it (`sectionName`).
    pub name: Option<String>,
    pub matches: Vec<(SortKey, HttpMatch)>,
    pub filters: Vec<HttpFilter>,
    pub backends: Vec<WeightedBackend>,
    pub timeouts: Timeouts,
    pub retry: Option<Retry>,
    /// Faults and rate limits a BackendTrafficPolicy on the route gives it.
    pub traffic: Option<TrafficRules>,
    pub session: Option<SessionPersistence>,
}

impl Rule {
    /// The IR route of match `j` of this rule (the `i`-th of route
    /// `ns/name`), guarded by `access`.
    pub fn route(&self, ns: &str, name: &str, i: usize, j: usize, access: Option<String>) -> Route {
        Route {
            name: format!("{ns}/{name}/rule/{i}/match/{j}"),
            matches: self.matches[j].1.clone(),
            filters: self.filters.clone(),
            backends: self.backends.clone(),
            timeouts: self.timeouts.clone(),
            retry: self.retry.clone(),
            access,
            traffic: self.traffic.clone(),
            session: self.session.clone(),
        }
    }

    /// The policy's faults and rate limits for the rule `name` of the
    /// route `cx` converts.
    pub fn traffic_of(cx: &Ctx<'_>, name: Option<&str>) -> Option<TrafficRules> {
        let store = cx.caller.trust().rate_limit_store;
        super::traffic::for_rule(
            cx.store,
            cx.namespace,
            cx.kind.name(),
            cx.route,
            name,
            store,
        )
    }
}

/// What went wrong while converting, for the route's conditions.
#[derive(Default)]
pub struct Problems {
    /// A value weft does not support: the rule is dropped.
    pub unsupported: Option<String>,
    /// A reference that did not resolve: its share of traffic gets 500.
    pub unresolved: Option<Unresolved>,
}

pub struct Ctx<'a> {
    pub store: &'a Store,
    pub caller: backend::Caller<'a>,
    pub kind: backend::RouteKind,
    pub namespace: &'a str,
    /// The route's name.
    pub route: &'a str,
    pub order: RouteOrder,
    pub clusters: &'a mut BTreeMap<String, Cluster>,
}

/// Converts every rule of `route` (the HTTPRoute `key`) for `caller`: the
/// rules that could be converted, with their indices, and what went wrong.
pub fn convert_route(
    store: &Store,
    caller: backend::Caller<'_>,
    key: &crate::resources::ObjKey,
    route: &gateway_api::experimental::httproutes::HttpRoute,
    clusters: &mut BTreeMap<String, Cluster>,
) -> (Vec<(usize, Rule)>, Problems) {
    let kind = backend::RouteKind::Http;
    let mut cx = Ctx::new(store, caller, kind, key, &route.metadata, clusters);
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

/// Creation time, namespace, name of a route: its place among routes.
pub fn route_order(key: &crate::resources::ObjKey, meta: &ObjectMeta) -> RouteOrder {
    let created = meta
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.to_string())
        .unwrap_or_default();
    (created, key.namespace.clone(), key.name.clone())
}

impl<'a> Ctx<'a> {
    /// The context to convert the rules of route `key` of `kind`.
    pub fn new(
        store: &'a Store,
        caller: backend::Caller<'a>,
        kind: backend::RouteKind,
        key: &'a crate::resources::ObjKey,
        meta: &ObjectMeta,
        clusters: &'a mut BTreeMap<String, Cluster>,
    ) -> Ctx<'a> {
        Ctx {
            store,
            caller,
            kind,
            namespace: &key.namespace,
            route: &key.name,
            order: route_order(key, meta),
            clusters,
        }
    }
}

pub fn convert(
    cx: &mut Ctx<'_>,
    rule: &HttpRouteRules,
    index: usize,
    problems: &mut Problems,
) -> Option<Rule> {
    let default_match = [HttpRouteRulesMatches::default()];
    let matches = match rule.matches.as_deref() {
        Some(m) if !m.is_empty() => m,
        _ => &default_match[..],
    };
    let mut out = Vec::new();
    for (j, m) in matches.iter().enumerate() {
        match convert_match(m) {
            Ok(hm) => out.push((sort_key(&hm, &cx.order, index, j), hm)),
            Err(e) => {
                problems.unsupported.get_or_insert(e);
                return None;
            }
        }
    }
    let prefix_only = out
        .iter()
        .all(|(_, m)| matches!(m.path, PathMatch::Prefix(_)));
    let rule_filters = match filters(
        cx,
        rule.filters.as_deref().unwrap_or_default(),
        prefix_only,
        problems,
    ) {
        Ok(f) => f,
        Err(e) => {
            problems.unsupported.get_or_insert(e);
            return None;
        }
    };
    let refs = rule.backend_refs.iter().flatten();
    let refs = refs.map(|b| (backend::backend_ref!(b), b.weight, &b.filters));
    let backends = backends(cx, refs, prefix_only, problems)?;
    let options = timeouts(rule).and_then(|t| {
        let session = rule.session_persistence.as_ref().map(session).transpose()?;
        Ok((t, retry(rule)?, session))
    });
    let (timeouts, retry, session) = match options {
        Ok(t) => t,
        Err(e) => {
            problems.unsupported.get_or_insert(e);
            return None;
        }
    };
    Some(Rule {
        name: rule.name.clone(),
        matches: out,
        filters: rule_filters,
        backends,
        timeouts,
        retry,
        traffic: Rule::traffic_of(cx, rule.name.as_deref()),
        session,
    })
}

/// The weighted backends of a rule, from (reference, weight, filters) of
/// any route kind; `None` (the rule is dropped) for a filter weft does not
/// support.
pub fn backends<'b, F: serde::Serialize + 'b>(
    cx: &mut Ctx<'_>,
    refs: impl IntoIterator<Item = (BackendRef<'b>, Option<i32>, &'b Option<Vec<F>>)>,
    prefix_only: bool,
    problems: &mut Problems,
) -> Option<Vec<WeightedBackend>> {
    let mut out = Vec::new();
    for (r, weight, filters) in refs {
        match weighted(cx, &r, weight, filters, prefix_only, problems) {
            Ok(Some(backend)) => out.push(backend),
            Ok(None) => {}
            Err(e) => {
                problems.unsupported.get_or_insert(e);
                return None;
            }
        }
    }
    Some(out)
}

/// One backendRef with its weight and filters (any route kind's, which
/// have the shape of HTTPRoute filters): `None` when its weight is 0, `Err`
/// for a filter weft does not support. A reference that does not resolve
/// gets its share of requests answered with 500 (HTTPRoute) or 503 (gRPC's
/// UNAVAILABLE).
pub fn weighted<F: serde::Serialize>(
    cx: &mut Ctx<'_>,
    r: &BackendRef<'_>,
    weight: Option<i32>,
    raw_filters: &Option<Vec<F>>,
    prefix_only: bool,
    problems: &mut Problems,
) -> Result<Option<WeightedBackend>, String> {
    let weight = u32::try_from(weight.unwrap_or(1)).unwrap_or(0);
    let target = match backend::resolve(cx.store, cx.caller, cx.kind, cx.namespace, r, cx.clusters)
    {
        Ok(cluster) => BackendTarget::Cluster(cluster),
        Err(unresolved) => {
            problems.unresolved.get_or_insert(unresolved);
            let status = match cx.kind {
                backend::RouteKind::Grpc => 503,
                _ => 500,
            };
            BackendTarget::Invalid { status }
        }
    };
    let raw = as_http_filters(raw_filters);
    let filters = filters(cx, &raw, prefix_only, problems)?;
    Ok((weight > 0).then_some(WeightedBackend {
        weight,
        target,
        filters,
    }))
}

/// Filters of any route kind, or of a backendRef, read as HTTPRoute rule
/// filters: the generated types differ, the fields are the same.
pub fn as_http_filters<F: serde::Serialize>(raw: &Option<Vec<F>>) -> Vec<HttpRouteRulesFilters> {
    raw.as_ref()
        .map(|f| {
            serde_json::from_value(serde_json::to_value(f).unwrap_or_default()).unwrap_or_default()
        })
        .unwrap_or_default()
}

fn sort_key(m: &HttpMatch, order: &RouteOrder, rule: usize, index: usize) -> SortKey {
    let (rank, len) = match &m.path {
        PathMatch::Exact(p) => (0, p.len()),
        PathMatch::Regex(p) => (1, p.len()),
        PathMatch::Prefix(p) => (2, p.len()),
    };
    (
        rank,
        Reverse(len),
        Reverse(m.method.is_some()),
        Reverse(m.headers.len()),
        Reverse(m.query_params.len()),
        order.clone(),
        rule,
        index,
    )
}

fn convert_match(m: &HttpRouteRulesMatches) -> Result<HttpMatch, String> {
    let path = m.path.as_ref();
    let value = path
        .and_then(|p| p.value.clone())
        .unwrap_or_else(|| "/".into());
    let path = match path
        .and_then(|p| p.r#type.clone())
        .unwrap_or(PathType::PathPrefix)
    {
        PathType::Exact | PathType::PathPrefix if !value.starts_with('/') => {
            return Err(format!("path {value:?} must start with /"));
        }
        PathType::Exact => PathMatch::Exact(value),
        PathType::PathPrefix => {
            let trimmed = value.trim_end_matches('/');
            PathMatch::Prefix(if trimmed.is_empty() {
                "/".into()
            } else {
                trimmed.into()
            })
        }
        PathType::RegularExpression => {
            regex::Regex::new(&value).map_err(|e| format!("path regex {value:?}: {e}"))?;
            PathMatch::Regex(value)
        }
    };
    let mut headers: Vec<KeyMatch> = Vec::new();
    for h in m.headers.iter().flatten() {
        // Only the first of several matches on one header name counts.
        if headers.iter().any(|k| k.name.eq_ignore_ascii_case(&h.name)) {
            continue;
        }
        let regex = matches!(h.r#type, Some(HeaderType::RegularExpression));
        headers.push(KeyMatch {
            name: h.name.to_ascii_lowercase(),
            value: string_match(regex, &h.value)?,
        });
    }
    let mut query_params: Vec<KeyMatch> = Vec::new();
    for q in m.query_params.iter().flatten() {
        if query_params.iter().any(|k| k.name == q.name) {
            continue;
        }
        let regex = matches!(q.r#type, Some(QueryType::RegularExpression));
        query_params.push(KeyMatch {
            name: q.name.clone(),
            value: string_match(regex, &q.value)?,
        });
    }
    let method = m.method.as_ref().map(enum_str);
    Ok(HttpMatch {
        path,
        headers,
        query_params,
        method,
    })
}

pub fn string_match(regex: bool, value: &str) -> Result<StringMatch, String> {
    if regex {
        regex::Regex::new(value).map_err(|e| format!("regex {value:?}: {e}"))?;
        Ok(StringMatch::Regex(value.into()))
    } else {
        Ok(StringMatch::Exact(value.into()))
    }
}

/// The wire spelling of a generated enum.
pub fn enum_str<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

/// The request and response header modifiers are distinct generated types
/// of the same shape: lowercased names, values as given.
macro_rules! modifier {
    ($m:expr) => {{
        let pair = |h: (&String, &String)| (h.0.to_ascii_lowercase(), h.1.clone());
        HeaderModifier {
            set: $m
                .set
                .iter()
                .flatten()
                .map(|h| pair((&h.name, &h.value)))
                .collect(),
            add: $m
                .add
                .iter()
                .flatten()
                .map(|h| pair((&h.name, &h.value)))
                .collect(),
            remove: $m
                .remove
                .iter()
                .flatten()
                .map(|n| n.to_ascii_lowercase())
                .collect(),
        }
    }};
}

pub fn filters(
    cx: &mut Ctx<'_>,
    raw: &[HttpRouteRulesFilters],
    prefix_only: bool,
    problems: &mut Problems,
) -> Result<Vec<HttpFilter>, String> {
    let mut out = Vec::new();
    let missing = |t: &str| format!("filter {t} has no {t} field");
    for f in raw {
        let filter = match f.r#type {
            FilterType::RequestHeaderModifier => {
                let m = f
                    .request_header_modifier
                    .as_ref()
                    .ok_or_else(|| missing("RequestHeaderModifier"))?;
                HttpFilter::RequestHeaders(modifier!(m))
            }
            FilterType::ResponseHeaderModifier => {
                let m = f
                    .response_header_modifier
                    .as_ref()
                    .ok_or_else(|| missing("ResponseHeaderModifier"))?;
                HttpFilter::ResponseHeaders(modifier!(m))
            }
            FilterType::RequestRedirect => {
                let r = f
                    .request_redirect
                    .as_ref()
                    .ok_or_else(|| missing("RequestRedirect"))?;
                let path = r.path.as_ref().map(|p| {
                    path_modifier(
                        &enum_str(&p.r#type),
                        p.replace_full_path.as_ref(),
                        p.replace_prefix_match.as_ref(),
                    )
                });
                let status = u16::try_from(r.status_code.unwrap_or(302)).unwrap_or(0);
                if ![301, 302, 303, 307, 308].contains(&status) {
                    return Err(format!("redirect status {status} is not supported"));
                }
                HttpFilter::Redirect(Redirect {
                    scheme: r.scheme.as_ref().map(enum_str),
                    hostname: r.hostname.clone(),
                    port: r.port.and_then(|p| u16::try_from(p).ok()),
                    path: path.transpose()?,
                    status,
                })
            }
            FilterType::UrlRewrite => {
                let r = f
                    .url_rewrite
                    .as_ref()
                    .ok_or_else(|| missing("URLRewrite"))?;
                let path = r.path.as_ref().map(|p| {
                    path_modifier(
                        &enum_str(&p.r#type),
                        p.replace_full_path.as_ref(),
                        p.replace_prefix_match.as_ref(),
                    )
                });
                HttpFilter::Rewrite(Rewrite {
                    hostname: r.hostname.clone(),
                    path: path.transpose()?,
                })
            }
            FilterType::RequestMirror => {
                let m = f
                    .request_mirror
                    .as_ref()
                    .ok_or_else(|| missing("RequestMirror"))?;
                let r = backend::backend_ref!(m.backend_ref);
                let percent = match (&m.percent, &m.fraction) {
                    (Some(p), _) => f64::from(*p),
                    (None, Some(fr)) => {
                        let den = fr.denominator.unwrap_or(100);
                        if den <= 0 || fr.numerator < 0 || fr.numerator > den {
                            return Err("mirror fraction must be between 0 and 1".into());
                        }
                        100.0 * f64::from(fr.numerator) / f64::from(den)
                    }
                    (None, None) => 100.0,
                };
                match backend::resolve(cx.store, cx.caller, cx.kind, cx.namespace, &r, cx.clusters)
                {
                    Ok(cluster) => HttpFilter::Mirror(Mirror { cluster, percent }),
                    Err(unresolved) => {
                        problems.unresolved.get_or_insert(unresolved);
                        continue;
                    }
                }
            }
            FilterType::Cors => {
                let c = f.cors.as_ref().ok_or_else(|| missing("CORS"))?;
                let list = |v: &Option<Vec<String>>| v.clone().unwrap_or_default();
                let origins = list(&c.allow_origins);
                if origins.is_empty() {
                    return Err("CORS needs allowOrigins".into());
                }
                for o in origins.iter().filter(|o| *o != "*") {
                    if !(o.starts_with("http://") || o.starts_with("https://")) {
                        return Err(format!(
                            "CORS origin {o:?} must start with http:// or https://"
                        ));
                    }
                }
                let names = |v: &Option<Vec<String>>| {
                    list(v).iter().map(|n| n.to_ascii_lowercase()).collect()
                };
                HttpFilter::Cors(Cors {
                    allow_origins: origins,
                    allow_methods: list(&c.allow_methods),
                    allow_headers: names(&c.allow_headers),
                    expose_headers: names(&c.expose_headers),
                    allow_credentials: c.allow_credentials.unwrap_or(false),
                    // The API's default.
                    max_age: c.max_age.and_then(|a| u32::try_from(a).ok()).unwrap_or(5),
                })
            }
            FilterType::ExtensionRef | FilterType::ExternalAuth => {
                return Err(format!("filter {} is not supported", enum_str(&f.r#type)));
            }
        };
        let needs_prefix = match &filter {
            HttpFilter::Redirect(Redirect { path, .. })
            | HttpFilter::Rewrite(Rewrite { path, .. }) => {
                matches!(path, Some(PathModifier::ReplacePrefixMatch(_)))
            }
            _ => false,
        };
        if needs_prefix && !prefix_only {
            return Err("ReplacePrefixMatch needs PathPrefix matches".into());
        }
        out.push(filter);
    }
    let redirect = out.iter().any(|f| matches!(f, HttpFilter::Redirect(_)));
    let rewrite = out.iter().any(|f| matches!(f, HttpFilter::Rewrite(_)));
    if redirect && rewrite {
        return Err("RequestRedirect and URLRewrite cannot be used together".into());
    }
    Ok(out)
}

fn path_modifier(
    type_: &str,
    full: Option<&String>,
    prefix: Option<&String>,
) -> Result<PathModifier, String> {
    match (type_, full, prefix) {
        ("ReplaceFullPath", Some(p), _) => Ok(PathModifier::ReplaceFullPath(p.clone())),
        ("ReplacePrefixMatch", _, Some(p)) => Ok(PathModifier::ReplacePrefixMatch(p.clone())),
        (t, _, _) => Err(format!("path modifier {t} lacks its value")),
    }
}
