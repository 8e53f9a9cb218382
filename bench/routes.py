"""Route-table scenarios: how the gateway and the controller scale with the
number of HTTPRoutes (`route-scale`), and how fast a route edit goes live
and whether requests fail while routes change (`route-propagation`)."""

import http.client
import os
import subprocess
import threading
import time

import peers

ROUTE = """---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r{i}}}
spec:
  parentRefs: [{{name: bench}}]
  hostnames: [h{i}.bench]
  rules:
  - backendRefs: [{{name: backend, port: 80}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {{set: [{{name: x-edit, value: "{value}"}}]}}
"""


def routes(n, value="0"):
    return "".join(ROUTE.format(i=i, value=value) for i in range(n))


def get(host, port, hostname, timeout=2.0):
    """The status of one GET, or 0 when it fails."""
    try:
        c = http.client.HTTPConnection(host, port, timeout=timeout)
        c.request("GET", "/", headers={"Host": hostname})
        status = c.getresponse().status
        c.close()
        return status
    except OSError:
        return 0


def gateway_folder(procs, name, n):
    """A weft up folder: the bench Gateway and backend, plus `n` routes."""
    # No catch-all route: every route names its host.
    procs.write(os.path.join(name, "base.yaml"), procs.gateway_text())
    procs.write(os.path.join(name, "routes.yaml"), routes(n))
    return os.path.join(procs.dir, name)


def analyze(weft, folder):
    """Wall time and peak RSS of `weft analyze` (parse and translate once)."""
    start = time.perf_counter()
    p = subprocess.Popen([weft, "analyze", folder], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    _, _, usage = os.wait4(p.pid, 0)
    p.returncode = 0
    return time.perf_counter() - start, usage.ru_maxrss


def route_scale(procs, args, cores, wrk):
    proxy, load = cores
    procs.backend(load)
    peers.wait_for("http://%s:%d/" % peers.BACKEND)
    out = {}
    sizes = [10, 100] if args.smoke else [10, 1000, 10000]
    port = peers.PORTS["weft"]
    for n in sizes:
        folder = gateway_folder(procs, f"routes-{n}", n)
        translate_s, analyze_rss = analyze(procs.weft, folder)
        state = folder + "-state"
        env = {"TOKIO_WORKER_THREADS": "1", "RUST_LOG": "warn", "PATH": os.environ["PATH"]}
        started = time.perf_counter()
        p = procs.start(f"weft-routes-{n}", [procs.weft, "up", folder, "--admin",
                                             "127.0.0.1:0", "--state", state], proxy, env)
        last = f"h{n - 1}.bench"
        while get("127.0.0.1", port, last) != 200:
            if time.perf_counter() - started > 120:
                raise RuntimeError(f"{n} routes: not serving after 120 s")
            time.sleep(0.01)
        ready_s = time.perf_counter() - started
        rps = []
        for _ in range(args.rounds):
            r, _ = wrk(f"http://127.0.0.1:{port}/", load, args.duration, [f"Host: h{n // 2}.bench"])
            rps.append(r)
        out[str(n)] = {
            "max_rps": rps,
            "weft_up_rss_kib": peers.rss_kib(p.pid),
            "analyze_seconds": translate_s,
            "analyze_max_rss_kib": analyze_rss,
            "up_until_last_route_serves_s": ready_s,
        }
        p.terminate()
        p.wait(15)
    return out


class Load(threading.Thread):
    """Requests without pause on one host until stopped: (ok, failed)."""

    def __init__(self, port, hostname):
        super().__init__(daemon=True)
        self.port, self.hostname = port, hostname
        self.ok = self.failed = 0
        self.stop = False

    def run(self):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        while not self.stop:
            try:
                c.request("GET", "/", headers={"Host": self.hostname})
                r = c.getresponse()
                r.read()
                if r.status == 200:
                    self.ok += 1
                else:
                    self.failed += 1
            except OSError:
                self.failed += 1
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)


def live_after_write(procs, folder, port, i):
    """Seconds from writing route `i`'s file until it answers 200."""
    path = os.path.join(folder, f"new-{i}.yaml")
    text = ROUTE.format(i=f"new{i}", value="0")
    start = time.perf_counter()
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.rename(path + ".tmp", path)
    while get("127.0.0.1", port, f"hnew{i}.bench", timeout=1) != 200:
        if time.perf_counter() - start > 30:
            raise RuntimeError("a new route did not go live within 30 s")
        time.sleep(0.001)
    return time.perf_counter() - start


def route_propagation(procs, args, cores):
    proxy, load = cores
    procs.backend(load)
    peers.wait_for("http://%s:%d/" % peers.BACKEND)
    n = 100 if args.smoke else 1000
    folder = gateway_folder(procs, "propagation", n)
    env = {"TOKIO_WORKER_THREADS": "1", "RUST_LOG": "warn", "PATH": os.environ["PATH"]}
    procs.start("weft-propagation", [procs.weft, "up", folder, "--admin", "127.0.0.1:0",
                                     "--state", folder + "-state"], proxy, env)
    port = peers.PORTS["weft"]
    peers.wait_for(f"http://127.0.0.1:{port}/", {"Host": f"h{n - 1}.bench"})
    tries = 3 if args.smoke else 10
    idle = [live_after_write(procs, folder, port, i) for i in range(tries)]
    load_threads = [Load(port, "h1.bench") for _ in range(4)]
    for t in load_threads:
        t.start()
    busy = [live_after_write(procs, folder, port, 100 + i) for i in range(tries)]
    # 100 edits of the whole route file under load.
    edits = 10 if args.smoke else 100
    path = os.path.join(folder, "routes.yaml")
    for e in range(edits):
        with open(path + ".tmp", "w") as f:
            f.write(routes(n, value=str(e + 1)))
        os.rename(path + ".tmp", path)
        time.sleep(0.05)
    time.sleep(0.5)
    for t in load_threads:
        t.stop = True
    for t in load_threads:
        t.join(10)
    return {
        "routes": n,
        "live_idle_ms": [s * 1000 for s in idle],
        "live_under_load_ms": [s * 1000 for s in busy],
        "edits": edits,
        "requests_during_edits": sum(t.ok + t.failed for t in load_threads),
        "failed_during_edits": sum(t.failed for t in load_threads),
    }
