#!/usr/bin/env bash
# Installs what building weft needs and this machine lacks: cmake (Pingora),
# protoc (the config protocol), a C compiler, and a Rust toolchain check;
# and what the tests use: curl, and iptables, iproute2 and openssl for the
# transparent-capture test in a network namespace, python3, wrk and nginx
# for the benchmark harness's smoke run.
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
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "setup: cargo is required (https://rustup.rs)" >&2; exit 1; }
