//! A sidecar with all it serves by: its certificate from the CA's signing
//! service, its config stream from the controller, and its admin port.
//! This is what `weft sidecar run` is, and what `weft up` runs for each
//! meshed workload, in its own process or as that command.

use crate::{Identity, Sidecar};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// How often an admin address that could not be bound is tried again.
const REBIND_EVERY: Duration = Duration::from_secs(1);

pub struct Options {
    /// The workload's namespace and name: the node its config stream asks
    /// for, and the workload its metrics name.
    pub namespace: String,
    pub name: String,
    pub identity: Identity,
    /// The controller's config server, `host:port` (mutual TLS).
    pub controller: String,
    /// The roots the control plane's certificates chain to.
    pub bundle: Vec<String>,
    /// Where the admin port listens, if anywhere.
    pub admin: Option<SocketAddr>,
}

/// A started sidecar and the tasks that feed it.
pub struct Running {
    pub sidecar: Arc<Sidecar>,
    tasks: Vec<JoinHandle<()>>,
}

/// Starts the sidecar; it serves once its first certificate and config are in.
pub fn start(options: Options) -> Running {
    let Options {
        namespace,
        name,
        identity,
        controller,
        bundle,
        admin,
    } = options;
    let server = weft_ca::SpiffeId::control_plane(&identity.id.trust_domain);
    let sidecar = Sidecar::start(&name, identity);
    let node = weft_api::wire::sidecar_node(&namespace, &name);
    let mut tasks = Vec::new();
    match server {
        Ok(server) => {
            let dial = weft_gateway::control::client::Dial {
                addr: controller,
                server,
                bundle,
                svids: sidecar.svids(),
            };
            tasks.push(tokio::spawn(weft_gateway::control::client::run(
                sidecar.clone(),
                dial,
                node,
            )));
        }
        Err(e) => tracing::error!("no config stream: {e}"),
    }
    if let Some(addr) = admin {
        tasks.push(tokio::spawn(serve_admin(sidecar.clone(), addr, name)));
    }
    Running { sidecar, tasks }
}

impl Running {
    /// Stops the config stream and the admin port, then the sidecar.
    pub async fn stop(self) {
        for t in &self.tasks {
            t.abort();
        }
        self.sidecar.stop().await;
    }
}

/// Serves the admin port, tried until it binds: the address may still be
/// held by a process on its way out.
async fn serve_admin(sidecar: Arc<Sidecar>, addr: SocketAddr, workload: String) {
    let mut logged = false;
    loop {
        match crate::admin::serve(sidecar.clone(), addr).await {
            Ok((_, task)) => {
                // Aborting this task stops the server too.
                let mut task = AbortOnDrop(task);
                let _ = (&mut task.0).await;
                return;
            }
            Err(e) if !logged => {
                tracing::warn!(workload, "sidecar admin on {addr}: {e}; retrying");
                logged = true;
            }
            Err(_) => {}
        }
        tokio::time::sleep(REBIND_EVERY).await;
    }
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
