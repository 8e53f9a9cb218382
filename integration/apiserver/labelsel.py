"""Label selectors and field selectors, parsed once and matched against objects."""

import re

from errors import bad_request

_SET_RE = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s+(in|notin)\s*\((.*)\)\s*$")
_EQ_RE = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s*(==|!=|=)\s*([A-Za-z0-9_./-]*)\s*$")
_EXISTS_RE = re.compile(r"^\s*(!?)\s*([A-Za-z0-9_./-]+)\s*$")


def _split_top(text):
    """Split on commas that are not inside parentheses."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p for p in parts if p.strip()]


def parse_labels(text):
    """Returns a list of predicates over a labels dict. Empty text matches all."""
    preds = []
    for term in _split_top(text or ""):
        m = _SET_RE.match(term)
        if m:
            key, op = m.group(1), m.group(2)
            values = {v.strip() for v in m.group(3).split(",") if v.strip()}
            if op == "in":
                preds.append(lambda l, k=key, vs=values: k in l and l[k] in vs)
            else:
                preds.append(lambda l, k=key, vs=values: k not in l or l[k] not in vs)
            continue
        m = _EQ_RE.match(term)
        if m:
            key, op, val = m.groups()
            if op == "!=":
                preds.append(lambda l, k=key, v=val: l.get(k) != v)
            else:
                preds.append(lambda l, k=key, v=val: k in l and l[k] == v)
            continue
        m = _EXISTS_RE.match(term)
        if m:
            neg, key = m.groups()
            if neg:
                preds.append(lambda l, k=key: k not in l)
            else:
                preds.append(lambda l, k=key: k in l)
            continue
        raise bad_request(f"unable to parse requirement: invalid label selector: {term!r}")
    return preds


def _split_escaped(text, sep):
    parts, cur, i = [], [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            cur.append(text[i:i + 2])
            i += 2
            continue
        if ch == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return parts


def _unescape(v):
    return re.sub(r"\\(.)", r"\1", v)


def _field_value(obj, path):
    cur = obj
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return ""
        cur = cur[part]
    if isinstance(cur, bool):
        return "true" if cur else "false"
    if isinstance(cur, (dict, list)) or cur is None:
        return ""
    return str(cur)


def parse_fields(text):
    preds = []
    for term in _split_escaped(text or "", ","):
        if not term.strip():
            continue
        m = re.match(r"^\s*([A-Za-z0-9_.-]+)\s*(==|!=|=)(.*)$", term)
        if not m:
            raise bad_request(f"invalid field selector: {term!r}")
        path, op, val = m.group(1), m.group(2), _unescape(m.group(3).strip())
        if op == "!=":
            preds.append(lambda o, p=path, v=val: _field_value(o, p) != v)
        else:
            preds.append(lambda o, p=path, v=val: _field_value(o, p) == v)
    return preds


class Selector:
    """A label selector and a field selector together."""

    def __init__(self, label_text="", field_text=""):
        self.labels = parse_labels(label_text)
        self.fields = parse_fields(field_text)

    def matches(self, obj):
        if obj is None:
            return False
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(p(labels) for p in self.labels) and all(p(obj) for p in self.fields)
