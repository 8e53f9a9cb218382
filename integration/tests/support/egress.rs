//! Helpers of the egress tests: calls as a workload through its sidecar
//! (HTTP, and whole connections after a `CONNECT`), inside the mesh's
//! network namespace, and the example's script kept stopped.

use super::clusterset::within;
use super::text_of;
use std::time::Duration;

/// GET `url` as the workload at `from` (through its sidecar, an HTTP
/// proxy), inside the mesh's namespace: status and body text.
pub async fn call(ns: &str, from: &str, url: &str) -> (u16, String) {
    let (proxy, url) = (format!("http://{from}:15001"), url.to_string());
    within(ns, move || async move {
        let c = reqwest::Client::builder()
            .proxy(reqwest::Proxy::http(proxy).unwrap())
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        match c.get(url).send().await {
            Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
            Err(_) => (0, String::new()),
        }
    })
    .await
}

/// Through the sidecar of `from` as an HTTP proxy: `CONNECT target`,
/// then, with `tls` (a server name and the roots it is checked against),
/// the workload's own TLS; then `GET /`. The answer, or what failed.
pub async fn tunnel(
    ns: &str,
    from: &str,
    target: &str,
    tls: Option<(&str, &str)>,
) -> Result<String, String> {
    tunnel_to(ns, from, target, tls, "/").await
}

/// `tunnel`, asking for `path`.
pub async fn tunnel_to(
    ns: &str,
    from: &str,
    target: &str,
    tls: Option<(&str, &str)>,
    path: &str,
) -> Result<String, String> {
    let path = path.to_string();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (proxy, target) = (format!("{from}:15001"), target.to_string());
    let tls = tls.map(|(n, r)| (n.to_string(), r.to_string()));
    within(ns, move || async move {
        let mut tcp = tokio::net::TcpStream::connect(proxy)
            .await
            .map_err(|e| e.to_string())?;
        let ask = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
        tcp.write_all(ask.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match tcp.read(&mut byte).await {
                Ok(1) => head.push(byte[0]),
                _ => return Err(format!("closed: {}", String::from_utf8_lossy(&head))),
            }
        }
        let head = String::from_utf8_lossy(&head).to_string();
        if !head.starts_with("HTTP/1.1 200") {
            let mut rest = String::new();
            let _ = tcp.read_to_string(&mut rest).await;
            return Err(format!("{head}{rest}"));
        }
        let request = |host: &str| {
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
        };
        let mut answer = String::new();
        match tls {
            Some((name, roots)) => {
                let mut store = rustls::RootCertStore::empty();
                for c in rustls_pemfile::certs(&mut roots.as_bytes()) {
                    store.add(c.unwrap()).unwrap();
                }
                let config = rustls::ClientConfig::builder()
                    .with_root_certificates(store)
                    .with_no_client_auth();
                let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
                let server = rustls::pki_types::ServerName::try_from(name.clone()).unwrap();
                let mut s = connector
                    .connect(server, tcp)
                    .await
                    .map_err(|e| format!("TLS: {e}"))?;
                s.write_all(request(&name).as_bytes())
                    .await
                    .map_err(|e| e.to_string())?;
                let _ = s.read_to_string(&mut answer).await;
            }
            None => {
                tcp.write_all(request(&target).as_bytes())
                    .await
                    .map_err(|e| e.to_string())?;
                let _ = tcp.read_to_string(&mut answer).await;
            }
        }
        Ok(answer)
    })
    .await
}

/// The JSON body of an HTTP/1.1 answer read whole.
pub fn body_of(answer: &str) -> serde_json::Value {
    json(answer.split_once("\r\n\r\n").map_or("", |(_, b)| b))
}

pub fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_default()
}

/// The text of an admin endpoint in the mesh's namespace.
pub async fn admin_text(ns: &str, url: String) -> String {
    within(ns, move || async move { text_of(&url).await }).await
}

pub fn has_dnsmasq() -> bool {
    std::process::Command::new("dnsmasq")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The example's `up.sh`, stopped (SIGTERM, and waited for) when dropped,
/// so a failing test leaves no namespace behind.
pub struct Stopped(pub Option<std::process::Child>);

impl Stopped {
    pub fn stop(&mut self) -> std::io::Result<std::process::ExitStatus> {
        let mut child = self.0.take().ok_or(std::io::ErrorKind::NotFound)?;
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        child.wait()
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
