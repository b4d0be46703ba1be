//! Range verification: both sides of every key range are read (in parallel, each range in one
//! statement, so each side is one consistent read) and hashed with the canonical encoding;
//! ranges whose digests differ are read again row by row and narrowed to the rows that are
//! missing on the target, extra on the target, or changed (with the columns that differ).
//!
//! A row that the two sides' collations place in different ranges shows up as missing in one
//! range and extra in another; such pairs are matched by key across the table before anything
//! is reported, so collation order alone never produces a difference.
//! This module must never write to either database.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use serde::Serialize;

use crate::canonical::{display_value, split_values, RangeDigest};
use crate::config::VerifyConfig;
use crate::copy_format::CapturedRow;
use crate::error::{Error, Result};
use crate::pipeline;
use crate::plan::{plan_table, Bound, Chunk, PlanCursor};
use crate::schema::{quote_ident, quote_literal, LogicalType, Table};
use crate::source::postgres::{range_copy_sql, scan_rows};
use crate::source::Source;
use crate::state;
use crate::target::postgres::{check_columns, Existing, PgTarget};
use crate::throttle::Throttle;

/// The outcome of a verification: per table, and the overall verdict.
#[derive(Debug, Serialize)]
pub struct Verification {
    pub tables: Vec<TableResult>,
    pub seconds: f64,
}

impl Verification {
    pub fn identical(&self) -> bool {
        self.tables.iter().all(|t| t.status == TableStatus::Identical)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TableStatus {
    Identical,
    Different,
    /// The target has no such table: every source row is missing.
    MissingOnTarget,
}

#[derive(Debug, Serialize)]
pub struct TableResult {
    pub source_table: String,
    pub target_table: String,
    pub key: Option<String>,
    pub status: TableStatus,
    pub source_rows: u64,
    pub target_rows: u64,
    pub source_digest: String,
    pub target_digest: String,
    pub ranges: Vec<RangeResult>,
    pub differing_ranges: usize,
    /// Rows that differ, counted in full.
    pub differing_rows: usize,
    /// The first of them (up to `--max-diff-rows` over the whole run), described.
    pub diffs: Vec<RowDiff>,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RangeResult {
    pub range: u32,
    pub lo: Bound,
    pub hi: Bound,
    pub source_rows: u64,
    pub target_rows: u64,
    pub identical: bool,
    pub differing_rows: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DiffKind {
    /// In the source, not on the target.
    Missing,
    /// On the target, not in the source.
    Extra,
    /// Same key, different values.
    Changed,
}

#[derive(Debug, Clone, Serialize)]
pub struct RowDiff {
    pub kind: DiffKind,
    /// The row's key as (column, value); the whole row for tables without a key.
    pub key: Vec<(String, String)>,
    /// For changed rows the differing columns; for missing/extra rows every column.
    pub columns: Vec<ColumnDiff>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ColumnDiff {
    pub column: String,
    pub source: Option<String>,
    pub target: Option<String>,
}

/// One range's comparison, before rows are matched across ranges.
struct RangeOutcome {
    table: usize,
    /// When the range's comparison started and ended, in seconds since the run started.
    span: (f64, f64),
    result: RangeResult,
    source: RangeDigest,
    target: RangeDigest,
    /// Rows seen on one side only in this range, by key: (source row, target row).
    unmatched: Vec<(Vec<u8>, Option<CapturedRow>, Option<CapturedRow>)>,
}

/// A table to verify and the ranges to compare it by.
struct Subject {
    table: Table,
    ranges: Vec<Chunk>,
    /// The same ranges for the target, bounded in the target's own key order (see
    /// `target_ranges`); position i of both lists is compared.
    target_ranges: Vec<Chunk>,
    missing_on_target: bool,
}

/// Verifies the configured tables. Errors mean "could not verify" (exit 2).
pub fn run(cfg: &VerifyConfig, cancel: &AtomicBool) -> Result<Verification> {
    let started = Instant::now();
    let throttle = Throttle::new(cfg.throttle.rows_per_sec, cfg.throttle.bytes_per_sec);
    let mut source = Source::connect(&cfg.source)?;
    let mut target = PgTarget::connect(&cfg.target)?;
    let subjects = subjects(cfg, &mut source, &mut target)?;
    drop(source);
    let work: Vec<(usize, Chunk, Chunk)> = subjects
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.missing_on_target)
        .flat_map(|(i, s)| s.ranges.iter().zip(&s.target_ranges).map(move |(c, t)| (i, c.clone(), t.clone())))
        .collect();
    let outcomes: Vec<Result<RangeOutcome>> = pipeline::parallel_map(
        cfg.workers,
        work,
        cancel,
        || Ok((Source::connect(&cfg.source)?, PgTarget::connect(&cfg.target)?)),
        |(source, target), (i, chunk, target_chunk)| {
            let start = started.elapsed().as_secs_f64();
            let mut outcome =
                compare_range(source, target, &subjects[i].table, i, &chunk, &target_chunk, &throttle, cancel)?;
            outcome.span = (start, started.elapsed().as_secs_f64());
            Ok(outcome)
        },
    )?;
    let mut by_table: Vec<Vec<RangeOutcome>> = subjects.iter().map(|_| Vec::new()).collect();
    for outcome in outcomes {
        let outcome = outcome?;
        by_table[outcome.table].push(outcome);
    }
    let mut budget = cfg.max_diff_rows;
    let tables = subjects
        .into_iter()
        .zip(by_table)
        .map(|(subject, outcomes)| table_result(cfg, subject, outcomes, &mut budget))
        .collect::<Result<Vec<_>>>()?;
    Ok(Verification { tables, seconds: started.elapsed().as_secs_f64() })
}

/// The tables and their ranges: the job's chunks with `--job`, else ranges planned by
/// walking the source's keys.
fn subjects(cfg: &VerifyConfig, source: &mut Source, target: &mut PgTarget) -> Result<Vec<Subject>> {
    let mut subjects = Vec::new();
    if let Some(job) = &cfg.job {
        if state::load_job(&mut target.conn, job)?.is_none() {
            return Err(Error::input(format!("--job: the target has no job named {job:?}")));
        }
        for record in state::load_tables(&mut target.conn, job)? {
            let named = cfg.tables.is_empty()
                || cfg.tables.iter().any(|s| {
                    s.name == record.table.name.name
                        && s.schema.as_ref().is_none_or(|sc| sc == &record.table.name.schema)
                });
            if !named {
                continue;
            }
            if !record.plan_complete {
                return Err(Error::input(format!(
                    "job {job:?} has not finished planning table {}; finish the copy (--resume) before verifying it by job",
                    record.table.name
                )));
            }
            let ranges = state::job_chunks(&mut target.conn, job, record.table_no)?;
            subjects.push(subject(target, record.table, ranges)?);
        }
        if subjects.is_empty() {
            return Err(Error::input(format!("job {job:?} has none of the named tables")));
        }
        return Ok(subjects);
    }
    for (no, table) in source.describe_tables(&cfg.tables)?.into_iter().enumerate() {
        let mut ranges = Vec::new();
        plan_table(source, no, &table, cfg.chunk_rows, PlanCursor::start(), |chunk, _| {
            ranges.push(chunk);
            Ok(true)
        })?;
        subjects.push(subject(target, table, ranges)?);
    }
    Ok(subjects)
}

fn subject(target: &mut PgTarget, table: Table, ranges: Vec<Chunk>) -> Result<Subject> {
    let missing_on_target = match target.inspect(&table.target)? {
        Existing::Missing => true,
        Existing::Present { columns, .. } => {
            check_columns(&table, &columns)
                .map_err(|e| Error::input(format!("{e} (verify compares columns of the same types)")))?;
            false
        }
    };
    let target_ranges = if missing_on_target { ranges.clone() } else { target_ranges(target, &table, &ranges)? };
    Ok(Subject { table, ranges, target_ranges, missing_on_target })
}

/// The ranges' boundaries sorted in the target's key order. A text key may collate
/// differently on the two sides (MySQL's case-insensitive collations, another locale): the
/// source's boundaries, applied to the target in their own order, could overlap or leave
/// gaps there. Sorted, they cut the target into ranges again, so each target row is read
/// exactly once; rows the two orders place in different ranges are matched by key later.
fn target_ranges(target: &mut PgTarget, table: &Table, ranges: &[Chunk]) -> Result<Vec<Chunk>> {
    let key = table.key_columns();
    let collatable = key.iter().any(|c| matches!(c.logical, LogicalType::Text | LogicalType::Bpchar));
    if ranges.len() < 2 || !collatable {
        return Ok(ranges.to_vec());
    }
    let bounds: Vec<&Vec<String>> = ranges.iter().filter_map(|c| c.hi.as_ref()).collect();
    let values: Vec<String> = bounds
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let parts: Vec<String> =
                key.iter().zip(b.iter()).map(|(c, v)| format!("{}::{}", quote_literal(v), c.type_sql)).collect();
            format!("({i}, {})", parts.join(", "))
        })
        .collect();
    let mut order = Vec::new();
    for (i, col) in key.iter().enumerate() {
        let collation = target.column_collation(&table.target, &col.name)?;
        order.push(match collation {
            Some(c) => format!("k{i} COLLATE {c}"),
            None => format!("k{i}"),
        });
    }
    let names: Vec<String> = (0..key.len()).map(|i| format!("k{i}")).collect();
    let sql = format!(
        "SELECT i FROM (VALUES {}) AS b(i, {}) ORDER BY {}, i",
        values.join(", "),
        names.join(", "),
        order.join(", ")
    );
    let sorted: Vec<usize> = target
        .conn
        .query(&sql, &[], &format!("ordering the range bounds of {} on the target", table.target))?
        .iter()
        .map(|r| r.get::<_, i32>(0) as usize)
        .collect();
    let mut cuts: Vec<Bound> = vec![None];
    cuts.extend(sorted.iter().map(|&i| Some(bounds[i].clone())));
    cuts.push(None);
    Ok(ranges
        .iter()
        .enumerate()
        .map(|(n, c)| Chunk {
            table_no: c.table_no,
            chunk_no: c.chunk_no,
            lo: cuts[n].clone(),
            hi: cuts[n + 1].clone(),
        })
        .collect())
}

/// Reads one range from both sides at once and compares digests; on a mismatch reads it
/// again with rows captured and keeps the rows that do not match within the range.
#[allow(clippy::too_many_arguments)]
fn compare_range(
    source: &mut Source,
    target: &mut PgTarget,
    table: &Table,
    i: usize,
    chunk: &Chunk,
    target_chunk: &Chunk,
    throttle: &Throttle,
    cancel: &AtomicBool,
) -> Result<RangeOutcome> {
    let target_sql = range_copy_sql(table, &table.target.quoted(), target_chunk);
    let read = |source: &mut Source, target: &mut PgTarget, capture: bool| {
        // Only the source is held to the rate: it is the live database to spare.
        let (s, t) = pipeline::join(
            || source.scan_range(table, chunk, capture, &mut |rows, bytes| throttle.acquire(rows, bytes, cancel)),
            || scan_rows(&mut target.conn, &target_sql, table, capture, &mut |_, _| Ok(())),
        );
        Ok::<_, Error>((s?, t?))
    };
    let context = |e: Error| Error::Chunk {
        table: table.name.to_string(),
        chunk: chunk.chunk_no,
        range: chunk.range_text(),
        source: Box::new(e),
    };
    let ((src, _), (tgt, _)) = read(source, target, false).map_err(context)?;
    let mut result = RangeResult {
        range: chunk.chunk_no,
        lo: chunk.lo.clone(),
        hi: chunk.hi.clone(),
        source_rows: src.rows,
        target_rows: tgt.rows,
        identical: src.digest == tgt.digest,
        differing_rows: 0,
    };
    let mut unmatched = Vec::new();
    if !result.identical {
        // Read again, row by row. The source may have changed in between; what is compared
        // is this second read of both sides.
        let ((_, src_rows), (_, tgt_rows)) = read(source, target, true).map_err(context)?;
        unmatched = unmatched_rows(table, src_rows, tgt_rows);
        result.differing_rows = unmatched.len();
    }
    Ok(RangeOutcome { table: i, span: (0.0, 0.0), result, source: src.digest, target: tgt.digest, unmatched })
}

/// The key of a captured row: the canonical bytes of its key columns, or of the whole row
/// for a table without a key.
fn row_key(key: Option<&[usize]>, row: &CapturedRow) -> Vec<u8> {
    let Some(key) = key else { return row.canonical.clone() };
    let values = split_values(&row.canonical);
    key.iter().flat_map(|&pos| values.get(pos).copied().unwrap_or_default().iter().copied()).collect()
}

/// Where the key's columns sit among the copied columns (the values of a captured row), or
/// `None` for a table without a key.
fn key_positions(table: &Table) -> Option<Vec<usize>> {
    let key = table.key.as_ref()?;
    let copied: Vec<usize> = table.columns.iter().enumerate().filter(|(_, c)| c.is_copied()).map(|(i, _)| i).collect();
    Some(key.columns.iter().filter_map(|k| copied.iter().position(|c| c == k)).collect())
}

/// Rows present on one side only, or present on both with different hashes, keyed.
fn unmatched_rows(
    table: &Table,
    source: Vec<CapturedRow>,
    target: Vec<CapturedRow>,
) -> Vec<(Vec<u8>, Option<CapturedRow>, Option<CapturedRow>)> {
    let key_cols = key_positions(table);
    // Keyless tables may hold identical rows several times: match them as multisets.
    let mut target_by_key: HashMap<Vec<u8>, Vec<CapturedRow>> = HashMap::new();
    for row in target {
        target_by_key.entry(row_key(key_cols.as_deref(), &row)).or_default().push(row);
    }
    let mut out = Vec::new();
    for row in source {
        let key = row_key(key_cols.as_deref(), &row);
        match target_by_key.get_mut(&key).and_then(|rows| rows.pop()) {
            Some(t) if t.hash == row.hash => {}
            Some(t) => out.push((key, Some(row), Some(t))),
            None => out.push((key, Some(row), None)),
        }
    }
    for (key, rows) in target_by_key {
        out.extend(rows.into_iter().map(|t| (key.clone(), None, Some(t))));
    }
    out
}

/// Puts a table's range outcomes together, matching rows that each side placed in a
/// different range, and describes the differences.
fn table_result(
    cfg: &VerifyConfig,
    subject: Subject,
    mut outcomes: Vec<RangeOutcome>,
    budget: &mut usize,
) -> Result<TableResult> {
    let table = &subject.table;
    outcomes.sort_by_key(|o| o.result.range);
    let mut source_digest = RangeDigest::default();
    let mut target_digest = RangeDigest::default();
    let mut pending: HashMap<Vec<u8>, (Option<CapturedRow>, Option<CapturedRow>)> = HashMap::new();
    let mut changed: Vec<(Vec<u8>, Option<CapturedRow>, Option<CapturedRow>)> = Vec::new();
    for o in &mut outcomes {
        source_digest.merge(&o.source);
        target_digest.merge(&o.target);
        for (key, s, t) in o.unmatched.drain(..) {
            if s.is_some() && t.is_some() {
                changed.push((key, s, t));
                continue;
            }
            let slot = pending.entry(key).or_default();
            if s.is_some() {
                slot.0 = s;
            } else {
                slot.1 = t;
            }
        }
    }
    let mut rows: Vec<(Vec<u8>, Option<CapturedRow>, Option<CapturedRow>)> = changed;
    for (key, (s, t)) in pending {
        match (&s, &t) {
            // Placed in different ranges by the two sides' key orders, and equal: no difference.
            (Some(a), Some(b)) if a.hash == b.hash => {}
            _ => rows.push((key, s, t)),
        }
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let (source_rows, target_rows) = if subject.missing_on_target {
        (source_count(cfg, table)?, 0)
    } else {
        (outcomes.iter().map(|o| o.result.source_rows).sum(), outcomes.iter().map(|o| o.result.target_rows).sum())
    };
    let status = if subject.missing_on_target {
        TableStatus::MissingOnTarget
    } else if rows.is_empty() && source_digest == target_digest {
        TableStatus::Identical
    } else {
        TableStatus::Different
    };
    let seconds = match outcomes.iter().map(|o| o.span).reduce(|a, b| (a.0.min(b.0), a.1.max(b.1))) {
        Some((start, end)) => end - start,
        None => 0.0,
    };
    let take = rows.len().min(*budget);
    *budget -= take;
    let diffs = rows.iter().take(take).map(|(_, s, t)| describe(cfg, table, s.as_ref(), t.as_ref())).collect();
    let ranges: Vec<RangeResult> = outcomes.into_iter().map(|o| o.result).collect();
    Ok(TableResult {
        source_table: table.name.to_string(),
        target_table: table.target.to_string(),
        key: table.key.as_ref().map(|k| k.description.clone()),
        status,
        source_rows,
        target_rows,
        source_digest: source_digest.to_string(),
        target_digest: target_digest.to_string(),
        differing_ranges: ranges.iter().filter(|r| !r.identical).count(),
        ranges,
        differing_rows: if subject.missing_on_target { source_rows as usize } else { rows.len() },
        diffs,
        seconds,
    })
}

/// Rows in the source for a table missing on the target (read once, for the summary).
fn source_count(cfg: &VerifyConfig, table: &Table) -> Result<u64> {
    let mut source = Source::connect(&cfg.source)?;
    let whole = Chunk { table_no: 0, chunk_no: 0, lo: None, hi: None };
    Ok(source.scan_range(table, &whole, false, &mut |_, _| Ok(()))?.0.rows)
}

/// A row difference in words: key, kind and the columns that differ (values hidden when
/// `--redact-values`).
fn describe(cfg: &VerifyConfig, table: &Table, source: Option<&CapturedRow>, target: Option<&CapturedRow>) -> RowDiff {
    let names: Vec<&str> = table.copied_columns().map(|c| c.name.as_str()).collect();
    let s = source.map(|r| split_values(&r.canonical)).unwrap_or_default();
    let t = target.map(|r| split_values(&r.canonical)).unwrap_or_default();
    let show = |v: &[u8]| if cfg.redact_values { "***".to_string() } else { display_value(v) };
    let either = if s.is_empty() { &t } else { &s };
    let key: Vec<(String, String)> = match key_positions(table) {
        Some(positions) => positions
            .into_iter()
            .map(|pos| (quote_ident(names[pos]), either.get(pos).map(|v| display_value(v)).unwrap_or_default()))
            .collect(),
        None => vec![("row".to_string(), either.iter().map(|v| show(v)).collect::<Vec<_>>().join(", "))],
    };
    let kind = match (source, target) {
        (Some(_), Some(_)) => DiffKind::Changed,
        (Some(_), None) => DiffKind::Missing,
        _ => DiffKind::Extra,
    };
    let columns = names
        .iter()
        .enumerate()
        .filter(|(i, _)| kind != DiffKind::Changed || s.get(*i) != t.get(*i))
        .map(|(i, name)| ColumnDiff {
            column: name.to_string(),
            source: s.get(i).map(|v| show(v)),
            target: t.get(i).map(|v| show(v)),
        })
        .collect();
    RowDiff { kind, key, columns }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::RowEncoder;
    use crate::schema::{Column, Key, LogicalType, TableName, TargetDdl};

    fn table(keyed: bool) -> Table {
        let col = |name: &str| Column {
            name: name.into(),
            type_sql: "text".into(),
            logical: LogicalType::Text,
            not_null: true,
            default_sql: None,
            identity_sql: None,
            generated_sql: None,
            user_elem_oid: None,
            user_elem_type_sql: None,
            source_type: String::new(),
        };
        Table {
            name: TableName::new("s", "t"),
            target: TableName::new("s", "t"),
            columns: vec![col("id"), col("v")],
            key: keyed.then(|| Key { columns: vec![0], description: "primary key (id)".into() }),
            estimated_rows: 0,
            estimated_bytes: 0,
            ddl: TargetDdl::default(),
            partitioned: false,
        }
    }

    fn row(id: &str, v: &str) -> CapturedRow {
        let mut e = RowEncoder::new();
        e.text(id.as_bytes());
        e.text(v.as_bytes());
        let canonical = e.as_bytes().to_vec();
        CapturedRow { hash: e.finish_row(), canonical }
    }

    #[test]
    fn rows_are_matched_by_key() {
        let t = table(true);
        let src = vec![row("1", "a"), row("2", "b"), row("3", "c")];
        let tgt = vec![row("1", "a"), row("2", "B"), row("4", "d")];
        let mut out = unmatched_rows(&t, src, tgt);
        out.sort_by(|a, b| a.0.cmp(&b.0));
        let kinds: Vec<(bool, bool)> = out.iter().map(|(_, s, t)| (s.is_some(), t.is_some())).collect();
        assert_eq!(kinds, [(true, true), (true, false), (false, true)]);
    }

    #[test]
    fn keyless_duplicates_are_counted_as_multisets() {
        let t = table(false);
        let src = vec![row("1", "a"), row("1", "a")];
        let tgt = vec![row("1", "a")];
        let out = unmatched_rows(&t, src, tgt);
        assert_eq!(out.len(), 1);
        assert!(out[0].1.is_some() && out[0].2.is_none());
    }

    #[test]
    fn a_changed_row_names_only_the_differing_columns() {
        let t = table(true);
        let cfg_redacted = false;
        let (s, tg) = (row("7", "old"), row("7", "new"));
        let cfg = test_config(cfg_redacted);
        let d = describe(&cfg, &t, Some(&s), Some(&tg));
        assert_eq!(d.kind, DiffKind::Changed);
        // Text values are shown quoted, so a NULL never reads like the text 'NULL'.
        assert_eq!(d.key, vec![("\"id\"".to_string(), "\"7\"".to_string())]);
        assert_eq!(d.columns.len(), 1);
        assert_eq!(
            (d.columns[0].source.as_deref(), d.columns[0].target.as_deref()),
            (Some("\"old\""), Some("\"new\""))
        );
        let d = describe(&test_config(true), &t, Some(&s), Some(&tg));
        assert_eq!(d.columns[0].source.as_deref(), Some("***"));
    }

    fn test_config(redact_values: bool) -> VerifyConfig {
        let pg = crate::config::PgEndpoint::parse("postgres://u@localhost/db", "source").unwrap();
        VerifyConfig {
            source: crate::config::SourceEndpoint::Postgres(pg.clone()),
            target: pg,
            tables: vec![],
            job: None,
            workers: 1,
            chunk_rows: 10,
            json_report: None,
            html_report: None,
            redact_values,
            max_diff_rows: 10,
            throttle: Default::default(),
        }
    }
}
