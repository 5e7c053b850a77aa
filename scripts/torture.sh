#!/usr/bin/env bash
# Torture runs with real processes (loopback only), bounded by count:
#   scripts/torture.sh        10 trials of each
#   scripts/torture.sh 1000   1,000 kill -9 trials, 1,000 link cuts, 1,000 full-disk
#                             faults, 1,000 rounds of garbage and floods, 1,000
#                             kill -9s of the standby under qd 8 writes (per mode and size)
# One line per part: "torture: <part>: N trials, faults or bad inputs tried, losses: 0, max RSS".
# The short form (2-3 trials) runs in scripts/test.sh. Needs root and /dev/fuse.
set -euo pipefail
cd "$(dirname "$0")/.."
export HBMIRROR_TORTURE_TRIALS=${1:-10}
cargo build --workspace --bins -q
cargo test -q --test torture --test write_order -- --nocapture --test-threads=1 2>&1 | grep -oE 'torture: .*|panicked.*|test result.*'
