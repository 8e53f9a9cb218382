//! Golden tests of the translation: each `testdata/translate/*.in.yaml` is
//! translated and compared with `*.out.yaml` (statuses and IR).
//! `WEFT_UPDATE_GOLDEN=1 cargo test -p weft-controller --test golden` rewrites
//! the expected files; review their diff.

use std::collections::BTreeMap;
use std::path::Path;
use weft_controller::provider::folder::parse_text;
use weft_controller::store::Store;
use weft_controller::translate::multicluster::PeerState;
use weft_controller::translate::{translate, Options};

/// What peering knows, for an input with a `.peers.yaml` beside it.
#[derive(serde::Deserialize)]
struct PeerFile {
    cluster: String,
    network: String,
    peers: BTreeMap<String, weft_api::peering::ExportSet>,
}

fn render(input: &str, peers: Option<PeerFile>) -> String {
    let parsed = parse_text(input).expect("golden inputs parse");
    let docs = parsed.into_iter().map(|p| ("in.yaml".into(), p)).collect();
    let store = Store::build(&Store::default(), docs, vec![], &Store::now());
    // Global rate limits are counted in a Redis the inputs share.
    let mut opts = Options {
        rate_limit_store: Some("redis://127.0.0.1:6379".into()),
        ..Options::default()
    };
    // `# options: outboundTrafficPolicy=RegistryOnly` on an input's first line.
    if input.starts_with("# options: outboundTrafficPolicy=RegistryOnly") {
        opts.outbound_policy = weft_controller::egress::OutboundPolicy::RegistryOnly;
    }
    if let Some(p) = peers {
        opts.cluster = p.cluster;
        opts.network = p.network;
        let states = p.peers.into_iter().map(|(name, set)| {
            let state = PeerState {
                exports: Some(std::sync::Arc::new(set)),
                connected: true,
                message: String::new(),
            };
            (name, state)
        });
        opts.peers = std::sync::Arc::new(states.collect());
    }
    let out = translate(&store, &opts, &BTreeMap::new());
    let statuses: Vec<serde_json::Value> = out
        .statuses
        .iter()
        .map(|(k, v)| {
            serde_json::json!({"kind": k.kind.name(), "namespace": k.namespace, "name": k.name, "status": v})
        })
        .collect();
    let gateways: BTreeMap<String, _> = out
        .gateways
        .iter()
        .map(|(k, v)| (format!("{}/{}", k.namespace, k.name), v))
        .collect();
    let sidecars: BTreeMap<String, _> = out
        .sidecars
        .iter()
        .map(|(k, v)| (format!("{}/{}", k.namespace, k.name), v))
        .collect();
    let mut doc =
        serde_json::json!({"statuses": statuses, "gateways": gateways, "sidecars": sidecars});
    // The cluster set's part, where there is one.
    if !out.exports.services.is_empty() || !out.links.is_empty() {
        doc["exports"] = serde_json::to_value(&out.exports).unwrap();
        doc["serviceImports"] = serde_json::Value::Array(out.service_imports.clone());
        let links: Vec<_> = out.links.iter().map(|l| format!("{l:?}")).collect();
        doc["links"] = serde_json::json!(links);
    }
    serde_yaml::to_string(&doc).unwrap()
}

#[test]
fn golden() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/translate");
    let update = std::env::var_os("WEFT_UPDATE_GOLDEN").is_some();
    let mut failures = Vec::new();
    let mut count = 0;
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    inputs.sort();
    for input in inputs {
        let name = input.file_name().unwrap().to_str().unwrap().to_string();
        let Some(stem) = name.strip_suffix(".in.yaml") else {
            continue;
        };
        count += 1;
        let peers = std::fs::read_to_string(dir.join(format!("{stem}.peers.yaml")))
            .ok()
            .map(|t| serde_yaml::from_str(&t).expect("peer files parse"));
        let got = render(&std::fs::read_to_string(&input).unwrap(), peers);
        let expected_path = dir.join(format!("{stem}.out.yaml"));
        if update {
            std::fs::write(&expected_path, &got).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != got {
            failures.push(format!(
                "{stem}: output differs from {}\n--- got:\n{got}",
                expected_path.display()
            ));
        }
    }
    assert!(count > 0, "no golden inputs in {}", dir.display());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
