#!/usr/bin/env bash
# Deterministic simulation of the heartbeat check (src/hb/sim, the hbsim
# binary, release build): two hbd sides run the production decision code on
# a simulated clock and simulated channels under fault schedules drawn from
# seeds; checkers judge every history.
#   scripts/simulate.sh N                  N schedules (seeds 1..N); a summary line; exit 1 on a violation
#   scripts/simulate.sh N --first-seed S   N schedules from seed S
#   scripts/simulate.sh --seed S           replay seed S exactly, with its trace of events
# (HBSIM_SEED=S and HBSIM_FIRST_SEED=S work too.)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin hbsim
exec target/release/hbsim "$@"
