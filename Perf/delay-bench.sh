#!/usr/bin/env bash
# Long fat links (issue 19): the tcp backend across a packet-level delay (Perf/delay-line.c
# between two network namespaces; this kernel has no sch_netem), with the old fixed 4 MiB
# socket buffers against the kernel's autotuning (the new default), at 0 ms and DELAY_MS
# one-way delay. Measures `rdmig bench transport` (its plain pump baseline crosses the same
# delay line, which shows the line's own ceiling) and paired migrations (`rdmig source` in
# one namespace, `rdmig dest` in the other). Writes Perf/results/delay-bench.jsonl and the
# table between the delay-bench markers in Perf/README.md.
#
# Needs root (network namespaces, TUN devices). Settings (environment):
#   DELAY_MS=50        one-way delay, so the round trip is twice this
#   RUNS=3             runs per bench invocation (medians)
#   TOTAL=512MiB       bytes per bench run through the delay line
#   MESSAGE=1MiB DEPTH=256   bench message size and queue depth: 256 MiB in flight, above the
#                      bandwidth-delay product of anything measured here, so rdmig's own
#                      window is not what limits
#   VARIANTS="4MiB auto"     --tcp-buffer values compared (4MiB is the old fixed size)
#   WMEM_MAX=          if set (bytes), also run "auto" with net.ipv4.tcp_wmem's maximum
#                      raised to it inside the two namespaces only (per-namespace sysctl)
#   MIGRATIONS=1       paired migrations per variant at DELAY_MS (0 to skip)
#   GUEST=1GiB DIRTY=256MiB/s WORKING_SET=256MiB   the migrated synthetic guest
#   MIGRATION_DEPTHS="128 16384"   [transport] queue-depth of the migrations: 128 is the
#                      default; the page channel keeps that many WRITEs (4 KiB pages when the
#                      dirty pages are scattered) in flight, which bounds a long link too
#   MIGRATION_LIMIT=120   seconds a migration may take before it is stopped and counted as
#                      not completed
#   REPORT_ONLY=1      re-render the table from the kept results without measuring
set -euo pipefail
cd "$(dirname "$0")/.."
delay=${DELAY_MS:-50}
runs=${RUNS:-3}
total=${TOTAL:-512MiB}
message=${MESSAGE:-1MiB}
depth=${DEPTH:-256}
variants=(${VARIANTS:-4MiB auto})
wmem_max=${WMEM_MAX:-}
migrations=${MIGRATIONS:-1}
guest=${GUEST:-1GiB}
dirty=${DIRTY:-256MiB/s}
working_set=${WORKING_SET:-256MiB}
migration_depths=(${MIGRATION_DEPTHS:-128 16384})
migration_limit=${MIGRATION_LIMIT:-120}
results=Perf/results/delay-bench.jsonl

render() {
    python3 - "$results" <<'PY'
import json, sys, re, os, statistics
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
meta = next((r for r in rows if r["kind"] == "meta"), {})
gib = lambda v: f"{v / 2**30:.2f} GiB/s" if v >= 2**30 else f"{v / 2**20:.0f} MiB/s"
out = [f"Measured {meta.get('date', '?')} with `{meta.get('command', 'Perf/delay-bench.sh')}`: {meta.get('machine', '')}  ",
       f"Delay line: `Perf/delay-line.c` (TUN devices, MTU {meta.get('mtu', '?')}, one thread per direction) between two network namespaces; "
       f"bench: {meta.get('bench', '')}.", "",
       "| one-way delay | tcp-buffer | rdmig tcp | plain pump (same buffers) | ratio | runs (rdmig) |",
       "|---:|:---|---:|---:|---:|:---|"]
for r in (r for r in rows if r["kind"] == "bench"):
    b = r["result"]
    if b is None:
        out.append(f"| {r['delay']} ms | {r['variant']} | failed | | | {r.get('error', '')[:80]} |"); continue
    samples = ", ".join(gib(s) for s in b["bytes-per-second-samples"])
    out.append(f"| {r['delay']} ms | {r['variant']} | {gib(b['bytes-per-second'])} | {gib(b['baseline-bytes-per-second'])} | "
               f"{b['ratio']:.2f} | {samples} |")
mig = [r for r in rows if r["kind"] == "migration"]
if mig:
    out += ["", f"Paired migrations across the delay line: {meta.get('migration', '')}.", "",
            "| one-way delay | tcp-buffer | queue-depth | status | total time | downtime | iterations | pre-copy bandwidth | CPU throttle |",
            "|---:|:---|---:|:---|---:|---:|---:|---:|---:|"]
    for r in mig:
        m = r["report"]
        if m is None:
            out.append(f"| {r['delay']} ms | {r['variant']} | {r['queue-depth']} | not completed in {r['limit']} s (stopped) | | | | | |"); continue
        out.append(f"| {r['delay']} ms | {r['variant']} | {r['queue-depth']} | {m['status']}{' (verified)' if m.get('verified') else ''} | "
                   f"{m['total-time'] / 1000:.1f} s | {m['downtime']:.0f} ms | {m['iterations']} | "
                   f"{m.get('bandwidth', 0) / 2**20:.0f} MiB/s | {m.get('cpu-throttle-percentage', 0)} % |")
table = "\n".join(out)
path = "Perf/README.md"
text = open(path).read()
begin, end = "<!-- delay-bench:begin -->", "<!-- delay-bench:end -->"
block = f"{begin}\n{table}\n{end}"
if begin in text:
    text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
else:
    text += f"\n## Long fat links (issue 19)\n\n{block}\n"
open(path, "w").write(text)
print(table)
PY
}

if [[ -n "${REPORT_ONLY:-}" ]]; then render; exit; fi
[[ $(id -u) == 0 ]] || { echo "delay-bench.sh needs root (network namespaces, TUN devices)" >&2; exit 1; }

swift build -c release --product rdmig >/dev/null
rdmig=$PWD/.build/release/rdmig
work=$(mktemp -d)
cc -O2 -Wall -o "$work/delay-line" Perf/delay-line.c -lpthread
key=$work/psk
$rdmig keygen "$key" >/dev/null
a=rdmig-bdp-a-$$
b=rdmig-bdp-b-$$
mtu=9000
line_pid=
cleanup() {
    [[ -n "$line_pid" ]] && kill "$line_pid" 2>/dev/null || true
    ip netns del "$a" 2>/dev/null || true
    ip netns del "$b" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$a"
ip netns add "$b"
ip -n "$a" link set lo up
ip -n "$b" link set lo up

# (Re)starts the delay line with $1 ms one-way; its TUN devices go away with it.
start_line() {
    [[ -n "$line_pid" ]] && { kill "$line_pid"; wait "$line_pid" 2>/dev/null || true; echo "delay line: $(cat "$work/line.err")" >&2; }
    "$work/delay-line" "$a" "$b" $(( $1 * 1000 )) >"$work/line.out" 2>"$work/line.err" &
    line_pid=$!
    for _ in $(seq 1 50); do grep -q ready "$work/line.out" && break; sleep 0.1; done
    ip -n "$a" addr add 10.77.0.1 peer 10.77.0.2 dev rdmigdl
    ip -n "$b" addr add 10.77.0.2 peer 10.77.0.1 dev rdmigdl
    ip -n "$a" link set rdmigdl mtu $mtu up
    ip -n "$b" link set rdmigdl mtu $mtu up
}

set_wmem() {
    for ns in "$a" "$b"; do ip netns exec "$ns" sysctl -qw net.ipv4.tcp_wmem="4096 16384 $1"; done
}
default_wmem=$(sysctl -n net.ipv4.tcp_wmem | awk '{print $3}')

mkdir -p Perf/results
bench_args="--backend tcp --message-size $message --queue-depth $depth --total $total --runs $runs"
{
    python3 - "$delay" "$bench_args" "$mtu" "$guest" "$dirty" "$working_set" "$runs" <<'PY'
import json, sys, os, platform, datetime
delay, bench, mtu, guest, dirty, ws, runs = sys.argv[1:]
rmem = open("/proc/sys/net/ipv4/tcp_rmem").read().split()
wmem = open("/proc/sys/net/ipv4/tcp_wmem").read().split()
cc = open("/proc/sys/net/ipv4/tcp_congestion_control").read().strip()
load = " ".join(open("/proc/loadavg").read().split()[:3])
print(json.dumps({"kind": "meta", "date": datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC"),
    "command": f"DELAY_MS={delay} Perf/delay-bench.sh",
    "machine": f"{os.cpu_count()} CPUs, Linux {platform.release()}, congestion control {cc}, "
               f"net.ipv4.tcp_rmem max {int(rmem[2]) >> 20} MiB, tcp_wmem max {int(wmem[2]) >> 20} MiB, load average {load} before.",
    "mtu": mtu, "bench": f"`rdmig bench transport {bench}`, medians of {runs}",
    "migration": f"`rdmig source --guest-size {guest} --dirty-rate {dirty} --working-set {ws}` "
                 f"against `rdmig dest`, {delay} ms one-way ({2 * int(delay)} ms round trip), default [migration] settings"}))
PY
} >"$results"

bench() { # delay variant [label]
    local out err
    err=$work/bench.err
    if out=$(ip netns exec "$a" $rdmig bench transport $bench_args --host 10.77.0.2 --receiver-netns "$b" \
            --tcp-buffer "$2" --json 2>"$err"); then
        python3 -c 'import json,sys; print(json.dumps({"kind":"bench","delay":int(sys.argv[1]),"variant":sys.argv[2],"result":json.loads(sys.argv[3])}))' \
            "$1" "${3:-$2}" "$out" >>"$results"
    else
        python3 -c 'import json,sys; print(json.dumps({"kind":"bench","delay":int(sys.argv[1]),"variant":sys.argv[2],"result":None,"error":sys.argv[3]}))' \
            "$1" "${3:-$2}" "$(tail -c 300 "$err")" >>"$results"
    fi
    echo "delay $1 ms, tcp-buffer ${3:-$2}: $(tail -1 "$results" | cut -c1-200)" >&2
}

migrate() { # delay tcp-buffer queue-depth
    local errors=$work/dest.err json config=$work/migration.toml
    printf '[transport]\nqueue-depth = %s\n' "$3" >"$config"
    ip netns exec "$b" $rdmig dest --config "$config" --listen 10.77.0.2:0 --key-file "$key" --tcp-buffer "$2" \
        2>"$errors" >/dev/null &
    local dest=$!
    for _ in $(seq 1 100); do grep -q "listening on" "$errors" && break; sleep 0.1; done
    local port
    port=$(sed -n 's/.*listening on 10.77.0.2:\([0-9]*\).*/\1/p' "$errors" | head -1)
    json=$(timeout "$migration_limit" ip netns exec "$a" $rdmig source --config "$config" --connect "10.77.0.2:$port" \
        --key-file "$key" --tcp-buffer "$2" --guest-size "$guest" --dirty-rate "$dirty" --working-set "$working_set" \
        --json 2>"$work/source.err" || true)
    kill "$dest" 2>/dev/null || true
    wait "$dest" 2>/dev/null || true
    python3 -c 'import json,sys
try: r = json.loads(sys.argv[4])
except Exception: r = None
print(json.dumps({"kind":"migration","delay":int(sys.argv[1]),"variant":sys.argv[2],"queue-depth":int(sys.argv[3]),
                  "limit":int(sys.argv[5]),"report":r}))' "$1" "$2" "$3" "$json" "$migration_limit" >>"$results"
    echo "migration, delay $1 ms, tcp-buffer $2, queue-depth $3: $(tail -1 "$results" | cut -c1-300)" >&2
}

for d in 0 "$delay"; do
    start_line "$d"
    for v in "${variants[@]}"; do bench "$d" "$v"; done
    if [[ -n "$wmem_max" ]]; then
        set_wmem "$wmem_max"
        bench "$d" auto "auto, tcp_wmem max $(( wmem_max >> 20 )) MiB"
        set_wmem "$default_wmem"
    fi
done
if (( migrations > 0 )); then
    for _ in $(seq 1 "$migrations"); do
        for depth_v in "${migration_depths[@]}"; do
            for v in "${variants[@]}"; do migrate "$delay" "$v" "$depth_v"; done
        done
    done
fi
kill "$line_pid"; wait "$line_pid" 2>/dev/null || true
line_pid=
echo "delay line (last, ${delay} ms): $(cat "$work/line.err")" >&2
render
