//! The controller's loop on Kubernetes: once every watcher has listed, each
//! change of the cluster is translated and published as in standalone mode
//! (every replica serves config), and the statuses go to the status writer
//! and the store to the provisioner, which write only while this replica
//! holds the Lease.

use crate::provider::cluster::lease::Election;
use crate::provider::cluster::provisioner::Provisioner;
use crate::provider::cluster::writeback::{Statuses, Writer};
use crate::provider::cluster::Cluster;
use crate::provision::Infra;
use crate::runtime::{BindReport, Publisher};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Changes that come together (a `kubectl apply -f` of a folder) are
/// translated once.
const SETTLE: Duration = Duration::from_millis(50);

/// Runs until `stop` fires; `leader` tells whether this replica leads.
/// With `infra`, the leader provisions each Gateway's Deployment and Service.
pub async fn run(
    cluster: Cluster,
    mut publisher: Publisher,
    election: Election,
    infra: Option<Infra>,
    leader_tx: watch::Sender<bool>,
    mut reports: mpsc::Receiver<BindReport>,
    mut stop: watch::Receiver<bool>,
) {
    let leader = leader_tx.subscribe();
    let elect = tokio::spawn(election.run(cluster.client().clone(), leader_tx, stop.clone()));
    let (statuses_tx, statuses_rx) = watch::channel::<Option<Statuses>>(None);
    let provisioner = infra.map(|infra| {
        let p = Provisioner::new(cluster.clone(), infra);
        tokio::spawn(p.run(statuses_rx.clone(), leader.clone()))
    });
    let writer = tokio::spawn(Writer::new(cluster.clone()).run(statuses_rx, leader.clone()));
    // Translates what the watchers hold now; the statuses (and the store)
    // go to the writer and the provisioner.
    let publish = |publisher: &mut Publisher| {
        let store = cluster.store();
        let statuses = publisher.publish(&store);
        statuses_tx.send_replace(Some(Arc::new((store, statuses))));
    };
    let mut changes = cluster.changes();
    let mut synced = false;
    loop {
        tokio::select! {
            r = changes.changed() => {
                if r.is_err() { break }
                tokio::time::sleep(SETTLE).await;
                changes.borrow_and_update();
                if !synced {
                    synced = cluster.synced();
                    if !synced { continue }
                    tracing::info!("every kind listed; publishing");
                }
                publish(&mut publisher);
            }
            () = publisher.peers_changed() => {
                if synced {
                    publish(&mut publisher);
                }
            }
            Some(report) = reports.recv() => {
                if synced && publisher.bind_report(report) {
                    publish(&mut publisher);
                }
            }
            _ = stop.changed() => break,
        }
    }
    writer.abort();
    if let Some(p) = provisioner {
        p.abort();
    }
    // The election hands the Lease back on its way out.
    let _ = elect.await;
}
