"""Resource types: the built-in ones, those that CustomResourceDefinitions add,
and the discovery documents (/api, /apis, resource lists) that describe them."""

import re
import threading
from dataclasses import dataclass, field

ALL_VERBS = ("create", "delete", "get", "list", "patch", "update", "watch")
STATUS_VERBS = ("get", "patch", "update")


@dataclass
class ResourceType:
    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    status: bool = False          # has a /status subresource
    short: tuple = ()
    verbs: tuple = ALL_VERBS
    generation: bool = False      # metadata.generation is kept
    crd: str = ""                 # name of the CRD that defines it, "" if built in
    schema: dict = field(default=None, repr=False)  # openAPIV3Schema of a CRD version
    categories: tuple = ()

    @property
    def api_version(self):
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def gv_path(self):
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    @property
    def resource_id(self):
        """How errors name the resource: `services`, `leases.coordination.k8s.io`."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def key(self):
        """Storage key: one per group and plural, shared by all served versions."""
        return (self.group, self.plural)

    @property
    def list_kind(self):
        return self.kind + "List"


def _b(group, version, plural, kind, namespaced, **kw):
    singular = kw.pop("singular", kind.lower())
    return ResourceType(group, version, plural, singular, kind, namespaced, **kw)


BUILTINS = [
    _b("", "v1", "namespaces", "Namespace", False, status=True, short=("ns",)),
    _b("", "v1", "services", "Service", True, status=True, short=("svc",), generation=True,
       categories=("all",)),
    _b("", "v1", "secrets", "Secret", True),
    _b("", "v1", "configmaps", "ConfigMap", True, short=("cm",)),
    _b("", "v1", "pods", "Pod", True, status=True, short=("po",), generation=True,
       categories=("all",)),
    _b("", "v1", "serviceaccounts", "ServiceAccount", True, short=("sa",)),
    _b("", "v1", "events", "Event", True, short=("ev",)),
    _b("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True),
    _b("coordination.k8s.io", "v1", "leases", "Lease", True),
    _b("apps", "v1", "deployments", "Deployment", True, status=True, short=("deploy",),
       generation=True, categories=("all",)),
    _b("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True, status=True,
       short=("pdb",), generation=True),
    _b("authentication.k8s.io", "v1", "tokenreviews", "TokenReview", False, verbs=("create",)),
    _b("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition",
       False, status=True, short=("crd", "crds"), generation=True),
    _b("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations",
       "MutatingWebhookConfiguration", False, generation=True),
    _b("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations",
       "ValidatingWebhookConfiguration", False, generation=True),
    # Stored, never enforced (this server admits everything).
    _b("admissionregistration.k8s.io", "v1", "validatingadmissionpolicies",
       "ValidatingAdmissionPolicy", False, status=True, generation=True),
    _b("admissionregistration.k8s.io", "v1", "validatingadmissionpolicybindings",
       "ValidatingAdmissionPolicyBinding", False, generation=True),
    _b("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
    _b("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
    _b("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
    _b("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False),
]

_VERSION_RE = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


def version_priority(v):
    """Sort key, highest priority first: GA > beta > alpha, then by number;
    names that are not Kubernetes versions last, alphabetically."""
    m = _VERSION_RE.match(v)
    if not m:
        return (3, 0, 0, v)
    major, level, minor = int(m.group(1)), m.group(2), int(m.group(3) or 0)
    rank = {None: 0, "beta": 1, "alpha": 2}[level]
    return (rank, -major, -minor, v)


class Registry:
    def __init__(self):
        self._lock = threading.RLock()
        self._types = {}                 # (group, version, plural) -> ResourceType
        for rt in BUILTINS:
            self._types[(rt.group, rt.version, rt.plural)] = rt

    # ---- lookups -------------------------------------------------------
    def lookup(self, group, version, plural):
        with self._lock:
            return self._types.get((group, version, plural))

    def all(self):
        with self._lock:
            return list(self._types.values())

    def group_versions(self):
        """{group: [versions, highest priority first]} for every group but core."""
        out = {}
        for rt in self.all():
            if rt.group:
                out.setdefault(rt.group, set()).add(rt.version)
        return {g: sorted(vs, key=version_priority) for g, vs in sorted(out.items())}

    # ---- CustomResourceDefinitions --------------------------------------
    def register_crd(self, crd):
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        name = crd["metadata"]["name"]
        with self._lock:
            self._drop(name)
            for v in spec.get("versions") or []:
                if not v.get("served", True):
                    continue
                schema = (v.get("schema") or {}).get("openAPIV3Schema")
                rt = ResourceType(
                    group=spec["group"], version=v["name"], plural=names["plural"],
                    singular=names.get("singular") or names["kind"].lower(),
                    kind=names["kind"], namespaced=spec.get("scope") != "Cluster",
                    status="status" in ((v.get("subresources") or {})),
                    short=tuple(names.get("shortNames") or ()), generation=True, crd=name,
                    schema=schema, categories=tuple(names.get("categories") or ()))
                self._types[(rt.group, rt.version, rt.plural)] = rt

    def unregister_crd(self, name):
        with self._lock:
            self._drop(name)

    def _drop(self, crd_name):
        for k in [k for k, rt in self._types.items() if rt.crd == crd_name]:
            del self._types[k]

    def conflicting_crd(self, group, plural, own_name):
        """A built-in or another CRD that already serves group/plural."""
        for rt in self.all():
            if rt.group == group and rt.plural == plural and rt.crd != own_name:
                return rt
        return None

    # ---- discovery documents ---------------------------------------------
    def api_versions(self, server_address):
        return {"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}

    def _group_doc(self, group, versions):
        vs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {"name": group, "versions": vs, "preferredVersion": vs[0]}

    def api_group_list(self):
        groups = [self._group_doc(g, vs) for g, vs in self.group_versions().items()]
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}

    def api_group(self, group):
        vs = self.group_versions().get(group)
        if not vs:
            return None
        doc = {"kind": "APIGroup", "apiVersion": "v1"}
        doc.update(self._group_doc(group, vs))
        return doc

    def resource_list(self, group, version):
        rts = sorted((rt for rt in self.all() if rt.group == group and rt.version == version),
                     key=lambda r: r.plural)
        if not rts:
            return None
        resources = []
        for rt in rts:
            r = {"name": rt.plural, "singularName": rt.singular, "namespaced": rt.namespaced,
                 "kind": rt.kind, "verbs": list(rt.verbs)}
            if rt.short:
                r["shortNames"] = list(rt.short)
            if rt.categories:
                r["categories"] = list(rt.categories)
            resources.append(r)
            if rt.status:
                resources.append({"name": rt.plural + "/status", "singularName": "",
                                  "namespaced": rt.namespaced, "kind": rt.kind,
                                  "verbs": list(STATUS_VERBS)})
            if (rt.group, rt.plural) == ("", "serviceaccounts"):
                resources.append({"name": "serviceaccounts/token", "singularName": "",
                                  "namespaced": True, "group": "authentication.k8s.io",
                                  "version": "v1", "kind": "TokenRequest", "verbs": ["create"]})
        gv = f"{group}/{version}" if group else version
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
                "resources": resources}
