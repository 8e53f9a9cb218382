//! JWT authentication at a gateway (SecurityPolicy), token by token: every
//! algorithm weft supports passes; every token of the attack set is
//! refused with 401 and never reaches the backend; keys rotate through the
//! unknown-kid refetch, which random kids cannot turn into a flood; and a
//! JWKS server that never answered refuses everything.

mod support;
use jsonwebtoken::{Algorithm, Header};
use serde_json::json;
use std::time::Duration;
use support::backends::recorder;
use support::jwt::*;
use support::*;

const ASYMMETRIC: [&str; 9] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];
const HMAC: [&str; 3] = ["HS256", "HS384", "HS512"];

/// A route `host` to Service `backend` and a SecurityPolicy on it whose
/// providers are given as YAML (indented for `providers:`).
fn protected(host: &str, backend: &str, providers: &str) -> String {
    format!(
        r#"{route}---
apiVersion: weft.dev/v1alpha1
kind: SecurityPolicy
metadata: {{name: {backend}-auth}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: {backend}}}]
  jwt:
    providers:
{providers}"#,
        route = route(backend, host, backend)
    )
}

fn remote(name: &str, uri: &str) -> String {
    format!(
        r#"    - name: {name}
      issuer: {ISSUER}
      audiences: [{AUDIENCE}]
      remoteJWKS: {{uri: "{uri}", cacheDuration: 300s}}
      claimToHeaders: [{{header: x-user, claim: sub}}]
"#
    )
}

/// GET `http://ip:8080/` for `host` with `token` as a bearer token: the
/// status and the `WWW-Authenticate` header.
async fn call(c: &reqwest::Client, ip: &str, host: &str, token: Option<&str>) -> (u16, String) {
    let mut req = c.get(format!("http://{ip}:8080/")).header("host", host);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    match req.send().await {
        Ok(r) => {
            let challenge = r
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            (r.status().as_u16(), challenge)
        }
        Err(e) => panic!("{host}: {e}"),
    }
}

/// Waits until the route answers `host` without a token with 401: the
/// policy is in force.
async fn until_protected(c: &reqwest::Client, ip: &str, host: &str) {
    eventually(
        Duration::from_secs(30),
        "the policy is in force",
        || async {
            c.get(format!("http://{ip}:8080/"))
                .header("host", host)
                .send()
                .await
                .is_ok_and(|r| r.status() == 401)
        },
    )
    .await;
}

#[tokio::test]
async fn every_algorithm_passes_and_every_attack_is_refused() {
    let ip = "127.0.91.1";
    let (port, seen) = recorder(ip).await;
    let signers: Vec<Signer> = ASYMMETRIC.iter().map(|a| signer(a, a)).collect();
    let hmac: Vec<Signer> = HMAC.iter().map(|a| signer(a, a)).collect();
    let server = JwksServer::start(ip, &signers.iter().collect::<Vec<_>>()).await;
    let local = jwks(&hmac.iter().collect::<Vec<_>>());
    let providers = format!(
        "{}    - name: local\n      issuer: {ISSUER}\n      audiences: [{AUDIENCE}]\n      localJWKS: {{type: Inline, inline: '{local}'}}\n      claimToHeaders: [{{header: x-user, claim: sub}}]\n",
        remote("idp", &server.uri())
    );
    let gw = gateway("  listeners:\n  - {name: http, port: 8080, protocol: HTTP}\n");
    let config = format!(
        "{gw}---\n{}---\n{}",
        slice_service("api", ip, port, None),
        protected("api.test", "api", &providers)
    );
    let _weft = Weft::up(ip, &[("all.yaml", &config)]);
    let c = client(&[]);
    until_protected(&c, ip, "api.test").await;

    // Every algorithm, from the server's keys or the config's.
    for s in signers.iter().chain(&hmac) {
        let sub = format!("user-{:?}", s.alg);
        let (status, _) = call(&c, ip, "api.test", Some(&token(s, &sub, json!({})))).await;
        assert_eq!(status, 200, "{:?}", s.alg);
        let last = seen.lock().unwrap().last().cloned().unwrap();
        assert!(last.contains(&format!("x-user: {sub}")), "{last}");
        assert!(
            !last.to_ascii_lowercase().contains("authorization:"),
            "{last}"
        );
    }

    // No token: a challenge without an error.
    let (status, challenge) = call(&c, ip, "api.test", None).await;
    assert_eq!(
        (status, challenge.as_str()),
        (401, r#"Bearer realm="api.test""#)
    );

    let es = &signers[6];
    let rsa = &signers[0];
    let attacker = signer("ES256", "evil");
    let now = jsonwebtoken::get_current_timestamp();
    let good = |extra: serde_json::Value| token(es, "mallory", extra);
    let mut claims = json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "mallory", "exp": now + 600});
    let signed = |s: &Signer, header: Header, claims: &serde_json::Value| {
        s.sign_with(&header, claims).unwrap()
    };
    let with_kid = |alg: Algorithm, kid: &str| {
        let mut h = Header::new(alg);
        h.kid = Some(kid.into());
        h
    };
    // HS256 "signed with the RSA public key": the key's modulus as the secret.
    let rsa_n = match &rsa.jwk.algorithm {
        jsonwebtoken::jwk::AlgorithmParameters::RSA(p) => p.n.clone(),
        _ => unreachable!(),
    };
    let confused = jsonwebtoken::encode(
        &with_kid(Algorithm::HS256, "RS256"),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(rsa_n.as_bytes()).unwrap(),
    )
    .unwrap();
    let mut embedded = Header::new(Algorithm::ES256);
    embedded.jwk = Some(attacker.jwk.clone());
    let mut jku = with_kid(Algorithm::ES256, "evil");
    jku.jku = Some(format!("http://{ip}:1/evil.json"));
    let valid = good(json!({}));
    let parts: Vec<&str> = valid.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(
            json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "admin", "exp": now + 600})
                .to_string()
                .as_bytes()
        ),
        parts[2]
    );
    let mut attacks: Vec<(&str, String)> = vec![
        (
            "alg none",
            forged(json!({"alg": "none", "kid": "ES256"}), claims.clone(), ""),
        ),
        ("HS256 with the RSA public key", confused),
        (
            "unknown kid",
            signed(&attacker, with_kid(Algorithm::ES256, "nope"), &claims),
        ),
        (
            "a real kid, another key",
            signed(&attacker, with_kid(Algorithm::ES256, "ES256"), &claims),
        ),
        ("embedded jwk", signed(&attacker, embedded, &claims)),
        ("jku", signed(&attacker, jku, &claims)),
        ("expired", good(json!({"exp": now - 3600}))),
        ("not yet valid", good(json!({"nbf": now + 3600}))),
        ("wrong iss", good(json!({"iss": "https://evil.test"}))),
        ("wrong aud", good(json!({"aud": "other.test"}))),
        ("tampered payload", tampered),
        ("two segments", format!("{}.{}", parts[0], parts[1])),
        (
            "five segments",
            format!("{valid}.{}.{}", parts[1], parts[2]),
        ),
        ("bad base64", "!!!.@@@.###".into()),
        (
            "not JSON",
            format!("{}.{}.{}", b64(b"nope"), b64(b"nope"), parts[2]),
        ),
        (
            "ES256 signature of zeros",
            forged(
                json!({"alg": "ES256", "kid": "ES256"}),
                claims.clone(),
                &b64(&[0u8; 64]),
            ),
        ),
        (
            "exp a string",
            good(json!({"exp": (now + 600).to_string()})),
        ),
        ("aud a number", good(json!({"aud": 7}))),
    ];
    claims.as_object_mut().unwrap().remove("exp");
    attacks.push((
        "missing exp",
        signed(es, with_kid(Algorithm::ES256, "ES256"), &claims),
    ));
    claims["exp"] = json!(now + 600);
    claims.as_object_mut().unwrap().remove("aud");
    attacks.push((
        "missing aud",
        signed(es, with_kid(Algorithm::ES256, "ES256"), &claims),
    ));

    let before = seen.lock().unwrap().len();
    for (name, t) in &attacks {
        let (status, challenge) = call(&c, ip, "api.test", Some(t)).await;
        assert_eq!(status, 401, "{name}");
        assert_eq!(
            challenge, r#"Bearer realm="api.test", error="invalid_token""#,
            "{name}"
        );
    }
    assert_eq!(
        seen.lock().unwrap().len(),
        before,
        "an attack reached the backend"
    );

    // A 64 KiB token is refused, and the gateway serves on.
    let huge = format!("{}.{}.{}", parts[0], "A".repeat(64 * 1024), parts[2]);
    let status = c
        .get(format!("http://{ip}:8080/"))
        .header("host", "api.test")
        .header("authorization", format!("Bearer {huge}"))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(400);
    assert!((400..500).contains(&status), "{status}");
    assert_eq!(seen.lock().unwrap().len(), before);
    assert_eq!(call(&c, ip, "api.test", Some(&valid)).await.0, 200);
}

#[tokio::test]
async fn keys_rotate_random_kids_do_not_flood_and_no_keys_refuse_all() {
    let ip = "127.0.91.2";
    let (port, seen) = recorder(ip).await;
    let old = signer("ES256", "old");
    let new = signer("ES256", "new");
    let rotating = JwksServer::start(ip, &[&old]).await;
    let probed = JwksServer::start(ip, &[&old]).await;
    // Nothing listens where the third provider looks.
    let down = std::net::TcpListener::bind(format!("{ip}:0")).unwrap();
    let down_uri = format!("http://{}/jwks.json", down.local_addr().unwrap());
    drop(down);
    let gw = gateway("  listeners:\n  - {name: http, port: 8080, protocol: HTTP}\n");
    let mut config = format!("{gw}---\n{}", slice_service("api", ip, port, None));
    for (name, uri) in [
        ("rot", rotating.uri()),
        ("kids", probed.uri()),
        ("down", down_uri),
    ] {
        config.push_str(&format!(
            "---\n{}---\n{}",
            slice_service(name, ip, port, None),
            protected(&format!("{name}.test"), name, &remote(name, &uri))
        ));
    }
    let _weft = Weft::up(ip, &[("all.yaml", &config)]);
    let c = client(&[]);
    for host in ["rot.test", "kids.test", "down.test"] {
        until_protected(&c, ip, host).await;
    }
    assert_eq!(
        call(&c, ip, "rot.test", Some(&token(&old, "a", json!({}))))
            .await
            .0,
        200
    );

    // The issuer rotates: a token with the new kid brings a fetch.
    rotating.set(&[&new]);
    let fetched = rotating.fetches();
    assert_eq!(
        call(&c, ip, "rot.test", Some(&token(&new, "b", json!({}))))
            .await
            .0,
        200
    );
    assert_eq!(rotating.fetches(), fetched + 1);

    // A hundred unknown kids: one fetch at most beyond the first.
    assert!(probed.fetches() >= 1);
    for i in 0..100 {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some(format!("random-{i}-{}", rand_suffix()));
        let t = new.sign_with(&h, &json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "r", "exp": jsonwebtoken::get_current_timestamp() + 60})).unwrap();
        assert_eq!(call(&c, ip, "kids.test", Some(&t)).await.0, 401);
    }
    assert!(probed.fetches() <= 2, "{} fetches", probed.fetches());

    // A provider that never got keys refuses every token.
    let before = seen.lock().unwrap().len();
    for s in [&old, &new] {
        assert_eq!(
            call(&c, ip, "down.test", Some(&token(s, "d", json!({}))))
                .await
                .0,
            401
        );
    }
    assert_eq!(seen.lock().unwrap().len(), before);
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
}

/// An `https` JWKS is trusted only through the CA the policy names: keys
/// from a server whose certificate that CA issued are used; from a server
/// with a certificate of another CA, never (every token 401).
#[tokio::test]
async fn an_https_jwks_is_checked_against_the_named_ca() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ip = "127.0.91.4";
    let (port, _) = recorder(ip).await;
    let key = signer("ES256", "k");
    let doc = jwks(&[&key]);
    let (trusted, other) = (support::pki::ca(), support::pki::ca());
    // Two HTTPS JWKS servers, the same keys, certificates of two CAs.
    let mut uris = Vec::new();
    for ca in [&trusted, &other] {
        let pem = support::pki::issue(ca, &[ip], &[]);
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(
            support::pki::server_config(&pem, None),
        ));
        let l = tokio::net::TcpListener::bind(format!("{ip}:0"))
            .await
            .unwrap();
        uris.push(format!("https://{}/jwks.json", l.local_addr().unwrap()));
        let doc = doc.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = l.accept().await {
                let (acceptor, doc) = (acceptor.clone(), doc.clone());
                tokio::spawn(async move {
                    let Ok(mut s) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buf = [0u8; 4096];
                    let _ = s.read(&mut buf).await;
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{doc}",
                        doc.len()
                    );
                    let _ = s.write_all(answer.as_bytes()).await;
                    let _ = s.shutdown().await;
                });
            }
        });
    }
    let gw = gateway("  listeners:\n  - {name: http, port: 8080, protocol: HTTP}\n");
    let mut config = format!(
        "{gw}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: idp-ca}}\ndata:\n  ca.crt: |\n{}",
        support::pki::indent(&trusted.pem)
    );
    for (name, uri) in [("good", &uris[0]), ("bad", &uris[1])] {
        let provider = remote(name, uri).replace(
            "cacheDuration: 300s}",
            "cacheDuration: 300s, caCertificateRefs: [{group: \"\", kind: ConfigMap, name: idp-ca}]}",
        );
        config.push_str(&format!(
            "---\n{}---\n{}",
            slice_service(name, ip, port, None),
            protected(&format!("{name}.test"), name, &provider)
        ));
    }
    let _weft = Weft::up(ip, &[("all.yaml", &config)]);
    let c = client(&[]);
    until_protected(&c, ip, "bad.test").await;
    let t = token(&key, "a", json!({}));
    eventually(
        Duration::from_secs(20),
        "keys from the trusted server",
        || async { call(&c, ip, "good.test", Some(&t)).await.0 == 200 },
    )
    .await;
    assert_eq!(call(&c, ip, "bad.test", Some(&t)).await.0, 401);
}
