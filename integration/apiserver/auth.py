"""Bearer tokens: the admin token given on the command line, service-account
tokens issued by the TokenRequest endpoint, and TokenReview of both.

Issued tokens look like JWTs (header.claims.signature, with the claims a real
cluster puts there) but the signature is random bytes: they can only be checked
by asking this server (TokenReview), which remembers every token it issued."""

import base64
import json
import secrets
import threading
import uuid

import clock

from errors import conflict, invalid, not_found, unauthorized
from registry import ResourceType

API_AUDIENCE = "https://kubernetes.default.svc.cluster.local"
ISSUER = API_AUDIENCE
SA_KEY, POD_KEY, SECRET_KEY = ("", "serviceaccounts"), ("", "pods"), ("", "secrets")


def _b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


_rfc3339 = clock.rfc3339


class Auth:
    def __init__(self, admin_token, store, registry, allow_anonymous):
        self.admin_token = admin_token
        self.store = store
        self.registry = registry
        self.allow_anonymous = allow_anonymous
        self.tokens = {}
        self.lock = threading.Lock()

    # ---- requests ------------------------------------------------------------
    def authenticate(self, header):
        """The user name of a request, or raise 401."""
        if not header:
            if self.allow_anonymous:
                return "system:anonymous"
            raise unauthorized()
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise unauthorized()
        if token == self.admin_token:
            return "admin"
        info, err = self._check(token, [API_AUDIENCE])
        if err:
            raise unauthorized()
        return f"system:serviceaccount:{info['namespace']}:{info['sa']}"

    # ---- TokenRequest --------------------------------------------------------
    def token_request(self, ns, sa_name, body):
        sa_rt = self.registry.lookup("", "v1", "serviceaccounts")
        sa = self.store.get(SA_KEY, ns, sa_name)
        if sa is None:
            raise not_found(sa_rt, sa_name)
        spec = dict((body or {}).get("spec") or {})
        tr_rt = _TR_TYPE
        exp_s = spec.get("expirationSeconds") or 3600
        if not isinstance(exp_s, int) or exp_s < 600:
            raise invalid(tr_rt, sa_name, "spec.expirationSeconds",
                          f"Invalid value: {exp_s}: may not specify a duration less than 10 "
                          f"minutes")
        audiences = list(spec.get("audiences") or [API_AUDIENCE])
        bound = dict(spec.get("boundObjectRef") or {})
        pod = None
        if bound:
            kind = bound.get("kind")
            key = {"Pod": POD_KEY, "Secret": SECRET_KEY}.get(kind)
            if key is None:
                raise invalid(tr_rt, sa_name, "spec.boundObjectRef.kind",
                              f'Unsupported value: "{kind}": supported values: "Pod", "Secret"',
                              "FieldValueNotSupported")
            obj = self.store.get(key, ns, bound.get("name", ""))
            if obj is None:
                raise not_found(self.registry.lookup("", "v1", key[1]), bound.get("name", ""))
            uid = obj["metadata"]["uid"]
            if bound.get("uid") and bound["uid"] != uid:
                raise conflict(tr_rt, sa_name, f"the UID in the bound object reference "
                                                f"({bound['uid']}) does not match the UID in "
                                                f"record. The object might have been deleted "
                                                f"and then recreated")
            bound.setdefault("apiVersion", "v1")
            bound["uid"] = uid
            pod = (kind, bound["name"], uid)
        now = int(clock.now())
        exp = now + exp_s
        sa_uid = sa["metadata"]["uid"]
        claims = {"aud": audiences, "exp": exp, "iat": now, "nbf": now, "iss": ISSUER,
                  "jti": str(uuid.uuid4()),
                  "kubernetes.io": {"namespace": ns,
                                    "serviceaccount": {"name": sa_name, "uid": sa_uid}},
                  "sub": f"system:serviceaccount:{ns}:{sa_name}"}
        if pod:
            claims["kubernetes.io"][pod[0].lower()] = {"name": pod[1], "uid": pod[2]}
        header = {"alg": "RS256", "kid": "weft-standin"}
        token = ".".join([_b64(json.dumps(header).encode()), _b64(json.dumps(claims).encode()),
                          _b64(secrets.token_bytes(64))])
        with self.lock:
            self.tokens[token] = {"namespace": ns, "sa": sa_name, "sa_uid": sa_uid,
                                  "audiences": audiences, "exp": exp, "bound": pod}
        spec.update({"audiences": audiences, "expirationSeconds": exp_s})
        if bound:
            spec["boundObjectRef"] = bound
        return {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
                "metadata": {"name": sa_name, "namespace": ns,
                             "creationTimestamp": _rfc3339(now)},
                "spec": spec,
                "status": {"token": token, "expirationTimestamp": _rfc3339(exp)}}

    # ---- TokenReview ---------------------------------------------------------
    def _check(self, token, audiences):
        """(info, None) if the token is good for one of audiences (any if empty)."""
        with self.lock:
            info = self.tokens.get(token)
        if info is None:
            return None, "invalid bearer token"
        if clock.now() >= info["exp"]:
            return None, "invalid bearer token, Token has expired."
        sa = self.store.get(SA_KEY, info["namespace"], info["sa"])
        if sa is None:
            return None, f'invalid bearer token, serviceaccounts "{info["sa"]}" not found'
        if sa["metadata"]["uid"] != info["sa_uid"]:
            return None, (f"invalid bearer token, service account UID "
                          f"({sa['metadata']['uid']}) does not match claim ({info['sa_uid']})")
        if info["bound"]:
            kind, name, uid = info["bound"]
            key = POD_KEY if kind == "Pod" else SECRET_KEY
            obj = self.store.get(key, info["namespace"], name)
            if obj is None:
                return None, f'invalid bearer token, {key[1]} "{name}" not found'
            if obj["metadata"]["uid"] != uid:
                return None, (f"invalid bearer token, {kind.lower()} UID "
                              f"({obj['metadata']['uid']}) does not match claim ({uid})")
        if audiences:
            common = [a for a in info["audiences"] if a in audiences]
            if not common:
                return None, (f"invalid bearer token, token audiences "
                              f"{json.dumps(info['audiences'])} is invalid for the target "
                              f"audiences {json.dumps(list(audiences))}")
            info = dict(info, audiences=common)
        return info, None

    def token_review(self, body):
        spec = dict((body or {}).get("spec") or {})
        token = spec.get("token") or ""
        audiences = list(spec.get("audiences") or [])
        if not token:
            rt = self.registry.lookup("authentication.k8s.io", "v1", "tokenreviews")
            raise invalid(rt, "", "spec.token", "Required value", "FieldValueRequired")
        if token == self.admin_token:
            status = {"authenticated": True,
                      "user": {"username": "admin",
                               "groups": ["system:masters", "system:authenticated"]},
                      "audiences": audiences or [API_AUDIENCE]}
        else:
            info, err = self._check(token, audiences)
            if err:
                status = {"user": {}, "error": err}
            else:
                ns, sa = info["namespace"], info["sa"]
                user = {"username": f"system:serviceaccount:{ns}:{sa}", "uid": info["sa_uid"],
                        "groups": ["system:serviceaccounts", f"system:serviceaccounts:{ns}",
                                   "system:authenticated"]}
                if info["bound"]:
                    kind, name, uid = info["bound"]
                    k = kind.lower()
                    user["extra"] = {f"authentication.kubernetes.io/{k}-name": [name],
                                     f"authentication.kubernetes.io/{k}-uid": [uid]}
                status = {"authenticated": True, "user": user,
                          "audiences": info["audiences"]}
        return {"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1",
                "metadata": {"creationTimestamp": None}, "spec": spec, "status": status}


_TR_TYPE = ResourceType("authentication.k8s.io", "v1", "tokenrequests", "tokenrequest",
                        "TokenRequest", True)
