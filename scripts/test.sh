#!/usr/bin/env bash
# Runs the whole test suite: unit tests and the two-site integration tests
# (real mirrord processes, FUSE mounts, loop devices). Those need root and
# /dev/fuse: without them they print SKIPPED and are counted as skipped, not
# passed; under CI=true they fail instead.
# Extra arguments go to `cargo test` (e.g. scripts/test.sh --test two_sites).
set -euo pipefail
cd "$(dirname "$0")/.."
# The integration tests drive the built binaries (mirrord, hbctl, hbd).
cargo build --workspace --bins
log=$(mktemp)
skips=$(mktemp)
trap 'rm -f "$log" "$skips"' EXIT
export HBMIRROR_SKIP_LOG=$skips
set +e
cargo test --workspace --no-fail-fast "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole suite (cargo prints one per test binary);
# a test that printed SKIPPED returned early: count it as skipped, not passed.
if [ -s "$skips" ]; then
    echo "skipped tests (they returned early; counted as skipped, not passed):"
    sed 's/^/  /' "$skips"
fi
skipped=$(wc -l < "$skips")
awk -v skipped="$skipped" '/^test result:/ { passed += $4; failed += $6 }
     END { printf "tests: %d passed, %d failed, %d skipped\n", passed - skipped, failed, skipped }' "$log"
exit "$status"
