#!/usr/bin/env bash
# Boots the Soft-RoCE guest (build-image.sh) in QEMU, creates rxe0 on its eth0, runs a script
# there with host files copied in, and passes the script's output and exit code back.
#
# Usage: run.sh [options] SCRIPT [ARG...]      run the host file SCRIPT with busybox sh in the guest
#        run.sh [options] --command 'STRING'   run STRING instead (no ARGs)
# Options:
#   --copy FILE     copy a host file into the guest's /job/bin (on PATH); repeatable. The shared
#                   libraries it needs (ldd on the host) that the image lacks go to /job/lib.
#   --timeout S     kill the guest after S seconds (default 300)
#   --memory MiB    guest RAM (default 1024)      --smp N      vCPUs (default 2)
#   --mtu N         eth0 MTU (default 9000: RDMA MTU 4096)    --no-rxe   skip creating rxe0
#   --keep          keep the run folder (console.log, output.log, command-line) even on success
# In the guest: cwd /job; PATH has /job/bin; RDMIG_GUEST_IP (10.0.2.15) and RDMIG_RDMA_DEVICE
#   (rxe0) are set; RLIMIT_MEMLOCK is unlimited; the script's stdout and stderr come back.
# Env:  RDMIG_CACHE, RDMIG_QEMU, RDMIG_QEMU_ACCEL (tcg|kvm|auto) as in ../qemu-guest/qemu-lib.sh
# Out:  stdout: the script's output (its stdout and stderr, in order); stderr: the runner's
#       progress and, on failure, the end of the guest's kernel console.
# Exit: the script's exit code; 124 when the timeout hit; 125 when the guest could not be set up
#       or QEMU ended without the script finishing; 2 on a usage error.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
guest_dir=$(cd "$here/../qemu-guest" && pwd)
# shellcheck source=../qemu-guest/qemu-lib.sh
. "$guest_dir/qemu-lib.sh"

log() { echo "rdmig softroce: $*" >&2; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' >&2; exit 2; }

copies=() timeout=300 memory=1024 smp=2 mtu=9000 rxe=1 keep=0 command="" script=""
while (($#)); do
    case "$1" in
        --copy) copies+=("$2"); shift 2 ;;
        --timeout) timeout=$2; shift 2 ;;
        --memory) memory=$2; shift 2 ;;
        --smp) smp=$2; shift 2 ;;
        --mtu) mtu=$2; shift 2 ;;
        --no-rxe) rxe=0; shift ;;
        --keep) keep=1; shift ;;
        --command) command=$2; shift 2 ;;
        -h|--help) usage ;;
        --) shift; break ;;
        -*) log "unknown option '$1'"; usage ;;
        *) break ;;
    esac
done
if [ -z "$command" ]; then
    (($#)) || { log "give a SCRIPT or --command"; usage; }
    script=$1
    shift
    [ -f "$script" ] || { log "no script file '$script'"; exit 2; }
elif (($#)); then
    log "--command takes no further arguments"
    usage
fi
for file in "${copies[@]}"; do
    [ -f "$file" ] || { log "--copy: no file '$file'"; exit 2; }
done
command -v "$(qemu_binary)" >/dev/null || { log "QEMU is not installed (Tests/qemu-guest/install-qemu.sh)"; exit 125; }

eval "$("$here/build-image.sh")"
root=$RDMIG_SOFTROCE_ROOT

mkdir -p "$(rdmig_cache_dir)/softroce/runs"
# Failed runs keep their folders for a look; only the ten newest are kept. The glob is expanded
# by the shell first: `ls run.*` on an empty folder fails, and under pipefail that ended the run.
shopt -s nullglob
old_runs=("$(rdmig_cache_dir)"/softroce/runs/run.*)
shopt -u nullglob
if ((${#old_runs[@]} > 9)); then
    ls -dt "${old_runs[@]}" | tail -n +10 | xargs -r -d '\n' rm -rf
fi
run=$(mktemp -d "$(rdmig_cache_dir)/softroce/runs/run.XXXXXX")
stage=$run/stage
mkdir -p "$stage/job/bin" "$stage/job/lib"

quote() { local word; for word in "$@"; do printf "'%s' " "${word//\'/\'\\\'\'}"; done; }
if [ -n "$command" ]; then
    printf '%s\n' "$command" >"$stage/job/script"
else
    cp "$script" "$stage/job/script"
fi
marker="RDMIG-SOFTROCE-END-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"
cat >"$stage/job/env" <<ENV
RDMIG_END_MARKER=$marker
RDMIG_GUEST_IP=10.0.2.15
RDMIG_RDMA_DEVICE=rxe0
RDMIG_MTU=$mtu
RDMIG_RXE=$rxe
export RDMIG_GUEST_IP RDMIG_RDMA_DEVICE LD_LIBRARY_PATH=/job/lib
set -- $(quote "$@")
ENV

image_has() {
    [ -e "$root/lib/x86_64-linux-gnu/$1" ] || [ -e "$root/usr/lib/x86_64-linux-gnu/$1" ] \
        || [ -e "$root/lib64/$1" ] || [ -e "$stage/job/lib/$1" ]
}
host_rdma_core=$(dpkg-query -W -f='${Version}' libibverbs1 2>/dev/null || true)
for file in "${copies[@]}"; do
    cp -L "$file" "$stage/job/bin/"
    chmod +x "$stage/job/bin/$(basename "$file")"
    # Not an ELF or statically linked: ldd has nothing to say.
    dependencies=$(ldd "$file" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}') || true
    added=()
    while read -r soname path; do
        [ -n "$soname" ] || continue
        image_has "$soname" && continue
        cp -L "$path" "$stage/job/lib/$soname"
        added+=("$soname")
    done <<<"$dependencies"
    ((${#added[@]} == 0)) || log "$(basename "$file"): copied from the host ${#added[@]} libraries the image lacks: ${added[*]}"
    if grep -q 'libibverbs' <<<"$dependencies" && [ -n "$host_rdma_core" ] \
        && [ "$host_rdma_core" != "$RDMIG_SOFTROCE_RDMA_CORE" ]; then
        log "warning: $(basename "$file") was built against rdma-core $host_rdma_core, the guest has $RDMIG_SOFTROCE_RDMA_CORE: the verbs ABI between them may differ"
    fi
done

python3 "$guest_dir/mkcpio.py" "$stage" "$run/job.cpio"
# The kernel unpacks concatenated archives in order: the per-run files land on the base image.
cat "$RDMIG_SOFTROCE_INITRD" "$run/job.cpio" >"$run/initrd.cpio"
rm -rf "$stage" "$run/job.cpio"

mapfile -t accel < <(qemu_accel_args)
mapfile -t firmware < <(qemu_firmware_args)
args=(
    -name rdmig-softroce
    "${accel[@]}" "${firmware[@]}"
    -m "$(qemu_memory_arg "$memory")" -smp "$smp"
    -nodefaults -display none -vga none -no-reboot
    -kernel "$RDMIG_SOFTROCE_KERNEL" -initrd "$run/initrd.cpio"
    -append "console=ttyS0 panic=-1 loglevel=4"
    -serial "file:$run/console.log" -serial "file:$run/output.log"
    # slirp without a route out: the guest only needs a link for rxe and its own IP.
    -nic "user,model=virtio-net-pci,restrict=on"
)
printf '%q ' "$(qemu_binary)" "${args[@]}" >"$run/command-line"
echo >>"$run/command-line"

log "booting ($(qemu_accel_name), QEMU $(qemu_version), ${memory} MiB, $smp vCPUs, timeout ${timeout} s); logs in $run"
started=$(date +%s.%N)
status=0
touch "$run/output.log"
timeout --signal=TERM --kill-after=5 "$timeout" "$(qemu_binary)" "${args[@]}" >"$run/qemu.log" 2>&1 &
qemu=$!
# The script's output is passed on as it comes (long guest tests show progress), without the
# serial line's carriage returns and without the end marker.
tail -n +1 -s 0.2 -f --pid="$qemu" "$run/output.log" | sed -u -e 's/\r$//' -e "/^$marker /d" &
relay=$!
wait "$qemu" || status=$?
wait "$relay" || true
elapsed=$(echo "$(date +%s.%N) - $started" | bc | cut -c1-6)

end=$(tr -d '\r' <"$run/output.log" | sed -n "s/^$marker //p" | tail -1)
console_tail() { tr -d '\r' <"$run/console.log" | tail -n 25 | sed 's/^/  console: /' >&2; }

case "$end" in
    rc=*)
        rc=${end#rc=}
        log "the script exited $rc after ${elapsed} s"
        ;;
    setup-failed)
        log "the guest could not be set up (see above); QEMU ran ${elapsed} s"
        console_tail
        rc=125
        ;;
    *)
        if [ "$status" = 124 ] || [ "$status" = 137 ]; then
            log "timeout: the guest did not finish within ${timeout} s"
            rc=124
        else
            log "QEMU exited $status after ${elapsed} s without the script finishing: $(cat "$run/qemu.log")"
            rc=125
        fi
        console_tail
        ;;
esac
if [ "$rc" = 0 ] && [ "$keep" = 0 ]; then
    rm -rf "$run"
else
    rm -f "$run/initrd.cpio"
    log "run folder kept: $run"
fi
exit "$rc"
