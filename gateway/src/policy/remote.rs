//! Remote JWKS: keys fetched by the proxy, off the request path. One
//! fetcher per (URI, roots, cache duration), shared by every snapshot and
//! gateway of the process that names it, so a config swap keeps the keys.
//!
//! - A background task fetches at start, then every cache duration; a
//!   failed fetch keeps the last good keys and is tried again sooner.
//! - A token with an unknown `kid` may ask for a fetch now, at most once
//!   per `REFETCH_EVERY`; that request waits for it (up to `REFETCH_WAIT`),
//!   no other request does.
//! - Until a fetch succeeds there are no keys, and every token is refused.

use super::keys::KeySet;
use arc_swap::ArcSwapOption;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};

/// Unknown kids ask for a fetch at most this often, per fetcher.
pub const REFETCH_EVERY: Duration = Duration::from_secs(10);
/// How long a request with an unknown kid waits for the fetch it asked for.
const REFETCH_WAIT: Duration = Duration::from_secs(3);
/// One fetch's time limit.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest JWKS document read.
const MAX_BODY: usize = 1 << 20;
/// The first retry after a failed fetch; later ones wait longer, up to the
/// cache duration.
const RETRY_FIRST: Duration = Duration::from_secs(1);

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Source {
    uri: String,
    roots_pem: Vec<String>,
    cache: Duration,
}

pub struct RemoteKeys {
    uri: String,
    keys: ArcSwapOption<KeySet>,
    /// Asks the task for a fetch now.
    wake: Arc<Notify>,
    /// Counts finished fetches (good or not), for requests waiting on one.
    done: watch::Sender<u64>,
    /// When an unknown kid last asked for a fetch.
    last_asked: Mutex<Option<Instant>>,
    /// Fetches made, for `/config_dump` and tests.
    pub fetches: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for RemoteKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RemoteKeys({})", self.uri)
    }
}

fn registry() -> &'static Mutex<HashMap<Source, Weak<RemoteKeys>>> {
    static R: OnceLock<Mutex<HashMap<Source, Weak<RemoteKeys>>>> = OnceLock::new();
    R.get_or_init(Default::default)
}

impl RemoteKeys {
    /// The fetcher for this source, started if none runs. Outside a tokio
    /// runtime nothing can fetch: the keys stay empty (every token refused).
    pub fn get(uri: &str, roots_pem: &[String], cache: Duration) -> Result<Arc<Self>, String> {
        let source = Source {
            uri: uri.to_string(),
            roots_pem: roots_pem.to_vec(),
            cache: cache.max(Duration::from_secs(1)),
        };
        let mut all = registry().lock().unwrap_or_else(|p| p.into_inner());
        all.retain(|_, w| w.strong_count() > 0);
        if let Some(live) = all.get(&source).and_then(Weak::upgrade) {
            return Ok(live);
        }
        let client = client(&source.roots_pem)?;
        let keys = Arc::new(RemoteKeys {
            uri: source.uri.clone(),
            keys: ArcSwapOption::empty(),
            wake: Arc::new(Notify::new()),
            done: watch::channel(0).0,
            last_asked: Mutex::new(None),
            fetches: Default::default(),
        });
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                let wake = keys.wake.clone();
                rt.spawn(run(Arc::downgrade(&keys), wake, client, source.cache));
            }
            Err(_) => tracing::error!(uri, "no runtime to fetch the JWKS on"),
        }
        all.insert(source, Arc::downgrade(&keys));
        Ok(keys)
    }

    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The keys of the last good fetch.
    pub fn current(&self) -> Option<Arc<KeySet>> {
        self.keys.load_full()
    }

    /// A token named a kid the keys lack: fetch now, unless a fetch was
    /// asked for less than `REFETCH_EVERY` ago, and wait for it. Returns the
    /// keys after the fetch, or `None` when no fetch was made.
    pub async fn refetch(&self) -> Option<Arc<KeySet>> {
        let mut done = self.done.subscribe();
        // The first fetch is still on its way: wait for it instead.
        if *done.borrow_and_update() == 0 {
            let _ = tokio::time::timeout(REFETCH_WAIT, done.changed()).await;
            return self.current();
        }
        {
            let mut last = self.last_asked.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| t.elapsed() < REFETCH_EVERY) {
                return None;
            }
            *last = Some(Instant::now());
        }
        self.wake.notify_one();
        let _ = tokio::time::timeout(REFETCH_WAIT, done.changed()).await;
        self.current()
    }
}

fn client(roots_pem: &[String]) -> Result<reqwest::Client, String> {
    let roots = if roots_pem.is_empty() {
        crate::pki::system_roots()
    } else {
        crate::pki::root_store(roots_pem).map_err(|e| format!("JWKS CA: {e}"))
    };
    // No roots (a machine without a CA store): plain `http` still works,
    // and `https` fails its handshakes, refusing every token.
    let roots = roots.unwrap_or_else(|e| {
        tracing::warn!("JWKS client: {e}");
        rustls::RootCertStore::empty()
    });
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(FETCH_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("JWKS client: {e}"))
}

/// The fetch loop; ends when the last snapshot naming the source is gone.
async fn run(me: Weak<RemoteKeys>, wake: Arc<Notify>, client: reqwest::Client, cache: Duration) {
    let mut retry = RETRY_FIRST;
    loop {
        let Some(keys) = me.upgrade() else { return };
        let wait = match fetch(&client, &keys.uri).await {
            Ok(set) => {
                tracing::debug!(uri = %keys.uri, keys = set.keys.len(), "JWKS fetched");
                keys.keys.store(Some(Arc::new(set)));
                retry = RETRY_FIRST;
                cache
            }
            Err(e) => {
                tracing::warn!(uri = %keys.uri, "JWKS fetch failed, keeping the last keys: {e}");
                let wait = retry.min(cache);
                retry = (retry * 2).min(cache);
                wait
            }
        };
        keys.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        keys.done.send_modify(|n| *n += 1);
        // Wait without keeping the fetcher alive.
        drop(keys);
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

async fn fetch(client: &reqwest::Client, uri: &str) -> Result<KeySet, String> {
    let mut resp = client.get(uri).send().await.map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("status {}", resp.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(format!("JWKS larger than {MAX_BODY} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    KeySet::parse(&body, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"k","x":"eCzVxutklAgvv0ro_dXIPs6Beto8s1qaEh3zn_UCQxo","y":"asYIyad8ZCBwjamON5iuPlwh0UBYWBrj3ZJw0YOtp2k"}]}"#;

    /// A JWKS server on loopback: the document while `up`, else 500.
    async fn server(up: Arc<AtomicBool>, hits: Arc<AtomicUsize>) -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                hits.fetch_add(1, Ordering::SeqCst);
                let answer = if up.load(Ordering::SeqCst) {
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{JWKS}",
                        JWKS.len()
                    )
                } else {
                    "HTTP/1.1 500 Oops\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".into()
                };
                let _ = s.write_all(answer.as_bytes()).await;
            }
        });
        format!("http://{addr}/jwks.json")
    }

    async fn until(what: &str, check: impl Fn() -> bool) {
        for _ in 0..200 {
            if check() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{what}: not within 5 s");
    }

    #[tokio::test]
    async fn failed_fetches_keep_the_last_good_keys() {
        let (up, hits) = (
            Arc::new(AtomicBool::new(true)),
            Arc::new(AtomicUsize::new(0)),
        );
        let uri = server(up.clone(), hits.clone()).await;
        let keys = RemoteKeys::get(&uri, &[], Duration::from_secs(1)).unwrap();
        until("the first fetch", || keys.current().is_some()).await;
        up.store(false, Ordering::SeqCst);
        let before = hits.load(Ordering::SeqCst);
        // The refresh a cache period later fails, and so does its retry.
        until("two failed refreshes", || {
            hits.load(Ordering::SeqCst) >= before + 2
        })
        .await;
        assert!(keys.current().is_some_and(|k| k.knows("k")));
        // The same source gets the same fetcher; a dropped one stops.
        let again = RemoteKeys::get(&uri, &[], Duration::from_secs(1)).unwrap();
        assert!(Arc::ptr_eq(&keys, &again));
    }
}
