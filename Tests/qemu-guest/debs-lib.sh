# Fetching and unpacking Debian packages into rdmig's build cache; source it (bash) after
# qemu-lib.sh. Packages come from the machine's own apt sources with `apt-get download`
# (no root needed for that part) and are unpacked with dpkg-deb -x; nothing is installed.

debs_dir() { echo "$(rdmig_cache_dir)/debs"; }

# apt-get download needs package lists; a fresh machine may have none yet.
debs_ensure_lists() {
    apt-cache show linux-image-amd64 >/dev/null 2>&1 && return 0
    echo "rdmig debs: no apt package lists; running apt-get update" >&2
    local sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq >&2
}

# Prints the cached .deb file of each package (the candidate version of the machine's apt
# sources), downloading the ones not cached yet. File names are apt's, epochs written `%3a`.
debs_fetch() {
    local dir
    dir=$(debs_dir)
    mkdir -p "$dir"
    debs_ensure_lists || return 1
    local uris
    uris=$(apt-get download --print-uris "$@" 2>/dev/null) || {
        echo "rdmig debs: apt-get download --print-uris $* failed: is every package known to apt?" >&2
        return 1
    }
    local missing=() line file size
    while read -r line; do
        [ -n "$line" ] || continue
        file=$(awk '{print $2}' <<<"$line")
        size=$(awk '{print $3}' <<<"$line")
        if [ ! -f "$dir/$file" ] || [ "$(stat -c %s "$dir/$file")" != "$size" ]; then
            missing+=("$(sed -E 's/_.*//' <<<"$file")")
        fi
    done <<<"$uris"
    if ((${#missing[@]})); then
        echo "rdmig debs: downloading ${missing[*]}" >&2
        # As root apt warns that _apt cannot write here and downloads unsandboxed: harmless.
        (cd "$dir" && apt-get download "${missing[@]}" 2>&1 | grep -v -e '^W: Download is performed unsandboxed' -e '^Get:' -e '^Fetched' >&2) || true
    fi
    while read -r line; do
        [ -n "$line" ] || continue
        file=$(awk '{print $2}' <<<"$line")
        [ -f "$dir/$file" ] || { echo "rdmig debs: $file did not download" >&2; return 1; }
        echo "$dir/$file"
    done <<<"$uris"
}

# Changes whenever apt's package lists do (apt-get update that brought something new).
debs_lists_state() {
    stat -c '%n %Y %s' /var/lib/apt/lists/*Packages* 2>/dev/null | sha256sum | cut -d' ' -f1
}

# The versioned kernel package that linux-image-amd64 currently points at.
kernel_package() {
    debs_ensure_lists || return 1
    apt-cache depends linux-image-amd64 2>/dev/null \
        | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'
}

# Unpacks the Debian kernel package once per version into the cache and prints its folder.
# The folder holds boot/vmlinuz-VERSION, lib/modules/VERSION and, extracted from vmlinuz,
# vmlinux: an ELF kernel with a PVH entry note (CONFIG_PVH=y in Debian's config), which QEMU
# boots directly, skipping the in-guest decompression that costs seconds under TCG.
kernel_prepare() {
    local package deb stem dir state resolved
    # Asking apt costs ~1.5 s; the answer stands while apt's package lists are unchanged.
    state=$(debs_lists_state)
    resolved="$(rdmig_cache_dir)/kernel-deb"
    deb=$(sed -n "s|^$state ||p" "$resolved" 2>/dev/null)
    if [ -z "$deb" ] || [ ! -f "$deb" ]; then
        package=$(kernel_package) || return 1
        [ -n "$package" ] || { echo "rdmig debs: apt knows no linux-image-amd64" >&2; return 1; }
        deb=$(debs_fetch "$package") || return 1
        echo "$state $deb" >"$resolved"
    fi
    stem=$(basename "$deb" .deb)
    dir="$(rdmig_cache_dir)/kernel/$stem"
    if [ ! -f "$dir/.unpacked" ]; then
        echo "rdmig debs: unpacking $stem" >&2
        # Older unpacked kernels are 400 MB each and no longer used.
        rm -rf "$(rdmig_cache_dir)/kernel"
        mkdir -p "$dir"
        dpkg-deb -x "$deb" "$dir" || return 1
        local vmlinuz offset
        vmlinuz=$(ls "$dir"/boot/vmlinuz-*)
        # Debian builds x86 kernels with CONFIG_KERNEL_XZ: the payload is one xz stream.
        offset=$(grep -abo -m1 $'\xfd7zXZ\x00' "$vmlinuz" | head -1 | cut -d: -f1)
        if [ -n "$offset" ]; then
            # xz stops at the end of its stream, so tail may die of SIGPIPE: judge the result.
            tail -c +$((offset + 1)) "$vmlinuz" | xz -dc --single-stream >"$dir/vmlinux" 2>/dev/null || true
        fi
        if [ "$(head -c 4 "$dir/vmlinux" 2>/dev/null | od -An -tx1 | tr -d ' ')" != 7f454c46 ]; then
            echo "rdmig debs: could not extract an ELF vmlinux from $vmlinuz; guests boot vmlinuz" >&2
            rm -f "$dir/vmlinux"
        fi
        touch "$dir/.unpacked"
    fi
    echo "$dir"
}
