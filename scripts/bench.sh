#!/usr/bin/env bash
# Benchmarks from a release build, each printed next to this machine's bound
# measured in the same run: crypto (the bounds themselves), then the encrypted
# transport (stream MB/s as a percentage of raw ChaCha20-Poly1305, handshakes/s), then
# the ledger (transactions verified and inserted per second against Ed25519 verify/s).
#   scripts/bench.sh [SECONDS_PER_MEASUREMENT]
set -euo pipefail
SECONDS_EACH=${1:-2}
P2PNODE="$(dirname "$0")/p2pnode"
echo "== crypto bounds"
"$P2PNODE" bench crypto --seconds "$SECONDS_EACH"
echo
echo "== transport"
"$(dirname "$0")/../.build/release/p2pnode" bench transport --seconds "$SECONDS_EACH"
echo
echo "== ledger (BFT-CRDT insert)"
"$(dirname "$0")/../.build/release/p2pnode" bench ledger
