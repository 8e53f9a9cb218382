//! The Redis `weft up` counts global rate limits in: the one `--redis`
//! names, or else (when `redis-server` is installed) one of its own on a
//! free loopback port, started the first time a proxy's config has global
//! limits and stopped with `weft up`. Without either, policies with global
//! limits are not accepted, and their status says why.

use std::process::Stdio;

/// A `--redis` value proxies can use: `redis://host:port` (a bad one would
/// make every config with global limits unusable, so it stops here).
pub fn check_url(url: &str) -> anyhow::Result<()> {
    let rest = url.strip_prefix("redis://").unwrap_or("");
    anyhow::ensure!(
        !rest.is_empty() && !rest.contains(char::is_whitespace),
        "--redis {url:?}: give redis://host:port"
    );
    Ok(())
}
use tokio::process::{Child, Command};

pub enum RateStore {
    /// `--redis`: someone else's.
    Given(String),
    /// Ours, on `port`, once needed.
    Local { port: u16, child: Option<Child> },
    /// No Redis to count in.
    Missing,
}

impl RateStore {
    /// The store for `flag` (`--redis`), if any can be had.
    pub fn plan(flag: Option<String>) -> anyhow::Result<RateStore> {
        if let Some(url) = flag {
            check_url(&url)?;
            return Ok(RateStore::Given(url));
        }
        let installed = std::env::var_os("PATH").is_some_and(|path| {
            std::env::split_paths(&path).any(|dir| dir.join("redis-server").is_file())
        });
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port());
        Ok(match (installed, port) {
            (true, Ok(port)) => RateStore::Local { port, child: None },
            _ => RateStore::Missing,
        })
    }

    /// The URL proxies are given.
    pub fn url(&self) -> Option<String> {
        match self {
            RateStore::Given(url) => Some(url.clone()),
            RateStore::Local { port, .. } => Some(format!("redis://127.0.0.1:{port}")),
            RateStore::Missing => None,
        }
    }

    /// Starts our Redis if `needed` and it is not running.
    pub fn ensure(&mut self, needed: bool) {
        let RateStore::Local { port, child } = self else {
            return;
        };
        let running = child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)));
        if !needed || running {
            return;
        }
        let mut cmd = Command::new("redis-server");
        cmd.args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true);
        crate::workloads::end_with_this_process(&mut cmd);
        match cmd.spawn() {
            Ok(c) => {
                eprintln!("weft up: global rate limits count in redis-server on 127.0.0.1:{port}");
                *child = Some(c);
            }
            Err(e) => tracing::error!("cannot start redis-server: {e}"),
        }
    }

    pub async fn stop(&mut self) {
        if let RateStore::Local { child: Some(c), .. } = self {
            let _ = c.kill().await;
        }
    }
}
