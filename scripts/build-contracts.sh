#!/usr/bin/env bash
# Builds the example CosmWasm contracts (Tests/ContractsTests/Examples/*.c) into
# ${OUT:-.build/contracts}/NAME.wasm with the Swift toolchain's clang.
#   scripts/build-contracts.sh            build counter, cw20 and submsg
#   CLANG=/path/to/clang OUT=dir scripts/build-contracts.sh
# -mcpu=mvp keeps the output to the MVP instruction set (no bulk memory, sign-ext,
# reference types, SIMD); the code is integer-only, so no float opcodes appear.
# Only the functions marked export_name (plus memory) are exported: no --export-dynamic.
set -euo pipefail
cd "$(dirname "$0")/.."

CLANG="${CLANG:-/opt/swift/usr/bin/clang}"
OUT="${OUT:-.build/contracts}"
SRC=Tests/ContractsTests/Examples
CONTRACTS=(counter cw20 submsg)

if ! command -v "$CLANG" >/dev/null 2>&1; then
    echo "build-contracts: clang not found at '$CLANG' (set CLANG=...)" >&2
    exit 1
fi

# -Oz -flto: the same code as -O2 minus unrolling and inlining bloat (cw20 is ~30 KB
# instead of ~47 KB); -mllvm -mcpu=mvp also pins the LTO code generator to MVP.
CFLAGS=(
    --target=wasm32-unknown-unknown
    -nostdlib -ffreestanding
    -Oz -flto -mcpu=mvp
    -mno-bulk-memory -mno-sign-ext -mno-nontrapping-fptoint -mno-multivalue
    -mno-reference-types -mno-simd128
    -std=c11 -Wall -Wextra -Werror -Wno-missing-field-initializers
)
# One memory without a maximum (wasm-ld emits none unless --max-memory is given);
# --stack-first puts the 64 KiB stack below the data so an overflow traps instead
# of silently overwriting globals.
LDFLAGS=(
    -Wl,-mllvm,-mcpu=mvp
    -Wl,--no-entry
    -Wl,--strip-all
    -Wl,--stack-first
    -Wl,-z,stack-size=65536
)

mkdir -p "$OUT"
for name in "${CONTRACTS[@]}"; do
    out="$OUT/$name.wasm"
    "$CLANG" "${CFLAGS[@]}" "${LDFLAGS[@]}" -I"$SRC" \
        -o "$out.tmp" "$SRC/cosmwasm.c" "$SRC/$name.c"
    mv -f "$out.tmp" "$out"
    echo "built $out ($(wc -c <"$out" | tr -d ' ') bytes)"
done
