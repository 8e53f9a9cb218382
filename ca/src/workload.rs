//! The workload side: a key pair generated locally (the private key never
//! leaves the proxy), the CSR asking for a certificate, and the identity
//! manager that fetches the first certificate with a join token and renews it
//! at half its remaining lifetime by proving it holds the current one.

use crate::{holder, CaError, SpiffeId};
use rcgen::{CertificateParams, KeyPair, SanType, PKCS_ECDSA_P256_SHA256};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
use weft_api::wire::ca::{CertificateAuthorityClient, SignRequest, SignResponse};

const MIN_RENEW_WAIT: Duration = Duration::from_millis(100);

/// A fresh key pair and a CSR for it, PEM: (key, csr). With `id`, the CSR
/// names it as its one URI SAN; without, the CA fills in the caller's.
pub fn key_and_csr(id: Option<&SpiffeId>) -> Result<(String, String), CaError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    if let Some(id) = id {
        let uri = id.to_string();
        params.subject_alt_names = vec![SanType::URI(
            uri.clone().try_into().map_err(|_| CaError::SpiffeId(uri))?,
        )];
    }
    let csr = params.serialize_request(&key)?;
    Ok((key.serialize_pem(), csr.pem()?))
}

/// A workload's certificate chain, its key and the trust bundle.
#[derive(Clone, Debug)]
pub struct Svid {
    pub id: SpiffeId,
    pub chain: Vec<String>,
    pub key_pem: String,
    pub bundle: Vec<String>,
    pub not_after: SystemTime,
    pub received: SystemTime,
    /// How many certificates came before this one (0 for the first).
    pub renewals: u64,
}

impl Svid {
    /// When to renew: half way from receipt to expiry.
    pub fn renew_at(&self) -> SystemTime {
        let life = self
            .not_after
            .duration_since(self.received)
            .unwrap_or_default();
        self.received + life / 2
    }
}

/// The certificates an identity manager keeps fresh: `None` until the first.
pub type Svids = watch::Receiver<Option<Arc<Svid>>>;

/// How the manager reaches the CA; the gRPC client in production.
#[tonic::async_trait]
pub trait CaClient: Send + Sync {
    async fn sign(&self, req: SignRequest) -> Result<SignResponse, CaError>;
}

/// The CA over gRPC, over TLS: the server must prove the control plane's
/// identity under the trust bundle the workload was given.
pub struct GrpcCa {
    endpoint: String,
    channel: tonic::transport::Channel,
}

impl GrpcCa {
    /// The signing service at `addr` (`host:port`), checked as `server`.
    pub fn new(addr: &str, server: &SpiffeId, bundle: &[String]) -> Result<Self, CaError> {
        let config = crate::tls::client_config(None, bundle)?;
        Ok(GrpcCa {
            endpoint: addr.to_string(),
            channel: crate::tls::channel(addr, server, config)?,
        })
    }
}

#[tonic::async_trait]
impl CaClient for GrpcCa {
    async fn sign(&self, req: SignRequest) -> Result<SignResponse, CaError> {
        let resp = CertificateAuthorityClient::new(self.channel.clone())
            .sign(req)
            .await
            .map_err(|s| {
                CaError::Unauthenticated(format!("CA at {}: {}", self.endpoint, s.message()))
            })?;
        Ok(resp.into_inner())
    }
}

/// The CA in this process, for an identity of the control plane itself.
pub struct LocalCa {
    pub authority: Arc<crate::Authority>,
    pub id: SpiffeId,
}

#[tonic::async_trait]
impl CaClient for LocalCa {
    async fn sign(&self, req: SignRequest) -> Result<SignResponse, CaError> {
        let ttl = u64::try_from(req.ttl_seconds).ok().map(Duration::from_secs);
        let issued = self.authority.sign(&req.csr_pem, &self.id, ttl)?;
        Ok(SignResponse {
            cert_chain_pem: issued.chain,
            trust_bundle_pem: self.authority.trust_bundle(),
            spiffe_id: self.id.to_string(),
            not_after_unix: issued.not_after.unix_timestamp(),
        })
    }
}

async fn request(
    ca: &dyn CaClient,
    current: Option<&Svid>,
    token: &str,
    ttl: Duration,
) -> Result<Svid, CaError> {
    let (key_pem, csr_pem) = key_and_csr(None)?;
    let mut req = SignRequest {
        csr_pem,
        ttl_seconds: i64::try_from(ttl.as_secs()).unwrap_or(0),
        ..Default::default()
    };
    match current {
        Some(svid) => {
            req.proof = holder::prove(&svid.key_pem, &req.csr_pem)?;
            req.current_chain_pem = svid.chain.clone();
        }
        None => req.token = token.to_string(),
    }
    let resp = ca.sign(req).await?;
    Ok(Svid {
        id: SpiffeId::parse(&resp.spiffe_id)?,
        chain: resp.cert_chain_pem,
        key_pem,
        bundle: resp.trust_bundle_pem,
        not_after: UNIX_EPOCH
            + Duration::from_secs(u64::try_from(resp.not_after_unix).unwrap_or(0)),
        received: SystemTime::now(),
        renewals: current.map_or(0, |c| c.renewals + 1),
    })
}

/// Keeps `tx` holding a valid certificate: the first from `token`, each next
/// one at half the current one's remaining life. Failed renewals are retried
/// with backoff while the current certificate stays in use.
pub async fn manage(
    ca: Arc<dyn CaClient>,
    token: String,
    ttl: Duration,
    tx: watch::Sender<Option<Arc<Svid>>>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let current = tx.borrow().clone();
        if let Some(svid) = &current {
            let wait = svid
                .renew_at()
                .duration_since(SystemTime::now())
                .unwrap_or_default();
            // Never spin on the CA, even with lifetimes of a second.
            tokio::time::sleep(wait.max(MIN_RENEW_WAIT)).await;
        }
        match request(ca.as_ref(), current.as_deref(), &token, ttl).await {
            Ok(svid) => {
                tracing::info!(id = %svid.id, "workload certificate {}", if current.is_some() { "renewed" } else { "issued" });
                backoff = Duration::from_millis(100);
                if tx.send(Some(Arc::new(svid))).is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!("cannot get a workload certificate: {e}; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}
