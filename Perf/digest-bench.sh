#!/usr/bin/env bash
# XXH64 (rdmig's old hand-written chunk hash, kept as Perf/digest-bench/xxh64-reference.c)
# against libxxhash's XXH3-64, as Debian builds it (baseline SSE2) and through its run-time
# dispatch (AVX2 where the CPU has it; what ChunkDigester calls since protocol v3): one thread
# hashes BYTES of PAGE-byte pages with each, seeded, rotating the order per round in one
# process. Prints one line per round, the baseline XXH3 after a dispatched pass with the upper
# YMM halves dirty and cleared (why rdmig clears them), and a JSON summary (medians, GB/s per
# core, ratios to XXH64).
#
# Environment (defaults in brackets):
#   BYTES   bytes hashed per pass  [1073741824]
#   PAGE    page (chunk) size      [4096]
#   ROUNDS  passes of each hash    [5]
#   CC      C compiler             [cc]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# -O2, as the old CRdmigShims target was built; libxxhash is Debian's shared library.
"${CC:-cc}" -O2 -o "$out/digest-bench" "$here/digest-bench/digest-bench.c" "$here/digest-bench/xxh64-reference.c" -lxxhash
"$out/digest-bench" "${BYTES:-1073741824}" "${PAGE:-4096}" "${ROUNDS:-5}"
