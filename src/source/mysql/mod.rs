//! MySQL/MariaDB source: introspection into engine-neutral `Table`s with PostgreSQL DDL (the
//! type mapping table), key walking in the source's own collation order, and streaming chunk
//! extraction encoded straight into PostgreSQL binary COPY with canonical row hashes.
//!
//! This file holds the connection (`MySource`, its session, statements bounded by
//! `--io-timeout`) and the surface the rest of the crate calls; the parts live beside it:
//! `introspect` (the catalog into `Table`s), `types` (the type table and the converters),
//! `keys` (key walking and chunk boundaries), `extract` (chunk extraction and row encoding),
//! `set_aside` (huge rows read whole by key).
//!
//! Every statement here is read-only and bounded by a chunk (the session is `READ ONLY`); no
//! lock is held across chunks. This module must never write to the source and never change a
//! value silently: a value the chosen PostgreSQL type cannot hold is an error naming table,
//! column and key, except zero dates under `--zero-dates null`, which are counted.
//!
//! # Huge rows
//!
//! The driver reads a whole row into one buffer (which grows to the next power of two) and
//! then copies its values out, so a row with a 50 MB value costs well over 100 MB while it is
//! read. In tables with wide columns ([`set_aside::WIDE`]: MEDIUM/LONG BLOB and TEXT, JSON, spatial), a
//! chunk's streaming query therefore sends the wide values of rows above [`SET_ASIDE_ABOVE`]
//! as NULL, with each row's size; those rows are skipped and then read whole by key, one at a
//! time within the process's [`set_aside::SET_ASIDE_BUDGET`], in the same consistent snapshot, and encoded
//! like any other row (the digest does not depend on row order). A connection that read a huge
//! row is replaced after its chunk, since the driver keeps its grown read buffer.
//!
//! # The mapping
//!
//! [`types::TYPE_MAP`] is the one table from MySQL type families to PostgreSQL types, logical types
//! and converters; [`types::CAST_MAP`] the one table of what `--cast` rules may map to. A column's
//! converter is looked up from its `Column` (source type + target logical type) once per chunk,
//! before the row loop, so the row loop only calls the prepared function pointers.
//!
//! # MySQL and MariaDB differences handled here
//!
//! - MariaDB's JSON is LONGTEXT with a `json_valid()` CHECK: detected through
//!   `information_schema.CHECK_CONSTRAINTS` and mapped like MySQL's JSON (source type `json`).
//! - `COLUMN_DEFAULT` is an SQL expression on MariaDB ≥ 10.2.7 (`'text'`, `1.50`, `NULL`,
//!   `current_timestamp(3)`) but the bare value on MySQL (expressions flagged `DEFAULT_GENERATED`).
//! - Statement timeouts: `max_statement_time` (MariaDB) vs `max_execution_time` (MySQL 5.7.8+).
//! - MySQL 8.0.19+ drops integer display widths (`int unsigned` vs `int(10) unsigned`) and names
//!   utf8 `utf8mb3`: casts match either spelling; charsets are used as the server names them.
//! - MariaDB-only types: UUID maps to uuid; INET4/INET6 and VECTOR are refused unless cast.

mod extract;
mod introspect;
mod keys;
mod objects;
mod set_aside;
mod types;

pub use set_aside::SET_ASIDE_ABOVE;

use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use mysql::{Conn, Params, Row, Value};

use crate::config::{MyEndpoint, MyOptions};
use crate::error::{describe_mysql_error, redact, Error, ErrorCode, Result};
use crate::pg::PgConn;
use crate::schema::TableName;
use crate::source::SourcePosition;
use crate::wait::{self, Detached, NotYet, Waiting};

/// PostgreSQL's identifier limit in bytes (NAMEDATALEN - 1).
const PG_MAX_IDENT: usize = 63;

/// Session settings, run on every connection:
/// - `READ ONLY`: this tool never writes to the source (MySQL 5.6.5+, MariaDB 10.0+);
/// - `time_zone = '+00:00'`: TIMESTAMP values arrive as UTC instants (timestamptz);
/// - `NAMES utf8mb4`: every character set (latin1 included) arrives as UTF-8;
/// - `sql_mode`: none of the modes that change values on read (`PAD_CHAR_TO_FULL_LENGTH`) or
///   the meaning of SQL (`ANSI_QUOTES`, `NO_BACKSLASH_ESCAPES`, MariaDB's `ORACLE`);
/// - `net_write_timeout`/`net_read_timeout = 3600`: a slow target blocks our reads of a
///   streaming result for as long as it takes (the server's default 60 s would cut it);
/// - `innodb_lock_wait_timeout = 60`: reads are consistent non-locking reads; bounded anyway.
const SESSION: &[&str] = &[
    "SET SESSION TRANSACTION READ ONLY",
    "SET NAMES utf8mb4",
    "SET SESSION time_zone = '+00:00'",
    "SET SESSION sql_mode = 'NO_ENGINE_SUBSTITUTION'",
    "SET SESSION net_write_timeout = 3600, net_read_timeout = 3600",
    "SET SESSION innodb_lock_wait_timeout = 60",
];
/// `--consistent`: the longest the global read lock may wait for running statements (seconds).
const LOCK_WAIT_SECONDS: u32 = 30;
/// No server-wide statement time limit may cut a chunk's scan short (seconds, 0 = none).
const SESSION_MARIADB: &str = "SET SESSION max_statement_time = 0";
/// MySQL's counterpart (milliseconds, SELECT only, 5.7.8+).
const SESSION_MYSQL: &str = "SET SESSION max_execution_time = 0";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    MariaDb,
    MySql,
}

pub struct MySource {
    conn: Conn,
    /// `conn`'s id on the server, to check on it and end it there.
    id: u32,
    /// Key walks' connection, opened at the first one (see `walk`).
    walker: Option<Conn>,
    /// To reconnect (a fresh connection gives back the driver's grown buffers).
    ep: MyEndpoint,
    endpoint: String,
    database: String,
    options: MyOptions,
    flavor: Flavor,
    /// The connection is in the run's `--consistent` snapshot transaction: chunks read in it.
    in_snapshot: bool,
    /// The target schema of PostGIS's `geometry` when the target has PostGIS or this run may
    /// create it there (see `learn_target`); spatial columns are bytea otherwise.
    postgis: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Connection
// ---------------------------------------------------------------------------------------------

impl MySource {
    pub fn connect(ep: &MyEndpoint) -> Result<Self> {
        let (conn, flavor) = open(ep, ep.opts.clone())?;
        Ok(MySource {
            id: conn.connection_id(),
            conn,
            walker: None,
            ep: ep.clone(),
            endpoint: ep.display.clone(),
            database: ep.database.clone(),
            options: ep.options.clone(),
            flavor,
            in_snapshot: false,
            postgis: None,
        })
    }

    /// Learns what the target can hold that changes how tables are described: whether spatial
    /// columns can be PostGIS `geometry` (the extension is there, or it is available and the
    /// target login is a superuser, who may create it).
    pub fn learn_target(&mut self, target: &mut PgConn) -> Result<()> {
        let rows = target.query(
            "SELECT n.nspname::text FROM pg_catalog.pg_extension e
               JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'postgis'
             UNION ALL
             SELECT 'public' WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'postgis')
                AND EXISTS (SELECT FROM pg_catalog.pg_available_extensions WHERE name = 'postgis')
                AND (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user)",
            &[],
            "looking for PostGIS on the target",
        )?;
        self.postgis = rows.first().map(|r| r.get(0));
        Ok(())
    }

    /// A source name as the target names it: lowercased under `--lowercase-identifiers`.
    fn fold(&self, name: &str) -> String {
        if self.options.lowercase_identifiers {
            name.to_lowercase()
        } else {
            name.to_string()
        }
    }

    /// The error of a failed call on `conn`; a connection that the `--io-timeout` gave up is
    /// ended on the server too (best effort), so that its session lets go of its snapshot and
    /// the metadata locks it holds (which would block a `DROP DATABASE` there).
    fn failed(&self, what: impl Into<String>, err: mysql::Error) -> Error {
        failed(&self.ep, self.id, what, err)
    }

    /// A short call on `conn`, registered while it waits (see `wait::Waiting`).
    fn short<T>(&mut self, what: &str, call: impl FnOnce(&mut Conn) -> mysql::Result<T>) -> Result<T> {
        let _waiting = Waiting::begin(&self.endpoint, what, true);
        call(&mut self.conn).map_err(|e| self.failed(what, e))
    }

    /// Runs a key walk, a statement that may take long without a word from the server, on a
    /// connection of its own without a socket timeout, on a thread of its own (a MySQL read
    /// cannot be interrupted): every `--io-timeout` a fresh connection checks that the server
    /// is still running it. A walk the server no longer runs, whose answer never came, or one
    /// the process's interrupt stops, is left behind with its connection, ended on the server.
    /// Key walks need no snapshot (chunk bounds only tile the key space), so the walker is
    /// never in one.
    fn walk(&mut self, sql: String, params: Vec<Value>, what: &str) -> Result<Vec<Row>> {
        let mut walker = match self.walker.take() {
            Some(conn) => conn,
            None => open(&self.ep, mysql::OptsBuilder::from_opts(self.ep.opts.clone()).read_timeout(None).into())?.0,
        };
        let id = walker.connection_id();
        let _waiting = Waiting::begin(&self.endpoint, what, false);
        let params = if params.is_empty() { Params::Empty } else { Params::Positional(params) };
        let call = wait::detach(move || {
            let result = walker.exec::<Row, _, _>(sql, params);
            (walker, result)
        });
        let (bound, interruptible) = wait::bound_for_call(None);
        let started = Instant::now();
        let every = self.ep.io_timeout;
        let check_limit = every + wait::STOP_BOUND;
        let mut next_check = started + every;
        let mut check: Option<(Instant, Detached<_>)> = None;
        // A check that finds the walk ended is confirmed once, a moment later: its answer may
        // have been on its way.
        let mut suspect = false;
        loop {
            match call.wait(wait::TICK) {
                Ok((walker, result)) => {
                    self.walker = Some(walker);
                    return result.map_err(|e| Error::mysql(&self.endpoint, what, e));
                }
                Err(NotYet::Died) => return Err(Error::Bug(format!("{what}: the walking thread panicked"))),
                Err(NotYet::Running) => {}
            }
            let now = Instant::now();
            let verdict = match check.take() {
                Some((asked, pending)) => match pending.wait(Duration::ZERO) {
                    Ok(answer) => Some(judge(answer)),
                    Err(NotYet::Running) if now - asked < check_limit => {
                        check = Some((asked, pending));
                        None
                    }
                    Err(_) => Some(Err(format!(
                        "the server did not answer a check on the statement within {}s",
                        check_limit.as_secs_f64()
                    ))),
                },
                None => {
                    if now >= next_check {
                        check = Some((now, check_on(&self.ep, id)));
                    }
                    None
                }
            };
            let stop = if (interruptible && wait::interrupted()) || bound.is_some_and(|b| now - started >= b) {
                Some(Error::Interrupted)
            } else {
                match verdict {
                    None => None,
                    Some(Ok(())) => {
                        suspect = false;
                        next_check = now + every;
                        None
                    }
                    Some(Err(why)) if suspect => Some(Error::Sql {
                        endpoint: self.endpoint.clone(),
                        what: what.to_string(),
                        detail: format!("{why}; the connection was given up"),
                        code: ErrorCode::Silence,
                    }),
                    Some(Err(_)) => {
                        suspect = true;
                        next_check = now + Duration::from_secs(1);
                        None
                    }
                }
            };
            if let Some(error) = stop {
                end_session(&self.ep, id);
                return Err(error);
            }
        }
    }

    fn rows(&mut self, sql: &str, params: Vec<Value>, what: &str) -> Result<Vec<Row>> {
        let params = if params.is_empty() { Params::Empty } else { Params::Positional(params) };
        self.short(what, |conn| conn.exec::<Row, _, _>(sql, params))
    }
}

/// Logs in to `ep` with `opts` (its own or a variant of them) and sets the session up.
fn open(ep: &MyEndpoint, opts: mysql::Opts) -> Result<(Conn, Flavor)> {
    let connect_error = |detail: String| Error::Connect { endpoint: ep.display.clone(), detail: redact(&detail) };
    let host = ep.opts.get_ip_or_hostname().to_string();
    let preferred = ep.tls.mode == crate::tls::MySslMode::Preferred;
    let login = move || login(opts, preferred);
    // The driver's timeout covers reaching the server, not a server that accepts the
    // connection and never greets: the login gets a deadline of its own.
    let limit = ep.opts.get_tcp_connect_timeout().unwrap_or(Duration::from_secs(15));
    let limit = if wait::interrupted() { limit.min(wait::STOP_BOUND) } else { limit };
    let connected = wait::with_deadline(limit, login).ok_or_else(|| {
        connect_error(format!(
            "the server did not complete the login within {}s (--connect-timeout); \
             check that the host and port are a MySQL/MariaDB server that is up",
            limit.as_secs_f64()
        ))
    })?;
    let mut conn = connected
        .map_err(|e| connect_error(ep.tls.explain(&e, &host).unwrap_or_else(|| describe_connect_error(ep, &e))))?;
    let version: String =
        conn.query_first("SELECT VERSION()").map_err(|e| connect_error(describe_mysql_error(&e)))?.unwrap_or_default();
    let flavor = if version.to_ascii_lowercase().contains("mariadb") { Flavor::MariaDb } else { Flavor::MySql };
    let timeout = if flavor == Flavor::MariaDb { SESSION_MARIADB } else { SESSION_MYSQL };
    for sql in SESSION.iter().chain(std::iter::once(&timeout)) {
        conn.query_drop(sql)
            .map_err(|e| connect_error(format!("setting up the session ({sql}): {}", describe_mysql_error(&e))))?;
    }
    Ok((conn, flavor))
}

/// A bare login with `opts`. `preferred`: ssl-mode=PREFERRED, under which a server without TLS
/// gets a plain connection, as the mysql client does.
fn login(opts: mysql::Opts, preferred: bool) -> mysql::Result<Conn> {
    match Conn::new(opts.clone()) {
        Err(mysql::Error::DriverError(mysql::DriverError::TlsNotSupported)) if preferred => {
            Conn::new(mysql::OptsBuilder::from_opts(opts).ssl_opts(None::<mysql::SslOpts>))
        }
        other => other,
    }
}

/// `MySource::failed`, for callers that hold a borrow of the connection.
fn failed(ep: &MyEndpoint, id: u32, what: impl Into<String>, err: mysql::Error) -> Error {
    let error = Error::mysql(&ep.display, what, err);
    if matches!(error, Error::Sql { code: ErrorCode::Silence, .. }) {
        end_session(ep, id);
    }
    error
}

/// Ends the connection `id` on the server, from a fresh connection (a user may `KILL` its own
/// connections), best effort and within `wait::STOP_BOUND`: for a connection whose client gave
/// it up, which the server would otherwise keep until its own timeouts (an hour).
fn end_session(ep: &MyEndpoint, id: u32) {
    let (opts, preferred) = (ep.opts.clone(), ep.tls.mode == crate::tls::MySslMode::Preferred);
    wait::with_deadline(wait::STOP_BOUND, move || login(opts, preferred)?.query_drop(format!("KILL {id}")));
}

/// Asks, on a fresh connection and a thread of its own, what connection `id` is doing (see
/// `judge`).
fn check_on(ep: &MyEndpoint, id: u32) -> Detached<mysql::Result<Option<String>>> {
    let (opts, preferred) = (ep.opts.clone(), ep.tls.mode == crate::tls::MySslMode::Preferred);
    wait::detach(move || {
        let mut conn = login(opts, preferred)?;
        conn.exec_first::<String, _, _>("SELECT COMMAND FROM information_schema.PROCESSLIST WHERE ID = ?", (id,))
    })
}

/// Whether the answer of `check_on` says the server still runs a statement there (Ok), or why
/// the statement is taken for lost: the connection is idle or gone, so the answer will never
/// come; the server cannot be reached. A server that answers with an error (too many
/// connections) proves nothing either way: Ok.
fn judge(answer: mysql::Result<Option<String>>) -> std::result::Result<(), String> {
    match answer {
        Err(mysql::Error::MySqlError(_)) => Ok(()),
        Err(e) => Err(format!("the server could not be reached for a check: {}", redact(&e.to_string()))),
        Ok(None) => Err("the server has no such connection any more".into()),
        Ok(Some(command)) if matches!(command.as_str(), "Query" | "Execute" | "Fetch" | "Prepare") => Ok(()),
        Ok(Some(command)) => Err(format!(
            "the server no longer runs the statement (its connection shows {command}), but the answer never arrived"
        )),
    }
}

/// A connection error with a hint at what to fix.
fn describe_connect_error(ep: &MyEndpoint, err: &mysql::Error) -> String {
    match err {
        mysql::Error::MySqlError(e) if e.code == 1045 => format!(
            "{e}; check the user and password ({})",
            ep.password_source.login_hint(crate::credentials::MY_PASSWORD_VAR, "~/.my.cnf ($MYSQL_HOME/my.cnf)")
        ),
        mysql::Error::MySqlError(e) if e.code == 1049 => format!("{e}; check the database name in the URL"),
        mysql::Error::MySqlError(e) if e.code == 1044 => {
            format!("{e}; the user needs SELECT on the database (GRANT SELECT ON db.* TO user)")
        }
        mysql::Error::IoError(e) => format!("{e}; is the server running and reachable at that host and port?"),
        other => describe_mysql_error(other),
    }
}

/// A value of an introspection query as text.
fn text_of(row: &Row, i: usize) -> Option<String> {
    match row.as_ref(i)? {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::Int(n) => Some(n.to_string()),
        Value::UInt(n) => Some(n.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Double(f) => Some(f.to_string()),
        other => Some(format!("{other:?}")),
    }
}

fn num_of(row: &Row, i: usize) -> u64 {
    text_of(row, i).and_then(|t| t.parse().ok()).unwrap_or(0)
}

/// Whether two MySQL column names name the same column (MySQL compares them without case).
fn same_name(a: &str, b: &str) -> bool {
    a == b || a.to_lowercase() == b.to_lowercase()
}

/// A MySQL identifier in backquotes, embedded backquotes doubled.
fn my_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

fn my_table(name: &TableName) -> String {
    format!("{}.{}", my_ident(&name.schema), my_ident(&name.name))
}

/// A PostgreSQL identifier made of parts, shortened with a hash to fit 63 bytes.
fn pg_name(parts: &[&str]) -> String {
    let full = parts.join("_");
    if full.len() <= PG_MAX_IDENT {
        return full;
    }
    let hash = blake3::hash(full.as_bytes()).to_hex();
    let mut end = PG_MAX_IDENT - 9;
    while !full.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}_{}", &full[..end], &hash[..8])
}

impl MySource {
    /// Seconds this server lags behind its primary (0 when it is not a replica; infinite
    /// while its replication is stopped, since the lag is then unknown and growing).
    pub fn replication_lag(&mut self) -> Result<f64> {
        let what = "reading the replication lag";
        // MySQL 8.4 dropped SHOW SLAVE STATUS; MariaDB 10.5+ and MySQL 8.0.22+ know REPLICA.
        let rows: Vec<Row> = self.short(what, |conn| match conn.query("SHOW REPLICA STATUS") {
            Ok(rows) => Ok(rows),
            Err(_) => conn.query("SHOW SLAVE STATUS"),
        })?;
        let Some(row) = rows.first() else { return Ok(0.0) };
        for name in ["Seconds_Behind_Source", "Seconds_Behind_Master"] {
            if let Some(i) = row.columns_ref().iter().position(|c| c.name_str() == name) {
                return Ok(match row.as_ref(i) {
                    None | Some(Value::NULL) => f64::INFINITY,
                    Some(v) => value_number(v).unwrap_or(f64::INFINITY),
                });
            }
        }
        Ok(0.0)
    }

    /// The binary log position (`SHOW MASTER STATUS`, or MySQL 8.4's `SHOW BINARY LOG
    /// STATUS`; none when the binary log is off) and the GTID set (MySQL `@@gtid_executed`,
    /// MariaDB `@@gtid_binlog_pos`), read with the source's clock.
    pub fn position(&mut self) -> Result<SourcePosition> {
        let what = "reading the source's binary log position";
        let rows: Vec<Row> = self.short(what, |conn| match conn.query("SHOW MASTER STATUS") {
            Ok(rows) => Ok(rows),
            // MySQL 8.4 knows only the new name; when that fails too, the first error says why
            // (usually a missing REPLICATION CLIENT / MariaDB BINLOG MONITOR privilege).
            Err(first) => conn.query("SHOW BINARY LOG STATUS").map_err(|_| first),
        })?;
        let (binlog_file, binlog_pos) = match rows.first() {
            Some(r) => (text_of(r, 0), text_of(r, 1).and_then(|p| p.parse().ok())),
            None => (None, None),
        };
        let sql = match self.flavor {
            Flavor::MariaDb => {
                "SELECT @@GLOBAL.gtid_binlog_pos, DATE_FORMAT(UTC_TIMESTAMP(6), '%Y-%m-%d %H:%i:%s.%f+00')"
            }
            Flavor::MySql => "SELECT @@GLOBAL.gtid_executed, DATE_FORMAT(UTC_TIMESTAMP(6), '%Y-%m-%d %H:%i:%s.%f+00')",
        };
        let row: Option<Row> = self.short(what, |conn| conn.query_first(sql))?;
        let gtid = row.as_ref().and_then(|r| text_of(r, 0)).map(|g| g.replace('\n', ""));
        let taken_at = row.as_ref().and_then(|r| text_of(r, 1)).unwrap_or_default();
        Ok(SourcePosition { engine: "mysql".into(), lsn: None, slot: None, binlog_file, binlog_pos, gtid, taken_at })
    }

    /// `--consistent`: under `FLUSH TABLES WITH READ LOCK` on this connection, starts a
    /// `WITH CONSISTENT SNAPSHOT, READ ONLY` transaction on every one of `workers` and reads
    /// the position, then unlocks: every worker's snapshot is at exactly that position. Writes
    /// on the source wait for the lock only while the transactions start (milliseconds).
    pub fn consistent_snapshots(&mut self, workers: &mut [MySource]) -> Result<SourcePosition> {
        let what = "taking the global read lock (--consistent; needs the RELOAD privilege)";
        // The lock waits for running statements and blocks writes meanwhile: give up after
        // LOCK_WAIT_SECONDS rather than hold the source's writes behind a long query.
        self.short(what, |conn| {
            conn.query_drop(format!("SET SESSION lock_wait_timeout = {LOCK_WAIT_SECONDS}"))?;
            conn.query_drop("FLUSH TABLES WITH READ LOCK")
        })?;
        let started = (|| {
            for w in workers.iter_mut() {
                w.short("starting a consistent snapshot", start_snapshot)?;
                w.in_snapshot = true;
            }
            self.position()
        })();
        let unlocked = self.short("UNLOCK TABLES", |conn| conn.query_drop("UNLOCK TABLES"));
        let position = started?;
        unlocked?;
        Ok(position)
    }

    /// The number a `--throttle-query` returns (its first row's last column).
    /// `UTC_TIMESTAMP` less `micros`, as `YYYY-MM-DD HH:MM:SS.ffffff`.
    pub fn clock_minus(&mut self, micros: i64, what: &str) -> Result<String> {
        let sql =
            format!("SELECT DATE_FORMAT(UTC_TIMESTAMP(6) - INTERVAL {micros} MICROSECOND, '%Y-%m-%d %H:%i:%s.%f')");
        let text: Option<String> = self.short(what, |conn| conn.query_first(sql))?;
        Ok(text.unwrap_or_default())
    }

    pub fn query_number(&mut self, sql: &str) -> Result<f64> {
        let row: Option<Row> = self.short("running --throttle-query", |conn| conn.query_first(sql))?;
        let Some(row) = row else { return Ok(0.0) };
        let value = row.len().checked_sub(1).and_then(|i| row.as_ref(i)).cloned().unwrap_or(Value::NULL);
        value_number(&value)
            .ok_or_else(|| Error::input(format!("--throttle-query returned {value:?}, which is not a number")))
    }
}

/// Starts a read-only transaction on a consistent snapshot. `WITH CONSISTENT SNAPSHOT` is
/// silently ignored below REPEATABLE READ, so the level is set for this transaction whatever
/// the server's default (`transaction_isolation = READ-COMMITTED` is common).
fn start_snapshot(conn: &mut Conn) -> mysql::Result<()> {
    conn.query_drop("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")?;
    conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
}

/// A MySQL value as a number, for lag and throttle queries (which may return text).
fn value_number(v: &Value) -> Option<f64> {
    match v {
        Value::Int(i) => Some(*i as f64),
        Value::UInt(u) => Some(*u as f64),
        Value::Float(f) => Some(f64::from(*f)),
        Value::Double(d) => Some(*d),
        Value::Bytes(b) => std::str::from_utf8(b).ok()?.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::types::unquote_sql_string;
    use super::*;

    #[test]
    fn identifiers_are_quoted_and_shortened() {
        assert_eq!(my_ident("we`ird"), "`we``ird`");
        let long = "x".repeat(70);
        let name = pg_name(&[&long, "idx"]);
        assert_eq!(name.len(), 63);
        assert_ne!(pg_name(&[&long, "a"]), pg_name(&[&long, "b"]));
        assert_eq!(unquote_sql_string("'it''s\\\\x'").as_deref(), Some("it's\\x"));
        assert_eq!(unquote_sql_string("'a\\nb'"), None);
    }
}
