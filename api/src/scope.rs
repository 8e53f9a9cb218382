//! Scoping a config to what one proxy asked for: a sidecar's outbound side
//! holds only the services its workload has called, so its memory follows
//! what it uses, not the size of the mesh.

use crate::GatewayConfig;
use std::collections::BTreeSet;

impl GatewayConfig {
    /// This config with only the virtual hosts named in `hosts` (exactly, as
    /// `svc.ns:80`, or by a wildcard, `*.example.com:80`, that covers one),
    /// and only the clusters their routes and mirrors use.
    /// Listeners and ports stay, so the proxy keeps listening.
    pub fn scoped_to_hosts(&self, hosts: &BTreeSet<String>) -> GatewayConfig {
        let mut scoped = self.clone();
        let mut used = BTreeSet::new();
        for port in &mut scoped.ports {
            for listener in &mut port.listeners {
                listener.virtual_hosts.retain(|v| asked(hosts, &v.hostname));
                for route in listener.virtual_hosts.iter().flat_map(|v| &v.routes) {
                    used.extend(route.clusters().map(str::to_string));
                }
            }
            // TLS hosts are few (the egress gateway's): all stay.
            for route in port.stream_hosts.iter().flat_map(|v| &v.routes) {
                used.extend(route.clusters().map(str::to_string));
            }
        }
        scoped.clusters.retain(|name, _| used.contains(name));
        scoped
    }
}

/// Whether `hostname` (a virtual host's) is one of `hosts` or, as
/// `*.suffix:port`, covers one.
fn asked(hosts: &BTreeSet<String>, hostname: &str) -> bool {
    if hosts.contains(hostname) {
        return true;
    }
    let Some(suffix) = hostname.strip_prefix('*') else {
        return false;
    };
    hosts
        .iter()
        .any(|h| h.len() > suffix.len() && h.ends_with(suffix))
}

#[cfg(test)]
mod tests {
    use crate::*;
    use std::collections::{BTreeMap, BTreeSet};

    fn vhost(hostname: &str, cluster: &str) -> VirtualHost {
        let mut route = Route::to_cluster("r", HttpMatch::default(), cluster);
        route.filters.push(HttpFilter::Mirror(Mirror {
            cluster: format!("{cluster}-mirror"),
            percent: 100.0,
        }));
        VirtualHost {
            hostname: hostname.into(),
            routes: vec![route],
        }
    }

    #[test]
    fn keeps_only_the_hosts_asked_for_and_their_clusters() {
        let mut listener = Listener::any_host("outbound", None, vec![]);
        listener.virtual_hosts = vec![
            vhost("a:80", "a"),
            vhost("b:80", "b"),
            vhost("*.files.test:80", "f"),
            vhost("*.other.test:80", "o"),
        ];
        let clusters: BTreeMap<String, Cluster> = [
            "a", "a-mirror", "b", "b-mirror", "f", "f-mirror", "o", "o-mirror",
        ]
        .iter()
        .map(|n| (n.to_string(), Cluster::http1(vec![])))
        .collect();
        let config = GatewayConfig {
            ports: vec![Port {
                addresses: vec!["127.0.0.1".parse().unwrap()],
                port: 15001,
                protocol: Protocol::Http,
                listeners: vec![listener],
                client_auth: None,
                host_with_port: true,
                passthrough: true,
                blackhole: false,
                stream_hosts: Vec::new(),
                sidecar: true,
            }],
            clusters,
            ..Default::default()
        };
        let hosts: BTreeSet<String> = [
            "b:80",
            "c:80",
            "eu.files.test:80",
            "other.test:80",
            "x.other.test:8080",
        ]
        .map(String::from)
        .into();
        let scoped = config.scoped_to_hosts(&hosts);
        let vhosts: Vec<&str> = scoped.ports[0].listeners[0]
            .virtual_hosts
            .iter()
            .map(|v| v.hostname.as_str())
            .collect();
        // A wildcard stays for a host under it, on its port only.
        assert_eq!(vhosts, ["b:80", "*.files.test:80"]);
        let clusters: Vec<&String> = scoped.clusters.keys().collect();
        assert_eq!(clusters, ["b", "b-mirror", "f", "f-mirror"]);
        assert!(scoped.validate().is_ok());
        let none = config.scoped_to_hosts(&BTreeSet::new());
        assert!(none.clusters.is_empty());
        assert_eq!(none.ports.len(), 1);
    }
}
