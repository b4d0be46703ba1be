//! Error types with the context a user needs to act: which endpoint, table, chunk and key range.
//!
//! This module also owns the two cross-cutting rules about errors: which exit code an error
//! maps to (bad input is 2, a failure at run time is 1), and that no registered secret ever
//! appears in a message (`redact`). It must never print anything itself.

use std::sync::{Mutex, OnceLock};

use crate::copy_format::CopyFormatError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input found before anything was written: wrong arguments, missing tables, a target
    /// table that is not ours to fill, an unfinished job run without `--resume`. Exit code 2.
    #[error("{0}")]
    Input(String),

    /// A connection could not be opened (unreachable host, wrong password, missing database).
    /// Reported before anything is written, so it is bad input too: exit code 2.
    #[error("cannot connect to {endpoint}: {detail}")]
    Connect { endpoint: String, detail: String },

    /// A statement failed on one of the databases.
    #[error("{what} on {endpoint}: {detail}")]
    Sql { endpoint: String, what: String, detail: String, code: ErrorCode },

    /// A chunk failed; the chunk's transaction was rolled back and committed chunks are kept.
    #[error("table {table}, chunk {chunk} (key range {range}): {source}")]
    Chunk { table: String, chunk: u32, range: String, source: Box<Error> },

    /// The binary COPY stream from the source could not be decoded.
    #[error("malformed COPY data: {0}")]
    CopyFormat(#[from] CopyFormatError),

    /// The source returned a different number of rows than the target loaded.
    #[error("row count mismatch: source sent {sent} rows but the target loaded {loaded}")]
    RowCount { sent: u64, loaded: u64 },

    /// `copy --verify` found the target different from the source.
    #[error("verification failed: {0}")]
    Verification(String),

    /// Something that should not happen did (a thread panicked): a bug to report.
    #[error("{0}; this is a bug in rangecopy, please report it")]
    Bug(String),

    /// The job's state in the target is not what this run expected: another process committed
    /// a chunk, or the target lost commits it had acknowledged. Resume checks the state again.
    #[error("{0}")]
    State(String),

    /// A source table changed under the job (a column or the table dropped): resuming cannot
    /// finish it, copying that table again (`--restart TABLE`) can.
    #[error("the source's table {table} changed since the job started ({detail})")]
    SourceChanged { table: String, detail: String },

    /// Whatever failed after the job's state was first written is a failure at run time
    /// (exit 1, committed work kept), even where the same error before would be bad input.
    #[error(transparent)]
    Started(Box<Error>),

    /// This process's claim on a chunk or step ran out and another process holds it now: the
    /// work's transaction was rolled back (its commit would have duplicated the other's). Not a
    /// failure of the job: the process lets the chunk go and goes on with other work.
    #[error(
        "{0}: its lease ran out and another rangecopy process took it over; this process's work on it was rolled back"
    )]
    Fenced(String),

    /// The run was stopped by Ctrl-C / SIGTERM.
    #[error("interrupted")]
    Interrupted,

    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
}

impl Error {
    /// The process exit code for this error: 2 for bad input, 1 for failures at run time.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Input(_) | Error::Connect { .. } => 2,
            _ => 1,
        }
    }

    /// Whether the error was detected before anything was written (exit code 2).
    pub fn is_input(&self) -> bool {
        self.exit_code() == 2
    }

    pub fn input(msg: impl Into<String>) -> Self {
        Error::Input(msg.into())
    }

    /// Wraps a PostgreSQL driver error from a statement, keeping SQLSTATE, message, detail and hint.
    pub fn sql(endpoint: &str, what: impl Into<String>, err: tokio_postgres::Error) -> Self {
        let code = match err.code() {
            Some(state) => ErrorCode::Sqlstate(state.code().to_string()),
            None if err.is_closed() || std::error::Error::source(&err).is_some_and(|s| s.is::<std::io::Error>()) => {
                ErrorCode::ConnectionLost
            }
            None => ErrorCode::Other,
        };
        Error::Sql { endpoint: endpoint.to_string(), what: what.into(), detail: describe_pg_error(&err), code }
    }

    /// Wraps a MySQL/MariaDB driver error from a statement, keeping the server's error code.
    pub fn mysql(endpoint: &str, what: impl Into<String>, err: mysql::Error) -> Self {
        let io = match &err {
            mysql::Error::IoError(e) => Some(e),
            mysql::Error::CodecError(e) => std::error::Error::source(e).and_then(|s| s.downcast_ref()),
            _ => None,
        };
        // The socket's read or write timeout (`--io-timeout`) ran out.
        if io.is_some_and(|e| matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)) {
            let detail = "the server sent nothing (or took nothing) for longer than --io-timeout; the connection \
                          was given up"
                .to_string();
            return Error::Sql { endpoint: endpoint.to_string(), what: what.into(), detail, code: ErrorCode::Silence };
        }
        let code = match &err {
            mysql::Error::MySqlError(e) => ErrorCode::Mysql(e.code),
            // A connection killed under a read surfaces as a packet codec (I/O) error.
            mysql::Error::IoError(_)
            | mysql::Error::CodecError(_)
            | mysql::Error::DriverError(mysql::DriverError::ConnectTimeout | mysql::DriverError::CouldNotConnect(_)) => {
                ErrorCode::ConnectionLost
            }
            _ => ErrorCode::Other,
        };
        Error::Sql { endpoint: endpoint.to_string(), what: what.into(), detail: describe_mysql_error(&err), code }
    }

    /// Whether doing the same work again, on fresh connections, may succeed: the one place
    /// that decides what is retriable. Connection failures during a run are retried too (the
    /// caller decides that, since the same failure at start is bad input).
    pub fn is_retriable(&self) -> bool {
        match self.root() {
            Error::Sql { code, .. } => code.is_transient(),
            Error::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::TimedOut
            ),
            _ => false,
        }
    }

    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { what: what.into(), source }
    }

    /// Marks an error as happening after the job's state was written (see `Error::Started`).
    pub fn started(self) -> Self {
        match self {
            e @ (Error::Started(_) | Error::Interrupted) => e,
            e if e.is_input() => Error::Started(Box::new(e)),
            e => e,
        }
    }

    /// A statement failed on a unique key (SQLSTATE 23505).
    pub fn is_unique_violation(&self) -> bool {
        matches!(self.root(), Error::Sql { code: ErrorCode::Sqlstate(s), .. } if s == "23505")
    }

    /// The innermost error, looking through chunk context.
    pub fn root(&self) -> &Error {
        match self {
            Error::Chunk { source, .. } | Error::Started(source) => source.root(),
            other => other,
        }
    }
}

/// What kind of failure a statement had, as far as the server or driver says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorCode {
    /// A PostgreSQL SQLSTATE.
    Sqlstate(String),
    /// A MySQL/MariaDB server error number.
    Mysql(u16),
    /// The connection broke (reset, closed, server gone).
    ConnectionLost,
    /// The server sent nothing for longer than `--io-timeout` (or stopped running a long
    /// statement without its answer arriving): the connection was given up.
    Silence,
    Other,
}

impl ErrorCode {
    /// Failures that a retry on a fresh connection can get past.
    pub fn is_transient(&self) -> bool {
        match self {
            ErrorCode::Sqlstate(s) => {
                s.starts_with("08")               // connection exception
                    || matches!(
                        s.as_str(),
                        "40001"                   // serialization_failure
                        | "40P01"                 // deadlock_detected
                        | "53300"                 // too_many_connections
                        | "55P03"                 // lock_not_available (lock_timeout)
                        | "57P01"                 // admin_shutdown (pg_terminate_backend, restart)
                        | "57P02"                 // crash_shutdown
                        | "57P03"                 // cannot_connect_now (starting up)
                        | "57014"                 // query_canceled (statement_timeout)
                    )
            }
            ErrorCode::Mysql(code) => matches!(
                code,
                1040    // too many connections
                | 1053  // server shutdown in progress
                | 1205  // lock wait timeout
                | 1213  // deadlock
                | 1317  // query interrupted
                | 1927  // connection killed (MariaDB)
                | 2006  // server has gone away
                | 2013  // lost connection during query
                | 3024  // max_execution_time exceeded (MySQL)
                | 1969 // max_statement_time exceeded (MariaDB)
            ),
            ErrorCode::ConnectionLost | ErrorCode::Silence => true,
            ErrorCode::Other => false,
        }
    }

    /// A table or column that a statement names does not exist (any more).
    pub fn is_missing_object(&self) -> bool {
        match self {
            ErrorCode::Sqlstate(s) => matches!(s.as_str(), "42P01" | "42703"), // undefined table / column
            ErrorCode::Mysql(code) => matches!(code, 1146 | 1054),             // no such table / unknown column
            _ => false,
        }
    }
}

/// One line describing a PostgreSQL driver error: severity, message, SQLSTATE, detail, hint.
pub fn describe_pg_error(err: &tokio_postgres::Error) -> String {
    if let Some(db) = err.as_db_error() {
        let mut s = format!("{} (SQLSTATE {})", db.message(), db.code().code());
        if let Some(detail) = db.detail() {
            s.push_str("; detail: ");
            s.push_str(detail);
        }
        if let Some(hint) = db.hint() {
            s.push_str("; hint: ");
            s.push_str(hint);
        }
        return redact(&s);
    }
    // Non-database errors (I/O, protocol, TLS): the source chain says what happened.
    let mut s = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(inner) = source {
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = inner.source();
    }
    redact(&s)
}

/// The strings redaction works with: secrets to hide, and public texts to leave whole.
#[derive(Default)]
struct Redaction {
    /// Longest first, so a secret that contains another is replaced whole.
    secrets: Vec<String>,
    /// Texts rangecopy built from parsed, non-secret parts (an endpoint's password-free URL).
    public: Vec<String>,
}

/// A MySQL/MariaDB driver error as a person reads it: the server's message, then its error
/// number and SQLSTATE (the driver's own form is `MySqlError { ERROR 1227 (42000): … }`).
pub fn describe_mysql_error(err: &mysql::Error) -> String {
    match err {
        mysql::Error::MySqlError(e) => redact(&format!("{} (MySQL error {}, SQLSTATE {})", e.message, e.code, e.state)),
        other => redact(&other.to_string()),
    }
}

fn redaction() -> std::sync::MutexGuard<'static, Redaction> {
    static REDACTION: OnceLock<Mutex<Redaction>> = OnceLock::new();
    REDACTION.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner())
}

/// Registers a secret (a password) that must never appear in any output.
pub fn register_secret(secret: &str) {
    if secret.is_empty() {
        return;
    }
    let mut r = redaction();
    if !r.secrets.iter().any(|s| s == secret) {
        r.secrets.push(secret.to_string());
        r.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
}

/// Registers a text built from parsed parts that never include a password (an endpoint's
/// `postgres://user@host:port/db`), which `redact` leaves whole: a password that equals the
/// user name (or the database name) must not turn the URL naming it into `***`. Anything
/// that user name reveals, it reveals as a user name.
pub fn register_public(text: &str) {
    if text.is_empty() {
        return;
    }
    let mut r = redaction();
    if !r.public.iter().any(|s| s == text) {
        r.public.push(text.to_string());
    }
}

/// Replaces every registered secret in `text` with `***`, except where it lies wholly inside a
/// registered public text. Every message that leaves the process passes through here; it is not
/// on any per-row path.
pub fn redact(text: &str) -> String {
    let r = redaction();
    if !r.secrets.iter().any(|s| text.contains(s.as_str())) {
        return text.to_string();
    }
    let mut public: Vec<(usize, usize)> = Vec::new();
    for p in &r.public {
        public.extend(text.match_indices(p.as_str()).map(|(i, m)| (i, i + m.len())));
    }
    let shown = |start: usize, end: usize| public.iter().any(|&(s, e)| s <= start && end <= e);
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let rest = &text[i..];
        if let Some(secret) = r.secrets.iter().find(|s| rest.starts_with(s.as_str()) && !shown(i, i + s.len())) {
            out.push_str("***");
            i += secret.len();
            continue;
        }
        let c = rest.chars().next().unwrap_or_default();
        out.push(c);
        i += c.len_utf8();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_registered_secrets() {
        register_secret("s3cr3t-pw");
        assert_eq!(redact("password=s3cr3t-pw host=x"), "password=*** host=x");
        assert_eq!(redact("nothing here"), "nothing here");
    }

    #[test]
    fn a_password_equal_to_the_user_name_leaves_the_endpoint_s_url_whole() {
        register_secret("same-as-user");
        register_public("postgres://same-as-user@h:5432/db");
        assert_eq!(
            redact("cannot connect to postgres://same-as-user@h:5432/db: user \"same-as-user\" failed"),
            "cannot connect to postgres://same-as-user@h:5432/db: user \"***\" failed"
        );
        // Partly inside a public text is not inside it.
        assert_eq!(redact("postgres://same-as-user@h:5432/dbsame-as-user"), "postgres://same-as-user@h:5432/db***");
        register_secret("h:5432/dbX");
        assert_eq!(redact("postgres://same-as-user@h:5432/dbX"), "postgres://same-as-user@***");
    }

    #[test]
    fn mysql_server_errors_read_as_message_number_and_sqlstate() {
        let err = mysql::Error::MySqlError(mysql::MySqlError {
            state: "42000".into(),
            message: "Access denied; you need (at least one of) the RELOAD privilege(s) for this operation".into(),
            code: 1227,
        });
        let text = describe_mysql_error(&err);
        assert_eq!(
            text,
            "Access denied; you need (at least one of) the RELOAD privilege(s) for this operation \
             (MySQL error 1227, SQLSTATE 42000)"
        );
        assert!(!text.contains("MySqlError"));
    }

    #[test]
    fn bad_input_exits_2_and_runtime_failure_exits_1() {
        assert_eq!(Error::input("x").exit_code(), 2);
        assert_eq!(Error::Connect { endpoint: "e".into(), detail: "d".into() }.exit_code(), 2);
        assert_eq!(Error::Interrupted.exit_code(), 1);
        assert_eq!(Error::RowCount { sent: 1, loaded: 0 }.exit_code(), 1);
        let late = Error::Connect { endpoint: "e".into(), detail: "d".into() }.started();
        assert_eq!(late.exit_code(), 1, "bad input found after the job was written is a run-time failure");
        assert!(matches!(late.root(), Error::Connect { .. }));
        assert!(matches!(Error::Interrupted.started(), Error::Interrupted));
    }

    #[test]
    fn transient_failures_are_retriable_and_others_are_not() {
        let sql = |code: ErrorCode| Error::Sql { endpoint: "e".into(), what: "w".into(), detail: "d".into(), code };
        for code in ["08006", "40001", "40P01", "57P01", "57P03", "53300"] {
            assert!(sql(ErrorCode::Sqlstate(code.into())).is_retriable(), "{code}");
        }
        for code in ["23505", "42P01", "53100", "22P02", "42501"] {
            assert!(!sql(ErrorCode::Sqlstate(code.into())).is_retriable(), "{code}");
        }
        assert!(sql(ErrorCode::Mysql(2013)).is_retriable());
        assert!(sql(ErrorCode::Mysql(1927)).is_retriable());
        assert!(!sql(ErrorCode::Mysql(1146)).is_retriable());
        assert!(sql(ErrorCode::ConnectionLost).is_retriable());
        assert!(sql(ErrorCode::Silence).is_retriable());
        let timed_out = mysql::Error::IoError(std::io::ErrorKind::WouldBlock.into());
        let silent = Error::mysql("e", "w", timed_out);
        assert!(matches!(silent, Error::Sql { code: ErrorCode::Silence, .. }), "{silent}");
        assert!(silent.is_retriable() && silent.to_string().contains("--io-timeout"), "{silent}");
        let chunk = Error::Chunk {
            table: "t".into(),
            chunk: 1,
            range: "r".into(),
            source: Box::new(sql(ErrorCode::ConnectionLost)),
        };
        assert!(chunk.is_retriable());
        assert!(!Error::input("bad").is_retriable());
    }
}
