# Sourced by scripts/bench.sh in its seal stage (its helpers, its limits and
# the sites prod and standby, whose link seals every frame: the default):
# what sealing the link costs. A second pair of sites, in the folders uprod
# and ustandby (the same site names and settings, two more ports), runs with
# `[link] seal = false`, which mirrord accepts only on a loopback address.
# Each pair of sites gets a sync data pair of 256 MiB, every block written
# once first. Rounds alternate which pair of sites goes first (the machine's
# drift falls on both alike); each measures 4 KiB O_DIRECT writes at qd1
# (hbbench fuse: p50, and CPU per write at both sites) and sequential 1 MiB
# writes at qd 1 and qd 8 (fio, as the seq stage), with mirrord's CPU per MiB
# at both sites. Rows give the medians over the rounds, and the notes the
# median of the per-round ratios (each pair measured side by side).
# shellcheck shell=bash

log "sealing: a second pair of sites with [link] seal = false"
site_config prod $((base + 2)) standby $((base + 3)) uprod "seal = false"
site_config standby $((base + 3)) prod $((base + 2)) ustandby "seal = false"
start_mirrord ustandby
start_mirrord uprod
until [[ $(grep -c "remote link up" "$B/uprod/mirrord.log") -ge 2 ]]; do sleep 0.05; done
# The rows compare what they say: every session of uprod unsealed, of prod sealed.
links_are() { # folder sealed
    local lines; lines=$(grep "remote link up" "$B/$1/mirrord.log")
    [[ -n "$lines" ]] && ! grep -qv "sealed=$2" <<< "$lines"
}
links_are uprod false || { echo "bench: uprod's link sessions are not all unsealed:" >&2; grep "remote link up" "$B/uprod/mirrord.log" >&2; exit 1; }
links_are prod true || { echo "bench: prod's link sessions are not all sealed:" >&2; grep "remote link up" "$B/prod/mirrord.log" >&2; exit 1; }

at() { local dir=$1; shift; hbctl --socket "$B/$dir/mirrord.sock" "$@"; }
drained() { until at "$1" pair status slat --json | grep -q '"pending_bytes": 0'; do sleep 0.05; done; }
for sites in "prod standby" "uprod ustandby"; do
    read -r a b <<< "$sites"
    at "$a" volume create slat --size 256MiB >/dev/null
    at "$b" volume create slat --size 256MiB >/dev/null
    at "$a" pair create slat --pvol slat --peer standby --mode sync --kind data >/dev/null
    until at "$a" pair status slat --json | grep -q '"state": "PAIR"'; do sleep 0.05; done
    # A first write to a block costs the filesystem more: written once at both sites.
    dd if=/dev/zero of="$B/$a/hbfs/slat" bs=1M count=256 oflag=direct conv=notrunc status=none
    drained "$a"
done

seal_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# seal_seq FOLDER PEER_FOLDER QD: one fio run of sequential 1 MiB writes;
# prints MB/s and mirrord's CPU microseconds per MiB at each site.
seal_seq() {
    local pa=${mirrord_pid[$1]} pb=${mirrord_pid[$2]} ta tb engine=psync json
    [[ $3 -gt 1 ]] && engine=libaio
    ta=$(seal_ticks "$pa"); tb=$(seal_ticks "$pb")
    json=$(fio --output-format=json --name=b --ioengine="$engine" --direct=1 --iodepth="$3" --time_based --runtime="$runtime" \
        --filename="$B/$1/hbfs/slat" --size=256M --rw=write --bs=1M)
    python3 -c 'import json,sys
w = json.loads(sys.argv[1])["jobs"][0]["write"]
mib, hz = w["io_bytes"] / 2**20, float(sys.argv[4])
print(round(w["bw_bytes"] / 1e6, 1), *(round(int(t) / hz * 1e6 / mib, 1) for t in sys.argv[2:4]))' \
        "$json" $(( $(seal_ticks "$pa") - ta )) $(( $(seal_ticks "$pb") - tb )) "$(getconf CLK_TCK)"
    drained "$1"
}

n=${quick:+500}; n=${n:-2500}
sync_rounds=${quick:+4}; sync_rounds=${sync_rounds:-12}
rounds=${quick:+2}; rounds=${rounds:-5}
: > "$B/seal.jsonl"
cfg_sites() { if [[ $1 == sealed ]]; then echo "prod standby"; else echo "uprod ustandby"; fi; }
order_of() { if (( $1 % 2 )); then echo "sealed unsealed"; else echo "unsealed sealed"; fi; }
record() { # cfg round kind json
    python3 -c 'import json,sys; print(json.dumps(dict(cfg=sys.argv[1], round=int(sys.argv[2]), kind=sys.argv[3], **json.loads(sys.argv[4]))))' "$@" >> "$B/seal.jsonl"
}
# Many short rounds: a 4 KiB p50 drifts by tens of percent in a minute here,
# and a pair of rounds side by side drifts least.
log "sealing: $sync_rounds rounds of $n sync 4 KiB writes, sealed and unsealed in turn"
for round in $(seq 1 "$sync_rounds"); do
    for cfg in $(order_of "$round"); do
        read -r a b <<< "$(cfg_sites "$cfg")"
        sync=$(hbbench fuse --file "$B/$a/hbfs/slat" --op write --count "$n" --daemon-pid "${mirrord_pid[$a]}" --peer-pid "${mirrord_pid[$b]}")
        record "$cfg" "$round" sync "$sync"
        log "sealing: round $round, $cfg, 4 KiB sync: $(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print("p50", d["latency"]["p50_us"], "us, mirrord CPU per write", d["daemon_cpu_us"], "us at prod +", d["peer_cpu_us"], "us at standby")' "$sync")"
        drained "$a"
    done
done
log "sealing: $rounds rounds of sequential 1 MiB writes at qd 1 and qd 8, sealed and unsealed in turn"
for round in $(seq 1 "$rounds"); do
    for cfg in $(order_of "$round"); do
        read -r a b <<< "$(cfg_sites "$cfg")"
        for qd in 1 8; do
            read -r mb cpa cpb < <(seal_seq "$a" "$b" "$qd")
            record "$cfg" "$round" "seq$qd" "{\"mbs\": $mb, \"cpu_prod\": $cpa, \"cpu_standby\": $cpb}"
            log "sealing: round $round, $cfg, qd $qd: $mb MB/s, mirrord CPU per MiB $cpa us at prod + $cpb us at standby"
        done
    done
done
for dir in uprod ustandby; do kill -TERM "${mirrord_pid[$dir]}"; wait "${mirrord_pid[$dir]}" 2>/dev/null || true; done
umount -l "$B/uprod/hbfs" "$B/ustandby/hbfs" 2>/dev/null || true
at prod pair delete slat >/dev/null; at prod volume delete slat >/dev/null; at standby volume delete slat >/dev/null

# Rows: the unsealed figure against the stage's usual limit, the sealed one
# against the unsealed (ratio = sealed / unsealed); the AEAD's own time per
# frame (the aead_* rows) in the notes.
python3 - "$B/seal.jsonl" "$rounds" "$sync_limit" "$seq_limit" "$shared_seq" "$B/aead.json" <<'PY' | while IFS=$'\t' read -r key what ours limit unit note; do row "$key" "$what" "$ours" "$limit" "$unit" "$note"; done
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
rounds, sync_limit, seq_limit, shared_seq = int(sys.argv[2]), *map(float, sys.argv[3:6])
aead = {c["size"]: c for c in json.load(open(sys.argv[6]))["aead"]}
def median(xs):
    xs, mid = sorted(xs), len(xs) // 2
    return round(xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2, 1)
def vals(cfg, kind, f):
    return [f(r) for r in runs if r["cfg"] == cfg and r["kind"] == kind]
def med(cfg, kind, f):
    return median(vals(cfg, kind, f))
def spread(cfg, kind, f):
    xs = vals(cfg, kind, f)
    return f"{len(xs)} rounds, {min(xs):g}-{max(xs):g}"
def paired(kind, f):
    """The median over rounds of sealed / unsealed, each pair measured side by side."""
    by = {(r["cfg"], r["round"]): f(r) for r in runs if r["kind"] == kind}
    ratios = [by["sealed", n] / by["unsealed", n] for (c, n) in by if c == "sealed" and ("unsealed", n) in by]
    return round(median([x * 1000 for x in ratios]) / 1000, 3)
def floor(size):
    c = aead.get(size)
    return f"{round(c['seal']['us'] + c['open']['us'], 1)} us" if c else "not measured"
label = {"sealed": "sealed link (the default)", "unsealed": "unsealed link ([link] seal = false, loopback only)"}
cfgs = ("unsealed", "sealed")
p50 = lambda r: r["latency"]["p50_us"]
sync = {c: med(c, "sync", p50) for c in cfgs}
for c in cfgs:
    p99 = med(c, "sync", lambda r: r["latency"]["p99_us"])
    cpu = [med(c, "sync", lambda r, k=k: r[k]) for k in ("client_cpu_us", "daemon_cpu_us", "peer_cpu_us")]
    note = f"median of {spread(c, 'sync', p50)}; p99 {p99}; CPU per write {cpu[0]} us client + {cpu[1]} us mirrord at prod + {cpu[2]} us at standby; "
    if c == "unsealed":
        limit, note = sync_limit, note + "limit: raw write + round trip"
    else:
        limit = sync["unsealed"]
        ratio = paired("sync", p50)
        note += (f"limit: unsealed in this run: sealing costs {round((sync['sealed'] / limit - 1) * 100, 1)}% (target <= 5%); "
                 f"median of the per-round ratios {ratio} ({round((ratio - 1) * 100, 1)}%); AEAD alone, seal + open of the 4 KiB frame: {floor(4096)}")
    print("\t".join([f"{'seal' if c == 'sealed' else 'unsealed'}_sync4k_p50_us", f"4 KiB write p50 through hbfs, sync, {label[c]}", str(sync[c]), str(limit), "us", note]))
for qd, base, basis in ((1, seq_limit, "min(raw disk, TCP)"), (8, shared_seq, "one of two concurrent streams on the shared disk")):
    kind, mbs = f"seq{qd}", lambda r: r["mbs"]
    mb = {c: med(c, kind, mbs) for c in cfgs}
    for c in cfgs:
        cpu = [med(c, kind, lambda r, k=k: r[k]) for k in ("cpu_prod", "cpu_standby")]
        note = f"median of {spread(c, kind, mbs)}; mirrord CPU per MiB {cpu[0]} us at prod + {cpu[1]} us at standby; "
        if c == "unsealed":
            limit, note = base, note + f"limit: {basis}"
        else:
            limit = mb["unsealed"]
            ratio = paired(kind, mbs)
            note += (f"limit: unsealed in this run: sealing costs {round((1 - mb['sealed'] / limit) * 100, 1)}% (target <= 10%); "
                     f"median of the per-round ratios {ratio} ({round((1 - ratio) * 100, 1)}%); AEAD alone, seal + open of 1 MiB: {floor(1 << 20)}")
        key = f"{'seal' if c == 'sealed' else 'unsealed'}_seq1m{'_qd8' if qd == 8 else ''}_mbs"
        print("\t".join([key, f"sequential 1 MiB write{' at qd 8' if qd == 8 else ''} through hbfs, sync, {label[c]}", str(mb[c]), str(limit), "MB/s", note]))
PY
