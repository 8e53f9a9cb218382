//! What a proxy says of a request it sends on, to a backend or a mirror.
//!
//! Only the proxy says who the client is: `x-forwarded-client-cert` and
//! weft's mesh metadata headers a client sent are dropped, and the verified
//! client certificate's SPIFFE ID goes in XFCC. A gateway (not a sidecar)
//! appends the client's address to `x-forwarded-for` and sets
//! `x-forwarded-proto` to its listener's scheme, as Envoy does with
//! `use_remote_address`. Every request carries an `x-request-id`: the one
//! it came with when that is sane, else a new one, so a request keeps its
//! id across the mesh.

use http::{HeaderName, HeaderValue};
use pingora::http::RequestHeader;
use std::io::Write;
use std::net::IpAddr;

/// Carries the client's SPIFFE ID to the backend, as Envoy does.
pub const XFCC: &str = "x-forwarded-client-cert";
/// The service a meshed call was for, told by the calling proxy to the
/// called one (over mutual TLS only) so both report the same
/// `destination_service`, as Istio's metadata exchange does.
pub const MESH_SERVICE: &str = "x-weft-service";
/// The workload at each end, told the same way: the caller's on the
/// request, the callee's on the response.
pub const SOURCE_WORKLOAD: &str = "x-weft-source-workload";
/// The caller's cluster, told on the request the same way.
pub const SOURCE_CLUSTER: &str = "x-weft-source-cluster";
pub const PEER_WORKLOAD: &str = "x-weft-workload";
pub const REQUEST_ID: &str = "x-request-id";
const XFF: &str = "x-forwarded-for";
const XFP: &str = "x-forwarded-proto";

/// The mesh's names as `HeaderName`s, for the request path: nothing
/// parsed per request.
pub const MESH_SERVICE_NAME: HeaderName = HeaderName::from_static(MESH_SERVICE);
pub const SOURCE_WORKLOAD_NAME: HeaderName = HeaderName::from_static(SOURCE_WORKLOAD);
pub const SOURCE_CLUSTER_NAME: HeaderName = HeaderName::from_static(SOURCE_CLUSTER);
pub const PEER_WORKLOAD_NAME: HeaderName = HeaderName::from_static(PEER_WORKLOAD);

// The names removed from what a client sent.
const REMOVED: [HeaderName; 5] = [
    HeaderName::from_static(XFCC),
    MESH_SERVICE_NAME,
    SOURCE_WORKLOAD_NAME,
    SOURCE_CLUSTER_NAME,
    PEER_WORKLOAD_NAME,
];

/// The longest `x-request-id` kept.
const MAX_REQUEST_ID: usize = 128;

/// What the proxy knows of the client.
pub struct Client<'a> {
    /// The SPIFFE ID of its verified certificate.
    pub identity: Option<&'a str>,
    /// At a gateway: the client's address and the listener's scheme.
    pub edge: Option<(IpAddr, &'static str)>,
    pub request_id: &'a str,
}

/// What a mesh caller tells the sidecar it calls (over mutual TLS only):
/// the service it meant, and its own workload and cluster (`me`).
pub fn tell_mesh(req: &mut RequestHeader, service: &str, me: (&str, &str)) -> pingora::Result<()> {
    req.insert_header(MESH_SERVICE_NAME, service)?;
    req.insert_header(SOURCE_WORKLOAD_NAME, me.0)?;
    req.insert_header(SOURCE_CLUSTER_NAME, me.1)
}

/// The request's id: the one it came with if sane, else a new one.
pub fn request_id(req: &RequestHeader) -> String {
    match req.headers.get(REQUEST_ID).and_then(|v| v.to_str().ok()) {
        Some(id)
            if !id.is_empty()
                && id.len() <= MAX_REQUEST_ID
                && id.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            id.to_string()
        }
        _ => new_id(),
    }
}

/// A random UUID (version 4), as Envoy generates them.
fn new_id() -> String {
    uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .to_string()
}

/// Rewrites the identity and forwarding headers of a request sent on.
pub fn apply(client: &Client<'_>, req: &mut RequestHeader) -> pingora::Result<()> {
    for name in &REMOVED {
        req.remove_header(name);
    }
    if let Some(id) = client.identity {
        let mut value = Vec::with_capacity(4 + id.len());
        value.extend_from_slice(b"URI=");
        value.extend_from_slice(id.as_bytes());
        req.insert_header(XFCC, value_of(value)?)?;
    }
    if let Some((addr, scheme)) = client.edge {
        // The client's address after any the request came with, written
        // straight into the value.
        let mut value = Vec::with_capacity(48);
        for before in req.headers.get_all(XFF) {
            if let Ok(before) = before.to_str() {
                value.extend_from_slice(before.as_bytes());
                value.extend_from_slice(b", ");
            }
        }
        let _ = write!(value, "{addr}");
        req.insert_header(XFF, value_of(value)?)?;
        req.insert_header(XFP, HeaderValue::from_static(scheme))?;
    }
    req.insert_header(REQUEST_ID, client.request_id)?;
    Ok(())
}

/// The bytes as a header value, without a copy.
fn value_of(bytes: Vec<u8>) -> pingora::Result<HeaderValue> {
    HeaderValue::try_from(bytes).map_err(|_| {
        pingora::Error::explain(
            pingora::ErrorType::InvalidHTTPHeader,
            "a forwarding header's value",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn a_gateway_says_who_the_client_is() {
        let mut r = req(&[
            (XFCC, "URI=spiffe://forged/ns/a/sa/b"),
            (MESH_SERVICE, "forged"),
            (XFF, "10.0.0.1"),
            (XFF, "10.0.0.2"),
            (XFP, "https"),
        ]);
        let client = Client {
            identity: None,
            edge: Some(("192.0.2.7".parse().unwrap(), "http")),
            request_id: "abc",
        };
        apply(&client, &mut r).unwrap();
        let h = |n: &str| r.headers.get(n).map(|v| v.to_str().unwrap().to_string());
        assert_eq!(h(XFCC), None);
        assert_eq!(h(MESH_SERVICE), None);
        assert_eq!(h(XFF).as_deref(), Some("10.0.0.1, 10.0.0.2, 192.0.2.7"));
        assert_eq!(h(XFP).as_deref(), Some("http"));
        assert_eq!(h(REQUEST_ID).as_deref(), Some("abc"));
    }

    #[test]
    fn a_sidecar_leaves_forwarding_alone_and_passes_the_identity() {
        let mut r = req(&[(XFF, "10.0.0.1")]);
        let client = Client {
            identity: Some("spiffe://cluster.local/ns/a/sa/b"),
            edge: None,
            request_id: "id",
        };
        apply(&client, &mut r).unwrap();
        assert_eq!(r.headers.get(XFF).unwrap(), "10.0.0.1");
        assert_eq!(
            r.headers.get(XFCC).unwrap(),
            "URI=spiffe://cluster.local/ns/a/sa/b"
        );
    }

    #[test]
    fn request_ids_are_kept_when_sane() {
        assert_eq!(request_id(&req(&[(REQUEST_ID, "7f-ab")])), "7f-ab");
        let fresh = request_id(&req(&[(REQUEST_ID, &"x".repeat(200))]));
        assert_eq!(fresh.len(), 36);
        assert_eq!(&fresh[14..15], "4", "{fresh}");
        assert_ne!(request_id(&req(&[])), request_id(&req(&[])));
    }
}
