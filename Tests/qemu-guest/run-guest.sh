#!/usr/bin/env bash
# Starts the migration test guest (build-image.sh's kernel and initramfs) in QEMU, in the
# background, with two QMP sockets (a QMP socket serves one client at a time: one for a test
# driver, one for rdmig) and the serial console in a file.
#
# Usage: run-guest.sh [--name NAME] [--dir DIR] [--memory MiB] [--smp N]
#                     [--ws MiB] [--rate MB/s] [--hb ms] [--run s] [--incoming] [--prealloc] [--foreground]
#   --name NAME    names the run folder (default guest)
#   --dir DIR      run folder (default $RDMIG_CACHE/run/NAME); emptied first
#   --memory MiB   guest RAM (default 256); on QEMU < 9.0 given as MiB*1024+8 KiB (qemu-lib.sh)
#   --smp N        vCPUs (default 1)
#   --ws/--rate/--hb/--run   the guest's working set, dirty rate, heartbeat, run time (init.c)
#   --incoming     a migration destination: -incoming defer -S (then migrate-incoming, cont)
#   --prealloc     -mem-prealloc: guest RAM faulted in at start, so loading an incoming stream
#                  takes no page faults (and no THP compaction stalls) on the way
#   --foreground   run QEMU in the foreground (serial still to the file); default: daemonize
# Env:   RDMIG_CACHE, RDMIG_QEMU, RDMIG_QEMU_ACCEL, RDMIG_QEMU_ODD_RAM (qemu-lib.sh);
#        RDMIG_GUEST_APPEND extra kernel command line; RDMIG_GUEST_KERNEL_IMAGE to boot another kernel
#        image (e.g. the vmlinuz that build-image.sh prints)
# Out:   stdout: shell assignments RDMIG_RUN_DIR, RDMIG_QMP, RDMIG_QMP2, RDMIG_SERIAL, RDMIG_PID,
#        RDMIG_QEMU_LOG; the guest prints "rdmig-guest: heartbeat n=.. written=.. errors=.." lines
#        to RDMIG_SERIAL. Stop it with `kill $RDMIG_PID` or QMP `quit`.
# Exit:  0 when QEMU started; 1 otherwise (QEMU's own message is in RDMIG_QEMU_LOG and shown).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=qemu-lib.sh
. "$here/qemu-lib.sh"

name=guest dir="" memory=256 smp=1 ws=64 rate=0 hb=1000 run=0 incoming=0 prealloc=0 foreground=0
while (($#)); do
    case "$1" in
        --name) name=$2; shift 2 ;;
        --dir) dir=$2; shift 2 ;;
        --memory) memory=$2; shift 2 ;;
        --smp) smp=$2; shift 2 ;;
        --ws) ws=$2; shift 2 ;;
        --rate) rate=$2; shift 2 ;;
        --hb) hb=$2; shift 2 ;;
        --run) run=$2; shift 2 ;;
        --incoming) incoming=1; shift ;;
        --prealloc) prealloc=1; shift ;;
        --foreground) foreground=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
        *) echo "run-guest.sh: unknown argument '$1' (see --help)" >&2; exit 1 ;;
    esac
done
[ "$ws" -lt "$memory" ] || { echo "run-guest.sh: working set ${ws} MiB does not fit in ${memory} MiB of RAM" >&2; exit 1; }

eval "$("$here/build-image.sh")"
kernel=$RDMIG_GUEST_KERNEL
[ -n "${RDMIG_GUEST_KERNEL_IMAGE:-}" ] && kernel=$RDMIG_GUEST_KERNEL_IMAGE

dir=${dir:-"$(rdmig_cache_dir)/run/$name"}
rm -rf "$dir"
mkdir -p "$dir"

mapfile -t accel < <(qemu_accel_args)
mapfile -t firmware < <(qemu_firmware_args)
append="console=ttyS0 panic=-1 rdmig.ws=$ws rdmig.rate=$rate rdmig.hb=$hb rdmig.run=$run ${RDMIG_GUEST_APPEND:-}"
args=(
    -name "rdmig-$name"
    "${accel[@]}" "${firmware[@]}"
    -m "$(qemu_memory_arg "$memory")" -smp "$smp"
    -nodefaults -display none -vga none -nic none -no-reboot
    -kernel "$kernel" -initrd "$RDMIG_GUEST_INITRD" -append "$append"
    -serial "file:$dir/serial.log"
    -qmp "unix:$dir/qmp.sock,server=on,wait=off"
    -qmp "unix:$dir/qmp2.sock,server=on,wait=off"
    -pidfile "$dir/qemu.pid"
)
((incoming)) && args+=(-incoming defer -S)
((prealloc)) && args+=(-mem-prealloc)
printf '%q ' "$(qemu_binary)" "${args[@]}" >"$dir/command-line"
echo >>"$dir/command-line"

if ((foreground)); then
    exec "$(qemu_binary)" "${args[@]}"
fi
if ! "$(qemu_binary)" "${args[@]}" -daemonize >"$dir/qemu.log" 2>&1; then
    echo "run-guest.sh: QEMU did not start: $(cat "$dir/qemu.log")" >&2
    exit 1
fi
echo "RDMIG_RUN_DIR=$dir"
echo "RDMIG_QMP=$dir/qmp.sock"
echo "RDMIG_QMP2=$dir/qmp2.sock"
echo "RDMIG_SERIAL=$dir/serial.log"
echo "RDMIG_PID=$(cat "$dir/qemu.pid")"
echo "RDMIG_QEMU_LOG=$dir/qemu.log"
