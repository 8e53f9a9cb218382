//! Listener certificates: resolving `certificateRefs` to Secrets and checking
//! that they hold a usable certificate chain and private key.

use super::refs::{permitted, From, To};
use crate::resources::{Kind, Object, GATEWAY_GROUP};
use crate::store::Store;
use gateway_api::gateways::GatewayListenersTlsCertificateRefs;
use k8s_openapi::api::core::v1::Secret;
use weft_api::TlsCertificate;

/// Why a certificate reference is unusable: (reason, message).
pub type RefProblem = (&'static str, String);

/// Resolves a certificateRef made by a `from_kind` (Gateway or ListenerSet)
/// in `gateway_ns`.
pub fn resolve(
    store: &Store,
    gateway_ns: &str,
    from_kind: &str,
    r: &GatewayListenersTlsCertificateRefs,
) -> Result<TlsCertificate, RefProblem> {
    let group = r.group.as_deref().unwrap_or("");
    let kind = r.kind.as_deref().unwrap_or("Secret");
    if !group.is_empty() || kind != "Secret" {
        return Err((
            "InvalidCertificateRef",
            format!("certificateRef {group}/{kind} {} is not a Secret", r.name),
        ));
    }
    let ns = r.namespace.as_deref().unwrap_or(gateway_ns);
    let from = From {
        group: GATEWAY_GROUP,
        kind: from_kind,
        namespace: gateway_ns,
    };
    let to = To {
        group: "",
        kind: "Secret",
        namespace: ns,
        name: &r.name,
    };
    if !permitted(store, &from, &to) {
        return Err((
            "RefNotPermitted",
            format!(
                "no ReferenceGrant in {ns} allows this Gateway to use Secret {}",
                r.name
            ),
        ));
    }
    let Some(Object::Secret(secret)) = store.lookup(Kind::Secret, ns, &r.name) else {
        return Err((
            "InvalidCertificateRef",
            format!("Secret {ns}/{} does not exist", r.name),
        ));
    };
    certificate(secret).map_err(|e| {
        (
            "InvalidCertificateRef",
            format!("Secret {ns}/{}: {e}", r.name),
        )
    })
}

/// Reads `tls.crt` and `tls.key` of a TLS Secret (`stringData` wins over
/// `data`) and checks that both parse.
/// One key of a Secret as text (`stringData` wins over `data`).
pub fn field(secret: &Secret, name: &str) -> Option<String> {
    if let Some(v) = secret.string_data.as_ref().and_then(|d| d.get(name)) {
        return Some(v.clone());
    }
    let bytes = secret.data.as_ref()?.get(name)?;
    String::from_utf8(bytes.0.clone()).ok()
}

pub fn certificate(secret: &Secret) -> Result<TlsCertificate, String> {
    let field = |name: &str| field(secret, name);
    let (Some(cert), Some(key)) = (field("tls.crt"), field("tls.key")) else {
        return Err("tls.crt and tls.key are required".into());
    };
    let certs: Vec<_> = rustls_pemfile::certs(&mut cert.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls.crt: {e}"))?;
    let Some(leaf) = certs.first() else {
        return Err("tls.crt holds no PEM certificate".into());
    };
    x509_parser::parse_x509_certificate(leaf).map_err(|e| format!("tls.crt: {e}"))?;
    match rustls_pemfile::private_key(&mut key.as_bytes()) {
        Ok(Some(_)) => {}
        Ok(None) => return Err("tls.key holds no PEM private key".into()),
        Err(e) => return Err(format!("tls.key: {e}")),
    }
    Ok(TlsCertificate {
        cert_chain_pem: cert,
        key_pem: key,
    })
}
