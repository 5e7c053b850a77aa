#!/usr/bin/env bash
# Runs the whole test suite: unit tests and the two-site integration tests
# (real mirrord processes, FUSE mounts, loop devices: those need root and
# /dev/fuse and print SKIPPED without them).
# Extra arguments go to `cargo test` (e.g. scripts/test.sh --test two_sites).
set -euo pipefail
cd "$(dirname "$0")/.."
# The integration tests drive the built binaries (mirrord, hbctl).
cargo build --workspace --bins
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole suite (cargo prints one per test binary).
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "tests: %d passed, %d failed\n", passed, failed }' "$log"
exit "$status"
