//! Issuing workload certificates: what they contain, that they verify to the
//! root with a real TLS verifier, and what the CA refuses; then the same over
//! the gRPC signing service on loopback.

use rustls::pki_types::{CertificateDer, UnixTime};
use std::sync::Arc;
use std::time::Duration;
use weft_api::wire::ca::{CertificateAuthorityClient, SignRequest};
use weft_ca::service::SigningService;
use weft_ca::workload::key_and_csr;
use weft_ca::{Authority, CaError, JoinTokens, Roster, SpiffeId};
use x509_parser::prelude::*;

fn ders(pem: &str) -> Vec<CertificateDer<'static>> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Verifies `chain` (leaf first) as a client certificate against `roots`,
/// the way a STRICT inbound will.
fn verify(chain: &[String], roots: &[String]) -> Result<(), rustls::Error> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        for der in ders(r) {
            store.add(der).unwrap();
        }
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(store))
        .build()
        .unwrap();
    let leaf = ders(&chain[0]).remove(0);
    let intermediates: Vec<_> = chain[1..].iter().flat_map(|c| ders(c)).collect();
    verifier
        .verify_client_cert(&leaf, &intermediates, UnixTime::now())
        .map(|_| ())
}

fn authority(dir: &std::path::Path) -> Authority {
    Authority::load_or_create(dir, "cluster.local", Duration::from_secs(24 * 3600)).unwrap()
}

#[test]
fn issues_one_spiffe_uri_that_verifies_to_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let ca = authority(dir.path());
    let id = SpiffeId::new("cluster.local", "shop", "frontend").unwrap();
    let (_key, csr) = key_and_csr(None).unwrap();
    let issued = ca.sign(&csr, &id, Some(Duration::from_secs(60))).unwrap();

    let der = ders(&issued.chain[0]).remove(0);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    let names: Vec<String> = san
        .value
        .general_names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect();
    assert_eq!(
        names,
        vec![
            "URI(\"spiffe://cluster.local/ns/shop/sa/frontend\")".to_string(),
            "DNSName(\"frontend.shop.sa.cluster.local\")".to_string()
        ],
        "exactly one URI SAN, and the identity's DNS name"
    );
    assert!(!cert.is_ca());
    let lifetime = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
    assert!(
        (60..=180).contains(&lifetime),
        "the requested 60 s (plus backdating), got {lifetime}"
    );

    verify(&issued.chain, &ca.trust_bundle()).unwrap();
    // Another CA's root does not vouch for it.
    let other = tempfile::tempdir().unwrap();
    assert!(verify(&issued.chain, &authority(other.path()).trust_bundle()).is_err());
}

#[test]
fn the_root_survives_restarts_and_ttl_is_capped() {
    let dir = tempfile::tempdir().unwrap();
    let first = authority(dir.path()).trust_bundle();
    let ca =
        Authority::load_or_create(dir.path(), "cluster.local", Duration::from_secs(10)).unwrap();
    assert_eq!(ca.trust_bundle(), first);
    let id = SpiffeId::new("cluster.local", "a", "b").unwrap();
    let issued = ca
        .sign(
            &key_and_csr(None).unwrap().1,
            &id,
            Some(Duration::from_secs(3600)),
        )
        .unwrap();
    let left = issued.not_after - ::time::OffsetDateTime::now_utc();
    assert!(left <= ::time::Duration::seconds(10), "{left}");
    let key = std::fs::metadata(dir.path().join("root.key")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&key.permissions()) & 0o777,
        0o600
    );
}

#[test]
fn never_signs_an_identity_the_caller_does_not_hold() {
    let dir = tempfile::tempdir().unwrap();
    let ca = authority(dir.path());
    let caller = SpiffeId::new("cluster.local", "shop", "frontend").unwrap();
    let other = SpiffeId::new("cluster.local", "shop", "payments").unwrap();
    let (_, csr) = key_and_csr(Some(&other)).unwrap();
    assert!(matches!(
        ca.sign(&csr, &caller, None),
        Err(CaError::IdentityMismatch { .. })
    ));
    let (_, own) = key_and_csr(Some(&caller)).unwrap();
    assert!(ca.sign(&own, &caller, None).is_ok());
    let foreign = SpiffeId::new("other.domain", "shop", "frontend").unwrap();
    assert!(ca.sign(&own, &foreign, None).is_err());
    assert!(matches!(
        ca.sign("not a csr", &caller, None),
        Err(CaError::Csr(_))
    ));
}

/// The control plane's own certificate, straight from the authority.
fn control_plane_svid(ca: &Authority) -> weft_ca::workload::Svids {
    let id = SpiffeId::control_plane("cluster.local").unwrap();
    let (key_pem, csr) = key_and_csr(None).unwrap();
    let issued = ca.sign(&csr, &id, None).unwrap();
    let svid = weft_ca::workload::Svid {
        id,
        chain: issued.chain,
        key_pem,
        bundle: ca.trust_bundle(),
        not_after: std::time::SystemTime::now() + Duration::from_secs(3600),
        received: std::time::SystemTime::now(),
        renewals: 0,
    };
    tokio::sync::watch::channel(Some(Arc::new(svid))).1
}

#[tokio::test]
async fn the_signing_service_authenticates_with_one_time_join_tokens_over_tls() {
    use weft_ca::workload::CaClient;
    let dir = tempfile::tempdir().unwrap();
    let ca = Arc::new(authority(dir.path()));
    let tokens = Arc::new(JoinTokens::default());
    let roster = Arc::new(Roster::default());
    let id = SpiffeId::new("cluster.local", "shop", "frontend").unwrap();
    roster.set([id.clone()]);
    let token = tokens.issue(id.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = SigningService::server(ca.clone(), tokens.clone(), roster.clone());
    let tls = weft_ca::tls::server_config(control_plane_svid(&ca), None).unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(server)
            .serve_with_incoming(weft_ca::tls::incoming(listener, tls)),
    );
    let control_plane = SpiffeId::control_plane("cluster.local").unwrap();
    let client =
        weft_ca::workload::GrpcCa::new(&addr.to_string(), &control_plane, &ca.trust_bundle())
            .unwrap();
    let (key, csr) = key_and_csr(None).unwrap();
    let req = SignRequest {
        csr_pem: csr.clone(),
        token: token.clone(),
        ttl_seconds: 30,
        ..Default::default()
    };
    let resp = client.sign(req.clone()).await.unwrap();
    assert_eq!(resp.spiffe_id, id.to_string());
    verify(&resp.cert_chain_pem, &resp.trust_bundle_pem).unwrap();

    let again = client.sign(req).await.unwrap_err();
    assert!(
        again.to_string().contains("already used"),
        "a join token works once: {again}"
    );
    let other = SpiffeId::new("cluster.local", "shop", "payments").unwrap();
    let (_, wrong) = key_and_csr(Some(&other)).unwrap();
    let fresh = SignRequest {
        csr_pem: wrong,
        ..Default::default()
    };
    assert!(client.sign(fresh).await.is_err());

    // A renewal proves the current certificate; it is refused once no
    // workload has the identity.
    let renewal = || {
        let (_, csr) = key_and_csr(None).unwrap();
        SignRequest {
            proof: weft_ca::holder::prove(&key, &csr).unwrap(),
            csr_pem: csr,
            current_chain_pem: resp.cert_chain_pem.clone(),
            ..Default::default()
        }
    };
    assert!(client.sign(renewal()).await.is_ok());
    roster.set([]);
    let refused = client.sign(renewal()).await.unwrap_err();
    assert!(refused.to_string().contains("no workload"), "{refused}");

    // Plaintext gets nothing, and a server that is not the control plane's
    // identity is not believed.
    let mut plain = CertificateAuthorityClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    assert!(plain.sign(SignRequest::default()).await.is_err());
    let impostor =
        weft_ca::workload::GrpcCa::new(&addr.to_string(), &other, &ca.trust_bundle()).unwrap();
    roster.set([id.clone()]);
    let token = tokens.issue(id.clone());
    let req = SignRequest {
        csr_pem: key_and_csr(None).unwrap().1,
        token: token.clone(),
        ..Default::default()
    };
    assert!(impostor.sign(req.clone()).await.is_err());
    assert!(
        client.sign(req).await.is_ok(),
        "the token was not spent on the impostor"
    );
}

/// The CA in process, reached through the same trait as the gRPC client.
struct InProcess(SigningService);

#[tonic::async_trait]
impl weft_ca::workload::CaClient for InProcess {
    async fn sign(&self, req: SignRequest) -> Result<weft_api::wire::ca::SignResponse, CaError> {
        use weft_api::wire::ca::CertificateAuthority;
        self.0
            .sign(tonic::Request::new(req))
            .await
            .map(|r| r.into_inner())
            .map_err(|s| CaError::Unauthenticated(s.message().to_string()))
    }
}

#[tokio::test]
async fn the_identity_manager_renews_at_half_life_by_proving_the_current_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Arc::new(
        Authority::load_or_create(dir.path(), "cluster.local", Duration::from_secs(2)).unwrap(),
    );
    let tokens = Arc::new(JoinTokens::default());
    let id = SpiffeId::new("cluster.local", "shop", "frontend").unwrap();
    let token = tokens.issue(id.clone());
    let client = Arc::new(InProcess(SigningService::new(
        ca.clone(),
        tokens,
        Arc::new(Roster::default()),
    )));
    let (tx, mut rx) = tokio::sync::watch::channel(None);
    let task = tokio::spawn(weft_ca::workload::manage(
        client,
        token,
        Duration::from_secs(2),
        tx,
    ));

    rx.changed().await.unwrap();
    let first = rx.borrow().clone().unwrap();
    assert_eq!(first.id, id);
    verify(&first.chain, &first.bundle).unwrap();
    // Renewed at about half of its 2 s life, with the join token long used up.
    tokio::time::timeout(Duration::from_secs(3), rx.changed())
        .await
        .unwrap()
        .unwrap();
    let second = rx.borrow().clone().unwrap();
    assert_eq!(second.id, id);
    assert_ne!(second.chain[0], first.chain[0]);
    assert_ne!(
        second.key_pem, first.key_pem,
        "a new key for each certificate"
    );
    verify(&second.chain, &second.bundle).unwrap();
    task.abort();

    // A proof made with another key is refused.
    let (_, csr) = key_and_csr(None).unwrap();
    let (other_key, _) = key_and_csr(None).unwrap();
    let proof = weft_ca::holder::prove(&other_key, &csr).unwrap();
    assert!(ca.holder(&second.chain, &proof, &csr).is_err());
    let proof = weft_ca::holder::prove(&second.key_pem, &csr).unwrap();
    assert_eq!(ca.holder(&second.chain, &proof, &csr).unwrap(), id);
}
