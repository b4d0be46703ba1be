//! PostgreSQL source: finding tables, introspecting them into engine-neutral `Table`s with the
//! DDL that recreates them, walking keys to plan chunks, and the COPY query that extracts one.
//!
//! Every statement here is read-only and bounded by a chunk; the session is read-only.
//! This module must never write to the source, and never hold a lock across chunks.

use bytes::Bytes;
use std::collections::{HashMap, HashSet};

use super::{pg_dump, Block, ChunkPrep, SourcePosition};
use crate::config::{PgEndpoint, TablePattern, TableSpec};
use crate::copy_format::{ChunkHasher, ChunkSummary, RowSink};
use crate::error::{Error, Result};
use crate::objects::{DbObject, Phase, SchemaMode};
use crate::pg::PgConn;
use crate::plan::{Bound, Chunk};
use crate::schema::{quote_ident, quote_literal, Column, Key, LogicalType, SequenceSync, Table, TableName, TargetDdl};

/// Source sessions never write, and see names schema-qualified (search_path = pg_catalog) so
/// that introspected DDL names user types and sequences unambiguously.
const SOURCE_SESSION: &str = "SET default_transaction_read_only = on";

/// Sane limits for statements on a live source: a chunk never waits long behind another
/// session's lock (lock_timeout; retried), and no statement runs for hours. Each one is left
/// alone when the URL sets it (`?options=-c%20lock_timeout%3D30s`), so users can override it.
const SOURCE_LIMITS: [(&str, &str); 3] =
    [("lock_timeout", "10s"), ("statement_timeout", "1h"), ("idle_in_transaction_session_timeout", "0")];

/// The table alias of key walks.
const WALK_ALIAS: &str = "rangecopy_walk";

/// User objects start at this OID; anything below is built in and the same on every server.
const FIRST_NORMAL_OID: u32 = 16384;

pub struct PgSource {
    conn: PgConn,
    /// The user's schema search path, for resolving unqualified table names.
    search_path: Vec<String>,
    /// `--consistent`: the exported snapshot every chunk and key walk reads in.
    snapshot: Option<String>,
}

/// A base table found in the source catalog.
#[derive(Debug, Clone)]
struct Candidate {
    oid: u32,
    name: TableName,
    partitioned: bool,
}

impl PgSource {
    pub fn connect(ep: &PgEndpoint) -> Result<Self> {
        let mut conn = PgConn::connect(ep, SOURCE_SESSION)?;
        let given = ep.config.get_options().unwrap_or_default();
        for (setting, value) in SOURCE_LIMITS {
            if !given.contains(setting) {
                conn.batch(&format!("SET {setting} = '{value}'"), "setting up the session")?;
            }
        }
        // Unqualified table names resolve along the user's search path, read before ours replaces it.
        let search_path: Vec<String> =
            conn.query_one("SELECT current_schemas(false)::text[]", &[], "reading search_path")?.get(0);
        conn.batch("SET search_path = pg_catalog", "setting up the session")?;
        Ok(PgSource { conn, search_path, snapshot: None })
    }

    /// From now on, every chunk and key walk runs in a `REPEATABLE READ` transaction that
    /// imports the exported snapshot `id` first.
    pub fn use_snapshot(&mut self, id: &str) {
        self.snapshot = Some(id.to_string());
    }

    /// Runs `body` inside the snapshot, when there is one (the transaction is read-only and
    /// holds no lock past `body`).
    fn in_snapshot<T>(&mut self, what: &str, body: impl FnOnce(&mut PgConn) -> Result<T>) -> Result<T> {
        let Some(id) = &self.snapshot else { return body(&mut self.conn) };
        let begin =
            format!("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT {}", quote_literal(id));
        self.conn.batch(&begin, what).map_err(|e| match &e {
            // The exporting transaction is gone: the process's own (it never ends early) or
            // the server's doing, such as a standby's recovery conflict.
            Error::Sql { detail, .. } if detail.contains("invalid snapshot identifier") => Error::Sql {
                endpoint: self.conn.endpoint.clone(),
                what: what.to_string(),
                detail: format!(
                    "{detail}; the --consistent snapshot was ended by the source server (on a hot standby: a \
                     recovery conflict; set hot_standby_feedback = on and max_standby_streaming_delay = -1 there)"
                ),
                code: crate::error::ErrorCode::Other,
            },
            _ => e,
        })?;
        match body(&mut self.conn) {
            Ok(value) => {
                self.conn.batch("COMMIT", what)?;
                Ok(value)
            }
            Err(e) => {
                let _ = self.conn.batch("ROLLBACK", what);
                Err(e)
            }
        }
    }

    /// `--consistent` on a hot standby holds one snapshot for the whole copy; the standby
    /// cancels it as soon as replay conflicts with it for longer than
    /// `max_standby_streaming_delay` (a vacuum on the primary removing rows it still sees, a
    /// lock), and every chunk after that fails on "invalid snapshot identifier". Refused
    /// unless the standby is set up to keep it, saying what to set.
    pub fn check_snapshot_can_last(&mut self) -> Result<()> {
        let row = self.conn.query_one(
            "SELECT pg_is_in_recovery(), current_setting('hot_standby_feedback'),
                    current_setting('max_standby_streaming_delay'), current_setting('max_standby_archive_delay')",
            &[],
            "checking whether the source is a hot standby",
        )?;
        let (standby, feedback, streaming, archive): (bool, String, String, String) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        if !standby || (feedback == "on" && streaming == "-1" && archive == "-1") {
            return Ok(());
        }
        Err(Error::input(format!(
            "--consistent: the source is a hot standby (hot_standby_feedback = {feedback}, \
             max_standby_streaming_delay = {streaming}, max_standby_archive_delay = {archive}), which cancels a \
             long snapshot on its first recovery conflict; on the standby set hot_standby_feedback = on, \
             max_standby_streaming_delay = -1 and max_standby_archive_delay = -1 (then SELECT pg_reload_conf()), \
             or copy from the primary, or copy without --consistent"
        )))
    }

    /// `--consistent`: a new connection opens a `REPEATABLE READ` transaction, exports its
    /// snapshot and stays open (it must, for the snapshot to stay importable). Returns it, the
    /// snapshot's id and its position: the WAL LSN read just before the snapshot is taken, so
    /// every transaction committed before P0 is in the snapshot; those committing in between
    /// are in the snapshot and replayed from P0 as well, which idempotent replay absorbs.
    pub fn export_snapshot(ep: &PgEndpoint) -> Result<(PgSource, String, SourcePosition)> {
        let mut exporter = PgSource::connect(ep)?;
        let what = "exporting a snapshot (--consistent)";
        // The transaction idles for the whole run; a server-side idle timeout would end it.
        exporter.conn.batch("SET idle_in_transaction_session_timeout = 0", what)?;
        let position = exporter.position()?;
        let id: String = {
            exporter.conn.batch("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", what)?;
            exporter.conn.query_one("SELECT pg_export_snapshot()", &[], what)?.get(0)
        };
        Ok((exporter, id, position))
    }

    /// The WAL position: `pg_current_wal_lsn()`, or on a replica the last replayed LSN.
    pub fn position(&mut self) -> Result<SourcePosition> {
        let row = self.conn.query_one(
            "SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END)::text,
                    to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'",
            &[],
            "reading the source's WAL position",
        )?;
        Ok(SourcePosition {
            engine: "postgres".into(),
            lsn: row.get(0),
            slot: None,
            binlog_file: None,
            binlog_pos: None,
            gtid: None,
            taken_at: row.get(1),
        })
    }

    pub fn conn(&mut self) -> &mut PgConn {
        &mut self.conn
    }

    /// Resolves the tables named on the command line (or all base tables of all non-system
    /// schemas when none are named) and introspects each of them.
    pub fn describe_tables(&mut self, specs: &[TableSpec], excluded: &[TablePattern]) -> Result<Vec<Table>> {
        let candidates = self.candidates()?;
        let mut chosen: Vec<Candidate> = Vec::new();
        if specs.is_empty() {
            chosen.extend(candidates.iter().filter(|c| !c.partitioned).cloned());
        } else {
            for spec in specs {
                let found = resolve(spec, &candidates, &self.search_path)?;
                // A partitioned table is copied as its leaf partitions, each a table of its own.
                let leaves = match found.partitioned {
                    true => self.leaves(&found, &candidates)?,
                    false => vec![found],
                };
                for leaf in leaves {
                    if chosen.iter().any(|c| c.oid == leaf.oid) {
                        return Err(Error::input(format!("table {} is listed more than once", leaf.name)));
                    }
                    chosen.push(leaf);
                }
            }
        }
        chosen.retain(|c| !excluded.iter().any(|p| p.matches(&c.name)));
        if chosen.is_empty() {
            return Err(Error::input(format!(
                "the source database {} has no tables to copy outside the system schemas{}",
                self.conn.endpoint,
                if excluded.is_empty() { "" } else { " that --exclude-table leaves" }
            )));
        }
        chosen.iter().map(|c| self.describe(c)).collect()
    }

    /// Every table of the source outside the system schemas (partitions too, and partitioned
    /// parents, which hold no rows of their own).
    fn candidates(&mut self) -> Result<Vec<Candidate>> {
        let rows = self.conn.query(
            "SELECT c.oid::oid, n.nspname::text, c.relname::text, c.relkind = 'p'
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE c.relkind IN ('r', 'p')
                AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'rangecopy')
                AND n.nspname !~ '^pg_(toast|temp)'
                AND NOT EXISTS (SELECT 1 FROM pg_depend d
                                 WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
              ORDER BY 2, 3",
            &[],
            "listing source tables",
        )?;
        Ok(rows
            .iter()
            .map(|r| Candidate {
                oid: r.get(0),
                name: TableName::new(r.get::<_, String>(1), r.get::<_, String>(2)),
                partitioned: r.get(3),
            })
            .collect())
    }

    /// The leaf partitions of a partitioned table, at every level.
    fn leaves(&mut self, parent: &Candidate, candidates: &[Candidate]) -> Result<Vec<Candidate>> {
        let rows = self.conn.query(
            "SELECT relid::oid FROM pg_partition_tree($1::oid::regclass) WHERE isleaf",
            &[&parent.oid],
            &format!("listing the partitions of {}", parent.name),
        )?;
        let oids: Vec<u32> = rows.iter().map(|r| r.get(0)).collect();
        Ok(candidates.iter().filter(|c| oids.contains(&c.oid) && !c.partitioned).cloned().collect())
    }

    fn describe(&mut self, cand: &Candidate) -> Result<Table> {
        let what = format!("introspecting {}", cand.name);
        let rows = self.conn.query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                    pg_get_expr(d.adbin, d.adrelid), a.attidentity::text, a.attgenerated::text,
                    a.atttypid, CASE WHEN a.attcollation <> t.typcollation AND a.attcollation <> 0
                                     THEN quote_ident(cn.nspname) || '.' || quote_ident(co.collname) END,
                    pg_get_serial_sequence(quote_ident($2) || '.' || quote_ident($3), a.attname)
               FROM pg_attribute a
               JOIN pg_type t ON t.oid = a.atttypid
               LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
               LEFT JOIN pg_collation co ON co.oid = a.attcollation
               LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
              WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
              ORDER BY a.attnum",
            &[&cand.oid, &cand.name.schema, &cand.name.name],
            &what,
        )?;
        let mut types = TypeResolver::default();
        let mut columns = Vec::with_capacity(rows.len());
        let mut sequences = Vec::new();
        let mut sequence_ddl = Vec::new();
        let mut after_create = Vec::new();
        let mut col_sql = Vec::with_capacity(rows.len());
        for r in &rows {
            let name: String = r.get(0);
            let type_sql: String = r.get(1);
            let not_null: bool = r.get(2);
            let expr: Option<String> = r.get(3);
            let identity: String = r.get(4);
            let generated: String = r.get(5);
            let type_oid: u32 = r.get(6);
            let collation: Option<String> = r.get(7);
            let serial_seq: Option<String> = r.get(8);
            let (logical, elem) = types.logical(&mut self.conn, type_oid)?;
            let generated_sql = (generated == "s").then(|| expr.clone()).flatten();
            let default_sql = if generated_sql.is_some() { None } else { expr };
            // The sequence behind an identity or serial column, with its options, so the
            // target's sequence has the same type, bounds and step.
            let seq_options = match &serial_seq {
                Some(seq) => Some(self.sequence_options(seq)?),
                None => None,
            };
            let identity_sql = match (identity.as_str(), &seq_options) {
                ("a", Some((_, opts))) => Some(format!("GENERATED ALWAYS AS IDENTITY ({opts})")),
                ("d", Some((_, opts))) => Some(format!("GENERATED BY DEFAULT AS IDENTITY ({opts})")),
                _ => None,
            };
            if let (Some(seq), Some((seq_type, opts))) = (&serial_seq, &seq_options) {
                let target_sql = if identity_sql.is_some() {
                    // The identity creates its own sequence; find it by table and column name.
                    format!("pg_get_serial_sequence({}, {})", quote_literal(&cand.name.quoted()), quote_literal(&name))
                } else {
                    // A serial column's sequence must exist before the default that names it,
                    // and belongs to the column once the table exists.
                    sequence_ddl.push(format!("CREATE SEQUENCE IF NOT EXISTS {seq} AS {seq_type} {opts}"));
                    after_create.push(format!(
                        "ALTER SEQUENCE {seq} OWNED BY {}.{}",
                        cand.name.quoted(),
                        quote_ident(&name)
                    ));
                    quote_literal(seq)
                };
                sequences.push(SequenceSync { source_sql: format!("{}::regclass", quote_literal(seq)), target_sql });
            }
            let mut sql = format!("{} {}", quote_ident(&name), type_sql);
            if let Some(c) = &collation {
                sql.push_str(" COLLATE ");
                sql.push_str(c);
            }
            if let Some(id) = &identity_sql {
                sql.push(' ');
                sql.push_str(id);
            }
            if not_null {
                sql.push_str(" NOT NULL");
            }
            if let Some(d) = &default_sql {
                sql.push_str(" DEFAULT ");
                sql.push_str(d);
            }
            if let Some(g) = &generated_sql {
                sql.push_str(&format!(" GENERATED ALWAYS AS ({g}) STORED"));
            }
            col_sql.push(sql);
            let source_type = type_sql.clone();
            columns.push(Column {
                name,
                type_sql,
                logical,
                not_null,
                default_sql,
                identity_sql,
                generated_sql,
                user_elem_oid: elem.as_ref().map(|e| e.0),
                user_elem_type_sql: elem.map(|e| e.1),
                source_type,
            });
        }

        let key = self.find_key(cand, &columns)?;
        let (checks, deferred) = self.constraints_and_indexes(cand)?;
        col_sql.extend(checks);
        let mut prerequisites = vec![format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(&cand.name.schema))];
        prerequisites.extend(types.ddl);
        prerequisites.extend(sequence_ddl);
        let create_table = format!("CREATE TABLE {} (\n  {}\n)", cand.name.quoted(), col_sql.join(",\n  "));
        let stats = self.conn.query_one(
            "SELECT GREATEST(c.reltuples, 0)::int8, pg_table_size(c.oid)::int8 FROM pg_class c WHERE c.oid = $1",
            &[&cand.oid],
            &what,
        )?;
        Ok(Table {
            name: cand.name.clone(),
            target: cand.name.clone(),
            columns,
            key,
            estimated_rows: stats.get::<_, i64>(0) as u64,
            estimated_bytes: stats.get::<_, i64>(1) as u64,
            ddl: TargetDdl { prerequisites, create_table, after_create, deferred, sequences },
            partitioned: cand.partitioned,
            changes: Vec::new(),
        })
    }

    /// A sequence's type and its CREATE SEQUENCE options (start, step, bounds, cache, cycle).
    fn sequence_options(&mut self, seq: &str) -> Result<(String, String)> {
        let row = self.conn.query_one(
            "SELECT format_type(seqtypid, NULL), seqstart, seqincrement, seqmin, seqmax, seqcache, seqcycle
               FROM pg_sequence WHERE seqrelid = $1::text::regclass",
            &[&seq],
            &format!("reading sequence {seq}"),
        )?;
        let opts = format!(
            "START WITH {} INCREMENT BY {} MINVALUE {} MAXVALUE {} CACHE {} {}",
            row.get::<_, i64>(1),
            row.get::<_, i64>(2),
            row.get::<_, i64>(3),
            row.get::<_, i64>(4),
            row.get::<_, i64>(5),
            if row.get::<_, bool>(6) { "CYCLE" } else { "NO CYCLE" }
        );
        Ok((row.get(0), opts))
    }

    /// The primary key, else the narrowest unique, non-partial, expression-free index whose
    /// columns are all NOT NULL.
    fn find_key(&mut self, cand: &Candidate, columns: &[Column]) -> Result<Option<Key>> {
        let rows = self.conn.query(
            "SELECT i.indisprimary, ic.relname::text,
                    (i.indkey::int2[])[0:i.indnkeyatts - 1]
               FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
              WHERE i.indrelid = $1 AND (i.indisprimary OR i.indisunique) AND i.indisvalid
                AND i.indpred IS NULL AND i.indexprs IS NULL
              ORDER BY i.indisprimary DESC, i.indnkeyatts, ic.relname",
            &[&cand.oid],
            &format!("finding the key of {}", cand.name),
        )?;
        let attnums = self.attnums(cand)?;
        for r in rows {
            let primary: bool = r.get(0);
            let index: String = r.get(1);
            let keys: Vec<i16> = r.get(2);
            let Some(idx) = keys.iter().map(|k| attnums.get(k).copied()).collect::<Option<Vec<usize>>>() else {
                continue;
            };
            if !idx.iter().all(|&i| columns[i].not_null) {
                continue;
            }
            let names: Vec<String> = idx.iter().map(|&i| quote_ident(&columns[i].name)).collect();
            let description = if primary {
                format!("primary key ({})", names.join(", "))
            } else {
                format!("unique index {} ({})", quote_ident(&index), names.join(", "))
            };
            return Ok(Some(Key { columns: idx, description }));
        }
        Ok(None)
    }

    /// Maps attribute numbers to positions in the column list (dropped columns leave gaps).
    fn attnums(&mut self, cand: &Candidate) -> Result<HashMap<i16, usize>> {
        let rows = self.conn.query(
            "SELECT attnum FROM pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            &[&cand.oid],
            &format!("introspecting {}", cand.name),
        )?;
        Ok(rows.iter().enumerate().map(|(i, r)| (r.get::<_, i16>(0), i)).collect())
    }

    /// CHECK constraints that go into CREATE TABLE, and the deferred DDL: primary key, unique
    /// and exclusion constraints, NOT VALID checks, and plain indexes.
    fn constraints_and_indexes(&mut self, cand: &Candidate) -> Result<(Vec<String>, Vec<String>)> {
        let what = format!("reading constraints and indexes of {}", cand.name);
        let rows = self.conn.query(
            "SELECT conname::text, contype::text, pg_get_constraintdef(oid), convalidated
               FROM pg_constraint WHERE conrelid = $1 AND contype IN ('p', 'u', 'x', 'c')
              ORDER BY contype = 'p' DESC, contype, conname",
            &[&cand.oid],
            &what,
        )?;
        let mut inline = Vec::new();
        let mut deferred = Vec::new();
        for r in rows {
            let name: String = r.get(0);
            let kind: String = r.get(1);
            let def: String = r.get(2);
            let validated: bool = r.get(3);
            if kind == "c" && validated {
                inline.push(format!("CONSTRAINT {} {def}", quote_ident(&name)));
            } else {
                deferred.push(format!(
                    "ALTER TABLE {} ADD CONSTRAINT {} {def}",
                    cand.name.quoted(),
                    quote_ident(&name)
                ));
            }
        }
        let rows = self.conn.query(
            "SELECT pg_get_indexdef(i.indexrelid)
               FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
              WHERE i.indrelid = $1
                AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid AND c.conrelid = i.indrelid)
              ORDER BY ic.relname",
            &[&cand.oid],
            &what,
        )?;
        // A partitioned parent's indexes are `ON ONLY`; the target table is a plain one.
        deferred.extend(rows.iter().map(|r| r.get::<_, String>(0).replacen(" ON ONLY ", " ON ", 1)));
        Ok((inline, deferred))
    }

    /// The key tuple `rows` rows past `from` (inclusive), as text: the next chunk boundary.
    /// `None` means fewer rows remain, so the chunk starting at `from` is the last.
    pub fn next_boundary(&mut self, table: &Table, from: &Bound, rows: u64) -> Result<Bound> {
        self.next_boundary_before(table, from, &None, rows)
    }

    /// Like [`next_boundary`](Self::next_boundary), among the keys below `until` only.
    pub fn next_boundary_before(&mut self, table: &Table, from: &Bound, until: &Bound, rows: u64) -> Result<Bound> {
        let key = table.key_columns();
        // Every key reference is qualified by the table's alias: ORDER BY a bare name would
        // pick an output column of that name (the key's text form) and sort the text.
        let cols: Vec<String> = key.iter().map(|c| format!("{WALK_ALIAS}.{}", quote_ident(&c.name))).collect();
        let select: Vec<String> = cols.iter().map(|c| format!("{c}::text")).collect();
        let mut sql = format!("SELECT {} FROM {} AS {WALK_ALIAS}", select.join(", "), from_clause(table));
        let mut conds = Vec::new();
        if let Some(lo) = from {
            conds.push(compare(&cols, &key, ">=", lo));
        }
        if let Some(hi) = until {
            conds.push(compare(&cols, &key, "<", hi));
        }
        if !conds.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conds.join(" AND "));
        }
        sql.push_str(&format!(" ORDER BY {} OFFSET {rows} LIMIT 1", cols.join(", ")));
        let what = format!("walking the key of {}", table.name);
        // Walking far along a key may take long without a word from the server.
        let row = self.in_snapshot(&what, |conn| conn.patiently(|conn| conn.query_opt(&sql, &[], &what)))?;
        let next: Bound = row.map(|r| (0..key.len()).map(|i| r.get::<_, String>(i)).collect());
        if next.is_some() && &next == from {
            // A boundary that does not advance would plan the same empty chunk forever.
            return Err(Error::input(format!(
                "walking the key of {} did not advance past {:?}; its key's text form does not round-trip",
                table.name, next
            )));
        }
        Ok(next)
    }

    /// Streams one chunk's binary COPY output, hashing each tuple and rewriting array element
    /// OIDs on the way, in blocks for the target.
    pub fn extract_chunk(
        &mut self,
        table: &Table,
        chunk: &Chunk,
        prep: &ChunkPrep,
        block_bytes: usize,
        mut on_block: impl FnMut(Block) -> Result<bool>,
    ) -> Result<ChunkSummary> {
        let columns: Vec<&Column> = table.copied_columns().collect();
        let mut hasher = ChunkHasher::new(&columns);
        for &(col, oid) in &prep.elem_rewrites {
            hasher = hasher.with_elem_oid_rewrite(col, oid);
        }
        let sql = copy_out_sql(table, chunk);
        let mut rows_sent = 0;
        let mut hash_block = |block: Bytes| -> Result<bool> {
            // Forwarded as read (no copy) unless array element OIDs must be rewritten.
            let block = if hasher.rewrites() {
                let mut out = Vec::with_capacity(block.len());
                hasher.feed(&block, &mut out)?;
                Bytes::from(out)
            } else {
                hasher.hash(&block)?;
                block
            };
            let rows = hasher.rows() - rows_sent;
            rows_sent = hasher.rows();
            if block.is_empty() {
                return Ok(true);
            }
            on_block(Block::new(block, rows))
        };
        self.in_snapshot("reading a chunk in the snapshot", |conn| {
            conn.copy_out_blocks(&sql, block_bytes, &mut hash_block)
        })?;
        Ok(hasher.finish()?)
    }

    /// Seconds this server's replay lags behind its primary; 0 on a primary, or on a replica
    /// that has replayed everything it received (an idle primary writes nothing to replay).
    pub fn replication_lag(&mut self) -> Result<f64> {
        let row = self.conn.query_one(
            "SELECT CASE WHEN NOT pg_is_in_recovery() THEN 0
                         WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
                         ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0) END::float8",
            &[],
            "reading the replication lag",
        )?;
        Ok(row.get(0))
    }

    /// The number a `--throttle-query` returns (its first row's last column).
    /// It runs with the user's search path (the session's own is pg_catalog), so it names
    /// tables the way the user would.
    pub fn query_number(&mut self, sql: &str) -> Result<f64> {
        let what = "running --throttle-query";
        let path: Vec<String> = self.search_path.iter().map(|s| quote_ident(s)).collect();
        let path = if path.is_empty() { "pg_catalog".to_string() } else { path.join(", ") };
        self.conn.batch(&format!("SET search_path = {path}"), what)?;
        let result = self.conn.first_value_text(sql, what);
        self.conn.batch("SET search_path = pg_catalog", what)?;
        let text = result?.unwrap_or_else(|| "0".into());
        text.trim()
            .parse()
            .map_err(|_| Error::input(format!("--throttle-query returned {text:?}, which is not a number")))
    }

    /// The sequences among `source_sqls` (`'name'::regclass` expressions) that this session
    /// may not read, as names, with the session's role: reading a position takes `SELECT` on
    /// the sequence, which `SELECT` on its table does not give.
    pub fn unreadable_sequences(&mut self, source_sqls: &[&str]) -> Result<(String, Vec<String>)> {
        let role = self.conn.query_one("SELECT quote_ident(current_user)", &[], "reading the source role")?.get(0);
        if source_sqls.is_empty() {
            return Ok((role, Vec::new()));
        }
        let values: Vec<String> = source_sqls.iter().map(|s| format!("({s})")).collect();
        let rows = self.conn.query(
            &format!(
                "SELECT v.s::text FROM (VALUES {}) v(s) WHERE NOT has_sequence_privilege(v.s, 'SELECT') ORDER BY 1",
                values.join(", ")
            ),
            &[],
            "checking that the source role may read its sequences",
        )?;
        Ok((role, rows.iter().map(|r| r.get(0)).collect()))
    }

    /// The objects around `tables`, from the source's own pg_dump (see `source::pg_dump`):
    /// everything its pre-data section holds, before the load; after it, the post-data section
    /// without what each table builds itself once loaded (its primary key, unique constraints
    /// and indexes), foreign keys added `NOT VALID` and then validated, every sequence's
    /// position, large objects, and statistics of partitioned parents.
    pub fn objects(&mut self, tables: &[Table], cfg: &crate::config::CopyConfig) -> Result<Vec<DbObject>> {
        let crate::config::SourceEndpoint::Postgres(ep) = &cfg.source else { return Ok(Vec::new()) };
        if cfg.schema_mode == SchemaMode::DataOnly {
            return Ok(Vec::new());
        }
        let what = "reading the source's objects";
        let version: String = self.conn.query_one("SHOW server_version_num", &[], what)?.get(0);
        let major = version.parse::<u32>().unwrap_or(0) / 10000;
        let names: Vec<String> = tables.iter().map(|t| t.name.quoted()).collect();
        let oids: Vec<u32> = self
            .conn
            .query("SELECT to_regclass(n)::oid FROM unnest($1::text[]) n", &[&names], what)?
            .iter()
            .filter_map(|r| r.get::<_, Option<u32>>(0))
            .collect();
        let whole = cfg.tables.is_empty() && cfg.exclude_tables.is_empty();
        let excluded = if whole { Vec::new() } else { self.unselected_tables(&oids)? };
        let opts =
            pg_dump::DumpOptions { excluded: &excluded, no_owner: cfg.no_owner, no_privileges: cfg.no_privileges };
        let dump = pg_dump::dump(ep, major, &opts)?;
        // What each table builds itself once loaded; with --schema-only, nothing is loaded.
        let built: HashSet<u32> = match cfg.schema_mode {
            SchemaMode::SchemaOnly => HashSet::new(),
            _ => self
                .conn
                .query(
                    "SELECT oid FROM pg_constraint WHERE conrelid = ANY($1)
                        AND (contype IN ('p', 'u', 'x') OR (contype = 'c' AND NOT convalidated))
                     UNION ALL SELECT indexrelid FROM pg_index WHERE indrelid = ANY($1)",
                    &[&oids],
                    what,
                )?
                .iter()
                .map(|r| r.get(0))
                .collect(),
        };
        // Foreign keys: how to validate each, and which are added valid at once: on a
        // partitioned table NOT VALID is refused (before PostgreSQL 18), and one referencing a
        // partitioned table added NOT VALID gets one hidden constraint per partition that
        // VALIDATE CONSTRAINT leaves not validated.
        let foreign_keys: HashMap<u32, (String, bool)> = self
            .conn
            .query(
                "SELECT c.oid, format('ALTER TABLE %s VALIDATE CONSTRAINT %I', c.conrelid::regclass, c.conname),
                        r.relkind = 'p' OR f.relkind = 'p'
                   FROM pg_constraint c JOIN pg_class r ON r.oid = c.conrelid JOIN pg_class f ON f.oid = c.confrelid
                  WHERE c.contype = 'f'",
                &[],
                what,
            )?
            .iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2))))
            .collect();
        let mut before = Vec::new();
        let mut sequences = Vec::new();
        let mut parents = Vec::new();
        let table_oids: Vec<u32> = dump.pre.iter().filter(|e| e.kind == "TABLE").map(|e| e.oid).collect();
        // A schema-only dump creates materialized views empty: those the source has populated
        // are refreshed once everything they read is there.
        let populated: HashSet<u32> = self
            .conn
            .query("SELECT oid FROM pg_class WHERE relkind = 'm' AND relispopulated", &[], what)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut refreshes = Vec::new();
        let partitioned: HashSet<u32> = self
            .conn
            .query("SELECT oid FROM pg_class WHERE oid = ANY($1) AND relkind = 'p'", &[&table_oids], what)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for e in &dump.pre {
            let qualified = || format!("{}.{}", quote_ident(e.schema.as_deref().unwrap_or("")), quote_ident(&e.name));
            if e.kind == "SEQUENCE" {
                sequences.push(DbObject::created("SEQUENCE SET", e.display_name(), Phase::After, qualified()));
            }
            if e.kind == "MATERIALIZED VIEW" && populated.contains(&e.oid) {
                refreshes.push(DbObject::created(
                    "MATERIALIZED VIEW DATA",
                    e.display_name(),
                    Phase::After,
                    format!("REFRESH MATERIALIZED VIEW {}", qualified()),
                ));
            }
            if e.kind == "TABLE" && partitioned.contains(&e.oid) {
                parents.push(DbObject::created(
                    "STATISTICS",
                    e.display_name(),
                    Phase::After,
                    format!("ANALYZE {}", qualified()),
                ));
            }
            before.push(DbObject::created(&e.kind, e.display_name(), Phase::Before, &e.sql));
        }
        let mut after = sequences;
        for e in &dump.post {
            let own = matches!(e.kind.as_str(), "INDEX" | "CONSTRAINT" | "CHECK CONSTRAINT");
            if own && built.contains(&e.oid) {
                // The table builds the index itself; what the entry says besides (REPLICA
                // IDENTITY USING INDEX, CLUSTER ON) still applies.
                let rest: Vec<&str> = e.sql.split(";\n").skip(1).map(str::trim).filter(|s| !s.is_empty()).collect();
                if !rest.is_empty() {
                    let sql = rest.iter().map(|s| s.trim_end_matches(';')).collect::<Vec<_>>().join(";\n") + ";";
                    after.push(DbObject::created("INDEX OPTIONS", e.display_name(), Phase::After, sql));
                }
                continue;
            }
            let mut object = DbObject::created(&e.kind, e.display_name(), Phase::After, &e.sql);
            if e.kind == "FK CONSTRAINT" {
                if let (Some((validate, false)), Some(sql)) = (foreign_keys.get(&e.oid), pg_dump::not_valid(&e.sql)) {
                    object.sql = sql;
                    object.validate = Some(validate.clone());
                }
            }
            after.push(object);
        }
        after.extend(refreshes);
        let large_objects: i64 = self.conn.query_one("SELECT count(*) FROM pg_largeobject_metadata", &[], what)?.get(0);
        if large_objects > 0 {
            after.push(DbObject::created(
                "LARGE OBJECTS",
                format!("{large_objects} large objects"),
                Phase::After,
                "large objects",
            ));
        }
        after.extend(parents);
        before.extend(after);
        Ok(before)
    }

    /// The source's tables that the dump leaves out: all but `selected` and the tables they
    /// inherit from or are partitions of (those must exist on the target for them).
    fn unselected_tables(&mut self, selected: &[u32]) -> Result<Vec<TableName>> {
        let rows = self.conn.query(
            "WITH RECURSIVE keep(oid) AS (
                 SELECT unnest($1::oid[])
                 UNION SELECT i.inhparent FROM pg_inherits i JOIN keep k ON k.oid = i.inhrelid)
             SELECT n.nspname::text, c.relname::text
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE c.relkind IN ('r', 'p') AND c.oid NOT IN (SELECT oid FROM keep)
                AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp)'",
            &[&selected],
            "choosing the tables to dump",
        )?;
        Ok(rows.iter().map(|r| TableName::new(r.get::<_, String>(0), r.get::<_, String>(1))).collect())
    }

    /// Large objects' OIDs, in order.
    pub fn large_objects(&mut self) -> Result<Vec<u32>> {
        let rows =
            self.conn.query("SELECT oid FROM pg_largeobject_metadata ORDER BY oid", &[], "listing large objects")?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Up to `len` bytes of a large object from `offset` (empty past its end).
    pub fn large_object_part(&mut self, oid: u32, offset: i64, len: i32) -> Result<Vec<u8>> {
        let row = self.conn.query_one(
            "SELECT lo_get($1, $2, $3)",
            &[&oid, &offset, &len],
            &format!("reading large object {oid}"),
        )?;
        Ok(row.get(0))
    }

    /// The table's columns as the source has them now, in order (none when it is gone).
    pub fn column_names(&mut self, name: &TableName) -> Result<Vec<String>> {
        let what = format!("reading the columns of {name}");
        let rows = self.conn.query(
            "SELECT attname::text FROM pg_attribute
              WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            &[&name.quoted()],
            &what,
        )?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Reads a sequence's position: (last_value, is_called).
    pub fn sequence_position(&mut self, source_sql: &str) -> Result<(i64, bool)> {
        let row = self.conn.query_one(
            &format!("SELECT last_value, is_called FROM {}", regclass_to_relation(source_sql)),
            &[],
            "reading a sequence position",
        )?;
        Ok((row.get(0), row.get(1)))
    }
}

/// Whether a replication slot of that name exists on the source's server.
pub fn slot_exists(conn: &mut PgConn, name: &str) -> Result<bool> {
    let row = conn.query_one(
        "SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)",
        &[&name],
        "looking for the replication slot",
    )?;
    Ok(row.get(0))
}

/// `--create-slot`: creates a logical replication slot in the source database with `plugin`
/// on a connection of its own (source sessions are read-only) and returns its consistent
/// point as the position. It waits for the source's running write transactions to end.
pub fn create_slot(ep: &PgEndpoint, name: &str, plugin: &str) -> Result<SourcePosition> {
    let mut conn = PgConn::connect(ep, "")?;
    let what = format!("creating the logical replication slot {name:?}");
    // Waiting for the running transactions to end is no silence.
    let row = conn.patiently(|conn| {
        conn.query_one(
            "SELECT lsn::text, to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'
               FROM pg_create_logical_replication_slot($1, $2)",
            &[&name, &plugin],
            &what,
        )
    })?;
    Ok(SourcePosition {
        engine: "postgres".into(),
        lsn: row.get(0),
        slot: Some(name.to_string()),
        binlog_file: None,
        binlog_pos: None,
        gtid: None,
        taken_at: row.get(1),
    })
}

/// Drops a slot `create_slot` made, when the job it was made for could not be set up.
pub fn drop_slot(ep: &PgEndpoint, name: &str) -> Result<()> {
    let mut conn = PgConn::connect(ep, "")?;
    conn.execute("SELECT pg_drop_replication_slot($1)", &[&name], "dropping the replication slot").map(|_| ())
}

/// `COPY (SELECT … WHERE key in [lo, hi) ORDER BY key) TO STDOUT (FORMAT binary)` for a chunk.
pub fn copy_out_sql(table: &Table, chunk: &Chunk) -> String {
    range_copy_sql(table, &from_clause(table), chunk)
}

/// The condition that a row's key is in a chunk's range (`None` for an unbounded chunk), on
/// the source or on its copy on the target (same column names and types).
pub fn range_condition(table: &Table, chunk: &Chunk) -> Option<String> {
    let key = table.key_columns();
    let mut conds: Vec<String> = chunk.lo.iter().map(|lo| key_compare(&key, ">=", lo)).collect();
    conds.extend(chunk.hi.iter().map(|hi| key_compare(&key, "<", hi)));
    (!conds.is_empty()).then(|| conds.join(" AND "))
}

/// `copy_out_sql`, with the rows that match `filter` only (an SQL condition).
pub fn filtered_copy_sql(table: &Table, chunk: &Chunk, filter: Option<&str>) -> String {
    span_copy_sql_where(table, &from_clause(table), chunk.lo.iter(), chunk.hi.iter(), filter)
}

/// The same COPY of a chunk's key range, from `relation` (the source table, or its copy on
/// the target, whose columns have the same names and types).
pub fn range_copy_sql(table: &Table, relation: &str, chunk: &Chunk) -> String {
    span_copy_sql(table, relation, chunk.lo.iter(), chunk.hi.iter())
}

/// The COPY of the rows whose key is at or above every one of `lows` and below every one of
/// `highs` (none: unbounded), in key order.
pub fn span_copy_sql<'a>(
    table: &Table,
    relation: &str,
    lows: impl Iterator<Item = &'a Vec<String>>,
    highs: impl Iterator<Item = &'a Vec<String>>,
) -> String {
    span_copy_sql_where(table, relation, lows, highs, None)
}

/// `span_copy_sql`, with the rows that match `filter` only (an SQL condition).
pub fn span_copy_sql_where<'a>(
    table: &Table,
    relation: &str,
    lows: impl Iterator<Item = &'a Vec<String>>,
    highs: impl Iterator<Item = &'a Vec<String>>,
    filter: Option<&str>,
) -> String {
    let cols: Vec<String> = table.copied_columns().map(|c| quote_ident(&c.name)).collect();
    let key = table.key_columns();
    let mut sql = format!("COPY (SELECT {} FROM {relation}", cols.join(", "));
    let mut conds: Vec<String> = lows.map(|lo| key_compare(&key, ">=", lo)).collect();
    conds.extend(highs.map(|hi| key_compare(&key, "<", hi)));
    conds.extend(filter.map(|f| format!("({f})")));
    if !conds.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conds.join(" AND "));
    }
    if !key.is_empty() {
        let order: Vec<String> = key.iter().map(|c| quote_ident(&c.name)).collect();
        sql.push_str(" ORDER BY ");
        sql.push_str(&order.join(", "));
    }
    sql.push_str(") TO STDOUT (FORMAT binary)");
    sql
}

/// Reads a chunk's COPY data through a hasher without forwarding it: its summary, and with
/// `on_row` every row's values (long ones as stand-ins) and hash, in the order read.
/// `pace(rows, bytes)` is called for every block read, to hold the read to a rate.
pub fn scan_rows(
    conn: &mut PgConn,
    sql: &str,
    table: &Table,
    mut on_row: Option<RowSink<'_>>,
    pace: &mut dyn FnMut(u64, u64) -> Result<()>,
) -> Result<ChunkSummary> {
    let columns: Vec<&Column> = table.copied_columns().collect();
    let mut hasher = ChunkHasher::new(&columns);
    if on_row.is_some() {
        hasher = hasher.capturing_rows();
    }
    let mut rows_seen = 0;
    conn.copy_out_blocks(sql, BLOCK, |block| {
        hasher.hash(&block)?;
        if let Some(sink) = on_row.as_deref_mut() {
            // Rows are handed on block by block, so no more than a block's are held.
            hasher.drain_captured(sink);
        }
        pace(hasher.rows() - rows_seen, block.len() as u64)?;
        rows_seen = hasher.rows();
        Ok(true)
    })?;
    Ok(hasher.finish()?)
}

/// Block size for scans that only hash.
const BLOCK: usize = 1 << 20;

/// `ONLY` keeps inheritance children's rows out of a plain table's copy; partitioned tables
/// are read whole through their parent (`ONLY` would read nothing).
fn from_clause(table: &Table) -> String {
    if table.partitioned {
        table.name.quoted()
    } else {
        format!("ONLY {}", table.name.quoted())
    }
}

/// `(k1, k2) op ('v1'::t1, 'v2'::t2)`, comparing in the key columns' own types and collations.
fn key_compare(key: &[&Column], op: &str, values: &[String]) -> String {
    let lhs: Vec<String> = key.iter().map(|c| quote_ident(&c.name)).collect();
    compare(&lhs, key, op, values)
}

/// `(e1, e2) op ('v1'::t1, 'v2'::t2)` for key expressions `lhs` of the columns `key`.
fn compare(lhs: &[String], key: &[&Column], op: &str, values: &[String]) -> String {
    let rhs: Vec<String> =
        key.iter().zip(values).map(|(c, v)| format!("{}::{}", quote_literal(v), c.type_sql)).collect();
    if key.len() == 1 {
        format!("{} {op} {}", lhs[0], rhs[0])
    } else {
        format!("({}) {op} ({})", lhs.join(", "), rhs.join(", "))
    }
}

/// `'s.seq'::regclass` → `s.seq` (the literal's text is already a quoted, qualified name).
fn regclass_to_relation(sql: &str) -> String {
    sql.trim_end_matches("::regclass").trim_matches('\'').replace("''", "'")
}

fn resolve(spec: &TableSpec, candidates: &[Candidate], search_path: &[String]) -> Result<Candidate> {
    let matches_name = |c: &Candidate, fold: bool| {
        let eq = |a: &str, b: &str| if fold { a == b.to_lowercase() } else { a == b };
        eq(&c.name.name, &spec.name) && spec.schema.as_deref().is_none_or(|s| eq(&c.name.schema, s))
    };
    let mut found: Vec<&Candidate> = candidates.iter().filter(|c| matches_name(c, false)).collect();
    if found.is_empty() && !spec.quoted {
        found = candidates.iter().filter(|c| matches_name(c, true)).collect();
    }
    match found.len() {
        0 => {
            let wanted = crate::schema::named_table(spec.schema.as_deref(), &spec.name);
            Err(Error::input(format!(
                "table {wanted} not found in the source (only base tables of non-system schemas are copied){}",
                crate::schema::did_you_mean(&wanted, candidates.iter().map(|c| &c.name))
            )))
        }
        1 => Ok(found[0].clone()),
        _ => {
            // Unqualified and in several schemas: take the first on the search path, as SQL would.
            for schema in search_path {
                if let Some(c) = found.iter().find(|c| &c.name.schema == schema) {
                    return Ok((*c).clone());
                }
            }
            let names: Vec<String> = found.iter().map(|c| c.name.to_string()).collect();
            Err(Error::input(format!(
                "table {:?} exists in several schemas ({}); name it as schema.table",
                spec.name,
                names.join(", ")
            )))
        }
    }
}

/// Maps type OIDs to logical types, collecting the DDL of the user-defined types it meets
/// (enums and domains), in dependency order.
#[derive(Default)]
struct TypeResolver {
    seen: HashSet<u32>,
    ddl: Vec<String>,
}

impl TypeResolver {
    /// The logical type of `oid`, and for arrays of user-defined types the element's
    /// (OID, DDL name).
    fn logical(&mut self, conn: &mut PgConn, oid: u32) -> Result<(LogicalType, Option<(u32, String)>)> {
        let row = conn.query_one(
            "SELECT t.typtype::text, t.typbasetype, t.typelem, t.typsend::text, format_type(t.oid, NULL),
                    n.nspname::text, t.typcategory::text, t.typlen::int4
               FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE t.oid = $1",
            &[&oid],
            "reading a column type",
        )?;
        let typtype: String = row.get(0);
        let base: u32 = row.get(1);
        let elem: u32 = row.get(2);
        let send: String = row.get(3);
        let type_sql: String = row.get(4);
        let category: String = row.get(6);
        let typlen: i32 = row.get(7);
        if oid >= FIRST_NORMAL_OID {
            self.user_type_ddl(conn, oid, &typtype, base, &type_sql, row.get(5))?;
        }
        if typtype == "d" {
            return self.logical(conn, base);
        }
        if category == "A" && elem != 0 && typlen == -1 {
            let (inner, _) = self.logical(conn, elem)?;
            let user_elem = (elem >= FIRST_NORMAL_OID).then(|| {
                let name = conn
                    .query_one("SELECT format_type($1, NULL)", &[&elem], "reading an array element type")
                    .map(|r| r.get::<_, String>(0));
                name.map(|n| (elem, n))
            });
            return Ok((LogicalType::Array(Box::new(inner)), user_elem.transpose()?));
        }
        Ok((logical_from_send(&send, oid), None))
    }

    fn user_type_ddl(
        &mut self,
        conn: &mut PgConn,
        oid: u32,
        typtype: &str,
        base: u32,
        type_sql: &str,
        schema: String,
    ) -> Result<()> {
        if !self.seen.insert(oid) {
            return Ok(());
        }
        let schema_ddl = format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(&schema));
        let create = match typtype {
            "e" => {
                let labels: Vec<String> = conn
                    .query(
                        "SELECT enumlabel::text FROM pg_enum WHERE enumtypid = $1 ORDER BY enumsortorder",
                        &[&oid],
                        "reading enum labels",
                    )?
                    .iter()
                    .map(|r| quote_literal(&r.get::<_, String>(0)))
                    .collect();
                format!("CREATE TYPE {type_sql} AS ENUM ({})", labels.join(", "))
            }
            "d" => {
                // The base type (and its own user types) must exist first.
                self.logical(conn, base)?;
                let row = conn.query_one(
                    "SELECT format_type(t.typbasetype, t.typtypmod), t.typnotnull, t.typdefault,
                            coalesce((SELECT string_agg(' CONSTRAINT ' || quote_ident(c.conname) || ' ' || pg_get_constraintdef(c.oid), '' ORDER BY c.conname)
                                        FROM pg_constraint c WHERE c.contypid = t.oid), '')
                       FROM pg_type t WHERE t.oid = $1",
                    &[&oid],
                    "reading a domain definition",
                )?;
                let base_sql: String = row.get(0);
                let not_null: bool = row.get(1);
                let default: Option<String> = row.get(2);
                let checks: String = row.get(3);
                let mut sql = format!("CREATE DOMAIN {type_sql} AS {base_sql}");
                if let Some(d) = default {
                    sql.push_str(&format!(" DEFAULT {d}"));
                }
                if not_null {
                    sql.push_str(" NOT NULL");
                }
                sql.push_str(&checks);
                sql
            }
            // Arrays of user types and other user-defined types: nothing to create here (the
            // element is resolved by the caller), or a type we cannot recreate (the CREATE
            // TABLE then fails with a message naming it).
            _ => return Ok(()),
        };
        self.ddl.push(schema_ddl);
        self.ddl
            .push(format!("DO $rangecopy$ BEGIN {create}; EXCEPTION WHEN duplicate_object THEN NULL; END $rangecopy$"));
        Ok(())
    }
}

/// The logical type of a built-in or extension type, by its binary send function: types that
/// share a send function share a binary format (citext sends as text, for example).
fn logical_from_send(send: &str, oid: u32) -> LogicalType {
    match send {
        "boolsend" => LogicalType::Bool,
        "int2send" => LogicalType::Int2,
        "int4send" => LogicalType::Int4,
        "int8send" => LogicalType::Int8,
        "oidsend" => LogicalType::Oid,
        "numeric_send" => LogicalType::Numeric,
        "float4send" => LogicalType::Float4,
        "float8send" => LogicalType::Float8,
        "textsend" | "varcharsend" | "namesend" => LogicalType::Text,
        "bpcharsend" => LogicalType::Bpchar,
        "byteasend" => LogicalType::Bytea,
        "date_send" => LogicalType::Date,
        "time_send" => LogicalType::Time,
        "timetz_send" => LogicalType::TimeTz,
        "timestamp_send" => LogicalType::Timestamp,
        "timestamptz_send" => LogicalType::TimestampTz,
        "interval_send" => LogicalType::Interval,
        "uuid_send" => LogicalType::Uuid,
        "json_send" => LogicalType::Json,
        "jsonb_send" => LogicalType::Jsonb,
        "enum_send" => LogicalType::Enum,
        _ => LogicalType::Raw(oid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, type_sql: &str) -> Column {
        Column {
            name: name.into(),
            type_sql: type_sql.into(),
            logical: LogicalType::Text,
            not_null: true,
            default_sql: None,
            identity_sql: None,
            generated_sql: None,
            user_elem_oid: None,
            user_elem_type_sql: None,
            source_type: String::new(),
        }
    }

    #[test]
    fn key_comparisons_quote_names_and_values() {
        let a = col("a", "integer");
        let b = col("we\"ird", "text");
        assert_eq!(key_compare(&[&a], ">=", &["5".into()]), "\"a\" >= '5'::integer");
        assert_eq!(
            key_compare(&[&a, &b], "<", &["-1".into(), "it's".into()]),
            "(\"a\", \"we\"\"ird\") < ('-1'::integer, 'it''s'::text)"
        );
    }

    #[test]
    fn send_functions_pick_decoders() {
        assert_eq!(logical_from_send("textsend", 25), LogicalType::Text);
        assert_eq!(logical_from_send("numeric_send", 1700), LogicalType::Numeric);
        assert_eq!(logical_from_send("point_send", 600), LogicalType::Raw(600));
    }

    #[test]
    fn regclass_literals_become_relation_names() {
        assert_eq!(regclass_to_relation("'public.\"my''seq\"'::regclass"), "public.\"my'seq\"");
    }
}
