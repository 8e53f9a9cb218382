//! The engine alone: a Pingora HTTP proxy that sends every request to one
//! upstream, with no routing, metrics, tracing or header work. The
//! benchmarks run it beside the weft gateway, so the gap to nginx can be
//! split into what Pingora itself costs and what weft adds on top.
//!
//! Usage: `bare_proxy LISTEN UPSTREAM` (both `host:port`).

use async_trait::async_trait;
use pingora::prelude::*;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Bare {
    upstream: String,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _: &mut Session, _: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(
            self.upstream.as_str(),
            false,
            String::new(),
        )))
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        eprintln!("usage: bare_proxy LISTEN UPSTREAM");
        std::process::exit(2);
    };
    let mut server = Server::new(None).expect("server");
    server.bootstrap();
    let mut service = http_proxy_service(&server.configuration, Bare { upstream });
    service.add_tcp(&listen);
    server.add_service(service);
    server.run_forever();
}
