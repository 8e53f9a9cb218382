"""TLS termination (`gateway-tls`): every peer terminates TLS 1.3 with the
same ECDSA P-256 certificate and proxies plain HTTP/1.1 to the backend.
Measured over HTTP/1.1 (wrk) and HTTP/2 (h2load): maximum requests/s,
latency at a fixed rate (oha), and full handshakes per second (a new
connection per request, no session resumption)."""

import os
import re
import statistics
import subprocess

import peers

# Ports of the TLS listeners; "direct" is the backend's own TLS listener.
PORTS = {"direct": 18440, "nginx": 18441, "haproxy": 18442, "weft": 18443}
H2_CLIENTS, H2_STREAMS = 16, 8

NGINX_TLS = """
  upstream backend {{ server {backend}; keepalive 128; keepalive_requests 1000000; }}
  server {{
    listen 127.0.0.1:{port} ssl http2;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    ssl_protocols TLSv1.3;
    http2_max_requests 1000000;
    location / {{
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
"""

HAPROXY_TLS = """
global
  nbthread 1
  maxconn 8192
  ssl-default-bind-options ssl-min-ver TLSv1.3
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
  http-reuse always
frontend fe
  bind 127.0.0.1:{port} ssl crt {pem} alpn h2,http/1.1
  default_backend be
backend be
  server s1 {backend}
"""

# The backend's own TLS listener, for the "direct" baseline.
BACKEND_TLS = """
    listen 127.0.0.1:{port} ssl http2;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    ssl_protocols TLSv1.3;
"""

# The listener, and the Secret with the bench certificate.
WEFT_TLS_LISTENER = (
    "[{name: https, port: %d, protocol: HTTPS, "
    "tls: {mode: Terminate, certificateRefs: [{name: bench-tls}]}}]"
)
WEFT_TLS_SECRET = """---
apiVersion: v1
kind: Secret
metadata: {{name: bench-tls}}
type: kubernetes.io/tls
stringData:
  tls.crt: |
{cert}
  tls.key: |
{key}
"""


def certificate(procs):
    """A self-signed ECDSA P-256 certificate for 127.0.0.1: (cert, key) paths."""
    cert = os.path.join(procs.dir, "tls.crt")
    key = os.path.join(procs.dir, "tls.key")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "2", "-subj", "/CN=bench.weft", "-keyout", key, "-out", cert,
         "-addext", "subjectAltName=DNS:bench.weft,IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    return cert, key


def indent(path):
    with open(path) as f:
        return "".join("    " + line for line in f)


def start(procs, names, proxy, load):
    cert, key = certificate(procs)
    tls = BACKEND_TLS.format(port=PORTS["direct"], cert=cert, key=key)
    procs.backend(load, extra=tls)
    backend = "%s:%d" % peers.BACKEND
    running = {"direct": None}
    if "nginx" in names:
        http = NGINX_TLS.format(port=PORTS["nginx"], backend=backend, cert=cert, key=key)
        running["nginx"] = procs.nginx_with("nginx-tls", http, proxy)
    if "haproxy" in names:
        with open(cert) as c, open(key) as k:
            pem = procs.write("haproxy.pem", c.read() + k.read())
        conf = HAPROXY_TLS.format(port=PORTS["haproxy"], pem=pem, backend=backend)
        running["haproxy"] = procs.start(
            "haproxy-tls", ["haproxy", "-f", procs.write("haproxy-tls.cfg", conf)], proxy)
    if "weft" in names:
        text = peers.weft_folder(WEFT_TLS_LISTENER % PORTS["weft"])
        text += WEFT_TLS_SECRET.format(cert=indent(cert), key=indent(key))
        running["weft"] = procs.weft_up("weft-tls", text + peers.CATCH_ALL, proxy)
    for name in running:
        peers.wait_for(f"https://127.0.0.1:{PORTS[name]}/", insecure=True)
    return running


def h2load(url, core, seconds):
    """Maximum HTTP/2 throughput: requests/s."""
    argv = ["taskset", "-c", str(core), "h2load", f"-c{H2_CLIENTS}", f"-m{H2_STREAMS}",
            "-t1", "-D", str(seconds), url]
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out)
    rps = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out)
    if not done or not rps:
        raise RuntimeError(f"{url}: unreadable h2load output\n{out}")
    if done.group(1) != done.group(2):
        raise RuntimeError(f"{url}: {int(done.group(1)) - int(done.group(2))} failed\n{out}")
    return float(rps.group(1))


def gateway_tls(procs, args, cores, wrk, oha, spread):
    proxy, load = cores
    running = start(procs, args.peers, proxy, load)
    url = {n: f"https://127.0.0.1:{PORTS[n]}/" for n in running}
    close = ["Connection: close"]
    for name in running:  # warm up every path
        wrk(url[name], load, 1)
        h2load(url[name], load, 1)
    keys = ("h1_rps", "h2_rps", "handshakes", "cpu_ms_per_handshake")
    got = {n: {k: [] for k in keys} for n in running}
    for _ in range(args.rounds):
        for name in running:
            got[name]["h1_rps"].append(wrk(url[name], load, args.duration)[0])
            got[name]["h2_rps"].append(h2load(url[name], load, args.duration))
            pid = running[name].pid if running[name] else None
            before = peers.group_cpu_seconds(pid) if pid else 0.0
            hs, total = wrk(url[name], load, args.duration, close)
            got[name]["handshakes"].append(hs)
            # The client may be what limits handshakes/s; the proxy's CPU
            # per handshake does not depend on that.
            used = peers.group_cpu_seconds(pid) - before if pid else 0.0
            got[name]["cpu_ms_per_handshake"].append(used * 1000 / max(total, 1))
    proxies = [n for n in running if n != "direct"]
    rate = {
        p: max(100, int(0.5 * min(statistics.median(got[n][f"{p}_rps"]) for n in proxies)))
        for p in ("h1", "h2")
    }
    lat = {n: {p: {"p50": [], "p99": [], "p99.9": []} for p in rate} for n in running}
    # oha reads the system's roots before it starts its clock's first
    # requests; a one-certificate store keeps that stall out of the tail.
    roots = os.path.join(procs.dir, "roots")
    os.makedirs(roots, exist_ok=True)
    quick_roots = {"SSL_CERT_FILE": os.path.join(procs.dir, "tls.crt"), "SSL_CERT_DIR": roots}
    if args.latency:
        for _ in range(args.rounds):
            for name in running:
                for p in rate:
                    extra = ["--http2"] if p == "h2" else []
                    ms, _ = oha(url[name], load, args.duration, rate[p],
                                flags=["--insecure", *extra], env=quick_roots)
                    for k, v in ms.items():
                        lat[name][p][k].append(v)
    result = {"fixed_rate": rate, "h2": {"clients": H2_CLIENTS, "streams": H2_STREAMS},
              "peers": {}}
    for name in running:
        entry = {k: spread(v) for k, v in got[name].items()}
        if args.latency:
            entry["latency_ms"] = {p: {k: spread(v) for k, v in d.items()}
                                   for p, d in lat[name].items()}
        if running[name] is not None:
            entry["rss_kib"] = peers.rss_kib(running[name].pid)
        result["peers"][name] = entry
    return result
