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
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
SIZES=${SIZES:-"4KiB 16KiB 64KiB 256KiB 1MiB 4MiB"}
DEPTHS=${DEPTHS:-"16 128"}
TOTAL=${TOTAL:-1GiB}
RUNS=${RUNS:-7}
BACKEND=${BACKEND:-tcp}
HOST=${HOST:-127.0.0.1}
EXTRA=${EXTRA:-}

cd "$root"
echo "building rdmig (release)..." >&2
swift build -c release --product rdmig >&2
rdmig="$(swift build -c release --show-bin-path)/rdmig"

mkdir -p "$here/results"
results="$here/results/sweep-transport.jsonl"
: > "$results"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(date +%s)
for size in $SIZES; do
    for depth in $DEPTHS; do
        echo "bench transport --message-size $size --queue-depth $depth --total $TOTAL --runs $RUNS $EXTRA" >&2
        # shellcheck disable=SC2086 # EXTRA is a list of options
        "$rdmig" bench transport --backend "$BACKEND" --host "$HOST" --message-size "$size" \
            --queue-depth "$depth" --total "$TOTAL" --runs "$RUNS" $EXTRA --json \
            | python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin), sort_keys=True))' >> "$results"
    done
done
elapsed=$(( $(date +%s) - started ))
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

python3 - "$results" "$elapsed" "$load_before" "$load_after" "$TOTAL" "$RUNS" "$EXTRA" <<'PY' \
    | python3 "$here/readme-section.py" "$here/README.md" sweep-transport
import datetime, json, os, platform, statistics, sys

path, elapsed, load_before, load_after, total, runs, extra = sys.argv[1:8]
points = [json.loads(line) for line in open(path)]

def size(n):
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} B"

def rate(bytes_per_second):
    return f"{bytes_per_second / (1 << 30):.2f} GiB/s"

model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
buffers = points[0].get("buffers", "malloc") if points else "?"
print(f"Measured {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z} with `Perf/sweep-transport.sh`"
      + (f" (`{extra}`)" if extra else "") + f": backend `{points[0]['backend'] if points else '?'}`, "
      f"{total} per run, {runs} runs of each side alternately per point, medians; {buffers} buffers.  ")
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
        misses.append(f"{size(point['message-size'])} × {point['queue-depth']} ({point['ratio']:.2f})")
    print(f"| {size(point['message-size'])} | {point['queue-depth']} | {rate(point['bytes-per-second'])} | "
          f"{rate(point['baseline-bytes-per-second'])} | {point['ratio']:.2f} | "
          f"{min(paired):.2f} – {max(paired):.2f} | {verdict} |")
print()
applicable = sum(1 for p in points if p["message-size"] >= 64 << 10)
if misses:
    print(f"Target missed at {len(misses)} of {applicable} points >= 64 KiB: {', '.join(misses)}.")
else:
    print(f"Target met at all {applicable} points >= 64 KiB.")
PY
echo "table written to $here/README.md; raw results in $results" >&2
