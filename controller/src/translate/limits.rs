//! A Gateway's bounds under load (`weft_api::Limits`), set by annotations:
//!
//! | annotation | limit |
//! | --- | --- |
//! | `weft.dev/max-connections` | open connections per listening address |
//! | `weft.dev/mirror-max-body-bytes` | the largest body copied to a mirror |
//! | `weft.dev/tcp-idle-timeout-seconds` | idle TCP/TLS route connections |
//! | `weft.dev/request-header-timeout-seconds` | an HTTP/1 request header |
//!
//! A value that is not a positive whole number keeps the default and is
//! reported on the Gateway (condition `weft.dev/Limits`, False).

use std::collections::BTreeMap;
use weft_api::Limits;

const MAX_CONNECTIONS: &str = "weft.dev/max-connections";
const MIRROR_BODY: &str = "weft.dev/mirror-max-body-bytes";
const TCP_IDLE: &str = "weft.dev/tcp-idle-timeout-seconds";
const HEADER_TIMEOUT: &str = "weft.dev/request-header-timeout-seconds";

/// The limits `annotations` set, and what was wrong with them.
pub fn from_annotations(annotations: Option<&BTreeMap<String, String>>) -> (Limits, Vec<String>) {
    let mut limits = Limits::default();
    let mut problems = Vec::new();
    let Some(annotations) = annotations else {
        return (limits, problems);
    };
    let mut read = |name: &str, max: u64| -> Option<u64> {
        let value = annotations.get(name)?;
        match value.trim().parse::<u64>() {
            Ok(n) if (1..=max).contains(&n) => Some(n),
            _ => {
                problems.push(format!(
                    "{name}: {value:?} is not a whole number from 1 to {max}; the default stays"
                ));
                None
            }
        }
    };
    if let Some(n) = read(MAX_CONNECTIONS, 1_000_000) {
        limits.max_connections = n as u32;
    }
    if let Some(n) = read(MIRROR_BODY, 64 * 1024 * 1024) {
        limits.mirror_body_bytes = n;
    }
    if let Some(n) = read(TCP_IDLE, 7 * 24 * 3600) {
        limits.l4_idle_seconds = n;
    }
    if let Some(n) = read(HEADER_TIMEOUT, 3600) {
        limits.request_header_seconds = n;
    }
    (limits, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_set_limits_and_bad_values_are_reported() {
        let a: BTreeMap<String, String> = [
            (MAX_CONNECTIONS, "20"),
            (HEADER_TIMEOUT, "2"),
            (TCP_IDLE, "soon"),
            (MIRROR_BODY, "0"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let (limits, problems) = from_annotations(Some(&a));
        assert_eq!(limits.max_connections, 20);
        assert_eq!(limits.request_header_seconds, 2);
        assert_eq!(limits.l4_idle_seconds, Limits::default().l4_idle_seconds);
        assert_eq!(
            limits.mirror_body_bytes,
            Limits::default().mirror_body_bytes
        );
        assert_eq!(problems.len(), 2, "{problems:?}");
    }
}
