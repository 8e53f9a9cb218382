//! What one proxy keeps from snapshot to snapshot: endpoint health and
//! circuit breakers (`crate::upstream::health`), local rate-limit buckets
//! (`crate::policy::ratelimit`) and the connection to the global
//! rate-limit store (`crate::policy::global`). A snapshot built with them
//! carries on where the last one was; one built without (a config only
//! checked) starts afresh and changes nothing.

use crate::policy::global::GlobalStore;
use crate::policy::ratelimit::Limiters;
use crate::upstream::health::Registry;
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub struct Kept {
    pub health: Registry,
    pub limiters: Limiters,
    store: Mutex<Option<Arc<GlobalStore>>>,
}

impl Kept {
    /// The store at `url`: the one already connected if its URL is the same.
    pub fn store(&self, url: &str) -> Result<Arc<GlobalStore>, String> {
        let mut store = self.store.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = store.as_ref().filter(|s| s.url == url) {
            return Ok(s.clone());
        }
        let s = Arc::new(GlobalStore::new(url)?);
        *store = Some(s.clone());
        Ok(s)
    }
}
