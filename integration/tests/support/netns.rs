//! A network namespace with a veth pair to this one, for tests that need a
//! host of their own (transparent capture, a pod): it needs root, `ip`,
//! `iptables`, `setpriv` and `curl`.

use std::process::{Command, Output};

pub fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"))
}

pub fn must(program: &str, args: &[&str]) {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether this process can make namespaces and has the tools.
pub fn available() -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let tools = ["ip", "iptables", "setpriv", "curl", "openssl"]
        .iter()
        .all(|t| {
            run("sh", &["-c", &format!("command -v {t}")])
                .status
                .success()
        });
    root && tools
}

/// A namespace whose end of the pair has `inner` (a /30 with `outer` on
/// this side), removed on drop.
pub struct Netns {
    pub name: String,
    /// This side's end of the pair; none for a namespace made bare.
    outer_if: String,
}

impl Netns {
    /// `tag` names it (a few letters); `outer` and `inner` are the two
    /// addresses of a /30.
    pub fn new(tag: &str, outer: &str, inner: &str) -> Netns {
        let id = std::process::id() % 100_000;
        let (name, outer_if, inner_if) = (
            format!("weft-{tag}-{id}"),
            format!("w{tag}{id}a"),
            format!("w{tag}{id}b"),
        );
        let _ = run("ip", &["netns", "del", &name]);
        let _ = run("ip", &["link", "del", &outer_if]);
        must("ip", &["netns", "add", &name]);
        let ns = Netns { name, outer_if };
        let n = ns.name.as_str();
        must("ip", &["-n", n, "link", "set", "lo", "up"]);
        must(
            "ip",
            &[
                "link",
                "add",
                &ns.outer_if,
                "type",
                "veth",
                "peer",
                "name",
                &inner_if,
            ],
        );
        must("ip", &["link", "set", &inner_if, "netns", n]);
        must(
            "ip",
            &["addr", "add", &format!("{outer}/30"), "dev", &ns.outer_if],
        );
        must("ip", &["link", "set", &ns.outer_if, "up"]);
        must(
            "ip",
            &[
                "-n",
                n,
                "addr",
                "add",
                &format!("{inner}/30"),
                "dev",
                &inner_if,
            ],
        );
        must("ip", &["-n", n, "link", "set", &inner_if, "up"]);
        // Inbound connections are sent on to listeners on loopback addresses.
        for iface in ["all", inner_if.as_str()] {
            let key = format!("net.ipv4.conf.{iface}.route_localnet=1");
            must("ip", &["netns", "exec", n, "sysctl", "-qw", &key]);
        }
        ns
    }

    /// A namespace with only its loopback (up), removed on drop.
    pub fn bare(tag: &str) -> Netns {
        let name = format!("weft-{tag}-{}", std::process::id() % 100_000);
        let _ = run("ip", &["netns", "del", &name]);
        must("ip", &["netns", "add", &name]);
        must("ip", &["-n", &name, "link", "set", "lo", "up"]);
        Netns {
            name,
            outer_if: String::new(),
        }
    }

    /// A veth pair between this namespace (`ip`) and `other` (`other_ip`),
    /// both in one /30: the only way between them. Returns the names of
    /// its two ends (this namespace's first).
    pub fn link(&self, ip: &str, other: &Netns, other_ip: &str) -> (String, String) {
        let id = std::process::id() % 100_000;
        let (a, b) = (format!("wl{id}a"), format!("wl{id}b"));
        must(
            "ip",
            &[
                "-n",
                &self.name,
                "link",
                "add",
                &a,
                "type",
                "veth",
                "peer",
                "name",
                &b,
                "netns",
                &other.name,
            ],
        );
        for (ns, iface, addr) in [(&self.name, &a, ip), (&other.name, &b, other_ip)] {
            must(
                "ip",
                &["-n", ns, "addr", "add", &format!("{addr}/30"), "dev", iface],
            );
            must("ip", &["-n", ns, "link", "set", iface, "up"]);
        }
        (a, b)
    }

    /// Runs `f` on a thread of its own inside the namespace: the sockets
    /// it opens are the namespace's.
    pub fn within<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        within_ns(&self.name, f)
    }

    /// `args` in the namespace, as `uid` when given.
    pub fn command(&self, uid: Option<u32>, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]);
        if let Some(uid) = uid {
            c.args([
                "setpriv",
                &format!("--reuid={uid}"),
                &format!("--regid={uid}"),
                "--clear-groups",
            ]);
        }
        c.args(args);
        c
    }

    /// Runs `args` in the namespace, as `user` (a uid) when given.
    pub fn exec(&self, user: Option<&str>, args: &[&str]) -> Output {
        let mut full = vec!["netns", "exec", &self.name];
        let reuid;
        if let Some(uid) = user {
            reuid = format!("--reuid={uid}");
            full.extend(["setpriv", &reuid, "--regid=65534", "--clear-groups"]);
        }
        full.extend(args);
        run("ip", &full)
    }

    /// `curl` in the namespace as an unprivileged user: (status, body).
    pub fn curl(&self, args: &[&str]) -> Option<(u16, serde_json::Value)> {
        let mut full = vec!["curl", "-s", "-m", "5", "-w", "\n%{http_code}"];
        full.extend(args);
        let out = self.exec(Some("65534"), &full);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n')?;
        let code: u16 = code.trim().parse().ok()?;
        (code != 0).then(|| (code, serde_json::from_str(body).unwrap_or_default()))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "del", &self.name]);
        if !self.outer_if.is_empty() {
            let _ = run("ip", &["link", "del", &self.outer_if]);
        }
    }
}

/// Runs `f` on a thread of its own inside the namespace `name`: the
/// sockets it opens are the namespace's.
pub fn within_ns<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{name}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap();
        use std::os::fd::AsRawFd;
        // SAFETY: setns(2) on this thread alone, with an open namespace file.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}");
        f()
    })
    .join()
    .unwrap()
}
