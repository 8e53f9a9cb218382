//! The config-distribution protocol (`proto/config.proto`) and the encoding of
//! a snapshot inside it.

use crate::{ApiError, GatewayConfig};

#[allow(clippy::all, missing_docs)]
mod pb {
    tonic::include_proto!("weft.config.v1");
}
pub use pb::config_discovery_client::ConfigDiscoveryClient;
pub use pb::config_discovery_server::{ConfigDiscovery, ConfigDiscoveryServer};
pub use pb::{ConfigRequest, ConfigResponse};

/// The certificate-signing protocol (`proto/ca.proto`).
pub mod ca {
    #[allow(clippy::all, missing_docs)]
    mod pb {
        tonic::include_proto!("weft.ca.v1");
    }
    pub use pb::certificate_authority_client::CertificateAuthorityClient;
    pub use pb::certificate_authority_server::{CertificateAuthority, CertificateAuthorityServer};
    pub use pb::{SignRequest, SignResponse};
}

/// The node name a gateway subscribes with.
pub fn gateway_node(namespace: &str, name: &str) -> String {
    format!("gateway/{namespace}/{name}")
}

/// Encodes a snapshot for a `ConfigResponse`.
pub fn encode(config: &GatewayConfig) -> Vec<u8> {
    serde_json::to_vec(config).expect("the IR always serializes")
}

/// Decodes and validates a snapshot from a `ConfigResponse`.
pub fn decode(bytes: &[u8]) -> Result<GatewayConfig, ApiError> {
    let config: GatewayConfig = serde_json::from_slice(bytes)?;
    config.validate()?;
    Ok(config)
}
