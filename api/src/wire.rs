//! The config-distribution protocol (`proto/config.proto`) and the encoding of
//! a snapshot inside it.

use crate::{ApiError, GatewayConfig, SidecarConfig};
use serde::Serialize;

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

/// The gRPC echo service of `weft echo`, wire-compatible with the Gateway
/// API conformance suite's (`gateway_api_conformance.echo_basic.grpcecho`).
pub mod echo {
    #[allow(clippy::all, missing_docs)]
    mod pb {
        tonic::include_proto!("gateway_api_conformance.echo_basic.grpcecho");
    }
    pub use pb::grpc_echo_client::GrpcEchoClient;
    pub use pb::grpc_echo_server::{GrpcEcho, GrpcEchoServer};
    pub use pb::{Assertions, Context, EchoRequest, EchoResponse, Header};

    /// The service's full name, as in a call's path.
    pub const SERVICE: &str = "gateway_api_conformance.echo_basic.grpcecho.GrpcEcho";
}

/// The node name a gateway subscribes with.
pub fn gateway_node(namespace: &str, name: &str) -> String {
    format!("gateway/{namespace}/{name}")
}

/// The node name a sidecar subscribes with.
pub fn sidecar_node(namespace: &str, workload: &str) -> String {
    format!("sidecar/{namespace}/{workload}")
}

/// Encodes a snapshot (gateway or sidecar) for a `ConfigResponse`.
pub fn encode(config: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(config).expect("the IR always serializes")
}

/// Decodes and validates a snapshot from a `ConfigResponse`.
pub fn decode(bytes: &[u8]) -> Result<GatewayConfig, ApiError> {
    let config: GatewayConfig = serde_json::from_slice(bytes)?;
    config.validate()?;
    Ok(config)
}

/// Decodes and validates a sidecar's snapshot from a `ConfigResponse`.
pub fn decode_sidecar(bytes: &[u8]) -> Result<SidecarConfig, ApiError> {
    let config: SidecarConfig = serde_json::from_slice(bytes)?;
    config.outbound.validate()?;
    Ok(config)
}
