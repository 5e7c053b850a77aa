#!/usr/bin/env bash
# Benchmarks against the physical limits of this machine, each measured in
# the same run. Starts two sites on loopback (release build), measures, prints
# a markdown table and writes JSON (BENCH_OUT, default bench-results.json).
# Installs fio from Debian's packages if it is missing. Needs root (FUSE).
#
#   scripts/bench.sh              everything (about 5 minutes)
#   BENCH_QUICK=1 scripts/bench.sh  shorter runs, fewer trials (a smoke test)
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) -eq 0 && -e /dev/fuse ]] || { echo "bench: needs root and /dev/fuse" >&2; exit 1; }
out_json=$(realpath -m "${BENCH_OUT:-bench-results.json}")
quick=${BENCH_QUICK:-}
runtime=${quick:+2}; runtime=${runtime:-8}
trials=${quick:+3}; trials=${trials:-10}
cost_s=${quick:+5}; cost_s=${cost_s:-30}
# BENCH_ONLY="detect cost" runs only those stages (limits always run):
# latency transport seq seal hosts resync propagation cost cost1000 detect
# (transport: hbfs on classic FUSE and on FUSE over io_uring, same run; it
# switches /sys/module/fuse/parameters/enable_uring on and restores it.
# seal: sealed against unsealed link, a second pair of sites with
# `[link] seal = false`, same run: scripts/bench-seal.sh.
# hosts: a host's remote hbfs (hbfs --storage over a veth from a network
# namespace of its own) against mirrord's own, same run: scripts/bench-hosts.sh.)
only=${BENCH_ONLY:-}
stage() { [[ -z "$only" || " $only " == *" $1 "* ]]; }

if ! command -v fio >/dev/null; then
    echo "bench: installing fio from Debian's packages" >&2
    apt-get install -y -qq fio >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq fio >/dev/null; }
fi
command -v python3 >/dev/null || { echo "bench: needs python3 to read fio's JSON" >&2; exit 1; }

echo "bench: building (release)" >&2
cargo build --release --workspace --bins -q
export PATH=$PWD/target/release:$PATH

B=$(mktemp -d /var/tmp/hbbench.XXXXXX)
pids=()
enable_uring=/sys/module/fuse/parameters/enable_uring
uring_was=""
restore_uring() { if [[ -n "$uring_was" ]]; then echo "$uring_was" > "$enable_uring"; uring_was=""; fi; }
cleanup() {
    restore_uring
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    # By name: a glob would miss a mount whose daemon was killed (ENOTCONN).
    for site in prod standby uprod ustandby; do umount -l "$B/$site/hbfs" 2>/dev/null || true; done
    umount -l "$B/nullfs" 2>/dev/null || true
    rm -rf "$B"
}
trap cleanup EXIT
results=$B/results.tsv
: > "$results"
# row KEY WHAT OURS LIMIT UNIT NOTE   (ratio = OURS / LIMIT)
row() { printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >> "$results"; echo "bench: $2: $3 $5 (limit $4)" >&2; }
log() { echo "bench: $*" >&2; }

# fio helpers: latency percentiles (us) and bandwidth (MB/s) from its JSON.
fio_json() { fio --output-format=json --name=b --ioengine=psync --direct=1 --iodepth=1 --time_based --runtime="$runtime" "$@"; }
lat() { python3 -c 'import json,sys; p=json.load(sys.stdin)["jobs"][0]["write"]["clat_ns"]["percentile"]; print(*(round(p[k]/1000,1) for k in ("50.000000","99.000000","99.900000")))'; }
bw() { python3 -c 'import json,sys; print(round(json.load(sys.stdin)["jobs"][0]["write"]["bw_bytes"]/1e6,1))'; }

# ---- the sites -----------------------------------------------------------
base=${PORT_BASE:-27788}
head -c 32 /dev/urandom | base64 > "$B/link.key"
head -c 32 /dev/urandom | base64 > "$B/hb.key"
site_config() { # site port peer peer_port [folder, default: site] [more [link] settings]
    local dir=$B/${5:-$1}
    mkdir -p "$dir"
    cat > "$dir/mirrord.toml" <<TOML
site = "$1"
data_dir = "$dir/data"
control_socket = "$dir/mirrord.sock"
mount = "$dir/hbfs"
[link]
listen = "127.0.0.1:$2"
psk_file = "$B/link.key"
${6:-}
[[peers]]
site = "$3"
address = "127.0.0.1:$4"
TOML
}
site_config prod "$base" standby $((base + 1))
site_config standby $((base + 1)) prod "$base"
declare -A mirrord_pid hbd_pid
start_mirrord() { # site (its folder) [fuse transport]
    HBMIRROR_FUSE_TRANSPORT=${2:-} mirrord --config "$B/$1/mirrord.toml" 2>> "$B/$1/mirrord.log" &
    mirrord_pid[$1]=$!
    pids+=($!)
    until hbctl --socket "$B/$1/mirrord.sock" volume list >/dev/null 2>&1; do sleep 0.05; done
}
prod() { hbctl --socket "$B/prod/mirrord.sock" "$@"; }
standby() { hbctl --socket "$B/standby/mirrord.sock" "$@"; }
wait_pair() { # name state site
    until hbctl --socket "$B/${3:-prod}/mirrord.sock" pair status "$1" --json | grep -q "\"state\": \"$2\""; do sleep 0.05; done
}
volume_pair() { # name size mode kind
    prod volume create "$1" --size "$2" >/dev/null
    standby volume create "$1" --size "$2" >/dev/null
    prod pair create "$1" --pvol "$1" --peer standby --mode "$3" --kind "$4" >/dev/null
    wait_pair "$1" PAIR
}
start_mirrord standby
start_mirrord prod
# Both lanes of the link (bulk, heartbeat) are up.
until [[ $(grep -c "remote link up" "$B/prod/mirrord.log") -ge 2 ]]; do sleep 0.05; done

# ---- physical limits -----------------------------------------------------
log "raw disk (fio on the volumes' filesystem: $(df --output=source,fstype "$B" | tail -1))"
read -r raw50 raw99 raw999 < <(fio_json --filename="$B/raw.dat" --size=256M --rw=randwrite --bs=4k | lat)
# A mirrored 4 KiB write is written by both sites at about the same time, on
# this one disk: what one of two concurrent 4 KiB writers gets from it.
read -r shared50 _ < <(fio_json --filename="$B/raw.dat" --size=256M --rw=randwrite --bs=4k --numjobs=2 --group_reporting | lat)
raw_seq=$(fio_json --filename="$B/rawseq.dat" --size=1G --rw=write --bs=1M | bw)
# Both sites live on this one disk: a mirrored write puts every byte on it twice.
shared_seq=$(fio_json --filename="$B/rawseq.dat" --size=1G --rw=write --bs=1M --numjobs=2 --group_reporting | bw)
shared_seq=$(python3 -c "print(round($shared_seq / 2, 1))")
rm -f "$B/raw.dat" "$B/rawseq.dat"
# A copy reads one volume and writes another on this one disk at once: what
# the disk gives a 1 MiB reader and a 1 MiB writer side by side (qd1 each, as
# the copy's PVOL read and SVOL write) is the most a resync can move.
shared_rw=$(fio --output-format=json --ioengine=psync --direct=1 --iodepth=1 --time_based --runtime="$runtime" --bs=1M --size=1G \
    --name=r --rw=read --filename="$B/rwread.dat" --name=w --rw=write --filename="$B/rwwrite.dat" \
    | python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"]; print(round(min(j[0]["read"]["bw_bytes"], j[1]["write"]["bw_bytes"])/1e6,1))')
rm -f "$B/rwread.dat" "$B/rwwrite.dat"
log "raw loopback TCP (hbbench)"
tcp=$(hbbench tcp --count 20000 --stream 2GiB)
read -r rtt50 rtt99 tcp_mb < <(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["rtt"]["p50_us"], d["rtt"]["p99_us"], round(d["stream_bytes_per_s"]/1e6,1))' "$tcp")
row raw_write_p50 "4 KiB O_DIRECT write p50, raw disk (limit)" "$raw50" "$raw50" us "fio, qd1"
row raw_write_p99 "4 KiB O_DIRECT write p99, raw disk (limit)" "$raw99" "$raw99" us "fio, qd1"
# The disk's own tail: the target "p99.9 <= 5 x p50" of every mode, applied to the disk itself.
row raw_write_p999 "4 KiB O_DIRECT write p99.9, raw disk (limit)" "$raw999" "$raw999" us "fio, qd1; p99.9 / p50 of the disk itself: $(python3 -c "print(round($raw999 / $raw50, 2))")"
row shared_write_p50 "4 KiB O_DIRECT write p50, one of two writers on the disk at once (both sites write a mirrored write on it)" "$shared50" "$raw50" us "fio, 2 jobs, qd1 each"
row tcp_rtt_p50 "loopback TCP round trip p50 (limit)" "$rtt50" "$rtt50" us "64 B, TCP_NODELAY"
row tcp_rtt_p99 "loopback TCP round trip p99 (limit)" "$rtt99" "$rtt99" us ""
row tcp_stream "loopback TCP single stream (limit)" "$tcp_mb" "$tcp_mb" MB/s ""
row raw_seq "sequential 1 MiB O_DIRECT write, raw disk (limit)" "$raw_seq" "$raw_seq" MB/s ""
row shared_seq "sequential 1 MiB write, per stream with two streams on the disk (both sites share it here)" "$shared_seq" "$raw_seq" MB/s "the most a mirrored write can get on one machine"
row shared_rw "1 MiB reads and writes at once, per direction (the resync limit: a copy reads and writes the shared disk)" "$shared_rw" "$raw_seq" MB/s "fio: one reader and one writer, qd1 each, min of the two"
# The AEAD alone on this CPU (the link's own Sealer/Opener, and ring's
# AES-256-GCM): the floor of what sealing a frame costs.
log "AES-256-GCM on this CPU (hbbench aead)"
aead_bytes=${quick:+128MiB}; aead_bytes=${aead_bytes:-512MiB}
hbbench aead --bytes "$aead_bytes" > "$B/aead.json"
python3 - "$B/aead.json" <<'PY' | while IFS=$'\t' read -r key what ours unit note; do row "$key" "$what" "$ours" "$ours" "$unit" "$note"; done
import json, sys
for c in json.load(open(sys.argv[1]))["aead"]:
    size = {4096: "4k", 1 << 20: "1m"}.get(c["size"], str(c["size"]))
    label = {4096: "4 KiB", 1 << 20: "1 MiB"}.get(c["size"], f"{c['size']} B")
    for op, verb in (("seal", "seal (Sealer::encode: copy into the wire buffer, head, both sections sealed)"),
                     ("open", "open (Opener::decode: both sections opened in place)")):
        r, alone = c[op], c["ring_" + op]
        note = f"{r['us']} us per {label}; AES-256-GCM alone (ring, in place) {alone['gbps']} GB/s, {alone['us']} us"
        if op == "seal":
            note += f"; a plain copy {c['copy']['gbps']} GB/s, {c['copy']['us']} us"
        print("\t".join([f"aead_{op}_gbps_{size}", f"link {verb} of a {label} write, this CPU, one core (limit)", str(r["gbps"]), "GB/s", note]))
PY
sync_limit=$(python3 -c "print(round($raw50 + $rtt50, 1))")
seq_limit=$(python3 -c "print(min($raw_seq, $tcp_mb))")

# ---- 4 KiB latency at qd1 ---------------------------------------------------
if stage latency; then
log "4 KiB writes at qd1"
fio_json --filename="$B/plain.dat" --size=256M --rw=randwrite --bs=4k > "$B/plain.json"
read -r p50 p99 p999 < <(lat < "$B/plain.json")
row plain_p50 "4 KiB write p50, plain local file (no mirror)" "$p50" "$raw50" us "p99 $p99, p99.9 $p999"
prod volume create solo --size 256MiB >/dev/null
read -r p50 p99 p999 < <(fio_json --filename="$B/prod/hbfs/solo" --size=256M --rw=randwrite --bs=4k | lat)
row hbfs_solo_p50 "4 KiB write p50, hbfs file, unpaired (FUSE, no mirror)" "$p50" "$raw50" us "p99 $p99, p99.9 $p999"
solo50=$p50
# The FUSE hop of a write alone: hbfs's own mount code and settings (the
# transport mirrord chose, "auto") over a store that drops every write.
hbbench null-fs --mount "$B/nullfs" 2>> "$B/nullfs.log" &
nullfs_pid=$!
pids+=("$nullfs_pid")
until [[ -e $B/nullfs/null ]]; do
    kill -0 "$nullfs_pid" 2>/dev/null || { cat "$B/nullfs.log" >&2; exit 1; }
    sleep 0.05
done
read -r p50 p99 p999 < <(fio_json --filename="$B/nullfs/null" --size=256M --rw=randwrite --bs=4k | lat)
kill -TERM "$nullfs_pid"; wait "$nullfs_pid" 2>/dev/null || true
row null_fuse_write_p50 "4 KiB write p50, do-nothing FUSE filesystem (hbfs over a null store: the FUSE hop alone)" "$p50" "$solo50" us "p99 $p99, p99.9 $p999; limit: the unpaired hbfs write, so the ratio is the FUSE share of it"
volume_pair lat 256MiB sync data
for mode in sync semi-sync adaptive; do
    prod pair set lat --mode "$mode" >/dev/null
    read -r p50 p99 p999 < <(fio_json --filename="$B/prod/hbfs/lat" --size=256M --rw=randwrite --bs=4k | lat)
    limit=$([[ $mode == sync ]] && echo "$sync_limit" || echo "$raw50")
    row "lat_${mode}_p50" "4 KiB write p50 through hbfs, $mode" "$p50" "$limit" us "p99 $p99, p99.9 $p999; limit: raw write$([[ $mode == sync ]] && echo ' + round trip')"
    until prod pair status lat --json | grep -q '"pending_bytes": 0'; do sleep 0.05; done
done
# The adaptive host path alone: the standby's mirrord stopped (SIGSTOP) for 3 s,
# less than the link's 5 s timeout, so nothing ships, no SVOL writes on the
# shared disk and CPUs; then it goes on and the pair drains what queued.
kill -STOP "${mirrord_pid[standby]}"
read -r p50 p99 p999 < <(fio_json --filename="$B/prod/hbfs/lat" --size=256M --rw=randwrite --bs=4k --runtime=3 | lat)
kill -CONT "${mirrord_pid[standby]}"
row lat_adaptive_alone_p50 "4 KiB write p50 through hbfs, adaptive, the standby's mirrord stopped for the 3 s (nothing ships meanwhile)" "$p50" "$solo50" us "p99 $p99, p99.9 $p999; limit: the unpaired hbfs write; what the other site's work on this one machine adds to the row above"
until prod pair status lat --json | grep -q '"pending_bytes": 0'; do sleep 0.05; done
prod pair set lat --mode sync >/dev/null

fi
prod pair status lat >/dev/null 2>&1 || volume_pair lat 256MiB sync data

# ---- FUSE transports: classic and io_uring in the same run -----------------------
restart_prod() { # [fuse transport]
    kill -TERM "${mirrord_pid[prod]}"; wait "${mirrord_pid[prod]}" 2>/dev/null || true
    local lines; lines=$(grep -c "remote link up" "$B/prod/mirrord.log" || true)
    start_mirrord prod "${1:-}"
    until [[ $(grep -c "remote link up" "$B/prod/mirrord.log") -gt $lines ]]; do sleep 0.05; done
    wait_pair lat PAIR
}
if stage transport; then
if [[ -w "$enable_uring" ]]; then
    log "FUSE transports: null hop, unpaired and sync 4 KiB writes on classic and io_uring"
    uring_was=$(cat "$enable_uring")
    echo Y > "$enable_uring"
    prod volume create tsolo --size 256MiB >/dev/null
    # Every block written once first: a first write to a preallocated block
    # costs the filesystem more, and would favour whichever transport came later.
    dd if=/dev/zero of="$B/prod/hbfs/tsolo" bs=1M count=256 oflag=direct conv=notrunc status=none
    prod pair set lat --mode sync >/dev/null
    n=${quick:+4000}; n=${n:-10000}
    # Rounds alternate the order (classic first, then io_uring first, ...) so
    # drift in this shared machine's load falls on both alike; rows give the median.
    rounds=${quick:+2}; rounds=${rounds:-6}
    : > "$B/transport.jsonl"
    for round in $(seq 1 "$rounds"); do
        order="classic uring"; (( round % 2 == 0 )) && order="uring classic"
        for t in $order; do
            restart_prod "$t"
            grep "hbfs transport" "$B/prod/mirrord.log" | tail -1 | grep -q "$([[ $t == uring ]] && echo io_uring || echo classic)" \
                || { echo "bench: prod did not mount hbfs on $t" >&2; exit 1; }
            pid=${mirrord_pid[prod]}
            for what in "hop stat tsolo $n" "solo write tsolo $n" "sync write lat $((n / 4))"; do
                read -r key op file count <<< "$what"
                hbbench fuse --file "$B/prod/hbfs/$file" --op "$op" --count "$count" --daemon-pid "$pid" \
                    | python3 -c 'import json,sys; d=json.load(sys.stdin); d.update(t=sys.argv[1], key=sys.argv[2]); print(json.dumps(d))' "$t" "$key" >> "$B/transport.jsonl"
            done
        done
    done
    restore_uring
    restart_prod
    # One row per measure and transport: the median over the rounds of p50, p99 and CPU;
    # io_uring's limit column is classic's figure of the same run (ratio = uring / classic).
    python3 - "$B/transport.jsonl" "$raw50" "$sync_limit" <<'PY' | while IFS=$'\t' read -r key what ours limit unit note; do row "$key" "$what" "$ours" "$limit" "$unit" "$note"; done
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
raw50, sync_limit = float(sys.argv[2]), float(sys.argv[3])
def avg(key, t, f):
    xs = sorted(f(r) for r in runs if r["key"] == key and r["t"] == t)
    mid = len(xs) // 2
    return round(xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2, 1)
names = {"hop": "null FUSE hop (fstat -> GETATTR) p50", "solo": "4 KiB write p50, hbfs file, unpaired",
         "sync": "4 KiB write p50 through hbfs, sync mode"}
for key in ("hop", "solo", "sync"):
    p50 = {t: avg(key, t, lambda r: r["latency"]["p50_us"]) for t in ("classic", "uring")}
    p99 = {t: avg(key, t, lambda r: r["latency"]["p99_us"]) for t in ("classic", "uring")}
    cpu = {t: (avg(key, t, lambda r: r["client_cpu_us"]), avg(key, t, lambda r: r["daemon_cpu_us"])) for t in ("classic", "uring")}
    base = {"hop": p50["classic"], "solo": raw50, "sync": sync_limit}[key]
    basis = {"hop": "limit: itself (the reference for io_uring)", "solo": "limit: raw write", "sync": "limit: raw write + round trip"}[key]
    for t in ("classic", "uring"):
        limit = base if t == "classic" else p50["classic"]
        note = f"p99 {p99[t]}; CPU per op {cpu[t][0]} us client + {cpu[t][1]} us mirrord; "
        note += basis if t == "classic" else f"limit: classic in this run (target for the unpaired write: ratio <= 0.75); p99 ratio {round(p99['uring'] / p99['classic'], 2)}"
        print("\t".join([f"fuse_{key}_{t}", f"{names[key]}, {'classic /dev/fuse' if t == 'classic' else 'FUSE over io_uring'}", str(p50[t]), str(limit), "us", note]))
PY
else
    log "FUSE transports: skipped ($enable_uring is missing or not writable: this kernel has no FUSE over io_uring)"
fi
fi

# ---- sequential throughput ---------------------------------------------------
if stage seq; then
log "sequential 1 MiB writes"
for mode in sync semi-sync adaptive; do
    prod pair set lat --mode "$mode" >/dev/null
    mb=$(fio_json --filename="$B/prod/hbfs/lat" --size=256M --rw=write --bs=1M | bw)
    row "seq_$mode" "sequential 1 MiB write through hbfs, $mode" "$mb" "$seq_limit" MB/s "limit: min(raw disk, TCP); $(python3 -c "print(round($mb / $shared_seq * 100))")% of the shared-disk figure"
    until prod pair status lat --json | grep -q '"pending_bytes": 0'; do sleep 0.05; done
done
log "sequential 1 MiB writes at queue depth 8"
for mode in sync semi-sync adaptive; do
    prod pair set lat --mode "$mode" >/dev/null
    mb=$(fio --output-format=json --name=b --ioengine=libaio --direct=1 --iodepth=8 --time_based --runtime="$runtime" \
        --filename="$B/prod/hbfs/lat" --size=256M --rw=write --bs=1M | bw)
    row "seq_qd8_$mode" "sequential 1 MiB write at qd 8 through hbfs, $mode" "$mb" "$shared_seq" MB/s "limit: one of two concurrent streams on the shared disk (target: ratio >= 0.8)"
    until prod pair status lat --json | grep -q '"pending_bytes": 0'; do sleep 0.05; done
done

fi

# ---- what sealing the link costs: a second pair of sites, unsealed ------------
if stage seal; then
. scripts/bench-seal.sh
fi

# ---- a host apart from its storage: hbfs --storage over a veth ----------------
if stage hosts; then
. scripts/bench-hosts.sh
fi

# ---- hbd at either site (the resync beside heartbeats, cost, detect) -------
hbd_config() { # site host group peer port peer_port interval timeout mirrors-toml extra
    mkdir -p "$B/$1/hbd"
    cat > "$B/$1/hbd.toml" <<TOML
host = "$2"
group = "$3"
peers = ["$4"]
data_dir = "$B/$1/hbd"
control_socket = "$B/$1/hbd.sock"
psk_file = "$B/hb.key"
interval_ms = $7
timeout_ms = $8
volume_dir = "$B/$1/hbfs"
[network]
listen = "127.0.0.1:$5"
peers = ["127.0.0.1:$6"]
[failover]
mirrord_socket = "$B/$1/mirrord.sock"
${10:-}
$9
TOML
}
start_hbd() {
    hbd --config "$B/$1/hbd.toml" 2>> "$B/$1/hbd.log" &
    hbd_pid[$1]=$!
    pids+=($!)
    until hbctl --socket "$B/$1/hbd.sock" hb status >/dev/null 2>&1; do sleep 0.05; done
}
stop_hbd() { kill -TERM "${hbd_pid[$1]}" 2>/dev/null || true; wait "${hbd_pid[$1]}" 2>/dev/null || true; }

# ---- resync ----------------------------------------------------------------
if stage resync; then
log "resync of a 1 GiB volume with 10% of its blocks dirty"
volume_pair big 1GiB sync data
prod pair split big >/dev/null
for i in $(seq 0 10 1020); do
    dd if=/dev/urandom of="$B/prod/hbfs/big" bs=1M count=1 seek="$i" oflag=direct conv=notrunc status=none
done
# The dd writes were host I/O on a data pair: within 1 s of any the
# controller watches the host's I/O latency beside a copy (1 MiB writes are
# not timed, so they alone never hold it). This row is a resync with no host
# I/O beside it.
sleep 0.2
t0=$(date +%s%N)
prod pair resync big >/dev/null
wait_pair big PAIR
t1=$(date +%s%N)
# The rate is the copy's own, from its start to its end as mirrord times it;
# the wall clock from the command to PAIR seen also counts hbctl's runs, the
# bitmap exchange and wait_pair's 50 ms polls (about 0.25 s in all here).
read -r copied resync_mb < <(prod pair status big --json | python3 -c 'import json,sys; c=json.load(sys.stdin)[0]["copy"]; print(c["copied_bytes"], round(c["rate_bytes_per_s"]/1e6, 1))')
wall_mb=$(python3 -c "print(round($copied / (($t1 - $t0) / 1e9) / 1e6, 1))")
row resync "resync, 1 GiB volume, 10% dirty ($((copied >> 20)) MiB copied)" "$resync_mb" "$tcp_mb" MB/s "limit: TCP stream; the copy's own time; $wall_mb MB/s from the command to PAIR seen"
row resync_disk "resync, 1 GiB volume, 10% dirty, against the disk's concurrent read + write" "$resync_mb" "$shared_rw" MB/s "limit: the shared_rw row (target: ratio >= 0.8); $wall_mb MB/s from the command to PAIR seen"

# The same resync beside hbd's heartbeats, and beside a host's writes (issue 25).
. scripts/bench-resync-load.sh
prod pair delete big >/dev/null; prod volume delete big >/dev/null; standby volume delete big >/dev/null

fi

# ---- heartbeat propagation ----------------------------------------------------
volume_pair hb0 64KiB sync heartbeat
if stage propagation; then
log "heartbeat propagation"
prop=$(hbbench propagation --from "$B/prod/hbfs/hb0" --to "$B/standby/hbfs/hb0" --count 500)
read -r h50 h99 < <(python3 -c 'import json,sys; d=json.loads(sys.argv[1])["propagation"]; print(d["p50_us"], d["p99_us"])' "$prop")
row prop_p50 "heartbeat propagation p50 (write at prod's file -> seen at standby's)" "$h50" "$sync_limit" us "p99 $h99; limit: raw write + round trip"
# The same back to back: no pause in which the CPUs go idle (on a VM an idle
# CPU takes tens of microseconds to wake for each hand-off).
prop=$(hbbench propagation --from "$B/prod/hbfs/hb0" --to "$B/standby/hbfs/hb0" --count 2000 --gap-ms 0)
read -r w50 w99 < <(python3 -c 'import json,sys; d=json.loads(sys.argv[1])["propagation"]; print(d["p50_us"], d["p99_us"])' "$prop")
row prop_warm_p50 "heartbeat propagation p50, back to back (no pause between samples)" "$w50" "$sync_limit" us "p99 $w99; limit: raw write + round trip; the row above pauses 5 ms between samples"
fi

# ---- heartbeat propagation while a 1 GiB resync runs (the lanes) ---------------
if stage propagation; then
log "heartbeat propagation, idle and while a 1 GiB data pair copies (same run)"
# 300 samples 2 ms apart: well within the copy, which takes seconds.
prop_p99() { hbbench propagation --from "$B/prod/hbfs/hb0" --to "$B/standby/hbfs/hb0" --count 300 --gap-ms 2 \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["propagation"]["p99_us"])'; }
idle99=$(prop_p99)
prod volume create bulk --size 1GiB >/dev/null
standby volume create bulk --size 1GiB >/dev/null
# The copy keeps to the pair's rate controller: c_min_rate (default 4 MiB/s)
# while hosts do I/O, and a ceiling of BENCH_COPY_CEILING (default 256MiB;
# 0 for none, the pair's default), which keeps at most two frames queued.
copy_ceiling=${BENCH_COPY_CEILING:-256MiB}
prod pair create bulk --pvol bulk --peer standby --mode sync --kind data --c-max-rate "$copy_ceiling" >/dev/null
wait_pair bulk COPY
busy99=$(prop_p99)
# The figure counts only if the copy was still running when the samples ended.
read -r state copy_limit held < <(prod pair status bulk --json | python3 -c 'import json,sys; p=json.load(sys.stdin)[0]; print(p["state"], round(p["copy"]["limit_bytes_per_s"]/2**20, 1), p["copy"]["held_by_host_io"])')
limit=$(python3 -c "print(round(2 * $idle99, 1))")
row prop_resync_p99 "heartbeat propagation p99 while a 1 GiB data pair copies (state at the end: $state)" "$busy99" "$limit" us "limit: 2 x the idle p99 of the same run ($idle99 us); heartbeat pairs have their own link lane; copy limit at the end ${copy_limit} MiB/s (held by host I/O: $held), ceiling $copy_ceiling"
# What is left of the copy runs at full speed.
prod pair set bulk --c-max-rate 0 --c-min-rate 0 >/dev/null
wait_pair bulk PAIR
prod pair delete bulk >/dev/null; prod volume delete bulk >/dev/null; standby volume delete bulk >/dev/null
fi

# ---- cost at 1 Hz with 100 heartbeat mirrors ------------------------------------
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

# cost COUNT KEY PREFIX: COUNT heartbeat mirrors at 1 Hz for cost_s seconds;
# rows KEY_SITE_DAEMON and KEY_SITE (the target: below TARGET % of a core).
cost() {
    local count=$1 key=$2 prefix=$3 target=$4 last
    last=$(printf '%03d' $((count - 1)))
    log "cost: $count heartbeat mirrors at 1 Hz for ${cost_s} s"
    local prod_mirrors="" standby_mirrors="" i
    for i in $(seq -f '%03g' 0 $((count - 1))); do
        prod volume create "$prefix$i" --size 64KiB >/dev/null
        standby volume create "$prefix$i" --size 64KiB >/dev/null
        prod pair create "$prefix$i" --pvol "$prefix$i" --peer standby --kind heartbeat >/dev/null
        prod_mirrors+=$'\n'"[[mirrors]]"$'\n'"name = \"$prefix$i\""$'\n'"pvol = \"$B/prod/hbfs/$prefix$i\""
        standby_mirrors+=$'\n'"[[mirrors]]"$'\n'"name = \"$prefix$i\""$'\n'"svol = \"$B/standby/hbfs/$prefix$i\""
    done
    wait_pair "$prefix$last" PAIR
    hbd_config prod prod-a production standby-a $((base + 10)) $((base + 11)) 1000 10000 "$prod_mirrors"
    hbd_config standby standby-a standby prod-a $((base + 11)) $((base + 10)) 1000 10000 "$standby_mirrors"
    start_hbd standby
    start_hbd prod
    sleep 3
    declare -A t0s
    local site d pid used rss pct total hz
    for site in prod standby; do for d in mirrord hbd; do
        eval "pid=\${${d}_pid[$site]}"; t0s[$site$d]=$(cpu_ticks "$pid")
    done; done
    sleep "$cost_s"
    hz=$(getconf CLK_TCK)
    for site in prod standby; do
        total=0
        for d in mirrord hbd; do
            eval "pid=\${${d}_pid[$site]}"
            used=$(( $(cpu_ticks "$pid") - ${t0s[$site$d]} ))
            rss=$(rss_kb "$pid")
            pct=$(python3 -c "print(round($used / $hz / $cost_s * 100, 2))")
            total=$(python3 -c "print(round($total + $pct, 2))")
            row "${key}_${site}_$d" "CPU of $d at $site, $count mirrors at 1 Hz" "$pct" "$target" "% of a core" "$(python3 -c "print(round($used / $hz / $cost_s * 60, 2))") CPU s/min, RSS $((rss / 1024)) MiB"
        done
        row "${key}_${site}" "CPU of hbd + mirrord at $site, $count mirrors at 1 Hz" "$total" "$target" "% of a core" "target: below $target% of a core"
    done
    stop_hbd prod; stop_hbd standby
    for i in $(seq -f '%03g' 0 $((count - 1))); do
        prod pair uninstall "$prefix$i" >/dev/null; prod pair delete "$prefix$i" >/dev/null
        prod volume delete "$prefix$i" >/dev/null; standby volume delete "$prefix$i" >/dev/null
    done
}
if stage cost; then
    cost 100 cost c 1
fi
if stage cost1000; then
    cost 1000 cost1000 k 5
fi

# ---- failure detection ---------------------------------------------------------
# The status is read whole before it is searched: `grep -q` leaving early
# would end hbctl with SIGPIPE, which pipefail counts as a failure (the
# table is large after the 1,000-mirror stage).
standby_sees_production_armed() {
    local status
    status=$(hbctl --socket "$B/standby/hbd.sock" hb status --json | tr -d ' \n') || return 1
    [[ $status == *'"remote_group_via_network":"ALIVE","remote_copy_enable":"ENABLE","remote_group_via_mirrors":"ALIVE"'* ]] &&
        [[ $status == *'"armed":true'* ]]
}

detect() { # interval_ms timeout_ms
    local interval=$1 timeout=$2 hook=$B/hook.$1
    : > "$hook"
    hbd_config prod prod-a production standby-a $((base + 10)) $((base + 11)) "$interval" "$timeout" \
        "[[mirrors]]"$'\n'"name = \"hb0\""$'\n'"pvol = \"$B/prod/hbfs/hb0\""
    hbd_config standby standby-a standby prod-a $((base + 11)) $((base + 10)) "$interval" "$timeout" \
        "[[mirrors]]"$'\n'"name = \"hb0\""$'\n'"svol = \"$B/standby/hbfs/hb0\"" "hook = \"echo \$(date +%s%N) \$HBD_SILENT_FOR_MS >> $hook\""
    start_hbd standby
    local times=() silences=()
    for _ in $(seq 1 "$trials"); do
        [[ -n "${mirrord_pid[prod]:-}" ]] && kill -0 "${mirrord_pid[prod]}" 2>/dev/null || start_mirrord prod
        start_hbd prod
        hbctl --socket "$B/standby/hbd.sock" hb rearm >/dev/null
        until standby_sees_production_armed; do sleep 0.02; done
        local before; before=$(wc -l < "$hook")
        local t0; t0=$(date +%s%N)
        kill -9 "${hbd_pid[prod]}" "${mirrord_pid[prod]}"
        wait "${hbd_pid[prod]}" "${mirrord_pid[prod]}" 2>/dev/null || true
        mirrord_pid[prod]=""
        until [[ $(wc -l < "$hook") -gt $before ]]; do sleep 0.01; done
        local t1 silent; read -r t1 silent < <(tail -1 "$hook")
        times+=($(( (t1 - t0) / 1000000 )))
        silences+=("$silent")
        start_mirrord prod
        wait_pair hb0 PAIR
    done
    stop_hbd standby
    local runs; runs=$(wc -l < "$hook")
    read -r mn md mx < <(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[1], a[int((NR+1)/2)], a[NR]}')
    read -r smn smx < <(printf '%s\n' "${silences[@]}" | sort -n | awk '{a[NR]=$1} END {print a[1], a[NR]}')
    row "detect_${interval}_${timeout}" "failure detection, interval ${interval} ms / timeout ${timeout} ms (kill -9 -> hook), median of $trials" \
        "$md" "$((interval + timeout))" ms "min $mn, max $mx; silence at decision $smn-$smx ms; hook runs $runs for $trials kills (false failovers: $((runs - trials)))"
}
if stage detect; then
log "failure detection: $trials trials at 1 s / 3 s"
detect 1000 3000
log "failure detection: $trials trials at 100 ms / 500 ms"
detect 100 500
fi

# ---- the table ----------------------------------------------------------------
python3 - "$results" "$out_json" <<'PY'
import json, platform, re, subprocess, sys, datetime
rows = []
for line in open(sys.argv[1]):
    key, what, ours, limit, unit, note = line.rstrip("\n").split("\t")
    ours, limit = float(ours), float(limit)
    rows.append(dict(key=key, what=what, ours=ours, limit=limit, unit=unit, ratio=round(ours / limit, 2) if limit else None, note=note))
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
machine = dict(cpu=cpu, cores=int(subprocess.check_output(["nproc"]).decode()), kernel=platform.release(),
               date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
# The write-path issue's targets, each figure beside its limit from this run.
by = {r["key"]: r for r in rows}
def ours(key): return by[key]["ours"] if key in by else None
def p999(key):
    m = re.search(r"p99\.9 ([0-9.]+)", by[key]["note"]) if key in by else None
    return float(m.group(1)) if m else None
def target(what, figure, limit, most=None, least=None, unit=""):
    if figure is None or limit is None or not limit:
        return dict(target=what, figure=None, limit=None, ratio=None, verdict="not run")
    ratio = round(figure / limit, 2)
    met = (most is None or ratio <= most) and (least is None or ratio >= least)
    return dict(target=what, figure=round(figure, 1), limit=round(limit, 1), unit=unit, ratio=ratio, verdict="met" if met else "missed")
def add(*xs):
    return None if any(x is None for x in xs) else sum(xs)
def us_per_mib(gbps):
    return 1048576 / (gbps * 1e3) if gbps else None
targets = [
    target("sync 4 KiB p50 <= 1.15 x (unpaired hbfs p50 + TCP round trip p50)", ours("lat_sync_p50"), add(ours("hbfs_solo_p50"), ours("tcp_rtt_p50")), most=1.15, unit="us"),
    *[target(f"{m} 4 KiB p99.9 <= 5 x its p50", p999(f"lat_{m}_p50"), ours(f"lat_{m}_p50") and 5 * ours(f"lat_{m}_p50"), most=1.0, unit="us") for m in ("sync", "semi-sync", "adaptive")],
    # Not a target: the same rule applied to the raw disk, the floor every mode writes through.
    target("(for reference) raw disk 4 KiB p99.9 <= 5 x its p50", ours("raw_write_p999"), ours("raw_write_p50") and 5 * ours("raw_write_p50"), most=1.0, unit="us"),
    target("adaptive 4 KiB p50 <= 1.10 x unpaired hbfs p50", ours("lat_adaptive_p50"), ours("hbfs_solo_p50"), most=1.10, unit="us"),
    target("(for reference) adaptive 4 KiB p50, the standby stopped, <= 1.10 x unpaired hbfs p50", ours("lat_adaptive_alone_p50"), ours("hbfs_solo_p50"), most=1.10, unit="us"),
    *[target(f"sequential 1 MiB qd 8, {m} >= 80% of one of two streams", ours(f"seq_qd8_{m}"), ours("shared_seq"), least=0.8, unit="MB/s") for m in ("sync", "semi-sync", "adaptive")],
    target("resync, 1 GiB, 10% dirty >= 80% of the disk's concurrent read + write", ours("resync"), ours("shared_rw"), least=0.8, unit="MB/s"),
    target("resync, 1 GiB, 10% dirty, hbd at 100 ms heartbeats >= 80% of the disk's concurrent read + write", ours("resync_hbd"), ours("shared_rw"), least=0.8, unit="MB/s"),
    target("heartbeat propagation p50 <= 1.5 x (raw write + round trip)", ours("prop_p50"), add(ours("raw_write_p50"), ours("tcp_rtt_p50")), most=1.5, unit="us"),
    target("heartbeat propagation p99 during a copy <= 2 x idle p99", ours("prop_resync_p99"), by.get("prop_resync_p99", {}).get("limit"), most=1.0, unit="us"),
    target("sealing: sync 4 KiB p50, sealed <= 1.05 x unsealed ([link] seal = false, same run)", ours("seal_sync4k_p50_us"), ours("unsealed_sync4k_p50_us"), most=1.05, unit="us"),
    *[target(f"sealing: sequential 1 MiB{q}, sealed >= 0.90 x unsealed (same run)", ours(f"seal_seq1m{k}_mbs"), ours(f"unsealed_seq1m{k}_mbs"), least=0.90, unit="MB/s") for q, k in (("", ""), (" qd 8", "_qd8"))],
    # Not a target: the AEAD's own time for a 1 MiB frame (seal at one site + open at the other) against an unsealed MiB's time.
    target("(for reference) AEAD alone, seal + open of 1 MiB <= 10% of an unsealed 1 MiB write's time at qd 8", add(us_per_mib(ours("aead_seal_gbps_1m")), us_per_mib(ours("aead_open_gbps_1m"))), us_per_mib(ours("unsealed_seq1m_qd8_mbs") and ours("unsealed_seq1m_qd8_mbs") / 1000), most=0.10, unit="us"),
    target("remote hbfs: 4 KiB O_DSYNC p50 <= 1.2 x (local hbfs p50 + host round trip p50, same run)", ours("host_remote_dsync4k_p50_us"), by.get("host_remote_dsync4k_p50_us", {}).get("limit"), most=1.2, unit="us"),
    target("remote hbfs: 4 KiB O_DSYNC p99 <= 1.2 x (local hbfs p99 + host round trip p99, same run)", ours("host_remote_dsync4k_p99_us"), by.get("host_remote_dsync4k_p99_us", {}).get("limit"), most=1.2, unit="us"),
    target("remote hbfs: sequential 1 MiB >= 80% of the local hbfs (same run)", ours("host_remote_seq1m_mbs"), ours("host_local_seq1m_mbs"), least=0.8, unit="MB/s"),
    *[target(f"hbd + mirrord at {site}, 100 mirrors at 1 Hz < 1% of a core", ours(f"cost_{site}"), 1.0, most=1.0, unit="%") for site in ("prod", "standby")],
    *[target(f"hbd + mirrord at {site}, 1,000 mirrors at 1 Hz < 5% of a core", ours(f"cost1000_{site}"), 5.0, most=1.0, unit="%") for site in ("prod", "standby")],
]
json.dump(dict(machine=machine, rows=rows, targets=targets), open(sys.argv[2], "w"), indent=2)
print(f"Machine: {machine['cpu']}, {machine['cores']} cores, Linux {machine['kernel']}, {machine['date']}\n")
print("| what | ours | limit (same run) | ratio | notes |")
print("|---|---|---|---|---|")
for r in rows:
    print(f"| {r['what']} | {r['ours']:g} {r['unit']} | {r['limit']:g} {r['unit']} | {r['ratio']} | {r['note']} |")
print("\n| target | figure | limit (same run) | ratio | verdict |")
print("|---|---|---|---|---|")
for t in targets:
    if t["figure"] is None:
        print(f"| {t['target']} | | | | not run |")
    else:
        print(f"| {t['target']} | {t['figure']:g} {t['unit']} | {t['limit']:g} {t['unit']} | {t['ratio']} | {t['verdict']} |")
print(f"\nJSON: {sys.argv[2]}")
PY
