//! `timeouts.request` as a deadline for the whole exchange, not a timeout
//! per read: a backend that trickles its answer a byte at a time is cut
//! when the deadline passes.
//!
//! Pingora times each read on its own, so a watchdog does the cutting: at
//! the deadline, if the answer has not ended, it shuts down the socket of
//! the HTTP/1 connection the request is on, and the read under way fails
//! (the proxy then answers 504 if nothing was sent yet). A body still
//! coming after the deadline is refused in the body filter too, which
//! covers HTTP/2 connections, whose socket other requests share and which
//! are never shut down here. The request marks its answer ended as soon
//! as the last byte is read, before Pingora can hand the connection to
//! another request.

use std::os::unix::io::RawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Instant;

#[derive(Default)]
struct Shared {
    /// The socket of the HTTP/1 connection the request is on, or -1.
    fd: AtomicI32,
    done: AtomicBool,
    fired: AtomicBool,
}

/// One request's deadline and its watchdog.
pub struct Deadline {
    at: Instant,
    shared: Arc<Shared>,
    watchdog: tokio::task::JoinHandle<()>,
}

impl Deadline {
    /// Starts watching: at `at`, an exchange still under way is cut.
    pub fn start(at: Instant) -> Deadline {
        let shared = Arc::new(Shared {
            fd: AtomicI32::new(-1),
            ..Default::default()
        });
        let watched = shared.clone();
        let watchdog = tokio::spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            if watched.done.load(Ordering::Acquire) {
                return;
            }
            watched.fired.store(true, Ordering::Release);
            let fd = watched.fd.load(Ordering::Acquire);
            if fd >= 0 {
                // SAFETY: a socket this request holds (it is not done, so
                // its connection is not back in a pool), borrowed for one
                // shutdown(2), which ends its traffic and leaves it open.
                let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
                let _ = socket2::SockRef::from(&fd).shutdown(std::net::Shutdown::Both);
            }
        });
        Deadline {
            at,
            shared,
            watchdog,
        }
    }

    /// The request now runs on the HTTP/1 connection with socket `fd`.
    pub fn on_socket(&self, fd: RawFd) {
        self.shared.fd.store(fd, Ordering::Release);
    }

    /// The request is on a connection that must not be cut (HTTP/2).
    pub fn off_socket(&self) {
        self.shared.fd.store(-1, Ordering::Release);
    }

    /// The answer has ended: nothing is cut from here on.
    pub fn finish(&self) {
        self.shared.done.store(true, Ordering::Release);
    }

    /// Whether the deadline has passed.
    pub fn passed(&self) -> bool {
        self.shared.fired.load(Ordering::Acquire) || Instant::now() >= self.at
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        self.finish();
        self.watchdog.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn a_read_still_waiting_at_the_deadline_fails() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (_server, _) = listener.accept().await.unwrap();
        let deadline = Deadline::start(Instant::now() + Duration::from_millis(50));
        deadline.on_socket(std::os::unix::io::AsRawFd::as_raw_fd(&client));
        let mut buf = [0u8; 8];
        let read = tokio::time::timeout(Duration::from_secs(5), client.read(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
        assert!(deadline.passed());
    }

    #[tokio::test]
    async fn a_finished_exchange_is_left_alone() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        let deadline = Deadline::start(Instant::now() + Duration::from_millis(20));
        deadline.on_socket(std::os::unix::io::AsRawFd::as_raw_fd(&client));
        deadline.finish();
        tokio::time::sleep(Duration::from_millis(60)).await;
        // The connection still carries bytes.
        tokio::io::AsyncWriteExt::write_all(&mut server, b"x")
            .await
            .unwrap();
        let mut buf = [0u8; 1];
        client.readable().await.unwrap();
        assert_eq!(client.try_read(&mut buf).unwrap(), 1);
    }
}
