//! Sidecar injection on Kubernetes: the webhook's answers to
//! AdmissionReviews, its caBundle kept by the leader, and a pod it
//! injected, run as a kubelet would run it in a network namespace.

mod support;

use serde_json::Value;
use std::time::Duration;
use support::cluster::{
    bound_token, meshed_shop, reaches_the_app_as_the_gateway, root_of, running, shop_gateway,
    webhook_client,
};
use support::eventually;
use support::kube::{ApiServer, Controller};

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
    // The webhook answers once the cluster is read.
    controller.ready().await;
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
    let (client, url) = webhook_client(&root, &controller);
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

/// What the kubelet does with a container: `$(VAR)` in its args expanded
/// from its env (fieldRefs resolved for `pod`), the projected token at its
/// path, and the cluster's DNS names resolved to `names`' addresses.
fn as_kubelet(
    container: &Value,
    pod: (&str, &str, &str),
    token_file: &str,
    names: &[(&str, String)],
) -> (Vec<String>, Vec<(String, String)>) {
    let (name, namespace, ip) = pod;
    let env: Vec<(String, String)> = container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let value = match e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                Some("metadata.name") => name.to_string(),
                Some("metadata.namespace") => namespace.to_string(),
                Some("status.podIP") => ip.to_string(),
                Some(other) => panic!("a fieldRef the test does not know: {other}"),
                None => e["value"].as_str().unwrap_or("").to_string(),
            };
            (e["name"].as_str().unwrap().to_string(), value)
        })
        .collect();
    let args = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let mut a = a.as_str().unwrap().to_string();
            for (k, v) in &env {
                a = a.replace(&format!("$({k})"), v);
            }
            for (host, addr) in names {
                a = a.replace(host, addr);
            }
            a.replace("/var/run/secrets/weft/token", token_file)
        })
        .collect();
    (args, env)
}

/// The webhook's pod, run as a kubelet would run it, in a network namespace
/// of its own: the init container's iptables rules, the app, and the
/// sidecar with the token, roots and arguments the patch gave it. A gateway
/// outside reaches the app through the sidecar over mutual TLS; a plain
/// client is captured by the sidecar and refused.
#[tokio::test]
async fn an_injected_pod_runs_as_the_webhook_made_it() {
    if !support::netns::available() {
        support::cannot_run("a pod's network namespace needs root and ip, iptables, setpriv, curl");
        return;
    }
    let Some(api) = ApiServer::start() else {
        return;
    };
    api.install_crds();
    let (host_ip, pod_ip) = ("10.252.0.1", "10.252.0.2");
    let netns = support::netns::Netns::new("pod", host_ip, pod_ip);
    api.apply(&meshed_shop(pod_ip, true));
    let any = |ip: &str| format!("{ip}:0");
    let controller = Controller::start_with(
        &api,
        "a",
        &[
            "--no-provisioning",
            "--default-address",
            "127.0.115.1",
            "--config-listen",
            &any(host_ip),
            "--ca-listen",
            &any(host_ip),
        ],
    );
    controller.ready().await;
    let root = root_of(&api);
    // Admission: the pod as the user wrote it, then as the webhook made it.
    let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "cart-1", "namespace": "shop", "labels": {"app": "cart"}},
        "spec": {"serviceAccountName": "cart", "containers": [{"name": "app", "image": "weft",
            "args": ["echo", "--listen", "0.0.0.0:8080"],
            "ports": [{"name": "http", "containerPort": 8080}]}]}});
    let (client, url) = webhook_client(&root, &controller);
    let answer: Value = client
        .post(url)
        .json(&admission("shop", pod.clone()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ops = {
        use base64::Engine;
        let b64 = answer["response"]["patch"].as_str().expect("a patch");
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap()
    };
    let mut injected = pod;
    let ops: json_patch::Patch = serde_json::from_slice(&ops).unwrap();
    json_patch::patch(&mut injected, &ops).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("pod.json");
    std::fs::write(&manifest, injected.to_string()).unwrap();
    api.kubectl(&["create", "-f", manifest.to_str().unwrap()]);
    running(&api, "cart-1", pod_ip);
    // The kubelet's part.
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, bound_token(&api, "cart", "cart-1")).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        &token_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let names = [
        (
            "weft-controller.weft-system.svc.cluster.local:15010",
            controller.config.to_string(),
        ),
        (
            "weft-controller.weft-system.svc.cluster.local:15012",
            controller.ca.to_string(),
        ),
    ];
    let this = ("cart-1", "shop", pod_ip);
    let inits = injected["spec"]["initContainers"].as_array().unwrap();
    let (init_args, _) = as_kubelet(&inits[0], this, token_file.to_str().unwrap(), &names);
    let init_args: Vec<&str> = init_args.iter().map(String::as_str).collect();
    let init = netns
        .command(None, &[&[support::WEFT][..], &init_args].concat())
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "weft-init: {}",
        String::from_utf8_lossy(&init.stderr)
    );
    let (proxy_args, proxy_env) = as_kubelet(&inits[1], this, token_file.to_str().unwrap(), &names);
    let proxy_args: Vec<&str> = proxy_args.iter().map(String::as_str).collect();
    let uid = u32::try_from(inits[1]["securityContext"]["runAsUser"].as_i64().unwrap()).unwrap();
    let _proxy = support::cluster::Process(
        netns
            .command(Some(uid), &[&[support::WEFT][..], &proxy_args].concat())
            .envs(proxy_env)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (app_args, _) = as_kubelet(&injected["spec"]["containers"][0], this, "", &[]);
    let app_args: Vec<&str> = app_args.iter().map(String::as_str).collect();
    let _app = support::cluster::Process(
        netns
            .command(Some(1000), &[&[support::WEFT][..], &app_args].concat())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (config, ca) = (controller.config.to_string(), controller.ca.to_string());
    let roots = dir.path().join("roots.pem");
    std::fs::write(&roots, &root).unwrap();
    let _gateway = shop_gateway(
        &api,
        &config,
        &ca,
        roots.to_str().unwrap(),
        "127.0.115.1:15021",
    );
    // The sidecar's startup probe, as the kubelet would ask it.
    let plain = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    eventually(Duration::from_secs(30), "the sidecar ready", || async {
        let url = format!("http://{pod_ip}:15020/ready");
        plain.get(url).send().await.is_ok_and(|r| r.status() == 200)
    })
    .await;
    reaches_the_app_as_the_gateway("http://127.0.115.1:8080/").await;
    // A plain client at the app's port is taken by the sidecar's inbound
    // listener, which speaks only mutual TLS.
    let direct = plain.get(format!("http://{pod_ip}:8080/")).send().await;
    assert!(direct.is_err(), "plaintext reached the app: {direct:?}");
}
