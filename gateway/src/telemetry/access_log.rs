//! The JSON access log: one line per request on standard output, written by
//! a task of its own so the request path never waits on the terminal. Off
//! unless the snapshot turns it on; lines are dropped, not queued without
//! bound, if the writer falls behind.

use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

const QUEUE: usize = 4096;

pub struct AccessLog {
    tx: mpsc::Sender<String>,
}

impl AccessLog {
    /// Starts the writer; needs a Tokio runtime.
    pub fn start() -> Self {
        let (tx, mut rx) = mpsc::channel::<String>(QUEUE);
        tokio::spawn(async move {
            let mut out = tokio::io::stdout();
            while let Some(mut line) = rx.recv().await {
                line.push('\n');
                if out.write_all(line.as_bytes()).await.is_err() {
                    break;
                }
                let _ = out.flush().await;
            }
        });
        AccessLog { tx }
    }

    pub fn write(&self, line: String) {
        let _ = self.tx.try_send(line);
    }
}
