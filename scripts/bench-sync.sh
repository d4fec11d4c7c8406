#!/usr/bin/env bash
# Joining a chain by state snapshot beside joining by block replay, in one run, on
# 127.0.0.1: four validators build a chain holding --accounts accounts (transfers from
# node0 to a new account each, through `p2pnode load --new-accounts`), then two new
# nodes start at the same moment — one with `--sync snapshot`, one replaying every
# block — and the script prints how long each takes to reach the validators' height,
# and the state root every node has at a common height (they must all be equal).
# Release build; no Bitcoin chain (checkpointing is not part of this measurement).
#
#   scripts/bench-sync.sh [--accounts N] [--rate TX_PER_S] [--dir DIR] [--base-port PORT]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ACCOUNTS=100000
RATE=3000
DIR="$ROOT/.build/bench-sync"
BASE_PORT=28700
while [ $# -gt 0 ]; do
    case "$1" in
        --accounts) ACCOUNTS=${2:?}; shift 2 ;;
        --rate) RATE=${2:?}; shift 2 ;;
        --dir) DIR=${2:?}; shift 2 ;;
        --base-port) BASE_PORT=${2:?}; shift 2 ;;
        -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option: $1" >&2; exit 2 ;;
    esac
done
[[ "$ACCOUNTS" =~ ^[0-9]+$ ]] && [ "$ACCOUNTS" -ge 100 ] || { echo "--accounts must be ≥ 100" >&2; exit 2; }
cd "$ROOT"
echo "==> building p2pnode (release)"
swift build -c release --product p2pnode >.build/release-build.log 2>&1 || { tail -30 .build/release-build.log >&2; exit 1; }
BIN="$ROOT/.build/release/p2pnode"
rm -rf "$DIR"
mkdir -p "$DIR"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
for i in 0 1 2 3 4 5; do
    "$BIN" init "node$i" --data-dir "$DIR/node$i" >/dev/null
    sync=""
    [ "$i" = 4 ] && sync='sync = "snapshot"'
    cat >"$DIR/node$i/config.toml" <<TOML
chain_id = "bench-sync"
listen = "127.0.0.1:$((BASE_PORT + i))"
bootstrap = "$DIR/bootstrap-peers.txt"
genesis = "$DIR/genesis.json"
log_level = "info"
[gossip]
max_connections_per_ip = 64
max_pending_per_host = 64
allow_local_addresses = true
[state]
snapshot_interval = 100
$sync
TOML
done
id() { python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['public_key'])" "$DIR/node$1/node_key.json"; }
: >"$DIR/validators.txt"
for i in 0 1 2 3; do
    echo "$(id $i) $(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['xonly_public_key'])" "$DIR/node$i/bitcoin_key.json")" >>"$DIR/validators.txt"
done
printf '%s@127.0.0.1:%d\n' "$(id 0)" "$BASE_PORT" >"$DIR/bootstrap-peers.txt"
"$BIN" genesis --validators "$DIR/validators.txt" --out "$DIR/genesis.json" --chain-id bench-sync \
    --epoch-length 1000 --balance "$(id 0)=1000000000000" --force >/dev/null
start() { "$BIN" --data-dir "$DIR/node$1" --config "$DIR/node$1/config.toml" >>"$DIR/node$1/node.log" 2>&1 & PIDS+=($!); }
status() { "$BIN" admin --data-dir "$DIR/node$1" getstatus 2>/dev/null || echo '{}'; }
field() { python3 -c "import json,sys;d=json.loads(sys.stdin.read() or '{}');print(d.get(sys.argv[1],0))" "$1"; }
for i in 0 1 2 3; do start $i; done
sleep 3
echo "==> building a chain of $ACCOUNTS accounts ($RATE transfers/s to new accounts)"
"$BIN" load --data-dir "$DIR/node0" --rate "$RATE" --duration "$(python3 -c "print(max(1, $ACCOUNTS / $RATE))")" \
    --new-accounts | tail -4 | sed 's/^/    /'
# Past the next snapshot (every 100 blocks) and a tail of blocks after it.
h=$(status 0 | field committed_height)
target=$(( (h / 100 + 1) * 100 + 30 ))
echo "    height $h, $(status 0 | field state_keys) keys in the state; waiting for height $target"
while [ "$(status 0 | field committed_height)" -lt "$target" ]; do sleep 1; done
echo "==> two new nodes start now: node4 by snapshot, node5 by block replay"
goal=$(status 0 | field committed_height)
start 4
start 5
# Poll both admin sockets directly (0.1 s resolution) until each reaches the goal.
python3 - "$DIR" "$goal" <<'PY'
import json, socket, sys, time
root, goal = sys.argv[1], int(sys.argv[2])
def height(i):
    try:
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(2)
        s.connect(f"{root}/node{i}/admin.sock")
        s.sendall(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "getstatus", "params": {}}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return json.loads(data)["result"]["committed_height"]
    except Exception:
        return 0
t0 = time.time()
done = {}
while len(done) < 2 and time.time() - t0 < 900:
    for i in (4, 5):
        if i not in done and height(i) >= goal:
            done[i] = time.time() - t0
    time.sleep(0.1)
if len(done) < 2:
    sys.exit("timed out")
print(f"    height {goal} reached: by snapshot in {done[4]:.1f} s, by block replay in {done[5]:.1f} s "
      f"(replay / snapshot = {done[5] / done[4]:.1f}×)")
PY
grep -h "snapshot installed" "$DIR/node4/node.log" | tail -1 | sed 's/^/    node4: /'
common=$(( $(status 4 | field committed_height) < $(status 5 | field committed_height) ? $(status 4 | field committed_height) : $(status 5 | field committed_height) ))
echo "==> state root at height $common"
for i in 0 1 2 3 4 5; do
    printf '    node%d %s\n' "$i" "$("$BIN" admin --data-dir "$DIR/node$i" getblock "{\"height\": $common}" | field state_id)"
done
roots=$(for i in 0 1 2 3 4 5; do "$BIN" admin --data-dir "$DIR/node$i" getblock "{\"height\": $common}" | field state_id; done | sort -u | wc -l)
[ "$roots" = 1 ] && echo "    all equal" || { echo "    ROOTS DIFFER" >&2; exit 1; }
