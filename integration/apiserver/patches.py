"""PATCH bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and an
approximation of strategic merge patch.

Strategic merge patch here = merge patch, plus: lists with a known merge key are
merged item by item (containers, initContainers, ephemeralContainers, volumes,
env, imagePullSecrets by name; volumeMounts by mountPath; container ports by
containerPort; Service spec.ports by port; conditions by type; ownerReferences
by uid), metadata.finalizers is merged as a set, and the directives `$patch:
delete|replace|merge`, `$deleteFromPrimitiveList/<field>` and `$retainKeys`
are honoured. `$setElementOrder/<field>` is accepted and ignored (order is left
as merged: existing items first, then new ones)."""

import copy
import json

from errors import ApiError, bad_request


def merge_patch(target, patch):
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


# ---- RFC 6902 ----------------------------------------------------------------
def _tokens(pointer):
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise bad_request(f"invalid JSON pointer: {pointer!r}")
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def _index(container, tok, allow_end=False):
    if tok == "-" and allow_end:
        return len(container)
    if not tok.isdigit():
        raise _unprocessable(f"invalid list index {tok!r}")
    i = int(tok)
    if i > len(container) or (i == len(container) and not allow_end):
        raise _unprocessable(f"list index {i} out of range")
    return i


def _unprocessable(msg):
    return ApiError(422, "Invalid", f"the server rejected our request due to an error in our "
                                    f"request: {msg}")


def _parent(doc, pointer):
    toks = _tokens(pointer)
    if not toks:
        raise _unprocessable("cannot address the document root")
    cur = doc
    for t in toks[:-1]:
        if isinstance(cur, dict) and t in cur:
            cur = cur[t]
        elif isinstance(cur, list):
            cur = cur[_index(cur, t)]
        else:
            raise _unprocessable(f"doc is missing path: {pointer!r}")
    return cur, toks[-1]


def _get(doc, pointer):
    cur = doc
    for t in _tokens(pointer):
        if isinstance(cur, dict) and t in cur:
            cur = cur[t]
        elif isinstance(cur, list):
            cur = cur[_index(cur, t)]
        else:
            raise _unprocessable(f"doc is missing path: {pointer!r}")
    return cur


def _remove(doc, pointer):
    parent, last = _parent(doc, pointer)
    if isinstance(parent, dict):
        if last not in parent:
            raise _unprocessable(f"unable to remove nonexistent key: {last}")
        return parent.pop(last)
    return parent.pop(_index(parent, last))


def _add(doc, pointer, value):
    if pointer == "":
        return value
    parent, last = _parent(doc, pointer)
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, allow_end=True), value)
    else:
        raise _unprocessable(f"doc is missing path: {pointer!r}")
    return doc


def json_patch(target, ops):
    if not isinstance(ops, list):
        raise bad_request("a JSON patch must be a list of operations")
    doc = copy.deepcopy(target)
    for op in ops:
        kind, path = op.get("op"), op.get("path", "")
        if kind == "add":
            doc = _add(doc, path, copy.deepcopy(op.get("value")))
        elif kind == "remove":
            _remove(doc, path)
        elif kind == "replace":
            _get(doc, path)
            if path == "":
                doc = copy.deepcopy(op.get("value"))
            else:
                parent, last = _parent(doc, path)
                if isinstance(parent, list):
                    parent[_index(parent, last)] = copy.deepcopy(op.get("value"))
                else:
                    parent[last] = copy.deepcopy(op.get("value"))
        elif kind == "move":
            doc = _add(doc, path, _remove(doc, op.get("from", "")))
        elif kind == "copy":
            doc = _add(doc, path, copy.deepcopy(_get(doc, op.get("from", ""))))
        elif kind == "test":
            if _get(doc, path) != op.get("value"):
                raise _unprocessable(f"testing value {path} failed")
        else:
            raise bad_request(f"unexpected JSON patch operation {kind!r}")
    return doc


# ---- strategic merge patch -----------------------------------------------------
_CONTAINERS = {"containers", "initContainers", "ephemeralContainers"}


def smp_key(kind, names):
    last = names[-1] if names else ""
    if last in _CONTAINERS | {"volumes", "env", "imagePullSecrets"}:
        return "name"
    if last == "volumeMounts":
        return "mountPath"
    if last == "ports":
        if kind == "Service" and names == ("spec", "ports"):
            return "port"
        if len(names) >= 2 and names[-2] in _CONTAINERS:
            return "containerPort"
    if last == "conditions":
        return "type"
    if names == ("metadata", "ownerReferences"):
        return "uid"
    return None


def strategic_merge(target, patch, kind, names=()):
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return None
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    retain = patch.get("$retainKeys")
    for k, v in patch.items():
        if k in ("$patch", "$retainKeys") or k.startswith("$setElementOrder/"):
            continue
        if k.startswith("$deleteFromPrimitiveList/"):
            field = k.split("/", 1)[1]
            if isinstance(out.get(field), list):
                out[field] = [x for x in out[field] if x not in (v or [])]
            continue
        if v is None:
            out.pop(k, None)
            continue
        sub = names + (k,)
        if isinstance(v, list):
            out[k] = _merge_list(out.get(k), v, kind, sub)
        else:
            merged = strategic_merge(out.get(k), v, kind, sub)
            if merged is None:
                out.pop(k, None)
            else:
                out[k] = merged
    if isinstance(retain, list):
        out = {k: v for k, v in out.items() if k in retain}
    return out


def _merge_list(current, patch, kind, names):
    if any(isinstance(i, dict) and i.get("$patch") == "replace" for i in patch):
        return [copy.deepcopy(i) for i in patch
                if not (isinstance(i, dict) and i.get("$patch") == "replace")]
    if names == ("metadata", "finalizers"):
        base = list(current) if isinstance(current, list) else []
        return base + [x for x in patch if x not in base]
    key = smp_key(kind, names)
    if key is None or not isinstance(current, list) or \
            not all(isinstance(i, dict) and key in i for i in patch):
        return [strategic_merge(None, i, kind, names) if isinstance(i, dict) else
                copy.deepcopy(i) for i in patch]
    out = copy.deepcopy(current)
    for item in patch:
        idx = next((n for n, c in enumerate(out)
                    if isinstance(c, dict) and c.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                del out[idx]
            continue
        if idx is None:
            out.append(strategic_merge(None, item, kind, names))
        else:
            out[idx] = strategic_merge(out[idx], item, kind, names)
    return out


def parse_json(body):
    try:
        return json.loads(body or b"null")
    except ValueError as e:
        raise bad_request(f"the body of the request could not be decoded as JSON: {e}")
