"""Resource URLs (/api/v1/..., /apis/{group}/{version}/...) to verbs."""

import yaml

import patches
import protobuf
from errors import bad_request, method_not_allowed, no_route
from verbs import _Loader
from watch import WatchStream

TOKENREVIEWS = ("authentication.k8s.io", "tokenreviews")
SERVICEACCOUNTS = ("", "serviceaccounts")


def _parse(path, registry):
    """(rt, namespace or None, name or None, subresource or None, watch prefix)."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 3:
        group, version, rest = "", parts[1], parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 4:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        raise no_route()
    watch = rest[0] == "watch"
    if watch:
        rest = rest[1:]
    ns = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        cand = registry.lookup(group, version, rest[2])
        if cand is not None and cand.namespaced:
            ns, rest = rest[1], rest[2:]
    if not rest or len(rest) > 3:
        raise no_route()
    rt = registry.lookup(group, version, rest[0])
    if rt is None:
        raise no_route()
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    if rt.namespaced and ns is None and name is not None:
        raise no_route()
    if sub is not None and not (sub == "status" and rt.status) and \
            not (sub == "token" and rt.key == SERVICEACCOUNTS):
        raise no_route()
    return rt, ns, name, sub, watch


def _manager(h, q):
    if q.get("fieldManager"):
        return q["fieldManager"]
    ua = (h.headers.get("User-Agent") or "").split("/")[0].strip()
    return ua[:128] or "unknown"


def _decode(body, ctype):
    if ctype == "application/vnd.kubernetes.protobuf":
        return protobuf.decode(body)
    if ctype in ("application/yaml", "application/x-yaml"):
        try:
            return yaml.load(body.decode("utf-8"), Loader=_Loader)
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise bad_request(f"error decoding YAML: {e}")
    return patches.parse_json(body)


def _shaper(h):
    """Objects as the Accept header asks: whole, or PartialObjectMetadata."""
    accept = h.headers.get("Accept") or ""
    if "as=PartialObjectMetadata" not in accept:
        return lambda o: o, lambda lst: lst

    def one(o):
        return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                "metadata": o.get("metadata", {})}

    def many(lst):
        return {"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
                "metadata": lst["metadata"], "items": [one(o) for o in lst["items"]]}
    return one, many


def route(h, st, path, q, ctype, body):
    rt, ns, name, sub, watch = _parse(path, st.registry)
    api, m = st.api, h.command
    dry_run = q.get("dryRun", "")
    if dry_run not in ("", "All"):
        raise bad_request(f'unsupported dry run value: "{dry_run}"; supported: "All"')
    dry = dry_run == "All"
    one, many = _shaper(h)
    if m == "GET" and "get" in rt.verbs:
        if name is None and (watch or q.get("watch") in ("true", "1")):
            return WatchStream(h, st.store, rt, ns, q, one).serve()
        if name is None:
            return h.send_json(200, many(api.list(rt, ns, q)))
        if watch:
            q = dict(q, fieldSelector=",".join(
                filter(None, [f"metadata.name={name}", q.get("fieldSelector", "")])))
            return WatchStream(h, st.store, rt, ns, q, one).serve()
        return h.send_json(200, one(api.get(rt, ns, name)))
    if m == "POST":
        if sub == "token" and name is not None:
            return h.send_json(201, st.auth.token_request(ns, name, _decode(body, ctype)))
        if name is None and rt.key == TOKENREVIEWS:
            return h.send_json(201, st.auth.token_review(_decode(body, ctype)))
        if name is None and "create" in rt.verbs and (ns is not None or not rt.namespaced):
            return h.send_json(201, api.create(rt, ns or "", _decode(body, ctype),
                                               _manager(h, q), dry))
        raise method_not_allowed()
    if name is None or sub == "token" or "update" not in rt.verbs:
        raise method_not_allowed()
    if m == "PUT":
        return h.send_json(200, api.replace(rt, ns or "", name, _decode(body, ctype), sub,
                                            _manager(h, q), dry))
    if m == "PATCH":
        manager = q.get("fieldManager") if ctype == "application/apply-patch+yaml" else \
            _manager(h, q)
        code, obj = api.patch(rt, ns or "", name, body, ctype, sub, manager, dry,
                              q.get("force") in ("true", "1"))
        return h.send_json(code, obj)
    if m == "DELETE" and sub is None:
        opts = _decode(body, ctype) if body else None
        return h.send_json(200, api.delete(rt, ns or "", name, opts, dry,
                                           q.get("propagationPolicy")))
    raise method_not_allowed()
