"""The chart, rendered by the real Helm engine for its default values and
several variants, linted, and every rendered object validated: built-in kinds
against the Kubernetes OpenAPI schemas (kubernetes-validate, strict), custom
resources against their CRDs' schemas, which the chart ships (weft's) or
vendors (Gateway API's). Values the schema refuses must fail to render.

Run from the repository root with the tools scripts/setup.sh installs:
    target/tools/venv/bin/python -m unittest charts/weft/tests/test_chart.py
"""

import glob
import os
import shutil
import subprocess
import tempfile
import unittest

import jsonschema
import kubernetes_validate
import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
CHART = os.path.join(ROOT, "charts", "weft")
# The oldest and newest Kubernetes the chart is for.
VERSIONS = ["1.29.0", "1.37.0"]

VARIANTS = {
    "defaults": [],
    "gateway-api-crds": ["--set", "gatewayAPI.installCRDs=true"],
    "controller-only": ["--set", "injection.enabled=false", "--set", "provisioning.enabled=false"],
    "one-replica": ["--set", "controller.replicas=1", "--set", "gatewayClass="],
    "ignore-and-tag": ["--set", "injection.failurePolicy=Ignore", "--set", "image.tag=dev",
                       "--set", "trustDomain=example.org", "--set-json",
                       'imagePullSecrets=[{"name": "registry"}]'],
    "cluster-set": ["--set", "multicluster.cluster=east", "--set", "multicluster.network=net-east",
                    "--set", "multicluster.peering.enabled=true"],
    "registry-only": ["--set", "egress.outboundTrafficPolicy=RegistryOnly",
                      "--set", "egress.installXBackendCRD=true"],
}

REFUSED = {
    "no replicas": ["--set", "controller.replicas=0"],
    "unknown failure policy": ["--set", "injection.failurePolicy=Maybe"],
    "unknown value": ["--set", "replicaCount=3"],
    "short certificates": ["--set", "certTTLSeconds=60"],
    "bad trust domain": ["--set", "trustDomain=Not_A_Domain"],
    "bad cluster name": ["--set", "multicluster.cluster=East_1"],
    "unknown peering service type": ["--set", "multicluster.peering.serviceType=Ingress"],
    "unknown outbound policy": ["--set", "egress.outboundTrafficPolicy=DenyAll"],
}


def helm():
    found = os.environ.get("HELM") or os.path.join(ROOT, "target", "tools", "helm", "helm")
    if os.access(found, os.X_OK):
        return found
    return shutil.which("helm")


def run_helm(*args):
    home = tempfile.mkdtemp(prefix="helm-home-")
    env = dict(os.environ, HOME=home, HELM_CACHE_HOME=home, HELM_CONFIG_HOME=home,
               HELM_DATA_HOME=home)
    try:
        return subprocess.run([helm(), *args], capture_output=True, text=True, env=env)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def documents(text):
    return [d for d in yaml.safe_load_all(text) if d]


def crd_schemas(docs):
    """(group, kind, version) -> openAPIV3Schema, from CRDs."""
    out = {}
    for d in docs:
        if d.get("kind") != "CustomResourceDefinition":
            continue
        spec = d["spec"]
        for v in spec["versions"]:
            out[(spec["group"], spec["names"]["kind"], v["name"])] = v["schema"]["openAPIV3Schema"]
    return out


def as_json_schema(schema):
    """An OpenAPI v3 (Kubernetes structural) schema as JSON Schema: nullable
    and int-or-string spelled out; the x-kubernetes-* keywords ignored."""
    if isinstance(schema, list):
        return [as_json_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: as_json_schema(v) for k, v in schema.items() if not k.startswith("x-kubernetes-")}
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    out.pop("nullable", None)
    return out


def vendored_crds():
    with open(os.path.join(CHART, "files", "gateway-api-crds.yaml")) as f:
        return documents(f.read())


class Chart(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if helm() is None:
            if os.environ.get("CI") in ("true", "1"):
                raise AssertionError("helm is needed (scripts/setup.sh installs it)")
            raise unittest.SkipTest("helm is not installed")

    def render(self, args):
        r = run_helm("template", "weft", CHART, "--namespace", "weft-system", "--include-crds", *args)
        self.assertEqual(r.returncode, 0, r.stderr)
        return documents(r.stdout)

    def validate(self, name, docs):
        schemas = crd_schemas(docs)
        schemas.update(crd_schemas(vendored_crds()))
        for d in docs:
            what = f"{name}: {d.get('kind')} {d.get('metadata', {}).get('name')}"
            api_version = d["apiVersion"]
            group, _, version = api_version.rpartition("/")
            key = (group, d["kind"], version)
            if key in schemas:
                jsonschema.validate(d, as_json_schema(schemas[key]))
                continue
            for k8s in VERSIONS:
                try:
                    kubernetes_validate.validate(d, k8s, strict=True)
                except kubernetes_validate.ValidationError as e:
                    self.fail(f"{what} on Kubernetes {k8s}: {e.message} at {list(e.path)}")
                except kubernetes_validate.SchemaNotFoundError as e:
                    # ValidatingAdmissionPolicy is GA only since 1.30.
                    if not (k8s == "1.29.0" and d["kind"].startswith("ValidatingAdmissionPolicy")):
                        self.fail(f"{what} on Kubernetes {k8s}: {e}")

    def test_every_variant_renders_lints_and_validates(self):
        for name, args in VARIANTS.items():
            with self.subTest(variant=name):
                lint = run_helm("lint", "--strict", CHART, *args)
                self.assertEqual(lint.returncode, 0, lint.stdout + lint.stderr)
                docs = self.render(args)
                self.assertTrue(docs)
                self.validate(name, docs)

    def test_defaults(self):
        docs = self.render([])
        kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
        for want in [("Deployment", "weft-controller"), ("Service", "weft-controller"),
                     ("MutatingWebhookConfiguration", "weft-sidecar-injector-weft-system"),
                     ("CustomResourceDefinition", "securitypolicies.weft.dev"),
                     ("CustomResourceDefinition", "authorizationpolicies.weft.dev"),
                     ("CustomResourceDefinition", "backendtrafficpolicies.weft.dev"),
                     ("CustomResourceDefinition", "clusterlinks.weft.dev"),
                     ("CustomResourceDefinition", "serviceexports.multicluster.x-k8s.io"),
                     ("PodDisruptionBudget", "weft-controller")]:
            self.assertIn(want, kinds)
        # Gateway API's CRDs only when asked; Workload is standalone only.
        self.assertFalse(any(k == "CustomResourceDefinition" and "gateway.networking" in n for k, n in kinds))
        self.assertFalse(any(n.startswith("workloads.") for _, n in kinds))
        deployment = next(d for d in docs if d["kind"] == "Deployment")
        self.assertEqual(deployment["spec"]["replicas"], 2)
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        self.assertEqual(container["image"], "ghcr.io/weft-mesh/weft:0.1.0")
        self.assertIn("--webhook-config=weft-sidecar-injector-weft-system", container["args"])
        hook = next(d for d in docs if d["kind"] == "MutatingWebhookConfiguration")
        self.assertEqual({w["failurePolicy"] for w in hook["webhooks"]}, {"Fail"})
        self.assertTrue(all("caBundle" not in w["clientConfig"] for w in hook["webhooks"]))
        # The webhook's permission names that one configuration only.
        role = next(d for d in docs if d["kind"] == "ClusterRole")
        webhook_rule = next(r for r in role["rules"] if "mutatingwebhookconfigurations" in r["resources"])
        self.assertEqual(webhook_rule["resourceNames"], ["weft-sidecar-injector-weft-system"])

    def test_a_cluster_of_a_set_peers_on_its_own_service(self):
        docs = self.render(VARIANTS["cluster-set"])
        container = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]
        for arg in ["--cluster=east", "--network=net-east", "--peering=0.0.0.0:15013"]:
            self.assertIn(arg, container["args"])
        peering = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "weft-peering")
        self.assertEqual(peering["spec"]["type"], "LoadBalancer")
        self.assertEqual(peering["spec"]["ports"][0]["targetPort"], 15013)
        # Off by default: no peering Service, no peering port.
        defaults = self.render([])
        self.assertFalse(any(d["kind"] == "Service" and d["metadata"]["name"] == "weft-peering" for d in defaults))
        container = next(d for d in defaults if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]
        self.assertIn("--cluster=cluster-1", container["args"])
        self.assertFalse(any(a.startswith("--peering") for a in container["args"]))

    def test_gateway_api_crds_when_asked(self):
        docs = self.render(["--set", "gatewayAPI.installCRDs=true"])
        names = {d["metadata"]["name"] for d in docs if d["kind"] == "CustomResourceDefinition"}
        self.assertIn("httproutes.gateway.networking.k8s.io", names)
        self.assertIn("gateways.gateway.networking.k8s.io", names)
        self.assertIn("xbackends.gateway.networking.x-k8s.io", names)

    def test_egress_settings_reach_the_controller(self):
        docs = self.render(VARIANTS["registry-only"])
        container = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]
        self.assertIn("--outbound-traffic-policy=RegistryOnly", container["args"])
        names = {d["metadata"]["name"] for d in docs if d["kind"] == "CustomResourceDefinition"}
        self.assertIn("xbackends.gateway.networking.x-k8s.io", names)
        # Gateway API's own CRDs only with gatewayAPI.installCRDs.
        self.assertNotIn("httproutes.gateway.networking.k8s.io", names)
        # The controller reads XBackends.
        role = next(d for d in docs if d["kind"] == "ClusterRole")
        self.assertTrue(any("xbackends" in r["resources"] and "watch" in r["verbs"] for r in role["rules"]))
        defaults = self.render([])
        container = next(d for d in defaults if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]
        self.assertIn("--outbound-traffic-policy=AllowAny", container["args"])

    def test_switches_take_their_objects_away(self):
        docs = self.render(["--set", "injection.enabled=false", "--set", "provisioning.enabled=false",
                            "--set", "controller.replicas=1"])
        kinds = {d["kind"] for d in docs}
        self.assertNotIn("MutatingWebhookConfiguration", kinds)
        self.assertNotIn("PodDisruptionBudget", kinds)
        role = next(d for d in docs if d["kind"] == "ClusterRole")
        self.assertFalse(any("deployments" in r["resources"] for r in role["rules"]))
        container = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]
        self.assertIn("--no-provisioning", container["args"])

    def test_the_schema_refuses_bad_values(self):
        for name, args in REFUSED.items():
            with self.subTest(values=name):
                r = run_helm("template", "weft", CHART, *args)
                self.assertNotEqual(r.returncode, 0, f"{name} rendered")
                self.assertIn("schema", (r.stderr + r.stdout).lower())

    def test_weft_objects_of_the_examples_fit_the_crds(self):
        schemas = crd_schemas(self.render(["--set", "egress.installXBackendCRD=true"]))
        seen = 0
        for path in glob.glob(os.path.join(ROOT, "examples", "**", "*.yaml"), recursive=True):
            with open(path) as f:
                for d in documents(f.read()):
                    group, _, version = d.get("apiVersion", "").rpartition("/")
                    if group not in ("weft.dev", "gateway.networking.x-k8s.io") or d["kind"] == "Workload":
                        continue
                    if group == "gateway.networking.x-k8s.io" and d["kind"] != "XBackend":
                        continue
                    with self.subTest(example=f"{path}: {d['kind']} {d['metadata']['name']}"):
                        jsonschema.validate(d, as_json_schema(schemas[(group, d["kind"], version)]))
                        seen += 1
        self.assertGreater(seen, 0)


class Image(unittest.TestCase):
    """No image can be built here (no container engine); what the chart and
    the webhook expect of it is checked in its Dockerfile."""

    def test_the_dockerfile_makes_what_the_chart_runs(self):
        with open(os.path.join(ROOT, "Dockerfile")) as f:
            text = f.read()
        lines = [l.strip() for l in text.splitlines() if l.strip() and not l.startswith("#")]
        stages = [l for l in lines if l.startswith("FROM ")]
        self.assertEqual(len(stages), 2)
        # The chart's args start with a weft subcommand.
        self.assertEqual(lines[-1], 'ENTRYPOINT ["/usr/local/bin/weft"]')
        self.assertIn("cargo build --release --locked -p weft", text)
        # The sidecar's init container runs `iptables`; the proxy runs as 1337.
        self.assertIn("iptables", next(l for l in lines if "apt-get install" in l and "iptables" in l))
        self.assertIn("USER 1337:1337", lines)


if __name__ == "__main__":
    unittest.main()
