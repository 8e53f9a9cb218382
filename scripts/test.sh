#!/usr/bin/env bash
# Runs the whole test suite: unit, golden and end-to-end tests. Every test
# binary runs even when an earlier one fails; the closing lines add up
# every binary's results and name each failed test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --no-fail-fast "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
awk '
  /^     Running / { binary = $2 }
  /^test result:/ { passed += $4; failed += $6 }
  /^test .* \.\.\. FAILED$/ { names[n++] = binary ": " $2 }
  END {
    printf "tests: %d passed, %d failed\n", passed, failed
    for (i = 0; i < n; i++) printf "failed: %s\n", names[i]
  }' "$log"
exit "$status"
