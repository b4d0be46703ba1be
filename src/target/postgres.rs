//! PostgreSQL target: checking existing tables, creating missing ones (without indexes),
//! loading chunks with binary COPY, and building indexes and syncing sequences once a table's
//! chunks are all in.
//!
//! A chunk's rows and its done-mark commit in one transaction, and that commit is durable
//! before it is counted: target sessions never turn `synchronous_commit` off (and turn it on
//! where the server's default is off), because the planner and the workers go on from what
//! they were told was committed. This module must never read the source.

use crate::config::PgEndpoint;
use crate::error::{Error, Result};
use crate::pg::PgConn;
use crate::plan::Chunk;
use crate::schema::{quote_ident, Table, TableName};

/// Every name rangecopy sends is schema-qualified; with search_path = pg_catalog the types the
/// catalog reports are qualified the same way as the source's, so they compare equal.
/// A server whose default is `synchronous_commit = off` acknowledges commits that a crash
/// can still take back: the chunk marked done, or planned, would vanish while the run goes
/// on as if it were there. Such sessions commit durably (`on`); any stronger setting
/// (`remote_write`, `remote_apply`) is kept.
const TARGET_SESSION: &str = "SET search_path = pg_catalog; \
     SELECT set_config('synchronous_commit', 'on', false) WHERE current_setting('synchronous_commit') = 'off'";

/// Memory for index builds; PostgreSQL's default (64MB) makes large builds spill to disk.
const INDEX_SESSION: &str = "SET maintenance_work_mem = '512MB'";

/// What the target already has under a table's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Existing {
    Missing,
    Present { has_rows: bool, columns: Vec<(String, String)> },
}

pub struct PgTarget {
    pub conn: PgConn,
}

impl PgTarget {
    pub fn connect(ep: &PgEndpoint) -> Result<Self> {
        Ok(PgTarget { conn: PgConn::connect(ep, TARGET_SESSION)? })
    }

    /// Whether the table exists on the target, and if so its columns and whether it has rows.
    pub fn inspect(&mut self, name: &TableName) -> Result<Existing> {
        let what = format!("inspecting target table {name}");
        let oid = self.conn.query_one("SELECT to_regclass($1)::oid", &[&name.quoted()], &what)?;
        let Some(oid) = oid.get::<_, Option<u32>>(0) else { return Ok(Existing::Missing) };
        let columns = self
            .conn
            .query(
                "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute
                  WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                &[&oid],
                &what,
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let has_rows = self.conn.query_one(&format!("SELECT EXISTS (SELECT 1 FROM {})", name.quoted()), &[], &what)?;
        Ok(Existing::Present { has_rows: has_rows.get(0), columns })
    }

    /// The collation of a target column as a qualified SQL name, if it has one.
    pub fn column_collation(&mut self, table: &TableName, column: &str) -> Result<Option<String>> {
        let row = self.conn.query_opt(
            "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.collname)
               FROM pg_attribute a JOIN pg_collation c ON c.oid = a.attcollation
               JOIN pg_namespace n ON n.oid = c.collnamespace
              WHERE a.attrelid = to_regclass($1) AND a.attname = $2",
            &[&table.quoted(), &column],
            &format!("reading the collation of {table}.{column}"),
        )?;
        Ok(row.map(|r| r.get(0)))
    }

    /// The OID of a type on the target, to rewrite array element types in binary COPY data.
    pub fn type_oid(&mut self, type_sql: &str) -> Result<u32> {
        let row = self.conn.query_one(
            "SELECT to_regtype($1)::oid",
            &[&type_sql],
            &format!("looking up type {type_sql} on the target"),
        )?;
        row.get::<_, Option<u32>>(0)
            .ok_or_else(|| Error::input(format!("type {type_sql} does not exist on the target; create it first")))
    }

    /// Builds the deferred DDL (primary key, unique constraints, indexes) from statement
    /// `from` on, each in its own transaction with its progress mark, then carries sequences
    /// over. `record(conn, done)` is called inside each transaction to record it.
    pub fn build_deferred(
        &mut self,
        table: &Table,
        from: usize,
        mut record: impl FnMut(&mut PgConn, usize) -> Result<()>,
    ) -> Result<()> {
        self.conn.batch(INDEX_SESSION, "preparing an index build")?;
        for (i, sql) in table.ddl.deferred.iter().enumerate().skip(from) {
            // Once the run is stopping, the builds left wait for the resume (each one built
            // is recorded), however many there are.
            if crate::wait::interrupted() {
                return Err(Error::Interrupted);
            }
            let what = format!("building an index of {} ({sql})", table.target);
            self.conn.transaction(&what, |conn| {
                // An index build on a large table sends nothing for hours: not a silence.
                conn.patiently(|conn| conn.batch(sql, &what))?;
                record(conn, i + 1)
            })?;
        }
        Ok(())
    }

    /// Gathers a loaded table's statistics, so that the target plans well from the moment the
    /// copy ends (autovacuum would get to it only later).
    pub fn analyze(&mut self, name: &TableName) -> Result<()> {
        let what = format!("analyzing {name}");
        self.conn.patiently(|conn| conn.batch(&format!("ANALYZE {}", name.quoted()), &what))
    }

    /// Moves a target sequence to the source's position, if the target has that sequence.
    pub fn set_sequence(&mut self, target_sql: &str, last_value: i64, is_called: bool) -> Result<()> {
        set_sequence(&mut self.conn, target_sql, last_value, is_called)
    }
}

/// Moves a target sequence (`target_sql`: an SQL text expression naming it) to a position, if
/// the target has that sequence.
pub fn set_sequence(conn: &mut PgConn, target_sql: &str, last_value: i64, is_called: bool) -> Result<()> {
    conn.execute(
        &format!(
            "SELECT pg_catalog.setval(pg_catalog.to_regclass(name), $1, $2) FROM (SELECT {target_sql} AS name) s
              WHERE pg_catalog.to_regclass(name) IS NOT NULL"
        ),
        &[&last_value, &is_called],
        "carrying a sequence position over",
    )
    .map(|_| ())
}

/// How the chunks of a table that already holds rows are loaded (`--into-existing`): binary
/// COPY into a temporary staging table of the worker's session, then merged into the table in
/// the chunk's transaction. Only row locks are taken, so the application's writes go on; a
/// write to the same key waits for the chunk's commit (or the chunk for the application's).
///
/// The merge is one `INSERT … SELECT … ON CONFLICT (key)`: a probe of the key's index per row,
/// whatever the table's size, and no race with the application's inserts. (Measured against
/// it on 100 000-row chunks into a 5-million-row table: an `INSERT … WHERE NOT EXISTS` anti-join,
/// with `UPDATE … FROM` under `update`, was no faster once forced to probe the index, and left to
/// the planner it hash-joined the whole table for every chunk.)
#[derive(Debug, Clone)]
pub struct Merge {
    /// The conflict key, for messages: `primary key orders_pkey (id)`.
    pub key: String,
    /// Makes the staging table if this session has none yet (outside any chunk transaction:
    /// a rolled-back chunk must not take it along). `ON COMMIT DELETE ROWS` empties it at
    /// every commit; a rollback discards what it held.
    pub create_staging: String,
    /// `COPY pg_temp.… (copied columns) FROM STDIN (FORMAT binary)`, the column list as the
    /// plain load's.
    pub copy_in: String,
    /// `INSERT … ON CONFLICT`; under `update` it returns (rows inserted, rows inserted or
    /// updated).
    pub upsert: String,
    pub update: bool,
    /// Whether the conflict key is the source's key (same columns, same order): then the key's
    /// index finds at once whether a chunk's range holds any row yet (see `loads_directly`).
    pub source_key: bool,
}

/// Session settings of a worker that stages chunks, set before its first staging table:
/// room for a whole chunk in the session's buffers for temporary tables (8MB by default, after
/// which staged rows go through files).
pub const STAGING_SESSION: &str = "SET temp_buffers = '128MB'";

/// Rows of a table merged into existing rows (`--into-existing`), of a chunk or, summed, of a table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Merged {
    /// Rows the target did not have.
    pub inserted: i64,
    /// Rows whose key the target had: the target's row was kept (`--on-conflict skip`).
    pub skipped: i64,
    /// Rows whose key the target had: the source's row overwrote it (`--on-conflict update`).
    pub updated: i64,
}

impl Merge {
    /// Whether a chunk can skip the staging table and the merge, and go straight into the
    /// table by COPY (inside the chunk's transaction): when the table holds no row in the
    /// chunk's key range. That is most of a backfill in practice: the application has written
    /// new rows, and the history's ranges are empty. A row the application inserts into the
    /// range meanwhile makes the COPY fail on the key (unique_violation); the chunk is then
    /// copied again through the merge (`Error::is_unique_violation`). The check is only made
    /// where the conflict key is the source's key, whose index answers it in one probe.
    pub fn loads_directly(&self, conn: &mut PgConn, table: &Table, chunk: &Chunk) -> Result<bool> {
        if !self.source_key {
            return Ok(false);
        }
        let filter = crate::source::postgres::range_condition(table, chunk).unwrap_or_else(|| "true".into());
        let sql = format!("SELECT NOT EXISTS (SELECT FROM {} WHERE {filter})", table.target.quoted());
        let row = conn.query_one(&sql, &[], &format!("looking for rows of {} in a chunk's range", table.target))?;
        Ok(row.get(0))
    }

    /// Merges the staged rows (`staged` of them) into the table, inside the chunk's transaction.
    pub fn run(&self, conn: &mut PgConn, table: &TableName, staged: i64) -> Result<Merged> {
        let what = format!("merging a chunk into {table} on its {}", self.key);
        let merged = if !self.update {
            conn.execute(&self.upsert, &[], &what).map(|inserted| {
                let inserted = inserted as i64;
                Merged { inserted, skipped: staged - inserted, updated: 0 }
            })
        } else {
            conn.query_one(&self.upsert, &[], &what).map(|row| {
                let (inserted, touched): (i64, i64) = (row.get(0), row.get(1));
                Merged { inserted, skipped: staged - touched, updated: touched - inserted }
            })
        };
        merged.map_err(|e| self.other_key_conflict(e))
    }

    /// A unique violation in the merge is on another unique index than the merge key (that one
    /// is the `ON CONFLICT`'s): a target row and a source row with different keys share a value
    /// the target requires unique. Says what to do; other errors are returned as they are.
    fn other_key_conflict(&self, e: Error) -> Error {
        if !e.is_unique_violation() {
            return e;
        }
        match e {
            Error::Sql { endpoint, what, detail, code } => Error::Sql {
                endpoint,
                what,
                detail: format!(
                    "{}; the target already has that value in a row whose {} differs, so the source's row cannot be \
                     added beside it: change or delete one of the two rows (or leave the table out with \
                     --exclude-table), then resume",
                    detail.trim_end_matches('.'),
                    self.key
                ),
                code,
            },
            other => other,
        }
    }
}

impl PgTarget {
    /// The key an existing target table's rows are merged on: its primary key, else a unique
    /// index that is valid, immediate, not partial, on plain columns that are all NOT NULL and
    /// all copied. Among several, the one on the source key's columns, else the one with the
    /// fewest columns, then by name. `Ok(None)` when the table has none.
    pub fn conflict_key(&mut self, table: &Table) -> Result<Option<(String, Vec<String>)>> {
        let what = format!("looking for the key of target table {}", table.target);
        let rows = self.conn.query(
            "SELECT i.indisprimary, c.relname::text, array_agg(a.attname::text ORDER BY k.ord),
                    bool_and(a.attnotnull)
               FROM pg_index i
               JOIN pg_class c ON c.oid = i.indexrelid
               CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord)
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
              WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indisvalid AND i.indimmediate
                AND i.indpred IS NULL AND i.indexprs IS NULL AND k.ord <= i.indnkeyatts
              GROUP BY i.indexrelid, i.indisprimary, c.relname",
            &[&table.target.quoted()],
            &what,
        )?;
        let copied: Vec<&str> = table.copied_columns().map(|c| c.name.as_str()).collect();
        let source_key: Vec<&str> = table.key_columns().iter().map(|c| c.name.as_str()).collect();
        let candidates = rows
            .iter()
            .filter(|r| r.get::<_, bool>(3))
            .map(|r| UniqueKey { primary: r.get(0), name: r.get(1), columns: r.get(2) })
            .collect();
        Ok(choose_key(candidates, &copied, &source_key).map(|k| {
            let kind = if k.primary { "primary key" } else { "unique index" };
            let list: Vec<String> = k.columns.iter().map(|c| quote_ident(c)).collect();
            (format!("{kind} {} ({})", quote_ident(&k.name), list.join(", ")), k.columns)
        }))
    }

    /// How `table`'s chunks merge into the existing target table under `update` (or skip);
    /// refuses a table without a key to merge on.
    pub fn merge_plan(&mut self, table: &Table, table_no: usize, update: bool) -> Result<Merge> {
        let Some((key, key_columns)) = self.conflict_key(table)? else {
            return Err(Error::input(format!(
                "--into-existing: target table {} has no primary key and no unique index on NOT NULL columns that \
                 the copy fills, so rows already in it cannot be told from the source's; add one (ALTER TABLE … ADD \
                 PRIMARY KEY …), or leave the table out (--exclude-table)",
                table.target
            )));
        };
        let what = format!("reading the identity columns of {}", table.target);
        let always: Vec<String> = self
            .conn
            .query(
                "SELECT attname::text FROM pg_attribute WHERE attrelid = to_regclass($1) AND attidentity = 'a'
                   AND NOT attisdropped",
                &[&table.target.quoted()],
                &what,
            )?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let cols: Vec<String> = table.copied_columns().map(|c| quote_ident(&c.name)).collect();
        let list = cols.join(", ");
        let staging = format!("pg_temp.{}", quote_ident(&format!("rangecopy_stage_{table_no}")));
        let target = table.target.quoted();
        // Values for GENERATED ALWAYS identity columns come from the source, as COPY takes them.
        let overriding = if always.is_empty() { "" } else { " OVERRIDING SYSTEM VALUE" };
        let conflict: Vec<String> = key_columns.iter().map(|c| quote_ident(c)).collect();
        let insert = format!(
            "INSERT INTO {target} ({list}){overriding} SELECT {list} FROM {staging} ON CONFLICT ({})",
            conflict.join(", ")
        );
        // An identity column that is GENERATED ALWAYS can only be set to DEFAULT by UPDATE.
        let set: Vec<String> = table
            .copied_columns()
            .filter(|c| !key_columns.contains(&c.name) && !always.contains(&c.name))
            .map(|c| quote_ident(&c.name))
            .collect();
        let assign: Vec<String> = set.iter().map(|c| format!("{c} = EXCLUDED.{c}")).collect();
        let upsert = match (update, set.is_empty()) {
            (true, false) => format!(
                "WITH m AS ({insert} DO UPDATE SET {} RETURNING xmax = 0 AS inserted)
                 SELECT count(*) FILTER (WHERE inserted), count(*) FROM m",
                assign.join(", ")
            ),
            // Every column is part of the key: a row with the same key is the same row.
            (true, true) => format!("WITH m AS ({insert} DO NOTHING RETURNING 1) SELECT count(*), count(*) FROM m"),
            (false, _) => format!("{insert} DO NOTHING"),
        };
        Ok(Merge {
            key,
            create_staging: format!(
                "CREATE TEMP TABLE IF NOT EXISTS {staging} ON COMMIT DELETE ROWS AS SELECT {list} FROM {target} WITH NO DATA"
            ),
            copy_in: format!("COPY {staging} ({list}) FROM STDIN (FORMAT binary)"),
            upsert,
            update,
            source_key: !key_columns.is_empty()
                && key_columns.iter().eq(table.key_columns().iter().map(|c| &c.name)),
        })
    }
}

/// A unique index of a target table on NOT NULL plain columns, as a candidate conflict key.
#[derive(Debug, Clone, PartialEq, Eq)]
struct UniqueKey {
    primary: bool,
    name: String,
    columns: Vec<String>,
}

/// The conflict key among a table's candidates, the same on every run: those whose columns
/// the copy all fills; of them the primary key, else one on the source key's columns (in any
/// order), else the one with the fewest columns, then by name.
fn choose_key(mut candidates: Vec<UniqueKey>, copied: &[&str], source_key: &[&str]) -> Option<UniqueKey> {
    let mut source_key = source_key.to_vec();
    source_key.sort_unstable();
    let on_source_key = |k: &UniqueKey| {
        let mut cols: Vec<&str> = k.columns.iter().map(String::as_str).collect();
        cols.sort_unstable();
        cols == source_key
    };
    candidates.retain(|k| k.columns.iter().all(|c| copied.contains(&c.as_str())));
    candidates.sort_by(|a, b| {
        (!a.primary, !on_source_key(a), a.columns.len(), &a.name).cmp(&(
            !b.primary,
            !on_source_key(b),
            b.columns.len(),
            &b.name,
        ))
    });
    candidates.into_iter().next()
}

/// Moves a target sequence forward to a position, never back: for tables that take the
/// application's writes, whose sequence may already be past the source's.
pub fn advance_sequence(conn: &mut PgConn, target_sql: &str, last_value: i64, is_called: bool) -> Result<()> {
    conn.execute(
        &format!(
            "SELECT pg_catalog.setval(r, $1, $2)
               FROM (SELECT pg_catalog.to_regclass(name) AS r FROM (SELECT {target_sql} AS name) s) q
              WHERE r IS NOT NULL AND coalesce(pg_catalog.pg_sequence_last_value(r) < $1, true)"
        ),
        &[&last_value, &is_called],
        "moving a sequence forward",
    )
    .map(|_| ())
}

/// Creates a table and its prerequisites (inside the caller's setup transaction). Autovacuum
/// is held off the new table until its load is finished (`release_autovacuum`): a vacuum
/// started by the inserts competes with the load for the machine and then makes the primary
/// key's build wait for its lock.
pub fn create_table(conn: &mut PgConn, table: &Table) -> Result<()> {
    let ddl = &table.ddl;
    let what = format!("creating target table {}", table.target);
    for sql in ddl.prerequisites.iter().chain([&ddl.create_table]) {
        conn.batch(sql, &what)?;
    }
    hold_autovacuum(conn, &table.target)?;
    for sql in &ddl.after_create {
        conn.batch(sql, &what)?;
    }
    Ok(())
}

/// Keeps autovacuum off a table the job created until its load is finished (see `create_table`).
pub fn hold_autovacuum(conn: &mut PgConn, name: &TableName) -> Result<()> {
    conn.batch(
        &format!("ALTER TABLE {} SET (autovacuum_enabled = false, toast.autovacuum_enabled = false)", name.quoted()),
        &format!("holding autovacuum off {name} while it loads"),
    )
}

/// Gives a loaded table created by the job back to autovacuum (see `create_table`).
pub fn release_autovacuum(conn: &mut PgConn, name: &TableName) -> Result<()> {
    conn.batch(
        &format!("ALTER TABLE {} RESET (autovacuum_enabled, toast.autovacuum_enabled)", name.quoted()),
        &format!("re-enabling autovacuum on {name}"),
    )
}

/// Brings an emptied target table's columns to the source's current ones (for `--restart
/// TABLE` of a table whose definition changed, when the table is kept because other objects
/// rest on it): columns the source dropped go, new ones come, changed types change.
pub fn align_columns(conn: &mut PgConn, table: &Table, existing: &[(String, String)]) -> Result<()> {
    let what = format!("bringing the columns of {} to the source's", table.target);
    let name = table.target.quoted();
    for (column, _) in existing.iter().filter(|(c, _)| !table.columns.iter().any(|s| &s.name == c)) {
        conn.batch(&format!("ALTER TABLE {name} DROP COLUMN {}", quote_ident(column)), &what)?;
    }
    for col in &table.columns {
        match existing.iter().find(|(c, _)| c == &col.name) {
            None => {
                let mut sql = format!("ALTER TABLE {name} ADD COLUMN {} {}", quote_ident(&col.name), col.type_sql);
                if let Some(g) = &col.generated_sql {
                    sql.push_str(&format!(" GENERATED ALWAYS AS ({g}) STORED"));
                } else if let Some(d) = &col.default_sql {
                    sql.push_str(&format!(" DEFAULT {d}"));
                }
                if col.not_null {
                    sql.push_str(" NOT NULL");
                }
                conn.batch(&sql, &what)?;
            }
            Some((_, t)) if !same_type(t, &col.type_sql) => conn.batch(
                &format!(
                    "ALTER TABLE {name} ALTER COLUMN {c} TYPE {t} USING {c}::{t}",
                    c = quote_ident(&col.name),
                    t = col.type_sql
                ),
                &what,
            )?,
            Some(_) => {}
        }
    }
    Ok(())
}

/// Empties a table the job had loaded (for `--restart` of a table that existed before the job).
pub fn truncate_table(conn: &mut PgConn, name: &TableName) -> Result<()> {
    conn.batch(&format!("TRUNCATE {}", name.quoted()), &format!("emptying target table {name} for --restart"))
}

/// Drops a table the job had created (for `--restart`), so it is created afresh, with what
/// the job created on it (foreign keys to it, views over it: created again too).
pub fn drop_table(conn: &mut PgConn, name: &TableName) -> Result<()> {
    conn.batch(
        &format!("DROP TABLE IF EXISTS {} CASCADE", name.quoted()),
        &format!("dropping target table {name} for --restart"),
    )
}

/// `COPY "s"."t" ("a", "b") FROM STDIN (FORMAT binary)` for the table's copied columns.
///
/// A table with no copied column (none at all, or only generated ones) takes its rows without
/// a column list, which means every column that is not generated: none.
pub fn copy_in_sql(table: &Table) -> String {
    let cols: Vec<String> = table.copied_columns().map(|c| quote_ident(&c.name)).collect();
    let list = if cols.is_empty() { String::new() } else { format!(" ({})", cols.join(", ")) };
    format!("COPY {}{list} FROM STDIN (FORMAT binary)", table.target.quoted())
}

/// Checks that an existing target table can take the source's rows: every copied column
/// present with the same type. Extra target columns are allowed (they get their defaults).
pub fn check_columns(table: &Table, existing: &[(String, String)]) -> Result<()> {
    let mut problems = Vec::new();
    for col in table.copied_columns() {
        match existing.iter().find(|(n, _)| n == &col.name) {
            None => problems.push(format!("column {} is missing", quote_ident(&col.name))),
            Some((_, t)) if !same_type(t, &col.type_sql) => problems.push(format!(
                "column {} is {t} on the target but {} on the source",
                quote_ident(&col.name),
                col.type_sql
            )),
            Some(_) => {}
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::input(format!(
            "target table {} does not match the source: {}; fix or drop the target table",
            table.target,
            problems.join("; ")
        )))
    }
}

/// Type names compare without schema qualification of built-in types (`pg_catalog.`).
pub fn same_type(a: &str, b: &str) -> bool {
    let norm = |s: &str| s.trim_start_matches("pg_catalog.").replace('"', "");
    norm(a) == norm(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Column, LogicalType, TargetDdl};

    fn table() -> Table {
        let col = |name: &str, type_sql: &str, generated: bool| Column {
            name: name.into(),
            type_sql: type_sql.into(),
            logical: LogicalType::Int8,
            not_null: false,
            default_sql: None,
            identity_sql: None,
            generated_sql: generated.then(|| "id * 2".to_string()),
            user_elem_oid: None,
            user_elem_type_sql: None,
            source_type: String::new(),
        };
        Table {
            name: TableName::new("s", "t"),
            target: TableName::new("s", "t"),
            columns: vec![col("id", "bigint", false), col("twice", "bigint", true), col("note", "text", false)],
            key: None,
            estimated_rows: 0,
            estimated_bytes: 0,
            ddl: TargetDdl::default(),
            partitioned: false,
            changes: Vec::new(),
        }
    }

    #[test]
    fn copy_in_skips_generated_columns() {
        assert_eq!(copy_in_sql(&table()), "COPY \"s\".\"t\" (\"id\", \"note\") FROM STDIN (FORMAT binary)");
    }

    #[test]
    fn the_conflict_key_is_the_primary_key_else_the_source_key_else_the_narrowest_filled_one() {
        let key = |primary: bool, name: &str, cols: &[&str]| UniqueKey {
            primary,
            name: name.into(),
            columns: cols.iter().map(|c| c.to_string()).collect(),
        };
        let copied = ["id", "email", "tenant", "code"];
        let wide = key(false, "a_wide", &["tenant", "code"]);
        let email = key(false, "z_email", &["email"]);
        let code = key(false, "b_code", &["code"]);
        let unfilled = key(false, "a_unfilled", &["local_only"]);
        let pk = key(true, "t_pkey", &["id"]);
        let all = vec![wide.clone(), email.clone(), code.clone(), unfilled.clone(), pk.clone()];
        assert_eq!(choose_key(all.clone(), &copied, &["email"]), Some(pk));
        let no_pk: Vec<UniqueKey> = all.into_iter().filter(|k| !k.primary).collect();
        assert_eq!(choose_key(no_pk.clone(), &copied, &["code", "tenant"]), Some(wide));
        assert_eq!(choose_key(no_pk.clone(), &copied, &["id"]), Some(code));
        assert_eq!(choose_key(vec![unfilled], &copied, &["id"]), None);
        // The same answer whatever order the catalog lists them in.
        let mut reversed = no_pk.clone();
        reversed.reverse();
        assert_eq!(choose_key(reversed, &copied, &["email"]), choose_key(no_pk, &copied, &["email"]));
        assert_eq!(choose_key(vec![email.clone()], &copied, &[]), Some(email));
    }

    #[test]
    fn mismatched_target_columns_are_refused_by_name() {
        let t = table();
        let ok = vec![("id".into(), "bigint".into()), ("note".into(), "text".into()), ("extra".into(), "int".into())];
        check_columns(&t, &ok).unwrap();
        let err = check_columns(&t, &[("id".into(), "integer".into())]).unwrap_err().to_string();
        assert!(err.contains("\"id\" is integer on the target but bigint"), "{err}");
        assert!(err.contains("\"note\" is missing"), "{err}");
    }
}
