//! The leader makes weft's GatewayClass when it is missing, so that a fresh
//! install has a class to put Gateways in. It never changes one that
//! exists: a class someone edited or made for another controller stays as
//! it is (its status says whether weft accepts it).

use crate::CONTROLLER_NAME;
use gateway_api::gatewayclasses::{GatewayClass, GatewayClassSpec};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::Client;
use std::time::Duration;
use tokio::sync::watch;

/// How often the class is looked for again.
const RECHECK: Duration = Duration::from_secs(60);

pub async fn ensure(client: Client, name: String, mut leader: watch::Receiver<bool>) {
    let api: Api<GatewayClass> = Api::all(client);
    loop {
        if *leader.borrow_and_update() {
            match api.get_opt(&name).await {
                Ok(Some(_)) => {}
                Ok(None) => {
                    let class = GatewayClass {
                        metadata: ObjectMeta {
                            name: Some(name.clone()),
                            labels: Some(
                                [("app.kubernetes.io/managed-by".into(), "weft".into())].into(),
                            ),
                            ..ObjectMeta::default()
                        },
                        spec: GatewayClassSpec {
                            controller_name: CONTROLLER_NAME.into(),
                            ..GatewayClassSpec::default()
                        },
                        status: None,
                    };
                    match api.create(&PostParams::default(), &class).await {
                        Ok(_) => tracing::info!(class = %name, "created the GatewayClass"),
                        Err(kube::Error::Api(s)) if s.code == 409 => {}
                        Err(e) => tracing::warn!(class = %name, "creating the GatewayClass: {e}"),
                    }
                }
                // The CRDs may not be installed yet.
                Err(e) => tracing::debug!(class = %name, "reading the GatewayClass: {e}"),
            }
        }
        tokio::select! {
            r = leader.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(RECHECK) => {}
        }
    }
}
