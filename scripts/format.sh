#!/usr/bin/env bash
# Formats the Swift sources with the toolchain's swift-format.
#   scripts/format.sh          rewrite files in place
#   scripts/format.sh --lint   report violations and exit non-zero if any (used by scripts/test.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
paths=(Package.swift Sources Tests)
[ -d Benchmarks ] && paths+=(Benchmarks)
if [ "${1:-}" = "--lint" ]; then
    exec swift format lint --strict --parallel --recursive "${paths[@]}"
else
    exec swift format format --in-place --parallel --recursive "${paths[@]}"
fi
