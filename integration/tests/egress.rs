//! Egress end to end. The mesh (`weft up`) runs in one network namespace;
//! the partner's servers in another, whose firewall lets in only the
//! egress gateway's address. A real DNS server (dnsmasq) in the mesh's
//! namespace knows the partner's names.
//!
//! With `RegistryOnly`:
//! - an allowed workload calls `http://api.partner.test`: its sidecar
//!   sends the request to the egress gateway over mutual TLS, and the
//!   gateway originates TLS to the partner (SNI right, certificate checked
//!   against the partner's CA) from its own address;
//! - the gateway's AuthorizationPolicy decides by identity and host: a
//!   stranger gets 403 for api.partner.test and 200 for the one host it
//!   is allowed;
//! - `*.files.test` (a wildcard XBackend) reaches each host by its own
//!   name; a partner certificate of another CA fails (503); a name that
//!   does not resolve fails (503, flag DF, counted);
//! - a host nobody declared gets 502 with a body saying why, counted as
//!   `BlackHoleCluster`;
//! - the gateway's metrics carry the caller's principal and the
//!   external host;
//! - the gateway caches answers for their TTL (fewer queries than calls)
//!   and follows a changed record once its TTL is over.
//!
//! With `AllowAny` (weft up started again): the undeclared host is
//! reached straight from the sidecar, the partner is still not (its
//! firewall), and declared hosts still go through the gateway.

mod support;
use std::time::Duration;
use support::egress::*;
use support::netns;
use support::partner::{serve, Dns};
use support::pki::{ca, indent, issue};
use support::*;

const MESH: &str = "10.254.6.1";
const PARTNER: &str = "10.254.6.2";
/// The egress gateway's address: the only one the partner lets in.
const GATEWAY: &str = "10.254.6.9";
/// Two more of the partner's addresses: a server with another CA's
/// certificate, and where api.partner.test moves.
const ROGUE: &str = "10.254.7.3";
const MOVED: &str = "10.254.7.4";
const CLIENT: &str = "127.0.160.10";
const STRANGER: &str = "127.0.160.11";
/// A server in the mesh's namespace that no route declares.
const UNDECLARED: &str = "127.0.160.50:8080";

fn manifests(partner_ca: &str) -> String {
    let backend = |name: &str, host: &str, port: u16, tls: &str| {
        format!(
            r#"---
apiVersion: gateway.networking.x-k8s.io/v1alpha1
kind: XBackend
metadata: {{name: {name}, namespace: weft-system}}
spec:
  type: ExternalHostname
  externalHostname: {{hostname: "{host}"}}
  port: {{number: {port}}}
{tls}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}, namespace: weft-system}}
spec:
  parentRefs: [{{name: egress}}]
  hostnames: ["{host}"]
  rules: [{{backendRefs: [{{group: gateway.networking.x-k8s.io, kind: XBackend, name: {name}}}]}}]
"#
        )
    };
    let checked = "  tls: {mode: ServerOnly, validation: {caCertificateRefs: [{group: \"\", kind: ConfigMap, name: partner-ca}]}}";
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: shop, labels: {{weft.dev/mesh: enabled}}}}
{client}{stranger}---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: weft}}
spec: {{controllerName: weft.dev/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: egress, namespace: weft-system, labels: {{weft.dev/role: egress}}}}
spec:
  gatewayClassName: weft
  addresses: [{{type: IPAddress, value: {GATEWAY}}}]
  listeners:
  - {{name: http, port: 80, protocol: HTTP, allowedRoutes: {{namespaces: {{from: All}}}}}}
  - {{name: tls, port: 443, protocol: TLS, tls: {{mode: Passthrough}}}}
  - {{name: tcp, port: 9000, protocol: TCP}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: partner-ca, namespace: weft-system}}
data:
  ca.crt: |
{ca}{api}{files}{plain}{rogue}{nowhere}---
apiVersion: gateway.networking.x-k8s.io/v1alpha1
kind: XBackend
metadata: {{name: secure, namespace: weft-system}}
spec:
  type: ExternalHostname
  externalHostname: {{hostname: secure.partner.test}}
  port: {{number: 443}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {{name: secure, namespace: weft-system}}
spec:
  parentRefs: [{{name: egress, sectionName: tls}}]
  hostnames: [secure.partner.test]
  rules: [{{backendRefs: [{{group: gateway.networking.x-k8s.io, kind: XBackend, name: secure}}]}}]
---
apiVersion: gateway.networking.x-k8s.io/v1alpha1
kind: XBackend
metadata: {{name: plain-tcp, namespace: weft-system}}
spec:
  type: ExternalHostname
  externalHostname: {{hostname: plain.partner.test}}
  port: {{number: 8080}}
  protocol: TCP
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {{name: plain-tcp, namespace: weft-system}}
spec:
  parentRefs: [{{name: egress, sectionName: tcp}}]
  rules: [{{backendRefs: [{{group: gateway.networking.x-k8s.io, kind: XBackend, name: plain-tcp}}]}}]
---
apiVersion: weft.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {{name: partner-callers, namespace: weft-system}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: Gateway, name: egress}}]
  action: Allow
  rules:
  - sources: [{{type: ServiceAccount, serviceAccount: {{namespace: shop, name: client}}}}]
  - sources: [{{type: ServiceAccount, serviceAccount: {{namespace: shop, name: stranger}}}}]
    hosts: [plain.partner.test]
"#,
        client = support::clusterset::caller("client", CLIENT, &[]),
        stranger = support::clusterset::caller("stranger", STRANGER, &[]),
        ca = indent(partner_ca),
        api = backend("api", "api.partner.test", 443, checked),
        files = backend("files", "*.files.test", 443, checked),
        plain = backend("plain", "plain.partner.test", 8080, ""),
        rogue = backend("rogue", "rogue.partner.test", 443, checked),
        nowhere = backend("nowhere", "nowhere.partner.test", 443, checked),
    )
}

#[tokio::test]
async fn the_mesh_leaves_through_its_egress_gateway() {
    if !netns::available() || !has_dnsmasq() {
        return cannot_run("root, ip, iptables, setpriv, curl, openssl and dnsmasq are needed");
    }
    let (mesh, outside) = (netns::Netns::bare("egm"), netns::Netns::bare("egx"));
    let (mesh_if, outside_if) = mesh.link(MESH, &outside, PARTNER);
    let n = |ns: &netns::Netns, args: &[&str]| {
        let mut full = vec!["-n", ns.name.as_str()];
        full.extend(args);
        netns::must("ip", &full);
    };
    n(
        &mesh,
        &["addr", "add", &format!("{GATEWAY}/32"), "dev", &mesh_if],
    );
    n(
        &mesh,
        &["route", "add", "10.254.7.0/24", "via", PARTNER, "src", MESH],
    );
    for ip in [ROGUE, MOVED] {
        n(
            &outside,
            &["addr", "add", &format!("{ip}/32"), "dev", &outside_if],
        );
    }
    n(
        &outside,
        &["route", "add", &format!("{GATEWAY}/32"), "via", MESH],
    );
    for rule in [
        vec!["-A", "INPUT", "-p", "tcp", "-s", GATEWAY, "-j", "ACCEPT"],
        vec![
            "-A",
            "INPUT",
            "-p",
            "tcp",
            "-j",
            "REJECT",
            "--reject-with",
            "tcp-reset",
        ],
    ] {
        let mut full = vec!["netns", "exec", outside.name.as_str(), "iptables"];
        full.extend(rule);
        netns::must("ip", &full);
    }

    // The partner: its CA, its servers; a rogue server of another CA.
    let partner_ca = ca();
    let names = [
        "api.partner.test",
        "eu.files.test",
        "us.files.test",
        "secure.partner.test",
    ];
    let cert = issue(&partner_ca, &names, &[]);
    serve(
        &outside.name,
        &format!("{PARTNER}:443"),
        "partner",
        Some(&cert),
    );
    serve(&outside.name, &format!("{PARTNER}:8080"), "plain", None);
    serve(&outside.name, &format!("{MOVED}:443"), "moved", Some(&cert));
    let rogue = issue(&ca(), &["rogue.partner.test"], &[]);
    serve(
        &outside.name,
        &format!("{ROGUE}:443"),
        "rogue",
        Some(&rogue),
    );
    // A server inside the mesh's namespace that nothing declares.
    serve(&mesh.name, UNDECLARED, "undeclared", None);

    let records = |api: &'static str| {
        [
            ("api.partner.test", api),
            ("plain.partner.test", PARTNER),
            ("rogue.partner.test", ROGUE),
            ("secure.partner.test", PARTNER),
        ]
    };
    let dns = Dns::start(
        &mesh.name,
        ("127.0.0.1", 5353),
        &records(PARTNER),
        &[("files.test", PARTNER)],
        &["partner.test"],
        2,
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("all.yaml"), manifests(&partner_ca.pem)).unwrap();
    let registry_only = [
        "--dns",
        "127.0.0.1:5353",
        "--outbound-traffic-policy",
        "RegistryOnly",
    ];
    let weft = Weft::start_in(
        Some(&mesh.name),
        dir.path(),
        "127.0.160.1",
        &[],
        &registry_only,
    );
    let ns = mesh.name.clone();

    eventually(
        Duration::from_secs(30),
        "the partner answers the client",
        || async { call(&ns, CLIENT, "http://api.partner.test/hello").await.0 == 200 },
    )
    .await;
    let (status, body) = call(&ns, CLIENT, "http://api.partner.test/hello").await;
    let seen = json(&body);
    assert_eq!(status, 200, "{body}");
    assert_eq!(seen["server"], "partner", "{body}");
    assert_eq!(seen["sni"], "api.partner.test", "{body}");
    assert_eq!(seen["host"], "api.partner.test", "{body}");
    assert_eq!(seen["path"], "/hello", "{body}");
    // It left from the gateway's address (the only one let in).
    assert_eq!(seen["peer"], GATEWAY, "{body}");

    // Identity and host decide.
    assert_eq!(call(&ns, STRANGER, "http://api.partner.test/").await.0, 403);
    let (status, body) = call(&ns, STRANGER, "http://plain.partner.test/").await;
    assert_eq!(
        (status, json(&body)["server"].as_str()),
        (200, Some("plain")),
        "{body}"
    );

    // A wildcard: each host by its own name.
    for host in ["eu.files.test", "us.files.test"] {
        let (status, body) = call(&ns, CLIENT, &format!("http://{host}/f")).await;
        let seen = json(&body);
        assert_eq!((status, seen["sni"].as_str()), (200, Some(host)), "{body}");
        assert_eq!(seen["host"], host, "{body}");
    }

    // Another CA's certificate, and a name with no address: 503.
    assert_eq!(call(&ns, CLIENT, "http://rogue.partner.test/").await.0, 503);
    assert_eq!(
        call(&ns, CLIENT, "http://nowhere.partner.test/").await.0,
        503
    );

    // Nobody declared it: refused, saying why.
    let (status, body) = call(&ns, CLIENT, &format!("http://{UNDECLARED}/")).await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body.contains("not declared") && body.contains("RegistryOnly"),
        "{body}"
    );

    // The workload's own TLS, passed through by its server name: the
    // workload checks the partner's certificate itself.
    let answer = tunnel(
        &ns,
        CLIENT,
        "secure.partner.test:443",
        Some(("secure.partner.test", &partner_ca.pem)),
    )
    .await;
    let seen = body_of(answer.as_deref().unwrap_or(""));
    assert_eq!(seen["sni"], "secure.partner.test", "{answer:?}");
    assert_eq!(seen["peer"], GATEWAY, "{answer:?}");
    // A name the gateway does not route, inside a declared CONNECT: the
    // gateway closes it. A caller the policy does not allow: the same.
    let evil = tunnel(
        &ns,
        CLIENT,
        "secure.partner.test:443",
        Some(("evil.partner.test", &partner_ca.pem)),
    )
    .await;
    assert!(
        evil.as_ref().is_err_and(|e| e.starts_with("TLS")),
        "{evil:?}"
    );
    let stranger = tunnel(
        &ns,
        STRANGER,
        "secure.partner.test:443",
        Some(("secure.partner.test", &partner_ca.pem)),
    )
    .await;
    assert!(
        stranger.as_ref().is_err_and(|e| e.starts_with("TLS")),
        "{stranger:?}"
    );
    // A whole TCP connection (a TCPRoute on the gateway's TCP port).
    let tcp = tunnel(&ns, CLIENT, "plain.partner.test:9000", None).await;
    let seen = body_of(tcp.as_deref().unwrap_or(""));
    assert_eq!(
        (seen["server"].as_str(), seen["peer"].as_str()),
        (Some("plain"), Some(GATEWAY)),
        "{tcp:?}"
    );
    // A CONNECT to a host nobody declared: 502, saying why.
    let undeclared = tunnel(&ns, CLIENT, "other.partner.test:443", None).await;
    assert!(
        undeclared
            .as_ref()
            .is_err_and(|e| e.starts_with("HTTP/1.1 502") && e.contains("not declared")),
        "{undeclared:?}"
    );

    // Who called which external host: the gateway counts by caller, and
    // the caller's sidecar (Istio's source report) names both too.
    let gateway_admin = weft.gateway_admins[0].clone();
    let metrics = admin_text(&ns, format!("{gateway_admin}/metrics")).await;
    let has = |text: &str, family: &str, needles: &[&str]| {
        text.lines()
            .any(|l| l.starts_with(family) && needles.iter().all(|n| l.contains(n)))
    };
    let client_id = "source_principal=\"spiffe://cluster.local/ns/shop/sa/client\"";
    let stranger_id = "source_principal=\"spiffe://cluster.local/ns/shop/sa/stranger\"";
    let api = "destination_service=\"api.partner.test\"";
    let egress = "weft_egress_requests_total{";
    assert!(
        has(&metrics, egress, &[client_id, api, "response_code=\"200\""]),
        "{metrics}"
    );
    assert!(
        has(
            &metrics,
            egress,
            &[stranger_id, api, "response_code=\"403\""]
        ),
        "{metrics}"
    );
    let nowhere = [
        "destination_service=\"nowhere.partner.test\"",
        "response_code=\"503\"",
        "response_flags=\"DF\"",
    ];
    assert!(
        has(&metrics, "istio_requests_total{", &nowhere),
        "{metrics}"
    );
    // The client's sidecar counts the refusal as BlackHoleCluster.
    let sidecar = admin_text(&ns, format!("http://{CLIENT}:15020/metrics")).await;
    let istio = "istio_requests_total{";
    let blackhole = [
        "destination_service=\"BlackHoleCluster\"",
        "response_code=\"502\"",
    ];
    assert!(has(&sidecar, istio, &blackhole), "{sidecar}");
    let refused = ["destination_service=\"BlackHoleCluster\"", "} 1"];
    assert!(
        has(&sidecar, "weft_blackhole_connections_total{", &refused),
        "{sidecar}"
    );
    assert!(
        has(&sidecar, istio, &[client_id, api, "response_code=\"200\""]),
        "{sidecar}"
    );

    // Answers are cached for their TTL: ten calls at once ask DNS far
    // fewer times than ten.
    let before = dns.queries("api.partner.test");
    for _ in 0..10 {
        assert_eq!(call(&ns, CLIENT, "http://api.partner.test/").await.0, 200);
    }
    let asked = dns.queries("api.partner.test") - before;
    assert!(asked <= 3, "{asked} queries for 10 calls");
    // A changed record is followed once its TTL is over.
    dns.set(&records(MOVED));
    eventually(
        Duration::from_secs(15),
        "calls follow the new address",
        || async {
            let (_, body) = call(&ns, CLIENT, "http://api.partner.test/").await;
            json(&body)["server"] == "moved"
        },
    )
    .await;

    // AllowAny: the undeclared host is reached from the sidecar itself;
    // the partner still is not (only the gateway gets in).
    weft.sigterm();
    drop(weft);
    let allow_any = [
        "--dns",
        "127.0.0.1:5353",
        "--outbound-traffic-policy",
        "AllowAny",
    ];
    let _weft = Weft::start_in(Some(&mesh.name), dir.path(), "127.0.160.1", &[], &allow_any);
    eventually(
        Duration::from_secs(30),
        "the undeclared host passes",
        || async {
            let (status, body) = call(&ns, CLIENT, &format!("http://{UNDECLARED}/")).await;
            status == 200 && json(&body)["server"] == "undeclared"
        },
    )
    .await;
    let (status, body) = call(&ns, CLIENT, &format!("http://{PARTNER}:8080/")).await;
    assert_ne!(status, 200, "{body}");
    // A CONNECT to it passes too, as a tunnel.
    let through = tunnel(&ns, CLIENT, UNDECLARED, None).await;
    assert_eq!(
        body_of(through.as_deref().unwrap_or(""))["server"],
        "undeclared",
        "{through:?}"
    );
    let (status, body) = call(&ns, CLIENT, "http://plain.partner.test/").await;
    assert_eq!(
        (status, json(&body)["peer"].as_str()),
        (200, Some(GATEWAY)),
        "{body}"
    );
}

/// `examples/egress/up.sh` brings the example up: client reaches the
/// partner in plain HTTP and in its own TLS, stranger is refused, an
/// undeclared host is refused; SIGTERM takes it all down.
#[tokio::test]
async fn the_example_leaves_through_its_egress_gateway() {
    if !netns::available() || !has_dnsmasq() {
        return cannot_run("root, ip, iptables, setpriv, curl, openssl and dnsmasq are needed");
    }
    let prefix = format!("wegx{}", std::process::id() % 100_000);
    let work = tempfile::tempdir().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/egress/up.sh");
    let up = std::process::Command::new("bash")
        .arg(script)
        .env("WEFT", WEFT)
        .env("PREFIX", &prefix)
        .env("WORK", work.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut up = Stopped(Some(up));
    let ns = format!("{prefix}-mesh");
    let (client, stranger) = ("127.0.70.10", "127.0.70.11");
    let made = format!("/var/run/netns/{ns}");
    eventually(
        Duration::from_secs(60),
        "the partner answers client",
        || async {
            std::path::Path::new(&made).exists()
                && call(&ns, client, "http://api.partner.test/hello.txt").await
                    == (200, "hello from the partner\n".to_string())
        },
    )
    .await;
    eventually(Duration::from_secs(30), "stranger is refused", || async {
        call(&ns, stranger, "http://api.partner.test/hello.txt")
            .await
            .0
            == 403
    })
    .await;
    let undeclared = call(&ns, client, "http://example.com/").await;
    assert!(
        undeclared.0 == 502 && undeclared.1.contains("not declared"),
        "{undeclared:?}"
    );
    let ca = std::fs::read_to_string(work.path().join("partner/ca.crt")).unwrap();
    let own = tunnel_to(
        &ns,
        client,
        "secure.partner.test:443",
        Some(("secure.partner.test", &ca)),
        "/hello.txt",
    )
    .await;
    assert!(
        own.as_ref()
            .is_ok_and(|a| a.contains("hello from the partner")),
        "{own:?}"
    );
    // SIGTERM: everything stops and the namespaces go.
    let child = up.0.take().unwrap();
    let done = tokio::task::spawn_blocking(move || Stopped(Some(child)).stop()).await;
    assert!(done.unwrap().is_ok());
    assert!(!std::path::Path::new(&made).exists());
}
