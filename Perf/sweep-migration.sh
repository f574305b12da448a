#!/usr/bin/env bash
# Migration sweep (issues 5 and 14): a 4 GiB synthetic guest with an ib-sw VF, migrated by
# real `rdmig dest` + `rdmig source` processes on loopback at several dirty rates over 1, 2 and
# 4 page channels; records total time, downtime, downtime / lower bound (final bytes at the
# link rate a burst over all channels measured at setup), pre-copy bandwidth and its ratio to
# `rdmig bench transport` at 64 KiB x 128 measured in the same run (before and after the
# migrations), medians of RUNS runs, into Perf/README.md between the markers below.
#   Perf/sweep-migration.sh [RUNS]        (default 3; needs ~9 GiB of free memory)
#   CHANNELS="1 2 4" RATES="0 256MiB/s 1GiB/s" GUEST=4GiB WORKING_SET=1GiB
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
guest=${GUEST:-4GiB}
working_set=${WORKING_SET:-1GiB}
rates=(${RATES:-0 256MiB/s 1GiB/s})
channel_counts=(${CHANNELS:-1 2 4})
swift build -c release --product rdmig >/dev/null
rdmig=.build/release/rdmig
key=$(mktemp -d)/psk
$rdmig keygen "$key" >/dev/null
results=$(mktemp)
transport=$(mktemp)
bench_transport() {
    $rdmig bench transport --backend tcp --message-size 64KiB --queue-depth 128 --total 4GiB --runs 3 --json 2>/dev/null \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["bytes-per-second"])' >>"$transport"
}
bench_transport

for channels in "${channel_counts[@]}"; do
for rate in "${rates[@]}"; do
    for run in $(seq 1 "$runs"); do
        errors=$(mktemp)
        $rdmig dest --listen 127.0.0.1:0 --key-file "$key" 2>"$errors" >/dev/null &
        dest=$!
        for _ in $(seq 1 100); do grep -q "listening on" "$errors" && break; sleep 0.1; done
        port=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$errors" | head -1)
        json=$($rdmig source --connect "127.0.0.1:$port" --key-file "$key" --guest-size "$guest" \
            --dirty-rate "$rate" --working-set "$working_set" --vf ib-sw:qps=1000 --channels "$channels" --json 2>/dev/null || true)
        wait "$dest" || true
        python3 - "$rate" "$json" "$channels" >>"$results" <<'PY'
import json, sys
rate, text, channels = sys.argv[1], sys.argv[2], int(sys.argv[3])
try:
    r = json.loads(text)
except Exception:
    print(json.dumps({"rate": rate, "channels": channels, "status": "no report"})); sys.exit()
print(json.dumps({"rate": rate, "channels": channels, "status": r["status"], "total": r["total-time"], "downtime": r["downtime"],
                  "setup": r["setup-time"], "link": r.get("link-bandwidth", 0), "precopy": r.get("precopy-bandwidth", 0),
                  "bound": r["downtime-lower-bound"], "iterations": r["iterations"], "verified": r["verified"],
                  "throttle": r.get("cpu-throttle-percentage", 0), "final": r.get("final-bytes", 0),
                  "bandwidth": r.get("bandwidth", 0), "switchover-bandwidth": r.get("switchover-bandwidth", 0)}))
PY
        echo "channels $channels rate $rate run $run: $(tail -1 "$results")" >&2
    done
done
done
bench_transport

table=$(python3 - "$results" "$guest" "$working_set" "$runs" "$transport" <<'PY'
import json, statistics, sys, subprocess, datetime, platform, os
rows = [json.loads(line) for line in open(sys.argv[1])]
guest, ws, runs = sys.argv[2], sys.argv[3], sys.argv[4]
transport = [float(line) for line in open(sys.argv[5]) if line.strip()]
bench = statistics.median(transport) if transport else 0
load = open("/proc/loadavg").read().split()[:3]
out = [f"Measured {datetime.date.today()} on {os.cpu_count()} cores, Linux {platform.release()}, tcp backend over loopback "
       f"(release build): {guest} guest, {ws} working set, uniform pattern, ib-sw VF with 1000 QPs, downtime limit 50 ms, "
       f"median of {runs} runs; load average at the end {' '.join(load)}. `bench transport` 64 KiB x 128 in the same run "
       f"(before and after): {', '.join(f'{t / 1e9:.2f}' for t in transport)} GB/s.", "",
       "| channels | dirty rate | completed+verified | total time | setup | downtime | final bytes | link (burst) | pre-copy bandwidth | pre-copy / bench transport | lower bound | downtime / bound | iterations | throttle |",
       "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
for channels, rate in dict.fromkeys((r.get("channels", 1), r["rate"]) for r in rows):
    rs = [r for r in rows if r["rate"] == rate and r.get("channels", 1) == channels]
    ok = [r for r in rs if r.get("status") == "completed" and r.get("verified")]
    if not ok:
        out.append(f"| {channels} | {rate} | 0/{len(rs)} | | | | | | | | | | | |"); continue
    med = lambda k: statistics.median(r[k] for r in ok)
    # A bound under 1 ms (an idle guest's final pass is empty) makes the ratio meaningless.
    bounded = [r["downtime"] / r["bound"] for r in ok if r["bound"] >= 1]
    ratio = f"{statistics.median(bounded):.2f}" if bounded else "n/a (bound < 1 ms)"
    mb = lambda k: f"{med(k) / 1e6:.0f} MB/s" if med(k) > 0 else "—"
    share = f"{med('precopy') / bench:.2f}" if bench > 0 and med('precopy') > 0 else "—"
    out.append(f"| {channels} | {rate} | {len(ok)}/{len(rs)} | {med('total')/1000:.2f} s | {med('setup'):.0f} ms | {med('downtime'):.1f} ms | "
               f"{med('final') / 2**20:.1f} MiB | {mb('link')} | {mb('precopy')} | {share} | {med('bound'):.1f} ms | "
               f"{ratio} | {med('iterations'):.0f} | {med('throttle'):.0f}% |")
print("\n".join(out))
PY
)
python3 - "$table" <<'PY'
import sys, re, os
path = "Perf/README.md"
text = open(path).read() if os.path.exists(path) else "# rdmig performance\n"
begin, end = "<!-- migration-sweep:begin -->", "<!-- migration-sweep:end -->"
block = f"{begin}\n{sys.argv[1]}\n{end}"
if begin in text:
    text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
else:
    text += f"\n## Migration sweep (Perf/sweep-migration.sh)\n\n{block}\n"
open(path, "w").write(text)
PY
echo "$table"
