#!/usr/bin/env bash
# Deterministic simulations (release builds), each printing a summary line
# ending in `violations: N`:
#   1. hbsim (src/hb/sim): two hbd sides run the production decision code on
#      a simulated clock and simulated channels under fault schedules.
#   2. pairsim (mirrord/src/pairsim): two sites run the pair machine
#      (mirrord/src/pair/machine.rs) over modelled volumes and a modelled link
#      under schedules of host writes, link cuts, kill -9, disk errors,
#      takeovers, thaws and resyncs.
#   3. hbsim --group (src/cluster/group/sim.rs): one group of 2-4 hosts runs
#      the group master rules (slots, leases, claims, elections, self-fences)
#      under LAN partitions, loss, delay, failing or hung I/O and stalls.
# Checkers judge every history; exit 1 if any simulation found a violation.
#   scripts/simulate.sh N                  N schedules of each (seeds 1..N)
#   scripts/simulate.sh N --first-seed S   N schedules of each from seed S
#   scripts/simulate.sh --seed S           replay seed S of each, with its trace
# (HBSIM_SEED / PAIRSIM_SEED and HBSIM_FIRST_SEED / PAIRSIM_FIRST_SEED work too.)
set -uo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin hbsim --bin pairsim || exit 1
status=0
echo "== hbsim: the heartbeat check"
target/release/hbsim "$@" || status=1
echo "== pairsim: the pair machine"
target/release/pairsim "$@" || status=1
echo "== hbsim --group: the group master rules"
target/release/hbsim --group "$@" || status=1
exit $status
