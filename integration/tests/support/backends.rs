//! Backends of the tests' own, for what `weft echo` cannot show.

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A backend on `ip` that records every whole request (head and body) it
/// gets and answers 200; `/trickle` is answered one byte every 100 ms.
pub async fn recorder(ip: &str) -> (u16, Arc<Mutex<Vec<String>>>) {
    let l = tokio::net::TcpListener::bind(format!("{ip}:0"))
        .await
        .unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = vec![0u8; 65536];
                loop {
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let head = text[..end].to_ascii_lowercase();
                        let length: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + length {
                            break;
                        }
                    }
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&buf).to_string();
                let trickle = text.starts_with("GET /trickle");
                log.lock().unwrap().push(text);
                let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
                if trickle {
                    for b in answer {
                        if s.write_all(&[*b]).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                } else {
                    let _ = s.write_all(answer).await;
                }
            });
        }
    });
    (port, seen)
}

/// A backend whose answers a test changes while it runs: every request
/// (`/healthz` included) gets the status it holds, after its delay, with
/// `{"pod": name}`. It counts requests (checks apart) and the connections
/// they came on.
#[derive(Clone)]
pub struct Flaky {
    pub name: String,
    pub status: Arc<std::sync::atomic::AtomicU16>,
    pub delay_ms: Arc<std::sync::atomic::AtomicU64>,
    pub hits: Arc<std::sync::atomic::AtomicUsize>,
    pub checks: Arc<std::sync::atomic::AtomicUsize>,
    pub connections: Arc<Mutex<std::collections::HashSet<std::net::SocketAddr>>>,
}

impl Flaky {
    /// Starts one on `ip:port`.
    pub async fn start(name: &str, ip: &str, port: u16) -> Flaky {
        use axum::extract::{ConnectInfo, State};
        use std::sync::atomic::Ordering;
        let flaky = Flaky {
            name: name.to_string(),
            status: Arc::new(200.into()),
            delay_ms: Arc::new(0.into()),
            hits: Arc::default(),
            checks: Arc::default(),
            connections: Arc::default(),
        };
        async fn answer(
            State(f): State<Flaky>,
            ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
            uri: axum::http::Uri,
        ) -> axum::response::Response {
            use axum::response::IntoResponse;
            if uri.path() == "/healthz" {
                f.checks.fetch_add(1, Ordering::Relaxed);
            } else {
                f.hits.fetch_add(1, Ordering::Relaxed);
                f.connections.lock().unwrap().insert(peer);
            }
            let delay = f.delay_ms.load(Ordering::Relaxed);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            let status = axum::http::StatusCode::from_u16(f.status.load(Ordering::Relaxed))
                .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
            (status, axum::Json(serde_json::json!({"pod": f.name}))).into_response()
        }
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(flaky.clone());
        let l = tokio::net::TcpListener::bind(format!("{ip}:{port}"))
            .await
            .unwrap();
        tokio::spawn(async move {
            let service = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
            let _ = axum::serve(l, service).await;
        });
        flaky
    }

    pub fn set_status(&self, status: u16) {
        self.status
            .store(status, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn checks(&self) -> usize {
        self.checks.load(std::sync::atomic::Ordering::Relaxed)
    }
}
