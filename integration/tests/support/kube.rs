//! The Kubernetes API-server stand-in (`integration/apiserver`), the real
//! `kubectl` to drive it, and `weft controller` processes pointed at it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "weft-test-admin-token";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A kubectl of 1.28 or newer: `$KUBECTL`, else the one setup installs,
/// else the first in PATH that is one (Debian's 1.20 is not).
pub fn kubectl() -> Option<PathBuf> {
    let works = |p: &Path| {
        Command::new(p)
            .args(["version", "--client", "-o", "json"])
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
            .and_then(|v| {
                v["clientVersion"]["minor"]
                    .as_str()?
                    .trim_end_matches('+')
                    .parse::<u32>()
                    .ok()
            })
            .is_some_and(|minor| minor >= 28)
    };
    if let Some(p) = std::env::var_os("KUBECTL").map(PathBuf::from) {
        return works(&p).then_some(p);
    }
    // Where scripts/setup.sh installs it.
    let installed = repo().join("target/tools/venv/bin/kubectl");
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::iter::once(installed)
        .chain(std::env::split_paths(&path).map(|d| d.join("kubectl")))
        .find(|p| p.is_file() && works(p))
}

/// Helm: `$HELM`, else the one setup installs, else one in PATH.
pub fn helm() -> Option<PathBuf> {
    let installed = repo().join("target/tools/helm/helm");
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::var_os("HELM")
        .map(PathBuf::from)
        .into_iter()
        .chain([installed])
        .chain(std::env::split_paths(&path).map(|d| d.join("helm")))
        .find(|p| p.is_file())
}

/// Whether the stand-in can run: python3 with PyYAML, and kubectl.
pub fn missing() -> Option<String> {
    let yaml = Command::new("python3")
        .args(["-c", "import yaml"])
        .status()
        .is_ok_and(|s| s.success());
    if !yaml {
        return Some("python3 with PyYAML is needed for the API-server stand-in".into());
    }
    if kubectl().is_none() {
        return Some("kubectl >= 1.28 is needed (scripts/setup.sh installs it)".into());
    }
    if helm().is_none() {
        return Some("helm is needed (scripts/setup.sh installs it)".into());
    }
    None
}

pub struct ApiServer {
    child: Child,
    pub url: String,
    pub kubeconfig: PathBuf,
    kubectl: PathBuf,
    ca_pem: String,
    dir: tempfile::TempDir,
}

impl ApiServer {
    /// Starts the stand-in on HTTPS with a certificate of a new CA, and
    /// writes a kubeconfig for it. `None` (after `cannot_run`) when the
    /// tools it needs are missing.
    pub fn start() -> Option<ApiServer> {
        if let Some(why) = missing() {
            super::cannot_run(&why);
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let ca = super::pki::ca();
        let (cert, key) = super::pki::issue(&ca, &["localhost"], &[]);
        std::fs::write(dir.path().join("tls.crt"), &cert).unwrap();
        std::fs::write(dir.path().join("tls.key"), &key).unwrap();
        let ready = dir.path().join("ready");
        let child = Command::new("python3")
            .arg(repo().join("integration/apiserver/standin.py"))
            .args(["--listen", "127.0.0.1:0", "--token", TOKEN])
            .arg("--tls-cert")
            .arg(dir.path().join("tls.crt"))
            .arg("--tls-key")
            .arg(dir.path().join("tls.key"))
            .arg("--ready-file")
            .arg(&ready)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs");
        let deadline = Instant::now() + Duration::from_secs(20);
        let url = loop {
            if let Ok(url) = std::fs::read_to_string(&ready) {
                break url.trim().replace("127.0.0.1", "localhost");
            }
            assert!(
                Instant::now() < deadline,
                "the API-server stand-in did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, kubeconfig_text(&url, &ca.pem)).unwrap();
        Some(ApiServer {
            child,
            url,
            kubeconfig,
            kubectl: kubectl().unwrap(),
            ca_pem: ca.pem.clone(),
            dir,
        })
    }

    /// Runs kubectl against the stand-in; panics with its output on failure.
    pub fn kubectl(&self, args: &[&str]) -> String {
        let out = Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kubectl {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs helm against the stand-in (a throwaway HOME for its caches).
    pub fn helm(&self, args: &[&str]) -> String {
        let home = tempfile::tempdir().unwrap();
        let out = Command::new(helm().expect("helm (scripts/setup.sh installs it)"))
            .args(args)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .env("HOME", home.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "helm {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl apply --server-side -f` of `yaml`.
    pub fn apply(&self, yaml: &str) -> String {
        let file = self.dir.path().join("apply.yaml");
        std::fs::write(&file, yaml).unwrap();
        self.kubectl(&["apply", "--server-side", "-f", file.to_str().unwrap()])
    }

    /// Weft's CRDs and Gateway API's, as a cluster has them installed
    /// (the CRDs only of Gateway API's bundle, which also holds an
    /// admission policy).
    pub fn install_crds(&self) {
        let mut crds = String::new();
        for file in [
            "charts/weft/crds/weft.dev.yaml",
            "charts/weft/crds/multicluster.x-k8s.io.yaml",
            "charts/weft/files/gateway-api-crds.yaml",
        ] {
            let text = std::fs::read_to_string(repo().join(file)).unwrap();
            for doc in text.split("\n---") {
                if doc.contains("\nkind: CustomResourceDefinition") {
                    crds.push_str(doc);
                    crds.push_str("\n---\n");
                }
            }
        }
        self.apply(&crds);
    }

    /// An object as JSON, or `None` when it does not exist.
    pub fn get(&self, resource: &str, namespace: &str, name: &str) -> Option<serde_json::Value> {
        let out = Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["get", resource, name, "-o", "json"])
            .args(
                (!namespace.is_empty())
                    .then_some(["-n", namespace])
                    .into_iter()
                    .flatten(),
            )
            .output()
            .unwrap();
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains("NotFound"),
                "kubectl get {resource} {name}: {err}"
            );
            return None;
        }
        Some(serde_json::from_slice(&out.stdout).unwrap())
    }

    /// A request straight to the stand-in (its test controls, raw calls).
    pub async fn call(&self, method: &str, path: &str) -> (u16, serde_json::Value) {
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).unwrap())
            .build()
            .unwrap();
        let r = client
            .request(method.parse().unwrap(), format!("{}{path}", self.url))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        let code = r.status().as_u16();
        (code, r.json().await.unwrap_or_default())
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn kubeconfig_text(url: &str, ca_pem: &str) -> String {
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: standin\n  cluster:\n    server: {url}\n    certificate-authority-data: {ca}\nusers:\n- name: admin\n  user:\n    token: {TOKEN}\ncontexts:\n- name: standin\n  context: {{cluster: standin, user: admin}}\ncurrent-context: standin\n"
    )
}

/// A running `weft controller`.
pub struct Controller {
    pub child: Child,
    pub admin: SocketAddr,
    /// The CA's signing service and the config server.
    pub ca: SocketAddr,
    pub config: SocketAddr,
    /// The sidecar injection webhook (HTTPS).
    pub webhook: SocketAddr,
    pub identity: String,
}

impl Controller {
    /// Starts `weft controller` against `api` with a short Lease (5 s).
    pub fn start(api: &ApiServer, identity: &str) -> Controller {
        Controller::start_with(api, identity, &[])
    }

    /// As `start`, with more arguments.
    /// As `start`, with more arguments (`--flag value` or `--flag=value`);
    /// a flag given here replaces the test's default for it.
    pub fn start_with(api: &ApiServer, identity: &str, args: &[&str]) -> Controller {
        let defaults = [
            ("--identity", identity),
            ("--admin", "127.0.0.1:0"),
            ("--config-listen", "127.0.0.1:0"),
            ("--ca-listen", "127.0.0.1:0"),
            ("--webhook-listen", "127.0.0.1:0"),
            // Short, yet with room for a slow renewal on a loaded machine.
            ("--lease-duration-seconds", "5"),
            ("--renew-deadline-seconds", "3"),
            ("--retry-period-seconds", "1"),
            ("--default-address", "127.0.0.1"),
        ];
        let given = |flag: &str| {
            args.iter()
                .any(|a| *a == flag || a.starts_with(&format!("{flag}=")))
        };
        let mut child = Command::new(super::WEFT)
            .arg("controller")
            .arg("--kubeconfig")
            .arg(&api.kubeconfig)
            .args(
                defaults
                    .iter()
                    .filter(|(flag, _)| !given(flag))
                    .flat_map(|(flag, value)| [*flag, *value]),
            )
            .args(args)
            .env("RUST_LOG", "info,weft_controller=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut admin, mut ca, mut config, mut webhook) = (None, None, None, None);
        while webhook.is_none() {
            let line = lines
                .next()
                .expect("weft controller prints its addresses")
                .unwrap();
            let Some(rest) = line.strip_prefix("weft controller: ") else {
                continue;
            };
            match rest.split_once(' ') {
                Some(("admin", url)) => {
                    admin = url
                        .trim_start_matches("http://")
                        .trim_end_matches("/status")
                        .parse()
                        .ok()
                }
                Some(("ca", addr)) => ca = addr.parse().ok(),
                Some(("config", addr)) => config = addr.parse().ok(),
                Some(("webhook", addr)) => webhook = addr.parse().ok(),
                _ => {}
            }
        }
        std::thread::spawn(move || for _ in lines {});
        Controller {
            child,
            admin: admin.unwrap(),
            ca: ca.unwrap(),
            config: config.unwrap(),
            webhook: webhook.unwrap(),
            identity: identity.to_string(),
        }
    }

    /// Waits until the controller has read the cluster (`/ready`).
    pub async fn ready(&self) {
        let url = format!("http://{}/ready", self.admin);
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        super::eventually(Duration::from_secs(30), "the controller ready", || async {
            client
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        })
        .await;
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn sigterm(&mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.kill();
    }
}
