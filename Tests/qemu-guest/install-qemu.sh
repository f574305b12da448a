#!/usr/bin/env bash
# Installs qemu-system-x86 for rdmig's QEMU tests and says which QEMU is there.
#
# Prefers a QEMU >= 9.0: Debian's own where its release has one, else the one in the release's
# backports (bookworm-backports: 10.0). Debian 12's QEMU 7.2 loses pages written during
# migration under TCG (fixed upstream in 9.0 by commit 03bfc2188f, "Fix migration dirty bitmap
# coherency with TCG memory access"); on 7.2 the guests need an odd RAM size instead (see
# qemu-lib.sh). Backports is enabled from the machine's own apt source: the first stanza of
# /etc/apt/sources.list.d/debian.sources is copied with `Suites: bookworm-backports`, so no
# mirror is ever named in this repository. Falls back to Debian's 7.2 when backports has none.
# Idempotent: with a QEMU >= 9.0 installed it only reports.
#
# Usage: install-qemu.sh [--env]
#   --env   print only shell assignments: RDMIG_QEMU_VERSION=x.y.z RDMIG_QEMU_ODD_RAM=0|1
# Env:    RDMIG_QEMU_NO_BACKPORTS=1  install (or keep) Debian's own QEMU, never backports.
# Exit:   0 when a qemu-system-x86_64 is installed, 1 otherwise.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=qemu-lib.sh
. "$here/qemu-lib.sh"

env_only=0
[ "${1:-}" = "--env" ] && env_only=1
say() { [ "$env_only" = 1 ] && echo "rdmig qemu: $*" >&2 || echo "rdmig qemu: $*"; }

sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
apt_quiet() { DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get "$@" -qq >/dev/null; }

codename=$( . /etc/os-release 2>/dev/null; echo "${VERSION_CODENAME:-bookworm}")
suite=$codename-backports
backports_list=/etc/apt/sources.list.d/rdmig-$suite.sources
debian_sources=/etc/apt/sources.list.d/debian.sources

enable_backports() {
    [ -f "$backports_list" ] && return 0
    if [ ! -f "$debian_sources" ]; then
        say "no $debian_sources to derive $suite from; staying with Debian's QEMU"
        return 1
    fi
    # The first stanza (up to the first blank line), with its Suites line replaced.
    local stanza
    stanza=$(awk 'BEGIN{RS=""} NR==1{print; exit}' "$debian_sources" \
        | sed -E "s/^Suites:.*/Suites: $suite/")
    if ! grep -q "^Suites: $suite\$" <<<"$stanza" || ! grep -q '^URIs:' <<<"$stanza"; then
        say "the first stanza of $debian_sources is not a deb822 source with URIs/Suites; staying with Debian's QEMU"
        return 1
    fi
    say "enabling $suite from the first stanza of $debian_sources"
    printf '%s\n' "$stanza" | "${sudo_cmd[@]}" tee "$backports_list" >/dev/null
    "${sudo_cmd[@]}" apt-get update -qq
}

installed_major() {
    local v
    v=$(qemu_version 2>/dev/null) || { echo 0; return; }
    echo "${v%%.*}"
}

# Upstream major version of a Debian version string such as 1:7.2+dfsg-7+deb12u18.
upstream_major() { local v=${1#*:}; v=${v%%.*}; [[ "$v" =~ ^[0-9]+$ ]] && echo "$v" || echo 0; }

install_qemu() { apt_quiet install -y --no-install-recommends "$@" qemu-system-x86; }

if [ "$(installed_major)" -lt 9 ]; then
    apt-cache show qemu-system-x86 >/dev/null 2>&1 || "${sudo_cmd[@]}" apt-get update -qq
    debian_candidate=$(apt-cache policy qemu-system-x86 | awk '/Candidate:/ {print $2}')
    installed=0
    if [ "$(upstream_major "$debian_candidate")" -ge 9 ]; then
        say "installing Debian's qemu-system-x86 $debian_candidate"
        install_qemu && installed=1
    elif [ "${RDMIG_QEMU_NO_BACKPORTS:-0}" != 1 ] && enable_backports; then
        candidate=$(apt-cache madison qemu-system-x86 \
            | awk -F'|' -v suite="$suite" '$3 ~ suite {gsub(/ /, "", $2); print $2; exit}')
        if [ "$(upstream_major "$candidate")" -ge 9 ]; then
            say "installing qemu-system-x86 $candidate from $suite"
            install_qemu -t "$suite" && installed=1 \
                || say "installing from $suite failed; falling back to Debian's QEMU"
        else
            say "$suite has no qemu-system-x86 >= 9.0; falling back to Debian's QEMU"
        fi
    fi
    if [ "$installed" = 0 ] && ! command -v qemu-system-x86_64 >/dev/null; then
        say "installing Debian's qemu-system-x86 $debian_candidate"
        install_qemu || true
    fi
fi

if ! command -v qemu-system-x86_64 >/dev/null; then
    say "qemu-system-x86_64 is not installed and could not be installed (apt-get install qemu-system-x86)"
    exit 1
fi
version=$(qemu_version)
odd=0
qemu_needs_odd_ram && odd=1
if [ "$env_only" = 1 ]; then
    echo "RDMIG_QEMU_VERSION=$version RDMIG_QEMU_ODD_RAM=$odd"
else
    package=$(dpkg-query -W -f='${Version}' qemu-system-x86 2>/dev/null || echo "not from a package")
    say "QEMU $version installed ($(command -v qemu-system-x86_64), package $package)"
    if [ "$odd" = 1 ]; then
        say "QEMU $version < 9.0 loses pages written during migration under TCG: guests use the odd-RAM-size workaround (RAM + 8 KiB)"
    else
        say "QEMU $version has the TCG dirty-bitmap fix: no odd-RAM-size workaround needed"
    fi
fi
