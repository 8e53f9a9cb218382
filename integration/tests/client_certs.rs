//! Frontend client-certificate validation on HTTPS listeners: with
//! `AllowValidOnly` a client certificate from the configured CA gets
//! through, and one from another CA or none at all fails the handshake;
//! with `AllowInsecureFallback` all three get through; a validation whose
//! CA does not resolve keeps its listener from serving at all.

mod support;
use std::sync::Arc;
use std::time::Duration;
use support::pki::{ca, indent, issue};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const IP: &str = "127.0.56.1";
const SPIFFE: &str = "spiffe://cluster.local/ns/default/sa/admin";

/// A GET over TLS to `port`, trusting `root`, presenting `client` if any:
/// the status line, or the error.
async fn get_with(
    port: u16,
    root: &str,
    client: Option<&(String, String)>,
) -> Result<String, String> {
    let text = get_response(port, root, client).await?;
    Ok(text.lines().next().unwrap_or("").to_string())
}

/// As `get_with`, the whole response.
async fn get_response(
    port: u16,
    root: &str,
    client: Option<&(String, String)>,
) -> Result<String, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut root.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => {
            let certs = rustls_pemfile::certs(&mut cert.as_bytes())
                .map(Result::unwrap)
                .collect();
            let key = rustls_pemfile::private_key(&mut key.as_bytes())
                .unwrap()
                .unwrap();
            builder.with_client_auth_cert(certs, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect((IP, port))
        .await
        .map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from("gw.example.com").unwrap();
    let mut s = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let req = "GET / HTTP/1.1\r\nhost: gw.example.com\r\nconnection: close\r\n\r\n";
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    // TLS 1.3 sends the server's verdict on the client's certificate after
    // the client thinks the handshake is done: it shows up here.
    s.read_to_end(&mut out).await.map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// The GatewayClass, the client CA's ConfigMap `client-ca` and the
/// server's certificate Secret `server`.
fn common(client_ca: &support::pki::Ca, server: &(String, String)) -> String {
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: weft}}
spec: {{controllerName: weft.dev/gateway-controller}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: client-ca}}
data:
  ca.crt: |
{ca}---
{secret}"#,
        ca = indent(&client_ca.pem),
        secret = support::pki::tls_secret("server", server),
    )
}

/// Conformance: GatewayFrontendClientCertificateValidation,
/// Conformance: GatewayFrontendClientCertificateValidationInsecureFallback
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_are_validated() {
    let (trusted, other) = (ca(), ca());
    let server_ca = ca();
    let server = issue(&server_ca, &["gw.example.com"], &[]);
    // A frontend client may carry a SPIFFE ID; it is passed on, but it
    // does not make the client a mesh workload.
    let good = issue(&trusted, &["client.example.com"], &[SPIFFE]);
    let bad = issue(&other, &["client.example.com"], &[]);
    let config = format!(
        r#"{head}---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw}}
spec:
  gatewayClassName: weft
  tls:
    frontend:
      default:
        validation:
          caCertificateRefs: [{{group: "", kind: ConfigMap, name: client-ca}}]
      perPort:
      - port: 9444
        tls:
          validation:
            mode: AllowInsecureFallback
            caCertificateRefs: [{{group: "", kind: ConfigMap, name: client-ca}}]
      - port: 9445
        tls:
          validation:
            caCertificateRefs: [{{group: "", kind: ConfigMap, name: missing}}]
  listeners:
  - {{name: strict, port: 9443, protocol: HTTPS, tls: {{certificateRefs: [{{name: server}}]}}}}
  - {{name: fallback, port: 9444, protocol: HTTPS, tls: {{certificateRefs: [{{name: server}}]}}}}
  - {{name: broken, port: 9445, protocol: HTTPS, tls: {{certificateRefs: [{{name: server}}]}}}}
---
{v1}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: all}}
spec:
  parentRefs: [{{name: gw}}]
  rules: [{{backendRefs: [{{name: v1, port: 80}}]}}]
"#,
        head = common(&trusted, &server),
        v1 = echo("v1", IP, 9001),
    );
    let weft = Weft::up(IP, &[("gw.yaml", &config)]);
    let root = server_ca.pem.as_str();
    eventually(
        Duration::from_secs(20),
        "the strict listener serves",
        || async {
            get_with(9443, root, Some(&good))
                .await
                .is_ok_and(|s| s.contains("200"))
        },
    )
    .await;

    // AllowValidOnly.
    assert!(get_with(9443, root, Some(&good))
        .await
        .unwrap()
        .contains("200"));
    let response = get_response(9443, root, Some(&good)).await.unwrap();
    let head = response
        .split("\r\n\r\n")
        .next()
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        !head.contains("x-weft-workload"),
        "a frontend client is answered as a mesh peer: {response}"
    );
    let body: serde_json::Value =
        serde_json::from_str(response.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(
        body["headers"]["X-Forwarded-Client-Cert"][0],
        format!("URI={SPIFFE}"),
        "{body}"
    );
    let refused = get_with(9443, root, Some(&bad)).await;
    assert!(refused.is_err(), "a certificate of another CA: {refused:?}");
    let refused = get_with(9443, root, None).await;
    assert!(refused.is_err(), "no certificate: {refused:?}");
    // AllowInsecureFallback.
    for client in [Some(&good), Some(&bad), None] {
        let status = get_with(9444, root, client).await.unwrap();
        assert!(status.contains("200"), "{status}");
    }
    // A CA that does not resolve: the listener is not programmed.
    assert!(get_with(9445, root, Some(&good)).await.is_err());
    let gw = weft.item("Gateway", "gw").await;
    let broken = &gw["status"]["listeners"][2];
    let conditions = broken["conditions"].as_array().unwrap();
    let find = |t: &str| conditions.iter().find(|c| c["type"] == t).unwrap().clone();
    assert_eq!(find("Accepted")["reason"], "NoValidCACertificate", "{gw}");
    assert_eq!(
        find("ResolvedRefs")["reason"],
        "InvalidCACertificateRef",
        "{gw}"
    );
    assert_eq!(find("Programmed")["status"], "False", "{gw}");
    let insecure = gw["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "InsecureFrontendValidationMode")
        .cloned();
    assert_eq!(insecure.unwrap()["reason"], "ConfigurationChanged", "{gw}");
}

/// A SecurityPolicy deciding by the client certificate's SPIFFE ID: the
/// identity it allows gets through, another identity from the same CA gets
/// 403. (Under `AllowInsecureFallback` no certificate is trusted to name
/// anyone, so such a port has no identities to allow.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_identities_are_authorized() {
    let trusted = ca();
    let server_ca = ca();
    let server = issue(&server_ca, &["gw.example.com"], &[]);
    let admin = issue(&trusted, &["client.example.com"], &[SPIFFE]);
    let guest = issue(
        &trusted,
        &["client.example.com"],
        &["spiffe://cluster.local/ns/default/sa/guest"],
    );
    let config = format!(
        r#"{head}---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw}}
spec:
  gatewayClassName: weft
  tls:
    frontend:
      default:
        validation:
          caCertificateRefs: [{{group: "", kind: ConfigMap, name: client-ca}}]
  listeners:
  - {{name: https, port: 9543, protocol: HTTPS, tls: {{certificateRefs: [{{name: server}}]}}}}
---
{v2}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: all}}
spec:
  parentRefs: [{{name: gw}}]
  rules: [{{backendRefs: [{{name: v2, port: 80}}]}}]
---
apiVersion: weft.dev/v1alpha1
kind: SecurityPolicy
metadata: {{name: admins-only}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: all}}]
  authorization:
    defaultAction: Deny
    rules:
    - {{name: admins, action: Allow, principal: {{spiffeIDs: ["spiffe://cluster.local/ns/default/sa/adm*"]}}}}
"#,
        head = common(&trusted, &server),
        v2 = echo("v2", IP, 9002),
    );
    let _weft = Weft::up(IP, &[("gw.yaml", &config)]);
    let root = server_ca.pem.as_str();
    eventually(
        Duration::from_secs(20),
        "the admin gets through",
        || async {
            get_with(9543, root, Some(&admin))
                .await
                .is_ok_and(|s| s.contains("200"))
        },
    )
    .await;
    let status = get_with(9543, root, Some(&guest)).await.unwrap();
    assert!(status.contains("403"), "{status}");
}
