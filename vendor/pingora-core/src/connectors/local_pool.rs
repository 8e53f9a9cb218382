// Copyright 2026 the weft authors.
//
// Licensed under the Apache License, Version 2.0 (the "License");
// you may not use this file except in compliance with the License.
// You may obtain a copy of the License at
//
// http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing, software
// distributed under the License is distributed on an "AS IS" BASIS,
// WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
// See the License for the specific language governing permissions and
// limitations under the License.

//! A keep-alive pool per thread for [super::TransportConnector].
//!
//! The shared pool (`pingora_pool::ConnectionPool`) wraps each idle
//! connection in an `Arc<Mutex<_>>`, registers a oneshot and a `Notify` in an
//! LRU, and spawns a task that watches the idle socket; taking it back waits
//! for that task to give up its lock. That is an allocation-heavy round trip
//! through the scheduler on every request, and with one runtime per thread a
//! race: the taker can find the watcher's `Arc` not yet dropped and lose the
//! connection ("failed to acquire reusable stream").
//!
//! Here an idle connection stays on the thread that used it, in a plain
//! list per (connector, peer hash); nothing watches it. Its liveness is
//! checked when it is taken (a non-blocking read: end of stream, an error
//! or unexpected bytes mean it is closed), and its idle timeout is checked
//! lazily: expired connections are closed when their list is next touched.
//! With one runtime per thread (Pingora's no-steal runtime, or one per core)
//! a connection is thus reused on the reactor it is registered with.
//!
//! The pool holds at most `size` connections per thread; when full, the
//! oldest idle connection of the same peer makes room, else the new one is
//! closed. Connections of a peer no longer asked for stay open (at most
//! `size` of them) until that peer is used again, the pool is dropped (each
//! thread then closes its share when it next uses any pool) or the thread
//! ends.

use crate::protocols::Stream;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One idle connection.
struct Idle {
    stream: Stream,
    since: Instant,
    timeout: Option<Duration>,
}

impl Idle {
    fn expired(&self, now: Instant) -> bool {
        self.timeout
            .is_some_and(|t| now.saturating_duration_since(self.since) >= t)
    }
}

#[derive(Default)]
struct Lists {
    /// Idle connections per (pool, peer hash), oldest first.
    by_key: HashMap<(u64, u64), Vec<Idle>>,
    /// Connections held by this thread, per pool.
    held: HashMap<u64, usize>,
    /// How many pools had been dropped when this thread last looked.
    dropped_seen: u64,
}

impl Lists {
    /// This thread's lists, without those of pools dropped since it last
    /// looked (their connections close).
    fn with<R>(f: impl FnOnce(&mut Lists) -> R) -> R {
        LISTS.with(|lists| {
            let mut lists = lists.borrow_mut();
            let dropped_now = DROPPED_COUNT.load(Ordering::Acquire);
            if dropped_now != lists.dropped_seen {
                let dropped = DROPPED.lock().clone();
                lists.by_key.retain(|(id, _), _| !dropped.contains(id));
                lists.held.retain(|id, _| !dropped.contains(id));
                lists.dropped_seen = dropped_now;
            }
            f(&mut lists)
        })
    }
}

thread_local! {
    static LISTS: RefCell<Lists> = RefCell::new(Lists::default());
}

/// Pools dropped, whose connections every thread closes when it next
/// touches its lists; and how many there are (checked without the lock).
static DROPPED: parking_lot::Mutex<Vec<u64>> = parking_lot::Mutex::new(Vec::new());
static DROPPED_COUNT: AtomicU64 = AtomicU64::new(0);

/// A pool: the lists of one connector on every thread.
pub(crate) struct LocalPool {
    id: u64,
    size: usize,
}

/// What `take` found for a closed idle connection: how long it was idle.
pub(crate) type Closed = Duration;

impl LocalPool {
    pub(crate) fn new(size: usize) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        LocalPool {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            size,
        }
    }

    /// Keeps `stream` idle for `key` on this thread, for at most `timeout`.
    /// Returns the idle times of connections closed to make room or because
    /// they expired.
    pub(crate) fn put(&self, key: u64, stream: Stream, timeout: Option<Duration>) -> Vec<Closed> {
        let now = Instant::now();
        let mut closed = Vec::new();
        if self.size == 0 {
            return closed;
        }
        Lists::with(|lists| {
            let Lists { by_key, held, .. } = lists;
            let list = by_key.entry((self.id, key)).or_default();
            let held = held.entry(self.id).or_default();
            let stale = list.iter().take_while(|i| i.expired(now)).count();
            for idle in list.drain(..stale) {
                closed.push(now.saturating_duration_since(idle.since));
            }
            *held -= stale;
            if *held >= self.size {
                if list.is_empty() {
                    // Full of other peers' connections: this one closes.
                    return;
                }
                let oldest = list.remove(0);
                closed.push(now.saturating_duration_since(oldest.since));
                *held -= 1;
            }
            list.push(Idle {
                stream,
                since: now,
                timeout,
            });
            *held += 1;
        });
        closed
    }

    /// The most recently idle connection of `key` on this thread that is
    /// not expired and passes `usable` (which may read from it). Returns it
    /// and the idle times of those closed on the way.
    pub(crate) fn take(
        &self,
        key: u64,
        mut usable: impl FnMut(&mut Stream) -> bool,
    ) -> (Option<Stream>, Vec<Closed>) {
        let now = Instant::now();
        let mut closed = Vec::new();
        let found = Lists::with(|lists| {
            let Lists { by_key, held, .. } = lists;
            let list = by_key.get_mut(&(self.id, key))?;
            let held = held.entry(self.id).or_default();
            let mut found = None;
            while let Some(mut idle) = list.pop() {
                *held -= 1;
                if idle.expired(now) {
                    // Everything before it is older still.
                    closed.push(now.saturating_duration_since(idle.since));
                    *held -= list.len();
                    closed.extend(
                        list.drain(..)
                            .map(|i| now.saturating_duration_since(i.since)),
                    );
                    break;
                }
                if usable(&mut idle.stream) {
                    found = Some(idle.stream);
                    break;
                }
                closed.push(now.saturating_duration_since(idle.since));
            }
            if list.is_empty() {
                by_key.remove(&(self.id, key));
            }
            found
        });
        (found, closed)
    }

    /// Connections idle on this thread (tests).
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        Lists::with(|l| l.held.get(&self.id).copied().unwrap_or(0))
    }
}

impl Drop for LocalPool {
    /// Every thread closes the pool's idle connections when it next
    /// touches its lists; this one at once.
    fn drop(&mut self) {
        let mut dropped = DROPPED.lock();
        dropped.push(self.id);
        DROPPED_COUNT.store(dropped.len() as u64, Ordering::Release);
        drop(dropped);
        let _ = LISTS.try_with(|lists| {
            if let Ok(mut lists) = lists.try_borrow_mut() {
                lists.by_key.retain(|(id, _), _| *id != self.id);
                lists.held.remove(&self.id);
            }
        });
    }
}
