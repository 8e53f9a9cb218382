//! `weft echo`: answers every request with the JSON the Gateway API
//! conformance echo server returns (path with query, host, method, proto,
//! headers, namespace, pod), over HTTP/1.1 and h2c. A request header
//! `X-Echo-Set-Header: Name: value, Other: value` sets response headers.
//! With `--call URL` (repeatable) it also calls those URLs for each request,
//! through `HTTP_PROXY` when set, and adds their answers under `calls`: a
//! small service graph for mesh demos. `--status` makes every answer fail
//! with that code (the body stays the same). gRPC calls (over h2c) go to
//! the conformance suite's `GrpcEcho` service (`grpc_echo`).

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Response};
use serde_json::json;
use std::collections::BTreeMap;
use std::net::SocketAddr;

pub async fn run(listen: SocketAddr, calls: Vec<String>, status: u16) -> anyhow::Result<()> {
    let status = axum::http::StatusCode::from_u16(status)?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    eprintln!("echo listening on {}", listener.local_addr()?);
    let calls = std::sync::Arc::new(calls);
    let grpc = tonic::service::Routes::new(crate::grpc_echo::service()).into_axum_router();
    let app = grpc
        .fallback(move |req: Request| {
            let calls = calls.clone();
            async move {
                let mut resp = echo(req, &calls).await;
                *resp.status_mut() = status;
                resp
            }
        })
        .layer(axum::middleware::map_request(with_authority));
    axum::serve(listener, app)
        .with_graceful_shutdown(crate::up::stopped())
        .await?;
    Ok(())
}

/// Keeps the request's authority (HTTP/2 `:authority`, else `Host`) where
/// the gRPC service can read it.
async fn with_authority(mut req: Request) -> Request {
    let authority = req
        .uri()
        .authority()
        .map(|a| a.to_string())
        .or_else(|| {
            let host = req.headers().get("host")?;
            host.to_str().ok().map(str::to_string)
        })
        .unwrap_or_default();
    req.extensions_mut()
        .insert(crate::grpc_echo::Authority(authority));
    req
}

async fn echo(req: Request, calls: &[String]) -> Response<Body> {
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in req.headers() {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers
            .entry(canonical(name.as_str()))
            .or_default()
            .push(value);
    }
    let host = req
        .headers()
        .get("host")
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let proto = match req.version() {
        axum::http::Version::HTTP_2 => "HTTP/2.0",
        axum::http::Version::HTTP_10 => "HTTP/1.0",
        _ => "HTTP/1.1",
    };
    let traceparent = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok());
    let mut answers = Vec::new();
    for url in calls {
        answers.push(match crate::fetch::get(url, traceparent).await {
            Ok((status, body)) => {
                let body = serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body));
                json!({"url": url, "status": status, "body": body})
            }
            Err(e) => json!({"url": url, "error": e.to_string()}),
        });
    }
    let mut body = json!({
        "path": req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/"),
        "host": host,
        "method": req.method().as_str(),
        "proto": proto,
        "headers": headers,
        "namespace": std::env::var("NAMESPACE").unwrap_or_default(),
        "pod": std::env::var("POD_NAME").unwrap_or_default(),
    });
    if !calls.is_empty() {
        body["calls"] = serde_json::Value::Array(answers);
    }
    let mut resp = Response::new(Body::from(body.to_string()));
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    for set in req.headers().get_all("x-echo-set-header") {
        for pair in set.to_str().unwrap_or("").split(',') {
            if let Some((n, v)) = pair.split_once(':') {
                if let (Ok(n), Ok(v)) = (
                    HeaderName::from_bytes(n.trim().as_bytes()),
                    HeaderValue::from_str(v.trim()),
                ) {
                    resp.headers_mut().append(n, v);
                }
            }
        }
    }
    resp
}

/// `x-forwarded-for` → `X-Forwarded-For`, as Go's echo server reports names.
fn canonical(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut c = part.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("-")
}
