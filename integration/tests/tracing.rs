//! Tracing across a `weft up` mesh with an OTLP collector configured (the
//! standard `OTEL_EXPORTER_OTLP_ENDPOINT`): one request with a traceparent
//! yields one span per hop — gateway, the front end's inbound and outbound
//! sidecar sides, the back end's inbound — all in the caller's trace, each
//! the child of the hop before it.

mod support;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;

/// A collector that keeps every span (with its service name).
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<(String, Span)>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for rs in req.into_inner().resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .and_then(|a| a.value.as_ref())
                .map(|v| format!("{:?}", v.value))
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for span in ss.spans {
                    spans.push((service.clone(), span));
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tokio::test]
async fn one_span_per_hop_in_the_callers_trace() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.14.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let service = TraceServiceServer::new(collector.clone());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let ip = "127.0.14.1";
    let dir = tempfile::tempdir().unwrap();
    let mesh = calling_pair(
        "traced",
        ("front", "127.0.14.2"),
        ("back", "127.0.14.3"),
        "/",
    );
    std::fs::write(dir.path().join("mesh.yaml"), mesh).unwrap();
    std::fs::write(dir.path().join("edge.yaml"), edge("traced", "front")).unwrap();
    let weft = Weft::start_in(
        None,
        dir.path(),
        ip,
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())],
        &[],
    );
    let c = client(&[]);
    let url = format!("http://{ip}:8080/");
    wait_for_call(&c, &url, "traced").await;

    let trace = "0af7651916cd43dd8448eb211c80319c";
    let parent = "b7ad6b7169203331";
    let resp = c
        .get(&url)
        .header("host", "traced")
        .header("traceparent", format!("00-{trace}-{parent}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let ours = || -> Vec<(String, Span)> {
        let spans = collector.spans.lock().unwrap();
        spans
            .iter()
            .filter(|(_, s)| hex(&s.trace_id) == trace)
            .cloned()
            .collect()
    };
    eventually(
        Duration::from_secs(10),
        "four spans are exported",
        || async { ours().len() >= 4 },
    )
    .await;
    let spans = ours();
    assert_eq!(spans.len(), 4, "{spans:#?}");
    // Each hop's parent is the hop before it, starting at the caller's span.
    let mut expected_parent = parent.to_string();
    let mut chain = Vec::new();
    for _ in 0..4 {
        let (service, span) = spans
            .iter()
            .find(|(_, s)| hex(&s.parent_span_id) == expected_parent)
            .unwrap_or_else(|| panic!("no child of {expected_parent}: {spans:#?}"));
        chain.push((service.clone(), span.kind));
        expected_parent = hex(&span.span_id);
    }
    let services: Vec<&str> = chain.iter().map(|(s, _)| s.as_str()).collect();
    assert!(services[0].contains("edge.traced"), "{services:?}");
    assert!(services[1].contains("front.traced"), "{services:?}");
    assert!(services[2].contains("front.traced"), "{services:?}");
    assert!(services[3].contains("back.traced"), "{services:?}");
    // Client (3) calls out, server (2) takes in: gateway, front in, front out, back in.
    let kinds: Vec<i32> = chain.iter().map(|(_, k)| *k).collect();
    assert_eq!(kinds, [3, 2, 3, 2]);
    weft.sigterm();
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
