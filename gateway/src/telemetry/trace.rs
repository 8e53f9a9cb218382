//! Tracing: the W3C `traceparent` each hop continues (or starts), and one
//! span per request, exported over OTLP/gRPC to the collector named by
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`
//! (nothing is exported when neither is set). Spans are batched by a task
//! of their own; when the collector is slow or gone they are dropped, never
//! queued without bound, and the request path never waits.

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

const QUEUE: usize = 4096;
const BATCH: usize = 512;
const FLUSH_EVERY: Duration = Duration::from_millis(500);

/// One hop of a trace: the trace, this hop's span, and its parent.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceContext {
    pub trace_id: u128,
    pub span_id: u64,
    /// The caller's span, when the request came with a valid traceparent.
    pub parent: Option<u64>,
    pub sampled: bool,
}

impl TraceContext {
    /// This hop: the incoming trace continued with a new span, or a new
    /// (sampled) trace when there is none or it is malformed.
    pub fn next(incoming: Option<&str>) -> TraceContext {
        let span_id = rand::random::<u64>() | 1;
        match incoming.and_then(parse) {
            Some((trace_id, parent, flags)) => TraceContext {
                trace_id,
                span_id,
                parent: Some(parent),
                sampled: flags & 1 == 1,
            },
            None => TraceContext {
                trace_id: rand::random::<u128>() | 1,
                span_id,
                parent: None,
                sampled: true,
            },
        }
    }

    /// The `traceparent` sent upstream: this hop's span as the parent,
    /// written as hex digits straight into the value.
    pub fn header(&self) -> http::HeaderValue {
        let mut v = *b"00-00000000000000000000000000000000-0000000000000000-00";
        hex_into(&mut v[3..35], self.trace_id);
        hex_into(&mut v[36..52], u128::from(self.span_id));
        hex_into(&mut v[53..55], u128::from(self.sampled));
        http::HeaderValue::from_bytes(&v).expect("hex digits and dashes")
    }
}

/// `n` in lowercase hex, right-aligned in `out` (which it fills).
fn hex_into(out: &mut [u8], mut n: u128) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in out.iter_mut().rev() {
        *b = DIGITS[(n & 0xf) as usize];
        n >>= 4;
    }
}

/// (trace ID, parent span ID, flags) of a valid version-00 `traceparent`.
fn parse(v: &str) -> Option<(u128, u64, u8)> {
    let mut parts = v.trim().split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let lower_hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if version != "00" || !lower_hex(trace, 32) || !lower_hex(parent, 16) || !lower_hex(flags, 2) {
        return None;
    }
    let trace = u128::from_str_radix(trace, 16).ok()?;
    let parent = u64::from_str_radix(parent, 16).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    (trace != 0 && parent != 0).then_some((trace, parent, flags))
}

/// A finished request, as its span tells it.
pub struct Finished {
    pub trace: TraceContext,
    pub name: String,
    /// Client for a proxy calling out (gateways, outbound), server for inbound.
    pub server: bool,
    pub start: SystemTime,
    pub end: SystemTime,
    pub status: u16,
    pub attributes: Vec<(&'static str, String)>,
}

/// Sends spans to an OTLP collector.
#[derive(Clone)]
pub struct Exporter {
    tx: mpsc::Sender<Span>,
}

impl Exporter {
    /// An exporter to the endpoint the environment names; `None` without one.
    pub fn from_env(service: &str) -> Option<Exporter> {
        let endpoint = [
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|e| !e.is_empty()))?;
        Some(Exporter::start(endpoint, service.to_string()))
    }

    /// Starts the batching task; needs a Tokio runtime.
    pub fn start(endpoint: String, service: String) -> Exporter {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(export(rx, endpoint, service));
        Exporter { tx }
    }

    /// Queues the span of `f` (unless its trace is not sampled).
    pub fn record(&self, f: Finished) {
        if f.trace.sampled {
            let _ = self.tx.try_send(to_span(f));
        }
    }
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn string(key: &str, value: String) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value)),
        }),
        ..Default::default()
    }
}

fn to_span(f: Finished) -> Span {
    let mut attributes: Vec<KeyValue> = f
        .attributes
        .into_iter()
        .map(|(k, v)| string(k, v))
        .collect();
    attributes.push(KeyValue {
        key: "http.response.status_code".into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(i64::from(f.status))),
        }),
        ..Default::default()
    });
    let error = f.status == 0 || f.status >= 500;
    Span {
        trace_id: f.trace.trace_id.to_be_bytes().to_vec(),
        span_id: f.trace.span_id.to_be_bytes().to_vec(),
        parent_span_id: f
            .trace
            .parent
            .map(|p| p.to_be_bytes().to_vec())
            .unwrap_or_default(),
        name: f.name,
        kind: if f.server {
            span::SpanKind::Server
        } else {
            span::SpanKind::Client
        } as i32,
        start_time_unix_nano: unix_nanos(f.start),
        end_time_unix_nano: unix_nanos(f.end),
        attributes,
        status: Some(Status {
            code: if error {
                status::StatusCode::Error
            } else {
                status::StatusCode::Unset
            } as i32,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Batches spans and exports them; a failed export drops its batch.
async fn export(mut rx: mpsc::Receiver<Span>, endpoint: String, service: String) {
    let channel = match tonic::transport::Endpoint::from_shared(endpoint.clone()) {
        Ok(e) => e.connect_lazy(),
        Err(e) => {
            tracing::error!("OTLP endpoint {endpoint:?}: {e}; no spans will be exported");
            return;
        }
    };
    let mut client = TraceServiceClient::new(channel);
    let resource = Resource {
        attributes: vec![string("service.name", service)],
        ..Default::default()
    };
    let mut failing = false;
    loop {
        let Some(first) = rx.recv().await else { return };
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + FLUSH_EVERY;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(span)) => batch.push(span),
                Ok(None) | Err(_) => break,
            }
        }
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(resource.clone()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "weft".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    spans: batch,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        match client.export(request).await {
            Ok(_) if failing => {
                tracing::info!(%endpoint, "exporting spans again");
                failing = false;
            }
            Ok(_) => {}
            Err(e) if !failing => {
                tracing::warn!(%endpoint, "cannot export spans: {}", e.message());
                failing = true;
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continues_a_trace_or_starts_one() {
        let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let next = TraceContext::next(Some(incoming));
        assert_eq!(next.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(next.parent, Some(0x00f067aa0ba902b7));
        assert!(next.sampled);
        let header = next.header();
        let header = header.to_str().unwrap();
        assert_eq!(header.len(), 55);
        assert_eq!(
            header,
            format!(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-{:016x}-01",
                next.span_id
            )
        );
        assert!(header.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(header.ends_with("-01"));
        assert_ne!(header, incoming);
        let unsampled = TraceContext::next(Some(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        ));
        assert!(!unsampled.sampled);
        for bad in [
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        ] {
            let fresh = TraceContext::next(Some(bad));
            assert_eq!(fresh.parent, None, "{bad}");
            assert!(parse(fresh.header().to_str().unwrap()).is_some());
        }
    }
}
