//! Tests of `metrics`: labels, told values and their bounds.
use super::*;
use crate::telemetry::told::MAX_TOLD;

#[test]
fn counts_requests_with_istio_labels() {
    let m = Metrics::new(Reporter::default());
    let r = RequestRecord {
        duration_ms: 3.0,
        request_bytes: 10,
        response_bytes: 100,
        external: None,
        ..request("echo.default.svc.cluster.local")
    };
    m.record(&r);
    m.record(&r);
    let text = m.text();
    assert!(text.contains("istio_requests_total{connection_security_policy=\"none\",destination_cluster=\"unknown\",destination_principal=\"unknown\",destination_service=\"echo.default.svc.cluster.local\",destination_workload=\"unknown\",destination_workload_namespace=\"unknown\",reporter=\"source\",request_protocol=\"http\",response_code=\"200\",response_flags=\"-\",source_cluster=\"east\",source_principal=\"unknown\",source_workload=\"unknown\",source_workload_namespace=\"unknown\"} 2"), "{text}");
    assert!(text.contains("istio_request_duration_milliseconds_count"));
}

fn request(service: &str) -> RequestRecord<'_> {
    RequestRecord {
        source_principal: None,
        destination_service: service,
        destination_principal: None,
        source_workload: None,
        destination_workload: None,
        source_cluster: None,
        destination_cluster: None,
        home: "east",
        protocol: "http",
        status: 200,
        response_flags: "-",
        mutual_tls: false,
        duration_ms: 1.0,
        request_bytes: 0,
        response_bytes: 0,
        external: None,
    }
}

#[test]
fn cached_series_count_in_their_own_families() {
    // Same labels, two sets of families (two proxies of one process):
    // the thread's cache must not send one's requests to the other.
    let a = Metrics::new(Reporter::default());
    let b = Metrics::new(Reporter::default());
    for _ in 0..3 {
        a.record(&request("svc.example"));
    }
    b.record(&request("svc.example"));
    let count = |m: &Metrics| {
        m.text()
            .lines()
            .find(|l| l.starts_with("istio_requests_total{"))
            .and_then(|l| l.rsplit(' ').next())
            .map(str::to_string)
    };
    assert_eq!(count(&a).as_deref(), Some("3"));
    assert_eq!(count(&b).as_deref(), Some("1"));
    assert!(a
        .text()
        .contains("istio_request_duration_milliseconds_count{"));
}

#[test]
fn the_series_cache_stays_bounded() {
    let m = Metrics::new(Reporter::default());
    let hosts: Vec<String> = (0..5000).map(|i| format!("h{i}.example")).collect();
    for host in &hosts {
        m.record(&request(host));
        assert!(crate::telemetry::series::cached() <= crate::telemetry::series::CAPACITY);
    }
    // Past the bound, values are still admitted as before.
    assert!(m.text().contains("destination_service=\"other\""));
}

#[test]
fn told_label_values_are_bounded() {
    let m = Metrics::new(Reporter::default());
    let hosts: Vec<String> = (0..MAX_TOLD + 50)
        .map(|i| format!("h{i}.example"))
        .collect();
    for host in &hosts {
        m.record(&RequestRecord {
            source_workload: Some(host),
            ..request(host)
        });
    }
    let text = m.text();
    let series = text
        .lines()
        .filter(|l| l.starts_with("istio_requests_total{"))
        .count();
    assert_eq!(series, MAX_TOLD + 1, "the known values and `other`");
    assert!(text.contains("destination_service=\"other\""));
    assert!(!text.contains("h1049.example"));
}

#[test]
fn sides_share_families_and_label_as_their_reporter() {
    let outbound = Metrics::new(Reporter {
        reporter: "source",
        workload: "productpage".into(),
        namespace: "shop".into(),
        principal: "spiffe://cluster.local/ns/shop/sa/productpage".into(),
    });
    let inbound = outbound.with_reporter(Reporter {
        reporter: "destination",
        workload: "productpage".into(),
        namespace: "shop".into(),
        principal: "spiffe://cluster.local/ns/shop/sa/productpage".into(),
    });
    let r = RequestRecord {
        source_principal: Some("spiffe://cluster.local/ns/edge/sa/gw"),
        status: 503,
        response_flags: "-",
        mutual_tls: true,
        ..request("productpage.shop.svc.cluster.local")
    };
    inbound.record(&r);
    let bytes = outbound.byte_counters(false);
    bytes.sent.inc_by(7);
    let text = outbound.text();
    assert!(text.contains("reporter=\"destination\",request_protocol=\"http\",response_code=\"503\",response_flags=\"-\",source_cluster=\"unknown\",source_principal=\"spiffe://cluster.local/ns/edge/sa/gw\",source_workload=\"unknown\",source_workload_namespace=\"edge\"} 1"), "{text}");
    assert!(text.contains("istio_tcp_sent_bytes_total{connection_security_policy=\"none\",destination_workload=\"productpage\",reporter=\"source\"} 7"), "{text}");
}

#[test]
fn clusters_are_labelled_from_where_each_side_stands() {
    let outbound = Metrics::new(Reporter::default());
    let inbound = outbound.with_reporter(Reporter {
        reporter: "destination",
        ..Reporter::default()
    });
    // The caller's sidecar: its own cluster, and the endpoint's.
    outbound.record(&RequestRecord {
        destination_cluster: Some("west"),
        ..request("reviews.shop.svc.clusterset.local")
    });
    // The callee's: the cluster the caller told, and its own.
    inbound.record(&RequestRecord {
        source_cluster: Some("west"),
        destination_cluster: Some("ignored"),
        ..request("reviews.shop.svc.cluster.local")
    });
    let text = outbound.text();
    let line = |reporter: &str| {
        text.lines()
            .find(|l| l.starts_with("istio_requests_total{") && l.contains(reporter))
            .unwrap_or_default()
            .to_string()
    };
    let (out, inb) = (
        line("reporter=\"source\""),
        line("reporter=\"destination\""),
    );
    assert!(
        out.contains("destination_cluster=\"west\"") && out.contains("source_cluster=\"east\""),
        "{out}"
    );
    assert!(
        inb.contains("destination_cluster=\"east\"") && inb.contains("source_cluster=\"west\""),
        "{inb}"
    );
}
