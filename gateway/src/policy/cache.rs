//! Tokens already verified, per provider: a client sends the same token
//! with every request until it expires, and a signature check costs tens
//! of microseconds. An entry is the whole token (never a hash of it, which
//! a forger could aim at) and holds only while
//!
//! - the provider's keys are the very set that verified it (a rotation or
//!   a refetch makes every entry verify again), and
//! - the token's `exp` (with the skew allowed) has not passed.
//!
//! Only tokens that passed go in, so the cache holds what issuers issued;
//! it is bounded all the same (entries and token length), and emptied of
//! expired entries, or of everything, when full.

use super::jwt::Verified;
use super::keys::KeySet;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Entries per provider.
const MAX_ENTRIES: usize = 4096;
/// Longer tokens are verified every time.
const MAX_TOKEN: usize = 4096;

struct Entry {
    keys: Arc<KeySet>,
    /// `exp` plus the skew allowed, in seconds since the epoch.
    until: u64,
    verified: Verified,
}

#[derive(Default)]
pub struct TokenCache {
    entries: Mutex<HashMap<String, Entry>>,
}

impl TokenCache {
    /// The verification of `token` by `keys`, if it is cached and holds at `now`.
    pub fn get(&self, token: &str, keys: &Arc<KeySet>, now: u64) -> Option<Verified> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let e = entries.get(token)?;
        (Arc::ptr_eq(&e.keys, keys) && now <= e.until).then(|| e.verified.clone())
    }

    pub fn put(&self, token: &str, keys: &Arc<KeySet>, until: u64, verified: &Verified, now: u64) {
        if token.len() > MAX_TOKEN {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, e| e.until >= now && Arc::ptr_eq(&e.keys, keys));
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(
            token.to_string(),
            Entry {
                keys: keys.clone(),
                until,
                verified: verified.clone(),
            },
        );
    }

    /// Entries held, for tests and dumps.
    pub fn entries(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verified() -> Verified {
        Verified {
            provider: "p".into(),
            claims: Arc::new(serde_json::json!({"sub": "a"})),
        }
    }

    #[test]
    fn entries_hold_for_their_keys_until_they_expire() {
        let cache = TokenCache::default();
        let (keys, other) = (Arc::new(KeySet::default()), Arc::new(KeySet::default()));
        cache.put("t", &keys, 100, &verified(), 50);
        assert!(cache.get("t", &keys, 100).is_some());
        assert!(cache.get("t", &keys, 101).is_none(), "expired");
        assert!(cache.get("t", &other, 50).is_none(), "other keys");
        assert!(cache.get("u", &keys, 50).is_none());
        cache.put(&"x".repeat(MAX_TOKEN + 1), &keys, 100, &verified(), 50);
        assert_eq!(cache.entries(), 1);
    }

    #[test]
    fn a_full_cache_stays_bounded() {
        let cache = TokenCache::default();
        let keys = Arc::new(KeySet::default());
        for i in 0..MAX_ENTRIES * 2 {
            cache.put(&i.to_string(), &keys, 100, &verified(), 50);
        }
        assert!(cache.entries() <= MAX_ENTRIES);
    }
}
