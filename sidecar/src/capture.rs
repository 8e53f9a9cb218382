//! Transparent capture: the iptables rules that send a workload's TCP
//! traffic through its sidecar with no HTTP_PROXY, as Istio's init
//! container does in a pod. Outbound connections from any process but the
//! proxy's own user go to the outbound listener, which reads where each was
//! bound (`SO_ORIGINAL_DST`); inbound connections to an application port go
//! to that port's mutual-TLS listener.
//!
//! The rules are returned as `iptables` argument lists, so they can be
//! printed for review or applied.

use std::net::SocketAddr;

const OUTPUT_CHAIN: &str = "WEFT_OUTPUT";
const INBOUND_CHAIN: &str = "WEFT_INBOUND";

/// What to capture.
#[derive(Clone, Debug)]
pub struct Capture {
    /// The sidecar's outbound listener.
    pub outbound: SocketAddr,
    /// (application port, the inbound listener taking its connections).
    pub inbound: Vec<(u16, SocketAddr)>,
    /// The user the proxy runs as; its own connections are not captured.
    pub proxy_uid: u32,
}

/// The `iptables` invocations (without the program name) that install
/// `capture`, in order, in the `nat` table of the current network namespace.
pub fn rules(capture: &Capture) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut add = |args: &[&str]| out.push(args.iter().map(|a| a.to_string()).collect());
    add(&["-t", "nat", "-N", OUTPUT_CHAIN]);
    add(&["-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-j", OUTPUT_CHAIN]);
    let uid = capture.proxy_uid.to_string();
    // The proxy's own connections (upstream calls, the controller, the CA).
    add(&[
        "-t",
        "nat",
        "-A",
        OUTPUT_CHAIN,
        "-m",
        "owner",
        "--uid-owner",
        &uid,
        "-j",
        "RETURN",
    ]);
    // The application talking to itself.
    add(&[
        "-t",
        "nat",
        "-A",
        OUTPUT_CHAIN,
        "-d",
        "127.0.0.1/32",
        "-j",
        "RETURN",
    ]);
    let outbound = capture.outbound.to_string();
    add(&[
        "-t",
        "nat",
        "-A",
        OUTPUT_CHAIN,
        "-p",
        "tcp",
        "-j",
        "DNAT",
        "--to-destination",
        &outbound,
    ]);
    if !capture.inbound.is_empty() {
        add(&["-t", "nat", "-N", INBOUND_CHAIN]);
        add(&[
            "-t",
            "nat",
            "-A",
            "PREROUTING",
            "-p",
            "tcp",
            "-j",
            INBOUND_CHAIN,
        ]);
        for (port, listener) in &capture.inbound {
            let (port, listener) = (port.to_string(), listener.to_string());
            add(&[
                "-t",
                "nat",
                "-A",
                INBOUND_CHAIN,
                "-p",
                "tcp",
                "--dport",
                &port,
                "-j",
                "DNAT",
                "--to-destination",
                &listener,
            ]);
        }
    }
    out
}

/// The rules as shell lines, for `weft sidecar iptables` to print.
pub fn script(capture: &Capture) -> String {
    rules(capture)
        .iter()
        .map(|r| format!("iptables {}\n", r.join(" ")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_outbound_except_the_proxy_and_inbound_per_port() {
        let capture = Capture {
            outbound: "127.0.0.1:15001".parse().unwrap(),
            inbound: vec![(9080, "10.0.0.7:15006".parse().unwrap())],
            proxy_uid: 1337,
        };
        let script = script(&capture);
        let lines: Vec<&str> = script.lines().collect();
        assert_eq!(
            lines,
            [
                "iptables -t nat -N WEFT_OUTPUT",
                "iptables -t nat -A OUTPUT -p tcp -j WEFT_OUTPUT",
                "iptables -t nat -A WEFT_OUTPUT -m owner --uid-owner 1337 -j RETURN",
                "iptables -t nat -A WEFT_OUTPUT -d 127.0.0.1/32 -j RETURN",
                "iptables -t nat -A WEFT_OUTPUT -p tcp -j DNAT --to-destination 127.0.0.1:15001",
                "iptables -t nat -N WEFT_INBOUND",
                "iptables -t nat -A PREROUTING -p tcp -j WEFT_INBOUND",
                "iptables -t nat -A WEFT_INBOUND -p tcp --dport 9080 -j DNAT --to-destination 10.0.0.7:15006",
            ]
        );
    }
}
