"""Field ownership: metadata.managedFields kept on every write, and server-side
apply (conflicts, force, removal of fields a manager stopped applying)."""

import copy
import json

import clock

import fieldpaths as fp
from errors import ApiError


now_rfc3339 = clock.rfc3339


class Entry:
    def __init__(self, manager, operation, subresource, api_version, when, fields):
        self.manager, self.operation, self.subresource = manager, operation, subresource
        self.api_version, self.time, self.fields = api_version, when, fields
        self.touched = False

    @property
    def ident(self):
        return (self.manager, self.operation, self.subresource)

    def to_json(self):
        out = {"manager": self.manager, "operation": self.operation,
               "apiVersion": self.api_version, "time": self.time,
               "fieldsType": "FieldsV1", "fieldsV1": fp.encode(self.fields)}
        if self.subresource:
            out["subresource"] = self.subresource
        return out


def read_entries(obj):
    out = []
    for m in ((obj or {}).get("metadata") or {}).get("managedFields") or []:
        out.append(Entry(m.get("manager", ""), m.get("operation", "Update"),
                         m.get("subresource", ""), m.get("apiVersion", ""), m.get("time"),
                         fp.decode(m.get("fieldsV1") or {})))
    return out


def write_entries(obj, entries):
    kept = [e.to_json() for e in entries if e.fields]
    md = obj.setdefault("metadata", {})
    if kept:
        md["managedFields"] = kept
    else:
        md.pop("managedFields", None)


def _entry(entries, ident, api_version):
    for e in entries:
        if e.ident == ident:
            return e
    e = Entry(*ident, api_version, None, set())
    entries.append(e)
    return e


class FieldManager:
    def __init__(self, rt):
        self.rt = rt
        self.fields = fp.Fields(rt)

    def in_scope(self, path, subresource):
        if not path:
            return False
        top = path[0][1]
        if top in ("apiVersion", "kind"):
            return False
        if top == "metadata" and (len(path) == 1 or path[1][1] in fp.IGNORED_META):
            return False
        if self.rt.status:
            return (top == "status") == (subresource == "status")
        return True

    def scoped(self, obj, subresource):
        """A copy of obj with only what a write through this endpoint may change."""
        out = {}
        for k, v in (obj or {}).items():
            if k in ("apiVersion", "kind"):
                continue
            if k == "metadata":
                md = {mk: mv for mk, mv in (v or {}).items() if mk not in fp.IGNORED_META}
                if md:
                    out[k] = md
                continue
            if self.rt.status and (k == "status") != (subresource == "status"):
                continue
            out[k] = v
        return out

    @staticmethod
    def _finish(entries, obj):
        stamp = now_rfc3339()
        for e in entries:
            if e.touched or e.time is None:
                e.time = stamp
        write_entries(obj, entries)

    # ---- non-apply writes ----------------------------------------------------
    def record_update(self, old, new, manager, subresource, api_version):
        """Give `new` the managedFields of an Update by `manager` from `old`."""
        subresource = subresource or ""
        entries = read_entries(old)
        changed, removed = self.fields.diff(self.scoped(old, subresource),
                                            self.scoped(new, subresource))
        changed = {p for p in changed if self.in_scope(p, subresource)}
        removed = {p for p in removed if self.in_scope(p, subresource)}
        for e in entries:
            e.fields = fp.without(e.fields, changed | removed)
        if changed:
            mine = _entry(entries, (manager, "Update", subresource), api_version)
            mine.fields |= changed
            mine.api_version = api_version
            mine.touched = True
        self._finish(entries, new)

    # ---- server-side apply -----------------------------------------------------
    def apply(self, live, cfg, manager, force, subresource, api_version, skeleton):
        """The object that applying `cfg` (a dict) to `live` (None: create) yields."""
        subresource = subresource or ""
        f = self.fields
        scfg = self.scoped(cfg, subresource)
        applied = {p for p in f.applied_set(scfg) if self.in_scope(p, subresource)}
        entries = read_entries(live)
        ident = (manager, "Apply", subresource)
        mine = _entry(entries, ident, api_version)
        others = [e for e in entries if e is not mine]

        conflicts = []
        base = live or {}
        for e in others:
            for p in sorted(applied & e.fields):
                cv, lv = f.get(scfg, p), f.get(base, p)
                if isinstance(cv, dict) and cv and isinstance(lv, dict):
                    continue            # a map or list item: its leaves decide
                if cv != lv:
                    conflicts.append((p, e))
        if conflicts and not force:
            raise conflict_error(conflicts)
        for p, e in conflicts:
            e.fields = fp.without(e.fields, {p})

        result = copy.deepcopy(live) if live is not None else skeleton
        held = set().union(*(e.fields for e in others)) if others else set()
        removed = set()
        for p in sorted(mine.fields - applied, key=len):
            if fp.has_prefix_in(p, removed) or p in held or \
                    any(q[:len(p)] == p for q in held) or _is_item_key(p):
                continue
            f.delete(result, p)
            removed.add(p)
        f.merge(result, scfg)
        mine.touched = mine.fields != applied or _content(result) != _content(live)
        mine.fields = applied
        mine.api_version = api_version
        self._finish(entries, result)
        return result


def _is_item_key(path):
    """A key field of a keyed-list item: it goes only with the item itself."""
    if len(path) < 2 or path[-1][0] != "f" or path[-2][0] != "k":
        return False
    return path[-1][1] in json.loads(path[-2][1])


def _content(obj):
    if obj is None:
        return None
    out = dict(obj)
    out["metadata"] = {k: v for k, v in (obj.get("metadata") or {}).items()
                       if k != "managedFields"}
    return out


def conflict_error(conflicts):
    by_mgr = {}
    for p, e in conflicts:
        by_mgr.setdefault((e.manager, e.api_version), []).append(p)
    n = len(conflicts)
    if n == 1:
        (mgr, av), paths = next(iter(by_mgr.items()))
        msg = f'Apply failed with 1 conflict: conflict with "{mgr}" using {av}: ' \
              f"{fp.path_str(paths[0])}"
    else:
        parts = []
        for (mgr, av), paths in by_mgr.items():
            word = "conflict" if len(paths) == 1 else "conflicts"
            parts.append(f'{word} with "{mgr}" using {av}:\n' +
                         "\n".join("- " + fp.path_str(p) for p in paths))
        msg = f"Apply failed with {n} conflicts: " + "\n".join(parts)
    causes = [{"type": "FieldManagerConflict",
               "message": f'conflict with "{e.manager}" using {e.api_version}',
               "field": fp.path_str(p)} for p, e in conflicts]
    return ApiError(409, "Conflict", msg, {"causes": causes})
