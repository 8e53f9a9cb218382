//! Identities on Kubernetes: the CA of `weft controller` authenticates a
//! pod by its bound service-account token (TokenReview) and gives it the
//! identity of its service account and no other; a pod with a sidecar is
//! reached through it over mutual TLS, as its EndpointSlice allows, and
//! losing the leader changes nothing for it.

mod support;

use std::time::Duration;
use support::cluster::{
    bound_token, cart_slice, holder, meshed_shop, reaches_the_app_as_the_gateway, root_of, running,
    shop_gateway, token_for, weft,
};
use support::eventually;
use support::kube::{ApiServer, Controller};

/// Asks the CA of `controller` to sign a new key for `token`.
async fn sign(
    controller: &Controller,
    bundle: &[String],
    token: &str,
    asking: Option<&weft_ca::SpiffeId>,
) -> Result<String, String> {
    use weft_ca::workload::CaClient;
    let server = weft_ca::SpiffeId::control_plane("cluster.local").unwrap();
    let ca = weft_ca::workload::GrpcCa::new(&controller.ca.to_string(), &server, bundle).unwrap();
    let (_key, csr_pem) = weft_ca::workload::key_and_csr(asking).unwrap();
    let req = weft_api::wire::ca::SignRequest {
        csr_pem,
        token: token.to_string(),
        ..Default::default()
    };
    ca.sign(req)
        .await
        .map(|r| r.spiffe_id)
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn a_pod_gets_the_identity_of_its_service_account_and_no_other() {
    let Some(api) = ApiServer::start() else {
        return;
    };
    api.apply(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\n\
         apiVersion: v1\nkind: Namespace\nmetadata: {name: weft-system}\n---\n\
         apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: cart, namespace: shop}\n---\n\
         apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: plain, namespace: shop}\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata: {name: cart-1, namespace: shop}\n\
         spec: {serviceAccountName: cart, containers: [{name: app, image: cart}],\n\
         \x20 initContainers: [{name: weft-proxy, image: weft, restartPolicy: Always}]}\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata: {name: other-1, namespace: shop}\n\
         spec: {containers: [{name: app, image: other}]}\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata: {name: plain-1, namespace: shop}\n\
         spec: {serviceAccountName: plain, containers: [{name: app, image: plain}]}\n",
    );
    // Scheduled: cart-1 runs with its sidecar.
    running(&api, "cart-1", "127.0.114.1");
    let controller = Controller::start(&api, "a");
    let secret = api.get("secrets", "weft-system", "weft-ca").unwrap();
    let root = {
        use base64::Engine;
        let b64 = secret["data"]["root-cert.pem"].as_str().unwrap();
        let pem = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        String::from_utf8(pem).unwrap()
    };
    let bundle = vec![root];
    let token = |audience: &str, pod: &str| token_for(&api, "cart", pod, audience);
    let good = token("weft-ca", "cart-1");
    assert_eq!(
        sign(&controller, &bundle, &good, None).await.unwrap(),
        "spiffe://cluster.local/ns/shop/sa/cart"
    );
    // The token proves cart, and only cart.
    let other = weft_ca::SpiffeId::new("cluster.local", "shop", "default").unwrap();
    let e = sign(&controller, &bundle, &good, Some(&other))
        .await
        .unwrap_err();
    assert!(e.contains("but the caller is"), "{e}");
    let e = sign(&controller, &bundle, &token("kubernetes", "cart-1"), None)
        .await
        .unwrap_err();
    assert!(e.contains("refused") || e.contains("audience"), "{e}");
    // A cart token bound to a pod that runs as another account.
    let e = sign(&controller, &bundle, &token("weft-ca", "other-1"), None)
        .await
        .unwrap_err();
    assert!(e.contains("runs as default"), "{e}");
    // A pod without a sidecar holds no identity of the mesh (once the
    // controller has read the cluster).
    let plain = bound_token(&api, "plain", "plain-1");
    eventually(
        Duration::from_secs(10),
        "a pod without a sidecar refused",
        || async {
            let e = sign(&controller, &bundle, &plain, None).await.unwrap_err();
            e.contains("no workload has the identity")
        },
    )
    .await;
    assert!(sign(&controller, &bundle, &good, None).await.is_ok());
    assert!(sign(&controller, &bundle, "", None).await.is_err());
    assert!(sign(&controller, &bundle, "not-a-token", None)
        .await
        .is_err());
    // The pod is gone: its token proves nothing any more.
    api.kubectl(&["delete", "pod", "cart-1", "-n", "shop"]);
    let e = sign(&controller, &bundle, &good, None).await.unwrap_err();
    assert!(e.contains("refused") || e.contains("does not exist"), "{e}");
}

#[tokio::test]
async fn a_meshed_pod_serves_through_its_sidecar_behind_a_gateway_and_outlives_the_leader() {
    let Some(api) = ApiServer::start() else {
        return;
    };
    api.install_crds();
    api.apply(&meshed_shop("127.0.113.2", true));
    api.apply(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: cart-1, namespace: shop, labels: {app: cart}}\n\
         spec:\n  serviceAccountName: cart\n\
         \x20 initContainers: [{name: weft-proxy, image: weft, restartPolicy: Always}]\n\
         \x20 containers: [{name: app, image: cart, ports: [{name: http, containerPort: 8080}]}]\n",
    );
    // What the kubelet would report.
    running(&api, "cart-1", "127.0.113.2");
    // Two replicas, one CA: the sidecar's certificate comes from the
    // leader, its config and the gateway's all from the other replica.
    let args = ["--no-provisioning", "--default-address", "127.0.113.1"];
    let mut replicas = [
        Controller::start_with(&api, "a", &args),
        Controller::start_with(&api, "b", &args),
    ];
    eventually(Duration::from_secs(20), "a leader", || async {
        holder(&api).is_some()
    })
    .await;
    let leading = usize::from(holder(&api).as_deref() == Some("b"));
    let (leader, other) = (&replicas[leading], &replicas[1 - leading]);
    let dir = tempfile::tempdir().unwrap();
    let roots = dir.path().join("roots.pem");
    std::fs::write(&roots, root_of(&api)).unwrap();
    let roots = roots.to_str().unwrap();
    let (config, leader_ca, ca) = (
        other.config.to_string(),
        leader.ca.to_string(),
        other.ca.to_string(),
    );
    let _app = weft(&["echo", "--listen", "127.0.113.2:8080"]);
    let cart_token = bound_token(&api, "cart", "cart-1");
    let _sidecar = weft(&[
        "sidecar",
        "run",
        "--controller",
        &config,
        "--ca",
        &leader_ca,
        "--trust-bundle",
        roots,
        "--workload",
        "shop/cart-1",
        "--identity",
        "spiffe://cluster.local/ns/shop/sa/cart",
        "--token",
        &cart_token,
        "--admin",
        "127.0.113.2:15020",
    ]);
    let _gateway = shop_gateway(&api, &config, &ca, roots, "127.0.113.1:15021");
    let client = support::client(&[]);
    let url = "http://127.0.113.1:8080/";
    // The gateway calls the pod through its sidecar over mutual TLS: the
    // app sees the gateway's identity.
    reaches_the_app_as_the_gateway(url).await;
    // The leader dies: nothing changes for the data plane.
    replicas[leading].kill();
    for _ in 0..20 {
        assert_eq!(support::get(&client, url, "shop.example.com").await.0, 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Its EndpointSlice says it is not ready: no more traffic to it (the
    // config from the replica that remains).
    api.apply(&cart_slice("127.0.113.2", false));
    eventually(
        Duration::from_secs(20),
        "no traffic to an unready pod",
        || async { support::get(&client, url, "shop.example.com").await.0 == 503 },
    )
    .await;
}
