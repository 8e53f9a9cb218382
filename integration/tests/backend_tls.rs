//! BackendTLSPolicy end to end: the gateway originates TLS to a backend of
//! the test's own, sending the policy's hostname as SNI, checking the
//! server's certificate against the policy's CA and names, and presenting
//! the Gateway's backend client certificate. A wrong CA or a name the
//! certificate lacks fails the request (503); a policy that cannot be met
//! fails it without trying (500), never falling back to plaintext.

mod support;
use std::sync::Arc;
use std::time::Duration;
use support::pki::{ca, indent, issue, server_config};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const IP: &str = "127.0.57.1";

/// An HTTPS backend: answers every request with the SNI it was asked for
/// and whether the client presented a certificate of `client_ca`.
async fn https_backend(cert: &(String, String), client_ca: &str) -> u16 {
    let config = server_config(cert, Some(client_ca));
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let l = TcpListener::bind(format!("{IP}:0")).await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut s) = acceptor.accept(s).await else {
                    return;
                };
                let (_, conn) = s.get_ref();
                let sni = conn.server_name().unwrap_or("").to_string();
                let client = conn.peer_certificates().is_some_and(|c| !c.is_empty());
                let body = format!("sni={sni} client-cert={client}");
                let mut buf = [0u8; 4096];
                // One request per connection is enough here.
                let _ = s.read(&mut buf).await;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    port
}

fn policy(name: &str, service: &str, validation: &str) -> String {
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {{name: {name}}}
spec:
  targetRefs: [{{group: "", kind: Service, name: {service}}}]
  validation: {validation}
"#
    )
}

/// Conformance: BackendTLSPolicy, BackendTLSPolicySANValidation, GatewayBackendClientCertificate
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_tls_policies() {
    let (server_ca, other_ca, client_ca) = (ca(), ca(), ca());
    let server = issue(
        &server_ca,
        &["abc.example.com"],
        &["spiffe://abc.example.com/test-identity"],
    );
    let client = issue(&client_ca, &["gw.example.com"], &[]);
    let port = https_backend(&server, &client_ca.pem).await;
    let gw = gateway(
        "  tls: {backend: {clientCertificateRef: {name: client}}}\n  \
         listeners: [{name: http, port: 8080, protocol: HTTP}]\n",
    );
    let mut files = vec![format!(
        r#"{gw}---
apiVersion: v1
kind: Secret
metadata: {{name: client}}
type: kubernetes.io/tls
stringData:
  tls.crt: |
{crt}  tls.key: |
{key}---
apiVersion: v1
kind: ConfigMap
metadata: {{name: server-ca}}
data:
  ca.crt: |
{server_ca}---
apiVersion: v1
kind: ConfigMap
metadata: {{name: other-ca}}
data:
  ca.crt: |
{other_ca}"#,
        crt = indent(&client.0),
        key = indent(&client.1),
        server_ca = indent(&server_ca.pem),
        other_ca = indent(&other_ca.pem),
    )];
    let ca_ref = |cm: &str| format!(r#"[{{group: "", kind: ConfigMap, name: {cm}}}]"#);
    let cases = [
        ("good", format!("{{hostname: abc.example.com, caCertificateRefs: {}}}", ca_ref("server-ca"))),
        ("uri", format!("{{hostname: abc.example.com, caCertificateRefs: {}, subjectAltNames: [{{type: URI, uri: \"spiffe://abc.example.com/test-identity\"}}]}}", ca_ref("server-ca"))),
        ("wrong-ca", format!("{{hostname: abc.example.com, caCertificateRefs: {}}}", ca_ref("other-ca"))),
        ("wrong-name", format!("{{hostname: mismatch.example.com, caCertificateRefs: {}}}", ca_ref("server-ca"))),
        ("wrong-san", format!("{{hostname: abc.example.com, caCertificateRefs: {}, subjectAltNames: [{{type: Hostname, hostname: other.example.com}}]}}", ca_ref("server-ca"))),
        ("no-ca", format!("{{hostname: abc.example.com, caCertificateRefs: {}}}", ca_ref("missing"))),
    ];
    for (name, validation) in &cases {
        files.push(slice_service(name, IP, port, None));
        files.push(policy(name, name, validation));
        files.push(format!(
            r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}}}
spec:
  parentRefs: [{{name: gw}}]
  hostnames: [{name}.test]
  rules: [{{backendRefs: [{{name: {name}, port: 80}}]}}]
"#
        ));
    }
    let text = files.join("---\n");
    let weft = Weft::up(IP, &[("all.yaml", &text)]);
    let c = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let url = format!("http://{IP}:8080/");
    let fetch = |host: &'static str| {
        let c = c.clone();
        let url = url.clone();
        async move {
            let resp = c.get(&url).header("host", host).send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    };
    eventually(
        Duration::from_secs(20),
        "the policy's route serves",
        || async { fetch("good.test").await.0 == 200 },
    )
    .await;

    let (status, body) = fetch("good.test").await;
    assert_eq!(status, 200);
    assert_eq!(body, "sni=abc.example.com client-cert=true");
    assert_eq!(fetch("uri.test").await.0, 200);
    for host in ["wrong-ca.test", "wrong-name.test", "wrong-san.test"] {
        assert_eq!(fetch(host).await.0, 503, "{host}");
    }
    assert_eq!(fetch("no-ca.test").await.0, 500);

    let item = weft.item("BackendTLSPolicy", "no-ca").await;
    let conditions = &item["status"]["ancestors"][0]["conditions"];
    assert_eq!(conditions[0]["reason"], "NoValidCACertificate", "{item}");
    assert_eq!(conditions[1]["reason"], "InvalidCACertificateRef", "{item}");
    let item = weft.item("BackendTLSPolicy", "good").await;
    assert_eq!(
        item["status"]["ancestors"][0]["ancestorRef"]["name"], "gw",
        "{item}"
    );
    assert_eq!(
        item["status"]["ancestors"][0]["conditions"][0]["status"],
        "True"
    );
    let gw = weft.item("Gateway", "gw").await;
    let resolved = gw["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "ResolvedRefs")
        .cloned()
        .unwrap();
    assert_eq!(resolved["status"], "True", "{gw}");
}

/// WebSocket upgrades to a backend reached over TLS become tunnels, both
/// when Pingora makes the TLS connection (the policy checks the host name)
/// and when weft does (it checks a URI SAN); each upgrade follows a plain
/// request, as in `routing.rs`, and the tunnel must outlive the `101`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_over_backend_tls() {
    let ip = "127.0.57.2";
    let server_ca = ca();
    let server = issue(
        &server_ca,
        &["ws.example.com"],
        &["spiffe://ws.example.com/echo"],
    );
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config(&server, None)));
    let l = TcpListener::bind(format!("{ip}:0")).await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(s) = acceptor.accept(s).await {
                    support::ws::backend(s).await;
                }
            });
        }
    });
    let gw = gateway("  listeners: [{name: http, port: 8080, protocol: HTTP}]\n");
    let mut files = vec![format!(
        r#"{gw}---
apiVersion: v1
kind: ConfigMap
metadata: {{name: server-ca}}
data:
  ca.crt: |
{server_ca}"#,
        server_ca = indent(&server_ca.pem),
    )];
    let ca_ref = r#"[{group: "", kind: ConfigMap, name: server-ca}]"#;
    let cases = [
        ("native", format!("{{hostname: ws.example.com, caCertificateRefs: {ca_ref}}}")),
        ("custom", format!("{{hostname: ws.example.com, caCertificateRefs: {ca_ref}, subjectAltNames: [{{type: URI, uri: \"spiffe://ws.example.com/echo\"}}]}}")),
    ];
    for (name, validation) in &cases {
        files.push(slice_service(name, ip, port, Some("kubernetes.io/ws")));
        files.push(policy(name, name, validation));
        files.push(route(name, &format!("{name}.test"), name));
    }
    let weft = Weft::up(ip, &[("all.yaml", &files.join("---\n"))]);
    let addr = format!("{ip}:8080");
    let c = client(&[]);
    for (name, _) in &cases {
        let host = format!("{name}.test");
        eventually(Duration::from_secs(20), "the route is live", || async {
            get(&c, &format!("http://{addr}/"), &host).await.0 == 400
        })
        .await;
        for _ in 0..20 {
            assert_eq!(get(&c, &format!("http://{addr}/"), &host).await.0, 400);
            support::ws::round_trip(&addr, &host).await;
        }
    }
    drop(weft);
}
