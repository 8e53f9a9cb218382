//! A minimal HTTP/1.1 GET for `weft echo --call`: through the proxy named by
//! `HTTP_PROXY` (as a meshed workload's calls go) or straight to the host,
//! carrying the caller's `traceparent` on, as a traced application does.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// GETs `url` (`http://host[:port]/path`), with `traceparent` when given;
/// (status, body).
pub async fn get(url: &str, traceparent: Option<&str>) -> anyhow::Result<(u16, String)> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow::anyhow!("only http:// URLs: {url}"))?;
    let (authority, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(a, p)| (a, format!("/{p}")));
    let proxy = std::env::var("HTTP_PROXY")
        .or_else(|_| std::env::var("http_proxy"))
        .ok();
    let (connect_to, target) = match &proxy {
        Some(p) => (
            p.trim_start_matches("http://")
                .trim_end_matches('/')
                .to_string(),
            url.to_string(),
        ),
        None => {
            let with_port = if authority.contains(':') {
                authority.to_string()
            } else {
                format!("{authority}:80")
            };
            (with_port, path)
        }
    };
    let mut stream = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio::net::TcpStream::connect(&connect_to),
    )
    .await??;
    let trace = traceparent
        .filter(|t| t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .map(|t| format!("traceparent: {t}\r\n"))
        .unwrap_or_default();
    let request =
        format!("GET {target} HTTP/1.1\r\nHost: {authority}\r\n{trace}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut raw),
    )
    .await??;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no response from {url}"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}
