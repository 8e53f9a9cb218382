//! The authority: a root CA (kept in a state folder, created on first start,
//! or provided by the user), an intermediate it signs, and the issuing of
//! workload certificates from CSRs. ECDSA P-256 throughout.

use crate::{CaError, SpiffeId};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
    PKCS_ECDSA_P256_SHA256,
};
use std::path::Path;
use std::time::Duration;
use time::OffsetDateTime;

const ROOT_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
const INTERMEDIATE_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);
/// Certificates start a little in the past, for clocks that lag.
const BACKDATE: Duration = Duration::from_secs(60);

pub struct Authority {
    trust_domain: String,
    root_pem: String,
    intermediate_pem: String,
    intermediate: Issuer<'static, KeyPair>,
    max_ttl: Duration,
}

/// A certificate issued to a workload.
#[derive(Clone, Debug)]
pub struct Issued {
    pub id: SpiffeId,
    /// Leaf first, then the intermediate.
    pub chain: Vec<String>,
    pub not_after: OffsetDateTime,
}

fn ca_params(cn: String, lifetime: Duration, path_len: Option<u8>) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "weft");
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.is_ca = match path_len {
        Some(n) => IsCa::Ca(BasicConstraints::Constrained(n)),
        None => IsCa::Ca(BasicConstraints::Unconstrained),
    };
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    p.not_before = now - BACKDATE;
    p.not_after = now + lifetime;
    p.serial_number = Some(serial());
    p.use_authority_key_identifier_extension = true;
    p
}

fn serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}

fn read(path: &Path) -> Result<Option<String>, CaError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(cause) => Err(CaError::State {
            path: path.to_path_buf(),
            cause,
        }),
    }
}

fn write(path: &Path, text: &str, secret: bool) -> Result<(), CaError> {
    use std::os::unix::fs::OpenOptionsExt;
    let err = |cause| CaError::State {
        path: path.to_path_buf(),
        cause,
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true)
        .create(true)
        .truncate(true)
        .mode(if secret { 0o600 } else { 0o644 });
    let mut f = opts.open(path).map_err(err)?;
    std::io::Write::write_all(&mut f, text.as_bytes()).map_err(err)
}

/// Holds `dir/.lock` exclusively while the state is read or created.
fn lock(dir: &Path) -> Result<std::fs::File, CaError> {
    let err = |cause| CaError::State {
        path: dir.to_path_buf(),
        cause,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(".lock"))
        .map_err(err)?;
    file.lock().map_err(err)?;
    Ok(file)
}

/// Whether the first certificate of `cert_pem` carries a valid signature
/// of the first certificate of `issuer_pem`.
fn issued_by(cert_pem: &str, issuer_pem: &str) -> bool {
    let der = |pem: &str| {
        x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .ok()
            .map(|(_, pem)| pem.contents)
    };
    let (Some(cert), Some(issuer)) = (der(cert_pem), der(issuer_pem)) else {
        return false;
    };
    let (Ok((_, cert)), Ok((_, issuer))) = (
        x509_parser::parse_x509_certificate(&cert),
        x509_parser::parse_x509_certificate(&issuer),
    ) else {
        return false;
    };
    cert.verify_signature(Some(issuer.public_key())).is_ok()
}

impl Authority {
    /// Loads the root (`root.pem`, `root.key`) and intermediate
    /// (`intermediate.pem`, `intermediate.key`) from `dir`, creating whatever
    /// is missing. `max_ttl` is the lifetime of workload certificates.
    /// Processes sharing `dir` take turns (a lock file), so only one creates.
    pub fn load_or_create(
        dir: &Path,
        trust_domain: &str,
        max_ttl: Duration,
    ) -> Result<Self, CaError> {
        let _lock = lock(dir)?;
        let (root_pem, root_key) =
            match (read(&dir.join("root.pem"))?, read(&dir.join("root.key"))?) {
                (Some(cert), Some(key)) => (cert, key),
                _ => {
                    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
                    let cert =
                        ca_params(format!("weft root CA {trust_domain}"), ROOT_LIFETIME, None)
                            .self_signed(&key)?;
                    write(&dir.join("root.key"), &key.serialize_pem(), true)?;
                    write(&dir.join("root.pem"), &cert.pem(), false)?;
                    tracing::info!(dir = %dir.display(), "created a root CA");
                    (cert.pem(), key.serialize_pem())
                }
            };
        Authority::from_root(dir, trust_domain, max_ttl, root_pem, &root_key)
    }

    /// The CA of a root the user provides (a Secret): its intermediate is
    /// kept in `dir`, made anew when missing or issued by another root.
    pub fn with_root(
        dir: &Path,
        trust_domain: &str,
        max_ttl: Duration,
        root_pem: String,
        root_key: &str,
    ) -> Result<Self, CaError> {
        let _lock = lock(dir)?;
        Authority::from_root(dir, trust_domain, max_ttl, root_pem, root_key)
    }

    /// The CA of a signing certificate the user provides, issued by
    /// `root_pem` (Istio's plugged-in `ca-cert.pem`, `ca-key.pem`,
    /// `root-cert.pem`).
    pub fn plugged(
        trust_domain: &str,
        max_ttl: Duration,
        root_pem: String,
        ca_pem: String,
        ca_key: &str,
    ) -> Result<Self, CaError> {
        if !issued_by(&ca_pem, &root_pem) {
            return Err(CaError::BadState(
                "the signing certificate is not issued by the root".into(),
            ));
        }
        Authority::new(trust_domain, root_pem, ca_pem, ca_key, max_ttl)
    }

    /// A new root and an intermediate it issued, as PEM, for a CA kept
    /// somewhere other than a folder (a Kubernetes Secret): (root
    /// certificate, intermediate certificate, intermediate key). The root's
    /// key is not returned: it has signed the intermediate and is dropped.
    pub fn generate(trust_domain: &str) -> Result<(String, String, String), CaError> {
        let (root, mut intermediates) = Authority::generate_set(trust_domain, &[trust_domain])?;
        let (cert, key) = intermediates.remove(0);
        Ok((root, cert, key))
    }

    /// A new root and one intermediate per name it issued (each cluster of
    /// a cluster set signs with its own): (root certificate, [(certificate,
    /// key)]). The root's key is dropped once they are signed.
    pub fn generate_set(
        trust_domain: &str,
        names: &[&str],
    ) -> Result<(String, Vec<(String, String)>), CaError> {
        let root_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let root = ca_params(format!("weft root CA {trust_domain}"), ROOT_LIFETIME, None)
            .self_signed(&root_key)?;
        let issuer = Issuer::from_ca_cert_pem(&root.pem(), root_key)?;
        let mut out = Vec::new();
        for name in names {
            let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
            let params = ca_params(
                format!("weft intermediate CA {name}"),
                INTERMEDIATE_LIFETIME,
                Some(0),
            );
            let cert = params.signed_by(&key, &issuer)?;
            out.push((cert.pem(), key.serialize_pem()));
        }
        Ok((root.pem(), out))
    }

    /// The intermediate in `dir` if `root` issued it, else a new one.
    fn from_root(
        dir: &Path,
        trust_domain: &str,
        max_ttl: Duration,
        root_pem: String,
        root_key: &str,
    ) -> Result<Self, CaError> {
        let existing = match (
            read(&dir.join("intermediate.pem"))?,
            read(&dir.join("intermediate.key"))?,
        ) {
            (Some(cert), Some(key)) if issued_by(&cert, &root_pem) => Some((cert, key)),
            _ => None,
        };
        let (inter_pem, inter_key) = match existing {
            Some(pair) => pair,
            None => {
                let root = Issuer::from_ca_cert_pem(&root_pem, KeyPair::from_pem(root_key)?)?;
                let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
                let params = ca_params(
                    format!("weft intermediate CA {trust_domain}"),
                    INTERMEDIATE_LIFETIME,
                    Some(0),
                );
                let cert = params.signed_by(&key, &root)?;
                write(&dir.join("intermediate.key"), &key.serialize_pem(), true)?;
                write(&dir.join("intermediate.pem"), &cert.pem(), false)?;
                (cert.pem(), key.serialize_pem())
            }
        };
        Authority::new(trust_domain, root_pem, inter_pem, &inter_key, max_ttl)
    }

    /// An authority from PEM: the root certificate, and the intermediate
    /// certificate and key that sign workload certificates.
    pub fn new(
        trust_domain: &str,
        root_pem: String,
        intermediate_pem: String,
        intermediate_key_pem: &str,
        max_ttl: Duration,
    ) -> Result<Self, CaError> {
        let key = KeyPair::from_pem(intermediate_key_pem)?;
        let intermediate = Issuer::from_ca_cert_pem(&intermediate_pem, key)?;
        Ok(Authority {
            trust_domain: trust_domain.to_string(),
            root_pem,
            intermediate_pem,
            intermediate,
            max_ttl,
        })
    }

    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    pub(crate) fn intermediate_pem(&self) -> &str {
        &self.intermediate_pem
    }

    /// The roots a chain must lead to.
    pub fn trust_bundle(&self) -> Vec<String> {
        vec![self.root_pem.clone()]
    }

    /// A serving certificate for DNS names, made and signed here (the key
    /// never leaves this process): for the control plane's own HTTPS
    /// endpoints that the Kubernetes API server calls (the injection
    /// webhook), which check a host name, not a SPIFFE ID. Returns the
    /// chain (leaf first), the key (PEM) and when it expires.
    pub fn serving(
        &self,
        dns_names: &[String],
        ttl: Duration,
    ) -> Result<(Vec<String>, String, OffsetDateTime), CaError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut p = CertificateParams::new(dns_names.to_vec())?;
        let now = OffsetDateTime::now_utc();
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.not_before = now - BACKDATE;
        p.not_after = now + ttl;
        p.serial_number = Some(serial());
        p.use_authority_key_identifier_extension = true;
        let leaf = p.signed_by(&key, &self.intermediate)?;
        Ok((
            vec![leaf.pem(), self.intermediate_pem.clone()],
            key.serialize_pem(),
            p.not_after,
        ))
    }

    /// Signs `csr_pem` for `id`. The CSR's SANs must be empty or exactly
    /// `id`; the certificate carries exactly one URI SAN, `id`. `ttl` is
    /// capped at the authority's maximum.
    pub fn sign(
        &self,
        csr_pem: &str,
        id: &SpiffeId,
        ttl: Option<Duration>,
    ) -> Result<Issued, CaError> {
        if id.trust_domain != self.trust_domain {
            return Err(CaError::IdentityMismatch {
                requested: id.to_string(),
                caller: format!("a workload of trust domain {}", self.trust_domain),
            });
        }
        let mut csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| CaError::Csr(e.to_string()))?;
        let uri = id.to_string();
        let san = SanType::URI(
            uri.clone()
                .try_into()
                .map_err(|_| CaError::SpiffeId(uri.clone()))?,
        );
        for requested in &csr.params.subject_alt_names {
            if *requested != san {
                return Err(CaError::IdentityMismatch {
                    requested: format!("{requested:?}"),
                    caller: uri,
                });
            }
        }
        let ttl = ttl
            .filter(|t| !t.is_zero())
            .map_or(self.max_ttl, |t| t.min(self.max_ttl));
        let now = OffsetDateTime::now_utc();
        let dns = SanType::DnsName(
            id.dns_name()
                .try_into()
                .map_err(|_| CaError::SpiffeId(uri.clone()))?,
        );
        let p = &mut csr.params;
        // Exactly one URI SAN, as X.509-SVIDs have; the DNS name beside it
        // lets connection pools verify the identity as a host name.
        p.subject_alt_names = vec![san, dns];
        p.distinguished_name = DistinguishedName::new();
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.not_before = now - BACKDATE;
        p.not_after = now + ttl;
        p.serial_number = Some(serial());
        p.use_authority_key_identifier_extension = true;
        let not_after = p.not_after;
        let leaf = csr.signed_by(&self.intermediate)?;
        Ok(Issued {
            id: id.clone(),
            chain: vec![leaf.pem(), self.intermediate_pem.clone()],
            not_after,
        })
    }
}
