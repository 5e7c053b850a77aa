#!/usr/bin/env bash
# hbd beside what users run today: keepalived (VRRP) between the same two
# hosts, in one run. Two network namespaces, "prod" and "standby", joined by
# one veth pair (the IP network); in each, keepalived (VRRP v3, unicast, a
# virtual IP) and hbd (the IP network plus the heartbeat mirrors of the two
# sites' mirrord, whose remote link is on loopback). VRRP's advert interval
# is hbd's heartbeat interval, and hbd's timeout is VRRP's three missed
# adverts. Two scenes:
#
#   1. only the IP network is cut, both sites alive (an nftables rule drops
#      everything on the standby's NIC; the link stays up): what each does;
#   2. the production host dies (kill -9 of everything in its namespace, and
#      its mirrord): how long each takes to take over.
#
# It prints a Markdown table (docs/heartbeat.md shows one). Needs root, /dev/fuse,
# iproute2; installs keepalived and nftables (Debian packages) if missing.
#
#   scripts/compare.sh              run both scenes, print the table
#   INTERVAL_MS=200 scripts/compare.sh   the interval (VRRP v3 takes 10 ms steps)
#   HBMIRROR_BIN_DIR=DIR scripts/compare.sh   use the binaries in DIR, build nothing
#                                             (tests/hb_compare.rs does)
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $(id -u) -ne 0 || ! -e /dev/fuse ]]; then
    echo "compare: needs root and /dev/fuse (hbfs)" >&2
    exit 1
fi
need() { # program package
    command -v "$1" >/dev/null && return 0
    echo "compare: installing $2" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" >/dev/null
    command -v "$1" >/dev/null || { echo "compare: needs $1 (Debian package $2)" >&2; exit 1; }
}
need ip iproute2
need keepalived keepalived
need nft nftables

interval_ms=${INTERVAL_MS:-200}
timeout_ms=$((3 * interval_ms))
advert=$(awk -v ms="$interval_ms" 'BEGIN { printf "%.2f", ms / 1000 }')
say() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }
note() { printf '   %s\n' "$*" >&2; }

if [[ -n ${HBMIRROR_BIN_DIR:-} ]]; then
    bin=$HBMIRROR_BIN_DIR
else
    say "Building"
    cargo build --workspace --bins -q
    bin=$PWD/target/debug
fi
export PATH=$bin:$PATH

dir=$(mktemp -d /tmp/hbmirror-compare.XXXXXX)
tag=hbc$$
P=${tag}p
S=${tag}s
pids=()
prod_jobs=()
cleanup() {
    for ns in "$P" "$S"; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    done
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    for site in prod standby; do umount -l "$dir/$site/hbfs" 2>/dev/null || true; done
    ip netns del "$P" 2>/dev/null || true
    ip netns del "$S" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT
now() { date +%s.%N; }
ms_between() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%d", (b - a) * 1000 }'; }
wait_until() { # seconds, description, command...
    local limit=$1 what=$2; shift 2
    local end=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= end)); then echo "compare: timed out waiting for $what" >&2; tail -n 20 "$dir"/*/*.log >&2; exit 1; fi
        sleep 0.02
    done
}

say "Two hosts in namespaces $P and $S, one IP network between them"
ip netns add "$P"
ip netns add "$S"
ip link add eth0 netns "$P" type veth peer name eth0 netns "$S"
ip -n "$P" addr add 10.77.0.1/24 dev eth0
ip -n "$S" addr add 10.77.0.2/24 dev eth0
for ns in "$P" "$S"; do ip -n "$ns" link set eth0 up; ip -n "$ns" link set lo up; done

say "The sites' storage: mirrord with heartbeat mirrors both ways (remote link on loopback)"
base=$((20000 + RANDOM % 20000))
head -c 32 /dev/urandom | base64 > "$dir/link.key"
head -c 32 /dev/urandom | base64 > "$dir/hb.key"
chmod 600 "$dir/link.key" "$dir/hb.key"
for site in prod standby; do
    [[ $site == prod ]] && { port=$base; peer=standby; peer_port=$((base + 1)); } || { port=$((base + 1)); peer=prod; peer_port=$base; }
    mkdir -p "$dir/$site"
    cat > "$dir/$site/mirrord.toml" <<TOML
site = "$site"
data_dir = "$dir/$site/data"
control_socket = "$dir/$site/mirrord.sock"
mount = "$dir/$site/hbfs"
[link]
listen = "127.0.0.1:$port"
psk_file = "$dir/link.key"
[[peers]]
site = "$peer"
address = "127.0.0.1:$peer_port"
TOML
    mirrord --config "$dir/$site/mirrord.toml" 2> "$dir/$site/mirrord.log" &
    pids+=($!)
    if [[ $site == prod ]]; then prod_mirrord=$!; prod_jobs+=($!); fi
done
mctl() { hbctl --socket "$dir/$1/mirrord.sock" "${@:2}"; }
wait_until 20 "both mirrords" bash -c "hbctl --socket $dir/prod/mirrord.sock volume list && hbctl --socket $dir/standby/mirrord.sock volume list"
wait_until 20 "the remote link" bash -c "[[ \$(grep -c 'remote link up' $dir/prod/mirrord.log) -ge 2 ]]"
for v in hb0 hb1; do mctl prod volume create $v --size 64KiB >/dev/null; mctl standby volume create $v --size 64KiB >/dev/null; done
mctl prod pair create hb0 --pvol hb0 --peer standby --kind heartbeat >/dev/null
mctl standby pair create hb1 --pvol hb1 --peer prod --kind heartbeat >/dev/null
wait_until 20 "the heartbeat pairs" bash -c "[ \$(hbctl --socket $dir/prod/mirrord.sock pair status --json | grep -c '\"PAIR\"') = 2 ]"

say "keepalived (VRRP v3, advert ${advert} s) and hbd (interval ${interval_ms} ms, timeout ${timeout_ms} ms) on both hosts"
keepalived_config() { # site ns state priority me peer
    cat > "$dir/$1/keepalived.conf" <<CONF
global_defs {
    router_id $1
    vrrp_version 3
    script_user root
    enable_script_security
}
vrrp_instance app {
    state $3
    interface eth0
    virtual_router_id 77
    priority $4
    advert_int $advert
    unicast_src_ip $5
    unicast_peer {
        $6
    }
    virtual_ipaddress {
        10.77.0.100/24
    }
    notify "$dir/$1/notify.sh"
}
CONF
    cat > "$dir/$1/notify.sh" <<'SH'
#!/bin/sh
# keepalived: notify TYPE NAME STATE PRIORITY
printf '%s %s\n' "$3" "$(date +%s.%N)" >> "$(dirname "$0")/vrrp.states"
SH
    chmod 755 "$dir/$1/notify.sh"
}
keepalived_config prod "$P" MASTER 150 10.77.0.1 10.77.0.2
keepalived_config standby "$S" BACKUP 100 10.77.0.2 10.77.0.1
hbd_config() { # site host group peer me peer_ip mirrors
    cat > "$dir/$1/hbd.toml" <<TOML
host = "$2"
group = "$3"
peers = ["$4"]
data_dir = "$dir/$1/hbd"
control_socket = "$dir/$1/hbd.sock"
psk_file = "$dir/hb.key"
interval_ms = $interval_ms
timeout_ms = $timeout_ms
volume_dir = "$dir/$1/hbfs"
[analysis]
echo_interval_ms = $interval_ms
[[networks]]
name = "ip"
listen = "$5:7790"
peers = ["$6:7790"]
$7
TOML
}
hbd_config prod prod-a production standby-a 10.77.0.1 10.77.0.2 "
[[mirrors]]
name = \"hb0\"
pvol = \"$dir/prod/hbfs/hb0\"
pair = \"hb0\"
[[mirrors]]
name = \"hb1\"
svol = \"$dir/prod/hbfs/hb1\"
[failover]
mirrord_socket = \"$dir/prod/mirrord.sock\""
hbd_config standby standby-a standby prod-a 10.77.0.2 10.77.0.1 "
[[mirrors]]
name = \"hb0\"
svol = \"$dir/standby/hbfs/hb0\"
[[mirrors]]
name = \"hb1\"
pvol = \"$dir/standby/hbfs/hb1\"
pair = \"hb1\"
[failover]
mirrord_socket = \"$dir/standby/mirrord.sock\"
hook = \"date +%s.%N > $dir/standby/failover.at\""
for site in prod standby; do
    [[ $site == prod ]] && ns=$P || ns=$S
    ip netns exec "$ns" keepalived -n -l -P -f "$dir/$site/keepalived.conf" \
        -p "$dir/$site/keepalived.pid" -r "$dir/$site/vrrp.pid" > "$dir/$site/keepalived.log" 2>&1 &
    pids+=($!)
    if [[ $site == prod ]]; then prod_jobs+=($!); fi
    ip netns exec "$ns" "$bin/hbd" --config "$dir/$site/hbd.toml" 2> "$dir/$site/hbd.log" &
    pids+=($!)
    if [[ $site == prod ]]; then prod_jobs+=($!); fi
done
table_has() { hbctl --socket "$dir/$1/hbd.sock" hb status --json | tr -d ' \n' | grep -q "$2"; }
state_of() { tail -n 1 "$dir/$1/vrrp.states" 2>/dev/null | cut -d' ' -f1; }
vip_at() { ip -n "$1" addr show eth0 | grep -q 10.77.0.100; }
wait_until 20 "hbd: each sees the other alive" bash -c "$(declare -f table_has); dir=$dir; table_has standby '\"remote_group_via_network\":\"ALIVE\"' && table_has standby '\"remote_group_via_mirrors\":\"ALIVE\"' && table_has prod '\"remote_group_via_mirrors\":\"ALIVE\"'"
wait_until 20 "keepalived: prod MASTER, standby BACKUP" bash -c "[[ \$(tail -n1 $dir/prod/vrrp.states 2>/dev/null | cut -d' ' -f1) == MASTER && \$(tail -n1 $dir/standby/vrrp.states 2>/dev/null | cut -d' ' -f1) == BACKUP ]]"
note "keepalived: prod $(state_of prod), standby $(state_of standby); hbd: both ALIVE on the network and the mirrors"

say "Scene 1: only the IP network is cut; both sites stay alive"
ip netns exec "$S" nft 'add table inet cut'
ip netns exec "$S" nft 'add chain inet cut in { type filter hook input priority 0 ; policy accept ; }'
ip netns exec "$S" nft 'add chain inet cut out { type filter hook output priority 0 ; policy accept ; }'
ip netns exec "$S" nft 'add rule inet cut in iifname "eth0" drop'
ip netns exec "$S" nft 'add rule inet cut out oifname "eth0" drop'
cut_at=$(now)
wait_until 20 "hbd: the network FAILED at the standby" table_has standby '"network_enable":"FAILED"'
sleep $(( (10 * timeout_ms + 999) / 1000 ))
two_masters=no
[[ $(state_of prod) == MASTER && $(state_of standby) == MASTER ]] && two_masters=yes
vips="prod $(vip_at "$P" && echo yes || echo no), standby $(vip_at "$S" && echo yes || echo no)"
if [[ $two_masters == yes ]]; then
    ka_cut="backup became MASTER after $(ms_between "$cut_at" "$(tail -n1 "$dir/standby/vrrp.states" | cut -d' ' -f2)") ms: **two masters** (VIP on $vips)"
else
    ka_cut="prod $(state_of prod), standby $(state_of standby) (VIP on $vips)"
fi
verdict=$(hbctl --socket "$dir/standby/hbd.sock" hb analyze --json | tr -d ' \n' | grep -o '"verdict":"[a-z-]*"' | head -n 1 | cut -d'"' -f4 || true)
if [[ -s $dir/standby/failover.at ]]; then
    hb_cut="**failed over** (two active sites)"
else
    hb_cut="network FAILED, mirrors ALIVE: **no failover** (one active site)${verdict:+; fault analysis: $verdict}"
fi
note "keepalived: $ka_cut"
note "hbd: $hb_cut"
hbctl --socket "$dir/standby/hbd.sock" hb status >&2
ip netns exec "$S" nft 'delete table inet cut'
wait_until 30 "keepalived: the standby BACKUP again" bash -c "[[ \$(tail -n1 $dir/standby/vrrp.states | cut -d' ' -f1) == BACKUP ]]"
wait_until 30 "hbd: the network back" table_has standby '"network_enable":"ENABLE"'
note "network back: keepalived's standby BACKUP again, hbd's network ENABLE"
[[ -s $dir/standby/failover.at ]] && { echo "compare: hbd failed over on a network cut" >&2; exit 1; }

say "Scene 2: the production host dies (kill -9 of everything in $P, and its mirrord)"
killed=$(ip netns pids "$P")
t0=$(now)
# shellcheck disable=SC2086
kill -9 $killed "$prod_mirrord"
{ wait "${prod_jobs[@]}"; } 2>/dev/null || true
wait_until 30 "keepalived: the standby MASTER" bash -c "[[ \$(tail -n1 $dir/standby/vrrp.states | cut -d' ' -f1) == MASTER ]]"
wait_until 30 "hbd: the failover hook" test -s "$dir/standby/failover.at"
ka_ms=$(ms_between "$t0" "$(tail -n1 "$dir/standby/vrrp.states" | cut -d' ' -f2)")
hb_ms=$(ms_between "$t0" "$(cat "$dir/standby/failover.at")")
note "keepalived: standby MASTER after $ka_ms ms; hbd: failover hook after $hb_ms ms"

printf '\n'
echo "| interval ${interval_ms} ms | keepalived $(keepalived --version 2>&1 | head -1 | awk '{print $2}') (VRRP v3, advert_int ${advert} s) | hbd (interval_ms ${interval_ms}, timeout_ms ${timeout_ms}; the IP network + heartbeat mirrors) |"
echo "|---|---|---|"
echo "| kill -9 of production: detection and takeover | backup MASTER after ${ka_ms} ms | failover hook after ${hb_ms} ms |"
echo "| only the IP network cut, both sites alive | ${ka_cut} | ${hb_cut} |"
