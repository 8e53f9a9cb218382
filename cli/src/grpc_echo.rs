//! The gRPC side of `weft echo`: the conformance suite's `GrpcEcho`
//! service. `Echo` and `EchoTwo` answer with the method called, the
//! metadata and authority received, and the server's namespace and pod (from
//! `NAMESPACE`, `POD_NAME`, `INGRESS_NAME`, `SERVICE_NAME`); `EchoThree` is
//! unimplemented on purpose.

use tonic::{Request, Response, Status};
use weft_api::wire::echo::{
    Assertions, Context, EchoRequest, EchoResponse, GrpcEcho, GrpcEchoServer, Header, SERVICE,
};

/// The `:authority` of a call, which tonic's metadata leaves out; the HTTP
/// layer puts it in the request's extensions.
#[derive(Clone)]
pub struct Authority(pub String);

pub struct Echo;

/// The service, ready to be routed beside the HTTP echo.
pub fn service() -> GrpcEchoServer<Echo> {
    GrpcEchoServer::new(Echo)
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_default()
}

fn answer(method: &str, req: &Request<EchoRequest>) -> EchoResponse {
    let authority = req
        .extensions()
        .get::<Authority>()
        .map(|a| a.0.clone())
        .unwrap_or_default();
    let mut headers = vec![Header {
        key: ":authority".into(),
        value: authority.clone(),
    }];
    headers.extend(
        req.metadata()
            .clone()
            .into_headers()
            .iter()
            .map(|(k, v)| Header {
                key: k.as_str().to_string(),
                value: String::from_utf8_lossy(v.as_bytes()).into_owned(),
            }),
    );
    EchoResponse {
        assertions: Some(Assertions {
            fully_qualified_method: format!("/{SERVICE}/{method}"),
            headers,
            authority,
            context: Some(Context {
                namespace: env("NAMESPACE"),
                ingress: env("INGRESS_NAME"),
                service_name: env("SERVICE_NAME"),
                pod: env("POD_NAME"),
            }),
            tls_assertions: None,
        }),
        request: Some(*req.get_ref()),
    }
}

#[tonic::async_trait]
impl GrpcEcho for Echo {
    async fn echo(&self, req: Request<EchoRequest>) -> Result<Response<EchoResponse>, Status> {
        Ok(Response::new(answer("Echo", &req)))
    }

    async fn echo_two(&self, req: Request<EchoRequest>) -> Result<Response<EchoResponse>, Status> {
        Ok(Response::new(answer("EchoTwo", &req)))
    }

    async fn echo_three(&self, _: Request<EchoRequest>) -> Result<Response<EchoResponse>, Status> {
        Err(Status::unimplemented("EchoThree is not implemented"))
    }
}
