#!/usr/bin/env bash
# bench.sh — times rangecopy against peer tools on the same copy, on the dev databases.
#
#   scripts/bench.sh [ROWS] [--regen]        ROWS defaults to 5000000
#   BENCH_ONLY=psql,pgcopydb,rangecopy,whole_pgcopydb,whole_rangecopy,my_pgloader,verify_rangecopy,…
#                                            the tools to run (default: all of them but the
#                                            opt-in scale rows)
#
# PostgreSQL → PostgreSQL section: generates table `orders` (ROWS rows) in database rc_bench on
# the PG source (kept between runs when it already holds exactly ROWS rows; --regen forces),
# then copies it, one tool after the other, into a fresh database rc_bench_<tool> on the PG
# target:
#   psql       psql COPY TO STDOUT (binary) | psql COPY FROM STDIN, then ADD PRIMARY KEY
#   pgcopydb   pgcopydb clone --table-jobs 2 --index-jobs 2 (its timing includes the VACUUM
#              ANALYZE that pgcopydb 0.10 always runs on the target)
#   rangecopy  target/release/rangecopy copy --job bench (creates, loads, builds the key, digests)
#   backfill   the same with --into-existing --on-conflict skip into an orders table that exists
#              with its primary key and already holds every tenth row (keys interleaved, other
#              values): each chunk is staged and merged with INSERT … ON CONFLICT DO NOTHING.
#              Its ratio over `rangecopy` is the cost of the merge (goal: at most 1.5×).
#   backfill_new the same into an orders table that holds only the newest tenth of the keys (an
#              application that has written new rows while the history waits): chunks whose
#              range holds no row are loaded straight into the table, without staging or merge.
#   procs_one  rangecopy copy --workers 2: one process of two workers
#   procs_two  rangecopy copy --workers 1 and rangecopy worker --workers 1 on the same job, side
#              by side: two processes of one worker. Its ratio over procs_one is what sharing a
#              job between processes through the target's state costs (expected about 1.0 on
#              2 cores), and the coordination overhead per chunk (claim + renew + commit check,
#              ms) is read from the job's claims afterwards. Skipped while the binary has no
#              `worker` command.
# Each run is timed for wall time and the peak RSS of the client processes (not the servers),
# its row count on the target is checked, and the figures go to target/bench/results.json.
# Per-tool output is kept in target/bench/<tool>.log.
#
# Scale (opt-in: BENCH_ONLY=scale_1x,scale_10x; ~25 GB of disk and some 15 minutes at the
# default size): the same orders copy at BENCH_SCALE_ROWS rows (default ROWS) and at ten times
# as many (50M), tables orders_1x and orders_10x of database rc_bench_scale on the PG source
# (kept between runs), each copied into a fresh database that is dropped afterwards:
#   scale_1x   rangecopy copy orders_1x
#   scale_10x  rangecopy copy orders_10x
# The time ratio 10×/1× should stay at most 10.5 and the peak RSS ratio about 1 (memory flat).
#
# Whole-database section (PostgreSQL → PostgreSQL): initializes database rc_bench_whole on the
# PG source with `pgbench -i -s ${BENCH_WHOLE_SCALE:-50} --partitions 8 --foreign-keys` (pgbench
# from PATH or /usr/lib/postgresql/*/bin; kept between runs when made at the same scale, --regen
# forces; PostgreSQL 12 or later on both servers, else skipped), then copies the whole database
# into a fresh database rc_bench_whole_<tool> on the PG target:
#   whole_pgcopydb   pgcopydb clone --table-jobs 2 --index-jobs 2 (as pgcopydb above)
#   whole_rangecopy  target/release/rangecopy copy --workers 2 (no table named: every table)
# Each copy is compared with the source (files under target/bench/whole/): the same tables and
# partitions (parent, bound, partition key, columns), constraints and indexes, the same row
# count in every table, every constraint validated and every table analyzed (statistics in
# pg_statistic or an analyze in pg_stat_user_tables). A difference marks the tool FAILED in the
# summary; the other tools still run. A partitioned table left unanalyzed is only noted (autovacuum
# never analyzes one; pgcopydb 0.10 does not either). Scale 50 is 5 million accounts (~0.65 GB):
# about 1.5 minutes for both tools on the dev servers, plus ~30 s for pgbench -i the first time.
#
# MariaDB → PostgreSQL section: generates the same `orders` table (same generator rules) in
# MariaDB database rc_bench (amount decimal(12,2), created_at datetime(6), shipped tinyint(1),
# weight double, note text; kept between runs like the PG one), then copies it into a fresh
# database rc_bench_<tool> on the PG target:
#   my_pgloader   pgloader mysql://… postgresql://… (Debian package pgloader, its defaults)
#   my_pipe       mariadb --quick -N -B -e 'SELECT …' | psql COPY FROM STDIN, then ADD PRIMARY KEY
#   my_rangecopy  target/release/rangecopy copy --source mysql://… --job bench
#
# Verification (the same two pairs): each tool compares rc_bench.orders on the source with the
# rangecopy copy (rc_bench_rangecopy.public.orders, rc_bench_my_rangecopy.rc_bench.orders), all
# columns, key id; when that copy is missing or stale (not ROWS rows, or not matching the source's
# first 1000 rows) it is remade first with rangecopy copy, untimed:
#   verify_rangecopy      rangecopy verify --workers 2 orders (ranges planned by walking the key)
#   verify_reladiff       reladiff (PyPI, hashdiff) -k id -c '%' --threads 2, in a venv under
#                         target/bench when not on PATH
#   my_verify_rangecopy   the same from mysql://…/rc_bench
#   my_verify_reladiff    the same from mysql://…/rc_bench
# Each must report no difference (rangecopy: exit 0; reladiff: exit 0, no +/- line, no ERROR,
# its closing "Duration" line): a difference on identical data fails the tool.
#
# Verification memory (PostgreSQL → PostgreSQL, rc_bench_mem): peak RSS of rangecopy verify
# --workers 2 on copies in database rc_bench_mem_verify (made untimed with rangecopy copy):
#   mem_verify_identical    verify_wide (100000 rows of 1.6 kB, ~165 MB) as one range, identical
#   mem_verify_one_changed  the same after one row is changed on the target
#   mem_verify_many         verify_many (2000000 narrow rows), every row changed on the target
#   mem_verify_big_values   big_values (6 rows of 50 MB bytea), two rows changed on the target
# Each must report exactly the rows changed (0: exit 0, else exit 1 and that count).
#
# The dev databases: when RANGECOPY_TEST_PG_SOURCE, RANGECOPY_TEST_PG_TARGET and
# RANGECOPY_TEST_MYSQL are all set (eval "$(scripts/dev-db.sh env)" of a checkout whose servers
# run), those servers are used as they are; otherwise this checkout's are started.
#
# Adding a section: write bench_<tool> functions that call
# `measure` (or `record` for hand-timed pipes) and `check_rows`, and a section_* function that
# prepares the data and calls them; add it to main.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROWS=5000000
REGEN=0
BENCH_DIR=$REPO/target/bench
BENCH_TOOLS=${BENCH_ONLY:-psql,pgcopydb,rangecopy,backfill,backfill_new,procs_one,procs_two,whole_pgcopydb,whole_rangecopy,my_pgloader,my_pipe,my_rangecopy,verify_rangecopy,verify_reladiff,my_verify_rangecopy,my_verify_reladiff,mem_big_values,mem_my_big_values,mem_tenth,mem_verify_identical,mem_verify_one_changed,mem_verify_many,mem_verify_big_values}
# rangecopy's figures over each peer's, per section: "ours peer".
RATIOS=("rangecopy psql" "rangecopy pgcopydb" "backfill rangecopy" "backfill_new rangecopy" "procs_two procs_one" "scale_10x scale_1x" "whole_rangecopy whole_pgcopydb" "my_rangecopy my_pgloader" "my_rangecopy my_pipe"
    "verify_rangecopy verify_reladiff" "my_verify_rangecopy my_verify_reladiff")
# RANGECOPY_BIN=PATH benchmarks that binary as it is (no rebuild).
BIN=${RANGECOPY_BIN:-$REPO/target/release/rangecopy}
# Parallelism of both verifiers: rangecopy verify --workers, reladiff --threads.
VERIFY_THREADS=2
# The reladiff command (set by install_tools; empty when it could not be installed).
RELADIFF=

# ---------------------------------------------------------------- results accumulator

declare -A WALL_S=() RSS_KIB=() FAILED=()
# What a tool that did not fail left undone (shown beside "ok").
declare -A NOTES=()
# Rows a tool copied when not ROWS (the memory section's tables).
declare -A ROWS_OF=()
# More figures of a tool for results.json, as JSON members ("name": value, ...).
declare -A EXTRA_JSON=()
TOOLS_RUN=()

# record TOOL WALL_SECONDS PEAK_RSS_KIB
record() {
    TOOLS_RUN+=("$1")
    WALL_S[$1]=$2
    RSS_KIB[$1]=$3
}

# fail TOOL REASON: the tool's figures are not valid; the run ends with exit 1.
fail() {
    log "FAILED: $1: $2"
    FAILED[$1]=$2
    [[ -n ${WALL_S[$1]+set} ]] || TOOLS_RUN+=("$1")
}

selected() { [[ ,$BENCH_TOOLS, == *,$1,* ]]; }

# ---------------------------------------------------------------- helpers

# measure TOOL CMD...: runs CMD under /usr/bin/time (output to target/bench/TOOL.log) and
# records its wall time and peak RSS; CMD's exit status is left in MEASURE_STATUS.
MEASURE_STATUS=0
measure() {
    local tool=$1; shift
    local timing=$BENCH_DIR/$tool.time log_file=$BENCH_DIR/$tool.log
    log "running $tool"
    MEASURE_STATUS=0
    if /usr/bin/time -f '%e %M' -o "$timing" "$@" >"$log_file" 2>&1; then
        local wall rss
        read -r wall rss <"$timing"
        record "$tool" "$wall" "$rss"
        log "$tool: ${wall} s"
    else
        MEASURE_STATUS=$?
        tail -n 15 "$log_file" >&2
        fail "$tool" "command failed, exit $MEASURE_STATUS (see $log_file)"
    fi
}

# finish_pipe TOOL STATUS START END T DB: records a pipe timed by hand (wall time from the clock,
# peak RSS the largest of its three processes' from $T.{out,in,pk}.time) and checks its rows.
finish_pipe() {
    local tool=$1 status=$2 start=$3 end=$4 t=$5 db=$6
    if [[ $status -ne 0 ]]; then
        tail -n 15 "$t.log" >&2
        fail "$tool" "pipe failed (see $t.log)"
        return 0
    fi
    local wall rss
    wall=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }')
    rss=$(tail -q -n 1 "$t.out.time" "$t.in.time" "$t.pk.time" | sort -n | tail -n 1)
    record "$tool" "$wall" "$rss"
    log "$tool: ${wall} s"
    check_rows "$tool" "$PG_TGT/$db" orders
}

# A quiet psql that stops at the first error; the password comes from PGPASSWORD.
sql() {
    local url=$1; shift
    psql -X -q -At -v ON_ERROR_STOP=1 "$url" "$@"
}

recreate_db() {
    sql "$1/postgres" -c "SET client_min_messages = warning" \
        -c "DROP DATABASE IF EXISTS $2 WITH (FORCE)" -c "CREATE DATABASE $2"
}

# check_rows TOOL URL TABLE [EXPECTED]: the copy must have exactly EXPECTED (default ROWS) rows.
check_rows() {
    local count want=${4:-$ROWS}
    count=$(sql "$2" -c "SELECT count(*) FROM $3" 2>&1) || count="error: $count"
    if [[ $count != "$want" ]]; then
        fail "$1" "target has $count rows in $3, expected $want"
    fi
}

# postgres://user:pass@host:port/db → postgres://user@host:port (password to PGPASSWORD)
strip_password() { sed -E 's#^([a-z]+://[^:/@]+):[^@]*@#\1@#; s#/[^/]*$##' <<<"$1"; }
url_password() { sed -E 's#^[a-z]+://[^:/@]+:([^@]*)@.*#\1#' <<<"$1"; }

install_tools() {
    apt_install time
    if (selected pgcopydb || selected whole_pgcopydb) && ! command -v pgcopydb >/dev/null; then
        (apt_install pgcopydb) || log "could not install pgcopydb"
    fi
    if selected my_pgloader && ! command -v pgloader >/dev/null; then
        (apt_install pgloader) || log "could not install pgloader"
    fi
    if selected verify_reladiff || selected my_verify_reladiff; then install_reladiff; fi
}

# reladiff from PATH, else from a venv of its own under target/bench (made when missing, with
# the PostgreSQL and MySQL drivers); RELADIFF stays empty when neither works.
install_reladiff() {
    local venv=$BENCH_DIR/reladiff-venv
    if command -v reladiff >/dev/null; then
        RELADIFF=$(command -v reladiff)
    elif [[ -x $venv/bin/reladiff ]]; then
        RELADIFF=$venv/bin/reladiff
    else
        log "installing reladiff (pip, into $venv)"
        rm -rf "$venv"
        if python3 -m venv "$venv" >"$BENCH_DIR/reladiff-install.log" 2>&1 &&
            "$venv/bin/pip" install --quiet 'reladiff[postgresql,mysql]' >>"$BENCH_DIR/reladiff-install.log" 2>&1 &&
            [[ -x $venv/bin/reladiff ]]; then
            RELADIFF=$venv/bin/reladiff
        else
            tail -n 5 "$BENCH_DIR/reladiff-install.log" >&2
            log "could not install reladiff (see $BENCH_DIR/reladiff-install.log)"
        fi
    fi
}

# build_rangecopy TOOL: builds the release binary once (unless RANGECOPY_BIN is given); on
# failure, fails TOOL.
BUILT=0
build_rangecopy() {
    [[ -z ${RANGECOPY_BIN:-} && $BUILT -eq 0 ]] || return 0
    log "building the release binary"
    if ! (cd "$REPO" && cargo build --release --quiet); then
        fail "$1" "cargo build --release failed"
        return 1
    fi
    BUILT=1
}

# ---------------------------------------------------------------- PostgreSQL → PostgreSQL

# orders_ddl [TABLE]: the table (default orders), without its key.
orders_ddl() {
    cat <<SQL
CREATE TABLE ${1:-orders} (
    id           bigint,
    customer_id  bigint NOT NULL,
    amount       numeric(12,2),
    status       varchar(16),
    created_at   timestamp,
    shipped      boolean,
    weight       double precision,
    note         text
);
SQL
}

generate_orders() { generate_table rc_bench orders "$ROWS" recreate; }

# generate_table DB TABLE N [recreate]: table TABLE of N generated orders in database DB of the
# PG source, kept when its marker comment says it has N rows (--regen forces). DB is made when
# missing; with `recreate` it is made anew (the whole-database peers copy all of it). The marker
# comment is set last, so an interrupted generation is redone.
generate_table() {
    local db=$1 table=$2 rows=$3 recreate=${4:-}
    local marker="rangecopy bench: $rows rows, complete" exists
    exists=$(sql "$PG_SRC/postgres" -c "SELECT count(*) FROM pg_database WHERE datname = '$db'")
    if [[ $REGEN -eq 0 && $exists == 1 ]] &&
        [[ $(sql "$PG_SRC/$db" -c "SELECT obj_description(to_regclass('$table'), 'pg_class')" 2>/dev/null) == "$marker" ]] &&
        [[ $(sql "$PG_SRC/$db" -c "SELECT count(*) FROM $table") == "$rows" ]]; then
        log "$db.$table already has $rows rows (--regen to rebuild)"
        return 0
    fi
    log "generating $db.$table with $rows rows"
    local start=$SECONDS
    if [[ -n $recreate ]]; then
        recreate_db "$PG_SRC" "$db"
    elif [[ $exists == 0 ]]; then
        sql "$PG_SRC/postgres" -c "CREATE DATABASE $db"
    fi
    {
        echo "SET client_min_messages = warning; DROP TABLE IF EXISTS $table;"
        orders_ddl "$table"
        orders_rows "$rows" "$table"
        echo "ALTER TABLE $table ADD PRIMARY KEY (id);"
        echo "COMMENT ON TABLE $table IS '$marker';"
    } | sql "$PG_SRC/$db"
    sql "$PG_SRC/$db" -c "VACUUM ANALYZE $table"
    log "generated in $((SECONDS - start)) s"
}

# orders_rows N [TABLE]: the INSERT of the issue's generator, rows 1..N.
orders_rows() {
    cat <<SQL
INSERT INTO ${2:-orders}
SELECT g,
       (g * 7919) % 100000,
       round((random() * 10000)::numeric, 2),
       (ARRAY['pending', 'paid', 'shipped', 'delivered', 'cancelled'])[1 + g % 5],
       timestamp '2020-01-01' + g * interval '13 seconds',
       g % 3 = 0,
       random() * 100,
       repeat(md5(g::text), (1 + g % 4)::int)
FROM generate_series(1, $1::bigint) AS g;
SQL
}

# (a) psql | psql, then the primary key: timed by hand (wall from the clock, peak RSS the
# largest of the three psql processes).
bench_psql() {
    local db=rc_bench_psql t=$BENCH_DIR/psql
    recreate_db "$PG_TGT" "$db"
    orders_ddl | sql "$PG_TGT/$db"
    log "running psql"
    local start end status=0
    start=$(date +%s.%N)
    {
        /usr/bin/time -f '%M' -o "$t.out.time" \
            psql -X -q -v ON_ERROR_STOP=1 "$PG_SRC/rc_bench" -c "COPY orders TO STDOUT (FORMAT binary)" |
            /usr/bin/time -f '%M' -o "$t.in.time" \
                psql -X -q -v ON_ERROR_STOP=1 "$PG_TGT/$db" -c "COPY orders FROM STDIN (FORMAT binary)" &&
            /usr/bin/time -f '%M' -o "$t.pk.time" \
                psql -X -q -v ON_ERROR_STOP=1 "$PG_TGT/$db" -c "ALTER TABLE orders ADD PRIMARY KEY (id)"
    } >"$t.log" 2>&1 || status=$?
    end=$(date +%s.%N)
    finish_pipe psql "$status" "$start" "$end" "$t" "$db"
}

# (b) pgcopydb clone of the whole rc_bench database.
bench_pgcopydb() {
    if ! command -v pgcopydb >/dev/null; then
        log "SKIPPED pgcopydb: the Debian package pgcopydb is not available on this machine"
        return 0
    fi
    local db=rc_bench_pgcopydb work=$BENCH_DIR/pgcopydb-work
    recreate_db "$PG_TGT" "$db"
    rm -rf "$work"
    measure pgcopydb pgcopydb clone --source "$PG_SRC/rc_bench" --target "$PG_TGT/$db" \
        --dir "$work" --table-jobs 2 --index-jobs 2 --no-owner --no-acl --skip-extensions
    [[ -n ${FAILED[pgcopydb]+set} ]] || check_rows pgcopydb "$PG_TGT/$db" orders
}

# (c) rangecopy, from the release build.
bench_rangecopy() {
    local db=rc_bench_rangecopy
    build_rangecopy rangecopy || return 0
    recreate_db "$PG_TGT" "$db"
    measure rangecopy "$BIN" copy --source "$PG_SRC_FULL/rc_bench" --target "$PG_TGT_FULL/$db" \
        --job bench
    [[ -n ${FAILED[rangecopy]+set} ]] || check_rows rangecopy "$PG_TGT/$db" orders
}

# (d) rangecopy --into-existing into a live-looking target: the table exists with its primary
# key and already holds the "application's" rows (with other values), analyzed. `backfill`: every
# tenth key; `backfill_new`: the newest tenth of the keys.
bench_backfill_into() {
    local tool=$1 rows_held=$2 db=rc_bench_$1
    build_rangecopy "$tool" || return 0
    recreate_db "$PG_TGT" "$db"
    { orders_ddl; echo "ALTER TABLE orders ADD PRIMARY KEY (id);"; orders_rows "$ROWS" |
        sed "s/AS g;\$/AS g WHERE $rows_held;/"; } | sql "$PG_TGT/$db"
    sql "$PG_TGT/$db" -c "VACUUM ANALYZE orders"
    measure "$tool" "$BIN" copy --source "$PG_SRC_FULL/rc_bench" --target "$PG_TGT_FULL/$db" \
        --job bench --into-existing --on-conflict skip
    [[ -n ${FAILED[$tool]+set} ]] || check_rows "$tool" "$PG_TGT/$db" orders
}
bench_backfill() { bench_backfill_into backfill "g % 10 = 0"; }
bench_backfill_new() { bench_backfill_into backfill_new "g > $ROWS * 9 \/ 10"; }

# has_worker: the binary has the `worker` command (joining another process's job).
has_worker() { "$BIN" worker --help >/dev/null 2>&1; }

# (e) one process of two workers, the baseline of procs_two.
bench_procs_one() {
    local db=rc_bench_procs_one
    build_rangecopy procs_one || return 0
    if ! has_worker; then
        log "SKIPPED procs_one: this rangecopy has no worker command (rangecopy worker --help failed)"
        return 0
    fi
    recreate_db "$PG_TGT" "$db"
    measure procs_one "$BIN" copy --source "$PG_SRC_FULL/rc_bench" --target "$PG_TGT_FULL/$db" \
        --job bench --workers 2
    [[ -n ${FAILED[procs_one]+set} ]] || check_rows procs_one "$PG_TGT/$db" orders
}

# (f) two processes of one worker on one job: the copy that starts it and a worker that joins
# it, started together (the worker waits for the job). Timed by hand like the pipes: wall time
# until both have exited, peak RSS the larger of the two; then the coordination overhead per
# chunk from the job's claims (rangecopy.claims.coord_ms).
bench_procs_two() {
    local db=rc_bench_procs_two t=$BENCH_DIR/procs_two tool=procs_two
    build_rangecopy "$tool" || return 0
    if ! has_worker; then
        log "SKIPPED $tool: this rangecopy has no worker command (rangecopy worker --help failed)"
        return 0
    fi
    recreate_db "$PG_TGT" "$db"
    log "running $tool"
    local endpoints=(--source "$PG_SRC_FULL/rc_bench" --target "$PG_TGT_FULL/$db" --job bench)
    local start end copy_pid worker_pid copy_status=0 worker_status=0
    start=$(date +%s.%N)
    /usr/bin/time -f '%M' -o "$t.copy.time" "$BIN" copy "${endpoints[@]}" --workers 1 >"$t.copy.log" 2>&1 &
    copy_pid=$!
    /usr/bin/time -f '%M' -o "$t.worker.time" "$BIN" worker "${endpoints[@]}" --workers 1 --wait 5m \
        >"$t.worker.log" 2>&1 &
    worker_pid=$!
    wait "$copy_pid" || copy_status=$?
    wait "$worker_pid" || worker_status=$?
    end=$(date +%s.%N)
    if [[ $copy_status -ne 0 || $worker_status -ne 0 ]]; then
        tail -n 15 "$t.copy.log" "$t.worker.log" >&2
        fail "$tool" "copy exit $copy_status, worker exit $worker_status (see $t.copy.log, $t.worker.log)"
        return 0
    fi
    local wall rss
    wall=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }')
    rss=$(tail -q -n 1 "$t.copy.time" "$t.worker.time" | sort -n | tail -n 1)
    record "$tool" "$wall" "$rss"
    log "$tool: ${wall} s"
    check_rows "$tool" "$PG_TGT/$db" orders
    local coord ms claims
    if coord=$(sql "$PG_TGT/$db" -c "SELECT round(avg(coord_ms)::numeric, 3) || ' ' || count(*)
                                     FROM rangecopy.claims WHERE job = 'bench'" 2>&1) && [[ $coord == [0-9]* ]]; then
        read -r ms claims <<<"$coord"
        NOTES[$tool]="coordination $ms ms per chunk, $claims claims"
        EXTRA_JSON[$tool]="\"coord_ms_per_chunk\": $ms, \"claims\": $claims"
        log "$tool: ${NOTES[$tool]}"
    else
        NOTES[$tool]="coordination overhead not recorded"
        log "note: $tool: could not read rangecopy.claims.coord_ms: ${coord:-no claims}"
    fi
}

# (g) the scale rows: orders_1x (BENCH_SCALE_ROWS rows, default ROWS) and orders_10x (ten times
# as many) of rc_bench_scale, each copied into a fresh database that is dropped once its rows
# are counted (the 10× copy takes ~10 GB at the default size).
bench_scale() {
    local tool=$1 rows=$2 table=orders_${1#scale_} db=rc_bench_$1
    build_rangecopy "$tool" || return 0
    generate_table rc_bench_scale "$table" "$rows"
    recreate_db "$PG_TGT" "$db"
    measure "$tool" "$BIN" copy --source "$PG_SRC_FULL/rc_bench_scale" --target "$PG_TGT_FULL/$db" "$table" \
        --job bench
    ROWS_OF[$tool]=$rows
    [[ -n ${FAILED[$tool]+set} ]] || check_rows "$tool" "$PG_TGT/$db" "$table" "$rows"
    sql "$PG_TGT/postgres" -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"
}

section_pg_to_pg() {
    if selected psql || selected pgcopydb || selected rangecopy || selected backfill || selected backfill_new ||
        selected procs_one ||
        selected procs_two || selected verify_rangecopy || selected verify_reladiff; then
        generate_orders
    fi
    local tool rows=${BENCH_SCALE_ROWS:-$ROWS}
    if selected scale_1x; then bench_scale scale_1x "$rows"; fi
    if selected scale_10x; then bench_scale scale_10x $((rows * 10)); fi
    for tool in psql pgcopydb rangecopy backfill backfill_new procs_one procs_two; do
        if selected "$tool"; then "bench_$tool"; fi
    done
    if selected verify_rangecopy || selected verify_reladiff; then
        local verifiers=()
        for tool in verify_rangecopy verify_reladiff; do
            if selected "$tool"; then verifiers+=("$tool"); fi
        done
        build_rangecopy "${verifiers[0]}" || return 0
        ensure_copy "${verifiers[*]}" "$PG_SRC_FULL/rc_bench" rc_bench_rangecopy orders \
            "$(sql "$PG_SRC/rc_bench" -c "$FINGERPRINT_SQL")" || return 0
        if selected verify_rangecopy; then
            measure_verify_rangecopy verify_rangecopy "$PG_SRC_FULL/rc_bench" rc_bench_rangecopy
        fi
        if selected verify_reladiff; then
            measure_verify_reladiff verify_reladiff "${PG_SRC_FULL/postgres:/postgresql:}/rc_bench" \
                public.orders rc_bench_rangecopy public.orders
        fi
    fi
}

# ---------------------------------------------------------------- memory

# Peak RSS of rangecopy (a) copying rows with 50 MB bytea values, (b) the same from MariaDB
# LONGBLOB values, (c) copying a tenth of the orders rows, to compare with the full run: memory
# must stay under 256 MiB and not grow with the table. Their tables live in source databases
# of their own (rc_bench_mem on both engines), so that the whole-database copies of the other
# sections never see them.
section_memory() {
    if (selected mem_big_values || selected mem_tenth) &&
        [[ $(sql "$PG_SRC/postgres" -c "SELECT count(*) FROM pg_database WHERE datname = 'rc_bench_mem'") == 0 ]]; then
        sql "$PG_SRC/postgres" -c "CREATE DATABASE rc_bench_mem"
    fi
    if selected mem_big_values; then
        local big_rows=6
        pg_big_values $big_rows
        recreate_db "$PG_TGT" rc_bench_mem_big
        measure mem_big_values "$BIN" copy --source "$PG_SRC_FULL/rc_bench_mem" \
            --target "$PG_TGT_FULL/rc_bench_mem_big" big_values --chunk-rows 1 --job mem
        ROWS_OF[mem_big_values]=$big_rows
    fi
    if selected mem_my_big_values; then bench_mem_my_big_values; fi
    if selected mem_tenth; then
        local tenth=$((ROWS / 10))
        sql "$PG_SRC/rc_bench_mem" -c "DROP TABLE IF EXISTS orders"
        { orders_ddl; orders_rows "$tenth"; echo "ALTER TABLE orders ADD PRIMARY KEY (id); ANALYZE orders;"; } |
            sql "$PG_SRC/rc_bench_mem"
        recreate_db "$PG_TGT" rc_bench_mem_tenth
        measure mem_tenth "$BIN" copy --source "$PG_SRC_FULL/rc_bench_mem" \
            --target "$PG_TGT_FULL/rc_bench_mem_tenth" orders --job mem
        ROWS_OF[mem_tenth]=$tenth
        # Peak RSS at all the rows over peak RSS at a tenth of them: ~1 when memory is flat.
        if selected rangecopy; then RATIOS+=("rangecopy mem_tenth"); fi
    fi
}

# pg_big_values N: rc_bench_mem.big_values on the PG source, N rows of 50 MB bytea values
# (made when missing or of another size).
pg_big_values() {
    local big_rows=$1
    if [[ $(sql "$PG_SRC/rc_bench_mem" -c "SELECT count(*) FROM pg_class WHERE relname = 'big_values'") == 0 ]] ||
        [[ $(sql "$PG_SRC/rc_bench_mem" -c "SELECT count(*) FROM big_values") != "$big_rows" ]]; then
        log "generating $big_rows rows of 50 MB bytea values"
        sql "$PG_SRC/rc_bench_mem" -c "DROP TABLE IF EXISTS big_values" \
            -c "CREATE TABLE big_values (id int PRIMARY KEY, b bytea)" \
            -c "ALTER TABLE big_values ALTER COLUMN b SET STORAGE EXTERNAL" \
            -c "INSERT INTO big_values SELECT g, decode(repeat(md5(g::text), 3276800), 'hex')
                FROM generate_series(1, $big_rows) g"
    fi
}

# pg_mem_table NAME ROWS DDL INSERT: table NAME of the PG source's rc_bench_mem, made by DDL and
# INSERT (with ROWS rows) when missing or of another size.
pg_mem_table() {
    local name=$1 rows=$2 ddl=$3 insert=$4
    if [[ $(sql "$PG_SRC/rc_bench_mem" -c "SELECT count(*) FROM pg_class WHERE relname = '$name'") == 0 ]] ||
        [[ $(sql "$PG_SRC/rc_bench_mem" -c "SELECT count(*) FROM $name") != "$rows" ]]; then
        log "generating rc_bench_mem.$name ($rows rows)"
        sql "$PG_SRC/rc_bench_mem" -c "DROP TABLE IF EXISTS $name" -c "$ddl" -c "$insert" -c "ANALYZE $name"
    fi
}

# measure_verify_mem TOOL DIFFERING ARGS...: rangecopy verify ARGS under /usr/bin/time; it must
# report exactly DIFFERING differing rows (0: exit 0 and IDENTICAL; else exit 1 and that count).
measure_verify_mem() {
    local tool=$1 differing=$2; shift 2
    local timing=$BENCH_DIR/$tool.time log_file=$BENCH_DIR/$tool.log status=0 want=0 verdict=IDENTICAL
    log "running $tool"
    /usr/bin/time -f '%e %M' -o "$timing" "$BIN" verify "$@" >"$log_file" 2>&1 || status=$?
    if [[ $differing -gt 0 ]]; then want=1 verdict="DIFFERENT: .*, $differing differing rows?"; fi
    if [[ $status -ne $want ]] || ! tail -n 1 "$log_file" | grep -q -E "^$verdict"; then
        tail -n 15 "$log_file" >&2
        fail "$tool" "expected exit $want and $differing differing rows, got exit $status (see $log_file)"
        return 0
    fi
    # time(1) writes "Command exited with non-zero status 1" first when the command does.
    local wall rss
    read -r wall rss < <(tail -n 1 "$timing")
    record "$tool" "$wall" "$rss"
    log "$tool: ${wall} s, peak RSS $((rss / 1024)) MiB"
}

# Peak RSS of rangecopy verify under differences: identical data, one changed row in a range
# of ~165 MB, every row of 2000000 changed, two changed rows of 50 MB values. Memory must
# stay bounded whatever differs.
section_verify_memory() {
    local db=rc_bench_mem_verify src=$PG_SRC_FULL/rc_bench_mem many=2000000
    if [[ $(sql "$PG_SRC/postgres" -c "SELECT count(*) FROM pg_database WHERE datname = 'rc_bench_mem'") == 0 ]]; then
        sql "$PG_SRC/postgres" -c "CREATE DATABASE rc_bench_mem"
    fi
    pg_mem_table verify_wide 100000 "CREATE TABLE verify_wide (id int PRIMARY KEY, s text)" \
        "INSERT INTO verify_wide SELECT g, repeat(md5(g::text), 50) FROM generate_series(1, 100000) g"
    pg_mem_table verify_many $many "CREATE TABLE verify_many (id bigint PRIMARY KEY, n int, s text)" \
        "INSERT INTO verify_many SELECT g, g % 1000, 'row ' || g FROM generate_series(1, $many) g"
    pg_big_values 6
    build_rangecopy mem_verify_identical || return 0
    log "copying the tables to verify into $db (rangecopy copy, untimed)"
    recreate_db "$PG_TGT" "$db"
    if ! "$BIN" copy --source "$src" --target "$PG_TGT_FULL/$db" verify_wide verify_many big_values \
        --job vmem --progress none >"$BENCH_DIR/$db-copy.log" 2>&1; then
        tail -n 15 "$BENCH_DIR/$db-copy.log" >&2
        fail mem_verify_identical "the copy to verify failed (see $BENCH_DIR/$db-copy.log)"
        return 0
    fi
    local args=(--source "$src" --target "$PG_TGT_FULL/$db" --workers "$VERIFY_THREADS")
    if selected mem_verify_identical; then
        measure_verify_mem mem_verify_identical 0 "${args[@]}" verify_wide --chunk-rows 1000000
        ROWS_OF[mem_verify_identical]=100000
    fi
    if selected mem_verify_one_changed; then
        sql "$PG_TGT/$db" -c "UPDATE verify_wide SET s = s || 'x' WHERE id = 54321"
        measure_verify_mem mem_verify_one_changed 1 "${args[@]}" verify_wide --chunk-rows 1000000
        ROWS_OF[mem_verify_one_changed]=100000
    fi
    if selected mem_verify_many; then
        sql "$PG_TGT/$db" -c "UPDATE verify_many SET n = n + 1"
        measure_verify_mem mem_verify_many $many "${args[@]}" verify_many
        ROWS_OF[mem_verify_many]=$many
    fi
    if selected mem_verify_big_values; then
        sql "$PG_TGT/$db" -c "UPDATE big_values SET b = overlay(b placing '\xff'::bytea from 1000 for 1) WHERE id IN (2, 5)"
        measure_verify_mem mem_verify_big_values 2 "${args[@]}" big_values
        ROWS_OF[mem_verify_big_values]=6
    fi
}

# (b) MariaDB rc_bench_mem.big_values: 6 rows of 50 MB LONGBLOB values, one row per chunk, so
# that the workers read huge rows at the same time. The server must accept 50 MB packets: a
# dev server started before dev-db.sh set max_allowed_packet has it raised for the run.
bench_mem_my_big_values() {
    local big_rows=6 bytes=$((50 * 1024 * 1024)) tool=mem_my_big_values
    mysql_env
    if [[ $(my -e "SELECT @@GLOBAL.max_allowed_packet") -lt $((bytes + (1 << 20))) ]]; then
        log "raising the MariaDB server's max_allowed_packet to 256M for 50 MB rows"
        if ! my -e "SET GLOBAL max_allowed_packet = 268435456"; then
            fail "$tool" "the MariaDB server's max_allowed_packet is too small for 50 MB rows"
            return 0
        fi
    fi
    my -e "CREATE DATABASE IF NOT EXISTS rc_bench_mem"
    if [[ $(my rc_bench_mem -e "SELECT count(*) FROM big_values WHERE LENGTH(b) = $bytes" 2>/dev/null) != "$big_rows" ]]; then
        log "generating $big_rows rows of 50 MB LONGBLOB values in MariaDB"
        my rc_bench_mem -e "DROP TABLE IF EXISTS big_values;
            CREATE TABLE big_values (id int PRIMARY KEY, b longblob);
            INSERT INTO big_values SELECT seq, REPEAT(UNHEX(MD5(seq)), $((bytes / 16))) FROM seq_1_to_$big_rows"
    fi
    build_rangecopy "$tool" || return 0
    recreate_db "$PG_TGT" rc_bench_mem_my_big
    measure "$tool" "$BIN" copy --source "$MY_URL_FULL/rc_bench_mem" \
        --target "$PG_TGT_FULL/rc_bench_mem_my_big" big_values --chunk-rows 1 --job mem
    ROWS_OF[$tool]=$big_rows
    if [[ -z ${FAILED[$tool]+set} ]]; then
        local count
        count=$(sql "$PG_TGT/rc_bench_mem_my_big" \
            -c "SELECT count(*) FROM rc_bench_mem.big_values WHERE length(b) = $bytes" 2>&1) || count="error: $count"
        [[ $count == "$big_rows" ]] || fail "$tool" "target has $count rows of 50 MB, expected $big_rows"
    fi
}

# ---------------------------------------------------------------- MariaDB → PostgreSQL

# A quiet mariadb client on the dev server; the password comes from MYSQL_PWD.
my() { mariadb -h "$MY_HOST" -P "$MY_PORT" -u "$MY_USER" -N -B "$@"; }

# The MariaDB URL without its database, and the client's login (password to MYSQL_PWD).
mysql_env() {
    MY_URL_FULL=${RANGECOPY_TEST_MYSQL%/*}
    MY_USER=$(sed -E 's#^[a-z]+://([^:/@]+).*#\1#' <<<"$RANGECOPY_TEST_MYSQL")
    MY_HOST=$(sed -E 's#^[a-z]+://[^@]*@([^:/]+).*#\1#' <<<"$RANGECOPY_TEST_MYSQL")
    MY_PORT=$(sed -E 's#^[a-z]+://[^@]*@[^:/]+:([0-9]+).*#\1#' <<<"$RANGECOPY_TEST_MYSQL")
    MYSQL_PWD=$(url_password "$RANGECOPY_TEST_MYSQL")
    export MYSQL_PWD
}

my_orders_ddl() {
    cat <<'SQL'
CREATE TABLE orders (
    id           bigint PRIMARY KEY,
    customer_id  bigint NOT NULL,
    amount       decimal(12,2),
    status       varchar(16),
    created_at   datetime(6),
    shipped      tinyint(1),
    weight       double,
    note         text
);
SQL
}

# The same generator rules as generate_orders, from MariaDB's sequence engine in slices of
# 500000 rows; the marker comment is set last, so an interrupted generation is redone.
my_generate_orders() {
    local marker="rangecopy bench: $ROWS rows, complete"
    if [[ $REGEN -eq 0 ]] &&
        [[ $(my -e "SELECT TABLE_COMMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'rc_bench' AND TABLE_NAME = 'orders'") == "$marker" ]] &&
        [[ $(my rc_bench -e "SELECT count(*) FROM orders") == "$ROWS" ]]; then
        log "MariaDB rc_bench.orders already has $ROWS rows (--regen to rebuild)"
        return 0
    fi
    log "generating MariaDB rc_bench.orders with $ROWS rows"
    local start=$SECONDS from to
    my -e "DROP DATABASE IF EXISTS rc_bench; CREATE DATABASE rc_bench"
    my_orders_ddl | my rc_bench
    for ((from = 1; from <= ROWS; from += 500000)); do
        to=$((from + 499999 < ROWS ? from + 499999 : ROWS))
        my rc_bench -e "INSERT INTO orders
            SELECT seq, (seq * 7919) % 100000, ROUND(RAND() * 10000, 2),
                   ELT(1 + seq % 5, 'pending', 'paid', 'shipped', 'delivered', 'cancelled'),
                   TIMESTAMP '2020-01-01 00:00:00' + INTERVAL seq * 13 SECOND,
                   seq % 3 = 0, RAND() * 100, REPEAT(MD5(seq), 1 + seq % 4)
              FROM seq_${from}_to_${to}"
    done
    my rc_bench -e "ANALYZE TABLE orders; ALTER TABLE orders COMMENT = '$marker'" >/dev/null
    log "generated in $((SECONDS - start)) s"
}

# (d) pgloader with its defaults (it creates the schema rc_bench, the table, the key).
bench_my_pgloader() {
    if ! command -v pgloader >/dev/null; then
        log "SKIPPED my_pgloader: the Debian package pgloader is not available on this machine"
        return 0
    fi
    local db=rc_bench_my_pgloader
    recreate_db "$PG_TGT" "$db"
    measure my_pgloader pgloader "$MY_URL_FULL/rc_bench" "${PG_TGT_FULL/postgres:/postgresql:}/$db"
    [[ -n ${FAILED[my_pgloader]+set} ]] || check_rows my_pgloader "$PG_TGT/$db" rc_bench.orders
}

# (e) mariadb | psql (text), then the primary key: timed by hand like bench_psql. The target
# table has the types rangecopy maps to; mariadb -B writes NULL as NULL and escapes tabs,
# newlines and backslashes as COPY's text format does.
bench_my_pipe() {
    local db=rc_bench_my_pipe t=$BENCH_DIR/my_pipe
    recreate_db "$PG_TGT" "$db"
    sql "$PG_TGT/$db" -c "CREATE TABLE orders (id bigint NOT NULL, customer_id bigint NOT NULL,
        amount numeric(12,2), status varchar(16), created_at timestamp(6), shipped smallint,
        weight double precision, note text)"
    log "running my_pipe"
    local start end status=0
    start=$(date +%s.%N)
    {
        /usr/bin/time -f '%M' -o "$t.out.time" \
            mariadb -h "$MY_HOST" -P "$MY_PORT" -u "$MY_USER" --quick -N -B rc_bench \
            -e "SELECT id, customer_id, amount, status, created_at, shipped, weight, note FROM orders" |
            /usr/bin/time -f '%M' -o "$t.in.time" \
                psql -X -q -v ON_ERROR_STOP=1 "$PG_TGT/$db" -c "COPY orders FROM STDIN (NULL 'NULL')" &&
            /usr/bin/time -f '%M' -o "$t.pk.time" \
                psql -X -q -v ON_ERROR_STOP=1 "$PG_TGT/$db" -c "ALTER TABLE orders ADD PRIMARY KEY (id)"
    } >"$t.log" 2>&1 || status=$?
    end=$(date +%s.%N)
    finish_pipe my_pipe "$status" "$start" "$end" "$t" "$db"
}

# (f) rangecopy from MariaDB (creates rc_bench.orders, loads it, builds the primary key and
# records the digests).
bench_my_rangecopy() {
    local db=rc_bench_my_rangecopy
    build_rangecopy my_rangecopy || return 0
    recreate_db "$PG_TGT" "$db"
    measure my_rangecopy "$BIN" copy --source "$MY_URL_FULL/rc_bench" --target "$PG_TGT_FULL/$db" --job bench
    [[ -n ${FAILED[my_rangecopy]+set} ]] || check_rows my_rangecopy "$PG_TGT/$db" rc_bench.orders
}

section_mysql_to_pg() {
    selected my_pgloader || selected my_pipe || selected my_rangecopy ||
        selected my_verify_rangecopy || selected my_verify_reladiff || return 0
    mysql_env
    my_generate_orders
    local tool
    for tool in my_pgloader my_pipe my_rangecopy; do
        if selected "$tool"; then "bench_$tool"; fi
    done
    if selected my_verify_rangecopy || selected my_verify_reladiff; then
        local verifiers=()
        for tool in my_verify_rangecopy my_verify_reladiff; do
            if selected "$tool"; then verifiers+=("$tool"); fi
        done
        build_rangecopy "${verifiers[0]}" || return 0
        ensure_copy "${verifiers[*]}" "$MY_URL_FULL/rc_bench" rc_bench_my_rangecopy rc_bench.orders \
            "$(my rc_bench -e "$FINGERPRINT_SQL" | tr '\t' '|')" || return 0
        if selected my_verify_rangecopy; then
            measure_verify_rangecopy my_verify_rangecopy "$MY_URL_FULL/rc_bench" rc_bench_my_rangecopy
        fi
        if selected my_verify_reladiff; then
            measure_verify_reladiff my_verify_reladiff "$MY_URL_FULL/rc_bench" orders \
                rc_bench_my_rangecopy rc_bench.orders
        fi
    fi
}

# ---------------------------------------------------------------- whole database

# The whole-database section's source database (pgbench's tables at scale WHOLE_SCALE, accounts
# in 8 partitions, foreign keys) and the comment on it that says it was made completely.
WHOLE_DB=rc_bench_whole
WHOLE_SCALE=${BENCH_WHOLE_SCALE:-50}
WHOLE_DIR=$BENCH_DIR/whole
# The schemas a comparison looks at: the user's, not the copiers' own state (rangecopy's state
# schema, pgcopydb's) nor the system's.
WHOLE_SCHEMAS="n.nspname NOT IN ('pg_catalog', 'information_schema', 'rangecopy', 'pgcopydb')
    AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp%'"

# pgbench from PATH, else the newest under /usr/lib/postgresql (--partitions needs pgbench 13).
find_pgbench() {
    if command -v pgbench >/dev/null; then
        command -v pgbench
    else
        compgen -G '/usr/lib/postgresql/*/bin/pgbench' | sort -V | tail -n 1
    fi
}

# generate_whole: the pgbench database on the PG source, kept when its marker says it was made
# at this scale (--regen forces). The marker comment is set last, so an interrupted
# initialization is redone. Returns 1 (the section cannot run) when pgbench is missing or fails.
generate_whole() {
    local marker="rangecopy bench: pgbench -i -s $WHOLE_SCALE --partitions 8 --foreign-keys, complete"
    if [[ $REGEN -eq 0 ]] && [[ $(sql "$PG_SRC/postgres" \
        -c "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = '$WHOLE_DB'") == "$marker" ]]; then
        log "$WHOLE_DB already holds pgbench's tables at scale $WHOLE_SCALE (--regen to rebuild)"
        return 0
    fi
    local pgbench
    pgbench=$(find_pgbench)
    if [[ -z $pgbench ]]; then
        log "pgbench not found (PATH, /usr/lib/postgresql/*/bin)"
        return 1
    fi
    log "initializing $WHOLE_DB with pgbench at scale $WHOLE_SCALE"
    local start=$SECONDS
    recreate_db "$PG_SRC" "$WHOLE_DB"
    if ! "$pgbench" -i -q -s "$WHOLE_SCALE" --partitions 8 --foreign-keys "$PG_SRC/$WHOLE_DB" \
        >"$WHOLE_DIR/pgbench.log" 2>&1; then
        tail -n 15 "$WHOLE_DIR/pgbench.log" >&2
        log "pgbench -i failed (see $WHOLE_DIR/pgbench.log)"
        return 1
    fi
    sql "$PG_SRC/postgres" -c "COMMENT ON DATABASE $WHOLE_DB IS '$marker'"
    log "initialized in $((SECONDS - start)) s"
}

# whole_describe URL ASPECT: one sorted line per object of the database at URL, for ASPECT:
#   tables       every table and partitioned table, its partition parent, bound and key, and
#                its columns (type, NOT NULL, default)
#   constraints  every constraint's table, name, kind and definition
#   indexes      every index's table, name and definition
#   rows         every table's own row count (partitioned tables hold none of their own)
#   unvalidated  constraints not validated
#   unanalyzed   tables without statistics: never analyzed (pg_stat_user_tables) and no row in
#                pg_statistic. (pg_class.reltuples >= 0 does not prove an ANALYZE: CREATE INDEX
#                sets it too.) Partitioned tables are listed with a leading "partitioned ".
# Names are schema-qualified (search_path is emptied), so both databases print them alike.
whole_describe() {
    local url=$1 aspect=$2 query
    case $aspect in
        tables) query="
SELECT format('%s %I.%I parent=%s bound=%s key=%s (%s)', c.relkind, n.nspname, c.relname,
              coalesce(i.inhparent::regclass::text, '-'),
              coalesce(pg_get_expr(c.relpartbound, c.oid), '-'),
              coalesce(pg_get_partkeydef(c.oid), '-'),
              (SELECT string_agg(format('%I %s%s%s', a.attname, format_type(a.atttypid, a.atttypmod),
                                        CASE WHEN a.attnotnull THEN ' NOT NULL' END,
                                        ' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid)), ', '
                                 ORDER BY a.attnum)
                 FROM pg_attribute a
                 LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped))
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_inherits i ON i.inhrelid = c.oid
 WHERE c.relkind IN ('r', 'p') AND $WHOLE_SCHEMAS
 ORDER BY 1" ;;
        constraints) query="
SELECT format('%s %I %s %s', c.conrelid::regclass, c.conname, c.contype, pg_get_constraintdef(c.oid))
  FROM pg_constraint c
  JOIN pg_namespace n ON n.oid = c.connamespace
 WHERE c.conrelid <> 0 AND $WHOLE_SCHEMAS
 ORDER BY 1" ;;
        indexes) query="
SELECT format('%s %I %s', i.indrelid::regclass, c.relname, pg_get_indexdef(i.indexrelid))
  FROM pg_index i
  JOIN pg_class c ON c.oid = i.indexrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE $WHOLE_SCHEMAS
 ORDER BY 1" ;;
        unvalidated) query="
SELECT format('%s %I', c.conrelid::regclass, c.conname)
  FROM pg_constraint c
  JOIN pg_namespace n ON n.oid = c.connamespace
 WHERE NOT c.convalidated AND $WHOLE_SCHEMAS
 ORDER BY 1" ;;
        unanalyzed) query="
SELECT CASE WHEN c.relkind = 'p' THEN 'partitioned ' ELSE '' END || format('%I.%I', n.nspname, c.relname)
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
 WHERE c.relkind IN ('r', 'p') AND $WHOLE_SCHEMAS
   AND s.last_analyze IS NULL AND s.last_autoanalyze IS NULL
   AND NOT EXISTS (SELECT FROM pg_statistic st WHERE st.starelid = c.oid)
 ORDER BY 1" ;;
        rows)
            sql "$url" <<SQL | sort
SET search_path = '';
SELECT format('SELECT %L || '' '' || count(*) FROM ONLY %I.%I', format('%I.%I', n.nspname, c.relname),
              n.nspname, c.relname)
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'r' AND $WHOLE_SCHEMAS
\gexec
SQL
            return "${PIPESTATUS[0]}" ;;
    esac
    sql "$url" -c "SET search_path = ''" -c "$query"
}

# check_whole TOOL DB: compares the copy in database DB of the PG target with the source: the
# same tables, partitions, columns, constraints and indexes, the same row counts, every
# constraint validated and every table analyzed. A difference fails TOOL (its time stays in
# the table, marked FAILED); the other tools still run. Files under target/bench/whole/:
# source.ASPECT, TOOL.ASPECT, and TOOL.ASPECT.diff for each that differs.
check_whole() {
    local tool=$1 db=$2 aspect problems=() out
    for aspect in tables constraints indexes rows; do
        out=$WHOLE_DIR/$tool.$aspect
        if ! whole_describe "$PG_TGT/$db" "$aspect" >"$out" 2>&1; then
            problems+=("could not read its $aspect (see $out)")
        elif ! diff -u "$WHOLE_DIR/source.$aspect" "$out" >"$out.diff"; then
            problems+=("$aspect differ from the source's (see $out.diff)")
        else
            rm -f "$out.diff"
        fi
    done
    out=$WHOLE_DIR/$tool.unvalidated
    whole_describe "$PG_TGT/$db" unvalidated >"$out" 2>&1 || echo "(query failed)" >>"$out"
    if [[ -s $out ]]; then
        problems+=("$(wc -l <"$out") constraints not validated (see $out)")
    fi
    # Partitioned tables: autovacuum never analyzes them, so a copy that does not is noted, not
    # failed (pgcopydb 0.10 analyzes only the partitions).
    out=$WHOLE_DIR/$tool.unanalyzed
    whole_describe "$PG_TGT/$db" unanalyzed >"$out" 2>&1 || echo "(query failed)" >>"$out"
    if grep -q -v '^partitioned ' "$out"; then
        problems+=("$(grep -c -v '^partitioned ' "$out") tables not analyzed (see $out)")
    fi
    if grep -q '^partitioned ' "$out"; then
        NOTES[$tool]="partitioned tables not analyzed: $(sed -n 's/^partitioned //p' "$out" | paste -s -d ' ')"
        log "note: $tool: ${NOTES[$tool]}"
    fi
    if [[ ${#problems[@]} -gt 0 ]]; then
        local joined
        joined=$(printf '%s; ' "${problems[@]}")
        fail "$tool" "${joined%; }"
    fi
}

# (g) pgcopydb clone of the whole pgbench database (the same flags as (b)).
bench_whole_pgcopydb() {
    if ! command -v pgcopydb >/dev/null; then
        log "SKIPPED whole_pgcopydb: the Debian package pgcopydb is not available on this machine"
        return 0
    fi
    local db=rc_bench_whole_pgcopydb work=$BENCH_DIR/whole-pgcopydb-work
    recreate_db "$PG_TGT" "$db"
    rm -rf "$work"
    measure whole_pgcopydb pgcopydb clone --source "$PG_SRC/$WHOLE_DB" --target "$PG_TGT/$db" \
        --dir "$work" --table-jobs 2 --index-jobs 2 --no-owner --no-acl --skip-extensions
    [[ -n ${FAILED[whole_pgcopydb]+set} ]] || check_whole whole_pgcopydb "$db"
}

# (h) rangecopy copy of the whole pgbench database, its defaults but two workers.
bench_whole_rangecopy() {
    local db=rc_bench_whole_rangecopy
    build_rangecopy whole_rangecopy || return 0
    recreate_db "$PG_TGT" "$db"
    measure whole_rangecopy "$BIN" copy --source "$PG_SRC_FULL/$WHOLE_DB" --target "$PG_TGT_FULL/$db" \
        --workers 2
    [[ -n ${FAILED[whole_rangecopy]+set} ]] || check_whole whole_rangecopy "$db"
}

section_whole() {
    mkdir -p "$WHOLE_DIR"
    local tool version
    # Foreign keys that reference a partitioned table (pgbench_history → pgbench_accounts) need
    # PostgreSQL 12 on both ends.
    for version in "$(sql "$PG_SRC/postgres" -c "SHOW server_version_num")" \
        "$(sql "$PG_TGT/postgres" -c "SHOW server_version_num")"; do
        if [[ $version -lt 120000 ]]; then
            log "SKIPPED the whole-database section: it needs PostgreSQL 12 or later on both servers"
            return 0
        fi
    done
    if ! generate_whole; then
        for tool in whole_pgcopydb whole_rangecopy; do
            if selected "$tool"; then fail "$tool" "the pgbench source database could not be made"; fi
        done
        return 0
    fi
    local aspect
    for aspect in tables constraints indexes rows; do
        whole_describe "$PG_SRC/$WHOLE_DB" "$aspect" >"$WHOLE_DIR/source.$aspect"
    done
    local rows
    rows=$(awk '{ n += $NF } END { print n }' "$WHOLE_DIR/source.rows")
    for tool in whole_pgcopydb whole_rangecopy; do
        if selected "$tool"; then
            ROWS_OF[$tool]=$rows
            "bench_$tool"
        fi
    done
}

# ---------------------------------------------------------------- verification

# A cheap fingerprint of a copy, the same on both engines: the first 1000 rows' count and sum of
# amount (random at each generation, exact decimals).
FINGERPRINT_SQL="SELECT count(*), sum(amount) FROM orders WHERE id <= 1000"

# ensure_copy "TOOLS" SOURCE_URL DB TABLE SOURCE_FINGERPRINT: makes sure the PG target database DB
# holds the rangecopy copy of the source's orders as TABLE (ROWS rows, same fingerprint as the
# source); otherwise remakes it with rangecopy copy --job bench (untimed, output to
# target/bench/DB-copy.log). On failure, fails each of TOOLS and returns 1.
ensure_copy() {
    local tools=$1 src=$2 db=$3 table=$4 want=$5 have count tool
    have=$(sql "$PG_TGT/$db" -c "${FINGERPRINT_SQL/orders/$table}" 2>/dev/null) || have=
    count=$(sql "$PG_TGT/$db" -c "SELECT count(*) FROM $table" 2>/dev/null) || count=
    if [[ -n $have && $have == "$want" && $count == "$ROWS" ]]; then
        log "$db.$table is a current copy ($ROWS rows)"
        return 0
    fi
    log "copying into $db first (rangecopy copy, untimed)"
    recreate_db "$PG_TGT" "$db"
    if ! "$BIN" copy --source "$src" --target "$PG_TGT_FULL/$db" --job bench \
        >"$BENCH_DIR/$db-copy.log" 2>&1; then
        tail -n 15 "$BENCH_DIR/$db-copy.log" >&2
        for tool in $tools; do fail "$tool" "the copy to verify failed (see $BENCH_DIR/$db-copy.log)"; done
        return 1
    fi
    count=$(sql "$PG_TGT/$db" -c "SELECT count(*) FROM $table" 2>&1) || count="error: $count"
    if [[ $count != "$ROWS" ]]; then
        for tool in $tools; do fail "$tool" "the copy to verify has $count rows, expected $ROWS"; done
        return 1
    fi
}

# measure_verify_rangecopy TOOL SOURCE_URL DB: rangecopy verify of orders, ranges planned by
# walking the key (no --job, the same work as reladiff); exit 0 (identical) or the tool fails.
measure_verify_rangecopy() {
    local tool=$1
    measure "$tool" "$BIN" verify --source "$2" --target "$PG_TGT_FULL/$3" --workers "$VERIFY_THREADS" orders
    if [[ $MEASURE_STATUS -eq 1 ]]; then
        FAILED[$tool]="reported differences on identical data (see $BENCH_DIR/$tool.log)"
        log "FAILED: $tool: ${FAILED[$tool]}"
    fi
}

# measure_verify_reladiff TOOL SOURCE_URL SOURCE_TABLE DB TARGET_TABLE: reladiff (hashdiff across
# the two servers) on every column, key id. It exits 0 even on errors, so success is: exit 0,
# no difference line (+ or -), no ERROR, and its closing "Duration" line (-v).
measure_verify_reladiff() {
    local tool=$1 log_file=$BENCH_DIR/$1.log
    if [[ -z $RELADIFF ]]; then
        log "SKIPPED $tool: reladiff could not be installed"
        return 0
    fi
    measure "$tool" "$RELADIFF" "$2" "$3" "${PG_TGT_FULL/postgres:/postgresql:}/$4" "$5" \
        -k id -c '%' --threads "$VERIFY_THREADS" -v
    [[ -z ${FAILED[$tool]:-} ]] || return 0
    local diffs
    diffs=$(grep -c -E '^[-+] ' "$log_file") || true
    if [[ $diffs -gt 0 ]]; then
        fail "$tool" "reported $diffs differing rows on identical data (see $log_file)"
    elif grep -q -E '\bERROR\b' "$log_file"; then
        grep -E '\bERROR\b' "$log_file" | head -n 3 >&2
        fail "$tool" "error (see $log_file)"
    elif ! grep -q 'Duration:' "$log_file"; then
        fail "$tool" "did not finish (see $log_file)"
    fi
}

# ---------------------------------------------------------------- report

# ratio A B FIELD: A's figure over B's, when both ran.
ratio() {
    local a=$1 b=$2
    [[ -n ${WALL_S[$a]:-} && -n ${WALL_S[$b]:-} && -z ${FAILED[$a]:-} && -z ${FAILED[$b]:-} ]] || return 1
    awk -v wa="${WALL_S[$a]}" -v wb="${WALL_S[$b]}" -v ra="${RSS_KIB[$a]}" -v rb="${RSS_KIB[$b]}" \
        -v na="${ROWS_OF[$a]:-$ROWS}" -v nb="${ROWS_OF[$b]:-$ROWS}" \
        'BEGIN { printf "%.3f %.3f %.3f", wa / wb, (na / wa) / (nb / wb), ra / rb }'
}

print_table() {
    printf '\n%-20s %10s %14s %14s  %s\n' tool wall_s rows/s peak_rss_MiB status
    local tool
    for tool in "${TOOLS_RUN[@]}"; do
        if [[ -n ${WALL_S[$tool]:-} ]]; then
            awk -v t="$tool" -v w="${WALL_S[$tool]}" -v r="${RSS_KIB[$tool]}" -v n="${ROWS_OF[$tool]:-$ROWS}" \
                -v s="${FAILED[$tool]:-ok${NOTES[$tool]:+ (${NOTES[$tool]})}}" \
                'BEGIN { printf "%-20s %10.2f %14.0f %14.1f  %s\n", t, w, n / w, r / 1024, s }'
        else
            printf '%-20s %10s %14s %14s  %s\n' "$tool" - - - "${FAILED[$tool]}"
        fi
    done
    local pair ours peer r wall speed rss
    for pair in "${RATIOS[@]}"; do
        read -r ours peer <<<"$pair"
        if r=$(ratio "$ours" "$peer"); then
            read -r wall speed rss <<<"$r"
            printf '%-40s wall time x%s, throughput x%s, peak RSS x%s%s\n' \
                "$ours/$peer:" "$wall" "$speed" "$rss" "$(ratio_goal "$ours" "$wall")"
        fi
    done
    echo
}

# ratio_goal TOOL WALL_RATIO: what a ratio is expected to be, for the rows that have a goal.
ratio_goal() {
    case $1 in
        procs_two) echo " (two processes / one; expected about 1.0)" ;;
        scale_10x) awk -v w="$2" 'BEGIN { printf " (10x the rows; goal: wall time at most x10.5, %s; peak RSS flat)",
                                               w <= 10.5 ? "met" : "MISSED" }' ;;
    esac
}

write_json() {
    local file=$BENCH_DIR/results.json commit dirty=false tool sep="" pair ours peer r wall speed rss
    commit=$(git -C "$REPO" rev-parse --verify -q HEAD 2>/dev/null) || commit=unknown
    [[ -z $(git -C "$REPO" status --porcelain 2>/dev/null) ]] || dirty=true
    {
        printf '{\n  "rows": %s,\n  "timestamp": "%s",\n' "$ROWS" "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
        printf '  "git_commit": "%s",\n  "git_dirty": %s,\n  "tools": {' "$commit" "$dirty"
        for tool in "${TOOLS_RUN[@]}"; do
            printf '%s\n    "%s": ' "$sep" "$tool"
            if [[ -n ${FAILED[$tool]:-} ]]; then
                printf '{"error": "%s"}' "${FAILED[$tool]//\"/\'}"
            else
                awk -v w="${WALL_S[$tool]}" -v r="${RSS_KIB[$tool]}" -v n="${ROWS_OF[$tool]:-$ROWS}" \
                    -v note="$(n=${NOTES[$tool]:-}; printf '%s' "${n//\"/\'}")" \
                    -v extra="${EXTRA_JSON[$tool]:-}" \
                    'BEGIN { printf "{\"wall_s\": %.2f, \"rows_per_s\": %.0f, \"peak_rss_kib\": %d", w, n / w, r
                             if (extra != "") printf ", %s", extra
                             if (note != "") printf ", \"note\": \"%s\"", note
                             printf "}" }'
            fi
            sep=,
        done
        printf '\n  },\n  "ratios": {'
        sep=
        for pair in "${RATIOS[@]}"; do
            read -r ours peer <<<"$pair"
            r=$(ratio "$ours" "$peer") || continue
            read -r wall speed rss <<<"$r"
            printf '%s\n    "%s/%s": {"wall_s": %s, "rows_per_s": %s, "peak_rss": %s}' \
                "$sep" "$ours" "$peer" "$wall" "$speed" "$rss"
            sep=,
        done
        printf '\n  }\n}\n'
    } >"$file"
    log "results written to $file"
}

# ---------------------------------------------------------------- main

parse_args() {
    local arg
    for arg in "$@"; do
        case $arg in
            --regen) REGEN=1 ;;
            '' | *[!0-9]* | 0*) usage ;;
            *) ROWS=$arg ;;
        esac
    done
}

usage() {
    echo "usage: $0 [ROWS] [--regen]   (BENCH_ONLY=psql,pgcopydb,rangecopy,backfill,backfill_new,procs_one,procs_two,scale_1x,scale_10x," >&2
    echo "       whole_pgcopydb,whole_rangecopy," >&2
    echo "       my_pgloader,my_pipe,my_rangecopy," >&2
    echo "       verify_rangecopy,verify_reladiff,my_verify_rangecopy,my_verify_reladiff,mem_big_values," >&2
    echo "       mem_my_big_values,mem_tenth,mem_verify_identical,mem_verify_one_changed,mem_verify_many," >&2
    echo "       mem_verify_big_values)" >&2
    exit 2
}

main() {
    parse_args "$@"
    cd "$REPO"
    mkdir -p "$BENCH_DIR"
    if [[ -z ${RANGECOPY_TEST_PG_SOURCE:-} || -z ${RANGECOPY_TEST_PG_TARGET:-} || -z ${RANGECOPY_TEST_MYSQL:-} ]]; then
        scripts/dev-db.sh start
        eval "$(scripts/dev-db.sh env)"
    else
        log "using the servers the environment names (RANGECOPY_TEST_*)"
    fi
    install_tools
    PG_SRC_FULL=${RANGECOPY_TEST_PG_SOURCE%/*}
    PG_TGT_FULL=${RANGECOPY_TEST_PG_TARGET%/*}
    PG_SRC=$(strip_password "$RANGECOPY_TEST_PG_SOURCE")
    PG_TGT=$(strip_password "$RANGECOPY_TEST_PG_TARGET")
    PGPASSWORD=$(url_password "$RANGECOPY_TEST_PG_SOURCE")
    export PGPASSWORD

    if selected psql || selected pgcopydb || selected rangecopy || selected backfill || selected backfill_new || selected procs_one ||
        selected procs_two || selected scale_1x || selected scale_10x ||
        selected verify_rangecopy || selected verify_reladiff; then section_pg_to_pg; fi
    if selected whole_pgcopydb || selected whole_rangecopy; then section_whole; fi
    section_mysql_to_pg
    if selected mem_big_values || selected mem_my_big_values || selected mem_tenth; then section_memory; fi
    if selected mem_verify_identical || selected mem_verify_one_changed || selected mem_verify_many ||
        selected mem_verify_big_values; then section_verify_memory; fi

    print_table
    write_json
    if [[ ${#FAILED[@]} -gt 0 ]]; then
        log "BENCHMARK FAILED for: ${!FAILED[*]}"
        exit 1
    fi
}

main "$@"
