#!/usr/bin/env bash
# test.sh — runs rangecopy's whole Rust test suite against the dev databases.
#
# Starts the throwaway servers (scripts/dev-db.sh start), exports their URLs
# (RANGECOPY_TEST_PG_SOURCE, RANGECOPY_TEST_PG_TARGET, RANGECOPY_TEST_MYSQL), then runs
# `cargo test --all-targets` with any extra arguments passed through. Installs Chromium when
# missing (the --listen status page is tested in it). Doc tests are not run.
# First validates the Kubernetes manifests under deploy/kubernetes against the Kubernetes JSON
# schemas (kubernetes-validate from PyPI, which bundles them: it runs offline), installed once
# into a venv under target/; an invalid manifest fails the run before any test.
# The exit code is cargo's. CI=true, when set, reaches the tests unchanged (they then fail
# instead of skipping when a database is unreachable).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# The oldest Kubernetes the example manifests are for (backoffLimitPerIndex is GA from 1.33),
# and the newest the validator knows (its default).
KUBERNETES_VERSIONS=(1.33 default)

validate_manifests() {
    local venv=$REPO/target/kubernetes-validate version args
    if [[ ! -x $venv/bin/kubernetes-validate ]]; then
        log "installing kubernetes-validate (pip, into $venv)"
        apt_install python3-venv
        rm -rf "$venv"
        mkdir -p "$REPO/target"
        if ! { python3 -m venv "$venv" && "$venv/bin/pip" install --quiet kubernetes-validate; } \
            >"$REPO/target/kubernetes-validate.log" 2>&1; then
            tail -n 5 "$REPO/target/kubernetes-validate.log" >&2
            die "could not install kubernetes-validate (see target/kubernetes-validate.log)"
        fi
    fi
    for version in "${KUBERNETES_VERSIONS[@]}"; do
        args=(--strict --quiet)
        [[ $version == default ]] || args+=(-k "$version")
        "$venv/bin/kubernetes-validate" "${args[@]}" deploy/kubernetes/*.yaml ||
            die "a manifest under deploy/kubernetes is not valid Kubernetes ${version/default/(newest)} (see above)"
    done
    log "deploy/kubernetes manifests valid"
}

main() {
    cd "$REPO"
    if [[ -n ${CI+set} ]]; then export CI; fi
    validate_manifests
    scripts/dev-db.sh start
    # The live view's test loads the status page in a real headless browser.
    apt_install chromium
    eval "$(scripts/dev-db.sh env)"
    log "cargo test --all-targets $*"
    exec cargo test --all-targets "$@"
}

main "$@"
