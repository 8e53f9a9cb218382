#!/usr/bin/env bash
# Runs the whole test suite: unit, golden and end-to-end tests. Every test
# binary runs even when an earlier one fails; the closing lines add up
# every binary's results and name each failed test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The kubectl and helm setup installs, unless others are given.
[ -n "${KUBECTL:-}" ] || export KUBECTL="$PWD/target/tools/venv/bin/kubectl"
[ -n "${HELM:-}" ] || export HELM="$PWD/target/tools/helm/helm"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --no-fail-fast "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# The API-server stand-in's own tests, with the real kubectl; the chart's,
# with the real Helm.
for suite in integration/apiserver/test_kubectl.py charts/weft/tests/test_chart.py; do
  target/tools/venv/bin/python -m unittest "$suite" 2>&1 | tee -a "$log"
  code=${PIPESTATUS[0]}
  [ "$status" -ne 0 ] || status=$code
done
set -e
awk '
  /^     Running / { binary = $2 }
  /^test result:/ { passed += $4; failed += $6 }
  /^test .* \.\.\. FAILED$/ { names[n++] = binary ": " $2 }
  /^Ran [0-9]+ tests? in/ { passed += $2 }
  /^(FAIL|ERROR): / { names[n++] = "python: " $2; failed++; passed-- }
  END {
    printf "tests: %d passed, %d failed\n", passed, failed
    for (i = 0; i < n; i++) printf "failed: %s\n", names[i]
  }' "$log"
exit "$status"
