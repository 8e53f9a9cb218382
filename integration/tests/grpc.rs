//! GRPCRoute end to end: a tonic client calls `weft echo`'s gRPC service
//! through the gateway over h2c. Calls are routed by service and method, by
//! header, and split by weight; what the gateway answers itself (no route,
//! no healthy backend, an unknown host) comes back as gRPC status codes.

mod support;
use std::collections::BTreeMap;
use std::time::Duration;
use support::*;
use tonic::transport::{Channel, Endpoint};
use weft_api::wire::echo::{EchoRequest, GrpcEchoClient};

const ROUTE: &str = r#"apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: echo}
spec:
  parentRefs: [{name: gw}]
  hostnames: [grpc.example.com]
  rules:
  - name: echo
    matches:
    - method: {service: gateway_api_conformance.echo_basic.grpcecho.GrpcEcho, method: Echo}
    backendRefs: [{name: v1, port: 80}]
  - matches:
    - method: {service: gateway_api_conformance.echo_basic.grpcecho.GrpcEcho, method: EchoTwo}
    backendRefs: [{name: v2, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: headers}
spec:
  parentRefs: [{name: gw}]
  hostnames: [headers.example.com]
  rules:
  - matches: [{headers: [{name: version, value: one}]}]
    backendRefs: [{name: v1, port: 80}]
  - matches: [{headers: [{name: version, value: two}]}]
    backendRefs: [{name: v2, port: 80}]
  - matches: [{headers: [{name: version, value: two}, {name: color, value: orange}]}]
    backendRefs: [{name: v1, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: split}
spec:
  parentRefs: [{name: gw}]
  hostnames: [split.example.com]
  rules:
  - backendRefs: [{name: v1, port: 80, weight: 70}, {name: v2, port: 80, weight: 30}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: broken}
spec:
  parentRefs: [{name: gw}]
  hostnames: [broken.example.com]
  rules:
  - backendRefs: [{name: nowhere, port: 80}]
  - matches: [{method: {method: EchoTwo}}]
    backendRefs: [{name: down, port: 80}]
"#;

async fn client(ip: &str, authority: &str) -> GrpcEchoClient<Channel> {
    let channel = Endpoint::from_shared(format!("http://{ip}:8080"))
        .unwrap()
        .origin(format!("http://{authority}").parse().unwrap())
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap();
    GrpcEchoClient::new(channel)
}

/// The pod that answered `Echo` or `EchoTwo`, or the gRPC status code.
async fn call(
    c: &mut GrpcEchoClient<Channel>,
    method: &str,
    metadata: &[(&'static str, &'static str)],
) -> Result<String, tonic::Code> {
    let mut req = tonic::Request::new(EchoRequest {});
    for (k, v) in metadata {
        req.metadata_mut().insert(*k, v.parse().unwrap());
    }
    let resp = match method {
        "Echo" => c.echo(req).await,
        "EchoTwo" => c.echo_two(req).await,
        _ => c.echo_three(req).await,
    };
    let resp = resp.map_err(|s| s.code())?.into_inner();
    let assertions = resp.assertions.unwrap_or_default();
    let expected = format!("/gateway_api_conformance.echo_basic.grpcecho.GrpcEcho/{method}");
    assert_eq!(assertions.fully_qualified_method, expected);
    Ok(assertions.context.unwrap_or_default().pod)
}

/// Conformance: GRPCRoute, GRPCRouteNamedRouteRule
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_routes() {
    let ip = "127.0.53.1";
    // `down` has an endpoint where nothing listens.
    let down = slice_service("down", ip, 9, None);
    let weft = Weft::up(
        ip,
        &[
            ("base.yaml", &base(ip)),
            ("down.yaml", &down),
            ("grpc.yaml", ROUTE),
        ],
    );
    let mut c = client(ip, "grpc.example.com").await;
    eventually(Duration::from_secs(20), "the GRPCRoute serves", || {
        let mut c = c.clone();
        async move { call(&mut c, "Echo", &[]).await.is_ok() }
    })
    .await;

    // By service and method.
    assert_eq!(call(&mut c, "Echo", &[]).await, Ok("v1".into()));
    assert_eq!(call(&mut c, "EchoTwo", &[]).await, Ok("v2".into()));
    // EchoThree matches no rule: the gateway says UNIMPLEMENTED.
    assert_eq!(
        call(&mut c, "EchoThree", &[]).await,
        Err(tonic::Code::Unimplemented)
    );
    // By header; more header matches win.
    let mut h = client(ip, "headers.example.com").await;
    assert_eq!(
        call(&mut h, "Echo", &[("version", "one")]).await,
        Ok("v1".into())
    );
    assert_eq!(
        call(&mut h, "Echo", &[("version", "two")]).await,
        Ok("v2".into())
    );
    let two = [("version", "two"), ("color", "orange")];
    assert_eq!(call(&mut h, "Echo", &two).await, Ok("v1".into()));
    assert_eq!(
        call(&mut h, "Echo", &[("color", "purple")]).await,
        Err(tonic::Code::Unimplemented)
    );
    let status = weft.item("GRPCRoute", "echo").await;
    let conditions = &status["status"]["parents"][0]["conditions"];
    assert_eq!(conditions[0]["type"], "Accepted", "{status}");
    assert_eq!(conditions[0]["status"], "True", "{status}");

    // Split by weight, per call on one connection.
    let mut split = client(ip, "split.example.com").await;
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    for _ in 0..200 {
        let pod = call(&mut split, "Echo", &[]).await.unwrap();
        *seen.entry(pod).or_default() += 1;
    }
    let v1 = f64::from(seen.get("v1").copied().unwrap_or(0));
    // 140 expected; ±4σ with σ = sqrt(200 × 0.7 × 0.3) ≈ 6.5.
    assert!((v1 - 140.0).abs() <= 26.0, "{seen:?}");

    // An invalid backend and an endpoint that refuses: UNAVAILABLE.
    let mut broken = client(ip, "broken.example.com").await;
    assert_eq!(
        call(&mut broken, "Echo", &[]).await,
        Err(tonic::Code::Unavailable)
    );
    assert_eq!(
        call(&mut broken, "EchoTwo", &[]).await,
        Err(tonic::Code::Unavailable)
    );

    // A host no route serves: UNIMPLEMENTED.
    let mut nowhere = client(ip, "nowhere.example.com").await;
    assert_eq!(
        call(&mut nowhere, "Echo", &[]).await,
        Err(tonic::Code::Unimplemented)
    );
    // As a gRPC server says it: HTTP 200, the status in a headers-only
    // answer (not an HTTP 404 or 503 that clients have to interpret).
    for (host, code) in [("nowhere.example.com", "12"), ("broken.example.com", "14")] {
        let h2c = reqwest::Client::builder()
            .no_proxy()
            .http2_prior_knowledge()
            .resolve(host, format!("{ip}:8080").parse().unwrap())
            .build()
            .unwrap();
        let path = "gateway_api_conformance.echo_basic.grpcecho.GrpcEcho/Echo";
        let resp = h2c
            .post(format!("http://{host}:8080/{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(vec![0u8; 5])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{host}");
        assert_eq!(resp.headers()["grpc-status"], code, "{host}");
        assert_eq!(resp.headers()["content-type"], "application/grpc");
    }
}
