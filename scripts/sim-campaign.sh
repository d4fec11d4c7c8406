#!/usr/bin/env bash
# Runs the consensus simulator over N random seeds with a mixed fault schedule (4, 7
# or 10 validators, equal or unequal power, an adversary under a third of the power
# with random attacks, skewed clocks, one-way cuts, loss, duplication, delay, a crash
# right after a safety write, a minority partition, short epochs), then
# checks agreement, vote monotonicity, commit justification and progress after healing.
#   scripts/sim-campaign.sh N [FIRST_SEED]      (SIM_JOBS=K processes; default one per core)
# A failing seed S is replayed with every attack and fault switched off in turn by
#   SIDENODE_SIM_DEBUG=S .build/campaign/release/SideNodePackageTests.xctest \
#       --testing-library swift-testing --filter debugSeeds
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:?usage: scripts/sim-campaign.sh N [FIRST_SEED]}
FIRST=${2:-$(( $(date +%s) % 1000000 ))}
. scripts/lib/deps.sh
ensure_system_packages
echo "==> building tests (release; a few minutes the first time)"
# Some test targets use @testable imports, which a release build allows only with testing enabled.
# A scratch path of its own: testing-enabled flags would otherwise force the next
# `swift build -c release` (scripts/testnet.sh) to rebuild everything.
SCRATCH=.build/campaign
mkdir -p "$SCRATCH"
if ! swift build -c release --scratch-path "$SCRATCH" --build-tests -Xswiftc -enable-testing >.build/campaign-build.log 2>&1; then
    tail -20 .build/campaign-build.log >&2
    exit 1
fi
# Seeds in parallel, one process per core: each runs a contiguous share.
JOBS=${SIM_JOBS:-$(nproc)}
XCTEST=$(find "$SCRATCH" -path '*release/SideNodePackageTests.xctest' -type f | head -1)
[ -x "$XCTEST" ] || { echo "no test binary under $SCRATCH" >&2; exit 1; }
echo "==> $N seeds from $FIRST on $JOBS processes"
start=$(date +%s)
share=$(( (N + JOBS - 1) / JOBS ))
pids=()
for j in $(seq 0 $((JOBS - 1))); do
    from=$(( FIRST + j * share ))
    count=$(( j == JOBS - 1 ? N - j * share : share ))
    [ "$count" -gt 0 ] || continue
    SIDENODE_SIM_SEEDS=$count SIDENODE_SIM_BASE=$from "$XCTEST" --testing-library swift-testing \
        --filter CampaignTests >".build/campaign-$j.log" 2>&1 &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
grep -hE "campaign:|seed [0-9]+:" .build/campaign-*.log
failed=$(grep -hoE "campaign: [0-9]+ seeds from [0-9]+, [0-9]+ failed" .build/campaign-*.log | awk '{s += $(NF-1)} END {print s + 0}')
echo "$N seeds from $FIRST: $failed failed, $(( $(date +%s) - start )) s on $JOBS processes"
[ "$status" -eq 0 ] && [ "$failed" -eq 0 ]
