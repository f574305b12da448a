#!/usr/bin/env bash
# Builds rdmig-fuzz with libFuzzer and AddressSanitizer, then fuzzes the targets named (all
# without names). See README.md in this directory.
#
#   Tests/fuzz/run.sh [--runs N] [--max-time SECONDS] [TARGET...]
#
# --runs N        inputs per target (default 20000; the recorded long run is 1000000)
# --max-time S    stop each target after S seconds instead (libFuzzer's -max_total_time)
#
# New inputs libFuzzer finds go to .build-fuzz/corpus/TARGET (the committed corpus in
# Tests/fuzz/corpus/TARGET is only read); a crash or violated property leaves the input in
# .build-fuzz/artifacts/ and makes this script fail. Replay one with
#   .build-fuzz/debug/rdmig-fuzz run TARGET FILE
# Each target's log is .build-fuzz/logs/TARGET.log; its last line is libFuzzer's
# "Done N runs in S second(s)".
set -euo pipefail
cd "$(dirname "$0")/../.."

runs=20000
max_time=""
targets=()
while (($#)); do
    case "$1" in
        --runs) runs="$2"; shift 2 ;;
        --max-time) max_time="$2"; shift 2 ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) targets+=("$1"); shift ;;
    esac
done

scratch=.build-fuzz
# libFuzzer from the Swift toolchain's compiler-rt. The _no_main variant: rdmig-fuzz keeps its
# own main (list/seeds/run) and hands over with LLVMFuzzerRunDriver.
resource_dir=$(dirname "$(dirname "$(command -v swiftc)")")/lib/swift/clang/lib/linux
fuzzer_lib="$resource_dir/libclang_rt.fuzzer_no_main-$(uname -m).a"
[ -f "$fuzzer_lib" ] || { echo "run.sh: no libFuzzer at $fuzzer_lib" >&2; exit 1; }

# Why these flags (Swift 6.3, SwiftPM, Linux):
# - --sanitize=address: ASan for every Swift and C target, and the ASan runtime at link time.
# - -Xfrontend -sanitize=fuzzer,address: the compiler's libFuzzer coverage (edges, compares)
#   without the driver's -sanitize=fuzzer at link time, which would link libFuzzer's own main
#   (a duplicate main with SwiftPM's executable; ld.gold then crashes reporting it).
# - -DRDMIG_LIBFUZZER: compiles rdmig-fuzz's `fuzz` command (LibFuzzer.swift).
# - libFuzzer is C++: link libstdc++.
swift build --scratch-path "$scratch" --product rdmig-fuzz --sanitize=address \
    -Xswiftc -Xfrontend -Xswiftc -sanitize=fuzzer,address \
    -Xswiftc -DRDMIG_LIBFUZZER \
    -Xlinker "$fuzzer_lib" -Xlinker -lstdc++ 2>&1 | grep -v "Cannot export local symbol" >&2

binary="$scratch/debug/rdmig-fuzz"
((${#targets[@]})) || mapfile -t targets < <("$binary" list)

# The Swift runtime's backtracer would take the crash signal from libFuzzer (and wait for
# a terminal); libFuzzer's handler must see it to save the input.
export SWIFT_BACKTRACE=enable=no

mkdir -p "$scratch/logs" "$scratch/artifacts"
failed=()
for target in "${targets[@]}"; do
    mkdir -p "$scratch/corpus/$target"
    limit=(-runs="$runs")
    [ -z "$max_time" ] || limit=(-max_total_time="$max_time")
    log="$scratch/logs/$target.log"
    echo "== $target: ${limit[*]}" >&2
    if "$binary" fuzz "$target" "${limit[@]}" -timeout=20 -max_len=4096 -print_final_stats=1 \
        -artifact_prefix="$scratch/artifacts/$target-" \
        "$scratch/corpus/$target" "Tests/fuzz/corpus/$target" >"$log" 2>&1; then
        echo "$target: $(grep -E '^Done [0-9]+ runs' "$log" | tail -1)"
    else
        echo "$target: FAILED (see $log; the input is in $scratch/artifacts/)"
        grep -E "rdmig-fuzz|Fatal error|ERROR: |SUMMARY" "$log" | head -5 >&2 || true
        failed+=("$target")
    fi
done
if ((${#failed[@]})); then
    echo "run.sh: failed: ${failed[*]}" >&2
    exit 1
fi
