//! PostgreSQL connections shared by the source and target sides: connecting with the session
//! settings every rangecopy session needs, statement helpers that attach the endpoint and
//! what was being done to any error, transactions, and the two COPY streams.
//!
//! Each connection owns a single-threaded tokio runtime and is used from one thread at a time.
//! Calls block on that runtime, so the rest of rangecopy is plain threads; a COPY stream is
//! driven inside one `block_on` per chunk, never one per row.
//!
//! Every call that waits for the server is bounded: it fails (as `ErrorCode::Silence`, which
//! is retried) once the server has sent nothing, or taken nothing, for `--io-timeout`, and it
//! stops at once when the process is interrupted. A statement that legitimately runs long
//! without a word (an index build, a key walk; see `patiently`) is not cut: every
//! `--io-timeout` a fresh connection checks that the server is still running it. A connection
//! given up is not used again; its session is cancelled and ended on the server, best effort,
//! so that it holds no lock or transaction there.
//!
//! Session settings make text forms of values exact and stable (ISO dates in UTC, shortest
//! exact floats, hex bytea), because chunk bounds travel as text and must round-trip.
//! This module must never decide policy (what to copy, what is retriable).

use std::cell::Cell;
use std::future::Future;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use tokio::runtime::Runtime;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, CopyInSink, Row, SimpleQueryMessage};

use crate::config::PgEndpoint;
use crate::credentials::PG_PASSWORD_VAR;
use crate::error::{describe_pg_error, redact, Error, ErrorCode, Result};
use crate::tls::PgSslMode;
use crate::wait::{self, Waiting};

/// Settings that make value text forms exact and independent of the server's defaults.
const SESSION_SETTINGS: &str = "SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; \
     SET TimeZone = 'UTC'; SET extra_float_digits = 3; SET bytea_output = 'hex'; \
     SET standard_conforming_strings = on; SET client_encoding = 'UTF8'";

pub type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// Runs one call on the live client under the bounds (see `PgConn::drive`) and settles it:
/// `call!(conn, what, |client| client.query(sql, params))`.
macro_rules! call {
    ($conn:expr, $what:expr, |$c:ident| $call:expr) => {{
        let what = $what;
        let ended = {
            let $c = $conn.live(what)?;
            $conn.run(what, $call)
        };
        $conn.settle(what, ended)
    }};
}

/// A connection that knows which endpoint it talks to, for error messages.
pub struct PgConn {
    rt: Runtime,
    /// Present until the connection is given up or dropped.
    client: Option<Client>,
    /// The task that drives the connection; it ends after the client is gone.
    driver: Option<tokio::task::JoinHandle<()>>,
    pub endpoint: String,
    /// Where the connection goes, to check on a long statement and to end a session given up
    /// (boxed: it is large, and a source connection is one variant of `Source`).
    ep: Box<PgEndpoint>,
    /// The session's server process (`pg_backend_pid()`).
    pid: i32,
    /// The calls now running are statements that legitimately run long (see `patiently`).
    patient: bool,
    /// Why the connection was given up, if it was: it is not used again.
    given_up: Option<String>,
}

/// How long a dropped connection may take to say goodbye to its server.
const CLOSE_WAIT: Duration = Duration::from_millis(200);

impl Drop for PgConn {
    /// Closes the session properly (a Terminate message), so the server does not log each of
    /// rangecopy's connections as reset by the peer.
    fn drop(&mut self) {
        drop(self.client.take());
        if let Some(driver) = self.driver.take() {
            let _ = self.rt.block_on(async { tokio::time::timeout(CLOSE_WAIT, driver).await });
        }
    }
}

/// How a call that waits for the server ended.
enum Ended<T> {
    /// It returned (successfully or not).
    Done(T),
    /// The server sent nothing for this long.
    Silent(Duration),
    /// The process was interrupted while it waited.
    Interrupted,
    /// A long statement is no longer running on the server, yet its answer never came.
    Lost(String),
}

impl PgConn {
    /// Connects and applies the common session settings plus `extra` (a `;`-separated list).
    pub fn connect(ep: &PgEndpoint, extra: &str) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| Error::io("starting a connection runtime", e))?;
        // The driver's connect timeout covers reaching the server; this one also covers a server
        // that accepts the connection and then never answers the login.
        let limit = ep.config.get_connect_timeout().copied().unwrap_or(Duration::from_secs(15));
        let limit = if wait::interrupted() { limit.min(wait::STOP_BOUND) } else { limit };
        let (client, connection) = rt
            .block_on(async { tokio::time::timeout(limit, ep.config.connect(ep.tls.connector())).await })
            .map_err(|_| Error::Connect {
                endpoint: ep.display.clone(),
                detail: format!(
                    "the server did not complete the login within {}s (--connect-timeout); \
                     check that the host and port are a PostgreSQL server that is up",
                    limit.as_secs_f64()
                ),
            })?
            .map_err(|e| Error::Connect { endpoint: ep.display.clone(), detail: connect_hint(ep, &e) })?;
        // Driven whenever this thread blocks on the runtime; ends when the client is dropped.
        let driver = rt.spawn(async move {
            let _ = connection.await;
        });
        let mut conn = PgConn {
            rt,
            client: Some(client),
            driver: Some(driver),
            endpoint: ep.display.clone(),
            ep: Box::new(ep.clone()),
            pid: 0,
            patient: false,
            given_up: None,
        };
        let what = "setting up the session";
        let pid = conn.first_value_text(&format!("{SESSION_SETTINGS}; SELECT pg_backend_pid()"), what)?;
        conn.pid = pid.and_then(|p| p.parse().ok()).unwrap_or(0);
        if !extra.is_empty() {
            conn.batch(extra, what)?;
        }
        Ok(conn)
    }

    /// Runs `body`, whose statements legitimately run long without sending anything (index
    /// builds, key walks): they are not cut by `--io-timeout`; instead, every `--io-timeout`,
    /// a fresh connection checks that the server is still running them.
    pub fn patiently<T>(&mut self, body: impl FnOnce(&mut PgConn) -> Result<T>) -> Result<T> {
        let was = std::mem::replace(&mut self.patient, true);
        let result = body(self);
        self.patient = was;
        result
    }

    /// The client, unless the connection was given up.
    fn live(&self, what: &str) -> Result<&Client> {
        match (&self.given_up, &self.client) {
            (None, Some(client)) => Ok(client),
            (why, _) => Err(Error::Sql {
                endpoint: self.endpoint.clone(),
                what: what.to_string(),
                detail: format!("the connection was given up earlier ({})", why.as_deref().unwrap_or("closed")),
                code: ErrorCode::ConnectionLost,
            }),
        }
    }

    /// Registers a call that waits for the server (reported by the pipeline when it is held).
    fn waiting(&self, what: &str) -> Waiting {
        Waiting::begin(&self.endpoint, what, !self.patient)
    }

    /// Drives `work` to its end, unless the server stays silent for `--io-timeout` (`heard`
    /// counts what arrived; a patient call is checked on the server instead) or the process is
    /// interrupted while it waits.
    fn drive<T>(&self, waiting: &Waiting, heard: &Cell<u64>, work: impl Future<Output = T>) -> Ended<T> {
        let (bound, interruptible) = wait::bound_for_call((!self.patient).then_some(self.ep.io_timeout));
        let check = (self.patient && self.pid != 0).then_some(self.ep.io_timeout);
        let watch = async {
            let mut last = (heard.get(), Instant::now());
            let mut next_check = check.map(|every| Instant::now() + every);
            // A check that finds the statement ended is confirmed once, a moment later: its
            // answer may have been on its way.
            let mut suspect = false;
            loop {
                tokio::time::sleep(wait::TICK).await;
                if interruptible && wait::interrupted() {
                    return Ended::Interrupted;
                }
                let now = Instant::now();
                if heard.get() != last.0 {
                    last = (heard.get(), now);
                    waiting.heard();
                }
                if let Some(bound) = bound.filter(|b| now - last.1 >= *b) {
                    return Ended::Silent(bound);
                }
                if let (Some(at), Some(every)) = (next_check, check) {
                    if now >= at {
                        // The check itself may wait for the server; an interrupt does not.
                        let stopped = async {
                            while !(interruptible && wait::interrupted()) {
                                tokio::time::sleep(wait::TICK).await;
                            }
                        };
                        let checked = still_running(&self.ep, self.pid);
                        futures_util::pin_mut!(stopped, checked);
                        match futures_util::future::select(checked, stopped).await {
                            futures_util::future::Either::Right(_) => return Ended::Interrupted,
                            futures_util::future::Either::Left((Ok(()), _)) => suspect = false,
                            futures_util::future::Either::Left((Err(why), _)) if suspect => return Ended::Lost(why),
                            futures_util::future::Either::Left((Err(_), _)) => suspect = true,
                        }
                        next_check = Some(Instant::now() + if suspect { Duration::from_secs(1) } else { every });
                    }
                }
            }
        };
        let work = async { Ended::Done(work.await) };
        self.rt.block_on(async {
            futures_util::pin_mut!(work, watch);
            futures_util::future::select(work, watch).await.factor_first().0
        })
    }

    /// The outcome of a driven call: the statement's own result, or an error for a call that
    /// was stopped, after which the connection is given up.
    fn settle<T>(&mut self, what: &str, ended: Ended<std::result::Result<T, Error>>) -> Result<T> {
        let (why, error) = match ended {
            Ended::Done(result) => return result,
            Ended::Interrupted => ("the run was interrupted".to_string(), Error::Interrupted),
            // Cut short because the process is stopping: that is what the caller must hear.
            Ended::Silent(_) if wait::interrupted() => ("the run was interrupted".to_string(), Error::Interrupted),
            Ended::Silent(bound) => {
                let detail = format!(
                    "the server sent nothing (or took nothing) for {}s (--io-timeout); the connection was given up",
                    bound.as_secs_f64()
                );
                (detail.clone(), self.silence(what, detail))
            }
            Ended::Lost(why) => {
                let detail = format!("{why}; the connection was given up");
                (detail.clone(), self.silence(what, detail))
            }
        };
        self.give_up(why);
        Err(error)
    }

    fn silence(&self, what: &str, detail: String) -> Error {
        Error::Sql { endpoint: self.endpoint.clone(), what: what.to_string(), detail, code: ErrorCode::Silence }
    }

    /// Gives the connection up: its running statement is cancelled and its session ended on the
    /// server (each best effort, within `wait::STOP_BOUND`), so that a session whose client is
    /// gone holds no lock there, and the client is dropped.
    fn give_up(&mut self, why: String) {
        self.given_up = Some(why);
        let Some(client) = self.client.take() else { return };
        let cancel = client.cancel_token();
        let (tls, ep, pid) = (self.ep.tls.connector(), &self.ep, self.pid);
        self.rt.block_on(async {
            let cancelled = async {
                let _ = cancel.cancel_query(tls).await;
            };
            let ended = async {
                if pid != 0 {
                    let _ = end_session(ep, pid).await;
                }
            };
            let _ = tokio::time::timeout(wait::STOP_BOUND, futures_util::future::join(cancelled, ended)).await;
        });
        drop(client);
    }

    /// Drives one statement-like call (see `drive`), attaching the endpoint and `what` to a
    /// driver error.
    fn run<T>(
        &self,
        what: &str,
        work: impl Future<Output = std::result::Result<T, tokio_postgres::Error>>,
    ) -> Ended<Result<T>> {
        let waiting = self.waiting(what);
        match self.drive(&waiting, &Cell::new(0), work) {
            Ended::Done(result) => Ended::Done(result.map_err(|e| Error::sql(&self.endpoint, what, e))),
            Ended::Silent(bound) => Ended::Silent(bound),
            Ended::Interrupted => Ended::Interrupted,
            Ended::Lost(why) => Ended::Lost(why),
        }
    }

    pub fn batch(&mut self, sql: &str, what: &str) -> Result<()> {
        call!(self, what, |c| c.batch_execute(sql))
    }

    pub fn query(&mut self, sql: &str, params: Params<'_>, what: &str) -> Result<Vec<Row>> {
        call!(self, what, |c| c.query(sql, params))
    }

    pub fn query_opt(&mut self, sql: &str, params: Params<'_>, what: &str) -> Result<Option<Row>> {
        call!(self, what, |c| c.query_opt(sql, params))
    }

    pub fn query_one(&mut self, sql: &str, params: Params<'_>, what: &str) -> Result<Row> {
        call!(self, what, |c| c.query_one(sql, params))
    }

    pub fn execute(&mut self, sql: &str, params: Params<'_>, what: &str) -> Result<u64> {
        call!(self, what, |c| c.execute(sql, params))
    }

    /// Runs `body` in a transaction: committed if it returns Ok, rolled back otherwise.
    pub fn transaction<T>(&mut self, what: &str, body: impl FnOnce(&mut PgConn) -> Result<T>) -> Result<T> {
        self.batch("BEGIN", what)?;
        match body(self) {
            Ok(value) => {
                self.batch("COMMIT", what)?;
                Ok(value)
            }
            Err(e) => {
                // Best effort: a broken connection has rolled back already.
                let _ = self.batch("ROLLBACK", what);
                Err(e)
            }
        }
    }

    /// Starts `COPY … FROM STDIN`; the returned writer must be finished, or it aborts the COPY
    /// when dropped.
    pub fn copy_in(&mut self, sql: &str) -> Result<CopyIn<'_>> {
        let sink = call!(self, "starting COPY", |c| c.copy_in::<_, Bytes>(sql))?;
        Ok(CopyIn { conn: self, sink: Box::pin(sink) })
    }

    /// Runs `COPY … TO STDOUT` and hands its data to `on_block` in blocks of at least
    /// `block_bytes` (the last may be smaller). Small messages (rows) are gathered into a block;
    /// a message that is a block on its own (a row with a huge value) is handed on as it came,
    /// without a copy. Stops early, without error, when `on_block` returns false.
    ///
    /// The silence bound applies to each message; the time `on_block` takes does not count.
    pub fn copy_out_blocks(
        &mut self,
        sql: &str,
        block_bytes: usize,
        mut on_block: impl FnMut(Bytes) -> Result<bool>,
    ) -> Result<()> {
        let what = "reading COPY data from the source";
        let endpoint = self.endpoint.clone();
        let err = |e| Error::sql(&endpoint, what, e);
        let waiting = self.waiting(what);
        let heard = Cell::new(0u64);
        let ended = {
            let client = self.live(what)?;
            // Handing a block on is not waiting for the server: the silence starts again after.
            let mut hand_on = |block: Bytes| {
                waiting.pause();
                let more = on_block(block);
                waiting.resume();
                heard.set(heard.get() + 1);
                more
            };
            let work = async {
                let stream = client.copy_out(sql).await.map_err(err)?;
                futures_util::pin_mut!(stream);
                let mut gathered = BytesMut::new();
                while let Some(data) = stream.next().await {
                    heard.set(heard.get() + 1);
                    let data = data.map_err(err)?;
                    if data.len() >= block_bytes {
                        // A block on its own goes on as it came, after what was gathered before
                        // it (copying a 50 MB row into the gathered block would double its memory).
                        if !gathered.is_empty() && !hand_on(gathered.split().freeze())? {
                            return Ok(());
                        }
                        if !hand_on(data)? {
                            return Ok(());
                        }
                        continue;
                    }
                    if gathered.is_empty() {
                        // A whole block's room at once: the last block still shares the old
                        // buffer, and growing by small steps would copy it over and over.
                        gathered.reserve(block_bytes + block_bytes / 4);
                    }
                    gathered.extend_from_slice(&data);
                    if gathered.len() >= block_bytes && !hand_on(gathered.split().freeze())? {
                        return Ok(());
                    }
                }
                if !gathered.is_empty() {
                    hand_on(gathered.freeze())?;
                }
                Ok(())
            };
            self.drive(&waiting, &heard, work)
        };
        self.settle(what, ended)
    }

    /// The last column of the first row of any statement, as text (for queries the user
    /// supplies, whose result types are unknown).
    pub fn first_value_text(&mut self, sql: &str, what: &str) -> Result<Option<String>> {
        let messages = call!(self, what, |c| c.simple_query(sql))?;
        for message in messages {
            if let SimpleQueryMessage::Row(row) = message {
                return Ok(row.len().checked_sub(1).and_then(|i| row.get(i)).map(str::to_string));
            }
        }
        Ok(None)
    }

    /// The server's major version, e.g. 15.
    pub fn server_major_version(&mut self) -> Result<u32> {
        let row =
            self.query_one("SELECT current_setting('server_version_num')::int", &[], "reading the server version")?;
        Ok((row.get::<_, i32>(0) / 10000) as u32)
    }
}

/// A fresh, short-lived connection to `ep`'s server for a check or an order (not a session of
/// the run: none of its settings), bounded by `wait::STOP_BOUND` plus the connect timeout.
async fn side_connection(ep: &PgEndpoint) -> std::result::Result<Client, String> {
    let limit = ep.config.get_connect_timeout().copied().unwrap_or(Duration::from_secs(15)).min(ep.io_timeout);
    let (client, connection) = tokio::time::timeout(limit, ep.config.connect(ep.tls.connector()))
        .await
        .map_err(|_| format!("the server did not accept a new connection within {}s", limit.as_secs_f64()))?
        .map_err(|e| format!("a new connection to the server failed: {}", describe_pg_error(&e)))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// Whether the session `pid` is still running a statement, asked on a fresh connection: Err
/// says why the statement is taken for lost (the session is idle or gone, so the answer will
/// never come; the server is blocked sending it; the server cannot be reached). A server that
/// answers with an error (too many connections) proves nothing either way: Ok.
async fn still_running(ep: &PgEndpoint, pid: i32) -> std::result::Result<(), String> {
    let check = async {
        let client = side_connection(ep).await?;
        let row = client
            .query_opt("SELECT state, wait_event FROM pg_stat_activity WHERE pid = $1", &[&pid])
            .await
            .map_err(|e| if e.code().is_some() { String::new() } else { describe_pg_error(&e) })?;
        Ok::<_, String>(row.map(|r| (r.get::<_, Option<String>>(0), r.get::<_, Option<String>>(1))))
    };
    let limit = ep.io_timeout + wait::STOP_BOUND;
    match tokio::time::timeout(limit, check).await {
        Err(_) => Err(format!("the server did not answer a check on the statement within {}s", limit.as_secs_f64())),
        Ok(Err(why)) if why.is_empty() => Ok(()),
        Ok(Err(why)) => Err(why),
        Ok(Ok(None)) => Err("the server has no such session any more".into()),
        Ok(Ok(Some((Some(state), event)))) if state == "active" => match event.as_deref() {
            Some("ClientWrite") => Err("the server is stuck sending the answer, which does not arrive".into()),
            _ => Ok(()),
        },
        Ok(Ok(Some((state, _)))) => Err(format!(
            "the server has ended the statement (its session is {}), but the answer never arrived",
            state.as_deref().unwrap_or("unknown")
        )),
    }
}

/// Ends the session `pid` on the server (`pg_terminate_backend`, which a role may do to its
/// own sessions): a session whose client has given it up would otherwise keep its locks (the
/// job's lock) and transaction until the server notices, hours later behind a silent network.
async fn end_session(ep: &PgEndpoint, pid: i32) -> std::result::Result<(), String> {
    let client = side_connection(ep).await?;
    client.execute("SELECT pg_terminate_backend($1)", &[&pid]).await.map_err(|e| describe_pg_error(&e))?;
    Ok(())
}

/// A `COPY … FROM STDIN` in progress. `finish` returns the rows the server loaded; dropping
/// it unfinished aborts the COPY (and with it the transaction).
pub struct CopyIn<'a> {
    conn: &'a mut PgConn,
    sink: std::pin::Pin<Box<CopyInSink<Bytes>>>,
}

/// The largest COPY message sent: the driver copies each message into its write buffer and
/// keeps that buffer's size, so a 50 MB value sent whole would cost 50 MB per connection.
const MAX_COPY_MESSAGE: usize = 1 << 20;

impl CopyIn<'_> {
    /// Sends `data` (any cut of the stream: COPY does not care where messages end), in
    /// messages of at most `MAX_COPY_MESSAGE` bytes, without copying it. The silence bound
    /// applies to each message.
    pub fn write(&mut self, data: Bytes) -> Result<()> {
        let what = "writing COPY data to the target";
        let conn = &mut *self.conn;
        let sink = &mut self.sink;
        let waiting = conn.waiting(what);
        let heard = Cell::new(0u64);
        conn.live(what)?;
        let endpoint = conn.endpoint.clone();
        let work = async {
            let mut start = 0;
            while start < data.len() {
                let end = (start + MAX_COPY_MESSAGE).min(data.len());
                sink.send(data.slice(start..end)).await.map_err(|e| Error::sql(&endpoint, what, e))?;
                heard.set(heard.get() + 1);
                start = end;
            }
            Ok(())
        };
        let ended = conn.drive(&waiting, &heard, work);
        conn.settle(what, ended)
    }

    pub fn finish(mut self) -> Result<u64> {
        let what = "finishing COPY into the target";
        let conn = &mut *self.conn;
        let waiting = conn.waiting(what);
        conn.live(what)?;
        let endpoint = conn.endpoint.clone();
        let sink = &mut self.sink;
        let work = async { sink.as_mut().finish().await.map_err(|e| Error::sql(&endpoint, what, e)) };
        let ended = conn.drive(&waiting, &Cell::new(0), work);
        conn.settle(what, ended)
    }
}

/// Adds what to check to the driver's connection error.
fn connect_hint(ep: &PgEndpoint, err: &tokio_postgres::Error) -> String {
    let host = match ep.config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => String::new(),
    };
    if let Some(tls) = ep.tls.explain(err, &host) {
        return redact(&tls);
    }
    let detail = describe_pg_error(err);
    let hint = match err.code().map(|c| c.code()) {
        Some("28000") if ep.tls.mode == PgSslMode::Disable && detail.contains("no encryption") => {
            "; the server accepts this user over TLS only: use sslmode=require or stricter".to_string()
        }
        Some("28P01") | Some("28000") => format!(
            "; check the user name and password ({})",
            ep.password_source.login_hint(PG_PASSWORD_VAR, "~/.pgpass (PGPASSFILE)")
        ),
        Some("3D000") => "; check the database name in the URL".to_string(),
        // The driver's own words when the server asks for a password and it has none.
        None if detail.contains("password missing") => {
            format!("; {}", ep.password_source.login_hint(PG_PASSWORD_VAR, "~/.pgpass (PGPASSFILE)"))
        }
        None if detail.contains("server does not support TLS") => {
            "; the server does not accept TLS: enable ssl on the server, or use sslmode=prefer or disable".to_string()
        }
        _ if detail.contains("timed out") || detail.contains("refused") => {
            "; check that the server is running and the host and port are right".to_string()
        }
        _ => String::new(),
    };
    format!("{detail}{hint}")
}
