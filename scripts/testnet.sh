#!/usr/bin/env bash
# Runs a local SideNode testnet on 127.0.0.1: builds p2pnode once (release), creates
# N node directories with keys and configs, starts every node with a bootstrap file
# that lists only node0 (the rest is found by peer exchange), shows a live status
# line per node, and stops everything cleanly on Ctrl-C, SIGTERM or after --duration.
# The first M nodes are validators (default: all); the others are full nodes that
# follow and verify the chain without voting. Epochs end every --epoch-length blocks
# (default 300, about a minute or two on an idle chain) and at validator-set changes.
# A local Bitcoin regtest chain (tools/regtest/regtest.py: every block validated by
# Bitcoin Core's engine) runs beside them, its esplora API on base port + 2000; the
# validators checkpoint their certified state into it every --checkpoint-interval
# blocks (default 40) and at every epoch's end. Each run starts a new side chain and a
# new regtest chain (keys and peers are kept), unless --resume.
#
#   scripts/testnet.sh [--nodes N] [--validators M] [--epoch-length BLOCKS] [--dir DIR]
#                      [--duration SECONDS] [--base-port PORT] [--checkpoint-interval BLOCKS]
#                      [--resume] [--relays] [--restart-dead]
#
# --resume        restart the side chain and the regtest chain kept in DIR: no new genesis,
#                 the nodes' stores and the checkpoint coin as they were (refused when DIR
#                 holds no testnet, or --nodes/--validators differ from the recorded ones;
#                 the recorded values and the relay mode are used when not given)
# --relays        every peer connection passes through a userspace TCP relay
#                 (tools/netem/relay.py): node i dials from 127.0.0.(10+i) and is reached at
#                 127.0.0.(10+i):(PORT+i), so scripts can cut, delay or break links:
#                 tools/netem/relay.py ctl DIR/netem.sock partition 0 / 1,2,3 (see its --help)
# --restart-dead  restart a node that exits (after 2 s, doubling to 30 s while it keeps
#                 dying within 30 s; its output appended to DIR/nodeI/node.log). Without it
#                 an exited node is reported once and shown as down; the rest run on.
# A node's exit never stops the testnet; the regtest chain's (or the relay's) does.
#
# Environment: SIDENODE_SKIP_BUILD=1 skips `swift build` when .build/release/p2pnode
# exists; SIDENODE_BIN=PATH runs that binary (no build); TESTNET_TOLERATE_NODE_EXITS=1
# (a script that kills and restarts nodes itself) notes exits in one line and never
# restarts (no --restart-dead).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)

NODES=4
DIR="$ROOT/testnet"
DURATION=0
BASE_PORT=26656
EPOCH_LENGTH=300
CHECKPOINT_INTERVAL=40
RESUME=0
RELAYS=0
RESTART_DEAD=0
GIVEN=" "
usage() {
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
    exit "${1:-0}"
}
while [ $# -gt 0 ]; do
    case "$1" in
        --nodes) NODES=${2:?--nodes needs a number}; GIVEN+="nodes "; shift 2 ;;
        --validators) VALIDATORS=${2:?--validators needs a number}; GIVEN+="validators "; shift 2 ;;
        --epoch-length) EPOCH_LENGTH=${2:?--epoch-length needs a number of blocks}; GIVEN+="epoch-length "; shift 2 ;;
        --dir) DIR=${2:?--dir needs a path}; shift 2 ;;
        --duration) DURATION=${2:?--duration needs seconds}; shift 2 ;;
        --base-port) BASE_PORT=${2:?--base-port needs a port}; GIVEN+="base-port "; shift 2 ;;
        --checkpoint-interval) CHECKPOINT_INTERVAL=${2:?--checkpoint-interval needs a number of blocks}; GIVEN+="checkpoint-interval "; shift 2 ;;
        --resume) RESUME=1; shift ;;
        --relays) RELAYS=1; GIVEN+="relays "; shift ;;
        --restart-dead) RESTART_DEAD=1; shift ;;
        -h|--help) usage 0 ;;
        *) echo "unknown option: $1" >&2; usage 2 ;;
    esac
done
given() { [[ "$GIVEN" == *" $1 "* ]]; }
[ "${TESTNET_TOLERATE_NODE_EXITS:-0}" = 1 ] && RESTART_DEAD=0

if [ "$RESUME" = 1 ] && [ ! -d "$DIR" ]; then
    echo "--resume: $DIR does not exist: start a testnet there without --resume" >&2
    exit 2
fi
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
# What a run records for --resume.
RECORD="$DIR/testnet.json"
if [ "$RESUME" = 1 ]; then
    [ -f "$DIR/genesis.json" ] && [ -f "$RECORD" ] || {
        echo "--resume: $DIR holds no previous testnet (no genesis.json or testnet.json): start one without --resume" >&2
        exit 2
    }
    [ -f "$DIR/regtest/blocks.hex" ] || {
        echo "--resume: the regtest chain of the testnet in $DIR was not kept (DIR/regtest/blocks.hex): start a new one without --resume" >&2
        exit 2
    }
    read -r rec_nodes rec_validators rec_port rec_relays < <(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
print(r["nodes"], r["validators"], r["base_port"], int(r.get("relays", False)))' "$RECORD")
    if given nodes && [ "$NODES" != "$rec_nodes" ]; then
        echo "--resume: the testnet in $DIR has $rec_nodes nodes, not $NODES (--nodes)" >&2; exit 2
    fi
    if given validators && [ "$VALIDATORS" != "$rec_validators" ]; then
        echo "--resume: the testnet in $DIR has $rec_validators validators, not $VALIDATORS (--validators)" >&2; exit 2
    fi
    for opt in epoch-length checkpoint-interval; do
        given "$opt" && echo "--resume: --$opt is ignored (the genesis in $DIR fixes it)" >&2
    done
    NODES=$rec_nodes
    VALIDATORS=$rec_validators
    given base-port || BASE_PORT=$rec_port
    given relays || RELAYS=$rec_relays
fi
[[ "$NODES" =~ ^[0-9]+$ ]] && [ "$NODES" -ge 1 ] && [ "$NODES" -le 64 ] || { echo "--nodes must be 1…64" >&2; exit 2; }
VALIDATORS=${VALIDATORS:-$NODES}
[[ "$VALIDATORS" =~ ^[0-9]+$ ]] && [ "$VALIDATORS" -ge 1 ] && [ "$VALIDATORS" -le "$NODES" ] ||
    { echo "--validators must be 1…--nodes" >&2; exit 2; }
[[ "$DURATION" =~ ^[0-9]+$ ]] || { echo "--duration must be whole seconds" >&2; exit 2; }
[[ "$EPOCH_LENGTH" =~ ^[0-9]+$ ]] && [ "$EPOCH_LENGTH" -ge 1 ] || { echo "--epoch-length must be a positive number" >&2; exit 2; }
[[ "$CHECKPOINT_INTERVAL" =~ ^[0-9]+$ ]] && [ "$CHECKPOINT_INTERVAL" -ge 1 ] ||
    { echo "--checkpoint-interval must be a positive number" >&2; exit 2; }
[[ "$BASE_PORT" =~ ^[0-9]+$ ]] && [ $((BASE_PORT + 2000)) -le 65535 ] || { echo "--base-port out of range" >&2; exit 2; }

cd "$ROOT"
. scripts/lib/deps.sh
ensure_system_packages
ensure_python_venv || exit 1
REGTEST_PORT=$((BASE_PORT + 2000))
ESPLORA="http://127.0.0.1:$REGTEST_PORT"

if [ -n "${SIDENODE_BIN:-}" ]; then
    BIN=$(cd "$(dirname "$SIDENODE_BIN")" && pwd)/$(basename "$SIDENODE_BIN")
    [ -x "$BIN" ] || { echo "SIDENODE_BIN=$SIDENODE_BIN is not an executable" >&2; exit 1; }
    echo "==> using $BIN (SIDENODE_BIN: not building)"
elif [ "${SIDENODE_SKIP_BUILD:-0}" = 1 ] && [ -x "$ROOT/.build/release/p2pnode" ]; then
    BIN="$ROOT/.build/release/p2pnode"
    echo "==> using $BIN as built (SIDENODE_SKIP_BUILD=1)"
else
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
fi
if [ "$RELAYS" = 1 ] && ! grep -q outbound_address "$BIN"; then
    echo "--relays: $BIN does not know [gossip] outbound_address yet (rebuild it)" >&2
    exit 1
fi
if [ -S "$DIR/node0/admin.sock" ] && "$BIN" admin --data-dir "$DIR/node0" getinfo >/dev/null 2>&1; then
    echo "a testnet is already running in $DIR (node0 answers on its admin socket)" >&2
    exit 1
fi

# Every port this testnet listens on must be free (another testnet, or a test, may hold it).
python3 - "$BASE_PORT" "$NODES" "$RELAYS" <<'PY' || exit 1
import socket, sys
base, nodes, relays = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
wanted = [("127.0.0.1", base + i, "node %d" % i) for i in range(nodes)]
wanted += [("127.0.0.1", base + 1000 + i, "node %d's metrics" % i) for i in range(nodes)]
wanted += [("127.0.0.1", base + 2000, "the regtest chain")]
wanted += [("127.0.0.%d" % (10 + i), base + i, "node %d's relay" % i) for i in range(nodes) if relays]
busy = []
for host, port, what in wanted:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            busy.append(f"{host}:{port} ({what})")
if busy:
    sys.exit("ports in use: " + ", ".join(busy) + "; choose another --base-port")
PY

# Node i's address as its peers see it: itself, or its relay (--relays).
node_host() { if [ "$RELAYS" = 1 ]; then echo "127.0.0.$((10 + $1))"; else echo 127.0.0.1; fi; }

echo "==> preparing $NODES nodes ($VALIDATORS validators) in $DIR$([ "$RELAYS" = 1 ] && echo ", links through relays")"
for i in $(seq 0 $((NODES - 1))); do
    node="$DIR/node$i"
    if [ ! -f "$node/node_key.json" ]; then
        "$BIN" init "node$i" --data-dir "$node" >/dev/null
    fi
    outbound=""
    if [ "$RELAYS" = 1 ]; then
        outbound="# Outbound connections leave from this node's own loopback address, so that the
# relay (tools/netem/relay.py) on the accepting side knows which link it carries.
outbound_address = \"$(node_host "$i")\""
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
$outbound

[bitcoin]
# The local regtest chain's esplora API (tools/regtest/regtest.py).
network = "regtest"
esplora = "$ESPLORA"
poll_interval = 1
TOML
    # TESTNET_KEEP_BLOCKS=N (scripts/soak.sh --keep-blocks): block pruning, docs/configuration.md.
    if [ -n "${TESTNET_KEEP_BLOCKS:-}" ]; then
        printf '\n[state]\nkeep_blocks = %s\n' "$TESTNET_KEEP_BLOCKS" >>"$node/config.toml"
    fi
done
node0_id=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['public_key'])" "$DIR/node0/node_key.json")
printf '# node0 only: the other nodes are found by peer exchange\n%s@%s:%d\n' "$node0_id" "$(node_host 0)" "$BASE_PORT" \
    >"$DIR/bootstrap-peers.txt"

PIDS=()        # per node: the wrapper that waits for the node this script started ("" once down)
NODE_PIDS=()   # per node: the node's own process (also in DIR/nodeI/node.pid)
STARTED=()     # per node: when it was started (s)
LOG_OFFSET=()  # per node: node.log's size when it was started
RESTART_AT=()  # per node: when to restart it (--restart-dead), else ""
BACKOFF=()     # per node: the next restart delay (s)
RESTARTS=()    # per node: restarts so far
DOWN=()        # per node: why it is down, for the status
REGTEST_PID=""  # the regtest chain's process; REGTEST_WRAPPER waits for it
RELAY_PID=""    # the relay's (--relays); RELAY_WRAPPER waits for it
REGTEST_WRAPPER=""
RELAY_WRAPPER=""

# Starts CMD… in the background behind a wrapper that waits for it and writes its exit
# status to EXITFILE (bash would otherwise print "Killed" job lines of its own at odd
# places); the process's own pid goes to PIDFILE and into SPAWNED_PID, the wrapper's into
# SPAWNED. Output is appended to LOG.
spawn() {
    local pidfile=$1 exitfile=$2 log=$3
    shift 3
    rm -f "$pidfile" "$exitfile"
    (
        "$@" >>"$log" 2>&1 &
        echo $! >"$pidfile"
        status=0
        wait $! || status=$?
        echo "$status" >"$exitfile"
    ) 2>/dev/null &
    SPAWNED=$!
    for _ in $(seq 1 200); do [ -s "$pidfile" ] && break; sleep 0.01; done
    SPAWNED_PID=$(cat "$pidfile" 2>/dev/null || echo "?")
}
stop_all() {
    trap - INT TERM
    echo
    echo "==> stopping $NODES nodes, the regtest chain$([ -n "$RELAY_PID" ] && echo " and the relay")"
    # Each node's process is in its node.pid: this script's, or one that another script
    # restarted (scripts/chaos.sh writes node.pid too).
    local nodes=() i pid
    for i in $(seq 0 $((NODES - 1))); do
        pid=$(cat "$DIR/node$i/node.pid" 2>/dev/null || true)
        if [ -n "$pid" ] && { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -q -- "--data-dir $DIR/node$i "; then
            kill -TERM "$pid" 2>/dev/null && nodes+=("$pid")
        fi
    done
    for pid in "${PIDS[@]}"; do [ -n "$pid" ] && wait "$pid" 2>/dev/null || true; done
    for pid in "${nodes[@]}"; do
        for _ in $(seq 1 300); do  # gone, or a zombie its parent has yet to reap
            [ -d "/proc/$pid" ] && [ "$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null)" != Z ] || break
            sleep 0.1
        done
    done
    [ -n "$RELAY_PID" ] && { kill -TERM "$RELAY_PID" 2>/dev/null; wait "$RELAY_WRAPPER" 2>/dev/null || true; }
    [ -n "$REGTEST_PID" ] && { kill -TERM "$REGTEST_PID" 2>/dev/null; wait "$REGTEST_WRAPPER" 2>/dev/null || true; }
    echo "    stopped; data and logs are in $DIR$([ -f "$RECORD" ] && echo " (scripts/testnet.sh --dir $DIR --resume continues it)")"
}
trap 'stop_all; exit 0' INT TERM

if [ "$RELAYS" = 1 ]; then
    echo "==> starting the link relay (tools/netem/relay.py): node i at 127.0.0.(10+i):$BASE_PORT+i; control $DIR/netem.sock"
    rm -f "$DIR/netem.sock"
    spawn "$DIR/netem.pid" "$DIR/netem.exit" "$DIR/netem.log" \
        python3 tools/netem/relay.py serve --dir "$DIR" --nodes "$NODES" --base-port "$BASE_PORT"
    RELAY_PID=$SPAWNED_PID
    RELAY_WRAPPER=$SPAWNED
    for _ in $(seq 1 50); do
        [ -S "$DIR/netem.sock" ] && break
        kill -0 "$RELAY_PID" 2>/dev/null || { echo "the relay did not start:" >&2; tail -5 "$DIR/netem.log" >&2; exit 1; }
        sleep 0.1
    done
fi

mkdir -p "$DIR/regtest"
if [ "$RESUME" = 1 ]; then
    echo "==> resuming the Bitcoin regtest chain kept in $DIR/regtest (every block validated again by Bitcoin Core) on $ESPLORA"
    REGTEST_ARGS=(--resume)
else
    echo "==> starting the Bitcoin regtest chain (blocks validated by Bitcoin Core) on $ESPLORA"
    REGTEST_ARGS=()
fi
spawn "$DIR/regtest.pid" "$DIR/regtest.exit" "$DIR/regtest.log" \
    .venv/bin/python tools/regtest/regtest.py --port "$REGTEST_PORT" --datadir "$DIR/regtest" "${REGTEST_ARGS[@]}"
REGTEST_PID=$SPAWNED_PID
REGTEST_WRAPPER=$SPAWNED
for _ in $(seq 1 300); do
    .venv/bin/python -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)" \
        "$ESPLORA/blocks/tip/height" >/dev/null 2>&1 && break
    kill -0 "$REGTEST_PID" 2>/dev/null || { echo "the regtest chain did not start:" >&2; tail -5 "$DIR/regtest.log" >&2; stop_all; exit 1; }
    sleep 0.2
done

BTC=(--network regtest --esplora "$ESPLORA")
if [ "$RESUME" = 1 ]; then
    echo "==> resuming the side chain of $DIR/genesis.json ($(grep -c . "$DIR/regtest/blocks.hex") regtest blocks kept)"
else
    # A new side chain: its genesis names a checkpoint coin on this (new) regtest chain.
    echo "==> new chain: genesis for $VALIDATORS validators, epochs of $EPOCH_LENGTH blocks, a checkpoint every $CHECKPOINT_INTERVAL"
    # Nodes 0…M-1 are validators; node0's account is funded for demo transfers.
    : >"$DIR/validators.txt"
    for i in $(seq 0 $((VALIDATORS - 1))); do
        python3 - "$DIR/node$i" >>"$DIR/validators.txt" <<'PY'
import json, sys
d = sys.argv[1]
print(json.load(open(f"{d}/node_key.json"))["public_key"], json.load(open(f"{d}/bitcoin_key.json"))["xonly_public_key"])
PY
    done
    rm -f "$RECORD" "$DIR"/node*/consensus.sqlite* "$DIR"/node*/ledger.sqlite* "$DIR"/node*/checkpoints.json \
        "$DIR"/node*/banlist.json "$DIR"/node*/checkpoint-fee-rate.json
    "$BIN" genesis --validators "$DIR/validators.txt" --out "$DIR/genesis.json" --chain-id sidenode-testnet \
        --epoch-length "$EPOCH_LENGTH" --balance "$node0_id=1000000000" --checkpoint-interval "$CHECKPOINT_INTERVAL" \
        --checkpoint-timeout 15 --force >/dev/null
    node0_btc=$("$BIN" btc address "$DIR/node0" "${BTC[@]}" | head -1)
    .venv/bin/python - "$ESPLORA" "$node0_btc" <<'PY'
import json, sys, urllib.request
req = urllib.request.Request(sys.argv[1] + "/regtest/faucet", json.dumps({"address": sys.argv[2], "sats": 5_000_000}).encode())
print("    faucet → node0's Bitcoin wallet", sys.argv[2], "txid", json.load(urllib.request.urlopen(req, timeout=30))["txid"])
PY
    echo "==> funding the checkpoint coin (epoch 1's 2/3+ multisig) from node0's wallet"
    "$BIN" checkpoint fund --genesis "$DIR/genesis.json" --from "$DIR/node0" --amount 2000000 --write --wait "${BTC[@]}" |
        sed 's/^/    /'
    python3 - "$RECORD" "$NODES" "$VALIDATORS" "$BASE_PORT" "$RELAYS" <<'PY'
import json, sys, time
path, nodes, validators, port, relays = sys.argv[1:]
json.dump({"nodes": int(nodes), "validators": int(validators), "base_port": int(port), "relays": relays == "1",
           "created": int(time.time())}, open(path, "w"), indent=1)
PY
fi

start_node() {
    local i=$1 log="$DIR/node$1/node.log" pidfile="$DIR/node$1/node.pid"
    LOG_OFFSET[$i]=$(stat -c %s "$log" 2>/dev/null || echo 0)
    # `run` is the default subcommand. node.pid is the node's own process (scripts/chaos.sh
    # kills it, restarts the node and writes its own there); node.exit its exit status.
    spawn "$pidfile" "$DIR/node$i/node.exit" "$log" "$BIN" --data-dir "$DIR/node$i" --config "$DIR/node$i/config.toml"
    PIDS[$i]=$SPAWNED
    NODE_PIDS[$i]=$SPAWNED_PID
    STARTED[$i]=$(date +%s)
    RESTART_AT[$i]=""
    DOWN[$i]=""
}

# A finished process's exit status in words.
describe_exit() {
    local status=$1
    if ! [[ "$status" =~ ^[0-9]+$ ]]; then
        echo "ended (exit status unknown)"
    elif [ "$status" -gt 128 ]; then
        echo "killed by SIG$(kill -l $((status - 128)) 2>/dev/null || echo $((status - 128))) (status $status)"
    else
        echo "exited with status $status"
    fi
}

# Reports (and with --restart-dead schedules the restart of) nodes whose process ended.
check_nodes() {
    local i pid status now lines
    now=$(date +%s)
    for i in $(seq 0 $((NODES - 1))); do
        pid=${PIDS[$i]}
        if [ -z "$pid" ]; then
            if [ -n "${RESTART_AT[$i]}" ] && [ "$now" -ge "${RESTART_AT[$i]}" ]; then
                RESTARTS[$i]=$(( ${RESTARTS[$i]:-0} + 1 ))
                start_node "$i"
                echo "==> node$i restarted (restart ${RESTARTS[$i]}, pid ${NODE_PIDS[$i]}; output appended to $DIR/node$i/node.log)" >&2
                shown=0
            fi
            continue
        fi
        kill -0 "$pid" 2>/dev/null && continue
        wait "$pid" 2>/dev/null || true
        status=$(cat "$DIR/node$i/node.exit" 2>/dev/null || echo "?")
        pid=${NODE_PIDS[$i]}
        PIDS[$i]=""
        DOWN[$i]="$(describe_exit "$status") after $(( now - STARTED[$i] )) s"
        shown=0  # keep what follows on screen: the next status block goes below it
        if [ "${TESTNET_TOLERATE_NODE_EXITS:-0}" = 1 ]; then
            echo "==> node$i (pid $pid) ${DOWN[$i]} (TESTNET_TOLERATE_NODE_EXITS: left to the script that stopped it)" >&2
            continue
        fi
        echo "==> node$i (pid $pid) ${DOWN[$i]}; the rest run on. Its last log lines ($DIR/node$i/node.log):" >&2
        lines=$(tail -c +$(( ${LOG_OFFSET[$i]} + 1 )) "$DIR/node$i/node.log" 2>/dev/null | tail -n 15)
        if [ -n "$lines" ]; then
            printf '%s\n' "$lines" | sed 's/^/    | /' >&2
        else
            echo "    (nothing written since it started$([[ "$status" =~ ^[0-9]+$ ]] && [ "$status" -gt 128 ] && echo ": a killed process prints nothing"))" >&2
        fi
        if [ "$RESTART_DEAD" = 1 ]; then
            # Back off while it keeps dying young: 2 s, doubling to 30 s; reset once it lives 30 s.
            if [ $(( now - STARTED[$i] )) -ge 30 ]; then BACKOFF[$i]=2; fi
            RESTART_AT[$i]=$(( now + ${BACKOFF[$i]:-2} ))
            echo "    restarting it in ${BACKOFF[$i]:-2} s (--restart-dead)" >&2
            BACKOFF[$i]=$(( ${BACKOFF[$i]:-2} * 2 > 30 ? 30 : ${BACKOFF[$i]:-2} * 2 ))
        fi
    done
}

echo "==> starting nodes on 127.0.0.1:$BASE_PORT…$((BASE_PORT + NODES - 1))"
for i in $(seq 0 $((NODES - 1))); do
    BACKOFF[$i]=2
    RESTARTS[$i]=0
    start_node "$i"
done

status() {
    local down_file="$DIR/.status-down"
    : >"$down_file"
    for i in $(seq 0 $((NODES - 1))); do
        [ -n "${DOWN[$i]}" ] && printf '%s\t%s%s\n' "$i" "${DOWN[$i]}" \
            "$([ -n "${RESTART_AT[$i]}" ] && echo "; restarting in $(( RESTART_AT[$i] - $(date +%s) )) s")" >>"$down_file"
    done
    python3 - "$BIN" "$DIR" "$NODES" "$interval" "$ESPLORA" "$down_file" "$RELAYS" <<'PY'
import json, os, socket, subprocess, sys, urllib.request
binary, root, count, interval, esplora, down_file, relays = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5], sys.argv[6], sys.argv[7] == "1"
down = dict(line.rstrip("\n").split("\t", 1) for line in open(down_file) if "\t" in line)
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
    info = call(i, "getinfo")
    if not info:
        if str(i) in down:
            print(f"node{i}  DOWN: {down[str(i)]}; see {root}/node{i}/node.log")
        else:
            print(f"node{i}  (starting, or not answering; see {root}/node{i}/node.log)")
        continue
    totals, gossip = call(i, "getnettotals") or {"total_bytes_sent": 0, "total_bytes_recv": 0}, call(i, "getgossipinfo")
    mempool = call(i, "getmempool") or {"count": 0, "digest": "?"}
    status = call(i, "getstatus") or {"committed_height": 0, "round": 0, "commit_state_id": "?"}
    committed = status.get("committed_transactions", 0)
    current[str(i)] = committed
    rate = max(0, committed - previous.get(str(i), committed)) / interval
    role = "val " if status.get("validator", True) else "full"
    sync = f"sync→{status.get('sync_target', 0)}" if status.get("syncing") else ""
    note = "  (started by another script)" if str(i) in down else ""
    print(f"node{i} {role} {info['listen']:<16} id {info['node_id'][:12]}…  peers {info['connections']:>2}  "
          f"epoch {status.get('epoch', 0):>3}  height {status['committed_height']:>6}{sync:>11}  round {status['round']:>6}  "
          f"state {status['commit_state_id'][:8]}  txs {mempool['count']:>6}  {rate:7.1f} tx/s  "
          f"sent {size(totals['total_bytes_sent']):>9}  recv {size(totals['total_bytes_recv']):>9}{note}")
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
if relays:
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(3)
            s.connect(f"{root}/netem.sock")
            s.sendall(b'{"cmd": "status"}\n')
            r = json.loads(s.makefile().readline())
        d = r["default"]
        rules = [f"delay {d['delay_ms']:g}±{d['jitter_ms']:g} ms" if d["delay_ms"] or d["jitter_ms"] else "",
                 f"rate {d['rate']:g} B/s" if d["rate"] else "", f"loss {d['loss']:g}" if d["loss"] else "",
                 f"resets {d['reset']:g}/s" if d["reset"] else "", f"{len(r['links'])} link rules" if r["links"] else ""]
        cut = ", ".join(f"{a}-{b}" for a, b in r["cut"]) or "none"
        print(f"relay            {len(r['connections'])} connections; cut links: {cut}; "
              + (", ".join(x for x in rules if x) or "no delay or loss"))
    except Exception as e:
        print(f"relay            not answering ({e}); see {root}/netem.log")
PY
}

echo "==> running; Ctrl-C stops$([ "$DURATION" -gt 0 ] && echo ", or after $DURATION s")."
echo "    inspect: $BIN status --data-dir $DIR/node0; metrics: http://127.0.0.1:$((BASE_PORT + 1000))/metrics"
echo "    checkpoints: $BIN admin --data-dir $DIR/node0 getcheckpoints;"
echo "                 $BIN checkpoint verify --genesis $DIR/genesis.json --network regtest --esplora $ESPLORA"
echo "    contracts: scripts/contracts-demo.sh --dir $DIR --nodes $NODES (CW20 stored, transferred, checked at every node)"
echo "    bitcoin: $BIN btc address $DIR/node0 --network regtest --esplora $ESPLORA;"
echo "             curl -d '{\"address\":\"ADDRESS\",\"sats\":100000}' $ESPLORA/regtest/faucet"
[ "$RELAYS" = 1 ] && echo "    links: python3 tools/netem/relay.py ctl $DIR/netem.sock status | partition 0 / 1,2,3 | heal | delay MS [JITTER]"
started=$(date +%s)
interval=2
[ -t 1 ] || interval=5
shown=0
while true; do
    sleep "$interval"
    for name in regtest relay; do
        pid=$([ "$name" = regtest ] && echo "$REGTEST_PID" || echo "$RELAY_PID")
        wrapper=$([ "$name" = regtest ] && echo "$REGTEST_WRAPPER" || echo "$RELAY_WRAPPER")
        [ -n "$pid" ] || continue
        if ! kill -0 "$wrapper" 2>/dev/null; then
            wait "$wrapper" 2>/dev/null || true
            file=$([ "$name" = regtest ] && echo regtest || echo netem)
            status=$(cat "$DIR/$file.exit" 2>/dev/null || echo "?")
            logfile="$DIR/$file.log"
            echo "the $name process (pid $pid) $(describe_exit "$status"): stopping the testnet. Last lines of $logfile:" >&2
            tail -n 15 "$logfile" | sed 's/^/    | /' >&2
            [ "$name" = regtest ] && REGTEST_PID="" || RELAY_PID=""
            stop_all
            exit 1
        fi
    done
    check_nodes
    elapsed=$(( $(date +%s) - started ))
    # On a terminal, redraw the status block in place (unless a message was printed since).
    if [ -t 1 ] && [ "$shown" = 1 ]; then printf '\033[%dA\033[J' $((NODES + 3 + RELAYS)); fi
    shown=1
    echo "--- ${elapsed}s"
    status
    if [ "$DURATION" -gt 0 ] && [ "$elapsed" -ge "$DURATION" ]; then
        stop_all
        exit 0
    fi
done
