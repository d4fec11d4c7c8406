#!/usr/bin/env bash
# The project's test command: installs what is missing, checks formatting,
# builds, runs every test, and ends with one line "N passed, N failed".
# Exit status is non-zero on any failure. .ci/run calls exactly this.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

log() { printf '==> %s\n' "$*"; }

# --- system packages ---------------------------------------------------------
. scripts/lib/deps.sh
ensure_system_packages || exit 1
ensure_python_venv || { echo "0 passed, 1 failed"; exit 1; }

# --- formatting ---------------------------------------------------------------
log "checking formatting (scripts/format.sh --lint)"
if ! scripts/format.sh --lint; then
    echo "formatting violations: run scripts/format.sh" >&2
    echo "0 passed, 1 failed"
    exit 1
fi

# --- build and test -------------------------------------------------------------
log "building (debug, with tests); full log in .build/build-tests.log"
mkdir -p .build
swift build --build-tests >.build/build-tests.log 2>&1
build_status=$?
grep -E "error:|warning:" .build/build-tests.log | sort -u
if [ "$build_status" -ne 0 ]; then
    tail -20 .build/build-tests.log >&2
    echo "build failed" >&2
    echo "0 passed, 1 failed"
    exit 1
fi

log "running swift test"
OUT="$ROOT/.build/test-output.log"
swift test --skip-build 2>&1 | tee "$OUT"
status=${PIPESTATUS[0]}

# Swift Testing ends with "Test run with N tests in M suites passed|failed…", and
# prints "✘ Test NAME … failed after S seconds" per failing test (a parameterised
# test counts once). Parallel tests can interleave lines, so these are matched
# anywhere in a line, not only at its start.
total=$(grep -oE 'Test run with [0-9]+ tests?' "$OUT" | tail -1 | grep -oE '[0-9]+' || echo 0)
failed=$(grep -oE '✘ Test .* failed after [0-9.]+ seconds' "$OUT" | grep -vc '✘ Test run with' || true)
skipped=$(grep -oE '➜ Test .* skipped' "$OUT" | grep -c . || true)
passed=$(( total > failed + skipped ? total - failed - skipped : 0 ))
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
    failed=1  # the runner itself failed (crash, build error): never report success
fi
echo
echo "${passed} passed, ${failed} failed$([ "$skipped" -gt 0 ] && echo " ($skipped skipped: scripts/sim-campaign.sh runs the seed campaign)")"
[ "$status" -eq 0 ] && [ "$failed" -eq 0 ]
