"""The `gateway-jwt` scenario: what a JWT check costs a gateway. One weft
gateway serves three hosts on one listener: `plain` without a policy, and
`rs256` and `es256` behind a SecurityPolicy whose keys are in the config
(localJWKS: no fetch, the keys cached as the proxy runs). Each request
carries a valid token for its host (the plain host gets one too, so every
request is the same size). Two loads per algorithm: `repeat`, one token
for every request (what a client does until its token expires: weft
verifies it once and then finds it in its cache of verified tokens), and
`fresh`, a cycle of `FRESH` tokens, more than the cache holds, so every
request is a full signature check. All alternate within a round."""

import statistics
import subprocess

import peers

HOSTS = ("plain", "rs256", "es256")
ISSUER = "https://bench.weft.dev"
# Distinct tokens per algorithm for the `fresh` load: more than the 4096 a
# provider's cache holds, so none is found there again.
FRESH = 5000

# wrk: each request the next token of `tokens`, for `host`.
CYCLE = """tokens = {{
{tokens}
}}
i = 0
request = function()
  i = i % #tokens + 1
  return wrk.format(nil, nil, {{["Host"] = "{host}", ["Authorization"] = "Bearer " .. tokens[i]}})
end
"""

POLICY = """---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {host}}}
spec:
  parentRefs: [{{name: bench}}]
  hostnames: [{host}.bench]
  rules: [{{backendRefs: [{{name: backend, port: 80}}]}}]
"""

SECURITY = """---
apiVersion: weft.dev/v1alpha1
kind: SecurityPolicy
metadata: {{name: {host}}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: {host}}}]
  jwt:
    providers:
    - name: bench
      issuer: {issuer}
      audiences: [{host}.bench]
      localJWKS: {{type: Inline, inline: '{jwks}'}}
      claimToHeaders: [{{header: x-user, claim: sub}}]
"""


def weft_jwt(weft, *args):
    return subprocess.run([weft, "jwt", *args], check=True, capture_output=True,
                          text=True).stdout


def folder(procs, fresh):
    """The bench folder, a token per host, and a wrk script per algorithm
    cycling through `fresh` tokens."""
    text = peers.weft_folder("[{name: http, port: %d, protocol: HTTP}]" % peers.PORTS["weft"])
    tokens, scripts = {}, {}
    for host in HOSTS:
        text += POLICY.format(host=host)
        alg = "RS256" if host == "plain" else host.upper()
        key = procs.write(f"{host}.pem", weft_jwt(procs.weft, "keygen", "--alg", alg))
        args = ["--key", key, "--alg", alg, "--kid", host]
        claims = ["--iss", ISSUER, "--aud", f"{host}.bench", "--sub", "bench", "--ttl", "86400"]
        tokens[host] = weft_jwt(procs.weft, "token", *args, *claims).strip()
        if host != "plain":
            jwks = " ".join(weft_jwt(procs.weft, "jwks", *args).split())
            text += SECURITY.format(host=host, issuer=ISSUER, jwks=jwks)
            many = weft_jwt(procs.weft, "token", *args, *claims, "--count", str(fresh)).split()
            lua = CYCLE.format(host=f"{host}.bench", tokens=",\n".join(f'"{t}"' for t in many))
            scripts[host] = procs.write(f"{host}-fresh.lua", lua)
    return text, tokens, scripts


def gateway_jwt(procs, args, cores, wrk, oha, spread):
    proxy, load = cores
    procs.backend(load)
    peers.wait_for("http://%s:%d/" % peers.BACKEND)
    fresh = 50 if args.smoke else FRESH
    text, tokens, scripts = folder(procs, fresh)
    running = procs.weft_up("weft-jwt", text, proxy)
    url = f"http://127.0.0.1:{peers.PORTS['weft']}/"
    headers = {h: (f"Host: {h}.bench", f"Authorization: Bearer {tokens[h]}") for h in HOSTS}
    # name: (headers, script); `-fresh` loads cycle through many tokens.
    loads = {h: (headers[h], None) for h in HOSTS}
    loads.update({f"{h}-fresh": ((), scripts[h]) for h in scripts})
    for h in HOSTS:
        peers.wait_for(url, headers=dict(x.split(": ", 1) for x in headers[h]))
    for name, (hdrs, script) in loads.items():
        wrk(url, load, 1, hdrs, script)
    rps = {name: [] for name in loads}
    for _ in range(args.rounds):
        for name, (hdrs, script) in loads.items():
            r, _ = wrk(url, load, args.duration, hdrs, script)
            rps[name].append(r)
    rate = max(100, int(min(statistics.median(v) for v in rps.values()) * 0.5))
    lat = {h: {"p50": [], "p99": []} for h in HOSTS}
    if args.latency:
        for _ in range(args.rounds):
            for h in HOSTS:
                ms, _ = oha(url, load, args.duration, rate, headers[h])
                lat[h]["p50"].append(ms["p50"])
                lat[h]["p99"].append(ms["p99"])
    result = {"fixed_rate": rate, "fresh_tokens": fresh, "hosts": {},
              "rss_kib": peers.rss_kib(running.pid)}
    for name in loads:
        entry = {"max_rps": spread(rps[name])}
        if args.latency and name in lat:
            entry["latency_ms"] = {k: spread(v) for k, v in lat[name].items()}
        result["hosts"][name] = entry
    return result


def table(r, fmt):
    hosts = r["hosts"]
    plain = hosts["plain"]["max_rps"]["median"]
    lines = [
        "Gateway with a JWT check (SecurityPolicy, keys in the config), HTTP/1.1 "
        "keep-alive, 1 KiB responses, 64 connections, each request carrying a valid "
        "token: the same token every time (verified once, then found in the cache of "
        f"verified tokens), or a cycle of {r.get('fresh_tokens', 0):,} (every one a full "
        "signature check)." + (f" Latency at {r['fixed_rate']:,} req/s." if any(
            "latency_ms" in e for e in hosts.values()) else ""),
        "",
        "| route | max req/s | vs no policy | µs per request over no policy | p50 ms | p99 ms |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, e in hosts.items():
        m = e["max_rps"]["median"]
        cost = "–" if name == "plain" else f"{(1 / m - 1 / plain) * 1e6:.1f}"
        lat = e.get("latency_ms", {})
        alg, _, fresh = name.partition("-")
        label = "no policy" if name == "plain" else (
            f"{alg.upper()}, {'fresh tokens' if fresh else 'one token'}")
        lines.append(
            f"| {label} | {fmt(e['max_rps'])} | {m / plain:.2f}× | {cost} | "
            f"{fmt(lat.get('p50'), 3)} | {fmt(lat.get('p99'), 3)} |"
        )
    return lines
