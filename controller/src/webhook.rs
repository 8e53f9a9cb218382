//! The injection webhook's server: HTTPS with a serving certificate for the
//! controller's Service name, made by weft's own CA in this process and
//! renewed at half its life; `POST /inject` answers AdmissionReviews with
//! `inject::review`, a namespace's labels taken from the cluster as the
//! watchers hold it. Every replica serves it; the API server calls any.

use crate::inject;
use crate::provider::cluster::Cluster;
use crate::provision::Infra;
use crate::ControllerError;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::post;
use axum::Router;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::net::TcpListener;
use tokio::sync::watch;
use weft_ca::workload::{Svid, Svids};
use weft_ca::{Authority, SpiffeId};

/// Lifetime of the serving certificate; renewed at half.
const SERVING_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Clone)]
struct Injector {
    cluster: Cluster,
    template: Arc<Infra>,
}

async fn inject(State(s): State<Injector>, body: axum::body::Bytes) -> Response {
    // Before every watcher has listed, a namespace's labels may be missing:
    // an answer now could let a meshed pod through without its sidecar.
    // An error instead makes the API server apply the failurePolicy.
    if !s.cluster.synced() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the controller has not read the cluster yet",
        )
            .into_response();
    }
    let Ok(review) = serde_json::from_slice::<Value>(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            "an AdmissionReview (JSON) is expected",
        )
            .into_response();
    };
    match inject::review(&review, |ns| s.cluster.namespace_labels(ns), &s.template) {
        Ok(answer) => Json(answer).into_response(),
        Err(why) => (StatusCode::BAD_REQUEST, why).into_response(),
    }
}

/// The serving certificate for `names`, as an SVID-shaped value the TLS
/// code presents.
fn issue(authority: &Authority, names: &[String]) -> Result<Arc<Svid>, ControllerError> {
    let (chain, key_pem, not_after) = authority.serving(names, SERVING_TTL)?;
    let not_after =
        SystemTime::UNIX_EPOCH + Duration::from_secs(not_after.unix_timestamp().max(0) as u64);
    Ok(Arc::new(Svid {
        id: SpiffeId::control_plane(authority.trust_domain())?,
        chain,
        key_pem,
        bundle: authority.trust_bundle(),
        not_after,
        received: SystemTime::now(),
        renewals: 0,
    }))
}

/// Serves the webhook on `listener` until the process ends.
pub async fn serve(
    listener: TcpListener,
    authority: Arc<Authority>,
    names: Vec<String>,
    cluster: Cluster,
    template: Infra,
) -> Result<(), ControllerError> {
    let (tx, svids): (_, Svids) = watch::channel(Some(issue(&authority, &names)?));
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(SERVING_TTL / 2).await;
            match issue(&authority, &names) {
                Ok(svid) => {
                    tx.send_replace(Some(svid));
                }
                Err(e) => tracing::error!("renewing the webhook's certificate: {e}"),
            }
        }
    });
    let mut tls = (*weft_ca::tls::server_config(svids, None)?).clone();
    // The API server's webhook client may speak HTTP/1.1 only.
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let router = Router::new()
        .route("/inject", post(inject))
        .with_state(Injector {
            cluster,
            template: Arc::new(template),
        });
    let incoming = Incoming {
        local: listener
            .local_addr()
            .map_err(|cause| ControllerError::Config(cause.to_string()))?,
        conns: weft_ca::tls::incoming(listener, Arc::new(tls)),
    };
    axum::serve(incoming, router)
        .await
        .map_err(|e| ControllerError::Config(format!("the webhook server: {e}")))
}

/// TLS connections, handshaken concurrently (with a timeout) by
/// `weft_ca::tls::incoming`, as axum's listener.
struct Incoming {
    local: std::net::SocketAddr,
    conns: tokio_stream::wrappers::ReceiverStream<Result<weft_ca::tls::TlsConn, std::io::Error>>,
}

impl axum::serve::Listener for Incoming {
    type Io = weft_ca::tls::TlsConn;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        use tokio_stream::StreamExt;
        loop {
            match self.conns.next().await {
                Some(Ok(conn)) => return (conn, self.local),
                Some(Err(_)) => continue,
                // The acceptor is gone: nothing more will come.
                None => std::future::pending::<()>().await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
