#!/usr/bin/env bash
# test.sh — runs rangecopy's whole Rust test suite against the dev databases.
#
# Starts the throwaway servers (scripts/dev-db.sh start), exports their URLs
# (RANGECOPY_TEST_PG_SOURCE, RANGECOPY_TEST_PG_TARGET, RANGECOPY_TEST_MYSQL), then runs
# `cargo test --all-targets` with any extra arguments passed through. Installs Chromium when
# missing (the --listen status page is tested in it). Doc tests are not run.
# The exit code is cargo's. CI=true, when set, reaches the tests unchanged (they then fail
# instead of skipping when a database is unreachable).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

main() {
    cd "$REPO"
    if [[ -n ${CI+set} ]]; then export CI; fi
    scripts/dev-db.sh start
    # The live view's test loads the status page in a real headless browser.
    apt_install chromium
    eval "$(scripts/dev-db.sh env)"
    log "cargo test --all-targets $*"
    exec cargo test --all-targets "$@"
}

main "$@"
