//! The gRPC signing service: authenticates the caller, then signs its CSR for
//! the identity it proved, never another, and only while the roster holds
//! that identity. It is served over TLS (`crate::tls`), so tokens and
//! certificates never cross the wire in the clear.

use crate::{Authenticator, Authority, CaError, Roster};
use std::sync::Arc;
use std::time::Duration;
use tonic::{Request, Response, Status};
use weft_api::wire::ca::{
    CertificateAuthority, CertificateAuthorityServer, SignRequest, SignResponse,
};

pub struct SigningService {
    authority: Arc<Authority>,
    auth: Arc<dyn Authenticator>,
    roster: Arc<Roster>,
}

impl SigningService {
    pub fn new(
        authority: Arc<Authority>,
        auth: Arc<dyn Authenticator>,
        roster: Arc<Roster>,
    ) -> Self {
        SigningService {
            authority,
            auth,
            roster,
        }
    }

    pub fn server(
        authority: Arc<Authority>,
        auth: Arc<dyn Authenticator>,
        roster: Arc<Roster>,
    ) -> CertificateAuthorityServer<Self> {
        CertificateAuthorityServer::new(SigningService::new(authority, auth, roster))
    }
}

fn status(e: CaError) -> Status {
    match e {
        CaError::Unauthenticated(m) => Status::unauthenticated(m),
        e @ CaError::IdentityMismatch { .. } => Status::permission_denied(e.to_string()),
        e @ (CaError::Csr(_) | CaError::SpiffeId(_)) => Status::invalid_argument(e.to_string()),
        e => Status::internal(e.to_string()),
    }
}

#[tonic::async_trait]
impl CertificateAuthority for SigningService {
    async fn sign(&self, req: Request<SignRequest>) -> Result<Response<SignResponse>, Status> {
        let req = req.into_inner();
        let id = if req.token.is_empty() && !req.current_chain_pem.is_empty() {
            self.authority
                .holder(&req.current_chain_pem, &req.proof, &req.csr_pem)
        } else {
            self.auth.authenticate(&req.token).await
        }
        .map_err(|e| {
            tracing::warn!("refused to sign: {e}");
            status(e)
        })?;
        if !self.roster.allows(&id) {
            tracing::warn!(identity = %id, "refused to sign: no workload has this identity now");
            return Err(Status::permission_denied(format!(
                "no workload has the identity {id} now"
            )));
        }
        let ttl = u64::try_from(req.ttl_seconds).ok().map(Duration::from_secs);
        let issued = self.authority.sign(&req.csr_pem, &id, ttl).map_err(|e| {
            tracing::warn!(identity = %id, "refused to sign: {e}");
            status(e)
        })?;
        tracing::info!(identity = %id, not_after = %issued.not_after, "issued a workload certificate");
        Ok(Response::new(SignResponse {
            cert_chain_pem: issued.chain,
            trust_bundle_pem: self.authority.trust_bundle(),
            spiffe_id: id.to_string(),
            not_after_unix: issued.not_after.unix_timestamp(),
        }))
    }
}
