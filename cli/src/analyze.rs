//! `weft analyze DIR` (offline translation) and `weft status` (a running
//! controller's statuses), both printed as YAML.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use weft_controller::provider::folder::{parse_text, wanted};
use weft_controller::resources::{documents, parse, Parsed};
use weft_controller::status::{self, TransitionClock};
use weft_controller::store::{Problem, Store};
use weft_controller::translate::{translate, Options};

/// The files `path` stands for: itself, a folder's manifests (as `weft up`
/// reads them), or with `kustomize` a folder's `kustomization.yaml`
/// resources, followed into folders that have their own.
fn files(path: &Path, kustomize: bool, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    if !path.is_dir() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let kustomization = path.join("kustomization.yaml");
    if kustomize && kustomization.is_file() {
        let text = std::fs::read_to_string(&kustomization)?;
        let doc: serde_yaml::Value = serde_yaml::from_str(&text)?;
        for r in doc["resources"].as_sequence().into_iter().flatten() {
            let r = r.as_str().ok_or_else(|| {
                anyhow::anyhow!("{}: a resource is not a path", kustomization.display())
            })?;
            files(&path.join(r), kustomize, out)?;
        }
        return Ok(());
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(path)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| wanted(p))
        .collect();
    found.sort();
    out.extend(found);
    Ok(())
}

/// Translates the manifests of `paths` as a cluster (or `weft up`) would,
/// prints every status and what the cluster would run, and fails if
/// anything is not accepted.
pub fn run(paths: &[PathBuf], kustomize: bool) -> anyhow::Result<()> {
    let mut all = Vec::new();
    for p in paths {
        files(p, kustomize, &mut all).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
    }
    let (mut parsed, mut raw, mut problems) = (Vec::new(), Vec::new(), Vec::new());
    for file in &all {
        let text = std::fs::read_to_string(file)
            .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        match parse_text(&text) {
            Ok(docs) => parsed.extend(docs.into_iter().map(|d| (file.clone(), d))),
            Err(errors) => problems.extend(errors.into_iter().map(|message| {
                tracing::error!(file = %file.display(), "{message}");
                Problem {
                    file: file.clone(),
                    message,
                }
            })),
        }
        raw.extend(documents(&text).unwrap_or_default());
    }
    // Global rate limits are judged as where a Redis is given (the chart's
    // rateLimit.redis, or weft up with redis-server installed).
    let opts = Options {
        rate_limit_store: Some("redis://redis:6379".into()),
        ..Options::default()
    };
    // The pods the manifests would make, as Workloads, as on a cluster.
    let first = Store::build(&Store::default(), parsed.clone(), vec![], &Store::now());
    let pods =
        weft_controller::preview::pods(&raw, |ns| first.namespace_labels(ns), &opts.trust_domain);
    for pod in &pods {
        if let Some(w) = &pod.workload {
            match parse(w.clone()) {
                Ok(p @ Parsed::Object { .. }) => parsed.push((PathBuf::from(&pod.from), p)),
                Ok(_) => {}
                Err(message) => problems.push(Problem {
                    file: PathBuf::from(&pod.from),
                    message,
                }),
            }
        }
    }
    let store = Store::build(&Store::default(), parsed, problems, &Store::now());
    let t = translate(&store, &opts, &BTreeMap::new());
    let items = status::items(
        &store,
        &t.statuses,
        &mut TransitionClock::default(),
        &status::now(),
    );
    let infra = weft_controller::provision::Infra {
        image: "weft".into(),
        controller: String::new(),
        ca: String::new(),
        trust_domain: opts.trust_domain.clone(),
        roots: String::new(),
    };
    let gateways: Vec<serde_json::Value> = weft_controller::provision::desired(&store, &infra)
        .iter()
        .map(|(key, objects)| {
            let made: Vec<String> = objects
                .iter()
                .flatten()
                .map(|o| {
                    let kind = o["kind"].as_str().unwrap_or("");
                    let name = o["metadata"]["name"].as_str().unwrap_or("");
                    match o["spec"]["type"].as_str() {
                        Some(t) if kind == "Service" => format!("{kind} {name} ({t})"),
                        _ => format!("{kind} {name}"),
                    }
                })
                .collect();
            serde_json::json!({"gateway": format!("{}/{}", key.namespace, key.name), "provisioned": made})
        })
        .collect();
    let report: Vec<&serde_json::Value> = pods.iter().map(|p| &p.report).collect();
    print!(
        "{}",
        serde_yaml::to_string(&serde_json::json!({
            "items": items,
            "problems": store.problems,
            "onKubernetes": {"pods": report, "gateways": gateways},
        }))?
    );
    let mut failures = Vec::new();
    for p in &store.problems {
        failures.push(format!("{}: {}", p.file.display(), p.message));
    }
    for (key, status) in &t.statuses {
        let mut bad = Vec::new();
        not_accepted(status, &mut bad);
        for b in bad {
            failures.push(format!("{key}: {b}"));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        for f in &failures {
            eprintln!("not accepted: {f}");
        }
        anyhow::bail!("{} problem(s)", failures.len())
    }
}

/// Collects every `Accepted` condition whose status is not True.
fn not_accepted(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            if m.get("type").and_then(|t| t.as_str()) == Some("Accepted")
                && m.get("status").and_then(|s| s.as_str()) != Some("True")
            {
                let reason = m.get("reason").and_then(|r| r.as_str()).unwrap_or("");
                let message = m.get("message").and_then(|r| r.as_str()).unwrap_or("");
                out.push(format!("{reason}: {message}"));
            }
            m.values().for_each(|c| not_accepted(c, out));
        }
        serde_json::Value::Array(a) => a.iter().for_each(|c| not_accepted(c, out)),
        _ => {}
    }
}

pub async fn status(admin: SocketAddr) -> anyhow::Result<()> {
    let mut stream = tokio::net::TcpStream::connect(admin)
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the controller at {admin}: {e}"))?;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let req = format!("GET /status HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    let value: serde_json::Value = serde_json::from_str(body)?;
    print!("{}", serde_yaml::to_string(&value)?);
    Ok(())
}
