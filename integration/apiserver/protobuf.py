"""Decoding of Kubernetes protobuf request bodies (application/vnd.kubernetes.protobuf)
for the few built-in kinds that kubectl's typed clients send that way
(`kubectl create serviceaccount|configmap|secret|namespace|service|token`).

Wire format: the 4-byte magic "k8s\\0", then a runtime.Unknown message whose
field 1 is the TypeMeta (apiVersion=1, kind=2) and field 2 the object's own
message. The field numbers below are the published wire numbers of those
messages; fields that are not listed make the request fail with 415 rather than
be silently dropped. Responses are always JSON, which those clients accept."""

import base64
import time

from errors import ApiError

MAGIC = b"k8s\x00"
S, B, I, BOOL, T, IOS, SKIP = "string", "bytes", "int", "bool", "time", "intstr", "skip"
# a trailing "?" marks a pointer field: an explicit zero value is kept


def _rep(t):
    return ("repeated", t)


def _map(t):
    return ("map", t)


META = {1: ("name", S), 2: ("generateName", S), 3: ("namespace", S), 4: ("selfLink", S),
        5: ("uid", S), 6: ("resourceVersion", S), 7: ("generation", I),
        8: ("creationTimestamp", T), 9: ("deletionTimestamp", T),
        10: ("deletionGracePeriodSeconds", I + "?"), 11: ("labels", _map(S)),
        12: ("annotations", _map(S)), 13: ("ownerReferences", _rep("OwnerReference")),
        14: ("finalizers", _rep(S)), 17: ("managedFields", SKIP)}

MESSAGES = {
    "ObjectMeta": META,
    "OwnerReference": {1: ("kind", S), 3: ("name", S), 4: ("uid", S), 5: ("apiVersion", S),
                       6: ("controller", BOOL + "?"), 7: ("blockOwnerDeletion", BOOL + "?")},
    "ObjectReference": {1: ("kind", S), 2: ("namespace", S), 3: ("name", S), 4: ("uid", S),
                        5: ("apiVersion", S), 6: ("resourceVersion", S), 7: ("fieldPath", S)},
    "LocalObjectReference": {1: ("name", S)},
    "Namespace": {1: ("metadata", "ObjectMeta"), 2: ("spec", "NamespaceSpec"),
                  3: ("status", SKIP)},
    "NamespaceSpec": {1: ("finalizers", _rep(S))},
    "ServiceAccount": {1: ("metadata", "ObjectMeta"), 2: ("secrets", _rep("ObjectReference")),
                       3: ("imagePullSecrets", _rep("LocalObjectReference")),
                       4: ("automountServiceAccountToken", BOOL + "?")},
    "ConfigMap": {1: ("metadata", "ObjectMeta"), 2: ("data", _map(S)),
                  3: ("binaryData", _map(B)), 4: ("immutable", BOOL + "?")},
    "Secret": {1: ("metadata", "ObjectMeta"), 2: ("data", _map(B)), 3: ("type", S),
               4: ("stringData", _map(S)), 5: ("immutable", BOOL + "?")},
    "Service": {1: ("metadata", "ObjectMeta"), 2: ("spec", "ServiceSpec"), 3: ("status", SKIP)},
    "ServiceSpec": {1: ("ports", _rep("ServicePort")), 2: ("selector", _map(S)),
                    3: ("clusterIP", S), 4: ("type", S), 5: ("externalIPs", _rep(S)),
                    7: ("sessionAffinity", S), 8: ("loadBalancerIP", S),
                    9: ("loadBalancerSourceRanges", _rep(S)), 10: ("externalName", S),
                    11: ("externalTrafficPolicy", S), 12: ("healthCheckNodePort", I),
                    13: ("publishNotReadyAddresses", BOOL), 14: ("sessionAffinityConfig", SKIP),
                    17: ("ipFamilyPolicy", S), 18: ("clusterIPs", _rep(S)),
                    19: ("ipFamilies", _rep(S)), 20: ("allocateLoadBalancerNodePorts", BOOL + "?"),
                    21: ("loadBalancerClass", S), 22: ("internalTrafficPolicy", S),
                    23: ("trafficDistribution", S)},
    "ServicePort": {1: ("name", S), 2: ("protocol", S), 3: ("port", I), 4: ("targetPort", IOS),
                    5: ("nodePort", I), 6: ("appProtocol", S)},
    "TokenRequest": {1: ("metadata", "ObjectMeta"), 2: ("spec", "TokenRequestSpec"),
                     3: ("status", SKIP)},
    "TokenRequestSpec": {1: ("audiences", _rep(S)), 3: ("boundObjectRef", "BoundObjectReference"),
                         4: ("expirationSeconds", I + "?")},
    "BoundObjectReference": {1: ("kind", S), 2: ("apiVersion", S), 3: ("name", S), 4: ("uid", S)},
    "TokenReview": {1: ("metadata", "ObjectMeta"), 2: ("spec", "TokenReviewSpec"),
                    3: ("status", SKIP)},
    "TokenReviewSpec": {1: ("token", S), 2: ("audiences", _rep(S))},
    "DeleteOptions": {1: ("gracePeriodSeconds", I + "?"), 2: ("preconditions", "Preconditions"),
                      3: ("orphanDependents", BOOL + "?"), 4: ("propagationPolicy", S),
                      5: ("dryRun", _rep(S))},
    "Preconditions": {1: ("uid", S), 2: ("resourceVersion", S)},
}
TOP = {("v1", "Namespace"), ("v1", "ServiceAccount"), ("v1", "ConfigMap"), ("v1", "Secret"),
       ("v1", "Service"), ("authentication.k8s.io/v1", "TokenRequest"),
       ("authentication.k8s.io/v1", "TokenReview"), ("v1", "DeleteOptions"),
       ("meta.k8s.io/v1", "DeleteOptions")}


class _Bad(Exception):
    pass


def _varint(buf, i):
    shift = out = 0
    while True:
        if i >= len(buf):
            raise _Bad("truncated varint")
        b = buf[i]
        i += 1
        out |= (b & 0x7F) << shift
        if not b & 0x80:
            return out, i
        shift += 7


def _fields(buf):
    """Yield (field number, wire type, value) of one message."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            val, i = _varint(buf, i)
        elif wt == 2:
            n, i = _varint(buf, i)
            val, i = buf[i:i + n], i + n
        elif wt == 1:
            val, i = buf[i:i + 8], i + 8
        elif wt == 5:
            val, i = buf[i:i + 4], i + 4
        else:
            raise _Bad(f"unsupported wire type {wt}")
        yield num, wt, val


def _signed(v):
    return v - (1 << 64) if v >= 1 << 63 else v


def _scalar(kind, wt, val, where):
    base = kind.rstrip("?")
    if base == S:
        return val.decode("utf-8")
    if base == B:
        return base64.b64encode(bytes(val)).decode()
    if base == I:
        return _signed(val)
    if base == BOOL:
        return bool(val)
    if base == T:
        secs = dict((n, v) for n, _, v in _fields(val)).get(1, 0)
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(_signed(secs))) if secs else None
    if base == IOS:
        f = {n: v for n, _, v in _fields(val)}
        return f.get(3, b"").decode() if f.get(1) == 1 else _signed(f.get(2, 0))
    return _message(base, val, where)


def _empty(v):
    return v in (None, "", 0, False, {}, [])


def _message(name, buf, where=""):
    schema = MESSAGES[name]
    out = {}
    for num, wt, val in _fields(buf):
        if num not in schema:
            raise _Bad(f"field {num} of {name} (at {where or name}) is not understood")
        field, kind = schema[num]
        if kind == SKIP:
            continue
        path = f"{where}.{field}" if where else field
        if isinstance(kind, tuple) and kind[0] == "repeated":
            out.setdefault(field, []).append(_scalar(kind[1], wt, val, path))
        elif isinstance(kind, tuple):
            entry = {n: v for n, _, v in _fields(val)}
            key = entry.get(1, b"").decode("utf-8")
            out.setdefault(field, {})[key] = _scalar(kind[1], 2, entry.get(2, b""), path)
        else:
            v = _scalar(kind, wt, val, path)
            if kind.endswith("?") or not _empty(v):
                out[field] = v
            else:
                out.pop(field, None)
    return out


def decode(body):
    """The JSON-shaped object of a protobuf request body, or raise 415."""
    try:
        if not body.startswith(MAGIC):
            raise _Bad("missing the k8s protobuf prefix")
        env = {n: v for n, _, v in _fields(body[len(MAGIC):])}
        tm = {n: v.decode() for n, _, v in _fields(env.get(1, b""))}
        api_version, kind = tm.get(1, ""), tm.get(2, "")
        if (api_version, kind) not in TOP:
            raise _Bad(f"protobuf bodies of {api_version} {kind} are not supported by this "
                       f"stand-in; send JSON")
        obj = {"apiVersion": api_version, "kind": kind}
        obj.update(_message(kind, env.get(2, b"")))
        return obj
    except (_Bad, UnicodeDecodeError, KeyError, IndexError) as e:
        raise ApiError(415, "UnsupportedMediaType", f"cannot decode the protobuf body: {e}")
