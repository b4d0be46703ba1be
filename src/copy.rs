//! The `copy` command from start to end: check everything that can be checked before
//! writing (tables, target tables, the job's state), set the job up in one target
//! transaction, run the pipeline, record the outcome, write the report.
//!
//! Every refusal happens before the setup transaction commits, so bad input leaves nothing
//! behind. This module must never copy rows itself; the pipeline does.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::config::{CopyConfig, Engine, OnConflict, StartMode, ThrottleConfig, VerifyConfig};
use crate::credentials::{PasswordSource, MY_PASSWORD_VAR, PG_PASSWORD_VAR, SOURCE_ENV, TARGET_ENV};
use crate::error::{redact, Error, Result};
use crate::objects::SchemaMode;
use crate::pipeline::{self, ByteGate, RunContext, TableWork, IN_FLIGHT_BYTES};
use crate::progress::{self, Progress};
use crate::report;
use crate::schema::{Table, TableName};
use crate::schema_phases;
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
    /// Rows of the job that other processes (`rangecopy worker`) copied while this one ran.
    pub rows_by_others: u64,
}

/// Runs the copy. `cancel` is set by the Ctrl-C handler.
pub fn run(cfg: &CopyConfig, cancel: Arc<AtomicBool>) -> Result<CopyOutcome> {
    let started = Instant::now();
    let mut cfg = cfg.clone();
    let cfg = &mut cfg;
    let mut source = Source::connect(&cfg.source)?;
    let mut target = PgTarget::connect(&cfg.target)?;
    source.learn_target(&mut target.conn)?;
    if !state::try_lock_job(&mut target.conn, &cfg.job)? {
        return Err(Error::input(format!(
            "job {:?} is being run by another rangecopy process on this target; wait for it or stop it first",
            cfg.job
        )));
    }
    check_throttle_sources(&cfg.throttle, &mut source)?;
    check_slot(cfg, &mut source)?;
    if cfg.consistent {
        source.check_snapshot_can_last()?;
    }
    // This process holds the job's lock: a job recorded as running is one whose run stopped
    // without saying so.
    let existing = state::load_job(&mut target.conn, &cfg.job)?.map(|mut job| {
        if job.status == "running" {
            job.status = "interrupted".into();
        }
        job
    });
    if existing.is_some() {
        // A state written by an older version gains what this one records.
        target.conn.transaction("upgrading the rangecopy state schema", state::ensure_schema)?;
    }
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
            keep_into_existing(cfg, job)?;
            resume(cfg, &mut source, &mut target, job)?
        }
        (StartMode::Restart, Some(job)) if !cfg.tables.is_empty() => {
            keep_chunk_rows(cfg, job);
            keep_into_existing(cfg, job)?;
            restart_tables(cfg, &mut source, &mut target)?
        }
        (StartMode::Restart, old) | (StartMode::Fresh, old @ None) => {
            if let Some(job) = old {
                keep_into_existing(cfg, job)?;
            }
            let old_tables = match old {
                Some(_) => state::load_tables(&mut target.conn, &cfg.job)?,
                None => Vec::new(),
            };
            let (records, slot) = setup(cfg, &mut source, &mut target, &old_tables)?;
            slot_p0 = slot;
            records
        }
    };
    // The job is recorded from here on: whatever stops the run now is a failure at run time
    // (exit 1, committed chunks kept), and the job's status says how the run ended.
    let mut run = Run { cfg, cancel: &cancel, progress: None, base: (0, 0) };
    let result = run.execute(&mut source, &mut target, &records, slot_p0, existing.as_ref());
    let seconds = started.elapsed().as_secs_f64();
    let counted = |f: fn(&progress::TableCounters) -> u64| run.progress.as_deref().map_or(0, |p| total(p, f));
    let outcome = CopyOutcome {
        job: cfg.job.clone(),
        seconds,
        rows_this_run: counted(|t| t.rows.load(Ordering::Relaxed)).saturating_sub(run.base.0),
        bytes_this_run: counted(|t| t.bytes.load(Ordering::Relaxed)).saturating_sub(run.base.1),
        rows_by_others: run.progress.as_deref().map_or(0, |p| p.others().0),
    };
    let result = result.and_then(|()| if cfg.verify { verify_copy(cfg, &cancel) } else { Ok(()) });
    let result = result.map_err(Error::started);
    // The main connection may have been lost (the target restarted); a fresh one records the end.
    let status = match &result {
        Ok(()) => "done",
        Err(e) if matches!(e.root(), Error::Interrupted) => "interrupted",
        Err(_) => "failed",
    };
    crate::live::finished(status, outcome.rows_this_run, seconds, result.as_ref().err());
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
            recorded.map_err(Error::started)?;
            if let Some(path) = &cfg.report {
                report::write_copy_report(&mut target.conn, cfg, &outcome, path).map_err(Error::started)?;
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

/// One run of a recorded job: what it counted, for the outcome.
struct Run<'a> {
    cfg: &'a CopyConfig,
    cancel: &'a Arc<AtomicBool>,
    progress: Option<Arc<Progress>>,
    /// Rows and bytes already committed before this run.
    base: (u64, u64),
}

impl Run<'_> {
    /// Everything between the job's set-up and its final status: positions, the pipeline.
    fn execute(
        &mut self,
        source: &mut Source,
        target: &mut PgTarget,
        records: &[TableRecord],
        slot_p0: Option<SourcePosition>,
        existing: Option<&JobRecord>,
    ) -> Result<()> {
        let cfg = self.cfg;
        if records.is_empty() {
            // --schema-only: objects and no rows.
            return finish_objects(&cfg.job, source, target, &cfg.target, cfg.workers, None);
        }
        let resumed = cfg.mode == StartMode::Resume;
        if resumed && (cfg.consistent || existing.is_some_and(|j| j.consistent)) {
            crate::say!(
                "warning: job {:?} is resumed: a --consistent snapshot ends with the process that took it, so the \
                 chunks copied before and after this resume come from different moments and the copy is not one \
                 consistent snapshot (it still converges once CDC replays from the job's P0)",
                cfg.job
            );
        }
        for r in records {
            if r.table.key.is_none() && r.phase != "done" {
                crate::say!(
                    "warning: table {} has no primary key or unique NOT NULL key: it is copied as one chunk, \
                     so an interrupted copy of it starts that table over on resume (committed tables are kept)",
                    r.table.name
                );
            }
        }
        // The job's row holds the limits the run follows (and `rangecopy throttle` changes): a
        // new run sets them from its options; a resumed one keeps the stored ones unless given.
        let t = &cfg.throttle;
        let given = |v: u64| (!resumed || v > 0).then_some(v);
        state::write_throttle(&mut target.conn, &cfg.job, given(t.rows_per_sec), given(t.bytes_per_sec), Some(false))?;
        let work = plan_work(cfg, target, records)?;
        let (progress, base) =
            progress_from_state(target, &cfg.job, records, |r| !work.iter().any(|w| w.table_no == r.table_no))?;
        self.progress = Some(progress.clone());
        self.base = base;
        let (snapshot, snapshot_p0) = match cfg.consistent {
            true => Snapshot::start(&cfg.source, source, cfg.workers).map(|(s, p)| (Some(s), Some(p)))?,
            false => (None, None),
        };
        self.record_p0(source, target, slot_p0.or(snapshot_p0))?;
        let (worker, host) = pipeline::process_name();
        let run = state::load_job(&mut target.conn, &cfg.job)?.map(|j| j.started_at).unwrap_or_default();
        let ctx = RunContext {
            job: cfg.job.clone(),
            source: cfg.source.clone(),
            target: loading_endpoint(&cfg.target, cfg.into_existing.is_some(), target, records)?,
            tables: records.iter().map(|r| r.table.clone()).collect(),
            chunk_rows: cfg.chunk_rows,
            workers: cfg.workers,
            progress,
            progress_mode: cfg.progress,
            progress_interval: cfg.progress_interval,
            retry: cfg.retry,
            throttle: Arc::new(Throttle::new(t.rows_per_sec, t.bytes_per_sec)),
            throttle_config: cfg.throttle.clone(),
            in_flight: ByteGate::new(IN_FLIGHT_BYTES),
            cancel: self.cancel.clone(),
            snapshot,
            run,
            worker,
            host,
            lease: cfg.lease,
            holds_job_lock: true,
            objects_target: cfg.target.clone(),
            verify: cfg.verify,
            after: after_load,
        };
        crate::live::copy_started(&ctx.progress, &ctx.throttle);
        // Workers (`rangecopy worker`) join from here: P0 is recorded.
        state::open_to_workers(&mut target.conn, &cfg.job)?;
        let result = pipeline::run(&ctx, &work, source, target);
        // The snapshot's transactions end here, before any verification.
        drop(ctx);
        result?;
        if cfg.into_existing.is_some() {
            for t in state::table_progress(&mut target.conn, &cfg.job)? {
                if let Some(m) = &t.merged {
                    crate::say!("job {}: {}: {}", cfg.job, t.target_table, report::merged_words(m));
                }
            }
        }
        Ok(())
    }

    /// P0, before the first chunk is read: the slot's consistent point, else the snapshot's
    /// position, else where the source is now. A job keeps the P0 of its first run; one that
    /// has none by the time a chunk is committed never gets one, since CDC started from a
    /// later position would miss the changes made while those chunks were read.
    fn record_p0(&self, source: &mut Source, target: &mut PgTarget, known: Option<SourcePosition>) -> Result<()> {
        let cfg = self.cfg;
        let consistent = cfg.consistent && cfg.mode != StartMode::Resume;
        let recordable = state::p0_recordable(&mut target.conn, &cfg.job)?;
        let p0 = match known {
            _ if !recordable => None,
            Some(p) => Some(p),
            None => source
                .position()
                .map_err(|e| {
                    crate::say!(
                        "warning: the source position P0 could not be read, so it is not recorded: {}",
                        redact(&e.to_string())
                    )
                })
                .ok(),
        };
        match state::record_p0(&mut target.conn, &cfg.job, p0.as_ref(), consistent)? {
            Some(p0) => crate::say!("job {}: P0 (CDC starts here) is {p0}", cfg.job),
            None if !recordable => crate::say!(
                "warning: job {}: P0 was not recorded before its first chunk was copied and cannot be recorded \
                 now: CDC cannot start from this job's position (copy it again with --restart once the source \
                 position can be read)",
                cfg.job
            ),
            None => {}
        }
        Ok(())
    }
}

/// The job's last step, run by whichever process claims it once every table is done (see
/// `pipeline::AfterLoad`): P1, the objects after the load, and the job recorded done (unless
/// the starting process verifies it first).
pub fn after_load(ctx: &RunContext, fence: &state::StepFence) -> Result<()> {
    let mut target = PgTarget::connect(&ctx.objects_target)?;
    record_p1(&ctx.job, &ctx.source, &mut target);
    let mut source = Source::connect(&ctx.source)?;
    finish_objects(&ctx.job, &mut source, &mut target, &ctx.objects_target, ctx.workers, Some(fence))?;
    state::finish_after(&mut target.conn, fence, !ctx.verify)
}

/// The objects created once every table is loaded, and a word on those that failed (the
/// report lists them with their reasons).
fn finish_objects(
    job: &str,
    source: &mut Source,
    target: &mut PgTarget,
    ep: &crate::config::PgEndpoint,
    workers: usize,
    fence: Option<&state::StepFence>,
) -> Result<()> {
    crate::live::schema_phase("creating objects after the rows", "");
    let failed = schema_phases::run_after(job, source, target, ep, workers, fence)?;
    let objects = state::load_objects(&mut target.conn, job)?;
    crate::live::schema_phase("done", &report::schema_summary(&objects));
    if !objects.is_empty() {
        crate::say!("job {job}: schema: {}", report::schema_summary(&objects));
        let listed: Vec<&str> =
            objects.iter().filter(|o| o.status == "listed").map(|o| o.object.name.as_str()).collect();
        if !listed.is_empty() {
            crate::say!("  not carried over (their source SQL is in the report, --report FILE): {}", listed.join(", "));
        }
    }
    if !failed.is_empty() {
        crate::say!(
            "warning: job {job}: {} objects could not be created as the source has them (listed above and in the \
             report); the rows are all copied",
            failed.len()
        );
    }
    Ok(())
}

/// The target endpoint the run loads through. Rows loaded into tables that already have
/// foreign keys (`--data-only` after `--schema-only`, tables made by hand) are checked row by
/// row, and a child table's chunk committed before its parent's rows fails. Such loads run as
/// pg_restore's `--disable-triggers` does (`session_replication_role = replica`, which also
/// holds those tables' own triggers) where the target user may; elsewhere a warning says what
/// to expect. Tables with triggers and no foreign keys load with their triggers firing, except
/// under `--into-existing`: there the tables are the application's, and its triggers (audit
/// rows, counters, outboxes) must not fire for history that the source's own tables already
/// hold, so triggers alone are reason enough.
pub fn loading_endpoint(
    ep: &crate::config::PgEndpoint,
    into_existing: bool,
    target: &mut PgTarget,
    records: &[TableRecord],
) -> Result<crate::config::PgEndpoint> {
    let names: Vec<String> = records.iter().filter(|r| r.phase != "done").map(|r| r.table.target.quoted()).collect();
    let what = "looking for triggers and foreign keys on the target tables";
    let guarded: Vec<String> = target
        .conn
        .query(
            "SELECT DISTINCT conrelid::regclass::text FROM pg_constraint
              WHERE contype = 'f' AND (conrelid IN (SELECT to_regclass(n) FROM unnest($1::text[]) n)
                                       OR confrelid IN (SELECT to_regclass(n) FROM unnest($1::text[]) n))
             UNION
             SELECT tgrelid::regclass::text FROM pg_trigger
              WHERE $2 AND NOT tgisinternal AND tgrelid IN (SELECT to_regclass(n) FROM unnest($1::text[]) n)",
            &[&names, &into_existing],
            what,
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if guarded.is_empty() {
        return Ok(ep.clone());
    }
    let allowed = target
        .conn
        .transaction(what, |conn| Ok(conn.batch("SET LOCAL session_replication_role = replica", what).is_ok()));
    if !allowed.unwrap_or(false) {
        crate::say!(
            "warning: target tables {} have foreign keys{}, checked for every loaded row (a child table's rows \
             loaded before its parent's fail), and the target user may not hold them for the load \
             (session_replication_role needs a superuser, or GRANT SET ON PARAMETER session_replication_role); \
             add them after the load, or let rangecopy create the schema",
            guarded.join(", "),
            if into_existing { " or triggers (which fire for every backfilled row)" } else { "" }
        );
        return Ok(ep.clone());
    }
    let mut ep = ep.clone();
    let options = match ep.config.get_options() {
        Some(o) if !o.is_empty() => format!("{o} -c session_replication_role=replica"),
        _ => "-c session_replication_role=replica".to_string(),
    };
    ep.config.options(&options);
    Ok(ep)
}

/// `--verify`: compares every table of the job with its source along the job's chunks; a
/// difference fails the job (its data stays; `rangecopy verify` shows the rows).
fn verify_copy(cfg: &CopyConfig, cancel: &AtomicBool) -> Result<()> {
    crate::say!("verifying the copied tables…");
    let v = crate::verify::run(&VerifyConfig::for_copy(cfg), cancel)?;
    // JSON logs carry each table's verdict as an event instead.
    if !crate::log::json() {
        report::print_verification(&v, &mut std::io::stderr().lock())?;
    }
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
pub(crate) fn check_throttle_sources(throttle: &ThrottleConfig, source: &mut Source) -> Result<()> {
    if let Some((sql, _)) = &throttle.query {
        source.query_number(sql).map_err(|e| Error::input(format!("--throttle-query: {e}")))?;
    }
    for ep in &throttle.lag_replicas {
        Source::connect(ep)?.replication_lag().map_err(|e| Error::input(format!("--lag-replica: {e}")))?;
    }
    if throttle.max_lag.is_some() && throttle.lag_replicas.is_empty() {
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

/// Reads P1 on a fresh connection once every chunk is committed, and records it. Like P0, a
/// P1 that cannot be read is a warning: the rows are copied either way.
fn record_p1(job: &str, source: &crate::config::SourceEndpoint, target: &mut PgTarget) {
    let recorded = Source::connect(source)
        .and_then(|mut source| source.position())
        .and_then(|p1| state::record_p1(&mut target.conn, job, &p1).map(|()| p1));
    match recorded {
        Ok(p1) => crate::say!("job {job}: P1 (CDC has caught up with the copy once past here) is {p1}"),
        Err(e) => crate::say!(
            "warning: the source position P1 could not be read, so it is not recorded: {}",
            redact(&e.to_string())
        ),
    }
}

/// The command that resumes this job (passwords are never part of it).
pub fn resume_hint(cfg: &CopyConfig) -> String {
    go_on_hint(cfg, "--resume")
}

/// `rangecopy copy` with this run's endpoints (as the resume hint gives them) and job, then
/// `action`, and where the passwords come from.
fn go_on_hint(cfg: &CopyConfig, action: &str) -> String {
    let source = Side {
        name: "source",
        env: cfg.source_from_env.then_some(SOURCE_ENV),
        url: cfg.source.hint_url(),
        password: cfg.source.password_source(),
        engine: cfg.source.engine(),
    };
    let target = Side {
        name: "target",
        env: cfg.target_from_env.then_some(TARGET_ENV),
        url: &cfg.target.hint_url,
        password: &cfg.target.password_source,
        engine: Engine::Postgres,
    };
    let mut command = String::from("rangecopy copy");
    for side in [&source, &target] {
        if side.env.is_none() {
            command.push_str(&format!(" --{} {}", side.name, shell_word(side.url)));
        }
    }
    command.push_str(&format!(" --job {} {action}", shell_word(&cfg.job)));
    let mut notes: Vec<String> = Vec::new();
    let vars: Vec<&str> = [&source, &target].iter().filter_map(|s| s.env).collect();
    if !vars.is_empty() {
        notes.push(format!("{} set as for this run", vars.join(" and ")));
    }
    let passwords: Vec<(&str, String)> =
        [&source, &target].iter().filter_map(|s| s.password_note().map(|n| (s.name, n))).collect();
    match passwords.as_slice() {
        [(_, a), (_, b)] if a == b => notes.push(format!("passwords in {a}")),
        several => notes.extend(several.iter().map(|(name, n)| format!("{name} password in {n}"))),
    }
    if notes.is_empty() {
        command
    } else {
        format!("{command}   ({})", notes.join("; "))
    }
}

/// One endpoint, as the resume hint gives it again.
struct Side<'a> {
    name: &'static str,
    /// The variable the URL came from, if it did.
    env: Option<&'static str>,
    url: &'a str,
    password: &'a PasswordSource,
    engine: Engine,
}

impl Side<'_> {
    /// Where the password is to be found for the printed command; `None` when the URL comes
    /// from the environment as before (with its password) or no password was used.
    fn password_note(&self) -> Option<String> {
        let (var, file) = match self.engine {
            Engine::Postgres => (PG_PASSWORD_VAR, "~/.pgpass"),
            Engine::Mysql => (MY_PASSWORD_VAR, "~/.my.cnf"),
        };
        match self.password {
            PasswordSource::None => None,
            PasswordSource::Url if self.env.is_some() => None,
            // The printed URL has lost it: it must come from elsewhere.
            PasswordSource::Url => Some(format!("{var} or {file}")),
            PasswordSource::Env(var) => Some((*var).to_string()),
            PasswordSource::File(path) => Some(path.display().to_string()),
        }
    }
}

/// The command that copies one table of this job again, for a source table that changed.
pub fn restart_hint(cfg: &CopyConfig, table: &str) -> String {
    go_on_hint(cfg, &format!("--restart {}", shell_word(table)))
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
        crate::say!(
            "warning: job {:?} keeps its chunk size of {recorded} rows (--chunk-rows {} ignored)",
            cfg.job,
            cfg.chunk_rows
        );
    }
    cfg.chunk_rows = recorded;
}

/// A resumed or restarted job keeps the `--into-existing` mode it was started with: a run that
/// names another is refused, since a job whose chunks merge under two rules (or a restart that
/// empties tables whose rows were the application's) is not what anyone asked for.
fn keep_into_existing(cfg: &mut CopyConfig, job: &JobRecord) -> Result<()> {
    let recorded = job.settings.get("into_existing").and_then(|v| v.as_str()).and_then(OnConflict::from_word);
    let words = |mode: Option<OnConflict>| match mode {
        Some(m) => format!("--into-existing --on-conflict {}", m.word()),
        None => "plain loads into empty tables (no --into-existing)".to_string(),
    };
    match cfg.into_existing {
        None => cfg.into_existing = recorded,
        Some(given) if Some(given) != recorded => {
            return Err(Error::input(format!(
                "job {:?} was started with {}, and this run asks for {}; run it again with the same options (or \
                 none: the job keeps its own), or copy under another --job name",
                cfg.job,
                words(recorded),
                words(Some(given))
            )))
        }
        Some(_) => {}
    }
    Ok(())
}

/// Checks a resumed job against this run's arguments and marks it running again.
fn resume(cfg: &CopyConfig, source: &mut Source, target: &mut PgTarget, job: &JobRecord) -> Result<Vec<TableRecord>> {
    let records = state::load_tables(&mut target.conn, &cfg.job)?;
    if !cfg.tables.is_empty() {
        let named = named_records(cfg, &records);
        if named.len() != cfg.tables.len() || named.len() != records.len() {
            return Err(Error::input(format!(
                "--resume: job {:?} copies {}, but this run names {}; resume without naming tables, or use --restart",
                cfg.job,
                records.iter().map(|r| r.table.name.to_string()).collect::<Vec<_>>().join(", "),
                named_specs(cfg).join(", ")
            )));
        }
    }
    if job.source != cfg.source.display() {
        crate::say!(
            "warning: job {:?} was started from {}; resuming from {}",
            cfg.job,
            job.source,
            cfg.source.display()
        );
    }
    let unfinished: Vec<&Table> = records.iter().filter(|r| r.phase != "done").map(|r| &r.table).collect();
    source.check_sequences_readable(&unfinished)?;
    if let Some(mode) = cfg.into_existing {
        for r in records.iter().filter(|r| r.phase != "done" && !r.created_by_job) {
            target.merge_plan(&r.table, r.table_no, mode == OnConflict::Update)?;
        }
    }
    state::resume_job(&mut target.conn, &cfg.job, &settings(cfg))?;
    Ok(records)
}

/// The tables this run names, as `schema.name` (`*` for any schema), for messages.
fn named_specs(cfg: &CopyConfig) -> Vec<String> {
    cfg.tables.iter().map(|t| format!("{}.{}", t.schema.as_deref().unwrap_or("*"), t.name)).collect()
}

/// The job's tables that this run names (each named table that the job copies, once).
fn named_records<'a>(cfg: &CopyConfig, records: &'a [TableRecord]) -> Vec<&'a TableRecord> {
    records.iter().filter(|r| cfg.tables.iter().any(|s| names(s, &r.table.name))).collect()
}

/// Whether a table named on the command line is this recorded table.
fn names(spec: &crate::config::TableSpec, table: &TableName) -> bool {
    table.name == spec.name && spec.schema.as_ref().is_none_or(|s| s == &table.schema)
}

/// `--restart TABLE…` of an existing job: copies again only the named tables, from a fresh
/// look at their source definition, and keeps everything else the job has done. What it
/// throws away is listed before it goes.
fn restart_tables(cfg: &CopyConfig, source: &mut Source, target: &mut PgTarget) -> Result<Vec<TableRecord>> {
    let records = state::load_tables(&mut target.conn, &cfg.job)?;
    let named = named_records(cfg, &records);
    for spec in &cfg.tables {
        if !named.iter().any(|r| names(spec, &r.table.name)) {
            return Err(Error::input(format!(
                "--restart: job {:?} does not copy {}.{} (it copies {}); --restart TABLE copies again tables of the \
                 job; copy other tables with another --job, or --restart without naming tables to start the whole \
                 job over",
                cfg.job,
                spec.schema.as_deref().unwrap_or("*"),
                spec.name,
                records.iter().map(|r| r.table.name.to_string()).collect::<Vec<_>>().join(", ")
            )));
        }
    }
    let specs: Vec<crate::config::TableSpec> = named
        .iter()
        .map(|r| crate::config::TableSpec {
            schema: Some(r.table.name.schema.clone()),
            name: r.table.name.name.clone(),
            quoted: true,
        })
        .collect();
    let fresh = source.describe_tables(&specs, &[])?;
    let mut plan = Vec::new();
    for (record, table) in named.iter().zip(fresh) {
        let create = target_plan(cfg, target, &table, Some(record), None)?;
        plan.push((record.table_no, table, create, record.created_by_job));
    }
    source.check_sequences_readable(&plan.iter().map(|p| &p.1).collect::<Vec<_>>())?;
    // Tables the source's schema dump created keep their definition and indexes (foreign keys
    // and views may rest on them): they are emptied, not dropped.
    let dumped = state::load_objects(&mut target.conn, &cfg.job)?.iter().any(|o| o.object.kind == "TABLE");
    let discarded: Vec<_> = plan
        .iter()
        .map(|(no, t, create, created)| (*no, &t.name, &t.target, Discard::of(cfg, *created, *create && !dumped)))
        .collect();
    let mut columns = Vec::new();
    for (no, table, _, _) in &plan {
        if let Existing::Present { columns: c, .. } = target.inspect(&table.target)? {
            columns.push((*no, c));
        }
    }
    announce_discard(cfg, target, &discarded)?;
    target
        .conn
        .transaction("restarting tables of the job", |conn| {
            for (table_no, table, create, created_by_job) in &plan {
                state::reset_table(conn, &cfg.job, *table_no, table, *created_by_job || *create)?;
                if cfg.into_existing.is_some() && !*created_by_job && !*create {
                    // It existed before the job: its rows stay, merged again.
                    continue;
                }
                if dumped {
                    target::truncate_table(conn, &table.target)?;
                    if let Some(columns) = columns.iter().find(|(no, _)| no == table_no).map(|(_, c)| c) {
                        target::align_columns(conn, table, columns)?;
                    }
                    state::set_deferred_done(conn, &cfg.job, *table_no, table.ddl.deferred.len())?;
                } else if *create {
                    target::drop_table(conn, &table.target)?;
                    target::create_table(conn, table)?;
                } else {
                    target::truncate_table(conn, &table.target)?;
                }
            }
            state::resume_job(conn, &cfg.job, &settings(cfg))
        })
        .map_err(|e| Error::input(format!("{e}\nnothing was written to the target")))?;
    state::load_tables(&mut target.conn, &cfg.job)
}

/// Says, before `--restart` throws them away, what the job had copied of each table
/// `(table_no, source name, target name, what becomes of it)`. Under `--into-existing`, a
/// table that existed before the job keeps its rows: only the job's record of it goes.
fn announce_discard(
    cfg: &CopyConfig,
    target: &mut PgTarget,
    tables: &[(usize, &TableName, &TableName, Discard)],
) -> Result<()> {
    let progress = state::table_progress(&mut target.conn, &cfg.job)?;
    for (table_no, name, target_name, discard) in tables {
        if *discard == Discard::Kept {
            crate::say!(
                "restart: forgetting what job {} merged into {target_name} (its rows stay: --into-existing never \
                 empties a table that existed before the job); its rows are merged again",
                cfg.job
            );
            continue;
        }
        let p = progress.iter().find(|p| p.table_no == *table_no);
        crate::say!(
            "restart: discarding what job {} copied of {name} ({} rows in {} chunks): {} {target_name}",
            cfg.job,
            p.map_or(0, |p| p.rows),
            p.map_or(0, |p| p.chunks_done),
            if *discard == Discard::Dropped { "dropping" } else { "emptying" },
        );
    }
    Ok(())
}

/// What `--restart` does to a target table the job had loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Discard {
    Dropped,
    Emptied,
    /// It existed before an `--into-existing` job: its rows stay.
    Kept,
}

impl Discard {
    fn of(cfg: &CopyConfig, created_by_job: bool, dropped: bool) -> Self {
        match (cfg.into_existing.is_some() && !created_by_job, dropped) {
            (true, _) => Discard::Kept,
            (false, true) => Discard::Dropped,
            (false, false) => Discard::Emptied,
        }
    }
}

/// Whether a source table's target must be created (true) or is an existing table that can
/// take its rows (false); refuses a target that holds rows this job did not put there, naming
/// the finished job that did (`filled_by`), if one did.
fn target_plan(
    cfg: &CopyConfig,
    target: &mut PgTarget,
    table: &Table,
    ours: Option<&TableRecord>,
    filled_by: Option<&str>,
) -> Result<bool> {
    match (target.inspect(&table.target)?, ours) {
        (Existing::Missing, _) => Ok(true),
        // A table the old job created is dropped and created afresh.
        (Existing::Present { .. }, Some(r)) if r.created_by_job => Ok(true),
        // --into-existing: whatever the table holds stays; its rows are merged on its key.
        (Existing::Present { columns, .. }, _) if cfg.into_existing.is_some() => {
            target::check_columns(table, &columns)?;
            target.merge_plan(table, 0, false)?;
            Ok(false)
        }
        (Existing::Present { has_rows: true, .. }, None) => Err(Error::input(match filled_by {
            Some(job) => format!(
                "target table {} already holds the rows that finished job {job:?} copied; to copy it again, \
                 run that job again with --job {} --restart (or copy into another database)",
                table.target,
                shell_word(job)
            ),
            None => format!(
                "target table {} already has rows and no rangecopy job is filling it; \
                 empty or drop it, or copy into another database",
                table.target
            ),
        })),
        (Existing::Present { columns, .. }, _) => {
            target::check_columns(table, &columns)?;
            Ok(false)
        }
    }
}

/// Checks the source tables against the target and records a new job, creating missing
/// target tables, all in one target transaction (for `--restart`, after removing the old
/// job and the rows it loaded).
fn setup(
    cfg: &mut CopyConfig,
    source: &mut Source,
    target: &mut PgTarget,
    old: &[TableRecord],
) -> Result<(Vec<TableRecord>, Option<SourcePosition>)> {
    let tables = source.describe_tables(&cfg.tables, &cfg.exclude_tables)?;
    let others = other_jobs_tables(target, &cfg.job)?;
    let mut plan: Vec<(Table, bool)> = Vec::with_capacity(tables.len());
    for table in tables {
        let other = others.iter().find(|o| o.table == table.target);
        if let Some(o) = other.filter(|o| !o.done) {
            return Err(Error::input(format!(
                "target table {} is being filled by unfinished job {:?}; resume or restart that job instead",
                table.target, o.job
            )));
        }
        let ours = old.iter().find(|r| r.table.target == table.target);
        let create = target_plan(cfg, target, &table, ours, other.map(|o| o.job.as_str()))?;
        plan.push((table, create));
    }
    source.check_sequences_readable(&plan.iter().map(|(t, _)| t).collect::<Vec<_>>())?;
    let mode = schema_mode(cfg, &plan)?;
    // The run (and the settings the job records) follows the mode it takes.
    cfg.schema_mode = mode;
    let cfg = &*cfg;
    let mut objects = source.objects(&plan.iter().map(|(t, _)| t.clone()).collect::<Vec<_>>(), cfg)?;
    // Tables the schema's own objects create (PostgreSQL sources: pg_dump's) are not created
    // from the introspected DDL.
    let dumped = objects.iter().any(|o| o.kind == "TABLE");
    schema_phases::prepare(&mut target.conn, &mut objects)?;
    let schema_only = mode == SchemaMode::SchemaOnly;
    let restart = !old.is_empty() || cfg.mode == StartMode::Restart;
    if restart {
        let discarded: Vec<_> = old
            .iter()
            .map(|r| (r.table_no, &r.table.name, &r.table.target, Discard::of(cfg, r.created_by_job, r.created_by_job)))
            .collect();
        announce_discard(cfg, target, &discarded)?;
    }
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
                crate::say!("warning: could not drop the replication slot {:?} again: {e}", slot.name);
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
                    } else if cfg.into_existing.is_none() {
                        target::truncate_table(conn, &r.table.target)?;
                    }
                }
            }
            let objects = schema_phases::run_before(conn, objects)?;
            // --schema-only records no table: there are no rows to copy.
            let recorded = if schema_only { &plan[..0] } else { &plan[..] };
            state::create_job(conn, &cfg.job, cfg.source.display(), &settings(cfg), recorded)?;
            state::record_objects(conn, &cfg.job, &objects)?;
            for (table, _) in plan.iter().filter(|(_, create)| *create) {
                match (dumped, schema_only) {
                    (true, true) => {}
                    (true, false) => target::hold_autovacuum(conn, &table.target)?,
                    (false, false) => target::create_table(conn, table)?,
                    (false, true) => {
                        // An empty table gets its indexes at once.
                        target::create_table(conn, table)?;
                        target::release_autovacuum(conn, &table.target)?;
                        for sql in &table.ddl.deferred {
                            conn.batch(sql, &format!("building an index of {}", table.target))?;
                        }
                    }
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
        .filter(|_| !schema_only)
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

/// How this run treats the schema. When every table exists on the target already, a copy
/// loads rows only, as with `--data-only` (the source's other objects are not created);
/// `--data-only` needs every table to exist. Tables that exist while others do not are loaded
/// as they are, and the rest of the schema is created around them.
fn schema_mode(cfg: &CopyConfig, plan: &[(Table, bool)]) -> Result<SchemaMode> {
    let missing: Vec<String> = plan.iter().filter(|(_, create)| *create).map(|(t, _)| t.target.to_string()).collect();
    let present = plan.len() - missing.len();
    match cfg.schema_mode {
        SchemaMode::DataOnly if !missing.is_empty() => Err(Error::input(format!(
            "--data-only loads rows into tables that exist on the target, and {} do not; create them first, \
             or copy without --data-only",
            match missing.len() {
                0..=5 => missing.join(", "),
                n => format!("{} and {} more", missing[..5].join(", "), n - 5),
            }
        ))),
        SchemaMode::All if missing.is_empty() && present > 0 && cfg.source.engine() == Engine::Postgres => {
            crate::say!(
                "note: every table already exists on the target: copying rows only, as with --data-only (the \
                 source's other objects are not created)"
            );
            Ok(SchemaMode::DataOnly)
        }
        mode => Ok(mode),
    }
}

/// A target table of another job.
struct OtherJobTable {
    job: String,
    table: TableName,
    done: bool,
}

/// The target tables of the other jobs on this target, unfinished ones first.
fn other_jobs_tables(target: &mut PgTarget, job: &str) -> Result<Vec<OtherJobTable>> {
    if !state::schema_exists(&mut target.conn)? {
        return Ok(Vec::new());
    }
    let rows = target.conn.query(
        "SELECT t.job, t.target_schema, t.target_name, j.status = 'done' FROM rangecopy.tables t
           JOIN rangecopy.jobs j USING (job)
          WHERE j.job <> $1 ORDER BY j.status = 'done', j.started_at DESC",
        &[&job],
        "reading other jobs",
    )?;
    Ok(rows
        .iter()
        .map(|r| OtherJobTable {
            job: r.get(0),
            table: TableName::new(r.get::<_, String>(1), r.get::<_, String>(2)),
            done: r.get(3),
        })
        .collect())
}

/// The remaining work of each table: its chunks not done, the holes in its key range that
/// the state lost (planned again, with a warning), and the rest of its planning. A table
/// recorded done that turns out to miss chunks is copied again where they are missing.
fn plan_work(cfg: &CopyConfig, target: &mut PgTarget, records: &[TableRecord]) -> Result<Vec<TableWork>> {
    let mut work = Vec::new();
    for r in records {
        let point = state::resume_point(&mut target.conn, &cfg.job, r.table_no, r.plan_complete)?;
        for gap in &point.gaps {
            crate::say!(
                "warning: table {}: no recorded chunk covers the key range {} (the target lost commits it had \
                 acknowledged?); it is copied again as chunk {}",
                r.table.name,
                gap.range_text(),
                gap.chunk_no
            );
        }
        if point.pending.is_empty() && point.cursor.is_none() && r.phase == "done" {
            continue;
        }
        if r.phase == "done" {
            crate::say!(
                "warning: table {} was recorded done but {} of its chunks are not: they are copied now",
                r.table.name,
                point.pending.len()
            );
            state::set_table_phase(&mut target.conn, &cfg.job, r.table_no, "copying")?;
        }
        work.push(table_work(target, r, cfg.into_existing)?);
    }
    Ok(work)
}

/// The progress counters of a run that starts on a job: each table's rows, bytes and chunks
/// already committed (by earlier runs and other processes), and whether it is `done`; with the
/// rows and bytes committed in all before the run.
pub(crate) fn progress_from_state(
    target: &mut PgTarget,
    job: &str,
    records: &[TableRecord],
    done: impl Fn(&TableRecord) -> bool,
) -> Result<(Arc<Progress>, (u64, u64))> {
    let done_before = state::table_progress(&mut target.conn, job)?;
    let progress = Arc::new(Progress::new(
        records
            .iter()
            .map(|r| {
                let p = done_before.iter().find(|p| p.table_no == r.table_no);
                let (rows, bytes) = p.map_or((0, 0), |p| (p.rows as u64, p.bytes as u64));
                (r.table.name.to_string(), r.table.estimated_rows.max(rows), rows, bytes, done(r))
            })
            .collect(),
    ));
    for p in &done_before {
        progress.set_chunks(p.table_no, p.chunks_done as u64, p.chunks_total as u64);
    }
    let base = done_before.iter().fold((0, 0), |a, p| (a.0 + p.rows as u64, a.1 + p.bytes as u64));
    Ok((progress, base))
}

/// How a table that is not done is copied, by this process or a worker that joins the job:
/// the element types to rewrite, whether its indexes are built once loaded (the job created
/// it), and how its chunks merge into an existing table under `--into-existing`.
pub(crate) fn table_work(
    target: &mut PgTarget,
    r: &TableRecord,
    into_existing: Option<OnConflict>,
) -> Result<TableWork> {
    let mut prep = ChunkPrep::default();
    for (i, col) in r.table.copied_columns().enumerate() {
        if let Some(type_sql) = &col.user_elem_type_sql {
            prep.elem_rewrites.push((i, target.type_oid(type_sql)?));
        }
    }
    Ok(TableWork {
        table_no: r.table_no,
        prep,
        build_indexes: r.created_by_job,
        merge: match into_existing {
            Some(mode) if !r.created_by_job => {
                Some(target.merge_plan(&r.table, r.table_no, mode == OnConflict::Update)?)
            }
            _ => None,
        },
    })
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
        "excluded_columns": cfg.source.excluded_columns(),
        // --into-existing: how rows merge into the target's (null: plain loads into empty tables).
        "into_existing": cfg.into_existing.map(OnConflict::word),
        // Workers (`rangecopy worker`) read these: a job copied with --verify is recorded done
        // by its starting process once verified; MySQL zero dates follow the job's policy.
        "verify": cfg.verify,
        "zero_dates": match &cfg.source {
            crate::config::SourceEndpoint::Mysql(my) if my.options.zero_dates == crate::config::ZeroDates::Error => Some("error"),
            crate::config::SourceEndpoint::Mysql(_) => Some("null"),
            _ => None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn config(args: &[&str]) -> CopyConfig {
        let cli = crate::cli::Cli::try_parse_from([&["rangecopy", "copy"][..], args].concat()).unwrap();
        let crate::cli::Command::Copy(args) = cli.command else { unreachable!() };
        CopyConfig::from_args(&args).unwrap()
    }

    #[test]
    fn the_resume_hint_keeps_tls_parameters_and_names_each_engine_s_password_variable() {
        let cfg = config(&[
            "--source",
            "mysql://app:hint-pw-1@db1:3306/shop?ssl-mode=REQUIRED&tcp_connect_timeout_ms=5000",
            "--target",
            "postgres://app:hint-pw-2@db2/shop?sslmode=require&password=hint-pw-3",
            "--job",
            "shop 1",
        ]);
        assert_eq!(
            resume_hint(&cfg),
            "rangecopy copy --source 'mysql://app@db1:3306/shop?ssl-mode=REQUIRED&tcp_connect_timeout_ms=5000' \
             --target 'postgres://app@db2/shop?sslmode=require' --job 'shop 1' --resume   \
             (source password in MYSQL_PWD or ~/.my.cnf; target password in PGPASSWORD or ~/.pgpass)"
        );
        let cfg = config(&["--source", "postgres://u:hint-pw-4@a/x", "--target", "postgres://u:hint-pw-5@b/y"]);
        assert_eq!(
            resume_hint(&cfg),
            "rangecopy copy --source postgres://u@a/x --target postgres://u@b/y --job x --resume   \
             (passwords in PGPASSWORD or ~/.pgpass)"
        );
    }

    #[test]
    fn the_resume_hint_names_the_variables_urls_came_from() {
        let mut cfg = config(&["--source", "postgres://u:hint-pw-6@a/x", "--target", "postgres://u:hint-pw-7@b/y"]);
        cfg.source_from_env = true;
        assert_eq!(
            resume_hint(&cfg),
            "rangecopy copy --target postgres://u@b/y --job x --resume   \
             (RANGECOPY_SOURCE set as for this run; target password in PGPASSWORD or ~/.pgpass)"
        );
        cfg.target_from_env = true;
        assert_eq!(
            resume_hint(&cfg),
            "rangecopy copy --job x --resume   (RANGECOPY_SOURCE and RANGECOPY_TARGET set as for this run)"
        );
    }
}
