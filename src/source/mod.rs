//! Source engines: one module each for introspection, key walking and chunk extraction.
//!
//! `Source` is the one interface the rest of rangecopy sees. Whatever the engine, a chunk is
//! extracted as target-ready PostgreSQL binary COPY data (header, tuples, trailer) handed
//! over in blocks, plus a summary with the chunk's row count and canonical digest, so the
//! target side never needs to know where rows came from.

pub mod mysql;
pub mod pg_dump;
pub mod postgres;

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use bytes::Bytes;

use crate::config::SourceEndpoint;
use crate::copy_format::{ChunkSummary, RowSink};
use crate::error::{Error, Result};
use crate::pg::PgConn;
use crate::pipeline::Permit;
use crate::plan::{Bound, Chunk};
use crate::schema::{SequenceSync, Table};

/// How one chunk is to be extracted, decided once per table before any chunk runs.
#[derive(Debug, Clone, Default)]
pub struct ChunkPrep {
    /// Array columns whose element type OID must be rewritten for the target:
    /// (index among the copied columns, target OID).
    pub elem_rewrites: Vec<(usize, u32)>,
}

/// A block of a chunk's COPY data as a source hands it on.
pub struct Block {
    pub bytes: Bytes,
    /// Rows that end in this block.
    pub rows: u64,
    /// Held until the block is written to the target (or dropped): a huge MySQL/MariaDB row's
    /// share of the budget for rows read whole (see `mysql::SET_ASIDE_ABOVE`).
    pub hold: Option<Permit<'static>>,
}

impl Block {
    pub fn new(bytes: Bytes, rows: u64) -> Self {
        Block { bytes, rows, hold: None }
    }
}

/// A position in the source's change stream, where change-data-capture can start (P0) or
/// has to have reached (P1). Engine-neutral: PostgreSQL fills `lsn` (and `slot` when rangecopy
/// created one), MySQL/MariaDB the binlog file and position and the GTID set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourcePosition {
    /// `postgres` or `mysql` (MariaDB included).
    pub engine: String,
    /// PostgreSQL: the WAL LSN, `X/Y`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lsn: Option<String>,
    /// PostgreSQL: the logical replication slot created for the job (`--create-slot`), whose
    /// consistent point `lsn` is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
    /// MySQL/MariaDB: the binary log file and the position in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binlog_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binlog_pos: Option<u64>,
    /// MySQL: `@@gtid_executed`; MariaDB: `@@gtid_binlog_pos` (empty when GTIDs are off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid: Option<String>,
    /// When the position was read, by the source's clock (UTC, `YYYY-MM-DD HH:MM:SS.ffffff+00`).
    pub taken_at: String,
}

impl std::fmt::Display for SourcePosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(lsn) = &self.lsn {
            write!(f, "LSN {lsn}")?;
        }
        if let Some(slot) = &self.slot {
            write!(f, " (slot {slot})")?;
        }
        match (&self.binlog_file, self.binlog_pos) {
            (Some(file), Some(pos)) => write!(f, "binlog {file}:{pos}")?,
            _ if self.engine == "mysql" => write!(f, "binlog off")?,
            _ => {}
        }
        if let Some(gtid) = self.gtid.as_deref().filter(|g| !g.is_empty()) {
            write!(f, ", GTID {gtid}")?;
        }
        write!(f, " at {}", self.taken_at)
    }
}

/// One snapshot of the source that every worker reads (`--consistent`), and its position.
///
/// PostgreSQL: a connection keeps the transaction that exported the snapshot open for the
/// whole run; every worker (and the key walk) imports it per chunk, so workers can connect and
/// reconnect at any time while the exporter lives. MySQL/MariaDB: a snapshot cannot be shared,
/// so each worker connection was put into its own consistent-snapshot transaction under one
/// brief global read lock, and a worker takes one of those; a lost connection cannot rejoin.
pub enum Snapshot {
    Postgres {
        /// Holds the exporting transaction open; never used after the start.
        _exporter: Mutex<Box<postgres::PgSource>>,
        id: String,
    },
    Mysql {
        /// Connections inside the snapshot's transactions, one per worker.
        prepared: Mutex<Vec<Source>>,
    },
}

impl Snapshot {
    /// Opens the snapshot for `workers` workers and reads its position. `main` is the run's
    /// own source connection (PostgreSQL: it walks keys in the snapshot; MySQL: it takes the
    /// global read lock while the workers' transactions start).
    pub fn start(ep: &SourceEndpoint, main: &mut Source, workers: usize) -> Result<(Snapshot, SourcePosition)> {
        match (ep, main) {
            (SourceEndpoint::Postgres(pg), Source::Postgres(main)) => {
                let (exporter, id, position) = postgres::PgSource::export_snapshot(pg)?;
                main.use_snapshot(&id);
                Ok((Snapshot::Postgres { _exporter: Mutex::new(Box::new(exporter)), id }, position))
            }
            (SourceEndpoint::Mysql(my), Source::Mysql(main)) => {
                let mut conns = (0..workers).map(|_| mysql::MySource::connect(my)).collect::<Result<Vec<_>>>()?;
                let position = main.consistent_snapshots(&mut conns)?;
                let prepared = Mutex::new(conns.into_iter().map(Source::Mysql).collect());
                Ok((Snapshot::Mysql { prepared }, position))
            }
            _ => Err(Error::input("the source connection does not match the source URL; this is a bug")),
        }
    }

    /// A worker's source connection inside the snapshot.
    pub fn worker_source(&self, ep: &SourceEndpoint) -> Result<Source> {
        match self {
            Snapshot::Postgres { .. } => {
                let mut source = Source::connect(ep)?;
                self.attach(&mut source);
                Ok(source)
            }
            Snapshot::Mysql { prepared } => prepared.lock().unwrap_or_else(|e| e.into_inner()).pop().ok_or_else(|| {
                Error::input(
                    "--consistent: a MySQL/MariaDB worker lost its connection, and with it its place in the \
                     snapshot; resume the job (its copy is then no longer one consistent snapshot)",
                )
            }),
        }
    }

    /// Makes a fresh connection walk keys in the snapshot (PostgreSQL; MySQL/MariaDB walk keys
    /// outside it: chunk bounds only need to tile the key space).
    pub fn attach(&self, source: &mut Source) {
        if let (Snapshot::Postgres { id, .. }, Source::Postgres(s)) = (self, source) {
            s.use_snapshot(id);
        }
    }
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

    /// Learns what the target can hold that changes how tables are described (MySQL/MariaDB:
    /// whether spatial columns can be PostGIS geometry); called before `describe_tables`.
    pub fn learn_target(&mut self, target: &mut PgConn) -> Result<()> {
        match self {
            Source::Postgres(_) => Ok(()),
            Source::Mysql(s) => s.learn_target(target),
        }
    }

    /// Resolves the named tables (every base table when none are named) and introspects them.
    pub fn describe_tables(
        &mut self,
        specs: &[crate::config::TableSpec],
        excluded: &[crate::config::TablePattern],
    ) -> Result<Vec<Table>> {
        match self {
            Source::Postgres(s) => s.describe_tables(specs, excluded),
            Source::Mysql(s) => s.describe_tables(specs, excluded),
        }
    }

    /// The objects around `tables` that the target should have (or that the report must list
    /// as not carried over), in the order they are created.
    pub fn objects(
        &mut self,
        tables: &[Table],
        cfg: &crate::config::CopyConfig,
    ) -> Result<Vec<crate::objects::DbObject>> {
        match self {
            Source::Postgres(s) => s.objects(tables, cfg),
            Source::Mysql(s) => s.objects(tables, cfg),
        }
    }

    /// The table's columns as the source has them now, in order (none when it is gone).
    pub fn column_names(&mut self, table: &Table) -> Result<Vec<String>> {
        match self {
            Source::Postgres(s) => s.column_names(&table.name),
            Source::Mysql(s) => s.column_names(table),
        }
    }

    /// The key `rows` rows past `from` (inclusive): the next chunk boundary, `None` at the end.
    pub fn next_boundary(&mut self, table: &Table, from: &Bound, rows: u64) -> Result<Bound> {
        match self {
            Source::Postgres(s) => s.next_boundary(table, from, rows),
            Source::Mysql(s) => s.next_boundary(table, from, rows),
        }
    }

    /// Streams one chunk as binary COPY data in blocks of about `block_bytes`, handing each
    /// block to `on_block` (which returns false to stop early). Returns the chunk's rows, bytes
    /// and digest.
    pub fn extract_chunk(
        &mut self,
        table: &Table,
        chunk: &Chunk,
        prep: &ChunkPrep,
        block_bytes: usize,
        on_block: impl FnMut(Block) -> Result<bool>,
    ) -> Result<ChunkSummary> {
        match self {
            Source::Postgres(s) => s.extract_chunk(table, chunk, prep, block_bytes, on_block),
            Source::Mysql(s) => s.extract_chunk(table, chunk, block_bytes, on_block),
        }
    }

    /// Like [`next_boundary`](Self::next_boundary), among the keys below `until` only: the
    /// boundaries that cut the range `[from, until)` into parts.
    pub fn next_boundary_before(&mut self, table: &Table, from: &Bound, until: &Bound, rows: u64) -> Result<Bound> {
        match self {
            Source::Postgres(s) => s.next_boundary_before(table, from, until, rows),
            Source::Mysql(s) => s.next_boundary_before(table, from, until, rows),
        }
    }

    /// Reads one chunk for verification, without producing COPY data: its summary and, with
    /// `on_row`, every row's values (long ones as stand-ins, see
    /// [`RowEncoder::capturing`](crate::canonical::RowEncoder::capturing)) and hash, handed
    /// on as they are read. `pace(rows, bytes)` is called for every block read, to hold the
    /// read to a rate. `filter`, an SQL condition in the source's dialect, leaves rows out
    /// (`verify --since-column`).
    pub fn scan_range(
        &mut self,
        table: &Table,
        chunk: &Chunk,
        filter: Option<&str>,
        on_row: Option<RowSink<'_>>,
        pace: &mut dyn FnMut(u64, u64) -> Result<()>,
    ) -> Result<ChunkSummary> {
        match self {
            Source::Postgres(s) => {
                let sql = postgres::filtered_copy_sql(table, chunk, filter);
                postgres::scan_rows(s.conn(), &sql, table, on_row, pace)
            }
            Source::Mysql(s) => s.scan_range(table, chunk, filter, on_row, pace),
        }
    }

    /// The source's clock `min_age` ago, in UTC, as `YYYY-MM-DD HH:MM:SS.ffffff`: the one
    /// cutoff of a `verify --since-column` pass, used on both sides.
    pub fn clock_minus(&mut self, min_age: std::time::Duration) -> Result<String> {
        let micros = min_age.as_micros().min(i64::MAX as u128) as i64;
        let what = "reading the source's clock (--min-age)";
        match self {
            Source::Postgres(s) => {
                let sql = format!(
                    "SELECT to_char((now() - {micros} * interval '1 microsecond') AT TIME ZONE 'UTC', \
                     'YYYY-MM-DD HH24:MI:SS.US')"
                );
                Ok(s.conn().first_value_text(&sql, what)?.unwrap_or_default())
            }
            Source::Mysql(s) => s.clock_minus(micros, what),
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

    /// `--consistent`: refuses a source that would not keep one snapshot for a whole copy.
    pub fn check_snapshot_can_last(&mut self) -> Result<()> {
        match self {
            Source::Postgres(s) => s.check_snapshot_can_last(),
            Source::Mysql(_) => Ok(()),
        }
    }

    /// Refuses, naming them and the grant that is missing, sequences of `tables` whose
    /// positions this session may not read (they are carried over once a table is loaded:
    /// finding out then would fail the job after its copy).
    pub fn check_sequences_readable(&mut self, tables: &[&Table]) -> Result<()> {
        let Source::Postgres(s) = self else { return Ok(()) };
        let sqls: Vec<&str> =
            tables.iter().flat_map(|t| t.ddl.sequences.iter().map(|q| q.source_sql.as_str())).collect();
        let (role, missing) = s.unreadable_sequences(&sqls)?;
        if missing.is_empty() {
            return Ok(());
        }
        Err(Error::input(format!(
            "the source role {role} may not read the sequences {}, whose positions are carried over to the \
             target; grant it with:\n  GRANT SELECT ON SEQUENCE {} TO {role};\nnothing was written to the target",
            missing.join(", "),
            missing.join(", ")
        )))
    }

    /// The source's current position in its change stream (P0 before a job's first chunk,
    /// P1 after its last).
    pub fn position(&mut self) -> Result<SourcePosition> {
        match self {
            Source::Postgres(s) => s.position(),
            Source::Mysql(s) => s.position(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn at(engine: &str) -> SourcePosition {
        SourcePosition {
            engine: engine.into(),
            lsn: None,
            slot: None,
            binlog_file: None,
            binlog_pos: None,
            gtid: None,
            taken_at: "2026-01-02 03:04:05.000006+00".into(),
        }
    }

    #[test]
    fn positions_print_what_cdc_needs_per_engine() {
        let pg = SourcePosition { lsn: Some("0/16B3748".into()), slot: Some("shop_cdc".into()), ..at("postgres") };
        assert_eq!(pg.to_string(), "LSN 0/16B3748 (slot shop_cdc) at 2026-01-02 03:04:05.000006+00");
        let my = SourcePosition {
            binlog_file: Some("binlog.000006".into()),
            binlog_pos: Some(841743666),
            gtid: Some("0-1-1021".into()),
            ..at("mysql")
        };
        assert_eq!(my.to_string(), "binlog binlog.000006:841743666, GTID 0-1-1021 at 2026-01-02 03:04:05.000006+00");
        let off = SourcePosition { gtid: Some(String::new()), ..at("mysql") };
        assert_eq!(off.to_string(), "binlog off at 2026-01-02 03:04:05.000006+00");
    }

    #[test]
    fn positions_round_trip_through_the_state_without_empty_fields() {
        let pg = SourcePosition { lsn: Some("1/CE503488".into()), ..at("postgres") };
        let json = serde_json::to_value(&pg).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"engine": "postgres", "lsn": "1/CE503488", "taken_at": "2026-01-02 03:04:05.000006+00"})
        );
        assert_eq!(serde_json::from_value::<SourcePosition>(json).unwrap(), pg);
    }
}
