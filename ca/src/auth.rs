//! Who is asking: authenticators turn a credential into the one identity the
//! caller holds. Standalone mode uses one-time join tokens bound to a
//! Workload's namespace and service account.

use crate::{CaError, SpiffeId};
use std::collections::HashMap;
use std::sync::Mutex;

pub trait Authenticator: Send + Sync {
    /// The identity `token` proves; consumes it if it is single-use.
    fn authenticate(&self, token: &str) -> Result<SpiffeId, CaError>;
}

/// One-time join tokens: each proves one identity, once.
#[derive(Default)]
pub struct JoinTokens {
    tokens: Mutex<HashMap<String, SpiffeId>>,
}

impl JoinTokens {
    /// A fresh token for `id` (256 random bits, hex).
    pub fn issue(&self, id: SpiffeId) -> String {
        let token: String = (0..32)
            .map(|_| format!("{:02x}", rand::random::<u8>()))
            .collect();
        self.tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(token.clone(), id);
        token
    }
}

impl Authenticator for JoinTokens {
    fn authenticate(&self, token: &str) -> Result<SpiffeId, CaError> {
        self.tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(token)
            .ok_or_else(|| CaError::Unauthenticated("unknown or already used join token".into()))
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
        assert_eq!(tokens.authenticate(&t).unwrap(), id);
        assert!(tokens.authenticate(&t).is_err());
        assert!(tokens.authenticate("guess").is_err());
    }
}
