"""Watch streams: newline-delimited JSON events in HTTP/1.1 chunks."""

import copy
import json
import queue
import select
import ssl
import time

from errors import ApiError, bad_request
from labelsel import Selector
from verbs import out

BOOKMARK_IDLE = 2.0        # seconds without an event before a BOOKMARK is sent
DEFAULT_TIMEOUT = 1800
_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, ssl.SSLError,
         TimeoutError, OSError)


class _ClientGone(Exception):
    pass


class WatchStream:
    def __init__(self, handler, store, rt, ns, q, shape):
        """shape(obj) -> the object as the client asked for it (full, metadata only)."""
        self.h, self.store, self.rt, self.ns, self.shape = handler, store, rt, ns, shape
        self.sel = Selector(q.get("labelSelector", ""), q.get("fieldSelector", ""))
        self.bookmarks = q.get("allowWatchBookmarks") in ("true", "1")
        self.initial = q.get("sendInitialEvents") == "true"
        try:
            self.timeout = int(q.get("timeoutSeconds") or DEFAULT_TIMEOUT)
        except ValueError:
            raise bad_request("invalid timeoutSeconds")
        rv = q.get("resourceVersion", "")
        if self.initial or rv in ("", "0"):
            self.since = None
        else:
            try:
                self.since = int(rv)
            except ValueError:
                raise bad_request(f"invalid resource version: {rv!r}")
        self.last_write = time.monotonic()

    # ---- output ------------------------------------------------------------------
    def _chunk(self, data):
        try:
            self.h.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.h.wfile.flush()
        except _GONE:
            raise _ClientGone()
        self.last_write = time.monotonic()

    def _event(self, typ, obj):
        line = json.dumps({"type": typ, "object": obj}, separators=(",", ":")) + "\n"
        self._chunk(line.encode())

    def _bookmark(self, rv, initial_end=False):
        md = {"resourceVersion": str(rv)}
        if initial_end:
            md["annotations"] = {"k8s.io/initial-events-end": "true"}
        self._event("BOOKMARK", {"kind": self.rt.kind, "apiVersion": self.rt.api_version,
                                 "metadata": md})

    def _in_ns(self, obj):
        return not self.ns or (obj or {}).get("metadata", {}).get("namespace") == self.ns

    def _deliver(self, ev):
        """Send one store event as this watcher sees it through its selectors."""
        if not self._in_ns(ev.obj):
            return
        now = self.sel.matches(ev.obj)
        obj = ev.obj
        if ev.type == "MODIFIED":
            before = self.sel.matches(ev.prev)
            typ = "MODIFIED" if before and now else "ADDED" if now else \
                "DELETED" if before else None
            if typ == "DELETED":   # as a real server: the old content, the new version
                obj = copy.deepcopy(ev.prev)
                obj["metadata"]["resourceVersion"] = str(ev.rv)
        else:
            typ = ev.type if now else None
        if typ:
            self._event(typ, self.shape(out(self.rt, obj)))

    def _client_gone(self):
        try:
            readable, _, _ = select.select([self.h.connection], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)      # a client never sends during a watch: EOF or reset

    # ---- serving ---------------------------------------------------------------------
    def _start(self):
        self.h.send_response(200)
        self.h.send_header("Content-Type", "application/json")
        self.h.send_header("Transfer-Encoding", "chunked")
        self.h.send_header("Cache-Control", "no-cache, private")
        self.h.end_headers()
        self.h.wfile.flush()
        self.h.log_done(200)

    def serve(self):
        """Returns the HTTP status for the request log."""
        try:
            watcher, backlog, rv_now = self.store.subscribe(self.rt.key, self.since)
        except ApiError as e:          # too old: a real server answers with an ERROR event
            self._start()
            try:
                self._event("ERROR", e.status())
                self._chunk(b"")
            except _ClientGone:
                self.h.close_connection = True
            return 200
        deadline = time.monotonic() + self.timeout
        try:
            self._start()
            for ev in backlog:
                self._deliver(ev)
            if self.initial:
                self._bookmark(rv_now, initial_end=True)
            self._loop(watcher, deadline)
            self._chunk(b"")
        except _ClientGone:
            self.h.close_connection = True
        finally:
            self.store.unsubscribe(watcher)
        return 200

    def _loop(self, watcher, deadline):
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                ev = watcher.queue.get(timeout=min(left, 0.5))
            except queue.Empty:
                if self._client_gone():
                    raise _ClientGone()
                if self.bookmarks and time.monotonic() - self.last_write >= BOOKMARK_IDLE:
                    with self.store.lock:
                        rv = self.store.rv if watcher.queue.empty() else None
                    if rv is not None:
                        self._bookmark(rv)
                continue
            if ev is None:
                return
            self._deliver(ev)
