//! Who is asking: authenticators turn a credential into the one identity the
//! caller holds. Standalone mode uses one-time join tokens bound to a
//! Workload's namespace and service account, good for a few minutes. The
//! `Roster` says which identities may hold certificates at all: once the
//! last workload of an identity is gone, its renewals are refused.

use crate::{CaError, SpiffeId};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

/// How long a join token is good for, by default.
pub const JOIN_TOKEN_TTL: Duration = Duration::from_secs(5 * 60);

/// Turns a caller's credential into its identity. Asynchronous: on
/// Kubernetes the answer comes from the API server (TokenReview).
#[tonic::async_trait]
pub trait Authenticator: Send + Sync {
    /// The identity `token` proves; consumes it if it is single-use.
    async fn authenticate(&self, token: &str) -> Result<SpiffeId, CaError>;
}

/// One-time join tokens: each proves one identity, once, before it expires.
pub struct JoinTokens {
    ttl: Duration,
    tokens: Mutex<HashMap<String, (SpiffeId, Instant)>>,
}

impl Default for JoinTokens {
    fn default() -> Self {
        JoinTokens::new(JOIN_TOKEN_TTL)
    }
}

impl JoinTokens {
    /// Tokens good for `ttl` after they are issued.
    pub fn new(ttl: Duration) -> Self {
        JoinTokens {
            ttl,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (SpiffeId, Instant)>> {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A fresh token for `id` (256 random bits, hex). Expired tokens are
    /// forgotten on the way.
    pub fn issue(&self, id: SpiffeId) -> String {
        let token: String = (0..32)
            .map(|_| format!("{:02x}", rand::random::<u8>()))
            .collect();
        let mut tokens = self.lock();
        let ttl = self.ttl;
        tokens.retain(|_, (_, issued)| issued.elapsed() <= ttl);
        tokens.insert(token.clone(), (id, Instant::now()));
        token
    }
}

impl JoinTokens {
    fn redeem(&self, token: &str) -> Result<SpiffeId, CaError> {
        match self.lock().remove(token) {
            Some((id, issued)) if issued.elapsed() <= self.ttl => Ok(id),
            Some(_) => Err(CaError::Unauthenticated(
                "the join token has expired".into(),
            )),
            None => Err(CaError::Unauthenticated(
                "unknown or already used join token".into(),
            )),
        }
    }
}

#[tonic::async_trait]
impl Authenticator for JoinTokens {
    async fn authenticate(&self, token: &str) -> Result<SpiffeId, CaError> {
        self.redeem(token)
    }
}

/// The identities that may hold certificates now. `None` (the default)
/// allows every identity, for a CA that is not told.
#[derive(Default)]
pub struct Roster(RwLock<Option<BTreeSet<SpiffeId>>>);

impl Roster {
    /// From now on, only `ids` may get or renew certificates.
    pub fn set(&self, ids: impl IntoIterator<Item = SpiffeId>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Some(ids.into_iter().collect());
    }

    pub fn allows(&self, id: &SpiffeId) -> bool {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_none_or(|ids| ids.contains(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_join_token_works_once() {
        let tokens = JoinTokens::default();
        let id = SpiffeId::new("cluster.local", "a", "b").unwrap();
        let t = tokens.issue(id.clone());
        assert_eq!(tokens.redeem(&t).unwrap(), id);
        assert!(tokens.redeem(&t).is_err());
        assert!(tokens.redeem("guess").is_err());
    }

    #[test]
    fn a_join_token_expires() {
        let tokens = JoinTokens::new(Duration::from_millis(20));
        let id = SpiffeId::new("cluster.local", "a", "b").unwrap();
        let t = tokens.issue(id);
        std::thread::sleep(Duration::from_millis(40));
        let e = tokens.redeem(&t).unwrap_err();
        assert!(e.to_string().contains("expired"), "{e}");
    }

    #[test]
    fn the_roster_allows_only_its_identities() {
        let roster = Roster::default();
        let a = SpiffeId::new("cluster.local", "a", "a").unwrap();
        let b = SpiffeId::new("cluster.local", "b", "b").unwrap();
        assert!(roster.allows(&a));
        roster.set([a.clone()]);
        assert!(roster.allows(&a));
        assert!(!roster.allows(&b));
    }
}
