//! HTTP/2 and gRPC between sidecars, and connection reuse: a tonic client
//! calls a gRPC server behind the mesh (h2c to the caller's sidecar, h2
//! over mutual TLS between sidecars, h2c to the server, which learns the
//! caller's SPIFFE ID); sequential calls, gRPC or HTTP/1.1, share pooled
//! connections between the sidecars instead of opening one each.

mod support;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;

/// A gRPC service that records who called (the XFCC its sidecar added).
#[derive(Clone, Default)]
struct Recorder {
    callers: Arc<Mutex<Vec<String>>>,
}

#[tonic::async_trait]
impl TraceService for Recorder {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let xfcc = req
            .metadata()
            .get("x-forwarded-client-cert")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_string();
        self.callers.lock().unwrap().push(xfcc);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

const MESH: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: mesh, labels: {weft.dev/mesh: enabled}}
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {name: caller, namespace: mesh, labels: {app: caller}}
spec:
  serviceAccountName: caller
  address: 127.0.16.2
  command: [weft, echo, --listen, "127.0.16.2:9080"]
  ports: [{name: http, containerPort: 9080}]
---
# The test itself serves gRPC on this Workload's port; the process only
# holds its place.
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {name: grpc, namespace: mesh, labels: {app: grpc}}
spec:
  serviceAccountName: grpc
  address: 127.0.16.3
  command: [sleep, "3600"]
  ports: [{name: grpc, containerPort: 9090}]
---
apiVersion: v1
kind: Service
metadata: {name: grpc, namespace: mesh}
spec:
  selector: {app: grpc}
  ports: [{name: grpc, port: 9090, targetPort: grpc, appProtocol: kubernetes.io/h2c}]
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {name: web, namespace: mesh, labels: {app: web}}
spec:
  serviceAccountName: web
  address: 127.0.16.4
  command: [weft, echo, --listen, "127.0.16.4:9080"]
  ports: [{name: http, containerPort: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: mesh}
spec: {selector: {app: web}, ports: [{name: http, port: 9080, targetPort: http}]}
---
# The caller's `weft echo` also serves gRPC; a GRPCRoute on this Service
# lets only the Echo method through.
apiVersion: v1
kind: Service
metadata: {name: caller-grpc, namespace: mesh}
spec:
  selector: {app: caller}
  ports: [{name: grpc, port: 9080, targetPort: http, appProtocol: kubernetes.io/h2c}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: echo-only, namespace: mesh}
spec:
  parentRefs: [{group: "", kind: Service, name: caller-grpc, port: 9080}]
  rules:
  - matches: [{method: {service: gateway_api_conformance.echo_basic.grpcecho.GrpcEcho, method: Echo}}]
    backendRefs: [{name: caller-grpc, port: 9080}]
"#;

/// `istio_tcp_connections_opened_total` of a sidecar's inbound side, mTLS.
async fn inbound_connections(c: &reqwest::Client, ip: &str) -> u64 {
    let text = c
        .get(format!("http://{ip}:15020/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let counts: Vec<u64> = text
        .lines()
        .filter(|l| l.starts_with("istio_tcp_connections_opened_total{"))
        .filter(|l| l.contains("reporter=\"destination\"") && l.contains("mutual_tls"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .collect();
    // A call went through before any count is taken: the series exists.
    assert!(
        !counts.is_empty() && counts.iter().sum::<u64>() >= 1,
        "no inbound mTLS connection counted on {ip}:\n{text}"
    );
    counts.iter().sum()
}

/// Conformance: Mesh/GRPCRoute
#[tokio::test]
async fn grpc_over_h2_between_sidecars_on_pooled_connections() {
    let recorder = Recorder::default();
    let listener = tokio::net::TcpListener::bind("127.0.16.3:9090")
        .await
        .unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(recorder.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mesh.yaml"), MESH).unwrap();
    let weft = Weft::start(dir.path(), "127.0.16.1");

    // The caller's sidecar, as a gRPC client that knows only the service name.
    let channel = tonic::transport::Endpoint::from_static("http://127.0.16.2:15001")
        .origin("http://grpc.mesh:9090".parse().unwrap())
        .connect_lazy();
    let mut client = TraceServiceClient::new(channel);
    eventually(Duration::from_secs(30), "a gRPC call gets through", || {
        let mut client = client.clone();
        async move {
            client
                .export(ExportTraceServiceRequest::default())
                .await
                .is_ok()
        }
    })
    .await;
    let admin = reqwest::Client::builder().no_proxy().build().unwrap();
    let before = inbound_connections(&admin, "127.0.16.3").await;
    for _ in 0..20 {
        client
            .export(ExportTraceServiceRequest::default())
            .await
            .expect("every gRPC call succeeds");
    }
    let callers = recorder.callers.lock().unwrap().clone();
    assert!(
        callers
            .iter()
            .all(|c| c == "URI=spiffe://cluster.local/ns/mesh/sa/caller"),
        "{callers:?}"
    );
    let opened = inbound_connections(&admin, "127.0.16.3").await - before;
    assert!(opened <= 1, "20 gRPC calls opened {opened} connections");

    // A GRPCRoute on a Service routes calls between sidecars by method:
    // EchoTwo, which the server implements, matches no rule.
    let channel = tonic::transport::Endpoint::from_static("http://127.0.16.2:15001")
        .origin("http://caller-grpc.mesh:9080".parse().unwrap())
        .connect_lazy();
    let mut echo = weft_api::wire::echo::GrpcEchoClient::new(channel);
    let request = || weft_api::wire::echo::EchoRequest {};
    eventually(Duration::from_secs(20), "Echo gets through", || {
        let mut echo = echo.clone();
        async move { echo.echo(request()).await.is_ok() }
    })
    .await;
    let answer = echo.echo(request()).await.unwrap().into_inner();
    assert_eq!(answer.assertions.unwrap().context.unwrap().pod, "caller");
    let refused = echo.echo_two(request()).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unimplemented, "{refused:?}");

    // HTTP/1.1 calls reuse pooled connections between the sidecars too.
    let web = reqwest::Client::builder()
        .proxy(reqwest::Proxy::http("http://127.0.16.2:15001").unwrap())
        .build()
        .unwrap();
    eventually(Duration::from_secs(10), "web answers", || async {
        web.get("http://web:9080/")
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    let before = inbound_connections(&admin, "127.0.16.4").await;
    for _ in 0..20 {
        let resp = web.get("http://web:9080/").send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["pod"], "web");
    }
    let opened = inbound_connections(&admin, "127.0.16.4").await - before;
    assert!(opened <= 2, "20 HTTP/1.1 calls opened {opened} connections");
    weft.sigterm();
}
