"""Field paths and field sets, as server-side apply tracks ownership.

A path is a tuple of elements: ("f", name) for a field of a map, ("k", json) for
the item of a keyed list (listType=map) whose key fields are given as compact
JSON with sorted keys. A field set is a Python set of paths; a path in the set
means that node is owned. Lists are atomic (one leaf) unless `list_keys` knows
their key: the CRD schema's x-kubernetes-list-type/-list-map-keys for custom
resources, else the names of the common keyed lists of the built-in types."""

import copy
import json

MISSING = object()

# metadata fields that are never tracked (server-owned or identity)
IGNORED_META = {"name", "namespace", "uid", "resourceVersion", "generation",
                "creationTimestamp", "managedFields", "selfLink", "deletionTimestamp",
                "deletionGracePeriodSeconds", "generateName"}

CONTAINER_LISTS = {"containers", "initContainers", "ephemeralContainers"}
NAME_KEYED = CONTAINER_LISTS | {"volumes", "env", "listeners"}
_UNKNOWN, _ATOMIC = object(), object()
# fields that are plain (non-pointer) structs in the built-in types: an update that
# creates them does not own the node itself, only what is inside
_STRUCTS = {"metadata", "spec", "status", "template", "strategy"}


def names_of(path):
    return tuple(v for k, v in path if k == "f")


def key_json(d):
    return json.dumps(d, sort_keys=True, separators=(",", ":"))


def _builtin_keys(kind, names):
    if names == ("metadata", "ownerReferences"):
        return ("uid",)
    last = names[-1]
    if last == "conditions":
        return ("type",)
    if last == "ports":
        if kind == "Service" and names == ("spec", "ports"):
            return ("port", "protocol")
        if len(names) >= 2 and names[-2] in CONTAINER_LISTS:
            return ("containerPort", "protocol")
        return None
    if last in NAME_KEYED:
        return ("name",)
    # Admission webhook configurations list their webhooks by name.
    if names == ("webhooks",) and kind.endswith("WebhookConfiguration"):
        return ("name",)
    if last == "volumeMounts":
        return ("mountPath",)
    return None


def _schema_keys(schema, names):
    node = schema
    for i, n in enumerate(names):
        if not isinstance(node, dict):
            return _UNKNOWN
        props = node.get("properties") or {}
        if n in props:
            child = props[n]
        elif isinstance(node.get("additionalProperties"), dict):
            child = node["additionalProperties"]
        else:
            return _UNKNOWN
        if not isinstance(child, dict):
            return _UNKNOWN
        if i == len(names) - 1:
            lt = child.get("x-kubernetes-list-type")
            if lt == "map":
                return tuple(child.get("x-kubernetes-list-map-keys") or ()) or _ATOMIC
            return _ATOMIC if lt in ("atomic", "set") else _UNKNOWN
        if child.get("type") == "array":
            child = child.get("items") or {}
        node = child
    return _UNKNOWN


def item_key(item, keys):
    if not isinstance(item, dict):
        return None
    out = {}
    for k in keys:
        if k in item:
            out[k] = item[k]
        elif k == "protocol":
            out[k] = "TCP"           # the schema default of every keyed `protocol`
        else:
            return None
    return out


class Fields:
    """Field-set operations for one resource type."""

    def __init__(self, rt):
        self.rt = rt

    def keys_for(self, names):
        if not names:
            return None
        if self.rt.crd and self.rt.schema:
            r = _schema_keys(self.rt.schema, names)
            if r is _ATOMIC:
                return None
            if r is not _UNKNOWN:
                return r
        return _builtin_keys(self.rt.kind, names)

    def list_keys(self, names, *lists):
        """The key fields if every list given is keyed by them (unique keys), else None."""
        keys = self.keys_for(names)
        if not keys:
            return None
        for lst in lists:
            if not isinstance(lst, list):
                return None
            seen = set()
            for item in lst:
                k = item_key(item, keys)
                if k is None or key_json(k) in seen:
                    return None
                seen.add(key_json(k))
        return keys

    # ---- sets of a value ---------------------------------------------------
    def applied_set(self, value):
        """What an apply of `value` claims: its leaves and its keyed-list items."""
        out = set()
        self._walk(value, (), out, members=False)
        return out

    def created_set(self, value, path):
        """What an update that sets `value` at `path` claims: also the maps it adds."""
        out = set()
        self._walk(value, path, out, members=True)
        return out

    def _walk(self, v, path, out, members):
        if isinstance(v, dict) and v:
            if members and path and path[-1][0] == "f" and path[-1][1] not in _STRUCTS:
                out.add(path)
            for k, c in v.items():
                if c is not None or members:
                    self._walk(c, path + (("f", k),), out, members)
        elif isinstance(v, list) and self.list_keys(names_of(path), v):
            keys = self.list_keys(names_of(path), v)
            for item in v:      # an empty keyed list claims nothing
                ip = path + (("k", key_json(item_key(item, keys))),)
                out.add(ip)
                for k, c in item.items():
                    if c is not None or members:
                        self._walk(c, ip + (("f", k),), out, members)
        elif path:
            out.add(path)

    def diff(self, old, new, path=()):
        """(changed, removed): paths an update from old to new sets or removes."""
        changed, removed = set(), set()
        self._diff(old, new, path, changed, removed)
        return changed, removed

    def _diff(self, old, new, path, changed, removed):
        if isinstance(old, dict) and isinstance(new, dict):
            for k, nv in new.items():
                p = path + (("f", k),)
                if k not in old:
                    changed |= self.created_set(nv, p)
                else:
                    self._diff(old[k], nv, p, changed, removed)
            for k in old:
                if k not in new:
                    removed.add(path + (("f", k),))
            return
        keys = self.list_keys(names_of(path), old, new) if path else None
        if keys:
            om = {key_json(item_key(i, keys)): i for i in old}
            nm = {key_json(item_key(i, keys)): i for i in new}
            for ks, item in nm.items():
                ip = path + (("k", ks),)
                if ks in om:
                    self._diff(om[ks], item, ip, changed, removed)
                else:
                    changed |= self.created_set(item, ip)
            for ks in om:
                if ks not in nm:
                    removed.add(path + (("k", ks),))
            return
        if old != new:
            removed.add(path)
            changed |= self.created_set(new, path)

    # ---- values at paths -----------------------------------------------------
    def get(self, obj, path):
        cur = obj
        for kind, v in path:
            if kind == "f":
                if not isinstance(cur, dict) or v not in cur:
                    return MISSING
                cur = cur[v]
            else:
                idx = self._find(cur, v)
                if idx is None:
                    return MISSING
                cur = cur[idx]
        return cur

    @staticmethod
    def _find(lst, kj):
        if not isinstance(lst, list):
            return None
        want = json.loads(kj)
        for i, item in enumerate(lst):
            if item_key(item, list(want)) == want:
                return i
        return None

    def delete(self, obj, path):
        parent = self.get(obj, path[:-1])
        kind, v = path[-1]
        if kind == "f" and isinstance(parent, dict):
            parent.pop(v, None)
        elif kind == "k":
            idx = self._find(parent, v)
            if idx is not None:
                del parent[idx]

    def merge(self, dst, src, path=()):
        """Apply's merge: maps recursively, keyed lists item by item, else replace."""
        for k, sv in src.items():
            p = path + (("f", k),)
            if sv is None:
                dst.pop(k, None)
                continue
            dv = dst.get(k, MISSING)
            if isinstance(sv, dict) and isinstance(dv, dict):
                self.merge(dv, sv, p)
            elif isinstance(sv, list) and self.list_keys(names_of(p), sv, dv):
                keys = self.list_keys(names_of(p), sv)
                for item in sv:
                    idx = self._find(dv, key_json(item_key(item, keys)))
                    if idx is None:
                        dv.append(copy.deepcopy(item))
                    else:
                        self.merge(dv[idx], item, p + (("k", key_json(item_key(item, keys))),))
            else:
                dst[k] = copy.deepcopy(sv)


def has_prefix_in(path, prefixes):
    return any(path[:i] in prefixes for i in range(1, len(path) + 1))


def without(paths, gone):
    """paths minus every path in gone and every descendant of one."""
    if not gone:
        return set(paths)
    return {p for p in paths if not has_prefix_in(p, gone)}


def elem_str(e):
    return f"{e[0]}:{e[1]}"


def encode(paths):
    """A field set in the FieldsV1 encoding ("f:name", "k:{...}", "." for a member)."""
    tree = {}
    for p in paths:
        node = tree
        for e in p:
            node = node.setdefault(elem_str(e), {})
        node["."] = {}
    return _finish(tree)


def _finish(node):
    keys = sorted(k for k in node if k != ".")
    if not keys:
        return {}
    out = {".": {}} if "." in node else {}
    for k in keys:
        out[k] = _finish(node[k])
    return out


def decode(tree, prefix=()):
    out = set()
    for k, child in (tree or {}).items():
        if k == ".":
            if prefix:
                out.add(prefix)
            continue
        kind, _, rest = k.partition(":")
        if kind == "k":
            try:
                rest = key_json(json.loads(rest))
            except ValueError:
                pass
        p = prefix + ((kind, rest),)
        if not child:
            out.add(p)
        else:
            out |= decode(child, p)
    return out


def path_str(path):
    """How conflicts name a path: .spec.ports[port=80,protocol="TCP"].targetPort"""
    out = []
    for kind, v in path:
        if kind == "f":
            out.append("." + v)
        elif kind == "k":
            d = json.loads(v)
            out.append("[" + ",".join(f"{k}={json.dumps(x)}" for k, x in d.items()) + "]")
        else:
            out.append(f"[{v}]")
    return "".join(out)
