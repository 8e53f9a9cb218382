//! Transparent capture, in a network namespace this test makes (it needs
//! root and iptables, and says so and passes when it has neither, except
//! under CI, where it fails): with the
//! rules `weft sidecar iptables` applies, a process that knows nothing of
//! the mesh (curl, as another user, no HTTP_PROXY) is routed by its
//! sidecar — to a mesh service over mutual TLS, with the port taken from
//! the connection's original destination when the Host lacks it, and to a
//! destination outside the mesh as it was bound, TLS the client does
//! itself included (its ClientHello read, then passed whole) — and a
//! plaintext client arriving from outside the namespace is taken by the
//! inbound listener.

mod support;
use std::time::Duration;
use support::netns::{available, run, Netns};
use support::*;

const MESH: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: cap, labels: {weft.dev/mesh: enabled}}
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {name: client, namespace: cap, labels: {app: client}}
spec:
  serviceAccountName: client
  address: 127.0.0.1
  command: [weft, echo, --listen, "127.0.0.1:9080"]
  ports: [{name: http, containerPort: 9080}]
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {name: server, namespace: cap, labels: {app: server}}
spec:
  serviceAccountName: server
  address: 127.0.60.3
  command: [weft, echo, --listen, "127.0.60.3:9080"]
  ports: [{name: http, containerPort: 9080}]
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {name: outside, namespace: default}
spec:
  address: 127.0.60.9
  command: [weft, echo, --listen, "127.0.60.9:9090"]
  ports: [{name: http, containerPort: 9090}]
---
apiVersion: v1
kind: Service
metadata: {name: server, namespace: cap}
spec: {selector: {app: server}, ports: [{name: http, port: 9080, targetPort: http}]}
"#;

// Several threads: the TLS server below is served while curl blocks this one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iptables_capture_sends_plain_calls_through_the_sidecars() {
    if !available() {
        cannot_run("transparent capture needs root and ip, iptables, setpriv, curl and openssl");
        return;
    }
    let ns = Netns::new("cap", "10.251.0.1", "10.251.0.2");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mesh.yaml"), MESH).unwrap();
    let weft = Weft::start_in(Some(&ns.name), dir.path(), "127.0.0.1", &[], &[]);
    eventually(
        Duration::from_secs(30),
        "both sidecars are ready",
        || async {
            ["127.0.0.1", "127.0.60.3"].iter().all(|ip| {
                let url = format!("http://{ip}:15020/ready");
                let out = ns.exec(None, &["curl", "-sf", "-m", "2", &url]);
                out.status.success()
            })
        },
    )
    .await;

    let mesh_call = [
        "--resolve",
        "server.cap:9080:127.0.60.77",
        "http://server.cap:9080/hello",
    ];
    assert_eq!(
        ns.curl(&mesh_call),
        None,
        "nothing listens at 127.0.60.77 before capture"
    );
    let apply = [
        WEFT,
        "sidecar",
        "iptables",
        "--apply",
        "--outbound",
        "127.0.0.1:15001",
        "--inbound",
        "9080=127.0.60.3:15006",
        "--proxy-uid",
        "0",
    ];
    let out = ns.exec(None, &apply);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A mesh service by name: through both sidecars, over mutual TLS.
    let (status, body) = ns.curl(&mesh_call).expect("captured");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["pod"], "server");
    assert_eq!(body["path"], "/hello");
    assert_eq!(
        body["headers"]["X-Forwarded-Client-Cert"],
        serde_json::json!(["URI=spiffe://cluster.local/ns/cap/sa/client"])
    );
    // A Host without its port: the port the connection was bound for.
    let (status, body) = ns
        .curl(&["-H", "Host: server.cap", "http://127.0.60.77:9080/"])
        .expect("captured");
    assert_eq!((status, body["pod"].as_str()), (200, Some("server")));
    // Outside the mesh, under a name nothing resolves: where it was bound.
    let (status, body) = ns
        .curl(&[
            "--resolve",
            "outside.test:9090:127.0.60.9",
            "http://outside.test:9090/",
        ])
        .expect("passed through");
    assert_eq!((status, body["pod"].as_str()), (200, Some("outside")));
    // The client's own TLS to a destination outside the mesh: the sidecar
    // reads its ClientHello, finds no declared host for its server name,
    // and passes the connection whole to where it was bound (AllowAny).
    // (The server answers with the name the client asked for: only the
    // client's own session, passed whole, carries it there. curl does not
    // check the certificate: the test CA and its leaf share rcgen's default
    // subject, so OpenSSL takes the leaf for self-signed.)
    let cert = support::pki::issue(&support::pki::ca(), &["tls.test"], &[]);
    support::partner::serve(&ns.name, "127.0.60.9:9443", "own-tls", Some(&cert));
    let own_tls = [
        "-k",
        "--resolve",
        "tls.test:9443:127.0.60.9",
        "https://tls.test:9443/own",
    ];
    let (status, body) = ns.curl(&own_tls).expect("passed through whole");
    assert_eq!(
        (status, body["sni"].as_str()),
        (200, Some("tls.test")),
        "{body}"
    );
    assert_eq!(body["path"], "/own");

    // From outside the namespace, the app port is the inbound listener:
    // it speaks TLS with the server's SPIFFE certificate and refuses plaintext.
    let plain = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    assert!(plain.get("http://10.251.0.2:9080/").send().await.is_err());
    let cert = run(
        "sh",
        &["-c", "openssl s_client -connect 10.251.0.2:9080 </dev/null 2>/dev/null | openssl x509 -noout -ext subjectAltName"],
    );
    let sans = String::from_utf8_lossy(&cert.stdout);
    assert!(
        sans.contains("URI:spiffe://cluster.local/ns/cap/sa/server"),
        "{sans}"
    );

    weft.sigterm();
}
