//! `weft controller` against a Kubernetes API server: the stand-in under
//! `integration/apiserver`, driven by the real kubectl. The statuses weft
//! writes back match the goldens of the folder provider (one translation,
//! two providers); a watch dropped with 410 Gone recovers; two replicas
//! elect one leader, and the other takes over when it dies.

mod support;

use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;
use support::eventually;
use support::kube::{ApiServer, Controller};

/// Golden inputs whose objects need nothing a folder has and an API server
/// has not (Workloads, creation times written in the manifest).
const GOLDENS: &[&str] = &[
    "basic",
    "conformance",
    "attachment",
    "listeners",
    "grpc",
    "tls",
    "cors",
    "frontend",
];

fn golden(name: &str, suffix: &str) -> String {
    let path = format!(
        "{}/../controller/testdata/translate/{name}.{suffix}.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(path).unwrap()
}

/// `status` without `lastTransitionTime` and without nulls, to compare.
fn normal(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, v)| *k != "lastTransitionTime" && !v.is_null())
                .map(|(k, v)| (k.clone(), normal(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(normal).collect()),
        v => v.clone(),
    }
}

/// The resource name kubectl knows a kind by.
fn resource(kind: &str) -> String {
    format!("{}s", kind.to_lowercase())
        .replace("policys", "policies")
        .replace("classs", "classes")
}

/// Every namespace the documents of `yaml` are in, and weft's.
fn namespaces(yaml: &str) -> BTreeSet<String> {
    // weft's own, where its Lease and CA are.
    let mut out = BTreeSet::from(["weft-system".to_string()]);
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let Ok(v) = serde_yaml::Value::deserialize(doc) else {
            continue;
        };
        let kind = v["kind"].as_str().unwrap_or("");
        if matches!(kind, "Namespace" | "GatewayClass") {
            continue;
        }
        out.insert(
            v["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_string(),
        );
    }
    out
}

use serde::Deserialize;

async fn statuses_of(api: &ApiServer, expected: &[Value]) -> Vec<(String, Value, Value)> {
    expected
        .iter()
        .map(|e| {
            let kind = e["kind"].as_str().unwrap();
            let (ns, name) = (
                e["namespace"].as_str().unwrap(),
                e["name"].as_str().unwrap(),
            );
            let got = api
                .get(&resource(kind), ns, name)
                .map(|o| normal(&o["status"]))
                .unwrap_or(Value::Null);
            (format!("{kind} {ns}/{name}"), normal(&e["status"]), got)
        })
        .collect()
}

/// Applies the golden input `name` to a new API server, runs a controller
/// on it, and waits for every status of the golden output to show.
async fn golden_on_a_cluster(name: &str) {
    let Some(api) = ApiServer::start() else {
        return;
    };
    api.install_crds();
    // Every object is created at the same second, as the folder provider
    // creates them: which one is older is then decided as in the golden.
    api.call("POST", "/_standin/clock?freeze=2026-01-01T00:00:00Z")
        .await;
    let input = golden(name, "in");
    let ns: String = namespaces(&input)
        .iter()
        .map(|n| format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {n}}}\n---\n"))
        .collect();
    api.apply(&ns);
    api.apply(&input);
    let out: Value = serde_yaml::from_str(&golden(name, "out")).unwrap();
    let expected = out["statuses"].as_array().unwrap().clone();
    // Gateways the controller provisions show their Services' addresses;
    // the goldens know none.
    let _controller = Controller::start_with(&api, "a", &["--no-provisioning", "--gateway-class="]);
    let mut last = Vec::new();
    let waited = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            last = statuses_of(&api, &expected).await;
            if last.iter().all(|(_, want, got)| want == got) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
    .await;
    if waited.is_err() {
        let wrong: Vec<String> = last
            .iter()
            .filter(|(_, w, g)| w != g)
            .map(|(what, w, g)| format!("{what}\n  want {w}\n  got  {g}"))
            .collect();
        panic!(
            "{name}: {} statuses differ:\n{}",
            wrong.len(),
            wrong.join("\n")
        );
    }
}

#[tokio::test]
async fn statuses_match_the_folder_goldens() {
    for name in GOLDENS {
        golden_on_a_cluster(name).await;
    }
}

/// A GatewayClass of weft's, a Gateway `shop/gw` and a route `shop/r` to a
/// Service, with `host` as the route's hostname.
fn shop(host: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: shop}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: weft-system}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: weft}}
spec: {{controllerName: weft.dev/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: shop}}
spec:
  gatewayClassName: weft
  listeners: [{{name: http, port: 8080, protocol: HTTP}}]
---
apiVersion: v1
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
"#
    )
}

/// The generation the route's status (from weft) was written for.
fn route_observed(api: &ApiServer) -> Option<i64> {
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

fn holder(api: &ApiServer) -> Option<String> {
    let lease = api.get("leases", "weft-system", "weft-controller")?;
    lease["spec"]["holderIdentity"].as_str().map(str::to_string)
}

#[tokio::test]
async fn a_watch_dropped_with_410_recovers() {
    let Some(api) = ApiServer::start() else {
        return;
    };
    api.install_crds();
    api.apply(&shop("a.example.com"));
    let _controller = Controller::start(&api, "a");
    eventually(Duration::from_secs(20), "the route's status", || async {
        route_observed(&api) == Some(1)
    })
    .await;
    // Everything up to now is compacted away and every watch is cut: a
    // watcher resuming where it was gets 410 Gone and must list again.
    let (_, log) = api.call("GET", "/_standin/requests").await;
    let since = log.as_array().map_or(0, |l| l.len());
    api.call("POST", "/_standin/compact").await;
    api.call("POST", "/_standin/close-watches").await;
    api.apply(&shop("b.example.com"));
    eventually(
        Duration::from_secs(20),
        "the status of the edited route",
        || async { route_observed(&api) == Some(2) },
    )
    .await;
    let (_, log) = api.call("GET", "/_standin/requests").await;
    let relisted = log.as_array().unwrap()[since..].iter().any(|r| {
        let path = r["path"].as_str().unwrap_or("");
        r["method"] == "GET" && path.contains("/httproutes") && !path.contains("watch=")
    });
    assert!(relisted, "the controller listed routes again after the 410");
}

#[tokio::test]
async fn two_replicas_elect_one_leader_and_the_other_takes_over() {
    let Some(api) = ApiServer::start() else {
        return;
    };
    api.install_crds();
    api.apply(&shop("a.example.com"));
    let mut a = Controller::start(&api, "a");
    let mut b = Controller::start(&api, "b");
    eventually(
        Duration::from_secs(20),
        "a leader and the route's status",
        || async { holder(&api).is_some() && route_observed(&api) == Some(1) },
    )
    .await;
    let leader = holder(&api).unwrap();
    let transitions = |api: &ApiServer| {
        api.get("leases", "weft-system", "weft-controller").unwrap()["spec"]["leaseTransitions"]
            .as_i64()
    };
    let first = transitions(&api);
    // Renewed, never handed back and forth, over several lease durations.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(holder(&api).as_deref(), Some(leader.as_str()));
    assert_eq!(transitions(&api), first);
    let (dead, survivor) = if leader == "a" {
        (&mut a, "b")
    } else {
        (&mut b, "a")
    };
    dead.kill();
    eventually(
        Duration::from_secs(15),
        "the other replica leads",
        || async { holder(&api).as_deref() == Some(survivor) },
    )
    .await;
    // And writes statuses.
    api.apply(&shop("b.example.com"));
    eventually(
        Duration::from_secs(15),
        "the new leader writes the status",
        || async { route_observed(&api) == Some(2) },
    )
    .await;
}

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
         apiVersion: v1\nkind: Pod\nmetadata: {name: cart-1, namespace: shop}\n\
         spec: {serviceAccountName: cart, containers: [{name: app, image: cart}]}\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata: {name: other-1, namespace: shop}\n\
         spec: {containers: [{name: app, image: other}]}\n",
    );
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
    let uid = |pod: &str| {
        api.get("pods", "shop", pod).unwrap()["metadata"]["uid"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let token = |audience: &str, pod: &str| {
        let uid = uid(pod);
        let args = [
            "create",
            "token",
            "cart",
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
    };
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

/// The CA's root as a cluster's controller made it.
fn root_of(api: &ApiServer) -> String {
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

/// An AdmissionReview of creating `pod` in `namespace`.
fn admission(namespace: &str, pod: Value) -> Value {
    serde_json::json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "0b2f4c1e-5d6a-4a8b-9c7d-1e2f3a4b5c6d",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace, "operation": "CREATE", "object": pod}
    })
}

fn pod(labels: Value, annotations: Value) -> Value {
    serde_json::json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "cart-", "labels": labels, "annotations": annotations},
        "spec": {"serviceAccountName": "cart", "containers": [{"name": "app", "image": "cart",
            "ports": [{"name": "http", "containerPort": 8080}, {"containerPort": 9090}]}]}})
}

#[tokio::test]
async fn the_webhook_injects_sidecars_into_pods_of_the_mesh() {
    let Some(api) = ApiServer::start() else {
        return;
    };
    api.apply(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {weft.dev/mesh: enabled}}\n---\n\
         apiVersion: v1\nkind: Namespace\nmetadata: {name: plain}\n---\n\
         apiVersion: v1\nkind: Namespace\nmetadata: {name: weft-system}\n---\n\
         apiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\n\
         metadata: {name: weft-sidecar-injector}\nwebhooks:\n\
         - name: inject.weft.dev\n  admissionReviewVersions: [v1]\n  sideEffects: None\n\
         \x20 clientConfig: {service: {name: weft-controller, namespace: weft-system, path: /inject}}\n\
         - name: other.example.com\n  admissionReviewVersions: [v1]\n  sideEffects: None\n\
         \x20 clientConfig: {service: {name: other, namespace: elsewhere}}\n",
    );
    let controller = Controller::start(&api, "a");
    let root = root_of(&api);
    // The leader gives the webhook weft's roots, and only weft's webhook.
    eventually(
        Duration::from_secs(20),
        "the webhook's caBundle",
        || async {
            use base64::Engine;
            let config = api
                .get("mutatingwebhookconfigurations", "", "weft-sidecar-injector")
                .unwrap();
            let bundle = config["webhooks"][0]["clientConfig"]["caBundle"]
                .as_str()
                .map(|b| base64::engine::general_purpose::STANDARD.decode(b).unwrap());
            assert!(config["webhooks"][1]["clientConfig"]["caBundle"].is_null());
            bundle.as_deref() == Some(root.as_bytes())
        },
    )
    .await;
    // The API server checks the webhook as its Service's name, under that root.
    let host = "weft-controller.weft-system.svc";
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(root.as_bytes()).unwrap())
        .resolve(host, controller.webhook)
        .build()
        .unwrap();
    let url = format!("https://{host}:{}/inject", controller.webhook.port());
    let ask = |body: Value| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let r = client.post(url).json(&body).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let patched = |answer: &Value, pod: &Value| -> Option<Value> {
        use base64::Engine;
        let response = &answer["response"];
        assert_eq!(response["allowed"], true, "{answer}");
        assert_eq!(response["uid"], "0b2f4c1e-5d6a-4a8b-9c7d-1e2f3a4b5c6d");
        let b64 = response["patch"].as_str()?;
        assert_eq!(response["patchType"], "JSONPatch");
        let ops = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        let ops: json_patch::Patch = serde_json::from_slice(&ops).unwrap();
        let mut out = pod.clone();
        json_patch::patch(&mut out, &ops).unwrap();
        Some(out)
    };
    let none = serde_json::json!({});
    let meshed = pod(none.clone(), none.clone());
    let (code, answer) = ask(admission("shop", meshed.clone())).await;
    assert_eq!(code, 200);
    let injected = patched(&answer, &meshed).expect("a patch");
    let inits = injected["spec"]["initContainers"].as_array().unwrap();
    assert_eq!(inits.len(), 2);
    let (init, proxy) = (&inits[0], &inits[1]);
    assert_eq!(init["name"], "weft-init");
    let args: Vec<&str> = init["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        args.windows(2)
            .any(|w| w == ["--inbound", "8080=$(POD_IP):15006"]),
        "{args:?}"
    );
    assert!(
        args.windows(2)
            .any(|w| w == ["--inbound", "9090=$(POD_IP):15007"]),
        "{args:?}"
    );
    assert_eq!(
        init["securityContext"]["capabilities"]["add"],
        serde_json::json!(["NET_ADMIN", "NET_RAW"])
    );
    assert_eq!(proxy["name"], "weft-proxy");
    assert_eq!(proxy["restartPolicy"], "Always");
    assert_eq!(proxy["securityContext"]["runAsUser"], 1337);
    assert!(proxy["securityContext"]["capabilities"]["add"].is_null());
    let args: Vec<&str> = proxy["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(args
        .windows(2)
        .any(|w| w == ["--identity", "spiffe://cluster.local/ns/shop/sa/cart"]));
    assert!(args
        .windows(2)
        .any(|w| w == ["--workload", "$(POD_NAMESPACE)/$(POD_NAME)"]));
    let env = proxy["env"].as_array().unwrap();
    assert!(env
        .iter()
        .any(|e| e["name"] == "WEFT_TRUST_BUNDLE" && e["value"] == root.as_str()));
    let volume = &injected["spec"]["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"];
    assert_eq!(volume["audience"], "weft-ca");
    assert_eq!(
        injected["metadata"]["annotations"]["weft.dev/injected"],
        "true"
    );
    // The app's containers are untouched.
    assert_eq!(injected["spec"]["containers"], meshed["spec"]["containers"]);
    // Out of the mesh: another namespace, an opt-out, a pod label, a
    // second injection, the host's network; other kinds pass untouched.
    let out_of_mesh = [
        admission("plain", meshed.clone()),
        admission(
            "shop",
            pod(
                none.clone(),
                serde_json::json!({"weft.dev/inject": "false"}),
            ),
        ),
        admission(
            "shop",
            pod(
                serde_json::json!({"weft.dev/mesh": "disabled"}),
                none.clone(),
            ),
        ),
        admission("shop", injected.clone()),
        admission("shop", {
            let mut p = meshed.clone();
            p["spec"]["hostNetwork"] = true.into();
            p
        }),
    ];
    for review in out_of_mesh {
        let (code, answer) = ask(review.clone()).await;
        assert_eq!(code, 200);
        assert!(
            patched(&answer, &review["request"]["object"]).is_none(),
            "{review}"
        );
    }
    // A pod labelled into the mesh in a namespace that is not.
    let labelled = pod(
        serde_json::json!({"weft.dev/mesh": "enabled"}),
        none.clone(),
    );
    let (_, answer) = ask(admission("plain", labelled.clone())).await;
    assert!(patched(&answer, &labelled).is_some());
    let mut service = admission("shop", serde_json::json!({"kind": "Service"}));
    service["request"]["kind"]["kind"] = "Service".into();
    let (_, answer) = ask(service.clone()).await;
    assert!(patched(&answer, &service["request"]["object"]).is_none());
    let (code, _) = ask(serde_json::json!({"not": "a review"})).await;
    assert_eq!(code, 400);
}

/// A process the test started, killed when dropped.
struct Process(std::process::Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn weft(args: &[&str]) -> Process {
    Process(
        std::process::Command::new(support::WEFT)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// A token for `sa` in shop, bound to `pod`, for weft's CA.
fn bound_token(api: &ApiServer, sa: &str, pod: &str) -> String {
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
        "weft-ca",
        "--bound-object-kind",
        "Pod",
        "--bound-object-name",
        pod,
        "--bound-object-uid",
        &uid,
    ];
    api.kubectl(&args).trim().to_string()
}

fn slice(ready: bool) -> String {
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata: {{name: cart-1, namespace: shop, labels: {{kubernetes.io/service-name: cart}}}}\n\
         addressType: IPv4\nports: [{{name: http, port: 8080}}]\n\
         endpoints: [{{addresses: [127.0.113.2], conditions: {{ready: {ready}}}}}]\n"
    )
}

#[tokio::test]
async fn a_meshed_pod_serves_through_its_sidecar_behind_a_gateway() {
    let Some(api) = ApiServer::start() else {
        return;
    };
    api.install_crds();
    api.apply(&format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: shop, labels: {{weft.dev/mesh: enabled}}}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: weft-system}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: weft}}
spec: {{controllerName: weft.dev/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: shop}}
spec:
  gatewayClassName: weft
  listeners: [{{name: http, port: 8080, protocol: HTTP}}]
---
apiVersion: gateway.networking.k8s.io/v1
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
  ports: [{{name: http, port: 80, targetPort: 8080}}]
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
metadata: {{name: cart-1, namespace: shop, labels: {{app: cart}}}}
spec:
  serviceAccountName: cart
  initContainers: [{{name: weft-proxy, image: weft, restartPolicy: Always}}]
  containers: [{{name: app, image: cart, ports: [{{name: http, containerPort: 8080}}]}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: gw-1, namespace: shop}}
spec:
  serviceAccountName: gw
  containers: [{{name: gateway, image: weft}}]
"#,
        slice = slice(true)
    ));
    // What the kubelet would report.
    api.kubectl(&[
        "patch",
        "pod",
        "cart-1",
        "-n",
        "shop",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Running","podIP":"127.0.113.2"}}"#,
    ]);
    let controller = Controller::start_with(
        &api,
        "a",
        &["--no-provisioning", "--default-address", "127.0.113.1"],
    );
    let dir = tempfile::tempdir().unwrap();
    let roots = dir.path().join("roots.pem");
    std::fs::write(&roots, root_of(&api)).unwrap();
    let roots = roots.to_str().unwrap();
    let (config, ca) = (controller.config.to_string(), controller.ca.to_string());
    let _app = weft(&["echo", "--listen", "127.0.113.2:8080"]);
    let cart_token = bound_token(&api, "cart", "cart-1");
    let _sidecar = weft(&[
        "sidecar",
        "run",
        "--controller",
        &config,
        "--ca",
        &ca,
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
    let gw_token = bound_token(&api, "gw", "gw-1");
    let _gateway = weft(&[
        "gateway",
        "--controller",
        &config,
        "--ca",
        &ca,
        "--trust-bundle",
        roots,
        "--gateway",
        "shop/gw",
        "--token",
        &gw_token,
        "--admin",
        "127.0.113.1:15021",
    ]);
    let client = support::client(&[]);
    let url = "http://127.0.113.1:8080/";
    // The gateway calls the pod through its sidecar over mutual TLS: the
    // app sees the gateway's identity.
    eventually(
        Duration::from_secs(30),
        "the pod behind the gateway",
        || async {
            let (status, body) = support::get(&client, url, "shop.example.com").await;
            status == 200
                && body
                    .to_string()
                    .contains("spiffe://cluster.local/ns/shop/sa/gw")
        },
    )
    .await;
    // Its EndpointSlice says it is not ready: no more traffic to it.
    api.apply(&slice(false));
    eventually(
        Duration::from_secs(20),
        "no traffic to an unready pod",
        || async { support::get(&client, url, "shop.example.com").await.0 == 503 },
    )
    .await;
}

#[tokio::test]
async fn the_leader_makes_the_gateway_class_when_missing() {
    let Some(api) = ApiServer::start() else {
        return;
    };
    api.install_crds();
    api.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: weft-system}\n");
    let _controller = Controller::start(&api, "a");
    eventually(
        Duration::from_secs(20),
        "the GatewayClass weft, accepted",
        || async {
            let Some(class) = api.get("gatewayclasses", "", "weft") else {
                return false;
            };
            assert_eq!(
                class["spec"]["controllerName"],
                "weft.dev/gateway-controller"
            );
            class["status"]["conditions"][0]["status"] == "True"
        },
    )
    .await;
}

/// The user's story, on the stand-in: `helm install` the chart, run the
/// controller as the chart's Deployment would, label a namespace, `kubectl
/// apply -k examples/bookinfo`, and `kubectl get gateway,httproute -A`
/// shows statuses weft wrote; the Gateway is provisioned, the webhook has
/// its caBundle, and a `helm upgrade` keeps it.
#[tokio::test]
async fn helm_install_then_bookinfo_gets_statuses() {
    let Some(api) = ApiServer::start() else {
        return;
    };
    let chart = format!("{}/../charts/weft", env!("CARGO_MANIFEST_DIR"));
    let install = [
        "install",
        "weft",
        &chart,
        "-n",
        "weft-system",
        "--create-namespace",
        "--set",
        "gatewayAPI.installCRDs=true",
    ];
    api.helm(&install);
    // The controller with the args the chart gives its pods.
    let deployment = api
        .get("deployments", "weft-system", "weft-controller")
        .unwrap();
    let chart_args: Vec<String> = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .skip(1) // `controller`
        .map(|a| a.as_str().unwrap().to_string())
        .filter(|a| {
            !a.starts_with("--lease") && !a.starts_with("--renew") && !a.starts_with("--retry")
        })
        .collect();
    let args: Vec<&str> = chart_args.iter().map(String::as_str).collect();
    let _controller = Controller::start_with(&api, "weft-controller-0", &args);
    let bookinfo = format!("{}/../examples/bookinfo", env!("CARGO_MANIFEST_DIR"));
    api.kubectl(&["apply", "-k", &bookinfo]);
    let accepted = |o: &Value| {
        let conditions = if o["kind"] == "Gateway" {
            o["status"]["conditions"].clone()
        } else {
            o["status"]["parents"][0]["conditions"].clone()
        };
        conditions.as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Accepted" && c["status"] == "True")
                && cs.iter().all(|c| c["status"] == "True")
        })
    };
    eventually(
        Duration::from_secs(30),
        "statuses on every gateway and route",
        || async {
            let out = api.kubectl(&["get", "gateway,httproute", "-A", "-o", "json"]);
            let list: Value = serde_json::from_str(&out).unwrap();
            let items = list["items"].as_array().unwrap();
            items.len() == 3 && items.iter().all(accepted)
        },
    )
    .await;
    assert!(api.get("deployments", "bookinfo", "bookinfo").is_some());
    let injector = "weft-sidecar-injector-weft-system";
    let bundle = |api: &ApiServer| {
        let config = api
            .get("mutatingwebhookconfigurations", "", injector)
            .unwrap();
        config["webhooks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| {
                w["clientConfig"]["caBundle"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
            .collect::<Vec<_>>()
    };
    eventually(
        Duration::from_secs(20),
        "the webhooks' caBundle",
        || async { bundle(&api).iter().all(|b| !b.is_empty()) },
    )
    .await;
    let before = bundle(&api);
    let upgrade = [
        "upgrade",
        "weft",
        &chart,
        "-n",
        "weft-system",
        "--set",
        "gatewayAPI.installCRDs=true",
    ];
    api.helm(&upgrade);
    assert_eq!(bundle(&api), before, "helm upgrade dropped the caBundle");
}
