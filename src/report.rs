//! Reports of runs for people and programs: the JSON copy report, the `status` view, and the
//! summary line a finished copy prints.
//!
//! Reports read the job's state from the target, so they describe what is committed, not
//! what a process believes. This module must never print or store a password: it only sees
//! the redacted endpoint forms.

use std::io::Write;
use std::path::Path;

use serde::Serialize;

use crate::canonical::RangeDigest;
use crate::config::{CopyConfig, StatusConfig};
use crate::copy::{settings, CopyOutcome};
use crate::error::{Error, Result};
use crate::pg::PgConn;
use crate::progress::{human_bytes, human_count, human_duration};
use crate::state::{self, TableProgress};

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
    this_run: RunFigures,
    totals: Totals,
    tables: Vec<TableReport>,
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
    seconds: Option<f64>,
    rows_per_second: Option<f64>,
    bytes_per_second: Option<f64>,
    /// Row count and the sum of all chunks' row hashes: the table's digest.
    digest: String,
}

/// Writes the JSON report of a copy job to `path`.
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
    };
    let text = serde_json::to_string_pretty(&report).expect("the report serializes");
    std::fs::write(path, text + "\n").map_err(|e| Error::io(format!("writing the report {}", path.display()), e))
}

fn table_report(t: &TableProgress) -> Result<TableReport> {
    let rate = |n: i64| t.seconds.filter(|s| *s > 0.0).map(|s| n as f64 / s);
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
        rows_per_second: rate(t.rows),
        bytes_per_second: rate(t.bytes),
        digest: table_digest(t)?.to_string(),
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

/// The one-line summary a finished copy prints.
pub fn summary_line(outcome: &CopyOutcome) -> String {
    let secs = outcome.seconds.max(1e-3);
    format!(
        "job {} done: {} rows, {} copied in {} ({} rows/s, {}/s)",
        outcome.job,
        human_count(outcome.rows_this_run),
        human_bytes(outcome.bytes_this_run),
        human_duration(std::time::Duration::from_secs_f64(outcome.seconds)),
        human_count((outcome.rows_this_run as f64 / secs) as u64),
        human_bytes((outcome.bytes_this_run as f64 / secs) as u64)
    )
}

/// `rangecopy status`: per job and table, chunks done/total, rows, bytes, phase.
pub fn print_status(cfg: &StatusConfig, out: &mut impl Write) -> Result<()> {
    let mut conn = PgConn::connect(&cfg.target, "SET default_transaction_read_only = on")?;
    let jobs = match &cfg.job {
        Some(name) => match state::load_job(&mut conn, name)? {
            Some(job) => vec![job],
            None => return Err(Error::input(format!("the target has no job named {name:?}"))),
        },
        None => state::list_jobs(&mut conn)?,
    };
    let io = |e| Error::io("writing status", e);
    if jobs.is_empty() {
        writeln!(out, "no rangecopy jobs on {}", cfg.target.display).map_err(io)?;
        return Ok(());
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
        if let Some(err) = &job.last_error {
            writeln!(out, "  last error: {err}").map_err(io)?;
        }
        let width = tables.iter().map(|t| t.target_table.chars().count()).max().unwrap_or(5).max(5);
        writeln!(out, "  {:<width$}  {:>9}  {:>15}  {:>12}  {:>10}", "table", "phase", "chunks", "rows", "bytes")
            .map_err(io)?;
        for t in &tables {
            let chunks = if t.plan_complete {
                format!("{}/{}", t.chunks_done, t.chunks_total)
            } else {
                format!("{}/{}+", t.chunks_done, t.chunks_total)
            };
            writeln!(
                out,
                "  {:<width$}  {:>9}  {:>15}  {:>12}  {:>10}",
                t.target_table,
                t.phase,
                chunks,
                t.rows,
                human_bytes(t.bytes as u64)
            )
            .map_err(io)?;
        }
    }
    Ok(())
}
