"""Kubernetes-style errors: an exception that carries a meta/v1 Status."""


class ApiError(Exception):
    """An error the API answers with a Status object and an HTTP code."""

    def __init__(self, code, reason, message, details=None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self):
        out = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details is not None:
            out["details"] = self.details
        out["code"] = self.code
        return out


def _details(rt, name, kind=None):
    d = {}
    if name:
        d["name"] = name
    if rt is not None and rt.group:
        d["group"] = rt.group
    if rt is not None:
        d["kind"] = kind or rt.plural
    return d


def not_found(rt, name):
    return ApiError(404, "NotFound", f'{rt.resource_id} "{name}" not found', _details(rt, name))


def namespace_not_found(ns):
    return ApiError(404, "NotFound", f'namespaces "{ns}" not found',
                    {"name": ns, "kind": "namespaces"})


def already_exists(rt, name):
    return ApiError(409, "AlreadyExists", f'{rt.resource_id} "{name}" already exists',
                    _details(rt, name))


def conflict(rt, name, why="the object has been modified; please apply your changes to "
             "the latest version and try again"):
    return ApiError(409, "Conflict",
                    f'Operation cannot be fulfilled on {rt.resource_id} "{name}": {why}',
                    _details(rt, name))


def invalid(rt, name, field, why, cause_reason="FieldValueInvalid"):
    d = _details(rt, name, kind=rt.kind)
    d["causes"] = [{"reason": cause_reason, "message": why, "field": field}]
    return ApiError(422, "Invalid", f'{rt.kind} "{name}" is invalid: {field}: {why}', d)


def bad_request(message):
    return ApiError(400, "BadRequest", message)


def unauthorized():
    return ApiError(401, "Unauthorized", "Unauthorized")


def forbidden(rt, name, why):
    return ApiError(403, "Forbidden", f'{rt.resource_id} "{name}" is forbidden: {why}',
                    _details(rt, name))


def method_not_allowed():
    return ApiError(405, "MethodNotAllowed",
                    "the server does not allow this method on the requested resource")


def unsupported_media(ctype):
    return ApiError(415, "UnsupportedMediaType",
                    f'the body of the request was in an unknown format - accepted media '
                    f'types include: application/json-patch+json, application/merge-patch+json, '
                    f'application/apply-patch+yaml (got "{ctype}")')


def expired(rv, oldest):
    return ApiError(410, "Expired", f"too old resource version: {rv} ({oldest})")


def no_route():
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})
