//! Requests are made canonical before any route matches them: a table of
//! bypass attempts against a route on `/admin` (to `v1`) beside a
//! catch-all (to `v2`), each sent raw over HTTP/1.1 and the HTTP/2 ones
//! as `:path`s, lands where its normalised path says (and the backend sees
//! that path) or is refused with 400; hosts are compared without case,
//! trailing dot or port, and an absolute-form target's authority is the
//! host (one that contradicts `Host` is refused).

mod support;
use std::io::{Read, Write};
use std::time::Duration;
use support::*;

const IP: &str = "127.0.47.1";

const ROUTES: &str = r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: norm}
spec:
  parentRefs: [{name: gw}]
  hostnames: [norm.example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /admin}}]
    backendRefs: [{name: v1, port: 80}]
  - backendRefs: [{name: v2, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: secret}
spec:
  parentRefs: [{name: gw}]
  hostnames: [secret.example.com]
  rules: [{backendRefs: [{name: v1, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: public}
spec:
  parentRefs: [{name: gw}]
  hostnames: [public.example.com]
  rules: [{backendRefs: [{name: v2, port: 80}]}]
"#;

/// Where a request should end: a backend and the path it sees, or a status.
#[derive(Debug, PartialEq)]
enum Lands {
    At(&'static str, String),
    Status(u16),
}

fn at(pod: &'static str, path: &str) -> Lands {
    Lands::At(pod, path.to_string())
}

/// Sends a raw HTTP/1.1 request (with `Connection: close`) and reads where
/// it landed.
fn raw(target: &str, headers: &[&str]) -> Lands {
    let mut s = std::net::TcpStream::connect(format!("{IP}:8080")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("GET {target} HTTP/1.1\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let text = String::from_utf8_lossy(&resp);
    let status: u16 = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    landed(status, &text)
}

fn landed(status: u16, text: &str) -> Lands {
    if status != 200 {
        return Lands::Status(status);
    }
    let (start, end) = (text.find('{').unwrap(), text.rfind('}').unwrap());
    let body: serde_json::Value = serde_json::from_str(&text[start..=end]).unwrap();
    let pod = match body["pod"].as_str() {
        Some("v1") => "v1",
        Some("v2") => "v2",
        other => panic!("unknown pod {other:?}"),
    };
    Lands::At(pod, body["path"].as_str().unwrap().to_string())
}

/// Sends one request over HTTP/2 (prior knowledge) with `path` as its
/// `:path`, `authority` as its `:authority`, and `headers` besides.
async fn h2(authority: &str, path: &str, headers: &[(&str, &str)]) -> Lands {
    let tcp = tokio::net::TcpStream::connect(format!("{IP}:8080"))
        .await
        .unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let mut client = client.ready().await.unwrap();
    let mut req = http::Request::builder()
        .method("GET")
        .uri(format!("http://{authority}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let (resp, _) = client.send_request(req.body(()).unwrap(), true).unwrap();
    let resp = resp.await.unwrap();
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let mut text = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        text.extend_from_slice(&chunk);
    }
    landed(status, &String::from_utf8_lossy(&text))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bypass_attempts_land_where_the_normalised_path_says() {
    let weft = Weft::up(IP, &[("base.yaml", &base(IP)), ("routes.yaml", ROUTES)]);
    let c = client(&[]);
    let url = format!("http://{IP}:8080/admin");
    eventually(Duration::from_secs(20), "both backends serve", || async {
        get(&c, &url, "norm.example.com").await.0 == 200
            && get(&c, &url, "public.example.com").await.0 == 200
    })
    .await;

    let host = "Host: norm.example.com";
    let cases: Vec<(&str, Lands)> = vec![
        ("/admin", at("v1", "/admin")),
        ("//admin", at("v1", "/admin")),
        ("///admin//x", at("v1", "/admin/x")),
        ("/%61dmin", at("v1", "/admin")),
        ("/ad%6Din", at("v1", "/admin")),
        ("/adm%69n/", at("v1", "/admin/")),
        ("/x/../admin", at("v1", "/admin")),
        ("/x/%2e%2e/admin", at("v1", "/admin")),
        ("/%2e%2e/admin", at("v1", "/admin")),
        ("/%2e/admin", at("v1", "/admin")),
        ("/.%2e/admin", at("v1", "/admin")),
        ("/./admin", at("v1", "/admin")),
        ("/admin/./x", at("v1", "/admin/x")),
        ("/admin/%2e", at("v1", "/admin/")),
        ("/admin/..", at("v2", "/")),
        ("/app/../admin?q=%2F", at("v1", "/admin?q=%2F")),
        ("/admin?x=/../y", at("v1", "/admin?x=/../y")),
        // Double encoding decodes once: the escape lands as text.
        ("/%252e%252e/admin", at("v2", "/%252e%252e/admin")),
        ("/%2561dmin", at("v2", "/%2561dmin")),
        // Paths are case-sensitive; escapes get upper-case hex.
        ("/Admin", at("v2", "/Admin")),
        ("/ADMIN", at("v2", "/ADMIN")),
        ("/%41dmin", at("v2", "/Admin")),
        ("/%c3%a9", at("v2", "/%C3%A9")),
        ("/admin%20", at("v2", "/admin%20")),
        // Path parameters belong to their segment.
        ("/admin;x=1", at("v2", "/admin;x=1")),
        ("/admin/;x=1", at("v1", "/admin/;x=1")),
        // Refused.
        ("/%2fadmin", Lands::Status(400)),
        ("/admin%2Fx", Lands::Status(400)),
        ("/admin/..%2f", Lands::Status(400)),
        ("/%5cadmin", Lands::Status(400)),
        ("/\\admin", Lands::Status(400)),
        ("/admin#x", Lands::Status(400)),
        ("/x#/../admin", Lands::Status(400)),
        ("/%00admin", Lands::Status(400)),
        ("/admin%0d%0aX-Injected:%201", Lands::Status(400)),
        ("/x/..;/admin", Lands::Status(400)),
        ("/.;/admin", Lands::Status(400)),
        ("/%zzadmin", Lands::Status(400)),
        // Absolute-form, its authority the same as Host.
        ("http://norm.example.com/x/../admin", at("v1", "/admin")),
        ("ftp://norm.example.com/admin", Lands::Status(400)),
    ];
    let mut wrong = Vec::new();
    for (target, want) in &cases {
        let got = raw(target, &[host]);
        if &got != want {
            wrong.push(format!("{target}: {got:?}, want {want:?}"));
        }
    }

    // Hosts.
    let host_cases: Vec<(&str, Vec<&str>, Lands)> = vec![
        ("/admin", vec!["Host: NORM.Example.COM"], at("v1", "/admin")),
        (
            "/admin",
            vec!["Host: norm.example.com."],
            at("v1", "/admin"),
        ),
        (
            "/admin",
            vec!["Host: norm.example.com:80"],
            at("v1", "/admin"),
        ),
        (
            "/admin",
            vec!["Host: norm.example.com:8080"],
            at("v1", "/admin"),
        ),
        ("/", vec!["Host: Secret.Example.com"], at("v1", "/")),
        // An absolute-form target's authority is the host; one that
        // contradicts Host is refused.
        (
            "HTTP://SECRET.example.com//x",
            vec!["Host: SECRET.example.com"],
            at("v1", "/x"),
        ),
        (
            "http://secret.example.com/",
            vec!["Host: public.example.com"],
            Lands::Status(400),
        ),
        (
            "http://public.example.com/",
            vec!["Host: secret.example.com"],
            Lands::Status(400),
        ),
        (
            "http://user@secret.example.com/",
            vec!["Host: secret.example.com"],
            Lands::Status(400),
        ),
        (
            "/",
            vec!["Host: public.example.com", "Host: secret.example.com"],
            Lands::Status(400),
        ),
        ("/", vec!["Host: secret.example.com/x"], Lands::Status(400)),
        (
            "/",
            vec!["Host: user@secret.example.com"],
            Lands::Status(400),
        ),
    ];
    for (target, headers, want) in &host_cases {
        let got = raw(target, headers);
        if &got != want {
            wrong.push(format!("{target} {headers:?}: {got:?}, want {want:?}"));
        }
    }

    // HTTP/2 `:path` and `:authority`.
    type H2Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, Lands);
    let h2_cases: Vec<H2Case> = vec![
        ("norm.example.com", "//admin", vec![], at("v1", "/admin")),
        ("norm.example.com", "/%61dmin", vec![], at("v1", "/admin")),
        (
            "norm.example.com",
            "/x/../admin",
            vec![],
            at("v1", "/admin"),
        ),
        (
            "norm.example.com",
            "/x/%2E%2E/admin",
            vec![],
            at("v1", "/admin"),
        ),
        ("norm.example.com", "/%2fadmin", vec![], Lands::Status(400)),
        (
            "norm.example.com",
            "/x/..;/admin",
            vec![],
            Lands::Status(400),
        ),
        ("NORM.example.com", "/admin", vec![], at("v1", "/admin")),
        ("norm.example.com", "/Admin", vec![], at("v2", "/Admin")),
        (
            "public.example.com",
            "/",
            vec![("host", "secret.example.com")],
            Lands::Status(400),
        ),
    ];
    for (authority, path, headers, want) in &h2_cases {
        let got = h2(authority, path, headers).await;
        if &got != want {
            wrong.push(format!(
                "h2 {authority}{path} {headers:?}: {got:?}, want {want:?}"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} cases went wrong:\n{}",
        wrong.len(),
        cases.len() + host_cases.len() + h2_cases.len(),
        wrong.join("\n")
    );

    // A normal request still succeeds after all of that.
    assert_eq!(get(&c, &url, "norm.example.com").await.0, 200);
    drop(weft);
}
