//! The CA's keys on Kubernetes, shared by every controller replica: the
//! user's Secret `cacerts` in weft's namespace when there is one (Istio's
//! plugged-in CA: `ca-cert.pem`, `ca-key.pem`, `root-cert.pem`), else weft's
//! own Secret `weft-ca` of the same shape, made by whichever replica comes
//! first (the API server lets only one create it; the others read it).

use crate::runtime::CA_SECRET;
use crate::ControllerError;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::Client;
use std::collections::BTreeMap;
use std::time::Duration;
use weft_ca::Authority;

/// The Secret weft keeps its own CA in.
pub const OWN_SECRET: &str = "weft-ca";

fn field(secret: &Secret, key: &str) -> Option<String> {
    if let Some(v) = secret.string_data.as_ref().and_then(|d| d.get(key)) {
        return Some(v.clone());
    }
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok()
}

fn from_secret(
    secret: &Secret,
    trust_domain: &str,
    ttl: Duration,
) -> Result<Authority, ControllerError> {
    let name = secret.metadata.name.clone().unwrap_or_default();
    match (
        field(secret, "root-cert.pem"),
        field(secret, "ca-cert.pem"),
        field(secret, "ca-key.pem"),
    ) {
        (Some(root), Some(ca), Some(key)) => {
            Ok(Authority::plugged(trust_domain, ttl, root, ca, &key)?)
        }
        _ => Err(ControllerError::Config(format!(
            "the Secret {name} needs ca-cert.pem, ca-key.pem and root-cert.pem"
        ))),
    }
}

/// The CA of the user's `cacerts`, or of weft's own Secret (made now if
/// no replica has made it yet).
pub async fn authority(
    client: Client,
    namespace: &str,
    trust_domain: &str,
    ttl: Duration,
) -> Result<Authority, ControllerError> {
    let secrets: Api<Secret> = Api::namespaced(client, namespace);
    if let Some(plugged) = secrets.get_opt(CA_SECRET.1).await? {
        tracing::info!("the CA is the one of Secret {namespace}/{}", CA_SECRET.1);
        return from_secret(&plugged, trust_domain, ttl);
    }
    if let Some(own) = secrets.get_opt(OWN_SECRET).await? {
        return from_secret(&own, trust_domain, ttl);
    }
    let (root, ca, key) = Authority::generate(trust_domain)?;
    let data: BTreeMap<String, ByteString> = [
        ("root-cert.pem", root),
        ("ca-cert.pem", ca),
        ("ca-key.pem", key),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), ByteString(v.into_bytes())))
    .collect();
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(OWN_SECRET.into()),
            namespace: Some(namespace.into()),
            labels: Some(
                [(
                    "app.kubernetes.io/managed-by".to_string(),
                    "weft".to_string(),
                )]
                .into(),
            ),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Secret::default()
    };
    match secrets.create(&PostParams::default(), &secret).await {
        Ok(made) => {
            tracing::info!("created the CA in Secret {namespace}/{OWN_SECRET}");
            from_secret(&made, trust_domain, ttl)
        }
        // Another replica made it first: use that one.
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let theirs = secrets.get(OWN_SECRET).await?;
            from_secret(&theirs, trust_domain, ttl)
        }
        Err(e) => Err(e.into()),
    }
}
