//! The mesh data path, configured by the real controller translation: an
//! application calls `http://backend.shop.svc.cluster.local/` through its
//! sidecar (HTTP_PROXY); the call follows the GAMMA route and reaches the
//! chosen version's sidecar over mutual TLS, and the application there
//! learns the caller's SPIFFE ID.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use weft_ca::Authority;
use weft_controller::provider::folder::parse_text;
use weft_controller::resources::{Kind, ObjKey};
use weft_controller::store::Store;
use weft_controller::translate::{translate, Options};
use weft_sidecar::inbound;

mod support;
use support::svid;

const MESH: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {weft.dev/mesh: enabled}}
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {name: frontend, namespace: shop, labels: {app: frontend}}
spec: {serviceAccountName: frontend, address: 127.0.85.1, ports: [{name: http, containerPort: 8000}]}
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {name: backend-v1, namespace: shop, labels: {app: backend, version: v1}}
spec: {serviceAccountName: backend, address: 127.0.85.2, ports: [{name: http, containerPort: 9000}]}
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {name: backend-v2, namespace: shop, labels: {app: backend, version: v2}}
spec: {serviceAccountName: backend, address: 127.0.85.3, ports: [{name: http, containerPort: 9000}]}
---
apiVersion: v1
kind: Service
metadata: {name: backend, namespace: shop}
spec: {selector: {app: backend}, ports: [{name: http, port: 80, targetPort: http}]}
---
apiVersion: v1
kind: Service
metadata: {name: backend-v1, namespace: shop}
spec: {selector: {app: backend, version: v1}, ports: [{name: http, port: 80, targetPort: http}]}
---
apiVersion: v1
kind: Service
metadata: {name: backend-v2, namespace: shop}
spec: {selector: {app: backend, version: v2}, ports: [{name: http, port: 80, targetPort: http}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: backend, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: backend, port: 80}]
  rules:
  - matches: [{headers: [{name: x-version, value: v2}]}]
    backendRefs: [{name: backend-v2, port: 80}]
  - backendRefs: [{name: backend-v1, port: 80}]
"#;

/// An application answering with its name and the caller it was told of.
async fn app(addr: SocketAddr, name: &'static str) {
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let router = axum::Router::new().fallback(move |headers: axum::http::HeaderMap| async move {
        let caller = headers
            .get("x-forwarded-client-cert")
            .map_or("none", |v| v.to_str().unwrap())
            .to_string();
        format!("{name} {caller}")
    });
    tokio::spawn(async move { axum::serve(listener, router).await });
}

fn key(name: &str) -> ObjKey {
    ObjKey {
        kind: Kind::Workload,
        namespace: "shop".into(),
        name: name.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_calls_a_service_through_both_sidecars() {
    let docs = parse_text(MESH)
        .unwrap()
        .into_iter()
        .map(|p| ("mesh.yaml".into(), p))
        .collect();
    let store = Store::build(&Store::default(), docs, vec![], &Store::now());
    let t = translate(&store, &Options::default(), &BTreeMap::new());
    let dir = tempfile::tempdir().unwrap();
    let ca =
        Authority::load_or_create(dir.path(), "cluster.local", Duration::from_secs(3600)).unwrap();

    let mut keep = Vec::new();
    for (name, pod) in [("backend-v1", "v1"), ("backend-v2", "v2")] {
        let sidecar = &t.sidecars[&key(name)];
        app(sidecar.inbound[0].app, pod).await;
        let spec = inbound::Spec {
            ports: sidecar.inbound.clone(),
            mode: sidecar.mode,
            access_log: false,
            trust_bundle: vec![],
            cluster: String::new(),
        };
        let gw = weft_gateway::Gateway::new();
        let config = inbound::config(&spec, &svid(&ca, "shop", "backend"));
        gw.apply("1".into(), config).await.unwrap();
        keep.push(gw);
    }
    let frontend = &t.sidecars[&key("frontend")];
    let gw = weft_gateway::Gateway::new();
    let config = weft_gateway::control::identity::with_identity(
        &frontend.outbound,
        &svid(&ca, "shop", "frontend"),
    );
    gw.apply("1".into(), config).await.unwrap();
    keep.push(gw);

    let proxy = format!(
        "http://{}:{}",
        frontend.outbound.ports[0].addresses[0], frontend.outbound.ports[0].port
    );
    let client = reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(proxy).unwrap())
        .build()
        .unwrap();
    let call = |url: &'static str, v2: bool| {
        let client = client.clone();
        async move {
            let mut req = client.get(url);
            if v2 {
                req = req.header("x-version", "v2");
            }
            match req.send().await {
                Ok(r) if r.status() == 200 => r.text().await.unwrap(),
                Ok(r) => format!("status {}", r.status()),
                Err(e) => format!("error {e}"),
            }
        }
    };
    let mut answer = String::new();
    for _ in 0..100 {
        answer = call("http://backend.shop.svc.cluster.local/hello", false).await;
        if answer.starts_with("v1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let caller = "URI=spiffe://cluster.local/ns/shop/sa/frontend";
    assert_eq!(answer, format!("v1 {caller}"));
    assert_eq!(
        call("http://backend.shop.svc.cluster.local/hello", true).await,
        format!("v2 {caller}")
    );
    assert_eq!(
        call("http://backend/hello", true).await,
        format!("v2 {caller}"),
        "the short name within the namespace"
    );
    assert_eq!(
        call("http://backend.shop:80/x", false).await,
        format!("v1 {caller}")
    );
    assert_eq!(
        call("http://backend-v2.shop.svc.cluster.local/", false).await,
        format!("v2 {caller}")
    );
}
