//! Fixtures of the Kubernetes tests: a small shop of manifests, the
//! Lease's holder, the CA's root, bound tokens, processes killed on drop.
#![allow(dead_code)]

use super::kube::ApiServer;

/// weft's namespace, its GatewayClass, and a Gateway `shop/gw` with an
/// HTTP listener on 8080.
const GATEWAY: &str = "apiVersion: v1
kind: Namespace
metadata: {name: weft-system}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: weft}
spec: {controllerName: weft.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: shop}
spec:
  gatewayClassName: weft
  listeners: [{name: http, port: 8080, protocol: HTTP}]
---
";

/// A GatewayClass of weft's, a Gateway `shop/gw` and a route `shop/r` to a
/// Service, with `host` as the route's hostname.
pub fn shop(host: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: shop}}
---
{gateway}apiVersion: v1
kind: Service
metadata: {{name: web, namespace: shop}}
spec: {{ports: [{{port: 80}}]}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r, namespace: shop}}
spec:
  parentRefs: [{{name: gw}}]
  hostnames: [{host}]
  rules: [{{backendRefs: [{{name: web, port: 80}}]}}]
"#,
        gateway = GATEWAY,
    )
}

/// The generation the route's status (from weft) was written for.
pub fn route_observed(api: &ApiServer) -> Option<i64> {
    let route = api.get("httproutes", "shop", "r")?;
    let parent = route["status"]["parents"]
        .as_array()?
        .iter()
        .find(|p| p["controllerName"] == "weft.dev/gateway-controller")?
        .clone();
    let accepted = parent["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Accepted" && c["status"] == "True")?
        .clone();
    accepted["observedGeneration"].as_i64()
}

pub fn holder(api: &ApiServer) -> Option<String> {
    let lease = api.get("leases", "weft-system", "weft-controller")?;
    lease["spec"]["holderIdentity"].as_str().map(str::to_string)
}

/// The CA's root as a cluster's controller made it.
pub fn root_of(api: &ApiServer) -> String {
    use base64::Engine;
    let secret = api.get("secrets", "weft-system", "weft-ca").unwrap();
    let b64 = secret["data"]["root-cert.pem"].as_str().unwrap();
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
    )
    .unwrap()
}

/// A token for `sa` in shop, bound to `pod`, for `audience`.
pub fn token_for(api: &ApiServer, sa: &str, pod: &str, audience: &str) -> String {
    let uid = api.get("pods", "shop", pod).unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let args = [
        "create",
        "token",
        sa,
        "-n",
        "shop",
        "--audience",
        audience,
        "--bound-object-kind",
        "Pod",
        "--bound-object-name",
        pod,
        "--bound-object-uid",
        &uid,
    ];
    api.kubectl(&args).trim().to_string()
}

/// A token for `sa` in shop, bound to `pod`, for weft's CA.
pub fn bound_token(api: &ApiServer, sa: &str, pod: &str) -> String {
    token_for(api, sa, pod, "weft-ca")
}

/// A process the test started, killed when dropped.
pub struct Process(pub std::process::Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn weft(args: &[&str]) -> Process {
    Process(
        std::process::Command::new(super::WEFT)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// A meshed shop: Gateway `shop/gw` (HTTP 8080) routing `shop.example.com`
/// to the Service `cart` (port 80, the pods' port `http`), whose one
/// EndpointSlice lists `pod_ip` on 8080 as `ready`; service accounts cart
/// and gw, and a pod gw-1 for the gateway's token.
pub fn meshed_shop(pod_ip: &str, ready: bool) -> String {
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: shop, labels: {{weft.dev/mesh: enabled}}}}
---
{gateway}apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r, namespace: shop}}
spec:
  parentRefs: [{{name: gw}}]
  hostnames: [shop.example.com]
  rules: [{{backendRefs: [{{name: cart, port: 80}}]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: cart, namespace: shop}}
spec:
  selector: {{app: cart}}
  ports: [{{name: http, port: 80, targetPort: http}}]
---
{slice}---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: cart, namespace: shop}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: gw, namespace: shop}}
---
apiVersion: v1
kind: Pod
metadata: {{name: gw-1, namespace: shop}}
spec: {{serviceAccountName: gw, containers: [{{name: gateway, image: weft}}]}}
"#,
        slice = cart_slice(pod_ip, ready),
        gateway = GATEWAY,
    )
}

/// The EndpointSlice of the shop's cart Service.
pub fn cart_slice(pod_ip: &str, ready: bool) -> String {
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata: {{name: cart-1, namespace: shop, labels: {{kubernetes.io/service-name: cart}}}}\n\
         addressType: IPv4\nports: [{{name: http, port: 8080}}]\n\
         endpoints: [{{addresses: [{pod_ip}], conditions: {{ready: {ready}}}}}]\n"
    )
}

/// What the kubelet reports once `pod` of shop runs at `ip`.
pub fn running(api: &ApiServer, pod: &str, ip: &str) {
    let status = format!(r#"{{"status":{{"phase":"Running","podIP":"{ip}"}}}}"#);
    api.kubectl(&[
        "patch",
        "pod",
        pod,
        "-n",
        "shop",
        "--subresource=status",
        "--type=merge",
        "-p",
        &status,
    ]);
}

/// A client that trusts `root` and reaches the webhook of `controller` by
/// its Service's name, as the API server does; and the webhook's URL.
pub fn webhook_client(
    root: &str,
    controller: &super::kube::Controller,
) -> (reqwest::Client, String) {
    let host = "weft-controller.weft-system.svc";
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(root.as_bytes()).unwrap())
        .resolve(host, controller.webhook)
        .build()
        .unwrap();
    (
        client,
        format!("https://{host}:{}/inject", controller.webhook.port()),
    )
}

/// `weft gateway` for `shop/gw`, authenticated by the token of its pod
/// gw-1, fed by the controller's `config` server and `ca`.
pub fn shop_gateway(api: &ApiServer, config: &str, ca: &str, roots: &str, admin: &str) -> Process {
    let token = bound_token(api, "gw", "gw-1");
    weft(&[
        "gateway",
        "--controller",
        config,
        "--ca",
        ca,
        "--trust-bundle",
        roots,
        "--gateway",
        "shop/gw",
        "--token",
        &token,
        "--admin",
        admin,
    ])
}

/// Waits until the shop's gateway at `url` answers 200 from an app that
/// saw the gateway's own SPIFFE ID: it called the pod through its sidecar,
/// over mutual TLS.
pub async fn reaches_the_app_as_the_gateway(url: &str) {
    let client = super::client(&[]);
    super::eventually(
        std::time::Duration::from_secs(30),
        "the app behind the gateway",
        || async {
            let (status, body) = super::get(&client, url, "shop.example.com").await;
            status == 200
                && body
                    .to_string()
                    .contains("spiffe://cluster.local/ns/shop/sa/gw")
        },
    )
    .await;
}
