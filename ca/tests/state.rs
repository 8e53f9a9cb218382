//! Where the CA's keys come from: a state folder shared by processes that
//! start together (one root, not two), a root the user replaces (a new
//! intermediate under it), and a signing certificate the user plugs in.

use std::time::Duration;
use weft_ca::workload::key_and_csr;
use weft_ca::{Authority, SpiffeId};

const TTL: Duration = Duration::from_secs(3600);

fn issue(ca: &Authority) -> Vec<String> {
    let id = SpiffeId::new("cluster.local", "shop", "a").unwrap();
    let (_key, csr) = key_and_csr(None).unwrap();
    ca.sign(&csr, &id, None).unwrap().chain
}

#[test]
fn concurrent_starts_share_one_root() {
    let dir = tempfile::tempdir().unwrap();
    let bundles: Vec<Vec<String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    Authority::load_or_create(dir.path(), "cluster.local", TTL)
                        .unwrap()
                        .trust_bundle()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(bundles.windows(2).all(|w| w[0] == w[1]), "one root for all");
}

#[test]
fn a_replaced_root_gets_a_new_intermediate() {
    let first = tempfile::tempdir().unwrap();
    let second = tempfile::tempdir().unwrap();
    let a = Authority::load_or_create(first.path(), "cluster.local", TTL).unwrap();
    Authority::load_or_create(second.path(), "cluster.local", TTL).unwrap();
    // The user puts the second folder's root in place of the first's.
    for f in ["root.pem", "root.key"] {
        std::fs::copy(second.path().join(f), first.path().join(f)).unwrap();
    }
    let b = Authority::load_or_create(first.path(), "cluster.local", TTL).unwrap();
    assert_ne!(a.trust_bundle(), b.trust_bundle());
    let chain = issue(&b);
    let intermediate = std::fs::read_to_string(first.path().join("intermediate.pem")).unwrap();
    assert_eq!(chain[1], intermediate, "the new intermediate is kept");
    let root = std::fs::read_to_string(second.path().join("root.pem")).unwrap();
    assert_eq!(b.trust_bundle(), vec![root]);
}

#[test]
fn a_plugged_in_signing_certificate_must_come_from_the_root() {
    let dir = tempfile::tempdir().unwrap();
    Authority::load_or_create(dir.path(), "cluster.local", TTL).unwrap();
    let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap();
    let ca = Authority::plugged(
        "cluster.local",
        TTL,
        read("root.pem"),
        read("intermediate.pem"),
        &read("intermediate.key"),
    )
    .unwrap();
    assert_eq!(issue(&ca)[1], read("intermediate.pem"));

    let other = tempfile::tempdir().unwrap();
    Authority::load_or_create(other.path(), "cluster.local", TTL).unwrap();
    let foreign_root = std::fs::read_to_string(other.path().join("root.pem")).unwrap();
    let err = Authority::plugged(
        "cluster.local",
        TTL,
        foreign_root,
        read("intermediate.pem"),
        &read("intermediate.key"),
    );
    assert!(err.is_err());
    let with_root = tempfile::tempdir().unwrap();
    let ca = Authority::with_root(
        with_root.path(),
        "cluster.local",
        TTL,
        read("root.pem"),
        &read("root.key"),
    )
    .unwrap();
    assert_eq!(ca.trust_bundle(), vec![read("root.pem")]);
    assert!(with_root.path().join("intermediate.pem").exists());
    assert!(
        !with_root.path().join("root.key").exists(),
        "the user's key is not copied"
    );
}
