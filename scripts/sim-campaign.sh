#!/usr/bin/env bash
# Runs the consensus simulator over N random seeds with a mixed fault schedule (loss,
# duplication, delay, a crash right after a safety write, a minority partition, short
# epochs in half the seeds), then
# checks agreement, vote monotonicity, commit justification and progress after healing.
#   scripts/sim-campaign.sh N [FIRST_SEED]
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
echo "==> $N seeds from $FIRST"
SIDENODE_SIM_SEEDS=$N SIDENODE_SIM_BASE=$FIRST swift test -c release --scratch-path "$SCRATCH" -Xswiftc -enable-testing --skip-build \
    --filter CampaignTests 2>&1 |
    grep -E "campaign:|seed [0-9]+:|✔ Test run|✘ Test run"
