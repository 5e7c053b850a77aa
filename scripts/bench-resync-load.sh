# Sourced by scripts/bench.sh in its resync stage (its helpers, the sites and
# the pair "big" of 1 GiB in PAIR): the resync of 10% of "big" again, beside
# hbd at 100 ms heartbeats both ways on this disk (heartbeat I/O is no host I/O
# that competes with a copy), then beside a host's 4 KiB sync writes to
# another data pair on this disk (the copy's rate, and the host's write
# latency beside it against its idle write just before).
# shellcheck shell=bash
dirty_big() {
    prod pair split big >/dev/null
    for i in $(seq 0 10 1020); do
        dd if=/dev/urandom of="$B/prod/hbfs/big" bs=1M count=1 seek="$i" oflag=direct conv=notrunc status=none
    done
    sleep 0.2
}
# copy_watch PAIR: resyncs PAIR and polls its copy until PAIR; prints the
# bytes copied, its own rate (MB/s) and what held it back while it ran (the
# values seen; "-" if no poll saw it running).
copy_watch() {
    python3 - "$B/prod/mirrord.sock" "$1" <<'PY'
import json, subprocess, sys
hbctl = ["hbctl", "--socket", sys.argv[1], "pair"]
subprocess.run(hbctl + ["resync", sys.argv[2]], check=True, stdout=subprocess.DEVNULL)
seen = set()
while True:
    p = json.loads(subprocess.check_output(hbctl + ["status", sys.argv[2], "--json"]))[0]
    if p["copy"]["running"]:
        seen.add(p["copy"]["held_by"])
    if p["state"] == "PAIR" and not p["copy"]["running"]:
        break
c = p["copy"]
print(c["copied_bytes"], round(c["rate_bytes_per_s"] / 1e6, 1), "+".join(sorted(seen)) or "-")
PY
}
log "the same resync beside hbd at 100 ms heartbeats both ways"
volume_pair hbr0 64KiB sync heartbeat
prod volume create hbr1 --size 64KiB >/dev/null
standby volume create hbr1 --size 64KiB >/dev/null
standby pair create hbr1 --pvol hbr1 --peer prod --kind heartbeat >/dev/null
wait_pair hbr1 PAIR
hbd_config prod prod-a production standby-a $((base + 10)) $((base + 11)) 100 500 \
    "$(printf '[[mirrors]]\nname = "hbr0"\npvol = "%s"\n[[mirrors]]\nname = "hbr1"\nsvol = "%s"' "$B/prod/hbfs/hbr0" "$B/prod/hbfs/hbr1")"
hbd_config standby standby-a standby prod-a $((base + 11)) $((base + 10)) 100 500 \
    "$(printf '[[mirrors]]\nname = "hbr0"\nsvol = "%s"\n[[mirrors]]\nname = "hbr1"\npvol = "%s"' "$B/standby/hbfs/hbr0" "$B/standby/hbfs/hbr1")"
start_hbd standby
start_hbd prod
until hbctl --socket "$B/prod/hbd.sock" hb status --json | tr -d ' \n' | grep -q '"remote_group_via_mirrors":"ALIVE"'; do sleep 0.05; done
dirty_big
read -r copied hbd_mb hbd_held < <(copy_watch big)
row resync_hbd "resync, 1 GiB volume, 10% dirty ($((copied >> 20)) MiB), hbd at 100 ms heartbeats both ways on the same disk" "$hbd_mb" "$shared_rw" MB/s "limit: the shared_rw row (target: ratio >= 0.8); held by while it ran: $hbd_held; the idle resync row: $resync_mb MB/s"
stop_hbd prod; stop_hbd standby
for hb in hbr0 hbr1; do
    for site in prod standby; do hbctl --socket "$B/$site/mirrord.sock" pair uninstall "$hb" >/dev/null 2>&1 || true; done
done
prod pair delete hbr0 >/dev/null; standby pair delete hbr1 >/dev/null
for hb in hbr0 hbr1; do prod volume delete "$hb" >/dev/null; standby volume delete "$hb" >/dev/null; done

log "the same resync beside a host's 4 KiB sync writes to another data pair on the disk"
volume_pair hostw 256MiB sync data
dirty_big
# One fio run, every write's latency logged: the writes before the resync are
# the idle host write, those from the command to PAIR seen the ones beside the copy.
t_fio=$(date +%s%N)
fio --name=w --ioengine=psync --direct=1 --iodepth=1 --time_based --runtime=120 --filename="$B/prod/hbfs/hostw" --size=256M \
    --rw=randwrite --bs=4k --write_lat_log="$B/hostw" --log_avg_msec=0 --output="$B/hostw.json" --output-format=json &
fio_pid=$!
pids+=("$fio_pid")
sleep 3
t_copy=$(date +%s%N)
read -r copied hostw_mb hostw_held < <(copy_watch big)
t_pair=$(date +%s%N)
sleep 1
kill -INT "$fio_pid"; wait "$fio_pid" 2>/dev/null || true
read -r idle50 idle99 busy50 busy99 busy_n < <(python3 - "$B/hostw_clat.1.log" $(( (t_copy - t_fio) / 1000000 )) $(( (t_pair - t_fio) / 1000000 )) <<'PY'
import sys
start, end = int(sys.argv[2]), int(sys.argv[3])
idle, busy = [], []
for line in open(sys.argv[1]):
    ms, ns = (int(x) for x in line.split(",")[:2])
    # fio starts its clock a little after the command: the first second is warm-up.
    (idle if 1000 <= ms < start else busy if start <= ms <= end else []).append(ns / 1000)
def pct(xs, q):
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(q * len(xs)))], 1) if xs else 0
print(pct(idle, 0.5), pct(idle, 0.99), pct(busy, 0.5), pct(busy, 0.99), len(busy))
PY
)
row resync_hostw "resync, 1 GiB volume, 10% dirty ($((copied >> 20)) MiB), a host writing 4 KiB sync to another data pair on the disk" "$hostw_mb" "$shared_rw" MB/s "limit: the shared_rw row; held by while it ran: $hostw_held; the idle resync row: $resync_mb MB/s"
row resync_hostw_p50 "host 4 KiB sync write p50 beside that resync ($busy_n writes)" "$busy50" "$idle50" us "limit: the same host's idle write p50 just before (p99 $idle99); ratio: how much slower the host's writes were beside the copy"
row resync_hostw_p99 "host 4 KiB sync write p99 beside that resync" "$busy99" "$idle99" us "limit: the same host's idle write p99 just before; the controller's target is the mean at 2 x idle"
prod pair delete hostw >/dev/null; prod volume delete hostw >/dev/null; standby volume delete hostw >/dev/null
