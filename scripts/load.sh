#!/usr/bin/env bash
# Submits signed transfers to a running local testnet (scripts/testnet.sh) from
# node0's funded account and reports committed tx/s, commit latency and the bound.
#   scripts/load.sh [--rate N] [--duration S] [--dir DIR]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR="$ROOT/testnet"
ARGS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --dir) DIR=$2; shift 2 ;;
        *) ARGS+=("$1"); shift ;;
    esac
done
NODES=$(ls -d "$DIR"/node* 2>/dev/null | wc -l)
[ "$NODES" -ge 1 ] || { echo "no testnet in $DIR: start scripts/testnet.sh first" >&2; exit 1; }
exec "$ROOT/.build/release/p2pnode" load --data-dir "$DIR/node0" --nodes "$NODES" "${ARGS[@]}"
