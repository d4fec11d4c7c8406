#!/usr/bin/env bash
# Runs the consensus simulator over N random seeds with a mixed fault schedule (loss,
# duplication, delay, a crash right after a safety write, a minority partition), then
# checks agreement, vote monotonicity, commit justification and progress after healing.
#   scripts/sim-campaign.sh N [FIRST_SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:?usage: scripts/sim-campaign.sh N [FIRST_SEED]}
FIRST=${2:-$(( $(date +%s) % 1000000 ))}
. scripts/lib/deps.sh
ensure_system_packages
echo "==> building tests (release)"
swift build -c release --build-tests >/dev/null
echo "==> $N seeds from $FIRST"
SIDENODE_SIM_SEEDS=$N SIDENODE_SIM_BASE=$FIRST swift test -c release --skip-build --filter CampaignTests 2>&1 |
    grep -E "campaign:|seed [0-9]+:|✔ Test run|✘ Test run"
