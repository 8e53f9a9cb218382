//! A CA the user provides as the Secret `weft-system/cacerts`: the mesh
//! issues under the user's root (a sidecar's certificate verifies against
//! it and calls succeed), and a Secret lacking keys stops `weft up` with a
//! message saying what it needs.

mod support;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::*;

const MESH: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: own, labels: {weft.dev/mesh: enabled}}
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {name: front, namespace: own, labels: {app: front}}
spec:
  serviceAccountName: front
  address: 127.0.15.2
  command: [weft, echo, --listen, "127.0.15.2:9080", --call, "http://back:9080/"]
  ports: [{name: http, containerPort: 9080}]
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {name: back, namespace: own, labels: {app: back}}
spec:
  serviceAccountName: back
  address: 127.0.15.3
  command: [weft, echo, --listen, "127.0.15.3:9080"]
  ports: [{name: http, containerPort: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: back, namespace: own}
spec: {selector: {app: back}, ports: [{name: http, port: 9080, targetPort: http}]}
"#;

fn secret(fields: &[(&str, &str)]) -> String {
    let mut out = String::from(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: weft-system}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: cacerts, namespace: weft-system}\nstringData:\n",
    );
    for (k, v) in fields {
        out += &format!("  {k}: |\n");
        for line in v.lines() {
            out += &format!("    {line}\n");
        }
    }
    out
}

#[tokio::test]
async fn the_mesh_issues_under_the_users_root() {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let root = params.self_signed(&key).unwrap().pem();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mesh.yaml"), MESH).unwrap();
    let fields = [
        ("root-cert.pem", root.as_str()),
        ("root-key.pem", &key.serialize_pem()),
    ];
    std::fs::write(dir.path().join("ca.yaml"), secret(&fields)).unwrap();
    std::fs::write(dir.path().join("root.pem"), &root).unwrap();
    let weft = Weft::start(dir.path(), "127.0.15.1");

    let admin = reqwest::Client::builder().no_proxy().build().unwrap();
    eventually(
        Duration::from_secs(30),
        "front calls back over mTLS",
        || async {
            let Ok(resp) = admin.get("http://127.0.15.2:9080/").send().await else {
                return false;
            };
            let body: serde_json::Value = resp.json().await.unwrap_or_default();
            body["calls"][0]["status"] == 200
        },
    )
    .await;
    // back's inbound side presents a chain that verifies to the user's root.
    let root_file = dir.path().join("root.pem");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect 127.0.15.3:15006 -CAfile {} </dev/null 2>&1",
            root_file.display()
        ))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Verify return code: 0 (ok)"), "{text}");
    weft.sigterm();
}

#[test]
fn an_incomplete_ca_secret_stops_weft_up_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ca.yaml"),
        secret(&[("root-cert.pem", "x")]),
    )
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let out = Command::new(WEFT)
        .arg("up")
        .arg(dir.path())
        .args(["--admin", "127.0.0.1:0", "--state"])
        .arg(state.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("weft-system/cacerts needs root-cert.pem with root-key.pem"),
        "{stderr}"
    );
}
