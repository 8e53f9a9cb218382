//! The CA's roots travel with the config: every sidecar config carries the
//! bundle, and every cluster that originates mutual TLS trusts it, for
//! gateways and sidecars alike.

use std::collections::BTreeMap;
use weft_controller::provider::folder::parse_text;
use weft_controller::store::Store;
use weft_controller::translate::{translate, Options};

#[test]
fn the_trust_bundle_is_distributed_with_the_config() {
    let input = include_str!("../testdata/translate/mesh.in.yaml");
    let docs = parse_text(input)
        .unwrap()
        .into_iter()
        .map(|p| ("mesh.yaml".into(), p))
        .collect();
    let store = Store::build(&Store::default(), docs, vec![], &Store::now());
    let bundle = vec!["-----BEGIN CERTIFICATE-----\nroot\n-----END CERTIFICATE-----\n".to_string()];
    let opts = Options {
        trust_bundle: bundle.clone(),
        ..Options::default()
    };
    let t = translate(&store, &opts, &BTreeMap::new());
    assert!(!t.sidecars.is_empty());
    let mut meshed = 0;
    for s in t.sidecars.values() {
        assert_eq!(s.trust_bundle, bundle);
        for c in s.outbound.clusters.values() {
            if let Some(tls) = &c.tls {
                assert_eq!(tls.roots_pem, bundle);
                meshed += 1;
            }
        }
    }
    for g in t.gateways.values() {
        for c in g.clusters.values().filter_map(|c| c.tls.as_ref()) {
            assert_eq!(c.roots_pem, bundle);
            meshed += 1;
        }
    }
    assert!(meshed > 0, "the input has meshed clusters");
}
