"""Profiles one proxy under the gateway-h1 load (or, for `h2-tls`, the
gateway-tls scenario's HTTP/2 load, h2load over TLS 1.3): the load
generator on the load core, the proxy alone on its core, `perf record` (CPU clock, DWARF call graphs) on
the proxy's process for a few seconds in the middle of the load. Writes,
under bench/profiles/: NAME.svg (a flamegraph, by inferno) and NAME.txt
(the run's req/s and the functions with the most self time, and the most
time including callees).

Usage: bench/profile.py NAME [--peer weft|pingora|nginx|sidecar-pair]
                        [--h2-tls] [--weft PATH] [--bare PATH] [--seconds S]
                        [--folded PATH]
Needs perf (Debian linux-perf) and inferno (`cargo install inferno`)."""

import argparse
import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402
import mesh  # noqa: E402
import peers  # noqa: E402
import tls  # noqa: E402

OUT = os.path.join(bench.ROOT, "bench", "profiles")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name")
    ap.add_argument("--peer", default="weft",
                    choices=("weft", "pingora", "nginx", "sidecar-pair"))
    ap.add_argument("--weft", help="a weft binary to use instead of a release build")
    ap.add_argument("--seconds", type=int, default=6)
    ap.add_argument("--folded", help="also write the folded stacks here")
    ap.add_argument("--bare", help="a bare Pingora binary to use instead of building one")
    ap.add_argument("--h2-tls", action="store_true",
                    help="HTTP/2 over TLS (gateway-tls's load); weft or nginx only")
    args = ap.parse_args()
    for tool in ("perf", "inferno-collapse-perf", "inferno-flamegraph", "wrk"):
        if not shutil.which(tool):
            sys.exit(f"profile: {tool} is missing (perf: apt-get install linux-perf; "
                     "inferno: cargo install inferno)")
    weft = args.weft or bench.build_weft()
    proxy, load = (0, 1) if (os.cpu_count() or 1) > 1 else (0, 0)
    procs = peers.Procs(weft)
    try:
        headers = []
        if args.peer == "sidecar-pair":
            # Both sidecar processes of the pair, as the sidecar-pair scenario
            # runs them; the load goes to the client's outbound port.
            procs.backend(load, extra_listen=[f"{peers.SERVER_IP}:{mesh.APP_PORT}"])
            procs.weft_mesh("weft-mesh", proxy, processes=True)
            url = f"http://{peers.CLIENT_IP}:15001/"
            headers = [f"Host: server.bench:{mesh.APP_PORT}"]
            peers.wait_for(url, {"Host": f"server.bench:{mesh.APP_PORT}"})
            pids = [peers.sidecar_pid(f"bench/{w}") for w in ("client", "server")]
            profile(args, procs, url, headers, ",".join(str(p) for p in pids), load)
            return
        if args.h2_tls:
            if args.peer not in ("weft", "nginx"):
                sys.exit("profile: --h2-tls profiles weft or nginx")
            p = tls.start(procs, [args.peer], proxy, load)[args.peer]
            url = f"https://127.0.0.1:{tls.PORTS[args.peer]}/"
            profile(args, procs, url, [], str(proxy_pid(args.peer, p.pid)), load)
            return
        procs.backend(load)
        peers.wait_for("http://%s:%d/" % peers.BACKEND)
        if args.peer == "weft":
            p = procs.weft_gateway(proxy)
        elif args.peer == "pingora":
            p = procs.pingora(args.bare or bench.bare_proxy(), proxy)
        else:
            p = procs.nginx(proxy)
        url = f"http://127.0.0.1:{peers.PORTS[args.peer]}/"
        peers.wait_for(url)
        profile(args, procs, url, headers, str(proxy_pid(args.peer, p.pid)), load)
    finally:
        procs.close()


def proxy_pid(peer, pid):
    """The process to record: the one started (taskset execs the proxy),
    or nginx's one worker rather than its master."""
    if peer != "nginx":
        return pid
    return int(subprocess.run(["pgrep", "-P", str(pid)], check=True,
                              capture_output=True, text=True).stdout.split()[0])


def profile(args, procs, url, headers, pids, load):
    """Records `pids` (comma-separated) under wrk's (or h2load's) load on
    `url`; writes the flamegraph and the table."""
    data = os.path.join(procs.dir, "perf.data")
    wrk_headers = [a for h in headers for a in ("-H", h)]
    if args.h2_tls:
        tls.h2load(url, load, 1)
        argv = ["h2load", f"-c{tls.H2_CLIENTS}", f"-m{tls.H2_STREAMS}", "-t1",
                "-D", str(args.seconds + 4), url]
    else:
        bench.wrk(url, load, 1, headers)
        argv = ["wrk", "-t1", f"-c{bench.CONNECTIONS}", f"-d{args.seconds + 4}s",
                *wrk_headers, url]
    load_run = subprocess.Popen(["taskset", "-c", str(load), *argv],
                                stdout=subprocess.PIPE, text=True)
    time.sleep(2)
    subprocess.run(["perf", "record", "-q", "-e", "cpu-clock", "-F", "999",
                    "--call-graph", "dwarf,32768", "-p", pids, "-o", data,
                    "--", "sleep", str(args.seconds)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = load_run.communicate()[0]
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out) or re.search(
        r"finished in [\d.]+m?s, ([\d.]+) req/s", out)
    os.makedirs(OUT, exist_ok=True)
    folded = subprocess.run(
        f"perf script -i {data} 2>/dev/null | inferno-collapse-perf --all",
        shell=True, check=True, capture_output=True, text=True).stdout
    if args.folded:
        with open(args.folded, "w") as f:
            f.write(folded)
    with open(os.path.join(OUT, args.name + ".svg"), "w") as f:
        subprocess.run(["inferno-flamegraph", "--title", f"{args.name} ({args.peer})"],
                       input=folded, stdout=f, check=True, text=True)
    with open(os.path.join(OUT, args.name + ".txt"), "w") as f:
        load_name = "h2load over TLS" if args.h2_tls else f"wrk -c{bench.CONNECTIONS}"
        f.write(f"{args.name}: {args.peer} under {load_name}, "
                f"{rps.group(1) if rps else '?'} req/s while profiled\n\n")
        f.write(summary(folded))
    print(os.path.join(OUT, args.name + ".svg"))


def summary(folded, top=40):
    """Self and total time per function, as shares of all samples."""
    self_time, total, samples = {}, {}, 0
    for line in folded.splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        n = int(n)
        samples += n
        frames = [short(f) for f in stack.split(";")]
        self_time[frames[-1]] = self_time.get(frames[-1], 0) + n
        for f in set(frames):
            total[f] = total.get(f, 0) + n
    lines = ["self time:\n"]
    for f, n in sorted(self_time.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"{100 * n / samples:6.2f}%  {f}\n")
    lines.append("\ntime with callees:\n")
    for f, n in sorted(total.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"{100 * n / samples:6.2f}%  {f}\n")
    return "".join(lines)


def short(frame):
    """A frame without its hash suffix and generic arguments (`Foo<T>` is
    `Foo`; `<A as B>::f` keeps its qualified form)."""
    frame = re.sub(r"::h[0-9a-f]{16}$", "", frame)
    while True:
        shorter = re.sub(r"(?<=[A-Za-z0-9_])<[^<>]*>", "", frame)
        if shorter == frame:
            return frame
        frame = shorter


if __name__ == "__main__":
    main()
