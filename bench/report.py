"""Results: the JSON of a run under results/, and its Markdown table at the
top of RESULTS.md (newest first)."""

import json
import os

import authz_check
import jwt_check
import mesh

HEADER = "# Benchmark results\n\nNewest first. `bench/run` writes these; see `bench/README.md`.\n"
# Where the runs start, below the hand-kept sections.
RUNS = "<!-- bench/run puts each run below this line, newest first -->"


def fmt(s, digits=0):
    """`median (min–max)` of a spread."""
    if s is None:
        return "–"
    f = f"{{:,.{digits}f}}"
    return f"{f.format(s['median'])} ({f.format(s['min'])}–{f.format(s['max'])})"


def gateway_table(r):
    p = r["peers"]
    lines = [
        f"Gateway, HTTP/1.1 keep-alive, 1 KiB responses, {r['connections']} connections. "
        f"Latency at {r['fixed_rate']:,} req/s (half the slowest proxy's maximum).",
        "",
        "| peer | max req/s | vs weft | p50 ms | p99 ms | p99.9 ms | upstream reuse | RSS MiB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    weft = p.get("weft", {}).get("max_rps", {}).get("median")
    for name, e in p.items():
        ratio = "–"
        if weft and name != "weft":
            ratio = f"weft is {weft / e['max_rps']['median']:.2f}×"
        lat = e.get("latency_ms", {})
        rss = e.get("rss_kib")
        lines.append(
            f"| {name} | {fmt(e['max_rps'])} | {ratio} | {fmt(lat.get('p50'), 3)} | "
            f"{fmt(lat.get('p99'), 3)} | {fmt(lat.get('p99.9'), 3)} | "
            f"{e['upstream_reuse']['median']:.1%} | "
            f"{'–' if rss is None else f'{rss / 1024:.1f}'} |"
        )
    if "direct" in p and "latency_ms" in p["direct"]:
        for name in ("weft", "pingora", "nginx", "haproxy", "caddy"):
            if name in p and "latency_ms" in p[name]:
                d = p["direct"]["latency_ms"]
                w = p[name]["latency_ms"]
                lines.append("")
                lines.append(
                    f"{name} adds {w['p50']['median'] - d['p50']['median']:.3f} ms at p50 and "
                    f"{w['p99']['median'] - d['p99']['median']:.3f} ms at p99 over direct."
                )
    return lines


def tls_table(r):
    p = r["peers"]
    rate = r["fixed_rate"]
    h2 = r["h2"]
    lines = [
        "Gateway, TLS 1.3 termination (ECDSA P-256), 1 KiB responses, plain HTTP/1.1 upstream. "
        f"HTTP/1.1: wrk, {64} connections; HTTP/2: h2load, {h2['clients']} connections × "
        f"{h2['streams']} streams; handshakes: wrk with `Connection: close` (a full handshake "
        f"per request). Latency at {rate['h1']:,} (h1) and {rate['h2']:,} (h2) req/s. "
        "`direct` is the backend's own TLS listener.",
        "",
        "| peer | h1 req/s | h2 req/s | handshakes/s | proxy CPU ms per handshake | h1 p50 / p99 ms | h2 p50 / p99 ms | RSS MiB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, e in p.items():
        lat = e.get("latency_ms", {})

        def pair(proto):
            d = lat.get(proto)
            return "–" if d is None else f"{d['p50']['median']:.3f} / {d['p99']['median']:.3f}"

        rss = e.get("rss_kib")
        lines.append(
            f"| {name} | {fmt(e['h1_rps'])} | {fmt(e['h2_rps'])} | {fmt(e['handshakes'])} | "
            f"{'–' if name == 'direct' else fmt(e.get('cpu_ms_per_handshake'), 3)} | "
            f"{pair('h1')} | {pair('h2')} | {'–' if rss is None else f'{rss / 1024:.1f}'} |"
        )
    weft = p.get("weft")
    if weft:
        lines.append("")
        for name in ("nginx", "haproxy"):
            if name in p:
                ratios = ", ".join(
                    f"{label} {weft[k]['median'] / p[name][k]['median']:.2f}×"
                    for k, label in (("h1_rps", "h1"), ("h2_rps", "h2"),
                                     ("handshakes", "handshakes"))
                )
                lines.append(f"weft ÷ {name}: {ratios}.")
    return lines


def sidecar_table(r):
    # Runs before the nginx pair had only weft's figures.
    pairs = r.get("pairs") or {"weft": {"added_ms": r["added_ms"],
                                        "cpu_seconds_per_1000": r["cpu_seconds_per_1000"]}}
    names = list(pairs)
    row = lambda label, cell: f"| {label} | " + " | ".join(cell(pairs[n]) for n in names) + " |"
    lines = [
        f"Sidecar pair (client sidecar → mutual TLS → server sidecar), {r['rate']:,} req/s, "
        "1 KiB responses, against calling the backend directly. weft's sidecars are "
        "`weft-sidecar` processes; the nginx pair is one nginx worker doing both halves "
        "(plain in, mutual TLS 1.3 between, plain out).",
        "",
        "| figure | " + " | ".join(f"{n} pair" for n in names) + " |",
        "| --- |" + " --- |" * len(names),
    ]
    for k in ("p50", "p99", "p99.9"):
        lines.append(row(f"added {k} ms", lambda p, k=k: fmt(p["added_ms"][k], 3)))
    lines.append(row("CPU s per 1 000 requests (both halves)",
                     lambda p: fmt(p["cpu_seconds_per_1000"], 3)))
    lines.append("")
    rss = r.get("sidecar_rss_kib")
    if rss:
        mib = lambda kib: f"{kib / 1024:.1f}"
        lines += [
            "| weft sidecar process | client | server |",
            "| --- | --- | --- |",
        ]
        for label, key in (("RSS idle, MiB", "idle"), ("own (anonymous) RSS idle, MiB", "idle_own"),
                           ("RSS after the load, MiB", "loaded"),
                           ("own (anonymous) RSS after the load, MiB", "loaded_own")):
            lines.append(f"| {label} | {mib(rss[key]['client'])} | {mib(rss[key]['server'])} |")
        lines.append("")
    lines.append(f"One more idle sidecar inside `weft up` (no process of its own) adds "
                 f"{r['idle_sidecar_rss_kib'] / 1024:.2f} MiB.")
    return lines


def route_scale_table(r):
    lines = [
        "Route table size: one Gateway, N HTTPRoutes each with its own hostname; "
        "requests go to the middle one.",
        "",
        "| routes | max req/s | weft up RSS MiB | `weft analyze` s (parse, translate, print) | analyze peak RSS MiB | start until the last route serves, s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for n, e in r.items():
        rps = sorted(e["max_rps"])
        med = rps[len(rps) // 2]
        lines.append(
            f"| {int(n):,} | {med:,.0f} ({rps[0]:,.0f}–{rps[-1]:,.0f}) | "
            f"{e['weft_up_rss_kib'] / 1024:.1f} | {e['analyze_seconds']:.3f} | "
            f"{e['analyze_max_rss_kib'] / 1024:.1f} | {e['up_until_last_route_serves_s']:.2f} |"
        )
    return lines


def propagation_table(r):
    def ms(v):
        v = sorted(v)
        return f"{v[len(v) // 2]:.1f} ({v[0]:.1f}–{v[-1]:.1f})"

    return [
        f"Route propagation with {r['routes']:,} routes present: a new route file written "
        "(renamed into place) until its first 200 through the gateway.",
        "",
        "| figure | median (min–max) |",
        "| --- | --- |",
        f"| new route live, idle | {ms(r['live_idle_ms'])} ms |",
        f"| new route live, under load (4 clients) | {ms(r['live_under_load_ms'])} ms |",
        f"| failed requests during {r['edits']} edits of every route, under load | "
        f"{r['failed_during_edits']} of {r['requests_during_edits']:,} |",
    ]


def markdown(run):
    m = run["machine"]
    lines = [
        f"## {run['date']}",
        "",
        f"{m['cores']} cores ({m['cpu'] or 'unknown CPU'}), kernel {m['kernel']}; "
        f"{run['rounds']} rounds of {run['duration_s']} s, peers alternating; "
        "median (min–max).",
        "",
    ]
    s = run["scenarios"]
    if "gateway-h1" in s:
        lines += gateway_table(s["gateway-h1"]) + [""]
    if "gateway-tls" in s:
        lines += tls_table(s["gateway-tls"]) + [""]
    if "gateway-jwt" in s:
        lines += jwt_check.table(s["gateway-jwt"], fmt) + [""]
    if "gateway-authz" in s:
        lines += authz_check.table(s["gateway-authz"], fmt) + [""]
    if "sidecar-pair" in s:
        lines += sidecar_table(s["sidecar-pair"]) + [""]
    if "sidecar-routes" in s:
        lines += mesh.routes_table(s["sidecar-routes"]) + [""]
    if "route-scale" in s:
        lines += route_scale_table(s["route-scale"]) + [""]
    if "route-propagation" in s:
        lines += propagation_table(s["route-propagation"]) + [""]
    return "\n".join(lines)


def write(run, out):
    results = os.path.join(out, "results")
    os.makedirs(results, exist_ok=True)
    stamp = run["date"].replace(":", "").replace("+0000", "Z")
    path = os.path.join(results, f"{stamp}.json")
    with open(path, "w") as f:
        json.dump(run, f, indent=2)
    md = os.path.join(out, "RESULTS.md")
    old = ""
    if os.path.exists(md):
        with open(md) as f:
            old = f.read()
        old = old[len(HEADER):] if old.startswith(HEADER) else old
    # What stands above RUNS (the table of changes, written by hand) stays
    # on top; each run goes first below it.
    kept = ""
    if RUNS in old:
        kept, old = old.split(RUNS, 1)
        kept = kept.strip("\n") + "\n\n" + RUNS + "\n"
    with open(md, "w") as f:
        f.write(HEADER + "\n" + kept + "\n" + markdown(run) + "\n" + old.lstrip("\n"))
    return path
