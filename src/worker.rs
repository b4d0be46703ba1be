//! The `worker` command: one more process on a job that `copy` started, on this machine or
//! another. It reads the job from the target's state as a resumed copy does (settings, table
//! definitions, mapping) and runs the same pipeline as `copy`, claiming its work from the
//! state, until the job's last step is done.
//!
//! It never sets a job up, never takes the job's lock and never changes the job's settings:
//! what it is given that disagrees with the job (another source, a `--consistent` job whose
//! snapshot lives in the starting process) is refused before it claims anything.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{OnConflict, SourceEndpoint, WorkerConfig, ZeroDates};
use crate::error::{redact, Error, Result};
use crate::pipeline::{self, ByteGate, RunContext, TableWork, IN_FLIGHT_BYTES};
use crate::progress::Progress;
use crate::source::Source;
use crate::state::{self, JobRecord, TableRecord};
use crate::target::postgres::PgTarget;
use crate::throttle::Throttle;

/// How a worker's run ended, for its summary line.
pub struct WorkerOutcome {
    pub job: String,
    pub worker: String,
    /// Whether the job was done before this process joined it.
    pub done_before: bool,
    pub seconds: f64,
    pub rows: u64,
    pub bytes: u64,
}

impl WorkerOutcome {
    pub fn summary_line(&self) -> String {
        if self.done_before {
            return format!("job {} is done already: nothing to do", self.job);
        }
        format!(
            "job {} is done; worker {} copied {} rows ({}) in {:.1}s",
            self.job,
            self.worker,
            crate::progress::human_count(self.rows),
            crate::progress::human_bytes(self.bytes),
            self.seconds
        )
    }
}

/// How often a worker started before its job looks for it.
const JOB_POLL: Duration = Duration::from_millis(500);

/// Joins the job and works on it until it is done. `cancel` is set by the Ctrl-C handler.
pub fn run(cfg: &WorkerConfig, cancel: Arc<AtomicBool>) -> Result<WorkerOutcome> {
    let started = Instant::now();
    let mut source = Source::connect(&cfg.source)?;
    let mut target = PgTarget::connect(&cfg.target)?;
    crate::copy::check_throttle_sources(&cfg.throttle, &mut source)?;
    let (worker, host) = pipeline::process_name();
    let outcome = |done_before: bool, progress: Option<&Progress>, base: (u64, u64)| {
        let sum =
            |f: fn(&crate::progress::TableCounters) -> u64| progress.map_or(0, |p| p.tables.iter().map(f).sum::<u64>());
        WorkerOutcome {
            job: cfg.job.clone(),
            worker: worker.clone(),
            done_before,
            seconds: started.elapsed().as_secs_f64(),
            rows: sum(|t| t.rows.load(Ordering::Relaxed)).saturating_sub(base.0),
            bytes: sum(|t| t.bytes.load(Ordering::Relaxed)).saturating_sub(base.1),
        }
    };
    let Some(job) = wait_for_job(cfg, &mut target, &cancel)? else {
        return Ok(outcome(true, None, (0, 0)));
    };
    // From here on, whatever stops the worker is a failure at run time (exit 1).
    let joined = (|| -> Result<_> {
        let mut source_ep = cfg.source.clone();
        if let (SourceEndpoint::Mysql(my), Some("error")) =
            (&mut source_ep, job.settings.get("zero_dates").and_then(|v| v.as_str()))
        {
            my.options.zero_dates = ZeroDates::Error;
        }
        source = Source::connect(&source_ep)?;
        source.learn_target(&mut target.conn)?;
        let records = state::load_tables(&mut target.conn, &cfg.job)?;
        let work = table_work(&job, &mut target, &records)?;
        Ok((source_ep, records, work))
    })();
    let (source_ep, records, work) = joined.map_err(Error::started)?;
    let (progress, base) = crate::copy::progress_from_state(&mut target, &cfg.job, &records, |r| r.phase == "done")?;
    let into_existing = job.settings.get("into_existing").is_some_and(|v| v.is_string());
    crate::say!("worker {worker}: joining job {} ({} tables, {} workers)", cfg.job, records.len(), cfg.workers);
    let ctx = RunContext {
        job: cfg.job.clone(),
        source: source_ep,
        target: crate::copy::loading_endpoint(&cfg.target, into_existing, &mut target, &records)?,
        tables: records.iter().map(|r| r.table.clone()).collect(),
        chunk_rows: job
            .settings
            .get("chunk_rows")
            .and_then(|v| v.as_u64())
            .unwrap_or(crate::config::DEFAULT_CHUNK_ROWS),
        workers: cfg.workers,
        progress: progress.clone(),
        progress_mode: cfg.progress,
        progress_interval: cfg.progress_interval,
        retry: cfg.retry,
        // The job's limits arrive with the first throttle check, before anything is read.
        throttle: Arc::new(Throttle::new(0, 0)),
        // --max-lag and --throttle-query, if this process watches them: it holds the job for them.
        throttle_config: cfg.throttle.clone(),
        in_flight: ByteGate::new(IN_FLIGHT_BYTES),
        cancel: cancel.clone(),
        snapshot: None,
        run: job.started_at.clone(),
        worker: worker.clone(),
        host,
        lease: cfg.lease,
        holds_job_lock: false,
        objects_target: cfg.target.clone(),
        verify: job.settings.get("verify").and_then(|v| v.as_bool()).unwrap_or(false),
        after: crate::copy::after_load,
    };
    crate::live::copy_started(&ctx.progress, &ctx.throttle);
    let result = pipeline::run(&ctx, &work, &mut source, &mut target).map_err(Error::started);
    let end = outcome(false, Some(&progress), base);
    let status = match &result {
        Ok(()) => "done",
        Err(e) if matches!(e.root(), Error::Interrupted) => "interrupted",
        Err(_) => "failed",
    };
    crate::live::finished(status, end.rows, end.seconds, result.as_ref().err());
    match result {
        Ok(()) => Ok(end),
        Err(e) => {
            // A failure of this process's own work fails the job, as it would in `copy`: every
            // other process stops at its next look. One that another process reported is
            // already recorded; an interrupted worker leaves its claims to the others.
            let own = !matches!(e.root(), Error::Interrupted | Error::State(_));
            if own {
                let message = redact(&e.to_string());
                let recorded = PgTarget::connect(&cfg.target)
                    .and_then(|mut t| state::set_job_status(&mut t.conn, &cfg.job, "failed", Some(&message)));
                if let Err(r) = recorded {
                    crate::say!("warning: could not record the job failed: {}", redact(&r.to_string()));
                }
            }
            Err(e)
        }
    }
}

/// Waits until the job exists and its starting process has set it up (bounded by `--wait`),
/// and checks that this worker may join it; `None` when the job is done already.
fn wait_for_job(cfg: &WorkerConfig, target: &mut PgTarget, cancel: &AtomicBool) -> Result<Option<JobRecord>> {
    let deadline = Instant::now() + cfg.wait;
    let mut said = false;
    loop {
        if let Some(job) = state::load_job(&mut target.conn, &cfg.job)? {
            check_joinable(cfg, &job)?;
            match job.status.as_str() {
                "done" => return Ok(None),
                "failed" => {
                    return Err(Error::State(format!(
                        "job {:?} failed: {}; resume it with `rangecopy copy … --job {} --resume`, then start workers again",
                        cfg.job,
                        job.last_error.as_deref().unwrap_or("(no error recorded)"),
                        cfg.job
                    )))
                }
                _ if state::is_open_to_workers(&mut target.conn, &cfg.job)? => return Ok(Some(job)),
                _ => {}
            }
        }
        if Instant::now() >= deadline {
            return Err(Error::input(format!(
                "no job named {:?} was started on {} within --wait {}s; start it with `rangecopy copy … --job {}`, \
                 or wait longer with --wait",
                cfg.job,
                cfg.target.display,
                cfg.wait.as_secs(),
                cfg.job
            )));
        }
        if !said {
            crate::say!(
                "waiting for job {:?} to be started on {} (--wait {}s)…",
                cfg.job,
                cfg.target.display,
                cfg.wait.as_secs()
            );
            said = true;
        }
        if cancel.load(Ordering::SeqCst) {
            return Err(Error::Interrupted);
        }
        std::thread::sleep(JOB_POLL);
    }
}

/// Refuses a worker that would copy something else than the job does.
fn check_joinable(cfg: &WorkerConfig, job: &JobRecord) -> Result<()> {
    if job.source != cfg.source.display() {
        return Err(Error::input(format!(
            "job {:?} copies from {}, and this worker was given {}; give it the job's source (workers read the \
             same database the job started from)",
            cfg.job,
            job.source,
            cfg.source.display()
        )));
    }
    if job.settings.get("consistent").and_then(|v| v.as_bool()).unwrap_or(false) {
        return Err(Error::input(format!(
            "job {:?} reads one consistent snapshot of the source (--consistent), which lives in the process that \
             started it: no other process can read in it, so workers cannot join this job; run it with more \
             --workers instead, or start it without --consistent to share it",
            cfg.job
        )));
    }
    Ok(())
}

/// How this process copies each table of the job that is not done: as a resumed copy would.
fn table_work(job: &JobRecord, target: &mut PgTarget, records: &[TableRecord]) -> Result<Vec<TableWork>> {
    let into_existing = job.settings.get("into_existing").and_then(|v| v.as_str()).and_then(OnConflict::from_word);
    records.iter().filter(|r| r.phase != "done").map(|r| crate::copy::table_work(target, r, into_existing)).collect()
}
