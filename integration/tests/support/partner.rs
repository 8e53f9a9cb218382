//! The world outside the mesh, for the egress tests: "partner" servers
//! (HTTPS or plain HTTP) listening in a network namespace, and a real DNS
//! server (dnsmasq) whose records a test can change.

use super::netns::{must, within_ns};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Serves on `addr` inside namespace `ns`, over TLS with `cert` when
/// given. Every request (one per connection) is answered 200 with JSON:
/// `server` (this `name`), the `sni` asked for, the request's `host` and
/// `path`, and the `peer` address it came from.
pub fn serve(ns: &str, addr: &str, name: &str, cert: Option<&(String, String)>) {
    let addr = addr.to_string();
    let listener = within_ns(ns, move || std::net::TcpListener::bind(addr).unwrap());
    listener.set_nonblocking(true).unwrap();
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    let acceptor =
        cert.map(|c| tokio_rustls::TlsAcceptor::from(Arc::new(super::pki::server_config(c, None))));
    let name = name.to_string();
    tokio::spawn(async move {
        while let Ok((tcp, peer)) = listener.accept().await {
            let (acceptor, name) = (acceptor.clone(), name.clone());
            tokio::spawn(async move {
                let peer = peer.ip().to_string();
                match acceptor {
                    Some(a) => {
                        let Ok(tls) = a.accept(tcp).await else { return };
                        let sni = tls.get_ref().1.server_name().unwrap_or("").to_string();
                        answer(tls, &name, &sni, &peer).await;
                    }
                    None => answer(tcp, &name, "", &peer).await,
                }
            });
        }
    });
}

async fn answer<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut s: S,
    name: &str,
    sni: &str,
    peer: &str,
) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&head);
    let path = text.split(' ').nth(1).unwrap_or("").to_string();
    let host = text
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("host").then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    let body = serde_json::json!({
        "server": name, "sni": sni, "host": host, "path": path, "peer": peer,
    })
    .to_string();
    let resp = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = s.write_all(resp.as_bytes()).await;
    let _ = s.shutdown().await;
}

/// dnsmasq in a namespace, answering only from its own records: names
/// (`hosts` lines), whole domains (`domains`: every name under them), and
/// NXDOMAIN for anything else under `local` domains. Every answer has
/// TTL `ttl` seconds. Queries are logged, to be counted.
pub struct Dns {
    child: Child,
    hosts: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Dns {
    pub fn start(
        ns: &str,
        listen: (&str, u16),
        hosts: &[(&str, &str)],
        domains: &[(&str, &str)],
        local: &[&str],
        ttl: u32,
    ) -> Dns {
        let dir = tempfile::tempdir().unwrap();
        let (hosts_file, log) = (dir.path().join("hosts"), dir.path().join("queries.log"));
        write_hosts(&hosts_file, hosts);
        let mut args = vec![
            "--keep-in-foreground".to_string(),
            "--no-resolv".into(),
            "--no-hosts".into(),
            "--user=root".into(),
            "--pid-file=".into(),
            "--bind-interfaces".into(),
            format!("--listen-address={}", listen.0),
            format!("--port={}", listen.1),
            format!("--addn-hosts={}", hosts_file.display()),
            format!("--local-ttl={ttl}"),
            "--log-queries".into(),
            format!("--log-facility={}", log.display()),
        ];
        args.extend(domains.iter().map(|(d, ip)| format!("--address=/{d}/{ip}")));
        args.extend(local.iter().map(|d| format!("--local=/{d}/")));
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "dnsmasq"])
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("dnsmasq runs");
        let dns = Dns {
            child,
            hosts: hosts_file,
            log,
            _dir: dir,
        };
        // Up once it logs its start.
        let start = std::time::Instant::now();
        while !std::fs::read_to_string(&dns.log).is_ok_and(|l| l.contains("started")) {
            assert!(start.elapsed().as_secs() < 10, "dnsmasq did not start");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        dns
    }

    /// Replaces the name records, read again at once (SIGHUP).
    pub fn set(&self, hosts: &[(&str, &str)]) {
        write_hosts(&self.hosts, hosts);
        must("kill", &["-HUP", &self.child.id().to_string()]);
    }

    /// How many A queries for `name` were asked so far.
    pub fn queries(&self, name: &str) -> usize {
        let needle = format!("query[A] {name} ");
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(&needle))
            .count()
    }
}

fn write_hosts(path: &std::path::Path, hosts: &[(&str, &str)]) {
    let text: String = hosts.iter().map(|(n, ip)| format!("{ip} {n}\n")).collect();
    std::fs::write(path, text).unwrap();
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
