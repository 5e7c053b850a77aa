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
# at both sites. Rows give the medians over the rounds.
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

n=${quick:+1000}; n=${n:-10000}
rounds=${quick:+2}; rounds=${rounds:-5}
: > "$B/seal.jsonl"
for round in $(seq 1 "$rounds"); do
    order="sealed unsealed"; (( round % 2 == 0 )) && order="unsealed sealed"
    for cfg in $order; do
        a=prod b=standby; [[ $cfg == unsealed ]] && { a=uprod b=ustandby; }
        log "sealing: round $round of $rounds, $cfg"
        sync=$(hbbench fuse --file "$B/$a/hbfs/slat" --op write --count "$n" --daemon-pid "${mirrord_pid[$a]}" --peer-pid "${mirrord_pid[$b]}")
        drained "$a"
        read -r mb1 cpa1 cpb1 < <(seal_seq "$a" "$b" 1)
        read -r mb8 cpa8 cpb8 < <(seal_seq "$a" "$b" 8)
        python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(json.dumps(dict(cfg=sys.argv[2], sync=d, seq1=[float(x) for x in sys.argv[3:6]], seq8=[float(x) for x in sys.argv[6:9]])))' \
            "$sync" "$cfg" "$mb1" "$cpa1" "$cpb1" "$mb8" "$cpa8" "$cpb8" >> "$B/seal.jsonl"
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
def med(cfg, f):
    xs = sorted(f(r) for r in runs if r["cfg"] == cfg)
    mid = len(xs) // 2
    return round(xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2, 1)
def spread(cfg, f):
    xs = [f(r) for r in runs if r["cfg"] == cfg]
    return f"{min(xs):g}-{max(xs):g}"
def floor(size):
    c = aead.get(size)
    return f"{round(c['seal']['us'] + c['open']['us'], 1)} us" if c else "not measured"
label = {"sealed": "sealed link (the default)", "unsealed": "unsealed link ([link] seal = false, loopback only)"}
cfgs = ("unsealed", "sealed")
p50 = {c: med(c, lambda r: r["sync"]["latency"]["p50_us"]) for c in cfgs}
for c in cfgs:
    p99 = med(c, lambda r: r["sync"]["latency"]["p99_us"])
    cpu = [med(c, lambda r, k=k: r["sync"][k]) for k in ("client_cpu_us", "daemon_cpu_us", "peer_cpu_us")]
    note = f"median of {rounds} rounds ({spread(c, lambda r: r['sync']['latency']['p50_us'])}); p99 {p99}; CPU per write {cpu[0]} us client + {cpu[1]} us mirrord at prod + {cpu[2]} us at standby; "
    if c == "unsealed":
        limit, note = sync_limit, note + "limit: raw write + round trip"
    else:
        limit = p50["unsealed"]
        note += f"limit: unsealed in this run: sealing costs {round((p50['sealed'] / limit - 1) * 100, 1)}% (target <= 5%); AEAD alone, seal + open of the 4 KiB frame: {floor(4096)}"
    print("\t".join([f"{'seal' if c == 'sealed' else 'unsealed'}_sync4k_p50_us", f"4 KiB write p50 through hbfs, sync, {label[c]}", str(p50[c]), str(limit), "us", note]))
for qd, k, base, basis in ((1, "seq1", seq_limit, "min(raw disk, TCP)"), (8, "seq8", shared_seq, "one of two concurrent streams on the shared disk")):
    mb = {c: med(c, lambda r: r[k][0]) for c in cfgs}
    for c in cfgs:
        cpu = [med(c, lambda r, i=i: r[k][i]) for i in (1, 2)]
        note = f"median of {rounds} rounds ({spread(c, lambda r: r[k][0])}); mirrord CPU per MiB {cpu[0]} us at prod + {cpu[1]} us at standby; "
        if c == "unsealed":
            limit, note = base, note + f"limit: {basis}"
        else:
            limit = mb["unsealed"]
            note += f"limit: unsealed in this run: sealing costs {round((1 - mb['sealed'] / limit) * 100, 1)}% (target <= 10%); AEAD alone, seal + open of 1 MiB: {floor(1 << 20)}"
        key = f"{'seal' if c == 'sealed' else 'unsealed'}_seq1m{'_qd8' if qd == 8 else ''}_mbs"
        print("\t".join([key, f"sequential 1 MiB write{' at qd 8' if qd == 8 else ''} through hbfs, sync, {label[c]}", str(mb[c]), str(limit), "MB/s", note]))
PY
