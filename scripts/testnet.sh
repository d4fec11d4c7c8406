#!/usr/bin/env bash
# Runs a local SideNode testnet on 127.0.0.1: builds p2pnode once (release), creates
# N node directories with keys and configs, starts every node with a bootstrap file
# that lists only node0 (the rest is found by peer exchange), shows a live status
# line per node, and stops everything cleanly on Ctrl-C or after --duration.
# The first M nodes are validators (default: all); the others are full nodes that
# follow and verify the chain without voting. Epochs end every --epoch-length blocks
# (default 300, about a minute or two on an idle chain) and at validator-set changes.
# A local Bitcoin regtest chain (tools/regtest/regtest.py: every block validated by
# Bitcoin Core's engine) runs beside them, its esplora API on base port + 2000; the
# validators checkpoint their certified state into it every --checkpoint-interval
# blocks (default 40) and at every epoch's end. The regtest chain starts afresh on
# each run, so each run starts a new side chain too (keys and peers are kept).
#
#   scripts/testnet.sh [--nodes N] [--validators M] [--epoch-length BLOCKS] [--dir DIR]
#                      [--duration SECONDS] [--base-port PORT] [--checkpoint-interval BLOCKS]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)

NODES=4
DIR="$ROOT/testnet"
DURATION=0
BASE_PORT=26656
EPOCH_LENGTH=300
CHECKPOINT_INTERVAL=40
usage() {
    sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}
while [ $# -gt 0 ]; do
    case "$1" in
        --nodes) NODES=${2:?--nodes needs a number}; shift 2 ;;
        --validators) VALIDATORS=${2:?--validators needs a number}; shift 2 ;;
        --epoch-length) EPOCH_LENGTH=${2:?--epoch-length needs a number of blocks}; shift 2 ;;
        --dir) DIR=${2:?--dir needs a path}; shift 2 ;;
        --duration) DURATION=${2:?--duration needs seconds}; shift 2 ;;
        --base-port) BASE_PORT=${2:?--base-port needs a port}; shift 2 ;;
        --checkpoint-interval) CHECKPOINT_INTERVAL=${2:?--checkpoint-interval needs a number of blocks}; shift 2 ;;
        -h|--help) usage 0 ;;
        *) echo "unknown option: $1" >&2; usage 2 ;;
    esac
done
[[ "$NODES" =~ ^[0-9]+$ ]] && [ "$NODES" -ge 1 ] && [ "$NODES" -le 64 ] || { echo "--nodes must be 1…64" >&2; exit 2; }
VALIDATORS=${VALIDATORS:-$NODES}
[[ "$VALIDATORS" =~ ^[0-9]+$ ]] && [ "$VALIDATORS" -ge 1 ] && [ "$VALIDATORS" -le "$NODES" ] ||
    { echo "--validators must be 1…--nodes" >&2; exit 2; }
[[ "$DURATION" =~ ^[0-9]+$ ]] || { echo "--duration must be whole seconds" >&2; exit 2; }
[[ "$EPOCH_LENGTH" =~ ^[0-9]+$ ]] && [ "$EPOCH_LENGTH" -ge 1 ] || { echo "--epoch-length must be a positive number" >&2; exit 2; }
[[ "$CHECKPOINT_INTERVAL" =~ ^[0-9]+$ ]] && [ "$CHECKPOINT_INTERVAL" -ge 1 ] ||
    { echo "--checkpoint-interval must be a positive number" >&2; exit 2; }
[[ "$BASE_PORT" =~ ^[0-9]+$ ]] && [ $((BASE_PORT + NODES)) -le 65535 ] || { echo "--base-port out of range" >&2; exit 2; }

cd "$ROOT"
. scripts/lib/deps.sh
ensure_system_packages
ensure_python_venv || exit 1
REGTEST_PORT=$((BASE_PORT + 2000))
ESPLORA="http://127.0.0.1:$REGTEST_PORT"

echo "==> building p2pnode (release; the first build takes a few minutes)"
mkdir -p .build
start_build=$(date +%s)
if ! swift build -c release --product p2pnode >.build/release-build.log 2>&1; then
    tail -30 .build/release-build.log >&2
    echo "build failed; full log in .build/release-build.log" >&2
    exit 1
fi
echo "    built in $(( $(date +%s) - start_build )) s"
BIN="$ROOT/.build/release/p2pnode"

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
echo "==> preparing $NODES nodes ($VALIDATORS validators) in $DIR"
for i in $(seq 0 $((NODES - 1))); do
    node="$DIR/node$i"
    if [ ! -f "$node/node_key.json" ]; then
        "$BIN" init "node$i" --data-dir "$node" >/dev/null
    fi
    cat >"$node/config.toml" <<TOML
# Written by scripts/testnet.sh; see docs/configuration.md.
chain_id = "sidenode-testnet"
listen = "127.0.0.1:$((BASE_PORT + i))"
bootstrap = "$DIR/bootstrap-peers.txt"
genesis = "$DIR/genesis.json"
metrics_listen = "127.0.0.1:$((BASE_PORT + 1000 + i))"
log_level = "info"

[gossip]
# Every node is on 127.0.0.1, so per-IP limits must allow the whole testnet.
max_connections_per_ip = 64
max_pending_per_host = 64
# Loopback addresses are kept and shared (off on a public network).
allow_local_addresses = true
address_refresh_interval = 5

[bitcoin]
# The local regtest chain's esplora API (tools/regtest/regtest.py).
network = "regtest"
esplora = "$ESPLORA"
poll_interval = 1
TOML
done
# Nodes 0…M-1 are validators; node0's account is funded for demo transfers.
: >"$DIR/validators.txt"
for i in $(seq 0 $((VALIDATORS - 1))); do
    python3 - "$DIR/node$i" >>"$DIR/validators.txt" <<'PY'
import json, sys
d = sys.argv[1]
print(json.load(open(f"{d}/node_key.json"))["public_key"], json.load(open(f"{d}/bitcoin_key.json"))["xonly_public_key"])
PY
done
node0_id=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['public_key'])" "$DIR/node0/node_key.json")
printf '# node0 only: the other nodes are found by peer exchange\n%s@127.0.0.1:%d\n' "$node0_id" "$BASE_PORT" \
    >"$DIR/bootstrap-peers.txt"

PIDS=()
REGTEST_PID=""
stop_all() {
    trap - INT TERM
    echo
    echo "==> stopping $NODES nodes and the regtest chain"
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    [ -n "$REGTEST_PID" ] && { kill -TERM "$REGTEST_PID" 2>/dev/null; wait "$REGTEST_PID" 2>/dev/null || true; }
    echo "    stopped; data and logs are in $DIR"
}
trap 'stop_all; exit 0' INT TERM

echo "==> starting the Bitcoin regtest chain (blocks validated by Bitcoin Core) on $ESPLORA"
.venv/bin/python tools/regtest/regtest.py --port "$REGTEST_PORT" --datadir "$DIR/regtest" >"$DIR/regtest.log" 2>&1 &
REGTEST_PID=$!
for _ in $(seq 1 100); do
    .venv/bin/python -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)" \
        "$ESPLORA/blocks/tip/height" >/dev/null 2>&1 && break
    kill -0 "$REGTEST_PID" 2>/dev/null || { echo "the regtest chain did not start:" >&2; tail -5 "$DIR/regtest.log" >&2; exit 1; }
    sleep 0.2
done

# A new side chain: its genesis names a checkpoint coin on this (new) regtest chain.
echo "==> new chain: genesis for $VALIDATORS validators, epochs of $EPOCH_LENGTH blocks, a checkpoint every $CHECKPOINT_INTERVAL"
rm -f "$DIR"/node*/consensus.sqlite* "$DIR"/node*/ledger.sqlite* "$DIR"/node*/checkpoints.json "$DIR"/node*/banlist.json
"$BIN" genesis --validators "$DIR/validators.txt" --out "$DIR/genesis.json" --chain-id sidenode-testnet \
    --epoch-length "$EPOCH_LENGTH" --balance "$node0_id=1000000000" --checkpoint-interval "$CHECKPOINT_INTERVAL" \
    --checkpoint-timeout 15 --force >/dev/null
BTC=(--network regtest --esplora "$ESPLORA")
node0_btc=$("$BIN" btc address "$DIR/node0" "${BTC[@]}" | head -1)
.venv/bin/python - "$ESPLORA" "$node0_btc" <<'PY'
import json, sys, urllib.request
req = urllib.request.Request(sys.argv[1] + "/regtest/faucet", json.dumps({"address": sys.argv[2], "sats": 5_000_000}).encode())
print("    faucet → node0's Bitcoin wallet", sys.argv[2], "txid", json.load(urllib.request.urlopen(req, timeout=30))["txid"])
PY
echo "==> funding the checkpoint coin (epoch 1's 2/3+ multisig) from node0's wallet"
"$BIN" checkpoint fund --genesis "$DIR/genesis.json" --from "$DIR/node0" --amount 2000000 --write --wait "${BTC[@]}" |
    sed 's/^/    /'

echo "==> starting nodes on 127.0.0.1:$BASE_PORT…$((BASE_PORT + NODES - 1))"
for i in $(seq 0 $((NODES - 1))); do
    # `run` is the default subcommand.
    "$BIN" --data-dir "$DIR/node$i" --config "$DIR/node$i/config.toml" >>"$DIR/node$i/node.log" 2>&1 &
    PIDS+=($!)
done

status() {
    python3 - "$BIN" "$DIR" "$NODES" "$interval" "$ESPLORA" <<'PY'
import json, os, subprocess, sys, urllib.request
binary, root, count, interval, esplora = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
# Committed-transaction counts from the previous refresh, for tx/s.
memo = os.path.join(root, ".status-memo.json")
try:
    previous = json.load(open(memo))
except Exception:
    previous = {}
current = {}
def call(i, method):
    try:
        out = subprocess.run([binary, "admin", "--data-dir", f"{root}/node{i}", method],
                             capture_output=True, text=True, timeout=5)
        return json.loads(out.stdout) if out.returncode == 0 else None
    except Exception:
        return None
def size(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024: return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n:.1f}TiB"
for i in range(count):
    info, totals, gossip = call(i, "getinfo"), call(i, "getnettotals"), call(i, "getgossipinfo")
    mempool = call(i, "getmempool") or {"count": 0, "digest": "?"}
    status = call(i, "getstatus") or {"committed_height": 0, "round": 0, "commit_state_id": "?"}
    if not info:
        print(f"node{i}  (starting or down; see {root}/node{i}/node.log)")
        continue
    committed = status.get("committed_transactions", 0)
    current[str(i)] = committed
    rate = max(0, committed - previous.get(str(i), committed)) / interval
    role = "val " if status.get("validator", True) else "full"
    sync = f"sync→{status.get('sync_target', 0)}" if status.get("syncing") else ""
    print(f"node{i} {role} {info['listen']:<16} id {info['node_id'][:12]}…  peers {info['connections']:>2}  "
          f"epoch {status.get('epoch', 0):>3}  height {status['committed_height']:>6}{sync:>11}  round {status['round']:>6}  "
          f"state {status['commit_state_id'][:8]}  txs {mempool['count']:>6}  {rate:7.1f} tx/s  "
          f"sent {size(totals['total_bytes_sent']):>9}  recv {size(totals['total_bytes_recv']):>9}")
json.dump(current, open(memo, "w"))
try:
    height = urllib.request.urlopen(f"{esplora}/blocks/tip/height", timeout=3).read().decode()
    pending = len(json.load(urllib.request.urlopen(f"{esplora}/mempool/txids", timeout=3)))
    print(f"bitcoin regtest  height {height}  mempool {pending}  esplora {esplora}  (every block validated by Bitcoin Core)")
except Exception as e:
    print(f"bitcoin regtest  unreachable ({e}); see {root}/regtest.log")
cp = call(0, "getcheckpoints")
confirmed = [c for c in (cp or {}).get("checkpoints", []) if c["status"] == "confirmed"]
if confirmed:
    c = confirmed[-1]
    print(f"checkpoints      {len(confirmed)} confirmed; last epoch {c['epoch']} round {c['round']} "
          f"state {c['commit_state_id'][:8]} txid {c['txid'][:16]}… {c['confirmations']} conf, fee {c['fee']} sat")
else:
    print("checkpoints      none confirmed yet" + ("" if cp else " (node0 not answering)"))
PY
}

echo "==> running; Ctrl-C stops$([ "$DURATION" -gt 0 ] && echo ", or after $DURATION s")."
echo "    inspect: $BIN status --data-dir $DIR/node0; metrics: http://127.0.0.1:$((BASE_PORT + 1000))/metrics"
echo "    checkpoints: $BIN admin --data-dir $DIR/node0 getcheckpoints;"
echo "                 $BIN checkpoint verify --genesis $DIR/genesis.json --network regtest --esplora $ESPLORA"
echo "    contracts: scripts/contracts-demo.sh --dir $DIR --nodes $NODES (CW20 stored, transferred, checked at every node)"
echo "    bitcoin: $BIN btc address $DIR/node0 --network regtest --esplora $ESPLORA;"
echo "             curl -d '{\"address\":\"ADDRESS\",\"sats\":100000}' $ESPLORA/regtest/faucet"
started=$(date +%s)
interval=2
[ -t 1 ] || interval=5
while true; do
    sleep "$interval"
    for pid in "${PIDS[@]}" "$REGTEST_PID"; do
        # TESTNET_TOLERATE_NODE_EXITS=1 (scripts/chaos-restart.sh): another script kills
        # and restarts nodes on purpose; only the regtest chain's exit stops the testnet.
        if [ "${TESTNET_TOLERATE_NODE_EXITS:-0}" = 1 ] && [ "$pid" != "$REGTEST_PID" ]; then continue; fi
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "a node exited unexpectedly; last log lines:" >&2
            tail -n 5 "$DIR"/node*/node.log >&2
            stop_all
            exit 1
        fi
    done
    elapsed=$(( $(date +%s) - started ))
    # On a terminal, redraw the status block in place.
    if [ -t 1 ] && [ "${shown:-0}" = 1 ]; then printf '\033[%dA\033[J' $((NODES + 3)); fi
    shown=1
    echo "--- ${elapsed}s"
    status
    if [ "$DURATION" -gt 0 ] && [ "$elapsed" -ge "$DURATION" ]; then
        stop_all
        exit 0
    fi
done
