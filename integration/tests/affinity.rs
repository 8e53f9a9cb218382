//! Affinity on real processes: consistent hashing on a header keeps each
//! user on one endpoint and spreads users over all of them; on a cookie,
//! a client without one is given one; session persistence (an HTTPRoute
//! rule's `sessionPersistence`) keeps 100 requests on one endpoint, by
//! cookie or by header, and moves them when that endpoint dies (SIGKILL),
//! the session following to the new one.

mod support;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use support::*;

/// Three `weft echo` Workloads `reviews-{1,2,3}` on `ip_prefix.{11,12,13}`
/// behind the Service `reviews`, a Gateway on 8080, and `routes`.
fn manifests(ip_prefix: &str, routes: &str, policy: &str) -> String {
    let mut out = gateway("  listeners:\n  - {name: http, port: 8080, protocol: HTTP}\n");
    for i in 1..=3 {
        let ip = format!("{ip_prefix}.1{i}");
        out += &format!(
            "---\napiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata: {{name: reviews-{i}, labels: {{app: reviews}}}}\nspec:\n  address: {ip}\n  command: [weft, echo, --listen, \"{ip}:9080\"]\n  ports: [{{name: http, containerPort: 9080}}]\n"
        );
    }
    out += "---\napiVersion: v1\nkind: Service\nmetadata: {name: reviews}\nspec: {selector: {app: reviews}, ports: [{name: http, port: 80, targetPort: http}]}\n";
    out + routes + policy
}

/// GET with `host` and `headers`; the status, the pod, and the answer's
/// headers.
async fn call(
    c: &reqwest::Client,
    url: &str,
    host: &str,
    headers: &[(&str, String)],
) -> (u16, String, reqwest::header::HeaderMap) {
    let mut req = c.get(url).header("host", host);
    for (name, value) in headers {
        req = req.header(*name, value);
    }
    let Ok(r) = req.send().await else {
        return (0, String::new(), Default::default());
    };
    let status = r.status().as_u16();
    let answer = r.headers().clone();
    let body: serde_json::Value = r.json().await.unwrap_or_default();
    (
        status,
        body["pod"].as_str().unwrap_or("").to_string(),
        answer,
    )
}

async fn all_three(c: &reqwest::Client, url: &str, host: &str) {
    eventually(
        Duration::from_secs(30),
        "all three endpoints answer",
        || async {
            let mut pods = BTreeSet::new();
            for i in 0..12 {
                let user = format!("probe-{i}");
                pods.insert(call(c, url, host, &[("x-user", user)]).await.1);
            }
            pods.len() == 3
        },
    )
    .await;
}

#[tokio::test]
async fn consistent_hashing_keeps_each_key_on_one_endpoint() {
    let ip = "127.0.133.1";
    let routes = route("reviews", "hash.example.com", "reviews");
    let header = "---\napiVersion: weft.dev/v1alpha1\nkind: BackendTrafficPolicy\nmetadata: {name: hash}\nspec:\n  targetRefs: [{group: \"\", kind: Service, name: reviews}]\n  loadBalancer:\n    type: ConsistentHash\n    consistentHash: {type: Header, header: {name: x-user}, tableSize: 251}\n";
    let _weft = Weft::up(
        ip,
        &[(
            "all.yaml",
            &manifests("127.0.133", &format!("---\n{routes}"), header),
        )],
    );
    let c = client(&[]);
    let url = format!("http://{ip}:8080/");
    all_three(&c, &url, "hash.example.com").await;
    let mut by_user = BTreeMap::new();
    for round in 0..5 {
        for u in 0..30 {
            let user = format!("user-{u}");
            let (status, pod, _) =
                call(&c, &url, "hash.example.com", &[("x-user", user.clone())]).await;
            assert_eq!(status, 200);
            let first = by_user.entry(user.clone()).or_insert(pod.clone());
            assert_eq!(*first, pod, "{user} moved in round {round}");
        }
    }
    let pods: BTreeSet<_> = by_user.values().collect();
    assert_eq!(pods.len(), 3, "30 users over three endpoints: {by_user:?}");
}

#[tokio::test]
async fn a_hashing_cookie_is_given_and_then_followed() {
    let ip = "127.0.134.1";
    let routes = route("reviews", "cookie.example.com", "reviews");
    let policy = "---\napiVersion: weft.dev/v1alpha1\nkind: BackendTrafficPolicy\nmetadata: {name: hash}\nspec:\n  targetRefs: [{group: \"\", kind: Service, name: reviews}]\n  loadBalancer:\n    type: ConsistentHash\n    consistentHash: {type: Cookie, cookie: {name: affinity, ttl: 1h}}\n";
    let _weft = Weft::up(
        ip,
        &[(
            "all.yaml",
            &manifests("127.0.134", &format!("---\n{routes}"), policy),
        )],
    );
    let c = client(&[]);
    let url = format!("http://{ip}:8080/");
    eventually(Duration::from_secs(30), "the route answers", || async {
        call(&c, &url, "cookie.example.com", &[]).await.0 == 200
    })
    .await;
    let mut pods = BTreeSet::new();
    for _ in 0..10 {
        let (status, pod, headers) = call(&c, &url, "cookie.example.com", &[]).await;
        assert_eq!(status, 200);
        let set = headers["set-cookie"].to_str().unwrap().to_string();
        assert!(
            set.starts_with("affinity=") && set.contains("Max-Age=3600"),
            "{set}"
        );
        let cookie = set.split(';').next().unwrap().to_string();
        // The client's next requests carry it, and stay where the first went.
        for _ in 0..10 {
            let (_, again, headers) = call(
                &c,
                &url,
                "cookie.example.com",
                &[("cookie", cookie.clone())],
            )
            .await;
            assert_eq!(again, pod);
            assert!(headers.get("set-cookie").is_none());
        }
        pods.insert(pod);
    }
    assert!(pods.len() > 1, "new clients spread: {pods:?}");
}

/// A route whose rule keeps sessions by `session` (YAML flow mapping).
fn session_route(host: &str, session: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: sessions}}\nspec:\n  parentRefs: [{{name: gw}}]\n  hostnames: [{host}]\n  rules:\n  - matches: [{{path: {{type: PathPrefix, value: /shop}}}}]\n    backendRefs: [{{name: reviews, port: 80}}]\n    sessionPersistence: {session}\n"
    )
}

/// Pins a session (the carrier is a cookie unless `header`), keeps 100
/// requests on its endpoint, kills that endpoint and checks that the
/// session moves to one other endpoint and stays there.
async fn sessions_hold_and_move(ip: &str, prefix: &str, header: bool) {
    let host = "shop.example.com";
    let session = match header {
        true => "{sessionName: x-shop-session, type: Header, idleTimeout: 10m}",
        false => {
            "{sessionName: shop, absoluteTimeout: 1h, cookieConfig: {lifetimeType: Permanent}}"
        }
    };
    let _weft = Weft::up(
        ip,
        &[(
            "all.yaml",
            &manifests(prefix, &session_route(host, session), ""),
        )],
    );
    let c = client(&[]);
    let url = format!("http://{ip}:8080/shop");
    eventually(Duration::from_secs(30), "the route answers", || async {
        call(&c, &url, host, &[]).await.0 == 200
    })
    .await;
    // The carrier of the session an answer gives.
    let carrier = |headers: &reqwest::header::HeaderMap| -> (&'static str, String) {
        if header {
            let token = headers["x-shop-session"].to_str().unwrap().to_string();
            ("x-shop-session", token)
        } else {
            let set = headers["set-cookie"].to_str().unwrap();
            assert!(
                set.contains("Path=/shop") && set.contains("HttpOnly") && set.contains("Max-Age="),
                "{set}"
            );
            ("cookie", set.split(';').next().unwrap().to_string())
        }
    };
    let (_, pod, headers) = call(&c, &url, host, &[]).await;
    let mut held = carrier(&headers);
    for _ in 0..100 {
        let (status, again, headers) = call(&c, &url, host, &[(held.0, held.1.clone())]).await;
        assert_eq!((status, again.as_str()), (200, pod.as_str()));
        held = carrier(&headers);
    }
    // The pinned endpoint dies: the session goes elsewhere and stays.
    let ip_of = |pod: &str| format!("{prefix}.1{}:9080", pod.trim_start_matches("reviews-"));
    let pid = pid_of(&ip_of(&pod)).expect("the pinned endpoint runs");
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let (status, moved, headers) = call(&c, &url, host, &[(held.0, held.1.clone())]).await;
    assert_eq!(status, 200, "a retry on another endpoint");
    assert_ne!(moved, pod);
    let held = carrier(&headers);
    for _ in 0..50 {
        let (status, again, _) = call(&c, &url, host, &[(held.0, held.1.clone())]).await;
        assert_eq!((status, again.as_str()), (200, moved.as_str()));
    }
}

#[tokio::test]
async fn a_cookie_session_keeps_its_endpoint_and_moves_when_it_dies() {
    sessions_hold_and_move("127.0.135.1", "127.0.135", false).await;
}

#[tokio::test]
async fn a_header_session_keeps_its_endpoint_and_moves_when_it_dies() {
    sessions_hold_and_move("127.0.136.1", "127.0.136", true).await;
}
