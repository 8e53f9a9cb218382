"""The REST verbs on objects: get, list, create, replace, patch (all four types),
server-side apply, delete (with namespace and owner-reference cascades)."""

import copy
import secrets
import uuid

import yaml

import objects
import patches
from apply import FieldManager
from errors import (ApiError, already_exists, bad_request, conflict, forbidden,
                    invalid, namespace_not_found, not_found, unsupported_media)
from labelsel import Selector

APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
JSONPATCH = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
PROTECTED_NS = ("default", "kube-system", "kube-public")


class _Loader(yaml.SafeLoader):
    """YAML without implicit timestamps (they stay strings, as in Kubernetes)."""


_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:timestamp"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}


_META_ORDER = ("name", "generateName", "namespace", "selfLink", "uid", "resourceVersion",
               "generation", "creationTimestamp", "deletionTimestamp",
               "deletionGracePeriodSeconds", "labels", "annotations", "ownerReferences",
               "finalizers", "managedFields")


def out(rt, obj):
    """An object as served through rt: apiVersion, kind, metadata (its fields in the
    usual order) first, status last."""
    if obj is None:
        return None
    res = {"apiVersion": rt.api_version, "kind": rt.kind}
    md = obj.get("metadata")
    if isinstance(md, dict):
        res["metadata"] = {k: md[k] for k in _META_ORDER if k in md}
        res["metadata"].update((k, v) for k, v in md.items() if k not in _META_ORDER)
    res.update((k, v) for k, v in obj.items()
               if k not in ("apiVersion", "kind", "metadata", "status"))
    if "status" in obj:
        res["status"] = obj["status"]
    return res


class Api:
    def __init__(self, store, registry):
        self.store = store
        self.registry = registry
        self.ips = objects.ClusterIPs()

    # ---- helpers ---------------------------------------------------------------
    def _get(self, rt, ns, name):
        obj = self.store.get(rt.key, ns if rt.namespaced else "", name)
        if obj is None:
            raise not_found(rt, name)
        return obj

    def _check_ns(self, rt, ns):
        if rt.namespaced and self.store.get(objects.NS_KEY, "", ns) is None:
            raise namespace_not_found(ns)

    def _check_body(self, rt, ns, body, name=None):
        if not isinstance(body, dict):
            raise bad_request("the body of the request must be an object")
        av, kind = body.get("apiVersion"), body.get("kind")
        if av is not None and av != rt.api_version or kind is not None and kind != rt.kind:
            raise bad_request(f"the API version in the data ({av}) and kind ({kind}) do not "
                              f"match the expected {rt.api_version} {rt.kind}")
        md = body.get("metadata")
        if md is not None and not isinstance(md, dict):
            raise bad_request("metadata must be an object")
        md = md or {}
        if rt.namespaced and md.get("namespace") not in (None, "", ns):
            raise bad_request("the namespace of the provided object does not match the "
                              "namespace sent on the request")
        if name is not None and md.get("name") not in (None, name):
            raise bad_request(f"the name of the object ({md.get('name')}) does not match the "
                              f"name on the URL ({name})")

    @staticmethod
    def _precondition(rt, body, old):
        rv = ((body or {}).get("metadata") or {}).get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise conflict(rt, old["metadata"]["name"])

    # ---- reads -----------------------------------------------------------------
    def get(self, rt, ns, name):
        return out(rt, self._get(rt, ns, name))

    def list(self, rt, ns, q):
        sel = Selector(q.get("labelSelector", ""), q.get("fieldSelector", ""))
        if q.get("resourceVersionMatch") == "Exact":
            try:
                rv = int(q.get("resourceVersion", ""))
            except ValueError:
                raise bad_request("resourceVersionMatch=Exact needs a resourceVersion")
            with self.store.lock:
                items = self.store.snapshot_at(rt.key, ns, rv) if rv < self.store.rv else \
                    self.store.list(rt.key, ns)[0]
                list_rv = min(rv, self.store.rv)
        else:
            items, list_rv = self.store.list(rt.key, ns)
        return {"kind": rt.list_kind, "apiVersion": rt.api_version,
                "metadata": {"resourceVersion": str(list_rv)},
                "items": [out(rt, o) for o in items if sel.matches(o)]}

    # ---- create ----------------------------------------------------------------
    def create(self, rt, ns, body, manager, dry):
        self._check_body(rt, ns, body)
        obj = copy.deepcopy(body)
        with self.store.lock:
            md = obj.setdefault("metadata", {})
            if md.get("resourceVersion"):
                raise bad_request("resourceVersion should not be set on objects to be created")
            self._name(rt, ns, md)
            for k in ("managedFields", "generation", "deletionTimestamp"):
                md.pop(k, None)
            if rt.status:
                obj.pop("status", None)
            obj = out(rt, obj)
            objects.static_defaults(rt, obj)
            FieldManager(rt).record_update(None, obj, manager, "", rt.api_version)
            return self._store_new(rt, obj, dry)

    def _name(self, rt, ns, md):
        if rt.namespaced:
            md["namespace"] = ns
        else:
            md.pop("namespace", None)
        if not md.get("name") and md.get("generateName"):
            alphabet = "bcdfghjklmnpqrstvwxz2456789"
            while True:
                md["name"] = md["generateName"] + "".join(secrets.choice(alphabet)
                                                          for _ in range(5))
                if self.store.get(rt.key, md.get("namespace", ""), md["name"]) is None:
                    break
        if not md.get("name"):
            raise invalid(rt, "", "metadata.name",
                          "Required value: name or generateName is required",
                          "FieldValueRequired")

    def _store_new(self, rt, obj, dry):
        md = obj["metadata"]
        self._check_ns(rt, md.get("namespace", ""))
        if self.store.get(rt.key, md.get("namespace", ""), md["name"]) is not None:
            raise already_exists(rt, md["name"])
        md["uid"] = str(uuid.uuid4())
        md["creationTimestamp"] = objects.rfc3339()
        objects.server_values(rt, obj, None, self.store, self.ips)
        objects.set_generation(rt, obj, None)
        objects.validate(rt, obj, self.registry)
        if dry:
            return out(rt, obj)
        stored = self.store.write(rt.key, obj)
        if rt.key == objects.CRD_KEY:
            self.registry.register_crd(stored)
        if rt.key == objects.NS_KEY:
            self._default_service_account(md["name"])
        return out(rt, stored)

    def _default_service_account(self, ns):
        """What the service-account controller of a cluster does for every namespace."""
        sa_rt = self.registry.lookup("", "v1", "serviceaccounts")
        if self.store.get(sa_rt.key, ns, "default") is None:
            self.create(sa_rt, ns, {"metadata": {"name": "default"}},
                        "kube-controller-manager", False)

    # ---- updates ---------------------------------------------------------------
    def replace(self, rt, ns, name, body, sub, manager, dry):
        self._check_body(rt, ns, body, name)
        with self.store.lock:
            old = self._get(rt, ns, name)
            self._precondition(rt, body, old)
            new = self._scope(rt, old, copy.deepcopy(body), sub)
            return self._store_update(rt, old, new, sub, manager, dry)

    @staticmethod
    def _scope(rt, old, new, sub):
        """Keep only what a write through this endpoint may change."""
        if sub == "status":
            res = copy.deepcopy(old)
            res.pop("status", None)
            if new.get("status") is not None:
                res["status"] = new["status"]
            return res
        if rt.status:
            new.pop("status", None)
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
        return new

    def _store_update(self, rt, old, new, sub, manager, dry, applied=False):
        md, omd = new.setdefault("metadata", {}), old["metadata"]
        for k in ("name", "namespace", "uid", "creationTimestamp", "resourceVersion"):
            if k in omd:
                md[k] = omd[k]
            else:
                md.pop(k, None)
        base = out(rt, old)
        if not applied:
            # as the real server: managedFields left out keep the stored ones, an empty
            # list clears them, a valid list replaces them (kubectl's client-side to
            # server-side apply migration does that)
            sent = md.get("managedFields")
            if sent == []:
                base = None
            elif isinstance(sent, list) and all(isinstance(m, dict) and m.get("manager")
                                                for m in sent):
                base["metadata"]["managedFields"] = sent
            md["managedFields"] = copy.deepcopy(base["metadata"].get("managedFields", [])
                                                if base else [])
        new = out(rt, new)
        objects.static_defaults(rt, new)
        if not applied and base is not None:
            FieldManager(rt).record_update(base, new, manager, sub, rt.api_version)
        elif not applied:
            new["metadata"].pop("managedFields", None)
        objects.server_values(rt, new, old, self.store, self.ips)
        objects.set_generation(rt, new, old)
        objects.validate(rt, new, self.registry)
        if new == out(rt, old) or dry:
            return out(rt, new)
        stored = self.store.write(rt.key, new)
        if rt.key == objects.CRD_KEY:
            self.registry.register_crd(stored)
        return out(rt, stored)

    def patch(self, rt, ns, name, body, ctype, sub, manager, dry, force):
        if ctype == APPLY:
            return self.apply(rt, ns, name, body, sub, manager, dry, force)
        if ctype not in (MERGE, JSONPATCH, STRATEGIC):
            raise unsupported_media(ctype)
        if ctype == STRATEGIC and rt.crd:
            raise ApiError(415, "UnsupportedMediaType",
                           "strategic merge patch is not supported for custom resources; "
                           "use merge-patch+json or json-patch+json")
        p = patches.parse_json(body)
        with self.store.lock:
            old = self._get(rt, ns, name)
            cur = out(rt, old)
            if ctype == JSONPATCH:
                new = patches.json_patch(cur, p)
            elif not isinstance(p, dict):
                raise bad_request("a merge patch must be a JSON object")
            elif ctype == MERGE:
                new = patches.merge_patch(cur, p)
            else:
                new = patches.strategic_merge(cur, p, rt.kind)
            self._check_body(rt, ns, new, name)
            self._precondition(rt, new, old)
            new = self._scope(rt, old, new, sub)
            return 200, self._store_update(rt, old, new, sub, manager, dry)

    def apply(self, rt, ns, name, body, sub, manager, dry, force):
        if not manager:
            raise bad_request("PATCH, application/apply-patch+yaml requests must supply "
                              "fieldManager")
        try:
            cfg = yaml.load(body.decode("utf-8") if body else "", Loader=_Loader)
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise bad_request(f"error decoding YAML: {e}")
        if not isinstance(cfg, dict):
            raise bad_request("an apply patch must be an object")
        self._check_body(rt, ns, cfg, name)
        if cfg.get("apiVersion") is None or cfg.get("kind") is None:
            raise bad_request("apiVersion and kind must be set in an apply patch")
        fm = FieldManager(rt)
        with self.store.lock:
            old = self.store.get(rt.key, ns if rt.namespaced else "", name)
            if old is None:
                if sub == "status":
                    raise not_found(rt, name)
                skeleton = {"apiVersion": rt.api_version, "kind": rt.kind,
                            "metadata": {"name": name}}
                if rt.namespaced:
                    skeleton["metadata"]["namespace"] = ns
                self._check_ns(rt, ns)
                new = fm.apply(None, cfg, manager, force, "", rt.api_version, skeleton)
                objects.static_defaults(rt, new)
                return 201, self._store_new(rt, new, dry)
            self._precondition(rt, cfg, old)
            new = fm.apply(out(rt, old), cfg, manager, force, sub, rt.api_version, None)
            mf = new["metadata"].get("managedFields")
            new = self._scope(rt, old, new, sub)
            new["metadata"].pop("managedFields", None)
            if mf:
                new["metadata"]["managedFields"] = mf
            return 200, self._store_update(rt, old, new, sub, manager, dry, applied=True)

    # ---- delete ----------------------------------------------------------------
    def delete(self, rt, ns, name, body, dry, propagation):
        opts = body if isinstance(body, dict) else {}
        propagation = propagation or opts.get("propagationPolicy") or "Background"
        with self.store.lock:
            old = self._get(rt, ns, name)
            pre = opts.get("preconditions") or {}
            md = old["metadata"]
            if pre.get("uid") and pre["uid"] != md["uid"]:
                raise conflict(rt, name, f"Precondition failed: UID in precondition: "
                                         f"{pre['uid']}, UID in object meta: {md['uid']}")
            if pre.get("resourceVersion") and pre["resourceVersion"] != md["resourceVersion"]:
                raise conflict(rt, name, f"Precondition failed: ResourceVersion in "
                                         f"precondition: {pre['resourceVersion']}, "
                                         f"ResourceVersion in object meta: "
                                         f"{md['resourceVersion']}")
            if rt.key == objects.NS_KEY and name in PROTECTED_NS:
                raise forbidden(rt, name, "this namespace may not be deleted")
            if not dry:
                self._delete(rt.key, md.get("namespace", ""), name, propagation == "Orphan")
        details = {"name": name, "kind": rt.plural, "uid": md["uid"]}
        if rt.group:
            details["group"] = rt.group
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": details}

    def _delete(self, key, ns, name, orphan=False):
        gone = self.store.delete(key, ns, name)
        if gone is None:
            return
        if key == objects.NS_KEY:
            for k, o in self.store.all_objects():
                if o["metadata"].get("namespace") == name:
                    self._delete(k, name, o["metadata"]["name"])
        if key == objects.CRD_KEY:
            spec = gone.get("spec") or {}
            ckey = (spec.get("group"), (spec.get("names") or {}).get("plural"))
            for k, o in self.store.all_objects():
                if k == ckey:
                    self._delete(k, o["metadata"].get("namespace", ""), o["metadata"]["name"])
            self.store.close_watches(ckey)
            self.registry.unregister_crd(name)
        if not orphan:
            self._collect_garbage(gone["metadata"]["uid"])

    def _collect_garbage(self, uid):
        for k, o in self.store.all_objects():
            refs = o["metadata"].get("ownerReferences") or []
            if not any(r.get("uid") == uid for r in refs):
                continue
            if all(not self.store.exists_uid(r.get("uid")) for r in refs):
                self._delete(k, o["metadata"].get("namespace", ""), o["metadata"]["name"])
