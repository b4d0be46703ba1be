//! PostgreSQL connections shared by the source and target sides: connecting with the session
//! settings every rangecopy session needs, statement helpers that attach the endpoint and
//! what was being done to any error, transactions, and the two COPY streams.
//!
//! Each connection owns a single-threaded tokio runtime and is used from one thread at a time.
//! Calls block on that runtime, so the rest of rangecopy is plain threads; a COPY stream is
//! driven inside one `block_on` per chunk, never one per row.
//!
//! Session settings make text forms of values exact and stable (ISO dates in UTC, shortest
//! exact floats, hex bytea), because chunk bounds travel as text and must round-trip.
//! This module must never decide policy (what to copy, what is retriable).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use tokio::runtime::Runtime;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, CopyInSink, Row};

use crate::config::PgEndpoint;
use crate::credentials::PG_PASSWORD_VAR;
use crate::error::{describe_pg_error, redact, Error, Result};
use crate::tls::PgSslMode;

/// Settings that make value text forms exact and independent of the server's defaults.
const SESSION_SETTINGS: &str = "SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; \
     SET TimeZone = 'UTC'; SET extra_float_digits = 3; SET bytea_output = 'hex'; \
     SET standard_conforming_strings = on; SET client_encoding = 'UTF8'";

pub type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// A connection that knows which endpoint it talks to, for error messages.
pub struct PgConn {
    rt: Runtime,
    /// Always present; taken only when the connection is dropped (see `Drop`).
    client: Option<Client>,
    /// The task that drives the connection; it ends after the client is gone.
    driver: Option<tokio::task::JoinHandle<()>>,
    pub endpoint: String,
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
        let mut conn = PgConn { rt, client: Some(client), driver: Some(driver), endpoint: ep.display.clone() };
        conn.batch(SESSION_SETTINGS, "setting up the session")?;
        if !extra.is_empty() {
            conn.batch(extra, "setting up the session")?;
        }
        Ok(conn)
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("the client lives as long as the connection")
    }

    fn err(&self, what: &str) -> impl FnOnce(tokio_postgres::Error) -> Error + '_ {
        let what = what.to_string();
        move |e| Error::sql(&self.endpoint, what, e)
    }

    pub fn batch(&mut self, sql: &str, what: &str) -> Result<()> {
        self.rt.block_on(self.client().batch_execute(sql)).map_err(self.err(what))
    }

    pub fn query(&mut self, sql: &str, params: Params<'_>, what: &str) -> Result<Vec<Row>> {
        self.rt.block_on(self.client().query(sql, params)).map_err(self.err(what))
    }

    pub fn query_opt(&mut self, sql: &str, params: Params<'_>, what: &str) -> Result<Option<Row>> {
        self.rt.block_on(self.client().query_opt(sql, params)).map_err(self.err(what))
    }

    pub fn query_one(&mut self, sql: &str, params: Params<'_>, what: &str) -> Result<Row> {
        self.rt.block_on(self.client().query_one(sql, params)).map_err(self.err(what))
    }

    pub fn execute(&mut self, sql: &str, params: Params<'_>, what: &str) -> Result<u64> {
        self.rt.block_on(self.client().execute(sql, params)).map_err(self.err(what))
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
        let sink = self.rt.block_on(self.client().copy_in::<_, Bytes>(sql)).map_err(self.err("starting COPY"))?;
        Ok(CopyIn { conn: self, sink: Box::pin(sink) })
    }

    /// Runs `COPY … TO STDOUT` and hands its data to `on_block` in blocks of at least
    /// `block_bytes` (the last may be smaller). Small messages (rows) are gathered into a block;
    /// a message that is a block on its own (a row with a huge value) is handed on as it came,
    /// without a copy. Stops early, without error, when `on_block` returns false.
    pub fn copy_out_blocks(
        &mut self,
        sql: &str,
        block_bytes: usize,
        mut on_block: impl FnMut(Bytes) -> Result<bool>,
    ) -> Result<()> {
        let endpoint = self.endpoint.clone();
        let err = |e| Error::sql(&endpoint, "reading COPY data from the source", e);
        let client = self.client();
        self.rt.block_on(async {
            let stream = client.copy_out(sql).await.map_err(err)?;
            futures_util::pin_mut!(stream);
            let mut gathered = BytesMut::new();
            while let Some(data) = stream.next().await {
                let data = data.map_err(err)?;
                if data.len() >= block_bytes {
                    // A block on its own goes on as it came, after what was gathered before it
                    // (copying a 50 MB row into the gathered block would double its memory).
                    if !gathered.is_empty() && !on_block(gathered.split().freeze())? {
                        return Ok(());
                    }
                    if !on_block(data)? {
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
                if gathered.len() >= block_bytes && !on_block(gathered.split().freeze())? {
                    return Ok(());
                }
            }
            if !gathered.is_empty() {
                on_block(gathered.freeze())?;
            }
            Ok(())
        })
    }

    /// The last column of the first row of any statement, as text (for queries the user
    /// supplies, whose result types are unknown).
    pub fn first_value_text(&mut self, sql: &str, what: &str) -> Result<Option<String>> {
        let messages = self.rt.block_on(self.client().simple_query(sql)).map_err(self.err(what))?;
        for message in messages {
            if let tokio_postgres::SimpleQueryMessage::Row(row) = message {
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
    /// messages of at most `MAX_COPY_MESSAGE` bytes, without copying it.
    pub fn write(&mut self, data: Bytes) -> Result<()> {
        let endpoint = &self.conn.endpoint;
        let sink = &mut self.sink;
        self.conn
            .rt
            .block_on(async {
                let mut start = 0;
                while start < data.len() {
                    let end = (start + MAX_COPY_MESSAGE).min(data.len());
                    sink.send(data.slice(start..end)).await?;
                    start = end;
                }
                Ok(())
            })
            .map_err(|e| Error::sql(endpoint, "writing COPY data to the target", e))
    }

    pub fn finish(mut self) -> Result<u64> {
        let endpoint = &self.conn.endpoint;
        self.conn
            .rt
            .block_on(self.sink.as_mut().finish())
            .map_err(|e| Error::sql(endpoint, "finishing COPY into the target", e))
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
