//! The leader keeps the `caBundle` of weft's MutatingWebhookConfiguration
//! (installed by the chart without one) equal to weft's roots, so that the
//! API server trusts the webhook's certificate. Only the webhooks that call
//! this controller's Service are touched, each by a JSON patch that first
//! tests the webhook's name, so a concurrent edit of the list fails instead
//! of writing into the wrong entry.

use base64::Engine;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use kube::api::{Api, Patch, PatchParams};
use kube::Client;
use serde_json::json;
use std::time::Duration;
use tokio::sync::watch;

/// How often the bundle is compared again.
const RECHECK: Duration = Duration::from_secs(60);

pub struct CaBundle {
    pub client: Client,
    /// The MutatingWebhookConfiguration's name.
    pub config: String,
    /// The Service the webhooks call: namespace and name.
    pub service: (String, String),
    pub roots: String,
}

impl CaBundle {
    pub async fn run(self, mut leader: watch::Receiver<bool>) {
        loop {
            if *leader.borrow_and_update() {
                if let Err(e) = self.sync().await {
                    tracing::warn!(config = %self.config, "the webhook's caBundle: {e}");
                }
            }
            tokio::select! {
                r = leader.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(RECHECK) => {}
            }
        }
    }

    async fn sync(&self) -> Result<(), kube::Error> {
        let api: Api<MutatingWebhookConfiguration> = Api::all(self.client.clone());
        let Some(config) = api.get_opt(&self.config).await? else {
            tracing::debug!(config = %self.config, "no such MutatingWebhookConfiguration");
            return Ok(());
        };
        let wanted = base64::engine::general_purpose::STANDARD.encode(&self.roots);
        let mut ops = Vec::new();
        for (i, hook) in config.webhooks.iter().flatten().enumerate() {
            let ours = hook
                .client_config
                .service
                .as_ref()
                .is_some_and(|s| s.namespace == self.service.0 && s.name == self.service.1);
            let current = hook
                .client_config
                .ca_bundle
                .as_ref()
                .map(|b| base64::engine::general_purpose::STANDARD.encode(&b.0));
            if ours && current.as_deref() != Some(wanted.as_str()) {
                ops.push(json!({"op": "test", "path": format!("/webhooks/{i}/name"), "value": hook.name}));
                ops.push(json!({"op": "add", "path": format!("/webhooks/{i}/clientConfig/caBundle"), "value": wanted}));
            }
        }
        if ops.is_empty() {
            return Ok(());
        }
        let patch: json_patch::Patch =
            serde_json::from_value(json!(ops)).map_err(kube::Error::SerdeError)?;
        api.patch(
            &self.config,
            &PatchParams::default(),
            &Patch::<()>::Json(patch),
        )
        .await?;
        tracing::info!(config = %self.config, "set the webhook's caBundle to weft's roots");
        Ok(())
    }
}
