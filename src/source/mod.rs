//! Source engines: one module each for introspection, key walking and chunk extraction.
//!
//! `Source` is the one interface the rest of rangecopy sees. Whatever the engine, a chunk is
//! extracted as target-ready PostgreSQL binary COPY data (header, tuples, trailer) handed
//! over in blocks, plus a summary with the chunk's row count and canonical digest, so the
//! target side never needs to know where rows came from.

pub mod mysql;
pub mod postgres;

use crate::config::SourceEndpoint;
use crate::copy_format::{CapturedRow, ChunkSummary};
use crate::error::Result;
use crate::pg::PgConn;
use crate::plan::{Bound, Chunk};
use crate::schema::{SequenceSync, Table};

/// How one chunk is to be extracted, decided once per table before any chunk runs.
#[derive(Debug, Clone, Default)]
pub struct ChunkPrep {
    /// Array columns whose element type OID must be rewritten for the target:
    /// (index among the copied columns, target OID).
    pub elem_rewrites: Vec<(usize, u32)>,
}

/// A connection to the source database.
pub enum Source {
    Postgres(postgres::PgSource),
    Mysql(mysql::MySource),
}

impl Source {
    pub fn connect(ep: &SourceEndpoint) -> Result<Self> {
        match ep {
            SourceEndpoint::Postgres(pg) => Ok(Source::Postgres(postgres::PgSource::connect(pg)?)),
            SourceEndpoint::Mysql(my) => Ok(Source::Mysql(mysql::MySource::connect(my)?)),
        }
    }

    /// Resolves the named tables (every base table when none are named) and introspects them.
    pub fn describe_tables(&mut self, specs: &[crate::config::TableSpec]) -> Result<Vec<Table>> {
        match self {
            Source::Postgres(s) => s.describe_tables(specs),
            Source::Mysql(s) => s.describe_tables(specs),
        }
    }

    /// The key `rows` rows past `from` (inclusive): the next chunk boundary, `None` at the end.
    pub fn next_boundary(&mut self, table: &Table, from: &Bound, rows: u64) -> Result<Bound> {
        match self {
            Source::Postgres(s) => s.next_boundary(table, from, rows),
            Source::Mysql(s) => s.next_boundary(table, from, rows),
        }
    }

    /// Streams one chunk as binary COPY data in blocks of about `block_bytes`, taking buffers
    /// from `new_buffer` and handing each block and the number of rows in it to `on_block`
    /// (which returns false to stop early). Returns the chunk's rows, bytes and digest.
    pub fn extract_chunk(
        &mut self,
        table: &Table,
        chunk: &Chunk,
        prep: &ChunkPrep,
        block_bytes: usize,
        new_buffer: impl FnMut() -> Vec<u8>,
        on_block: impl FnMut(Vec<u8>, u64) -> Result<bool>,
    ) -> Result<ChunkSummary> {
        match self {
            Source::Postgres(s) => s.extract_chunk(table, chunk, prep, block_bytes, new_buffer, on_block),
            Source::Mysql(s) => s.extract_chunk(table, chunk, block_bytes, new_buffer, on_block),
        }
    }

    /// Reads one chunk for verification: its summary and, with `capture`, every row's
    /// canonical bytes and hash, without producing COPY data.
    /// `pace(rows, bytes)` is called for every block read, to hold the read to a rate.
    pub fn scan_range(
        &mut self,
        table: &Table,
        chunk: &Chunk,
        capture: bool,
        pace: &mut dyn FnMut(u64, u64) -> Result<()>,
    ) -> Result<(ChunkSummary, Vec<CapturedRow>)> {
        match self {
            Source::Postgres(s) => {
                postgres::scan_rows(s.conn(), &postgres::copy_out_sql(table, chunk), table, capture, pace)
            }
            Source::Mysql(s) => s.scan_range(table, chunk, capture, pace),
        }
    }

    /// Seconds the server lags behind its primary (0 when it is not a replica).
    pub fn replication_lag(&mut self) -> Result<f64> {
        match self {
            Source::Postgres(s) => s.replication_lag(),
            Source::Mysql(s) => s.replication_lag(),
        }
    }

    /// The number a `--throttle-query` returns.
    pub fn query_number(&mut self, sql: &str) -> Result<f64> {
        match self {
            Source::Postgres(s) => s.query_number(sql),
            Source::Mysql(s) => s.query_number(sql),
        }
    }

    /// The source position of a sequence to carry over: (last value, is_called).
    pub fn sequence_position(&mut self, seq: &SequenceSync) -> Result<(i64, bool)> {
        match self {
            Source::Postgres(s) => s.sequence_position(&seq.source_sql),
            Source::Mysql(s) => s.sequence_position(&seq.source_sql),
        }
    }

    /// The PostgreSQL connection of a PostgreSQL source (for engine-specific callers).
    pub fn pg_conn(&mut self) -> Option<&mut PgConn> {
        match self {
            Source::Postgres(s) => Some(s.conn()),
            Source::Mysql(_) => None,
        }
    }
}
