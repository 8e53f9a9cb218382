//! Frontend client-certificate validation (Gateway `spec.tls.frontend`):
//! for each HTTPS port, the CA bundle client certificates must chain to,
//! from `caCertificateRefs` (ConfigMap or Secret key `ca.crt`), and the
//! mode. Per-port entries override the default; an entry without
//! `validation` turns it off on its port.

use super::refs::{permitted, From, To};
use crate::resources::{Kind, Object, GATEWAY_GROUP};
use crate::store::Store;
use gateway_api::gateways::GatewayTlsFrontendPerPortTlsValidationMode as PortMode;
use gateway_api::gateways::{GatewayTls, GatewayTlsFrontendDefaultValidationMode as Mode};
use weft_api::ClientAuth;

/// A CA reference as both generated types spell it.
struct CaRef<'a> {
    group: &'a str,
    kind: &'a str,
    name: &'a str,
    namespace: Option<&'a str>,
}

/// What validation a port gets: none, or the roots that resolved with the
/// problems of the references that did not (reason, message).
pub struct Validation {
    /// `None` when no reference resolved: the listener must not serve.
    pub client_auth: Option<ClientAuth>,
    pub problems: Vec<(&'static str, String)>,
}

/// The validation of HTTPS listeners on `port` of a Gateway in `gateway_ns`.
pub fn for_port(
    store: &Store,
    gateway_ns: &str,
    tls: Option<&GatewayTls>,
    port: u16,
) -> Option<Validation> {
    let frontend = tls?.frontend.as_ref()?;
    let per_port = frontend
        .per_port
        .iter()
        .flatten()
        .find(|p| i32::from(port) == p.port);
    // The per-port and default validations are distinct generated types.
    macro_rules! refs {
        ($v:expr) => {
            $v.ca_certificate_refs
                .iter()
                .map(|r| CaRef {
                    group: &r.group,
                    kind: &r.kind,
                    name: &r.name,
                    namespace: r.namespace.as_deref(),
                })
                .collect::<Vec<_>>()
        };
    }
    let (refs, insecure) = match per_port {
        Some(p) => {
            let v = p.tls.validation.as_ref()?;
            let insecure = matches!(v.mode, Some(PortMode::AllowInsecureFallback));
            (refs!(v), insecure)
        }
        None => {
            let v = frontend.default.validation.as_ref()?;
            (
                refs!(v),
                matches!(v.mode, Some(Mode::AllowInsecureFallback)),
            )
        }
    };
    let mut roots = Vec::new();
    let mut problems = Vec::new();
    for r in &refs {
        match resolve(store, gateway_ns, r) {
            Ok(pem) => roots.push(pem),
            Err(p) => problems.push(p),
        }
    }
    let client_auth = (!roots.is_empty()).then_some(ClientAuth {
        roots_pem: roots,
        allow_plaintext: false,
        insecure_fallback: insecure,
        mesh: false,
    });
    Some(Validation {
        client_auth,
        problems,
    })
}

/// Whether any port of the Gateway validates in `AllowInsecureFallback`.
pub fn insecure(tls: Option<&GatewayTls>) -> bool {
    let Some(frontend) = tls.and_then(|t| t.frontend.as_ref()) else {
        return false;
    };
    let default = frontend
        .default
        .validation
        .as_ref()
        .and_then(|v| v.mode.as_ref());
    matches!(default, Some(Mode::AllowInsecureFallback))
        || frontend.per_port.iter().flatten().any(|p| {
            let mode = p.tls.validation.as_ref().and_then(|v| v.mode.as_ref());
            matches!(mode, Some(PortMode::AllowInsecureFallback))
        })
}

/// Whether `text` holds at least one PEM certificate, all of them parsable.
pub fn pem_certificates(text: &str) -> bool {
    let Ok(certs) = rustls_pemfile::certs(&mut text.as_bytes()).collect::<Result<Vec<_>, _>>()
    else {
        return false;
    };
    !certs.is_empty()
        && certs
            .iter()
            .all(|der| x509_parser::parse_x509_certificate(der).is_ok())
}

fn resolve(
    store: &Store,
    gateway_ns: &str,
    r: &CaRef<'_>,
) -> Result<String, (&'static str, String)> {
    let kind = match (r.group, r.kind) {
        ("", "ConfigMap") => Kind::ConfigMap,
        ("", "Secret") => Kind::Secret,
        (group, kind) => {
            return Err((
                "InvalidCACertificateKind",
                format!(
                    "caCertificateRef {group}/{kind} {} is not a ConfigMap or Secret",
                    r.name
                ),
            ))
        }
    };
    let ns = r.namespace.unwrap_or(gateway_ns);
    let from = From {
        group: GATEWAY_GROUP,
        kind: "Gateway",
        namespace: gateway_ns,
    };
    let to = To {
        group: "",
        kind: r.kind,
        namespace: ns,
        name: r.name,
    };
    if !permitted(store, &from, &to) {
        return Err((
            "RefNotPermitted",
            format!(
                "no ReferenceGrant in {ns} allows this Gateway to use {} {}",
                r.kind, r.name
            ),
        ));
    }
    let text = match store.lookup(kind, ns, r.name) {
        Some(Object::ConfigMap(cm)) => cm.data.as_ref().and_then(|d| d.get("ca.crt")).cloned(),
        Some(Object::Secret(secret)) => super::tls::field(secret, "ca.crt"),
        _ => {
            return Err((
                "InvalidCACertificateRef",
                format!("{} {ns}/{} does not exist", r.kind, r.name),
            ))
        }
    };
    let Some(text) = text else {
        return Err((
            "InvalidCACertificateRef",
            format!("{} {ns}/{} has no ca.crt", r.kind, r.name),
        ));
    };
    let certs: Vec<_> = rustls_pemfile::certs(&mut text.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| {
            (
                "InvalidCACertificateRef",
                format!("{} {ns}/{}: ca.crt: {e}", r.kind, r.name),
            )
        })?;
    if certs.is_empty() {
        return Err((
            "InvalidCACertificateRef",
            format!(
                "{} {ns}/{}: ca.crt holds no PEM certificate",
                r.kind, r.name
            ),
        ));
    }
    for der in &certs {
        x509_parser::parse_x509_certificate(der).map_err(|e| {
            (
                "InvalidCACertificateRef",
                format!("{} {ns}/{}: ca.crt: {e}", r.kind, r.name),
            )
        })?;
    }
    Ok(text)
}
