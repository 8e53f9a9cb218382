//! Hosts outside the mesh (XBackends): their names resolved by the proxy
//! with the answers' TTLs (hickory's cache keeps each answer until it
//! expires, then asks again), one address picked per try (the next on a
//! retry), and TLS to them with the name as SNI. An egress gateway's
//! connections leave from its own address (`GatewayConfig::egress_source`).
//!
//! The resolver is the process's: the system's configuration
//! (`/etc/resolv.conf`, `/etc/hosts`) unless a name server is set first
//! (`weft gateway --dns`, `weft up --dns`).

use crate::upstream::balancer::ClusterState;
use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::TokioResolver;
use pingora::connectors::l4::BindTo;
use pingora::upstreams::peer::HttpPeer;
use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;
use std::time::Duration;
use weft_api::ExternalHost;

static NAME_SERVER: OnceLock<Option<SocketAddr>> = OnceLock::new();
static RESOLVER: OnceLock<Result<TokioResolver, String>> = OnceLock::new();

/// The name server external hosts are resolved with, instead of the
/// system's; only before the first resolution. `false` if one was set.
pub fn set_name_server(addr: SocketAddr) -> bool {
    NAME_SERVER.set(Some(addr)).is_ok()
}

fn resolver() -> Result<&'static TokioResolver, &'static str> {
    let made = RESOLVER.get_or_init(|| {
        let provider = TokioConnectionProvider::default();
        let builder = match NAME_SERVER.get_or_init(|| None) {
            Some(addr) => {
                let servers =
                    NameServerConfigGroup::from_ips_clear(&[addr.ip()], addr.port(), true);
                TokioResolver::builder_with_config(
                    ResolverConfig::from_parts(None, vec![], servers),
                    provider,
                )
            }
            None => TokioResolver::builder_tokio().map_err(|e| e.to_string())?,
        };
        let mut opts = ResolverOpts::default();
        // A request waits for its answer; a dead server must not hold it
        // past the connect timeout.
        opts.timeout = Duration::from_secs(2);
        opts.attempts = 1;
        Ok(builder.with_options(opts).build())
    });
    made.as_ref().map_err(String::as_str)
}

/// Why no peer could be made for an external host.
#[derive(Debug, PartialEq, Eq)]
pub enum Unreached {
    /// The request's host is not under the cluster's wildcard.
    NotCovered,
    /// The name did not resolve (no answer, no address, no server).
    Dns(String),
}

/// The peer for try `attempt` (0 first) of a request for `host` (its
/// host, lowercase without port) to the external cluster `cluster`.
pub async fn peer(
    cluster: &ClusterState,
    ext: &ExternalHost,
    host: &str,
    source: Option<IpAddr>,
    attempt: usize,
) -> Result<HttpPeer, Unreached> {
    let target = ext.target(host).ok_or(Unreached::NotCovered)?;
    let addrs = resolve(target).await?;
    let addr = SocketAddr::new(addrs[attempt % addrs.len()], ext.port);
    let mut peer = cluster.external_peer(addr, target);
    if let Some(ip) = source {
        let mut bind = BindTo::default();
        bind.addr = Some(SocketAddr::new(ip, 0));
        peer.options.bind_to = Some(bind);
    }
    Ok(peer)
}

/// The addresses of `name`, from the cache while its answer lives. An
/// external name may not lead back into the proxy's own host or to a
/// link-local service (a cloud's metadata server): such addresses are
/// left out, whatever DNS says.
pub async fn resolve(name: &str) -> Result<Vec<IpAddr>, Unreached> {
    let resolver = resolver().map_err(|e| Unreached::Dns(e.to_string()))?;
    // A fully qualified name: no search domains are tried.
    let fqdn = format!("{name}.");
    match resolver.lookup_ip(fqdn).await {
        Ok(answer) => {
            let addrs: Vec<IpAddr> = answer.iter().filter(reachable).collect();
            if addrs.is_empty() {
                return Err(Unreached::Dns(format!("{name} has no address to reach")));
            }
            Ok(addrs)
        }
        Err(e) => Err(Unreached::Dns(format!("{name}: {e}"))),
    }
}

/// Whether an external host's address may be connected to: not loopback,
/// unspecified, link-local or multicast.
fn reachable(ip: &IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(*ip, IpAddr::V4),
        v4 => *v4,
    };
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_loopback() || v4.is_unspecified() || v4.is_link_local() || v4.is_multicast())
        }
        IpAddr::V6(v6) => {
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (v6.segments()[0] & 0xffc0) == 0xfe80)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::reachable;

    #[test]
    fn external_hosts_never_lead_back_inside_or_to_link_local_services() {
        for no in [
            "127.0.0.1",
            "127.9.9.9",
            "0.0.0.0",
            "169.254.169.254",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(!reachable(&no.parse().unwrap()), "{no}");
        }
        for yes in [
            "10.254.6.2",
            "192.0.2.10",
            "2001:db8::1",
            "::ffff:192.0.2.1",
        ] {
            assert!(reachable(&yes.parse().unwrap()), "{yes}");
        }
    }
}
