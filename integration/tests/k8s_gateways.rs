//! Gateway provisioning on Kubernetes (GEP-1762): the objects that run a
//! Gateway of weft's class come and go with it.

mod support;

use serde_json::Value;
use std::time::Duration;
use support::cluster::shop;
use support::eventually;
use support::kube::{ApiServer, Controller};

#[tokio::test]
async fn a_provisioned_gateway_comes_and_goes_with_its_gateway() {
    let Some(api) = ApiServer::start() else {
        return;
    };
    api.install_crds();
    api.apply(&shop("a.example.com"));
    api.apply(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: shop}
spec:
  gatewayClassName: weft
  infrastructure:
    labels: {team: storefront}
    annotations: {example.com/owner: storefront}
  listeners:
  - {name: http, port: 80, protocol: HTTP}
  - {name: alt, port: 8080, protocol: HTTP}
"#,
    );
    let _controller = Controller::start(&api, "a");
    let all = [
        "deployments",
        "services",
        "serviceaccounts",
        "poddisruptionbudgets",
    ];
    eventually(Duration::from_secs(20), "the gateway's objects", || async {
        all.iter().all(|r| api.get(r, "shop", "edge").is_some())
            && api.get("configmaps", "shop", "edge-ca-root").is_some()
    })
    .await;
    let gateway = api.get("gateways", "shop", "edge").unwrap();
    let deployment = api.get("deployments", "shop", "edge").unwrap();
    let meta = &deployment["metadata"];
    assert_eq!(meta["labels"]["team"], "storefront");
    assert_eq!(
        meta["labels"]["gateway.networking.k8s.io/gateway-name"],
        "edge"
    );
    assert_eq!(meta["annotations"]["example.com/owner"], "storefront");
    assert_eq!(meta["ownerReferences"][0]["kind"], "Gateway");
    assert_eq!(
        meta["ownerReferences"][0]["uid"],
        gateway["metadata"]["uid"]
    );
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "edge");
    let args: Vec<&str> = pod["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        args.windows(2).any(|w| w == ["--gateway", "shop/edge"]),
        "{args:?}"
    );
    assert_eq!(
        pod["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"]["audience"],
        "weft-ca"
    );
    // Port 80 needs the one capability it needs, nothing more.
    let caps = &pod["containers"][0]["securityContext"]["capabilities"];
    assert_eq!(caps["add"], serde_json::json!(["NET_BIND_SERVICE"]));
    let service = api.get("services", "shop", "edge").unwrap();
    assert_eq!(service["spec"]["type"], "LoadBalancer");
    let ports: Vec<i64> = service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["port"].as_i64())
        .collect();
    assert_eq!(ports, [80, 8080]);
    // The roots the gateway checks the control plane with are the CA's.
    let roots = api.get("configmaps", "shop", "edge-ca-root").unwrap();
    assert!(roots["data"]["root-cert.pem"]
        .as_str()
        .unwrap()
        .contains("BEGIN CERTIFICATE"));
    // The load balancer's address becomes the Gateway's.
    api.kubectl(&[
        "patch",
        "service",
        "edge",
        "-n",
        "shop",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"loadBalancer":{"ingress":[{"ip":"203.0.113.7"}]}}}"#,
    ]);
    eventually(Duration::from_secs(20), "the Gateway's address", || async {
        let gw = api.get("gateways", "shop", "edge").unwrap();
        gw["status"]["addresses"]
            == serde_json::json!([{"type": "IPAddress", "value": "203.0.113.7"}])
    })
    .await;
    // A parameters ConfigMap asks for a ClusterIP Service.
    api.apply(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: edge-params, namespace: shop}\n\
         data: {service.type: ClusterIP}\n---\n\
         apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: edge, namespace: shop}\n\
         spec:\n  gatewayClassName: weft\n  infrastructure:\n    labels: {team: storefront}\n\
         \x20   annotations: {example.com/owner: storefront}\n\
         \x20   parametersRef: {group: \"\", kind: ConfigMap, name: edge-params}\n\
         \x20 listeners:\n  - {name: http, port: 80, protocol: HTTP}\n  - {name: alt, port: 8080, protocol: HTTP}\n",
    );
    eventually(Duration::from_secs(20), "a ClusterIP Service", || async {
        api.get("services", "shop", "edge").unwrap()["spec"]["type"] == "ClusterIP"
    })
    .await;
    // A value weft cannot use: the Gateway is not accepted, and what it
    // runs is left as it is (not turned back into a LoadBalancer).
    api.apply(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: edge-params, namespace: shop}\n\
         data: {service.type: Ingress}\n",
    );
    eventually(
        Duration::from_secs(20),
        "the Gateway not accepted",
        || async {
            let gw = api.get("gateways", "shop", "edge").unwrap();
            let accepted = &gw["status"]["conditions"][0];
            accepted["type"] == "Accepted" && accepted["reason"] == "InvalidParameters"
        },
    )
    .await;
    // The provisioner has run since (it has changed the other Gateway's
    // Deployment), and left this one's objects alone.
    api.apply(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw, namespace: shop}\n\
         spec:\n  gatewayClassName: weft\n  infrastructure: {labels: {round: two}}\n\
         \x20 listeners: [{name: http, port: 8080, protocol: HTTP}]\n",
    );
    eventually(
        Duration::from_secs(20),
        "the other Gateway reprovisioned",
        || async {
            api.get("deployments", "shop", "gw").unwrap()["metadata"]["labels"]["round"] == "two"
        },
    )
    .await;
    assert_eq!(
        api.get("services", "shop", "edge").unwrap()["spec"]["type"],
        "ClusterIP"
    );
    assert!(api.get("deployments", "shop", "edge").is_some());
    // The other Gateway was provisioned too; deleting this one takes only
    // its own objects.
    assert!(api.get("deployments", "shop", "gw").is_some());
    api.kubectl(&["delete", "gateway", "edge", "-n", "shop"]);
    eventually(
        Duration::from_secs(20),
        "the gateway's objects gone",
        || async {
            all.iter().all(|r| api.get(r, "shop", "edge").is_none())
                && api.get("configmaps", "shop", "edge-ca-root").is_none()
        },
    )
    .await;
    assert!(api.get("deployments", "shop", "gw").is_some());
}
