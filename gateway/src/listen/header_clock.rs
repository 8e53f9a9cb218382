//! A deadline for an HTTP/1 request's header, against slow-loris clients.
//!
//! Pingora times each read of a request header on its own (60 s), so a
//! client sending a byte now and then holds its connection, and its slot
//! under the listener's cap, for as long as it likes. The clock runs from
//! a connection's start, and from the first byte of each later request,
//! until the blank line that ends the header; past `timeout`, the
//! connection's reads fail and it is closed. Bodies, responses, idle
//! keep-alive time and HTTP/2 (whose connection preface switches the clock
//! off) are not timed here.

use std::future::Future;
use std::pin::Pin;
use std::task::Context;
use std::time::Duration;

const END_OF_HEADER: &[u8; 4] = b"\r\n\r\n";
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

pub struct HeaderClock {
    timeout: Duration,
    /// Running while a header is being read.
    running: Option<Pin<Box<tokio::time::Sleep>>>,
    /// How much of `END_OF_HEADER` the last bytes read matched.
    matched: usize,
    /// A response was written since the last header ended: the next bytes
    /// read start a new request.
    answered: bool,
    /// Nothing read yet.
    first: bool,
    /// HTTP/2: no headers to time here.
    off: bool,
}

impl HeaderClock {
    /// A clock for a new connection, running.
    pub fn start(timeout: Duration) -> HeaderClock {
        HeaderClock {
            timeout,
            running: Some(Box::pin(tokio::time::sleep(timeout))),
            matched: 0,
            answered: false,
            first: true,
            off: false,
        }
    }

    /// Whether the header being read is late; registers for a wake-up
    /// when it will be.
    pub fn late(&mut self, cx: &mut Context<'_>) -> bool {
        match &mut self.running {
            Some(sleep) => sleep.as_mut().poll(cx).is_ready(),
            None => false,
        }
    }

    /// Bytes read from the client.
    pub fn read(&mut self, data: &[u8]) {
        if self.off || data.is_empty() {
            return;
        }
        if std::mem::take(&mut self.first) && data.starts_with(H2_PREFACE) {
            self.off = true;
            self.running = None;
            return;
        }
        if self.running.is_none() {
            if !std::mem::take(&mut self.answered) {
                // A body, or more of a request already timed.
                return;
            }
            self.running = Some(Box::pin(tokio::time::sleep(self.timeout)));
            self.matched = 0;
        }
        for &b in data {
            self.matched = if b == END_OF_HEADER[self.matched] {
                self.matched + 1
            } else if b == END_OF_HEADER[0] {
                1
            } else {
                0
            };
            if self.matched == END_OF_HEADER.len() {
                self.running = None;
                self.matched = 0;
                return;
            }
        }
    }

    /// Bytes written to the client; an interim (1xx) response is not an
    /// answer.
    pub fn wrote(&mut self, data: &[u8]) {
        let interim = data.len() > 9 && data.starts_with(b"HTTP/1.") && data[9] == b'1';
        if !data.is_empty() && !interim {
            self.answered = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Poll;

    async fn late(clock: &mut HeaderClock) -> bool {
        std::future::poll_fn(|cx| Poll::Ready(clock.late(cx))).await
    }

    #[tokio::test(start_paused = true)]
    async fn a_header_must_end_in_time() {
        let mut clock = HeaderClock::start(Duration::from_secs(10));
        clock.read(b"GET / HTTP/1.1\r\nHost: a\r\n");
        tokio::time::sleep(Duration::from_secs(11)).await;
        assert!(late(&mut clock).await);
    }

    #[tokio::test(start_paused = true)]
    async fn the_clock_stops_at_the_blank_line_and_restarts_with_the_next_request() {
        let mut clock = HeaderClock::start(Duration::from_secs(10));
        clock.read(b"POST / HTTP/1.1\r\nHost: a\r");
        clock.read(b"\n\r\nbody");
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(!late(&mut clock).await, "the body is not timed");
        clock.read(b"more body");
        clock.wrote(b"HTTP/1.1 100 Continue\r\n\r\n");
        clock.read(b"still body");
        assert!(
            !late(&mut clock).await,
            "an interim answer starts no request"
        );
        clock.wrote(b"HTTP/1.1 200 OK\r\n\r\n");
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(!late(&mut clock).await, "idle keep-alive is not timed");
        clock.read(b"GET /next HTTP/1.1\r\n");
        tokio::time::sleep(Duration::from_secs(11)).await;
        assert!(late(&mut clock).await, "the next header is");
    }

    #[tokio::test(start_paused = true)]
    async fn http2_is_not_timed() {
        let mut clock = HeaderClock::start(Duration::from_secs(10));
        clock.read(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        clock.wrote(b"\x00\x00\x00\x04");
        clock.read(b"\x00\x00\x08\x06 binary frames");
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(!late(&mut clock).await);
    }
}
