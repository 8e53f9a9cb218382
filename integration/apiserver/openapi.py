"""Minimal OpenAPI v3 documents: one per group-version, with every resource path,
its operations tagged with x-kubernetes-group-version-kind, the query parameters
kubectl looks for (fieldValidation on PATCH means "validate on the server", so
kubectl skips client-side schema validation) and permissive object schemas.

PATCH bodies deliberately do not list application/strategic-merge-patch+json:
kubectl then computes client-side-apply patches from its compiled-in types
(exact merge keys) instead of from these schemas (which have none)."""

import hashlib
import json

_STR = {"type": "string"}


def _param(name, where="query", required=False):
    return {"name": name, "in": where, "required": required, "schema": _STR}


def schema_name(rt):
    if not rt.group:
        return f"io.k8s.api.core.{rt.version}.{rt.kind}"
    return ".".join(reversed(rt.group.split("."))) + f".{rt.version}.{rt.kind}"


def _gvk(rt):
    return {"group": rt.group, "version": rt.version, "kind": rt.kind}


def _op(rt, action, op_id, params=(), body_types=None, code="200"):
    ref = {"$ref": "#/components/schemas/" + schema_name(rt)}
    op = {
        "description": f"{action} {rt.kind}",
        "operationId": op_id,
        "parameters": [_param(p) for p in params],
        "responses": {code: {"description": "OK",
                             "content": {"application/json": {"schema": ref}}}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": _gvk(rt),
    }
    if body_types:
        schema = ref if action != "patch" else {
            "$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}
        op["requestBody"] = {"required": True,
                             "content": {t: {"schema": schema} for t in body_types}}
    return op


_WRITE = ("dryRun", "fieldManager", "fieldValidation")
_PATCH_TYPES = ("application/json-patch+json", "application/merge-patch+json",
                "application/apply-patch+yaml")


def _paths_for(rt):
    base = rt.gv_path
    coll = f"{base}/namespaces/{{namespace}}/{rt.plural}" if rt.namespaced else f"{base}/{rt.plural}"
    ns_params = [_param("namespace", "path", True)] if rt.namespaced else []
    name_params = ns_params + [_param("name", "path", True)]
    tag = rt.kind
    paths = {}
    if rt.verbs == ("create",):
        paths[coll] = {"post": _op(rt, "post", "create" + tag, _WRITE, ["application/json"],
                                   "201"), "parameters": ns_params}
        return paths
    paths[coll] = {
        "get": _op(rt, "list", "list" + tag, ("labelSelector", "fieldSelector", "watch",
                                              "resourceVersion", "limit", "continue")),
        "post": _op(rt, "post", "create" + tag, _WRITE, ["application/json"], "201"),
        "parameters": ns_params,
    }
    item = {
        "get": _op(rt, "get", "read" + tag),
        "put": _op(rt, "put", "replace" + tag, _WRITE, ["application/json"]),
        "patch": _op(rt, "patch", "patch" + tag, _WRITE + ("force",), _PATCH_TYPES),
        "delete": _op(rt, "delete", "delete" + tag, ("dryRun", "propagationPolicy")),
        "parameters": name_params,
    }
    paths[coll + "/{name}"] = item
    if rt.status:
        paths[coll + "/{name}/status"] = {
            "get": _op(rt, "get", "read" + tag + "Status"),
            "put": _op(rt, "put", "replace" + tag + "Status", _WRITE, ["application/json"]),
            "patch": _op(rt, "patch", "patch" + tag + "Status", _WRITE + ("force",),
                         _PATCH_TYPES),
            "parameters": name_params,
        }
    if rt.namespaced:
        paths[f"{base}/{rt.plural}"] = {
            "get": _op(rt, "list", "list" + tag + "ForAllNamespaces",
                       ("labelSelector", "fieldSelector", "watch", "resourceVersion"))}
    return paths


def _schema(rt):
    return {
        "type": "object",
        "description": f"{rt.kind} (permissive schema served by the test stand-in)",
        "properties": {
            "apiVersion": _STR,
            "kind": _STR,
            "metadata": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        },
        "x-kubernetes-preserve-unknown-fields": True,
        "x-kubernetes-group-version-kind": [_gvk(rt)],
    }


def gv_document(registry, group, version):
    rts = [rt for rt in registry.all() if rt.group == group and rt.version == version]
    if not rts:
        return None
    paths, schemas = {}, {
        "io.k8s.apimachinery.pkg.apis.meta.v1.Patch": {
            "type": "object", "description": "a patch body in any of the accepted formats"}}
    for rt in sorted(rts, key=lambda r: r.plural):
        paths.update(_paths_for(rt))
        schemas[schema_name(rt)] = _schema(rt)
    return {"openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": "v1.34.0"},
            "paths": paths,
            "components": {"schemas": schemas}}


def _hash(doc):
    return hashlib.sha512(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:64].upper()


def index(registry):
    paths = {}
    gvs = [("", "v1")] + [(g, v) for g, vs in registry.group_versions().items() for v in vs]
    for g, v in gvs:
        doc = gv_document(registry, g, v)
        if doc is None:
            continue
        rel = f"api/{v}" if not g else f"apis/{g}/{v}"
        paths[rel] = {"serverRelativeURL": f"/openapi/v3/{rel}?hash={_hash(doc)}"}
    return {"paths": paths}
