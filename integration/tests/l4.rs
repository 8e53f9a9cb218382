//! TCPRoute and TLSRoute end to end: TCP connections split by weight; TLS
//! passed through by SNI, so the client sees the backend's own certificate;
//! TLS terminated at the gateway and sent on as TCP; a name no route takes
//! gets its connection closed.

mod support;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use support::pki::{server_config, tls_secret};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const IP: &str = "127.0.55.1";

/// A self-signed certificate for `host`: (cert PEM, key PEM).
fn cert(host: &str) -> (String, String) {
    let ck = rcgen::generate_simple_self_signed(vec![host.to_string()]).unwrap();
    (ck.cert.pem(), ck.signing_key.serialize_pem())
}

/// A TCP server that answers each connection's first read with `name:`
/// and what it read.
async fn tagged_echo(name: &'static str) -> u16 {
    let l = TcpListener::bind(format!("{IP}:0")).await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let mut out = format!("{name}:").into_bytes();
                out.extend_from_slice(&buf[..n]);
                let _ = s.write_all(&out).await;
            });
        }
    });
    port
}

/// A TLS server with its own certificate for `host` that echoes like
/// `tagged_echo`.
async fn tls_echo(name: &'static str, pem: &(String, String)) -> u16 {
    let config = server_config(pem, None);
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
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let mut out = format!("{name}:").into_bytes();
                out.extend_from_slice(&buf[..n]);
                let _ = s.write_all(&out).await;
                let _ = s.shutdown().await;
            });
        }
    });
    port
}

/// Sends `msg` over TCP to `port` and returns the answer ("" if closed).
async fn tcp_call(port: u16, msg: &str) -> String {
    let mut s = TcpStream::connect((IP, port)).await.unwrap();
    s.write_all(msg.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Connects with TLS to the gateway's `port` naming `sni`, trusting only
/// `root`; sends `msg` and returns the answer, or the error.
async fn tls_call(port: u16, sni: &str, root: &str, msg: &str) -> Result<String, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut root.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect((IP, port))
        .await
        .map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from(sni.to_string()).unwrap();
    let mut s = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    s.write_all(msg.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Conformance: TCPRoute, TLSRoute, TLSRouteModeTerminate, TLSRouteModeMixed
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_and_tls_routes() {
    let (a, b) = (tagged_echo("a").await, tagged_echo("b").await);
    let backend_cert = cert("pass.example.com");
    let pass = tls_echo("backend", &backend_cert).await;
    let gateway_cert = cert("term.example.com");
    let plain = tagged_echo("plain").await;
    let gateway = format!(
        r#"{gw}  listeners:
  - {{name: tcp, port: 9400, protocol: TCP}}
  - name: pass
    port: 9443
    protocol: TLS
    hostname: "*.example.com"
    tls: {{mode: Passthrough}}
  - name: term
    port: 9443
    protocol: TLS
    hostname: term.example.com
    tls: {{mode: Terminate, certificateRefs: [{{name: term}}]}}
---
{term}
---
{sa}---
{sb}---
{sp}---
{splain}---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {{name: split}}
spec:
  parentRefs: [{{name: gw, sectionName: tcp}}]
  rules:
  - backendRefs: [{{name: a, port: 80, weight: 3}}, {{name: b, port: 80, weight: 1}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {{name: pass}}
spec:
  parentRefs: [{{name: gw, sectionName: pass}}]
  hostnames: [pass.example.com]
  rules: [{{backendRefs: [{{name: pass, port: 80}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {{name: term}}
spec:
  parentRefs: [{{name: gw, sectionName: term}}]
  hostnames: [term.example.com]
  rules: [{{backendRefs: [{{name: plain, port: 80}}]}}]
"#,
        gw = gateway(""),
        term = tls_secret("term", &gateway_cert),
        sa = slice_service("a", IP, a, None),
        sb = slice_service("b", IP, b, None),
        sp = slice_service("pass", IP, pass, None),
        splain = slice_service("plain", IP, plain, None),
    );
    let weft = Weft::up(IP, &[("gw.yaml", &gateway)]);
    eventually(
        Duration::from_secs(20),
        "the TCP listener serves",
        || async {
            TcpStream::connect((IP, 9400)).await.is_ok() && !tcp_call(9400, "x").await.is_empty()
        },
    )
    .await;

    // TCP, split 3:1 per connection.
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    for i in 0..200 {
        let answer = tcp_call(9400, &format!("hello {i}")).await;
        let (name, rest) = answer.split_once(':').unwrap();
        assert_eq!(rest, format!("hello {i}"));
        *seen.entry(name.to_string()).or_default() += 1;
    }
    let to_a = f64::from(seen.get("a").copied().unwrap_or(0));
    // 150 expected; ±4σ with σ = sqrt(200 × 0.75 × 0.25) ≈ 6.1.
    assert!((to_a - 150.0).abs() <= 25.0, "{seen:?}");

    // Passthrough: the client verifies the backend's own certificate.
    let answer = tls_call(9443, "pass.example.com", &backend_cert.0, "secret").await;
    assert_eq!(answer, Ok("backend:secret".to_string()));
    // Terminate: the gateway's certificate, plaintext to the backend.
    let answer = tls_call(9443, "term.example.com", &gateway_cert.0, "hi").await;
    assert_eq!(answer, Ok("plain:hi".to_string()));
    // A name no route takes: the connection is closed.
    let refused = tls_call(9443, "other.example.com", &backend_cert.0, "x").await;
    assert!(
        refused.is_err() || refused == Ok(String::new()),
        "{refused:?}"
    );

    for route in ["split", "pass", "term"] {
        let kind = if route == "split" {
            "TCPRoute"
        } else {
            "TLSRoute"
        };
        let item = weft.item(kind, route).await;
        let accepted = &item["status"]["parents"][0]["conditions"][0];
        assert_eq!(accepted["status"], "True", "{item}");
    }
    let gw = weft.item("Gateway", "gw").await;
    let listeners = gw["status"]["listeners"].as_array().unwrap();
    let kinds: Vec<_> = listeners
        .iter()
        .map(|l| l["supportedKinds"][0]["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, ["TCPRoute", "TLSRoute", "TLSRoute"], "{gw}");
}

/// TCPRoutes to a meshed Service and to one a BackendTLSPolicy names: the
/// bytes reach each backend, over mutual TLS to the destination's sidecar
/// (which counts the connection as mTLS) and over TLS checked as the
/// policy says; never in plaintext.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l4_routes_to_meshed_and_tls_backends_stay_encrypted() {
    let ip = "127.0.55.21";
    let server_ca = support::pki::ca();
    let server = support::pki::issue(&server_ca, &["secure.example.com"], &[]);
    let secure = tls_echo("secure", &server).await;
    let files = format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: l4m, labels: {{weft.dev/mesh: enabled}}}}
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {{name: db, namespace: l4m, labels: {{app: db}}}}
spec:
  serviceAccountName: db
  address: 127.0.55.22
  command: [weft, echo, --listen, "127.0.55.22:9080"]
  ports: [{{name: http, containerPort: 9080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: db, namespace: l4m}}
spec: {{selector: {{app: db}}, ports: [{{name: tcp, port: 9080, targetPort: http}}]}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: weft}}
spec: {{controllerName: weft.dev/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: edge, namespace: l4m}}
spec:
  gatewayClassName: weft
  listeners:
  - {{name: db, port: 9500, protocol: TCP}}
  - {{name: secure, port: 9501, protocol: TCP}}
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {{name: db, namespace: l4m}}
spec:
  parentRefs: [{{name: edge, sectionName: db}}]
  rules: [{{backendRefs: [{{name: db, port: 9080}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {{name: secure, namespace: l4m}}
spec:
  parentRefs: [{{name: edge, sectionName: secure}}]
  rules: [{{backendRefs: [{{name: secure, port: 80}}]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: secure, namespace: l4m}}
spec: {{ports: [{{name: tls, port: 80}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: secure-1, namespace: l4m, labels: {{kubernetes.io/service-name: secure}}}}
addressType: IPv4
ports: [{{name: tls, port: {secure}}}]
endpoints: [{{addresses: ["{IP}"]}}]
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: secure-ca, namespace: l4m}}
data:
  ca.crt: |
{ca}---
apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {{name: secure, namespace: l4m}}
spec:
  targetRefs: [{{group: "", kind: Service, name: secure}}]
  validation: {{hostname: secure.example.com, caCertificateRefs: [{{group: "", kind: ConfigMap, name: secure-ca}}]}}
"#,
        ca = support::pki::indent(&server_ca.pem),
    );
    let weft = Weft::up(ip, &[("all.yaml", &files)]);
    let call = |port: u16, msg: String| async move {
        let mut s = TcpStream::connect((ip, port)).await.unwrap();
        s.write_all(msg.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    };
    let get = "GET /over-tcp HTTP/1.1\r\nHost: db\r\nConnection: close\r\n\r\n".to_string();
    eventually(
        Duration::from_secs(30),
        "the meshed backend answers",
        || async { call(9500, get.clone()).await.starts_with("HTTP/1.1 200") },
    )
    .await;
    let answer = call(9500, get.clone()).await;
    assert!(answer.contains("\"pod\":\"db\""), "{answer}");
    let metrics = text_of("http://127.0.55.22:15020/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("istio_tcp_connections_opened_total{")
                && l.contains("reporter=\"destination\"")
                && l.contains("connection_security_policy=\"mutual_tls\"")),
        "{metrics}"
    );
    eventually(
        Duration::from_secs(10),
        "the TLS backend answers",
        || async { call(9501, "hello".into()).await == "secure:hello" },
    )
    .await;
    drop(weft);
}

/// Objects get their age when weft up first reads them: a TCPRoute added
/// later does not take a listener from an older one, whatever its name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oldest_tcp_route_keeps_its_listener() {
    let ip = "127.0.55.31";
    let (first, later) = (tagged_echo("first").await, tagged_echo("later").await);
    let tcp_route = |name: &str, backend: &str| {
        format!(
            "apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TCPRoute\nmetadata: {{name: {name}}}\nspec:\n  parentRefs: [{{name: gw}}]\n  rules: [{{backendRefs: [{{name: {backend}, port: 80}}]}}]\n"
        )
    };
    let setup = format!(
        "{}---\n{}---\n{}",
        gateway("  listeners: [{name: tcp, port: 9410, protocol: TCP}]\n"),
        slice_service("first", IP, first, None),
        slice_service("later", IP, later, None),
    );
    let weft = Weft::up(
        ip,
        &[
            ("setup.yaml", &setup),
            ("zeta.yaml", &tcp_route("zeta", "first")),
        ],
    );
    let call = || async {
        let Ok(mut s) = TcpStream::connect((ip, 9410)).await else {
            return String::new();
        };
        let _ = s.write_all(b"x").await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    };
    eventually(Duration::from_secs(20), "zeta serves", || async {
        call().await == "first:x"
    })
    .await;
    let zeta = weft.item("TCPRoute", "zeta").await;
    let born = zeta["metadata"]["creationTimestamp"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(zeta["metadata"]["uid"].is_string(), "{zeta}");
    // A second later, a route that sorts first by name.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    weft.write("alpha.yaml", &tcp_route("alpha", "later"));
    eventually(Duration::from_secs(10), "alpha is read", || async {
        weft.status().await["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["kind"] == "TCPRoute" && i["metadata"]["name"] == "alpha")
    })
    .await;
    let alpha = weft.item("TCPRoute", "alpha").await;
    assert!(
        alpha["metadata"]["creationTimestamp"].as_str().unwrap() > born.as_str(),
        "{alpha}"
    );
    assert_eq!(
        weft.item("TCPRoute", "zeta").await["metadata"]["creationTimestamp"],
        born.as_str()
    );
    // The gateway runs a config that holds both routes.
    let dump = format!("{}/config_dump", weft.gateway_admins[0]);
    eventually(
        Duration::from_secs(10),
        "the gateway has both routes",
        || async {
            let text = reqwest::get(&dump).await.unwrap().text().await.unwrap();
            text.contains("tcproute/default/alpha") || text.contains("default/alpha")
        },
    )
    .await;
    for _ in 0..10 {
        assert_eq!(
            call().await,
            "first:x",
            "the older route keeps the listener"
        );
    }
    drop(weft);
}
