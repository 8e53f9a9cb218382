//! `weft up --sidecar-processes`: a meshed workload's sidecar as a
//! `weft sidecar run` child process, started again (with a new one-time join
//! token) when it dies, stopped with SIGTERM when its workload goes, and
//! ended by the kernel if `weft up` dies first.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use weft_ca::{JoinTokens, SpiffeId};
use weft_controller::resources::ObjKey;

/// Time a sidecar process gets to stop after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(3);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// What a sidecar process is started with.
pub struct Spec {
    pub workload: ObjKey,
    pub id: SpiffeId,
    pub controller: String,
    pub ca: String,
    pub bundle_file: std::path::PathBuf,
    pub ttl: Duration,
    pub admin: Option<SocketAddr>,
}

/// A supervised sidecar process.
pub struct SidecarProcess {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl SidecarProcess {
    /// Starts the process and keeps it running, each start with a new
    /// token from `tokens`.
    pub fn start(spec: Spec, tokens: Arc<JoinTokens>) -> SidecarProcess {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(supervise(spec, tokens, stopped));
        SidecarProcess { stop, task }
    }

    /// Stops the process: SIGTERM, then SIGKILL after a grace period.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

fn command(spec: &Spec, token: String) -> std::io::Result<Command> {
    // The sidecar alone where it is installed, else `weft sidecar run`.
    let mut cmd = match crate::sidecar_binary() {
        Some(sidecar) => Command::new(sidecar),
        None => {
            let mut cmd = Command::new(std::env::current_exe()?);
            cmd.args(["sidecar", "run"]);
            cmd
        }
    };
    cmd.args(["--controller", &spec.controller])
        .args(["--ca", &spec.ca])
        .arg("--trust-bundle")
        .arg(&spec.bundle_file)
        .arg("--workload")
        .arg(format!(
            "{}/{}",
            spec.workload.namespace, spec.workload.name
        ))
        .arg("--identity")
        .arg(spec.id.to_string())
        .arg("--cert-ttl-seconds")
        .arg(spec.ttl.as_secs().to_string())
        .env("WEFT_JOIN_TOKEN", token)
        .stdin(std::process::Stdio::null())
        // Stopped by this process, in order, not by a terminal's Ctrl-C.
        .process_group(0)
        .kill_on_drop(true);
    if let Some(admin) = spec.admin {
        cmd.arg("--admin").arg(admin.to_string());
    }
    // The sidecar's allocator settings, given here so that it need not
    // start itself again to apply them (`weft_sidecar::process::ALLOCATOR`).
    cmd.envs(weft_sidecar::process::allocator_settings_missing());
    crate::workloads::end_with_this_process(&mut cmd);
    Ok(cmd)
}

async fn supervise(spec: Spec, tokens: Arc<JoinTokens>, mut stopped: watch::Receiver<bool>) {
    let key = &spec.workload;
    let mut backoff = Duration::from_millis(200);
    loop {
        let started = Instant::now();
        let spawned = command(&spec, tokens.issue(spec.id.clone())).and_then(|mut c| c.spawn());
        match spawned {
            Ok(child) => {
                tracing::info!(workload = %key, pid = child.id(), "sidecar process started");
                if let Some(child) = wait_or_stop(child, &mut stopped).await {
                    tracing::warn!(workload = %key, "sidecar process exited ({child}); restarting");
                } else {
                    return;
                }
            }
            Err(e) => tracing::error!(workload = %key, "cannot start the sidecar process: {e}"),
        }
        if started.elapsed() > MAX_BACKOFF {
            backoff = Duration::from_millis(200);
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => backoff = (backoff * 2).min(MAX_BACKOFF),
            _ = stopped.changed() => return,
        }
    }
}

/// Waits for `child` to exit (its status), or stops it when asked (`None`).
async fn wait_or_stop(mut child: Child, stopped: &mut watch::Receiver<bool>) -> Option<String> {
    tokio::select! {
        status = child.wait() => Some(match status {
            Ok(s) => s.to_string(),
            Err(e) => e.to_string(),
        }),
        _ = stopped.changed() => {
            if let Some(pid) = child.id() {
                // SAFETY: kill(2) with a pid we own and a valid signal.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
            }
            if tokio::time::timeout(STOP_GRACE, child.wait()).await.is_err() {
                let _ = child.kill().await;
            }
            None
        }
    }
}
