#!/usr/bin/env bash
# Crash recovery under load (issue 14): starts a 4-validator local testnet
# (scripts/testnet.sh), puts signed transfers through it with `p2pnode load`, kills one
# validator with kill -9 and restarts it several times while the load runs, then checks
#   - the chain kept committing through every crash,
#   - every transfer accepted at submission was executed exactly once (each pays 1 to
#     one account, so its balance equals the number accepted, on every node),
#   - every node has the same block at every height.
# Exits non-zero if any check fails.
#   scripts/chaos-restart.sh [--rate N] [--duration S] [--restarts K] [--victim I] [--base-port P]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RATE=500
DURATION=60
RESTARTS=5
VICTIM=2
BASE_PORT=29656
while [ $# -gt 0 ]; do
    case "$1" in
        --rate) RATE=${2:?}; shift 2 ;;
        --duration) DURATION=${2:?}; shift 2 ;;
        --restarts) RESTARTS=${2:?}; shift 2 ;;
        --victim) VICTIM=${2:?}; shift 2 ;;
        --base-port) BASE_PORT=${2:?}; shift 2 ;;
        -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option: $1" >&2; exit 2 ;;
    esac
done
[[ "$VICTIM" =~ ^[1-3]$ ]] || { echo "--victim must be 1…3 (node0 submits the load)" >&2; exit 2; }
DIR="$ROOT/.build/chaos-testnet"
BIN="$ROOT/.build/release/p2pnode"
rm -rf "$DIR"
mkdir -p "$DIR"
log() { printf '==> %s\n' "$*"; }

# The testnet runs long enough for the load, the restarts and the checks.
TESTNET_TOLERATE_NODE_EXITS=1 "$ROOT/scripts/testnet.sh" --nodes 4 --dir "$DIR" --base-port "$BASE_PORT" --duration $((DURATION + 240)) \
    --epoch-length 100 >"$DIR/testnet.out" 2>&1 &
TESTNET=$!
VICTIM_PID=""
cleanup() {
    [ -n "$VICTIM_PID" ] && kill -TERM "$VICTIM_PID" 2>/dev/null || true
    kill -TERM "$TESTNET" 2>/dev/null || true
    wait "$TESTNET" 2>/dev/null || true
}
trap cleanup EXIT
admin() { "$BIN" admin --data-dir "$DIR/node$1" "${@:2}" 2>/dev/null; }
height() { admin "$1" getstatus | python3 -c 'import json,sys; print(json.load(sys.stdin)["committed_height"])' 2>/dev/null || echo 0; }

log "starting a 4-validator testnet in $DIR (build and start; output in $DIR/testnet.out)"
for _ in $(seq 1 600); do
    ready=0
    for i in 0 1 2 3; do [ "$(height $i)" -ge 3 ] && ready=$((ready + 1)); done
    [ "$ready" -eq 4 ] && break
    kill -0 "$TESTNET" 2>/dev/null || { tail -20 "$DIR/testnet.out" >&2; exit 1; }
    sleep 1
done
[ "$ready" -eq 4 ] || { echo "the testnet did not start" >&2; exit 1; }
RECIPIENT=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['public_key'])" "$DIR/node3/node_key.json")
BEFORE=$(admin 0 getbalance "{\"account\":\"$RECIPIENT\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["balance"])')

log "load: $RATE tx/s for $DURATION s from node0 to node3's account; node$VICTIM is killed -9 and restarted $RESTARTS times"
"$BIN" load --data-dir "$DIR/node0" --nodes 4 --rate "$RATE" --duration "$DURATION" --to "$RECIPIENT" \
    >"$DIR/load.out" 2>&1 &
LOAD=$!
gap=$(( DURATION / (RESTARTS + 1) ))
for k in $(seq 1 "$RESTARTS"); do
    sleep "$gap"
    pid=$(pgrep -f -- "--data-dir $DIR/node$VICTIM --config" | head -1)
    [ -n "$pid" ] || { echo "node$VICTIM is not running" >&2; exit 1; }
    before=$(height 0)
    kill -9 "$pid"
    sleep 2
    "$BIN" --data-dir "$DIR/node$VICTIM" --config "$DIR/node$VICTIM/config.toml" >>"$DIR/node$VICTIM/node.log" 2>&1 &
    VICTIM_PID=$!
    log "restart $k: node$VICTIM killed at height $before, restarted (node0 now at $(height 0))"
done
wait "$LOAD" || { cat "$DIR/load.out" >&2; exit 1; }
sed 's/^/    /' "$DIR/load.out"

log "waiting for every node to reach node0's height"
target=$(height 0)
for _ in $(seq 1 120); do
    low=$(for i in 0 1 2 3; do height $i; done | sort -n | head -1)
    [ "$low" -ge "$target" ] && break
    sleep 1
done

log "checking exactly-once execution and agreement"
python3 - "$BIN" "$DIR" "$RECIPIENT" "$BEFORE" "$DIR/load.out" <<'PY'
import json, re, subprocess, sys
binary, root, recipient, before, load_out = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
def call(i, method, params=None):
    args = [binary, "admin", "--data-dir", f"{root}/node{i}", method] + ([json.dumps(params)] if params else [])
    return json.loads(subprocess.run(args, capture_output=True, text=True, check=True).stdout)
text = open(load_out).read()
sent = int(re.search(r"submitted (\d+)", text).group(1))
refused = int(re.search(r"\((\d+) refused at submission\)", text).group(1))
accepted = sent - refused
ok = True
for i in range(4):
    got = call(i, "getbalance", {"account": recipient})["balance"] - before
    if got != accepted:
        print(f"node{i}: the recipient received {got}, but {accepted} transfers were accepted"); ok = False
heights = [call(i, "getstatus")["committed_height"] for i in range(4)]
top = min(heights)
mismatch = 0
for h in range(1, top + 1):
    ids = {call(i, "getblock", {"height": h})["block_id"] for i in range(4)}
    if len(ids) != 1:
        mismatch += 1
        if mismatch <= 3: print(f"height {h}: nodes differ: {ids}")
if mismatch: ok = False
print(f"    {accepted} transfers accepted, executed once each on all 4 nodes: {'yes' if ok and not mismatch else 'NO'}")
print(f"    heights {heights}; blocks 1…{top} identical on every node: {'yes' if not mismatch else f'NO ({mismatch} differ)'}")
sys.exit(0 if ok else 1)
PY
log "passed"
