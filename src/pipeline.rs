//! The running copy: one planner thread walking keys ahead, N workers each copying one chunk
//! at a time, and a progress display. This is the only module that spawns the run's threads
//! (`wait::detach` runs single blocking calls that cannot be interrupted on threads of their own).
//!
//! Per chunk, a worker runs two threads joined by a channel of at most `QUEUE_BLOCKS` blocks
//! of about `BLOCK_BYTES` each (so memory per worker is bounded in bytes): the extractor reads
//! the source's binary COPY stream; the loader hashes each tuple, forwards the bytes into the
//! target's `COPY … FROM STDIN`, and commits the rows together with the chunk's done-mark.
//! A worker owns its connections and its chunk; workers share nothing but channels, atomics
//! and the state table. A table's indexes are built by whichever thread sees its last chunk
//! finish. Cancellation (an error or Ctrl-C) rolls back in-flight chunks and keeps the rest.
//! A watcher thread reports connections held by a silent server (see `wait`), in the log and
//! in the progress display.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{bounded, unbounded};

use crate::config::{PgEndpoint, ProgressMode, RetryPolicy, SourceEndpoint, ThrottleConfig};
use crate::error::{redact, Error, Result};
use crate::plan::{plan_table, Chunk};
use crate::progress::{self, Progress};
use crate::schema::Table;
use crate::source::{Block, ChunkPrep, Snapshot, Source};
use crate::state::{self, Claim, StepFence};
use crate::target::postgres::{self as target, copy_in_sql, Merged, PgTarget};
use crate::throttle::{PauseReason, Throttle};

/// Bytes per block read from the source (a block may exceed it by one network message).
pub const BLOCK_BYTES: usize = 1 << 20;
/// Blocks in flight between a worker's extractor and loader.
pub const QUEUE_BLOCKS: usize = 4;

/// Bytes in flight at most between all extractors and loaders of a run. It never binds for
/// ordinary rows (workers × `QUEUE_BLOCKS` × `BLOCK_BYTES` is far below it); it keeps rows
/// with huge values (50 MB blobs) from being buffered several at a time.
pub const IN_FLIGHT_BYTES: u64 = 64 << 20;

/// A budget of bytes in flight, shared by all workers. A block larger than the whole budget
/// waits until nothing else is in flight, then goes alone.
pub struct ByteGate {
    capacity: u64,
    used: Mutex<u64>,
    freed: std::sync::Condvar,
}

/// Bytes taken from a `ByteGate`, given back when dropped (also when a failed chunk's blocks
/// are dropped unsent).
pub struct Permit<'a> {
    gate: &'a ByteGate,
    bytes: u64,
}

impl ByteGate {
    pub const fn new(capacity: u64) -> Self {
        ByteGate { capacity, used: Mutex::new(0), freed: std::sync::Condvar::new() }
    }

    /// Waits until `bytes` (at most the whole budget) fit, unless `cancel` is set meanwhile.
    pub fn acquire(&self, bytes: u64, cancel: &AtomicBool) -> Result<Permit<'_>> {
        let bytes = bytes.min(self.capacity);
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        while *used > 0 && *used + bytes > self.capacity {
            if cancel.load(Ordering::Relaxed) {
                return Err(Error::Interrupted);
            }
            used = self.freed.wait_timeout(used, Duration::from_millis(100)).unwrap_or_else(|e| e.into_inner()).0;
        }
        *used += bytes;
        Ok(Permit { gate: self, bytes })
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        *self.gate.used.lock().unwrap_or_else(|e| e.into_inner()) -= self.bytes;
        self.gate.freed.notify_all();
    }
}

/// Everything the threads of one run share, read-only but for atomics.
pub struct RunContext {
    pub job: String,
    pub source: SourceEndpoint,
    pub target: PgEndpoint,
    pub tables: Vec<Table>,
    pub chunk_rows: u64,
    pub workers: usize,
    pub progress: Arc<Progress>,
    pub progress_mode: ProgressMode,
    pub progress_interval: Duration,
    pub retry: RetryPolicy,
    /// The rate budget all workers share, and what changes it while the run goes on.
    pub throttle: Arc<Throttle>,
    pub throttle_config: ThrottleConfig,
    /// Bytes of COPY data between extractors and loaders, all workers together.
    pub in_flight: ByteGate,
    /// Set on Ctrl-C or on the first error: every thread stops at its next check.
    pub cancel: Arc<AtomicBool>,
    /// `--consistent`: the snapshot every worker reads in (workers take their source
    /// connections from it).
    pub snapshot: Option<Snapshot>,
    /// When the job was set up (`JobRecord::started_at`): claims are of this run of the job only.
    pub run: String,
    /// This process among the job's workers (`host:pid:random`), and its host.
    pub worker: String,
    pub host: String,
    /// Seconds a claim lasts unless renewed (`--lease`).
    pub lease: f64,
    /// Whether this process holds the job's lock (the starting `copy` does; workers do not).
    pub holds_job_lock: bool,
    /// The target as the job's objects are created on it (`ctx.target` may hold triggers for
    /// the load).
    pub objects_target: PgEndpoint,
    /// Whether the starting process verifies the job before recording it done.
    pub verify: bool,
    /// The job's last step.
    pub after: AfterLoad,
}

impl RunContext {
    /// A worker's source connection: a new one, or one inside the run's snapshot.
    fn worker_source(&self) -> Result<Source> {
        match &self.snapshot {
            Some(snapshot) => snapshot.worker_source(&self.source),
            None => Source::connect(&self.source),
        }
    }

    /// A new source connection for the planner, walking keys in the snapshot if need be.
    fn planner_source(&self) -> Result<Source> {
        let mut source = Source::connect(&self.source)?;
        if let Some(snapshot) = &self.snapshot {
            snapshot.attach(&mut source);
        }
        Ok(source)
    }
}

/// How one table's chunks are copied and finished, in this process.
#[derive(Debug, Clone)]
pub struct TableWork {
    pub table_no: usize,
    /// How its chunks are extracted.
    pub prep: ChunkPrep,
    /// Whether the job created the target table: only then are the source's indexes and
    /// constraints built on it (an existing table is loaded as it is).
    pub build_indexes: bool,
    /// `--into-existing`, for a table that existed before the job: how its chunks merge into
    /// its rows (else they are loaded by plain COPY).
    pub merge: Option<target::Merge>,
}

/// The job's last step, once every table is done: the objects after the load, P1, and the job
/// recorded done (`state::finish_after`). The commands above the pipeline provide it.
pub type AfterLoad = fn(&RunContext, &StepFence) -> Result<()>;

/// This process's name among a job's workers, `host:pid:random` (the random part tells apart
/// two processes that got the same pid, on two machines named alike or after a restart), and
/// its host.
pub fn process_name() -> (String, String) {
    let host = host_name();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let seed = format!("{host}:{}:{nanos}:{:p}", std::process::id(), &nanos);
    let random = blake3::hash(seed.as_bytes()).to_hex();
    (format!("{host}:{}:{}", std::process::id(), &random[..8]), host)
}

fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let name = if ok {
        String::from_utf8_lossy(&buf[..buf.iter().position(|&b| b == 0).unwrap_or(0)]).into_owned()
    } else {
        String::new()
    };
    if name.is_empty() {
        "localhost".into()
    } else {
        name
    }
}

/// How long a thread with nothing to claim waits before it looks again.
const IDLE: Duration = Duration::from_millis(200);

/// How often a busy thread looks whether the job failed or was started over elsewhere.
const LOOK_EVERY: Duration = Duration::from_secs(2);

struct Shared<'a> {
    ctx: &'a RunContext,
    work: &'a [TableWork],
    /// Per table: whether this run has started copying it (its start time is recorded once).
    started: Vec<AtomicBool>,
    first_error: Mutex<Option<Error>>,
}

impl Shared<'_> {
    fn fail(&self, err: Error) {
        self.ctx.cancel.store(true, Ordering::SeqCst);
        let mut slot = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
        // Keep the first real error; errors caused by the cancellation itself are noise.
        if slot.is_none() || matches!(slot.as_ref(), Some(Error::Interrupted)) {
            *slot = Some(err);
        }
    }

    fn work(&self, table_no: usize) -> Option<&TableWork> {
        self.work.iter().find(|w| w.table_no == table_no)
    }
}

/// Works on the job, with every other process that does, until the job is done (its last
/// step recorded), it fails, or the run is cancelled. Every thread takes its work from the
/// state: the planner thread (on the caller's connections) claims tables' planning steps; each
/// worker thread claims chunks, then finished tables' finalize steps, then the job's last step.
pub fn run(ctx: &RunContext, work: &[TableWork], source: &mut Source, target: &mut PgTarget) -> Result<()> {
    let shared = Shared {
        ctx,
        work,
        started: ctx.tables.iter().map(|_| AtomicBool::new(false)).collect(),
        first_error: Mutex::new(None),
    };
    // The process's lock and its row among the workers come before its first claim: other
    // threads treat the leases of a holder without its lock as free.
    let mut beat = PgTarget::connect(&ctx.target)?;
    state::register_worker(&mut beat.conn, &ctx.job, &ctx.worker, &ctx.host, ctx.workers)?;
    let display_stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| progress::display(&ctx.progress, ctx.progress_mode, ctx.progress_interval, &display_stop));
        // The first check happens before any worker reads: a closed gate holds the copy from
        // its first row. Then once a second.
        let mut controller = Controller::new(ctx);
        controller.tick();
        let stop = &display_stop;
        s.spawn(move || {
            while !sleep_unless_cancelled(stop, Duration::from_secs(1)) {
                controller.tick();
            }
        });
        s.spawn(|| report_held(ctx, &display_stop));
        s.spawn(|| heartbeat(ctx, beat, &display_stop));
        let workers: Vec<_> = (0..ctx.workers)
            .map(|_| {
                let shared = &shared;
                s.spawn(move || {
                    if let Err(e) = work_loop(shared) {
                        shared.fail(e);
                    }
                })
            })
            .collect();
        if let Err(e) = planner(&shared, source, target) {
            shared.fail(e);
        }
        for w in workers {
            if w.join().is_err() {
                shared.fail(Error::Bug("a worker thread panicked".into()));
            }
        }
        display_stop.store(true, Ordering::SeqCst);
    });
    match shared.first_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
        Some(err) => Err(err),
        None if ctx.cancel.load(Ordering::SeqCst) => Err(Error::Interrupted),
        None => Ok(()),
    }
}

/// Renews, every third of a lease, the leases this process holds, and records its heartbeat
/// (rows copied, rows per second) on a connection of its own; a lost connection is made again
/// (with the process's lock) at the next beat.
fn heartbeat(ctx: &RunContext, first: PgTarget, stop: &AtomicBool) {
    let every = Duration::from_secs_f64(ctx.lease / 3.0);
    let mut conn = Some(first);
    let rows = || ctx.progress.tables.iter().map(|t| t.rows.load(Ordering::Relaxed)).sum::<u64>() as i64;
    let base = rows();
    let (mut last, mut last_at) = (base, std::time::Instant::now());
    let mut warned = false;
    let mut wait = every;
    while !sleep_unless_cancelled(stop, wait) {
        let now_rows = rows();
        let rate = (now_rows - last) as f64 / last_at.elapsed().as_secs_f64().max(0.001);
        (last, last_at) = (now_rows, std::time::Instant::now());
        let beat = (|| -> Result<()> {
            let c = match &mut conn {
                Some(c) => c,
                None => {
                    let mut c = PgTarget::connect(&ctx.target)?;
                    state::register_worker(&mut c.conn, &ctx.job, &ctx.worker, &ctx.host, ctx.workers)?;
                    conn.insert(c)
                }
            };
            state::heartbeat(&mut c.conn, &ctx.job, &ctx.worker, ctx.lease, now_rows - base, rate)?;
            let (rows, bytes) = state::done_by_others(&mut c.conn, &ctx.job, &ctx.worker)?;
            ctx.progress.set_others(rows, bytes);
            Ok(())
        })();
        match beat {
            Ok(()) => {
                warned = false;
                wait = every;
            }
            Err(e) => {
                conn = None;
                // A new session (and the process's lock) as soon as the target lets one in.
                wait = Duration::from_secs(1).min(every);
                if !warned {
                    crate::say!(
                        "warning: renewing this process's claims: {}; its chunks are taken over by others if this \
                         lasts longer than --lease",
                        redact(&e.to_string())
                    );
                    warned = true;
                }
            }
        }
    }
    // Leaving the job: what the others did until now, then this process is no longer listed.
    if let Some(c) = &mut conn {
        if let Ok((rows, bytes)) = state::done_by_others(&mut c.conn, &ctx.job, &ctx.worker) {
            ctx.progress.set_others(rows, bytes);
        }
        if let Err(e) = state::leave(&mut c.conn, &ctx.job, &ctx.worker) {
            crate::say!("warning: {}; status lists this process for a minute more", redact(&e.to_string()));
        }
    }
}

/// Claims the planning steps of tables whose planning is not complete, one at a time, and
/// plans each from where its recorded chunks end, until every table of the job is planned.
fn planner(shared: &Shared<'_>, source: &mut Source, target: &mut PgTarget) -> Result<()> {
    let ctx = shared.ctx;
    let mut conns = (source, target);
    'look: loop {
        if ctx.cancel.load(Ordering::SeqCst) {
            return Ok(());
        }
        let standing = retrying(
            ctx,
            || "reading where the job stands".to_string(),
            &mut conns,
            |(_, target)| state::job_standing(&mut target.conn, &ctx.job),
            |c| reconnect_planner(ctx, c),
        )?;
        let unplanned: Vec<usize> = standing
            .tables
            .iter()
            .filter(|t| !t.plan_complete && shared.work(t.table_no).is_some())
            .map(|t| t.table_no)
            .collect();
        if unplanned.is_empty() || standing.after_done || standing.status.as_ref().is_none_or(|(s, _)| s == "failed") {
            return Ok(());
        }
        for table_no in unplanned {
            let step = format!("plan:{table_no}");
            let claimed = retrying(
                ctx,
                || "claiming a table's planning".to_string(),
                &mut conns,
                |(_, target)| state::claim_step(&mut target.conn, &ctx.job, &ctx.run, &step, &ctx.worker, ctx.lease),
                |c| reconnect_planner(ctx, c),
            )?;
            if let Some(fence) = claimed {
                match plan_one(ctx, table_no, &fence, &mut conns) {
                    Err(Error::Fenced(what)) => {
                        crate::say!("warning: {}", Error::Fenced(what));
                    }
                    other => other?,
                }
                continue 'look;
            }
        }
        if sleep_unless_cancelled(&ctx.cancel, IDLE) {
            return Ok(());
        }
    }
}

/// Plans one table under its planning claim, from where its recorded chunks end (also after a
/// retry), and lets the claim go once the table is planned.
fn plan_one(
    ctx: &RunContext,
    table_no: usize,
    fence: &StepFence,
    conns: &mut (&mut Source, &mut PgTarget),
) -> Result<()> {
    let table = &ctx.tables[table_no];
    let _doing = crate::wait::doing(format!("planning {}", table.name));
    let complete = retrying(
        ctx,
        || format!("planning {}", table.name),
        conns,
        |(source, target)| {
            let Some(cursor) = state::plan_cursor(&mut target.conn, &ctx.job, table_no)? else {
                return Ok(true);
            };
            plan_table(source, table_no, table, ctx.chunk_rows, cursor, |chunk, last| {
                state::insert_chunk(&mut target.conn, &ctx.job, &chunk, last, Some(fence))?;
                ctx.progress.chunk_planned(table_no);
                // Planning stays a few chunks ahead of the copy, as the key walk always has:
                // chunks are sized by rows as the source has them when they are read.
                let ahead = 2 * ctx.workers as i64;
                while state::unclaimed_chunks(&mut target.conn, &ctx.job, ahead)? >= ahead {
                    if sleep_unless_cancelled(&ctx.cancel, Duration::from_millis(50)) {
                        return Ok(false);
                    }
                }
                Ok(!ctx.cancel.load(Ordering::SeqCst))
            })
        },
        |c| reconnect_planner(ctx, c),
    )
    .map_err(|e| source_changed(ctx, table, &e).unwrap_or(e))?;
    if complete {
        state::release_step(&mut conns.1.conn, fence)?;
    }
    Ok(())
}

/// Fresh connections for the planner after a transient failure. In the starting process the
/// target connection holds the job's lock: it is kept while it works, and the lock taken again
/// on a new one.
fn reconnect_planner(ctx: &RunContext, (source, target): &mut (&mut Source, &mut PgTarget)) -> Result<()> {
    **source = ctx.planner_source()?;
    if target.conn.batch("SELECT 1", "checking the target connection").is_ok() {
        return Ok(());
    }
    **target = PgTarget::connect(&ctx.target)?;
    if !ctx.holds_job_lock {
        return Ok(());
    }
    // The lost session's lock goes with its backend, which may take a moment.
    for _ in 0..40 {
        if state::try_lock_job(&mut target.conn, &ctx.job)? {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Err(Error::State("another rangecopy process took over this job while the target was away".into()))
}

/// A worker thread: claims a chunk and copies it; with no chunk free, claims a loaded table's
/// finalize step, or once every table is done, the job's last step; with nothing to claim,
/// waits a moment and looks again, until the job's last step is done.
fn work_loop(shared: &Shared<'_>) -> Result<()> {
    let ctx = shared.ctx;
    let mut worker = retrying(
        ctx,
        || "connecting a worker".to_string(),
        &mut (),
        |_| {
            Ok(Worker {
                source: ctx.worker_source()?,
                target: PgTarget::connect(&ctx.target)?,
                shared,
                staging: Vec::new(),
                merge_only: None,
                direct: None,
            })
        },
        |_| Ok(()),
    )?;
    let mut last_look = std::time::Instant::now();
    'look: loop {
        if ctx.cancel.load(Ordering::SeqCst) {
            return Ok(());
        }
        let claim = retrying(
            ctx,
            || "claiming a chunk".to_string(),
            &mut worker,
            |w| state::claim_chunk(&mut w.target.conn, &ctx.job, &ctx.run, &ctx.worker, ctx.lease),
            |w| w.reconnect(),
        )?;
        let busy = claim.is_some();
        if let Some(claim) = claim {
            worker.copy_claimed(claim)?;
            // A job failed or started over elsewhere stops this process too, within seconds.
            if last_look.elapsed() < LOOK_EVERY {
                continue;
            }
        }
        last_look = std::time::Instant::now();
        let standing = retrying(
            ctx,
            || "reading where the job stands".to_string(),
            &mut worker,
            |w| state::job_standing(&mut w.target.conn, &ctx.job),
            |w| w.reconnect(),
        )?;
        match &standing.status {
            None => {
                return Err(Error::State(format!(
                    "job {} is gone from the target (started over with --restart?) while this process worked on it",
                    ctx.job
                )))
            }
            _ if standing.started_at.as_deref() != Some(ctx.run.as_str()) => {
                return Err(Error::State(format!(
                    "job {} was started over (--restart) while this process worked on it; start this worker again \
                     to join the new run",
                    ctx.job
                )))
            }
            Some((status, error)) if status == "failed" => {
                return Err(Error::State(format!(
                    "job {} failed in another process: {}",
                    ctx.job,
                    error.as_deref().unwrap_or("(no error recorded)")
                )))
            }
            _ if standing.after_done => return Ok(()),
            _ if busy => continue,
            _ => {}
        }
        let loaded = standing
            .tables
            .iter()
            .filter(|t| t.plan_complete && !t.open && t.phase != "done" && shared.work(t.table_no).is_some());
        for t in loaded {
            let step = format!("finalize:{}", t.table_no);
            let claimed = retrying(
                ctx,
                || "claiming a table's index builds".to_string(),
                &mut worker,
                |w| state::claim_step(&mut w.target.conn, &ctx.job, &ctx.run, &step, &ctx.worker, ctx.lease),
                |w| w.reconnect(),
            )?;
            if let Some(fence) = claimed {
                worker.finalize(t.table_no, &fence)?;
                continue 'look;
            }
        }
        if standing.tables.iter().all(|t| t.phase == "done") {
            let claimed = retrying(
                ctx,
                || "claiming the job's last step".to_string(),
                &mut worker,
                |w| state::claim_step(&mut w.target.conn, &ctx.job, &ctx.run, "after", &ctx.worker, ctx.lease),
                |w| w.reconnect(),
            )?;
            if let Some(fence) = claimed {
                match (ctx.after)(ctx, &fence) {
                    Err(Error::Fenced(what)) => crate::say!("warning: {}", Error::Fenced(what)),
                    other => other?,
                }
                continue;
            }
        }
        if sleep_unless_cancelled(&ctx.cancel, IDLE) {
            return Ok(());
        }
    }
}

struct Worker<'a> {
    source: Source,
    target: PgTarget,
    shared: &'a Shared<'a>,
    /// The tables whose staging table this worker's target session has (`--into-existing`).
    staging: Vec<usize>,
    /// `--into-existing`: the chunk whose direct load met a row the application had just
    /// inserted into its range, now copied through the staging table and the merge.
    merge_only: Option<(usize, u32)>,
    /// `--into-existing`: the chunk last loaded straight into its table (its range was empty).
    direct: Option<(usize, u32)>,
}

impl Worker<'_> {
    /// Whether the chunk's last attempt loaded it straight into its table (`--into-existing`).
    fn loaded_directly(&self, chunk: &Chunk) -> bool {
        self.direct == Some((chunk.table_no, chunk.chunk_no))
    }

    fn reconnect(&mut self) -> Result<()> {
        let ctx = self.shared.ctx;
        self.source = ctx.worker_source()?;
        self.target = PgTarget::connect(&ctx.target)?;
        self.staging.clear();
        Ok(())
    }

    /// Copies a claimed chunk. A chunk lost to another process (its commit refused by the
    /// fence) is not an error: its rows were rolled back, and the thread goes on. Any other
    /// failure ends the claim (so that another process need not wait out the lease).
    fn copy_claimed(&mut self, claim: Claim) -> Result<()> {
        let ctx = self.shared.ctx;
        let Some(_) = self.shared.work(claim.chunk.table_no) else {
            let _ = state::end_claim(&mut self.target.conn, &ctx.job, &claim, "released");
            return Err(Error::State(format!(
                "job {}: a chunk of table {} was claimed, which this process found done when it started; start it again",
                ctx.job, claim.chunk.table_no
            )));
        };
        match self.copy_chunk_retrying(&claim) {
            Ok(()) => Ok(()),
            Err(e) if matches!(e.root(), Error::Fenced(_)) => {
                crate::say!("warning: {}", redact(&e.to_string()));
                crate::live::warning("fenced", &e.to_string());
                let _ = state::end_claim(&mut self.target.conn, &ctx.job, &claim, "fenced");
                Ok(())
            }
            Err(e) => {
                let outcome = if matches!(e.root(), Error::Interrupted) { "released" } else { "failed" };
                let _ = state::end_claim(&mut self.target.conn, &ctx.job, &claim, outcome);
                Err(e)
            }
        }
    }

    /// Copies a chunk, retrying it from its start on fresh connections after a transient
    /// failure while the claim still holds it. A chunk whose commit went through but whose
    /// answer was lost is found done in the state and not copied again.
    fn copy_chunk_retrying(&mut self, claim: &Claim) -> Result<()> {
        let ctx = self.shared.ctx;
        let chunk = &claim.chunk;
        let mut first = true;
        retrying(
            ctx,
            // The error itself names the table, chunk and range.
            String::new,
            self,
            |w| {
                if !std::mem::take(&mut first) {
                    match state::claim_state(&mut w.target.conn, &ctx.job, claim)? {
                        state::ClaimState::Done => {
                            ctx.progress.chunk_done(chunk.table_no);
                            return Ok(());
                        }
                        state::ClaimState::Lost => {
                            return Err(Error::Fenced(format!(
                                "chunk {} of {} (key range {})",
                                chunk.chunk_no,
                                ctx.tables[chunk.table_no].name,
                                chunk.range_text()
                            )))
                        }
                        state::ClaimState::Held => {}
                    }
                }
                match w.copy_chunk(claim) {
                    // Loaded straight into a range that was empty a moment before: the
                    // application wrote a row there meanwhile. Merged instead, once.
                    Err(e) if e.is_unique_violation() && w.merge_only.is_none() && w.loaded_directly(chunk) => {
                        w.merge_only = Some((chunk.table_no, chunk.chunk_no));
                        let merged = w.copy_chunk(claim);
                        w.merge_only = None;
                        merged
                    }
                    other => other,
                }
            },
            |w| w.reconnect(),
        )
    }

    fn copy_chunk(&mut self, claim: &Claim) -> Result<()> {
        let ctx = self.shared.ctx;
        let chunk = &claim.chunk;
        let table = &ctx.tables[chunk.table_no];
        let _doing = crate::wait::doing(format!("chunk {} of {}", chunk.chunk_no, table.name));
        let mut added = (0i64, 0i64);
        let started = std::time::Instant::now();
        let result = self.copy_chunk_inner(table, claim, &mut added);
        match result {
            Ok(()) => {
                ctx.progress.chunk_done(chunk.table_no);
                crate::live::chunk_done(&table.name.to_string(), chunk.chunk_no, added.0, added.1, started.elapsed());
                Ok(())
            }
            Err(e) => {
                ctx.progress.add(chunk.table_no, -added.0, -added.1);
                if matches!(e, Error::Interrupted) {
                    return Err(e);
                }
                if let Error::Fenced(_) = e {
                    return Err(Error::Fenced(format!(
                        "chunk {} of {} (key range {})",
                        chunk.chunk_no,
                        table.name,
                        chunk.range_text()
                    )));
                }
                if let Some(changed) = source_changed(ctx, table, &e) {
                    return Err(changed);
                }
                Err(Error::Chunk {
                    table: table.name.to_string(),
                    chunk: chunk.chunk_no,
                    range: chunk.range_text(),
                    source: Box::new(e),
                })
            }
        }
    }

    fn copy_chunk_inner(&mut self, table: &Table, claim: &Claim, added: &mut (i64, i64)) -> Result<()> {
        let ctx = self.shared.ctx;
        let chunk = &claim.chunk;
        // Outside the chunk's transaction, so that workers never queue on the table's row
        // (two workers may both record it: the first time stays).
        if !self.shared.started[chunk.table_no].load(Ordering::Acquire) {
            state::table_started(&mut self.target.conn, &ctx.job, chunk.table_no)?;
            self.shared.started[chunk.table_no].store(true, Ordering::Release);
            crate::live::table_phase(chunk.table_no, "copying");
        }
        let work =
            self.shared.work(chunk.table_no).ok_or_else(|| Error::Bug("a chunk of a table without work".into()))?;
        let merge = work.merge.as_ref();
        if let Some(m) = merge.filter(|_| !self.staging.contains(&chunk.table_no)) {
            let what = format!("creating the staging table of {}", table.target);
            if self.staging.is_empty() {
                self.target.conn.batch(target::STAGING_SESSION, &what)?;
            }
            self.target.conn.batch(&m.create_staging, &what)?;
            self.staging.push(chunk.table_no);
        }
        let merge_only = self.merge_only == Some((chunk.table_no, chunk.chunk_no));
        let Worker { source, target, direct, .. } = self;
        let merged = target.conn.transaction("copying a chunk", |conn| {
            // `--into-existing`: staged and merged, unless the chunk's range holds no row yet.
            let merge = match merge {
                Some(m) if merge_only || !m.loads_directly(conn, table, chunk)? => Some(m),
                _ => None,
            };
            *direct = (work.merge.is_some() && merge.is_none()).then_some((chunk.table_no, chunk.chunk_no));
            let in_sql = merge.map_or_else(|| copy_in_sql(table), |m| m.copy_in.clone());
            let mut writer = conn.copy_in(&in_sql)?;
            let summary = std::thread::scope(|s| -> Result<_> {
                let (block_tx, block_rx) = bounded::<(Block, Permit<'_>)>(QUEUE_BLOCKS);
                let extractor = s.spawn(move || {
                    let _doing = crate::wait::doing(format!("chunk {} of {}", chunk.chunk_no, table.name));
                    let bytes_per_row = table.estimated_bytes as f64 / table.estimated_rows.max(1) as f64;
                    let block_bytes = ctx.throttle.block_bytes(BLOCK_BYTES, bytes_per_row);
                    source.extract_chunk(table, chunk, &work.prep, block_bytes, |block| {
                        // Each block waits for its slot in the shared budget (or while paused),
                        // and for room among the bytes in flight.
                        ctx.throttle.acquire(block.rows, block.bytes.len() as u64, &ctx.cancel)?;
                        let permit = ctx.in_flight.acquire(block.bytes.len() as u64, &ctx.cancel)?;
                        // A closed channel means the loader stopped; it reports why.
                        Ok(block_tx.send((block, permit)).is_ok())
                    })
                });
                for (Block { bytes: data, rows, hold }, permit) in block_rx.iter() {
                    let bytes = data.len() as i64;
                    writer.write(data)?;
                    // Written: its bytes in flight, and a huge row's share of the source's
                    // budget for rows read whole, are free again.
                    drop((hold, permit));
                    // Rows count as they stream, like bytes (a failed chunk takes both back).
                    ctx.progress.add(chunk.table_no, rows as i64, bytes);
                    *added = (added.0 + rows as i64, added.1 + bytes);
                }
                extractor.join().unwrap_or_else(|_| Err(Error::Bug("the extractor thread panicked".into())))
            })?;
            let loaded = writer.finish()?;
            if loaded != summary.rows {
                return Err(Error::RowCount { sent: summary.rows, loaded });
            }
            // The chunk's own count is the truth; blocks may have counted rows a little apart.
            ctx.progress.add(chunk.table_no, summary.rows as i64 - added.0, 0);
            added.0 = summary.rows as i64;
            let merged = match merge {
                Some(m) => Some(m.run(conn, &table.target, summary.rows as i64)?),
                // Loaded straight into an empty range: every row is new.
                None if work.merge.is_some() => Some(Merged { inserted: summary.rows as i64, ..Merged::default() }),
                None => None,
            };
            state::mark_chunk_done(conn, &ctx.job, claim, &summary)?;
            if let Some(merged) = &merged {
                state::record_merged(conn, &ctx.job, chunk, merged)?;
            }
            Ok(merged)
        })?;
        if let Some(merged) = &merged {
            crate::live::chunk_merged(chunk.table_no, merged);
        }
        Ok(())
    }

    /// Builds a loaded table's deferred indexes and carries its sequences over, under the
    /// table's finalize claim; a claim lost meanwhile rolls back the statement in flight.
    fn finalize(&mut self, table_no: usize, fence: &StepFence) -> Result<()> {
        let ctx = self.shared.ctx;
        let table = &ctx.tables[table_no];
        let _doing = crate::wait::doing(format!("finishing {}", table.target));
        let result = retrying(
            ctx,
            || format!("building the indexes of {}", table.target),
            self,
            |w| w.finalize_once(table_no, fence),
            |w| w.reconnect(),
        );
        match result {
            Ok(()) => state::release_step(&mut self.target.conn, fence),
            Err(Error::Fenced(what)) => {
                crate::say!("warning: {}", Error::Fenced(what));
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// One attempt at a table's index builds, from the first one the state says is not built.
    fn finalize_once(&mut self, table_no: usize, fence: &StepFence) -> Result<()> {
        let ctx = self.shared.ctx;
        let table = &ctx.tables[table_no];
        let job = ctx.job.as_str();
        state::set_table_phase(&mut self.target.conn, job, table_no, "indexing")?;
        crate::live::table_phase(table_no, "indexing");
        let work = self.shared.work(table_no);
        let build = work.is_some_and(|w| w.build_indexes);
        let merged = work.is_some_and(|w| w.merge.is_some());
        if build {
            let built = state::deferred_done(&mut self.target.conn, job, table_no)?;
            self.target.build_deferred(table, built, |conn, done| {
                state::set_deferred_done(conn, job, table_no, done)?;
                fence.check(conn)
            })?;
            target::release_autovacuum(&mut self.target.conn, &table.target)?;
        }
        if crate::wait::interrupted() {
            return Err(Error::Interrupted);
        }
        self.target.analyze(&table.target)?;
        for seq in &table.ddl.sequences {
            let (value, called) = self.source.sequence_position(seq)?;
            if merged {
                // The application draws from it too: it may be ahead of the source's.
                target::advance_sequence(&mut self.target.conn, &seq.target_sql, value, called)?;
            } else {
                self.target.set_sequence(&seq.target_sql, value, called)?;
            }
        }
        state::finish_table(&mut self.target.conn, job, table_no, Some(fence))?;
        ctx.progress.table_done(table_no);
        crate::live::table_phase(table_no, "done");
        Ok(())
    }
}

/// A source table or column the job reads that no longer exists: the source's schema changed
/// under the job, which no retry or resume gets past.
fn source_changed(ctx: &RunContext, table: &Table, e: &Error) -> Option<Error> {
    match e.root() {
        Error::Sql { endpoint, code, detail, .. } if endpoint == ctx.source.display() && code.is_missing_object() => {
            Some(Error::SourceChanged { table: table.name.to_string(), detail: detail.clone() })
        }
        _ => None,
    }
}

/// Runs `f` over `items` on `workers` threads, each with its own state from `init` (its
/// connections), stopping early once `cancel` is set. Results come back in completion order;
/// an `init` failure is the result of every item that worker would have taken.
pub fn parallel_map<T: Send, W, R: Send>(
    workers: usize,
    items: Vec<T>,
    cancel: &AtomicBool,
    init: impl Fn() -> Result<W> + Sync,
    f: impl Fn(&mut W, T) -> R + Sync,
) -> Result<Vec<R>> {
    let (item_tx, item_rx) = unbounded::<T>();
    for item in items {
        item_tx.send(item).expect("the receiver is alive");
    }
    drop(item_tx);
    let (result_tx, result_rx) = unbounded::<R>();
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..workers.max(1) {
            let (items, results, init, f, first_error) = (item_rx.clone(), result_tx.clone(), &init, &f, &first_error);
            s.spawn(move || {
                let mut state = match init() {
                    Ok(state) => state,
                    Err(e) => {
                        cancel.store(true, Ordering::SeqCst);
                        first_error.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(e);
                        return;
                    }
                };
                for item in items.iter() {
                    if cancel.load(Ordering::SeqCst) {
                        return;
                    }
                    let _ = results.send(f(&mut state, item));
                }
            });
        }
    });
    drop(result_tx);
    if let Some(e) = first_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(e);
    }
    if cancel.load(Ordering::SeqCst) {
        return Err(Error::Interrupted);
    }
    Ok(result_rx.iter().collect())
}

/// Runs `a` on a second thread while `b` runs on this one, and returns both results.
pub fn join<A: Send, B>(a: impl FnOnce() -> A + Send, b: impl FnOnce() -> B) -> (A, B) {
    std::thread::scope(|s| {
        let handle = s.spawn(a);
        let b = b();
        (handle.join().unwrap_or_else(|p| std::panic::resume_unwind(p)), b)
    })
}

/// Runs `op`; after a transient failure (see `Error::is_retriable`) waits with exponential
/// backoff, calls `reconnect`, and runs `op` again, until it succeeds, fails for good, the
/// policy's retries run out, or the run is cancelled. A connection that fails during a run
/// counts as transient too (a server restarting, too many connections): the run's first
/// connections, made before anything else, have already proven the address and password.
fn retrying<C, T>(
    ctx: &RunContext,
    what: impl Fn() -> String,
    conns: &mut C,
    mut op: impl FnMut(&mut C) -> Result<T>,
    mut reconnect: impl FnMut(&mut C) -> Result<()>,
) -> Result<T> {
    let transient = |e: &Error| e.is_retriable() || matches!(e.root(), Error::Connect { .. });
    let mut attempt = 0;
    let mut error = match op(conns) {
        Ok(value) => return Ok(value),
        Err(e) if transient(&e) => e,
        Err(e) => return Err(e),
    };
    loop {
        attempt += 1;
        if attempt > ctx.retry.retries || ctx.cancel.load(Ordering::SeqCst) {
            return Err(error);
        }
        let wait = ctx.retry.wait(attempt);
        let what = what();
        crate::say!(
            "warning: {what}{}{}; retry {attempt} of {} in {:.1}s",
            if what.is_empty() { "" } else { ": " },
            redact(&error.to_string()),
            ctx.retry.retries,
            wait.as_secs_f64()
        );
        crate::live::retry(&what, &error, attempt);
        if sleep_unless_cancelled(&ctx.cancel, wait) {
            return Err(Error::Interrupted);
        }
        let result = reconnect(conns).and_then(|()| op(conns));
        error = match result {
            Ok(value) => return Ok(value),
            Err(e) if transient(&e) => e,
            Err(e) => return Err(e),
        };
    }
}

/// This process's part of a job-wide `limit` (0: none): its `threads` among those of all
/// live processes, never 0 (which would lift the limit).
fn job_share(limit: u64, threads: u64, other_threads: u64) -> u64 {
    if limit == 0 {
        return 0;
    }
    let all = (threads + other_threads).max(1);
    ((limit as u128 * threads.max(1) as u128 / all as u128) as u64).max(1)
}

/// Sleeps for `d` unless `cancel` is set meanwhile; returns whether it was.
fn sleep_unless_cancelled(cancel: &AtomicBool, d: Duration) -> bool {
    let until = std::time::Instant::now() + d;
    loop {
        let now = std::time::Instant::now();
        if cancel.load(Ordering::SeqCst) {
            return true;
        }
        if now >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50).min(until - now));
    }
}

/// Reports, once a second, the calls whose server has been silent for a while: a warning line
/// the first time each one crosses the threshold (half the `--io-timeout`, at most 30 s), and the
/// longest one in the progress display, until the run ends.
fn report_held(ctx: &RunContext, stop: &AtomicBool) {
    let after = (ctx.target.io_timeout / 2).min(Duration::from_secs(30));
    let role = |endpoint: &str| {
        if endpoint == ctx.target.display {
            "the target"
        } else if endpoint == ctx.source.display() {
            "the source"
        } else {
            "a lag replica"
        }
    };
    while !sleep_unless_cancelled(stop, Duration::from_secs(1)) {
        let held = crate::wait::held(after);
        for h in held.iter().filter(|h| h.first) {
            crate::say!(
                "warning: waiting for {} for {:.0}s ({}); it is given up after --io-timeout",
                h.endpoint,
                h.waited.as_secs_f64(),
                redact(&h.what)
            );
        }
        ctx.progress.set_waiting(
            held.first()
                .map(|h| format!("waiting {:.0}s for {} ({})", h.waited.as_secs_f64(), role(&h.endpoint), h.what)),
        );
    }
    ctx.progress.set_waiting(None);
}

/// What changes the throttle while a run goes on: the job's limits and pause in the state
/// (where `rangecopy throttle` writes them), the lag of replicas against `--max-lag`, and the
/// `--throttle-query`. Its connections are its own; a failing check is retried on the next tick.
struct Controller<'a> {
    ctx: &'a RunContext,
    state: Option<PgTarget>,
    source: Option<Source>,
    replicas: Vec<Option<Source>>,
    warned: bool,
    /// Whether this process has written a hold for the job's other processes that it must lift.
    holding: bool,
}

impl<'a> Controller<'a> {
    fn new(ctx: &'a RunContext) -> Self {
        let replicas = ctx.throttle_config.lag_replicas.iter().map(|_| None).collect();
        Controller { ctx, state: None, source: None, replicas, warned: false, holding: false }
    }

    /// Checks everything once and applies the outcome to the throttle and the progress display.
    fn tick(&mut self) {
        match self.check() {
            Ok(pause) => {
                self.warned = false;
                self.ctx.throttle.set_pause(pause);
            }
            Err(e) => {
                // Keep the last decision; start over with fresh connections next tick.
                if !self.warned {
                    crate::live::warning("throttle_check", &format!("checking the throttle: {e}"));
                    crate::say!("warning: checking the throttle: {}", redact(&e.to_string()));
                    self.warned = true;
                }
                self.state = None;
                self.source = None;
                self.replicas.iter_mut().for_each(|r| *r = None);
            }
        }
        self.ctx.progress.set_hold(self.ctx.throttle.holding(), self.ctx.throttle.pause() != PauseReason::None);
    }

    fn check(&mut self) -> Result<PauseReason> {
        let ctx = self.ctx;
        let cfg = &ctx.throttle_config;
        let conn = match &mut self.state {
            Some(c) => c,
            None => self.state.insert(PgTarget::connect(&ctx.target)?),
        };
        let job = state::read_throttle(&mut conn.conn, &ctx.job)?;
        if let Some(job) = &job {
            // The limits are the job's, over all its processes: each takes the share of its
            // threads among the threads of every live process.
            let others = state::other_threads(&mut conn.conn, &ctx.job, &ctx.worker, ctx.lease)?;
            let share = |limit: u64| job_share(limit, ctx.workers as u64, others);
            ctx.throttle.set_rates(share(job.rows_per_sec), share(job.bytes_per_sec));
        }
        let job = job.unwrap_or_default();
        // The processes that watch --max-lag or --throttle-query (the starting `copy`, workers
        // given them) hold the whole job: a hold is renewed while it lasts and lifted once.
        let watches = cfg.max_lag.is_some() || cfg.query.is_some();
        let own = if watches { self.watch_source()? } else { PauseReason::None };
        let lifted = self.holding && own == PauseReason::None;
        if own != PauseReason::None || self.holding {
            let conn = self.state.as_mut().expect("connected above");
            state::write_hold(&mut conn.conn, &ctx.job, own)?;
            self.holding = own != PauseReason::None;
        }
        Ok(if job.paused {
            PauseReason::Operator
        } else if own != PauseReason::None {
            own
        } else if lifted {
            // The hold read above was this process's own, lifted just now.
            PauseReason::None
        } else {
            job.held
        })
    }

    /// Checks --max-lag and --throttle-query: the pause they call for, if any.
    fn watch_source(&mut self) -> Result<PauseReason> {
        let ctx = self.ctx;
        let cfg = &ctx.throttle_config;
        let mut pause = PauseReason::None;
        if let Some(max) = cfg.max_lag {
            let mut lag = 0f64;
            if cfg.lag_replicas.is_empty() {
                let source = match &mut self.source {
                    Some(s) => s,
                    None => self.source.insert(Source::connect(&ctx.source)?),
                };
                lag = source.replication_lag()?;
            }
            for (slot, ep) in self.replicas.iter_mut().zip(&cfg.lag_replicas) {
                let replica = match slot {
                    Some(r) => r,
                    None => slot.insert(Source::connect(ep)?),
                };
                lag = lag.max(replica.replication_lag()?);
            }
            crate::live::lag_seen(lag);
            if lag > max.as_secs_f64() {
                pause = PauseReason::Lag;
            }
        }
        if let Some((sql, above)) = &cfg.query {
            let source = match &mut self.source {
                Some(s) => s,
                None => self.source.insert(Source::connect(&ctx.source)?),
            };
            if pause == PauseReason::None && source.query_number(sql)? > *above {
                pause = PauseReason::Query;
            }
        }
        Ok(pause)
    }
}

#[cfg(test)]
mod tests {
    use super::job_share;

    #[test]
    fn a_job_wide_limit_is_shared_by_threads_and_never_lifted() {
        assert_eq!(job_share(20_000, 2, 0), 20_000);
        assert_eq!(job_share(20_000, 1, 3), 5_000);
        assert_eq!(job_share(20_000, 2, 2), 10_000);
        assert_eq!(job_share(0, 1, 3), 0);
        assert_eq!(job_share(3, 1, 9), 1);
    }
}
