//! Scoping a config to what one proxy asked for: a sidecar's outbound side
//! holds only the services its workload has called, so its memory follows
//! what it uses, not the size of the mesh.

use crate::GatewayConfig;
use std::collections::BTreeSet;

impl GatewayConfig {
    /// This config with only the virtual hosts named in `hosts` (exactly, as
    /// `svc.ns:80`), and only the clusters their routes and mirrors use.
    /// Listeners and ports stay, so the proxy keeps listening.
    pub fn scoped_to_hosts(&self, hosts: &BTreeSet<String>) -> GatewayConfig {
        let mut scoped = self.clone();
        let mut used = BTreeSet::new();
        for port in &mut scoped.ports {
            for listener in &mut port.listeners {
                listener
                    .virtual_hosts
                    .retain(|v| hosts.contains(&v.hostname));
                for route in listener.virtual_hosts.iter().flat_map(|v| &v.routes) {
                    used.extend(route.clusters().map(str::to_string));
                }
            }
        }
        scoped.clusters.retain(|name, _| used.contains(name));
        scoped
    }
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
        listener.virtual_hosts = vec![vhost("a:80", "a"), vhost("b:80", "b")];
        let clusters: BTreeMap<String, Cluster> = ["a", "a-mirror", "b", "b-mirror"]
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
                sidecar: true,
            }],
            clusters,
            ..Default::default()
        };
        let hosts: BTreeSet<String> = ["b:80".to_string(), "c:80".to_string()].into();
        let scoped = config.scoped_to_hosts(&hosts);
        let vhosts: Vec<&str> = scoped.ports[0].listeners[0]
            .virtual_hosts
            .iter()
            .map(|v| v.hostname.as_str())
            .collect();
        assert_eq!(vhosts, ["b:80"]);
        let clusters: Vec<&String> = scoped.clusters.keys().collect();
        assert_eq!(clusters, ["b", "b-mirror"]);
        assert!(scoped.validate().is_ok());
        let none = config.scoped_to_hosts(&BTreeSet::new());
        assert!(none.clusters.is_empty());
        assert_eq!(none.ports.len(), 1);
    }
}
