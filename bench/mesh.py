"""Scenario 5, `sidecar-pair`: the latency and CPU a client sidecar and a
server sidecar add, with mutual TLS between them, over calling the backend
directly at a fixed rate. The peer is the same pair built from nginx: one
nginx (one worker, on the proxy's core, as `weft up` runs both sidecars in
one worker) whose client side takes plain HTTP and calls its server side
over mutual TLS 1.3 with ECDSA P-256 certificates from one CA, keeping the
connections; the server side calls the backend."""

import os
import subprocess
import time
import urllib.request

import peers

# Both halves of the pair; the client half listens on the client's address
# and the server half on the server's, as the sidecars do.
NGINX_PAIR = """
  upstream server_side {{ server {server_ip}:{mtls_port}; keepalive 128; keepalive_requests 1000000; }}
  upstream app {{ server {server_ip}:{app_port}; keepalive 128; keepalive_requests 1000000; }}
  server {{
    listen {client_ip}:{port};
    location / {{
      proxy_pass https://server_side;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_ssl_protocols TLSv1.3;
      proxy_ssl_certificate {dir}/client.crt;
      proxy_ssl_certificate_key {dir}/client.key;
      proxy_ssl_trusted_certificate {dir}/ca.crt;
      proxy_ssl_verify on;
      proxy_ssl_name server.bench;
      proxy_ssl_server_name on;
      proxy_ssl_session_reuse on;
    }}
  }}
  server {{
    listen {server_ip}:{mtls_port} ssl;
    ssl_protocols TLSv1.3;
    ssl_certificate {dir}/server.crt;
    ssl_certificate_key {dir}/server.key;
    ssl_client_certificate {dir}/ca.crt;
    ssl_verify_client on;
    location / {{
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
"""

APP_PORT = 9080
NGINX_PAIR_PORT = 15101
NGINX_MTLS_PORT = 15106


def pki(directory):
    """A CA and, from it, `server.bench` and `client.bench` certificates
    (ECDSA P-256) in `directory`."""
    def run(*argv):
        subprocess.run(["openssl", *argv], check=True, capture_output=True, cwd=directory)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    run("req", "-x509", *ec, "-days", "2", "-subj", "/CN=bench-ca",
        "-keyout", "ca.key", "-out", "ca.crt")
    for name in ("server", "client"):
        run("req", *ec, "-subj", f"/CN={name}.bench", "-keyout", f"{name}.key",
            "-out", f"{name}.csr")
        ext = os.path.join(directory, f"{name}.ext")
        with open(ext, "w") as f:
            f.write(f"subjectAltName=DNS:{name}.bench\n")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", f"{name}.crt")


def nginx_pair(procs, core):
    pki(procs.dir)
    conf = NGINX_PAIR.format(dir=procs.dir, client_ip=peers.CLIENT_IP,
                             server_ip=peers.SERVER_IP, port=NGINX_PAIR_PORT,
                             mtls_port=NGINX_MTLS_PORT, app_port=APP_PORT)
    return procs.nginx_with("nginx-pair", conf, core)


def sidecar_pair(procs, args, cores, wrk, oha, spread):
    proxy, load = cores
    procs.backend(load, extra_listen=[f"{peers.SERVER_IP}:{APP_PORT}"])
    procs.weft_mesh("weft-mesh", proxy, processes=True)
    urls = {
        "direct": f"http://{peers.SERVER_IP}:{APP_PORT}/",
        "weft": f"http://{peers.CLIENT_IP}:15001/",
    }
    host = [f"Host: server.bench:{APP_PORT}"]
    peers.wait_for(urls["weft"], {"Host": f"server.bench:{APP_PORT}"})
    sidecars = {w: peers.sidecar_pid(f"bench/{w}") for w in ("client", "server")}
    cpu_of = {"weft": lambda: sum(peers.cpu_seconds(p) for p in sidecars.values())}
    if "nginx" in args.peers:
        pair = nginx_pair(procs, proxy)
        urls["nginx"] = f"http://{peers.CLIENT_IP}:{NGINX_PAIR_PORT}/"
        cpu_of["nginx"] = lambda: peers.group_cpu_seconds(pair.pid)
    for url in urls.values():
        peers.wait_for(url, {"Host": f"server.bench:{APP_PORT}"})
    rss = {"idle": {w: peers.rss_kib(p) for w, p in sidecars.items()},
           "idle_own": {w: peers.rss_anon_kib(p) for w, p in sidecars.items()}}
    rate = args.rate
    lat = {name: {"p50": [], "p99": [], "p99.9": []} for name in urls}
    cpu = {name: [] for name in cpu_of}
    for name, url in urls.items():
        if name != "direct":
            wrk(url, load, 1, host)
    for _ in range(args.rounds):
        for name, url in urls.items():
            before = cpu_of[name]() if name in cpu_of else 0.0
            ms, n = oha(url, load, args.duration, rate, host)
            if name in cpu_of:
                cpu[name].append((cpu_of[name]() - before) / max(n, 1) * 1000)
            for k, v in ms.items():
                lat[name][k].append(v)
    rss["loaded"] = {w: peers.rss_kib(p) for w, p in sidecars.items()}
    rss["loaded_own"] = {w: peers.rss_anon_kib(p) for w, p in sidecars.items()}
    # What one more idle sidecar costs inside `weft up` (no process of its
    # own): a mesh with 20 more, against the same mesh without them.
    extra = 20
    inline = procs.weft_mesh("weft-mesh-inline", proxy, base=1)
    bigger = procs.weft_mesh("weft-mesh-more", proxy, idle=extra, base=2)
    time.sleep(3)
    per_sidecar = (peers.rss_kib(bigger.pid) - peers.rss_kib(inline.pid)) / extra

    def added(name):
        return {k: spread([s - d for s, d in zip(lat[name][k], lat["direct"][k])])
                for k in ("p50", "p99", "p99.9")}

    pairs = {name: {"added_ms": added(name), "cpu_seconds_per_1000": spread(cpu[name])}
             for name in cpu_of}
    return {
        "rate": rate,
        "latency_ms": {p: {k: spread(v) for k, v in d.items()} for p, d in lat.items()},
        "added_ms": pairs["weft"]["added_ms"],
        "cpu_seconds_per_1000": pairs["weft"]["cpu_seconds_per_1000"],
        "pairs": pairs,
        "sidecar_rss_kib": rss,
        "idle_sidecar_rss_kib": per_sidecar,
    }


# `sidecar-routes`: Services, each with a GAMMA HTTPRoute, that the client
# never calls.
UNUSED_ROUTE = """---
apiVersion: v1
kind: Service
metadata: {{name: s{i}, namespace: bench}}
spec: {{selector: {{app: none-{i}}}, ports: [{{name: http, port: 80}}]}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r{i}, namespace: bench}}
spec:
  parentRefs: [{{group: "", kind: Service, name: s{i}, port: 80}}]
  rules:
  - backendRefs: [{{name: s{i}, port: 80}}]
    filters: [{{type: RequestHeaderModifier, requestHeaderModifier: {{set: [{{name: x-route, value: "{i}"}}]}}}}]
"""
UNUSED_ROUTES = 10000
# The second mesh's client and server, beside the first's.
MANY_IPS = ("127.0.70.12", "127.0.70.13")


def sidecar_routes(procs, args, cores, wrk):
    """Scenario 8, `sidecar-routes`: a client sidecar's memory in a mesh
    with `UNUSED_ROUTES` Services and GAMMA routes it never calls, against
    the same mesh without them (both `weft-sidecar` processes, both meshes
    up at once): a sidecar's config holds only what its workload calls, so
    its memory must not grow with the rest of the mesh."""
    proxy, load = cores
    n = 100 if args.smoke else UNUSED_ROUTES
    ips = {"plain": (peers.CLIENT_IP, peers.SERVER_IP), "many": MANY_IPS}
    procs.backend(load, extra_listen=[f"{ip[1]}:{APP_PORT}" for ip in ips.values()])
    started = time.time()
    ups = {"plain": procs.weft_mesh("weft-mesh", proxy, processes=True),
           "many": procs.weft_mesh("weft-mesh-routes", proxy, processes=True, ips=MANY_IPS,
                                   extra_text="".join(UNUSED_ROUTE.format(i=i) for i in range(n)))}
    host = f"server.bench:{APP_PORT}"
    result = {"routes": n, "meshes": {}}
    for name, (client_ip, _) in ips.items():
        url = f"http://{client_ip}:15001/"
        peers.wait_for(url, {"Host": host}, limit=300)
        ready_s = time.time() - started
        pid = peers.sidecar_pid("bench/client", ip=client_ip)
        idle = (peers.rss_kib(pid), peers.rss_anon_kib(pid))
        _, requests = wrk(url, load, max(1, args.duration // 2), [f"Host: {host}"])
        dump = urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
            f"http://{client_ip}:15020/config_dump", timeout=10).read()
        result["meshes"][name] = {
            "ready_s": ready_s, "requests": requests, "config_dump_bytes": len(dump),
            "client_rss_kib": {"idle": idle[0], "idle_own": idle[1],
                               "loaded": peers.rss_kib(pid), "loaded_own": peers.rss_anon_kib(pid)},
            "weft_up_rss_kib": peers.rss_kib(ups[name].pid),
        }
    return result


def routes_table(r):
    m = r["meshes"]
    mib = lambda kib: f"{kib / 1024:.1f}"  # noqa: E731
    lines = [
        f"Sidecar with unused routes: a client `weft-sidecar` in a mesh with {r['routes']:,} "
        "more Services, each with a GAMMA HTTPRoute, that it never calls, against the same "
        "mesh without them (both up at once); `loaded` after a burst of calls to its one "
        "server.",
        "",
        "| figure | without | with |",
        "| --- | --- | --- |",
    ]
    rows = [("client sidecar RSS idle, MiB", lambda e: mib(e["client_rss_kib"]["idle"])),
            ("its own (anonymous) RSS idle, MiB", lambda e: mib(e["client_rss_kib"]["idle_own"])),
            ("client sidecar RSS loaded, MiB", lambda e: mib(e["client_rss_kib"]["loaded"])),
            ("its own (anonymous) RSS loaded, MiB",
             lambda e: mib(e["client_rss_kib"]["loaded_own"])),
            ("its config (`/config_dump`), bytes", lambda e: f"{e['config_dump_bytes']:,}"),
            ("`weft up` (controller, CA) RSS, MiB", lambda e: mib(e["weft_up_rss_kib"]))]
    for label, f in rows:
        lines.append(f"| {label} | {f(m['plain'])} | {f(m['many'])} |")
    return lines
