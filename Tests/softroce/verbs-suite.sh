#!/usr/bin/env bash
# rdmig's verbs backend on a real verbs device: boots the Soft-RoCE guest once (run.sh) and runs
# there, in order, the transport conformance suite against `verbs` through rdma_cm on the
# guest's IP, then `rdmig bench transport --backend verbs` and `ib_write_bw -R` on the same rxe0
# with the same message size (64 KiB) and bytes, and prints their ratio, then a paired native
# migration over rxe0 (`rdmig dest` + `rdmig source --backend verbs`, a 128 MiB synthetic guest
# with an ib-sw VF) that must end completed and verified on both sides. Issue 7.
#
# Usage: verbs-suite.sh [--rdmig PATH] [--large-transfer SIZE] [--total SIZE] [--rounds N]
#                       [--step FILE]... [--copy FILE]... [--timeout S] [--keep]
#   --rdmig PATH       the rdmig binary to run in the guest (e.g. .build/debug/rdmig). Default:
#                      build one with `swift build -c release --static-swift-stdlib --product rdmig`.
#   --large-transfer   the conformance suite's large-transfer case (default 8MiB: rxe under TCG
#                      moves ~100 MiB/s)
#   --total SIZE       bytes each bandwidth measurement moves, a multiple of 64KiB (default 64MiB)
#   --rounds N         rdmig and ib_write_bw alternate N times; their medians give the ratio
#                      (default 3: one measurement of 0.6 s on a shared host is noisy)
#   --step FILE        an extra guest step (a busybox sh script), run after the built-in steps in
#                      the same boot; it passes when it exits 0. Repeatable. This is where further
#                      guest checks (the paired migration over rxe) plug in.
#   --copy FILE        another host file for the extra steps, put in the guest's /job/bin.
#   --timeout S        the whole guest run (default 300); each program in it gets at most 180 s
#   --keep             keep run.sh's run folder (console.log, output.log) even on success
# Env:   as run.sh (RDMIG_CACHE, RDMIG_QEMU, RDMIG_QEMU_ACCEL)
# Out:   stdout: the guest's output (steps, conformance PASS/FAIL/SKIP lines, the ratio line),
#        the migration line "migration over rxe: completed, verified, downtime X ms, ...",
#        then one verdict line "rdmig softroce verbs suite: PASS|FAIL|SKIP ...".
#        stderr: the image build's and run.sh's progress.
# Exit:  0 every step passed; 1 a step failed (or rdmig could not be built); 77 skipped: QEMU
#        cannot start here at all (not installed, or the guest image cannot be built; the
#        verdict line says why); 124 guest timeout; 125 the guest could not be set up; 2 usage.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=../qemu-guest/qemu-lib.sh
. "$here/../qemu-guest/qemu-lib.sh"

verdict() { echo "rdmig softroce verbs suite: $*"; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' >&2; exit 2; }

rdmig="" large_transfer=8MiB total=64MiB rounds=3 timeout=300 keep=() steps=() copies=()
while (($#)); do
    case "$1" in
        --rdmig) rdmig=$2; shift 2 ;;
        --large-transfer) large_transfer=$2; shift 2 ;;
        --total) total=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        --step) steps+=("$2"); shift 2 ;;
        --copy) copies+=("$2"); shift 2 ;;
        --timeout) timeout=$2; shift 2 ;;
        --keep) keep=(--keep); shift ;;
        -h|--help) usage ;;
        *) echo "verbs-suite.sh: unknown argument '$1'" >&2; usage ;;
    esac
done

# SIZE as rdmig's ByteCount writes it (N, NKiB, NMiB, NGiB) in bytes; ib_write_bw takes a count.
bytes_of() {
    local number unit
    [[ "$1" =~ ^([0-9]+)(B|KiB|MiB|GiB)?$ ]] || return 1
    number=${BASH_REMATCH[1]} unit=${BASH_REMATCH[2]}
    case "$unit" in
        KiB) echo $((number << 10)) ;; MiB) echo $((number << 20)) ;; GiB) echo $((number << 30)) ;;
        *) echo "$number" ;;
    esac
}
total_bytes=$(bytes_of "$total") || { echo "verbs-suite.sh: --total '$total' is not a size such as 64MiB" >&2; exit 2; }
((total_bytes >= 65536 && total_bytes % 65536 == 0)) \
    || { echo "verbs-suite.sh: --total $total must be a positive multiple of 64KiB (ib_write_bw moves whole messages)" >&2; exit 2; }
iterations=$((total_bytes / 65536))
[[ "$rounds" =~ ^[1-9][0-9]?$ ]] || { echo "verbs-suite.sh: --rounds must be 1 … 99" >&2; exit 2; }
for file in "${steps[@]}" "${copies[@]}"; do
    [ -f "$file" ] || { echo "verbs-suite.sh: no file '$file'" >&2; exit 2; }
done
if ((${#steps[@]})); then
    names=$(printf '%s\n' "${steps[@]##*/}")
    [ "$(sort -u <<<"$names" | wc -l)" = "${#steps[@]}" ] \
        || { echo "verbs-suite.sh: --step files need distinct names (they share the guest's /job/bin)" >&2; exit 2; }
fi

started=$(date +%s)
elapsed() { echo "$(($(date +%s) - started)) s"; }

# The only reasons to skip: no QEMU, or no guest image (no Debian packages to build it from).
if ! command -v "$(qemu_binary)" >/dev/null; then
    verdict "SKIP: QEMU cannot start here: $(qemu_binary) is not installed (bash Tests/qemu-guest/install-qemu.sh)"
    exit 77
fi
image_log=$(mktemp)
trap 'rm -f "$image_log"' EXIT
if ! "$here/build-image.sh" >/dev/null 2>"$image_log"; then
    cat "$image_log" >&2
    verdict "SKIP: QEMU cannot start here: the Soft-RoCE guest image cannot be built: $(tail -n 3 "$image_log" | tr '\n' ' ')"
    exit 77
fi
cat "$image_log" >&2

if [ -z "$rdmig" ]; then
    echo "rdmig softroce verbs suite: building rdmig (swift build -c release --static-swift-stdlib --product rdmig)" >&2
    if ! (cd "$repo" && swift build -c release --static-swift-stdlib --product rdmig >&2); then
        verdict "FAIL: rdmig did not build ($(elapsed))"
        exit 1
    fi
    rdmig="$(cd "$repo" && swift build -c release --static-swift-stdlib --show-bin-path)/rdmig"
fi
[ -x "$rdmig" ] || { verdict "FAIL: no rdmig binary at $rdmig ($(elapsed))"; exit 1; }

# The ratio depends on the build (a debug rdmig is slower when the host is busy): say which.
case "$(cd "$(dirname "$rdmig")" && pwd -P)" in
    */debug) build="debug build" ;;
    */release) build="release build" ;;
    *) build="build at $rdmig" ;;
esac
echo "rdmig softroce verbs suite: rdmig $build ($rdmig)" >&2
guest_args=(--large-transfer "$large_transfer" --total "$total" --iterations "$iterations" --rounds "$rounds" --build "$build")
copy_args=(--copy "$rdmig")
for file in "${steps[@]}"; do
    guest_args+=(--step "${file##*/}")
    copy_args+=(--copy "$file")
done
for file in "${copies[@]}"; do
    copy_args+=(--copy "$file")
done

output=$(mktemp)
trap 'rm -f "$image_log" "$output"' EXIT
status=0
"$here/run.sh" --timeout "$timeout" "${keep[@]}" "${copy_args[@]}" "$here/guest-verbs-suite.sh" "${guest_args[@]}" \
    | tee "$output" || status=$?

# The conformance step runs first: extra steps may print such lines too.
conformance=$(grep -E '^[0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' "$output" | head -1 || true)
ratio=$(sed -n "s/^verbs-vs-ib_write_bw: [^(]*ratio \([0-9.]*\) (.*/\1/p" "$output" | tail -1)
migration=$(sed -n 's/^migration over rxe: \(completed, verified, downtime [0-9.]* ms\).*/\1/p' "$output" | tail -1)
summary="conformance: ${conformance:-no result}; rdmig/ib_write_bw: ${ratio:-no result}; migration: ${migration:-not completed}; $(elapsed) in all"
if [ "$status" = 0 ]; then
    verdict "PASS ($summary)"
    exit 0
fi
case "$status" in
    124) why="the guest timed out after $timeout s" ;;
    125) why="the guest could not be set up (see run.sh's messages)" ;;
    *) why="$(grep '^verbs suite in the guest:' "$output" | tail -1 || echo "run.sh exited $status")" ;;
esac
verdict "FAIL: $why ($summary)"
exit "$status"
