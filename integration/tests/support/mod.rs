//! Starting `weft up` on a temporary folder and talking to what it runs.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub mod backends;
pub mod cluster;
pub mod clusterset;
pub mod egress;
pub mod jwt;
pub mod kube;
pub mod netns;
pub mod partner;
pub mod pki;
pub mod redis;
pub mod ws;

pub const WEFT: &str = env!("CARGO_BIN_EXE_weft");
/// The sidecar alone, built beside `weft`.
pub const WEFT_SIDECAR: &str = env!("CARGO_BIN_EXE_weft-sidecar");

pub struct Weft {
    pub child: Child,
    pub admin: SocketAddr,
    /// Each gateway's admin URL, from the first table.
    pub gateway_admins: Vec<String>,
    /// The config server (mutual TLS), from the first table.
    pub config: Option<SocketAddr>,
    /// The watched folder.
    pub dir: PathBuf,
    /// The folder when the test made it, removed at the end.
    _made: Option<tempfile::TempDir>,
    /// The CA's state, apart from the watched folder.
    pub state: tempfile::TempDir,
    /// Lines `weft up` printed after the first table.
    pub stdout: mpsc::Receiver<String>,
}

/// A GatewayClass and a Gateway `gw` with an HTTP listener on 8080, plus echo
/// workloads `v1` and `v2` on `ip` ports 9001/9002 behind Services of the
/// same names.
pub fn base(ip: &str) -> String {
    format!(
        "{gw}---\n{v1}\n---\n{v2}\n",
        gw = gateway("  listeners:\n  - {name: http, port: 8080, protocol: HTTP}\n"),
        v1 = echo("v1", ip, 9001),
        v2 = echo("v2", ip, 9002)
    )
}

/// The GatewayClass `weft` and a Gateway `gw` of it; `spec` is the rest of
/// the Gateway's spec, YAML indented by two spaces, ending in a newline.
pub fn gateway(spec: &str) -> String {
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: weft}}
spec: {{controllerName: weft.dev/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw}}
spec:
  gatewayClassName: weft
{spec}"#
    )
}

/// A `weft echo` Workload and a Service selecting it.
pub fn echo(name: &str, ip: &str, port: u16) -> String {
    format!(
        r#"apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {{name: {name}, labels: {{app: {name}}}}}
spec:
  command: [weft, echo, --listen, "{ip}:{port}"]
  address: {ip}
  ports: [{{name: http, containerPort: {port}}}]
---
apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec:
  selector: {{app: {name}}}
  ports: [{{name: http, port: 80, targetPort: http}}]"#
    )
}

/// A `weft echo` Workload `name` in `ns` on `ip:9080` (service account
/// `name`) calling each of `calls` for every request it gets, behind a
/// Service of its name on port 9080; starting with `---`.
pub fn meshed_echo(ns: &str, name: &str, ip: &str, calls: &[&str]) -> String {
    let calls: String = calls
        .iter()
        .map(|url| format!(r#", --call, "{url}""#))
        .collect();
    format!(
        r#"---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {{name: {name}, namespace: {ns}, labels: {{app: {name}}}}}
spec:
  serviceAccountName: {name}
  address: {ip}
  command: [weft, echo, --listen, "{ip}:9080"{calls}]
  ports: [{{name: http, containerPort: 9080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {ns}}}
spec: {{selector: {{app: {name}}}, ports: [{{name: http, port: 9080, targetPort: http}}]}}
"#
    )
}

/// A meshed Namespace `ns` with two `weft echo` Workloads, each behind a
/// Service of its name on port 9080: `front` (on `front_ip`) calls `back`
/// (on `back_ip`) at `path` for every request it gets.
pub fn calling_pair(ns: &str, front: (&str, &str), back: (&str, &str), path: &str) -> String {
    let ((front, front_ip), (back, back_ip)) = (front, back);
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}, labels: {{weft.dev/mesh: enabled}}}}\n{}{}",
        meshed_echo(ns, front, front_ip, &[&format!("http://{back}:9080{path}")]),
        meshed_echo(ns, back, back_ip, &[]),
    )
}

/// Waits until a page through `url` (Host `host`) answers 200 and so did
/// the first call its echo made: a meshed caller reached its callee.
pub async fn wait_for_call(c: &reqwest::Client, url: &str, host: &str) {
    eventually(
        Duration::from_secs(30),
        "the page and its call succeed",
        || async {
            let (status, body) = get(c, url, host).await;
            status == 200 && body["calls"][0]["status"] == 200
        },
    )
    .await;
}

/// An ingress for a mesh: the GatewayClass, a Gateway `edge` in `ns` with
/// an HTTP listener on 8080, and an HTTPRoute sending every request to the
/// Service `service` port 9080.
pub fn edge(ns: &str, service: &str) -> String {
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: weft}}
spec: {{controllerName: weft.dev/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: edge, namespace: {ns}}}
spec:
  gatewayClassName: weft
  listeners: [{{name: http, port: 8080, protocol: HTTP}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {service}, namespace: {ns}}}
spec:
  parentRefs: [{{name: edge}}]
  rules: [{{backendRefs: [{{name: {service}, port: 9080}}]}}]
"#
    )
}

/// An HTTPRoute `name` on `gw` for `host`, sending `/` to `backend`.
pub fn route(name: &str, host: &str, backend: &str) -> String {
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}}}
spec:
  parentRefs: [{{name: gw}}]
  hostnames: [{host}]
  rules:
  - backendRefs: [{{name: {backend}, port: 80}}]
"#
    )
}

/// A test that cannot run here says why and passes; under CI (`CI=true`),
/// where setup installs everything the suite needs, it fails instead, so
/// that a test never counts as passed without having run.
pub fn cannot_run(why: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("CI=true and this test cannot run: {why}");
    }
    eprintln!("SKIPPED: {why}");
}

/// A copy of `examples/<name>` in a new folder, each `from` in its files
/// replaced by its `to`: the tests run the examples on addresses of their
/// own, so a demo running beside them keeps its own.
pub fn example(name: &str, rewrites: &[(&str, &str)]) -> tempfile::TempDir {
    let from = format!("{}/../examples/{name}", env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&from).unwrap() {
        let path = entry.unwrap().path();
        let Ok(mut text) = std::fs::read_to_string(&path) else {
            continue;
        };
        for (from, to) in rewrites {
            text = text.replace(from, to);
        }
        std::fs::write(dir.path().join(path.file_name().unwrap()), text).unwrap();
    }
    dir
}

impl Weft {
    /// Writes `files` into a new folder and runs `weft up` on it, gateways
    /// defaulting to `ip`. Returns once the first table is printed.
    pub fn up(ip: &str, files: &[(&str, &str)]) -> Weft {
        Weft::up_with(ip, files, &[])
    }

    /// As `up`, with `args` added to `weft up`'s.
    pub fn up_with(ip: &str, files: &[(&str, &str)], args: &[&str]) -> Weft {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let mut weft = Weft::start_in(None, dir.path(), ip, &[], args);
        weft._made = Some(dir);
        weft
    }

    /// Runs `weft up` on an existing folder (an example), gateways
    /// defaulting to `ip`, with a CA state of its own. Returns once the
    /// first table is printed.
    pub fn start(dir: &std::path::Path, ip: &str) -> Weft {
        Weft::start_in(None, dir, ip, &[], &[])
    }

    /// As `start`, inside the network namespace `netns` when given, with
    /// `env` added to its environment and `args` to its arguments.
    pub fn start_in(
        netns: Option<&str>,
        dir: &std::path::Path,
        ip: &str,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Weft {
        let state = tempfile::tempdir().unwrap();
        let mut command = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, WEFT]);
                c
            }
            None => Command::new(WEFT),
        };
        let mut child = command
            .envs(env.iter().copied())
            .arg("up")
            .arg(dir)
            .args(["--admin", "127.0.0.1:0", "--default-address", ip])
            .arg("--state")
            .arg(state.path())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let admin = loop {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("weft up prints its table");
            if let Some(rest) = line.trim().strip_prefix("controller") {
                let url = rest
                    .trim()
                    .trim_start_matches("http://")
                    .trim_end_matches("/status");
                break url.parse().unwrap();
            }
        };
        // The rest of the table follows at once.
        let mut gateway_admins = Vec::new();
        let mut config = None;
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(300)) {
            if !line.starts_with("  ") {
                break;
            }
            let mut words = line.split_whitespace();
            match words.next() {
                Some("gateway") => {
                    gateway_admins.push(line.split_whitespace().last().unwrap().to_string())
                }
                Some("config") => config = words.next().and_then(|a| a.parse().ok()),
                _ => {}
            }
        }
        Weft {
            child,
            admin,
            gateway_admins,
            config,
            dir: dir.to_path_buf(),
            _made: None,
            state,
            stdout: rx,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Replaces a file the way editors do: write a temp file, rename it over.
    pub fn write(&self, name: &str, text: &str) {
        let tmp = self.dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.path(name)).unwrap();
    }

    pub async fn status(&self) -> serde_json::Value {
        reqwest::get(format!("http://{}/status", self.admin))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The status item of one object.
    pub async fn item(&self, kind: &str, name: &str) -> serde_json::Value {
        let status = self.status().await;
        status["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["kind"] == kind && i["metadata"]["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {kind} {name} in /status: {status}"))
    }

    pub fn sigterm(&self) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
    }
}

impl Drop for Weft {
    fn drop(&mut self) {
        self.sigterm();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
    }
}

/// An HTTP client that ignores proxies and pins `host` names to `addr`.
pub fn client(resolve: &[(&str, SocketAddr)]) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10));
    for (host, addr) in resolve {
        b = b.resolve(host, *addr);
    }
    b.build().unwrap()
}

/// Polls `check` every 25 ms until it holds or `limit` passes; returns the
/// time it took.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{what}: not within {limit:?}");
}

/// The text at `url` (an admin endpoint's `/metrics`, say), no proxy.
pub async fn text_of(url: &str) -> String {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// GET `url` with `Host: host`; the status and the echo's JSON (or null).
pub async fn get(c: &reqwest::Client, url: &str, host: &str) -> (u16, serde_json::Value) {
    match c.get(url).header("host", host).send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            let body = r.json().await.unwrap_or(serde_json::Value::Null);
            (status, body)
        }
        Err(_) => (0, serde_json::Value::Null),
    }
}

/// A Service `name` without selector and its EndpointSlice: one endpoint,
/// `ip:port`, behind Service port 80 (with `app_protocol` if given).
pub fn slice_service(name: &str, ip: &str, port: u16, app_protocol: Option<&str>) -> String {
    let app = app_protocol
        .map(|p| format!(", appProtocol: {p}"))
        .unwrap_or_default();
    format!(
        r#"apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec: {{ports: [{{name: http, port: 80{app}}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: {name}-1, labels: {{kubernetes.io/service-name: {name}}}}}
addressType: IPv4
ports: [{{name: http, port: {port}}}]
endpoints: [{{addresses: ["{ip}"]}}]
"#
    )
}

/// Clients that send GETs without pause until stopped, counting responses
/// that satisfy `ok` and those that do not.
pub struct Load {
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ok: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    failed: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub fn start(
        c: &reqwest::Client,
        url: &str,
        host: &str,
        clients: usize,
        ok: fn(u16, &serde_json::Value) -> bool,
    ) -> Load {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::Arc;
        let done = Arc::new(AtomicBool::new(false));
        let (good, bad) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let tasks = (0..clients)
            .map(|_| {
                let (c, url, host) = (c.clone(), url.to_string(), host.to_string());
                let (done, good, bad) = (done.clone(), good.clone(), bad.clone());
                tokio::spawn(async move {
                    while !done.load(Ordering::Relaxed) {
                        let (status, body) = get(&c, &url, &host).await;
                        if ok(status, &body) {
                            good.fetch_add(1, Ordering::Relaxed);
                        } else {
                            eprintln!("failed request: {status} {body}");
                            bad.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        Load {
            done,
            ok: good,
            failed: bad,
            tasks,
        }
    }

    /// Stops the clients; (good, failed) responses.
    pub async fn stop(self) -> (usize, usize) {
        use std::sync::atomic::Ordering;
        self.done.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

/// The pid of the process whose command line contains `needle`.
pub fn pid_of(needle: &str) -> Option<i32> {
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(Result::ok)
        .find_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            (cmdline.contains(needle) && cmdline.contains("echo")).then_some(pid)
        })
}
