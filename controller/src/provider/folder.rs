//! The folder provider: every `*.yaml`, `*.yml` and `*.json` file of a folder
//! (not dot-files), read into the store, and a watcher that re-reads the
//! folder whenever something in it changes.

use crate::resources::{documents, parse, Parsed};
use crate::store::{Problem, Source, Store};
use crate::ControllerError;
use notify::{RecursiveMode, Watcher};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;

/// The last good parse of each file, so that a file which stops parsing (a
/// half-saved edit) keeps its objects, as a rejected `kubectl apply` would.
#[derive(Default)]
pub struct FolderState {
    files: BTreeMap<PathBuf, (String, Vec<Parsed>)>,
    reported_unknown: std::collections::BTreeSet<(String, String)>,
}

/// Whether a folder's entry is a manifest file: `*.yaml`, `*.yml`, `*.json`,
/// not a dot-file.
pub fn wanted(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    !name.starts_with('.')
        && path.is_file()
        && matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        )
}

/// Parses one file's text: its documents, or the problems that stop it.
pub fn parse_text(text: &str) -> Result<Vec<Parsed>, Vec<String>> {
    let docs = documents(text).map_err(|e| vec![e])?;
    let mut parsed = Vec::new();
    let mut errors = Vec::new();
    for doc in docs {
        match parse(doc) {
            Ok(p) => parsed.push(p),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(parsed)
    } else {
        Err(errors)
    }
}

/// A file's text, refused when it is over `MAX_FILE_BYTES`.
fn read_bounded(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let max = crate::yaml::MAX_FILE_BYTES;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut text = String::new();
    file.take(max + 1)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    if text.len() as u64 > max {
        return Err(format!(
            "the file is larger than {} MiB; not read",
            max >> 20
        ));
    }
    Ok(text)
}

impl FolderState {
    /// Reads the folder and builds the next store from `previous`.
    pub fn read(&mut self, dir: &Path, previous: &Store) -> Result<Store, ControllerError> {
        let entries = std::fs::read_dir(dir).map_err(|cause| ControllerError::Read {
            path: dir.to_path_buf(),
            cause,
        })?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| wanted(p))
            .collect();
        paths.sort();
        let mut problems = Vec::new();
        let mut next = BTreeMap::new();
        for path in paths {
            let text = match read_bounded(&path) {
                Ok(t) => t,
                Err(message) => {
                    tracing::error!(file = %path.display(), "{message}");
                    problems.push(Problem {
                        file: path.clone(),
                        message,
                    });
                    // Its last good objects stay, as for a file that does
                    // not parse.
                    if let Some(last_good) = self.files.remove(&path) {
                        next.insert(path, last_good);
                    }
                    continue;
                }
            };
            if let Some((old_text, parsed)) = self.files.remove(&path) {
                if old_text == text {
                    next.insert(path, (old_text, parsed));
                    continue;
                }
                self.files.insert(path.clone(), (old_text, parsed));
            }
            match parse_text(&text) {
                Ok(parsed) => {
                    next.insert(path, (text, parsed));
                }
                Err(errors) => {
                    for message in errors {
                        tracing::error!(file = %path.display(), "{message}");
                        problems.push(Problem {
                            file: path.clone(),
                            message,
                        });
                    }
                    if let Some(last_good) = self.files.remove(&path) {
                        tracing::warn!(file = %path.display(), "keeping the objects of its last good version");
                        next.insert(path, last_good);
                    }
                }
            }
        }
        self.files = next;
        let mut docs = Vec::new();
        for (path, (_, parsed)) in &self.files {
            for p in parsed {
                if let Parsed::Unknown { api_version, kind } = p {
                    if self
                        .reported_unknown
                        .insert((api_version.clone(), kind.clone()))
                    {
                        tracing::warn!(file = %path.display(), "ignoring kind {kind} ({api_version}): weft does not read it");
                    }
                    continue;
                }
                docs.push((path.clone(), p.clone()));
            }
        }
        let mut store = Store::build(previous, docs, problems, &Store::now());
        store.sources = self
            .files
            .iter()
            .map(|(path, (text, parsed))| Source {
                file: path.clone(),
                digest: crate::runtime::version_of(text.as_bytes(), &[]),
                documents: parsed.len(),
            })
            .collect();
        Ok(store)
    }
}

/// How long the folder must be quiet before it is read: long enough to
/// coalesce a burst (an editor's temp file, rename and chmod), short enough
/// not to show in how fast an edit goes live.
const QUIET: Duration = Duration::from_millis(5);
/// The longest a steady stream of events can hold a read back.
const MAX_WAIT: Duration = Duration::from_millis(100);

/// Watches `dir` and sends a unit each time it may have changed, coalescing
/// bursts into one.
pub fn watch(
    dir: &Path,
) -> Result<(notify::RecommendedWatcher, mpsc::Receiver<()>), ControllerError> {
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            if !event.kind.is_access() {
                let _ = raw_tx.send(());
            }
        }
    })
    .map_err(|cause| ControllerError::Watch {
        path: dir.to_path_buf(),
        cause,
    })?;
    watcher
        .watch(dir, RecursiveMode::NonRecursive)
        .map_err(|cause| ControllerError::Watch {
            path: dir.to_path_buf(),
            cause,
        })?;
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        while raw_rx.recv().await.is_some() {
            // Let the burst settle.
            let deadline = tokio::time::Instant::now() + MAX_WAIT;
            loop {
                tokio::select! {
                    more = raw_rx.recv() => if more.is_none() { return },
                    _ = tokio::time::sleep(QUIET) => break,
                }
                if tokio::time::Instant::now() >= deadline {
                    break;
                }
            }
            // A full channel already holds a pending reload, which will read
            // the folder as it is by then.
            if let Err(mpsc::error::TrySendError::Closed(())) = tx.try_send(()) {
                break;
            }
        }
    });
    Ok((watcher, rx))
}
