//! The benchmark harness, run for a second so it cannot rot: one round of
//! the gateway scenarios (plain and TLS, weft against a direct connection;
//! and with a JWT check) writes its JSON and its tables. It asserts that
//! the harness works, never how fast.

mod support;
use support::WEFT;

#[test]
fn the_harness_runs_one_short_round() {
    let tools = ["python3", "wrk", "nginx", "taskset", "h2load", "openssl"];
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| {
            !std::process::Command::new("sh")
                .args(["-c", &format!("command -v {t}")])
                .status()
                .is_ok_and(|s| s.success())
        })
        .collect();
    if !missing.is_empty() {
        support::cannot_run(&format!("the bench smoke run needs {}", missing.join(", ")));
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let bench = format!("{}/../bench/bench.py", env!("CARGO_MANIFEST_DIR"));
    let run = std::process::Command::new("python3")
        .arg(bench)
        .args([
            "--smoke",
            "--no-latency",
            "--peers",
            "weft",
            "--weft",
            WEFT,
            "--out",
        ])
        .arg(out.path())
        .args([
            "gateway-h1",
            "gateway-tls",
            "gateway-jwt",
            "gateway-authz",
            "sidecar-routes",
        ])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let results: Vec<_> = std::fs::read_dir(out.path().join("results"))
        .unwrap()
        .collect();
    assert_eq!(results.len(), 1);
    let path = results[0].as_ref().unwrap().path();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let peers = &json["scenarios"]["gateway-h1"]["peers"];
    for peer in ["direct", "weft"] {
        assert!(
            peers[peer]["max_rps"]["median"].as_f64().unwrap() > 0.0,
            "{json:#}"
        );
    }
    let tls = &json["scenarios"]["gateway-tls"]["peers"];
    for peer in ["direct", "weft"] {
        for figure in ["h1_rps", "h2_rps", "handshakes"] {
            assert!(
                tls[peer][figure]["median"].as_f64().unwrap() > 0.0,
                "{figure}: {json:#}"
            );
        }
    }
    let jwt = &json["scenarios"]["gateway-jwt"]["hosts"];
    for host in ["plain", "rs256", "es256"] {
        assert!(
            jwt[host]["max_rps"]["median"].as_f64().unwrap() > 0.0,
            "{host}: {json:#}"
        );
    }
    let authz = &json["scenarios"]["gateway-authz"]["gateways"];
    for gateway in ["none", "rules"] {
        assert!(
            authz[gateway]["max_rps"]["median"].as_f64().unwrap() > 0.0,
            "{gateway}: {json:#}"
        );
    }
    // A sidecar's config holds what its workload calls, not the mesh's
    // other routes.
    let meshes = &json["scenarios"]["sidecar-routes"]["meshes"];
    let dump = |m: &str| meshes[m]["config_dump_bytes"].as_f64().unwrap();
    assert!(dump("plain") > 0.0, "{json:#}");
    assert!(dump("many") < dump("plain") * 1.1, "{json:#}");
    let md = std::fs::read_to_string(out.path().join("RESULTS.md")).unwrap();
    assert!(md.contains("| weft |"), "{md}");
}
