//! The `copy` command from start to end: check everything that can be checked before
//! writing (tables, target tables, the job's state), set the job up in one target
//! transaction, run the pipeline, record the outcome, write the report.
//!
//! Every refusal happens before the setup transaction commits, so bad input leaves nothing
//! behind. This module must never copy rows itself; the pipeline does.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::config::{CopyConfig, StartMode, VerifyConfig};
use crate::error::{redact, Error, Result};
use crate::pipeline::{self, ByteGate, RunContext, TableWork, IN_FLIGHT_BYTES};
use crate::progress::{self, Progress};
use crate::report;
use crate::schema::{Table, TableName};
use crate::source::{postgres as pg_source, ChunkPrep, Snapshot, Source, SourcePosition};
use crate::state::{self, JobRecord, TableRecord};
use crate::target::postgres::{self as target, Existing, PgTarget};
use crate::throttle::Throttle;

/// What a finished run did, for the summary line and the report.
pub struct CopyOutcome {
    pub job: String,
    pub seconds: f64,
    pub rows_this_run: u64,
    pub bytes_this_run: u64,
}

/// Runs the copy. `cancel` is set by the Ctrl-C handler.
pub fn run(cfg: &CopyConfig, cancel: Arc<AtomicBool>) -> Result<CopyOutcome> {
    let started = Instant::now();
    let mut cfg = cfg.clone();
    let cfg = &mut cfg;
    let mut source = Source::connect(&cfg.source)?;
    let mut target = PgTarget::connect(&cfg.target)?;
    if !state::try_lock_job(&mut target.conn, &cfg.job)? {
        return Err(Error::input(format!(
            "job {:?} is being run by another rangecopy process on this target; wait for it or stop it first",
            cfg.job
        )));
    }
    check_throttle_sources(cfg, &mut source)?;
    check_slot(cfg, &mut source)?;
    let existing = state::load_job(&mut target.conn, &cfg.job)?;
    let mut slot_p0 = None;
    let records = match (cfg.mode, &existing) {
        (StartMode::Fresh, Some(job)) => return Err(already_exists(cfg, job)),
        (StartMode::Resume, None) => {
            return Err(Error::input(format!(
                "--resume: the target has no job named {:?}; run without --resume to start it",
                cfg.job
            )))
        }
        (StartMode::Resume, Some(job)) => {
            keep_chunk_rows(cfg, job);
            resume(cfg, &mut target, job)?
        }
        (StartMode::Restart, old) | (StartMode::Fresh, old @ None) => {
            let old_tables = match old {
                Some(_) => state::load_tables(&mut target.conn, &cfg.job)?,
                None => Vec::new(),
            };
            let (records, slot) = setup(cfg, &mut source, &mut target, &old_tables)?;
            slot_p0 = slot;
            records
        }
    };
    let resumed = cfg.mode == StartMode::Resume;
    if resumed && (cfg.consistent || existing.as_ref().is_some_and(|j| j.consistent)) {
        eprintln!(
            "warning: job {:?} is resumed: a --consistent snapshot ends with the process that took it, so the \
             chunks copied before and after this resume come from different moments and the copy is not one \
             consistent snapshot (it still converges once CDC replays from the job's P0)",
            cfg.job
        );
    }
    for r in &records {
        if r.table.key.is_none() && r.phase != "done" {
            eprintln!(
                "warning: table {} has no primary key or unique NOT NULL key: it is copied as one chunk, \
                 so an interrupted copy of it starts that table over on resume (committed tables are kept)",
                r.table.name
            );
        }
    }
    // The job's row holds the limits the run follows (and `rangecopy throttle` changes): a new
    // run sets them from its options; a resumed one keeps the stored ones unless given.
    let t = &cfg.throttle;
    let given = |v: u64| (!resumed || v > 0).then_some(v);
    state::write_throttle(&mut target.conn, &cfg.job, given(t.rows_per_sec), given(t.bytes_per_sec), Some(false))?;
    let work = plan_work(cfg, &mut target, &records)?;
    let done_before = state::table_progress(&mut target.conn, &cfg.job)?;
    let progress = Arc::new(Progress::new(
        records
            .iter()
            .map(|r| {
                let p = done_before.iter().find(|p| p.table_no == r.table_no);
                let (rows, bytes) = p.map_or((0, 0), |p| (p.rows as u64, p.bytes as u64));
                (r.table.name.to_string(), r.table.estimated_rows.max(rows), rows, bytes, r.phase == "done")
            })
            .collect(),
    ));
    let base: (u64, u64) = done_before.iter().fold((0, 0), |a, p| (a.0 + p.rows as u64, a.1 + p.bytes as u64));
    // P0, before the first chunk is read: the slot's consistent point, else the snapshot's
    // position, else where the source is now. A resumed job keeps its first run's.
    let (snapshot, snapshot_p0) = match cfg.consistent {
        true => Snapshot::start(&cfg.source, &mut source, cfg.workers).map(|(s, p)| (Some(s), Some(p)))?,
        false => (None, None),
    };
    let p0 = match slot_p0.or(snapshot_p0) {
        Some(p) => Some(p),
        None => source
            .position()
            .map_err(|e| {
                eprintln!(
                    "warning: the source position P0 could not be read, so it is not recorded: {}",
                    redact(&e.to_string())
                )
            })
            .ok(),
    };
    let p0 = state::record_p0(&mut target.conn, &cfg.job, p0.as_ref(), cfg.consistent && !resumed)?;
    if let Some(p0) = &p0 {
        eprintln!("job {}: P0 (CDC starts here) is {p0}", cfg.job);
    }
    let ctx = RunContext {
        job: cfg.job.clone(),
        source: cfg.source.clone(),
        target: cfg.target.clone(),
        tables: records.iter().map(|r| r.table.clone()).collect(),
        chunk_rows: cfg.chunk_rows,
        workers: cfg.workers,
        progress: progress.clone(),
        progress_mode: cfg.progress,
        progress_interval: cfg.progress_interval,
        retry: cfg.retry,
        throttle: Arc::new(Throttle::new(t.rows_per_sec, t.bytes_per_sec)),
        throttle_config: cfg.throttle.clone(),
        in_flight: ByteGate::new(IN_FLIGHT_BYTES),
        cancel: cancel.clone(),
        snapshot,
    };
    let result = pipeline::run(&ctx, &work, &mut source, &mut target);
    // The snapshot's transactions end here, before P1 and any verification.
    drop(ctx);
    let result = result.and_then(|()| record_p1(cfg, &mut target));
    let seconds = started.elapsed().as_secs_f64();
    let outcome = CopyOutcome {
        job: cfg.job.clone(),
        seconds,
        rows_this_run: total(&progress, |t| t.rows.load(Ordering::Relaxed)).saturating_sub(base.0),
        bytes_this_run: total(&progress, |t| t.bytes.load(Ordering::Relaxed)).saturating_sub(base.1),
    };
    let result = result.and_then(|()| if cfg.verify { verify_copy(cfg, &cancel) } else { Ok(()) });
    // The main connection may have been lost (the target restarted); a fresh one records the end.
    let status = match &result {
        Ok(()) => "done",
        Err(e) if matches!(e.root(), Error::Interrupted) => "interrupted",
        Err(_) => "failed",
    };
    let message = result.as_ref().err().map(|e| redact(&e.to_string()));
    let mut recorded = state::set_job_status(&mut target.conn, &cfg.job, status, message.as_deref());
    if recorded.is_err() {
        if let Ok(fresh) = PgTarget::connect(&cfg.target) {
            target = fresh;
            recorded = state::set_job_status(&mut target.conn, &cfg.job, status, message.as_deref());
        }
    }
    match result {
        Ok(()) => {
            recorded?;
            if let Some(path) = &cfg.report {
                report::write_copy_report(&mut target.conn, cfg, &outcome, path)?;
            }
            Ok(outcome)
        }
        Err(err) => {
            if let (Some(path), Ok(())) = (&cfg.report, &recorded) {
                let _ = report::write_copy_report(&mut target.conn, cfg, &outcome, path);
            }
            Err(err)
        }
    }
}

/// `--verify`: compares every table of the job with its source along the job's chunks; a
/// difference fails the job (its data stays; `rangecopy verify` shows the rows).
fn verify_copy(cfg: &CopyConfig, cancel: &AtomicBool) -> Result<()> {
    eprintln!("verifying the copied tables…");
    let v = crate::verify::run(&VerifyConfig::for_copy(cfg), cancel)?;
    report::print_verification(&v, &mut std::io::stderr().lock())?;
    if v.identical() {
        return Ok(());
    }
    Err(Error::Verification(format!(
        "the target differs from the source in {} rows; see `rangecopy verify --source … --target … --job {}`",
        v.tables.iter().map(|t| t.differing_rows).sum::<usize>(),
        cfg.job
    )))
}

fn total(progress: &Progress, f: impl Fn(&progress::TableCounters) -> u64) -> u64 {
    progress.tables.iter().map(f).sum()
}

/// Runs the throttle query and reaches the lag replicas once before anything is written, so a
/// mistake in them is bad input (exit 2) rather than a warning every second.
fn check_throttle_sources(cfg: &CopyConfig, source: &mut Source) -> Result<()> {
    if let Some((sql, _)) = &cfg.throttle.query {
        source.query_number(sql).map_err(|e| Error::input(format!("--throttle-query: {e}")))?;
    }
    for ep in &cfg.throttle.lag_replicas {
        Source::connect(ep)?.replication_lag().map_err(|e| Error::input(format!("--lag-replica: {e}")))?;
    }
    if cfg.throttle.max_lag.is_some() && cfg.throttle.lag_replicas.is_empty() {
        source.replication_lag().map_err(|e| Error::input(format!("--max-lag: {e}")))?;
    }
    Ok(())
}

/// `--create-slot`: the job must be new and the slot must not exist (bad input, exit 2).
fn check_slot(cfg: &CopyConfig, source: &mut Source) -> Result<()> {
    let Some(slot) = &cfg.create_slot else { return Ok(()) };
    if cfg.mode == StartMode::Resume {
        return Err(Error::input(
            "--create-slot: a resumed job keeps the P0 of its first run; a slot created now would start later. \
             Resume without --create-slot (or --restart the job with it)",
        ));
    }
    let conn = source.pg_conn().ok_or_else(|| Error::input("--create-slot applies to PostgreSQL sources only"))?;
    if pg_source::slot_exists(conn, &slot.name)? {
        return Err(Error::input(format!(
            "--create-slot: the source already has a replication slot named {:?}; choose another name, or drop it \
             (SELECT pg_drop_replication_slot('{}')) if nothing uses it",
            slot.name, slot.name
        )));
    }
    Ok(())
}

/// Reads P1 on a fresh connection once every chunk is committed, and records it.
fn record_p1(cfg: &CopyConfig, target: &mut PgTarget) -> Result<()> {
    let p1: SourcePosition = Source::connect(&cfg.source)?.position()?;
    state::record_p1(&mut target.conn, &cfg.job, &p1)?;
    eprintln!("job {}: P1 (CDC has caught up with the copy once past here) is {p1}", cfg.job);
    Ok(())
}

/// The command that resumes this job (passwords are never part of it).
pub fn resume_hint(cfg: &CopyConfig) -> String {
    format!(
        "rangecopy copy --source {} --target {} --job {} --resume   (passwords via the URL or PGPASSWORD)",
        cfg.source.display(),
        cfg.target.display,
        shell_word(&cfg.job)
    )
}

fn shell_word(s: &str) -> String {
    if s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:/@".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn already_exists(cfg: &CopyConfig, job: &JobRecord) -> Error {
    if job.status == "done" {
        Error::input(format!(
            "job {:?} already finished on this target (at {}); use --restart to copy it again, or another --job name",
            cfg.job,
            job.finished_at.as_deref().unwrap_or("?")
        ))
    } else {
        Error::input(format!(
            "job {:?} exists and is unfinished ({}); resume it with:\n  {}\nor start it over with --restart",
            cfg.job,
            job.status,
            resume_hint(cfg)
        ))
    }
}

/// A resumed job goes on planning with the chunk size it was started with, so its chunks
/// stay alike (and their digests comparable).
fn keep_chunk_rows(cfg: &mut CopyConfig, job: &JobRecord) {
    let Some(recorded) = job.settings.get("chunk_rows").and_then(|v| v.as_u64()) else { return };
    if cfg.chunk_rows_given && cfg.chunk_rows != recorded {
        eprintln!(
            "warning: job {:?} keeps its chunk size of {recorded} rows (--chunk-rows {} ignored)",
            cfg.job, cfg.chunk_rows
        );
    }
    cfg.chunk_rows = recorded;
}

/// Checks a resumed job against this run's arguments and marks it running again.
fn resume(cfg: &CopyConfig, target: &mut PgTarget, job: &JobRecord) -> Result<Vec<TableRecord>> {
    let records = state::load_tables(&mut target.conn, &cfg.job)?;
    if !cfg.tables.is_empty() {
        let named: Vec<String> =
            cfg.tables.iter().map(|t| format!("{}.{}", t.schema.as_deref().unwrap_or("*"), t.name)).collect();
        let recorded: Vec<String> = records.iter().map(|r| r.table.name.to_string()).collect();
        let matches = cfg.tables.len() == records.len()
            && cfg.tables.iter().all(|s| {
                records.iter().any(|r| {
                    r.table.name.name == s.name && s.schema.as_ref().is_none_or(|sc| sc == &r.table.name.schema)
                })
            });
        if !matches {
            return Err(Error::input(format!(
                "--resume: job {:?} copies {}, but this run names {}; resume without naming tables, or use --restart",
                cfg.job,
                recorded.join(", "),
                named.join(", ")
            )));
        }
    }
    if job.source != cfg.source.display() {
        eprintln!("warning: job {:?} was started from {}; resuming from {}", cfg.job, job.source, cfg.source.display());
    }
    state::resume_job(&mut target.conn, &cfg.job, &settings(cfg))?;
    Ok(records)
}

/// Checks the source tables against the target and records a new job, creating missing
/// target tables, all in one target transaction (for `--restart`, after removing the old
/// job and the rows it loaded).
fn setup(
    cfg: &CopyConfig,
    source: &mut Source,
    target: &mut PgTarget,
    old: &[TableRecord],
) -> Result<(Vec<TableRecord>, Option<SourcePosition>)> {
    let tables = source.describe_tables(&cfg.tables)?;
    let others = other_jobs_tables(target, &cfg.job)?;
    let mut plan: Vec<(Table, bool)> = Vec::with_capacity(tables.len());
    for table in tables {
        if let Some(job) = others.iter().find(|(_, name)| name == &table.target).map(|(job, _)| job) {
            return Err(Error::input(format!(
                "target table {} is being filled by unfinished job {job:?}; resume or restart that job instead",
                table.target
            )));
        }
        let ours = old.iter().find(|r| r.table.target == table.target);
        let create = match (target.inspect(&table.target)?, ours) {
            (Existing::Missing, _) => true,
            // A table the old job created is dropped and created afresh.
            (Existing::Present { .. }, Some(r)) if r.created_by_job => true,
            (Existing::Present { columns, .. }, Some(_)) => {
                target::check_columns(&table, &columns)?;
                false
            }
            (Existing::Present { has_rows: true, .. }, None) => {
                return Err(Error::input(format!(
                    "target table {} already has rows and no rangecopy job is filling it; \
                     empty or drop it, or copy into another database",
                    table.target
                )))
            }
            (Existing::Present { columns, .. }, None) => {
                target::check_columns(&table, &columns)?;
                false
            }
        };
        plan.push((table, create));
    }
    let restart = !old.is_empty() || cfg.mode == StartMode::Restart;
    // The slot comes first, so that P0 precedes every read; dropped again if the setup fails.
    let slot = match (&cfg.create_slot, &cfg.source) {
        (Some(slot), crate::config::SourceEndpoint::Postgres(ep)) => Some(
            pg_source::create_slot(ep, &slot.name, &slot.plugin)
                .map_err(|e| Error::input(format!("--create-slot: {e}\nnothing was written to the target")))?,
        ),
        _ => None,
    };
    let drop_slot = || {
        if let (Some(slot), crate::config::SourceEndpoint::Postgres(ep)) = (&cfg.create_slot, &cfg.source) {
            if let Err(e) = pg_source::drop_slot(ep, &slot.name) {
                eprintln!("warning: could not drop the replication slot {:?} again: {e}", slot.name);
            }
        }
    };
    target
        .conn
        .transaction("setting up the job", |conn| {
            state::ensure_schema(conn)?;
            if restart {
                state::delete_job(conn, &cfg.job)?;
                for r in old {
                    if r.created_by_job {
                        target::drop_table(conn, &r.table.target)?;
                    } else {
                        target::truncate_table(conn, &r.table.target)?;
                    }
                }
            }
            state::create_job(conn, &cfg.job, cfg.source.display(), &settings(cfg), &plan)?;
            for (table, create) in &plan {
                if *create {
                    target::create_table(conn, table)?;
                }
            }
            Ok(())
        })
        // Rolled back: whatever stopped the setup, nothing was written.
        .map_err(|e| {
            drop_slot();
            Error::input(format!("{e}\nnothing was written to the target"))
        })?;
    let records = plan
        .into_iter()
        .enumerate()
        .map(|(table_no, (table, created_by_job))| TableRecord {
            table_no,
            table,
            created_by_job,
            plan_complete: false,
            phase: "copying".into(),
        })
        .collect();
    Ok((records, slot))
}

/// Target tables of other unfinished jobs: (job, table).
fn other_jobs_tables(target: &mut PgTarget, job: &str) -> Result<Vec<(String, TableName)>> {
    if !state::schema_exists(&mut target.conn)? {
        return Ok(Vec::new());
    }
    let rows = target.conn.query(
        "SELECT t.job, t.target_schema, t.target_name FROM rangecopy.tables t JOIN rangecopy.jobs j USING (job)
          WHERE j.status <> 'done' AND j.job <> $1",
        &[&job],
        "reading other jobs",
    )?;
    Ok(rows.iter().map(|r| (r.get(0), TableName::new(r.get::<_, String>(1), r.get::<_, String>(2)))).collect())
}

/// The remaining work of each unfinished table.
fn plan_work(cfg: &CopyConfig, target: &mut PgTarget, records: &[TableRecord]) -> Result<Vec<TableWork>> {
    let mut work = Vec::new();
    for r in records.iter().filter(|r| r.phase != "done") {
        let (pending, cursor) = state::resume_point(&mut target.conn, &cfg.job, r.table_no)?;
        let mut prep = ChunkPrep::default();
        for (i, col) in r.table.copied_columns().enumerate() {
            if let Some(type_sql) = &col.user_elem_type_sql {
                prep.elem_rewrites.push((i, target.type_oid(type_sql)?));
            }
        }
        work.push(TableWork {
            table_no: r.table_no,
            pending,
            cursor: (!r.plan_complete).then_some(cursor),
            prep,
            build_indexes: r.created_by_job,
        });
    }
    Ok(work)
}

/// The job's settings as recorded in the state and the report (no secrets).
pub fn settings(cfg: &CopyConfig) -> serde_json::Value {
    serde_json::json!({
        "engine": cfg.source.engine(),
        "source": cfg.source.display(),
        "target": cfg.target.display,
        "tables": cfg.tables.iter().map(|t| match &t.schema {
            Some(s) => format!("{s}.{}", t.name),
            None => t.name.clone(),
        }).collect::<Vec<_>>(),
        "workers": cfg.workers,
        "chunk_rows": cfg.chunk_rows,
        "mode": cfg.mode,
        "consistent": cfg.consistent,
        "create_slot": cfg.create_slot.as_ref().map(|s| &s.name),
        // verify --job tells a column left out on purpose from one added since.
        "excluded_columns": excluded_columns(cfg),
    })
}

/// `--exclude-column` rules as [database, table, column].
fn excluded_columns(cfg: &CopyConfig) -> Vec<[String; 3]> {
    match &cfg.source {
        crate::config::SourceEndpoint::Mysql(ep) => ep
            .options
            .excluded
            .iter()
            .map(|c| [c.schema.clone().unwrap_or_else(|| ep.database.clone()), c.table.clone(), c.column.clone()])
            .collect(),
        crate::config::SourceEndpoint::Postgres(_) => Vec::new(),
    }
}
