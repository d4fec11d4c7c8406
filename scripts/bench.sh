#!/usr/bin/env bash
# Benchmarks from a release build, each printed next to this machine's bound
# measured in the same run.
#
#   scripts/bench.sh [SECONDS_PER_MEASUREMENT]
#       crypto (the bounds themselves), the encrypted transport (stream MB/s as a
#       percentage of raw ChaCha20-Poly1305, handshakes/s), the ledger (transactions
#       verified and inserted per second against Ed25519 verify/s).
#
#   scripts/bench.sh --sweep [--rates R1,R2,…] [--duration S] [--nodes N] [--plot FILE]
#       starts a fresh local testnet (scripts/testnet.sh, N validators, default 4, in a
#       temporary directory), offers each rate for S seconds (default 15) with
#       `p2pnode load`, prints the table (offered, reached, committed, p50, p99, bound,
#       ratio) and writes the SVG chart (default bench-sweep.svg), then stops the testnet.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
P2PNODE="$ROOT/scripts/p2pnode"
RELEASE="$ROOT/.build/release/p2pnode"

if [ "${1:-}" != "--sweep" ]; then
    SECONDS_EACH=${1:-2}
    echo "== crypto bounds"
    "$P2PNODE" bench crypto --seconds "$SECONDS_EACH"
    echo
    echo "== transport"
    "$RELEASE" bench transport --seconds "$SECONDS_EACH"
    echo
    echo "== ledger (BFT-CRDT insert)"
    "$RELEASE" bench ledger
    exit 0
fi

shift
RATES=500,1000,2000,3000,4000,5000,6000
DURATION=15
NODES=4
PLOT="$ROOT/bench-sweep.svg"
BASE_PORT=${SIDENODE_BENCH_PORT:-28650}
while [ $# -gt 0 ]; do
    case "$1" in
        --rates) RATES=${2:?--rates needs a list}; shift 2 ;;
        --duration) DURATION=${2:?--duration needs seconds}; shift 2 ;;
        --nodes) NODES=${2:?--nodes needs a number}; shift 2 ;;
        --plot) PLOT=${2:?--plot needs a file}; shift 2 ;;
        -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
[[ "$RATES" =~ ^[0-9]+(,[0-9]+)*$ ]] || { echo "--rates must be numbers separated by commas" >&2; exit 2; }
[[ "$DURATION" =~ ^[0-9]+$ ]] && [ "$DURATION" -ge 1 ] || { echo "--duration must be whole seconds" >&2; exit 2; }

DIR=$(mktemp -d /tmp/sidenode-sweep.XXXXXX)
LOG="$DIR/testnet.log"
# The testnet runs until this script stops it (or for an hour at most).
"$ROOT/scripts/testnet.sh" --nodes "$NODES" --dir "$DIR" --base-port "$BASE_PORT" --duration 3600 >"$LOG" 2>&1 &
TESTNET=$!
cleanup() {
    kill -TERM "$TESTNET" 2>/dev/null || true
    wait "$TESTNET" 2>/dev/null || true
    rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== starting a fresh $NODES-validator testnet in $DIR (log: $LOG)"
height=0
for _ in $(seq 1 600); do
    if ! kill -0 "$TESTNET" 2>/dev/null; then
        echo "the testnet stopped; its log:" >&2
        tail -20 "$LOG" >&2
        exit 1
    fi
    if [ -S "$DIR/node0/admin.sock" ]; then
        height=$("$RELEASE" admin --data-dir "$DIR/node0" getstatus 2>/dev/null |
            sed -n 's/.*"committed_height" *: *\([0-9]*\).*/\1/p' | head -1)
        [ "${height:-0}" -ge 5 ] && break
    fi
    sleep 1
done
[ "${height:-0}" -ge 5 ] || { echo "the testnet did not commit 5 blocks; its log:" >&2; tail -20 "$LOG" >&2; exit 1; }
echo "== committing (height $height); sweeping $RATES tx/s, $DURATION s each"
"$RELEASE" load --data-dir "$DIR/node0" --nodes "$NODES" --sweep "$RATES" --duration "$DURATION" --plot "$PLOT"
