//! Linking clusters by hand: `weft link` prints the ClusterLink another
//! cluster applies to link to this one (this cluster's name, network,
//! peering address and east-west gateways), and `weft cacerts` makes what
//! a cluster set shares: one root, and for each cluster its own
//! intermediate as the `weft-system/cacerts` Secret (Istio's file names).

use anyhow::{bail, Context};
use serde_json::json;
use std::net::SocketAddr;
use std::path::Path;

#[derive(clap::Args, Debug)]
pub struct LinkArgs {
    /// This cluster's name (`weft up --cluster`).
    #[arg(long = "cluster")]
    pub cluster: String,
    /// This cluster's network (`weft up --network`).
    #[arg(long, default_value = "")]
    pub network: String,
    /// Where this cluster's controller takes peering calls (`host:port`,
    /// as `weft up --peering` listens).
    #[arg(long)]
    pub peering: String,
    /// This cluster's east-west gateways (`ip:port`), for callers on other
    /// networks; repeatable.
    #[arg(long = "gateway")]
    pub gateways: Vec<SocketAddr>,
    /// How long the other cluster keeps using this one's exports after
    /// losing it (a Gateway API duration, such as 5m).
    #[arg(long)]
    pub import_grace_period: Option<String>,
}

/// The ClusterLink, as YAML, for the other side to apply.
pub fn manifest(args: &LinkArgs) -> anyhow::Result<String> {
    if !weft_api::peering::is_dns_label(&args.cluster) {
        bail!("--cluster {:?} is not a DNS label", args.cluster);
    }
    if !args
        .peering
        .rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0))
    {
        bail!("--peering {:?} is not host:port", args.peering);
    }
    let mut spec = json!({
        "cluster": args.cluster,
        "network": args.network,
        "peering": args.peering,
    });
    if !args.gateways.is_empty() {
        let gateways: Vec<String> = args.gateways.iter().map(ToString::to_string).collect();
        spec["gateways"] = json!(gateways);
    }
    if let Some(grace) = &args.import_grace_period {
        spec["importGracePeriod"] = json!(grace);
    }
    let link = json!({
        "apiVersion": "weft.dev/v1alpha1",
        "kind": "ClusterLink",
        "metadata": {
            "name": args.cluster,
            "namespace": weft_controller::multicluster::LINK_NAMESPACE,
        },
        "spec": spec,
    });
    Ok(serde_yaml::to_string(&link)?)
}

/// Writes `<out>/<cluster>/cacerts.yaml` for each of `clusters`, all under
/// one new root (also written, as `<out>/root-cert.pem`); the root's key
/// is not kept.
pub fn cacerts(out: &Path, trust_domain: &str, clusters: &[String]) -> anyhow::Result<()> {
    for c in clusters {
        if !weft_api::peering::is_dns_label(c) {
            bail!("cluster {c:?} is not a DNS label");
        }
    }
    let names: Vec<&str> = clusters.iter().map(String::as_str).collect();
    let (root, intermediates) = weft_ca::Authority::generate_set(trust_domain, &names)?;
    std::fs::create_dir_all(out).with_context(|| out.display().to_string())?;
    std::fs::write(out.join("root-cert.pem"), &root)?;
    let (ns, name) = weft_controller::runtime::CA_SECRET;
    for (cluster, (cert, key)) in clusters.iter().zip(intermediates) {
        let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        let secret = json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": ns},
            "stringData": {
                "ca-cert.pem": cert,
                "ca-key.pem": key,
                "root-cert.pem": root,
                "cert-chain.pem": format!("{cert}{root}"),
            },
        });
        let text = format!(
            "# The CA of cluster {cluster}: its own intermediate under the cluster set's root.\n{}---\n{}",
            serde_yaml::to_string(&namespace)?,
            serde_yaml::to_string(&secret)?
        );
        let dir = out.join(cluster);
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("cacerts.yaml");
        std::fs::write(&path, text).with_context(|| path.display().to_string())?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> LinkArgs {
        LinkArgs {
            cluster: "east".into(),
            network: "net-east".into(),
            peering: "10.254.0.1:15012".into(),
            gateways: vec!["10.254.0.1:15443".parse().unwrap()],
            import_grace_period: Some("1m".into()),
        }
    }

    #[test]
    fn prints_a_link_the_other_side_accepts() {
        let text = manifest(&args()).unwrap();
        let doc: serde_json::Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(doc["kind"], "ClusterLink");
        assert_eq!(doc["metadata"]["namespace"], "weft-system");
        assert_eq!(doc["spec"]["gateways"][0], "10.254.0.1:15443");
        let parsed = weft_controller::resources::parse(doc).unwrap();
        assert!(matches!(
            parsed,
            weft_controller::resources::Parsed::Object { .. }
        ));
    }

    #[test]
    fn refuses_bad_names_and_addresses() {
        let bad = LinkArgs {
            cluster: "East_1".into(),
            ..args()
        };
        assert!(manifest(&bad).is_err());
        let bad = LinkArgs {
            peering: "nowhere".into(),
            ..args()
        };
        assert!(manifest(&bad).is_err());
    }
}
