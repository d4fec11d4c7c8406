#!/usr/bin/env bash
# libFuzzer over every decoder that reads outside bytes (Sources/FuzzTargets).
#   scripts/fuzz.sh                    every target, 60 s each
#   scripts/fuzz.sh TARGET [SECONDS]   one target ("list" prints them)
#   scripts/fuzz.sh --runs N [TARGET]  N executions per target instead of a time
#   scripts/fuzz.sh --seed             rewrite Fuzz/corpus from real encodings and vectors
# Built with -sanitize=fuzzer,address into .build/fuzz. Inputs libFuzzer finds interesting
# go to .build/fuzz-corpus/TARGET (Fuzz/corpus/TARGET stays the checked-in seeds); a crash
# is written to .build/fuzz-crashes/TARGET: copy it to Fuzz/regressions/TARGET/ once fixed,
# and scripts/test.sh replays it for good (FuzzReplayTests).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/deps.sh
ensure_system_packages

if [ "${1:-}" = "--seed" ]; then
    echo "==> writing seed corpora (real encodings, BIP vectors, a simulated run's traffic)"
    swift build --build-tests >/dev/null
    SIDENODE_WRITE_FUZZ_SEEDS=1 swift test --skip-build --filter "seedsCurrent|codecRoundTrip" | tail -1
    find Fuzz/corpus -type f | awk -F/ '{print $3}' | sort | uniq -c
    exit 0
fi

RUNS=""
if [ "${1:-}" = "--runs" ]; then
    RUNS=${2:?--runs N}
    shift 2
fi
TARGETS=$(ls Fuzz/corpus)
if [ "${1:-}" = "list" ]; then echo "$TARGETS"; exit 0; fi
if [ -n "${1:-}" ]; then
    echo "$TARGETS" | grep -qx "$1" || { echo "unknown target '$1'; one of: $(echo $TARGETS)" >&2; exit 2; }
    TARGETS=$1
fi
SECONDS_EACH=${2:-60}

echo "==> building the fuzzer (release, -sanitize=fuzzer,address; several minutes the first time)"
mkdir -p .build
if ! SIDENODE_FUZZ=1 swift build -c release --scratch-path .build/fuzz --product SideNodeFuzz \
    -Xswiftc -sanitize=fuzzer,address >.build/fuzz-build.log 2>&1; then
    tail -30 .build/fuzz-build.log >&2
    exit 1
fi
BIN=.build/fuzz/release/SideNodeFuzz
status=0
for target in $TARGETS; do
    mkdir -p ".build/fuzz-corpus/$target" ".build/fuzz-crashes/$target"
    limit=(-max_total_time="$SECONDS_EACH")
    [ -n "$RUNS" ] && limit=(-runs="$RUNS")
    # TOMLKit leaks the error object of every parse (upstream; a node parses its config
    # once): leak reports there are not ours.
    leaks=1
    [ "$target" = config_toml ] && { limit+=(-detect_leaks=0); leaks=0; }
    # The channel targets encrypt what they are given: short inputs reach every framing
    # case and keep them at hundreds of executions per second under ASan.
    maxlen=65536
    case $target in transport | noise_handshake) maxlen=4096 ;; esac
    echo "==> $target (${RUNS:-$SECONDS_EACH s})"
    if ASAN_OPTIONS="detect_leaks=$leaks" SIDENODE_FUZZ_TARGET=$target "$BIN" "${limit[@]}" -max_len="$maxlen" -rss_limit_mb=4096 \
        -artifact_prefix=".build/fuzz-crashes/$target/" -print_final_stats=1 \
        ".build/fuzz-corpus/$target" "Fuzz/corpus/$target" >".build/fuzz-$target.log" 2>&1; then
        stat() { grep -oE "stat::$1: +[0-9]+" ".build/fuzz-$target.log" | grep -oE "[0-9]+$" || true; }
        runs=$(stat number_of_executed_units)
        rate=$(stat average_exec_per_sec)
        rss=$(stat peak_rss_mb)
        echo "    $runs executions, ${rate:-?} exec/s, peak ${rss:-?} MB, 0 crashes"
    else
        status=1
        echo "CRASH in $target: see .build/fuzz-$target.log and .build/fuzz-crashes/$target/" >&2
        grep -E "ERROR|Assertion|Fatal|precondition" ".build/fuzz-$target.log" | head -5 >&2
    fi
done
exit $status
