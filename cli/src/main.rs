//! `weft`: the one binary users run. Each subcommand wires crates together;
//! the logic lives in the crates.

mod analyze;
mod conformance;
mod controller;
mod echo;
mod egress;
mod fetch;
mod grpc_echo;
mod jwt;
mod link;
mod mesh;
mod peering;
mod proxies;
mod redis;
mod sidecar_process;
mod up;
mod workloads;

use clap::{Parser, Subcommand};

/// mimalloc: the request path allocates small, short-lived buffers, which
/// glibc's malloc served at about a tenth of the gateway's CPU (perf).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "weft", version, about = "A gateway-centred service mesh")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a whole mesh from a folder of manifests: controller, gateways, workloads.
    Up {
        dir: PathBuf,
        /// The controller's admin endpoint (`/status`).
        #[arg(long, default_value = "127.0.0.1:15000")]
        admin: SocketAddr,
        /// Where Gateways without spec.addresses listen.
        #[arg(long, default_value = "127.0.0.1")]
        default_address: IpAddr,
        /// Where the CA keeps its root and intermediate keys.
        #[arg(long, env = "WEFT_STATE", default_value_os_t = default_state())]
        state: PathBuf,
        /// Lifetime of workload certificates, in seconds (rotated at half).
        #[arg(long, default_value_t = 24 * 3600)]
        cert_ttl_seconds: u64,
        /// Run each sidecar as its own `weft sidecar run` process instead
        /// of in this one.
        #[arg(long)]
        sidecar_processes: bool,
        /// The SPIFFE trust domain of every identity.
        #[arg(long, default_value = "cluster.local")]
        trust_domain: String,
        /// The DNS suffix of Service names (`<svc>.<ns>.svc.<domain>`).
        #[arg(long, default_value = "cluster.local")]
        cluster_domain: String,
        /// The Redis global rate limits count in (`redis://host:port`);
        /// without it, weft up runs its own when redis-server is installed.
        #[arg(long)]
        redis: Option<String>,
        #[command(flatten)]
        cluster_set: peering::ClusterSetArgs,
        #[command(flatten)]
        egress: egress::EgressArgs,
    },
    /// Run the control plane on Kubernetes: watch the API server, publish
    /// config, write statuses while leading.
    Controller(Box<controller::Args>),
    /// Run one gateway that takes its config from a controller: its
    /// certificate from the CA's signing service (the first with a one-time
    /// join token), its config over mutual TLS.
    Gateway {
        #[command(flatten)]
        control: proxies::Control,
        /// The Gateway to serve, as namespace/name.
        #[arg(long)]
        gateway: String,
        /// The SPIFFE trust domain.
        #[arg(long, default_value = "cluster.local")]
        trust_domain: String,
        #[arg(long, default_value = "127.0.0.1:15001")]
        admin: SocketAddr,
        /// The DNS server (`ip:port`) external hosts are resolved with;
        /// the system's resolver configuration without it.
        #[arg(long)]
        dns: Option<SocketAddr>,
    },
    /// Sidecar tools.
    Sidecar {
        #[command(subcommand)]
        command: SidecarCommand,
    },
    /// A small HTTP echo server for demos and tests.
    Echo {
        #[arg(long, env = "ECHO_LISTEN", default_value = "127.0.0.1:3000")]
        listen: SocketAddr,
        /// A URL to call for every request (through HTTP_PROXY when set).
        #[arg(long = "call")]
        calls: Vec<String>,
        /// The status of every answer (a failing backend, for tests and demos).
        #[arg(long, default_value_t = 200)]
        status: u16,
    },
    /// A small JWT issuer for demos and tests (keys, JWKS, tokens).
    Jwt {
        #[command(subcommand)]
        command: JwtCommand,
    },
    /// Print the CustomResourceDefinitions of weft's policy kinds (YAML).
    Crds,
    /// Print the ClusterLink another cluster applies to link to this one.
    Link(link::LinkArgs),
    /// Make a cluster set's CA: one root, and each cluster's intermediate
    /// as `<out>/<cluster>/cacerts.yaml` (the Secret weft-system/cacerts).
    Cacerts {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = "cluster.local")]
        trust_domain: String,
        #[arg(required = true)]
        clusters: Vec<String>,
    },
    /// Translate manifests offline and print every status, and what a
    /// cluster would run (pods with sidecars, provisioned gateways); fails
    /// if any resource is not accepted. Each path is a file or a folder.
    Analyze {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Read a folder's kustomization.yaml resources (as kubectl -k).
        #[arg(short = 'k', long)]
        kustomize: bool,
    },
    /// Print the Gateway API features weft implements, as a conformance
    /// report (the upstream ConformanceReport's shape; no test results).
    ConformanceReport,
    /// Print the statuses of a running controller as YAML.
    Status {
        #[arg(long, default_value = "127.0.0.1:15000")]
        admin: SocketAddr,
    },
}

#[derive(Subcommand)]
enum SidecarCommand {
    /// Run one workload's sidecar: its certificate from the CA's signing
    /// service, its config from the controller. It sets its allocator for
    /// a small footprint (MIMALLOC_ARENA_EAGER_COMMIT=0 unless set), and
    /// hands over to `weft-sidecar` when that is installed beside `weft`.
    Run(weft_sidecar::process::Sidecar),
    /// Print (or apply, in this network namespace) the iptables rules that
    /// send a workload's traffic through its sidecar without HTTP_PROXY.
    Iptables {
        /// The sidecar's outbound listener.
        #[arg(long, default_value = "127.0.0.1:15001")]
        outbound: SocketAddr,
        /// An application port and the inbound listener that takes its
        /// connections, as PORT=ADDRESS:PORT; repeatable.
        #[arg(long = "inbound", value_parser = parse_inbound)]
        inbound: Vec<(u16, SocketAddr)>,
        /// The user the proxy runs as; its own connections pass untouched.
        #[arg(long, default_value_t = 1337)]
        proxy_uid: u32,
        /// Run the rules with `iptables` instead of printing them.
        #[arg(long)]
        apply: bool,
    },
}

#[derive(clap::Args)]
struct KeyArgs {
    /// The private key (PKCS#8 PEM); else the PEM in WEFT_JWT_KEY.
    #[arg(long)]
    key: Option<PathBuf>,
    /// RS256, PS256, ES256, ES384, EdDSA, ...
    #[arg(long, default_value = "ES256")]
    alg: String,
    /// The key's id (`kid`).
    #[arg(long, default_value = "weft-demo")]
    kid: String,
}

impl KeyArgs {
    fn signer(&self) -> anyhow::Result<jwt::Signer> {
        let pem = match &self.key {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
            None => std::env::var("WEFT_JWT_KEY")
                .map_err(|_| anyhow::anyhow!("give --key or WEFT_JWT_KEY"))?,
        };
        jwt::Signer::from_pem(&pem, jwt::algorithm(&self.alg)?, &self.kid)
    }
}

#[derive(Subcommand)]
enum JwtCommand {
    /// Print a new private key (PKCS#8 PEM).
    Keygen {
        #[arg(long, default_value = "ES256")]
        alg: String,
    },
    /// Print the JWKS of a key's public half.
    Jwks {
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Print a signed token.
    Token {
        #[command(flatten)]
        key: KeyArgs,
        #[arg(long)]
        iss: Option<String>,
        #[arg(long)]
        sub: Option<String>,
        #[arg(long)]
        aud: Option<String>,
        /// More claims, name=value (a JSON value, else a string); repeatable.
        #[arg(long = "claim")]
        claims: Vec<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
        /// Print this many tokens, one per line, each with its own `jti`.
        #[arg(long, default_value_t = 1)]
        count: usize,
    },
    /// Serve GET /jwks.json, and GET /token?sub=..&name=value.. (demo only:
    /// anyone who reaches it gets tokens).
    Serve {
        #[command(flatten)]
        key: KeyArgs,
        #[arg(long, default_value = "127.0.0.1:9800")]
        listen: SocketAddr,
        #[arg(long, default_value = "https://issuer.weft.dev")]
        iss: String,
    },
}

fn parse_inbound(s: &str) -> Result<(u16, SocketAddr), String> {
    let (port, listener) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not PORT=ADDRESS:PORT"))?;
    let port = port.parse().map_err(|e| format!("port {port:?}: {e}"))?;
    let listener = listener
        .parse()
        .map_err(|e| format!("listener {listener:?}: {e}"))?;
    Ok((port, listener))
}

/// `$XDG_STATE_HOME/weft`, else `~/.local/state/weft`, else a temp folder.
fn default_state() -> PathBuf {
    if let Some(s) = std::env::var_os("XDG_STATE_HOME") {
        return PathBuf::from(s).join("weft");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".local/state/weft"),
        None => std::env::temp_dir().join("weft-state"),
    }
}

/// The sidecar alone (`src/bin/weft-sidecar.rs`), when it is installed
/// beside this binary: a per-workload process that maps a fraction of
/// `weft`'s code.
pub(crate) fn sidecar_binary() -> Option<PathBuf> {
    let beside = std::env::current_exe().ok()?.with_file_name("weft-sidecar");
    beside.is_file().then_some(beside)
}

/// `weft sidecar run` hands over to `weft-sidecar` when it is installed
/// beside `weft`; otherwise, as mimalloc reads its options from the
/// environment once, before `main`, a `weft sidecar run` started without
/// them (by hand, by Kubernetes) starts itself again with them set, so the
/// binary applies its own settings wherever it runs. Returns only when
/// there is nothing to do or the exec failed.
fn sidecar_exec() {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() != Some("sidecar".as_ref())
        || args.next().as_deref() != Some("run".as_ref())
    {
        return;
    }
    match sidecar_binary() {
        Some(sidecar) => {
            let e = weft_sidecar::process::exec_with_allocator_settings(sidecar, args);
            eprintln!("weft sidecar: cannot start weft-sidecar: {e}");
        }
        None => weft_sidecar::process::restart_with_allocator_settings("weft sidecar"),
    }
}

fn main() -> anyhow::Result<()> {
    sidecar_exec();
    weft_sidecar::process::init_logs();
    let cli = Cli::parse();
    // One TLS provider for every client and server of the process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Up {
                dir,
                admin,
                default_address,
                state,
                cert_ttl_seconds,
                sidecar_processes,
                trust_domain,
                cluster_domain,
                redis,
                cluster_set,
                egress,
            } => {
                egress::use_dns(egress.dns);
                up::run(up::UpOptions {
                    redis,
                    cluster_set,
                    outbound_policy: egress.outbound_traffic_policy,
                    dir,
                    admin,
                    default_address,
                    state_dir: state,
                    cert_ttl: std::time::Duration::from_secs(cert_ttl_seconds),
                    sidecar_processes,
                    trust_domain,
                    cluster_domain,
                })
                .await
            }
            Command::Gateway {
                control,
                gateway,
                trust_domain,
                admin,
                dns,
            } => {
                egress::use_dns(dns);
                proxies::gateway(proxies::GatewayOptions {
                    control,
                    gateway,
                    trust_domain,
                    admin,
                })
                .await
            }
            Command::Echo {
                listen,
                calls,
                status,
            } => echo::run(listen, calls, status).await,
            Command::Sidecar {
                command: SidecarCommand::Run(sidecar),
            } => Ok(weft_sidecar::process::sidecar(sidecar).await?),
            Command::Sidecar {
                command:
                    SidecarCommand::Iptables {
                        outbound,
                        inbound,
                        proxy_uid,
                        apply,
                    },
            } => {
                let capture = weft_sidecar::capture::Capture {
                    outbound,
                    inbound,
                    proxy_uid,
                };
                if apply {
                    apply_iptables(&capture)
                } else {
                    print!("{}", weft_sidecar::capture::script(&capture));
                    Ok(())
                }
            }
            Command::Jwt { command } => run_jwt(command).await,
            Command::Controller(args) => controller::run(*args).await,
            Command::Crds => {
                print!("{}", weft_controller::crds::yaml());
                print!("---\n{}", weft_controller::crds::experimental_yaml());
                Ok(())
            }
            Command::Link(args) => {
                print!("{}", link::manifest(&args)?);
                Ok(())
            }
            Command::Cacerts {
                out,
                trust_domain,
                clusters,
            } => link::cacerts(&out, &trust_domain, &clusters),
            Command::Analyze { paths, kustomize } => analyze::run(&paths, kustomize),
            Command::Status { admin } => analyze::status(admin).await,
            Command::ConformanceReport => {
                print!("{}", conformance::render()?);
                Ok(())
            }
        }
    })
}

async fn run_jwt(command: JwtCommand) -> anyhow::Result<()> {
    match command {
        JwtCommand::Keygen { alg } => print!("{}", jwt::keygen(jwt::algorithm(&alg)?)?),
        JwtCommand::Jwks { key } => println!("{}", key.signer()?.jwks()),
        JwtCommand::Token {
            key,
            iss,
            sub,
            aud,
            claims,
            ttl,
            count,
        } => {
            let mut c = jwt::claims(&claims)?;
            for (name, v) in [("iss", iss), ("sub", sub), ("aud", aud)] {
                if let Some(v) = v {
                    c.insert(name.into(), serde_json::Value::String(v));
                }
            }
            let signer = key.signer()?;
            if count == 1 {
                println!("{}", signer.token(c, ttl)?);
            } else {
                for i in 0..count {
                    c.insert("jti".into(), serde_json::Value::String(format!("t{i}")));
                    println!("{}", signer.token(c.clone(), ttl)?);
                }
            }
        }
        JwtCommand::Serve { key, listen, iss } => {
            jwt::serve(listen, key.signer()?, iss, up::stopped()).await?
        }
    }
    Ok(())
}

/// Runs each capture rule with `iptables`; stops at the first that fails.
fn apply_iptables(capture: &weft_sidecar::capture::Capture) -> anyhow::Result<()> {
    for rule in weft_sidecar::capture::rules(capture) {
        let status = std::process::Command::new("iptables")
            .args(&rule)
            .status()
            .map_err(|e| anyhow::anyhow!("cannot run iptables: {e}"))?;
        if !status.success() {
            anyhow::bail!("iptables {} failed: {status}", rule.join(" "));
        }
    }
    Ok(())
}
