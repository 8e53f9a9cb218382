//! The one place that turns a failed request into a status code.

use pingora::{Error, ErrorSource, ErrorType};

/// 503 when no endpoint could be reached (TLS handshake included), 504 when the backend was too slow,
/// 502 for other upstream failures, 400 for a broken request, and 0 when the
/// client is gone (nothing to answer).
pub fn status_for(e: &Error) -> u16 {
    match e.etype() {
        ErrorType::HTTPStatus(code) => *code,
        ErrorType::ConnectTimedout | ErrorType::ConnectRefused | ErrorType::ConnectNoRoute => 503,
        ErrorType::ConnectError | ErrorType::SocketError => 503,
        // A backend we could not authenticate is one we could not reach.
        ErrorType::TLSHandshakeFailure | ErrorType::InvalidCert => 503,
        ErrorType::ReadTimedout | ErrorType::WriteTimedout => match e.esource() {
            ErrorSource::Upstream => 504,
            _ => 408,
        },
        _ => match e.esource() {
            ErrorSource::Upstream => 502,
            ErrorSource::Downstream => match e.etype() {
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                _ => 400,
            },
            ErrorSource::Internal | ErrorSource::Unset => 500,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_causes() {
        let timed_out = Error::new_up(ErrorType::ReadTimedout);
        assert_eq!(status_for(&timed_out), 504);
        assert_eq!(status_for(&Error::new_up(ErrorType::ConnectRefused)), 503);
        assert_eq!(
            status_for(&Error::new_up(ErrorType::TLSHandshakeFailure)),
            503
        );
        assert_eq!(status_for(&Error::new(ErrorType::HTTPStatus(421))), 421);
        assert_eq!(
            status_for(&Error::new_down(ErrorType::InvalidHTTPHeader)),
            400
        );
        assert_eq!(status_for(&Error::new_down(ErrorType::ConnectionClosed)), 0);
    }
}
