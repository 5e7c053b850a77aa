# Sourced by scripts/bench.sh in its hosts stage (its helpers, its limits and
# `row`): what a host apart from its storage pays (issue 24). A third pair of
# sites, in the folders hprod and hstandby (the same site names, two more
# ports), runs in a storage network namespace of its own; hprod listens for
# hosts ([hosts]) on a veth to a host namespace, where `hbfs --storage`
# mounts hprod's volumes at $B/hhost with the host's own key. One sync data
# pair of 256 MiB, every block written once first. Rounds alternate which
# mount goes first; each measures, in the same run:
#  - the host <-> storage TCP round trip over that veth (fio's net engine:
#    64 B ping-pong, TCP_NODELAY, the host end in the host namespace);
#  - 4 KiB O_DSYNC O_DIRECT writes at qd1 (fio) through mirrord's own hbfs
#    on the storage machine (local) and through the host's (remote), and
#    the same without O_DSYNC (no FSYNC after each write: not a target),
#    and with hbbench fuse the CPU per write of each process it crosses;
#  - sequential 1 MiB O_DIRECT writes at qd1 (fio, as the seq stage) through each.
# Rows give the medians over the rounds. Every address is inside the two
# namespaces made here; both are deleted at the end (or at exit).
# shellcheck shell=bash

log "hosts: a host apart from its storage (hbfs --storage over a veth)"
hs_ns=hbbs$$
hh_ns=hbbh$$
hs_addr=10.199.0.1
hh_addr=10.199.0.2
hosts_port=7789
rtt_port=7799
# Stops what this stage started (hbfs first, while its storage answers).
stop_pid() { if [[ -n "${1:-}" ]]; then kill -TERM "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; fi; }
hosts_cleanup() {
    stop_pid "${hbfs_host_pid:-}"
    hbfs_host_pid=""
    for dir in hprod hstandby; do
        stop_pid "${mirrord_pid[$dir]:-}"
        mirrord_pid[$dir]=""
    done
    umount -l "$B/hhost" "$B/hprod/hbfs" "$B/hstandby/hbfs" 2>/dev/null || true
    ip netns del "$hs_ns" 2>/dev/null || true
    ip netns del "$hh_ns" 2>/dev/null || true
}
trap 'hosts_cleanup; cleanup' EXIT

for ns in "$hs_ns" "$hh_ns"; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
done
ip link add st0 netns "$hh_ns" type veth peer name h0 netns "$hs_ns"
ip -n "$hs_ns" addr add "$hs_addr/30" dev h0
ip -n "$hh_ns" addr add "$hh_addr/30" dev st0
ip -n "$hs_ns" link set h0 up
ip -n "$hh_ns" link set st0 up

head -c 32 /dev/urandom | base64 > "$B/host.key"
chmod 600 "$B/host.key"
site_config prod $((base + 4)) standby $((base + 5)) hprod
site_config standby $((base + 5)) prod $((base + 4)) hstandby
cat >> "$B/hprod/mirrord.toml" <<TOML
[hosts]
listen = "$hs_addr:$hosts_port"
[[hosts.allow]]
host = "h1"
key_file = "$B/host.key"
volumes = "*"
TOML
# Not functions for what runs in the background: $! must be the process
# itself (nsenter execs it), for kill and wait.
in_storage() { nsenter --net="/run/netns/$hs_ns" "$@"; }
in_host() { nsenter --net="/run/netns/$hh_ns" "$@"; }
start_storage() { # folder
    nsenter --net="/run/netns/$hs_ns" mirrord --config "$B/$1/mirrord.toml" 2>> "$B/$1/mirrord.log" &
    mirrord_pid[$1]=$!
    pids+=($!)
    until hbctl --socket "$B/$1/mirrord.sock" volume list >/dev/null 2>&1; do
        kill -0 "${mirrord_pid[$1]}" 2>/dev/null || { cat "$B/$1/mirrord.log" >&2; exit 1; }
        sleep 0.05
    done
}
start_storage hstandby
start_storage hprod
until [[ $(grep -c "remote link up" "$B/hprod/mirrord.log") -ge 2 ]]; do sleep 0.05; done
hat() { local dir=$1; shift; hbctl --socket "$B/$dir/mirrord.sock" "$@"; }
hat hprod volume create hlat --size 256MiB >/dev/null
hat hstandby volume create hlat --size 256MiB >/dev/null
hat hprod pair create hlat --pvol hlat --peer standby --mode sync --kind data >/dev/null
until hat hprod pair status hlat --json | grep -q '"state": "PAIR"'; do sleep 0.05; done
# A first write to a block costs the filesystem more: written once at both sites.
dd if=/dev/zero of="$B/hprod/hbfs/hlat" bs=1M count=256 oflag=direct conv=notrunc status=none

mkdir -p "$B/hhost"
nsenter --net="/run/netns/$hh_ns" hbfs --storage "$hs_addr:$hosts_port" --key "$B/host.key" --host h1 "$B/hhost" 2>> "$B/hhost.log" &
hbfs_host_pid=$!
pids+=("$hbfs_host_pid")
until [[ -e $B/hhost/hlat ]]; do
    kill -0 "$hbfs_host_pid" 2>/dev/null || { cat "$B/hhost.log" >&2; exit 1; }
    sleep 0.05
done
grep -q "hbfs mounted" "$B/hprod/mirrord.log" || { echo "bench: hprod's log does not show the host's mount" >&2; exit 1; }

# host_rtt COUNT: COUNT ping-pongs of 64 B from the host to the storage
# namespace over the veth; prints p50 and p99 in us.
host_rtt() {
    local bytes=$(($1 * 64)) server
    nsenter --net="/run/netns/$hs_ns" fio --output-format=json --name=rx --ioengine=net --listen --port="$rtt_port" --protocol=tcp \
        --rw=read --bs=64 --size="$bytes" --pingpong=1 --nodelay=1 > /dev/null 2>> "$B/hrtt.log" &
    server=$!
    until [[ $(in_storage ss -ltn) == *":$rtt_port "* ]]; do
        kill -0 "$server" 2>/dev/null || { cat "$B/hrtt.log" >&2; exit 1; }
        sleep 0.02
    done
    in_host fio --output-format=json --name=tx --ioengine=net --hostname="$hs_addr" --port="$rtt_port" --protocol=tcp \
        --rw=write --bs=64 --size="$bytes" --pingpong=1 --nodelay=1 2>> "$B/hrtt.log" \
        | python3 -c 'import json,sys; p=json.load(sys.stdin)["jobs"][0]["write"]["clat_ns"]["percentile"]; print(*(round(p[k]/1000,1) for k in ("50.000000","99.000000")))'
    wait "$server" 2>/dev/null || true
}
hosts_drained() { until hat hprod pair status hlat --json | grep -q '"pending_bytes": 0'; do sleep 0.05; done; }
# host_4k FILE [fio options]: prints p50 and p99 (us) of 4 KiB O_DIRECT writes at qd1.
host_4k() {
    local file=$1; shift
    fio_json --filename="$file" --size=256M --rw=randwrite --bs=4k "$@" \
        | python3 -c 'import json,sys; p=json.load(sys.stdin)["jobs"][0]["write"]["clat_ns"]["percentile"]; print(*(round(p[k]/1000,1) for k in ("50.000000","99.000000")))'
    hosts_drained
}
host_seq() { fio_json --filename="$1" --size=256M --rw=write --bs=1M | bw; hosts_drained; }

rounds=${quick:+1}; rounds=${rounds:-3}
rtt_count=${quick:+5000}; rtt_count=${rtt_count:-20000}
cpu_count=${quick:+1000}; cpu_count=${cpu_count:-5000}
: > "$B/hosts.tsv"
for round in $(seq 1 "$rounds"); do
    read -r r50 r99 < <(host_rtt "$rtt_count")
    printf 'rtt\t%s\t%s\t%s\n' "$round" "$r50" "$r99" >> "$B/hosts.tsv"
    if (( round % 2 )); then order="local remote"; else order="remote local"; fi
    for where in $order; do
        file=$B/hprod/hbfs/hlat
        [[ $where == remote ]] && file=$B/hhost/hlat
        read -r d50 d99 < <(host_4k "$file" --sync=dsync)
        read -r o50 o99 < <(host_4k "$file")
        mb=$(host_seq "$file")
        # CPU per write of the processes it crosses (hbbench fuse, 4 KiB
        # O_DIRECT): the FUSE server (mirrord, or the host's hbfs) and the
        # mirrord behind it (the standby's, or hprod's).
        if [[ $where == remote ]]; then pa=$hbfs_host_pid pb=${mirrord_pid[hprod]}; else pa=${mirrord_pid[hprod]} pb=${mirrord_pid[hstandby]}; fi
        read -r c50 ccl cda cpe < <(hbbench fuse --file "$file" --op write --count "$cpu_count" --daemon-pid "$pa" --peer-pid "$pb" \
            | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["latency"]["p50_us"], d["client_cpu_us"], d["daemon_cpu_us"], d["peer_cpu_us"])')
        hosts_drained
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$where" "$round" "$d50" "$d99" "$mb" "$o50" "$o99" "$c50" "$ccl" "$cda" "$cpe" >> "$B/hosts.tsv"
        log "hosts: round $round, $where hbfs: 4 KiB O_DSYNC p50 $d50 us, p99 $d99 us; without O_DSYNC p50 $o50 us, p99 $o99 us; sequential 1 MiB $mb MB/s"
    done
    log "hosts: round $round, host <-> storage round trip p50 $r50 us, p99 $r99 us"
done
hosts_cleanup
trap cleanup EXIT

python3 - "$B/hosts.tsv" "$sync_limit" "$seq_limit" "$rounds" <<'PY' | while IFS=$'\t' read -r key what ours limit unit note; do row "$key" "$what" "$ours" "$limit" "$unit" "$note"; done
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
sync_limit, seq_limit, rounds = float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
def median(xs):
    xs, mid = sorted(xs), len(xs) // 2
    return round(xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2, 1)
def col(kind, i):
    return median([float(r[i]) for r in rows if r[0] == kind])
rtt50, rtt99 = col("rtt", 2), col("rtt", 3)
l50, l99, lmb, lo50, lo99, lc50, lccl, lcda, lcpe = (col("local", i) for i in range(2, 11))
m50, m99, mmb, mo50, mo99, mc50, mccl, mcda, mcpe = (col("remote", i) for i in range(2, 11))
n = f"median of {rounds} round{'s' if rounds > 1 else ''}"
def per_round(f):
    """The median over rounds of a ratio taken within each round (the
    machine's drift falls on both sides of it alike)."""
    by = {(r[0], r[1]): r for r in rows}
    xs = [f(by["remote", k], by["local", k], by["rtt", k]) for (w, k) in by if w == "remote" and ("local", k) in by and ("rtt", k) in by]
    if not xs:
        return None
    xs, mid = sorted(xs), len(xs) // 2
    return round(xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2, 2)
lat_ratio = per_round(lambda m, l, r: float(m[2]) / (float(l[2]) + float(r[2])))
p99_ratio = per_round(lambda m, l, r: float(m[3]) / (float(l[3]) + float(r[3])))
seq_ratio = per_round(lambda m, l, r: float(m[4]) / float(l[4]))
out = [
    ("host_rtt_p50_us", "host <-> storage TCP round trip p50, over the host's own veth (limit)", rtt50, rtt50, "us",
     f"{n}; p99 {rtt99}; fio net engine, 64 B ping-pong, TCP_NODELAY"),
    ("host_local_dsync4k_p50_us", "4 KiB O_DSYNC write p50 through mirrord's own hbfs on the storage machine (local), sync pair",
     l50, sync_limit, "us", f"{n}; p99 {l99}; fio qd1, O_DIRECT; limit: raw write + loopback round trip"),
    ("host_remote_dsync4k_p50_us", "4 KiB O_DSYNC write p50 through a host's remote hbfs (hbfs --storage over the veth), sync pair",
     m50, round(l50 + rtt50, 1), "us",
     f"{n}; p99 {m99}; limit: the local p50 {l50} + the host round trip p50 {rtt50} (target: ratio <= 1.2); "
     f"median of the per-round ratios {lat_ratio}"),
    ("host_remote_dsync4k_p99_us", "4 KiB O_DSYNC write p99 through a host's remote hbfs, sync pair",
     m99, round(l99 + rtt99, 1), "us",
     f"{n}; limit: the local p99 {l99} + the host round trip p99 {rtt99} (target: ratio <= 1.2); "
     f"median of the per-round ratios {p99_ratio}"),
    # Not targets: the same writes without O_DSYNC (no FSYNC after each
    # write), which shows what the fsync's own round trip adds.
    ("host_local_direct4k_p50_us", "4 KiB O_DIRECT write p50 (no O_DSYNC) through mirrord's own hbfs (local), sync pair",
     lo50, sync_limit, "us", f"{n}; p99 {lo99}; limit: raw write + loopback round trip; "
     f"hbbench fuse p50 {lc50}, CPU per write {lccl} us writer + {lcda} us mirrord + {lcpe} us the standby's mirrord"),
    ("host_remote_direct4k_p50_us", "4 KiB O_DIRECT write p50 (no O_DSYNC) through a host's remote hbfs, sync pair",
     mo50, round(lo50 + rtt50, 1), "us", f"{n}; p99 {mo99}; limit: the local p50 {lo50} + the host round trip p50 {rtt50}; "
     f"hbbench fuse p50 {mc50}, CPU per write {mccl} us writer + {mcda} us the host's hbfs + {mcpe} us mirrord (the standby's not counted)"),
    ("host_local_seq1m_mbs", "sequential 1 MiB write through mirrord's own hbfs (local), sync pair", lmb, seq_limit, "MB/s",
     f"{n}; fio qd1, O_DIRECT; limit: min(raw disk, TCP)"),
    ("host_remote_seq1m_mbs", "sequential 1 MiB write through a host's remote hbfs, sync pair", mmb, lmb, "MB/s",
     f"{n}; limit: the local figure in this run (target: ratio >= 0.8); median of the per-round ratios {seq_ratio}"),
]
for key, what, ours, limit, unit, note in out:
    print("\t".join([key, what, str(ours), str(limit), unit, note]))
PY
