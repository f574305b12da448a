# Shared helpers for rdmig's QEMU test scripts; source it (bash), do not run it.
#
# Env: RDMIG_CACHE        build cache (default ~/.cache/rdmig), never inside the repository
#      RDMIG_QEMU         QEMU binary (default qemu-system-x86_64)
#      RDMIG_QEMU_ACCEL   tcg | kvm | auto (default auto: kvm only where kvm_intel/kvm_amd is loaded)
#      RDMIG_QEMU_ODD_RAM 0 | 1 to force the odd-RAM-size workaround off or on (default: by version)

rdmig_cache_dir() { echo "${RDMIG_CACHE:-$HOME/.cache/rdmig}"; }

qemu_binary() { echo "${RDMIG_QEMU:-qemu-system-x86_64}"; }

# Prints x.y.z of the installed QEMU; fails when there is none.
qemu_version() {
    local binary
    binary=$(qemu_binary)
    command -v "$binary" >/dev/null || return 1
    "$binary" --version | sed -n '1s/.*version \([0-9][0-9.]*\).*/\1/p'
}

# QEMU before 9.0 loses pages written during migration under TCG (upstream fix 03bfc2188f,
# "Fix migration dirty bitmap coherency with TCG memory access"). Measured on this kind of
# machine: a RAM size that is not a multiple of the dirty-bitmap word (1 GiB + 8 KiB) takes a
# slower sync path that does not lose writes. Succeeds when the workaround is needed.
qemu_needs_odd_ram() {
    case "${RDMIG_QEMU_ODD_RAM:-}" in
        1) return 0 ;;
        0) return 1 ;;
    esac
    local version major
    version=$(qemu_version) || return 1
    major=${version%%.*}
    [ "$major" -lt 9 ]
}

# The -m value for a guest of MIB mebibytes, with the workaround applied when needed.
qemu_memory_arg() {
    local mib=$1
    if qemu_needs_odd_ram; then
        echo "$((mib * 1024 + 8))K"
    else
        echo "${mib}M"
    fi
}

# /dev/kvm alone is not enough: on these machines it is PVM (no vmx/svm), under which a stock
# kernel cannot boot (`-cpu host` aborts "failed to set MSR 0x10a"). Only a loaded kvm_intel or
# kvm_amd module means hardware virtualisation.
kvm_usable() {
    [ -r /dev/kvm ] && [ -w /dev/kvm ] || return 1
    [ -d /sys/module/kvm_intel ] || [ -d /sys/module/kvm_amd ]
}

# Prints the accelerator and CPU arguments, one per line (read them with mapfile).
qemu_accel_args() {
    local accel=${RDMIG_QEMU_ACCEL:-auto}
    if [ "$accel" = auto ]; then
        if kvm_usable; then accel=kvm; else accel=tcg; fi
    fi
    case "$accel" in
        kvm) printf '%s\n' -accel kvm -cpu host ;;
        tcg) printf '%s\n' -accel tcg,thread=multi -cpu max ;;
        *) echo "RDMIG_QEMU_ACCEL must be tcg, kvm or auto, not '$accel'" >&2; return 1 ;;
    esac
}

# qboot skips SeaBIOS's option-ROM and boot-device scanning: a direct -kernel boot starts
# noticeably sooner under TCG. Prints nothing (QEMU's default SeaBIOS) where qboot is missing.
qemu_firmware_args() {
    local dir
    for dir in /usr/share/qemu /usr/share/qboot /usr/lib/qemu; do
        if [ -f "$dir/qboot.rom" ]; then
            printf '%s\n' -bios "$dir/qboot.rom"
            return 0
        fi
    done
}

# "tcg" or "kvm": what qemu_accel_args picks, for logs.
qemu_accel_name() {
    local args
    args=$(qemu_accel_args) || return 1
    sed -n '2s/,.*//p' <<<"$args"
}
