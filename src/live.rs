//! The live view of a running job: what the run tells as it goes (hooks the pipeline and verify
//! call at chunk, range, retry and phase boundaries), one snapshot of it (`Status`), and its
//! three renderings: Prometheus text (`/metrics`), JSON (`/api/status`) and a status page for
//! people (`/`). `listen` serves them; `log` writes the same events as JSON lines.
//!
//! Rows and bytes are read from the workers' own atomic counters (`progress::Progress`) when a
//! snapshot is taken; the hooks run once per chunk or range, never per row, and only take a
//! short lock. This module must never block a worker, never query a database, and never hold
//! a URL or a password: error texts are redacted before they are kept.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use serde_json::json;

use crate::error::{redact, Error, ErrorCode};
use crate::progress::Progress;
use crate::target::postgres::Merged;
use crate::throttle::{PauseReason, Throttle};

/// Recent errors and retries kept for the status page.
pub const RECENT: usize = 20;

/// Cells of a verify range map at most: tables with more ranges show groups of ranges.
const MAP_CELLS: usize = 400;

/// How fast the shown rates follow a change (the time constant of their moving average).
const RATE_SMOOTHING: Duration = Duration::from_secs(10);

static LIVE: OnceLock<Arc<Live>> = OnceLock::new();

/// Makes `live` the one the hooks report to, for the rest of the process.
pub fn install(live: Arc<Live>) {
    let _ = LIVE.set(live);
}

fn live() -> Option<&'static Arc<Live>> {
    LIVE.get()
}

/// Which command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Copy,
    Verify,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Copy => "copy",
            Mode::Verify => "verify",
        }
    }
}

/// Everything the live view knows about a run.
pub struct Live {
    job: String,
    mode: Mode,
    /// Whether POSTs may change the throttle (shown on the page).
    control: bool,
    started: Instant,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// What the run does now: starting, copying, schema, verifying, done, failed, interrupted.
    stage: String,
    progress: Option<Arc<Progress>>,
    throttle: Option<Arc<Throttle>>,
    /// Per table (copy): its phase as the pipeline last said.
    phases: Vec<&'static str>,
    recent: VecDeque<Note>,
    retries: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
    lag: Option<f64>,
    rates: Rates,
    verify: Option<VerifyLive>,
    /// `verify --watch`: the last completed pass (the verification shown may be the next one,
    /// under way).
    watch: Option<WatchStatus>,
    /// Per table (`--into-existing`): what the merges of this process's committed chunks did.
    merged: Vec<Option<Merged>>,
}

/// An error or retry, as shown on the page.
#[derive(Debug, Clone, Serialize)]
pub struct Note {
    pub ts: String,
    pub kind: String,
    pub text: String,
}

/// Moving averages of rows/s and bytes/s, per table and in all, fed once a second. A table's
/// first samples after it starts moving are averaged plainly (weight 1/n), so its rate starts
/// at what it does rather than climbing from zero; later ones fade with `RATE_SMOOTHING`.
#[derive(Default)]
struct Rates {
    last: Option<(Instant, Vec<(u64, u64)>)>,
    /// Per table: rows/s, bytes/s, and samples since it first moved.
    per_table: Vec<(f64, f64, u32)>,
    total: (f64, f64),
}

impl Rates {
    /// Adds a sample of every table's (rows, bytes); the first one only sets the start.
    fn sample(&mut self, now: Instant, counts: Vec<(u64, u64)>) {
        if let Some((then, before)) = &self.last {
            let dt = now.duration_since(*then).as_secs_f64();
            if dt <= 0.0 || before.len() != counts.len() {
                self.last = Some((now, counts));
                return;
            }
            let fade = 1.0 - (-dt / RATE_SMOOTHING.as_secs_f64()).exp();
            self.per_table.resize(counts.len(), (0.0, 0.0, 0));
            let mut total = (0.0, 0.0);
            for ((rate, now_count), then_count) in self.per_table.iter_mut().zip(&counts).zip(before) {
                let rows = now_count.0.saturating_sub(then_count.0) as f64 / dt;
                let bytes = now_count.1.saturating_sub(then_count.1) as f64 / dt;
                if rate.2 > 0 || rows > 0.0 || bytes > 0.0 {
                    rate.2 = rate.2.saturating_add(1);
                    let alpha = fade.max(1.0 / f64::from(rate.2));
                    rate.0 += alpha * (rows - rate.0);
                    rate.1 += alpha * (bytes - rate.1);
                }
                total = (total.0 + rate.0, total.1 + rate.1);
            }
            self.total = total;
        }
        self.last = Some((now, counts));
    }
}

/// A verification's progress: per table, the state of each range.
struct VerifyLive {
    tables: Vec<VerifyTableLive>,
}

struct VerifyTableLive {
    name: String,
    /// Per range: 0 waiting, 1 identical, 2 different.
    ranges: Vec<u8>,
    rows_compared: u64,
    rows_differing: u64,
    rows_in_flight: u64,
    /// The table's verdict once settled.
    status: Option<String>,
}

impl Live {
    pub fn new(job: &str, mode: Mode, control: bool) -> Arc<Self> {
        Arc::new(Live {
            job: job.to_string(),
            mode,
            control,
            started: Instant::now(),
            inner: Mutex::new(Inner { stage: "starting".into(), ..Inner::default() }),
        })
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn control(&self) -> bool {
        self.control
    }

    /// The run's throttle, once the run has one (for `--control` on a verify).
    pub fn throttle(&self) -> Option<Arc<Throttle>> {
        self.inner().throttle.clone()
    }

    /// Feeds the rates; the server calls it once a second.
    pub fn sample(&self) {
        let progress = self.inner().progress.clone();
        if let Some(p) = progress {
            let counts = p.tables.iter().map(|t| (t.rows.load(Relaxed), t.bytes.load(Relaxed))).collect();
            self.inner().rates.sample(Instant::now(), counts);
        }
    }

    fn note(&self, kind: &str, text: &str) {
        let mut inner = self.inner();
        if inner.recent.len() == RECENT {
            inner.recent.pop_front();
        }
        inner.recent.push_back(Note {
            ts: crate::log::rfc3339(SystemTime::now()),
            kind: kind.into(),
            text: without_userinfo(&redact(text)),
        });
    }

    /// The run as it is now.
    pub fn status(&self) -> Status {
        let inner = self.inner();
        let elapsed = self.started.elapsed().as_secs_f64();
        let throttle = inner.throttle.as_ref().map(|t| {
            let (rows, bytes) = t.rates();
            let pause = t.pause();
            let hold = t.holding();
            ThrottleStatus {
                paused: pause != PauseReason::None,
                pause_reason: pause_name(pause),
                throttled: pause == PauseReason::None && hold.is_some(),
                rows_per_second_limit: rows,
                bytes_per_second_limit: bytes,
                holding: hold,
            }
        });
        let mut tables = Vec::new();
        let mut totals = Totals::default();
        if let Some(p) = &inner.progress {
            for (no, t) in p.tables.iter().enumerate() {
                let rows = t.rows.load(Relaxed);
                let bytes = t.bytes.load(Relaxed);
                let done = t.done.load(Relaxed);
                let estimated = t.estimated_rows.max(rows);
                let (rps, bps, _) = inner.rates.per_table.get(no).copied().unwrap_or_default();
                let phase = match inner.phases.get(no).copied() {
                    _ if done => "done",
                    Some(phase) => phase,
                    None => "waiting",
                };
                tables.push(TableStatus {
                    table: t.name.clone(),
                    phase,
                    rows,
                    bytes,
                    estimated_rows: estimated,
                    chunks_done: t.chunks_done.load(Relaxed),
                    chunks_planned: t.chunks_planned.load(Relaxed),
                    rows_per_second: rps,
                    bytes_per_second: bps,
                    eta_seconds: eta(estimated.saturating_sub(rows), rps, done),
                    merged: inner.merged.get(no).copied().flatten(),
                });
                totals.rows += rows;
                totals.bytes += bytes;
                totals.estimated_rows += estimated;
                totals.tables_done += usize::from(done);
            }
            totals.tables = p.tables.len();
            (totals.rows_per_second, totals.bytes_per_second) = inner.rates.total;
            let paused = throttle.as_ref().is_some_and(|t| t.paused);
            totals.eta_seconds = eta(totals.estimated_rows.saturating_sub(totals.rows), totals.rows_per_second, paused);
        }
        let verify = inner.verify.as_ref().map(|v| {
            let tables: Vec<VerifyTableStatus> = v
                .tables
                .iter()
                .map(|t| VerifyTableStatus {
                    table: t.name.clone(),
                    status: t.status.clone().unwrap_or_else(|| "verifying".into()),
                    ranges: t.ranges.len(),
                    ranges_done: t.ranges.iter().filter(|&&r| r != 0).count(),
                    ranges_identical: t.ranges.iter().filter(|&&r| r == 1).count(),
                    ranges_different: t.ranges.iter().filter(|&&r| r == 2).count(),
                    rows_compared: t.rows_compared,
                    rows_differing: t.rows_differing,
                    rows_in_flight: t.rows_in_flight,
                    map: range_map(&t.ranges),
                })
                .collect();
            let compared: u64 = tables.iter().map(|t| t.rows_compared).sum();
            let differing: u64 = tables.iter().map(|t| t.rows_differing).sum();
            VerifyStatus {
                tables_done: tables.iter().filter(|t| t.status != "verifying").count(),
                rows_compared: compared,
                rows_differing: differing,
                rows_in_flight: tables.iter().map(|t| t.rows_in_flight).sum(),
                consistency_percent: consistency(compared, differing),
                tables,
            }
        });
        Status {
            job: self.job.clone(),
            mode: self.mode,
            stage: inner.stage.clone(),
            control: self.control,
            elapsed_seconds: elapsed,
            throttle,
            replication_lag_seconds: inner.lag,
            totals,
            tables,
            retries: inner.retries.clone(),
            errors: inner.errors.clone(),
            recent: inner.recent.iter().cloned().collect(),
            verify,
            watch: inner.watch.clone(),
        }
    }
}

/// `text` with the user part of every URL in it left out (`postgres://app@db1/shop` becomes
/// `postgres://db1/shop`): the page may be served beyond the operators, and a URL's user part is
/// where a password would sit. Errors hold no passwords; this keeps user names off the page too.
fn without_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let end = tail.find(|c: char| c.is_whitespace() || c == '/').unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(user_end) => rest = &tail[user_end + 1..],
            None => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

fn pause_name(p: PauseReason) -> &'static str {
    match p {
        PauseReason::None => "none",
        PauseReason::Operator => "operator",
        PauseReason::Lag => "lag",
        PauseReason::Query => "query",
    }
}

/// Seconds left at `rate` rows/s; none while held, finished, or without a rate.
fn eta(left: u64, rate: f64, held: bool) -> Option<f64> {
    (!held && left > 0 && rate >= 1.0).then(|| left as f64 / rate)
}

/// Percent of compared rows that are identical; none before any row is compared.
fn consistency(compared: u64, differing: u64) -> Option<f64> {
    (compared > 0).then(|| 100.0 * compared.saturating_sub(differing) as f64 / compared as f64)
}

/// One character per range (or group of ranges): `.` waiting, `=` identical, `x` different (a
/// group is different if any of its ranges is, waiting if any is and none is different).
fn range_map(ranges: &[u8]) -> String {
    let per_cell = ranges.len().div_ceil(MAP_CELLS).max(1);
    ranges
        .chunks(per_cell)
        .map(|group| match () {
            _ if group.contains(&2) => 'x',
            _ if group.contains(&0) => '.',
            _ => '=',
        })
        .collect()
}

/// The run at one moment: what `/api/status` returns and the page and `/metrics` show.
#[derive(Debug, Serialize)]
pub struct Status {
    pub job: String,
    pub mode: Mode,
    pub stage: String,
    pub control: bool,
    pub elapsed_seconds: f64,
    pub throttle: Option<ThrottleStatus>,
    pub replication_lag_seconds: Option<f64>,
    pub totals: Totals,
    pub tables: Vec<TableStatus>,
    /// Retries by kind of error.
    pub retries: BTreeMap<String, u64>,
    /// Errors that stopped work, by kind.
    pub errors: BTreeMap<String, u64>,
    pub recent: Vec<Note>,
    pub verify: Option<VerifyStatus>,
    pub watch: Option<WatchStatus>,
}

/// `verify --watch`: the numbers of the last completed pass, and how long the watch has seen
/// every pass fully consistent.
#[derive(Debug, Clone, Serialize)]
pub struct WatchStatus {
    pub watch: String,
    pub pass: i32,
    pub finished_at: String,
    pub rows_compared: u64,
    pub rows_divergent: u64,
    pub rows_in_flight: u64,
    pub consistency_percent: f64,
    /// Since when (UTC) every pass has been fully consistent; absent while the last one is not.
    pub consistent_since: Option<String>,
    pub consistent_for_seconds: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct ThrottleStatus {
    pub paused: bool,
    /// none, operator (`rangecopy throttle --pause`, `POST /api/pause`), lag, query.
    pub pause_reason: &'static str,
    /// Waiting for the rate limit right now.
    pub throttled: bool,
    /// 0: no limit.
    pub rows_per_second_limit: u64,
    pub bytes_per_second_limit: u64,
    /// What holds the run back, in words.
    pub holding: Option<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct Totals {
    pub tables: usize,
    pub tables_done: usize,
    pub rows: u64,
    pub bytes: u64,
    pub estimated_rows: u64,
    pub rows_per_second: f64,
    pub bytes_per_second: f64,
    pub eta_seconds: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct TableStatus {
    pub table: String,
    pub phase: &'static str,
    pub rows: u64,
    pub bytes: u64,
    pub estimated_rows: u64,
    pub chunks_done: u64,
    /// Chunks planned so far (the total once planning is complete).
    pub chunks_planned: u64,
    pub rows_per_second: f64,
    pub bytes_per_second: f64,
    pub eta_seconds: Option<f64>,
    /// `--into-existing`: rows of this process's committed chunks by what the merge did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merged: Option<Merged>,
}

#[derive(Debug, Serialize)]
pub struct VerifyStatus {
    pub tables_done: usize,
    pub rows_compared: u64,
    pub rows_differing: u64,
    pub rows_in_flight: u64,
    pub consistency_percent: Option<f64>,
    pub tables: Vec<VerifyTableStatus>,
}

#[derive(Debug, Serialize)]
pub struct VerifyTableStatus {
    pub table: String,
    /// verifying, or the table's verdict (identical, different, …).
    pub status: String,
    pub ranges: usize,
    pub ranges_done: usize,
    pub ranges_identical: usize,
    pub ranges_different: usize,
    pub rows_compared: u64,
    pub rows_differing: u64,
    pub rows_in_flight: u64,
    /// See `range_map`.
    pub map: String,
}

// ---------------------------------------------------------------------------------------------
// Hooks: what the run tells as it goes. Each is a no-op but for the JSON log when no live view
// is installed.
// ---------------------------------------------------------------------------------------------

/// A short name for what kind of failure an error is, for counting: bounded in number.
pub fn error_kind(error: &Error) -> String {
    match error.root() {
        Error::Interrupted => "interrupted".into(),
        Error::Connect { .. } => "connect".into(),
        Error::Sql { code: ErrorCode::Sqlstate(s), .. } => format!("sqlstate_{s}"),
        Error::Sql { code: ErrorCode::Mysql(n), .. } => format!("mysql_{n}"),
        Error::Sql { code: ErrorCode::ConnectionLost, .. } => "connection_lost".into(),
        Error::Sql { code: ErrorCode::Silence, .. } => "silent_server".into(),
        Error::Sql { .. } => "sql".into(),
        Error::Io { .. } => "io".into(),
        _ => "other".into(),
    }
}

/// The copy's tables and throttle are known: the run starts.
pub fn copy_started(progress: &Arc<Progress>, throttle: &Arc<Throttle>) {
    let names: Vec<&str> = progress.tables.iter().map(|t| t.name.as_str()).collect();
    if let Some(live) = live() {
        let mut inner = live.inner();
        inner.stage = "copying".into();
        inner.phases = progress.tables.iter().map(|_| "waiting").collect();
        inner.progress = Some(progress.clone());
        inner.throttle = Some(throttle.clone());
        crate::log::event("started", json!({ "job": live.job, "mode": live.mode.as_str(), "tables": names }));
    }
}

/// A table of the copy enters a phase: copying, indexing, done.
pub fn table_phase(table_no: usize, phase: &'static str) {
    let Some(live) = live() else { return };
    let mut inner = live.inner();
    if let Some(p) = inner.phases.get_mut(table_no) {
        if *p == phase {
            return;
        }
        *p = phase;
    }
    let table = inner.progress.as_ref().and_then(|p| p.tables.get(table_no)).map(|t| t.name.clone());
    drop(inner);
    crate::log::event("table", json!({ "table": table, "phase": phase }));
}

/// A chunk is committed.
pub fn chunk_done(table: &str, chunk: u32, rows: i64, bytes: i64, took: Duration) {
    crate::log::event(
        "chunk",
        json!({ "table": table, "chunk": chunk, "rows": rows, "bytes": bytes, "ms": took.as_millis() as u64 }),
    );
}

/// A committed `--into-existing` chunk's merge: rows inserted, skipped, updated.
pub fn chunk_merged(table_no: usize, merged: &Merged) {
    let Some(live) = live() else { return };
    let mut inner = live.inner();
    if inner.merged.len() <= table_no {
        inner.merged.resize(table_no + 1, None);
    }
    let sum = inner.merged[table_no].get_or_insert_with(Merged::default);
    sum.inserted += merged.inserted;
    sum.skipped += merged.skipped;
    sum.updated += merged.updated;
}

/// Work failed in a way that is retried: `what` says what, when the error itself does not.
pub fn retry(what: &str, error: &Error, attempt: u32) {
    let kind = error_kind(error);
    let cause = redact(&error.root().to_string());
    let (table, chunk) = match error {
        Error::Chunk { table, chunk, .. } => (Some(table.clone()), Some(*chunk)),
        _ => (None, None),
    };
    if let Some(live) = live() {
        *live.inner().retries.entry(kind.clone()).or_default() += 1;
        let text = match (&table, chunk) {
            (Some(t), Some(c)) => format!("retry {attempt}: chunk {c} of {t}: {cause}"),
            _ => format!("retry {attempt}: {what}: {cause}"),
        };
        live.note(&kind, &text);
    }
    crate::log::event(
        "retry",
        json!({ "table": table, "chunk": chunk, "what": (!what.is_empty()).then_some(what), "attempt": attempt,
                "kind": kind, "cause": cause }),
    );
}

/// The throttle's check failed (kept as a recent error; the check is retried each second).
pub fn warning(kind: &str, text: &str) {
    if let Some(live) = live() {
        live.note(kind, text);
    }
}

/// Replication lag as the throttle's check saw it.
pub fn lag_seen(seconds: f64) {
    if let Some(live) = live() {
        live.inner().lag = Some(seconds);
    }
}

/// The copy creates the schema's objects (`phase`: before or after the rows).
pub fn schema_phase(phase: &str, summary: &str) {
    if let Some(live) = live() {
        live.inner().stage = "schema".into();
    }
    crate::log::event("schema", json!({ "phase": phase, "summary": summary }));
}

/// The run ended: `status` done, failed or interrupted; `error` says why it failed.
pub fn finished(status: &str, rows: u64, seconds: f64, error: Option<&Error>) {
    let text = error.map(|e| redact(&e.to_string()));
    if let Some(live) = live() {
        live.inner().stage = status.into();
        if let (Some(e), Some(text)) = (error, &text) {
            let kind = error_kind(e);
            *live.inner().errors.entry(kind.clone()).or_default() += 1;
            live.note(&kind, text);
        }
    }
    crate::log::event("finished", json!({ "status": status, "rows": rows, "seconds": seconds, "error": text }));
}

/// A verification starts: its tables (name, ranges) and its throttle.
pub fn verify_started(tables: Vec<(String, usize)>, throttle: &Arc<Throttle>) {
    let names: Vec<&str> = tables.iter().map(|(n, _)| n.as_str()).collect();
    if let Some(live) = live() {
        crate::log::event("started", json!({ "job": live.job, "mode": "verify", "tables": names }));
        let mut inner = live.inner();
        inner.stage = "verifying".into();
        // `copy --verify` keeps the copy's throttle on show.
        inner.throttle.get_or_insert_with(|| throttle.clone());
        inner.verify = Some(VerifyLive {
            tables: tables
                .into_iter()
                .map(|(name, ranges)| VerifyTableLive {
                    name,
                    ranges: vec![0; ranges],
                    rows_compared: 0,
                    rows_differing: 0,
                    rows_in_flight: 0,
                    status: None,
                })
                .collect(),
        });
    }
}

/// A range of table `table` (its position `pos`) is compared.
pub fn range_done(table: usize, pos: usize, identical: bool, rows: u64, differing: u64) {
    let Some(live) = live() else { return };
    let mut inner = live.inner();
    if let Some(t) = inner.verify.as_mut().and_then(|v| v.tables.get_mut(table)) {
        if let Some(r) = t.ranges.get_mut(pos) {
            *r = if identical { 1 } else { 2 };
        }
        t.rows_compared += rows;
        t.rows_differing += differing;
    }
}

/// A table's verdict: its final count of differing rows (rows found in the wrong range are
/// matched across the table by now) and of rows still changing.
pub fn verify_table_done(table: usize, status: &str, rows_compared: u64, differing: u64, in_flight: u64) {
    let mut name = None;
    if let Some(live) = live() {
        let mut inner = live.inner();
        if let Some(t) = inner.verify.as_mut().and_then(|v| v.tables.get_mut(table)) {
            t.status = Some(status.into());
            t.rows_compared = rows_compared;
            t.rows_differing = differing;
            t.rows_in_flight = in_flight;
            name = Some(t.name.clone());
        }
    }
    crate::log::event(
        "table",
        json!({ "table": name, "phase": "verified", "status": status, "rows_compared": rows_compared,
                "rows_differing": differing, "rows_in_flight": in_flight }),
    );
}

/// A pass of `verify --watch` is recorded: the numbers the page and `/metrics` show until the
/// next pass is.
pub fn watch_pass(pass: &crate::watch::PassSummary) {
    let Some(live) = live() else { return };
    live.inner().watch = Some(WatchStatus {
        watch: pass.watch.clone(),
        pass: pass.pass,
        finished_at: pass.finished_at.clone(),
        rows_compared: pass.rows_compared,
        rows_divergent: pass.rows_divergent,
        rows_in_flight: pass.rows_in_flight,
        consistency_percent: pass.consistency,
        consistent_since: pass.consistent_since.clone(),
        consistent_for_seconds: pass.consistent_for_seconds,
    });
}

/// A verification ended with `verdict` (in a copy with `--verify`, or a pass of a watch, the run
/// goes on).
/// `watching`: one pass of `verify --watch`, which goes on.
pub fn verify_finished(verdict: &str, seconds: f64, watching: bool) {
    let alone = !watching && live().is_some_and(|live| live.mode == Mode::Verify);
    if let (true, Some(live)) = (alone, live()) {
        live.inner().stage = "done".into();
    }
    // A verify's end is the run's end; a copy's `--verify` is a step of the copy.
    let event = if alone { "finished" } else { "verified" };
    crate::log::event(event, json!({ "status": "done", "verdict": verdict, "seconds": seconds }));
}

// ---------------------------------------------------------------------------------------------
// Renderings
// ---------------------------------------------------------------------------------------------

/// Prometheus text exposition format (version 0.0.4).
pub fn metrics(s: &Status) -> String {
    let mut m = Metrics::default();
    m.family("rangecopy_job_info", "gauge", "The job this process runs (always 1).");
    m.sample("rangecopy_job_info", &[("job", &s.job), ("mode", s.mode.as_str()), ("stage", &s.stage)], 1.0);
    m.gauge("rangecopy_elapsed_seconds", "Seconds since the run started.", s.elapsed_seconds);
    if !s.tables.is_empty() {
        m.gauge("rangecopy_tables", "Tables in the job.", s.totals.tables as f64);
        m.gauge("rangecopy_tables_done", "Tables fully copied, indexes included.", s.totals.tables_done as f64);
        let per_table = |m: &mut Metrics, name: &str, kind: &str, help: &str, value: &dyn Fn(&TableStatus) -> f64| {
            m.family(name, kind, help);
            for t in &s.tables {
                m.sample(name, &[("table", &t.table)], value(t));
            }
        };
        per_table(
            &mut m,
            "rangecopy_rows_copied_total",
            "counter",
            "Rows copied (committed and in flight; a failed chunk takes its rows back).",
            &|t| t.rows as f64,
        );
        per_table(&mut m, "rangecopy_bytes_copied_total", "counter", "Bytes of binary COPY data copied.", &|t| {
            t.bytes as f64
        });
        per_table(
            &mut m,
            "rangecopy_rows_estimated",
            "gauge",
            "Rows the table is expected to hold (the source's estimate, or more once copied).",
            &|t| t.estimated_rows as f64,
        );
        per_table(&mut m, "rangecopy_chunks_done_total", "counter", "Chunks committed.", &|t| t.chunks_done as f64);
        per_table(
            &mut m,
            "rangecopy_chunks_planned",
            "gauge",
            "Chunks planned so far (the total once planning is complete).",
            &|t| t.chunks_planned as f64,
        );
        per_table(&mut m, "rangecopy_table_done", "gauge", "1 once the table is copied and indexed.", &|t| {
            f64::from(u8::from(t.phase == "done"))
        });
        m.gauge(
            "rangecopy_rows_per_second",
            "Rows copied per second (moving average over about 10 s).",
            s.totals.rows_per_second,
        );
        m.gauge(
            "rangecopy_bytes_per_second",
            "Bytes copied per second (moving average over about 10 s).",
            s.totals.bytes_per_second,
        );
        if let Some(eta) = s.totals.eta_seconds {
            m.gauge("rangecopy_eta_seconds", "Seconds left at the recent rate.", eta);
        }
        if s.tables.iter().any(|t| t.merged.is_some()) {
            let name = "rangecopy_rows_merged_total";
            m.family(
                name,
                "counter",
                "--into-existing: rows of committed chunks by outcome: inserted (new to the target), skipped (the \
                 target's row kept), updated (the target's row overwritten).",
            );
            for t in &s.tables {
                let merged = t.merged.unwrap_or_default();
                for (outcome, n) in
                    [("inserted", merged.inserted), ("skipped", merged.skipped), ("updated", merged.updated)]
                {
                    m.sample(name, &[("table", &t.table), ("outcome", outcome)], n as f64);
                }
            }
        }
    }
    m.family("rangecopy_retries_total", "counter", "Work retried after a transient failure, by kind of error.");
    for (kind, n) in &s.retries {
        m.sample("rangecopy_retries_total", &[("kind", kind)], *n as f64);
    }
    m.family("rangecopy_errors_total", "counter", "Failures that stopped the run, by kind of error.");
    for (kind, n) in &s.errors {
        m.sample("rangecopy_errors_total", &[("kind", kind)], *n as f64);
    }
    if let Some(t) = &s.throttle {
        m.gauge("rangecopy_paused", "1 while the run is paused.", f64::from(u8::from(t.paused)));
        m.family("rangecopy_pause_reason", "gauge", "1 for the reason the run is paused (none while it runs).");
        for reason in ["none", "operator", "lag", "query"] {
            m.sample("rangecopy_pause_reason", &[("reason", reason)], f64::from(u8::from(t.pause_reason == reason)));
        }
        m.gauge("rangecopy_throttled", "1 while the run waits for its rate limit.", f64::from(u8::from(t.throttled)));
        m.gauge(
            "rangecopy_throttle_rows_per_second_limit",
            "The rows/s limit (0: none).",
            t.rows_per_second_limit as f64,
        );
        m.gauge(
            "rangecopy_throttle_bytes_per_second_limit",
            "The bytes/s limit (0: none).",
            t.bytes_per_second_limit as f64,
        );
    }
    if let Some(lag) = s.replication_lag_seconds {
        m.gauge("rangecopy_replication_lag_seconds", "Replication lag the --max-lag check saw last.", lag);
    }
    if let Some(v) = &s.verify {
        m.gauge("rangecopy_verify_tables", "Tables being verified.", v.tables.len() as f64);
        m.gauge("rangecopy_verify_tables_done", "Tables with a verdict.", v.tables_done as f64);
        let per_table =
            |m: &mut Metrics, name: &str, kind: &str, help: &str, value: &dyn Fn(&VerifyTableStatus) -> f64| {
                m.family(name, kind, help);
                for t in &v.tables {
                    m.sample(name, &[("table", &t.table)], value(t));
                }
            };
        per_table(&mut m, "rangecopy_verify_ranges", "gauge", "Ranges to compare.", &|t| t.ranges as f64);
        per_table(&mut m, "rangecopy_verify_ranges_done_total", "counter", "Ranges compared.", &|t| {
            t.ranges_done as f64
        });
        per_table(&mut m, "rangecopy_verify_ranges_different_total", "counter", "Ranges whose digests differ.", &|t| {
            t.ranges_different as f64
        });
        per_table(&mut m, "rangecopy_verify_rows_compared_total", "counter", "Source rows compared.", &|t| {
            t.rows_compared as f64
        });
        per_table(
            &mut m,
            "rangecopy_verify_rows_differing",
            "gauge",
            "Rows that differ (missing, extra or changed).",
            &|t| t.rows_differing as f64,
        );
        per_table(
            &mut m,
            "rangecopy_verify_rows_in_flight",
            "gauge",
            "Rows that differed and then converged (replication lag, not a difference).",
            &|t| t.rows_in_flight as f64,
        );
        if let Some(pct) = v.consistency_percent {
            m.gauge("rangecopy_verify_consistency_percent", "Percent of compared rows that are identical.", pct);
        }
    }
    if let Some(w) = &s.watch {
        m.family("rangecopy_watch_passes_total", "counter", "Passes of verify --watch recorded (the watch's history).");
        m.sample("rangecopy_watch_passes_total", &[("watch", &w.watch)], f64::from(w.pass));
        m.gauge(
            "rangecopy_watch_consistency_percent",
            "Percent of the rows compared in the last completed pass that are not divergent.",
            w.consistency_percent,
        );
        m.gauge(
            "rangecopy_watch_rows_divergent",
            "Rows still different after the rechecks of the last completed pass.",
            w.rows_divergent as f64,
        );
        m.gauge(
            "rangecopy_watch_rows_in_flight",
            "Rows of the last completed pass that differed and then converged.",
            w.rows_in_flight as f64,
        );
        m.gauge(
            "rangecopy_watch_consistent_seconds",
            "How long every pass has been fully consistent (0 while the last one is not).",
            w.consistent_for_seconds.unwrap_or(0.0),
        );
    }
    m.out
}

#[derive(Default)]
struct Metrics {
    out: String,
}

impl Metrics {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{label}=\"{}\"", escape_label(value));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", number(value));
    }

    fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.family(name, "gauge", help);
        self.sample(name, &[], value);
    }
}

/// A label value as the text format wants it: backslash, double quote and line feed escaped.
fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Whole numbers without a fraction; the text format's spelling of the special values.
fn number(v: f64) -> String {
    match v {
        v if v.is_nan() => "NaN".into(),
        v if v == f64::INFINITY => "+Inf".into(),
        v if v == f64::NEG_INFINITY => "-Inf".into(),
        v if v.fract() == 0.0 && v.abs() < 1e15 => format!("{}", v as i64),
        v => format!("{v}"),
    }
}

/// The status page: one self-contained document that fetches `/api/status` every two seconds
/// and fills itself in. It holds no data of its own, so it never shows a stale first view.
pub fn page() -> String {
    format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>rangecopy</title>\
         <meta name=viewport content=\"width=device-width\"><style>{}{PAGE_STYLE}</style></head><body>{PAGE_BODY}\
         <script>{PAGE_SCRIPT}</script></body></html>",
        crate::report::STYLE
    )
}

const PAGE_STYLE: &str = ".bar{background:#e5e7eb;border-radius:3px;height:8px;min-width:120px}\
    .bar i{display:block;height:8px;border-radius:3px;background:#3b82f6}\
    .map span.r-wait{background:#d1d5db}#state.paused{background:#fef3c7;color:#92400e}";

const PAGE_BODY: &str = "<h1>rangecopy <span id=job></span></h1>\
    <div id=state class=verdict>loading…</div>\
    <dl class=run id=summary></dl>\
    <section id=copy hidden><h2>Tables</h2><table><thead><tr><th>table<th>phase<th>progress<th>rows\
    <th>estimated<th>chunks<th>rows/s<th>ETA</tr></thead><tbody id=tables></tbody></table></section>\
    <section id=verify hidden><h2>Verification</h2><p id=watch hidden></p><p id=consistency></p>\
    <p class=legend><span class=r-ok></span>identical<span class=r-bad></span>different\
    <span class=r-wait style=background:#d1d5db></span>not yet compared</p>\
    <table><thead><tr><th>table<th>status<th>ranges<th>rows compared<th>rows differing<th>rows in flight\
    <th>range map</tr></thead><tbody id=vtables></tbody></table></section>\
    <h2>Recent errors and retries</h2><ul id=recent><li class=muted>none</li></ul>\
    <p class=muted id=updated></p>";

const PAGE_SCRIPT: &str = r#"
const $ = id => document.getElementById(id);
const esc = s => String(s).replace(/[&<>"]/g, c => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]));
const num = n => n >= 1e6 ? (n / 1e6).toFixed(2) + 'M' : n >= 1e4 ? (n / 1e3).toFixed(1) + 'k' : String(Math.round(n));
const bytes = n => { const u = ['B','KiB','MiB','GiB','TiB']; let i = 0; while (n >= 1024 && i < 4) { n /= 1024; i++; } return (i ? n.toFixed(1) : n) + ' ' + u[i]; };
const dur = s => s == null ? '-' : s < 60 ? s.toFixed(0) + 's' : s < 3600 ? Math.floor(s / 60) + 'm' + String(Math.floor(s % 60)).padStart(2, '0') + 's' : Math.floor(s / 3600) + 'h' + String(Math.floor(s % 3600 / 60)).padStart(2, '0') + 'm';
function render(s) {
  $('job').textContent = s.job + ' (' + s.mode + ')';
  document.title = 'rangecopy ' + s.job + ': ' + s.stage;
  const t = s.throttle, st = $('state');
  const held = t && t.paused;
  st.textContent = s.stage + (held ? ' (paused: ' + t.pause_reason + ')' : t && t.holding ? ' (' + t.holding + ')' : '');
  st.className = 'verdict ' + (held ? 'paused' : s.stage == 'failed' ? 'bad' : 'ok');
  const lim = (n, u) => n ? num(n) + ' ' + u + '/s' : 'none';
  let dl = '<dt>elapsed</dt><dd>' + dur(s.elapsed_seconds) + '</dd>';
  if (s.tables.length) dl += '<dt>rows</dt><dd id=total-rows>' + num(s.totals.rows) + ' of ' + num(s.totals.estimated_rows) + ', ' + bytes(s.totals.bytes) + '</dd><dt>rate</dt><dd>' + num(s.totals.rows_per_second) + ' rows/s, ' + bytes(s.totals.bytes_per_second) + '/s, ETA ' + (held ? 'paused' : dur(s.totals.eta_seconds)) + '</dd><dt>tables done</dt><dd>' + s.totals.tables_done + ' of ' + s.totals.tables + '</dd>';
  if (t) dl += '<dt>limits</dt><dd>' + lim(t.rows_per_second_limit, 'rows') + ', ' + lim(t.bytes_per_second_limit, 'bytes') + (s.control ? ' (changeable here: POST /api/pause, /api/resume, /api/rate)' : '') + '</dd>';
  if (s.replication_lag_seconds != null) dl += '<dt>replication lag</dt><dd>' + s.replication_lag_seconds.toFixed(1) + 's</dd>';
  $('summary').innerHTML = dl;
  $('copy').hidden = !s.tables.length;
  $('tables').innerHTML = s.tables.map(r => {
    const pct = r.estimated_rows ? Math.min(100, 100 * r.rows / r.estimated_rows) : (r.phase == 'done' ? 100 : 0);
    return '<tr data-table="' + esc(r.table) + '"><td>' + esc(r.table) + '</td><td>' + r.phase + '</td><td><div class=bar><i style="width:' + pct.toFixed(1) + '%"></i></div></td><td class=num>' + r.rows + '</td><td class=num>' + r.estimated_rows + '</td><td class=num>' + r.chunks_done + '/' + r.chunks_planned + '</td><td class=num>' + num(r.rows_per_second) + '</td><td>' + (held && r.phase != 'done' ? 'paused' : dur(r.eta_seconds)) + '</td></tr>';
  }).join('');
  const v = s.verify, w = s.watch;
  $('verify').hidden = !v;
  $('watch').hidden = !w;
  if (w) $('watch').textContent = 'watch ' + w.watch + ': pass ' + w.pass + ' finished ' + w.finished_at + ' UTC, ' + w.consistency_percent.toFixed(3) + '% consistent (' + w.rows_divergent + ' divergent, ' + w.rows_in_flight + ' in flight of ' + num(w.rows_compared) + ' compared)' + (w.consistent_since ? '; consistent since ' + w.consistent_since + ' UTC, for ' + dur(w.consistent_for_seconds) : '');
  if (v) {
    $('consistency').textContent = (v.consistency_percent == null ? '-' : v.consistency_percent.toFixed(3) + '%') + ' consistent: ' + num(v.rows_compared) + ' rows compared, ' + v.rows_differing + ' differing, ' + v.rows_in_flight + ' in flight; tables done ' + v.tables_done + ' of ' + v.tables.length;
    $('vtables').innerHTML = v.tables.map(r => '<tr data-table="' + esc(r.table) + '"><td>' + esc(r.table) + '</td><td>' + esc(r.status) + '</td><td class=num>' + r.ranges_done + '/' + r.ranges + '</td><td class=num>' + r.rows_compared + '</td><td class=num>' + r.rows_differing + '</td><td class=num>' + r.rows_in_flight + '</td><td><div class=map>' + [...r.map].map(c => '<span class="' + (c == '=' ? 'r-ok' : c == 'x' ? 'r-bad' : 'r-wait') + '"></span>').join('') + '</div></td></tr>').join('');
  }
  $('recent').innerHTML = s.recent.length ? s.recent.slice().reverse().map(n => '<li><code>' + esc(n.ts) + '</code> ' + esc(n.kind) + ': ' + esc(n.text) + '</li>').join('') : '<li class=muted>none</li>';
  $('updated').textContent = 'updated ' + new Date().toLocaleTimeString();
}
async function refresh() {
  try {
    const r = await fetch('/api/status', {cache: 'no-store'});
    render(await r.json());
  } catch (e) {
    $('updated').textContent = 'the job does not answer (finished?): ' + e;
  }
}
refresh();
setInterval(refresh, 2000);
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped_as_the_text_format_says() {
        assert_eq!(escape_label(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label("x\ny"), "x\\ny");
        assert_eq!(number(3.0), "3");
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(f64::NAN), "NaN");
    }

    #[test]
    fn metrics_name_every_table_and_the_throttle() {
        let live = Live::new("shop \"1\"", Mode::Copy, false);
        let progress =
            Arc::new(Progress::new(vec![("public.a".into(), 100, 10, 200, false), ("b\\c".into(), 5, 5, 9, true)]));
        {
            let mut inner = live.inner();
            inner.progress = Some(progress.clone());
            inner.throttle = Some(Arc::new(Throttle::new(500, 0)));
            inner.retries.insert("sqlstate_40001".into(), 2);
        }
        let text = metrics(&live.status());
        assert!(text.contains(r#"rangecopy_job_info{job="shop \"1\"",mode="copy",stage="starting"} 1"#), "{text}");
        assert!(text.contains(r#"rangecopy_rows_copied_total{table="public.a"} 10"#), "{text}");
        assert!(text.contains(r#"rangecopy_bytes_copied_total{table="b\\c"} 9"#), "{text}");
        assert!(text.contains(r#"rangecopy_table_done{table="b\\c"} 1"#), "{text}");
        assert!(text.contains("rangecopy_throttle_rows_per_second_limit 500\n"), "{text}");
        assert!(text.contains(r#"rangecopy_retries_total{kind="sqlstate_40001"} 2"#), "{text}");
        assert!(text.contains("rangecopy_paused 0\n"), "{text}");
        // Every sample follows its family's TYPE line.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(text.contains(&format!("# TYPE {name} ")), "{name}");
        }
    }

    #[test]
    fn rates_follow_the_counters_and_fade_when_they_stop() {
        let mut rates = Rates::default();
        let t0 = Instant::now();
        rates.sample(t0, vec![(0, 0)]);
        for s in 1..=60 {
            rates.sample(t0 + Duration::from_secs(s), vec![(s * 1000, s * 10)]);
        }
        assert!((rates.total.0 - 1000.0).abs() < 10.0, "{:?}", rates.total);
        // A table that starts later is at its rate from its first sample, not climbing from 0.
        let mut later = Rates::default();
        later.sample(t0, vec![(0, 0), (0, 0)]);
        later.sample(t0 + Duration::from_secs(1), vec![(500, 0), (0, 0)]);
        later.sample(t0 + Duration::from_secs(2), vec![(1000, 0), (2000, 0)]);
        assert_eq!(later.per_table[1].0, 2000.0);
        assert_eq!(later.per_table[0].0, 500.0);
        for s in 61..=120 {
            rates.sample(t0 + Duration::from_secs(s), vec![(60_000, 600)]);
        }
        assert!(rates.total.0 < 10.0, "{:?}", rates.total);
    }

    #[test]
    fn notes_leave_out_the_user_part_of_urls() {
        assert_eq!(
            without_userinfo(
                "copying a chunk on postgres://app@db1:5432/shop: reset; mysql://u:x@h/d and ftp://plain/x"
            ),
            "copying a chunk on postgres://db1:5432/shop: reset; mysql://h/d and ftp://plain/x"
        );
        assert_eq!(without_userinfo("no url, a@b"), "no url, a@b");
    }

    #[test]
    fn a_large_range_map_is_grouped_and_a_difference_shows() {
        let mut ranges = vec![1u8; 4000];
        ranges[1234] = 2;
        ranges[3999] = 0;
        let map = range_map(&ranges);
        assert_eq!(map.len(), 400);
        assert_eq!(map.matches('x').count(), 1);
        assert!(map.ends_with('.'));
        assert_eq!(range_map(&[1, 2, 0]), "=x.");
        assert_eq!(consistency(1000, 3), Some(99.7));
        assert_eq!(consistency(0, 0), None);
    }
}
