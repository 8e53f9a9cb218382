#!/usr/bin/env bash
# Brings the quickstart up: controller, gateway and two echo workloads.
# Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build -p weft
exec target/debug/weft up "${1:-examples/quickstart}"
