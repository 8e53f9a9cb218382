//! What proxies send on: a gateway names the client in `x-forwarded-for`
//! and `x-forwarded-proto`, every request carries an `x-request-id` kept
//! across the mesh, forged identity headers never pass, mirrors get the
//! body (not past the limit, which is counted) through the same upstream
//! machinery as the real request (mutual TLS to a meshed mirror), and
//! `timeouts.request` cuts a backend that trickles its answer. Upstream
//! connections are kept and reused, and one the backend closed while it
//! sat idle is never sent a request; header names go on lowercase.

mod support;
use std::time::{Duration, Instant};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const IP: &str = "127.0.80.1";

const ROUTES: &str = r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: fwd}
spec:
  parentRefs: [{name: gw}]
  hostnames: [fwd.example.com]
  rules:
  - matches: [{path: {value: /mirror}}]
    filters:
    - type: RequestMirror
      requestMirror: {backendRef: {name: rec, port: 80}}
    backendRefs: [{name: v1, port: 80}]
  - matches: [{path: {value: /trickle}}]
    timeouts: {request: 500ms}
    backendRefs: [{name: rec, port: 80}]
  - backendRefs: [{name: v1, port: 80}]
"#;

/// Sends `request` from the source address `from` and returns the answer.
async fn raw_from(from: &str, request: &str) -> String {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let mut s = socket
        .connect(format!("{IP}:8080").parse().unwrap())
        .await
        .unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).to_string()
}

fn json_of(answer: &str) -> serde_json::Value {
    let (start, end) = (answer.find('{').unwrap(), answer.rfind('}').unwrap());
    serde_json::from_str(&answer[start..=end]).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_gateways_send_on() {
    let (port, seen) = support::backends::recorder(IP).await;
    let files = format!("{}---\n{}", base(IP), slice_service("rec", IP, port, None));
    let weft = Weft::up(IP, &[("base.yaml", &files), ("routes.yaml", ROUTES)]);
    let c = client(&[]);
    eventually(Duration::from_secs(20), "the route serves", || async {
        get(&c, &format!("http://{IP}:8080/"), "fwd.example.com")
            .await
            .0
            == 200
    })
    .await;

    // The client is named; what it claimed is kept before it, not trusted.
    let answer = raw_from(
        "127.0.80.9",
        "GET /x HTTP/1.1\r\nHost: fwd.example.com\r\nX-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Client-Cert: URI=spiffe://forged/ns/a/sa/b\r\nX-Weft-Service: forged\r\nConnection: close\r\n\r\n",
    )
    .await;
    let headers = &json_of(&answer)["headers"];
    assert_eq!(
        headers["X-Forwarded-For"],
        serde_json::json!(["203.0.113.9, 127.0.80.9"]),
        "{headers}"
    );
    assert_eq!(headers["X-Forwarded-Proto"], serde_json::json!(["http"]));
    assert!(
        headers.get("X-Forwarded-Client-Cert").is_none(),
        "{headers}"
    );
    assert!(headers.get("X-Weft-Service").is_none(), "{headers}");
    let id = headers["X-Request-Id"][0].as_str().unwrap();
    assert_eq!((id.len(), &id[14..15]), (36, "4"), "a new UUID: {id}");
    let answer = raw_from(
        "127.0.80.9",
        "GET /x HTTP/1.1\r\nHost: fwd.example.com\r\nX-Request-Id: trace-me-7\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(
        json_of(&answer)["headers"]["X-Request-Id"],
        serde_json::json!(["trace-me-7"])
    );

    // A mirror gets the body, and no identity header the client sent.
    let body = "hello mirror";
    let answer = raw_from(
        "127.0.80.9",
        &format!("POST /mirror HTTP/1.1\r\nHost: fwd.example.com\r\nX-Forwarded-Client-Cert: URI=spiffe://forged/ns/a/sa/b\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    eventually(
        Duration::from_secs(5),
        "the mirror gets the body",
        || async {
            seen.lock()
                .unwrap()
                .iter()
                .any(|r| r.starts_with("POST /mirror"))
        },
    )
    .await;
    let copy = seen
        .lock()
        .unwrap()
        .iter()
        .find(|r| r.starts_with("POST /mirror"))
        .cloned()
        .unwrap();
    assert!(copy.ends_with("\r\n\r\nhello mirror"), "{copy}");
    let lower = copy.to_ascii_lowercase();
    assert!(!lower.contains("forged"), "{copy}");
    assert!(lower.contains("x-forwarded-for: 127.0.80.9"), "{copy}");

    // A body over the limit (64 KiB) is not mirrored, and that is counted.
    let big = "x".repeat(100 * 1024);
    let answer = raw_from(
        "127.0.80.9",
        &format!("POST /mirror/big HTTP/1.1\r\nHost: fwd.example.com\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{big}", big.len()),
    )
    .await;
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "the request itself is served"
    );
    let admin = weft.gateway_admins[0].clone();
    eventually(
        Duration::from_secs(5),
        "the skipped mirror is counted",
        || async {
            let text = reqwest::get(format!("{admin}/metrics"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            text.lines().any(|l| {
                l.starts_with("weft_mirror_requests_total{")
                    && l.contains("result=\"body_too_large\"")
                    && l.ends_with(" 1")
            })
        },
    )
    .await;
    assert!(
        !seen
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.starts_with("POST /mirror/big")),
        "the big body reached the mirror"
    );

    // A backend that trickles its answer is cut at the deadline.
    let started = Instant::now();
    let status = get(&c, &format!("http://{IP}:8080/trickle"), "fwd.example.com")
        .await
        .0;
    let took = started.elapsed();
    assert_eq!(status, 504, "after {took:?}");
    assert!(took < Duration::from_secs(3), "cut after {took:?}");
    drop(weft);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_cross_the_mesh_and_mirrors_use_mutual_tls() {
    let ip = "127.0.81.1";
    let mesh = calling_pair(
        "fw",
        ("front", "127.0.81.2"),
        ("back", "127.0.81.3"),
        "/work",
    );
    // The edge mirrors every request to `back`, a meshed Service.
    let edge = edge("fw", "front").replace(
        "  rules: [{backendRefs: [{name: front, port: 9080}]}]",
        "  rules:\n  - backendRefs: [{name: front, port: 9080}]\n    filters:\n    - type: RequestMirror\n      requestMirror: {backendRef: {name: back, port: 9080}}",
    );
    assert!(edge.contains("RequestMirror"));
    let weft = Weft::up(ip, &[("mesh.yaml", &mesh), ("edge.yaml", &edge)]);
    let c = client(&[]);
    let url = format!("http://{ip}:8080/page");
    wait_for_call(&c, &url, "any").await;
    let resp = c
        .get(&url)
        .header("host", "any")
        .header("x-request-id", "mesh-id-1")
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        body["headers"]["X-Request-Id"],
        serde_json::json!(["mesh-id-1"]),
        "the sidecar keeps the gateway's id: {body}"
    );
    // The mirror reached back's sidecar over mutual TLS as the gateway.
    let metrics = text_of("http://127.0.81.3:15020/metrics").await;
    let mirrored = metrics.lines().any(|l| {
        l.starts_with("istio_requests_total{")
            && l.contains("reporter=\"destination\"")
            && l.contains("source_principal=\"spiffe://cluster.local/ns/fw/sa/edge\"")
            && l.contains("connection_security_policy=\"mutual_tls\"")
    });
    assert!(mirrored, "{metrics}");
    drop(weft);
}

/// What a test backend has accepted and closed.
#[derive(Default)]
struct Counts {
    accepted: std::sync::atomic::AtomicUsize,
    closed: std::sync::atomic::AtomicUsize,
    /// The head of the last request, as it arrived.
    last_head: std::sync::Mutex<String>,
}

/// A keep-alive HTTP/1.1 backend on `ip` counting the connections it
/// accepts. With `close`, each connection, after its first answer, waits
/// until `close` is true and then closes (idle, without having said so in
/// a header), counted.
async fn counting_backend(
    ip: &str,
    close: Option<tokio::sync::watch::Receiver<bool>>,
) -> (u16, std::sync::Arc<Counts>) {
    use std::sync::atomic::Ordering::SeqCst;
    let listener = tokio::net::TcpListener::bind(format!("{ip}:0"))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let counts = std::sync::Arc::new(Counts::default());
    let seen = counts.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            seen.accepted.fetch_add(1, SeqCst);
            let (seen, mut close) = (seen.clone(), close.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let mut chunk = [0u8; 4096];
                    let n = match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    buf.extend_from_slice(&chunk[..n]);
                    // Requests here have no body: one ends at its blank line.
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = buf.drain(..end + 4).collect::<Vec<u8>>();
                        *seen.last_head.lock().unwrap() = String::from_utf8_lossy(&head).into();
                        let answer =
                            b"HTTP/1.1 200 OK\r\nX-Backend-Said: hi\r\ncontent-length: 2\r\n\r\nok";
                        if s.write_all(answer).await.is_err() {
                            return;
                        }
                        if let Some(close) = close.as_mut() {
                            let _ = close.wait_for(|c| *c).await;
                            drop(s);
                            seen.closed.fetch_add(1, SeqCst);
                            return;
                        }
                    }
                }
            });
        }
    });
    (port, counts)
}

/// Sends `requests` one after another on one connection to the gateway and
/// returns each answer.
async fn statuses_on_one_connection(
    s: &mut tokio::net::TcpStream,
    requests: &[&str],
) -> Vec<String> {
    let mut out = Vec::new();
    for r in requests {
        s.write_all(r.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let mut chunk = [0u8; 4096];
        // Every answer here is a head and a 2-byte body, or an error page
        // that closes the connection.
        loop {
            let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
                .await
                .expect("an answer")
                .unwrap();
            answer.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&answer).to_string();
            if n == 0 || text.ends_with("\r\n\r\nok") {
                break;
            }
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(str::to_string)
                    })
                    .and_then(|v| v.trim().parse::<usize>().ok());
                if len.is_some_and(|len| body.len() >= len) {
                    break;
                }
            }
        }
        let text = String::from_utf8_lossy(&answer).to_string();
        out.push(text);
    }
    out
}

/// The status lines of `answers`.
fn status_lines(answers: &[String]) -> Vec<&str> {
    answers
        .iter()
        .map(|a| a.lines().next().unwrap_or(""))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_reused_and_never_used_once_closed() {
    use std::sync::atomic::Ordering::SeqCst;
    let ip = "127.0.116.1";
    let (close_now, close) = tokio::sync::watch::channel(false);
    let (keep, kept) = counting_backend(ip, None).await;
    let (closing_port, closing) = counting_backend(ip, Some(close)).await;
    let files = format!(
        "{}---\n{}---\n{}---\n{}---\n{}",
        base(ip),
        slice_service("keep", ip, keep, None),
        slice_service("close", ip, closing_port, None),
        route("keep", "keep.example.com", "keep"),
        route("close", "close.example.com", "close"),
    );
    // One data-plane thread, so every request meets the one pool.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("all.yaml"), &files).unwrap();
    let weft = Weft::start_in(None, dir.path(), ip, &[("WEFT_WORKERS", "1")], &[]);
    let c = client(&[]);
    eventually(Duration::from_secs(20), "the route serves", || async {
        c.get(format!("http://{ip}:8080/"))
            .header("host", "keep.example.com")
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    // Fifty requests go over one upstream connection, taken from and given
    // back to the pool fifty times.
    let before = kept.accepted.load(SeqCst);
    let mut s = tokio::net::TcpStream::connect(format!("{ip}:8080"))
        .await
        .unwrap();
    let get = "GET / HTTP/1.1\r\nHost: keep.example.com\r\nX-Mixed-Case: yes\r\n\r\n";
    let answers = statuses_on_one_connection(&mut s, &[get; 50]).await;
    let statuses = status_lines(&answers);
    assert!(
        statuses.iter().all(|a| *a == "HTTP/1.1 200 OK"),
        "{statuses:?}"
    );
    // Header names go on lowercase both ways (as Envoy and HAProxy send
    // them), whatever case they came in.
    let head = kept.last_head.lock().unwrap().clone();
    assert!(head.contains("\r\nx-mixed-case: yes\r\n"), "{head}");
    assert!(!head.contains("X-Mixed-Case"), "{head}");
    assert!(
        answers[0].contains("\r\nx-backend-said: hi\r\n"),
        "{}",
        answers[0]
    );
    let opened = kept.accepted.load(SeqCst) - before;
    assert!(
        opened <= 1,
        "fifty requests opened {opened} upstream connections"
    );

    // A connection to the closing backend waits in the pool; the backend
    // closes it there. The next request, a POST (never retried), must not
    // be sent down it: the pool finds it closed as it takes it, and a new
    // connection is opened.
    let first = statuses_on_one_connection(
        &mut s,
        &["GET / HTTP/1.1\r\nHost: close.example.com\r\n\r\n"],
    )
    .await;
    assert_eq!(status_lines(&first), ["HTTP/1.1 200 OK"]);
    let accepted = closing.accepted.load(SeqCst);
    close_now.send(true).unwrap();
    eventually(
        Duration::from_secs(5),
        "the backend closed them",
        || async { closing.closed.load(SeqCst) == accepted },
    )
    .await;
    let post = "POST / HTTP/1.1\r\nHost: close.example.com\r\ncontent-length: 0\r\n\r\n";
    let second = statuses_on_one_connection(&mut s, &[post]).await;
    assert_eq!(
        status_lines(&second),
        ["HTTP/1.1 200 OK"],
        "a closed pooled connection was used"
    );
    assert_eq!(closing.accepted.load(SeqCst), accepted + 1);
    drop(weft);
}

/// A client that leaves while its request waits for the backend ends the
/// request there too: the gateway watches the client as it waits (a GET
/// has no body to read), and closes the upstream connection rather than
/// keep it open for an answer nobody will read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_ends_its_request_upstream() {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    let ip = "127.0.116.2";
    // A backend that reads each request and never answers; it counts the
    // requests it got and the connections closed by their other end.
    let listener = tokio::net::TcpListener::bind(format!("{ip}:0"))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let (got, ended) = (
        std::sync::Arc::new(AtomicUsize::new(0)),
        std::sync::Arc::new(AtomicUsize::new(0)),
    );
    let (got2, ended2) = (got.clone(), ended.clone());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let (got, ended) = (got2.clone(), ended2.clone());
            tokio::spawn(async move {
                let mut chunk = [0u8; 4096];
                loop {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => {
                            ended.fetch_add(1, SeqCst);
                            return;
                        }
                        Ok(n) if chunk[..n].windows(4).any(|w| w == b"\r\n\r\n") => {
                            got.fetch_add(1, SeqCst);
                        }
                        Ok(_) => {}
                    }
                }
            });
        }
    });
    let files = format!(
        "{}---\n{}---\n{}",
        base(ip),
        slice_service("silent", ip, port, None),
        route("silent", "silent.example.com", "silent"),
    );
    let weft = Weft::up(ip, &[("all.yaml", &files)]);
    // Until the route is in place, the gateway answers 404 and the
    // backend gets nothing: try again on a new connection.
    let deadline = Instant::now() + Duration::from_secs(20);
    let s = loop {
        assert!(Instant::now() < deadline, "no request reached the backend");
        let mut c = tokio::net::TcpStream::connect(format!("{ip}:8080"))
            .await
            .unwrap();
        c.write_all(b"GET / HTTP/1.1\r\nHost: silent.example.com\r\n\r\n")
            .await
            .unwrap();
        let reached = async {
            while got.load(SeqCst) == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        if tokio::time::timeout(Duration::from_millis(500), reached)
            .await
            .is_ok()
        {
            break c;
        }
    };
    assert_eq!(ended.load(SeqCst), 0, "the upstream connection is open");
    drop(s);
    eventually(
        Duration::from_secs(5),
        "the gateway closed the upstream connection",
        || async { ended.load(SeqCst) == 1 },
    )
    .await;
    drop(weft);
}
