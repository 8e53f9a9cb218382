//! `weft analyze DIR` (offline translation) and `weft status` (a running
//! controller's statuses), both printed as YAML.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use weft_controller::provider::folder::FolderState;
use weft_controller::status::{self, TransitionClock};
use weft_controller::store::Store;
use weft_controller::translate::{translate, Options};

pub fn run(dir: &Path) -> anyhow::Result<()> {
    let store = FolderState::default().read(dir, &Store::default())?;
    let t = translate(&store, &Options::default(), &BTreeMap::new());
    let items = status::items(
        &store,
        &t.statuses,
        &mut TransitionClock::default(),
        &status::now(),
    );
    print!(
        "{}",
        serde_yaml::to_string(&serde_json::json!({"items": items, "problems": store.problems}))?
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
