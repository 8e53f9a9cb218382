//! A cluster set for tests: the manifests of its clusters (a meshed shop
//! with an exported reviews, callers, links, an east-west gateway), one
//! page of productpage and what failing over looks like, and doing things
//! inside a cluster's network namespace (HTTP, `/status`, a hand-made
//! tunnel).

use super::*;

/// A meshed namespace `shop` with a Service `reviews` (exported) whose
/// Workload `reviews-<cluster>` is on `ip`, and what else `extra` holds.
pub fn shop(cluster: &str, ip: &str, extra: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: shop, labels: {{weft.dev/mesh: enabled}}}}
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {{name: reviews-{cluster}, namespace: shop, labels: {{app: reviews}}}}
spec:
  serviceAccountName: reviews
  address: {ip}
  command: [weft, echo, --listen, "{ip}:9080"]
  ports: [{{name: http, containerPort: 9080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: reviews, namespace: shop}}
spec: {{selector: {{app: reviews}}, ports: [{{name: http, port: 9080, targetPort: http}}]}}
---
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceExport
metadata: {{name: reviews, namespace: shop}}
---
apiVersion: weft.dev/v1alpha1
kind: BackendTrafficPolicy
metadata: {{name: reviews, namespace: shop}}
spec:
  targetRefs: [{{group: "", kind: Service, name: reviews}}]
  healthCheck:
    passive: {{consecutiveGatewayErrors: 1, baseEjectionTime: 2s, maxEjectionPercent: 100}}
{extra}"#
    )
}

/// A Workload `name` in shop on `ip` calling each of `urls` for every
/// request.
pub fn caller(name: &str, ip: &str, urls: &[&str]) -> String {
    let calls: String = urls.iter().map(|u| format!(", --call, \"{u}\"")).collect();
    format!(
        r#"---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {{name: {name}, namespace: shop, labels: {{app: {name}}}}}
spec:
  serviceAccountName: {name}
  address: {ip}
  command: [weft, echo, --listen, "{ip}:9080"{calls}]
  ports: [{{name: http, containerPort: 9080}}]
"#
    )
}

/// A ClusterLink to `cluster` on `network`, its controller at `peering`.
pub fn link(cluster: &str, network: &str, peering: &str, grace: &str) -> String {
    format!(
        r#"---
apiVersion: weft.dev/v1alpha1
kind: ClusterLink
metadata: {{name: {cluster}, namespace: weft-system}}
spec: {{cluster: {cluster}, network: {network}, peering: "{peering}", importGracePeriod: {grace}}}
"#
    )
}

/// One page of productpage: its status, its first call's (status, the
/// pod that answered, the XFCC that pod saw), and its second call's status.
#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub call: u64,
    pub pod: String,
    pub xfcc: String,
    pub second: u64,
}

impl Page {
    pub async fn get(c: &reqwest::Client, url: &str) -> Page {
        let (status, body) = get(c, url, "productpage").await;
        let text = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
        let call = &body["calls"][0];
        Page {
            status,
            call: call["status"].as_u64().unwrap_or(0),
            pod: text(&call["body"]["pod"]),
            xfcc: text(&call["body"]["headers"]["X-Forwarded-Client-Cert"][0]),
            second: body["calls"][1]["status"].as_u64().unwrap_or(0),
        }
    }
}

/// Calls `url` (a caller's own port) `n` times.
pub async fn calls(c: &reqwest::Client, url: &str, n: usize) -> Vec<Page> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(Page::get(c, url).await);
    }
    out
}

/// Pages seen while this cluster's reviews was killed: every call
/// answered, some by west's reviews, whose app saw productpage's own
/// identity (west's sidecar verified productpage's certificate, issued
/// under east's intermediate).
pub fn failed_over(seen: &[Page], second: bool) {
    for p in seen {
        assert_eq!((p.status, p.call), (200, 200), "{seen:?}");
        assert!(!second || p.second == 200, "{seen:?}");
    }
    let west: Vec<_> = seen.iter().filter(|p| p.pod == "reviews-west").collect();
    assert!(!west.is_empty(), "{seen:?}");
    let me = "URI=spiffe://cluster.local/ns/shop/sa/productpage";
    assert!(west[0].xfcc.contains(me), "{:?}", west[0]);
}

pub fn condition(item: &serde_json::Value, type_: &str) -> String {
    item["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == type_))
        .map(|c| {
            format!(
                "{}/{}",
                c["status"].as_str().unwrap_or(""),
                c["reason"].as_str().unwrap_or("")
            )
        })
        .unwrap_or_default()
}

/// The east-west gateway of west, on `ip`, and an AuthorizationPolicy on
/// it refusing the identity `intruder`.
pub fn east_west_gateway(ip: &str) -> String {
    format!(
        r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: weft}}
spec: {{controllerName: weft.dev/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: eastwest, namespace: weft-system}}
spec:
  gatewayClassName: weft
  addresses: [{{type: IPAddress, value: {ip}}}]
  listeners: [{{name: cross-network, port: 15443, protocol: weft.dev/EastWest}}]
---
apiVersion: weft.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {{name: no-intruders, namespace: weft-system}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: Gateway, name: eastwest}}]
  action: Deny
  rules: [{{sources: [{{type: SPIFFE, spiffe: "spiffe://cluster.local/ns/shop/sa/intruder"}}]}}]
"#
    )
}

/// A meshed Workload `name` (app and service account too) in shop on
/// `ip`, behind a Service of its name, exported when `exported`.
pub fn service(name: &str, ip: &str, exported: bool) -> String {
    let export = match exported {
        true => format!(
            "---\napiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceExport\nmetadata: {{name: {name}, namespace: shop}}\n"
        ),
        false => String::new(),
    };
    format!(
        "{}---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop}}\nspec: {{selector: {{app: {name}}}, ports: [{{name: http, port: 9080, targetPort: http}}]}}\n{export}",
        caller(name, ip, &[])
    )
}

/// Runs `f` (async) inside namespace `ns` on a runtime of its own.
pub async fn within<T, F, Fut>(ns: &str, f: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T>,
{
    let ns = ns.to_string();
    tokio::task::spawn_blocking(move || {
        netns::within_ns(&ns, move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(f())
        })
    })
    .await
    .unwrap()
}

/// An item of `/status` at `admin`, read inside `ns`.
pub async fn item_in(
    ns: &str,
    admin: std::net::SocketAddr,
    kind: &str,
    name: &str,
) -> serde_json::Value {
    let (kind, name) = (kind.to_string(), name.to_string());
    within(ns, move || async move {
        let status: serde_json::Value = client(&[])
            .get(format!("http://{admin}/status"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let items = status["items"].as_array().cloned().unwrap_or_default();
        items
            .into_iter()
            .find(|i| i["kind"] == kind.as_str() && i["metadata"]["name"] == name.as_str())
            .unwrap_or_default()
    })
    .await
}

/// A hand-made tunnel: mutual TLS to `gateway` as `cert` (chain, key),
/// then an HTTP/2 CONNECT to `target`: the status, or why the connection
/// failed.
pub async fn connect(
    gateway: std::net::SocketAddr,
    cert: (String, String),
    root: String,
    target: String,
) -> Result<u16, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut root.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let chain = rustls_pemfile::certs(&mut cert.0.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls_pemfile::private_key(&mut cert.1.as_bytes())
        .unwrap()
        .unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let name =
        rustls::pki_types::ServerName::try_from("eastwest.weft-system.sa.cluster.local").unwrap();
    let tcp = tokio::net::TcpStream::connect(gateway)
        .await
        .map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    let (send, conn) = h2::client::handshake(tls)
        .await
        .map_err(|e| format!("h2: {e}"))?;
    tokio::spawn(conn);
    let mut send = send.ready().await.map_err(|e| format!("h2: {e}"))?;
    let request = http::Request::builder()
        .method("CONNECT")
        .uri(target)
        .body(())
        .unwrap();
    let (answer, _stream) = send
        .send_request(request, false)
        .map_err(|e| format!("h2: {e}"))?;
    let answer = answer.await.map_err(|e| format!("h2: {e}"))?;
    Ok(answer.status().as_u16())
}

/// Whether the proxy whose admin endpoint is `admin` has `needle` (an
/// endpoint, say) in the config it runs; not while it is not up.
pub async fn knows(admin: &str, needle: &str) -> bool {
    let Ok(answer) = client(&[]).get(format!("{admin}/config_dump")).send().await else {
        return false;
    };
    answer.text().await.is_ok_and(|t| t.contains(needle))
}
