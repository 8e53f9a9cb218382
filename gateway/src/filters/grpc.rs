//! gRPC callers get gRPC errors. When the gateway answers a gRPC call itself
//! (no route, no endpoint, a failed upstream), it sends what a gRPC server
//! would: HTTP 200 carrying `grpc-status` in a headers-only ("trailers-only")
//! response, with the code the gRPC spec maps the HTTP status to.

use pingora::http::{RequestHeader, ResponseHeader};

/// Whether a request is a gRPC call (`content-type: application/grpc…`).
pub fn is_grpc(req: &RequestHeader) -> bool {
    req.headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// The gRPC status code for an HTTP status, as gRPC clients map them.
pub fn code_for(status: u16) -> u32 {
    match status {
        400 => 13,             // INTERNAL
        401 => 16,             // UNAUTHENTICATED
        403 => 7,              // PERMISSION_DENIED
        404 => 12,             // UNIMPLEMENTED
        429 | 502..=504 => 14, // UNAVAILABLE
        _ => 2,                // UNKNOWN
    }
}

fn message_for(status: u16) -> &'static str {
    match status {
        404 => "no%20route%20for%20this%20call",
        503 => "no%20healthy%20upstream",
        504 => "upstream%20timed%20out",
        _ => "gateway%20error",
    }
}

/// A trailers-only answer with gRPC status `code` and `message` (already
/// percent-encoded).
pub fn status_response(code: u32, message: &str) -> pingora::Result<ResponseHeader> {
    let mut resp = ResponseHeader::build(200, Some(3))?;
    resp.insert_header(http::header::CONTENT_TYPE, "application/grpc")?;
    resp.insert_header("grpc-status", code.to_string())?;
    resp.insert_header("grpc-message", message)?;
    Ok(resp)
}

/// The trailers-only answer to a gRPC call that failed with HTTP `status`.
pub fn error_response(status: u16) -> pingora::Result<ResponseHeader> {
    let mut resp = ResponseHeader::build(200, Some(3))?;
    resp.insert_header(http::header::CONTENT_TYPE, "application/grpc")?;
    resp.insert_header("grpc-status", code_for(status).to_string())?;
    resp.insert_header("grpc-message", message_for(status))?;
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_statuses_as_grpc_clients_do() {
        assert_eq!(code_for(404), 12);
        assert_eq!(code_for(503), 14);
        assert_eq!(code_for(502), 14);
        assert_eq!(code_for(500), 2);
        let resp = error_response(404).unwrap();
        assert_eq!(resp.status, 200);
        assert_eq!(resp.headers["grpc-status"], "12");
    }

    #[test]
    fn recognises_grpc_calls() {
        let mut req = RequestHeader::build("POST", b"/pkg.Svc/M", None).unwrap();
        assert!(!is_grpc(&req));
        req.insert_header("content-type", "application/grpc+proto")
            .unwrap();
        assert!(is_grpc(&req));
    }
}
