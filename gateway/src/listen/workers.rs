//! The data plane's threads: one single-threaded Tokio runtime per core,
//! each running its own accept loop on every bound socket, so a connection
//! is accepted, proxied and pooled on one thread from start to end, with no
//! work stealing, no cross-thread wake-ups and no locks contended between
//! cores (Pingora's `work_stealing: false` model; nginx's and HAProxy's).
//!
//! The threads are the process's, shared by every gateway and sidecar it
//! runs (`weft up` runs many), and started the first time a socket is
//! bound. Their number is `WEFT_WORKERS` if set, else the cores this
//! process may run on (so `taskset -c 0` gives one). The control plane
//! (config streams, certificates, admin) stays on the runtime `main` made.

use std::sync::OnceLock;
use tokio::runtime::Handle;

/// Overrides the number of data-plane threads.
pub const WORKERS_ENV: &str = "WEFT_WORKERS";

static WORKERS: OnceLock<Vec<Handle>> = OnceLock::new();

static DEFAULT_CAP: OnceLock<usize> = OnceLock::new();

/// Caps the default number of data-plane threads at `n`, before the first
/// socket is bound: a per-workload proxy takes two (as Istio's sidecars
/// do), not one per core of a large node. `WEFT_WORKERS` still decides
/// when set.
pub fn cap_default(n: usize) {
    let _ = DEFAULT_CAP.set(n.max(1));
}

/// The data-plane runtimes, started on first use.
pub fn handles() -> &'static [Handle] {
    WORKERS.get_or_init(|| {
        // Pingora's own timer (`pingora_timeout`) starts, on its first
        // timeout, a clock thread that wakes every 10 ms for the life of
        // the process, and keeps each timeout until its deadline even when
        // the request ended long before. Every timeout of a second or more
        // (keep-alive, connect, idle) goes to the runtime's own timer
        // instead: dropped with the request, and an idle proxy sleeps.
        // Only a timeout under a second (a route's per-try timeout) still
        // starts Pingora's clock.
        pingora::prelude::fast_timeout::set_fast_timeout_to_tokio_threshold(Some(
            std::time::Duration::ZERO,
        ));
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let env = std::env::var(WORKERS_ENV).ok();
        (0..count(env.as_deref(), cores, DEFAULT_CAP.get().copied()))
            .map(start)
            .collect()
    })
}

/// How many data-plane threads to run: `WEFT_WORKERS` if it is a sane
/// number, else the cores this process may run on, at most `cap`.
fn count(env: Option<&str>, cores: usize, cap: Option<usize>) -> usize {
    env.and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| (1..=1024).contains(n))
        .unwrap_or_else(|| cap.map_or(cores, |c| cores.min(c)))
}

/// Starts data-plane thread `i` and returns its runtime's handle. The
/// runtime lives as long as the process: it runs until nothing is left,
/// which is never, as it parks on a future that does not end.
fn start(i: usize) -> Handle {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(format!("weft-worker-{i}"))
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a data-plane runtime");
            let _ = tx.send(runtime.handle().clone());
            runtime.block_on(std::future::pending::<()>());
        })
        .expect("a data-plane thread");
    rx.recv().expect("the data-plane runtime's handle")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_count_is_the_setting_else_the_cores_within_the_cap() {
        assert_eq!(count(None, 64, None), 64);
        assert_eq!(count(None, 64, Some(2)), 2);
        assert_eq!(count(None, 1, Some(2)), 1);
        assert_eq!(count(Some("8"), 64, Some(2)), 8);
        assert_eq!(count(Some(" 3 "), 1, None), 3);
        for bad in ["0", "-1", "many", "100000"] {
            assert_eq!(count(Some(bad), 4, Some(2)), 2, "{bad}");
        }
    }

    #[tokio::test]
    async fn tasks_run_on_the_worker_threads() {
        let n = handles().len();
        assert!(n >= 1);
        let mut names = Vec::new();
        for h in handles() {
            let name = h
                .spawn(async { std::thread::current().name().map(str::to_string) })
                .await
                .unwrap();
            names.push(name.unwrap_or_default());
        }
        let want: Vec<String> = (0..n).map(|i| format!("weft-worker-{i}")).collect();
        assert_eq!(names, want);
    }
}
