//! `weft conformance-report`: the Gateway API features weft implements, in
//! the shape of the upstream suite's `ConformanceReport`, profile by
//! profile. The upstream suite needs a Kubernetes cluster and has not been
//! run against weft, so the report carries no upstream results and says
//! so. A feature is listed as supported only where one of weft's own
//! end-to-end tests sends traffic that exercises it: such a test says so in
//! a `/// Conformance: <feature>, ...` line above it, and the report reads
//! those lines from the test sources (built into this binary) and names
//! each test as the feature's evidence. A feature no test exercises is
//! listed as unsupported, with why.

use serde::Serialize;
use std::collections::BTreeMap;

/// The Gateway API release whose resources weft reads (through the
/// `gateway-api` crate).
pub const GATEWAY_API_VERSION: &str = "v1.5.1";

/// The end-to-end tests, as built into the binary: (path, source).
const TESTS: &[(&str, &str)] = &[
    (
        "integration/tests/affinity.rs",
        include_str!("../../integration/tests/affinity.rs"),
    ),
    (
        "integration/tests/backend_tls.rs",
        include_str!("../../integration/tests/backend_tls.rs"),
    ),
    (
        "integration/tests/bench_smoke.rs",
        include_str!("../../integration/tests/bench_smoke.rs"),
    ),
    (
        "integration/tests/capture.rs",
        include_str!("../../integration/tests/capture.rs"),
    ),
    (
        "integration/tests/cli.rs",
        include_str!("../../integration/tests/cli.rs"),
    ),
    (
        "integration/tests/client_certs.rs",
        include_str!("../../integration/tests/client_certs.rs"),
    ),
    (
        "integration/tests/distribution.rs",
        include_str!("../../integration/tests/distribution.rs"),
    ),
    (
        "integration/tests/egress.rs",
        include_str!("../../integration/tests/egress.rs"),
    ),
    (
        "integration/tests/filters.rs",
        include_str!("../../integration/tests/filters.rs"),
    ),
    (
        "integration/tests/forwarding.rs",
        include_str!("../../integration/tests/forwarding.rs"),
    ),
    (
        "integration/tests/grpc.rs",
        include_str!("../../integration/tests/grpc.rs"),
    ),
    (
        "integration/tests/hostile.rs",
        include_str!("../../integration/tests/hostile.rs"),
    ),
    (
        "integration/tests/jwt_policies.rs",
        include_str!("../../integration/tests/jwt_policies.rs"),
    ),
    (
        "integration/tests/jwt_tokens.rs",
        include_str!("../../integration/tests/jwt_tokens.rs"),
    ),
    (
        "integration/tests/k8s_controller.rs",
        include_str!("../../integration/tests/k8s_controller.rs"),
    ),
    (
        "integration/tests/k8s_gateways.rs",
        include_str!("../../integration/tests/k8s_gateways.rs"),
    ),
    (
        "integration/tests/k8s_identity.rs",
        include_str!("../../integration/tests/k8s_identity.rs"),
    ),
    (
        "integration/tests/k8s_injection.rs",
        include_str!("../../integration/tests/k8s_injection.rs"),
    ),
    (
        "integration/tests/l4.rs",
        include_str!("../../integration/tests/l4.rs"),
    ),
    (
        "integration/tests/lifecycle.rs",
        include_str!("../../integration/tests/lifecycle.rs"),
    ),
    (
        "integration/tests/mesh.rs",
        include_str!("../../integration/tests/mesh.rs"),
    ),
    (
        "integration/tests/mesh_authz.rs",
        include_str!("../../integration/tests/mesh_authz.rs"),
    ),
    (
        "integration/tests/mesh_h2.rs",
        include_str!("../../integration/tests/mesh_h2.rs"),
    ),
    (
        "integration/tests/mesh_proxies.rs",
        include_str!("../../integration/tests/mesh_proxies.rs"),
    ),
    (
        "integration/tests/multicluster.rs",
        include_str!("../../integration/tests/multicluster.rs"),
    ),
    (
        "integration/tests/multicluster_networks.rs",
        include_str!("../../integration/tests/multicluster_networks.rs"),
    ),
    (
        "integration/tests/normalization.rs",
        include_str!("../../integration/tests/normalization.rs"),
    ),
    (
        "integration/tests/plugged_ca.rs",
        include_str!("../../integration/tests/plugged_ca.rs"),
    ),
    (
        "integration/tests/reload.rs",
        include_str!("../../integration/tests/reload.rs"),
    ),
    (
        "integration/tests/resilience.rs",
        include_str!("../../integration/tests/resilience.rs"),
    ),
    (
        "integration/tests/retries.rs",
        include_str!("../../integration/tests/retries.rs"),
    ),
    (
        "integration/tests/routing.rs",
        include_str!("../../integration/tests/routing.rs"),
    ),
    (
        "integration/tests/tracing.rs",
        include_str!("../../integration/tests/tracing.rs"),
    ),
    (
        "integration/tests/traffic.rs",
        include_str!("../../integration/tests/traffic.rs"),
    ),
];

const MARKER: &str = "/// Conformance:";

/// Each feature key some test claims, with the tests (`file::function`)
/// that claim it.
fn evidence() -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (path, source) in TESTS {
        let mut pending: Vec<String> = Vec::new();
        for line in source.lines() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix(MARKER) {
                pending.extend(
                    rest.split(',')
                        .map(str::trim)
                        .filter(|k| !k.is_empty())
                        .map(str::to_string),
                );
            } else if let Some(name) = function_name(line) {
                for key in pending.drain(..) {
                    out.entry(key).or_default().push(format!("{path}::{name}"));
                }
            }
        }
    }
    out
}

/// The name of the function a line declares, if it does.
fn function_name(line: &str) -> Option<&str> {
    let rest = line
        .strip_prefix("async fn ")
        .or_else(|| line.strip_prefix("fn "))?;
    rest.split('(').next()
}

/// A feature of a profile: its name, the key tests claim it by (its name,
/// but for the mesh profiles' core route kinds), and why weft does not
/// support it when no test exercises it.
struct Feature {
    name: &'static str,
    key: &'static str,
    why_not: &'static str,
}

/// A feature weft means to support: supported once a test exercises it.
const fn f(name: &'static str) -> Feature {
    Feature {
        name,
        key: name,
        why_not: "no end-to-end test exercises it yet",
    }
}

/// A feature that tests claim by another key than its name.
const fn keyed(name: &'static str, key: &'static str) -> Feature {
    Feature {
        name,
        key,
        why_not: "no end-to-end test exercises it yet",
    }
}

/// A feature weft does not implement.
const fn no(name: &'static str, why_not: &'static str) -> Feature {
    Feature {
        name,
        key: "",
        why_not,
    }
}

/// Extended features every GATEWAY-* profile shares.
const GATEWAY_EXTENDED: &[Feature] = &[
    f("GatewayPort8080"),
    f("GatewayStaticAddresses"),
    f("GatewayHTTPListenerIsolation"),
    no(
        "GatewayInfrastructurePropagation",
        "no infrastructure is provisioned per Gateway",
    ),
    f("GatewayAddressEmpty"),
    f("GatewayHTTPSListenerDetectMisdirectedRequests"),
    f("ListenerSet"),
    f("GatewayBackendClientCertificate"),
    f("GatewayFrontendClientCertificateValidation"),
    f("GatewayFrontendClientCertificateValidationInsecureFallback"),
];

const HTTP_EXTENDED: &[Feature] = &[
    no("HTTPRouteDestinationPortMatching", "not yet"),
    f("HTTPRouteBackendRequestHeaderModification"),
    f("HTTPRouteQueryParamMatching"),
    f("HTTPRouteMethodMatching"),
    f("HTTPRouteResponseHeaderModification"),
    f("HTTPRoutePortRedirect"),
    f("HTTPRouteSchemeRedirect"),
    f("HTTPRoutePathRedirect"),
    f("HTTPRouteHostRewrite"),
    f("HTTPRoutePathRewrite"),
    f("HTTPRouteRequestMirror"),
    f("HTTPRouteRequestMultipleMirrors"),
    f("HTTPRouteRequestPercentageMirror"),
    f("HTTPRouteRequestTimeout"),
    f("HTTPRouteBackendTimeout"),
    f("HTTPRouteParentRefPort"),
    f("HTTPRouteBackendProtocolH2C"),
    f("HTTPRouteBackendProtocolWebSocket"),
    f("HTTPRouteNamedRouteRule"),
    f("HTTPRouteCORS"),
    f("HTTPRoute303RedirectStatusCode"),
    f("HTTPRoute307RedirectStatusCode"),
    f("HTTPRoute308RedirectStatusCode"),
    f("HTTPRouteRetry"),
    f("HTTPRouteRetryBackendTimeout"),
    f("HTTPRouteRetryConnectionError"),
    f("BackendTLSPolicy"),
    f("BackendTLSPolicySANValidation"),
];

const TLS_EXTENDED: &[Feature] = &[f("TLSRouteModeTerminate"), f("TLSRouteModeMixed")];

const GRPC_EXTENDED: &[Feature] = &[f("GRPCRouteNamedRouteRule")];

const MESH_EXTENDED: &[Feature] = &[
    no(
        "MeshClusterIPMatching",
        "standalone mode has no cluster IPs",
    ),
    f("MeshConsumerRoute"),
    f("MeshHTTPRouteRewritePath"),
    f("MeshHTTPRouteSchemeRedirect"),
    f("MeshHTTPRouteRedirectPort"),
    f("MeshHTTPRouteRedirectPath"),
    f("MeshHTTPRouteBackendRequestHeaderModification"),
    f("MeshHTTPRouteQueryParamMatching"),
    f("MeshHTTPRouteNamedRouteRule"),
];

/// A profile: its core features (all implemented, or the profile is not
/// claimed) and its extended ones.
struct Profile {
    name: &'static str,
    core: &'static [Feature],
    extended: &'static [&'static [Feature]],
}

const PROFILES: &[Profile] = &[
    Profile {
        name: "GATEWAY-HTTP",
        core: &[f("Gateway"), f("ReferenceGrant"), f("HTTPRoute")],
        extended: &[GATEWAY_EXTENDED, HTTP_EXTENDED],
    },
    Profile {
        name: "GATEWAY-TLS",
        core: &[f("Gateway"), f("ReferenceGrant"), f("TLSRoute")],
        extended: &[GATEWAY_EXTENDED, TLS_EXTENDED],
    },
    Profile {
        name: "GATEWAY-GRPC",
        core: &[f("Gateway"), f("ReferenceGrant"), f("GRPCRoute")],
        extended: &[GATEWAY_EXTENDED, GRPC_EXTENDED],
    },
    Profile {
        name: "GATEWAY-TCP",
        core: &[f("Gateway"), f("ReferenceGrant"), f("TCPRoute")],
        extended: &[GATEWAY_EXTENDED],
    },
    Profile {
        name: "GATEWAY-UDP",
        core: &[
            f("Gateway"),
            f("ReferenceGrant"),
            no("UDPRoute", "weft does not proxy UDP"),
        ],
        extended: &[GATEWAY_EXTENDED],
    },
    Profile {
        name: "MESH-HTTP",
        core: &[f("Mesh"), keyed("HTTPRoute", "Mesh/HTTPRoute")],
        extended: &[MESH_EXTENDED],
    },
    Profile {
        name: "MESH-GRPC",
        core: &[f("Mesh"), keyed("GRPCRoute", "Mesh/GRPCRoute")],
        extended: &[MESH_EXTENDED],
    },
];

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    api_version: &'static str,
    kind: &'static str,
    date: String,
    #[serde(rename = "gatewayAPIVersion")]
    gateway_api_version: &'static str,
    #[serde(rename = "gatewayAPIChannel")]
    gateway_api_channel: &'static str,
    implementation: Implementation,
    mode: &'static str,
    profiles: Vec<ProfileReport>,
}

#[derive(Serialize)]
struct Implementation {
    organization: &'static str,
    project: &'static str,
    url: &'static str,
    version: &'static str,
    contact: Vec<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ProfileReport {
    name: &'static str,
    summary: String,
    core: CoreReport,
    extended: ExtendedReport,
    /// For each feature, the weft tests that send traffic exercising it,
    /// or why it is not supported.
    #[serde(rename = "x-weft-evidence")]
    evidence: BTreeMap<&'static str, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CoreReport {
    supported_features: Vec<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    unsupported_features: Vec<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExtendedReport {
    supported_features: Vec<&'static str>,
    unsupported_features: Vec<&'static str>,
}

fn report(date: String) -> Report {
    let tested = evidence();
    let supported = |f: &Feature| !f.key.is_empty() && tested.contains_key(f.key);
    let profiles = PROFILES
        .iter()
        .map(|p| {
            let extended: Vec<&Feature> = p.extended.iter().flat_map(|f| f.iter()).collect();
            let names = |features: &[&Feature], want: bool| {
                let mut v: Vec<&'static str> = features
                    .iter()
                    .filter(|f| supported(f) == want)
                    .map(|f| f.name)
                    .collect();
                v.sort_unstable();
                v.dedup();
                v
            };
            let core: Vec<&Feature> = p.core.iter().collect();
            let core_missing = names(&core, false);
            let summary = if core_missing.is_empty() {
                format!(
                    "Core features shown by weft's tests; {} of {} extended features. The \
                     upstream conformance suite has not been run (it needs Kubernetes): no \
                     upstream results.",
                    names(&extended, true).len(),
                    extended.len()
                )
            } else {
                format!(
                    "Not claimed: core features missing ({}).",
                    core_missing.join(", ")
                )
            };
            ProfileReport {
                name: p.name,
                summary,
                core: CoreReport {
                    supported_features: names(&core, true),
                    unsupported_features: core_missing,
                },
                extended: ExtendedReport {
                    supported_features: names(&extended, true),
                    unsupported_features: names(&extended, false),
                },
                evidence: core
                    .iter()
                    .chain(&extended)
                    .map(|f| {
                        let why = match tested.get(f.key).filter(|_| !f.key.is_empty()) {
                            Some(tests) => tests.join(", "),
                            None => format!("unsupported: {}", f.why_not),
                        };
                        (f.name, why)
                    })
                    .collect(),
            }
        })
        .collect();
    Report {
        api_version: "gateway.networking.k8s.io/v1",
        kind: "ConformanceReport",
        date,
        gateway_api_version: GATEWAY_API_VERSION,
        gateway_api_channel: "experimental",
        implementation: Implementation {
            organization: "weft",
            project: "weft",
            // From the package metadata, once weft has a public home.
            url: or_unpublished(env!("CARGO_PKG_REPOSITORY")),
            version: env!("CARGO_PKG_VERSION"),
            contact: vec![or_unpublished(env!("CARGO_PKG_AUTHORS"))],
        },
        mode: "default",
        profiles,
    }
}

fn or_unpublished(s: &'static str) -> &'static str {
    if s.is_empty() {
        "unpublished"
    } else {
        s
    }
}

/// The report as YAML.
pub fn render() -> anyhow::Result<String> {
    Ok(serde_yaml::to_string(&report(
        weft_controller::status::now(),
    ))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_features() -> Vec<&'static Feature> {
        PROFILES
            .iter()
            .flat_map(|p| {
                p.core
                    .iter()
                    .chain(p.extended.iter().flat_map(|f| f.iter()))
            })
            .collect()
    }

    #[test]
    fn every_claim_names_a_known_feature_and_a_test() {
        let keys: Vec<&str> = all_features().iter().map(|f| f.key).collect();
        for (key, tests) in evidence() {
            assert!(
                keys.contains(&key.as_str()),
                "{key} in {tests:?} is no feature"
            );
            for t in tests {
                let (path, name) = t.split_once("::").unwrap();
                let source = TESTS.iter().find(|(p, _)| *p == path).unwrap().1;
                // The claim sits on a test function.
                let at = source.find(&format!("fn {name}(")).unwrap();
                let before = &source[..at];
                let attribute = before.rfind("#[").unwrap();
                assert!(
                    before[attribute..].starts_with("#[tokio::test")
                        || before[attribute..].starts_with("#[test]"),
                    "{t} is not a test"
                );
            }
        }
    }

    #[test]
    fn every_test_file_is_read() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../integration/tests");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".rs"))
            .map(|n| format!("integration/tests/{n}"))
            .collect();
        on_disk.sort();
        let read: Vec<&str> = TESTS.iter().map(|(p, _)| *p).collect();
        assert_eq!(on_disk, read);
    }

    #[test]
    fn supported_features_are_exactly_those_tests_claim() {
        let r = report("2026-01-01T00:00:00Z".into());
        let tested = evidence();
        for p in &r.profiles {
            let ext = &p.extended;
            for f in &ext.supported_features {
                assert!(!ext.unsupported_features.contains(f), "{} {f}", p.name);
                assert!(!p.evidence[f].starts_with("unsupported"), "{} {f}", p.name);
            }
            for f in &ext.unsupported_features {
                assert!(p.evidence[f].starts_with("unsupported"), "{} {f}", p.name);
            }
            let mut sorted = ext.supported_features.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, ext.supported_features);
        }
        let http = r
            .profiles
            .iter()
            .find(|p| p.name == "GATEWAY-HTTP")
            .unwrap();
        assert!(http.extended.supported_features.contains(&"HTTPRouteCORS"));
        assert!(tested["HTTPRouteCORS"]
            .iter()
            .any(|t| t.ends_with("filters.rs::cors")));
        let udp = r.profiles.iter().find(|p| p.name == "GATEWAY-UDP").unwrap();
        assert!(udp.summary.starts_with("Not claimed"), "{}", udp.summary);
        let mesh = r.profiles.iter().find(|p| p.name == "MESH-HTTP").unwrap();
        assert!(
            mesh.evidence["HTTPRoute"].contains("mesh.rs::"),
            "{:?}",
            mesh.evidence
        );
    }

    #[test]
    fn renders_the_upstream_shape() {
        let yaml = render().unwrap();
        let v: serde_json::Value = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(v["kind"], "ConformanceReport");
        assert_eq!(v["gatewayAPIVersion"], GATEWAY_API_VERSION);
        assert_eq!(v["profiles"][0]["name"], "GATEWAY-HTTP");
        assert!(v["profiles"][0]["core"]["supportedFeatures"].is_array());
    }
}
