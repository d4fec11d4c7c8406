#!/usr/bin/env bash
# Prints this machine's crypto bounds (Ed25519 and BIP340 verify/s, ChaCha20-Poly1305
# MB/s) from a release build; other benchmarks report their figures as ratios to these.
set -euo pipefail
exec "$(dirname "$0")/p2pnode" bench crypto "$@"
