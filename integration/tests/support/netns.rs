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
        let _ = run("ip", &["link", "del", &self.outer_if]);
    }
}
