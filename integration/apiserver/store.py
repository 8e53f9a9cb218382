"""Objects, the global resourceVersion counter, a bounded event history and the
open watches that are fed from it."""

import collections
import copy
import queue
import threading
from dataclasses import dataclass

from errors import expired


@dataclass
class Event:
    rv: int
    key: tuple          # (group, plural)
    type: str           # ADDED, MODIFIED, DELETED
    obj: dict           # the object after the change (for DELETED: as deleted)
    prev: dict = None   # the object before the change (MODIFIED, DELETED)


class Watcher:
    """One open watch: the store pushes every event of its resource into the queue;
    the HTTP thread serving the watch filters and writes them. None means: end."""

    def __init__(self, key):
        self.key = key
        self.queue = queue.Queue()

    def push(self, ev):
        self.queue.put(ev)

    def close(self):
        self.queue.put(None)


def _nn(obj):
    md = obj["metadata"]
    return (md.get("namespace") or "", md["name"])


class Store:
    def __init__(self, history_size=1000):
        self.lock = threading.RLock()
        self.rv = 0
        self.objects = {}                # key -> {(ns, name): obj}
        self.history = collections.deque()
        self.history_size = history_size
        self.compacted = 0               # events with rv <= compacted are forgotten
        self.watchers = set()

    # ---- reads ---------------------------------------------------------
    def get(self, key, ns, name):
        with self.lock:
            obj = self.objects.get(key, {}).get((ns or "", name))
            return copy.deepcopy(obj) if obj is not None else None

    def list(self, key, ns=None):
        with self.lock:
            items = self.objects.get(key, {})
            out = [copy.deepcopy(o) for (n, _), o in sorted(items.items())
                   if ns is None or n == ns]
            return out, self.rv

    def all_objects(self):
        """[(key, obj)] of every stored object (no copies: read only, under lock)."""
        with self.lock:
            return [(k, o) for k, objs in self.objects.items() for o in objs.values()]

    def exists_uid(self, uid):
        with self.lock:
            return any(o["metadata"].get("uid") == uid for _, o in self.all_objects())

    # ---- writes --------------------------------------------------------
    def _emit(self, ev):
        self.history.append(ev)
        while len(self.history) > self.history_size:
            self.compacted = self.history.popleft().rv
        for w in list(self.watchers):
            if w.key == ev.key:
                w.push(ev)

    def write(self, key, obj):
        """Store obj (created or replaced), giving it the next resourceVersion."""
        with self.lock:
            self.rv += 1
            obj = copy.deepcopy(obj)
            obj["metadata"]["resourceVersion"] = str(self.rv)
            bucket = self.objects.setdefault(key, {})
            prev = bucket.get(_nn(obj))
            bucket[_nn(obj)] = obj
            self._emit(Event(self.rv, key, "MODIFIED" if prev else "ADDED",
                             copy.deepcopy(obj), prev))
            return copy.deepcopy(obj)

    def delete(self, key, ns, name):
        with self.lock:
            prev = self.objects.get(key, {}).pop((ns or "", name), None)
            if prev is None:
                return None
            self.rv += 1
            gone = copy.deepcopy(prev)
            gone["metadata"]["resourceVersion"] = str(self.rv)
            self._emit(Event(self.rv, key, "DELETED", copy.deepcopy(gone), prev))
            return gone

    # ---- history and watches ---------------------------------------------
    def compact(self):
        with self.lock:
            self.history.clear()
            self.compacted = self.rv

    def _check_rv(self, rv):
        if rv < self.compacted:
            raise expired(rv, self.compacted + 1 if self.history else self.rv)

    def subscribe(self, key, since):
        """Register a watcher; returns (watcher, backlog, rv now). since=None: backlog
        is ADDED events for every current object; else every kept event after since."""
        with self.lock:
            if since is None:
                objs = sorted(self.objects.get(key, {}).items())
                backlog = [Event(self.rv, key, "ADDED", copy.deepcopy(o)) for _, o in objs]
            else:
                self._check_rv(since)
                backlog = [e for e in self.history if e.rv > since and e.key == key]
            w = Watcher(key)
            self.watchers.add(w)
            return w, backlog, self.rv

    def unsubscribe(self, w):
        with self.lock:
            self.watchers.discard(w)

    def close_watches(self, key=None):
        with self.lock:
            for w in list(self.watchers):
                if key is None or w.key == key:
                    w.close()

    def snapshot_at(self, key, ns, rv):
        """The objects of one resource as they were at resourceVersion rv."""
        with self.lock:
            self._check_rv(rv)
            state = dict(self.objects.get(key, {}))
            for ev in reversed(self.history):
                if ev.rv <= rv:
                    break
                if ev.key != key:
                    continue
                if ev.type == "ADDED":
                    state.pop(_nn(ev.obj), None)
                else:
                    state[_nn(ev.prev)] = ev.prev
            return [copy.deepcopy(o) for (n, _), o in sorted(state.items())
                    if ns is None or n == ns]
