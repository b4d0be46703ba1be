//! Range verification: both sides of every key range are read (in parallel, each range in one
//! statement, so each side is one consistent read) and hashed with the canonical encoding;
//! ranges whose digests differ are narrowed down to the rows that are missing on the target,
//! extra on the target, or changed (with the columns that differ).
//!
//! Memory stays bounded whatever the tables hold. A differing range is cut into parts by
//! walking the source's key, and only parts whose digests differ are looked at again, down to
//! parts of at most `LEAF_ROWS` source rows; only there are rows matched, by key and row hash
//! (the source's held, the target's streamed past them). Rows are never held whole: captured
//! rows keep long values as stand-ins (see `RowEncoder::capturing`), and only the rows listed
//! in the report (`--max-diff-rows`) are read again to describe them. Every differing row is
//! counted; only the listing is capped.
//!
//! Where the two sides may order keys differently (text keys under two collations, MariaDB
//! UUIDs), a row may sit in one range on the source and another on the target: rows found on
//! one side only are matched by key across the table before anything is reported, so key
//! order alone never produces a difference. Tables without a key, and tables with too many
//! such rows to hold, are compared by buckets of their rows' key (or row) hashes instead,
//! which no order can split.
//!
//! With `--job`, the job's chunks must tile the table's key range and be done, and the
//! source's columns must be the ones the job copied; verify says so when they are not, and
//! never calls a table identical that the job's state does not cover.
//!
//! Columns are compared as the source maps them: by the job's recorded definition with
//! `--job`, else by the mapping options given (`--cast`, `--exclude-column`, as copy takes
//! them). Every source column left out of the comparison is named in the verdict with why.
//! One left out by an `--exclude-column` rule (given, or the job's) is expected; one the
//! target lacks or holds under another type without a rule saying so (a copy made with
//! options verify was not given) is never passed over: the table is at best `Incomplete`
//! ("could not verify" in full, exit 2), and the reason says which option to give.
//!
//! While the source keeps changing (replication or CDC keeps the target in step), rows that
//! differ may only be late: with `--recheck N`, the keys of the rows that differ are held (at
//! most `RECHECK_KEYS` over the run; past that, or for a difference no row was found for, the
//! table's differing ranges are compared again instead) and read again on both sides after
//! `--recheck-delay`; rows that converge are "in flight", not differences. With
//! `--since-column`, rows changed within `--min-age` on either side are left out: both sides'
//! scans leave out rows newer than one cutoff read from the source's clock, and a row found
//! on one side only because the other side's copy of it is recent is left out too (the keys
//! of recent rows are held per table, at most `RECENT_KEYS`).
//! This module must never write to either database.

use std::cmp::Ordering as CmpOrdering;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;

use crate::canonical::{display_value, split_values, RangeDigest, RowHash};
use crate::config::{CastTarget, Engine, SourceEndpoint, VerifyConfig};
use crate::copy_format::{ChunkSummary, RowSink};
use crate::error::{Error, Result};
use crate::pipeline;
use crate::plan::{plan_table, Bound, Chunk, PlanCursor};
use crate::schema::{quote_ident, quote_literal, LogicalType, Table};
use crate::source::postgres::{scan_rows, span_copy_sql_where};
use crate::source::Source;
use crate::state;
use crate::target::postgres::{check_columns, same_type, Existing, PgTarget};
use crate::throttle::Throttle;

/// A differing part with at most this many source rows is compared row by row: the keys and
/// hashes of its source rows are held (about a hundred bytes each), its target rows streamed.
const LEAF_ROWS: u64 = 8192;

/// A part is compared row by row only while its source rows stay under this many as they are
/// read (the source may have grown since it was counted); beyond, it is cut again.
const LEAF_MAX_ROWS: usize = 4 * LEAF_ROWS as usize;

/// A differing part with more source rows is cut into this many parts.
const FANOUT: u64 = 16;

/// Rows seen on one side only that are held while their partner may still turn up in another
/// range (keys the two sides may order differently). Past this, the table is compared by
/// buckets of key hashes instead.
const PENDING_MAX_ROWS: usize = 200_000;

/// Comparing by buckets: source rows held at once (the differing buckets are read in groups
/// of about this many rows).
const GROUP_ROWS: u64 = 100_000;

/// Comparing by buckets: at most 2^16 buckets (their digests take 40 bytes a side each).
const MAX_BUCKET_BITS: u32 = 16;

/// `--recheck`: keys of differing rows held over the whole run, to read them again. Past
/// this, a table's differing ranges are compared again instead.
const RECHECK_KEYS: usize = 100_000;

/// `--since-column`: keys of recent rows held over the whole run.
const RECENT_KEYS: usize = 200_000;

/// The outcome of a verification: per table, and the overall verdict.
#[derive(Debug, Serialize)]
pub struct Verification {
    pub tables: Vec<TableResult>,
    pub seconds: f64,
    /// `--recheck`: the rechecks made (at most the N given; fewer once everything converged).
    #[serde(skip_serializing_if = "is_zero")]
    pub rechecks: u32,
    /// `--since-column`: rows whose column is at or after this (UTC, the source's clock) were
    /// left out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cutoff: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The overall answer: identical, different (rows differ, or a table is missing or not
/// covered by the job), or incomplete (nothing found to differ, but columns were left out of
/// the comparison that no rule accounts for).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Identical,
    Different,
    Incomplete,
}

impl Verification {
    pub fn identical(&self) -> bool {
        self.verdict() == Verdict::Identical
    }

    /// Rows compared (the source's, as read), rows still differing, rows in flight.
    pub fn totals(&self) -> (u64, u64, u64) {
        self.tables
            .iter()
            .fold((0, 0, 0), |(c, d, f), t| (c + t.source_rows, d + t.differing_rows as u64, f + t.in_flight as u64))
    }

    pub fn verdict(&self) -> Verdict {
        let statuses = || self.tables.iter().map(|t| t.status);
        if statuses().all(|s| s == TableStatus::Identical) {
            Verdict::Identical
        } else if statuses().all(|s| matches!(s, TableStatus::Identical | TableStatus::Incomplete)) {
            Verdict::Incomplete
        } else {
            Verdict::Different
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TableStatus {
    Identical,
    Different,
    /// The target has no such table: every source row is missing.
    MissingOnTarget,
    /// `--job`: the job's state does not cover the table (chunks missing, overlapping or not
    /// done; see `coverage`). Its rows were compared all the same.
    Uncovered,
    /// The compared columns are identical, but columns no rule left out were not compared
    /// (see `columns_not_compared`): the table is not known to be identical.
    Incomplete,
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
    /// `--job`: why the job's state does not cover the table, one sentence each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub coverage: Vec<String>,
    /// Source columns whose values were not compared, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub columns_not_compared: Vec<NotCompared>,
    /// `--recheck`: rows that differed but converged when read again (replication lag).
    pub in_flight: usize,
    /// `--recheck`: how the table was rechecked when its differing rows could not be held by
    /// key (compared again range by range), in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recheck_note: Option<String>,
    /// `--since-column`: the rows left out as too recent (none: the table has no such column
    /// and was compared whole).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub left_out: Option<LeftOut>,
    pub seconds: f64,
}

/// `--since-column`: rows left out of a table's comparison as changed too recently.
#[derive(Debug, Clone, Serialize)]
pub struct LeftOut {
    pub column: String,
    /// Rows whose column is at or after the cutoff, on each side.
    pub source_rows: u64,
    pub target_rows: u64,
}

/// A source column left out of the comparison.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotCompared {
    pub column: String,
    /// Why, and for a column no rule accounts for, which option would compare the copy as made.
    pub why: String,
    /// Left out by an `--exclude-column` rule (given to verify, or the job's): the table may
    /// still be identical. Otherwise it is at best `Incomplete`.
    pub excluded: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct RangeResult {
    pub range: u32,
    pub lo: Bound,
    pub hi: Bound,
    pub source_rows: u64,
    pub target_rows: u64,
    pub identical: bool,
    /// Rows of this range found on one side only or changed (before rows that the two sides
    /// place in different ranges are matched across the table).
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

/// A key range of the target: the rows at or above every one of `lows` and below every one
/// of `highs`. Where the two sides order keys alike it is the source part's own range; where
/// they may not, it also carries the bounds of the ranges it was cut from (see `cut_target`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Span {
    lows: Vec<Vec<String>>,
    highs: Vec<Vec<String>>,
}

impl Span {
    fn of(chunk: &Chunk) -> Span {
        Span { lows: chunk.lo.iter().cloned().collect(), highs: chunk.hi.iter().cloned().collect() }
    }
}

/// How a table's differing ranges are narrowed down to rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Narrowing {
    /// Both sides order the key alike: parts are cut at the same keys on both sides, and a
    /// part's rows are matched within it.
    Bisect,
    /// The sides may order the key differently: target parts are cut in the target's order,
    /// and rows found on one side only wait for their partner from another part.
    BisectPending,
    /// No key: rows are compared by buckets of their hashes, over the whole table.
    Buckets,
}

/// Whether both engines order values of this type alike, so that a key range holds the same
/// rows on both sides. Text collates; enums and other types may be defined differently on
/// the target; MariaDB orders UUIDs its own way.
fn orders_alike(logical: &LogicalType, engine: Engine) -> bool {
    use LogicalType::*;
    match logical {
        Bool | Int2 | Int4 | Int8 | Oid | Numeric | Date | Timestamp | TimestampTz | Bytea => true,
        Uuid | Float4 | Float8 | Time | TimeTz | Interval => engine == Engine::Postgres,
        _ => false,
    }
}

fn narrowing(table: &Table, engine: Engine) -> Narrowing {
    if table.key.is_none() {
        Narrowing::Buckets
    } else if table.key_columns().iter().all(|c| orders_alike(&c.logical, engine)) {
        Narrowing::Bisect
    } else {
        Narrowing::BisectPending
    }
}

/// A table to verify and the ranges to compare it by.
#[derive(Clone)]
struct Subject {
    table: Table,
    ranges: Vec<Arc<Chunk>>,
    /// The same ranges on the target (see `target_ranges`); position i of both is compared.
    target_ranges: Vec<Arc<Span>>,
    missing_on_target: bool,
    narrowing: Narrowing,
    /// `--job`: what the job's state leaves uncovered.
    coverage: Vec<String>,
    /// Source columns not compared (not in `table`).
    not_compared: Vec<NotCompared>,
    /// Where the key's values sit among a captured row's values (`None`: no key).
    key_positions: Option<Vec<usize>>,
    /// `--since-column`, when the table has that column.
    filter: Option<Arc<RowFilter>>,
}

/// `--since-column` on one table: the conditions that keep rows older than the cutoff, and
/// the keys (row hashes without a key) of rows at or after it on either side.
struct RowFilter {
    column: String,
    source_sql: String,
    target_sql: String,
    recent: HashSet<Vec<u8>>,
    left_out: (u64, u64),
}

impl Subject {
    /// A row sink that keeps the hashes of the rows whose key is `wanted`, by key, in `into`.
    fn keep_wanted<'a>(
        &'a self,
        wanted: &'a HashSet<Vec<u8>>,
        into: &'a mut HashMap<Vec<u8>, Vec<RowHash>>,
    ) -> impl FnMut(&[u8], &RowHash) + 'a {
        move |row, hash| {
            let key = self.row_key(row, hash);
            if wanted.contains(&key) {
                into.entry(key).or_default().push(*hash);
            }
        }
    }

    /// What identifies a captured row: its key's values, or its hash for a table without a key.
    fn row_key(&self, row: &[u8], hash: &RowHash) -> Vec<u8> {
        match &self.key_positions {
            Some(positions) => {
                let values = split_values(row);
                positions.iter().flat_map(|&pos| values.get(pos).copied().unwrap_or_default().iter().copied()).collect()
            }
            None => hash.as_bytes().to_vec(),
        }
    }
}

/// Where a listed row is in the order of the report: table, range, the path of parts down to
/// the one it was found in, its key.
type Place = (usize, u32, Vec<u16>, Vec<u8>);

/// A differing row as found: where it sorts, what differs, and where to read it again to
/// describe it.
#[derive(Debug, Clone)]
struct Found {
    place: Place,
    kind: DiffKind,
    source: Option<Arc<Chunk>>,
    target: Option<Arc<Span>>,
}

impl PartialEq for Found {
    fn eq(&self, other: &Self) -> bool {
        self.place == other.place
    }
}
impl Eq for Found {}
impl PartialOrd for Found {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Found {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        self.place.cmp(&other.place)
    }
}

/// The rows the report lists: the first `--max-diff-rows` in report order, whichever worker
/// finds them first (a max-heap: the last of them goes when an earlier one comes).
struct Listing {
    max: usize,
    rows: BinaryHeap<Found>,
}

impl Listing {
    fn takes(&self, place: &Place) -> bool {
        self.rows.len() < self.max || self.rows.peek().is_some_and(|last| place < &last.place)
    }

    fn offer(&mut self, found: Found) {
        if !self.takes(&found.place) {
            return;
        }
        self.rows.push(found);
        if self.rows.len() > self.max {
            self.rows.pop();
        }
    }
}

/// A row seen on one side only, waiting for its partner from another range.
struct Unpaired {
    place: Place,
    hash: RowHash,
    source: Option<Arc<Chunk>>,
    target: Option<Arc<Span>>,
}

/// Rows seen on one side only in a table whose key the sides may order differently.
#[derive(Default)]
struct Pending {
    /// By key; `source` tells the side.
    rows: HashMap<Vec<u8>, Unpaired>,
    /// More than `PENDING_MAX_ROWS` came: the table is compared by buckets instead.
    overflowed: bool,
}

/// What all workers share.
struct Run<'a> {
    cfg: &'a VerifyConfig,
    subjects: Vec<Subject>,
    /// Per table: differing rows found so far (final ones only).
    counts: Vec<AtomicU64>,
    /// Per table (BisectPending): rows waiting for their partner.
    pending: Vec<Mutex<Pending>>,
    listing: Mutex<Listing>,
    throttle: Arc<Throttle>,
    cancel: &'a AtomicBool,
    started: Instant,
    /// `--recheck`: per table, the differing rows by key and where to read them again.
    differing: Vec<Mutex<Differing>>,
    /// Keys held in `differing`, over all tables.
    differing_keys: AtomicUsize,
    /// Per table (`--since-column`): rows found on one side only because the other side's
    /// copy is recent, and so left out.
    dropped: Vec<AtomicU64>,
}

/// A table's differing rows as `--recheck` holds them.
#[derive(Default)]
struct Differing {
    /// By key (row hash without a key): the region to read it again in, and how many rows
    /// of that key differ (rows without a key may be alike).
    rows: HashMap<Vec<u8>, (usize, usize)>,
    /// Regions: a source part and its target span, once each.
    regions: Vec<(Arc<Chunk>, Arc<Span>)>,
    region_of: HashMap<(Bound, Bound), usize>,
    /// More than `RECHECK_KEYS` differing rows: the table's ranges are compared again instead.
    overflowed: bool,
}

impl<'a> Run<'a> {
    fn new(cfg: &'a VerifyConfig, subjects: Vec<Subject>, cancel: &'a AtomicBool, started: Instant) -> Run<'a> {
        Run {
            cfg,
            counts: subjects.iter().map(|_| AtomicU64::new(0)).collect(),
            pending: subjects.iter().map(|_| Mutex::new(Pending::default())).collect(),
            differing: subjects.iter().map(|_| Mutex::new(Differing::default())).collect(),
            differing_keys: AtomicUsize::new(0),
            dropped: subjects.iter().map(|_| AtomicU64::new(0)).collect(),
            subjects,
            listing: Mutex::new(Listing { max: cfg.max_diff_rows, rows: BinaryHeap::new() }),
            throttle: Arc::new(Throttle::new(cfg.throttle.rows_per_sec, cfg.throttle.bytes_per_sec)),
            cancel,
            started,
        }
    }
}

/// One range's comparison.
struct RangeOutcome {
    table: usize,
    /// When the range's comparison started and ended, in seconds since the run started.
    span: (f64, f64),
    result: RangeResult,
    source: RangeDigest,
    target: RangeDigest,
}

/// A part of a range being narrowed down: the source's key range and the target's.
struct Part {
    table: usize,
    range: u32,
    path: Vec<u16>,
    source: Arc<Chunk>,
    target: Arc<Span>,
}

/// A worker's connections.
type Conns = (Source, PgTarget);

/// Verifies the configured tables. Errors mean "could not verify" (exit 2).
pub fn run(cfg: &VerifyConfig, cancel: &AtomicBool) -> Result<Verification> {
    let started = Instant::now();
    let mut source = Source::connect(&cfg.source)?;
    let mut target = PgTarget::connect(&cfg.target)?;
    source.learn_target(&mut target.conn)?;
    let mut subjects = subjects(cfg, &mut source, &mut target)?;
    let cutoff = match &cfg.live.since {
        Some(since) => {
            let cutoff = source.clock_minus(since.min_age)?;
            let mut room = RECENT_KEYS;
            for subject in subjects.iter_mut().filter(|s| !s.missing_on_target) {
                let filter = row_filter(cfg, &mut source, &mut target, subject, &since.column, &cutoff, &mut room)?;
                subject.filter = filter.map(Arc::new);
            }
            Some(cutoff)
        }
        None => None,
    };
    drop(source);
    drop(target);
    let run = Run::new(cfg, subjects, cancel, started);
    crate::live::verify_started(
        run.subjects.iter().map(|s| (s.table.name.to_string(), s.ranges.len())).collect(),
        &run.throttle,
    );
    let mut results = compare(&run)?;
    let rechecks = recheck(&run, &mut results)?;
    for (i, t) in results.iter().enumerate() {
        let status = serde_json::to_value(t.status).ok().and_then(|v| v.as_str().map(str::to_string));
        let (differing, in_flight) = (t.differing_rows as u64, t.in_flight as u64);
        crate::live::verify_table_done(i, &status.unwrap_or_default(), t.source_rows, differing, in_flight);
    }
    let mut diffs = describe_listed(&run)?;
    let tables = results
        .into_iter()
        .enumerate()
        .map(|(i, mut t)| {
            t.diffs = diffs.remove(&i).unwrap_or_default();
            t
        })
        .collect();
    let v = Verification { tables, seconds: started.elapsed().as_secs_f64(), rechecks, cutoff };
    let verdict = serde_json::to_value(v.verdict()).ok().and_then(|v| v.as_str().map(str::to_string));
    crate::live::verify_finished(&verdict.unwrap_or_default(), v.seconds, cfg.live.watch.is_some());
    Ok(v)
}

/// Compares every range of every subject, then settles each table.
fn compare(run: &Run) -> Result<Vec<TableResult>> {
    let cfg = run.cfg;
    let work: Vec<(usize, usize)> = run
        .subjects
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.missing_on_target)
        .flat_map(|(i, s)| (0..s.ranges.len()).map(move |pos| (i, pos)))
        .collect();
    let outcomes: Vec<Result<RangeOutcome>> = pipeline::parallel_map(
        cfg.workers,
        work,
        run.cancel,
        || Ok((Source::connect(&cfg.source)?, PgTarget::connect(&cfg.target)?)),
        |conns, (i, pos)| {
            let outcome = compare_range(run, conns, i, pos);
            if let Ok(o) = &outcome {
                let r = &o.result;
                crate::live::range_done(i, pos, r.identical, r.source_rows, r.differing_rows as u64);
            }
            outcome
        },
    )?;
    let mut by_table: Vec<Vec<RangeOutcome>> = run.subjects.iter().map(|_| Vec::new()).collect();
    for outcome in outcomes {
        let outcome = outcome?;
        by_table[outcome.table].push(outcome);
    }
    let mut results = Vec::new();
    for (i, outcomes) in by_table.into_iter().enumerate() {
        results.push(settle_table(run, i, outcomes)?);
    }
    Ok(results)
}

/// `--since-column`: the filter of a table that has the column (`None`: compared whole). The
/// keys of the rows at or after `cutoff` are read on both sides, and counted; `room` is how
/// many more keys the run may hold.
fn row_filter(
    cfg: &VerifyConfig,
    source: &mut Source,
    target: &mut PgTarget,
    subject: &Subject,
    column: &str,
    cutoff: &str,
    room: &mut usize,
) -> Result<Option<RowFilter>> {
    let table = &subject.table;
    let Some(col) = table.copied_columns().find(|c| c.name == column) else { return Ok(None) };
    let pg_type = match col.logical {
        LogicalType::TimestampTz => "timestamptz",
        LogicalType::Timestamp => "timestamp",
        _ => {
            return Err(Error::input(format!(
                "--since-column {column}: column {} of table {} is {}, not a timestamp; name a column that \
                 records when each row last changed (such as updated_at)",
                quote_ident(column),
                table.name,
                col.type_sql
            )))
        }
    };
    // Timestamps without a time zone are read as UTC, as rangecopy's sessions run in UTC.
    let pg_literal = format!("{}::{pg_type}", quote_literal(cutoff));
    let pg_col = quote_ident(column);
    let (source_col, source_literal) = match cfg.source.engine() {
        Engine::Postgres => (pg_col.clone(), pg_literal.clone()),
        Engine::Mysql => (format!("`{}`", column.replace('`', "``")), quote_literal(cutoff)),
    };
    let keep = |c: &str, l: &str| format!("{c} IS NULL OR {c} < {l}");
    let recent = |c: &str, l: &str| format!("{c} >= {l}");
    let whole = Chunk { table_no: 0, chunk_no: 0, lo: None, hi: None };
    let mut keys = HashSet::new();
    let mut too_many = false;
    let mut hold = |row: &[u8], hash: &RowHash| {
        if keys.len() < *room {
            keys.insert(subject.row_key(row, hash));
        } else {
            too_many = true;
        }
    };
    let source_rows = source
        .scan_range(table, &whole, Some(&recent(&source_col, &source_literal)), Some(&mut hold), &mut |_, _| Ok(()))?
        .rows;
    let sql = span_copy_sql_where(
        table,
        &format!("ONLY {}", table.target.quoted()),
        std::iter::empty(),
        std::iter::empty(),
        Some(&recent(&pg_col, &pg_literal)),
    );
    let target_rows = scan_rows(&mut target.conn, &sql, table, Some(&mut hold), &mut |_, _| Ok(()))?.rows;
    if too_many {
        return Err(Error::input(format!(
            "--min-age: more than {RECENT_KEYS} rows (up to table {}) changed more recently than that; \
             give a shorter --min-age",
            table.name
        )));
    }
    *room -= keys.len();
    Ok(Some(RowFilter {
        column: column.to_string(),
        source_sql: keep(&source_col, &source_literal),
        target_sql: keep(&pg_col, &pg_literal),
        recent: keys,
        left_out: (source_rows, target_rows),
    }))
}

/// The tables and their ranges: the job's chunks with `--job`, else ranges planned by
/// walking the source's keys.
fn subjects(cfg: &VerifyConfig, source: &mut Source, target: &mut PgTarget) -> Result<Vec<Subject>> {
    let mut subjects = Vec::new();
    if let Some(job) = &cfg.job {
        let Some(record) = state::load_job(&mut target.conn, job)? else {
            return Err(Error::input(format!("--job: the target has no job named {job:?}")));
        };
        let excluded = excluded_columns(&record.settings);
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
            let table = record.table;
            check_source_columns(job, &table, &source.column_names(&table)?, &excluded)?;
            let left_out = excluded_from(&table, &excluded, "left out of the copy by the job's --exclude-column");
            let chunks = state::job_chunks_done(&mut target.conn, job, record.table_no)?;
            let coverage = coverage_problems(&chunks, &record.phase);
            let ranges = if coverage.is_empty() {
                chunks.into_iter().map(|(c, _)| c).collect()
            } else {
                // Every row is still compared: along ranges planned now, which cover the
                // table whatever the state holds.
                planned_ranges(cfg, source, record.table_no, &table)?
            };
            subjects.push(subject(cfg, target, table, ranges, coverage, left_out)?);
        }
        if subjects.is_empty() {
            return Err(Error::input(format!("job {job:?} has none of the named tables")));
        }
        return Ok(subjects);
    }
    let excluded = cfg.source.excluded_columns();
    for (no, table) in source.describe_tables(&cfg.tables, &[])?.into_iter().enumerate() {
        let ranges = planned_ranges(cfg, source, no, &table)?;
        let left_out = excluded_from(&table, &excluded, "left out by --exclude-column");
        subjects.push(subject(cfg, target, table, ranges, Vec::new(), left_out)?);
    }
    Ok(subjects)
}

/// The columns of `table` that `--exclude-column` rules ([database, table, column]) left out.
fn excluded_from(table: &Table, excluded: &[[String; 3]], why: &str) -> Vec<NotCompared> {
    excluded
        .iter()
        .filter(|[db, t, _]| db == &table.name.schema && t == &table.name.name)
        .map(|[_, _, column]| NotCompared { column: column.clone(), why: why.to_string(), excluded: true })
        .collect()
}

fn planned_ranges(cfg: &VerifyConfig, source: &mut Source, no: usize, table: &Table) -> Result<Vec<Chunk>> {
    let mut ranges = Vec::new();
    plan_table(source, no, table, cfg.chunk_rows, PlanCursor::start(), |chunk, _| {
        ranges.push(chunk);
        Ok(true)
    })?;
    Ok(ranges)
}

/// The job's `--exclude-column` rules, as recorded in its settings: [database, table, column].
fn excluded_columns(settings: &serde_json::Value) -> Vec<[String; 3]> {
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    settings["excluded_columns"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| [text(&c[0]), text(&c[1]), text(&c[2])])
        .collect()
}

/// The source's columns now must be the ones the job recorded: a column added to the source
/// since the job read the table (mid-copy) is not on the target, and comparing the recorded
/// columns only would call the table identical.
fn check_source_columns(job: &str, table: &Table, current: &[String], excluded: &[[String; 3]]) -> Result<()> {
    if current.is_empty() && !table.columns.is_empty() {
        return Err(Error::input(format!("table {} of job {job:?} is no longer in the source", table.name)));
    }
    let recorded: HashSet<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
    let left_out =
        |c: &str| excluded.iter().any(|[db, t, col]| db == &table.name.schema && t == &table.name.name && col == c);
    let added: Vec<String> =
        current.iter().filter(|c| !recorded.contains(c.as_str()) && !left_out(c)).map(|c| quote_ident(c)).collect();
    let now: HashSet<&str> = current.iter().map(String::as_str).collect();
    let dropped: Vec<String> =
        table.columns.iter().filter(|c| !now.contains(c.name.as_str())).map(|c| quote_ident(&c.name)).collect();
    let mut problems = Vec::new();
    if !added.is_empty() {
        problems.push(format!(
            "the source has column{} {} that job {job:?} did not copy (added since the job read the table?)",
            if added.len() == 1 { "" } else { "s" },
            added.join(", ")
        ));
    }
    if !dropped.is_empty() {
        problems.push(format!(
            "column{} {} that job {job:?} copied {} no longer in the source",
            if dropped.len() == 1 { "" } else { "s" },
            dropped.join(", "),
            if dropped.len() == 1 { "is" } else { "are" }
        ));
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(Error::input(format!(
        "table {}: {}; the job's copy cannot be compared with the table as it is now \
         (verify without --job compares the current columns, and reports those the target lacks)",
        table.name,
        problems.join("; ")
    )))
}

/// Why a job's chunks do not cover its table, one sentence each (none when they do): they
/// must be done, and tile the key range, from -∞ to +∞, each starting where another ends.
/// Bounds are compared as the text the state holds, which is how planning wrote them.
fn coverage_problems(chunks: &[(Chunk, bool)], phase: &str) -> Vec<String> {
    const SHOWN: usize = 5;
    let mut problems = Vec::new();
    if phase != "done" {
        problems.push(format!("the table's phase is {phase:?}, not \"done\""));
    }
    if chunks.is_empty() {
        problems.push("the job's state holds no chunk of the table".to_string());
        return problems;
    }
    let not_done: Vec<String> =
        chunks.iter().filter(|(_, done)| !done).map(|(c, _)| format!("{} {}", c.chunk_no, c.range_text())).collect();
    if !not_done.is_empty() {
        let more = if not_done.len() > SHOWN { format!(" and {} more", not_done.len() - SHOWN) } else { String::new() };
        problems.push(format!(
            "chunk{} {}{more} {} not done",
            if not_done.len() == 1 { "" } else { "s" },
            not_done.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", "),
            if not_done.len() == 1 { "is" } else { "are" }
        ));
    }
    let mut by_lo: HashMap<&Bound, Vec<&Chunk>> = HashMap::new();
    for (c, _) in chunks {
        by_lo.entry(&c.lo).or_default().push(c);
    }
    let bound_text = |b: &Bound| {
        let probe = Chunk { table_no: 0, chunk_no: 0, lo: b.clone(), hi: None };
        let text = probe.range_text();
        text[1..text.rfind(',').unwrap_or(text.len())].to_string()
    };
    // Walk the chain from -∞: each chunk's end must be exactly one chunk's start.
    let mut seen: HashSet<u32> = HashSet::new();
    let mut at: Bound = None;
    loop {
        let next = by_lo.get(&at).map(Vec::as_slice).unwrap_or_default();
        match next {
            [] => {
                problems.push(format!(
                    "no chunk starts at {}: the rows from there to the next chunk are in no chunk",
                    bound_text(&at)
                ));
                break;
            }
            [one] => {
                if !seen.insert(one.chunk_no) {
                    problems.push(format!("chunk {} is reached twice: the chunks run in a circle", one.chunk_no));
                    break;
                }
                if one.hi.is_none() {
                    break;
                }
                at = one.hi.clone();
            }
            many => {
                let nos: Vec<String> = many.iter().map(|c| c.chunk_no.to_string()).collect();
                problems.push(format!("chunks {} all start at {}: they overlap", nos.join(", "), bound_text(&at)));
                break;
            }
        }
    }
    let stray: Vec<String> = chunks
        .iter()
        .filter(|(c, _)| !seen.contains(&c.chunk_no))
        .map(|(c, _)| format!("{} {}", c.chunk_no, c.range_text()))
        .collect();
    // Chunks the chain never reached overlap it (or follow a gap, already reported).
    if !stray.is_empty() && problems.iter().all(|p| !p.starts_with("no chunk starts") && !p.contains("overlap")) {
        let more = if stray.len() > SHOWN { format!(" and {} more", stray.len() - SHOWN) } else { String::new() };
        problems.push(format!(
            "chunk{} {}{more} overlap{} the others",
            if stray.len() == 1 { "" } else { "s" },
            stray.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", "),
            if stray.len() == 1 { "s" } else { "" }
        ));
    }
    problems
}

fn subject(
    cfg: &VerifyConfig,
    target: &mut PgTarget,
    table: Table,
    ranges: Vec<Chunk>,
    coverage: Vec<String>,
    mut not_compared: Vec<NotCompared>,
) -> Result<Subject> {
    let (table, missing_on_target) = match target.inspect(&table.target)? {
        Existing::Missing => (table, true),
        // The job's recorded columns are what it created: any other target is not its copy.
        Existing::Present { columns, .. } if cfg.job.is_some() => {
            check_columns(&table, &columns)
                .map_err(|e| Error::input(format!("{e} (verify compares columns of the same types)")))?;
            (table, false)
        }
        Existing::Present { columns, .. } => {
            let unmatched = unmatched_columns(cfg, &table, &columns);
            let table = without_columns(table, &unmatched)?;
            not_compared.extend(unmatched);
            (table, false)
        }
    };
    let narrowing = narrowing(&table, cfg.source.engine());
    let target_ranges = if missing_on_target || narrowing != Narrowing::BisectPending || ranges.len() < 2 {
        ranges.iter().map(Span::of).collect()
    } else {
        target_ranges(target, &table, &ranges)?
    };
    Ok(Subject {
        key_positions: key_positions(&table),
        ranges: ranges.into_iter().map(Arc::new).collect(),
        target_ranges: target_ranges.into_iter().map(Arc::new).collect(),
        table,
        missing_on_target,
        narrowing,
        coverage,
        not_compared,
        filter: None,
    })
}

/// Without `--job`: the source's columns, as mapped, that the target lacks or holds under
/// another type. Each says why, and from a MySQL/MariaDB source which option would compare a
/// copy made with it.
fn unmatched_columns(cfg: &VerifyConfig, table: &Table, existing: &[(String, String)]) -> Vec<NotCompared> {
    let my = match &cfg.source {
        SourceEndpoint::Mysql(ep) => Some(ep),
        SourceEndpoint::Postgres(_) => None,
    };
    let column_ref = |column: &str| [&table.name.schema, &table.name.name, column].map(my_part).join(".");
    let mut unmatched = Vec::new();
    for col in table.copied_columns() {
        let why = match existing.iter().find(|(n, _)| n == &col.name) {
            Some((_, t)) if same_type(t, &col.type_sql) => continue,
            None if my.is_some() => format!(
                "not on the target (copied with --exclude-column? give verify --exclude-column {} too)",
                shell_word(&column_ref(&col.name))
            ),
            None => "not on the target".to_string(),
            Some((_, t)) => {
                let Some(my) = my else {
                    unmatched.push(NotCompared {
                        column: col.name.clone(),
                        why: format!("{t} on the target, {} on the source", col.type_sql),
                        excluded: false,
                    });
                    continue;
                };
                let mapping = if my.options.casts.is_empty() {
                    "the default mapping"
                } else {
                    "the mapping with the --cast rules given"
                };
                let plain = t.trim_start_matches("pg_catalog.");
                match CastTarget::ALL.iter().find(|(name, _)| *name == plain) {
                    Some((name, _)) => format!(
                        "{t} on the target, {} by {mapping} (copied with --cast? give verify --cast {} too)",
                        col.type_sql,
                        shell_word(&format!("column:{}={name}", column_ref(&col.name))),
                    ),
                    None => format!("{t} on the target, {} by {mapping}", col.type_sql),
                }
            }
        };
        unmatched.push(NotCompared { column: col.name.clone(), why, excluded: false });
    }
    unmatched
}

/// A MySQL name part as `--cast` and `--exclude-column` take it: backquoted when it holds a
/// dot or a backquote.
fn my_part(name: &str) -> String {
    if name.contains(['.', '`']) {
        format!("`{}`", name.replace('`', "``"))
    } else {
        name.to_string()
    }
}

/// `text` as one word for a POSIX shell: single-quoted unless it is plain.
fn shell_word(text: &str) -> String {
    if !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || "_.:=-/".contains(c)) {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// `table` without the columns `gone` names: what verify compares. Refused when a key
/// column is among them (ranges are ranges of the key on both sides) or nothing is left.
fn without_columns(mut table: Table, gone: &[NotCompared]) -> Result<Table> {
    if gone.is_empty() {
        return Ok(table);
    }
    let is_gone = |name: &str| gone.iter().find(|g| g.column == name);
    for key in table.key_columns() {
        if let Some(g) = is_gone(&key.name) {
            return Err(Error::input(format!(
                "table {}: key column {} is {}; verify compares ranges of the key and cannot compare the table without it",
                table.name,
                quote_ident(&key.name),
                g.why
            )));
        }
    }
    if table.copied_columns().all(|c| is_gone(&c.name).is_some()) {
        let why: Vec<String> = gone.iter().map(|g| format!("{}: {}", quote_ident(&g.column), g.why)).collect();
        return Err(Error::input(format!("table {}: no column can be compared ({})", table.name, why.join("; "))));
    }
    let mut kept = Vec::with_capacity(table.columns.len());
    let mut new_index = Vec::with_capacity(table.columns.len());
    for col in std::mem::take(&mut table.columns) {
        if is_gone(&col.name).is_some() {
            new_index.push(None);
        } else {
            new_index.push(Some(kept.len()));
            kept.push(col);
        }
    }
    table.columns = kept;
    if let Some(key) = &mut table.key {
        key.columns = key.columns.iter().filter_map(|&i| new_index[i]).collect();
    }
    Ok(table)
}

/// The ranges' boundaries sorted in the target's key order. A key may order differently on
/// the two sides (MySQL's case-insensitive collations, another locale): the source's
/// boundaries, applied to the target in their own order, could overlap or leave gaps there.
/// Sorted, they cut the target into ranges again, so each target row is read exactly once;
/// rows the two orders place in different ranges are matched by key later.
fn target_ranges(target: &mut PgTarget, table: &Table, ranges: &[Chunk]) -> Result<Vec<Span>> {
    let cuts: Vec<Vec<String>> = ranges.iter().filter_map(|c| c.hi.clone()).collect();
    cut_target(target, table, &Span::default(), &cuts)
}

/// Cuts the target span `within` at `cuts` (source keys, in the source's order) taken in the
/// target's own order: `cuts.len() + 1` parts that together hold exactly the span's rows.
fn cut_target(target: &mut PgTarget, table: &Table, within: &Span, cuts: &[Vec<String>]) -> Result<Vec<Span>> {
    let sorted = sort_on_target(target, table, cuts)?;
    let mut parts = Vec::with_capacity(cuts.len() + 1);
    for i in 0..=sorted.len() {
        let mut part = within.clone();
        if i > 0 {
            part.lows.push(sorted[i - 1].clone());
        }
        if i < sorted.len() {
            part.highs.push(sorted[i].clone());
        }
        parts.push(part);
    }
    Ok(parts)
}

/// `bounds` in the order of the target's key (its columns' types and collations).
fn sort_on_target(target: &mut PgTarget, table: &Table, bounds: &[Vec<String>]) -> Result<Vec<Vec<String>>> {
    if bounds.len() < 2 {
        return Ok(bounds.to_vec());
    }
    let key = table.key_columns();
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
    Ok(target
        .conn
        .query(&sql, &[], &format!("ordering range bounds of {} on the target", table.target))?
        .iter()
        .map(|r| bounds[r.get::<_, i32>(0) as usize].clone())
        .collect())
}

/// Where the key's columns sit among the copied columns (the values of a captured row), or
/// `None` for a table without a key.
fn key_positions(table: &Table) -> Option<Vec<usize>> {
    let key = table.key.as_ref()?;
    let copied: Vec<usize> = table.columns.iter().enumerate().filter(|(_, c)| c.is_copied()).map(|(i, _)| i).collect();
    Some(key.columns.iter().filter_map(|k| copied.iter().position(|c| c == k)).collect())
}

/// Errors of a range, with the range they happened in.
fn in_range(table: &Table, chunk: &Chunk) -> impl Fn(Error) -> Error + use<> {
    let (name, no, range) = (table.name.to_string(), chunk.chunk_no, chunk.range_text());
    move |e| Error::Chunk { table: name.clone(), chunk: no, range: range.clone(), source: Box::new(e) }
}

/// Reads one side's part, handing captured rows to `on_row` when given. Only the source is
/// held to the rate: it is the live database to spare.
/// `filter` (`--since-column`) leaves rows out.
fn scan_source(
    run: &Run,
    source: &mut Source,
    table: &Table,
    filter: Option<&RowFilter>,
    chunk: &Chunk,
    on_row: Option<RowSink<'_>>,
) -> Result<ChunkSummary> {
    let filter = filter.map(|f| f.source_sql.as_str());
    source.scan_range(table, chunk, filter, on_row, &mut |rows, bytes| run.throttle.acquire(rows, bytes, run.cancel))
}

fn scan_target(
    target: &mut PgTarget,
    table: &Table,
    filter: Option<&RowFilter>,
    span: &Span,
    on_row: Option<RowSink<'_>>,
) -> Result<ChunkSummary> {
    let relation = format!("ONLY {}", table.target.quoted());
    let filter = filter.map(|f| f.target_sql.as_str());
    let sql = span_copy_sql_where(table, &relation, span.lows.iter(), span.highs.iter(), filter);
    scan_rows(&mut target.conn, &sql, table, on_row, &mut |_, _| Ok(()))
}

/// Both sides' digests of a part, read at once.
fn digests(
    run: &Run,
    (source, target): &mut Conns,
    table: &Table,
    part: &Part,
) -> Result<(ChunkSummary, ChunkSummary)> {
    let filter = run.subjects[part.table].filter.as_deref();
    let (s, t) = pipeline::join(
        || scan_source(run, source, table, filter, &part.source, None),
        || scan_target(target, table, filter, &part.target, None),
    );
    Ok((s?, t?))
}

/// Compares one range: digests of both sides, and when they differ, narrows it down.
fn compare_range(run: &Run, conns: &mut Conns, i: usize, pos: usize) -> Result<RangeOutcome> {
    let start = run.started.elapsed().as_secs_f64();
    let subject = &run.subjects[i];
    let chunk = &subject.ranges[pos];
    let context = in_range(&subject.table, chunk);
    let part = Part {
        table: i,
        range: pos as u32,
        path: Vec::new(),
        source: chunk.clone(),
        target: subject.target_ranges[pos].clone(),
    };
    let (src, tgt) = digests(run, conns, &subject.table, &part).map_err(&context)?;
    let mut result = RangeResult {
        range: chunk.chunk_no,
        lo: chunk.lo.clone(),
        hi: chunk.hi.clone(),
        source_rows: src.rows,
        target_rows: tgt.rows,
        identical: src.digest == tgt.digest,
        differing_rows: 0,
    };
    if !result.identical && subject.narrowing != Narrowing::Buckets {
        // The rows compared are those of these later reads: the source may have changed.
        result.differing_rows = narrow(run, conns, part, src.rows).map_err(&context)? as usize;
    }
    Ok(RangeOutcome {
        table: i,
        span: (start, run.started.elapsed().as_secs_f64()),
        result,
        source: src.digest,
        target: tgt.digest,
    })
}

/// Narrows a differing part of about `source_rows` source rows down to its rows; returns how
/// many it found on one side only or changed.
fn narrow(run: &Run, conns: &mut Conns, part: Part, source_rows: u64) -> Result<u64> {
    if run.cancel.load(Ordering::SeqCst) {
        return Err(Error::Interrupted);
    }
    let source_rows = if source_rows <= LEAF_ROWS {
        match match_rows(run, conns, &part)? {
            Ok(found) => return Ok(found),
            Err(counted) => counted,
        }
    } else {
        source_rows
    };
    let subject = &run.subjects[part.table];
    let table = &subject.table;
    let step = source_rows.div_ceil(FANOUT);
    let mut cuts: Vec<Vec<String>> = Vec::new();
    let mut from = part.source.lo.clone();
    while (cuts.len() as u64) < FANOUT - 1 {
        match conns.0.next_boundary_before(table, &from, &part.source.hi, step)? {
            Some(cut) => {
                from = Some(cut.clone());
                cuts.push(cut);
            }
            None => break,
        }
    }
    if cuts.is_empty() {
        // Fewer rows than counted (the source changed): at most `step` are left.
        return narrow(run, conns, part, step);
    }
    let mut bounds: Vec<Bound> = vec![part.source.lo.clone()];
    bounds.extend(cuts.iter().cloned().map(Some));
    bounds.push(part.source.hi.clone());
    let sources: Vec<Chunk> =
        bounds.windows(2).map(|w| Chunk { lo: w[0].clone(), hi: w[1].clone(), ..(*part.source).clone() }).collect();
    let targets = match subject.narrowing {
        Narrowing::BisectPending => cut_target(&mut conns.1, table, &part.target, &cuts)?,
        _ => sources.iter().map(Span::of).collect(),
    };
    let mut found = 0;
    for (j, (source, target)) in sources.into_iter().zip(targets).enumerate() {
        let mut path = part.path.clone();
        path.push(j as u16);
        let child =
            Part { table: part.table, range: part.range, path, source: Arc::new(source), target: Arc::new(target) };
        let (src, tgt) = digests(run, conns, table, &child)?;
        if src.digest != tgt.digest {
            found += narrow(run, conns, child, src.rows)?;
        }
    }
    Ok(found)
}

/// Matches a part's rows by key: its source rows' keys and hashes are held, its target rows
/// streamed past them. Returns the rows found on one side only or changed, or, when the
/// source holds more than `LEAF_MAX_ROWS` rows after all, `Err` with how many it holds.
fn match_rows(run: &Run, (source, target): &mut Conns, part: &Part) -> Result<Result<u64, u64>> {
    let subject = &run.subjects[part.table];
    let table = &subject.table;
    let mut held: HashMap<Vec<u8>, Vec<RowHash>> = HashMap::new();
    let mut overflowed = false;
    let filter = subject.filter.as_deref();
    let summary = scan_source(
        run,
        source,
        table,
        filter,
        &part.source,
        Some(&mut |row: &[u8], hash: &RowHash| {
            if overflowed {
                return;
            }
            held.entry(subject.row_key(row, hash)).or_default().push(*hash);
            if held.len() > LEAF_MAX_ROWS {
                overflowed = true;
                held = HashMap::new();
            }
        }),
    )?;
    if overflowed {
        return Ok(Err(summary.rows));
    }
    let mut found = 0u64;
    let mut report = |key: Vec<u8>, kind: DiffKind, hash: RowHash| {
        found += 1;
        settle_row(run, part, key, kind, hash);
    };
    scan_target(
        target,
        table,
        filter,
        &part.target,
        Some(&mut |row: &[u8], hash: &RowHash| {
            let key = subject.row_key(row, hash);
            let Some(hashes) = held.get_mut(&key) else {
                report(key, DiffKind::Extra, *hash);
                return;
            };
            // Held keys have a hash left (a key taken by one target row is gone for the next:
            // a target that holds a key twice has an extra row).
            match hashes.iter().position(|h| h == hash) {
                Some(i) => {
                    hashes.swap_remove(i);
                }
                None => {
                    hashes.pop();
                    report(key.clone(), DiffKind::Changed, *hash);
                }
            }
            if hashes.is_empty() {
                held.remove(&key);
            }
        }),
    )?;
    for (key, hashes) in held {
        for hash in hashes {
            report(key.clone(), DiffKind::Missing, hash);
        }
    }
    Ok(Ok(found))
}

/// Counts and lists a row a part's matching found, or, for a row on one side only where the
/// sides may order keys differently, pairs it with its partner from another part (or keeps it
/// until one comes).
fn settle_row(run: &Run, part: &Part, key: Vec<u8>, kind: DiffKind, hash: RowHash) {
    let subject = &run.subjects[part.table];
    let source = (kind != DiffKind::Extra).then(|| part.source.clone());
    let target = (kind != DiffKind::Missing).then(|| part.target.clone());
    let place: Place = (part.table, part.range, part.path.clone(), key);
    if subject.narrowing != Narrowing::BisectPending || kind == DiffKind::Changed {
        found_row(run, Found { place, kind, source, target });
        return;
    }
    let mut pending = run.pending[part.table].lock().unwrap_or_else(|e| e.into_inner());
    if pending.overflowed {
        return;
    }
    let key = place.3.clone();
    match pending.rows.remove(&key) {
        Some(partner) if partner.source.is_some() != source.is_some() => {
            if partner.hash != hash {
                let place = partner.place.min(place);
                let (source, target) = (source.or(partner.source), target.or(partner.target));
                found_row(run, Found { place, kind: DiffKind::Changed, source, target });
            }
            // Equal: the two orders put the same row in different ranges.
        }
        earlier => {
            if let Some(twin) = earlier {
                // The same key twice on one side (a target without its key's constraint).
                let kind = if twin.source.is_some() { DiffKind::Missing } else { DiffKind::Extra };
                found_row(run, Found { place: twin.place, kind, source: twin.source, target: twin.target });
            }
            pending.rows.insert(key, Unpaired { place, hash, source, target });
            if pending.rows.len() > PENDING_MAX_ROWS {
                pending.overflowed = true;
                pending.rows = HashMap::new();
            }
        }
    }
}

/// Counts a differing row and offers it to the listing; with `--recheck`, holds its key. A
/// row recent on either side (`--since-column`) is left out instead.
fn found_row(run: &Run, found: Found) {
    let i = found.place.0;
    if run.subjects[i].filter.as_ref().is_some_and(|f| f.recent.contains(&found.place.3)) {
        run.dropped[i].fetch_add(1, Ordering::Relaxed);
        return;
    }
    run.counts[i].fetch_add(1, Ordering::Relaxed);
    if run.cfg.live.rechecks > 0 {
        hold_differing(run, &found);
    }
    let mut listing = run.listing.lock().unwrap_or_else(|e| e.into_inner());
    listing.offer(found);
}

/// `--recheck`: holds a differing row's key with the region to read it again in, while the
/// run holds fewer than `RECHECK_KEYS`; past that, the table is rechecked by ranges.
fn hold_differing(run: &Run, found: &Found) {
    let i = found.place.0;
    let mut guard = run.differing[i].lock().unwrap_or_else(|e| e.into_inner());
    let held = &mut *guard;
    if held.overflowed {
        return;
    }
    if let Some((_, count)) = held.rows.get_mut(&found.place.3) {
        *count += 1;
        return;
    }
    if run.differing_keys.fetch_add(1, Ordering::SeqCst) >= RECHECK_KEYS {
        run.differing_keys.fetch_sub(1 + held.rows.len(), Ordering::SeqCst);
        *held = Differing { overflowed: true, ..Differing::default() };
        return;
    }
    let (chunk, span) = recheck_region(&run.subjects[i], found);
    let id = *held.region_of.entry((chunk.lo.clone(), chunk.hi.clone())).or_insert_with(|| {
        held.regions.push((chunk, span));
        held.regions.len() - 1
    });
    held.rows.insert(found.place.3.clone(), (id, 1));
}

/// Where to read a differing row again on both sides: the part it was found in where both
/// sides order the key alike, else the whole table.
fn recheck_region(subject: &Subject, found: &Found) -> (Arc<Chunk>, Arc<Span>) {
    if subject.narrowing == Narrowing::Bisect {
        match (&found.source, &found.target) {
            (Some(chunk), Some(span)) => return (chunk.clone(), span.clone()),
            (Some(chunk), None) => return (chunk.clone(), Arc::new(Span::of(chunk))),
            (None, Some(span)) => {
                let (lo, hi) = (span.lows.first().cloned(), span.highs.first().cloned());
                return (Arc::new(Chunk { table_no: 0, chunk_no: 0, lo, hi }), span.clone());
            }
            (None, None) => {}
        }
    }
    (Arc::new(Chunk { table_no: 0, chunk_no: 0, lo: None, hi: None }), Arc::new(Span::default()))
}

/// Forgets what a table's ranges found (its rows are counted again, by buckets).
fn forget_found(run: &Run, i: usize) {
    run.counts[i].store(0, Ordering::SeqCst);
    run.dropped[i].store(0, Ordering::SeqCst);
    run.listing.lock().unwrap_or_else(|e| e.into_inner()).rows.retain(|f| f.place.0 != i);
    let mut held = run.differing[i].lock().unwrap_or_else(|e| e.into_inner());
    run.differing_keys.fetch_sub(held.rows.len(), Ordering::SeqCst);
    *held = Differing::default();
}

/// `--recheck`: while tables differ and rechecks are left, waits `--recheck-delay` and reads
/// the differing rows again on both sides (by key, or where their keys could not all be held,
/// by comparing the table's differing ranges again); rows that converged are in flight.
/// Returns the rechecks made.
fn recheck(run: &Run, results: &mut [TableResult]) -> Result<u32> {
    let live = &run.cfg.live;
    let mut held: Vec<Differing> =
        run.differing.iter().map(|d| std::mem::take(&mut *d.lock().unwrap_or_else(|e| e.into_inner()))).collect();
    let mut made = 0;
    while made < live.rechecks {
        let differing: Vec<usize> =
            (0..results.len()).filter(|&i| results[i].status == TableStatus::Different).collect();
        if differing.is_empty() {
            break;
        }
        pause(run, live.recheck_delay)?;
        made += 1;
        for i in differing {
            let by_key = !held[i].overflowed && !held[i].rows.is_empty();
            let result = &mut results[i];
            if by_key {
                let converged = recheck_keys(run, i, &held[i])?;
                let mut rows = 0;
                for key in &converged {
                    rows += held[i].rows.remove(key).map_or(0, |(_, count)| count);
                }
                run.listing
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .rows
                    .retain(|f| f.place.0 != i || !converged.contains(&f.place.3));
                result.in_flight += rows;
                result.differing_rows = held[i].rows.values().map(|(_, count)| count).sum();
            } else {
                held[i] = recheck_ranges(run, i, result)?;
            }
            if result.differing_rows == 0 && (by_key || result.status != TableStatus::Different) {
                result.status = if run.subjects[i].not_compared.iter().any(|c| !c.excluded) {
                    TableStatus::Incomplete
                } else {
                    TableStatus::Identical
                };
                for r in &mut result.ranges {
                    r.identical = true;
                }
                result.differing_ranges = 0;
            }
        }
    }
    Ok(made)
}

/// Waits `delay`, or until interrupted.
fn pause(run: &Run, delay: std::time::Duration) -> Result<()> {
    let until = Instant::now() + delay;
    while let Some(left) = until.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) {
        if run.cancel.load(Ordering::SeqCst) {
            return Err(Error::Interrupted);
        }
        std::thread::sleep(left.min(std::time::Duration::from_millis(100)));
    }
    Ok(())
}

/// Reads a table's held differing rows again, region by region on both sides; returns the
/// keys of those that now agree (the same rows, or none, on both sides).
fn recheck_keys(run: &Run, i: usize, held: &Differing) -> Result<HashSet<Vec<u8>>> {
    let subject = &run.subjects[i];
    let table = &subject.table;
    let mut wanted: Vec<HashSet<Vec<u8>>> = held.regions.iter().map(|_| HashSet::new()).collect();
    for (key, &(region, _)) in &held.rows {
        wanted[region].insert(key.clone());
    }
    let work: Vec<usize> = (0..held.regions.len()).filter(|&r| !wanted[r].is_empty()).collect();
    let converged = pipeline::parallel_map(
        run.cfg.workers,
        work,
        run.cancel,
        || Ok((Source::connect(&run.cfg.source)?, PgTarget::connect(&run.cfg.target)?)),
        |(source, target): &mut Conns, r| -> Result<Vec<Vec<u8>>> {
            let (chunk, span) = &held.regions[r];
            let wanted = &wanted[r];
            let mut on_source: HashMap<Vec<u8>, Vec<RowHash>> = HashMap::new();
            let mut on_target: HashMap<Vec<u8>, Vec<RowHash>> = HashMap::new();
            let (s, t) = pipeline::join(
                || scan_source(run, source, table, None, chunk, Some(&mut subject.keep_wanted(wanted, &mut on_source))),
                || scan_target(target, table, None, span, Some(&mut subject.keep_wanted(wanted, &mut on_target))),
            );
            s.map_err(in_range(table, chunk))?;
            t.map_err(in_range(table, chunk))?;
            Ok(wanted
                .iter()
                .filter(|key| {
                    let mut a = on_source.get(*key).cloned().unwrap_or_default();
                    let mut b = on_target.get(*key).cloned().unwrap_or_default();
                    a.sort_by_key(|h| *h.as_bytes());
                    b.sort_by_key(|h| *h.as_bytes());
                    a == b
                })
                .cloned()
                .collect())
        },
    )?;
    let mut keys = HashSet::new();
    for c in converged {
        keys.extend(c?);
    }
    Ok(keys)
}

/// Rechecks a table whose differing rows could not all be held by key: its differing ranges
/// (all of them for a table compared by buckets, or when no range was seen to differ) are
/// compared again, and `result` takes the new counts; the rows that no longer differ are in
/// flight. Returns the keys the new comparison held, for the next recheck.
fn recheck_ranges(run: &Run, i: usize, result: &mut TableResult) -> Result<Differing> {
    let subject = &run.subjects[i];
    let differing: HashSet<(Bound, Bound)> =
        result.ranges.iter().filter(|r| !r.identical).map(|r| (r.lo.clone(), r.hi.clone())).collect();
    let mut again = subject.clone();
    if subject.narrowing != Narrowing::Buckets && !differing.is_empty() {
        let (ranges, spans) = subject
            .ranges
            .iter()
            .zip(&subject.target_ranges)
            .filter(|(c, _)| differing.contains(&(c.lo.clone(), c.hi.clone())))
            .map(|(c, s)| (c.clone(), s.clone()))
            .unzip();
        again.ranges = ranges;
        again.target_ranges = spans;
    }
    let ranges = again.ranges.len();
    let sub = Run::new(run.cfg, vec![again], run.cancel, Instant::now());
    let fresh = compare(&sub)?.remove(0);
    let before = result.differing_rows;
    result.in_flight += before.saturating_sub(fresh.differing_rows);
    result.differing_rows = fresh.differing_rows;
    result.status = fresh.status;
    for r in &mut result.ranges {
        if let Some(now) = fresh.ranges.iter().find(|f| f.lo == r.lo && f.hi == r.hi) {
            r.identical = now.identical;
            r.differing_rows = now.differing_rows;
        }
    }
    result.differing_ranges = result.ranges.iter().filter(|r| !r.identical).count();
    result.recheck_note = Some(format!(
        "rechecked by comparing {ranges} range{} again (its differing rows could not all be held by key)",
        if ranges == 1 { "" } else { "s" }
    ));
    let mut listing = run.listing.lock().unwrap_or_else(|e| e.into_inner());
    listing.rows.retain(|f| f.place.0 != i);
    for mut found in std::mem::take(&mut sub.listing.lock().unwrap_or_else(|e| e.into_inner()).rows) {
        found.place.0 = i;
        listing.offer(found);
    }
    drop(listing);
    let held = std::mem::take(&mut *sub.differing[0].lock().unwrap_or_else(|e| e.into_inner()));
    Ok(held)
}

/// Puts a table's range outcomes together: rows still waiting for a partner are missing or
/// extra; a table whose waiting rows overflowed, or that has no key, is compared by buckets.
fn settle_table(run: &Run, i: usize, mut outcomes: Vec<RangeOutcome>) -> Result<TableResult> {
    let subject = &run.subjects[i];
    let table = &subject.table;
    outcomes.sort_by_key(|o| o.result.range);
    let mut source_digest = RangeDigest::default();
    let mut target_digest = RangeDigest::default();
    for o in &outcomes {
        source_digest.merge(&o.source);
        target_digest.merge(&o.target);
    }
    let mut seconds = match outcomes.iter().map(|o| o.span).reduce(|a, b| (a.0.min(b.0), a.1.max(b.1))) {
        Some((start, end)) => end - start,
        None => 0.0,
    };
    let pending = std::mem::take(&mut *run.pending[i].lock().unwrap_or_else(|e| e.into_inner()));
    let by_buckets = match subject.narrowing {
        Narrowing::Buckets => true,
        Narrowing::BisectPending => pending.overflowed,
        Narrowing::Bisect => false,
    };
    if subject.missing_on_target {
        // Nothing was compared.
    } else if by_buckets {
        // Whatever the ranges found is counted again, by buckets.
        forget_found(run, i);
        if source_digest != target_digest {
            let started = Instant::now();
            compare_by_buckets(run, i, source_digest.rows().max(target_digest.rows()))?;
            seconds += started.elapsed().as_secs_f64();
        }
        if outcomes.len() == 1 {
            outcomes[0].result.differing_rows = run.counts[i].load(Ordering::SeqCst) as usize;
        }
    } else {
        for row in pending.rows.into_values() {
            let kind = if row.source.is_some() { DiffKind::Missing } else { DiffKind::Extra };
            found_row(run, Found { place: row.place, kind, source: row.source, target: row.target });
        }
    }
    let (source_rows, target_rows) = if subject.missing_on_target {
        (source_count(run.cfg, table)?, 0)
    } else {
        (source_digest.rows(), target_digest.rows())
    };
    let differing_rows =
        if subject.missing_on_target { source_rows as usize } else { run.counts[i].load(Ordering::SeqCst) as usize };
    let status = if subject.missing_on_target {
        TableStatus::MissingOnTarget
    } else if !subject.coverage.is_empty() {
        TableStatus::Uncovered
    } else if differing_rows != 0 || (source_digest != target_digest && run.dropped[i].load(Ordering::SeqCst) == 0) {
        // Digests that differ only by rows left out as recent on one side are alike.
        TableStatus::Different
    } else if subject.not_compared.iter().any(|c| !c.excluded) {
        TableStatus::Incomplete
    } else {
        TableStatus::Identical
    };
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
        differing_rows,
        diffs: Vec::new(),
        coverage: subject.coverage.clone(),
        columns_not_compared: subject.not_compared.clone(),
        in_flight: 0,
        recheck_note: None,
        left_out: subject.filter.as_ref().map(|f| LeftOut {
            column: f.column.clone(),
            source_rows: f.left_out.0,
            target_rows: f.left_out.1,
        }),
        seconds,
    })
}

/// The bucket of a row, by the first `bits` bits of the blake3 of what identifies it (its key,
/// or its hash for a table without a key): the same on both sides whatever their key orders.
fn bucket_of(key: &[u8], keyed: bool, bits: u32) -> usize {
    if bits == 0 {
        return 0;
    }
    let hash = if keyed { *blake3::hash(key).as_bytes() } else { key[..32].try_into().expect("a row hash") };
    (u32::from_le_bytes(hash[..4].try_into().expect("4 bytes")) >> (32 - bits)) as usize
}

/// How many bits of bucket number make buckets of about `LEAF_ROWS` rows, for `rows` rows.
fn bucket_bits(rows: u64) -> u32 {
    let buckets = rows.div_ceil(LEAF_ROWS).max(1);
    (u64::BITS - (buckets - 1).leading_zeros()).min(MAX_BUCKET_BITS)
}

/// Groups of differing buckets of about `GROUP_ROWS` rows (a bucket bigger than that alone),
/// from each bucket's rows on the larger side; buckets whose digests agree are left out.
fn bucket_groups(source: &[RangeDigest], target: &[RangeDigest]) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut rows = 0;
    for (b, (s, t)) in source.iter().zip(target).enumerate() {
        if s == t {
            continue;
        }
        let size = s.rows().max(t.rows());
        match groups.last_mut() {
            Some(group) if rows + size <= GROUP_ROWS => group.push(b),
            _ => {
                groups.push(vec![b]);
                rows = 0;
            }
        }
        rows += size;
    }
    groups
}

/// Compares a table by buckets of key (or row) hashes: one read of both sides for every
/// bucket's digest, then per group of differing buckets a read of both sides that holds the
/// group's source rows (keys and hashes) and streams the target's past them.
fn compare_by_buckets(run: &Run, i: usize, rows: u64) -> Result<()> {
    let subject = &run.subjects[i];
    let table = &subject.table;
    let keyed = subject.key_positions.is_some();
    let filter = subject.filter.as_deref();
    let bits = bucket_bits(rows);
    let mut conns: Conns = (Source::connect(&run.cfg.source)?, PgTarget::connect(&run.cfg.target)?);
    let pairs: Vec<(Arc<Chunk>, Arc<Span>)> =
        subject.ranges.iter().cloned().zip(subject.target_ranges.iter().cloned()).collect();
    let buckets = 1usize << bits;
    let groups = if bits == 0 {
        // One bucket, known to differ.
        vec![vec![0]]
    } else {
        let (mut source_digests, mut target_digests) =
            (vec![RangeDigest::default(); buckets], vec![RangeDigest::default(); buckets]);
        for (chunk, span) in &pairs {
            let (source, target) = (&mut conns.0, &mut conns.1);
            let (s, t) = pipeline::join(
                || {
                    scan_source(
                        run,
                        source,
                        table,
                        filter,
                        chunk,
                        Some(&mut |row: &[u8], hash: &RowHash| {
                            source_digests[bucket_of(&subject.row_key(row, hash), keyed, bits)].add(hash)
                        }),
                    )
                },
                || {
                    scan_target(
                        target,
                        table,
                        filter,
                        span,
                        Some(&mut |row: &[u8], hash: &RowHash| {
                            target_digests[bucket_of(&subject.row_key(row, hash), keyed, bits)].add(hash)
                        }),
                    )
                },
            );
            s.map_err(in_range(table, chunk))?;
            t.map_err(in_range(table, chunk))?;
        }
        bucket_groups(&source_digests, &target_digests)
    };
    for group in groups {
        if run.cancel.load(Ordering::SeqCst) {
            return Err(Error::Interrupted);
        }
        let mut wanted = vec![false; buckets];
        for b in group {
            wanted[b] = true;
        }
        let mut held: HashMap<Vec<u8>, Vec<(RowHash, u32)>> = HashMap::new();
        for (pos, (chunk, _)) in pairs.iter().enumerate() {
            scan_source(
                run,
                &mut conns.0,
                table,
                filter,
                chunk,
                Some(&mut |row: &[u8], hash: &RowHash| {
                    let key = subject.row_key(row, hash);
                    if wanted[bucket_of(&key, keyed, bits)] {
                        held.entry(key).or_default().push((*hash, pos as u32));
                    }
                }),
            )
            .map_err(in_range(table, chunk))?;
        }
        let found = |key: Vec<u8>, kind: DiffKind, source: Option<u32>, target: Option<u32>| {
            let pos = source.or(target).unwrap_or_default();
            found_row(
                run,
                Found {
                    place: (i, pos, Vec::new(), key),
                    kind,
                    source: source.map(|p| pairs[p as usize].0.clone()),
                    target: target.map(|p| pairs[p as usize].1.clone()),
                },
            );
        };
        for (pos, (chunk, span)) in pairs.iter().enumerate() {
            let pos = pos as u32;
            scan_target(
                &mut conns.1,
                table,
                filter,
                span,
                Some(&mut |row: &[u8], hash: &RowHash| {
                    let key = subject.row_key(row, hash);
                    if !wanted[bucket_of(&key, keyed, bits)] {
                        return;
                    }
                    let Some(hashes) = held.get_mut(&key) else {
                        found(key, DiffKind::Extra, None, Some(pos));
                        return;
                    };
                    match hashes.iter().position(|(h, _)| h == hash) {
                        Some(at) => {
                            hashes.swap_remove(at);
                        }
                        None => {
                            let from = hashes.pop().map(|(_, from)| from);
                            found(key.clone(), DiffKind::Changed, from, Some(pos));
                        }
                    }
                    if hashes.is_empty() {
                        held.remove(&key);
                    }
                }),
            )
            .map_err(in_range(table, chunk))?;
        }
        for (key, hashes) in held {
            for (_, from) in hashes {
                found(key.clone(), DiffKind::Missing, Some(from), None);
            }
        }
    }
    Ok(())
}

/// Rows in the source for a table missing on the target (read once, for the summary).
fn source_count(cfg: &VerifyConfig, table: &Table) -> Result<u64> {
    let mut source = Source::connect(&cfg.source)?;
    let whole = Chunk { table_no: 0, chunk_no: 0, lo: None, hi: None };
    Ok(source.scan_range(table, &whole, None, None, &mut |_, _| Ok(()))?.rows)
}

/// Describes the listed rows, per table in report order: each part they were found in is
/// read again, keeping only the listed rows' values.
fn describe_listed(run: &Run) -> Result<HashMap<usize, Vec<RowDiff>>> {
    let listed = std::mem::take(&mut run.listing.lock().unwrap_or_else(|e| e.into_inner()).rows).into_sorted_vec();
    if listed.is_empty() {
        return Ok(HashMap::new());
    }
    // What to read again: each source chunk and target span once, with the keys wanted there.
    type Wanted = HashSet<Vec<u8>>;
    let mut sources: Vec<(usize, Arc<Chunk>, Wanted)> = Vec::new();
    let mut targets: Vec<(usize, Arc<Span>, Wanted)> = Vec::new();
    fn want<T>(reads: &mut Vec<(usize, Arc<T>, Wanted)>, table: usize, part: &Arc<T>, key: &[u8]) {
        match reads.iter_mut().find(|(t, p, _)| *t == table && Arc::ptr_eq(p, part)) {
            Some((_, _, keys)) => {
                keys.insert(key.to_vec());
            }
            None => reads.push((table, part.clone(), HashSet::from([key.to_vec()]))),
        }
    }
    for f in &listed {
        if let Some(chunk) = &f.source {
            want(&mut sources, f.place.0, chunk, &f.place.3);
        }
        if let Some(span) = &f.target {
            want(&mut targets, f.place.0, span, &f.place.3);
        }
    }
    enum Read {
        Source(usize, Arc<Chunk>, Wanted),
        Target(usize, Arc<Span>, Wanted),
    }
    let reads: Vec<Read> = sources
        .into_iter()
        .map(|(t, c, w)| Read::Source(t, c, w))
        .chain(targets.into_iter().map(|(t, s, w)| Read::Target(t, s, w)))
        .collect();
    type Rows = HashMap<(usize, Vec<u8>), Vec<u8>>;
    let read = pipeline::parallel_map(
        run.cfg.workers,
        reads,
        run.cancel,
        || Ok((Source::connect(&run.cfg.source)?, PgTarget::connect(&run.cfg.target)?)),
        |(source, target): &mut Conns, read| -> Result<(bool, Rows)> {
            let mut rows = Rows::new();
            let (i, wanted, is_source) = match &read {
                Read::Source(i, _, w) => (*i, w, true),
                Read::Target(i, _, w) => (*i, w, false),
            };
            let subject = &run.subjects[i];
            let mut keep = |row: &[u8], hash: &RowHash| {
                let key = subject.row_key(row, hash);
                if wanted.contains(&key) {
                    rows.entry((i, key)).or_insert_with(|| row.to_vec());
                }
            };
            match &read {
                Read::Source(_, chunk, _) => {
                    scan_source(run, source, &subject.table, None, chunk, Some(&mut keep))
                        .map_err(in_range(&subject.table, chunk))?;
                }
                Read::Target(_, span, _) => {
                    scan_target(target, &subject.table, None, span, Some(&mut keep))?;
                }
            }
            Ok((is_source, rows))
        },
    )?;
    let (mut source_rows, mut target_rows) = (Rows::new(), Rows::new());
    for r in read {
        let (is_source, rows) = r?;
        if is_source { &mut source_rows } else { &mut target_rows }.extend(rows);
    }
    let mut out: HashMap<usize, Vec<RowDiff>> = HashMap::new();
    for f in listed {
        let (i, key) = (f.place.0, f.place.3);
        let subject = &run.subjects[i];
        let s = f.source.as_ref().and_then(|_| source_rows.get(&(i, key.clone())));
        let t = f.target.as_ref().and_then(|_| target_rows.get(&(i, key.clone())));
        out.entry(i).or_default().push(describe(
            run.cfg,
            subject,
            f.kind,
            &key,
            s.map(Vec::as_slice),
            t.map(Vec::as_slice),
        ));
    }
    Ok(out)
}

/// A row difference in words: key, kind and the columns that differ (values hidden when
/// `--redact-values`). A row that could not be read again (the source changed since) is
/// described by its key alone.
fn describe(
    cfg: &VerifyConfig,
    subject: &Subject,
    kind: DiffKind,
    key: &[u8],
    source: Option<&[u8]>,
    target: Option<&[u8]>,
) -> RowDiff {
    let table = &subject.table;
    let names: Vec<&str> = table.copied_columns().map(|c| c.name.as_str()).collect();
    let scales: Vec<Option<usize>> = table.copied_columns().map(|c| declared_scale(&c.type_sql)).collect();
    let s = source.map(split_values).unwrap_or_default();
    let t = target.map(split_values).unwrap_or_default();
    // Values as the column stores them: a numeric(12,2) of 505 reads 505.00.
    let value = |i: usize, v: &[u8]| as_declared(display_value(v), scales.get(i).copied().flatten());
    let show = |i: usize, v: &[u8]| if cfg.redact_values { "***".to_string() } else { value(i, v) };
    let either = if s.is_empty() { &t } else { &s };
    let key: Vec<(String, String)> = match &subject.key_positions {
        Some(positions) if either.is_empty() => {
            positions.iter().zip(split_values(key)).map(|(&pos, v)| (quote_ident(names[pos]), value(pos, v))).collect()
        }
        Some(positions) => positions
            .iter()
            .map(|&pos| (quote_ident(names[pos]), either.get(pos).map(|v| value(pos, v)).unwrap_or_default()))
            .collect(),
        None => {
            vec![("row".to_string(), either.iter().enumerate().map(|(i, v)| show(i, v)).collect::<Vec<_>>().join(", "))]
        }
    };
    let columns = if either.is_empty() {
        Vec::new()
    } else {
        names
            .iter()
            .enumerate()
            .filter(|(i, _)| kind != DiffKind::Changed || s.get(*i) != t.get(*i))
            .map(|(i, name)| ColumnDiff {
                column: name.to_string(),
                source: s.get(i).map(|v| show(i, v)),
                target: t.get(i).map(|v| show(i, v)),
            })
            .collect()
    };
    RowDiff { kind, key, columns }
}

/// The scale a column type declares: 2 for `numeric(12,2)` or `decimal(10, 2)`.
fn declared_scale(type_sql: &str) -> Option<usize> {
    let t = type_sql.trim().to_ascii_lowercase();
    let args = ["numeric(", "decimal(", "pg_catalog.numeric("].iter().find_map(|p| t.strip_prefix(p))?;
    let (_, scale) = args.strip_suffix(')')?.split_once(',')?;
    scale.trim().parse().ok()
}

/// A canonical decimal (`505`, `-1.5`) written with `scale` fractional digits (`505.00`);
/// anything else (NaN, NULL, another type) as it is.
fn as_declared(text: String, scale: Option<usize>) -> String {
    let Some(scale) = scale.filter(|s| *s > 0) else { return text };
    let digits = text.strip_prefix('-').unwrap_or(&text);
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let plain = !int.is_empty() && int.bytes().all(|b| b.is_ascii_digit()) && frac.bytes().all(|b| b.is_ascii_digit());
    if !plain || frac.len() >= scale {
        return text;
    }
    let point = if frac.is_empty() { "." } else { "" };
    format!("{text}{point}{}", "0".repeat(scale - frac.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::RowEncoder;

    /// Regression: the HTML report showed a numeric(12,2) of 505.00 as 505.
    #[test]
    fn decimals_show_the_scale_their_column_declares() {
        assert_eq!(declared_scale("numeric(12,2)"), Some(2));
        assert_eq!(declared_scale("decimal(10, 3)"), Some(3));
        assert_eq!(declared_scale("numeric"), None);
        assert_eq!(as_declared("505".into(), Some(2)), "505.00");
        assert_eq!(as_declared("-1.5".into(), Some(2)), "-1.50");
        assert_eq!(as_declared("1.25".into(), Some(2)), "1.25");
        assert_eq!(as_declared("NaN".into(), Some(2)), "NaN");
        assert_eq!(as_declared("NULL".into(), Some(2)), "NULL");
        assert_eq!(as_declared("505".into(), None), "505");
    }
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
            changes: Vec::new(),
        }
    }

    fn subject_of(table: Table) -> Subject {
        Subject {
            key_positions: key_positions(&table),
            narrowing: narrowing(&table, Engine::Postgres),
            table,
            ranges: Vec::new(),
            target_ranges: Vec::new(),
            missing_on_target: false,
            coverage: Vec::new(),
            not_compared: Vec::new(),
            filter: None,
        }
    }

    fn row(id: &str, v: &str) -> (Vec<u8>, RowHash) {
        let mut e = RowEncoder::capturing();
        e.text(id.as_bytes());
        e.text(v.as_bytes());
        let mut bytes = Vec::new();
        let hash = e.finish_row_with(|b, _| bytes = b.to_vec());
        (bytes, hash)
    }

    #[test]
    fn rows_are_identified_by_their_key_or_without_one_by_their_hash() {
        let keyed = subject_of(table(true));
        let (a, ha) = row("7", "old");
        let (b, hb) = row("7", "new");
        assert_eq!(keyed.row_key(&a, &ha), keyed.row_key(&b, &hb));
        assert_eq!(split_values(&keyed.row_key(&a, &ha)), [split_values(&a)[0]]);
        let keyless = subject_of(table(false));
        assert_eq!(keyless.narrowing, Narrowing::Buckets);
        assert_eq!(keyless.row_key(&a, &ha), ha.as_bytes().to_vec());
        assert_ne!(keyless.row_key(&a, &ha), keyless.row_key(&b, &hb));
    }

    #[test]
    fn keys_the_engines_may_order_differently_wait_for_their_partner() {
        let mut t = table(true);
        assert_eq!(narrowing(&t, Engine::Postgres), Narrowing::BisectPending, "text collates");
        t.columns[0].logical = LogicalType::Int8;
        assert_eq!(narrowing(&t, Engine::Mysql), Narrowing::Bisect);
        t.columns[0].logical = LogicalType::Uuid;
        assert_eq!(narrowing(&t, Engine::Postgres), Narrowing::Bisect);
        assert_eq!(narrowing(&t, Engine::Mysql), Narrowing::BisectPending, "MariaDB orders UUIDs its own way");
    }

    #[test]
    fn a_changed_row_names_only_the_differing_columns() {
        let subject = subject_of(table(true));
        let (s, hs) = row("7", "old");
        let (tg, _) = row("7", "new");
        let key = subject.row_key(&s, &hs);
        let d = describe(&test_config(false), &subject, DiffKind::Changed, &key, Some(&s), Some(&tg));
        assert_eq!(d.kind, DiffKind::Changed);
        // Text values are shown quoted, so a NULL never reads like the text 'NULL'.
        assert_eq!(d.key, vec![("\"id\"".to_string(), "\"7\"".to_string())]);
        assert_eq!(d.columns.len(), 1);
        assert_eq!(
            (d.columns[0].source.as_deref(), d.columns[0].target.as_deref()),
            (Some("\"old\""), Some("\"new\""))
        );
        let d = describe(&test_config(true), &subject, DiffKind::Changed, &key, Some(&s), Some(&tg));
        assert_eq!(d.columns[0].source.as_deref(), Some("***"));
        // Gone when read again: the key still says which row.
        let d = describe(&test_config(false), &subject, DiffKind::Missing, &key, None, None);
        assert_eq!((d.key, d.columns.len()), (vec![("\"id\"".to_string(), "\"7\"".to_string())], 0));
    }

    fn found(table: usize, key: u8) -> Found {
        Found { place: (table, 0, Vec::new(), vec![key]), kind: DiffKind::Missing, source: None, target: None }
    }

    /// Whatever order rows are found in, the listing keeps the first ones in report order.
    #[test]
    fn the_listing_keeps_the_first_rows_whatever_order_they_come_in() {
        let mut listing = Listing { max: 3, rows: BinaryHeap::new() };
        for (t, k) in [(1, 9), (0, 5), (1, 1), (0, 7), (2, 0), (0, 6)] {
            listing.offer(found(t, k));
        }
        let kept: Vec<(usize, u8)> = listing.rows.into_sorted_vec().iter().map(|f| (f.place.0, f.place.3[0])).collect();
        assert_eq!(kept, [(0, 5), (0, 6), (0, 7)]);
    }

    fn chunk(no: u32, lo: Option<i32>, hi: Option<i32>) -> (Chunk, bool) {
        let b = |v: Option<i32>| v.map(|v| vec![v.to_string()]);
        (Chunk { table_no: 0, chunk_no: no, lo: b(lo), hi: b(hi) }, true)
    }

    #[test]
    fn chunks_that_tile_the_key_range_cover_the_table_in_any_order() {
        let tiled = [chunk(0, None, Some(10)), chunk(2, Some(20), None), chunk(1, Some(10), Some(20))];
        assert!(coverage_problems(&tiled, "done").is_empty(), "{:?}", coverage_problems(&tiled, "done"));
        assert!(coverage_problems(&[chunk(0, None, None)], "done").is_empty());
    }

    #[test]
    fn gaps_overlaps_pending_chunks_and_unfinished_tables_are_named() {
        let has = |chunks: &[(Chunk, bool)], phase: &str, words: &[&str]| {
            let problems = coverage_problems(chunks, phase);
            for w in words {
                assert!(problems.iter().any(|p| p.contains(w)), "{w:?} not in {problems:?}");
            }
        };
        // The chunk [10, 20) was lost.
        has(&[chunk(0, None, Some(10)), chunk(2, Some(20), None)], "done", &["no chunk starts at 10"]);
        // The first chunk was lost.
        has(&[chunk(1, Some(10), None)], "done", &["no chunk starts at -∞"]);
        // The last chunk was lost: the chain ends at 20, not +∞.
        has(&[chunk(0, None, Some(10)), chunk(1, Some(10), Some(20))], "done", &["no chunk starts at 20"]);
        has(&[], "done", &["no chunk"]);
        // Two chunks from one start, and a stray chunk inside another.
        has(
            &[chunk(0, None, Some(10)), chunk(1, Some(10), None), chunk(2, Some(10), Some(15))],
            "done",
            &["chunks 1, 2 all start at 10", "overlap"],
        );
        has(
            &[chunk(0, None, Some(10)), chunk(1, Some(10), None), chunk(2, Some(12), Some(15))],
            "done",
            &["chunk 2 [12, 15) overlaps"],
        );
        let mut pending = chunk(1, Some(10), None);
        pending.1 = false;
        has(&[chunk(0, None, Some(10)), pending], "copying", &["chunk 1 [10, +∞) is not done", "\"copying\""]);
    }

    #[test]
    fn a_column_added_to_the_source_or_gone_from_it_is_named() {
        let t = table(true);
        let now = |cols: &[&str]| cols.iter().map(|c| c.to_string()).collect::<Vec<_>>();
        assert!(check_source_columns("j", &t, &now(&["id", "v"]), &[]).is_ok());
        let e = check_source_columns("j", &t, &now(&["id", "v", "added"]), &[]).unwrap_err().to_string();
        assert!(e.contains("\"added\"") && e.contains("s.t") && e.contains("did not copy"), "{e}");
        // Left out on purpose (--exclude-column) is not a change.
        let excluded = [["s".to_string(), "t".to_string(), "added".to_string()]];
        assert!(check_source_columns("j", &t, &now(&["id", "v", "added"]), &excluded).is_ok());
        let e = check_source_columns("j", &t, &now(&["id"]), &[]).unwrap_err().to_string();
        assert!(e.contains("\"v\"") && e.contains("no longer"), "{e}");
        assert!(check_source_columns("j", &t, &[], &[]).unwrap_err().to_string().contains("no longer in the source"));
    }

    #[test]
    fn buckets_hold_about_a_leaf_and_groups_only_differing_buckets() {
        assert_eq!(bucket_bits(0), 0);
        assert_eq!(bucket_bits(LEAF_ROWS), 0);
        assert_eq!(bucket_bits(LEAF_ROWS + 1), 1);
        assert_eq!(bucket_bits(LEAF_ROWS * 1000), 10);
        assert_eq!(bucket_bits(u64::MAX / 2), MAX_BUCKET_BITS);
        let key = b"some key";
        assert!(bucket_of(key, true, 10) < 1024);
        assert_eq!(bucket_of(key, true, 10), bucket_of(key, true, 10));
        let digest = |rows: u64| {
            let mut d = RangeDigest::default();
            for i in 0..rows {
                d.add(&RowHash([i as u8; 32]));
            }
            d
        };
        let big = GROUP_ROWS as usize / 2 + 1;
        let source = [digest(3), digest(big as u64), digest(big as u64), digest(1), digest(2)];
        let target = [digest(3), digest(big as u64 - 1), digest(big as u64 - 1), digest(2), digest(2)];
        assert_eq!(bucket_groups(&source, &target), vec![vec![1], vec![2, 3]]);
    }

    fn my_config(casts: &[&str]) -> VerifyConfig {
        let mut my = crate::config::MyEndpoint::parse("mysql://u@localhost/shop", "source").unwrap();
        my.options.casts = casts.iter().map(|r| crate::config::CastRule::parse(r).unwrap()).collect();
        VerifyConfig { source: SourceEndpoint::Mysql(my), ..test_config(false) }
    }

    fn target_columns(cols: &[(&str, &str)]) -> Vec<(String, String)> {
        cols.iter().map(|(n, t)| (n.to_string(), t.to_string())).collect()
    }

    #[test]
    fn target_columns_absent_or_of_another_type_are_named_with_the_option_to_give() {
        let mut t = table(true);
        t.name = TableName::new("shop", "my.t");
        t.columns[1].type_sql = "smallint".into();
        let id_only = target_columns(&[("id", "text")]);
        let v_bool = target_columns(&[("id", "text"), ("v", "boolean")]);
        let v_numeric = target_columns(&[("id", "text"), ("v", "pg_catalog.numeric")]);
        assert!(
            unmatched_columns(&my_config(&[]), &t, &target_columns(&[("id", "text"), ("v", "smallint")])).is_empty()
        );
        let absent = unmatched_columns(&my_config(&[]), &t, &id_only);
        assert_eq!(absent.len(), 1);
        assert_eq!((absent[0].column.as_str(), absent[0].excluded), ("v", false));
        assert!(absent[0].why.contains("not on the target"), "{absent:?}");
        assert!(absent[0].why.contains("--exclude-column 'shop.`my.t`.v'"), "{absent:?}");
        let cast = unmatched_columns(&my_config(&[]), &t, &v_bool);
        assert!(cast[0].why.starts_with("boolean on the target, smallint by the default mapping"), "{cast:?}");
        assert!(cast[0].why.contains("--cast 'column:shop.`my.t`.v=boolean'"), "{cast:?}");
        let other = unmatched_columns(&my_config(&["type:int=text"]), &t, &v_numeric);
        assert_eq!(
            other[0].why,
            "pg_catalog.numeric on the target, smallint by the mapping with the --cast rules given"
        );
        // From PostgreSQL there is no option to give: only what differs.
        let pg = unmatched_columns(&test_config(false), &t, &v_bool);
        assert_eq!(pg[0].why, "boolean on the target, smallint on the source");
        assert_eq!(unmatched_columns(&test_config(false), &t, &id_only)[0].why, "not on the target");
    }

    #[test]
    fn columns_not_compared_leave_the_table_with_its_key_or_refuse_it() {
        let gone = |name: &str| NotCompared { column: name.into(), why: "not on the target".into(), excluded: false };
        let mut t = table(true);
        t.columns.insert(0, t.columns[1].clone());
        t.columns[0].name = "first".into();
        t.key = Some(Key { columns: vec![1], description: "primary key (id)".into() });
        let kept = without_columns(t.clone(), &[gone("first")]).unwrap();
        assert_eq!(kept.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["id", "v"]);
        assert_eq!(kept.key_columns()[0].name, "id");
        assert_eq!(without_columns(t.clone(), &[]).unwrap().columns.len(), 3);
        let e = without_columns(t.clone(), &[gone("id")]).unwrap_err();
        assert!(e.is_input() && e.to_string().contains("key column \"id\" is not on the target"), "{e}");
        let e = without_columns(table(false), &[gone("id"), gone("v")]).unwrap_err();
        assert!(e.to_string().contains("no column can be compared"), "{e}");
    }

    #[test]
    fn shell_words_are_quoted_only_when_they_need_it() {
        assert_eq!(shell_word("shop.t.notes"), "shop.t.notes");
        assert_eq!(shell_word("column:shop.t.c=text"), "column:shop.t.c=text");
        assert_eq!(shell_word("shop.`a.b`.c"), "'shop.`a.b`.c'");
        assert_eq!(shell_word("it's"), "'it'\\''s'");
        assert_eq!(my_part("a.b"), "`a.b`");
        assert_eq!(my_part("a`b"), "`a``b`");
    }

    #[test]
    fn columns_no_rule_left_out_never_make_an_identical_verdict() {
        let result = |status: TableStatus| TableResult {
            source_table: "s.t".into(),
            target_table: "s.t".into(),
            key: None,
            status,
            source_rows: 0,
            target_rows: 0,
            source_digest: String::new(),
            target_digest: String::new(),
            ranges: Vec::new(),
            differing_ranges: 0,
            differing_rows: 0,
            diffs: Vec::new(),
            coverage: Vec::new(),
            columns_not_compared: Vec::new(),
            in_flight: 0,
            recheck_note: None,
            left_out: None,
            seconds: 0.0,
        };
        let verdict = |statuses: &[TableStatus]| {
            Verification {
                tables: statuses.iter().map(|s| result(*s)).collect(),
                seconds: 0.0,
                rechecks: 0,
                cutoff: None,
            }
            .verdict()
        };
        use TableStatus::*;
        assert_eq!(verdict(&[Identical, Identical]), Verdict::Identical);
        assert_eq!(verdict(&[Identical, Incomplete]), Verdict::Incomplete);
        assert_eq!(verdict(&[Incomplete, Different]), Verdict::Different);
        assert_eq!(verdict(&[Identical, MissingOnTarget]), Verdict::Different);
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
            live: Default::default(),
        }
    }
}
