//! `weft conformance-report`: the Gateway API features weft implements, in
//! the shape of the upstream suite's `ConformanceReport`, profile by
//! profile. It is a statement, not a test run: the upstream suite needs a
//! Kubernetes cluster and has not been run against weft, so the report
//! carries no results or statistics, and says so. Each supported feature
//! names the weft test that exercises it.

use serde::Serialize;
use std::collections::BTreeMap;

/// The Gateway API release whose resources weft reads (through the
/// `gateway-api` crate).
pub const GATEWAY_API_VERSION: &str = "v1.5.1";

/// A feature of a profile: whether weft implements it, and where that is
/// shown (a golden case or an end-to-end test), or why not.
struct Feature {
    name: &'static str,
    supported: bool,
    note: &'static str,
}

const fn yes(name: &'static str, note: &'static str) -> Feature {
    Feature {
        name,
        supported: true,
        note,
    }
}

const fn no(name: &'static str, note: &'static str) -> Feature {
    Feature {
        name,
        supported: false,
        note,
    }
}

/// Extended features every GATEWAY-* profile shares.
const GATEWAY_EXTENDED: &[Feature] = &[
    yes("GatewayPort8080", "integration/tests/routing.rs"),
    yes("GatewayStaticAddresses", "testdata/translate/listeners"),
    yes("GatewayHTTPListenerIsolation", "gateway/src/hosts.rs tests"),
    no(
        "GatewayInfrastructurePropagation",
        "no infrastructure is provisioned per Gateway",
    ),
    yes("GatewayAddressEmpty", "testdata/translate/listeners"),
    yes(
        "GatewayHTTPSListenerDetectMisdirectedRequests",
        "integration/tests/routing.rs (421)",
    ),
    yes(
        "ListenerSet",
        "testdata/translate/listenerset, integration/tests/routing.rs",
    ),
    yes(
        "GatewayBackendClientCertificate",
        "integration/tests/backend_tls.rs",
    ),
    yes(
        "GatewayFrontendClientCertificateValidation",
        "integration/tests/client_certs.rs",
    ),
    yes(
        "GatewayFrontendClientCertificateValidationInsecureFallback",
        "integration/tests/client_certs.rs",
    ),
];

const HTTP_EXTENDED: &[Feature] = &[
    no("HTTPRouteDestinationPortMatching", "not yet"),
    yes(
        "HTTPRouteBackendRequestHeaderModification",
        "testdata/translate/filters",
    ),
    yes("HTTPRouteQueryParamMatching", "testdata/translate/basic"),
    yes("HTTPRouteMethodMatching", "testdata/translate/basic"),
    yes(
        "HTTPRouteResponseHeaderModification",
        "integration/tests/filters.rs",
    ),
    yes("HTTPRoutePortRedirect", "testdata/translate/features"),
    yes("HTTPRouteSchemeRedirect", "integration/tests/filters.rs"),
    yes("HTTPRoutePathRedirect", "integration/tests/filters.rs"),
    yes("HTTPRouteHostRewrite", "integration/tests/filters.rs"),
    yes("HTTPRoutePathRewrite", "integration/tests/filters.rs"),
    yes("HTTPRouteRequestMirror", "integration/tests/filters.rs"),
    yes(
        "HTTPRouteRequestMultipleMirrors",
        "testdata/translate/features",
    ),
    yes(
        "HTTPRouteRequestPercentageMirror",
        "testdata/translate/features",
    ),
    yes("HTTPRouteRequestTimeout", "integration/tests/filters.rs"),
    yes("HTTPRouteBackendTimeout", "testdata/translate/features"),
    yes("HTTPRouteParentRefPort", "testdata/translate/features"),
    yes(
        "HTTPRouteBackendProtocolH2C",
        "integration/tests/routing.rs",
    ),
    yes(
        "HTTPRouteBackendProtocolWebSocket",
        "integration/tests/routing.rs",
    ),
    yes("HTTPRouteNamedRouteRule", "testdata/translate/features"),
    yes("HTTPRouteCORS", "integration/tests/filters.rs"),
    yes(
        "HTTPRoute303RedirectStatusCode",
        "testdata/translate/features",
    ),
    yes(
        "HTTPRoute307RedirectStatusCode",
        "testdata/translate/features",
    ),
    yes(
        "HTTPRoute308RedirectStatusCode",
        "testdata/translate/features",
    ),
    yes("HTTPRouteRetry", "integration/tests/retries.rs"),
    yes(
        "HTTPRouteRetryBackendTimeout",
        "testdata/translate/features",
    ),
    yes(
        "HTTPRouteRetryConnectionError",
        "integration/tests/retries.rs",
    ),
    yes("BackendTLSPolicy", "integration/tests/backend_tls.rs"),
    yes(
        "BackendTLSPolicySANValidation",
        "integration/tests/backend_tls.rs",
    ),
];

const TLS_EXTENDED: &[Feature] = &[
    yes("TLSRouteModeTerminate", "integration/tests/l4.rs"),
    yes("TLSRouteModeMixed", "integration/tests/l4.rs"),
];

const GRPC_EXTENDED: &[Feature] = &[yes("GRPCRouteNamedRouteRule", "testdata/translate/grpc")];

const MESH_EXTENDED: &[Feature] = &[
    no(
        "MeshClusterIPMatching",
        "standalone mode has no cluster IPs",
    ),
    yes("MeshConsumerRoute", "testdata/translate/mesh"),
    yes("MeshHTTPRouteRewritePath", "testdata/translate/features"),
    yes("MeshHTTPRouteSchemeRedirect", "testdata/translate/features"),
    yes("MeshHTTPRouteRedirectPort", "testdata/translate/features"),
    yes("MeshHTTPRouteRedirectPath", "testdata/translate/features"),
    yes(
        "MeshHTTPRouteBackendRequestHeaderModification",
        "testdata/translate/features",
    ),
    yes(
        "MeshHTTPRouteQueryParamMatching",
        "testdata/translate/features",
    ),
    yes("MeshHTTPRouteNamedRouteRule", "testdata/translate/features"),
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
        core: &[
            yes("Gateway", "testdata/translate/basic"),
            yes("ReferenceGrant", "testdata/translate/attachment"),
            yes("HTTPRoute", "integration/tests/routing.rs"),
        ],
        extended: &[GATEWAY_EXTENDED, HTTP_EXTENDED],
    },
    Profile {
        name: "GATEWAY-TLS",
        core: &[
            yes("Gateway", "testdata/translate/basic"),
            yes("ReferenceGrant", "testdata/translate/attachment"),
            yes("TLSRoute", "integration/tests/l4.rs"),
        ],
        extended: &[GATEWAY_EXTENDED, TLS_EXTENDED],
    },
    Profile {
        name: "GATEWAY-GRPC",
        core: &[
            yes("Gateway", "testdata/translate/basic"),
            yes("ReferenceGrant", "testdata/translate/grpc"),
            yes("GRPCRoute", "integration/tests/grpc.rs"),
        ],
        extended: &[GATEWAY_EXTENDED, GRPC_EXTENDED],
    },
    Profile {
        name: "GATEWAY-TCP",
        core: &[
            yes("Gateway", "testdata/translate/basic"),
            yes("ReferenceGrant", "testdata/translate/attachment"),
            yes("TCPRoute", "integration/tests/l4.rs"),
        ],
        extended: &[GATEWAY_EXTENDED],
    },
    Profile {
        name: "GATEWAY-UDP",
        core: &[
            yes("Gateway", "testdata/translate/basic"),
            yes("ReferenceGrant", "testdata/translate/attachment"),
            no("UDPRoute", "weft does not proxy UDP"),
        ],
        extended: &[GATEWAY_EXTENDED],
    },
    Profile {
        name: "MESH-HTTP",
        core: &[
            yes("Mesh", "integration/tests/mesh.rs"),
            yes("HTTPRoute", "testdata/translate/mesh"),
        ],
        extended: &[MESH_EXTENDED],
    },
    Profile {
        name: "MESH-GRPC",
        core: &[
            yes("Mesh", "integration/tests/mesh.rs"),
            yes(
                "GRPCRoute",
                "integration/tests/mesh_h2.rs, testdata/translate/features",
            ),
        ],
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
    /// Where each supported feature is shown: weft's own tests.
    #[serde(rename = "x-weft-evidence")]
    evidence: BTreeMap<&'static str, &'static str>,
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
    let profiles = PROFILES
        .iter()
        .map(|p| {
            let extended: Vec<&Feature> = p.extended.iter().flat_map(|f| f.iter()).collect();
            let names = |features: &[&Feature], supported: bool| {
                let mut v: Vec<&'static str> = features
                    .iter()
                    .filter(|f| f.supported == supported)
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
                    "Core features implemented; {} of {} extended features. The upstream \
                     conformance suite has not been run (it needs Kubernetes): no results.",
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
                    .map(|f| (f.name, f.note))
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

    #[test]
    fn every_feature_is_listed_once_per_profile_and_sorted() {
        let r = report("2026-01-01T00:00:00Z".into());
        for p in &r.profiles {
            let ext = &p.extended;
            for f in &ext.supported_features {
                assert!(!ext.unsupported_features.contains(f), "{} {f}", p.name);
            }
            let mut sorted = ext.supported_features.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, ext.supported_features);
            assert_eq!(
                p.evidence.len(),
                p.core.supported_features.len()
                    + p.core.unsupported_features.len()
                    + ext.supported_features.len()
                    + ext.unsupported_features.len()
            );
        }
        let udp = r.profiles.iter().find(|p| p.name == "GATEWAY-UDP").unwrap();
        assert!(udp.summary.starts_with("Not claimed"), "{}", udp.summary);
        let http = r
            .profiles
            .iter()
            .find(|p| p.name == "GATEWAY-HTTP")
            .unwrap();
        assert!(http.extended.supported_features.contains(&"HTTPRouteCORS"));
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
