//! The CRDs the chart carries are the ones the Rust types make: a change
//! to a policy kind that is not regenerated fails here.
//! `WEFT_UPDATE_GOLDEN=1 cargo test -p weft-controller --test crds` rewrites
//! `charts/weft/crds/weft.dev.yaml` (or run `weft crds`).

use std::path::Path;

#[test]
fn the_chart_carries_the_generated_crds() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/weft/crds/weft.dev.yaml");
    let made = weft_controller::crds::yaml();
    if std::env::var_os("WEFT_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &made).unwrap();
    }
    let carried = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        carried == made,
        "{} differs from the CRDs the types make; regenerate with WEFT_UPDATE_GOLDEN=1",
        path.display()
    );
    // Every kind, with the status subresource weft writes to.
    for kind in [
        "kind: SecurityPolicy",
        "kind: AuthorizationPolicy",
        "kind: BackendTrafficPolicy",
        "kind: ClusterLink",
    ] {
        assert!(made.contains(kind), "{kind}");
    }
    assert_eq!(made.matches("status: {}").count(), 4, "{made}");
}

#[test]
fn the_chart_carries_the_xbackend_crd() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/weft/files/xbackend-crd.yaml");
    let made = weft_controller::crds::experimental_yaml();
    if std::env::var_os("WEFT_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &made).unwrap();
    }
    let carried = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        carried == made,
        "{} differs; regenerate with WEFT_UPDATE_GOLDEN=1",
        path.display()
    );
    assert!(made.contains("kind: XBackend") && made.contains("group: gateway.networking.x-k8s.io"));
}
