#!/usr/bin/env bash
# The two-site demo on this one machine. It starts a "prod" and a "standby"
# site under a temporary directory, each with mirrord (storage, hbfs mount)
# and hbd (heartbeat check), and tells the story in five acts:
#
#   1. heartbeats flow on every channel: two IP networks (net0, net1) and the
#      mirrored heartbeat volumes (written as plain files at one site, read at
#      the other), each channel with its counter;
#   2. one network is cut at the standby's NIC: its counter runs down to 0,
#      the fault analysis runs with production over the channels that work,
#      and the verdict says where the fault is: local-fault (net0) at the
#      standby, remote-fault (net0) at production; nothing fails over;
#   3. the whole IP network is cut in the middle: both networks FAILED, and
#      the standby does NOT fail over, because the heartbeat mirrors still
#      show production alive;
#   4. a cluster of two members (seed 004) on a LAN of their own: the active
#      member's self-check fails, it sends DOWN, and the standby member takes
#      over by itself: the data pair (SSWS), the application, the floating
#      IP (a client's pings answered by the other MAC); the failed member
#      comes back STANDBY;
#   5. the production site is killed (kill -9 of its hbd and mirrord): every
#      channel goes silent, the standby fails over once (verdict node-dead),
#      takes over the data pair and runs its failover hook.
#
# Each host's hbd runs in a network namespace of its own; the two networks
# join them through a third namespace, the router (each host's gateway is
# the network's probe), so the cuts are real: a NIC taken down
# (`ip link set ... down`), and an nftables rule dropping what the router
# forwards. The remote link between the mirrords stays on loopback.
# Everything is cleaned up on exit.
#
#   scripts/demo.sh            run the story and exit
#   scripts/demo.sh --pause    pause before cleaning up, to look around
#
# Needs root, /dev/fuse (hbfs), iproute2 (`ip`) and nftables (`nft`,
# installed if missing). PORT_BASE (default 17788) picks the ports.
set -euo pipefail
cd "$(dirname "$0")/.."
pause=false
[[ "${1:-}" == "--pause" ]] && pause=true
if [[ $(id -u) -ne 0 || ! -e /dev/fuse ]]; then
    echo "demo: needs root and /dev/fuse (it mounts hbfs with FUSE)" >&2
    exit 1
fi
command -v ip >/dev/null || { echo "demo: needs iproute2 (ip) for the network namespaces" >&2; exit 1; }
if ! command -v nft >/dev/null; then
    echo "demo: installing nftables" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q nftables >/dev/null || { echo "demo: needs nftables (nft)" >&2; exit 1; }
fi

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
note() { printf '   %s\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

say "Building"
cargo build --workspace --bins -q
export PATH=$PWD/target/debug:$PATH

demo=$(mktemp -d /tmp/hbmirror-demo.XXXXXX)
nsp=hbdemo$$p   # the production host
nss=hbdemo$$s   # the standby host
nsr=hbdemo$$r   # the router between them
pids=()
cluster_ns=()
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    for site in prod standby; do umount -l "$demo/$site/hbfs" 2>/dev/null || true; done
    for ns in "$nsp" "$nss" "$nsr" "${cluster_ns[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
    for f in "$demo"/cluster/*.pid; do [[ -e $f ]] && kill "$(cat "$f")" 2>/dev/null || true; done
    rm -rf "$demo"
}
trap cleanup EXIT

base=${PORT_BASE:-17788}
interval_ms=200
timeout_ms=2000
# Network k: prod 10.23k.1.1 -- router 10.23k.1.254 | 10.23k.2.254 -- standby 10.23k.2.2
addr() { # p|s k
    if [[ $1 == p ]]; then echo "10.23$2.1.1"; else echo "10.23$2.2.2"; fi
}
gateway() { # p|s k
    if [[ $1 == p ]]; then echo "10.23$2.1.254"; else echo "10.23$2.2.254"; fi
}

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

say "Two IP networks between the hosts (namespaces $nsp and $nss), through a router ($nsr)"
for n in "$nsp" "$nss" "$nsr"; do ip netns add "$n"; ip -n "$n" link set lo up; done
ip netns exec "$nsr" sysctl -qw net.ipv4.ip_forward=1
route_up() { # p|s k: the host's route to the other side, through its gateway
    local ns=$nsp other=2
    [[ $1 == s ]] && { ns=$nss; other=1; }
    ip -n "$ns" route replace "10.23$2.$other.0/24" via "$(gateway "$1" "$2")" dev "eth$2"
}
for k in 0 1; do
    for side in p s; do
        [[ $side == p ]] && ns=$nsp || ns=$nss
        ip link add "eth$k" netns "$ns" type veth peer name "$side$k" netns "$nsr"
        ip -n "$nsr" addr add "$(gateway $side $k)/24" dev "$side$k"
        ip -n "$nsr" link set "$side$k" up
        ip -n "$ns" addr add "$(addr $side $k)/24" dev "eth$k"
        ip -n "$ns" link set "eth$k" up
        route_up $side $k
    done
    note "net$k: prod $(addr p $k) -- $(gateway p $k) router $(gateway s $k) -- $(addr s $k) standby"
done

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
[counter]                # the seed's numbers, but at most 24: 0 six periods (6 s) after a cut, BAD at the next check, for the demo
max = 24
[analysis]
echo_interval_ms = 200   # the local network check: 3 rounds of echo, 200 ms apart
[[networks]]
name = "net0"
listen = "$(addr "$5" 0):$((base + 10))"
peers = ["$(addr "$6" 0):$((base + 10))"]
probe = "$(gateway "$5" 0)"
[[networks]]
name = "net1"
listen = "$(addr "$5" 1):$((base + 10))"
peers = ["$(addr "$6" 1):$((base + 10))"]
probe = "$(gateway "$5" 1)"
$7
TOML
}
hbd_config prod prod-a production standby-a p s "
[[mirrors]]
name = \"hb0\"
pvol = \"$demo/prod/hbfs/hb0\"
pair = \"hb0\"
[[mirrors]]
name = \"hb1\"
svol = \"$demo/prod/hbfs/hb1\"
[failover]
mirrord_socket = \"$demo/prod/mirrord.sock\""
hbd_config standby standby-a standby prod-a s p "
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
ip netns exec "$nsp" "$PWD/target/debug/hbd" --config "$demo/prod/hbd.toml" 2> "$demo/prod/hbd.log" &
pids+=($!)
prod_hbd=$!
ip netns exec "$nss" "$PWD/target/debug/hbd" --config "$demo/standby/hbd.toml" 2> "$demo/standby/hbd.log" &
pids+=($!)

say "Act 1: heartbeats on every channel, in both directions"
wait_until "production alive on every channel" table_has standby '"remote_group_via_network":"ALIVE","remote_copy_enable":"ENABLE","remote_group_via_mirrors":"ALIVE"'
wait_until "both networks alive at the standby" bash -c "[ \$(hbctl --socket $demo/standby/hbd.sock hb status --json | tr -d ' \n' | grep -o '\"remote_group\":\"ALIVE\"' | wc -l) = 2 ]"
wait_until "the standby alive at prod" table_has prod '"remote_group_via_mirrors":"ALIVE"'
note "the standby's view of production: each network and each mirror is a channel with its counter"
run hb_standby status
note "and production's view of the standby (Fig 9, the reverse mirror hb1):"
run hb_prod status

say "Act 2: one network is cut at the standby's NIC (net0)"
run ip -n "$nss" link set eth0 down
wait_until "net0 FAILED at the standby (the timeout)" table_has standby '"name":"net0","enable":"FAILED"'
note "net0 is silent: FAILED by the timeout; its counter runs down (4 every 5 intervals) to 0 (BAD)..."
wait_until "the standby's verdict" table_has standby '"verdict":"local-fault","networks":\["net0"\]'
wait_until "production's verdict" table_has prod '"verdict":"remote-fault","networks":\["net0"\]'
note "...and the fault analysis ran with production over net1 and the mirrors. Run again on demand, with its evidence:"
run hb_standby analyze
note "production agrees on the place: remote-fault (net0), the standby's side:"
hb_prod status | grep "last fault analysis"
note "a network down at one end is no dead site: nothing fails over."
if [[ -s "$demo/standby/hook.out" ]]; then echo "demo: the standby failed over on a one-network cut!" >&2; exit 1; fi
run ip -n "$nss" link set eth0 up
route_up s 0
wait_until "net0 back" table_has standby '"name":"net0","enable":"ENABLE"'
note "net0 back: ENABLE, its counter GOOD again (logged)."

say "Act 3: the whole IP network is cut in the middle (the router drops what it forwards)"
run ip netns exec "$nsr" nft 'add table inet cut'
run ip netns exec "$nsr" nft 'add chain inet cut forward { type filter hook forward priority 0 ; policy drop ; }'
wait_until "every network FAILED" table_has standby '"network_enable":"FAILED"'
run hb_standby status
note "The networks say production is dead; the heartbeat mirror says it is alive."
note "The networks alone are not enough: the standby does NOT fail over."
sleep $(( (timeout_ms + 1000) / 1000 ))
if [[ -s "$demo/standby/hook.out" ]]; then echo "demo: the standby failed over on a network cut!" >&2; exit 1; fi
run hb_standby events --limit 2
run ip netns exec "$nsr" nft 'delete table inet cut'
wait_until "the network back" table_has standby '"network_enable":"ENABLE"'
note "network back: ENABLE again (logged)."

say "Act 4: a cluster of two members; a DOWN notice moves the application and its floating IP"
# One LAN (a bridge in $nsb) joins member c1 (prod), member c2 (standby) and a client.
nsb=hbdemo$$b; nc1=hbdemo$$1; nc2=hbdemo$$2; ncl=hbdemo$$c
cluster_ns=("$nsb" "$nc1" "$nc2" "$ncl")
for n in "${cluster_ns[@]}"; do ip netns add "$n"; ip -n "$n" link set lo up; done
ip -n "$nsb" link add br0 type bridge && ip -n "$nsb" link set br0 up
i=1
for n in "$nc1" "$nc2" "$ncl"; do
    ip link add eth0 netns "$n" type veth peer name "v$i" netns "$nsb"
    ip -n "$nsb" link set "v$i" master br0 up
    ip -n "$n" addr add "10.240.0.$i/24" dev eth0 && ip -n "$n" link set eth0 up
    i=$((i + 1))
done
command -v arping >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q iputils-arping >/dev/null || true
run prod volume create capp --size 1MiB >/dev/null
run standby volume create capp --size 1MiB >/dev/null
run prod pair create capp --pvol capp --peer standby
wait_until "capp in PAIR" bash -c "hbctl --socket $demo/standby/mirrord.sock pair status capp --json | grep -q '\"PAIR\"'"
c=$demo/cluster
mkdir -p "$c"
cat > "$c/app" <<'APP'
#!/bin/sh
# The application: writes its node's name to its data volume every 200 ms
# (a trial run while hbd validates the node, HBD_CLUSTER_VALIDATION=1, writes nothing).
pid=$(dirname "$0")/$HBD_CLUSTER_NODE${HBD_CLUSTER_VALIDATION:+.trial}.pid
case "$1" in
start) if [ -n "$HBD_CLUSTER_VALIDATION" ]; then nohup sleep 600 >/dev/null 2>&1 &
       else nohup sh -c 'while :; do echo "$HBD_CLUSTER_NODE $(date +%T)" | dd of="$HBD_VOLUME_DIR/capp" conv=notrunc status=none 2>/dev/null; sleep 0.2; done' >/dev/null 2>&1 &
       fi
       echo $! > "$pid" ;;
stop)  kill "$(cat "$pid")" ;;
check) kill -0 "$(cat "$pid")" ;;
esac
APP
chmod +x "$c/app"
cat > "$c/mib.json" <<JSON
{"cluster_id": "demo", "version": 1,
 "nodes": [{"number": 1, "id": "c1", "primary_ip": "10.240.0.1", "site": "prod", "status": "ACTIVE"},
           {"number": 2, "id": "c2", "primary_ip": "10.240.0.2", "site": "standby", "status": "STANDBY"}],
 "applications": [{"number": 1, "name": "capp", "volumes": ["capp"], "ips": ["10.240.0.100/24"],
                   "executables": {"start": "$c/app start", "stop": "$c/app stop", "check": "$c/app check"},
                   "active": "c1", "standby": ["c2"]}],
 "storage": [{"number": 1, "id": "prod", "address": "$demo/prod/mirrord.sock", "status": "ACTIVE"},
             {"number": 2, "id": "standby", "address": "$demo/standby/mirrord.sock", "status": "ACTIVE"}]}
JSON
member_config() { # id group peer ip peer_ip site
    touch "$c/$1.ok"
    cat > "$c/$1.toml" <<TOML
host = "$1"
group = "$2"
peers = ["$3"]
data_dir = "$c/$1"
control_socket = "$c/$1/hbd.sock"
psk_file = "$demo/hb.key"
interval_ms = $interval_ms
timeout_ms = $timeout_ms
volume_dir = "$demo/$6/hbfs"
[[networks]]
name = "lan"
listen = "$4:$((base + 20))"
peers = ["$5:$((base + 20))"]
[failover]
mirrord_socket = "$demo/$6/mirrord.sock"
[[checks]]                # the member's self-check: DOWN when it fails
part = "self"
level = "SERIOUS"
command = "test -e $c/$1.ok"
[cluster]
port = $((base + 21))
control_socket = "$c/$1/cluster.sock"
mib = "$c/mib.json"
TOML
}
member_config c2 standby c1 10.240.0.2 10.240.0.1 standby
member_config c1 production c2 10.240.0.1 10.240.0.2 prod
member_pids=()
for m in c2 c1; do
    [[ $m == c1 ]] && ns=$nc1 || ns=$nc2
    ip netns exec "$ns" "$PWD/target/debug/hbd" --config "$c/$m.toml" 2> "$c/$m.log" &
    pids+=($!); member_pids+=($!)
done
mac() { ip -n "$1" -j link show eth0 | grep -o '"address":"[^"]*"' | head -1 | cut -d'"' -f4; }
answered_by() { # ns: the client's pings to the floating IP are answered by that host
    ip netns exec "$ncl" ping -c 1 -W 0.2 10.240.0.100 >/dev/null &&
        ip -n "$ncl" neigh show 10.240.0.100 | grep -q "$(mac "$1")"
}
wait_until "the floating IP at c1" answered_by "$nc1"
run hbctl --socket "$c/c1/cluster.sock" cluster show
note "the client pings 10.240.0.100 and c1 ($(mac "$nc1")) answers; capp writes: $(head -c 20 "$demo/prod/hbfs/capp" | tr -d '\0')"
note "c1's self-check fails: it releases the IP and sends DOWN; c2 takes over by itself."
run rm "$c/c1.ok"
wait_until "the floating IP at c2" answered_by "$nc2"
run hbctl --socket "$c/c2/cluster.sock" cluster show
note "now c2 ($(mac "$nc2")) answers the client on 10.240.0.100 (gratuitous ARP);"
run standby pair status capp
wait_until "capp written at the standby" grep -q c2 "$demo/standby/hbfs/capp"
note "the pair was taken over (SSWS) and capp writes there: $(head -c 20 "$demo/standby/hbfs/capp" | tr -d '\0')"
touch "$c/c1.ok"
wait_until "c1 back as STANDBY" bash -c "hbctl --socket $c/c2/cluster.sock cluster show | grep -Eq ' c1 +10.240.0.1 +STANDBY'"
note "c1 passes its self-check again: it comes back STANDBY, never ACTIVE by itself."
for pid in "${member_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
for f in "$c"/*.pid; do kill "$(cat "$f")" 2>/dev/null || true; done
for n in "${cluster_ns[@]}"; do ip netns del "$n"; done
cluster_ns=()

say "Act 5: the production site dies (kill -9 of its hbd and mirrord)"
printf 'orders up to %s\n' "$(date +%T)" | dd of="$demo/prod/hbfs/app" conv=notrunc status=none
note "prod wrote to its data volume: $(head -c 40 "$demo/prod/hbfs/app" | tr -d '\0')"
run kill -9 "$prod_hbd" "$prod_mirrord"
{ wait "$prod_hbd" "$prod_mirrord"; } 2>/dev/null || true
wait_until "the failover hook" test -s "$demo/standby/hook.out"
run cat "$demo/standby/hook.out"
wait_until "the node-dead verdict" table_has standby '"verdict":"node-dead"'
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
