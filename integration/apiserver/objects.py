"""What the server does to objects of particular types: defaults, allocated values
(Service cluster IPs), server-written status (Namespace, CRD), validation of
CRDs, and metadata.generation."""

import ipaddress

import clock

from errors import invalid

NS_KEY, SVC_KEY = ("", "namespaces"), ("", "services")
CRD_KEY = ("apiextensions.k8s.io", "customresourcedefinitions")
_CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")


rfc3339 = clock.rfc3339


def _pod_spec_defaults(spec):
    if not isinstance(spec, dict):
        return
    for lst in _CONTAINER_LISTS:
        for c in spec.get(lst) or []:
            for p in (c.get("ports") or []) if isinstance(c, dict) else []:
                if isinstance(p, dict):
                    p.setdefault("protocol", "TCP")


def static_defaults(rt, obj):
    """Schema defaults, applied before field ownership is computed (as the real
    server defaults while decoding), so the writer owns them."""
    key = rt.key
    spec = obj.get("spec")
    if key == SVC_KEY:
        spec = obj.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        if spec["type"] != "ExternalName":
            spec.setdefault("internalTrafficPolicy", "Cluster")
        for p in spec.get("ports") or []:
            if isinstance(p, dict):
                p.setdefault("protocol", "TCP")
                if "targetPort" not in p and "port" in p:
                    p["targetPort"] = p["port"]
    elif key == ("", "secrets"):
        obj.setdefault("type", "Opaque")
    elif key == ("", "pods"):
        _pod_spec_defaults(spec)
        if isinstance(spec, dict) and "serviceAccountName" not in spec:
            spec["serviceAccountName"] = spec.get("serviceAccount") or "default"
    elif key == ("apps", "deployments") and isinstance(spec, dict):
        spec.setdefault("replicas", 1)
        _pod_spec_defaults((spec.get("template") or {}).get("spec"))
    elif key == ("discovery.k8s.io", "endpointslices"):
        for p in obj.get("ports") or []:
            if isinstance(p, dict):
                p.setdefault("protocol", "TCP")


class ClusterIPs:
    """Allocates Service cluster IPs from 10.96.0.0/12 (10.96.0.1 is skipped: a real
    cluster gives it to the `kubernetes` Service)."""

    def __init__(self):
        self.net = ipaddress.ip_network("10.96.0.0/12")
        self.next = int(self.net.network_address) + 10

    def allocate(self, in_use):
        last = int(self.net.broadcast_address)
        for _ in range(self.net.num_addresses):
            ip = str(ipaddress.ip_address(self.next))
            self.next = self.next + 1 if self.next < last - 1 else int(self.net.network_address) + 2
            if ip not in in_use:
                return ip
        raise RuntimeError("service IP range exhausted")


def server_values(rt, new, old, store, ips):
    """Values the server sets after ownership is computed (they belong to no one)."""
    key = rt.key
    name = new["metadata"]["name"]
    if key == SVC_KEY:
        spec = new["spec"]
        if old is not None:
            ospec = old.get("spec") or {}
            for f in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
                if f not in spec and f in ospec:
                    spec[f] = ospec[f]
            if ospec.get("clusterIP") and spec.get("clusterIP") not in (None, ospec["clusterIP"]):
                raise invalid(rt, name, "spec.clusterIP",
                              f'Invalid value: "{spec["clusterIP"]}": field is immutable')
        if spec["type"] != "ExternalName" and not spec.get("clusterIP"):
            in_use = {(o.get("spec") or {}).get("clusterIP")
                      for k, o in store.all_objects() if k == SVC_KEY}
            spec["clusterIP"] = ips.allocate(in_use)
        if spec.get("clusterIP"):
            spec.setdefault("clusterIPs", [spec["clusterIP"]])
            if spec["clusterIP"] != "None":
                spec.setdefault("ipFamilies", ["IPv4"])
                spec.setdefault("ipFamilyPolicy", "SingleStack")
        if old is None:
            new.setdefault("status", {"loadBalancer": {}})
    elif key == ("", "pods") and old is None:
        new["status"] = {"phase": "Pending"}
    elif key == NS_KEY:
        new["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = name
        new.setdefault("spec", {"finalizers": ["kubernetes"]})
        new["status"] = {"phase": "Active"}
    elif key == CRD_KEY:
        new["status"] = crd_status(new, old)


def crd_status(crd, old):
    spec = crd.get("spec") or {}
    now = rfc3339()
    names = dict(spec.get("names") or {})
    names.setdefault("singular", names.get("kind", "").lower())
    names.setdefault("listKind", names.get("kind", "") + "List")
    stored = list(((old or {}).get("status") or {}).get("storedVersions") or [])
    for v in spec.get("versions") or []:
        if v.get("storage") and v.get("name") not in stored:
            stored.append(v["name"])
    conds = [
        {"type": "NamesAccepted", "status": "True", "lastTransitionTime": now,
         "reason": "NoConflicts", "message": "no conflicts found"},
        {"type": "Established", "status": "True", "lastTransitionTime": now,
         "reason": "InitialNamesAccepted", "message": "the initial names have been accepted"},
    ]
    old_conds = ((old or {}).get("status") or {}).get("conditions")
    return {"conditions": old_conds or conds, "acceptedNames": names, "storedVersions": stored}


def validate(rt, obj, registry):
    """Type-specific validation of an object about to be stored."""
    name = obj["metadata"]["name"]
    if rt.key == CRD_KEY:
        spec = obj.get("spec") or {}
        names = spec.get("names") or {}
        group = spec.get("group")
        for field, val in (("spec.group", group), ("spec.names.plural", names.get("plural")),
                           ("spec.names.kind", names.get("kind"))):
            if not val:
                raise invalid(rt, name, field, "Required value", "FieldValueRequired")
        if name != f"{names['plural']}.{group}":
            raise invalid(rt, name, "metadata.name",
                          f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group')
        versions = spec.get("versions") or []
        if any(not isinstance(v, dict) or not v.get("name") for v in versions):
            raise invalid(rt, name, "spec.versions.name", "Required value",
                          "FieldValueRequired")
        if not versions:
            raise invalid(rt, name, "spec.versions", "Required value", "FieldValueRequired")
        if sum(1 for v in versions if v.get("storage")) != 1:
            raise invalid(rt, name, "spec.versions",
                          "Invalid value: must have exactly one version marked as storage "
                          "version")
        if spec.get("scope") not in ("Namespaced", "Cluster"):
            raise invalid(rt, name, "spec.scope",
                          'Unsupported value: supported values: "Cluster", "Namespaced"',
                          "FieldValueNotSupported")
        other = registry.conflicting_crd(group, names["plural"], name)
        if other is not None:
            raise invalid(rt, name, "spec.names.plural",
                          f'Invalid value: "{names["plural"]}": already served by '
                          f'{other.api_version}')


def _content(rt, obj):
    return {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")
            and not (rt.status and k == "status")}


def set_generation(rt, new, old):
    md = new["metadata"]
    if not rt.generation:
        md.pop("generation", None)
        if old is not None and "generation" in old["metadata"]:
            md["generation"] = old["metadata"]["generation"]
        return
    if old is None:
        md["generation"] = 1
        return
    gen = old["metadata"].get("generation", 1)
    md["generation"] = gen + 1 if _content(rt, new) != _content(rt, old) else gen
