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
//! as the last byte is read (or the header says there is none), before
//! Pingora can hand the connection to another request.
//!
//! The watchdog holds its own duplicate of the socket, so the descriptor
//! number cannot be closed and handed to another connection under it;
//! the duplicate is let go when the answer ends.

use std::os::fd::{BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Default)]
struct Shared {
    /// The socket of the HTTP/1 connection the request is on.
    socket: Mutex<Option<OwnedFd>>,
    done: AtomicBool,
    fired: AtomicBool,
}

impl Shared {
    fn socket(&self) -> std::sync::MutexGuard<'_, Option<OwnedFd>> {
        self.socket.lock().unwrap_or_else(|p| p.into_inner())
    }
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
        let shared = Arc::new(Shared::default());
        let watched = shared.clone();
        let watchdog = tokio::spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            if watched.done.load(Ordering::Acquire) {
                return;
            }
            watched.fired.store(true, Ordering::Release);
            let socket = watched.socket();
            // Checked again under the lock `finish` takes: an answer that
            // ended meanwhile keeps its connection.
            if watched.done.load(Ordering::Acquire) {
                return;
            }
            if let Some(fd) = socket.as_ref() {
                // shutdown(2) ends the connection's traffic and leaves
                // the descriptors open.
                let _ = socket2::SockRef::from(fd).shutdown(std::net::Shutdown::Both);
            }
        });
        Deadline {
            at,
            shared,
            watchdog,
        }
    }

    /// The request now runs on the HTTP/1 connection with socket `fd`,
    /// open for the length of this call.
    pub fn on_socket(&self, fd: RawFd) {
        // SAFETY: the caller's connection holds `fd` open during the call;
        // it is only duplicated here.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        match borrowed.try_clone_to_owned() {
            Ok(owned) => *self.shared.socket() = Some(owned),
            Err(e) => tracing::debug!("the deadline cannot watch socket {fd}: {e}"),
        }
    }

    /// The request is on a connection that must not be cut (HTTP/2).
    pub fn off_socket(&self) {
        self.shared.socket().take();
    }

    /// The answer has ended: nothing is cut from here on.
    pub fn finish(&self) {
        let mut socket = self.shared.socket();
        self.shared.done.store(true, Ordering::Release);
        socket.take();
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

    #[tokio::test]
    async fn a_socket_that_reuses_the_number_is_not_cut() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let first = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (_first_server, _) = listener.accept().await.unwrap();
        let deadline = Deadline::start(Instant::now() + Duration::from_millis(50));
        let number = std::os::unix::io::AsRawFd::as_raw_fd(&first);
        deadline.on_socket(number);
        // The connection is closed with its answer unfinished (an error),
        // and a new one may get the same descriptor number.
        drop(first);
        let second = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut second_server, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(deadline.passed());
        tokio::io::AsyncWriteExt::write_all(&mut second_server, b"x")
            .await
            .unwrap();
        let mut buf = [0u8; 1];
        second.readable().await.unwrap();
        assert_eq!(
            second.try_read(&mut buf).unwrap(),
            1,
            "the new socket was cut"
        );
    }
}
