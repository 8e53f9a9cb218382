//! On-demand discovery. A proxy whose config holds only the hosts it asked
//! for (a sidecar's outbound side) keeps its interest here: a request for a
//! host the snapshot lacks adds it, wakes the config client to ask the
//! controller, and waits until a snapshot answering it is in place. A host
//! the controller answered without config is not a mesh service.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// Beyond this many hosts nothing more is asked for, so a workload calling
/// endless names cannot grow its proxy's config without bound.
const MAX_HOSTS: usize = 10_000;

pub struct Interest {
    hosts: Mutex<BTreeSet<String>>,
    asked: Notify,
    answered: watch::Sender<BTreeSet<String>>,
}

impl Interest {
    pub fn new() -> Arc<Interest> {
        Arc::new(Interest {
            hosts: Mutex::new(BTreeSet::new()),
            asked: Notify::new(),
            answered: watch::Sender::new(BTreeSet::new()),
        })
    }

    /// Every host asked for, as the config client sends them.
    pub fn hosts(&self) -> Vec<String> {
        self.lock().iter().cloned().collect()
    }

    /// Resolves when a host was added since the config client last looked.
    pub async fn asked(&self) {
        self.asked.notified().await
    }

    /// The config client applied a snapshot that answers `hosts`.
    pub fn answered(&self, hosts: Vec<String>) {
        self.answered.send_replace(hosts.into_iter().collect());
    }

    /// Asks for `host` unless it is already answered, and waits up to
    /// `wait` for the answer. True when a snapshot answering it arrived.
    pub async fn discover(&self, host: &str, wait: Duration) -> bool {
        let mut answered = self.answered.subscribe();
        if answered.borrow().contains(host) {
            return false;
        }
        {
            let mut hosts = self.lock();
            if hosts.len() >= MAX_HOSTS && !hosts.contains(host) {
                return false;
            }
            if hosts.insert(host.to_string()) {
                self.asked.notify_one();
            }
        }
        let answer = answered.wait_for(|a| a.contains(host));
        let done = matches!(tokio::time::timeout(wait, answer).await, Ok(Ok(_)));
        done
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.hosts.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_new_host_is_asked_for_and_answered_once() {
        let interest = Interest::new();
        let client = {
            let interest = interest.clone();
            tokio::spawn(async move {
                interest.asked().await;
                let hosts = interest.hosts();
                interest.answered(hosts.clone());
                hosts
            })
        };
        assert!(
            interest
                .discover("reviews:9080", Duration::from_secs(5))
                .await
        );
        assert_eq!(client.await.unwrap(), ["reviews:9080"]);
        // Answered: not asked again, whatever the snapshot held.
        assert!(
            !interest
                .discover("reviews:9080", Duration::from_secs(5))
                .await
        );
    }

    #[tokio::test]
    async fn gives_up_when_no_answer_comes() {
        let interest = Interest::new();
        assert!(
            !interest
                .discover("example.com:80", Duration::from_millis(20))
                .await
        );
        assert_eq!(interest.hosts(), ["example.com:80"]);
    }
}
