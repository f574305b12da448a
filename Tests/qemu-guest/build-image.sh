#!/usr/bin/env bash
# Builds the migration test guest into the cache: Debian's stock kernel (vmlinux for a PVH
# boot, and vmlinuz) and an uncompressed initramfs whose /init is init.c built with gcc -static.
# Rebuilds only when an input changed (init.c, this script, mkcpio.py, gcc, kernel version).
#
# Usage: build-image.sh
# Env:   RDMIG_CACHE (default ~/.cache/rdmig); output goes to $RDMIG_CACHE/qemu-guest/
# Out:   stdout: shell assignments, one per line, for `eval` or `source`:
#          RDMIG_GUEST_KERNEL=...   vmlinux (PVH) when it could be extracted, else vmlinuz
#          RDMIG_GUEST_VMLINUZ=...  RDMIG_GUEST_INITRD=...  RDMIG_GUEST_KERNEL_VERSION=...
#        stderr: progress.
# Exit:  0 built or up to date; 1 on failure (a message says what failed).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=qemu-lib.sh
. "$here/qemu-lib.sh"
# shellcheck source=debs-lib.sh
. "$here/debs-lib.sh"

log() { echo "rdmig guest image: $*" >&2; }
command -v gcc >/dev/null || { log "gcc is missing (apt-get install gcc libc6-dev)"; exit 1; }
command -v python3 >/dev/null || { log "python3 is missing (apt-get install python3)"; exit 1; }

kernel_dir=$(kernel_prepare) || { log "could not get Debian's kernel package"; exit 1; }
vmlinuz=$(ls "$kernel_dir"/boot/vmlinuz-*)
kernel_version=${vmlinuz##*/vmlinuz-}
kernel=$vmlinuz
[ -f "$kernel_dir/vmlinux" ] && kernel=$kernel_dir/vmlinux

out="$(rdmig_cache_dir)/qemu-guest"
mkdir -p "$out"
key=$( { cat "$here/init.c" "$here/build-image.sh" "$here/mkcpio.py"; gcc --version | head -1; echo "$kernel_dir"; } | sha256sum | cut -d' ' -f1)
if [ -f "$out/initramfs.cpio" ] && [ "$(cat "$out/key" 2>/dev/null)" = "$key" ]; then
    log "up to date in $out"
else
    log "building /init and the initramfs in $out"
    root=$(mktemp -d)
    trap 'rm -rf "$root"' EXIT
    mkdir -p "$root/dev" "$root/proc" "$root/sys"
    gcc -static -O2 -Wall -Wextra -Werror -o "$root/init" "$here/init.c"
    strip "$root/init"
    python3 "$here/mkcpio.py" "$root" "$out/initramfs.cpio.tmp" --node dev/console:c:5:1
    mv "$out/initramfs.cpio.tmp" "$out/initramfs.cpio"
    echo "$key" >"$out/key"
fi
echo "RDMIG_GUEST_KERNEL=$kernel"
echo "RDMIG_GUEST_VMLINUZ=$vmlinuz"
echo "RDMIG_GUEST_INITRD=$out/initramfs.cpio"
echo "RDMIG_GUEST_KERNEL_VERSION=$kernel_version"
