//! Golden tests of the translation: each `testdata/translate/*.in.yaml` is
//! translated and compared with `*.out.yaml` (statuses and IR).
//! `WEFT_UPDATE_GOLDEN=1 cargo test -p weft-controller --test golden` rewrites
//! the expected files; review their diff.

use std::collections::BTreeMap;
use std::path::Path;
use weft_controller::provider::folder::parse_text;
use weft_controller::store::Store;
use weft_controller::translate::{translate, Options};

fn render(input: &str) -> String {
    let parsed = parse_text(input).expect("golden inputs parse");
    let docs = parsed.into_iter().map(|p| ("in.yaml".into(), p)).collect();
    let store = Store::build(&Store::default(), docs, vec![], &Store::now());
    // Global rate limits are counted in a Redis the inputs share.
    let opts = Options {
        rate_limit_store: Some("redis://127.0.0.1:6379".into()),
        ..Options::default()
    };
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
    let doc = serde_json::json!({"statuses": statuses, "gateways": gateways, "sidecars": sidecars});
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
        let got = render(&std::fs::read_to_string(&input).unwrap());
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
