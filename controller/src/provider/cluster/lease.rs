//! Leader election with a `coordination.k8s.io/v1` Lease, as client-go does
//! it: the leader renews the Lease every `retry`; a replica takes it over
//! only when it has seen the same record, unrenewed, for a whole lease
//! duration by its own clock (never by comparing clocks between machines);
//! every write carries the resourceVersion read, so two replicas racing for
//! it cannot both win. A leader that has not renewed within `renew_deadline`
//! (shorter than the lease) stops leading before anyone may take over. On a
//! clean stop the leader hands the Lease back at once.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::Client;
use std::time::{Duration, Instant};
use tokio::sync::watch;

#[derive(Clone, Debug)]
pub struct Election {
    pub namespace: String,
    pub name: String,
    /// This replica's name in the Lease (its pod name and a random suffix).
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry: Duration,
}

impl Election {
    /// Timings of client-go's defaults: 15 s, 10 s, 2 s.
    pub fn new(namespace: &str, name: &str, identity: String) -> Election {
        Election {
            namespace: namespace.to_string(),
            name: name.to_string(),
            identity,
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry: Duration::from_secs(2),
        }
    }

    /// Takes part until `stop` fires; `leader` says whether this replica
    /// leads now.
    pub async fn run(
        self,
        client: Client,
        leader: watch::Sender<bool>,
        mut stop: watch::Receiver<bool>,
    ) {
        let api: Api<Lease> = Api::namespaced(client, &self.namespace);
        let mut observed: Option<(Record, Instant)> = None;
        let mut last_renew: Option<Instant> = None;
        loop {
            let renewed = self.try_acquire_or_renew(&api, &mut observed).await;
            let now = Instant::now();
            if renewed {
                if last_renew.is_none() {
                    tracing::info!(lease = %self.name, identity = %self.identity, "leading");
                }
                last_renew = Some(now);
                leader.send_if_modified(|l| !std::mem::replace(l, true));
            } else if let Some(at) = last_renew {
                if now.duration_since(at) >= self.renew_deadline {
                    tracing::warn!(lease = %self.name, "could not renew the lease in time; no longer leading");
                    last_renew = None;
                    leader.send_if_modified(|l| std::mem::replace(l, false));
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.retry) => {}
                _ = stop.changed() => break,
            }
        }
        if last_renew.is_some() {
            leader.send_replace(false);
            self.release(&api).await;
        }
    }

    fn spec(&self, previous: Option<&LeaseSpec>) -> LeaseSpec {
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let ours = previous.is_some_and(|p| p.holder_identity.as_deref() == Some(&self.identity));
        let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.lease_duration.as_secs().max(1) as i32),
            acquire_time: match previous {
                Some(p) if ours => p.acquire_time.clone(),
                _ => Some(now.clone()),
            },
            renew_time: Some(now),
            lease_transitions: Some(match previous {
                Some(_) if !ours => transitions + 1,
                _ => transitions,
            }),
            ..LeaseSpec::default()
        }
    }

    async fn try_acquire_or_renew(
        &self,
        api: &Api<Lease>,
        observed: &mut Option<(Record, Instant)>,
    ) -> bool {
        let lease = match api.get_opt(&self.name).await {
            Ok(Some(lease)) => lease,
            Ok(None) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        namespace: Some(self.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(self.spec(None)),
                };
                return match api.create(&PostParams::default(), &lease).await {
                    Ok(_) => true,
                    Err(e) => {
                        tracing::debug!("creating the lease: {e}");
                        false
                    }
                };
            }
            Err(e) => {
                tracing::warn!(lease = %self.name, "reading the lease: {e}");
                return false;
            }
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let record = Record::of(&spec);
        let now = Instant::now();
        let since = match observed {
            Some((seen, at)) if *seen == record => *at,
            _ => {
                *observed = Some((record.clone(), now));
                now
            }
        };
        let holder = record.holder.as_deref().unwrap_or("");
        let duration = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(0).max(0) as u64);
        if !holder.is_empty() && holder != self.identity && now.duration_since(since) < duration {
            return false;
        }
        let mut next = lease.clone();
        next.spec = Some(self.spec(Some(&spec)));
        match api.replace(&self.name, &PostParams::default(), &next).await {
            Ok(_) => true,
            Err(e) => {
                tracing::debug!(lease = %self.name, "renewing the lease: {e}");
                false
            }
        }
    }

    /// Hands the Lease back: no holder, so another replica takes it at once.
    async fn release(&self, api: &Api<Lease>) {
        let Ok(Some(mut lease)) = api.get_opt(&self.name).await else {
            return;
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(&self.identity) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(k8s_openapi::jiff::Timestamp::now()));
        if let Err(e) = api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            tracing::warn!(lease = %self.name, "releasing the lease: {e}");
        } else {
            tracing::info!(lease = %self.name, "lease released");
        }
    }
}

/// What a replica watches of the Lease to tell whether its holder is alive.
#[derive(Clone, Debug, PartialEq)]
struct Record {
    holder: Option<String>,
    renew: Option<String>,
    transitions: Option<i32>,
}

impl Record {
    fn of(spec: &LeaseSpec) -> Record {
        Record {
            holder: spec.holder_identity.clone(),
            renew: spec.renew_time.as_ref().map(|t| t.0.to_string()),
            transitions: spec.lease_transitions,
        }
    }
}
