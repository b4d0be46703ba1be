//! Reports of runs for people and programs: the JSON copy report, the `status` view, and the
//! summary line a finished copy prints.
//!
//! Reports read the job's state from the target, so they describe what is committed, not
//! what a process believes. This module must never print or store a password: it only sees
//! the redacted endpoint forms.

use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

use serde::Serialize;

use crate::canonical::RangeDigest;
use crate::config::{CopyConfig, StatusConfig, ThrottleChange, VerifyConfig};
use crate::copy::{settings, CopyOutcome};
use crate::error::{Error, Result};
use crate::pg::PgConn;
use crate::progress::{counted, human_bytes, human_count, human_duration};
use crate::source::SourcePosition;
use crate::state::{self, TableProgress};
use crate::throttle::PauseReason;
use crate::verify::{DiffKind, TableStatus, Verdict, Verification};

#[derive(Serialize)]
struct CopyReport<'a> {
    rangecopy_version: &'static str,
    job: &'a str,
    status: String,
    runs: i32,
    started_at: String,
    finished_at: Option<String>,
    last_error: Option<String>,
    settings: serde_json::Value,
    /// The source position before the first chunk: where CDC starts.
    p0: Option<SourcePosition>,
    /// The source position after the last chunk: once CDC has replayed past it, the target
    /// matches the source.
    p1: Option<SourcePosition>,
    /// Whether every row was read in one snapshot whose position is P0.
    consistent: bool,
    this_run: RunFigures,
    totals: Totals,
    tables: Vec<TableReport>,
    /// Every object around the rows and what became of it.
    schema: SchemaReport,
    /// The processes working on the job (heartbeat within the last minute).
    workers: Vec<state::WorkerRecord>,
    /// Chunks whose first holder did not commit them (its lease ran out, or its late commit
    /// was refused), with every claim of them.
    taken_over: Vec<state::TakenOver>,
}

#[derive(Serialize)]
struct SchemaReport {
    summary: String,
    /// Tables created with a difference from the source's (a NOT NULL dropped …).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    table_changes: Vec<TableChanges>,
    objects: Vec<state::ObjectRecord>,
}

#[derive(Serialize)]
struct TableChanges {
    table: String,
    changes: Vec<String>,
}

#[derive(Serialize)]
struct RunFigures {
    seconds: f64,
    rows: u64,
    bytes: u64,
    rows_per_second: f64,
    bytes_per_second: f64,
}

#[derive(Serialize)]
struct Totals {
    tables: usize,
    tables_done: usize,
    chunks: i64,
    chunks_done: i64,
    rows: i64,
    bytes: i64,
}

#[derive(Serialize)]
struct TableReport {
    source_table: String,
    target_table: String,
    key: Option<String>,
    phase: String,
    chunks: i64,
    chunks_done: i64,
    rows: i64,
    bytes: i64,
    /// From the table's first chunk to its end: `copy_seconds` + `index_seconds`.
    seconds: Option<f64>,
    /// Copying its chunks; the rates are over this phase.
    copy_seconds: Option<f64>,
    /// Building its indexes, ANALYZE, sequences.
    index_seconds: Option<f64>,
    rows_per_second: Option<f64>,
    bytes_per_second: Option<f64>,
    /// Row count and the sum of all chunks' row hashes: the table's digest.
    digest: String,
    /// Per column, values copied as NULL by policy (MySQL zero dates under --zero-dates null).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    values_copied_as_null: std::collections::BTreeMap<String, i64>,
    /// `--into-existing`: of `rows`, those inserted, skipped (the target's row kept) and
    /// updated (overwritten with the source's).
    #[serde(skip_serializing_if = "Option::is_none")]
    merged: Option<state::Merged>,
}

/// One line on a job's objects: how many were created, translated, changed, not carried over,
/// failed, and still to create.
pub fn schema_summary(objects: &[state::ObjectRecord]) -> String {
    use crate::objects::Outcome;
    let count = |f: &dyn Fn(&state::ObjectRecord) -> bool| objects.iter().filter(|o| f(o)).count();
    let made = |o: &state::ObjectRecord| matches!(o.status.as_str(), "done" | "created");
    let parts = [
        (count(&|o| made(o) && o.object.outcome == Outcome::Created), "created"),
        (count(&|o| made(o) && matches!(o.object.outcome, Outcome::Translated { .. })), "translated"),
        (count(&|o| made(o) && matches!(o.object.outcome, Outcome::Changed { .. })), "created with a change"),
        (count(&|o| o.status == "created"), "not yet validated"),
        (count(&|o| o.status == "listed"), "not carried over"),
        (count(&|o| o.status == "failed"), "failed"),
        (count(&|o| o.status == "pending"), "still to create"),
    ];
    let words: Vec<String> = parts.iter().filter(|(n, _)| *n > 0).map(|(n, w)| format!("{n} {w}")).collect();
    match words.is_empty() {
        true => "no objects besides the tables".to_string(),
        false => format!("{} objects: {}", objects.len(), words.join(", ")),
    }
}

/// Writes the JSON report of a copy job to `path`.
///
/// `FILE.html` (or `.htm`) is a page for people; any other name gets JSON.
pub fn write_copy_report(conn: &mut PgConn, cfg: &CopyConfig, outcome: &CopyOutcome, path: &Path) -> Result<()> {
    let job = state::load_job(conn, &cfg.job)?
        .ok_or_else(|| Error::input(format!("job {:?} vanished from the target before its report", cfg.job)))?;
    let tables = state::table_progress(conn, &cfg.job)?;
    let secs = outcome.seconds.max(1e-3);
    let report = CopyReport {
        rangecopy_version: env!("CARGO_PKG_VERSION"),
        job: &cfg.job,
        status: job.status,
        runs: job.runs,
        started_at: job.started_at,
        finished_at: job.finished_at,
        last_error: job.last_error,
        settings: settings(cfg),
        p0: job.p0,
        p1: job.p1,
        consistent: job.consistent,
        this_run: RunFigures {
            seconds: outcome.seconds,
            rows: outcome.rows_this_run,
            bytes: outcome.bytes_this_run,
            rows_per_second: outcome.rows_this_run as f64 / secs,
            bytes_per_second: outcome.bytes_this_run as f64 / secs,
        },
        totals: Totals {
            tables: tables.len(),
            tables_done: tables.iter().filter(|t| t.phase == "done").count(),
            chunks: tables.iter().map(|t| t.chunks_total).sum(),
            chunks_done: tables.iter().map(|t| t.chunks_done).sum(),
            rows: tables.iter().map(|t| t.rows).sum(),
            bytes: tables.iter().map(|t| t.bytes).sum(),
        },
        tables: tables.iter().map(table_report).collect::<Result<_>>()?,
        schema: {
            let objects = state::load_objects(conn, &cfg.job)?;
            let table_changes = state::load_tables(conn, &cfg.job)?
                .into_iter()
                .filter(|r| !r.table.changes.is_empty())
                .map(|r| TableChanges { table: r.table.target.to_string(), changes: r.table.changes })
                .collect();
            SchemaReport { summary: schema_summary(&objects), table_changes, objects }
        },
        workers: state::live_workers(conn, &cfg.job)?,
        taken_over: state::taken_over(conn, &cfg.job)?,
    };
    let html = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("html") || e.eq_ignore_ascii_case("htm"));
    let text = match html {
        true => copy_html(&report, cfg),
        false => serde_json::to_string_pretty(&report).expect("the report serializes") + "\n",
    };
    std::fs::write(path, text).map_err(|e| Error::io(format!("writing the report {}", path.display()), e))
}

/// The copy report as a page: the run, its tables, and what became of every object.
fn copy_html(r: &CopyReport<'_>, cfg: &CopyConfig) -> String {
    let mut h = String::new();
    h.push_str("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>rangecopy copy</title><style>");
    h.push_str(STYLE);
    h.push_str("</style></head><body><h1>rangecopy copy</h1>");
    let _ = write!(
        h,
        "<dl class=run><dt>job</dt><dd>{}</dd><dt>status</dt><dd>{}</dd><dt>started</dt><dd>{}</dd>\
         <dt>source</dt><dd><code>{}</code></dd><dt>target</dt><dd><code>{}</code></dd>\
         <dt>this run</dt><dd>{} rows, {} in {:.1}s</dd></dl>",
        esc(r.job),
        esc(&r.status),
        esc(&r.started_at),
        esc(cfg.source.display()),
        esc(&cfg.target.display),
        r.this_run.rows,
        human_bytes(r.this_run.bytes),
        r.this_run.seconds
    );
    h.push_str("<h2>Tables</h2><table><tr><th>table</th><th>phase</th><th>rows</th><th>size</th><th>copy s</th><th>index s</th><th>digest</th></tr>");
    for t in &r.tables {
        let secs = |s: Option<f64>| s.map(|s| format!("{s:.1}")).unwrap_or_default();
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td class=num>{}</td><td class=num>{}</td><td class=num>{}</td><td class=num>{}</td><td><code>{}</code></td></tr>",
            esc(&t.target_table),
            esc(&t.phase),
            match &t.merged {
                Some(m) => format!("{} ({})", t.rows, esc(&merged_words(m))),
                None => t.rows.to_string(),
            },
            human_bytes(t.bytes as u64),
            secs(t.copy_seconds),
            secs(t.index_seconds),
            esc(&t.digest)
        );
    }
    h.push_str("</table>");
    let schema = &r.schema;
    let _ = write!(h, "<h2>Schema</h2><p>{}</p>", esc(&schema.summary));
    if !schema.table_changes.is_empty() {
        h.push_str("<h3>Tables created with a change</h3><ul>");
        for t in &schema.table_changes {
            let _ = write!(h, "<li><b>{}</b>: {}</li>", esc(&t.table), esc(&t.changes.join("; ")));
        }
        h.push_str("</ul>");
    }
    let attention: Vec<&state::ObjectRecord> = schema
        .objects
        .iter()
        .filter(|o| matches!(o.status.as_str(), "failed" | "listed" | "created" | "pending"))
        .collect();
    if !attention.is_empty() {
        h.push_str("<h3>Needs attention</h3><table><tr><th>kind</th><th>object</th><th>status</th><th>why, and what to do</th><th>SQL</th></tr>");
        for o in attention {
            let (why, sql) = object_words(o);
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td class=s-bad>{}</td><td>{}</td><td><pre>{}</pre></td></tr>",
                esc(&o.object.kind),
                esc(&o.object.name),
                esc(&o.status),
                esc(&why),
                esc(sql)
            );
        }
        h.push_str("</table>");
    }
    h.push_str("<h3>Every object</h3><table><tr><th>#</th><th>phase</th><th>kind</th><th>object</th><th>status</th><th>outcome</th></tr>");
    for o in &schema.objects {
        let (why, _) = object_words(o);
        let _ = write!(
            h,
            "<tr><td class=num>{}</td><td>{}</td><td>{}</td><td>{}</td><td class={}>{}</td><td>{}</td></tr>",
            o.object_no,
            if o.object.phase == crate::objects::Phase::Before { "before the load" } else { "after the load" },
            esc(&o.object.kind),
            esc(&o.object.name),
            if o.status == "done" { "s-ok" } else { "s-bad" },
            esc(&o.status),
            esc(&why)
        );
    }
    let _ = write!(h, "</table><p class=muted>rangecopy {}</p></body></html>", env!("CARGO_PKG_VERSION"));
    h
}

/// What to say about an object, and the SQL to show with it.
fn object_words(o: &state::ObjectRecord) -> (String, &str) {
    use crate::objects::Outcome;
    let outcome = match &o.object.outcome {
        Outcome::Created => String::new(),
        Outcome::Translated { from } => format!("translated from {from}"),
        Outcome::Changed { why } => format!("created with a change: {why}"),
        Outcome::NotCarried { todo, .. } => format!("not carried over: {todo}"),
    };
    let sql = match &o.object.outcome {
        Outcome::NotCarried { source_sql, .. } => source_sql.as_str(),
        _ => o.object.sql.as_str(),
    };
    let words: Vec<&str> =
        [outcome.as_str(), o.detail.as_deref().unwrap_or("")].into_iter().filter(|w| !w.is_empty()).collect();
    (words.join("; "), sql)
}

fn table_report(t: &TableProgress) -> Result<TableReport> {
    let rate = |n: i64| t.copy_seconds.filter(|s| *s > 0.0).map(|s| n as f64 / s);
    Ok(TableReport {
        source_table: t.source_table.clone(),
        target_table: t.target_table.clone(),
        key: t.key.clone(),
        phase: t.phase.clone(),
        chunks: t.chunks_total,
        chunks_done: t.chunks_done,
        rows: t.rows,
        bytes: t.bytes,
        seconds: t.seconds,
        copy_seconds: t.copy_seconds,
        index_seconds: t.index_seconds,
        rows_per_second: rate(t.rows),
        bytes_per_second: rate(t.bytes),
        digest: table_digest(t)?.to_string(),
        values_copied_as_null: t.nulled.iter().cloned().collect(),
        merged: t.merged,
    })
}

/// The table's digest: the merge of its done chunks' digests.
fn table_digest(t: &TableProgress) -> Result<RangeDigest> {
    let mut total = RangeDigest::default();
    for d in &t.digests {
        let chunk: RangeDigest = d
            .parse()
            .map_err(|_| Error::input(format!("table {}: a stored chunk digest {d:?} is malformed", t.source_table)))?;
        total.merge(&chunk);
    }
    Ok(total)
}

/// The verdict of a verification: "IDENTICAL: 1 table matches", "DIFFERENT: 2 of 5 tables
/// differ, 1 differing row", "INCOMPLETE: 1 of 2 tables not compared in full, …" (`loud`), or
/// the same in sentence case for pages. Columns left out of the comparison are counted in it.
fn verdict_words(v: &Verification, loud: bool) -> String {
    let word = |w: &str| if loud { w.to_uppercase() } else { w[..1].to_uppercase() + &w[1..] };
    let tables = counted(v.tables.len(), "table", "tables");
    let count = |status: TableStatus| v.tables.iter().filter(|t| t.status == status).count();
    let columns = |excluded: bool| {
        v.tables.iter().flat_map(|t| &t.columns_not_compared).filter(|c| c.excluded == excluded).count()
    };
    let unexplained = match columns(false) {
        0 => String::new(),
        n => format!(", {} not compared", counted(n, "column", "columns")),
    };
    let excluded = match columns(true) {
        0 => String::new(),
        n => format!(", {} left out by --exclude-column not compared", counted(n, "column", "columns")),
    };
    let (_, _, in_flight) = v.totals();
    let excluded = match in_flight {
        0 => excluded,
        n => format!(
            "{excluded} ({} in flight: differed, then converged when read again)",
            counted(n as usize, "row", "rows")
        ),
    };
    match v.verdict() {
        Verdict::Identical => {
            let verb = if v.tables.len() == 1 { "matches" } else { "match" };
            format!("{}: {tables} {verb}{excluded}", word("identical"))
        }
        Verdict::Incomplete => format!(
            "{}: {} of {tables} not compared in full{unexplained}; the columns compared match{excluded}",
            word("incomplete"),
            count(TableStatus::Incomplete)
        ),
        Verdict::Different => {
            let differing = v.tables.len() - count(TableStatus::Identical) - count(TableStatus::Incomplete);
            let verb = if differing == 1 { "differs" } else { "differ" };
            let rows: usize = v.tables.iter().map(|t| t.differing_rows).sum();
            format!(
                "{}: {differing} of {tables} {verb}, {}{unexplained}{excluded}",
                word("different"),
                counted(rows, "differing row", "differing rows")
            )
        }
    }
}

/// `--recheck` and `--since-column`: what was rechecked or left out, one line each (none
/// without them).
fn live_lines(v: &Verification, out: &mut dyn FnMut(String) -> Result<()>) -> Result<()> {
    if v.rechecks > 0 {
        let (compared, divergent, in_flight) = v.totals();
        out(format!(
            "\nafter {}: {compared} rows compared, {divergent} divergent, {in_flight} in flight",
            counted(v.rechecks as usize, "recheck", "rechecks")
        ))?;
        for t in v.tables.iter().filter(|t| t.in_flight > 0 || t.recheck_note.is_some()) {
            let note = t.recheck_note.as_deref().map(|n| format!(" ({n})")).unwrap_or_default();
            out(format!("  {}: {} in flight, {} divergent{note}", t.source_table, t.in_flight, t.differing_rows))?;
        }
    }
    if let Some(cutoff) = &v.cutoff {
        out(format!("\nrows changed at or after {cutoff} UTC (the source's clock) were left out:"))?;
        for t in &v.tables {
            match &t.left_out {
                Some(l) => out(format!(
                    "  {}: {} on the source, {} on the target (by {})",
                    t.source_table, l.source_rows, l.target_rows, l.column
                ))?,
                None => out(format!("  {}: compared whole (no such column)", t.source_table))?,
            }
        }
    }
    Ok(())
}

/// The columns of a table that were not compared, one line each.
fn not_compared_lines(t: &crate::verify::TableResult) -> Vec<String> {
    t.columns_not_compared
        .iter()
        .map(|c| format!("column {}: {}, not compared", crate::schema::quote_ident(&c.column), c.why))
        .collect()
}

/// "900 inserted, 100 skipped (the target's rows kept), 0 updated".
pub fn merged_words(m: &state::Merged) -> String {
    format!(
        "{} inserted, {} skipped (the target's rows kept), {} updated (overwritten with the source's)",
        m.inserted, m.skipped, m.updated
    )
}

/// The one-line summary a finished copy prints.
pub fn summary_line(outcome: &CopyOutcome) -> String {
    let secs = outcome.seconds.max(1e-3);
    let line = format!(
        "job {} done: {} rows, {} copied in {} ({} rows/s, {}/s)",
        outcome.job,
        human_count(outcome.rows_this_run),
        human_bytes(outcome.bytes_this_run),
        human_duration(std::time::Duration::from_secs_f64(outcome.seconds)),
        human_count((outcome.rows_this_run as f64 / secs) as u64),
        human_bytes((outcome.bytes_this_run as f64 / secs) as u64)
    );
    match outcome.rows_by_others {
        0 => line,
        others => format!(
            "{line} by this process; other processes (rangecopy worker) copied {} rows more",
            human_count(others)
        ),
    }
}

/// `rangecopy throttle`: writes the change into the job's state, where the running job picks
/// it up within two seconds, and says what the job will now run with.
pub fn apply_throttle(change: &ThrottleChange) -> Result<()> {
    let mut conn = PgConn::connect(&change.target, "")?;
    if !state::schema_exists(&mut conn)?
        || !state::write_throttle(&mut conn, &change.job, change.rows_per_sec, change.bytes_per_sec, change.paused)?
    {
        return Err(Error::input(format!("the target has no job named {:?}", change.job)));
    }
    let job = state::read_throttle(&mut conn, &change.job)?.unwrap_or_default();
    eprintln!("job {}: {}", change.job, throttle_words(job.rows_per_sec, job.bytes_per_sec, job.paused));
    Ok(())
}

fn throttle_words(rows: u64, bytes: u64, paused: bool) -> String {
    let limit = |n: u64, unit: &str| if n == 0 { format!("no {unit} limit") } else { format!("at most {n} {unit}/s") };
    format!("{}{}, {}", if paused { "paused; when unpaused, " } else { "" }, limit(rows, "rows"), limit(bytes, "bytes"))
}

/// `rangecopy status`: per job and table, chunks done/total, rows, bytes, phase.
pub fn print_status(cfg: &StatusConfig, out: &mut impl Write) -> Result<()> {
    let mut conn = PgConn::connect(&cfg.target, "SET default_transaction_read_only = on")?;
    let jobs = match &cfg.job {
        Some(name) => match state::load_job(&mut conn, name)? {
            Some(job) => vec![job],
            None if !state::latest_passes(&mut conn, Some(name))?.is_empty() => Vec::new(),
            None => return Err(Error::input(format!("the target has no job or verify watch named {name:?}"))),
        },
        None => state::list_jobs(&mut conn)?,
    };
    let io = |e| Error::io("writing status", e);
    let watches = state::latest_passes(&mut conn, cfg.job.as_deref())?;
    if jobs.is_empty() && watches.is_empty() {
        writeln!(out, "no rangecopy jobs on {}", cfg.target.display).map_err(io)?;
        return Ok(());
    }
    for pass in &watches {
        let since = state::consistent_since(&mut conn, &pass.watch)?;
        writeln!(out, "{}", watch_status_line(pass, since)).map_err(io)?;
    }
    for job in jobs {
        let tables = state::table_progress(&mut conn, &job.job)?;
        let done = tables.iter().filter(|t| t.phase == "done").count();
        writeln!(
            out,
            "job {}: {} ({} of {} tables done, run {}, started {}{})",
            job.job,
            job.status,
            done,
            tables.len(),
            job.runs,
            job.started_at,
            job.finished_at.as_deref().map(|f| format!(", finished {f}")).unwrap_or_default()
        )
        .map_err(io)?;
        writeln!(out, "  source: {}", job.source).map_err(io)?;
        let position =
            |p: &Option<SourcePosition>| p.as_ref().map_or_else(|| "not recorded".to_string(), |p| p.to_string());
        writeln!(out, "  P0 (before the first chunk; CDC starts here): {}", position(&job.p0)).map_err(io)?;
        writeln!(out, "  P1 (after the last chunk): {}", position(&job.p1)).map_err(io)?;
        if job.consistent {
            writeln!(out, "  consistent: every chunk is read in one snapshot, at P0").map_err(io)?;
        }
        let throttle = state::read_throttle(&mut conn, &job.job)?.unwrap_or_default();
        let (rows, bytes, paused) = (throttle.rows_per_sec, throttle.bytes_per_sec, throttle.paused);
        if rows > 0 || bytes > 0 || paused {
            writeln!(out, "  throttle: {}", throttle_words(rows, bytes, paused)).map_err(io)?;
        }
        if throttle.held != PauseReason::None {
            // "paused: replication lag above --max-lag" → "held: every process waits: replication lag …"
            let why = throttle.held.describe().trim_start_matches("paused: ");
            writeln!(out, "  held: every process waits: {why}").map_err(io)?;
        }
        if let Some(err) = &job.last_error {
            writeln!(out, "  last error: {err}").map_err(io)?;
        }
        let objects = state::load_objects(&mut conn, &job.job)?;
        if !objects.is_empty() {
            writeln!(out, "  schema: {}", schema_summary(&objects)).map_err(io)?;
        }
        let width = tables.iter().map(|t| t.target_table.chars().count()).max().unwrap_or(5).max(5);
        writeln!(out, "  {:<width$}  {:>9}  {:>15}  {:>12}  {:>10}", "table", "phase", "chunks", "rows", "bytes")
            .map_err(io)?;
        for t in &tables {
            // A table not started has no chunks planned yet: it waits; one still being planned
            // has more chunks to come than counted so far (`+`, explained below the table).
            let (phase, chunks) = match (t.plan_complete, t.chunks_total) {
                (true, total) => (t.phase.as_str(), format!("{}/{total}", t.chunks_done)),
                (false, 0) if t.phase == "copying" => ("waiting", "-".to_string()),
                (false, total) => (t.phase.as_str(), format!("{}/{total}+", t.chunks_done)),
            };
            writeln!(
                out,
                "  {:<width$}  {:>9}  {:>15}  {:>12}  {:>10}",
                t.target_table,
                phase,
                chunks,
                t.rows,
                human_bytes(t.bytes as u64)
            )
            .map_err(io)?;
            if !t.nulled.is_empty() {
                let counts: Vec<String> = t.nulled.iter().map(|(c, n)| format!("{c} {n}")).collect();
                writeln!(out, "    zero dates copied as NULL: {}", counts.join(", ")).map_err(io)?;
            }
            if let Some(m) = &t.merged {
                writeln!(out, "    merged into existing rows: {}", merged_words(m)).map_err(io)?;
            }
        }
        if tables.iter().any(|t| !t.plan_complete && t.chunks_total > 0) {
            writeln!(out, "  (n+: n chunks planned so far; planning goes on ahead of the copy)").map_err(io)?;
        }
        let workers = state::live_workers(&mut conn, &job.job)?;
        if !workers.is_empty() {
            writeln!(out, "  workers (processes with a heartbeat in the last minute): {}", workers.len())
                .map_err(io)?;
            for w in &workers {
                writeln!(
                    out,
                    "    {} pid {}: {} threads, {} chunks held, last heartbeat {:.0}s ago, {:.0} rows/s",
                    w.host, w.pid, w.threads, w.chunks_held, w.heartbeat_age, w.rows_per_sec
                )
                .map_err(io)?;
            }
        }
        let taken = state::taken_over(&mut conn, &job.job)?;
        if !taken.is_empty() {
            writeln!(
                out,
                "  taken over: {} chunks whose lease ran out (or whose late commit was refused) went to another process",
                taken.len()
            )
            .map_err(io)?;
            for t in taken.iter().take(20) {
                let table = tables.iter().find(|p| p.table_no == t.table_no).map_or("?", |p| p.target_table.as_str());
                writeln!(out, "    {table} chunk {}: {}", t.chunk_no, t.claims.join(", ")).map_err(io)?;
            }
            if taken.len() > 20 {
                writeln!(out, "    … and {} more", taken.len() - 20).map_err(io)?;
            }
        }
    }
    Ok(())
}

/// `status`: a watch's latest pass in one line.
fn watch_status_line(p: &state::VerifyPass, since: Option<(String, f64)>) -> String {
    let consistent = match since {
        Some((since, secs)) => {
            format!("consistent (100%) since {since} UTC, for {}", crate::watch::human_duration(secs))
        }
        None => "not consistent".to_string(),
    };
    format!(
        "verify watch {}: pass {} finished {} UTC: {} consistent, {} rows compared, {} divergent, {} in flight; {consistent}",
        p.watch,
        p.pass,
        p.finished_at,
        crate::watch::percent(p.consistency),
        p.rows_compared,
        p.rows_divergent,
        p.rows_in_flight
    )
}

/// The verification summary on stdout: a line per table, the first differing keys, a verdict.
pub fn print_verification(v: &Verification, out: &mut impl Write) -> Result<()> {
    let io = |e| Error::io("writing the verification summary", e);
    let width = v.tables.iter().map(|t| t.source_table.chars().count()).max().unwrap_or(5).max(5);
    writeln!(
        out,
        "{:<width$}  {:>12}  {:>12}  {:>7}  {:>8}  {:>9}  {:>7}  status",
        "table", "source rows", "target rows", "ranges", "diff rng", "diff rows", "time"
    )
    .map_err(io)?;
    for t in &v.tables {
        writeln!(
            out,
            "{:<width$}  {:>12}  {:>12}  {:>7}  {:>8}  {:>9}  {:>6.1}s  {}",
            t.source_table,
            t.source_rows,
            t.target_rows,
            t.ranges.len(),
            t.differing_ranges,
            t.differing_rows,
            t.seconds,
            status_word(t.status)
        )
        .map_err(io)?;
    }
    live_lines(v, &mut |line| writeln!(out, "{line}").map_err(io))?;
    for t in v.tables.iter().filter(|t| !t.coverage.is_empty()) {
        writeln!(out, "\nthe job's chunks do not cover {} (its rows were compared all the same):", t.source_table)
            .map_err(io)?;
        for problem in &t.coverage {
            writeln!(out, "  {problem}").map_err(io)?;
        }
    }
    for t in v.tables.iter().filter(|t| !t.columns_not_compared.is_empty()) {
        writeln!(out, "\ncolumns of {} not compared:", t.source_table).map_err(io)?;
        for line in not_compared_lines(t) {
            writeln!(out, "  {line}").map_err(io)?;
        }
    }
    for t in v.tables.iter().filter(|t| !t.diffs.is_empty()) {
        writeln!(out, "\nfirst differences in {}:", t.source_table).map_err(io)?;
        for d in t.diffs.iter().take(10) {
            let key: Vec<String> = d.key.iter().map(|(c, v)| format!("{c}={v}")).collect();
            let cols: Vec<&str> = d.columns.iter().map(|c| c.column.as_str()).collect();
            let what = match d.kind {
                DiffKind::Missing => "missing on target".to_string(),
                DiffKind::Extra => "extra on target".to_string(),
                DiffKind::Changed => format!("changed: {}", cols.join(", ")),
            };
            writeln!(out, "  {}  {what}", key.join(" ")).map_err(io)?;
        }
        if t.differing_rows > t.diffs.len().min(10) {
            writeln!(out, "  … {} differing rows in all (see the report)", t.differing_rows).map_err(io)?;
        }
    }
    let verdict = format!("{} ({:.1}s)", verdict_words(v, true), v.seconds);
    writeln!(out, "\n{verdict}").map_err(io)
}

fn status_word(s: TableStatus) -> &'static str {
    match s {
        TableStatus::Identical => "identical",
        TableStatus::Different => "DIFFERENT",
        TableStatus::MissingOnTarget => "MISSING ON TARGET",
        TableStatus::Uncovered => "NOT COVERED BY JOB",
        TableStatus::Incomplete => "COLUMNS NOT COMPARED",
    }
}

#[derive(Serialize)]
struct VerifyReport<'a> {
    rangecopy_version: &'static str,
    verdict: Verdict,
    settings: serde_json::Value,
    seconds: f64,
    rows_compared: u64,
    rows_divergent: u64,
    rows_in_flight: u64,
    /// Percent of the rows compared that are not divergent.
    consistency: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    rechecks: Option<u32>,
    /// `--since-column`: rows changed at or after this (UTC, the source's clock) were left out.
    #[serde(skip_serializing_if = "Option::is_none")]
    cutoff: Option<&'a str>,
    tables: &'a [crate::verify::TableResult],
}

fn verify_settings(cfg: &VerifyConfig) -> serde_json::Value {
    serde_json::json!({
        "source": cfg.source.display(),
        "target": cfg.target.display,
        "job": cfg.job,
        "workers": cfg.workers,
        "chunk_rows": cfg.chunk_rows,
        "redact_values": cfg.redact_values,
        "max_diff_rows": cfg.max_diff_rows,
        "recheck": cfg.live.rechecks,
        "recheck_delay_seconds": cfg.live.recheck_delay.as_secs_f64(),
        "since_column": cfg.live.since.as_ref().map(|s| &s.column),
        "min_age_seconds": cfg.live.since.as_ref().map(|s| s.min_age.as_secs_f64()),
        "watch_seconds": cfg.live.watch.map(|w| w.as_secs_f64()),
    })
}

/// Writes the machine-readable verification report.
pub fn write_verify_json(cfg: &VerifyConfig, v: &Verification, path: &Path) -> Result<()> {
    let (rows_compared, rows_divergent, rows_in_flight) = v.totals();
    let report = VerifyReport {
        rangecopy_version: env!("CARGO_PKG_VERSION"),
        verdict: v.verdict(),
        settings: verify_settings(cfg),
        seconds: v.seconds,
        rows_compared,
        rows_divergent,
        rows_in_flight,
        consistency: crate::watch::consistency(rows_compared, rows_divergent),
        rechecks: (cfg.live.rechecks > 0).then_some(v.rechecks),
        cutoff: v.cutoff.as_deref(),
        tables: &v.tables,
    };
    let text = serde_json::to_string_pretty(&report).expect("the report serializes");
    std::fs::write(path, text + "\n").map_err(|e| Error::io(format!("writing the report {}", path.display()), e))
}

/// Writes the verification report as one self-contained HTML page: totals and settings, per
/// table a map of its ranges colored by status, and the differing rows side by side.
/// Differing ranges listed with their bounds in the HTML report (all are in the map).
const MAX_LISTED_RANGES: usize = 50;

/// Orders row keys column by column, numbers as numbers and anything else as text.
fn compare_keys(a: &[(String, String)], b: &[(String, String)]) -> std::cmp::Ordering {
    for ((_, x), (_, y)) in a.iter().zip(b) {
        let order = match (x.parse::<f64>(), y.parse::<f64>()) {
            (Ok(x), Ok(y)) => x.total_cmp(&y),
            _ => x.cmp(y),
        };
        if order.is_ne() {
            return order;
        }
    }
    a.len().cmp(&b.len())
}

/// The time now in UTC as `YYYY-MM-DD HH:MM:SS`, without a time zone database.
fn utc_now_text() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    format!("{} {:02}:{:02}:{:02}", crate::canonical::civil_date(days), rest / 3600, rest % 3600 / 60, rest % 60)
}

pub fn write_verify_html(cfg: &VerifyConfig, v: &Verification, path: &Path) -> Result<()> {
    write_verify_html_with_trend(cfg, v, &[], path)
}

/// The HTML verification report of a pass of `verify --watch`: the trend over the watch's
/// `passes` (oldest first) above the pass's own report.
pub fn write_verify_html_with_trend(
    cfg: &VerifyConfig,
    v: &Verification,
    passes: &[state::VerifyPass],
    path: &Path,
) -> Result<()> {
    let mut h = String::new();
    let identical = v.identical();
    h.push_str("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>rangecopy verify</title><style>");
    h.push_str(STYLE);
    h.push_str("</style></head><body>");
    h.push_str("<h1>rangecopy verify</h1>");
    let _ = write!(
        h,
        "<dl class=run><dt>run</dt><dd>{} UTC, {:.1}s</dd><dt>source</dt><dd><code>{}</code></dd>\
         <dt>target</dt><dd><code>{}</code></dd>{}</dl>",
        utc_now_text(),
        v.seconds,
        esc(cfg.source.display()),
        esc(&cfg.target.display),
        cfg.job.as_deref().map(|j| format!("<dt>job</dt><dd>{}</dd>", esc(j))).unwrap_or_default()
    );
    let _ = write!(
        h,
        "<p class=\"verdict {}\">{}</p>",
        if identical { "ok" } else { "bad" },
        esc(&verdict_words(v, false))
    );
    if !passes.is_empty() {
        h.push_str(&trend_html(passes));
    }
    let live = cfg.live.rechecks > 0 || v.cutoff.is_some();
    h.push_str("<h2>Tables</h2><table><tr><th>table</th><th>target</th><th>source rows</th><th>target rows</th><th>ranges</th><th>differing ranges</th><th>differing rows</th>");
    if live {
        h.push_str("<th>in flight</th><th>left out (source / target)</th>");
    }
    h.push_str("<th>time</th><th>status</th></tr>");
    for t in &v.tables {
        let _ = write!(
            h,
            "<tr><td><a href=\"#t{}\">{}</a></td><td>{}</td><td class=num>{}</td><td class=num>{}</td><td class=num>{}</td><td class=num>{}</td><td class=num>{}</td>",
            esc(&t.source_table), esc(&t.source_table), esc(&t.target_table), t.source_rows, t.target_rows,
            t.ranges.len(), t.differing_ranges, t.differing_rows
        );
        if live {
            let left_out = t.left_out.as_ref().map_or_else(
                || "<span class=muted>compared whole</span>".to_string(),
                |l| format!("{} / {}", l.source_rows, l.target_rows),
            );
            let _ = write!(h, "<td class=num>{}</td><td class=num>{left_out}</td>", t.in_flight);
        }
        let _ = write!(
            h,
            "<td class=num>{:.1}s</td><td class={}>{}</td></tr>",
            t.seconds,
            if t.status == TableStatus::Identical { "s-ok" } else { "s-bad" },
            status_word(t.status)
        );
    }
    h.push_str("</table>");
    let mut notes = Vec::new();
    live_lines(v, &mut |line| {
        notes.push(line);
        Ok(())
    })?;
    if !notes.is_empty() {
        let _ = write!(h, "<pre class=muted>{}</pre>", esc(notes.join("\n").trim()));
    }
    for t in &v.tables {
        let _ = write!(h, "<h2 id=\"t{}\">{}</h2>", esc(&t.source_table), esc(&t.source_table));
        let _ = write!(
            h,
            "<p class=muted>key: {} · source digest <code>{}</code> · target digest <code>{}</code></p>",
            esc(t.key.as_deref().unwrap_or("none (compared as a whole)")),
            esc(&t.source_digest),
            esc(&t.target_digest)
        );
        if !t.columns_not_compared.is_empty() {
            let class = if t.columns_not_compared.iter().all(|c| c.excluded) { "muted" } else { "missing" };
            let _ = write!(h, "<p class={class}>Columns not compared:</p><ul>");
            for line in not_compared_lines(t) {
                let _ = write!(h, "<li>{}</li>", esc(&line));
            }
            h.push_str("</ul>");
        }
        if !t.coverage.is_empty() {
            h.push_str("<p class=missing>The job's chunks do not cover this table (its rows were compared all the same):</p><ul>");
            for problem in &t.coverage {
                let _ = write!(h, "<li>{}</li>", esc(problem));
            }
            h.push_str("</ul>");
        }
        h.push_str(
            "<p class=\"legend muted\">ranges in key order:<span class=r-ok></span>identical\
             <span class=r-bad></span>differing (hover a square for its bounds and rows)</p><div class=map>",
        );
        for r in &t.ranges {
            let range = crate::plan::Chunk { table_no: 0, chunk_no: r.range, lo: r.lo.clone(), hi: r.hi.clone() };
            let _ = write!(
                h,
                "<span class=\"{}\" title=\"range {} {}: {} / {} rows{}\"></span>",
                if r.identical { "r-ok" } else { "r-bad" },
                r.range,
                esc(&range.range_text()),
                r.source_rows,
                r.target_rows,
                if r.identical { String::new() } else { format!(", {} differing", r.differing_rows) }
            );
        }
        h.push_str("</div>");
        let differing: Vec<_> = t.ranges.iter().filter(|r| !r.identical).collect();
        if !differing.is_empty() {
            h.push_str("<table><tr><th>differing range</th><th>bounds</th><th>source rows</th><th>target rows</th><th>differing rows</th></tr>");
            for r in differing.iter().take(MAX_LISTED_RANGES) {
                let range = crate::plan::Chunk { table_no: 0, chunk_no: r.range, lo: r.lo.clone(), hi: r.hi.clone() };
                let _ = write!(
                    h,
                    "<tr><td class=num>{}</td><td><code>{}</code></td><td class=num>{}</td><td class=num>{}</td><td class=num>{}</td></tr>",
                    r.range,
                    esc(&range.range_text()),
                    r.source_rows,
                    r.target_rows,
                    r.differing_rows
                );
            }
            h.push_str("</table>");
            if differing.len() > MAX_LISTED_RANGES {
                let _ = write!(
                    h,
                    "<p class=muted>{} more differing ranges (see the JSON report).</p>",
                    differing.len() - MAX_LISTED_RANGES
                );
            }
        }
        if t.diffs.is_empty() {
            continue;
        }
        let mut diffs: Vec<_> = t.diffs.iter().collect();
        diffs.sort_by(|a, b| compare_keys(&a.key, &b.key));
        h.push_str("<table><tr><th>key</th><th>difference</th><th>column</th><th>source</th><th>target</th></tr>");
        for d in diffs {
            let key: Vec<String> = d.key.iter().map(|(c, v)| format!("{c} = {v}")).collect();
            let (class, word) = match d.kind {
                DiffKind::Missing => ("missing", "missing on target"),
                DiffKind::Extra => ("extra", "extra on target"),
                DiffKind::Changed => ("changed", "changed"),
            };
            let span = d.columns.len().max(1);
            let _ = write!(
                h,
                "<tr><td rowspan={span}><code>{}</code></td><td rowspan={span} class={class}>{word}</td>",
                esc(&key.join(", "))
            );
            for (i, c) in d.columns.iter().enumerate() {
                if i > 0 {
                    h.push_str("<tr>");
                }
                let cell =
                    |v: &Option<String>| v.as_deref().map(esc).unwrap_or_else(|| "<span class=muted>—</span>".into());
                let _ = write!(
                    h,
                    "<td>{}</td><td><code>{}</code></td><td><code>{}</code></td></tr>",
                    esc(&c.column),
                    cell(&c.source),
                    cell(&c.target)
                );
            }
            if d.columns.is_empty() {
                h.push_str("<td></td><td></td><td></td></tr>");
            }
        }
        h.push_str("</table>");
        if t.differing_rows > t.diffs.len() {
            let _ = write!(
                h,
                "<p class=muted>{} more differing rows are counted but not listed (--max-diff-rows).</p>",
                t.differing_rows - t.diffs.len()
            );
        }
    }
    h.push_str("<h2>Settings</h2><table>");
    if let serde_json::Value::Object(map) = verify_settings(cfg) {
        for (k, val) in map {
            let _ = write!(h, "<tr><th>{}</th><td><code>{}</code></td></tr>", esc(&k), esc(&val.to_string()));
        }
    }
    let _ = writeln!(
        h,
        "<tr><th>time</th><td>{:.1}s</td></tr><tr><th>rangecopy</th><td>{}</td></tr></table></body></html>",
        v.seconds,
        env!("CARGO_PKG_VERSION")
    );
    std::fs::write(path, h).map_err(|e| Error::io(format!("writing the report {}", path.display()), e))
}

/// A watch's trend: one bar per pass, its height the consistency (the axis from the lowest
/// pass's value to 100%), green when the pass was fully consistent; an inline SVG.
fn trend_html(passes: &[state::VerifyPass]) -> String {
    const W: f64 = 640.0;
    const H: f64 = 80.0;
    let low = passes.iter().map(|p| p.consistency).fold(100.0_f64, f64::min).clamp(0.0, 99.0).floor();
    let step = W / passes.len() as f64;
    let mut svg = format!(
        "<h2>Consistency over the watch's passes</h2><svg class=trend width=\"{W}\" height=\"{}\" \
         viewBox=\"0 0 {W} {}\" role=img aria-label=\"consistency per pass\">",
        H + 16.0,
        H + 16.0
    );
    for (i, p) in passes.iter().enumerate() {
        let share = ((p.consistency - low) / (100.0 - low)).clamp(0.0, 1.0);
        let height = (share * H).max(2.0);
        let ok = p.rows_divergent == 0 && p.verdict == "identical";
        let _ = write!(
            svg,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{height:.1}\" fill=\"{}\">\
             <title>pass {} ({} UTC): {} consistent, {} divergent, {} in flight</title></rect>",
            i as f64 * step,
            H - height,
            (step - 1.0).max(1.0),
            if ok { "#34a853" } else { "#d93025" },
            p.pass,
            esc(&p.finished_at),
            crate::watch::percent(p.consistency),
            p.rows_divergent,
            p.rows_in_flight
        );
    }
    let _ = write!(
        svg,
        "<text x=\"0\" y=\"{}\" font-size=\"11\" fill=\"#6b7280\">{} passes, axis {low}%–100%; latest {}</text></svg>",
        H + 13.0,
        passes.len(),
        passes.last().map(|p| crate::watch::percent(p.consistency)).unwrap_or_default()
    );
    svg
}

/// The reports' style sheet.
pub(crate) const STYLE: &str =
    "body{font:14px/1.45 system-ui,sans-serif;margin:2em;color:#1d2330}h1{margin:0 0 .2em}\
         .verdict{font-size:1.3em;font-weight:600;padding:.5em .8em;border-radius:6px;display:inline-block}\
         .ok{background:#dff5e3;color:#14532d}.bad{background:#fde2e1;color:#7f1d1d}\
         table{border-collapse:collapse;margin:.6em 0 1.4em}td,th{border:1px solid #d5d9e0;padding:.25em .6em;text-align:left;vertical-align:top}\
         th{background:#f3f5f8}td.num{text-align:right;font-variant-numeric:tabular-nums}\
         .map{display:flex;flex-wrap:wrap;gap:2px;margin:.4em 0 1em}.map span{width:12px;height:12px;border-radius:2px}\
         .map .r-ok{background:#34a853}.map .r-bad{background:#d93025}code{font-size:13px}\
         .missing{color:#7f1d1d}.extra{color:#1e3a8a}.changed{color:#92400e}.muted{color:#6b7280}\
         td.s-ok{background:#dff5e3;color:#14532d;font-weight:600}td.s-bad{background:#fde2e1;color:#7f1d1d;font-weight:600}\
         .legend span{display:inline-block;width:12px;height:12px;border-radius:2px;vertical-align:middle;margin:0 .3em 0 .8em}\
         .legend .r-ok{background:#34a853}.legend .r-bad{background:#d93025}dl.run{display:grid;grid-template-columns:max-content auto;gap:.1em 1em;margin:.4em 0 1em}dl.run dt{color:#6b7280}dl.run dd{margin:0}";

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
