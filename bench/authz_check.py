"""The `gateway-authz` scenario: what an AuthorizationPolicy of many rules
costs a gateway. One `weft up` runs two Gateways on one core: `bench`
without a policy and `authz` with an Allow policy of `RULES` rules (each a
path prefix and a method), of which the load's `GET /` matches only the
last, so every request is checked against all of them (the worst case of
first-match). Both alternate within a round; before measuring, the
scenario checks the policy is in force (a request no rule allows gets
403)."""

import http.client
import statistics

import peers

RULES = 1000
PORT = 18087

AUTHZ = """---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: authz}}
spec:
  gatewayClassName: weft
  addresses: [{{type: IPAddress, value: 127.0.0.1}}]
  listeners: [{{name: http, port: {port}, protocol: HTTP}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: authz}}
spec:
  parentRefs: [{{name: authz}}]
  rules: [{{backendRefs: [{{name: backend, port: 80}}]}}]
---
apiVersion: weft.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {{name: many-rules}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: Gateway, name: authz}}]
  action: Allow
  rules:
{rules}"""

RULE = "  - {{paths: [\"{path}\"], methods: [{method}]}}\n"


def folder(rules):
    text = peers.weft_folder("[{name: http, port: %d, protocol: HTTP}]" % peers.PORTS["weft"])
    text += peers.CATCH_ALL
    body = "".join(RULE.format(path=f"/r{i}/*", method="GET") for i in range(rules - 1))
    body += RULE.format(path="/", method="GET")
    return text + AUTHZ.format(port=PORT, rules=body)


def status(port, method):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request(method, "/", headers={"Host": "authz.bench"})
    s = c.getresponse().status
    c.close()
    return s


def gateway_authz(procs, args, cores, wrk, oha, spread):
    proxy, load = cores
    procs.backend(load)
    peers.wait_for("http://%s:%d/" % peers.BACKEND)
    running = procs.weft_up("weft-authz", folder(RULES), proxy)
    urls = {"none": f"http://127.0.0.1:{peers.PORTS['weft']}/",
            "rules": f"http://127.0.0.1:{PORT}/"}
    for url in urls.values():
        peers.wait_for(url)
    # The policy is in force: what no rule allows is refused.
    refused = status(PORT, "DELETE")
    if refused != 403 or status(PORT, "GET") != 200:
        raise RuntimeError(f"the {RULES}-rule policy is not in force (DELETE got {refused})")
    for url in urls.values():
        wrk(url, load, 1)
    rps = {name: [] for name in urls}
    for _ in range(args.rounds):
        for name, url in urls.items():
            r, _ = wrk(url, load, args.duration)
            rps[name].append(r)
    rate = max(100, int(min(statistics.median(v) for v in rps.values()) * 0.5))
    lat = {name: {"p50": [], "p99": []} for name in urls}
    if args.latency:
        for _ in range(args.rounds):
            for name, url in urls.items():
                ms, _ = oha(url, load, args.duration, rate)
                lat[name]["p50"].append(ms["p50"])
                lat[name]["p99"].append(ms["p99"])
    result = {"rules": RULES, "fixed_rate": rate, "rss_kib": peers.rss_kib(running.pid),
              "gateways": {}}
    for name in urls:
        entry = {"max_rps": spread(rps[name])}
        if args.latency:
            entry["latency_ms"] = {k: spread(v) for k, v in lat[name].items()}
        result["gateways"][name] = entry
    return result


def table(r, fmt):
    g = r["gateways"]
    plain = g["none"]["max_rps"]["median"]
    latency = any("latency_ms" in e for e in g.values())
    lines = [
        f"Gateway with an AuthorizationPolicy of {r['rules']:,} rules (Allow; each a path "
        "prefix and a method; the request matches only the last), HTTP/1.1 keep-alive, "
        "1 KiB responses, 64 connections, against a Gateway without a policy in the same "
        "process." + (f" Latency at {r['fixed_rate']:,} req/s." if latency else ""),
        "",
        "| gateway | max req/s | vs no policy | µs per request over no policy | p50 ms | p99 ms |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, e in g.items():
        m = e["max_rps"]["median"]
        cost = "–" if name == "none" else f"{(1 / m - 1 / plain) * 1e6:.1f}"
        label = "no policy" if name == "none" else f"{r['rules']:,} rules"
        lat = e.get("latency_ms", {})
        lines.append(
            f"| {label} | {fmt(e['max_rps'])} | {m / plain:.2f}× | {cost} | "
            f"{fmt(lat.get('p50'), 3)} | {fmt(lat.get('p99'), 3)} |"
        )
    return lines
