//! One proxy as a process of its own (`weft-sidecar`, `weft sidecar run`,
//! `weft gateway`): the arguments that say where the control plane is and
//! how the proxy proves itself to it, and the sidecar's run until SIGTERM.
//! Its first certificate comes from the CA's signing service with a one-time
//! join token (on Kubernetes, its service-account token); its config comes
//! from the controller over mutual TLS, both servers checked as the control
//! plane under the trust bundle given.

use crate::run;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use weft_ca::workload::GrpcCa;
use weft_ca::SpiffeId;

/// What goes wrong before a proxy process can start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Argument(String),
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Ca(#[from] weft_ca::CaError),
}

/// mimalloc's options for a sidecar: it commits its first arena eagerly,
/// about 8 MiB of RSS an idle per-workload proxy never uses; without it the
/// proxy trades those page faults for memory. The user's own setting wins.
/// mimalloc reads them before `main`, so a process started without them
/// starts itself again with them ([`restart_with_allocator_settings`]).
pub const ALLOCATOR: [(&str, &str); 1] = [("MIMALLOC_ARENA_EAGER_COMMIT", "0")];

/// The allocator settings this process was started without.
pub fn allocator_settings_missing() -> Vec<(&'static str, &'static str)> {
    ALLOCATOR
        .iter()
        .filter(|(name, _)| std::env::var_os(name).is_none())
        .copied()
        .collect()
}

/// Execs `program` with `args`, adding the allocator settings this process
/// was started without. Returns only if the exec failed.
pub fn exec_with_allocator_settings(
    program: PathBuf,
    args: impl IntoIterator<Item = std::ffi::OsString>,
) -> std::io::Error {
    use std::os::unix::process::CommandExt;
    std::process::Command::new(program)
        .args(args)
        .envs(allocator_settings_missing())
        .exec()
}

/// Started without its allocator settings, the process starts itself
/// again with them (`who` names it if that fails). Returns only when
/// nothing is missing or the exec failed.
pub fn restart_with_allocator_settings(who: &str) {
    if allocator_settings_missing().is_empty() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let e = exec_with_allocator_settings(exe, std::env::args_os().skip(1));
    eprintln!("{who}: cannot apply its allocator settings: {e}");
}

/// Where the control plane is, what it must prove, and how a proxy
/// proves itself to it.
#[derive(clap::Args)]
pub struct Control {
    /// The controller's config server, host:port (mutual TLS).
    #[arg(long)]
    pub controller: String,
    /// The CA's signing service, host:port (TLS).
    #[arg(long)]
    pub ca: String,
    /// The roots (PEM) the control plane's certificates chain to.
    #[arg(long, required_unless_present = "trust_bundle_pem")]
    pub trust_bundle: Option<PathBuf>,
    /// The same roots as PEM text (on Kubernetes, in the environment).
    #[arg(
        long,
        env = "WEFT_TRUST_BUNDLE",
        hide_env_values = true,
        conflicts_with = "trust_bundle"
    )]
    pub trust_bundle_pem: Option<String>,
    /// The one-time join token for the first certificate.
    #[arg(
        long,
        env = "WEFT_JOIN_TOKEN",
        hide_env_values = true,
        required_unless_present = "token_file"
    )]
    pub token: Option<String>,
    /// A file holding the token instead: on Kubernetes, the projected
    /// service-account token (audience weft-ca), read when the proxy
    /// starts; later certificates are renewals that prove the current one.
    #[arg(long, conflicts_with = "token")]
    pub token_file: Option<PathBuf>,
    /// Lifetime asked for the proxy's certificates, in seconds.
    #[arg(long, default_value_t = 24 * 3600)]
    pub cert_ttl_seconds: u64,
}

impl Control {
    /// The trust bundle given, as PEM.
    pub fn bundle(&self) -> Result<Vec<String>, Error> {
        let pem = match (&self.trust_bundle_pem, &self.trust_bundle) {
            (Some(pem), _) => pem.clone(),
            (None, Some(path)) => read(path)?,
            (None, None) => {
                return Err(Error::Argument(
                    "give --trust-bundle or WEFT_TRUST_BUNDLE".into(),
                ))
            }
        };
        if !pem.contains("BEGIN CERTIFICATE") {
            return Err(Error::Argument(
                "the trust bundle holds no certificate".into(),
            ));
        }
        Ok(vec![pem])
    }

    /// The token given, or the one in the token file.
    pub fn token(&self) -> Result<String, Error> {
        match (&self.token, &self.token_file) {
            (Some(t), _) => Ok(t.clone()),
            (None, Some(path)) => Ok(read(path)?.trim().to_string()),
            (None, None) => Err(Error::Argument("give --token or --token-file".into())),
        }
    }

    pub fn ttl(&self) -> Duration {
        Duration::from_secs(self.cert_ttl_seconds)
    }
}

fn read(path: &PathBuf) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.clone(),
        source,
    })
}

/// Run one workload's sidecar: its certificate from the CA's signing
/// service, its config from the controller. It sets its allocator for a
/// small footprint (MIMALLOC_ARENA_EAGER_COMMIT=0 unless set).
#[derive(clap::Args)]
pub struct Sidecar {
    #[command(flatten)]
    pub control: Control,
    /// The workload, as namespace/name.
    #[arg(long)]
    pub workload: String,
    /// The workload's SPIFFE ID.
    #[arg(long)]
    pub identity: String,
    /// Where the admin port (`/ready`, `/config_dump`, `/metrics`) listens.
    #[arg(long)]
    pub admin: Option<SocketAddr>,
}

/// The data-plane threads a sidecar process runs by default (Istio's
/// sidecars take two as well); `WEFT_WORKERS` overrides it.
pub const SIDECAR_WORKERS: usize = 2;

/// Runs the sidecar until SIGTERM or Ctrl-C, then stops it. As a process
/// of its own, it takes at most [`SIDECAR_WORKERS`] data-plane threads.
pub async fn sidecar(o: Sidecar) -> Result<(), Error> {
    weft_gateway::listen::workers::cap_default(SIDECAR_WORKERS);
    let (namespace, name) = o.workload.split_once('/').ok_or_else(|| {
        Error::Argument(format!("--workload {:?} is not namespace/name", o.workload))
    })?;
    let bundle = o.control.bundle()?;
    let id = SpiffeId::parse(&o.identity)?;
    let server = SpiffeId::control_plane(&id.trust_domain)?;
    let identity = crate::Identity {
        ca: Arc::new(GrpcCa::new(&o.control.ca, &server, &bundle)?),
        id,
        token: o.control.token()?,
        ttl: o.control.ttl(),
    };
    let running = run::start(run::Options {
        namespace: namespace.to_string(),
        name: name.to_string(),
        identity,
        controller: o.control.controller,
        bundle,
        admin: o.admin,
    });
    stopped().await;
    running.stop().await;
    Ok(())
}

/// How every weft process logs: to stderr, `RUST_LOG` or `info` (the
/// engine's own lines from `warn`), in colour only for a person at a
/// terminal, never into files or pipes.
pub fn init_logs() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,pingora_core=warn,pingora_proxy=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Until SIGTERM or Ctrl-C.
pub async fn stopped() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM can be handled");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
