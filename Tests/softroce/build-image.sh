#!/usr/bin/env bash
# Builds the Soft-RoCE guest image into the cache: Debian's stock kernel (vmlinux for a PVH boot)
# and a base initramfs with the module closure rdma_rxe needs, busybox-static, rdma-core 44.0
# user space (libibverbs1, librdmacm1, ibverbs-providers, ibverbs-utils, rdmacm-utils), perftest,
# iproute2 (`rdma`), kmod, and the libraries a host-built rdmig binary needs (libstdc++6,
# libgcc-s1, libnuma1, libhwloc15, libxxhash0), each with the shared libraries it depends on. Everything
# comes from the machine's Debian sources as .debs; nothing is installed on the host.
# Reused while its inputs (the .deb files, these scripts, the kernel) are unchanged.
#
# Usage: build-image.sh
# Env:   RDMIG_CACHE (default ~/.cache/rdmig); output goes to $RDMIG_CACHE/softroce/
# Out:   stdout: shell assignments, one per line:
#          RDMIG_SOFTROCE_KERNEL=...  RDMIG_SOFTROCE_INITRD=... (base initramfs, uncompressed cpio)
#          RDMIG_SOFTROCE_ROOT=...    (the unpacked image, to look up what it already holds)
#          RDMIG_SOFTROCE_KERNEL_VERSION=...  RDMIG_SOFTROCE_RDMA_CORE=... (libibverbs1 version)
#        stderr: progress.
# Exit:  0 built or up to date; 1 on failure (a message says what failed).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
guest=$(cd "$here/../qemu-guest" && pwd)
# shellcheck source=../qemu-guest/qemu-lib.sh
. "$guest/qemu-lib.sh"
# shellcheck source=../qemu-guest/debs-lib.sh
. "$guest/debs-lib.sh"

log() { echo "rdmig softroce image: $*" >&2; }
command -v python3 >/dev/null || { log "python3 is missing (apt-get install python3)"; exit 1; }
command -v ldconfig >/dev/null || PATH=$PATH:/sbin:/usr/sbin

wanted=(busybox-static kmod libibverbs1 librdmacm1 ibverbs-providers ibverbs-utils rdmacm-utils
    perftest iproute2 libstdc++6 libgcc-s1 libnuma1 libhwloc15 libxxhash0)
# What rdma_rxe and a virtio NIC need; modprobe adds their dependencies (ib_core, udp_tunnel, ...).
modules=(virtio_pci virtio_net rdma_rxe ib_uverbs rdma_ucm rdma_cm ib_cm iw_cm udp_tunnel
    ip6_udp_tunnel crc32_generic crc32-pclmul)

# The Depends/PreDepends closure, followed only into libraries: the programs above need their
# shared libraries, not the rest of a Debian system (debconf, adduser, libc-bin, ...).
# One apt-cache call per level of the dependency tree: each call costs ~0.6 s here.
closure() {
    local -A seen=()
    local level=("$@") next dependency package
    while ((${#level[@]})); do
        next=()
        for package in "${level[@]}"; do
            [ -n "${seen[$package]:-}" ] && continue
            seen[$package]=1
            next+=("$package")
        done
        ((${#next[@]})) || break
        printf '%s\n' "${next[@]}"
        level=()
        while read -r dependency; do
            case "$dependency" in
                *-bin | libc-bin | libpam* | libsystemd*) continue ;;
                lib* | zlib1g | gcc-*-base) [ -n "${seen[$dependency]:-}" ] || level+=("$dependency") ;;
            esac
        done < <(apt-cache depends --no-recommends --no-suggests --no-conflicts --no-breaks \
            --no-replaces --no-enhances "${next[@]}" 2>/dev/null \
            | awk '$1 ~ /^\|?(Pre)?Depends:$/ && $2 !~ /^</ {print $2}' | sort -u)
    done
}

kernel_dir=$(kernel_prepare) || { log "could not get Debian's kernel package"; exit 1; }
vmlinuz=$(ls "$kernel_dir"/boot/vmlinuz-*)
kernel_version=${vmlinuz##*/vmlinuz-}
kernel=$vmlinuz
[ -f "$kernel_dir/vmlinux" ] && kernel=$kernel_dir/vmlinux

out="$(rdmig_cache_dir)/softroce"
mkdir -p "$out"
# Resolving the packages costs seconds of apt-cache; it is redone only when apt's lists change.
lists_state=$( { printf '%s\n' "${wanted[@]}"; debs_lists_state; } | sha256sum | cut -d' ' -f1)
if [ -f "$out/debs" ] && [ "$(cat "$out/lists-state" 2>/dev/null)" = "$lists_state" ] \
    && xargs -a "$out/debs" -d '\n' ls >/dev/null 2>&1; then
    mapfile -t debs <"$out/debs"
    packages=("${debs[@]##*/}")
    packages=("${packages[@]%%_*}")
else
    mapfile -t packages < <(closure "${wanted[@]}" | sort)
    mapfile -t debs < <(debs_fetch "${packages[@]}")
    ((${#debs[@]} == ${#packages[@]})) || { log "not every package downloaded: ${packages[*]}"; exit 1; }
    printf '%s\n' "${debs[@]}" >"$out/debs"
    echo "$lists_state" >"$out/lists-state"
fi
root=$out/root
key=$( { printf '%s\n' "${debs[@]}" "${modules[@]}" "$kernel_dir"
    cat "$here/build-image.sh" "$here/guest-init.sh" "$guest/mkcpio.py" "$guest/debs-lib.sh"; } | sha256sum | cut -d' ' -f1)
rdma_core=$(basename "$(printf '%s\n' "${debs[@]}" | grep '/libibverbs1_')" | cut -d_ -f2)

if [ -f "$out/base.cpio" ] && [ "$(cat "$out/key" 2>/dev/null)" = "$key" ]; then
    log "up to date in $out"
else
    started=$(date +%s.%N)
    log "building in $out from ${#debs[@]} packages: ${packages[*]}"
    rm -rf "$root" "$out/base.cpio" "$out/key"
    mkdir -p "$root"
    for deb in "${debs[@]}"; do
        dpkg-deb -x "$deb" "$root"
    done
    # tc's q_atm plugin would need libatm; tc is not used here.
    rm -rf "$root"/usr/share/{doc,man,info,locale,lintian,bug,bash-completion,zsh} "$root"/etc/{init.d,cron.*} \
        "$root"/usr/lib/x86_64-linux-gnu/tc

    # kmod from its own .deb, run by the image's own loader, so the host needs no kmod.
    loader=$root/lib64/ld-linux-x86-64.so.2
    libraries="$root/lib/x86_64-linux-gnu:$root/usr/lib/x86_64-linux-gnu"
    kmod() { local name=$1; shift; "$loader" --library-path "$libraries" --argv0 "$name" "$root/bin/kmod" "$@"; }
    if [ ! -f "$kernel_dir/lib/modules/$kernel_version/modules.dep" ]; then
        log "depmod for the full kernel $kernel_version (the kernel .deb ships no modules.dep)"
        kmod depmod -b "$kernel_dir" "$kernel_version"
    fi
    module_files=()
    for module in "${modules[@]}"; do
        while read -r kind path _; do
            [ "$kind" = insmod ] && module_files+=("${path#"$kernel_dir"/}")
        done < <(kmod modprobe --show-depends -d "$kernel_dir" -S "$kernel_version" "$module" 2>&1 \
            || { log "modprobe --show-depends $module failed"; exit 1; })
    done
    mkdir -p "$root/lib/modules/$kernel_version"
    for file in $(printf '%s\n' "${module_files[@]}" | sort -u); do
        mkdir -p "$root/$(dirname "$file")"
        cp "$kernel_dir/$file" "$root/$file"
    done
    cp "$kernel_dir/lib/modules/$kernel_version"/modules.{order,builtin,builtin.modinfo} "$root/lib/modules/$kernel_version/"
    kmod depmod -b "$root" "$kernel_version"
    log "$(printf '%s\n' "${module_files[@]}" | sort -u | wc -l) kernel modules: $(printf '%s\n' "${module_files[@]##*/}" | sort -u | tr '\n' ' ')"

    mkdir -p "$root"/{bb,dev,proc,sys,tmp,run,job/bin,job/lib,etc}
    for applet in $("$root/bin/busybox" --list); do
        ln -sf /bin/busybox "$root/bb/$applet"
    done
    printf '%s\n' /lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu /job/lib >"$root/etc/ld.so.conf"
    ldconfig -r "$root"
    echo "root:x:0:0:root:/root:/bin/sh" >"$root/etc/passwd"
    echo "root:x:0:" >"$root/etc/group"
    # No package here ships /etc/hosts (netbase would) or nsswitch.conf: without them glibc
    # cannot resolve `localhost`, and its built-in default tries DNS first (there is none).
    [ -f "$root/etc/hosts" ] || printf '%s\n' "127.0.0.1 localhost" "::1 localhost ip6-localhost ip6-loopback" >"$root/etc/hosts"
    [ -f "$root/etc/nsswitch.conf" ] || printf '%s\n' "passwd: files" "group: files" "hosts: files" >"$root/etc/nsswitch.conf"
    install -m 0755 "$here/guest-init.sh" "$root/init"

    # Every shared library an ELF file in the image asks for must be in the image.
    missing=$(python3 - "$root" <<'PY'
import os, subprocess, sys
root = sys.argv[1]
have, need = set(), {}
for directory, _, files in os.walk(root):
    for name in files:
        path = os.path.join(directory, name)
        if ".so" in name:
            have.add(name)
        if os.path.islink(path) or not os.path.isfile(path):
            continue
        with open(path, "rb") as f:
            if f.read(4) != b"\x7fELF":
                continue
        out = subprocess.run(["readelf", "-d", path], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if "(NEEDED)" in line:
                need.setdefault(line.split("[")[1].rstrip("]"), path)
for soname, user in sorted(need.items()):
    if soname not in have:
        print(f"{soname} (needed by {os.path.relpath(user, root)})")
PY
)
    if [ -n "$missing" ]; then
        log "shared libraries missing from the image:"
        echo "$missing" >&2
        exit 1
    fi
    python3 "$guest/mkcpio.py" "$root" "$out/base.cpio.tmp" --node dev/console:c:5:1
    mv "$out/base.cpio.tmp" "$out/base.cpio"
    echo "$key" >"$out/key"
    log "built base.cpio ($(du -m "$out/base.cpio" | cut -f1) MiB) in $(echo "$(date +%s.%N) - $started" | bc | cut -c1-5) s"
fi
echo "RDMIG_SOFTROCE_KERNEL=$kernel"
echo "RDMIG_SOFTROCE_INITRD=$out/base.cpio"
echo "RDMIG_SOFTROCE_ROOT=$root"
echo "RDMIG_SOFTROCE_KERNEL_VERSION=$kernel_version"
echo "RDMIG_SOFTROCE_RDMA_CORE=$rdma_core"
