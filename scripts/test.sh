#!/usr/bin/env bash
# Runs the whole test suite: unit, golden and end-to-end tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo test --workspace "$@"
