//! HTTPRoute filters and timeouts end to end: header modifiers, redirects,
//! URL rewrites, mirrors, request timeouts, invalid backends.

mod support;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;

const ROUTE: &str = r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: f}
spec:
  parentRefs: [{name: gw}]
  hostnames: [f.example.com]
  rules:
  - matches: [{path: {value: /headers}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set: [{name: X-Set, value: one}]
        add: [{name: X-Add, value: two}]
        remove: [X-Remove]
    - type: ResponseHeaderModifier
      responseHeaderModifier: {set: [{name: X-Resp, value: three}]}
    backendRefs: [{name: v1, port: 80}]
  - matches: [{path: {value: /old}}]
    filters:
    - type: RequestRedirect
      requestRedirect: {scheme: https, hostname: new.example.com, statusCode: 301, path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}}
  - matches: [{path: {value: /api}}]
    filters:
    - type: URLRewrite
      urlRewrite: {hostname: api.internal, path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}
    backendRefs: [{name: v1, port: 80}]
  - matches: [{path: {value: /mirror}}]
    filters:
    - type: RequestMirror
      requestMirror: {backendRef: {name: raw, port: 80}}
    backendRefs: [{name: v1, port: 80}]
  - matches: [{path: {value: /slow}}]
    timeouts: {request: 500ms}
    backendRefs: [{name: raw, port: 80}]
  - matches: [{path: {value: /invalid}}]
    backendRefs: [{name: nowhere, port: 80}]
  - matches: [{path: {value: /backend-redirect}}]
    backendRefs:
    - name: v1
      port: 80
      filters:
      - type: RequestRedirect
        requestRedirect: {scheme: https, hostname: redirect.example.com, port: 8443, statusCode: 302}
  - matches: [{path: {value: /r303}}]
    filters: [{type: RequestRedirect, requestRedirect: {hostname: r.example.com, statusCode: 303}}]
  - matches: [{path: {value: /r307}}]
    filters: [{type: RequestRedirect, requestRedirect: {hostname: r.example.com, statusCode: 307}}]
  - matches: [{path: {value: /r308}}]
    filters: [{type: RequestRedirect, requestRedirect: {hostname: r.example.com, statusCode: 308}}]
  - matches: [{path: {value: /port}}]
    filters: [{type: RequestRedirect, requestRedirect: {port: 8443}}]
  - matches: [{path: {value: /slow-backend}}]
    timeouts: {backendRequest: 500ms}
    backendRefs: [{name: raw, port: 80}]
  - matches: [{path: {value: /backend-headers}}]
    backendRefs:
    - name: v1
      port: 80
      filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: X-Backend, value: "yes"}]}}]
  - matches: [{path: {value: /mirrors}}]
    filters:
    - type: RequestMirror
      requestMirror: {backendRef: {name: raw, port: 80}}
    - type: RequestMirror
      requestMirror: {backendRef: {name: raw2, port: 80}}
    backendRefs: [{name: v1, port: 80}]
  - matches: [{path: {value: /pct100}}]
    filters: [{type: RequestMirror, requestMirror: {backendRef: {name: raw, port: 80}, percent: 100}}]
    backendRefs: [{name: v1, port: 80}]
  - matches: [{path: {value: /pct0}}]
    filters: [{type: RequestMirror, requestMirror: {backendRef: {name: raw, port: 80}, percent: 0}}]
    backendRefs: [{name: v1, port: 80}]
"#;

/// Conformance: HTTPRouteResponseHeaderModification, HTTPRouteBackendRequestHeaderModification,
/// Conformance: HTTPRoutePortRedirect, HTTPRouteSchemeRedirect, HTTPRoutePathRedirect,
/// Conformance: HTTPRouteHostRewrite, HTTPRoutePathRewrite, HTTPRouteRequestMirror,
/// Conformance: HTTPRouteRequestMultipleMirrors, HTTPRouteRequestPercentageMirror,
/// Conformance: HTTPRouteRequestTimeout, HTTPRouteBackendTimeout, HTTPRoute303RedirectStatusCode,
/// Conformance: HTTPRoute307RedirectStatusCode, HTTPRoute308RedirectStatusCode
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_and_timeouts() {
    let ip = "127.0.51.1";
    // A backend of the test's own: records request lines, answers /slow late.
    let raw = tokio::net::TcpListener::bind(format!("{ip}:0"))
        .await
        .unwrap();
    let port = raw.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = raw.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = vec![0u8; 8192];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let line = String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string();
                let slow = line.contains(" /slow");
                log.lock().unwrap().push(line);
                if slow {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                }
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    let raw_service = format!(
        "{}---\n{}",
        slice_service("raw", ip, port, None),
        slice_service("raw2", ip, port, None)
    );
    let weft = Weft::up(
        ip,
        &[
            ("base.yaml", &base(ip)),
            ("raw.yaml", &raw_service),
            ("f.yaml", ROUTE),
        ],
    );
    let c = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let url = |p: &str| format!("http://{ip}:8080{p}");
    eventually(Duration::from_secs(20), "v1 serves", || async {
        get(&c, &url("/headers"), "f.example.com").await.0 == 200
    })
    .await;

    let resp = c
        .get(url("/headers"))
        .header("host", "f.example.com")
        .header("x-set", "zero")
        .header("x-add", "one")
        .header("x-remove", "gone")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-resp"], "three");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["headers"]["X-Set"], serde_json::json!(["one"]));
    assert_eq!(body["headers"]["X-Add"], serde_json::json!(["one", "two"]));
    assert!(body["headers"].get("X-Remove").is_none(), "{body}");

    let resp = c
        .get(url("/old/x?q=1"))
        .header("host", "f.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 301);
    assert_eq!(
        resp.headers()["location"],
        "https://new.example.com/new/x?q=1"
    );

    let (status, body) = get(&c, &url("/api/v1/items?x=1"), "f.example.com").await;
    assert_eq!(status, 200);
    assert_eq!(body["path"], "/v1/items?x=1");
    assert_eq!(body["host"], "api.internal");

    let (status, body) = get(&c, &url("/mirror/a"), "f.example.com").await;
    assert_eq!((status, body["pod"].as_str()), (200, Some("v1")));
    eventually(Duration::from_secs(2), "the mirror gets a copy", || async {
        seen.lock()
            .unwrap()
            .iter()
            .any(|l| l.starts_with("GET /mirror/a "))
    })
    .await;

    // The backend answers /slow after 3 s: a 504 means the 500 ms timeout cut it.
    assert_eq!(get(&c, &url("/slow"), "f.example.com").await.0, 504);

    assert_eq!(get(&c, &url("/invalid"), "f.example.com").await.0, 500);

    // A RequestRedirect on the backendRef chosen answers for it.
    let resp = c
        .get(url("/backend-redirect?x=1"))
        .header("host", "f.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    assert_eq!(
        resp.headers()["location"],
        "https://redirect.example.com:8443/backend-redirect?x=1"
    );

    // Redirect status codes, and the port of a rule's redirect.
    for (path, code) in [("/r303", 303), ("/r307", 307), ("/r308", 308)] {
        let resp = c
            .get(url(path))
            .header("host", "f.example.com")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), code, "{path}");
        assert_eq!(
            resp.headers()["location"],
            format!("http://r.example.com:8080{path}")
        );
    }
    let resp = c
        .get(url("/port"))
        .header("host", "f.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["location"], "http://f.example.com:8443/port");

    // backendRequest cuts one try: the backend answers /slow... after 3 s.
    assert_eq!(get(&c, &url("/slow-backend"), "f.example.com").await.0, 504);

    // A header filter on the backendRef.
    let (_, body) = get(&c, &url("/backend-headers"), "f.example.com").await;
    assert_eq!(
        body["headers"]["X-Backend"],
        serde_json::json!(["yes"]),
        "{body}"
    );

    // Two mirrors each get a copy; a mirror at 100% gets every request, one
    // at 0% none.
    assert_eq!(get(&c, &url("/mirrors"), "f.example.com").await.0, 200);
    let copies = |prefix: &'static str| {
        let seen = seen.clone();
        move || {
            seen.lock()
                .unwrap()
                .iter()
                .filter(|l| l.starts_with(prefix))
                .count()
        }
    };
    let mirrors = copies("GET /mirrors ");
    eventually(
        Duration::from_secs(5),
        "both mirrors get a copy",
        || async { mirrors() == 2 },
    )
    .await;
    for _ in 0..10 {
        assert_eq!(get(&c, &url("/pct100"), "f.example.com").await.0, 200);
        assert_eq!(get(&c, &url("/pct0"), "f.example.com").await.0, 200);
    }
    let (all, none) = (copies("GET /pct100 "), copies("GET /pct0 "));
    eventually(
        Duration::from_secs(5),
        "every request at 100% is mirrored",
        || async { all() == 10 },
    )
    .await;
    assert_eq!(none(), 0, "a mirror at 0% got a copy");

    let route = weft.item("HTTPRoute", "f").await;
    let resolved = &route["status"]["parents"][0]["conditions"][1];
    assert_eq!(
        (resolved["status"].as_str(), resolved["reason"].as_str()),
        (Some("False"), Some("BackendNotFound"))
    );
}

#[tokio::test]
async fn access_log_lines_and_trace_context() {
    let ip = "127.0.52.1";
    let annotated = base(ip).replace(
        "metadata: {name: gw}",
        "metadata: {name: gw, annotations: {weft.dev/access-log: \"true\"}}",
    );
    let weft = Weft::up(
        ip,
        &[
            ("base.yaml", &annotated),
            ("r.yaml", &route("r", "log.example.com", "v1")),
        ],
    );
    let c = client(&[]);
    let url = format!("http://{ip}:8080/logged?x=1");
    eventually(Duration::from_secs(20), "v1 serves", || async {
        get(&c, &url, "log.example.com").await.0 == 200
    })
    .await;
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let resp = c
        .get(&url)
        .header("host", "log.example.com")
        .header("traceparent", incoming)
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = resp.json().await.unwrap();
    let sent = body["headers"]["Traceparent"][0]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        sent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && sent != incoming,
        "{sent}"
    );

    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let line = weft
            .stdout
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            .unwrap();
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if entry["traceparent"] == sent.as_str() {
            assert_eq!(entry["path"], "/logged?x=1");
            assert_eq!(entry["response_code"], 200);
            assert_eq!(entry["authority"], "log.example.com");
            assert_eq!(entry["upstream_cluster"], "default/v1:80");
            break;
        }
    }
}

const CORS: &str = r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: cors}
spec:
  parentRefs: [{name: gw}]
  hostnames: [cors.example.com]
  rules:
  - matches: [{path: {value: /cors}}]
    filters:
    - type: CORS
      cors:
        allowOrigins: ["https://www.foo.com", "https://*.bar.com"]
        allowMethods: [GET, OPTIONS]
        allowHeaders: [x-header-1, x-header-2]
        exposeHeaders: [x-header-3]
        allowCredentials: true
        maxAge: 3600
    backendRefs: [{name: v1, port: 80}]
  - matches: [{path: {value: /plain}}]
    backendRefs: [{name: v1, port: 80}]
"#;

/// The CORS filter: the gateway answers preflights itself (the echo
/// backend would answer with JSON), and adds headers for allowed origins.
/// Conformance: HTTPRouteCORS
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors() {
    let ip = "127.0.54.1";
    let _weft = Weft::up(ip, &[("base.yaml", &base(ip)), ("cors.yaml", CORS)]);
    let c = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let url = |p: &str| format!("http://{ip}:8080{p}");
    eventually(Duration::from_secs(20), "the route serves", || async {
        get(&c, &url("/cors"), "cors.example.com").await.0 == 200
    })
    .await;
    let preflight = |path: &'static str, origin: &'static str| {
        c.request(reqwest::Method::OPTIONS, url(path))
            .header("host", "cors.example.com")
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "x-header-1")
            .send()
    };

    let resp = preflight("/cors", "https://xpto.www.bar.com")
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let h = resp.headers().clone();
    assert_eq!(h["access-control-allow-origin"], "https://xpto.www.bar.com");
    assert_eq!(h["access-control-allow-methods"], "GET, OPTIONS");
    assert_eq!(h["access-control-allow-headers"], "x-header-1, x-header-2");
    assert_eq!(h["access-control-expose-headers"], "x-header-3");
    assert_eq!(h["access-control-max-age"], "3600");
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert!(resp.text().await.unwrap().is_empty(), "reached the backend");

    // Not an allowed origin: answered, without CORS headers.
    let resp = preflight("/cors", "https://foobar.com").await.unwrap();
    assert_eq!(resp.status(), 204);
    assert!(resp.headers().get("access-control-allow-origin").is_none());

    // A route without the filter forwards the OPTIONS to the backend.
    let resp = preflight("/plain", "https://www.foo.com").await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("access-control-allow-origin").is_none());

    // Actual requests go to the backend and carry the headers when allowed.
    let resp = c
        .get(url("/cors"))
        .header("host", "cors.example.com")
        .header("origin", "https://www.foo.com")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://www.foo.com"
    );
    assert_eq!(resp.headers()["access-control-allow-credentials"], "true");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["path"], "/cors");
    let resp = c
        .get(url("/cors"))
        .header("host", "cors.example.com")
        .header("origin", "http://www.foo.com")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("access-control-allow-origin").is_none());
}
