//! Traffic through a gateway run by `weft up`: routing by host and header,
//! weights, HTTP/1.1, h2c, HTTPS with HTTP/2 by ALPN, SNI and 421.

mod support;
use std::time::Duration;
use support::*;

const IP: &str = "127.0.21.1";

fn tls_secret(name: &str, hosts: &[&str]) -> (String, String) {
    let names: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
    let ck = rcgen::generate_simple_self_signed(names).unwrap();
    let (cert, key) = (ck.cert.pem(), ck.signing_key.serialize_pem());
    let indent = |s: &str| s.lines().map(|l| format!("    {l}\n")).collect::<String>();
    let yaml = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        indent(&cert),
        indent(&key)
    );
    (yaml, cert)
}

/// Conformance: Gateway, HTTPRoute, GatewayPort8080, HTTPRouteQueryParamMatching,
/// Conformance: HTTPRouteMethodMatching, HTTPRouteParentRefPort, HTTPRouteNamedRouteRule,
/// Conformance: ReferenceGrant, HTTPRouteBackendProtocolH2C
#[tokio::test]
async fn routes_by_host_header_and_weight() {
    let routes = format!(
        "{}---\n{}",
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: canary}
spec:
  parentRefs: [{name: gw}]
  hostnames: [shop.example.com]
  rules:
  - backendRefs: [{name: v1, port: 80, weight: 80}, {name: v2, port: 80, weight: 20}]
  - name: by-header
    matches: [{headers: [{name: x-version, value: v2}]}]
    backendRefs: [{name: v2, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: matches}
spec:
  parentRefs: [{name: gw, port: 8080}]
  hostnames: [match.example.com]
  rules:
  - matches: [{queryParams: [{name: v, value: "2"}]}, {method: POST}]
    backendRefs: [{name: v2, port: 80}]
  - backendRefs: [{name: v1, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: wrong-port}
spec:
  parentRefs: [{name: gw, port: 8081}]
  hostnames: [wrong-port.example.com]
  rules: [{backendRefs: [{name: v1, port: 80}]}]
---
apiVersion: v1
kind: Namespace
metadata: {name: team2}
---
apiVersion: v1
kind: Service
metadata: {name: shared, namespace: team2}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: shared-1, namespace: team2, labels: {kubernetes.io/service-name: shared}}
addressType: IPv4
ports: [{name: http, port: 9002}]
endpoints: [{addresses: ["127.0.21.1"]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: cross}
spec:
  parentRefs: [{name: gw}]
  hostnames: [cross.example.com]
  rules: [{backendRefs: [{name: shared, namespace: team2, port: 80}]}]
"#,
        route("other", "other.example.com", "v2")
    ) + "---\n"
        + &route("h2c", "h2c.example.com", "v1-h2c")
        + r#"---
apiVersion: v1
kind: Service
metadata: {name: v1-h2c}
spec:
  selector: {app: v1}
  ports: [{name: http, port: 80, targetPort: http, appProtocol: kubernetes.io/h2c}]
"#;
    let weft = Weft::up(IP, &[("base.yaml", &base(IP)), ("routes.yaml", &routes)]);
    let c = client(&[]);
    let url = format!("http://{IP}:8080/a/b?x=1");
    eventually(Duration::from_secs(20), "workloads serve", || async {
        get(&c, &url, "shop.example.com").await.0 == 200
            && get(&c, &url, "other.example.com").await.0 == 200
    })
    .await;

    let (status, body) = get(&c, &url, "shop.example.com").await;
    assert_eq!(status, 200);
    assert_eq!(body["path"], "/a/b?x=1");
    assert_eq!(
        body["host"], "shop.example.com",
        "Host reaches the backend as sent"
    );
    assert_eq!(get(&c, &url, "other.example.com").await.1["pod"], "v2");
    assert_eq!(get(&c, &url, "unknown.example.com").await.0, 404);

    let v2 = c
        .get(&url)
        .header("host", "shop.example.com")
        .header("x-version", "v2")
        .send()
        .await
        .unwrap();
    assert_eq!(v2.json::<serde_json::Value>().await.unwrap()["pod"], "v2");

    // Query parameter and method matches; a parentRef's port.
    let m = format!("http://{IP}:8080/m");
    assert_eq!(
        get(&c, &format!("{m}?v=2"), "match.example.com").await.1["pod"],
        "v2"
    );
    assert_eq!(
        get(&c, &format!("{m}?v=3"), "match.example.com").await.1["pod"],
        "v1"
    );
    let post = c
        .post(&m)
        .header("host", "match.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(post.json::<serde_json::Value>().await.unwrap()["pod"], "v2");
    assert_eq!(get(&c, &m, "wrong-port.example.com").await.0, 404);

    // A backend in another namespace: refused until a ReferenceGrant there
    // allows it.
    assert_eq!(get(&c, &url, "cross.example.com").await.0, 500);
    weft.write(
        "grant.yaml",
        "apiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {name: routes, namespace: team2}\nspec:\n  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: default}]\n  to: [{group: \"\", kind: Service}]\n",
    );
    eventually(
        Duration::from_secs(10),
        "the grant lets the route through",
        || async { get(&c, &url, "cross.example.com").await.1["pod"] == "v2" },
    )
    .await;

    // An h2c backend (Service appProtocol kubernetes.io/h2c) gets HTTP/2.
    let (status, body) = get(&c, &url, "h2c.example.com").await;
    assert_eq!((status, body["pod"].as_str()), (200, Some("v1")), "{body}");
    assert_eq!(body["proto"], "HTTP/2.0");

    let mut v1 = 0;
    for _ in 0..400 {
        if get(&c, &url, "shop.example.com").await.1["pod"] == "v1" {
            v1 += 1;
        }
    }
    // 80% of 400 = 320; a binomial spread of ±4σ is about ±32.
    assert!((288..=352).contains(&v1), "v1 got {v1} of 400 requests");

    let addr = format!("{IP}:8080").parse().unwrap();
    let h2c = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .resolve("other.example.com", addr)
        .build()
        .unwrap();
    let resp = h2c
        .get("http://other.example.com:8080/h2c")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["pod"], "v2");
    drop(weft);
}

/// Conformance: GatewayHTTPSListenerDetectMisdirectedRequests
#[tokio::test]
async fn https_terminates_by_sni_with_h2_and_refuses_misdirected_requests() {
    let ip = "127.0.22.1";
    let (secret_a, cert_a) = tls_secret("a-tls", &["a.example.com"]);
    let (secret_b, cert_b) = tls_secret("b-tls", &["b.example.com"]);
    let gateway = r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: tls}
spec:
  gatewayClassName: weft
  listeners:
  - {name: a, port: 8443, protocol: HTTPS, hostname: a.example.com, tls: {certificateRefs: [{name: a-tls}]}}
  - {name: b, port: 8443, protocol: HTTPS, hostname: b.example.com, tls: {certificateRefs: [{name: b-tls}]}}
"#;
    let routes = r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: both}
spec:
  parentRefs: [{name: tls}]
  rules: [{backendRefs: [{name: v1, port: 80}]}]
"#;
    let weft = Weft::up(
        ip,
        &[
            ("base.yaml", &base(ip)),
            ("tls.yaml", gateway),
            ("a.yaml", &secret_a),
            ("b.yaml", &secret_b),
            ("r.yaml", routes),
        ],
    );
    let addr = format!("{ip}:8443").parse().unwrap();
    let c = reqwest::Client::builder()
        .no_proxy()
        .resolve("a.example.com", addr)
        .resolve("b.example.com", addr)
        .add_root_certificate(reqwest::Certificate::from_pem(cert_a.as_bytes()).unwrap())
        .add_root_certificate(reqwest::Certificate::from_pem(cert_b.as_bytes()).unwrap())
        .build()
        .unwrap();
    eventually(Duration::from_secs(20), "HTTPS serves", || async {
        c.get("https://a.example.com:8443/")
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    for host in ["a.example.com", "b.example.com"] {
        let resp = c
            .get(format!("https://{host}:8443/x"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{host}");
        assert_eq!(
            resp.version(),
            reqwest::Version::HTTP_2,
            "ALPN picks h2 for {host}"
        );
    }
    // SNI names listener a, Host names listener b: 421 Misdirected Request.
    let h1 = reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .resolve("a.example.com", addr)
        .add_root_certificate(reqwest::Certificate::from_pem(cert_a.as_bytes()).unwrap())
        .build()
        .unwrap();
    let resp = h1
        .get("https://a.example.com:8443/")
        .header("host", "b.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 421);
    let resp = h1
        .get("https://a.example.com:8443/")
        .header("host", "c.example.org")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404, "no listener for the Host: 404, not 421");
    drop(weft);
}

/// Conformance: HTTPRouteBackendProtocolWebSocket
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrades_become_a_tunnel() {
    let ip = "127.0.23.1";
    // A backend that accepts the upgrade and then echoes bytes.
    let backend = tokio::net::TcpListener::bind(format!("{ip}:0"))
        .await
        .unwrap();
    let port = backend.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((s, _)) = backend.accept().await {
            tokio::spawn(support::ws::backend(s));
        }
    });
    let ws = slice_service("ws", ip, port, Some("kubernetes.io/ws"));
    let weft = Weft::up(
        ip,
        &[
            ("base.yaml", &base(ip)),
            ("ws.yaml", &ws),
            ("r.yaml", &route("r", "ws.example.com", "ws")),
        ],
    );
    let addr = format!("{ip}:8080");
    let c = client(&[]);
    eventually(Duration::from_secs(20), "the route is live", || async {
        get(&c, &format!("http://{addr}/"), "ws.example.com")
            .await
            .0
            == 400
    })
    .await;
    // The backend closes every connection after a plain request, so the
    // gateway's pool holds connections the backend has closed: an upgrade
    // must not start on one of them (it cannot be tried again).
    for _ in 0..20 {
        assert_eq!(
            get(&c, &format!("http://{addr}/"), "ws.example.com")
                .await
                .0,
            400
        );
        support::ws::round_trip(&addr, "ws.example.com").await;
    }
    drop(weft);
}

/// A ListenerSet adds a listener to a Gateway that allows it; routes attach
/// to it by a ListenerSet parentRef and are served on its port, while a
/// ListenerSet the Gateway does not allow adds nothing.
/// Conformance: ListenerSet, GatewayHTTPListenerIsolation
#[tokio::test]
async fn listener_sets_add_listeners_to_a_gateway() {
    let ip = "127.0.58.1";
    let sets = r#"apiVersion: v1
kind: Namespace
metadata: {name: team}
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: extra}
spec:
  parentRef: {name: gw}
  listeners:
  - {name: extra, port: 8081, protocol: HTTP, hostname: extra.example.com}
  - {name: wild, port: 8081, protocol: HTTP, hostname: "*.example.com"}
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: other, namespace: team}
spec:
  parentRef: {name: gw, namespace: default}
  listeners: [{name: other, port: 8082, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: on-set}
spec:
  parentRefs: [{kind: ListenerSet, name: extra}]
  rules: [{backendRefs: [{name: v2, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: wild-only}
spec:
  parentRefs: [{kind: ListenerSet, name: extra, sectionName: wild}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /wild}}]
    backendRefs: [{name: v1, port: 80}]
"#;
    // The base Gateway, allowing ListenerSets from its own namespace.
    let base = base(ip).replace(
        "  gatewayClassName: weft\n",
        "  gatewayClassName: weft\n  allowedListeners: {namespaces: {from: Same}}\n",
    );
    let weft = Weft::up(ip, &[("base.yaml", &base), ("sets.yaml", sets)]);
    let c = client(&[]);
    let url = format!("http://{ip}:8081/");
    eventually(
        Duration::from_secs(20),
        "the ListenerSet's listener serves",
        || async { get(&c, &url, "extra.example.com").await.0 == 200 },
    )
    .await;
    let (_, body) = get(&c, &url, "extra.example.com").await;
    assert_eq!(body["pod"], "v2");
    // Listener isolation: a host a listener names is served by its routes
    // alone, not by those of a wildcard listener on the same port.
    let wild = format!("http://{ip}:8081/wild");
    assert_eq!(get(&c, &wild, "extra.example.com").await.1["pod"], "v2");
    assert_eq!(get(&c, &wild, "foo.example.com").await.1["pod"], "v1");
    assert_eq!(get(&c, &wild, "foo.other.org").await.0, 404);
    // Not allowed: nothing listens on its port.
    assert!(c.get(format!("http://{ip}:8082/")).send().await.is_err());
    let set = weft.item("ListenerSet", "extra").await;
    assert_eq!(set["status"]["conditions"][0]["status"], "True", "{set}");
    assert_eq!(set["status"]["listeners"][0]["attachedRoutes"], 1, "{set}");
    assert_eq!(set["status"]["listeners"][1]["attachedRoutes"], 2, "{set}");
    let gw = weft.item("Gateway", "gw").await;
    assert_eq!(gw["status"]["attachedListenerSets"], 1, "{gw}");
    assert_eq!(gw["status"]["listeners"].as_array().unwrap().len(), 1);
}
