//! The egress settings `weft up` takes: what sidecars do with hosts the
//! mesh does not declare, and the DNS server the gateways resolve
//! external hosts with (`weft gateway --dns` takes the same flag).

use std::net::SocketAddr;
use weft_controller::egress::OutboundPolicy;

#[derive(clap::Args, Clone, Debug)]
pub struct EgressArgs {
    /// What sidecars do with a host the mesh does not declare: AllowAny
    /// (send it on) or RegistryOnly (refuse it: 502 for HTTP).
    #[arg(long, default_value = "AllowAny", value_parser = policy)]
    pub outbound_traffic_policy: OutboundPolicy,
    /// The DNS server (`ip:port`) external hosts are resolved with; the
    /// system's resolver configuration without it.
    #[arg(long)]
    pub dns: Option<SocketAddr>,
}

/// Parses `--outbound-traffic-policy`.
pub fn policy(s: &str) -> Result<OutboundPolicy, String> {
    s.parse()
}

/// Makes `addr` the name server external hosts are resolved with.
pub fn use_dns(addr: Option<SocketAddr>) {
    if let Some(addr) = addr {
        weft_gateway::upstream::external::set_name_server(addr);
    }
}
