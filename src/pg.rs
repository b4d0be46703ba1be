//! PostgreSQL connections shared by the source and target sides: connecting with the session
//! settings every rangecopy session needs, and statement helpers that attach the endpoint
//! and what was being done to any error.
//!
//! Session settings make text forms of values exact and stable (ISO dates in UTC, shortest
//! exact floats, hex bytea), because chunk bounds travel as text and must round-trip.
//! This module must never decide policy (what to copy, what is retriable).

use postgres::{Client, NoTls, Row};

use crate::config::PgEndpoint;
use crate::error::{describe_pg_error, Error, Result};

/// Settings that make value text forms exact and engine-independent of the server's defaults.
const SESSION_SETTINGS: &str = "SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; \
     SET TimeZone = 'UTC'; SET extra_float_digits = 3; SET bytea_output = 'hex'; \
     SET standard_conforming_strings = on; SET client_encoding = 'UTF8'";

/// A connection that knows which endpoint it talks to, for error messages.
pub struct PgConn {
    pub client: Client,
    pub endpoint: String,
}

impl PgConn {
    /// Connects and applies the common session settings plus `extra` (a `;`-separated list).
    pub fn connect(ep: &PgEndpoint, extra: &str) -> Result<Self> {
        let client = ep
            .config
            .connect(NoTls)
            .map_err(|e| Error::Connect { endpoint: ep.display.clone(), detail: connect_hint(&e) })?;
        let mut conn = PgConn { client, endpoint: ep.display.clone() };
        conn.batch(SESSION_SETTINGS, "setting up the session")?;
        if !extra.is_empty() {
            conn.batch(extra, "setting up the session")?;
        }
        Ok(conn)
    }

    pub fn batch(&mut self, sql: &str, what: &str) -> Result<()> {
        self.client.batch_execute(sql).map_err(|e| Error::sql(&self.endpoint, what, e))
    }

    pub fn query(&mut self, sql: &str, params: &[&(dyn postgres::types::ToSql + Sync)], what: &str) -> Result<Vec<Row>> {
        self.client.query(sql, params).map_err(|e| Error::sql(&self.endpoint, what, e))
    }

    pub fn query_opt(
        &mut self,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
        what: &str,
    ) -> Result<Option<Row>> {
        self.client.query_opt(sql, params).map_err(|e| Error::sql(&self.endpoint, what, e))
    }

    pub fn query_one(&mut self, sql: &str, params: &[&(dyn postgres::types::ToSql + Sync)], what: &str) -> Result<Row> {
        self.client.query_one(sql, params).map_err(|e| Error::sql(&self.endpoint, what, e))
    }

    pub fn execute(&mut self, sql: &str, params: &[&(dyn postgres::types::ToSql + Sync)], what: &str) -> Result<u64> {
        self.client.execute(sql, params).map_err(|e| Error::sql(&self.endpoint, what, e))
    }

    /// The server's major version, e.g. 15.
    pub fn server_major_version(&mut self) -> Result<u32> {
        let row = self.query_one("SELECT current_setting('server_version_num')::int", &[], "reading the server version")?;
        Ok((row.get::<_, i32>(0) / 10000) as u32)
    }
}

/// Adds what to check to the driver's connection error.
fn connect_hint(err: &postgres::Error) -> String {
    let detail = describe_pg_error(err);
    let hint = match err.code().map(|c| c.code()) {
        Some("28P01") | Some("28000") => "; check the user name and password (URL or PGPASSWORD)",
        Some("3D000") => "; check the database name in the URL",
        _ if detail.contains("timed out") || detail.contains("refused") => {
            "; check that the server is running and the host and port are right"
        }
        _ => "",
    };
    format!("{detail}{hint}")
}
