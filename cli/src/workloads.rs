//! Runs the `Workload`s of a folder as local processes: started with their
//! env (plus `POD_NAME`, `NAMESPACE`), restarted with backoff when they die,
//! restarted when their spec changes, stopped (SIGTERM, then SIGKILL) when
//! removed or on exit.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::Command;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use weft_controller::resources::ObjKey;
use weft_controller::workload::Workload;

const STOP_GRACE: Duration = Duration::from_secs(3);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

struct Running {
    spec: String,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

#[derive(Default)]
pub struct Supervisor {
    running: BTreeMap<ObjKey, Running>,
}

impl Supervisor {
    /// Starts, restarts and stops processes to match `wanted`.
    pub async fn reconcile(&mut self, wanted: &BTreeMap<ObjKey, Workload>) {
        let mut stopping = Vec::new();
        let keys: Vec<ObjKey> = self.running.keys().cloned().collect();
        for key in keys {
            let spec = wanted.get(&key).map(spec_of);
            if spec.as_ref() != self.running.get(&key).map(|r| &r.spec) {
                if let Some(r) = self.running.remove(&key) {
                    let _ = r.stop.send(true);
                    stopping.push(r.task);
                }
            }
        }
        for task in stopping {
            let _ = task.await;
        }
        for (key, w) in wanted {
            if !self.running.contains_key(key) {
                self.running.insert(key.clone(), start(key, w));
            }
        }
    }

    pub async fn stop_all(&mut self) {
        self.reconcile(&BTreeMap::new()).await;
    }
}

fn spec_of(w: &Workload) -> String {
    serde_json::to_string(&w.spec).unwrap_or_default()
}

fn start(key: &ObjKey, w: &Workload) -> Running {
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(supervise(key.clone(), w.clone(), stopped));
    Running {
        spec: spec_of(w),
        stop,
        task,
    }
}

fn command(key: &ObjKey, w: &Workload) -> Option<Command> {
    let (program, args) = w.spec.command.split_first()?;
    // `weft` means this very binary, so examples work without it on PATH.
    let program = match program.as_str() {
        "weft" => std::env::current_exe().ok()?.into_os_string(),
        p => p.into(),
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env("POD_NAME", &key.name)
        .env("NAMESPACE", &key.namespace)
        .env(
            "SERVICE_ACCOUNT",
            w.spec.service_account_name.as_deref().unwrap_or("default"),
        )
        .stdin(Stdio::null())
        // Its own process group: a Ctrl-C in the terminal reaches weft,
        // which then stops workloads in order.
        .process_group(0)
        .kill_on_drop(true);
    for e in &w.spec.env {
        cmd.env(&e.name, &e.value);
    }
    // The workload ends if weft up dies without stopping it (killed,
    // say), as its sidecar does.
    end_with_this_process(&mut cmd);
    Some(cmd)
}

/// Asks the kernel to send the child SIGTERM when this process dies
/// without stopping it, so nothing `weft up` started outlives it.
pub(crate) fn end_with_this_process(cmd: &mut Command) {
    // SAFETY: prctl(2) only, between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
}

async fn supervise(key: ObjKey, w: Workload, mut stop: watch::Receiver<bool>) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let Some(mut cmd) = command(&key, &w) else {
            tracing::error!(workload = %key, "spec.command is empty");
            return;
        };
        let started = Instant::now();
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(workload = %key, "cannot start {:?}: {e}", w.spec.command);
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => { backoff = (backoff * 2).min(MAX_BACKOFF); continue }
                    _ = stop.changed() => return,
                }
            }
        };
        tokio::select! {
            status = child.wait() => {
                tracing::warn!(workload = %key, "exited ({status:?}); restarting");
                if started.elapsed() > MAX_BACKOFF {
                    backoff = Duration::from_millis(200);
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => backoff = (backoff * 2).min(MAX_BACKOFF),
                    _ = stop.changed() => return,
                }
            }
            _ = stop.changed() => {
                if let Some(id) = child.id() {
                    // SAFETY: kill(2) with a pid we own and a valid signal.
                    unsafe { libc::kill(id as libc::pid_t, libc::SIGTERM) };
                }
                if tokio::time::timeout(STOP_GRACE, child.wait()).await.is_err() {
                    let _ = child.kill().await;
                }
                let _ = child.wait().await;
                return;
            }
        }
    }
}
