//! `GatewayConfig::validate`: the checks a proxy runs on a snapshot before it
//! accepts it. A snapshot that fails them is NACKed and never served.

use crate::{ApiError, BackendTarget, GatewayConfig, HttpFilter, PathMatch, PathModifier};
use crate::{ConsistentHash, LbPolicy, Protocol, Route, StringMatch};
use std::collections::HashSet;

const REDIRECT_CODES: [u16; 5] = [301, 302, 303, 307, 308];

impl GatewayConfig {
    /// Checks every internal reference and value; the first problem found is
    /// returned, naming where it is.
    pub fn validate(&self) -> Result<(), ApiError> {
        let mut bound = HashSet::new();
        for port in &self.ports {
            if port.port == 0 {
                return invalid("port 0".into());
            }
            if port.addresses.is_empty() {
                return invalid(format!("port {} has no address", port.port));
            }
            for addr in &port.addresses {
                if !bound.insert((*addr, port.port)) {
                    return invalid(format!("{addr}:{} appears twice", port.port));
                }
            }
            for route in port.stream_hosts.iter().flat_map(|v| &v.routes) {
                self.validate_route(route)
                    .map_err(|e| ApiError::Invalid(format!("TLS route {}: {e}", route.name)))?;
            }
            let mut names = HashSet::new();
            for listener in &port.listeners {
                if !names.insert(&listener.name) {
                    return invalid(format!("listener {} appears twice", listener.name));
                }
                // A mesh port's certificate is the proxy's own, put in
                // from its identity after the config arrives.
                if port.protocol == Protocol::Https
                    && listener.tls.is_none()
                    && !port.takes_own_cert()
                {
                    return invalid(format!(
                        "HTTPS listener {} has no certificate",
                        listener.name
                    ));
                }
                for vhost in &listener.virtual_hosts {
                    for route in &vhost.routes {
                        self.validate_route(route)
                            .map_err(|e| ApiError::Invalid(format!("route {}: {e}", route.name)))?;
                    }
                }
            }
        }
        for (name, access) in &self.access {
            access
                .validate()
                .map_err(|e| ApiError::Invalid(format!("access {name}: {e}")))?;
        }
        for (name, cluster) in &self.clusters {
            if cluster.endpoints.iter().any(|e| e.port() == 0) {
                return invalid(format!("cluster {name} has an endpoint on port 0"));
            }
            if let Some(ext) = &cluster.external {
                let name_ok = !ext.hostname.is_empty()
                    && ext.hostname.len() <= 253
                    && ext.hostname[ext.hostname.starts_with("*.") as usize * 2..]
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
                if !name_ok || ext.port == 0 || !cluster.endpoints.is_empty() {
                    return invalid(format!(
                        "cluster {name}: external host {}:{} is not a name and a port alone",
                        ext.hostname, ext.port
                    ));
                }
            }
            cluster
                .resilience
                .validate()
                .map_err(|e| ApiError::Invalid(format!("cluster {name}: {e}")))?;
            if !cluster.zones.is_empty() && cluster.zones.len() != cluster.endpoints.len() {
                return invalid(format!("cluster {name}: zones do not match its endpoints"));
            }
            if !cluster.origins.is_empty() && cluster.origins.len() != cluster.endpoints.len() {
                return invalid(format!(
                    "cluster {name}: origins do not match its endpoints"
                ));
            }
            match (cluster.lb, &cluster.hash) {
                (LbPolicy::ConsistentHash, None) => {
                    return invalid(format!("cluster {name} hashes on nothing"));
                }
                (_, Some(h)) if !ConsistentHash::table_size_ok(h.table_size) => {
                    return invalid(format!(
                        "cluster {name}: table size {} is not a prime up to 5000011",
                        h.table_size
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn validate_route(&self, route: &Route) -> Result<(), String> {
        let m = &route.matches;
        match &m.path {
            PathMatch::Exact(p) | PathMatch::Prefix(p) if !p.starts_with('/') => {
                return Err(format!("path {p:?} does not start with /"));
            }
            PathMatch::Regex(r) => check_regex(r)?,
            _ => {}
        }
        for kv in m.headers.iter().chain(&m.query_params) {
            if kv.name.is_empty() {
                return Err("empty header or query parameter name".into());
            }
            if let StringMatch::Regex(r) = &kv.value {
                check_regex(r)?;
            }
        }
        let prefix_match = matches!(m.path, PathMatch::Prefix(_));
        let backend_filters = route.backends.iter().flat_map(|b| &b.filters);
        for filter in route.filters.iter().chain(backend_filters) {
            self.validate_filter(filter, prefix_match)?;
        }
        if let Some(t) = &route.traffic {
            t.validate()?;
        }
        if let Some(s) = &route.session {
            if !crate::is_token(&s.name) {
                return Err(format!("session name {:?} is not a token", s.name));
            }
        }
        if let Some(a) = &route.access {
            if !self.access.contains_key(a) {
                return Err(format!("access policy {a} is not defined"));
            }
        }
        for backend in &route.backends {
            if let BackendTarget::Cluster(c) = &backend.target {
                if !self.clusters.contains_key(c) {
                    return Err(format!("backend cluster {c} is not defined"));
                }
            }
        }
        Ok(())
    }

    fn validate_filter(&self, filter: &HttpFilter, prefix_match: bool) -> Result<(), String> {
        let path = match filter {
            HttpFilter::RequestHeaders(h) | HttpFilter::ResponseHeaders(h) => {
                let names = h.set.iter().chain(&h.add).map(|(n, _)| n).chain(&h.remove);
                for name in names {
                    http_header_name(name)?;
                }
                None
            }
            HttpFilter::Redirect(r) => {
                if !REDIRECT_CODES.contains(&r.status) {
                    return Err(format!("redirect status {} is not allowed", r.status));
                }
                r.path.as_ref()
            }
            HttpFilter::Rewrite(r) => r.path.as_ref(),
            HttpFilter::Cors(c) => {
                let names = c.allow_headers.iter().chain(&c.expose_headers);
                for name in names.filter(|n| *n != "*") {
                    http_header_name(name)?;
                }
                for origin in &c.allow_origins {
                    if origin != "*" && !origin.contains("://") {
                        return Err(format!("CORS origin {origin:?} needs a scheme"));
                    }
                }
                None
            }
            HttpFilter::Mirror(m) => {
                if !self.clusters.contains_key(&m.cluster) {
                    return Err(format!("mirror cluster {} is not defined", m.cluster));
                }
                if !(0.0..=100.0).contains(&m.percent) {
                    return Err(format!("mirror percent {} is out of range", m.percent));
                }
                None
            }
        };
        if matches!(path, Some(PathModifier::ReplacePrefixMatch(_))) && !prefix_match {
            return Err("ReplacePrefixMatch needs a PathPrefix match".into());
        }
        Ok(())
    }
}

fn check_regex(r: &str) -> Result<(), String> {
    regex::Regex::new(r)
        .map(|_| ())
        .map_err(|e| format!("invalid regex {r:?}: {e}"))
}

pub(crate) fn http_header_name(name: &str) -> Result<(), String> {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(token) {
        return Err(format!("invalid header name {name:?}"));
    }
    Ok(())
}

fn invalid(msg: String) -> Result<(), ApiError> {
    Err(ApiError::Invalid(msg))
}

#[cfg(test)]
mod tests {
    use crate::*;

    fn config_with(route: Route) -> GatewayConfig {
        let mut clusters = std::collections::BTreeMap::new();
        clusters.insert(
            "default/echo:80".to_string(),
            Cluster::http1(vec!["127.0.0.1:9000".parse().unwrap()]),
        );
        GatewayConfig {
            namespace: "default".into(),
            name: "gw".into(),
            ports: vec![Port {
                addresses: vec!["127.0.0.1".parse().unwrap()],
                port: 8080,
                protocol: Protocol::Http,
                client_auth: None,
                host_with_port: false,
                passthrough: false,
                blackhole: false,
                stream_hosts: Vec::new(),
                sidecar: false,
                listeners: vec![Listener::any_host("http", None, vec![route])],
            }],
            clusters,
            access_log: false,
            identity: None,
            limits: Default::default(),
            access: Default::default(),
            rate_limit_store: None,
            zone: None,
            east_west: None,
            cluster: String::new(),
            egress_source: None,
        }
    }

    fn route(path: PathMatch, target: &str) -> Route {
        let matches = HttpMatch {
            path,
            ..Default::default()
        };
        Route::to_cluster("default/r/rule/0/match/0", matches, target)
    }

    #[test]
    fn accepts_a_consistent_snapshot() {
        let config = config_with(route(PathMatch::Prefix("/".into()), "default/echo:80"));
        config.validate().unwrap();
    }

    #[test]
    fn refuses_an_unknown_cluster() {
        let config = config_with(route(PathMatch::Prefix("/".into()), "default/nope:80"));
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("default/nope:80"), "{err}");
    }

    #[test]
    fn refuses_a_bad_regex() {
        let config = config_with(route(PathMatch::Regex("/(".into()), "default/echo:80"));
        assert!(config.validate().unwrap_err().to_string().contains("regex"));
    }

    #[test]
    fn refuses_prefix_rewrite_without_prefix_match() {
        let mut r = route(PathMatch::Exact("/a".into()), "default/echo:80");
        r.filters.push(HttpFilter::Rewrite(Rewrite {
            hostname: None,
            path: Some(PathModifier::ReplacePrefixMatch("/b".into())),
        }));
        assert!(config_with(r).validate().is_err());
    }

    #[test]
    fn refuses_https_without_certificate() {
        let mut config = config_with(route(PathMatch::Prefix("/".into()), "default/echo:80"));
        config.ports[0].protocol = Protocol::Https;
        assert!(config.validate().is_err());
    }

    #[test]
    fn wire_round_trip_validates() {
        let config = config_with(route(PathMatch::Prefix("/".into()), "default/echo:80"));
        let bytes = wire::encode(&config);
        assert_eq!(wire::decode(&bytes).unwrap(), config);
        let bad = config_with(route(PathMatch::Regex("(".into()), "default/echo:80"));
        assert!(wire::decode(&wire::encode(&bad)).is_err());
    }
}
