//! Request metrics with Istio's names and labels, so existing dashboards
//! work: `istio_requests_total`, `istio_request_duration_milliseconds`,
//! `istio_request_bytes`, `istio_response_bytes`, and the TCP connection
//! and byte counters. Requests are recorded after the response (the logging
//! phase), bytes as they cross the socket; all served as Prometheus text on
//! the admin port's `/metrics`.
//!
//! Label values a peer or a request chooses (the workloads and service a
//! mesh peer tells, a passthrough host) are admitted up to `MAX_TOLD`
//! distinct values per label and recorded as `other` beyond, so nobody can
//! grow the series without bound.

use crate::telemetry::series::{self, Series};
use crate::telemetry::told::Bounds;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry, TextEncoder,
};
use std::sync::Arc;

/// Workload, namespace and principal of one end of a request: this
/// proxy's own when it reports as that end, else what the request says
/// (the workload as told, bounded later by `Told`).
fn end<'a>(
    me: &'a Reporter,
    mine: bool,
    workload: Option<&'a str>,
    principal: &'a str,
) -> [&'a str; 3] {
    if mine {
        return [&me.workload, &me.namespace, &me.principal];
    }
    [
        workload.unwrap_or("unknown"),
        namespace_of(principal),
        principal,
    ]
}

const LABELS: [&str; 14] = [
    "reporter",
    "source_workload",
    "source_workload_namespace",
    "source_principal",
    "destination_workload",
    "destination_workload_namespace",
    "destination_service",
    "destination_principal",
    "request_protocol",
    "response_code",
    "connection_security_policy",
    "response_flags",
    "source_cluster",
    "destination_cluster",
];
const TCP_LABELS: [&str; 3] = [
    "reporter",
    "destination_workload",
    "connection_security_policy",
];

/// Who this proxy is, for the labels it reports.
#[derive(Clone, Debug)]
pub struct Reporter {
    /// `source` for gateways and client sidecars, `destination` for inbound.
    pub reporter: &'static str,
    pub workload: String,
    pub namespace: String,
    pub principal: String,
}

impl Default for Reporter {
    fn default() -> Self {
        Reporter {
            reporter: "source",
            workload: "unknown".into(),
            namespace: "unknown".into(),
            principal: "unknown".into(),
        }
    }
}

/// One finished request, as the metrics see it.
pub struct RequestRecord<'a> {
    pub source_principal: Option<&'a str>,
    pub destination_service: &'a str,
    /// The identity the upstream proved (mutual TLS to a meshed service).
    pub destination_principal: Option<&'a str>,
    /// The workloads at either end, as the peer proxy told them.
    pub source_workload: Option<&'a str>,
    pub destination_workload: Option<&'a str>,
    /// The caller's cluster as its proxy told it (inbound), and the
    /// endpoint's as the config says (outbound); `home` is this proxy's.
    pub source_cluster: Option<&'a str>,
    pub destination_cluster: Option<&'a str>,
    pub home: &'a str,
    pub protocol: &'static str,
    pub status: u16,
    /// Envoy's response flags, as Istio labels them: `-` for none, `UO`
    /// (overflow: a circuit breaker refused the request), `UH` (no
    /// healthy endpoint).
    pub response_flags: &'static str,
    pub mutual_tls: bool,
    pub duration_ms: f64,
    pub request_bytes: usize,
    pub response_bytes: usize,
    /// The host outside the mesh the request was for, allowed or not
    /// (`super::egress`).
    pub external: Option<&'a str>,
}

/// The metric families of one proxy, reported as one `Reporter`. Clones
/// made by `with_reporter` share the families, so one `/metrics` serves
/// both sides of a sidecar.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    reporter: Reporter,
    requests: IntCounterVec,
    duration: HistogramVec,
    request_bytes: HistogramVec,
    response_bytes: HistogramVec,
    tcp_opened: IntCounterVec,
    tcp_closed: IntCounterVec,
    tcp_sent: IntCounterVec,
    tcp_received: IntCounterVec,
    /// Requests by the HTTP version the downstream spoke (as Envoy's
    /// `downstream_rq_http1_total`, `..._http2_total`).
    downstream_versions: IntCounterVec,
    /// Mirrored requests by outcome.
    mirrors: IntCounterVec,
    /// Requests and connections an access policy decided on.
    policy: IntCounterVec,
    /// Requests a rate limit refused, or let through without its store.
    rate_limits: IntCounterVec,
    /// An east-west gateway's tunnels (`super::tunnels`).
    pub(crate) tunnels: IntCounterVec,
    /// An egress gateway's requests by caller (`super::egress`).
    pub(crate) egress: IntCounterVec,
    /// Connections refused as undeclared (`super::egress`).
    pub(crate) blackholes: IntCounterVec,
    bounds: Arc<Bounds>,
    /// These families among every `Metrics::new` of the process (the key
    /// of their series in `series`' per-thread caches).
    families: u64,
    /// `downstream_versions` for each version, as this reporter, made when
    /// first counted.
    versions: [std::sync::OnceLock<IntCounter>; 5],
}

/// Byte counters of one connection, bumped as bytes cross its socket.
#[derive(Clone)]
pub struct ByteCounters {
    pub sent: IntCounter,
    pub received: IntCounter,
}

fn bytes_buckets() -> Vec<f64> {
    prometheus::exponential_buckets(1.0, 10.0, 9).expect("valid buckets")
}

impl Metrics {
    pub fn new(reporter: Reporter) -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("istio_requests_total", "Requests handled"),
            &LABELS,
        )
        .expect("valid metric");
        let duration = HistogramVec::new(
            HistogramOpts::new("istio_request_duration_milliseconds", "Request duration").buckets(
                vec![
                    1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 5000.0, 10000.0,
                ],
            ),
            &LABELS,
        )
        .expect("valid metric");
        let request_bytes = HistogramVec::new(
            HistogramOpts::new("istio_request_bytes", "Request sizes").buckets(bytes_buckets()),
            &LABELS,
        )
        .expect("valid metric");
        let response_bytes = HistogramVec::new(
            HistogramOpts::new("istio_response_bytes", "Response sizes").buckets(bytes_buckets()),
            &LABELS,
        )
        .expect("valid metric");
        let tcp_opened = IntCounterVec::new(
            Opts::new("istio_tcp_connections_opened_total", "Connections opened"),
            &TCP_LABELS,
        )
        .expect("valid metric");
        let tcp_closed = IntCounterVec::new(
            Opts::new("istio_tcp_connections_closed_total", "Connections closed"),
            &TCP_LABELS,
        )
        .expect("valid metric");
        let tcp_sent = IntCounterVec::new(
            Opts::new("istio_tcp_sent_bytes_total", "Bytes sent to downstreams"),
            &TCP_LABELS,
        )
        .expect("valid metric");
        let tcp_received = IntCounterVec::new(
            Opts::new(
                "istio_tcp_received_bytes_total",
                "Bytes received from downstreams",
            ),
            &TCP_LABELS,
        )
        .expect("valid metric");
        let downstream_versions = IntCounterVec::new(
            Opts::new(
                "weft_downstream_requests_total",
                "Requests by the HTTP version the downstream spoke",
            ),
            &["reporter", "http_version"],
        )
        .expect("valid metric");
        let mirrors = IntCounterVec::new(
            Opts::new(
                "weft_mirror_requests_total",
                "Mirrored requests: sent, failed, timed_out, no_endpoint, or not sent (body_too_large, too_many)",
            ),
            &["reporter", "result"],
        )
        .expect("valid metric");
        let policy = IntCounterVec::new(
            Opts::new(
                "weft_policy_requests_total",
                "Requests (and L4 connections) an access policy allowed or denied, by reason",
            ),
            &["reporter", "policy", "decision", "reason"],
        )
        .expect("valid metric");
        let rate_limits = IntCounterVec::new(
            Opts::new(
                "weft_rate_limit_requests_total",
                "Requests a rate limit refused (over_local_limit, over_global_limit), or decided on without its store (store_unavailable_passed, store_unavailable_refused)",
            ),
            &["reporter", "policy", "decision"],
        )
        .expect("valid metric");
        let tunnels = super::tunnels::family();
        let egress = super::egress::family();
        let blackholes = super::egress::blackhole_family();
        for m in [
            &tunnels,
            &egress,
            &blackholes,
            &rate_limits,
            &requests,
            &downstream_versions,
            &mirrors,
            &policy,
            &tcp_opened,
            &tcp_closed,
            &tcp_sent,
            &tcp_received,
        ] {
            registry
                .register(Box::new(m.clone()))
                .expect("unique metric");
        }
        for m in [&duration, &request_bytes, &response_bytes] {
            registry
                .register(Box::new(m.clone()))
                .expect("unique metric");
        }
        static FAMILIES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let families = FAMILIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Metrics {
            registry,
            reporter,
            requests,
            duration,
            request_bytes,
            response_bytes,
            tcp_opened,
            tcp_closed,
            tcp_sent,
            tcp_received,
            downstream_versions,
            mirrors,
            policy,
            rate_limits,
            tunnels,
            egress,
            blackholes,
            bounds: Arc::default(),
            families,
            versions: Default::default(),
        }
    }

    /// Who these metrics report as.
    pub fn reporter(&self) -> &Reporter {
        &self.reporter
    }

    /// The same families, reported as `reporter`.
    pub fn with_reporter(&self, reporter: Reporter) -> Metrics {
        Metrics {
            versions: Default::default(),
            reporter,
            ..self.clone()
        }
    }

    /// A rate limit's decision on a request (policy names come from the
    /// config, so the series stay bounded).
    pub fn rate_limit(&self, policy: &str, decision: &str) {
        self.rate_limits
            .with_label_values(&[self.reporter.reporter, policy, decision])
            .inc();
    }

    /// One decision of an access policy (whose names come from the
    /// config, so the series stay bounded).
    pub fn policy_decision(&self, policy: &str, allowed: bool, reason: &str) {
        let decision = if allowed { "allow" } else { "deny" };
        self.policy
            .with_label_values(&[self.reporter.reporter, policy, decision, reason])
            .inc();
    }

    pub fn record(&self, r: &RequestRecord<'_>) {
        let owned;
        let status = match status_label(r.status) {
            Some(s) => s,
            None => {
                owned = r.status.to_string();
                &owned
            }
        };
        let security = if r.mutual_tls { "mutual_tls" } else { "none" };
        let me = &self.reporter;
        // The values as the request gives them; told ones are bounded only
        // when a set is first seen (`resolve`).
        let unknown = "unknown";
        let source_principal = r.source_principal.unwrap_or(unknown);
        if let Some(host) = r.external {
            self.egress(source_principal, host, status);
        }
        let destination_principal = r.destination_principal.unwrap_or(unknown);
        let (source, destination) = (me.reporter == "source", me.reporter == "destination");
        let [source_workload, source_namespace, source_principal] =
            end(me, source, r.source_workload, source_principal);
        let [destination_workload, destination_namespace, destination_principal] = end(
            me,
            destination,
            r.destination_workload,
            destination_principal,
        );
        let given = [
            me.reporter,
            source_workload,
            source_namespace,
            source_principal,
            destination_workload,
            destination_namespace,
            r.destination_service,
            destination_principal,
            r.protocol,
            status,
            security,
            r.response_flags,
            match source {
                true => r.home,
                false => r.source_cluster.unwrap_or(unknown),
            },
            match destination {
                true => r.home,
                false => r.destination_cluster.unwrap_or(unknown),
            },
        ];
        let resolve = || {
            let bounds = &self.bounds;
            let mut labels = given;
            if !source {
                labels[1] = bounds.source_workload.admit(labels[1]);
            }
            if !destination {
                labels[4] = bounds.destination_workload.admit(labels[4]);
            }
            labels[6] = bounds.destination_service.admit(labels[6]);
            if !source {
                labels[12] = bounds.source_cluster.admit(labels[12]);
            }
            Series {
                requests: self.requests.with_label_values(&labels),
                duration: self.duration.with_label_values(&labels),
                request_bytes: self.request_bytes.with_label_values(&labels),
                response_bytes: self.response_bytes.with_label_values(&labels),
            }
        };
        series::with(self.families, &given, resolve, |s| {
            s.requests.inc();
            s.duration.observe(r.duration_ms);
            s.request_bytes.observe(r.request_bytes as f64);
            s.response_bytes.observe(r.response_bytes as f64);
        });
    }

    /// Counts a mirrored request by its outcome.
    pub fn mirror(&self, result: &'static str) {
        self.mirrors
            .with_label_values(&[self.reporter.reporter, result])
            .inc();
    }

    /// Counts a request by the HTTP version its downstream spoke.
    pub fn downstream_version(&self, version: http::Version) {
        let i = match version {
            http::Version::HTTP_09 => 0,
            http::Version::HTTP_10 => 1,
            http::Version::HTTP_11 => 2,
            http::Version::HTTP_2 => 3,
            _ => 4,
        };
        self.versions[i]
            .get_or_init(|| {
                self.downstream_versions
                    .with_label_values(&[self.reporter.reporter, VERSIONS[i]])
            })
            .inc();
    }

    pub fn connection_opened(&self, mutual_tls: bool) {
        self.tcp_opened
            .with_label_values(&self.tcp_labels(mutual_tls))
            .inc();
    }

    pub fn connection_closed(&self, mutual_tls: bool) {
        self.tcp_closed
            .with_label_values(&self.tcp_labels(mutual_tls))
            .inc();
    }

    /// The byte counters for a new connection.
    pub fn byte_counters(&self, mutual_tls: bool) -> ByteCounters {
        let labels = self.tcp_labels(mutual_tls);
        ByteCounters {
            sent: self.tcp_sent.with_label_values(&labels),
            received: self.tcp_received.with_label_values(&labels),
        }
    }

    fn tcp_labels(&self, mutual_tls: bool) -> [&str; 3] {
        [
            self.reporter.reporter,
            &self.reporter.workload,
            if mutual_tls { "mutual_tls" } else { "none" },
        ]
    }

    /// The Prometheus text exposition of every metric.
    pub fn text(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// The `http_version` label values, in `downstream_version`'s order.
const VERSIONS: [&str; 5] = ["0.9", "1.0", "1.1", "2", "3"];

/// The namespace of a SPIFFE ID (`spiffe://td/ns/<ns>/sa/<sa>`), else `unknown`.
fn namespace_of(principal: &str) -> &str {
    principal
        .split_once("/ns/")
        .and_then(|(_, rest)| rest.split('/').next())
        .filter(|ns| !ns.is_empty())
        .unwrap_or("unknown")
}

/// Common status codes as label values without allocating.
fn status_label(code: u16) -> Option<&'static str> {
    const CODES: [(u16, &str); 16] = [
        (200, "200"),
        (201, "201"),
        (204, "204"),
        (301, "301"),
        (302, "302"),
        (304, "304"),
        (400, "400"),
        (401, "401"),
        (403, "403"),
        (404, "404"),
        (421, "421"),
        (500, "500"),
        (502, "502"),
        (503, "503"),
        (504, "504"),
        (0, "0"),
    ];
    CODES.iter().find(|(c, _)| *c == code).map(|(_, s)| *s)
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
