#!/usr/bin/env bash
# The example contracts on a running local testnet (scripts/testnet.sh in another
# terminal): builds them, stores the CW20 token through node0, instantiates it with
# node0's account holding the supply, transfers to a fresh account, then asks every
# node for the recipient's balance, the transfer's gas and the state root at one
# height — all must agree.
#
#   scripts/contracts-demo.sh [--dir DIR] [--nodes N]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR="$ROOT/testnet"
NODES=4
while [ $# -gt 0 ]; do
    case "$1" in
        --dir) DIR=${2:?--dir needs a path}; shift 2 ;;
        --nodes) NODES=${2:?--nodes needs a number}; shift 2 ;;
        -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
BIN="$ROOT/.build/release/p2pnode"
[ -x "$BIN" ] || { echo "no release build at $BIN: start the testnet with scripts/testnet.sh first" >&2; exit 1; }
[ -S "$DIR/node0/admin.sock" ] || { echo "no node running in $DIR/node0 (scripts/testnet.sh --dir $DIR)" >&2; exit 1; }
OUT="$ROOT/.build/contracts" "$ROOT/scripts/build-contracts.sh" >/dev/null
N0=(--data-dir "$DIR/node0")

echo "==> store cw20"
stored=$("$BIN" contract store "${N0[@]}" "$ROOT/.build/contracts/cw20.wasm" --gas 5000000)
echo "$stored" | sed 's/^/    /'
code_id=$(echo "$stored" | sed -n 's/^code_id: //p')
owner=$("$BIN" contract address "${N0[@]}" | head -1)
recipient=$("$BIN" contract address "$(python3 -c 'import os; print(os.urandom(32).hex())')" | head -1)

echo "==> instantiate (owner $owner)"
msg="{\"name\":\"Side Token\",\"symbol\":\"SIDE\",\"decimals\":6,\"initial_balances\":[{\"address\":\"$owner\",\"amount\":\"1000000\"}],\"mint\":null}"
inst=$("$BIN" contract instantiate "${N0[@]}" "$code_id" "$msg" --label side-token)
echo "$inst" | sed 's/^/    /'
token=$(echo "$inst" | sed -n 's/^contract_address: //p')

echo "==> transfer 2500 to $recipient"
transfer=$("$BIN" contract execute "${N0[@]}" "$token" "{\"transfer\":{\"recipient\":\"$recipient\",\"amount\":\"2500\"}}")
echo "$transfer" | sed 's/^/    /'
txid=$(echo "$transfer" | sed -n 's/^txid: //p')
height=$(echo "$transfer" | sed -n 's/^height: //p')
sleep 2

echo "==> every node: balance, the transfer's gas, the state root at height $height"
for i in $(seq 0 $((NODES - 1))); do
    d=(--data-dir "$DIR/node$i")
    balance=$("$BIN" contract query "${d[@]}" "$token" "{\"balance\":{\"address\":\"$recipient\"}}")
    gas=$("$BIN" admin "${d[@]}" gettx "{\"id\":\"$txid\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["receipts"][0]["gas"])')
    root=$("$BIN" admin "${d[@]}" getblock "{\"height\":$height}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["state_id"][:16])')
    echo "    node$i  $balance  gas $gas  state $root"
done
