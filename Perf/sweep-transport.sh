#!/usr/bin/env bash
# Sweeps `rdmig bench transport` over message sizes and queue depths and writes the table
# into Perf/README.md (between the sweep-transport markers; re-running replaces it).
#
# Each point is one invocation: the rdmig transport and the plain TCP socket pump run
# alternately RUNS times between the same two processes, and the medians are compared.
# Raw results (one JSON object per point) go to Perf/results/sweep-transport.jsonl.
#
# Environment (defaults in brackets):
#   SIZES   message sizes               [4KiB 16KiB 64KiB 256KiB 1MiB 4MiB]
#   DEPTHS  queue depths                [16 128]
#   TOTAL   bytes per run               [1GiB]
#   RUNS    runs of each, interleaved   [7]
#   BACKEND tcp or verbs                [tcp]
#   HOST    address of both processes   [127.0.0.1]
#   EXTRA   more `bench transport` options, e.g. "--buffers pool"
#   MARKER  README section and results file name [sweep-transport]; e.g.
#           EXTRA="--baseline-buffer ring" MARKER=sweep-transport-ring for the footprint check
#   REPORT_ONLY=1  rewrite the table from the last results without measuring
#   RECHECK re-measure each point that misses the target this many more times [2]; the
#           table keeps the first measurement, the re-measurements are listed under it
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
SIZES=${SIZES:-"4KiB 16KiB 64KiB 256KiB 1MiB 4MiB"}
DEPTHS=${DEPTHS:-"16 128"}
TOTAL=${TOTAL:-1GiB}
RUNS=${RUNS:-11}
BACKEND=${BACKEND:-tcp}
HOST=${HOST:-127.0.0.1}
EXTRA=${EXTRA:-}
RECHECK=${RECHECK:-2}
MARKER=${MARKER:-sweep-transport}

cd "$root"
mkdir -p "$here/results"
results="$here/results/$MARKER.jsonl"
if [[ ${REPORT_ONLY:-0} != 1 ]]; then
echo "building rdmig (release)..." >&2
swift build -c release --product rdmig >&2
rdmig="$(swift build -c release --show-bin-path)/rdmig"

: > "$results"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(date +%s)
# measure SIZE DEPTH ATTEMPT: one invocation, its JSON as one line of $results; prints the
# ratio and whether it counts against the target (>= 64 KiB and below 0.9).
measure() {
    echo "bench transport --message-size $1 --queue-depth $2 --total $TOTAL --runs $RUNS $EXTRA (attempt $3)" >&2
    # shellcheck disable=SC2086 # EXTRA is a list of options
    "$rdmig" bench transport --backend "$BACKEND" --host "$HOST" --message-size "$1" \
        --queue-depth "$2" --total "$TOTAL" --runs "$RUNS" $EXTRA --json \
        | python3 -c '
import json, sys
result = json.load(sys.stdin)
result["attempt"] = int(sys.argv[2])
with open(sys.argv[1], "a") as results:
    results.write(json.dumps(result, sort_keys=True) + "\n")
print("missed" if result["message-size"] >= 64 << 10 and result["ratio"] < 0.9 else "ok")
' "$results" "$3"
}

for size in $SIZES; do
    for depth in $DEPTHS; do
        verdict=$(measure "$size" "$depth" 1)
        for attempt in $(seq 2 $((RECHECK + 1))); do
            [[ $verdict == missed ]] || break
            measure "$size" "$depth" "$attempt" > /dev/null
        done
    done
done
elapsed=$(( $(date +%s) - started ))
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
printf '%s\n' "$elapsed" "$load_before" "$load_after" "$TOTAL" "$RUNS" "$EXTRA" "$(date '+%Y-%m-%d %H:%M %Z')" > "$results.meta"
fi
{ read -r elapsed; read -r load_before; read -r load_after; read -r TOTAL; read -r RUNS; read -r EXTRA; read -r measured_at; } < "$results.meta"

python3 - "$results" "$elapsed" "$load_before" "$load_after" "$TOTAL" "$RUNS" "$EXTRA" "$measured_at" <<'PY' \
    | python3 "$here/readme-section.py" "$here/README.md" "$MARKER"
import json, os, platform, statistics, sys

path, elapsed, load_before, load_after, total, runs, extra, measured_at = sys.argv[1:9]
measured = [json.loads(line) for line in open(path)]
points = [p for p in measured if p.get("attempt", 1) == 1]

def size(n):
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} B"

def rate(bytes_per_second):
    return f"{bytes_per_second / (1 << 30):.2f} GiB/s"

model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
buffers = points[0].get("buffers", "malloc") if points else "?"
baseline = points[0].get("baseline-buffer", "message") if points else "?"
print(f"Measured {measured_at} with `Perf/sweep-transport.sh`"
      + (f" (`{extra}`)" if extra else "") + f": backend `{points[0]['backend'] if points else '?'}`, "
      f"{total} per run, {runs} runs of each side alternately per point, medians; {buffers} buffers; "
      + ("pump buffer: one message per side." if baseline == "message"
         else "pump buffer: a ring as large as the transport's (queue depth × message size) per side.") + "  ")
print(f"Machine: {os.cpu_count()} CPUs ({model}), Linux {platform.release()}; "
      f"load average {load_before} before, {load_after} after (the machine is shared); sweep took {elapsed} s.  ")
print("Target (issue 2): at message sizes >= 64 KiB the tcp backend moves >= 90 % of the plain pump's bytes per second.")
print()
print("| message size | queue depth | rdmig tcp | plain pump | ratio | per-run ratios (min – max) | target |")
print("|---:|---:|---:|---:|---:|:---:|:---:|")
misses = []
for point in points:
    paired = [a / b for a, b in zip(point["bytes-per-second-samples"], point["baseline-bytes-per-second-samples"])]
    applies = point["message-size"] >= 64 << 10
    met = point["ratio"] >= 0.9
    verdict = ("met" if met else "**missed**") if applies else "n/a"
    if applies and not met:
        misses.append(f"{size(point['message-size'])} × {point['queue-depth']} ({point['ratio']:.3f})")
    print(f"| {size(point['message-size'])} | {point['queue-depth']} | {rate(point['bytes-per-second'])} | "
          f"{rate(point['baseline-bytes-per-second'])} | {point['ratio']:.3f} | "
          f"{min(paired):.2f} – {max(paired):.2f} | {verdict} |")
print()
applicable = sum(1 for p in points if p["message-size"] >= 64 << 10)
if misses:
    print(f"Target missed at {len(misses)} of {applicable} points >= 64 KiB: {', '.join(misses)}.")
    print()
    print("Each missed point was measured again right after (same options); all its invocations:")
    print()
    for point in points:
        if point["message-size"] < 64 << 10 or point["ratio"] >= 0.9:
            continue
        all_attempts = [p for p in measured
                        if (p["message-size"], p["queue-depth"]) == (point["message-size"], point["queue-depth"])]
        ratios = [p["ratio"] for p in all_attempts]
        print(f"- {size(point['message-size'])} × {point['queue-depth']}: ratios "
              + ", ".join(f"{r:.3f}" for r in ratios)
              + f" (median {statistics.median(ratios):.3f}; rdmig "
              + ", ".join(f"{p['bytes-per-second'] / (1 << 30):.2f}" for p in all_attempts)
              + " GiB/s; pump "
              + ", ".join(f"{p['baseline-bytes-per-second'] / (1 << 30):.2f}" for p in all_attempts) + " GiB/s)")
else:
    print(f"Target met at all {applicable} points >= 64 KiB.")
PY
echo "table written to $here/README.md; raw results in $results" >&2
