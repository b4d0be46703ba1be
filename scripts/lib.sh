# shellcheck shell=bash
# lib.sh — helpers shared by the scripts in scripts/ (sourced, not run).
#
# Provides: REPO (repository root), log/die, is_root, pkg_installed and apt_install
# (installs Debian packages quietly, only those missing, with sudo when not root).

# shellcheck disable=SC2034 # used by the scripts that source this file
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SCRIPT_NAME=${0##*/}

log() { printf '%s: %s\n' "$SCRIPT_NAME" "$*" >&2; }
die() { log "error: $*"; exit 1; }
is_root() { [[ $(id -u) -eq 0 ]]; }

# Succeeds when the Debian package $1 is installed.
pkg_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# Runs a command as root: directly when root, through sudo otherwise.
as_root() {
    if is_root; then
        "$@"
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        sudo -n "$@"
    else
        die "need root to run: $* (install the packages by hand, or run as root)"
    fi
}

# apt_install PKG...: installs the packages that are missing, quietly. Services that the
# packages would start (the distribution's own PostgreSQL/MariaDB on default ports) are kept
# from starting with a temporary policy-rc.d, unless one is already in place.
apt_install() {
    local missing=() pkg
    for pkg in "$@"; do
        pkg_installed "$pkg" || missing+=("$pkg")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    log "installing ${missing[*]} (apt-get)"
    if ! compgen -G '/var/lib/apt/lists/*Packages*' >/dev/null; then
        as_root apt-get update -qq
    fi
    local policy=/usr/sbin/policy-rc.d made_policy=0
    if [[ ! -e $policy ]]; then
        as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy"
        made_policy=1
    fi
    local out rc=0
    out=$(mktemp)
    apt_get_install "${missing[@]}" >"$out" 2>&1 ||
        { as_root apt-get update -qq >>"$out" 2>&1 && apt_get_install "${missing[@]}" >>"$out" 2>&1; } ||
        rc=$?
    [[ $made_policy -eq 1 ]] && as_root rm -f "$policy"
    if [[ $rc -ne 0 ]]; then
        tail -n 20 "$out" >&2
        rm -f "$out"
        die "apt-get install ${missing[*]} failed (exit $rc)"
    fi
    rm -f "$out"
}

apt_get_install() {
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "$@"
}
