#!/usr/bin/env bash
# The two-site demo on this one machine. It starts a "prod" and a "standby"
# site under a temporary directory, each with mirrord (storage, hbfs mount)
# and hbd (heartbeat check), and tells the story in three acts:
#
#   1. heartbeats flow on both channels: the IP network and the mirrored
#      heartbeat volumes (written as plain files at one site, read at the other);
#   2. the network is cut: the standby marks it FAILED and does NOT fail over,
#      because the heartbeat mirrors still show production alive;
#   3. the production site is killed (kill -9 of its hbd and mirrord): every
#      channel goes silent, the standby fails over once, takes over the data
#      pair and runs its failover hook.
#
# The standby's hbd runs in its own network namespace joined to this one by a
# veth pair, so act 2 is a real link cut (`ip link set ... down`). The remote
# link between the mirrords stays on loopback. Everything is cleaned up on exit.
#
#   scripts/demo.sh            run the story and exit
#   scripts/demo.sh --pause    pause before cleaning up, to look around
#
# Needs root, /dev/fuse (hbfs) and iproute2 (`ip`). PORT_BASE (default 17788)
# picks the ports.
set -euo pipefail
cd "$(dirname "$0")/.."
pause=false
[[ "${1:-}" == "--pause" ]] && pause=true
if [[ $(id -u) -ne 0 || ! -e /dev/fuse ]]; then
    echo "demo: needs root and /dev/fuse (it mounts hbfs with FUSE)" >&2
    exit 1
fi
command -v ip >/dev/null || { echo "demo: needs iproute2 (ip) for the network namespace" >&2; exit 1; }

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
note() { printf '   %s\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

say "Building"
cargo build --workspace --bins -q
export PATH=$PWD/target/debug:$PATH

demo=$(mktemp -d /tmp/hbmirror-demo.XXXXXX)
ns=hbdemo$$
veth=hbd$$
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    for site in prod standby; do umount -l "$demo/$site/hbfs" 2>/dev/null || true; done
    ip link del "${veth}a" 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "$demo"
}
trap cleanup EXIT

base=${PORT_BASE:-17788}
prod_ip=10.231.$((RANDOM % 250)).1
standby_ip=${prod_ip%.1}.2
interval_ms=200
timeout_ms=2000

wait_until() { # description, command...
    local what=$1; shift
    for _ in $(seq 1 300); do "$@" >/dev/null 2>&1 && return 0; sleep 0.05; done
    echo "demo: timed out waiting for $what" >&2
    tail -n 20 "$demo"/*/*.log >&2
    exit 1
}
prod() { hbctl --socket "$demo/prod/mirrord.sock" "$@"; }
standby() { hbctl --socket "$demo/standby/mirrord.sock" "$@"; }
hb_prod() { hbctl --socket "$demo/prod/hbd.sock" hb "$@"; }
hb_standby() { hbctl --socket "$demo/standby/hbd.sock" hb "$@"; }
table_has() { # site, grep pattern on `hb status --json`
    hbctl --socket "$demo/$1/hbd.sock" hb status --json | tr -d ' \n' | grep -q "$2"
}

say "The IP network between the hosts: a veth pair into namespace $ns"
ip netns add "$ns"
ip link add "${veth}a" type veth peer name "${veth}b"
ip link set "${veth}b" netns "$ns"
ip addr add "$prod_ip/30" dev "${veth}a"
ip link set "${veth}a" up
ip netns exec "$ns" ip addr add "$standby_ip/30" dev "${veth}b"
ip netns exec "$ns" ip link set "${veth}b" up
ip netns exec "$ns" ip link set lo up
note "prod host $prod_ip  <-- ${veth}a/${veth}b -->  standby host $standby_ip (namespace $ns)"

say "Starting the storage of both sites (mirrord, remote link on loopback)"
head -c 32 /dev/urandom | base64 > "$demo/link.key"
head -c 32 /dev/urandom | base64 > "$demo/hb.key"
chmod 600 "$demo/link.key" "$demo/hb.key"
mirrord_config() { # site port peer peer_port
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
mirrord_config prod "$base" standby $((base + 1))
mirrord_config standby $((base + 1)) prod "$base"
for site in standby prod; do
    mirrord --config "$demo/$site/mirrord.toml" 2> "$demo/$site/mirrord.log" &
    pids+=($!)
done
prod_mirrord=${pids[1]}
wait_until "both mirrords" bash -c "hbctl --socket $demo/prod/mirrord.sock volume list && hbctl --socket $demo/standby/mirrord.sock volume list"
wait_until "the remote link (both lanes)" bash -c "[[ \$(grep -c 'remote link up' $demo/prod/mirrord.log) -ge 2 ]]"

say "Volumes and pairs: heartbeat mirrors both ways, and a data pair"
for v in hb0 hb1; do run prod volume create $v --size 64KiB >/dev/null; run standby volume create $v --size 64KiB >/dev/null; done
run prod volume create app --size 8MiB >/dev/null
run standby volume create app --size 8MiB >/dev/null
run prod pair create hb0 --pvol hb0 --peer standby --kind heartbeat
run standby pair create hb1 --pvol hb1 --peer prod --kind heartbeat
run prod pair create app --pvol app --peer standby --mode sync --kind data
wait_until "all pairs in PAIR" bash -c "[ \$(hbctl --socket $demo/prod/mirrord.sock pair status --json | grep -c '\"PAIR\"') = 3 ]"
run prod pair status

say "Starting hbd at both hosts (interval ${interval_ms} ms, timeout ${timeout_ms} ms)"
cat > "$demo/standby/failover-hook.sh" <<'HOOK'
#!/bin/sh
# What clusterware would do at failover: start the application on the
# taken-over volume. Here: say what hbd told us.
echo "failover hook ran on $HBD_HOST"
echo "  reason:     $HBD_REASON"
echo "  taken over: $HBD_TAKEN_OVER"
echo "  silent for: ${HBD_SILENT_FOR_MS} ms"
HOOK
chmod +x "$demo/standby/failover-hook.sh"
hbd_config() { # site host group peer listen_ip peer_ip mirrors
    cat > "$demo/$1/hbd.toml" <<TOML
host = "$2"
group = "$3"
peers = ["$4"]
data_dir = "$demo/$1/hbd"
control_socket = "$demo/$1/hbd.sock"
psk_file = "$demo/hb.key"
interval_ms = $interval_ms
timeout_ms = $timeout_ms
volume_dir = "$demo/$1/hbfs"
[network]
listen = "$5:$((base + 10))"
peers = ["$6:$((base + 10))"]
$7
TOML
}
hbd_config prod prod-a production standby-a "$prod_ip" "$standby_ip" "
[[mirrors]]
name = \"hb0\"
pvol = \"$demo/prod/hbfs/hb0\"
pair = \"hb0\"
[[mirrors]]
name = \"hb1\"
svol = \"$demo/prod/hbfs/hb1\"
[failover]
mirrord_socket = \"$demo/prod/mirrord.sock\""
hbd_config standby standby-a standby prod-a "$standby_ip" "$prod_ip" "
[[mirrors]]
name = \"hb0\"
svol = \"$demo/standby/hbfs/hb0\"
[[mirrors]]
name = \"hb1\"
pvol = \"$demo/standby/hbfs/hb1\"
pair = \"hb1\"
[failover]
mirrord_socket = \"$demo/standby/mirrord.sock\"
take_over = [\"app\"]
hook = \"$demo/standby/failover-hook.sh > $demo/standby/hook.out 2>&1\""
hbd --config "$demo/prod/hbd.toml" 2> "$demo/prod/hbd.log" &
pids+=($!)
prod_hbd=$!
ip netns exec "$ns" "$PWD/target/debug/hbd" --config "$demo/standby/hbd.toml" 2> "$demo/standby/hbd.log" &
pids+=($!)

say "Act 1: heartbeats on both channels, in both directions"
wait_until "production alive on both channels" table_has standby '"remote_group_via_network":"ALIVE","remote_copy_enable":"ENABLE","remote_group_via_mirrors":"ALIVE"'
wait_until "the standby alive at prod" table_has prod '"remote_group_via_mirrors":"ALIVE"'
note "the standby's view of production:"
run hb_standby status
note "and production's view of the standby (Fig 9, the reverse mirror hb1):"
run hb_prod status

say "Act 2: the IP network is cut"
run ip link set "${veth}a" down
wait_until "the network marked FAILED" table_has standby '"network_enable":"FAILED"'
run hb_standby status
note "The network says production is dead; the heartbeat mirror says it is alive."
note "One channel is not enough: the standby does NOT fail over."
sleep $(( (timeout_ms + 1000) / 1000 ))
if [[ -s "$demo/standby/hook.out" ]]; then echo "demo: the standby failed over on a network cut!" >&2; exit 1; fi
run hb_standby events --limit 3
run ip link set "${veth}a" up
wait_until "the network back" table_has standby '"network_enable":"ENABLE"'
note "network back: ENABLE again (logged)."

say "Act 3: the production site dies (kill -9 of its hbd and mirrord)"
printf 'orders up to %s\n' "$(date +%T)" | dd of="$demo/prod/hbfs/app" conv=notrunc status=none
note "prod wrote to its data volume: $(head -c 40 "$demo/prod/hbfs/app" | tr -d '\0')"
run kill -9 "$prod_hbd" "$prod_mirrord"
{ wait "$prod_hbd" "$prod_mirrord"; } 2>/dev/null || true
wait_until "the failover hook" test -s "$demo/standby/hook.out"
run cat "$demo/standby/hook.out"
run hb_standby status
run standby pair status app
note "the data pair is taken over (SSWS): the standby's file is writable and holds prod's last write:"
note "$(head -c 40 "$demo/standby/hbfs/app" | tr -d '\0')"
printf 'standby takes orders from %s\n' "$(date +%T)" | dd of="$demo/standby/hbfs/app" bs=4096 seek=1 conv=notrunc status=none
note "...and takes new writes. Failback later: \`hbctl pair resync app --reverse\` at the standby."

if $pause; then
    say "Paused: explore with hbctl --socket $demo/standby/hbd.sock hb status ; press Enter to clean up"
    read -r _
fi
say "Done; cleaning up"
