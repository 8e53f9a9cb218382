//! Certificates for tests: CAs, certificates they issue, and the YAML
//! blocks that carry PEM.

/// A certificate authority of the test's own.
pub struct Ca {
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
    pub pem: String,
}

pub fn ca() -> Ca {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let pem = params.self_signed(&key).unwrap().pem();
    Ca { params, key, pem }
}

/// A certificate issued by `ca` with these DNS names and URI SANs:
/// (cert PEM, key PEM).
pub fn issue(ca: &Ca, dns: &[&str], uris: &[&str]) -> (String, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let names: Vec<String> = dns.iter().map(|d| d.to_string()).collect();
    let mut params = rcgen::CertificateParams::new(names).unwrap();
    for uri in uris {
        let uri = rcgen::string::Ia5String::try_from(*uri).unwrap();
        params.subject_alt_names.push(rcgen::SanType::URI(uri));
    }
    let issuer = rcgen::Issuer::from_params(&ca.params, &ca.key);
    let cert = params.signed_by(&key, &issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// PEM indented to sit under a YAML `|` block at two spaces.
pub fn indent(s: &str) -> String {
    s.lines().map(|l| format!("    {l}\n")).collect()
}

/// A `kubernetes.io/tls` Secret holding (cert PEM, key PEM).
pub fn tls_secret(name: &str, (cert, key): &(String, String)) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        indent(cert),
        indent(key)
    )
}

/// A rustls server config serving (cert PEM, key PEM), asking for no
/// client certificate unless `client_roots` (PEM) is given, and then
/// accepting clients without one too.
pub fn server_config(pem: &(String, String), client_roots: Option<&str>) -> rustls::ServerConfig {
    let certs = rustls_pemfile::certs(&mut pem.0.as_bytes())
        .map(Result::unwrap)
        .collect();
    let key = rustls_pemfile::private_key(&mut pem.1.as_bytes())
        .unwrap()
        .unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_roots {
        None => builder.with_no_client_auth(),
        Some(roots_pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in rustls_pemfile::certs(&mut roots_pem.as_bytes()) {
                roots.add(c.unwrap()).unwrap();
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                std::sync::Arc::new(roots),
                provider,
            )
            .allow_unauthenticated()
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
    };
    builder.with_single_cert(certs, key).unwrap()
}

/// A CA issued by `root` (an intermediate): what each cluster of a
/// cluster set signs with.
pub fn intermediate(root: &Ca, name: &str) -> Ca {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("intermediate {name}"));
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let issuer = rcgen::Issuer::from_params(&root.params, &root.key);
    let pem = params.signed_by(&key, &issuer).unwrap().pem();
    Ca { params, key, pem }
}

/// The Secret `weft-system/cacerts` plugging a CA in: its certificate
/// and key, and the root (Istio's file names); with the Namespace.
pub fn cacerts(root: &Ca, ca: &Ca) -> String {
    let field = |k: &str, v: &str| format!("  {k}: |\n{}", indent(v));
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: weft-system}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: cacerts, namespace: weft-system}}\nstringData:\n{}{}{}",
        field("ca-cert.pem", &ca.pem),
        field("ca-key.pem", &ca.key.serialize_pem()),
        field("root-cert.pem", &root.pem),
    )
}
