//! `weft-sidecar`: one workload's sidecar as a binary of its own, with the
//! same arguments as `weft sidecar run` (which hands over to it when it is
//! installed beside `weft`). It links only the proxy, the CA client and the
//! config client, none of the controller, the Kubernetes client or the CA
//! itself, so that a process per workload maps and touches a fraction of
//! `weft`'s code (`bench/RESULTS.md`, the sidecar's RSS).

use clap::Parser;
use std::process::ExitCode;
use weft_sidecar::process;

/// As in `weft`: the request path allocates small, short-lived buffers.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "weft-sidecar", version, about = "One workload's weft sidecar")]
struct Args {
    #[command(flatten)]
    sidecar: process::Sidecar,
}

fn main() -> ExitCode {
    // mimalloc reads its options before `main`.
    process::restart_with_allocator_settings("weft-sidecar");
    process::init_logs();
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    // The control plane (config stream, certificate renewals, admin port)
    // on this thread; the data plane has its own threads
    // (`weft_gateway::listen::workers`).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("weft-sidecar: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(process::sidecar(args.sidecar)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weft-sidecar: {e}");
            ExitCode::FAILURE
        }
    }
}
