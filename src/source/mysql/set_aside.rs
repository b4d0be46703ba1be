//! Huge rows set aside by a chunk's streaming query and read whole by key afterwards, within
//! a process-wide byte budget (see the module documentation of `mysql`).

use std::sync::atomic::AtomicBool;

use mysql::prelude::Queryable;
use mysql::{Params, Row, Value};

use super::extract::{ChunkQuery, ChunkRows};
use super::keys::{key_kinds, value_text, KeyKind};
use super::types::{in_families, TypeInfo, SPATIAL};
use super::{my_table, value_number, MySource};
use crate::error::{Error, ErrorCode, Result};
use crate::pipeline::ByteGate;
use crate::schema::{Column, Table};
use crate::source::Block;

/// A row whose wide values together hold more than this many bytes (as the server stores
/// them) is set aside by its chunk's streaming query and read whole afterwards, so that the
/// driver's buffers stay about this small while rows stream.
pub const SET_ASIDE_ABOVE: u64 = 4 << 20;

/// Bytes of set-aside rows being read, or waiting in COPY blocks to be written, at once in the
/// whole process (copy and verify workers alike). Reading a row costs about twice its size
/// (the driver's packet and the parsed value, then the value and its encoding); a row larger
/// than this budget is read alone.
pub(super) const SET_ASIDE_BUDGET: u64 = 32 << 20;
static SET_ASIDE_GATE: ByteGate = ByteGate::new(SET_ASIDE_BUDGET);
/// The gate is held only until a block is written or dropped, so waiting for it needs no
/// cancellation of its own.
static NEVER_CANCELLED: AtomicBool = AtomicBool::new(false);

/// Column families whose values may be too large to stream with the rest (MEDIUM* hold up to
/// 16 MiB, LONG* and JSON up to 4 GiB; spatial values are stored like LONGBLOB).
pub(super) const WIDE: &[&[&str]] = &[&["mediumblob", "longblob", "mediumtext", "longtext", "json"], SPATIAL];

/// How a chunk of a table with wide columns sets its huge rows aside: the streaming query
/// sends their wide values as NULL, and every row's wide bytes, and the huge rows are read
/// again by key.
pub(super) struct SetAside {
    /// The streaming query's SELECT list: the copied columns (wide ones NULL in huge rows),
    /// then the row's wide bytes.
    pub(super) streamed: Vec<String>,
    /// `SELECT <copied columns> FROM t WHERE k1 = ? AND …`: one set-aside row, whole.
    by_key: String,
    /// Each key column's place among the copied columns, and how its value is bound.
    key: Vec<(usize, KeyKind)>,
}

impl SetAside {
    /// None for tables without wide columns (their chunks take the plain streaming path) and
    /// for tables without a key (whose rows could not be found again).
    pub(super) fn plan(table: &Table, columns: &[&Column], select: &[String], key_pos: &[usize]) -> Option<SetAside> {
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
    pub(super) fn size(&self, row: &Row, copied: usize) -> u64 {
        match row.as_ref(copied) {
            Some(Value::Int(n)) => u64::try_from(*n).unwrap_or(0),
            Some(Value::UInt(n)) => *n,
            Some(v) => value_number(v).map_or(0, |n| n as u64),
            None => 0,
        }
    }

    /// A streamed row's key as the parameters of `by_key`.
    pub(super) fn key_params(&self, row: &Row) -> Result<Vec<Value>> {
        self.key
            .iter()
            .map(|(pos, kind)| {
                kind.param(&kind.bound_text(row.as_ref(*pos).unwrap_or(&Value::NULL)))
                    .map_err(|e| Error::Bug(format!("a key value read back does not bind: {e}")))
            })
            .collect()
    }
}

impl MySource {
    /// Reads the rows a chunk's streaming query set aside, whole, one by one by their keys, and
    /// encodes each like any other row. Each is read holding its share of [`SET_ASIDE_GATE`],
    /// which goes with its COPY block and is given back once that block is written (or hashed).
    pub(super) fn read_set_aside(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Key, TableName, TargetDdl};
    use crate::source::mysql::types::column_conv;

    /// A MySQL table of `(name, source type)` columns keyed by the columns at `key`.
    fn my_table_of(columns: &[(&str, &str)], key: &[usize]) -> Table {
        let columns =
            columns.iter().map(|(name, ty)| crate::source::mysql::introspect::tests::column(name, ty)).collect();
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
}
