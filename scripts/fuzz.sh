#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo-fuzz, libFuzzer) of every decoder that reads
# bytes from outside: link frames and messages (before and after the
# handshake), the sealed frame opener (AES-256-GCM, counters), the frame
# layout with its CRC and HMAC, heartbeat messages (datagrams and volume
# slots), control requests (JSON lines) and configs. Targets: link_codec,
# handshake, sealed_frame, frame, heartbeat, control_request, config (all
# that `cargo fuzz list` names).
#
#   scripts/fuzz.sh                 30 s per target (CI's short form)
#   scripts/fuzz.sh 3600            an hour per target
#   scripts/fuzz.sh 60 link_codec   one target
#   FUZZ_RUNS=10000000 scripts/fuzz.sh   10^7 executions per target, however long
#
# Seeds are in fuzz/corpus/TARGET/seed-* (checked in; what the fuzzer adds
# there is not). Inputs that once crashed are kept in fuzz/regressions/TARGET
# and replayed first, every run. A crash fails the run and leaves its input
# in fuzz/artifacts/TARGET: fix the bug, then move the input to regressions.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-30}
shift || true
if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz: needs a nightly toolchain (rustup toolchain install nightly)" >&2
    exit 1
fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
cd fuzz
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || mapfile -t targets < <(cargo +nightly fuzz list)
cargo +nightly fuzz build -O
if [[ -n ${FUZZ_RUNS:-} ]]; then bound=(-runs="$FUZZ_RUNS"); else bound=(-max_total_time="$secs"); fi
summary=()
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "regressions/$t"
    log=$(mktemp)
    # Regressions first, each input once: a fixed bug must stay fixed.
    if [[ -n $(ls -A "regressions/$t") ]]; then
        cargo +nightly fuzz run -O "$t" "regressions/$t" -- -runs=0 >"$log" 2>&1 || {
            cat "$log"; echo "fuzz: $t: a regression input fails again" >&2; exit 1; }
    fi
    start=$SECONDS
    if ! cargo +nightly fuzz run -O "$t" "corpus/$t" -- "${bound[@]}" \
        -print_final_stats=1 -rss_limit_mb=2048 >"$log" 2>&1; then
        tail -40 "$log"
        echo "fuzz: $t crashed; the input is in fuzz/artifacts/$t" >&2
        exit 1
    fi
    execs=$(awk '/stat::number_of_executed_units/ { print $2 }' "$log")
    summary+=("$t: ${execs:-?} executions in $((SECONDS - start))s, 0 crashes")
    echo "fuzz: ${summary[-1]}" >&2
    rm -f "$log"
done
printf 'fuzz: %s\n' "${summary[@]}"
