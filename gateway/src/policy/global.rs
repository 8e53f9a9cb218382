//! Global rate limits: counters shared by every proxy, in Redis. Each rule
//! counts in fixed windows aligned to the Unix epoch (a minute's window
//! starts on the minute): one `INCR` (with `EXPIRE`, in one pipeline) per
//! request under `weft:rl:<rule>:<distinct values>:<window start>`, so
//! proxies that never talk to each other share one count.
//!
//! The store is one connection per proxy, made on first use and remade
//! when it breaks; a call that takes longer than `CALL_TIMEOUT`, or a
//! store that cannot be reached (tried again at most once a second), is
//! an error, and the policy's failure mode decides.

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Mutex;

/// The longest a request waits for Redis.
const CALL_TIMEOUT: Duration = Duration::from_millis(250);
/// After a failed connection, calls fail at once for this long.
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);

pub struct GlobalStore {
    pub url: String,
    client: redis::Client,
    conn: Mutex<Conn>,
}

#[derive(Default)]
struct Conn {
    manager: Option<ConnectionManager>,
    failed_at: Option<Instant>,
}

/// A window's count after this request, and when the window ends.
pub struct Counted {
    pub count: u64,
    pub reset_secs: u64,
}

impl GlobalStore {
    pub fn new(url: &str) -> Result<GlobalStore, String> {
        let client = redis::Client::open(url).map_err(|e| format!("{url}: {e}"))?;
        Ok(GlobalStore {
            url: url.to_string(),
            client,
            conn: Mutex::new(Conn::default()),
        })
    }

    async fn connection(&self) -> Result<ConnectionManager, String> {
        let mut conn = self.conn.lock().await;
        if let Some(m) = &conn.manager {
            return Ok(m.clone());
        }
        if conn
            .failed_at
            .is_some_and(|t| t.elapsed() < RECONNECT_PAUSE)
        {
            return Err("Redis unreachable".into());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(CALL_TIMEOUT)
            .set_response_timeout(CALL_TIMEOUT)
            .set_number_of_retries(1);
        match ConnectionManager::new_with_config(self.client.clone(), config).await {
            Ok(m) => {
                conn.manager = Some(m.clone());
                conn.failed_at = None;
                Ok(m)
            }
            Err(e) => {
                conn.failed_at = Some(Instant::now());
                Err(e.to_string())
            }
        }
    }

    /// Counts a request under rule `rule` and bucket `key` in the current
    /// window of `unit`.
    pub async fn hit(&self, rule: &str, key: &str, unit: Duration) -> Result<Counted, String> {
        let unit = unit.as_secs().max(1);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let window = now / unit * unit;
        let name = format!("weft:rl:{rule}:{key}:{window}");
        let call = async {
            let mut conn = self.connection().await?;
            let (count,): (u64,) = redis::pipe()
                .incr(&name, 1u64)
                .expire(&name, unit as i64 + 1)
                .ignore()
                .query_async(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<u64, String>(count)
        };
        let count = tokio::time::timeout(CALL_TIMEOUT, call)
            .await
            .map_err(|_| "Redis did not answer in time".to_string())??;
        Ok(Counted {
            count,
            reset_secs: window + unit - now,
        })
    }
}
