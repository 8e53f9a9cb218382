//! The CA's authenticator on Kubernetes. A sidecar or a gateway proves who
//! it is with its projected service-account token (audience `weft-ca`,
//! short-lived, bound to its pod). The API server checks the token
//! (TokenReview); weft then checks that the pod it is bound to still exists
//! and runs under that service account, and grants exactly
//! `spiffe://<trust domain>/ns/<namespace>/sa/<service account>`.

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use kube::Client;
use weft_ca::{Authenticator, CaError, SpiffeId};

/// The audience a token must be for.
pub const AUDIENCE: &str = "weft-ca";
/// Longer tokens are refused unread (service-account tokens are ~1 KiB).
const MAX_TOKEN: usize = 16 * 1024;

const POD_NAME: &str = "authentication.kubernetes.io/pod-name";
const POD_UID: &str = "authentication.kubernetes.io/pod-uid";

pub struct ServiceAccountTokens {
    client: Client,
    trust_domain: String,
}

impl ServiceAccountTokens {
    pub fn new(client: Client, trust_domain: &str) -> Self {
        ServiceAccountTokens {
            client,
            trust_domain: trust_domain.to_string(),
        }
    }
}

fn refused(why: impl Into<String>) -> CaError {
    CaError::Unauthenticated(why.into())
}

/// (namespace, service account) of `system:serviceaccount:<ns>:<sa>`.
fn service_account(username: &str) -> Option<(&str, &str)> {
    let rest = username.strip_prefix("system:serviceaccount:")?;
    let (ns, sa) = rest.split_once(':')?;
    let fine = |s: &str| {
        !s.is_empty()
            && s.len() <= 253
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    };
    (fine(ns) && fine(sa)).then_some((ns, sa))
}

#[tonic::async_trait]
impl Authenticator for ServiceAccountTokens {
    async fn authenticate(&self, token: &str) -> Result<SpiffeId, CaError> {
        if token.is_empty() {
            return Err(refused("a service-account token is required"));
        }
        if token.len() > MAX_TOKEN {
            return Err(refused("the token is too long"));
        }
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_string(),
                audiences: Some(vec![AUDIENCE.to_string()]),
            },
            ..TokenReview::default()
        };
        let reviews: Api<TokenReview> = Api::all(self.client.clone());
        let answer = reviews
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| refused(format!("the token could not be reviewed: {e}")))?;
        let status = answer.status.unwrap_or_default();
        if status.authenticated != Some(true) {
            let why = status.error.unwrap_or_else(|| "not authenticated".into());
            return Err(refused(format!("the token was refused: {why}")));
        }
        if !status
            .audiences
            .unwrap_or_default()
            .iter()
            .any(|a| a == AUDIENCE)
        {
            return Err(refused(format!(
                "the token is not for the audience {AUDIENCE}"
            )));
        }
        let user = status.user.unwrap_or_default();
        let username = user.username.unwrap_or_default();
        let (ns, sa) = service_account(&username)
            .ok_or_else(|| refused(format!("{username} is not a service account")))?;
        let extra = user.extra.unwrap_or_default();
        let one = |key: &str| extra.get(key).and_then(|v| v.first()).cloned();
        let (Some(pod_name), Some(pod_uid)) = (one(POD_NAME), one(POD_UID)) else {
            return Err(refused("the token is not bound to a pod"));
        };
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let pod = pods
            .get_opt(&pod_name)
            .await
            .map_err(|e| refused(format!("the pod could not be read: {e}")))?
            .ok_or_else(|| refused(format!("the pod {ns}/{pod_name} does not exist")))?;
        if pod.metadata.uid.as_deref() != Some(pod_uid.as_str()) {
            return Err(refused(format!(
                "the pod {ns}/{pod_name} is not the one the token is bound to"
            )));
        }
        let runs_as = pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.as_deref())
            .unwrap_or("default");
        if runs_as != sa {
            return Err(refused(format!(
                "the pod {ns}/{pod_name} runs as {runs_as}, not {sa}"
            )));
        }
        SpiffeId::new(&self.trust_domain, ns, sa)
    }
}

#[cfg(test)]
mod tests {
    use super::service_account;

    #[test]
    fn only_service_accounts_are_read() {
        assert_eq!(
            service_account("system:serviceaccount:shop:cart"),
            Some(("shop", "cart"))
        );
        assert_eq!(service_account("system:serviceaccount:shop"), None);
        assert_eq!(service_account("system:serviceaccount:shop:a:b"), None);
        assert_eq!(service_account("admin"), None);
        assert_eq!(service_account("system:serviceaccount::cart"), None);
    }
}
