//! MySQL/MariaDB source: introspection into engine-neutral `Table`s with PostgreSQL DDL (the
//! type mapping table), key walking in the source's own collation order, and streaming chunk
//! extraction encoded straight into PostgreSQL binary COPY with canonical row hashes.
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
//! read. In tables with wide columns ([`WIDE`]: MEDIUM/LONG BLOB and TEXT, JSON, spatial), a
//! chunk's streaming query therefore sends the wide values of rows above [`SET_ASIDE_ABOVE`]
//! as NULL, with each row's size; those rows are skipped and then read whole by key, one at a
//! time within the process's [`SET_ASIDE_BUDGET`], in the same consistent snapshot, and encoded
//! like any other row (the digest does not depend on row order). A connection that read a huge
//! row is replaced after its chunk, since the driver keeps its grown read buffer.
//!
//! # The mapping
//!
//! [`TYPE_MAP`] is the one table from MySQL type families to PostgreSQL types, logical types
//! and converters; [`CAST_MAP`] the one table of what `--cast` rules may map to. A column's
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

use std::collections::HashSet;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mysql::prelude::Queryable;
use mysql::{Conn, Params, Row, Value};

use super::{Block, SourcePosition};
use crate::canonical::{DigestBuilder, RowEncoder};
use crate::config::{
    CastRule, CastSelector, CastTarget, ColumnRef, MyEndpoint, MyOptions, TablePattern, TableSpec, ZeroDates,
};
use crate::copy_format::{add_row, ChunkSummary, CopyEncoder, RowSink};
use crate::error::{describe_mysql_error, redact, Error, ErrorCode, Result};
use crate::pipeline::{ByteGate, Permit};
use crate::plan::{Bound, Chunk};
use crate::schema::{quote_ident, quote_literal, Column, Key, LogicalType, SequenceSync, Table, TableName, TargetDdl};
use crate::wait::{self, Detached, NotYet, Waiting};

/// PostgreSQL's `bit` type OID: BIT(n) values are hashed as their PostgreSQL binary form.
const PG_BIT_OID: u32 = 1560;

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
}

/// A MySQL column type parsed from `COLUMN_TYPE` (plus the charset/collation suffix that
/// `Column::source_type` carries for character columns).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct TypeInfo {
    /// `int`, `varchar`, `enum`, `json`… (the DATA_TYPE).
    family: String,
    /// The raw arguments between the first parentheses, split at top-level commas.
    args: Vec<String>,
    unsigned: bool,
    charset: Option<String>,
    collation: Option<String>,
}

impl TypeInfo {
    fn parse(text: &str) -> TypeInfo {
        let text = text.trim();
        let family_end = text.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(text.len());
        let mut info = TypeInfo { family: text[..family_end].to_ascii_lowercase(), ..TypeInfo::default() };
        let mut rest = &text[family_end..];
        if rest.starts_with('(') {
            let (args, after) = split_args(&rest[1..]);
            info.args = args;
            rest = after;
        }
        let words: Vec<String> = rest.split_whitespace().map(|w| w.to_ascii_lowercase()).collect();
        info.unsigned = words.iter().any(|w| w == "unsigned");
        for (i, w) in words.iter().enumerate() {
            match w.as_str() {
                "set" => info.charset = words.get(i + 1).cloned(),
                "collate" => info.collation = words.get(i + 1).cloned(),
                _ => {}
            }
        }
        info
    }

    fn arg(&self, i: usize) -> Option<u32> {
        self.args.get(i).and_then(|a| a.trim().parse().ok())
    }

    /// ENUM/SET labels, unquoted.
    fn labels(&self) -> Vec<String> {
        self.args.iter().map(|a| unquote_sql_string(a.trim()).unwrap_or_else(|| a.clone())).collect()
    }
}

/// Splits `a,'b,c',d)rest` into (["a", "'b,c'", "d"], "rest"), honouring '…' with '' escapes.
fn split_args(text: &str) -> (Vec<String>, &str) {
    let mut args = Vec::new();
    let mut cur = String::new();
    let mut in_quote = false;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if in_quote {
            cur.push(c);
            if c == '\'' {
                if chars.peek().map(|p| p.1) == Some('\'') {
                    cur.push('\'');
                    chars.next();
                } else {
                    in_quote = false;
                }
            } else if c == '\\' {
                if let Some((_, n)) = chars.next() {
                    cur.push(n);
                }
            }
            continue;
        }
        match c {
            '\'' => {
                in_quote = true;
                cur.push(c);
            }
            ',' => args.push(std::mem::take(&mut cur)),
            ')' => {
                args.push(cur);
                return (args, &text[i + 1..]);
            }
            _ => cur.push(c),
        }
    }
    args.push(cur);
    (args, "")
}

/// `'it''s'` → `it's` (MySQL also writes `\\` for a backslash); None if not a plain literal.
fn unquote_sql_string(text: &str) -> Option<String> {
    let inner = text.strip_prefix('\'')?.strip_suffix('\'')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' if chars.peek() == Some(&'\'') => {
                chars.next();
                out.push('\'');
            }
            '\'' => return None,
            '\\' => match chars.next()? {
                '\\' => out.push('\\'),
                '\'' => out.push('\''),
                '"' => out.push('"'),
                // \n, \0 and friends: not worth guessing; the default is skipped.
                _ => return None,
            },
            c => out.push(c),
        }
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------------
// The type mapping
// ---------------------------------------------------------------------------------------------

/// How one MySQL value becomes a COPY field and a canonical value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conv {
    /// Integer → smallint / integer / bigint (range-checked).
    Int2,
    Int4,
    Int8,
    /// BIGINT UNSIGNED → numeric(20,0), hashed as a DECIMAL.
    U64Numeric,
    /// DECIMAL text → numeric.
    Decimal,
    /// FLOAT (32-bit) → real, hashed as `f64::from(f32)`.
    Float4,
    Float8,
    /// Integer or BIT 0/1 → boolean (any other value is an error).
    Bool,
    /// UTF-8 text (the session converts every charset); a NUL byte is an error.
    Text,
    /// Bytes that must be valid UTF-8 to become text (binary strings cast to text).
    TextUtf8,
    /// An ENUM label → PostgreSQL enum; the empty "invalid value" label is an error.
    Enum,
    Bytes,
    Date,
    /// DATETIME (wall clock) and TIMESTAMP (UTC in this session) → timestamp / timestamptz.
    DateTime,
    /// TIME (may be negative or beyond 24 h) → interval of microseconds.
    Time,
    /// BIT(n) → bit(n) (right-aligned bytes → left-aligned bit string).
    Bit,
    Json,
    /// Text UUID (MariaDB UUID, CHAR(36)) → uuid.
    UuidText,
    /// BINARY(16) → uuid.
    UuidBytes,
}

/// One row of the type mapping: a MySQL type family and what it becomes.
struct TypeRow {
    /// MySQL DATA_TYPE names covered by this row.
    mysql: &'static [&'static str],
    /// `Some(true)`: UNSIGNED columns only; `Some(false)`: signed only; `None`: both.
    unsigned: Option<bool>,
    /// The PostgreSQL type as `format_type` spells it.
    pg: fn(&TypeInfo) -> String,
    logical: LogicalType,
    conv: Conv,
}

const INTS: &[&str] = &["tinyint", "smallint", "mediumint", "int", "integer", "bigint"];
const STRINGS: &[&str] = &["char", "varchar", "tinytext", "text", "mediumtext", "longtext"];
const BINARIES: &[&str] = &["binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"];
const SPATIAL: &[&str] = &[
    "geometry",
    "point",
    "linestring",
    "polygon",
    "multipoint",
    "multilinestring",
    "multipolygon",
    "geometrycollection",
    "geomcollection",
];

/// MySQL/MariaDB → PostgreSQL, one row per type family (README: "MySQL/MariaDB → PostgreSQL
/// type mapping"). A family missing here (spatial types, MariaDB INET4/INET6/VECTOR) is
/// refused up front unless a `--cast` rule maps the column or `--exclude-column` drops it.
#[rustfmt::skip]
const TYPE_MAP: &[TypeRow] = &[
    TypeRow { mysql: &["tinyint"], unsigned: None, pg: |_| "smallint".into(), logical: LogicalType::Int2, conv: Conv::Int2 },
    TypeRow { mysql: &["smallint"], unsigned: Some(false), pg: |_| "smallint".into(), logical: LogicalType::Int2, conv: Conv::Int2 },
    TypeRow { mysql: &["smallint"], unsigned: Some(true), pg: |_| "integer".into(), logical: LogicalType::Int4, conv: Conv::Int4 },
    TypeRow { mysql: &["mediumint"], unsigned: None, pg: |_| "integer".into(), logical: LogicalType::Int4, conv: Conv::Int4 },
    TypeRow { mysql: &["int", "integer"], unsigned: Some(false), pg: |_| "integer".into(), logical: LogicalType::Int4, conv: Conv::Int4 },
    TypeRow { mysql: &["int", "integer"], unsigned: Some(true), pg: |_| "bigint".into(), logical: LogicalType::Int8, conv: Conv::Int8 },
    TypeRow { mysql: &["bigint"], unsigned: Some(false), pg: |_| "bigint".into(), logical: LogicalType::Int8, conv: Conv::Int8 },
    TypeRow { mysql: &["bigint"], unsigned: Some(true), pg: |_| "numeric(20,0)".into(), logical: LogicalType::Numeric, conv: Conv::U64Numeric },
    TypeRow {
        mysql: &["decimal", "numeric"],
        unsigned: None,
        pg: |t| format!("numeric({},{})", t.arg(0).unwrap_or(10), t.arg(1).unwrap_or(0)),
        logical: LogicalType::Numeric,
        conv: Conv::Decimal,
    },
    TypeRow { mysql: &["float"], unsigned: None, pg: |_| "real".into(), logical: LogicalType::Float4, conv: Conv::Float4 },
    TypeRow { mysql: &["double", "real"], unsigned: None, pg: |_| "double precision".into(), logical: LogicalType::Float8, conv: Conv::Float8 },
    TypeRow {
        mysql: &["char", "varchar"],
        unsigned: None,
        pg: |t| match t.arg(0) {
            Some(n) if n > 0 => format!("character varying({n})"),
            _ => "text".into(),
        },
        logical: LogicalType::Text,
        conv: Conv::Text,
    },
    TypeRow { mysql: &["tinytext", "text", "mediumtext", "longtext"], unsigned: None, pg: |_| "text".into(), logical: LogicalType::Text, conv: Conv::Text },
    TypeRow { mysql: BINARIES, unsigned: None, pg: |_| "bytea".into(), logical: LogicalType::Bytea, conv: Conv::Bytes },
    TypeRow { mysql: &["date"], unsigned: None, pg: |_| "date".into(), logical: LogicalType::Date, conv: Conv::Date },
    TypeRow {
        mysql: &["datetime"],
        unsigned: None,
        pg: |t| format!("timestamp({}) without time zone", t.arg(0).unwrap_or(0)),
        logical: LogicalType::Timestamp,
        conv: Conv::DateTime,
    },
    TypeRow {
        mysql: &["timestamp"],
        unsigned: None,
        pg: |t| format!("timestamp({}) with time zone", t.arg(0).unwrap_or(0)),
        logical: LogicalType::TimestampTz,
        conv: Conv::DateTime,
    },
    TypeRow { mysql: &["time"], unsigned: None, pg: |_| "interval".into(), logical: LogicalType::Interval, conv: Conv::Time },
    TypeRow { mysql: &["year"], unsigned: None, pg: |_| "smallint".into(), logical: LogicalType::Int2, conv: Conv::Int2 },
    // The enum type itself is created per column (`enum_type_name`); `pg` is filled in there.
    TypeRow { mysql: &["enum"], unsigned: None, pg: |_| String::new(), logical: LogicalType::Enum, conv: Conv::Enum },
    TypeRow { mysql: &["set"], unsigned: None, pg: |_| "text".into(), logical: LogicalType::Text, conv: Conv::Text },
    TypeRow { mysql: &["bit"], unsigned: None, pg: |t| format!("bit({})", t.arg(0).unwrap_or(1)), logical: LogicalType::Raw(PG_BIT_OID), conv: Conv::Bit },
    TypeRow { mysql: &["json"], unsigned: None, pg: |_| "jsonb".into(), logical: LogicalType::Jsonb, conv: Conv::Json },
    TypeRow { mysql: &["uuid"], unsigned: None, pg: |_| "uuid".into(), logical: LogicalType::Uuid, conv: Conv::UuidText },
];

/// What a `--cast` rule may map to: the PostgreSQL type, and which source families qualify.
struct CastRow {
    to: CastTarget,
    /// Families this cast accepts (empty: any).
    from: &'static [&'static [&'static str]],
    pg: &'static str,
    logical: LogicalType,
}

#[rustfmt::skip]
const CAST_MAP: &[CastRow] = &[
    CastRow { to: CastTarget::Boolean, from: &[INTS, &["bit"]], pg: "boolean", logical: LogicalType::Bool },
    CastRow { to: CastTarget::Text, from: &[], pg: "text", logical: LogicalType::Text },
    CastRow { to: CastTarget::Bytea, from: &[STRINGS, BINARIES, SPATIAL, &["json"]], pg: "bytea", logical: LogicalType::Bytea },
    CastRow { to: CastTarget::Jsonb, from: &[STRINGS, &["json"]], pg: "jsonb", logical: LogicalType::Jsonb },
    CastRow { to: CastTarget::Uuid, from: &[&["binary", "char", "varchar", "uuid"]], pg: "uuid", logical: LogicalType::Uuid },
];

fn type_row(info: &TypeInfo) -> Option<&'static TypeRow> {
    TYPE_MAP.iter().find(|r| r.mysql.contains(&info.family.as_str()) && r.unsigned.is_none_or(|u| u == info.unsigned))
}

fn cast_row(to: CastTarget) -> &'static CastRow {
    CAST_MAP.iter().find(|r| r.to == to).expect("every cast target has a row")
}

fn in_families(family: &str, lists: &[&[&str]]) -> bool {
    lists.iter().any(|l| l.contains(&family))
}

/// Whether a cast applies to a column of this type (None) or why not.
fn cast_refusal(to: CastTarget, info: &TypeInfo) -> Option<String> {
    let row = cast_row(to);
    if !row.from.is_empty() && !in_families(&info.family, row.from) {
        return Some(format!("{} columns cannot be mapped to {}", info.family, row.pg));
    }
    if to == CastTarget::Uuid && info.family == "binary" && info.arg(0) != Some(16) {
        return Some("only BINARY(16) holds a uuid".into());
    }
    None
}

/// The converter and SELECT expression of a copied column, from what `describe_tables`
/// recorded in it (so resumed jobs read their columns exactly as the job was set up).
fn column_conv(col: &Column) -> std::result::Result<(Conv, String), String> {
    let info = TypeInfo::parse(&col.source_type);
    let name = my_ident(&col.name);
    if let Some(row) = type_row(&info) {
        if row.logical == col.logical {
            return Ok((row.conv, name));
        }
    }
    let conv_for = |conv: Conv| Ok((conv, name.clone()));
    let fam = info.family.as_str();
    match &col.logical {
        LogicalType::Bool if in_families(fam, &[INTS, &["bit"]]) => conv_for(Conv::Bool),
        LogicalType::Text if in_families(fam, &[STRINGS, &["json", "set", "enum"]]) => conv_for(Conv::Text),
        LogicalType::Text if in_families(fam, &[BINARIES]) => conv_for(Conv::TextUtf8),
        LogicalType::Text if in_families(fam, &[SPATIAL]) => Ok((Conv::Text, format!("ST_AsText({name})"))),
        // Bits as their number; everything else as MySQL renders it.
        LogicalType::Text if fam == "bit" => Ok((Conv::Text, format!("CAST({name} + 0 AS CHAR)"))),
        LogicalType::Text => Ok((Conv::Text, format!("CAST({name} AS CHAR)"))),
        LogicalType::Bytea if in_families(fam, &[STRINGS, BINARIES, SPATIAL, &["json"]]) => conv_for(Conv::Bytes),
        LogicalType::Jsonb if in_families(fam, &[STRINGS, &["json"]]) => conv_for(Conv::Json),
        LogicalType::Uuid if fam == "binary" => conv_for(Conv::UuidBytes),
        LogicalType::Uuid if in_families(fam, &[&["char", "varchar", "uuid"]]) => conv_for(Conv::UuidText),
        other => Err(format!(
            "column {} ({}) cannot be read as {} ({other:?}); the job's table definition does not fit this build",
            quote_ident(&col.name),
            col.source_type,
            col.type_sql
        )),
    }
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
        })
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

// ---------------------------------------------------------------------------------------------
// Introspection
// ---------------------------------------------------------------------------------------------

/// A column as `information_schema.COLUMNS` describes it.
#[derive(Debug, Clone)]
struct SourceColumn {
    name: String,
    /// COLUMN_TYPE, lower case (`int(10) unsigned`, `enum('a','b')`); `json` for MariaDB JSON.
    column_type: String,
    info: TypeInfo,
    nullable: bool,
    default: Option<String>,
    extra: String,
    charset: Option<String>,
    collation: Option<String>,
    comment: String,
}

impl SourceColumn {
    fn auto_increment(&self) -> bool {
        self.extra.contains("auto_increment")
    }

    /// Forms a `type:` cast rule can name: the full column type, the type without integer
    /// display widths (`int unsigned`, as MySQL 8 shows it), and the bare type name.
    fn type_forms(&self) -> Vec<String> {
        let full = crate::config::normalize_mysql_type(&self.column_type);
        let mut forms = vec![full.clone()];
        if INTS.contains(&self.info.family.as_str()) {
            if let (Some(open), Some(close)) = (full.find('('), full.find(')')) {
                let bare = format!("{}{}", &full[..open], &full[close + 1..]);
                forms.push(crate::config::normalize_mysql_type(&bare));
            }
        }
        forms.push(self.info.family.clone());
        forms
    }

    /// `Column::source_type`: COLUMN_TYPE plus, for character columns, the charset and collation
    /// (key comparisons need them).
    fn source_type(&self) -> String {
        match (&self.charset, &self.collation) {
            (Some(cs), Some(co)) if self.info.family != "json" => {
                format!("{} character set {cs} collate {co}", self.column_type)
            }
            _ => self.column_type.clone(),
        }
    }
}

/// How a column's values can be compared with a bound in key-walking queries.
#[derive(Debug, Clone, PartialEq, Eq)]
enum KeyKind {
    Signed,
    Unsigned,
    Decimal(u32, u32),
    Date,
    DateTime,
    Time,
    Text { charset: Option<String>, collation: Option<String> },
    Binary,
    Uuid,
}

impl KeyKind {
    /// None for types that cannot be a chunking key: their order or their text form is not
    /// exact (floats, ENUM/SET order by index, BIT, JSON, spatial).
    fn of(source_type: &str) -> Option<KeyKind> {
        let info = TypeInfo::parse(source_type);
        let fam = info.family.as_str();
        Some(match fam {
            _ if INTS.contains(&fam) || fam == "year" => {
                if info.unsigned {
                    KeyKind::Unsigned
                } else {
                    KeyKind::Signed
                }
            }
            "decimal" | "numeric" => KeyKind::Decimal(info.arg(0).unwrap_or(10), info.arg(1).unwrap_or(0)),
            "date" => KeyKind::Date,
            "datetime" | "timestamp" => KeyKind::DateTime,
            "time" => KeyKind::Time,
            _ if STRINGS.contains(&fam) => KeyKind::Text { charset: info.charset, collation: info.collation },
            _ if BINARIES.contains(&fam) => KeyKind::Binary,
            "uuid" => KeyKind::Uuid,
            _ => return None,
        })
    }

    /// The SQL that turns a bound's text (a `?` parameter) into a value of the column's type.
    fn param_sql(&self) -> String {
        match self {
            KeyKind::Signed | KeyKind::Unsigned | KeyKind::Uuid => "?".into(),
            KeyKind::Decimal(p, s) => format!("CAST(? AS DECIMAL({p},{s}))"),
            KeyKind::Date => "CAST(? AS DATE)".into(),
            KeyKind::DateTime => "CAST(? AS DATETIME(6))".into(),
            KeyKind::Time => "CAST(? AS TIME(6))".into(),
            KeyKind::Binary => "UNHEX(?)".into(),
            KeyKind::Text { charset: Some(cs), collation: Some(co) } if is_word(cs) && is_word(co) => {
                format!("CONVERT(? USING {cs}) COLLATE {co}")
            }
            KeyKind::Text { .. } => "?".into(),
        }
    }

    /// A bound's text as a typed parameter (integers bound as integers: MySQL would compare
    /// an integer column with a string as DOUBLE).
    fn param(&self, text: &str) -> std::result::Result<Value, String> {
        match self {
            KeyKind::Signed => text.parse::<i64>().map(Value::Int).map_err(|e| format!("bound {text:?}: {e}")),
            KeyKind::Unsigned => text.parse::<u64>().map(Value::UInt).map_err(|e| format!("bound {text:?}: {e}")),
            _ => Ok(Value::Bytes(text.as_bytes().to_vec())),
        }
    }

    /// A key value as bound text (binary keys as hex, compared through UNHEX).
    fn bound_text(&self, v: &Value) -> String {
        match (self, v) {
            (KeyKind::Binary, Value::Bytes(b)) => hex_upper(b),
            _ => value_text(v),
        }
    }
}

fn is_word(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn hex_upper(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

/// A value's text, as bounds and messages show it.
fn value_text(v: &Value) -> String {
    match v {
        Value::NULL => "NULL".into(),
        Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        Value::Int(n) => n.to_string(),
        Value::UInt(n) => n.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Double(f) => f.to_string(),
        Value::Date(y, m, d, 0, 0, 0, 0) => format!("{y:04}-{m:02}-{d:02}"),
        Value::Date(y, m, d, h, mi, s, us) => format!("{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02}.{us:06}"),
        Value::Time(neg, days, h, mi, s, us) => {
            let hours = u64::from(*days) * 24 + u64::from(*h);
            format!("{}{hours:02}:{mi:02}:{s:02}.{us:06}", if *neg { "-" } else { "" })
        }
    }
}

/// An index as `information_schema.STATISTICS` describes it.
#[derive(Debug, Clone)]
struct SourceIndex {
    name: String,
    unique: bool,
    kind: String,
    /// (column name, prefix length, descending); a None name is an expression (MySQL 8).
    parts: Vec<(Option<String>, Option<u32>, bool)>,
}

impl MySource {
    /// Resolves the named tables (every base table of the URL's database when none are named)
    /// and introspects them, applying `--cast`, `--exclude-column` and `--target-schema`.
    pub fn describe_tables(&mut self, specs: &[TableSpec], excluded: &[TablePattern]) -> Result<Vec<Table>> {
        let mut chosen = self.resolve_tables(specs)?;
        chosen.retain(|name| !excluded.iter().any(|p| p.matches(name)));
        if chosen.is_empty() {
            return Err(Error::input(format!("the source database {} has no tables", self.endpoint)));
        }
        let mut used_rules: HashSet<usize> = HashSet::new();
        let mut used_excludes: HashSet<usize> = HashSet::new();
        let mut unsupported: Vec<String> = Vec::new();
        let mut tables = Vec::with_capacity(chosen.len());
        for name in &chosen {
            if let Some(t) = self.describe(name, &mut used_rules, &mut used_excludes, &mut unsupported)? {
                tables.push(t);
            }
        }
        if !unsupported.is_empty() {
            return Err(Error::input(format!(
                "columns of types PostgreSQL has no faithful equivalent for:\n  {}\nmap them with --cast \
                 (e.g. --cast 'column:DB.TABLE.COLUMN=text' or =bytea) or leave them out with \
                 --exclude-column DB.TABLE.COLUMN",
                unsupported.join("\n  ")
            )));
        }
        let unused: Vec<String> = self
            .options
            .casts
            .iter()
            .enumerate()
            .filter(|(i, r)| matches!(r.selector, CastSelector::Column(_)) && !used_rules.contains(i))
            .map(|(_, r)| format!("--cast {}", r.text))
            .chain(
                self.options
                    .excluded
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !used_excludes.contains(i))
                    .map(|(_, c)| format!("--exclude-column {c}")),
            )
            .collect();
        if !unused.is_empty() {
            return Err(Error::input(format!(
                "{} names no column of the tables being copied; check the database, table and column names",
                unused.join(", ")
            )));
        }
        Ok(tables)
    }

    fn resolve_tables(&mut self, specs: &[TableSpec]) -> Result<Vec<TableName>> {
        let list_sql = "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES
                         WHERE TABLE_SCHEMA = ? AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED')
                         ORDER BY TABLE_NAME";
        let db = self.database.clone();
        if specs.is_empty() {
            let rows = self.rows(list_sql, vec![Value::from(db.as_str())], "listing source tables")?;
            return Ok(rows
                .iter()
                .map(|r| TableName::new(text_of(r, 0).unwrap_or_default(), text_of(r, 1).unwrap_or_default()))
                .collect());
        }
        let mut chosen: Vec<TableName> = Vec::new();
        for spec in specs {
            let schema = spec.schema.clone().unwrap_or_else(|| db.clone());
            let rows = self.rows(list_sql, vec![Value::from(schema.as_str())], "listing source tables")?;
            let names: Vec<String> = rows.iter().filter_map(|r| text_of(r, 1)).collect();
            let found = names
                .iter()
                .find(|n| **n == spec.name)
                .or_else(|| {
                    let folded: Vec<&String> = names.iter().filter(|n| n.eq_ignore_ascii_case(&spec.name)).collect();
                    (folded.len() == 1 && !spec.quoted).then(|| folded[0])
                })
                .cloned();
            let Some(name) = found else {
                let here: Vec<TableName> = names.iter().map(|n| TableName::new(&schema, n)).collect();
                return Err(Error::input(format!(
                    "table {} not found in the source (only base tables are copied){}",
                    TableName::new(&schema, &spec.name),
                    crate::schema::did_you_mean(&spec.name, &here)
                )));
            };
            let table = TableName::new(schema, name);
            if chosen.contains(&table) {
                return Err(Error::input(format!("table {table} is listed more than once")));
            }
            chosen.push(table);
        }
        Ok(chosen)
    }

    fn rule_for(&self, table: &TableName, col: &SourceColumn) -> Option<(usize, &CastRule)> {
        let matches_col = |c: &ColumnRef| {
            c.schema.as_deref().unwrap_or(&self.database) == table.schema
                && c.table == table.name
                && c.column == col.name
        };
        let rules = &self.options.casts;
        // Column rules win over type rules; the last matching rule of a kind wins.
        let by_column = rules
            .iter()
            .enumerate()
            .rev()
            .find(|(_, r)| matches!(&r.selector, CastSelector::Column(c) if matches_col(c)));
        by_column.or_else(|| {
            let forms = col.type_forms();
            rules
                .iter()
                .enumerate()
                .rev()
                .find(|(_, r)| matches!(&r.selector, CastSelector::Type(t) if forms.contains(t)))
        })
    }

    fn describe(
        &mut self,
        name: &TableName,
        used_rules: &mut HashSet<usize>,
        used_excludes: &mut HashSet<usize>,
        unsupported: &mut Vec<String>,
    ) -> Result<Option<Table>> {
        let what = format!("introspecting {name}");
        let params = || vec![Value::from(name.schema.as_str()), Value::from(name.name.as_str())];
        let rows = self.rows(
            "SELECT COLUMN_NAME, LOWER(COLUMN_TYPE), LOWER(DATA_TYPE), IS_NULLABLE, COLUMN_DEFAULT, LOWER(EXTRA),
                    CHARACTER_SET_NAME, COLLATION_NAME, COLUMN_COMMENT
               FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?
              ORDER BY ORDINAL_POSITION",
            params(),
            &what,
        )?;
        let json_checked: HashSet<String> = if self.flavor == Flavor::MariaDb {
            self.rows(
                "SELECT CONSTRAINT_NAME, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS
                  WHERE CONSTRAINT_SCHEMA = ? AND TABLE_NAME = ?",
                params(),
                &what,
            )?
            .iter()
            .filter_map(|r| {
                let clause = text_of(r, 1)?;
                let inner = clause.strip_prefix("json_valid(`")?.strip_suffix("`)")?;
                Some(inner.replace("``", "`"))
            })
            .collect()
        } else {
            HashSet::new()
        };
        let mut source_cols = Vec::with_capacity(rows.len());
        for r in &rows {
            let col_name = text_of(r, 0).unwrap_or_default();
            let mut column_type = text_of(r, 1).unwrap_or_default();
            if json_checked.contains(&col_name) && text_of(r, 2).as_deref() == Some("longtext") {
                column_type = "json".into();
            }
            let info = TypeInfo::parse(&column_type);
            source_cols.push(SourceColumn {
                name: col_name,
                info,
                column_type,
                nullable: text_of(r, 3).as_deref() == Some("YES"),
                default: text_of(r, 4),
                extra: text_of(r, 5).unwrap_or_default(),
                charset: text_of(r, 6),
                collation: text_of(r, 7),
                comment: text_of(r, 8).unwrap_or_default(),
            });
        }

        let target_schema = self.options.target_schema.clone().unwrap_or_else(|| name.schema.clone());
        let target = TableName::new(target_schema, name.name.clone());
        let mut prerequisites = vec![format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(&target.schema))];
        let mut columns: Vec<Column> = Vec::new();
        let mut col_sql: Vec<String> = Vec::new();
        let mut after_create: Vec<String> = Vec::new();
        let mut sequences = Vec::new();
        let mut excluded: HashSet<String> = HashSet::new();
        for sc in &source_cols {
            let ex = self.options.excluded.iter().position(|c| {
                c.schema.as_deref().unwrap_or(&self.database) == name.schema
                    && c.table == name.name
                    && c.column == sc.name
            });
            if let Some(i) = ex {
                used_excludes.insert(i);
                excluded.insert(sc.name.clone());
                continue;
            }
            let rule = self.rule_for(name, sc).map(|(i, r)| (i, r.clone()));
            let (type_sql, logical, cast) = match &rule {
                Some((i, r)) => {
                    used_rules.insert(*i);
                    if let Some(why) = cast_refusal(r.to, &sc.info) {
                        return Err(Error::input(format!(
                            "--cast {}: cannot map column {}.{} ({}): {why}",
                            r.text,
                            name,
                            quote_ident(&sc.name),
                            sc.column_type
                        )));
                    }
                    let row = cast_row(r.to);
                    (row.pg.to_string(), row.logical.clone(), true)
                }
                None => match type_row(&sc.info) {
                    Some(row) if row.conv == Conv::Enum => {
                        let type_name = TableName::new(&target.schema, pg_name(&[&target.name, &sc.name]));
                        let labels: Vec<String> = sc.info.labels().iter().map(|l| quote_literal(l)).collect();
                        prerequisites.push(format!("DROP TYPE IF EXISTS {}", type_name.quoted()));
                        prerequisites.push(format!(
                            "CREATE TYPE {} AS ENUM ({})",
                            type_name.quoted(),
                            labels.join(", ")
                        ));
                        (type_name.quoted(), row.logical.clone(), false)
                    }
                    Some(row) => ((row.pg)(&sc.info), row.logical.clone(), false),
                    None => {
                        unsupported.push(format!("{name}.{} is {}", quote_ident(&sc.name), sc.column_type));
                        continue;
                    }
                },
            };
            let not_null = !sc.nullable;
            let identity = sc.auto_increment() && matches!(type_sql.as_str(), "smallint" | "integer" | "bigint");
            let default_sql = if identity || sc.extra.contains("generated") {
                None
            } else {
                render_default(sc, &logical, &type_sql, self.flavor, cast)
            };
            let mut sql = format!("{} {}", quote_ident(&sc.name), type_sql);
            if identity {
                sql.push_str(" GENERATED BY DEFAULT AS IDENTITY");
                sequences.push(SequenceSync {
                    source_sql: serde_json::json!([name.schema, name.name, sc.name]).to_string(),
                    target_sql: format!(
                        "pg_get_serial_sequence({}, {})",
                        quote_literal(&target.quoted()),
                        quote_literal(&sc.name)
                    ),
                });
            }
            if not_null {
                sql.push_str(" NOT NULL");
            }
            if let Some(d) = &default_sql {
                sql.push_str(" DEFAULT ");
                sql.push_str(d);
            }
            col_sql.push(sql);
            if !sc.comment.is_empty() {
                after_create.push(format!(
                    "COMMENT ON COLUMN {}.{} IS {}",
                    target.quoted(),
                    quote_ident(&sc.name),
                    quote_literal(&sc.comment)
                ));
            }
            columns.push(Column {
                name: sc.name.clone(),
                type_sql,
                logical,
                not_null,
                default_sql,
                identity_sql: identity.then(|| "GENERATED BY DEFAULT AS IDENTITY".to_string()),
                generated_sql: None,
                user_elem_oid: None,
                user_elem_type_sql: None,
                source_type: sc.source_type(),
            });
        }
        if columns.is_empty() {
            if !unsupported.is_empty() {
                return Ok(None);
            }
            return Err(Error::input(format!("table {name}: every column is excluded; leave the table out instead")));
        }

        let indexes = self.indexes(name)?;
        let key = choose_key(&indexes, &columns);
        let deferred = index_ddl(&indexes, &target, &columns, &excluded, name);

        let stats = self.rows(
            "SELECT TABLE_ROWS, DATA_LENGTH, TABLE_COMMENT FROM information_schema.TABLES
              WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            params(),
            &what,
        )?;
        let (estimated_rows, estimated_bytes, comment) =
            stats.first().map(|r| (num_of(r, 0), num_of(r, 1), text_of(r, 2).unwrap_or_default())).unwrap_or_default();
        if !comment.is_empty() {
            after_create.insert(0, format!("COMMENT ON TABLE {} IS {}", target.quoted(), quote_literal(&comment)));
        }
        let create_table = format!("CREATE TABLE {} (\n  {}\n)", target.quoted(), col_sql.join(",\n  "));
        Ok(Some(Table {
            name: name.clone(),
            target,
            columns,
            key,
            estimated_rows,
            estimated_bytes,
            ddl: TargetDdl { prerequisites, create_table, after_create, deferred, sequences },
            partitioned: false,
            changes: Vec::new(),
        }))
    }

    fn indexes(&mut self, name: &TableName) -> Result<Vec<SourceIndex>> {
        let rows = self.rows(
            "SELECT INDEX_NAME, NON_UNIQUE, COLUMN_NAME, SUB_PART, UPPER(INDEX_TYPE), COLLATION
               FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?
              ORDER BY INDEX_NAME = 'PRIMARY' DESC, INDEX_NAME, SEQ_IN_INDEX",
            vec![Value::from(name.schema.as_str()), Value::from(name.name.as_str())],
            &format!("reading the indexes of {name}"),
        )?;
        let mut out: Vec<SourceIndex> = Vec::new();
        for r in &rows {
            let index = text_of(r, 0).unwrap_or_default();
            let part =
                (text_of(r, 2), text_of(r, 3).and_then(|s| s.parse().ok()), text_of(r, 5).as_deref() == Some("D"));
            match out.last_mut() {
                Some(last) if last.name == index => last.parts.push(part),
                _ => out.push(SourceIndex {
                    name: index,
                    unique: num_of(r, 1) == 0,
                    kind: text_of(r, 4).unwrap_or_default(),
                    parts: vec![part],
                }),
            }
        }
        Ok(out)
    }
}

/// The primary key, else the unique index with the fewest columns whose columns are all
/// copied, NOT NULL, whole (no prefix) and of a type the key walk can compare exactly.
fn choose_key(indexes: &[SourceIndex], columns: &[Column]) -> Option<Key> {
    let mut best: Option<(usize, Key)> = None;
    for idx in indexes.iter().filter(|i| i.unique) {
        let positions: Option<Vec<usize>> = idx
            .parts
            .iter()
            .map(|(col, prefix, _)| {
                let pos = columns.iter().position(|c| Some(&c.name) == col.as_ref())?;
                let c = &columns[pos];
                (prefix.is_none() && c.not_null && KeyKind::of(&c.source_type).is_some()).then_some(pos)
            })
            .collect();
        let Some(positions) = positions else { continue };
        let names: Vec<String> = positions.iter().map(|&i| quote_ident(&columns[i].name)).collect();
        let primary = idx.name == "PRIMARY";
        let description = if primary {
            format!("primary key ({})", names.join(", "))
        } else {
            format!("unique index {} ({})", quote_ident(&idx.name), names.join(", "))
        };
        let rank = if primary { 0 } else { positions.len() };
        if best.as_ref().is_none_or(|(r, _)| rank < *r) {
            best = Some((rank, Key { columns: positions, description }));
        }
        if primary {
            break;
        }
    }
    best.map(|(_, k)| k)
}

/// Primary key, unique and plain indexes as PostgreSQL DDL, built after the load. Prefix
/// parts become `left(col, n)` (text) or `substring(col from 1 for n)` (bytea), which index
/// exactly what MySQL indexes. FULLTEXT and SPATIAL indexes, and indexes on excluded
/// columns or expressions, are skipped with a warning.
fn index_ddl(
    indexes: &[SourceIndex],
    target: &TableName,
    columns: &[Column],
    excluded: &HashSet<String>,
    source: &TableName,
) -> Vec<String> {
    let mut out = Vec::new();
    for idx in indexes {
        let skip = |why: &str| {
            eprintln!("warning: {source}: index {} is not created on the target: {why}", my_ident(&idx.name))
        };
        if idx.kind == "FULLTEXT" || idx.kind == "SPATIAL" {
            skip(&format!("{} indexes have no PostgreSQL equivalent", idx.kind.to_lowercase()));
            continue;
        }
        let mut parts = Vec::new();
        let mut ok = true;
        for (col, prefix, desc) in &idx.parts {
            let Some(col) = col else {
                skip("it indexes an expression");
                ok = false;
                break;
            };
            if excluded.contains(col) {
                skip(&format!("column {} is excluded", my_ident(col)));
                ok = false;
                break;
            }
            let Some(c) = columns.iter().find(|c| &c.name == col) else {
                skip(&format!("column {} is not copied", my_ident(col)));
                ok = false;
                break;
            };
            let mut part = match (prefix, &c.logical) {
                (Some(n), LogicalType::Bytea) => format!("(substring({} from 1 for {n}))", quote_ident(col)),
                (Some(n), LogicalType::Text) => format!("(left({}, {n}))", quote_ident(col)),
                _ => quote_ident(col),
            };
            if *desc {
                part.push_str(" DESC");
            }
            parts.push((part, prefix.is_some()));
        }
        if !ok {
            continue;
        }
        let list: Vec<&str> = parts.iter().map(|(p, _)| p.as_str()).collect();
        if idx.name == "PRIMARY" && parts.iter().all(|(_, prefixed)| !prefixed) {
            out.push(format!("ALTER TABLE {} ADD PRIMARY KEY ({})", target.quoted(), list.join(", ")));
        } else {
            let index_name = if idx.name == "PRIMARY" {
                pg_name(&[&target.name, "pkey"])
            } else {
                pg_name(&[&target.name, &idx.name])
            };
            out.push(format!(
                "CREATE {}INDEX {} ON {} ({})",
                if idx.unique { "UNIQUE " } else { "" },
                quote_ident(&index_name),
                target.quoted(),
                list.join(", ")
            ));
        }
    }
    out
}

/// A column default as PostgreSQL DDL, when PostgreSQL can express it with the same value;
/// None otherwise (the column then has no default: values are never changed, only defaults
/// that cannot be expressed are left out).
fn render_default(
    sc: &SourceColumn,
    logical: &LogicalType,
    type_sql: &str,
    flavor: Flavor,
    cast: bool,
) -> Option<String> {
    let raw = sc.default.as_deref()?;
    // What the default is: a literal value, or an expression.
    let (literal, expression): (Option<String>, Option<String>) = match flavor {
        Flavor::MariaDb => {
            if raw.eq_ignore_ascii_case("NULL") {
                return None;
            } else if raw.starts_with('\'') {
                (Some(unquote_sql_string(raw)?), None)
            } else if is_number(raw) {
                (Some(raw.to_string()), None)
            } else {
                (None, Some(raw.to_ascii_lowercase()))
            }
        }
        Flavor::MySql => {
            // 5.7 flags no expression, but CURRENT_TIMESTAMP is the only one it allows.
            if sc.extra.contains("default_generated") || raw.to_ascii_lowercase().starts_with("current_timestamp") {
                (None, Some(raw.to_ascii_lowercase()))
            } else {
                (Some(raw.to_string()), None)
            }
        }
    };
    if let Some(expr) = expression {
        let is_now = expr.starts_with("current_timestamp") || expr.starts_with("now(") || expr == "localtimestamp";
        return match logical {
            LogicalType::TimestampTz if is_now => Some("CURRENT_TIMESTAMP".into()),
            // DATETIME defaults to the session's wall clock.
            LogicalType::Timestamp if is_now => Some("LOCALTIMESTAMP".into()),
            LogicalType::Raw(PG_BIT_OID) => {
                let bits = expr.strip_prefix("b'")?.strip_suffix('\'')?;
                let width = TypeInfo::parse(&sc.column_type).arg(0)? as usize;
                (bits.chars().all(|c| c == '0' || c == '1') && bits.len() <= width)
                    .then(|| format!("B'{bits:0>width$}'"))
            }
            _ => None,
        };
    }
    let value = literal?;
    let fam = sc.info.family.as_str();
    match logical {
        LogicalType::Int2
        | LogicalType::Int4
        | LogicalType::Int8
        | LogicalType::Numeric
        | LogicalType::Float4
        | LogicalType::Float8 => is_number(&value).then(|| quote_literal(&value)),
        LogicalType::Bool => match value.as_str() {
            "0" => Some("false".into()),
            "1" => Some("true".into()),
            _ => None,
        },
        LogicalType::Text | LogicalType::Enum if !cast || STRINGS.contains(&fam) => {
            (!value.contains('\0')).then(|| quote_literal(&value))
        }
        LogicalType::Date | LogicalType::Timestamp if !is_zero_date_text(&value) => Some(quote_literal(&value)),
        LogicalType::TimestampTz if !is_zero_date_text(&value) => Some(quote_literal(&format!("{value}+00"))),
        LogicalType::Interval if !cast => Some(format!("{}::interval", quote_literal(&value))),
        LogicalType::Jsonb if serde_json::from_str::<serde_json::Value>(&value).is_ok() => {
            Some(format!("{}::jsonb", quote_literal(&value)))
        }
        LogicalType::Raw(PG_BIT_OID) => {
            let bits = value.strip_prefix("b'")?.strip_suffix('\'')?;
            let width = TypeInfo::parse(type_sql).arg(0)? as usize;
            (bits.chars().all(|c| c == '0' || c == '1') && bits.len() <= width).then(|| format!("B'{bits:0>width$}'"))
        }
        _ => None,
    }
}

fn is_number(s: &str) -> bool {
    let t = s.strip_prefix('-').unwrap_or(s);
    !t.is_empty()
        && t.chars().all(|c| c.is_ascii_digit() || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-')
        && t.chars().next().is_some_and(|c| c.is_ascii_digit() || c == '.')
        && s.parse::<f64>().is_ok()
}

/// `0000-00-00`, `2024-00-10`, `2024-01-00 …`: month or day zero.
fn is_zero_date_text(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 10 && (&b[5..7] == b"00" || &b[8..10] == b"00")
}

// ---------------------------------------------------------------------------------------------
// Key walking
// ---------------------------------------------------------------------------------------------

/// The key columns of a table with how to compare them.
fn key_kinds(table: &Table) -> std::result::Result<Vec<(String, KeyKind)>, String> {
    table
        .key_columns()
        .iter()
        .map(|c| {
            KeyKind::of(&c.source_type)
                .map(|k| (my_ident(&c.name), k))
                .ok_or_else(|| format!("key column {} ({}) cannot be compared", quote_ident(&c.name), c.source_type))
        })
        .collect()
}

/// `k1 >= ? AND (k1 > ? OR (k1 = ? AND (k2 > ? OR (k2 = ? AND k3 >= ?))))` for the bound
/// `values` (`op` is `>=` or `<`), with its parameters in order. Expanded rather than a row
/// comparison so that MySQL and MariaDB both use the key's index for the range; the leading
/// `k1 >= ?` (or `<=`) gives the optimizer its range on the first column.
fn key_condition(
    key: &[(String, KeyKind)],
    op: &str,
    values: &[String],
) -> std::result::Result<(String, Vec<Value>), String> {
    if key.len() != values.len() {
        return Err(format!("bound has {} values, the key {} columns", values.len(), key.len()));
    }
    let strict = if op == "<" { "<" } else { ">" };
    let mut params = Vec::new();
    let (c0, k0) = &key[0];
    let mut sql = if key.len() > 1 {
        params.push(k0.param(&values[0])?);
        format!("{c0} {} {} AND ", if op == "<" { "<=" } else { ">=" }, k0.param_sql())
    } else {
        String::new()
    };
    fn nest(
        key: &[(String, KeyKind)],
        values: &[String],
        i: usize,
        op: &str,
        strict: &str,
        params: &mut Vec<Value>,
    ) -> std::result::Result<String, String> {
        let (col, kind) = &key[i];
        let p = kind.param_sql();
        if i + 1 == key.len() {
            params.push(kind.param(&values[i])?);
            return Ok(format!("{col} {op} {p}"));
        }
        params.push(kind.param(&values[i])?);
        params.push(kind.param(&values[i])?);
        let inner = nest(key, values, i + 1, op, strict, params)?;
        Ok(format!("({col} {strict} {p} OR ({col} = {p} AND {inner}))"))
    }
    sql.push_str(&nest(key, values, 0, op, strict, &mut params)?);
    Ok((sql, params))
}

/// `WHERE lo AND hi` of a chunk (empty when the chunk is unbounded), with its parameters.
fn chunk_where(table: &Table, lo: &Bound, hi: &Bound) -> std::result::Result<(String, Vec<Value>), String> {
    let key = key_kinds(table)?;
    let mut conds = Vec::new();
    let mut params = Vec::new();
    for (bound, op) in [(lo, ">="), (hi, "<")] {
        if let Some(values) = bound {
            let (sql, p) = key_condition(&key, op, values)?;
            conds.push(format!("({sql})"));
            params.extend(p);
        }
    }
    let sql = if conds.is_empty() { String::new() } else { format!(" WHERE {}", conds.join(" AND ")) };
    Ok((sql, params))
}

fn order_by(table: &Table) -> String {
    let key: Vec<String> = table.key_columns().iter().map(|c| my_ident(&c.name)).collect();
    if key.is_empty() {
        String::new()
    } else {
        format!(" ORDER BY {}", key.join(", "))
    }
}

impl MySource {
    /// The key tuple `rows` rows past `from` (inclusive) in the source's own key order, as
    /// text that round-trips as a query parameter: the next chunk boundary; None at the end.
    pub fn next_boundary(&mut self, table: &Table, from: &Bound, rows: u64) -> Result<Bound> {
        self.next_boundary_before(table, from, &None, rows)
    }

    /// Like [`next_boundary`](Self::next_boundary), among the keys below `until` only.
    pub fn next_boundary_before(&mut self, table: &Table, from: &Bound, until: &Bound, rows: u64) -> Result<Bound> {
        let what = format!("walking the key of {}", table.name);
        let kinds = key_kinds(table).map_err(|e| Error::input(format!("{}: {e}", table.name)))?;
        let select: Vec<&str> = kinds.iter().map(|(c, _)| c.as_str()).collect();
        let (cond, params) = chunk_where(table, from, until).map_err(|e| Error::input(format!("{what}: {e}")))?;
        let sql = format!(
            "SELECT {} FROM {}{cond}{} LIMIT 1 OFFSET {rows}",
            select.join(", "),
            my_table(&table.name),
            order_by(table)
        );
        let found = self.walk(sql, params, &what)?;
        Ok(found.first().map(|r| {
            kinds.iter().enumerate().map(|(i, (_, k))| k.bound_text(r.as_ref(i).unwrap_or(&Value::NULL))).collect()
        }))
    }

    /// The objects around `tables` (foreign keys, CHECK constraints, triggers, views, routines):
    /// what the target gets, and what is listed as not carried over.
    pub fn objects(
        &mut self,
        _tables: &[Table],
        _cfg: &crate::config::CopyConfig,
    ) -> Result<Vec<crate::objects::DbObject>> {
        Ok(Vec::new())
    }

    /// The table's columns as the source has them now, in order (none when it is gone).
    pub fn column_names(&mut self, name: &TableName) -> Result<Vec<String>> {
        let rows = self.rows(
            "SELECT CAST(COLUMN_NAME AS CHAR) FROM information_schema.COLUMNS
              WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
            vec![Value::from(name.schema.as_str()), Value::from(name.name.as_str())],
            &format!("reading the columns of {name}"),
        )?;
        Ok(rows.iter().filter_map(|r| text_of(r, 0)).collect())
    }

    /// Reads an AUTO_INCREMENT position: the next value the target's identity must hand out
    /// (past both the table's AUTO_INCREMENT and the copied maximum), not yet called.
    pub fn sequence_position(&mut self, source_sql: &str) -> Result<(i64, bool)> {
        let parts: Vec<String> = serde_json::from_str(source_sql)
            .ok()
            .filter(|p: &Vec<String>| p.len() == 3)
            .ok_or_else(|| Error::input(format!("unrecognized MySQL sequence reference {source_sql:?}")))?;
        let (db, table, col) = (&parts[0], &parts[1], &parts[2]);
        let sql = format!(
            "SELECT CAST(GREATEST(COALESCE(MAX({c}), 0) + 1,
                    COALESCE((SELECT AUTO_INCREMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?), 1))
                    AS CHAR) FROM {t}",
            c = my_ident(col),
            t = my_table(&TableName::new(db, table))
        );
        let what = format!("reading the AUTO_INCREMENT position of {db}.{table}");
        let rows = self.rows(&sql, vec![Value::from(db.as_str()), Value::from(table.as_str())], &what)?;
        let next = rows.first().and_then(|r| text_of(r, 0)).unwrap_or_else(|| "1".into());
        let next: i64 = next
            .parse()
            .map_err(|_| Error::input(format!("{what}: {next} does not fit the target's bigint identity")))?;
        Ok((next.max(1), false))
    }
}

// ---------------------------------------------------------------------------------------------
// Extraction
// ---------------------------------------------------------------------------------------------

/// What is wrong with one value.
enum Problem {
    /// A zero date: NULL under `--zero-dates null`, an error otherwise.
    ZeroDate(String),
    Invalid(String),
}

type ConvFn = fn(&Value, &ColPlan, &mut CopyEncoder, &mut RowEncoder) -> std::result::Result<(), Problem>;

/// A copied column's converter, chosen once per chunk.
struct ColPlan {
    name: String,
    conv: ConvFn,
    /// BIT(n): n. Others: unused.
    width: u32,
    /// ENUM: whether '' is one of the declared labels.
    empty_label: bool,
}

fn conv_fn(conv: Conv) -> ConvFn {
    match conv {
        Conv::Int2 => conv_int2,
        Conv::Int4 => conv_int4,
        Conv::Int8 => conv_int8,
        Conv::U64Numeric => conv_u64_numeric,
        Conv::Decimal => conv_decimal,
        Conv::Float4 => conv_float4,
        Conv::Float8 => conv_float8,
        Conv::Bool => conv_bool,
        Conv::Text => conv_text,
        Conv::TextUtf8 => conv_text_utf8,
        Conv::Enum => conv_enum,
        Conv::Bytes => conv_bytes,
        Conv::Date => conv_date,
        Conv::DateTime => conv_datetime,
        Conv::Time => conv_time,
        Conv::Bit => conv_bit,
        Conv::Json => conv_json,
        Conv::UuidText => conv_uuid_text,
        Conv::UuidBytes => conv_uuid_bytes,
    }
}

#[cold]
fn unexpected(v: &Value) -> Problem {
    Problem::Invalid(format!("unexpected value {v:?} from the server"))
}

#[inline]
fn int_of(v: &Value) -> std::result::Result<i128, Problem> {
    match v {
        Value::Int(n) => Ok(i128::from(*n)),
        Value::UInt(n) => Ok(i128::from(*n)),
        Value::Bytes(b) => std::str::from_utf8(b).ok().and_then(|s| s.parse().ok()).ok_or_else(|| unexpected(v)),
        _ => Err(unexpected(v)),
    }
}

#[cold]
fn out_of_range(n: i128, pg: &str) -> Problem {
    Problem::Invalid(format!("{n} does not fit PostgreSQL {pg}"))
}

fn conv_int2(v: &Value, _: &ColPlan, c: &mut CopyEncoder, h: &mut RowEncoder) -> std::result::Result<(), Problem> {
    let n = int_of(v)?;
    let x = i16::try_from(n).map_err(|_| out_of_range(n, "smallint"))?;
    c.i16(x);
    h.int(n);
    Ok(())
}

fn conv_int4(v: &Value, _: &ColPlan, c: &mut CopyEncoder, h: &mut RowEncoder) -> std::result::Result<(), Problem> {
    let n = int_of(v)?;
    let x = i32::try_from(n).map_err(|_| out_of_range(n, "integer"))?;
    c.i32(x);
    h.int(n);
    Ok(())
}

fn conv_int8(v: &Value, _: &ColPlan, c: &mut CopyEncoder, h: &mut RowEncoder) -> std::result::Result<(), Problem> {
    let n = int_of(v)?;
    let x = i64::try_from(n).map_err(|_| out_of_range(n, "bigint"))?;
    c.i64(x);
    h.int(n);
    Ok(())
}

fn conv_u64_numeric(
    v: &Value,
    _: &ColPlan,
    c: &mut CopyEncoder,
    h: &mut RowEncoder,
) -> std::result::Result<(), Problem> {
    let n = int_of(v)?;
    // Rendered on the stack: no allocation per value.
    let mut buf = [0u8; 40];
    let text = render_int(n, &mut buf);
    c.numeric_from_decimal_str(text).map_err(|e| Problem::Invalid(e.to_string()))?;
    h.decimal(text).map_err(|e| Problem::Invalid(e.to_string()))?;
    Ok(())
}

fn render_int(n: i128, buf: &mut [u8; 40]) -> &str {
    let mut i = buf.len();
    let neg = n < 0;
    let mut m = n.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (m % 10) as u8;
        m /= 10;
        if m == 0 {
            break;
        }
    }
    if neg {
        i -= 1;
        buf[i] = b'-';
    }
    std::str::from_utf8(&buf[i..]).expect("ASCII digits")
}

fn conv_decimal(v: &Value, _: &ColPlan, c: &mut CopyEncoder, h: &mut RowEncoder) -> std::result::Result<(), Problem> {
    let Value::Bytes(b) = v else { return Err(unexpected(v)) };
    let text = std::str::from_utf8(b).map_err(|_| unexpected(v))?;
    c.numeric_from_decimal_str(text).map_err(|e| Problem::Invalid(e.to_string()))?;
    h.decimal(text).map_err(|e| Problem::Invalid(e.to_string()))?;
    Ok(())
}

fn conv_float4(v: &Value, _: &ColPlan, c: &mut CopyEncoder, h: &mut RowEncoder) -> std::result::Result<(), Problem> {
    let x = match v {
        Value::Float(x) => *x,
        Value::Double(d) if f64::from(*d as f32) == *d => *d as f32,
        _ => return Err(unexpected(v)),
    };
    c.f32(x);
    h.float(f64::from(x));
    Ok(())
}

fn conv_float8(v: &Value, _: &ColPlan, c: &mut CopyEncoder, h: &mut RowEncoder) -> std::result::Result<(), Problem> {
    let x = match v {
        Value::Double(x) => *x,
        Value::Float(x) => f64::from(*x),
        _ => return Err(unexpected(v)),
    };
    c.f64(x);
    h.float(x);
    Ok(())
}

fn conv_bool(v: &Value, _: &ColPlan, c: &mut CopyEncoder, h: &mut RowEncoder) -> std::result::Result<(), Problem> {
    let n = match v {
        // BIT(n) arrives as big-endian bytes.
        Value::Bytes(b) if !b.is_empty() && b.len() <= 8 => b.iter().fold(0i128, |acc, &x| acc << 8 | i128::from(x)),
        _ => int_of(v)?,
    };
    let x = match n {
        0 => false,
        1 => true,
        _ => return Err(Problem::Invalid(format!("{n} is neither 0 nor 1, so it is not a boolean"))),
    };
    c.bool(x);
    h.bool(x);
    Ok(())
}

#[cold]
fn nul_in_text() -> Problem {
    Problem::Invalid(
        "text contains a NUL byte, which PostgreSQL text cannot hold (map the column to bytea with --cast)".into(),
    )
}

fn conv_text(v: &Value, _: &ColPlan, c: &mut CopyEncoder, h: &mut RowEncoder) -> std::result::Result<(), Problem> {
    let Value::Bytes(b) = v else { return Err(unexpected(v)) };
    if b.contains(&0) {
        return Err(nul_in_text());
    }
    c.field(b);
    h.text(b);
    Ok(())
}

fn conv_text_utf8(v: &Value, p: &ColPlan, c: &mut CopyEncoder, h: &mut RowEncoder) -> std::result::Result<(), Problem> {
    let Value::Bytes(b) = v else { return Err(unexpected(v)) };
    if std::str::from_utf8(b).is_err() {
        return Err(Problem::Invalid(
            "bytes are not valid UTF-8, so they cannot be text (map the column to bytea)".into(),
        ));
    }
    conv_text(v, p, c, h)
}

fn conv_enum(v: &Value, p: &ColPlan, c: &mut CopyEncoder, h: &mut RowEncoder) -> std::result::Result<(), Problem> {
    if let Value::Bytes(b) = v {
        if b.is_empty() && !p.empty_label {
            return Err(Problem::Invalid(
                "the empty ENUM value (MySQL's index 0, stored for invalid values outside strict mode) is not a \
                 declared label; map the column to text with --cast"
                    .into(),
            ));
        }
    }
    conv_text(v, p, c, h)
}

fn conv_bytes(v: &Value, _: &ColPlan, c: &mut CopyEncoder, h: &mut RowEncoder) -> std::result::Result<(), Problem> {
    let Value::Bytes(b) = v else { return Err(unexpected(v)) };
    c.field(b);
    h.bytes(b);
    Ok(())
}

/// Days since 1970-01-01 of a proleptic Gregorian date (year 0 is 1 BC, as in both engines).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// Days since 1970 of a MySQL date; zero dates (month or day 0) and impossible dates
/// (`2023-02-30`, stored under ALLOW_INVALID_DATES) are problems.
#[inline]
fn checked_days(y: u16, m: u8, d: u8, v: &Value) -> std::result::Result<i64, Problem> {
    if m == 0 || d == 0 {
        return Err(Problem::ZeroDate(value_text(v)));
    }
    let y = i64::from(y);
    if m > 12 || u32::from(d) > days_in_month(y, u32::from(m)) {
        return Err(Problem::Invalid(format!("{} is not a valid date", value_text(v))));
    }
    Ok(days_from_civil(y, u32::from(m), u32::from(d)))
}

fn conv_date(v: &Value, _: &ColPlan, c: &mut CopyEncoder, h: &mut RowEncoder) -> std::result::Result<(), Problem> {
    let Value::Date(y, m, d, ..) = *v else { return Err(unexpected(v)) };
    let days = checked_days(y, m, d, v)? as i32;
    c.date_from_days_since_1970(days).map_err(|e| Problem::Invalid(e.to_string()))?;
    h.date_days(days);
    Ok(())
}

fn conv_datetime(v: &Value, _: &ColPlan, c: &mut CopyEncoder, h: &mut RowEncoder) -> std::result::Result<(), Problem> {
    let Value::Date(y, m, d, hh, mi, ss, us) = *v else { return Err(unexpected(v)) };
    let days = checked_days(y, m, d, v)?;
    let secs = days * 86_400 + i64::from(hh) * 3600 + i64::from(mi) * 60 + i64::from(ss);
    let unix_us = secs * 1_000_000 + i64::from(us);
    c.timestamp_from_unix_us(unix_us).map_err(|e| Problem::Invalid(e.to_string()))?;
    h.timestamp_us(unix_us);
    Ok(())
}

fn conv_time(v: &Value, _: &ColPlan, c: &mut CopyEncoder, h: &mut RowEncoder) -> std::result::Result<(), Problem> {
    let Value::Time(neg, days, hh, mi, ss, us) = *v else { return Err(unexpected(v)) };
    let secs = i64::from(days) * 86_400 + i64::from(hh) * 3600 + i64::from(mi) * 60 + i64::from(ss);
    let mut total = secs * 1_000_000 + i64::from(us);
    if neg {
        total = -total;
    }
    // Exactly what PostgreSQL's binary interval of this value reads back as: no days, no months.
    c.interval(0, 0, total);
    h.interval(0, 0, total);
    Ok(())
}

fn conv_bit(v: &Value, p: &ColPlan, c: &mut CopyEncoder, h: &mut RowEncoder) -> std::result::Result<(), Problem> {
    let Value::Bytes(b) = v else { return Err(unexpected(v)) };
    let n = p.width.clamp(1, 64);
    if b.len() > 8 {
        return Err(unexpected(v));
    }
    let value = b.iter().fold(0u64, |acc, &x| acc << 8 | u64::from(x));
    if n < 64 && value >> n != 0 {
        return Err(Problem::Invalid(format!("{value:#x} has more than {n} bits")));
    }
    // bit_send: int32 bit length, then the bits left-aligned in ceil(n / 8) bytes.
    let nbytes = n.div_ceil(8) as usize;
    let aligned = value << (64 - n);
    let mut field = [0u8; 12];
    field[..4].copy_from_slice(&(n as i32).to_be_bytes());
    field[4..12].copy_from_slice(&aligned.to_be_bytes());
    let field = &field[..4 + nbytes];
    c.field(field);
    h.raw(PG_BIT_OID, field);
    Ok(())
}

fn conv_json(v: &Value, _: &ColPlan, c: &mut CopyEncoder, h: &mut RowEncoder) -> std::result::Result<(), Problem> {
    let Value::Bytes(b) = v else { return Err(unexpected(v)) };
    let text = std::str::from_utf8(b).map_err(|_| Problem::Invalid("JSON is not valid UTF-8".into()))?;
    if text.contains("\\u0000") {
        return Err(Problem::Invalid("JSON holds \\u0000, which PostgreSQL jsonb cannot (map to text)".into()));
    }
    h.json(text).map_err(|e| Problem::Invalid(e.to_string()))?;
    c.jsonb(text);
    Ok(())
}

fn conv_uuid_text(v: &Value, _: &ColPlan, c: &mut CopyEncoder, h: &mut RowEncoder) -> std::result::Result<(), Problem> {
    let Value::Bytes(b) = v else { return Err(unexpected(v)) };
    let uuid =
        parse_uuid(b).ok_or_else(|| Problem::Invalid(format!("{:?} is not a UUID", String::from_utf8_lossy(b))))?;
    c.uuid(&uuid);
    h.uuid(&uuid);
    Ok(())
}

fn conv_uuid_bytes(
    v: &Value,
    _: &ColPlan,
    c: &mut CopyEncoder,
    h: &mut RowEncoder,
) -> std::result::Result<(), Problem> {
    let Value::Bytes(b) = v else { return Err(unexpected(v)) };
    let uuid: [u8; 16] = b.as_slice().try_into().map_err(|_| Problem::Invalid(format!("{} bytes, not 16", b.len())))?;
    c.uuid(&uuid);
    h.uuid(&uuid);
    Ok(())
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (hyphens optional, either case) → 16 bytes.
fn parse_uuid(text: &[u8]) -> Option<[u8; 16]> {
    let mut out = [0u8; 16];
    let mut n = 0;
    let mut high: Option<u8> = None;
    for &ch in text {
        if ch == b'-' {
            continue;
        }
        let d = (ch as char).to_digit(16)? as u8;
        match high.take() {
            None => high = Some(d),
            Some(hi) => {
                *out.get_mut(n)? = hi << 4 | d;
                n += 1;
            }
        }
    }
    (n == 16 && high.is_none()).then_some(out)
}

impl MySource {
    /// Streams one chunk's rows (`SELECT … WHERE key in [lo, hi) ORDER BY key`, binary
    /// protocol, rows consumed as they arrive) into binary COPY blocks of at least
    /// `block_bytes`, hashing each row. Returns the chunk's rows, COPY bytes and digest.
    pub fn extract_chunk(
        &mut self,
        table: &Table,
        chunk: &Chunk,
        block_bytes: usize,
        on_block: impl FnMut(Block) -> Result<bool>,
    ) -> Result<ChunkSummary> {
        self.stream_chunk(table, chunk, block_bytes, on_block, None)
    }

    /// Reads one chunk for verification: its summary and, with `on_row`, every row's values
    /// (long ones as stand-ins) and hash, as they are read (no COPY data is kept).
    /// `pace(rows, bytes)` is called for every block read, to hold the read to a rate.
    pub fn scan_range(
        &mut self,
        table: &Table,
        chunk: &Chunk,
        on_row: Option<RowSink<'_>>,
        pace: &mut dyn FnMut(u64, u64) -> Result<()>,
    ) -> Result<ChunkSummary> {
        let on_block = |block: Block| pace(block.rows, block.bytes.len() as u64).map(|()| true);
        self.stream_chunk(table, chunk, 1 << 20, on_block, on_row)
    }

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
    pub fn query_number(&mut self, sql: &str) -> Result<f64> {
        let row: Option<Row> = self.short("running --throttle-query", |conn| conn.query_first(sql))?;
        let Some(row) = row else { return Ok(0.0) };
        let value = row.len().checked_sub(1).and_then(|i| row.as_ref(i)).cloned().unwrap_or(Value::NULL);
        value_number(&value)
            .ok_or_else(|| Error::input(format!("--throttle-query returned {value:?}, which is not a number")))
    }

    /// One chunk's rows, encoded for COPY (blocks to `on_block` with their row counts) and
    /// hashed; with `capture`, every row's canonical bytes and hash are kept as well.
    ///
    /// A table with wide columns (see [`SetAside`]) has its huge rows set aside by the streaming
    /// query and read whole afterwards, one by one, in the same snapshot: the chunk runs in a
    /// consistent-snapshot transaction of its own unless the connection is already in one
    /// (`--consistent`).
    fn stream_chunk(
        &mut self,
        table: &Table,
        chunk: &Chunk,
        block_bytes: usize,
        mut on_block: impl FnMut(Block) -> Result<bool>,
        capture: Option<RowSink<'_>>,
    ) -> Result<ChunkSummary> {
        let what = format!("reading {}", table.name);
        let columns: Vec<&Column> = table.copied_columns().collect();
        let mut plans = Vec::with_capacity(columns.len());
        let mut select = Vec::with_capacity(columns.len());
        for col in &columns {
            let (conv, expr) = column_conv(col).map_err(|e| Error::input(format!("{}: {e}", table.name)))?;
            let info = TypeInfo::parse(&col.source_type);
            plans.push(ColPlan {
                name: col.name.clone(),
                conv: conv_fn(conv),
                width: info.arg(0).unwrap_or(1),
                empty_label: conv == Conv::Enum && info.labels().iter().any(|l| l.is_empty()),
            });
            select.push(expr);
        }
        // Where the key's values sit in each row, for error messages and set-aside rows.
        let key_pos: Vec<usize> =
            table.key_columns().iter().filter_map(|k| columns.iter().position(|c| c.name == k.name)).collect();
        let (cond, params) =
            chunk_where(table, &chunk.lo, &chunk.hi).map_err(|e| Error::input(format!("{what}: {e}")))?;
        let params = if params.is_empty() { Params::Empty } else { Params::Positional(params) };
        let aside = SetAside::plan(table, &columns, &select, &key_pos);
        let list = aside.as_ref().map_or(&select, |a| &a.streamed);
        let sql = format!("SELECT {} FROM {}{cond}{}", list.join(", "), my_table(&table.name), order_by(table));
        let query = ChunkQuery { table, columns, key_pos, what };
        let mut rows = ChunkRows::new(plans, self.options.zero_dates, block_bytes, capture);

        let Some(aside) = aside else {
            self.read_streamed(&query, &sql, params, &mut rows, &mut on_block, None)?;
            return rows.finish(table, chunk, on_block);
        };
        let own_snapshot = !self.in_snapshot;
        if own_snapshot {
            self.short(&format!("{}: starting a snapshot", query.what), start_snapshot)?;
        }
        let read = self.read_streamed(&query, &sql, params, &mut rows, &mut on_block, Some(&aside)).and_then(|keys| {
            let huge = !keys.is_empty();
            self.read_set_aside(&query, &aside, keys, &mut rows, &mut on_block).map(|()| huge)
        });
        if own_snapshot {
            let ended = self.short("ending a snapshot", |conn| conn.query_drop("COMMIT"));
            if read? {
                // The driver keeps the read buffer that grew to hold the huge rows for as long
                // as the connection lives; a fresh connection gives it back. When none can be
                // had now, this one goes on, buffer and all.
                if let Some(fresh) = ended.as_ref().ok().and_then(|()| MySource::connect(&self.ep).ok()) {
                    *self = fresh;
                }
            }
            ended?;
        } else {
            read?;
        }
        rows.finish(table, chunk, on_block)
    }

    /// Runs a chunk's streaming query and encodes its rows as they arrive. With `aside`, rows
    /// whose wide values exceed [`SET_ASIDE_ABOVE`] are not encoded: their key parameters and
    /// sizes are returned, in key order.
    fn read_streamed(
        &mut self,
        query: &ChunkQuery<'_>,
        sql: &str,
        params: Params,
        rows: &mut ChunkRows<'_>,
        on_block: &mut impl FnMut(Block) -> Result<bool>,
        aside: Option<&SetAside>,
    ) -> Result<Vec<(Vec<Value>, u64)>> {
        let endpoint = self.endpoint.clone();
        // Registered while it waits for rows; handing a block on is not waiting for the server.
        let waiting = Waiting::begin(&endpoint, &query.what, true);
        let mut on_block = |block: Block| {
            waiting.pause();
            let more = on_block(block);
            waiting.resume();
            more
        };
        let mut result = match self.conn.exec_iter(sql, params) {
            Ok(r) => r,
            Err(e) => return Err(failed(&self.ep, self.id, &query.what, e)),
        };
        let mut set_aside = Vec::new();
        let mut read_error = None;
        let mut failure: Option<String> = None;
        let mut seen = 0u32;
        for row in result.by_ref() {
            let row = match row {
                Ok(r) => r,
                Err(e) => {
                    read_error = Some(e);
                    break;
                }
            };
            // Cheaper than a clock read per row; the socket's read timeout is the real bound.
            seen = seen.wrapping_add(1);
            if seen % 256 == 0 {
                waiting.heard();
            }
            if let Some(aside) = aside {
                let size = aside.size(&row, rows.plans.len());
                if size > SET_ASIDE_ABOVE {
                    set_aside.push((aside.key_params(&row)?, size));
                    continue;
                }
            }
            if let Err((i, problem)) = rows.add(&row) {
                failure = Some(query.failure(&row, &rows.plans[i], problem));
                break;
            }
            rows.flush(&mut on_block, None)?;
            if rows.stopped {
                break;
            }
        }
        drop(result);
        drop(waiting);
        if let Some(e) = read_error {
            return Err(failed(&self.ep, self.id, &query.what, e));
        }
        if let Some(detail) = failure {
            return Err(Error::Sql { endpoint, what: query.what.clone(), detail, code: ErrorCode::Other });
        }
        Ok(set_aside)
    }

    /// Reads the rows a chunk's streaming query set aside, whole, one by one by their keys, and
    /// encodes each like any other row. Each is read holding its share of [`SET_ASIDE_GATE`],
    /// which goes with its COPY block and is given back once that block is written (or hashed).
    fn read_set_aside(
        &mut self,
        query: &ChunkQuery<'_>,
        aside: &SetAside,
        keys: Vec<(Vec<Value>, u64)>,
        rows: &mut ChunkRows<'_>,
        on_block: &mut impl FnMut(Block) -> Result<bool>,
    ) -> Result<()> {
        let what = || format!("{}: reading a row set aside as huge", query.what);
        // Not retriable: the row or its value is wrong, not the connection.
        let endpoint = self.endpoint.clone();
        let fail = |detail| Error::Sql { endpoint: endpoint.clone(), what: what(), detail, code: ErrorCode::Other };
        for (params, size) in keys {
            if rows.stopped {
                break;
            }
            let permit = SET_ASIDE_GATE.acquire(size, &NEVER_CANCELLED)?;
            let found = self.short(&what(), |conn| {
                match conn.exec_iter(aside.by_key.as_str(), Params::Positional(params.clone())) {
                    Ok(mut result) => result.next().transpose(),
                    Err(e) => Err(e),
                }
            });
            let Some(row) = found? else {
                let key: Vec<String> = params.iter().map(value_text).collect();
                let detail = format!(
                    "the row with key ({}) is gone, although the chunk reads one snapshot (a table whose \
                     engine keeps no snapshots, such as MyISAM, was written to meanwhile); resume the job \
                     to read the chunk again",
                    key.join(", ")
                );
                return Err(fail(detail));
            };
            if let Err((i, problem)) = rows.add(&row) {
                return Err(fail(query.failure(&row, &rows.plans[i], problem)));
            }
            drop(row);
            rows.flush(on_block, Some(permit))?;
        }
        Ok(())
    }
}

/// A row whose wide values together hold more than this many bytes (as the server stores
/// them) is set aside by its chunk's streaming query and read whole afterwards, so that the
/// driver's buffers stay about this small while rows stream.
pub const SET_ASIDE_ABOVE: u64 = 4 << 20;

/// Bytes of set-aside rows being read, or waiting in COPY blocks to be written, at once in the
/// whole process (copy and verify workers alike). Reading a row costs about twice its size
/// (the driver's packet and the parsed value, then the value and its encoding); a row larger
/// than this budget is read alone.
const SET_ASIDE_BUDGET: u64 = 32 << 20;
static SET_ASIDE_GATE: ByteGate = ByteGate::new(SET_ASIDE_BUDGET);
/// The gate is held only until a block is written or dropped, so waiting for it needs no
/// cancellation of its own.
static NEVER_CANCELLED: AtomicBool = AtomicBool::new(false);

/// Column families whose values may be too large to stream with the rest (MEDIUM* hold up to
/// 16 MiB, LONG* and JSON up to 4 GiB; spatial values are stored like LONGBLOB).
const WIDE: &[&[&str]] = &[&["mediumblob", "longblob", "mediumtext", "longtext", "json"], SPATIAL];

/// How a chunk of a table with wide columns sets its huge rows aside: the streaming query
/// sends their wide values as NULL, and every row's wide bytes, and the huge rows are read
/// again by key.
struct SetAside {
    /// The streaming query's SELECT list: the copied columns (wide ones NULL in huge rows),
    /// then the row's wide bytes.
    streamed: Vec<String>,
    /// `SELECT <copied columns> FROM t WHERE k1 = ? AND …`: one set-aside row, whole.
    by_key: String,
    /// Each key column's place among the copied columns, and how its value is bound.
    key: Vec<(usize, KeyKind)>,
}

impl SetAside {
    /// None for tables without wide columns (their chunks take the plain streaming path) and
    /// for tables without a key (whose rows could not be found again).
    fn plan(table: &Table, columns: &[&Column], select: &[String], key_pos: &[usize]) -> Option<SetAside> {
        let wide: Vec<usize> = (0..columns.len())
            .filter(|&i| in_families(&TypeInfo::parse(&columns[i].source_type).family, WIDE))
            .collect();
        let kinds = key_kinds(table).ok()?;
        if wide.is_empty() || kinds.is_empty() || kinds.len() != key_pos.len() {
            return None;
        }
        let size: Vec<String> = wide.iter().map(|&i| format!("COALESCE(LENGTH({}), 0)", select[i])).collect();
        let size = size.join(" + ");
        let mut streamed = select.to_vec();
        for &i in &wide {
            streamed[i] = format!("IF({size} > {SET_ASIDE_ABOVE}, NULL, {})", select[i]);
        }
        streamed.push(size);
        let cond: Vec<String> = kinds.iter().map(|(c, k)| format!("{c} = {}", k.param_sql())).collect();
        let by_key =
            format!("SELECT {} FROM {} WHERE {}", select.join(", "), my_table(&table.name), cond.join(" AND "));
        let key = key_pos.iter().zip(kinds).map(|(&pos, (_, kind))| (pos, kind)).collect();
        Some(SetAside { streamed, by_key, key })
    }

    /// A streamed row's wide bytes (the column after the `copied` copied ones).
    #[inline]
    fn size(&self, row: &Row, copied: usize) -> u64 {
        match row.as_ref(copied) {
            Some(Value::Int(n)) => u64::try_from(*n).unwrap_or(0),
            Some(Value::UInt(n)) => *n,
            Some(v) => value_number(v).map_or(0, |n| n as u64),
            None => 0,
        }
    }

    /// A streamed row's key as the parameters of `by_key`.
    fn key_params(&self, row: &Row) -> Result<Vec<Value>> {
        self.key
            .iter()
            .map(|(pos, kind)| {
                kind.param(&kind.bound_text(row.as_ref(*pos).unwrap_or(&Value::NULL)))
                    .map_err(|e| Error::Bug(format!("a key value read back does not bind: {e}")))
            })
            .collect()
    }
}

/// What a chunk's read is about, for its messages.
struct ChunkQuery<'a> {
    table: &'a Table,
    columns: Vec<&'a Column>,
    key_pos: Vec<usize>,
    what: String,
}

impl ChunkQuery<'_> {
    #[cold]
    fn failure(&self, row: &Row, plan: &ColPlan, problem: Problem) -> String {
        value_failure(self.table, &self.columns, &self.key_pos, row, plan, problem)
    }
}

/// One chunk's rows on their way out: encoded into COPY blocks and hashed into the digest,
/// zero dates copied as NULL counted.
struct ChunkRows<'a> {
    plans: Vec<ColPlan>,
    zero_policy: ZeroDates,
    /// The encoder owns its block buffer: `take_buffer` hands it over and starts a fresh one
    /// of the same capacity.
    copy: CopyEncoder,
    hasher: RowEncoder,
    digest: DigestBuilder,
    zero_counts: Vec<u64>,
    capture: Option<RowSink<'a>>,
    block_bytes: usize,
    /// COPY bytes handed on so far, and the rows in them.
    bytes: u64,
    rows_sent: u64,
    /// `on_block` asked to stop.
    stopped: bool,
}

impl<'a> ChunkRows<'a> {
    fn new(plans: Vec<ColPlan>, zero_policy: ZeroDates, block_bytes: usize, capture: Option<RowSink<'a>>) -> Self {
        ChunkRows {
            zero_counts: vec![0; plans.len()],
            plans,
            zero_policy,
            copy: CopyEncoder::with_capacity(block_bytes + block_bytes / 4),
            // Captured rows are compared value by value, so their values must be kept.
            hasher: if capture.is_some() { RowEncoder::capturing() } else { RowEncoder::new() },
            digest: DigestBuilder::new(),
            capture,
            block_bytes,
            bytes: 0,
            rows_sent: 0,
            stopped: false,
        }
    }

    /// Encodes and hashes a row's first `plans.len()` values; a value the mapping cannot hold
    /// comes back with its column's index.
    #[inline]
    fn add(&mut self, row: &Row) -> std::result::Result<(), (usize, Problem)> {
        self.copy.begin_row(self.plans.len());
        for (i, plan) in self.plans.iter().enumerate() {
            let v = row.as_ref(i).unwrap_or(&Value::NULL);
            if let Value::NULL = v {
                self.copy.null();
                self.hasher.null();
                continue;
            }
            match (plan.conv)(v, plan, &mut self.copy, &mut self.hasher) {
                Ok(()) => {}
                Err(Problem::ZeroDate(_)) if self.zero_policy == ZeroDates::Null => {
                    self.copy.null();
                    self.hasher.null();
                    self.zero_counts[i] += 1;
                }
                Err(problem) => return Err((i, problem)),
            }
        }
        add_row(&mut self.digest, &mut self.hasher, self.capture.as_deref_mut().map(|sink| sink as _));
        Ok(())
    }

    /// Hands the bytes encoded so far to `on_block` once they fill a block, or at once when
    /// they end with a set-aside row (whose `permit` then goes with the block).
    #[inline]
    fn flush(
        &mut self,
        on_block: &mut impl FnMut(Block) -> Result<bool>,
        permit: Option<Permit<'static>>,
    ) -> Result<()> {
        if permit.is_none() && self.copy.buffered().len() < self.block_bytes {
            return Ok(());
        }
        let bytes = self.copy.take_buffer();
        self.bytes += bytes.len() as u64;
        let rows = self.copy.rows() - self.rows_sent;
        self.rows_sent = self.copy.rows();
        if !on_block(Block { bytes: Bytes::from(bytes), rows, hold: permit })? {
            self.stopped = true;
        }
        Ok(())
    }

    /// Reports the zero dates copied as NULL, hands on the last block (unless stopped) and
    /// returns the chunk's summary.
    fn finish(
        self,
        table: &Table,
        chunk: &Chunk,
        mut on_block: impl FnMut(Block) -> Result<bool>,
    ) -> Result<ChunkSummary> {
        report_zero_dates(table, chunk, &self.plans, &self.zero_counts);
        let rows = self.copy.rows();
        let mut bytes = self.bytes;
        if !self.stopped {
            let tail = self.copy.finish();
            bytes += tail.bytes.len() as u64;
            on_block(Block::new(Bytes::from(tail.bytes), rows - self.rows_sent))?;
        }
        let nulled = self
            .plans
            .iter()
            .zip(&self.zero_counts)
            .filter(|(_, &n)| n > 0)
            .map(|(p, &n)| (p.name.clone(), n))
            .collect();
        Ok(ChunkSummary { rows, bytes, digest: self.digest.finish(), nulled })
    }
}

/// The message of a value the mapping cannot hold: table, column, key and what is wrong.
#[cold]
fn value_failure(
    table: &Table,
    columns: &[&Column],
    key_pos: &[usize],
    row: &Row,
    plan: &ColPlan,
    problem: Problem,
) -> String {
    let key = if key_pos.is_empty() {
        "(the table has no key)".to_string()
    } else {
        let names: Vec<String> = key_pos.iter().map(|&i| quote_ident(&columns[i].name)).collect();
        let values: Vec<String> = key_pos.iter().map(|&i| value_text(row.as_ref(i).unwrap_or(&Value::NULL))).collect();
        format!("({}) = ({})", names.join(", "), values.join(", "))
    };
    let why = match problem {
        Problem::ZeroDate(text) => format!(
            "zero date {text:?} has no PostgreSQL equivalent and --zero-dates error refuses it \
             (--zero-dates null copies zero dates as NULL)"
        ),
        Problem::Invalid(why) => why,
    };
    format!("table {}, column {}, row with key {key}: {why}", table.name, quote_ident(&plan.name))
}

/// One warning line per column that had zero dates copied as NULL in this chunk.
fn report_zero_dates(table: &Table, chunk: &Chunk, plans: &[ColPlan], counts: &[u64]) {
    for (plan, &count) in plans.iter().zip(counts) {
        if count > 0 {
            eprintln!(
                "warning: {} column {}: {count} zero date{} copied as NULL (chunk {}, key range {}; --zero-dates null)",
                table.name,
                quote_ident(&plan.name),
                if count == 1 { "" } else { "s" },
                chunk.chunk_no,
                chunk.range_text()
            );
        }
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
    use super::*;

    #[test]
    fn column_types_parse() {
        let t = TypeInfo::parse("int(10) unsigned zerofill");
        assert_eq!((t.family.as_str(), t.arg(0), t.unsigned), ("int", Some(10), true));
        let t = TypeInfo::parse("decimal(65,30)");
        assert_eq!((t.arg(0), t.arg(1)), (Some(65), Some(30)));
        let t = TypeInfo::parse("enum('a','it''s','x,y',')') character set latin1 collate latin1_swedish_ci");
        assert_eq!(t.labels(), ["a", "it's", "x,y", ")"]);
        assert_eq!((t.charset.as_deref(), t.collation.as_deref()), (Some("latin1"), Some("latin1_swedish_ci")));
    }

    #[test]
    fn every_mapping_row_is_reachable_and_integers_widen() {
        let pg = |ty: &str| type_row(&TypeInfo::parse(ty)).map(|r| (r.pg)(&TypeInfo::parse(ty)));
        assert_eq!(pg("tinyint(4)").as_deref(), Some("smallint"));
        assert_eq!(pg("tinyint(3) unsigned").as_deref(), Some("smallint"));
        assert_eq!(pg("smallint(5) unsigned").as_deref(), Some("integer"));
        assert_eq!(pg("mediumint(8) unsigned").as_deref(), Some("integer"));
        assert_eq!(pg("int unsigned").as_deref(), Some("bigint"));
        assert_eq!(pg("bigint(20) unsigned").as_deref(), Some("numeric(20,0)"));
        assert_eq!(pg("decimal(65,30)").as_deref(), Some("numeric(65,30)"));
        assert_eq!(pg("datetime(6)").as_deref(), Some("timestamp(6) without time zone"));
        assert_eq!(pg("timestamp").as_deref(), Some("timestamp(0) with time zone"));
        assert_eq!(pg("varchar(16)").as_deref(), Some("character varying(16)"));
        assert_eq!(pg("bit(5)").as_deref(), Some("bit(5)"));
        assert_eq!(pg("geometry"), None);
        assert_eq!(pg("inet6"), None);
        for row in TYPE_MAP {
            for fam in row.mysql {
                let probe =
                    TypeInfo { family: fam.to_string(), unsigned: row.unsigned == Some(true), ..TypeInfo::default() };
                assert!(type_row(&probe).is_some(), "{fam}");
            }
        }
    }

    #[test]
    fn dates_count_days_like_postgresql() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 1, 1), 10_957);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(days_from_civil(9, 12, 4), -715_903);
        assert_eq!(days_from_civil(0, 1, 1), -719_528);
        assert_eq!(days_in_month(2000, 2), 29);
        assert_eq!(days_in_month(1900, 2), 28);
    }

    #[test]
    fn uuids_and_ints_render() {
        let u = parse_uuid(b"123e4567-e89b-12d3-a456-426614174000").unwrap();
        assert_eq!(u[0], 0x12);
        assert_eq!(u[15], 0x00);
        assert!(parse_uuid(b"123e4567").is_none());
        let mut buf = [0u8; 40];
        assert_eq!(render_int(18_446_744_073_709_551_615, &mut buf), "18446744073709551615");
        assert_eq!(render_int(-5, &mut buf), "-5");
        assert_eq!(render_int(0, &mut buf), "0");
    }

    #[test]
    fn composite_key_conditions_expand() {
        let key = vec![
            ("`a`".to_string(), KeyKind::Signed),
            (
                "`b`".to_string(),
                KeyKind::Text { charset: Some("utf8mb4".into()), collation: Some("utf8mb4_general_ci".into()) },
            ),
        ];
        let (sql, params) = key_condition(&key, ">=", &["-5".into(), "x".into()]).unwrap();
        assert_eq!(
            sql,
            "`a` >= ? AND (`a` > ? OR (`a` = ? AND `b` >= CONVERT(? USING utf8mb4) COLLATE utf8mb4_general_ci))"
        );
        assert_eq!(params.len(), 4);
        assert_eq!(params[0], Value::Int(-5));
        let (sql, _) = key_condition(&key[..1], "<", &["7".into()]).unwrap();
        assert_eq!(sql, "`a` < ?");
        assert!(key_condition(&key, "<", &["x".into(), "y".into()]).is_err());
    }

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

    fn source_column(column_type: &str, default: Option<&str>, extra: &str) -> SourceColumn {
        SourceColumn {
            name: "c".into(),
            column_type: column_type.into(),
            info: TypeInfo::parse(column_type),
            nullable: true,
            default: default.map(str::to_string),
            extra: extra.into(),
            charset: None,
            collation: None,
            comment: String::new(),
        }
    }

    #[test]
    fn defaults_are_kept_only_when_postgresql_holds_the_same_value() {
        let render = |ty: &str, default: Option<&str>, extra: &str, flavor: Flavor| {
            let sc = source_column(ty, default, extra);
            let row = type_row(&sc.info).unwrap();
            render_default(&sc, &row.logical, &(row.pg)(&sc.info), flavor, false)
        };
        let maria = Flavor::MariaDb;
        assert_eq!(render("varchar(10)", Some("'it''s\\\\x'"), "", maria).as_deref(), Some("'it''s\\x'"));
        assert_eq!(render("varchar(10)", Some("NULL"), "", maria), None);
        assert_eq!(render("decimal(5,2)", Some("1.50"), "", maria).as_deref(), Some("'1.50'"));
        assert_eq!(render("datetime(3)", Some("current_timestamp(3)"), "", maria).as_deref(), Some("LOCALTIMESTAMP"));
        assert_eq!(render("timestamp", Some("current_timestamp()"), "", maria).as_deref(), Some("CURRENT_TIMESTAMP"));
        assert_eq!(render("date", Some("'0000-00-00'"), "", maria), None);
        assert_eq!(render("bit(5)", Some("b'101'"), "", maria).as_deref(), Some("B'00101'"));
        assert_eq!(render("uuid", Some("uuid()"), "", maria), None);
        let mysql = Flavor::MySql;
        assert_eq!(render("varchar(10)", Some("it's"), "", mysql).as_deref(), Some("'it''s'"));
        assert_eq!(render("timestamp", Some("CURRENT_TIMESTAMP"), "", mysql).as_deref(), Some("CURRENT_TIMESTAMP"));
        assert_eq!(
            render("datetime", Some("CURRENT_TIMESTAMP"), "default_generated", mysql).as_deref(),
            Some("LOCALTIMESTAMP")
        );
        assert_eq!(render("int", Some("(rand() * 10)"), "default_generated", mysql), None);
    }

    /// A MySQL table of `(name, source type)` columns keyed by the columns at `key`.
    fn my_table_of(columns: &[(&str, &str)], key: &[usize]) -> Table {
        let columns = columns
            .iter()
            .map(|(name, ty)| {
                let row = type_row(&TypeInfo::parse(ty)).expect("a mapped type");
                Column {
                    name: name.to_string(),
                    type_sql: (row.pg)(&TypeInfo::parse(ty)),
                    logical: row.logical.clone(),
                    not_null: false,
                    default_sql: None,
                    identity_sql: None,
                    generated_sql: None,
                    user_elem_oid: None,
                    user_elem_type_sql: None,
                    source_type: ty.to_string(),
                }
            })
            .collect();
        Table {
            name: TableName::new("db", "t"),
            target: TableName::new("db", "t"),
            columns,
            key: (!key.is_empty()).then(|| Key { columns: key.to_vec(), description: String::new() }),
            estimated_rows: 0,
            estimated_bytes: 0,
            ddl: TargetDdl::default(),
            partitioned: false,
            changes: Vec::new(),
        }
    }

    fn set_aside_of(table: &Table) -> Option<SetAside> {
        let columns: Vec<&Column> = table.copied_columns().collect();
        let select: Vec<String> = columns.iter().map(|c| column_conv(c).unwrap().1).collect();
        let key_pos: Vec<usize> = table.key.as_ref().map(|k| k.columns.clone()).unwrap_or_default();
        SetAside::plan(table, &columns, &select, &key_pos)
    }

    #[test]
    fn only_keyed_tables_with_wide_columns_set_huge_rows_aside() {
        let t = my_table_of(
            &[
                ("id", "int"),
                ("doc", "longtext character set utf8mb4 collate utf8mb4_bin"),
                ("n", "varchar(5)"),
                ("pic", "mediumblob"),
                ("k", "varbinary(4)"),
            ],
            &[0, 4],
        );
        let aside = set_aside_of(&t).expect("wide columns and a key");
        let size = "COALESCE(LENGTH(`doc`), 0) + COALESCE(LENGTH(`pic`), 0)";
        assert_eq!(
            aside.streamed,
            [
                "`id`".to_string(),
                format!("IF({size} > {SET_ASIDE_ABOVE}, NULL, `doc`)"),
                "`n`".to_string(),
                format!("IF({size} > {SET_ASIDE_ABOVE}, NULL, `pic`)"),
                "`k`".to_string(),
                size.to_string(),
            ]
        );
        assert_eq!(aside.by_key, "SELECT `id`, `doc`, `n`, `pic`, `k` FROM `db`.`t` WHERE `id` = ? AND `k` = UNHEX(?)");
        assert_eq!(aside.key.iter().map(|(pos, _)| *pos).collect::<Vec<_>>(), [0, 4]);

        for ty in ["json", "longblob", "mediumtext", "geometry"] {
            let mut t = my_table_of(&[("id", "int"), ("v", "text")], &[0]);
            t.columns[1].source_type = ty.to_string();
            assert!(set_aside_of(&t).is_some(), "{ty} is wide");
        }
        let narrow = my_table_of(&[("id", "int"), ("t", "text"), ("b", "blob"), ("v", "varchar(16000)")], &[0]);
        assert!(set_aside_of(&narrow).is_none(), "TEXT, BLOB and VARCHAR rows stay under 64 KiB: streamed");
        let keyless = my_table_of(&[("id", "int"), ("doc", "longtext")], &[]);
        assert!(set_aside_of(&keyless).is_none(), "rows without a key cannot be found again: streamed");
    }

    #[test]
    fn zero_date_text_is_recognized() {
        assert!(is_zero_date_text("0000-00-00"));
        assert!(is_zero_date_text("2024-00-10 00:00:00"));
        assert!(!is_zero_date_text("0009-12-04"));
    }
}
