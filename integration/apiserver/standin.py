#!/usr/bin/env python3
"""A small Kubernetes API server stand-in for tests (see README.md).

python3 standin.py --listen 127.0.0.1:0 [--tls-cert C --tls-key K] --token T [--ready-file F]
"""

import argparse
import collections
import json
import os
import socket
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit, unquote

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import clock  # noqa: E402
import openapi  # noqa: E402
from auth import Auth  # noqa: E402
from errors import ApiError, bad_request, method_not_allowed, no_route  # noqa: E402
from registry import Registry  # noqa: E402
from router import route  # noqa: E402
from store import Store  # noqa: E402
from verbs import Api  # noqa: E402

VERSION = {"major": "1", "minor": "34", "gitVersion": "v1.34.0",
           "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
           "buildDate": "2025-08-27T00:00:00Z", "goVersion": "go1.24.6", "compiler": "gc",
           "platform": "linux/amd64"}
_LOG_LOCK = threading.Lock()
OPEN = ("/healthz", "/livez", "/readyz", "/version")


class State:
    """Everything the handlers share."""

    def __init__(self, token, tls):
        self.store = Store()
        self.registry = Registry()
        self.api = Api(self.store, self.registry)
        self.auth = Auth(token, self.store, self.registry, allow_anonymous=not tls)
        self.requests = collections.deque(maxlen=10000)
        self.seq = 0
        self.lock = threading.Lock()
        self.address = ""
        for ns in ("default", "kube-system", "kube-public"):
            rt = self.registry.lookup("", "v1", "namespaces")
            self.api.create(rt, "", {"metadata": {"name": ns}}, "kube-apiserver", False)

    def record(self, method, path, ctype, status, user_agent):
        with self.lock:
            self.seq += 1
            self.requests.append({"seq": self.seq, "method": method, "path": path,
                                  "contentType": ctype, "status": status,
                                  "userAgent": user_agent})


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "weft-apiserver-standin"
    sys_version = ""

    def log_request(self, code="-", size="-"):
        pass

    def log_message(self, fmt, *args):
        pass

    def _body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def send_json(self, code, obj):
        data = json.dumps(obj, separators=(",", ":")).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        return code

    def send_text(self, code, text):
        data = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        return code

    def _handle(self):
        self.logged = False
        st = self.server.state
        url = urlsplit(self.path)
        path = unquote(url.path)
        q = dict(parse_qsl(url.query, keep_blank_values=True))
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        status = 500
        try:
            body = self._body()
            if not any(path == p or path.startswith(p + "/") for p in OPEN):
                st.auth.authenticate(self.headers.get("Authorization"))
            status = self._dispatch(st, path, q, ctype, body)
        except ApiError as e:
            status = self.send_json(e.code, e.status())
        except _Sent as s:
            status = s.args[0]
        except (ConnectionError, ssl.SSLError, TimeoutError):
            self.close_connection = True
            return
        except Exception as e:  # a bug: answer 500 and say so on stderr
            import traceback
            traceback.print_exc()
            status = self.send_json(500, ApiError(500, "InternalError", str(e)).status())
        if not self.logged:
            self.log_done(status)

    def log_done(self, status):
        """Record and log the request (a watch does it when its stream starts)."""
        self.logged = True
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        self.server.state.record(self.command, self.path, ctype, status,
                                 self.headers.get("User-Agent", ""))
        with _LOG_LOCK:
            sys.stderr.write(f"{self.command} {self.path} {status}\n")
            sys.stderr.flush()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    def _dispatch(self, st, path, q, ctype, body):
        if path in ("/healthz", "/livez", "/readyz") or path.startswith(("/healthz/", "/livez/",
                                                                           "/readyz/")):
            return self.send_text(200, "ok")
        if path.startswith("/_standin/"):
            return self._control(st, path, q)
        if self.command == "GET":
            doc = self._discovery(st, path)
            if doc is not None:
                return self.send_json(200, doc)
        return route(self, st, path, q, ctype, body)

    def _discovery(self, st, path):
        reg = st.registry
        parts = [p for p in path.split("/") if p]
        if path == "/version":
            return VERSION
        if parts == ["api"]:
            return reg.api_versions(st.address)
        if parts == ["apis"]:
            return reg.api_group_list()
        if len(parts) == 2 and parts[0] == "api":
            return reg.resource_list("", parts[1]) or _raise(no_route())
        if len(parts) == 2 and parts[0] == "apis":
            return reg.api_group(parts[1]) or _raise(no_route())
        if len(parts) == 3 and parts[0] == "apis":
            return reg.resource_list(parts[1], parts[2]) or _raise(no_route())
        if parts == ["openapi", "v3"]:
            return openapi.index(reg)
        if parts[:2] == ["openapi", "v3"]:
            rest = parts[2:]
            doc = None
            if len(rest) == 2 and rest[0] == "api":
                doc = openapi.gv_document(reg, "", rest[1])
            elif len(rest) == 3 and rest[0] == "apis":
                doc = openapi.gv_document(reg, rest[1], rest[2])
            return doc or _raise(no_route())
        if parts == ["openapi", "v2"]:
            return self._openapi_v2()
        if parts[:1] == ["openapi"]:
            raise no_route()
        return None

    def _openapi_v2(self):
        """An empty OpenAPI v2 document: kubectl then finds no v2 schema for any kind
        and skips client-side validation of kinds that have no PATCH (TokenReview)."""
        if "protobuf" in (self.headers.get("Accept") or ""):
            self.send_response(200)
            self.send_header("Content-Type",
                             "application/com.github.proto-openapi.spec.v2.v1.0+protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()
            raise _Sent(200)
        return {"swagger": "2.0", "info": {"title": "Kubernetes", "version": "v1.34.0"},
                "paths": {}, "definitions": {}}

    def _control(self, st, path, q):
        name = path[len("/_standin/"):]
        if name == "compact" and self.command == "POST":
            st.store.compact()
            return self.send_json(200, {"compactedTo": st.store.compacted})
        if name == "close-watches" and self.command == "POST":
            st.store.close_watches()
            return self.send_json(200, {"closed": True})
        if name == "requests" and self.command == "GET":
            try:
                since = int(q.get("since") or 0)
            except ValueError:
                raise bad_request("since must be an integer")
            with st.lock:
                items = [r for r in st.requests if r["seq"] > since]
            return self.send_json(200, items)
        if name == "clock" and self.command == "POST":
            if q.get("freeze"):
                try:
                    clock.freeze(clock.parse_rfc3339(q["freeze"]))
                except ValueError:
                    raise bad_request("freeze must be an RFC 3339 time such as "
                                      "2026-01-01T00:00:00Z")
            else:
                clock.freeze(None)
            return self.send_json(200, {"now": clock.rfc3339()})
        if name in ("compact", "close-watches", "requests", "clock"):
            raise method_not_allowed()
        raise no_route()


def _raise(err):
    raise err


class _Sent(Exception):
    """The response was written already; the status is args[0]."""


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, addr, family, ssl_ctx, state):
        self.address_family = family
        self.ssl_ctx = ssl_ctx
        self.state = state
        super().__init__(addr, Handler)

    def finish_request(self, request, client_address):
        if self.ssl_ctx is None:
            return super().finish_request(request, client_address)
        request.settimeout(15)
        try:
            tls = self.ssl_ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        tls.settimeout(None)
        try:
            super().finish_request(tls, client_address)
        finally:
            try:
                tls.close()
            except OSError:
                pass

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, ssl.SSLError, TimeoutError)):
            return
        super().handle_error(request, client_address)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--token", required=True)
    ap.add_argument("--ready-file")
    a = ap.parse_args(argv)
    host, _, port = a.listen.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    ctx = None
    if a.tls_cert or a.tls_key:
        if not (a.tls_cert and a.tls_key):
            ap.error("--tls-cert and --tls-key go together")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_alpn_protocols(["http/1.1"])
        ctx.load_cert_chain(a.tls_cert, a.tls_key)
    state = State(a.token, ctx is not None)
    srv = Server((host, int(port)), family, ctx, state)
    bound_port = srv.server_address[1]
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    state.address = f"{shown}:{bound_port}"
    url = f"{'https' if ctx else 'http'}://{shown}:{bound_port}"
    if a.ready_file:
        tmp = a.ready_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(url + "\n")
        os.replace(tmp, a.ready_file)
    print(url, flush=True)
    try:
        srv.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()


if __name__ == "__main__":
    main()
