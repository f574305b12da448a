#!/usr/bin/env bash
# Proves the Soft-RoCE guest works end to end, in one boot: ibv_devices and ibv_devinfo see rxe0,
# a verbs program built here on the host (list-devices.c) runs in the guest and opens rxe0, and
# ib_write_bw (64 KiB messages) runs server + client over rxe on the guest's own IP.
#
# Usage: smoke-test.sh [ITERATIONS]   (ib_write_bw -n, default 200: TCG makes rxe slow)
# Env:   as run.sh (RDMIG_CACHE, RDMIG_QEMU, RDMIG_QEMU_ACCEL)
# Out:   the guest's output, then "rdmig softroce smoke: PASS ... MB/s" or "... FAIL ..."
# Exit:  0 pass; otherwise run.sh's code (the guest script's, 124 timeout, 125 set-up failure);
#        1 when list-devices cannot be built (libibverbs-dev missing).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if ! gcc -O2 -Wall -Wextra -Werror -o "$work/list-devices" "$here/list-devices.c" -libverbs; then
    echo "rdmig softroce smoke: FAIL: could not build list-devices.c (apt-get install libibverbs-dev)" >&2
    exit 1
fi
started=$(date +%s.%N)
status=0
"$here/run.sh" --timeout 180 --copy "$work/list-devices" "$here/guest-smoke.sh" "${1:-200}" | tee "$work/output" || status=$?
elapsed=$(echo "$(date +%s.%N) - $started" | bc | cut -c1-5)
bandwidth=$(sed -n 's/^ib_write_bw over .*average \([0-9.]*\) MB\/s$/\1/p' "$work/output")
if [ "$status" = 0 ] && [ -n "$bandwidth" ] && grep -q '^list-devices: rxe0 .*port1=active ' "$work/output"; then
    echo "rdmig softroce smoke: PASS rxe0 seen by ibv_devices/ibv_devinfo and a host-built binary; ib_write_bw 64 KiB average $bandwidth MB/s; ${elapsed} s in all"
    exit 0
fi
echo "rdmig softroce smoke: FAIL (run.sh exit $status, bandwidth '${bandwidth}'), ${elapsed} s" >&2
[ "$status" = 0 ] && status=1
exit "$status"
