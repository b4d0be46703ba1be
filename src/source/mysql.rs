//! MySQL/MariaDB source: introspection into engine-neutral `Table`s with PostgreSQL DDL (the
//! type mapping table), key walking in the source's own collation order, and streaming chunk
//! extraction encoded straight into PostgreSQL binary COPY with canonical row hashes.
//!
//! SCAFFOLD: the interface is fixed (see `super::Source`); the bodies are being written.
//! `config::source_engine` refuses mysql:// URLs until they are.

use crate::config::{MyEndpoint, TableSpec};
use crate::copy_format::ChunkSummary;
use crate::error::{Error, Result};
use crate::plan::{Bound, Chunk};
use crate::schema::Table;

pub struct MySource {
    conn: mysql::Conn,
    endpoint: String,
}

impl MySource {
    pub fn connect(ep: &MyEndpoint) -> Result<Self> {
        let conn = mysql::Conn::new(ep.opts.clone()).map_err(|e| Error::Connect {
            endpoint: ep.display.clone(),
            detail: crate::error::redact(&e.to_string()),
        })?;
        Ok(MySource { conn, endpoint: ep.display.clone() })
    }

    pub fn describe_tables(&mut self, _specs: &[TableSpec]) -> Result<Vec<Table>> {
        let _ = &mut self.conn;
        Err(Error::input(format!("{}: MySQL/MariaDB sources are not supported yet", self.endpoint)))
    }

    pub fn next_boundary(&mut self, _table: &Table, _from: &Bound, _rows: u64) -> Result<Bound> {
        Err(Error::input("MySQL/MariaDB sources are not supported yet"))
    }

    pub fn extract_chunk(
        &mut self,
        _table: &Table,
        _chunk: &Chunk,
        _block_bytes: usize,
        _new_buffer: impl FnMut() -> Vec<u8>,
        _on_block: impl FnMut(Vec<u8>) -> Result<bool>,
    ) -> Result<ChunkSummary> {
        Err(Error::input("MySQL/MariaDB sources are not supported yet"))
    }

    pub fn sequence_position(&mut self, _source_sql: &str) -> Result<(i64, bool)> {
        Err(Error::input("MySQL/MariaDB sources are not supported yet"))
    }
}
