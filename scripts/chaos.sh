#!/usr/bin/env bash
# Chaos on the local testnet (issue 20): starts a fresh testnet whose peer links all pass
# through the userspace relay (scripts/testnet.sh --relays, tools/netem/relay.py), then
# runs fault scenarios while `p2pnode load` submits transfers from node0:
#   kill9-validator     kill -9 a validator (not node0) and restart it (3 times; --quick: once)
#   kill9-leader        kill -9 the current round's leader (not node0), restart it
#   kill9-initiator     kill -9 a checkpoint's initiator the moment it asks for signatures
#                       (its log line "checkpoint: asking the validators to sign"), restart it
#   partition-one       cut one validator off from all the others, heal
#   partition-minority  cut off f = ⌊(n−1)/3⌋ validators, the current leader among them, heal
#   split-2-2           split the validators in two halves: no block may commit during the
#                       split (the highest committed height is flat from 1.5 s after the cut,
#                       which leaves time for messages already delivered), and commits must
#                       resume after the heal
#   lossy               every link 30±20 ms, 5 % of chunks stalled 200 ms, resets 0.02/s
#   slow                every link 150±50 ms and 256 KiB/s per direction
# After each: every accepted transfer executed exactly once on every node, every node
# with the same block at every height, a new checkpoint confirmed on Bitcoin, and the
# scenario's own claim (commits went on / none during the split). Prints a verdict table
# (scenario | result | time | details) and exits non-zero if any scenario failed.
# Fault spans: 10–15 s with --quick (about 1 min per scenario), 30–40 s without.
#
#   scripts/chaos.sh [--scenario NAME[,NAME…] | all] [--quick] [--rate N] [--nodes 4|7]
#                    [--base-port P] [--dir DIR] [--seed S]
#
# Defaults: all scenarios, 250 tx/s, 4 validators, base port 30600, DIR .build/chaos.
# With --nodes 7 the minority is 2 nodes and the split 3 / 4. node0 submits the load: it
# is never killed or cut off alone (in split-2-2 its half cannot commit either).
# Uses ports BASE…BASE+N−1, BASE+1000… (metrics), BASE+2000 (regtest) on 127.0.0.1 and
# 127.0.0.(10+i):BASE+i (relays); the testnet refuses to start if one is taken.
# The testnet's output is DIR/testnet.out, the relay's log DIR/netem.log, each node's
# DIR/nodeI/node.log, each scenario's load DIR/load-NAME.out. Environment as for
# scripts/testnet.sh (SIDENODE_SKIP_BUILD=1, SIDENODE_BIN=PATH).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SCENARIO=all
QUICK=()
RATE=250
NODES=4
BASE_PORT=30600
DIR="$ROOT/.build/chaos"
SEED=()
while [ $# -gt 0 ]; do
    case "$1" in
        --scenario) SCENARIO=${2:?--scenario needs a name}; shift 2 ;;
        --quick) QUICK=(--quick); shift ;;
        --rate) RATE=${2:?--rate needs a number}; shift 2 ;;
        --nodes) NODES=${2:?--nodes needs 4 or 7}; shift 2 ;;
        --base-port) BASE_PORT=${2:?--base-port needs a port}; shift 2 ;;
        --dir) DIR=${2:?--dir needs a path}; shift 2 ;;
        --seed) SEED=(--seed "${2:?--seed needs a number}"); shift 2 ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
    esac
done
[[ "$RATE" =~ ^[0-9]+$ ]] && [ "$RATE" -ge 1 ] || { echo "--rate must be a positive number" >&2; exit 2; }
[[ "$NODES" =~ ^[0-9]+$ ]] && [ "$NODES" -ge 4 ] && [ "$NODES" -le 10 ] || { echo "--nodes must be 4…10" >&2; exit 2; }
if [ -n "${SIDENODE_BIN:-}" ]; then BIN=$SIDENODE_BIN; else BIN="$ROOT/.build/release/p2pnode"; fi
# Check the scenario names before starting anything.
python3 "$ROOT/tools/netem/chaos.py" --dir /nonexistent --bin /nonexistent --scenario "$SCENARIO" --check-only

rm -rf "$DIR"
mkdir -p "$DIR"
log() { printf '==> %s\n' "$*"; }

TESTNET_TOLERATE_NODE_EXITS=1 "$ROOT/scripts/testnet.sh" --nodes "$NODES" --dir "$DIR" --base-port "$BASE_PORT" --relays \
    --epoch-length 300 --duration 10800 >"$DIR/testnet.out" 2>&1 &
TESTNET=$!
cleanup() {
    kill -TERM "$TESTNET" 2>/dev/null || true
    wait "$TESTNET" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "starting a $NODES-validator testnet with relayed links in $DIR (output in $DIR/testnet.out)"
for _ in $(seq 1 900); do
    [ -S "$DIR/node0/admin.sock" ] && [ -S "$DIR/netem.sock" ] && break
    kill -0 "$TESTNET" 2>/dev/null || { echo "the testnet stopped:" >&2; tail -20 "$DIR/testnet.out" >&2; exit 1; }
    sleep 1
done
[ -S "$DIR/node0/admin.sock" ] || { echo "the testnet did not start:" >&2; tail -20 "$DIR/testnet.out" >&2; exit 1; }

set +e
python3 "$ROOT/tools/netem/chaos.py" --dir "$DIR" --bin "$BIN" --nodes "$NODES" --scenario "$SCENARIO" --rate "$RATE" \
    "${QUICK[@]}" "${SEED[@]}"
status=$?
set -e
kill -0 "$TESTNET" 2>/dev/null || { echo "the testnet stopped during the run:" >&2; tail -20 "$DIR/testnet.out" >&2; status=1; }
exit "$status"
