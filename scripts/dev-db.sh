#!/usr/bin/env bash
# dev-db.sh — throwaway database servers for rangecopy development, tests and CI.
#
#   scripts/dev-db.sh start    install what is missing, initialize on first run, start, wait
#   scripts/dev-db.sh stop     stop all three servers cleanly
#   scripts/dev-db.sh status   print up/down per server
#   scripts/dev-db.sh env      print the test URLs as eval-able export lines
#
# Servers (loopback only, data under target/dev-db/):
#   PostgreSQL source  127.0.0.1:54330  database rc_source
#   PostgreSQL target  127.0.0.1:54331  database rc_target
#   MariaDB            127.0.0.1:33306  database rc_source (binlog on, ROW format)
# Each has the login rangecopy (PostgreSQL superuser / MariaDB ALL WITH GRANT OPTION).
# TLS: all three accept TLS (and plain connections) with a server certificate for `localhost`
# only (not 127.0.0.1, so that host name checks have a name to fail on), signed by a
# self-signed CA made once under target/dev-db/tls/ (`env` prints its path). The login
# rangecopy_tls (same password and rights as rangecopy) is accepted over TLS only.
# As root, PostgreSQL runs as the `postgres` user and MariaDB as `mysql`; otherwise both run as
# the calling user. DEV_DB_START_TIMEOUT (seconds, default 60) bounds each server's start.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DEV_DIR=$REPO/target/dev-db
LOG_DIR=$DEV_DIR/logs
SOCK_DIR=$DEV_DIR/sockets
MARIADB_DIR=$DEV_DIR/mariadb
MARIADB_CNF=$DEV_DIR/mariadb.cnf
TLS_DIR=$DEV_DIR/tls
PG_SOURCE_PORT=54330
PG_TARGET_PORT=54331
MARIADB_PORT=33306
DEV_USER=rangecopy
DEV_PASSWORD=rangecopy-dev-pw
TLS_USER=rangecopy_tls
START_TIMEOUT=${DEV_DB_START_TIMEOUT:-60}

# Servers found on our ports that this checkout did not start (say, the dev-db of another
# clone of the repository on the same machine): they are used as they are, through the
# rangecopy login, and never stopped from here.
declare -A SHARED=()

# ---------------------------------------------------------------- users, packages, paths

pg_os_user() { if is_root; then echo postgres; else id -un; fi; }
mariadb_os_user() { if is_root; then echo mysql; else id -un; fi; }

# as_user USER CMD...: runs CMD as USER (through runuser when root).
as_user() {
    local user=$1; shift
    if is_root && [[ $user != root ]]; then
        runuser -u "$user" -- "$@"
    else
        "$@"
    fi
}

install_packages() {
    compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || apt_install postgresql
    apt_install mariadb-server mariadb-client
    command -v openssl >/dev/null || apt_install openssl
    # PostGIS for the server's version, so MySQL spatial columns can arrive as geometry (tests
    # check both that and the bytea fallback of a target where it cannot be created).
    local postgis
    postgis="postgresql-$(basename "$(dirname "$(pg_bin)")")-postgis-3"
    # apt_install refreshes empty package lists first (a fresh machine has none).
    (apt_install "$postgis") || log "could not install $postgis: spatial columns are copied as bytea"
}

# Newest installed PostgreSQL server's bin directory.
pg_bin() {
    local dir
    dir=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    [[ -x $dir/initdb ]] || die "no PostgreSQL server found under /usr/lib/postgresql"
    echo "$dir"
}

# Unix socket paths are limited to ~107 bytes; a deep checkout gets its sockets in /tmp,
# linked from target/dev-db/sockets.
choose_socket_dir() {
    if [[ ${#SOCK_DIR} -gt 80 ]]; then
        local short
        short=/tmp/rangecopy-sock-$(printf '%s' "$DEV_DIR" | md5sum | cut -c1-10)
        mkdir -p "$short"
        chmod 755 "$short"
        ln -sfn "$short" "$SOCK_DIR"
        SOCK_DIR=$short
    fi
}

# As root, the server users must be able to reach target/dev-db: add o+x (search, not read)
# to each directory above it that they cannot traverse.
ensure_traversable() {
    is_root || return 0
    local user dir path=
    local -a parts
    IFS=/ read -r -a parts <<<"${DEV_DIR#/}"
    for dir in "${parts[@]}"; do
        path+=/$dir
        for user in "$(pg_os_user)" "$(mariadb_os_user)"; do
            if ! runuser -u "$user" -- test -x "$path"; then
                log "chmod o+x $path (so that $user can reach target/dev-db)"
                chmod o+x "$path"
            fi
        done
    done
}

# make_dir DIR OWNER MODE: creates DIR owned by OWNER (when root).
make_dir() {
    mkdir -p "$1"
    if is_root && [[ $(stat -c %U "$1") != "$2" ]]; then chown -R "$2:" "$1"; fi
    chmod "$3" "$1"
}

# make_log FILE OWNER: a log file the server user can append to.
make_log() {
    touch "$1"
    if is_root; then chown "$2:" "$1"; fi
}

prepare_dirs() {
    mkdir -p "$DEV_DIR" "$LOG_DIR"
    chmod 755 "$DEV_DIR" "$LOG_DIR"
    choose_socket_dir
    mkdir -p "$SOCK_DIR"
    chmod 755 "$SOCK_DIR"
    make_dir "$SOCK_DIR/pg" "$(pg_os_user)" 755
    make_dir "$SOCK_DIR/mariadb" "$(mariadb_os_user)" 755
    ensure_traversable
}

# wait_until SECONDS CMD...: polls CMD every 0.2 s; fails after SECONDS.
wait_until() {
    local deadline=$((SECONDS + $1)); shift
    until "$@" >/dev/null 2>&1; do
        [[ $SECONDS -lt $deadline ]] || return 1
        sleep 0.2
    done
}

fail_with_log() {
    log "error: $1; last lines of $2:"
    tail -n 30 "$2" >&2 || true
    exit 1
}

# ---------------------------------------------------------------- TLS

# The CA and the server certificate, made once (again only when missing or about to expire),
# plus a copy of the certificate and key per server user: PostgreSQL refuses a key that is
# not its own with mode 0600.
tls_setup() {
    mkdir -p "$TLS_DIR"
    chmod 755 "$TLS_DIR"
    if ! openssl x509 -checkend 86400 -noout -in "$TLS_DIR/server.pem" >/dev/null 2>&1 ||
        ! openssl verify -CAfile "$TLS_DIR/ca.pem" "$TLS_DIR/server.pem" >/dev/null 2>&1; then
        log "creating a self-signed CA and a server certificate for localhost in $TLS_DIR"
        local ext=$TLS_DIR/server.ext
        printf '%s\n' 'subjectAltName = DNS:localhost' 'basicConstraints = critical, CA:FALSE' \
            'keyUsage = critical, digitalSignature, keyEncipherment' 'extendedKeyUsage = serverAuth' >"$ext"
        (
            umask 077
            openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
                -subj '/CN=rangecopy dev-db CA' -addext 'basicConstraints = critical, CA:TRUE' \
                -addext 'keyUsage = critical, keyCertSign, cRLSign' \
                -keyout "$TLS_DIR/ca.key" -out "$TLS_DIR/ca.pem" &&
                openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
                    -subj '/CN=localhost' -keyout "$TLS_DIR/server.key" -out "$TLS_DIR/server.csr" &&
                openssl x509 -req -in "$TLS_DIR/server.csr" -CA "$TLS_DIR/ca.pem" -CAkey "$TLS_DIR/ca.key" \
                    -CAcreateserial -days 3650 -extfile "$ext" -out "$TLS_DIR/server.pem"
        ) >>"$LOG_DIR/tls.log" 2>&1 || fail_with_log "could not create the TLS certificates" "$LOG_DIR/tls.log"
        chmod 644 "$TLS_DIR/ca.pem" "$TLS_DIR/server.pem"
        rm -f "$TLS_DIR/server.csr" "$ext"
    fi
    tls_copy postgres "$(pg_os_user)"
    tls_copy mariadb "$(mariadb_os_user)"
}

# tls_copy NAME OWNER: the server certificate and key in $TLS_DIR/NAME, readable by OWNER only.
tls_copy() {
    local dir=$TLS_DIR/$1
    mkdir -p "$dir"
    cp "$TLS_DIR/server.pem" "$TLS_DIR/server.key" "$TLS_DIR/ca.pem" "$dir/"
    chmod 600 "$dir/server.key"
    if is_root; then chown -R "$2:" "$dir"; fi
    chmod 700 "$dir"
}

# ---------------------------------------------------------------- PostgreSQL

pg_data() { echo "$DEV_DIR/$1"; }
pg_log() { echo "$LOG_DIR/$1.log"; }

pg_running() {
    local data
    data=$(pg_data "$1")
    [[ -f $data/PG_VERSION ]] || return 1
    as_user "$(pg_os_user)" "$(pg_bin)/pg_ctl" -D "$data" status >/dev/null 2>&1
}

pg_init() {
    local name=$1 data
    data=$(pg_data "$name")
    make_dir "$data" "$(pg_os_user)" 700
    [[ -f $data/PG_VERSION ]] && return 0
    log "initializing PostgreSQL $name in $data"
    as_user "$(pg_os_user)" "$(pg_bin)/initdb" -D "$data" -U postgres -E UTF8 \
        --locale=C.UTF-8 --auth-local=trust --auth-host=scram-sha-256 \
        >>"$(pg_log "$name")" 2>&1 || fail_with_log "initdb failed for $name" "$(pg_log "$name")"
    echo "include 'rangecopy-dev.conf'" >>"$data/postgresql.conf"
}

# Settings and access rules are rewritten on every start, so edits here take effect.
pg_configure() {
    local data port=$2
    data=$(pg_data "$1")
    cat >"$data/rangecopy-dev.conf" <<EOF
# Written by scripts/dev-db.sh on every start: edit the script, not this file.
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$SOCK_DIR/pg'
max_connections = 200
shared_buffers = 256MB
max_wal_size = 4GB
wal_level = logical
max_replication_slots = 10
max_wal_senders = 10
password_encryption = scram-sha-256
ssl = on
ssl_cert_file = '$TLS_DIR/postgres/server.pem'
ssl_key_file = '$TLS_DIR/postgres/server.key'
EOF
    cat >"$data/pg_hba.conf" <<EOF
# Written by scripts/dev-db.sh on every start: edit the script, not this file.
# TYPE  DATABASE     USER      ADDRESS        METHOD
local   all          postgres                 trust
local   all          all                      scram-sha-256
hostssl all          $TLS_USER 127.0.0.1/32   scram-sha-256
hostssl all          $TLS_USER ::1/128        scram-sha-256
host    all          $TLS_USER all            reject
host    all          all       127.0.0.1/32   scram-sha-256
host    all          all       ::1/128        scram-sha-256
host    replication  all       127.0.0.1/32   scram-sha-256
host    replication  all       ::1/128        scram-sha-256
EOF
    if is_root; then chown "$(pg_os_user):" "$data/rangecopy-dev.conf" "$data/pg_hba.conf"; fi
}

pg_listening() { "$(pg_bin)/pg_isready" -q -h 127.0.0.1 -p "$1"; }

pg_ssl_on() {
    [[ $("$(pg_bin)/psql" -X -At -h "$SOCK_DIR/pg" -p "$1" -U postgres -d postgres -c 'SHOW ssl') == on ]]
}

pg_start() {
    local name=$1 port=$2 log_file
    log_file=$(pg_log "$name")
    if pg_running "$name"; then
        log "PostgreSQL $name already running on 127.0.0.1:$port"
        # Settings (TLS among them) may be newer than the server's: a reload applies them.
        pg_configure "$name" "$port"
        as_user "$(pg_os_user)" "$(pg_bin)/pg_ctl" -D "$(pg_data "$name")" -s reload >/dev/null
        wait_until "$START_TIMEOUT" pg_ssl_on "$port" ||
            fail_with_log "PostgreSQL $name did not turn TLS on after a reload" "$log_file"
    elif pg_listening "$port"; then
        log "127.0.0.1:$port is served by a PostgreSQL this checkout did not start: using it"
        SHARED[$name]=1
        return 0
    else
        make_log "$log_file" "$(pg_os_user)"
        pg_init "$name"
        pg_configure "$name" "$port"
        log "starting PostgreSQL $name on 127.0.0.1:$port"
        as_user "$(pg_os_user)" "$(pg_bin)/pg_ctl" -D "$(pg_data "$name")" -l "$log_file" \
            -w -t "$START_TIMEOUT" -s start >/dev/null 2>&1 ||
            fail_with_log "PostgreSQL $name did not start" "$log_file"
    fi
    wait_until "$START_TIMEOUT" pg_listening "$port" ||
        fail_with_log "PostgreSQL $name does not accept connections on port $port" "$log_file"
}

# pg_setup NAME PORT DB: the rangecopy login (superuser) and its database, idempotently; as the
# bootstrap superuser over the unix socket, or as rangecopy over TCP on a shared server.
pg_setup() {
    local name=$1 port=$2 db=$3 conn
    if [[ -n ${SHARED[$name]:-} ]]; then
        conn=(-h 127.0.0.1 -p "$port" -U "$DEV_USER")
    else
        conn=(-h "$SOCK_DIR/pg" -p "$port" -U postgres)
    fi
    PGPASSWORD=$DEV_PASSWORD "$(pg_bin)/psql" -X -q -At -v ON_ERROR_STOP=1 "${conn[@]}" -d postgres \
        -v user="$DEV_USER" -v tls_user="$TLS_USER" -v pw="$DEV_PASSWORD" -v db="$db" <<'SQL' ||
SELECT format('CREATE ROLE %I', :'user')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'user') \gexec
ALTER ROLE :"user" WITH LOGIN SUPERUSER PASSWORD :'pw';
SELECT format('CREATE ROLE %I', :'tls_user')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'tls_user') \gexec
ALTER ROLE :"tls_user" WITH LOGIN SUPERUSER PASSWORD :'pw';
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'user')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
SQL
        die "could not set up the rangecopy login and database $db on 127.0.0.1:$port"
}

pg_stop() {
    local name=$1
    if pg_available "$name"; then
        log "stopping PostgreSQL $name"
        as_user "$(pg_os_user)" "$(pg_bin)/pg_ctl" -D "$(pg_data "$name")" -m fast -w -s stop
    fi
}

# ---------------------------------------------------------------- MariaDB

mariadb_socket() { echo "$SOCK_DIR/mariadb/mariadb.sock"; }

# The admin account: root@localhost, authenticated by unix_socket as the OS user that
# initialized the server (root when root, else the calling user).
mariadb_admin() {
    mariadb --no-defaults --socket="$(mariadb_socket)" -u "$(id -un)" "$@"
}

# Something answers on the MariaDB TCP port (ping succeeds even when the login is refused).
mariadb_listening() {
    MYSQL_PWD=$DEV_PASSWORD mariadb-admin --no-defaults -h 127.0.0.1 -P "$MARIADB_PORT" \
        -u "$DEV_USER" --connect-timeout=2 ping >/dev/null 2>&1
}

mariadb_running() {
    [[ -S $(mariadb_socket) ]] &&
        mariadb-admin --no-defaults --socket="$(mariadb_socket)" -u "$(id -un)" ping >/dev/null 2>&1
}

mariadb_configure() {
    cat >"$MARIADB_CNF" <<EOF
# Written by scripts/dev-db.sh on every start: edit the script, not this file.
[mysqld]
datadir = $MARIADB_DIR
socket = $(mariadb_socket)
pid-file = $MARIADB_DIR/mariadbd.pid
log-error = $LOG_DIR/mariadb.log
bind-address = 127.0.0.1
port = $MARIADB_PORT
skip-name-resolve
log-bin = binlog
binlog_format = ROW
server_id = 1
binlog_expire_logs_seconds = 259200
innodb_buffer_pool_size = 512M
character-set-server = utf8mb4
# Rows with 50 MB values (bench.sh mem_my_big_values); MariaDB's default is 16M.
max_allowed_packet = 256M
ssl-ca = $TLS_DIR/mariadb/ca.pem
ssl-cert = $TLS_DIR/mariadb/server.pem
ssl-key = $TLS_DIR/mariadb/server.key
EOF
    chmod 644 "$MARIADB_CNF"
}

mariadb_init() {
    make_dir "$MARIADB_DIR" "$(mariadb_os_user)" 700
    [[ -d $MARIADB_DIR/mysql ]] && return 0
    log "initializing MariaDB in $MARIADB_DIR"
    local socket_user=()
    is_root || socket_user=(--auth-root-socket-user="$(id -un)")
    as_user "$(mariadb_os_user)" mariadb-install-db --defaults-file="$MARIADB_CNF" \
        --auth-root-authentication-method=socket "${socket_user[@]}" --skip-test-db \
        >>"$LOG_DIR/mariadb.log" 2>&1 || fail_with_log "mariadb-install-db failed" "$LOG_DIR/mariadb.log"
}

mariadb_aborted() { tail -n 5 "$LOG_DIR/mariadb.log" | grep -q '\[ERROR\] Aborting'; }

mariadb_start() {
    local log_file=$LOG_DIR/mariadb.log
    if mariadb_running; then
        if [[ $(mariadb_admin -N -e "SELECT @@have_ssl") == YES ]]; then
            log "MariaDB already running on 127.0.0.1:$MARIADB_PORT"
            return 0
        fi
        # TLS settings are read at start only.
        log "MariaDB runs without TLS: restarting it with the TLS settings"
        mariadb_stop
    fi
    if mariadb_listening; then
        log "127.0.0.1:$MARIADB_PORT is served by a MariaDB this checkout did not start: using it"
        SHARED[mariadb]=1
        return 0
    fi
    make_log "$log_file" "$(mariadb_os_user)"
    mariadb_configure
    mariadb_init
    log "starting MariaDB on 127.0.0.1:$MARIADB_PORT"
    local cmd=(/usr/sbin/mariadbd --defaults-file="$MARIADB_CNF")
    if is_root; then cmd=(runuser -u "$(mariadb_os_user)" -- "${cmd[@]}"); fi
    setsid -f "${cmd[@]}" </dev/null >>"$log_file" 2>&1
    local deadline=$((SECONDS + START_TIMEOUT))
    until mariadb_running; do
        mariadb_aborted && fail_with_log "MariaDB did not start" "$log_file"
        [[ $SECONDS -lt $deadline ]] || fail_with_log "MariaDB not up after ${START_TIMEOUT}s" "$log_file"
        sleep 0.2
    done
}

mariadb_setup() {
    local admin=(mariadb_admin)
    if [[ -n ${SHARED[mariadb]:-} ]]; then
        admin=(env MYSQL_PWD="$DEV_PASSWORD" mariadb --no-defaults -h 127.0.0.1 -P "$MARIADB_PORT" -u "$DEV_USER")
    fi
    "${admin[@]}" <<SQL ||
CREATE USER IF NOT EXISTS '$DEV_USER'@'127.0.0.1' IDENTIFIED BY '$DEV_PASSWORD';
CREATE USER IF NOT EXISTS '$DEV_USER'@'localhost' IDENTIFIED BY '$DEV_PASSWORD';
ALTER USER '$DEV_USER'@'127.0.0.1' IDENTIFIED BY '$DEV_PASSWORD';
ALTER USER '$DEV_USER'@'localhost' IDENTIFIED BY '$DEV_PASSWORD';
GRANT ALL PRIVILEGES ON *.* TO '$DEV_USER'@'127.0.0.1' WITH GRANT OPTION;
GRANT ALL PRIVILEGES ON *.* TO '$DEV_USER'@'localhost' WITH GRANT OPTION;
CREATE USER IF NOT EXISTS '$TLS_USER'@'127.0.0.1' IDENTIFIED BY '$DEV_PASSWORD' REQUIRE SSL;
ALTER USER '$TLS_USER'@'127.0.0.1' IDENTIFIED BY '$DEV_PASSWORD' REQUIRE SSL;
GRANT ALL PRIVILEGES ON *.* TO '$TLS_USER'@'127.0.0.1';
CREATE DATABASE IF NOT EXISTS rc_source CHARACTER SET utf8mb4;
SQL
        die "could not set up the rangecopy login and database rc_source on 127.0.0.1:$MARIADB_PORT"
}

mariadb_stop() {
    mariadb_available || return 0
    log "stopping MariaDB"
    mariadb-admin --no-defaults --socket="$(mariadb_socket)" -u "$(id -un)" shutdown
    wait_until "$START_TIMEOUT" bash -c "! test -S '$(mariadb_socket)'" ||
        die "MariaDB did not stop within ${START_TIMEOUT}s"
}

# ---------------------------------------------------------------- commands

cmd_start() {
    install_packages
    prepare_dirs
    tls_setup
    pg_start pg-source "$PG_SOURCE_PORT"
    pg_start pg-target "$PG_TARGET_PORT"
    mariadb_start
    pg_setup pg-source "$PG_SOURCE_PORT" rc_source
    pg_setup pg-target "$PG_TARGET_PORT" rc_target
    mariadb_setup
    log "ready (eval \"\$(scripts/dev-db.sh env)\" for the URLs)"
}

cmd_stop() {
    [[ -d $DEV_DIR ]] || return 0
    prepare_sockets_path
    stop_one pg-source "$PG_SOURCE_PORT" pg_stop pg-source
    stop_one pg-target "$PG_TARGET_PORT" pg_stop pg-target
    stop_one mariadb "$MARIADB_PORT" mariadb_stop
}

# stop_one NAME PORT STOP...: stops our server; leaves one this checkout did not start.
stop_one() {
    local name=$1 port=$2; shift 2
    "$@"
    if port_answers "$name" "$port"; then
        log "leaving $name on 127.0.0.1:$port running: this checkout did not start it"
    fi
}

cmd_status() {
    prepare_sockets_path
    local down=0
    report_status pg-source "$PG_SOURCE_PORT" pg_available pg-source || down=1
    report_status pg-target "$PG_TARGET_PORT" pg_available pg-target || down=1
    report_status mariadb "$MARIADB_PORT" mariadb_available || down=1
    return "$down"
}

# report_status NAME PORT CHECK...: up (ours), up (another checkout's) or down.
report_status() {
    local name=$1 port=$2; shift 2
    if "$@"; then
        printf '%-10s up    127.0.0.1:%s\n' "$name" "$port"
    elif port_answers "$name" "$port"; then
        printf '%-10s up    127.0.0.1:%s (not started from this checkout)\n' "$name" "$port"
    else
        printf '%-10s down  127.0.0.1:%s\n' "$name" "$port"
        return 1
    fi
}

port_answers() {
    if [[ $1 == mariadb ]]; then
        command -v mariadb-admin >/dev/null && mariadb_listening
    else
        compgen -G '/usr/lib/postgresql/*/bin/pg_isready' >/dev/null && pg_listening "$2"
    fi
}

pg_available() { compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null && pg_running "$1"; }
mariadb_available() { command -v mariadb-admin >/dev/null && mariadb_running; }

# Sockets may live in /tmp (see choose_socket_dir): follow the link for stop/status.
prepare_sockets_path() {
    if [[ -L $SOCK_DIR ]]; then SOCK_DIR=$(readlink "$SOCK_DIR"); fi
}

cmd_env() {
    local auth=$DEV_USER:$DEV_PASSWORD@127.0.0.1
    echo "export RANGECOPY_TEST_PG_SOURCE=postgres://$auth:$PG_SOURCE_PORT/rc_source"
    echo "export RANGECOPY_TEST_PG_TARGET=postgres://$auth:$PG_TARGET_PORT/rc_target"
    echo "export RANGECOPY_TEST_MYSQL=mysql://$auth:$MARIADB_PORT/rc_source"
    echo "export RANGECOPY_TEST_TLS_CA=$TLS_DIR/ca.pem"
}

main() {
    case ${1:-} in
        start) cmd_start ;;
        stop) cmd_stop ;;
        status) cmd_status ;;
        env) cmd_env ;;
        *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
    esac
}

main "$@"
