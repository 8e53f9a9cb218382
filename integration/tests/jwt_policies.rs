//! What a SecurityPolicy does with a good token: its claims become headers
//! (a client's own copies of those headers never pass), the token is taken
//! out unless forwarded, and authorization decides by claim, scope,
//! method and client address; optional mode lets anonymous requests pass;
//! a route's policy overrides its Gateway's; gRPC callers get gRPC codes;
//! decisions show in metrics and in the access log.

mod support;
use serde_json::json;
use std::time::Duration;
use support::backends::recorder;
use support::jwt::*;
use support::*;

const IP: &str = "127.0.91.3";

fn provider(uri: &str, extra: &str) -> String {
    format!(
        r#"    providers:
    - name: idp
      issuer: {ISSUER}
      audiences: [{AUDIENCE}]
      remoteJWKS: {{uri: "{uri}"}}
      claimToHeaders: [{{header: x-user, claim: sub}}, {{header: x-org, claim: org.id}}]
{extra}"#
    )
}

fn policy(name: &str, target: &str, jwt: &str, authorization: &str) -> String {
    format!(
        r#"---
apiVersion: weft.dev/v1alpha1
kind: SecurityPolicy
metadata: {{name: {name}}}
spec:
  targetRefs: [{target}]
  jwt:
{jwt}{authorization}"#
    )
}

fn config(uri: &str, port: u16) -> String {
    let gw = gateway("  listeners:\n  - {name: http, port: 8080, protocol: HTTP}\n").replace(
        "metadata: {name: gw}",
        "metadata: {name: gw, annotations: {weft.dev/access-log: \"true\"}}",
    );
    let route_to = |kind: &str| format!("{{group: gateway.networking.k8s.io, kind: {kind}}}");
    let on_route = |name: &str| route_to("HTTPRoute").replace('}', &format!(", name: {name}}}"));
    let mut out = format!("{gw}---\n{}", slice_service("api", IP, port, None));
    // Routes: each host its own HTTPRoute to the recorder.
    for name in ["orders", "fwd", "opt", "plain", "cidr", "cidr-ok", "jar"] {
        out.push_str(&format!(
            "---\n{}",
            route(name, &format!("{name}.test"), "api")
        ));
    }
    // `orders`: GET for any token holder; POST needs scope write; the
    // `admin` rule of the route below needs group admin.
    out.push_str(
        r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: shop}
spec:
  parentRefs: [{name: gw}]
  hostnames: [shop.test]
  rules:
  - name: admin
    matches: [{path: {type: PathPrefix, value: /admin}}]
    backendRefs: [{name: api, port: 80}]
  - backendRefs: [{name: api, port: 80}]
"#,
    );
    // `tier`: the claim `tier` chooses the rule, once it is a header.
    out.push_str(
        r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: tier}
spec:
  parentRefs: [{name: gw}]
  hostnames: [tier.test]
  rules:
  - matches: [{headers: [{name: x-tier, value: gold}]}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: x-rule, value: gold}]}
    backendRefs: [{name: api, port: 80}]
  - backendRefs: [{name: api, port: 80}]
"#,
    );
    out.push_str(&policy(
        "tier",
        &on_route("tier"),
        &provider(uri, "      recomputeRoute: true\n").replace(
            "{header: x-org, claim: org.id}",
            "{header: x-org, claim: org.id}, {header: x-tier, claim: tier}",
        ),
        "",
    ));
    let authz =
        |rules: &str| format!("  authorization:\n    defaultAction: Deny\n    rules:\n{rules}");
    out.push_str(&policy(
        "orders",
        &on_route("orders"),
        &provider(uri, ""),
        &authz(
            "    - {name: readers, action: Allow, operation: {methods: [GET]}}\n    - name: writers\n      action: Allow\n      operation: {methods: [POST]}\n      principal: {jwt: {provider: idp, scopes: [write]}}\n",
        ),
    ));
    out.push_str(&policy("shop", &on_route("shop"), &provider(uri, ""), ""));
    out.push_str(&policy(
        "shop-admin",
        &route_to("HTTPRoute").replace('}', ", name: shop, sectionName: admin}"),
        &provider(uri, ""),
        &authz(
            "    - name: admins\n      action: Allow\n      principal: {jwt: {claims: [{name: groups, valueType: StringArray, values: [admin]}]}}\n",
        ),
    ));
    out.push_str(&policy(
        "fwd",
        &on_route("fwd"),
        &provider(uri, "      forwardOriginalToken: true\n"),
        "",
    ));
    out.push_str(&policy(
        "opt",
        &on_route("opt"),
        &format!("    optional: true\n{}", provider(uri, "")),
        "",
    ));
    out.push_str(&policy(
        "cidr",
        &on_route("cidr"),
        &provider(uri, ""),
        &authz("    - {name: office, action: Allow, principal: {clientCIDRs: [10.0.0.0/8]}}\n"),
    ));
    out.push_str(&policy(
        "cidr-ok",
        &on_route("cidr-ok"),
        &provider(uri, ""),
        &authz("    - {name: local, action: Allow, principal: {clientCIDRs: [127.0.0.0/8]}}\n"),
    ));
    out.push_str(&policy(
        "jar",
        &on_route("jar"),
        &provider(
            uri,
            "      extractFrom: {cookies: [session], params: [access_token]}\n",
        ),
        "",
    ));
    // The Gateway's own policy: a token for every route without one.
    out.push_str(&policy(
        "everywhere",
        &route_to("Gateway").replace('}', ", name: gw}"),
        &provider(uri, ""),
        "",
    ));
    out
}

/// A request to `host` with `headers`: the status and the request the
/// recorder saw for it (empty when none reached it).
async fn send(
    c: &reqwest::Client,
    seen: &std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    method: reqwest::Method,
    url_path: &str,
    host: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let before = seen.lock().unwrap().len();
    let mut req = c
        .request(method, format!("http://{IP}:8080{url_path}"))
        .header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let status = req.send().await.unwrap().status().as_u16();
    let seen = seen.lock().unwrap();
    let got = seen.get(before).cloned().unwrap_or_default();
    (status, got.to_ascii_lowercase())
}

#[tokio::test]
async fn claims_tokens_and_authorization_at_the_gateway() {
    let (port, seen) = recorder(IP).await;
    let key = signer("ES256", "k1");
    let jwks = JwksServer::start(IP, &[&key]).await;
    let weft = Weft::up(IP, &[("all.yaml", &config(&jwks.uri(), port))]);
    let c = client(&[]);
    eventually(
        Duration::from_secs(30),
        "the policies are in force",
        || async {
            send(&c, &seen, reqwest::Method::GET, "/", "plain.test", &[])
                .await
                .0
                == 401
        },
    )
    .await;
    let get = reqwest::Method::GET;
    let alice = token(
        &key,
        "alice",
        json!({"org": {"id": "acme"}, "groups": ["admin"], "scope": "read write"}),
    );
    let bob = token(&key, "bob", json!({"groups": ["dev"], "scope": "read"}));
    let bearer = |t: &str| format!("Bearer {t}");

    // Claims become headers; the client's own copies are dropped; the
    // token does not reach the backend.
    let (status, got) = send(
        &c,
        &seen,
        get.clone(),
        "/",
        "orders.test",
        &[
            ("authorization", &bearer(&alice)),
            ("x-user", "mallory"),
            ("x-org", "evil"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        got.contains("x-user: alice\r\n") && got.contains("x-org: acme\r\n"),
        "{got}"
    );
    assert!(!got.contains("mallory") && !got.contains("evil"), "{got}");
    assert!(!got.contains("authorization"), "{got}");
    // forwardOriginalToken keeps it.
    let (status, got) = send(
        &c,
        &seen,
        get.clone(),
        "/",
        "fwd.test",
        &[("authorization", &bearer(&bob))],
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        got.contains(&format!(
            "authorization: bearer {}",
            bob.to_ascii_lowercase()
        )),
        "{got}"
    );

    // Method and scope: GET for any token, POST with scope write only.
    let post = reqwest::Method::POST;
    let bob_auth = [("authorization", bearer(&bob))];
    let bob_h: Vec<(&str, &str)> = bob_auth.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(
        send(&c, &seen, get.clone(), "/", "orders.test", &bob_h)
            .await
            .0,
        200
    );
    let (status, got) = send(&c, &seen, post.clone(), "/", "orders.test", &bob_h).await;
    assert_eq!((status, got.as_str()), (403, ""));
    let alice_h = [("authorization", bearer(&alice))];
    let alice_h: Vec<(&str, &str)> = alice_h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(
        send(&c, &seen, post, "/", "orders.test", &alice_h).await.0,
        200
    );
    let (status, got) = send(
        &c,
        &seen,
        reqwest::Method::DELETE,
        "/",
        "orders.test",
        &alice_h,
    )
    .await;
    assert_eq!((status, got.as_str()), (403, ""), "no rule allows DELETE");

    // By claim, on one rule of a route (sectionName): bob is not an admin.
    assert_eq!(
        send(&c, &seen, get.clone(), "/admin", "shop.test", &bob_h)
            .await
            .0,
        403
    );
    assert_eq!(
        send(&c, &seen, get.clone(), "/admin", "shop.test", &alice_h)
            .await
            .0,
        200
    );
    assert_eq!(
        send(&c, &seen, get.clone(), "/orders", "shop.test", &bob_h)
            .await
            .0,
        200
    );

    // By client address.
    assert_eq!(
        send(&c, &seen, get.clone(), "/", "cidr.test", &alice_h)
            .await
            .0,
        403
    );
    assert_eq!(
        send(&c, &seen, get.clone(), "/", "cidr-ok.test", &alice_h)
            .await
            .0,
        200
    );

    // Optional: no token passes as anonymous, a bad one does not.
    let (status, got) = send(
        &c,
        &seen,
        get.clone(),
        "/",
        "opt.test",
        &[("x-user", "mallory")],
    )
    .await;
    assert_eq!(status, 200);
    assert!(!got.contains("mallory"), "{got}");
    let bad = format!("{alice}x");
    assert_eq!(
        send(
            &c,
            &seen,
            get.clone(),
            "/",
            "opt.test",
            &[("authorization", &bearer(&bad))]
        )
        .await
        .0,
        401
    );

    // The Gateway's policy guards routes without their own; a route's own
    // policy (optional above) overrides it.
    assert_eq!(
        send(&c, &seen, get.clone(), "/", "plain.test", &[]).await.0,
        401
    );
    assert_eq!(
        send(&c, &seen, get.clone(), "/", "plain.test", &bob_h)
            .await
            .0,
        200
    );

    // Cookies and query parameters, taken out before the backend.
    let cookie = format!("theme=dark; session={bob}");
    let (status, got) = send(
        &c,
        &seen,
        get.clone(),
        "/",
        "jar.test",
        &[("cookie", &cookie)],
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        got.contains("cookie: theme=dark\r\n") && !got.contains("session="),
        "{got}"
    );
    let (status, got) = send(
        &c,
        &seen,
        get.clone(),
        &format!("/q?a=1&access_token={bob}"),
        "jar.test",
        &[],
    )
    .await;
    assert_eq!(status, 200);
    assert!(got.starts_with("get /q?a=1 http/1.1"), "{got}");

    // recomputeRoute: the claim written as a header chooses the rule.
    let gold = token(&key, "gina", json!({"tier": "gold"}));
    let (status, got) = send(
        &c,
        &seen,
        get.clone(),
        "/",
        "tier.test",
        &[("authorization", &bearer(&gold))],
    )
    .await;
    assert_eq!(status, 200);
    assert!(got.contains("x-rule: gold\r\n"), "{got}");
    let (_, got) = send(
        &c,
        &seen,
        get.clone(),
        "/",
        "tier.test",
        &[("authorization", &bearer(&bob)), ("x-tier", "gold")],
    )
    .await;
    assert!(
        !got.contains("x-rule"),
        "a client's own x-tier chose the rule: {got}"
    );

    // gRPC callers get gRPC codes.
    let grpc = [("content-type", "application/grpc")];
    let r = c
        .post(format!("http://{IP}:8080/pkg.Svc/M"))
        .header("host", "plain.test")
        .header(grpc[0].0, grpc[0].1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["grpc-status"], "16");
    let r = c
        .post(format!("http://{IP}:8080/admin/pkg.Svc/M"))
        .header("host", "shop.test")
        .header(grpc[0].0, grpc[0].1)
        .header("authorization", bearer(&bob))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["grpc-status"], "7");

    // Metrics and the access log tell who and why.
    let admin = weft.gateway_admins[0].clone();
    let metrics = text_of(&format!("{admin}/metrics")).await;
    for needle in [
        r#"decision="deny",policy="SecurityPolicy/default/everywhere",reason="jwt_missing""#,
        r#"decision="deny",policy="SecurityPolicy/default/shop-admin",reason="denied_by_default""#,
        r#"decision="allow",policy="SecurityPolicy/default/orders",reason="allowed_by_rule""#,
        r#"decision="deny",policy="SecurityPolicy/default/opt",reason="jwt_invalid""#,
    ] {
        assert!(metrics.contains(needle), "{needle} not in\n{metrics}");
    }
    let line = (0..200)
        .find_map(|_| {
            let l = weft.stdout.recv_timeout(Duration::from_secs(5)).ok()?;
            l.contains(r#""subject":"alice""#).then_some(l)
        })
        .expect("an access-log line with the token's subject");
    assert!(line.contains(r#""policy_rule":"#), "{line}");
}
