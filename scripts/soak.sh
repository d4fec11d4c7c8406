#!/usr/bin/env bash
# Soak test: runs a fresh local testnet (scripts/testnet.sh: 4 validators and the regtest
# chain) under a steady load (`p2pnode load`, signed transfers from node0) for DURATION,
# samples every node's memory, descriptors and disk at intervals, and ends with a verdict
# on growth. Exits 1 if a node's memory or descriptors grow (or a node died), 0 if flat,
# 3 if the testnet did not start or too few samples came after the warm-up.
#
#   scripts/soak.sh DURATION [--rate TX_PER_S] [--interval S] [--warmup S] [--dir DIR]
#                   [--base-port PORT] [--nodes N] [--chunk S] [--max-rss-growth-pct P]
#                   [--max-rss-slope MIB_PER_H] [--max-fd-growth N] [--epoch-length BLOCKS]
#                   [--checkpoint-interval BLOCKS] [--no-svg] [--clean-data] [--keep-blocks N]
#
# DURATION: seconds, or with a unit: 90s, 30m, 1h, 1h30m (the loaded, measured window;
# start-up comes on top). Defaults: --rate 200, --interval 60, --base-port 33000 (the nodes
# on PORT…PORT+N-1; testnet.sh puts metrics on PORT+1000… and the regtest chain on
# PORT+2000), --nodes 4, --dir a new directory under /tmp, --chunk 600 (`p2pnode load`
# runs at most an hour, and signs a chunk before sending it: the load is a chain of
# chunks, with a gap of a few seconds between them).
#
# Every interval, per node: RSS (/proc/PID/status VmRSS, and RssAnon), open descriptors
# (/proc/PID/fd), threads, CPU, disk of its data directory (du; consensus.sqlite*,
# ledger.sqlite*, node.log), committed height, DAG size (admin getmempool: count, pending)
# and committed tx/s; the regtest chain's RSS and height too. Samples go to DIR/soak.csv
# (and a plot to DIR/soak.svg).
#
# Verdict, per node, over the samples after the warm-up (--warmup; default the first 20 %
# of DURATION or 10 minutes, whichever is smaller — page caches, SQLite's 64 MiB cache and
# allocator arenas fill first): a least-squares line through RSS and through the descriptor
# count. RSS is "flat" if its fitted growth over the window is below --max-rss-growth-pct
# (default 5) % of its mean OR its slope is below --max-rss-slope (default 16) MiB/hour: the
# first criterion decides short runs, the second long ones (16 MiB/h is 384 MiB a day).
# Descriptors are flat if their fitted growth is below --max-fd-growth (default 8). A node
# is "growing" if either is not flat. Disk is expected to grow with the chain unless block
# pruning is configured: its growth is reported apart, per 1,000 committed blocks and per
# committed transaction, split into the committed chain (consensus.sqlite) and the DAG
# (ledger.sqlite); the DAG's entry count and RSS per entry likewise. The regtest chain (a
# test tool) is reported but does not decide the verdict. --keep-blocks N sets every node's
# `[state] keep_blocks` (block pruning), so the committed chain stops growing on disk too.
#
# SIDENODE_SKIP_BUILD=1 (with .build/release/p2pnode present) skips testnet.sh's release
# build; SIDENODE_BIN=PATH runs that binary (testnet and load). Stopping: SIGTERM to the
# testnet.sh process this script started (which stops its nodes and the regtest chain) and
# to its own load generator; nothing else is signalled.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN="$ROOT/.build/release/p2pnode"
HELPER="$ROOT/tools/soak/soak.py"

usage() {
    sed -n '2,42p' "$0" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

DURATION=""
RATE=200
INTERVAL=60
WARMUP=""
DIR=""
BASE_PORT=33000
NODES=4
CHUNK=600
MAX_RSS_PCT=5
MAX_RSS_SLOPE=16
MAX_FD_GROWTH=8
EPOCH_LENGTH=""
CHECKPOINT_INTERVAL=""
SVG=1
CLEAN_DATA=0

# Seconds from 3600, 90s, 30m, 1h, 1h30m, 2d.
parse_duration() {
    local s=$1 total=0 n unit
    [[ "$s" =~ ^[0-9]+$ ]] && { echo "$s"; return 0; }
    [[ "$s" =~ ^([0-9]+[dhms])+$ ]] || return 1
    while [[ "$s" =~ ^([0-9]+)([dhms])(.*)$ ]]; do
        n=${BASH_REMATCH[1]} unit=${BASH_REMATCH[2]} s=${BASH_REMATCH[3]}
        case "$unit" in
            d) total=$((total + n * 86400)) ;;
            h) total=$((total + n * 3600)) ;;
            m) total=$((total + n * 60)) ;;
            s) total=$((total + n)) ;;
        esac
    done
    echo "$total"
}

while [ $# -gt 0 ]; do
    case "$1" in
        --rate) RATE=${2:?--rate needs transactions per second}; shift 2 ;;
        --interval) INTERVAL=$(parse_duration "${2:?--interval needs seconds}") || { echo "bad --interval" >&2; exit 2; }; shift 2 ;;
        --warmup) WARMUP=$(parse_duration "${2:?--warmup needs seconds}") || { echo "bad --warmup" >&2; exit 2; }; shift 2 ;;
        --dir) DIR=${2:?--dir needs a path}; shift 2 ;;
        --base-port) BASE_PORT=${2:?--base-port needs a port}; shift 2 ;;
        --nodes) NODES=${2:?--nodes needs a number}; shift 2 ;;
        --chunk) CHUNK=$(parse_duration "${2:?--chunk needs seconds}") || { echo "bad --chunk" >&2; exit 2; }; shift 2 ;;
        --max-rss-growth-pct) MAX_RSS_PCT=${2:?}; shift 2 ;;
        --max-rss-slope) MAX_RSS_SLOPE=${2:?}; shift 2 ;;
        --max-fd-growth) MAX_FD_GROWTH=${2:?}; shift 2 ;;
        --epoch-length) EPOCH_LENGTH=${2:?}; shift 2 ;;
        --checkpoint-interval) CHECKPOINT_INTERVAL=${2:?}; shift 2 ;;
        --no-svg) SVG=0; shift ;;
        --clean-data) CLEAN_DATA=1; shift ;;
        --keep-blocks) export TESTNET_KEEP_BLOCKS=${2:?--keep-blocks needs a number of blocks}; shift 2 ;;
        -h|--help) usage 0 ;;
        -*) echo "unknown option: $1" >&2; usage 2 ;;
        *)
            [ -z "$DURATION" ] || { echo "one DURATION only" >&2; exit 2; }
            DURATION=$(parse_duration "$1") || { echo "DURATION: seconds or 30m, 1h, 1h30m" >&2; exit 2; }
            shift ;;
    esac
done
[ -n "$DURATION" ] || { echo "DURATION is required (e.g. scripts/soak.sh 1h)" >&2; usage 2; }
[ "$DURATION" -ge 60 ] || { echo "DURATION must be at least 60 s" >&2; exit 2; }
[ "$INTERVAL" -ge 5 ] || { echo "--interval must be at least 5 s" >&2; exit 2; }
[ "$CHUNK" -ge 30 ] && [ "$CHUNK" -le 3600 ] || { echo "--chunk must be 30…3600 s (p2pnode load's limit)" >&2; exit 2; }
[[ "$RATE" =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "--rate must be a number" >&2; exit 2; }
[[ "$NODES" =~ ^[0-9]+$ ]] && [ "$NODES" -ge 1 ] || { echo "--nodes must be a positive number" >&2; exit 2; }
[[ "$BASE_PORT" =~ ^[0-9]+$ ]] && [ $((BASE_PORT + 2000)) -le 65535 ] || { echo "--base-port out of range" >&2; exit 2; }
[ -z "$WARMUP" ] && WARMUP=$(( DURATION / 5 < 600 ? DURATION / 5 : 600 ))
[ "$WARMUP" -lt "$DURATION" ] || { echo "--warmup must be shorter than DURATION" >&2; exit 2; }

# The ports testnet.sh will take must be free: never share a port with another testnet.
busy=()
ports=("$((BASE_PORT + 2000))")
for i in $(seq 0 $((NODES - 1))); do ports+=("$((BASE_PORT + i))" "$((BASE_PORT + 1000 + i))"); done
listening=$(ss -Htln 2>/dev/null | awk '{print $4}' | sed 's/.*://' | sort -u || true)
for p in "${ports[@]}"; do grep -qx "$p" <<<"$listening" && busy+=("$p"); done
[ ${#busy[@]} -eq 0 ] || { echo "ports in use: ${busy[*]} (choose another --base-port)" >&2; exit 2; }

if [ -z "$DIR" ]; then
    DIR=$(mktemp -d /tmp/sidenode-soak.XXXXXX)
else
    mkdir -p "$DIR"
    DIR=$(cd "$DIR" && pwd)
    [ ! -e "$DIR/soak.csv" ] || { echo "$DIR/soak.csv exists: use a new --dir" >&2; exit 2; }
fi
CSV="$DIR/soak.csv"
ESPLORA="http://127.0.0.1:$((BASE_PORT + 2000))"

# testnet.sh honours SIDENODE_SKIP_BUILD=1 (no build while .build/release/p2pnode exists)
# and SIDENODE_BIN=PATH (run that binary); the load runs the same binary.
[ -n "${SIDENODE_BIN:-}" ] && BIN=$(cd "$(dirname "$SIDENODE_BIN")" && pwd)/$(basename "$SIDENODE_BIN")
if [ "${SIDENODE_SKIP_BUILD:-0}" = 1 ] && [ ! -x "$BIN" ]; then
    echo "note: SIDENODE_SKIP_BUILD=1 but $BIN does not exist: testnet.sh builds it" >&2
fi

TESTNET_PID=""
LOAD_LOOP_PID=""
stopped=0
stop_all() {
    [ "$stopped" = 1 ] && return 0
    stopped=1
    trap - INT TERM
    echo "==> stopping the load and the testnet"
    if [ -n "$LOAD_LOOP_PID" ]; then
        kill -TERM "$LOAD_LOOP_PID" 2>/dev/null || true
        wait "$LOAD_LOOP_PID" 2>/dev/null || true
    fi
    if [ -f "$DIR/load.pid" ]; then
        kill -TERM "$(cat "$DIR/load.pid")" 2>/dev/null || true
        rm -f "$DIR/load.pid"
    fi
    if [ -n "$TESTNET_PID" ] && kill -0 "$TESTNET_PID" 2>/dev/null; then
        kill -TERM "$TESTNET_PID" 2>/dev/null || true
        # testnet.sh stops its nodes (each flushes and saves) and the regtest chain.
        for _ in $(seq 1 120); do kill -0 "$TESTNET_PID" 2>/dev/null || break; sleep 0.5; done
        kill -0 "$TESTNET_PID" 2>/dev/null && echo "    testnet.sh ($TESTNET_PID) still running after 60 s" >&2
    fi
    wait "$TESTNET_PID" 2>/dev/null || true
    if [ "$CLEAN_DATA" = 1 ]; then
        rm -rf "$DIR"/node*/consensus.sqlite* "$DIR"/node*/ledger.sqlite* "$DIR/regtest"
    fi
    return 0
}
report() {
    local args=(--csv "$CSV" --warmup "$WARMUP" --max-rss-growth-pct "$MAX_RSS_PCT" --max-rss-slope "$MAX_RSS_SLOPE"
        --max-fd-growth "$MAX_FD_GROWTH")
    [ "$SVG" = 1 ] && args+=(--svg "$DIR/soak.svg")
    python3 "$HELPER" report "${args[@]}"
}
# Interrupted: stop, and judge what was sampled so far. Any other exit stops everything too.
on_signal() {
    stop_all
    [ -s "$CSV" ] && { report || true; }
    exit 130
}
trap on_signal INT TERM
trap stop_all EXIT

echo "==> soak: $DURATION s at $RATE tx/s, a sample every $INTERVAL s, warm-up $WARMUP s, in $DIR"
TESTNET_ARGS=(--nodes "$NODES" --dir "$DIR" --base-port "$BASE_PORT")
[ -n "$EPOCH_LENGTH" ] && TESTNET_ARGS+=(--epoch-length "$EPOCH_LENGTH")
[ -n "$CHECKPOINT_INTERVAL" ] && TESTNET_ARGS+=(--checkpoint-interval "$CHECKPOINT_INTERVAL")
echo "    scripts/testnet.sh ${TESTNET_ARGS[*]} (its output: $DIR/testnet.log)"
"$ROOT/scripts/testnet.sh" "${TESTNET_ARGS[@]}" >"$DIR/testnet.log" 2>&1 &
TESTNET_PID=$!

# Up: the build (unless skipped), the regtest chain, the checkpoint coin, then commits.
started=$(date +%s)
until grep -q '^==> running' "$DIR/testnet.log" 2>/dev/null; do
    if ! kill -0 "$TESTNET_PID" 2>/dev/null; then
        echo "testnet.sh exited during start-up:" >&2
        tail -20 "$DIR/testnet.log" >&2
        exit 3
    fi
    if [ $(( $(date +%s) - started )) -gt 3600 ]; then
        echo "testnet.sh not running after an hour; see $DIR/testnet.log" >&2
        stop_all
        exit 3
    fi
    sleep 2
done
[ -x "$BIN" ] || { echo "no $BIN after testnet.sh's build" >&2; stop_all; exit 3; }
if ! python3 "$HELPER" ready --dir "$DIR" --nodes "$NODES" --timeout 300; then
    tail -5 "$DIR"/node*/node.log >&2 || true
    stop_all
    exit 3
fi

# The load: chunks of at most --chunk seconds, one after the other, until the end.
T0=$(date +%s)
END=$((T0 + DURATION))
load_loop() {
    trap 'exit 0' TERM
    local left chunk n=0
    while true; do
        left=$((END - $(date +%s)))
        [ "$left" -ge 10 ] || break
        chunk=$((left < CHUNK ? left : CHUNK))
        n=$((n + 1))
        echo "--- load chunk $n: $chunk s at $RATE tx/s ($(date +%H:%M:%S))"
        "$BIN" load --data-dir "$DIR/node0" --nodes "$NODES" --rate "$RATE" --duration "$chunk" &
        echo $! >"$DIR/load.pid"
        wait $! || echo "load chunk $n exited with status $?"
        rm -f "$DIR/load.pid"
    done
}
load_loop >"$DIR/load.log" 2>&1 &
LOAD_LOOP_PID=$!
echo "==> load running (its reports: $DIR/load.log); samples to $CSV"

sample() { python3 "$HELPER" sample --dir "$DIR" --nodes "$NODES" --csv "$CSV" --t0 "$T0" --esplora "$ESPLORA"; }
sample
next=$((T0 + INTERVAL))
aborted=""
while [ "$(date +%s)" -lt "$END" ]; do
    wake=$((next < END ? next : END))
    while [ "$(date +%s)" -lt "$wake" ]; do
        sleep 1
        if ! kill -0 "$TESTNET_PID" 2>/dev/null; then aborted="testnet.sh exited (its regtest chain stopped?)"; break 2; fi
    done
    sample
    next=$((next + INTERVAL))
done
[ -n "$aborted" ] && { echo "==> $aborted; see $DIR/testnet.log"; sample || true; }

# The last chunk ends now and waits for its transfers to commit: let it print its report.
if [ -z "$aborted" ]; then
    for _ in $(seq 1 45); do kill -0 "$LOAD_LOOP_PID" 2>/dev/null || break; sleep 1; done
fi
stop_all
trap - INT TERM
echo "==> load chunks:"
grep -E '^(--- load chunk|submitted|committed [0-9]|committed throughput|commit latency|load chunk)' "$DIR/load.log" |
    sed 's/^/    /' || true
status=0
report || status=$?
[ -n "$aborted" ] && status=1
echo "    samples: $CSV; logs: $DIR/node*/node.log, $DIR/testnet.log, $DIR/load.log"
exit "$status"
