#!/usr/bin/env bash
# What encryption costs on the tcp backend: `rdmig bench transport` with and without
# --encrypt (AES-256-GCM per frame), interleaved PAIRS times in one run, at each message
# size; prints the medians and the ratio encrypted / plain (the target: >= 0.8). Run it on a
# quiet machine: both processes' sender and receiver threads share the cores.
#
# Environment (defaults in brackets):
#   SIZES   message sizes          [64KiB 1MiB]
#   TOTAL   bytes per run          [2GiB]
#   PAIRS   plain/encrypted pairs  [5]
#   RDMIG   the binary             [.build/release/rdmig, built if missing]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
SIZES=${SIZES:-"64KiB 1MiB"}
TOTAL=${TOTAL:-2GiB}
PAIRS=${PAIRS:-5}
RDMIG=${RDMIG:-$root/.build/release/rdmig}
[ -x "$RDMIG" ] || (cd "$root" && swift build -c release >/dev/null)

rate() {  # bytes per second of one bench run
    "$RDMIG" bench transport --backend tcp --message-size "$1" --total "$TOTAL" --runs 1 --json $2 2>/dev/null \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["bytes-per-second"])'
}

echo "size plain-GB/s encrypted-GB/s ratio (medians of $PAIRS interleaved pairs, $TOTAL each)"
for size in $SIZES; do
    plain=(); sealed=()
    for _ in $(seq "$PAIRS"); do
        plain+=("$(rate "$size" "")")
        sealed+=("$(rate "$size" --encrypt)")
    done
    python3 - "$size" "${plain[*]}" "${sealed[*]}" <<'PY'
import statistics, sys
size, plain, sealed = sys.argv[1], [float(x) for x in sys.argv[2].split()], [float(x) for x in sys.argv[3].split()]
p, s = statistics.median(plain), statistics.median(sealed)
print(f"{size} {p/1e9:.2f} {s/1e9:.2f} {s/p:.2f}")
PY
done
