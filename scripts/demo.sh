#!/usr/bin/env bash
# The two-site demo on this one machine: starts a "prod" and a "standby"
# mirrord under a temporary directory (own data, socket, port and hbfs mount
# each), pairs a heartbeat volume synchronously, writes through the
# production file with plain dd, and shows the bytes arriving at the standby.
# Cleans up (daemons, mounts, files) on exit.
#
#   scripts/demo.sh            run and exit
#   scripts/demo.sh --pause    stop before cleaning up, to look around
#
# Needs root and /dev/fuse (hbfs is a FUSE mount). PORT_BASE (default 17788)
# picks the two link ports.
set -euo pipefail
cd "$(dirname "$0")/.."
pause=false
[[ "${1:-}" == "--pause" ]] && pause=true
if [[ $(id -u) -ne 0 || ! -e /dev/fuse ]]; then
    echo "demo: needs root and /dev/fuse (it mounts hbfs with FUSE)" >&2
    exit 1
fi

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

say "Building"
cargo build --workspace --bins -q
bin=$PWD/target/debug
export PATH=$bin:$PATH

demo=$(mktemp -d /tmp/hbmirror-demo.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    for site in prod standby; do umount -l "$demo/$site/hbfs" 2>/dev/null || true; done
    rm -rf "$demo"
}
trap cleanup EXIT

base=${PORT_BASE:-17788}
head -c 32 /dev/urandom | base64 > "$demo/link.key"
chmod 600 "$demo/link.key"
write_config() { # site port peer peer_port
    mkdir -p "$demo/$1"
    cat > "$demo/$1/mirrord.toml" <<TOML
site = "$1"
data_dir = "$demo/$1/data"
control_socket = "$demo/$1/mirrord.sock"
mount = "$demo/$1/hbfs"
[link]
listen = "127.0.0.1:$2"
psk_file = "$demo/link.key"
[[peers]]
site = "$3"
address = "127.0.0.1:$4"
TOML
}
write_config prod "$base" standby $((base + 1))
write_config standby $((base + 1)) prod "$base"

say "Starting two sites under $demo"
for site in standby prod; do
    mirrord --config "$demo/$site/mirrord.toml" 2> "$demo/$site/mirrord.log" &
    pids+=($!)
done
prod() { hbctl --socket "$demo/prod/mirrord.sock" "$@"; }
standby() { hbctl --socket "$demo/standby/mirrord.sock" "$@"; }
wait_until() { # description, command...
    local what=$1; shift
    for _ in $(seq 1 200); do "$@" >/dev/null 2>&1 && return 0; sleep 0.05; done
    echo "demo: timed out waiting for $what" >&2
    tail -n 20 "$demo"/*/mirrord.log >&2
    exit 1
}
wait_until "both control sockets" bash -c "hbctl --socket $demo/prod/mirrord.sock volume list && hbctl --socket $demo/standby/mirrord.sock volume list"
wait_until "the remote link" grep -q "remote link up" "$demo/prod/mirrord.log"
echo "prod    : $demo/prod/mirrord.toml   (link 127.0.0.1:$base, hbfs at $demo/prod/hbfs)"
echo "standby : $demo/standby/mirrord.toml (link 127.0.0.1:$((base + 1)), hbfs at $demo/standby/hbfs)"

say "A 1 MiB heartbeat volume at each site"
run prod volume create hb0 --size 1MiB
run standby volume create hb0 --size 1MiB

say "Pair them: PVOL at prod, SVOL at standby, synchronous"
run prod pair create hb0 --pvol hb0 --peer standby --mode sync --kind heartbeat
wait_until "PAIR" bash -c "hbctl --socket $demo/prod/mirrord.sock pair status hb0 --json | grep -q '\"PAIR\"'"
run prod pair status
run standby pair status

say "Each site's hbfs shows the volume as a plain file"
run ls -l "$demo/prod/hbfs" "$demo/standby/hbfs"

say "Write at prod with plain dd; in sync mode it is at the standby when dd returns"
msg="heartbeat from prod at $(date +%T.%N)"
printf '%s' "$msg" | run dd of="$demo/prod/hbfs/hb0" bs=4096 conv=notrunc status=none
printf 'standby reads: '
dd if="$demo/standby/hbfs/hb0" bs=4096 count=1 status=none | tr -d '\0'
echo
got=$(dd if="$demo/standby/hbfs/hb0" bs=4096 count=1 status=none | tr -d '\0')
[[ "$got" == "$msg" ]] || { echo "demo: the standby holds something else: $got" >&2; exit 1; }

say "The standby's file is read-only while the pair is mirrored"
if printf 'x' 2>/dev/null > "$demo/standby/hbfs/hb0"; then echo "demo: the SVOL accepted a write!" >&2; exit 1; fi
echo "(refused as expected: Read-only file system)"

say "Both copies are identical"
run sha256sum "$demo/prod/hbfs/hb0" "$demo/standby/hbfs/hb0"

say "Dissolve the pair: both volumes are SMPL again, the standby's file writable"
run prod pair delete hb0
run standby volume list

if $pause; then
    say "Paused: explore with  hbctl --socket $demo/prod/mirrord.sock ...  ; press Enter to clean up"
    read -r _
fi
say "Done; cleaning up"
