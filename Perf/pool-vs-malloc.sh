#!/usr/bin/env bash
# Compares the transport benchmark with plain heap buffers (`--buffers malloc`) against the
# pinned, NUMA-bound BufferPool (`--buffers pool`) and writes the table into Perf/README.md
# (between the pool-vs-malloc markers; re-running replaces it).
#
# For each point, ROUNDS rounds each run both kinds once with the same options, the order
# alternating per round, so both see the same drift of the shared machine. Every invocation
# also measures the plain TCP pump, whose buffers never change: its numbers show how much the
# machine moved between invocations. Raw results go to Perf/results/pool-vs-malloc.jsonl.
#
# Environment (defaults in brackets):
#   POINTS  message-size:queue-depth pairs  [4KiB:128 64KiB:128 1MiB:128]
#   ROUNDS  invocations of each kind        [5]
#   TOTAL   bytes per run                   [1GiB]
#   RUNS    runs per invocation             [3]
#   HOST    address of both processes       [127.0.0.1]
#   REPORT_ONLY=1  rewrite the table from the last results without measuring
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
POINTS=${POINTS:-"4KiB:128 64KiB:128 1MiB:128"}
ROUNDS=${ROUNDS:-5}
TOTAL=${TOTAL:-1GiB}
RUNS=${RUNS:-3}
HOST=${HOST:-127.0.0.1}

cd "$root"
mkdir -p "$here/results"
results="$here/results/pool-vs-malloc.jsonl"
if [[ ${REPORT_ONLY:-0} != 1 ]]; then
echo "building rdmig (release)..." >&2
swift build -c release --product rdmig >&2
rdmig="$(swift build -c release --show-bin-path)/rdmig"

: > "$results"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(date +%s)
for point in $POINTS; do
    size=${point%%:*}
    depth=${point##*:}
    for round in $(seq 1 "$ROUNDS"); do
        if (( round % 2 )); then kinds="malloc pool"; else kinds="pool malloc"; fi
        for kind in $kinds; do
            echo "round $round: bench transport --buffers $kind --message-size $size --queue-depth $depth" >&2
            "$rdmig" bench transport --backend tcp --host "$HOST" --buffers "$kind" --message-size "$size" \
                --queue-depth "$depth" --total "$TOTAL" --runs "$RUNS" --json \
                | python3 -c 'import json, sys; r = json.load(sys.stdin); r["round"] = int(sys.argv[1]); print(json.dumps(r, sort_keys=True))' "$round" \
                >> "$results"
        done
    done
done
elapsed=$(( $(date +%s) - started ))
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
printf '%s\n' "$elapsed" "$load_before" "$load_after" "$TOTAL" "$RUNS" "$ROUNDS" "$(date '+%Y-%m-%d %H:%M %Z')" > "$results.meta"
fi
{ read -r elapsed; read -r load_before; read -r load_after; read -r TOTAL; read -r RUNS; read -r ROUNDS; read -r measured_at; } < "$results.meta"

python3 - "$results" "$elapsed" "$load_before" "$load_after" "$TOTAL" "$RUNS" "$ROUNDS" "$measured_at" <<'PY' \
    | python3 "$here/readme-section.py" "$here/README.md" pool-vs-malloc
import json, os, platform, statistics, sys

path, elapsed, load_before, load_after, total, runs, rounds, measured_at = sys.argv[1:9]
entries = [json.loads(line) for line in open(path)]

def size(n):
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} B"

def rate(bytes_per_second):
    return f"{bytes_per_second / (1 << 30):.2f} GiB/s"

points = []
for entry in entries:
    key = (entry["message-size"], entry["queue-depth"])
    if key not in points:
        points.append(key)

model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
print(f"Measured {measured_at} with `Perf/pool-vs-malloc.sh`: backend `tcp`, "
      f"{rounds} rounds per point, each round one `--buffers malloc` and one `--buffers pool` invocation "
      f"(order alternating), each invocation {runs} runs of {total} against the plain pump; "
      "medians over the rounds.  ")
print(f"Machine: {os.cpu_count()} CPUs ({model}), Linux {platform.release()}; "
      f"load average {load_before} before, {load_after} after; took {elapsed} s.")
print()
print("| message size × queue depth (ring) | rdmig tcp, malloc | rdmig tcp, pool | pool / malloc (per-round min – max) "
      "| ratio to pump, malloc | ratio to pump, pool | plain pump, in malloc / pool invocations |")
print("|---|---:|---:|:---:|---:|---:|:---:|")
details = []
for message_size, depth in points:
    def of(kind):
        return [e for e in entries if e["message-size"] == message_size and e["queue-depth"] == depth and e["buffers"] == kind]
    malloc, pool = of("malloc"), of("pool")
    if not malloc or not pool:
        continue
    m = statistics.median(e["bytes-per-second"] for e in malloc)
    p = statistics.median(e["bytes-per-second"] for e in pool)
    by_round = {e["round"]: e for e in malloc}
    per_round = [e["bytes-per-second"] / by_round[e["round"]]["bytes-per-second"] for e in pool if e["round"] in by_round]
    print(f"| {size(message_size)} × {depth} ({size(message_size * depth)}) | {rate(m)} | {rate(p)} | "
          f"{p / m:.2f} ({min(per_round):.2f} – {max(per_round):.2f}) | "
          f"{statistics.median(e['ratio'] for e in malloc):.2f} | {statistics.median(e['ratio'] for e in pool):.2f} | "
          f"{rate(statistics.median(e['baseline-bytes-per-second'] for e in malloc))} / "
          f"{rate(statistics.median(e['baseline-bytes-per-second'] for e in pool))} |")
    sample = pool[0]["receiver-buffer"]
    text = f"{size(message_size)} × {depth}: pool of {size(sample['size'])} per process, "
    text += sample.get("fallback-reason") or f"{size(sample['page-size'])} pages"
    if sample.get("node") is not None:
        text += f", node {sample['node']} ({sample.get('node-reason', '')})"
    text += f", {size(sample['locked-bytes'])} locked"
    details.append(text)
    plain = malloc[0]["receiver-buffer"]
    details.append(f"{size(message_size)} × {depth}: malloc of {size(plain['size'])} per process, "
                   f"{size(plain['page-size'])} pages ({plain.get('page-size-reason', '')}), "
                   f"{plain.get('node-reason', 'no node binding')}, not locked")
print()
print("Buffers as the benchmark reported them (receiver side; the sender's are the same):")
print()
for line in details:
    print(f"- {line}")
PY
echo "table written to $here/README.md; raw results in $results" >&2
