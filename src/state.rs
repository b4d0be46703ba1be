//! Jobs, tables and chunks, kept in the `rangecopy` schema of the target database.
//!
//! The state is what makes a copy exactly-once: a chunk row is written (pending) before the
//! chunk is copied, and marked done in the same transaction that commits the chunk's rows.
//! Resume and `status` read only these tables. This module must never hold a password: the
//! endpoints it stores are the redacted display forms.

use serde::Serialize;

use crate::copy_format::ChunkSummary;
use crate::error::{Error, Result};
use crate::objects::{DbObject, Phase};
use crate::pg::PgConn;
use crate::plan::{bound_text, Bound, Chunk, PlanCursor};
use crate::schema::Table;
use crate::source::SourcePosition;
pub use crate::target::postgres::Merged;
use crate::throttle::PauseReason;

/// Created on first use, in one transaction with the job's first rows.
const SCHEMA_DDL: &str = "
CREATE SCHEMA IF NOT EXISTS rangecopy;
CREATE TABLE IF NOT EXISTS rangecopy.jobs (
    job          text PRIMARY KEY,
    status       text NOT NULL,          -- running | failed | interrupted | done
    source       text NOT NULL,          -- redacted URL
    settings     jsonb NOT NULL,
    runs         int NOT NULL DEFAULT 1,
    started_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    last_error   text
);
CREATE TABLE IF NOT EXISTS rangecopy.tables (
    job            text NOT NULL REFERENCES rangecopy.jobs ON DELETE CASCADE,
    table_no       int NOT NULL,
    source_table   text NOT NULL,
    target_schema  text NOT NULL,
    target_name    text NOT NULL,
    key            text,                 -- description of the key chunks are ranges of
    created_by_job boolean NOT NULL,
    definition     jsonb NOT NULL,       -- the introspected table the job copies
    plan_complete  boolean NOT NULL DEFAULT false,
    phase          text NOT NULL DEFAULT 'copying',  -- copying | indexing | done
    deferred_done  int NOT NULL DEFAULT 0,
    estimated_rows bigint NOT NULL DEFAULT 0,
    started_at     timestamptz,
    finished_at    timestamptz,
    PRIMARY KEY (job, table_no)
);
CREATE TABLE IF NOT EXISTS rangecopy.chunks (
    job          text NOT NULL,
    table_no     int NOT NULL,
    chunk_no     int NOT NULL,
    lo           text[],
    hi           text[],
    status       text NOT NULL DEFAULT 'pending',  -- pending | done
    rows         bigint,
    bytes        bigint,
    digest       text,
    attempts     int NOT NULL DEFAULT 0,
    started_at   timestamptz,
    finished_at  timestamptz,
    PRIMARY KEY (job, table_no, chunk_no),
    FOREIGN KEY (job, table_no) REFERENCES rangecopy.tables ON DELETE CASCADE
);
-- Runtime control of a running job (rangecopy throttle); 0 means no limit.
-- Per column, values copied as NULL by policy (MySQL zero dates), counted with their chunk.
ALTER TABLE rangecopy.chunks ADD COLUMN IF NOT EXISTS nulled jsonb;
ALTER TABLE rangecopy.jobs ADD COLUMN IF NOT EXISTS max_rows_per_sec bigint NOT NULL DEFAULT 0;
ALTER TABLE rangecopy.jobs ADD COLUMN IF NOT EXISTS max_bytes_per_sec bigint NOT NULL DEFAULT 0;
ALTER TABLE rangecopy.jobs ADD COLUMN IF NOT EXISTS paused boolean NOT NULL DEFAULT false;
-- The hand-over to CDC: source positions before the first chunk (P0, kept by resumed runs)
-- and after the last (P1), and whether every chunk was read in one snapshot.
ALTER TABLE rangecopy.jobs ADD COLUMN IF NOT EXISTS p0 jsonb;
ALTER TABLE rangecopy.jobs ADD COLUMN IF NOT EXISTS p1 jsonb;
ALTER TABLE rangecopy.jobs ADD COLUMN IF NOT EXISTS consistent boolean NOT NULL DEFAULT false;
-- A table's phases: copying from started_at (its first chunk started), indexing from
-- indexing_at, done at finished_at.
ALTER TABLE rangecopy.tables ADD COLUMN IF NOT EXISTS indexing_at timestamptz;
-- --into-existing: per chunk, the rows its merge inserted, left as the target had them
-- (skipped) and overwrote (updated); NULL for chunks loaded by plain COPY.
ALTER TABLE rangecopy.chunks ADD COLUMN IF NOT EXISTS inserted bigint;
ALTER TABLE rangecopy.chunks ADD COLUMN IF NOT EXISTS skipped bigint;
ALTER TABLE rangecopy.chunks ADD COLUMN IF NOT EXISTS updated bigint;
-- Many processes share a job (`rangecopy worker`). A chunk's current holder, its fencing token
-- (raised at every claim: only the holder of the current token may mark the chunk done) and
-- how long the holder's claim lasts unless renewed.
ALTER TABLE rangecopy.chunks ADD COLUMN IF NOT EXISTS owner text;
ALTER TABLE rangecopy.chunks ADD COLUMN IF NOT EXISTS fence bigint NOT NULL DEFAULT 0;
ALTER TABLE rangecopy.chunks ADD COLUMN IF NOT EXISTS lease_until timestamptz;
-- Whether the starting process has set the job up (P0 recorded): workers join only then.
ALTER TABLE rangecopy.jobs ADD COLUMN IF NOT EXISTS open_to_workers boolean NOT NULL DEFAULT false;
-- A pause that the process watching --max-lag or --throttle-query decided, for every process of
-- the job: 'lag' or 'query' while held_until is ahead (renewed each second while it holds, so a
-- hold outlives its process by ten seconds at most).
ALTER TABLE rangecopy.jobs ADD COLUMN IF NOT EXISTS held text;
ALTER TABLE rangecopy.jobs ADD COLUMN IF NOT EXISTS held_until timestamptz;
-- Every claim of a chunk: running | done | fenced (its commit was refused: another process
-- held the chunk by then) | failed | released (given up, or taken over once its lease ran out).
-- coord_ms: the claim statement plus the fence check at commit, as the claiming process timed them.
CREATE TABLE IF NOT EXISTS rangecopy.claims (
    job          text NOT NULL REFERENCES rangecopy.jobs ON DELETE CASCADE,
    table_no     int NOT NULL,
    chunk_no     int NOT NULL,
    fence        bigint NOT NULL,
    worker       text NOT NULL,
    claimed_at   timestamptz NOT NULL DEFAULT now(),
    ended_at     timestamptz,
    outcome      text NOT NULL DEFAULT 'running',
    coord_ms     float8,
    PRIMARY KEY (job, table_no, chunk_no, fence)
);
-- The steps done once per table or job, claimed like chunks: 'plan:<table_no>' (the key walk),
-- 'finalize:<table_no>' (indexes, ANALYZE, sequences) and 'after' (the objects after the load,
-- P1, the job done).
CREATE TABLE IF NOT EXISTS rangecopy.steps (
    job          text NOT NULL REFERENCES rangecopy.jobs ON DELETE CASCADE,
    step         text NOT NULL,
    owner        text,
    fence        bigint NOT NULL DEFAULT 0,
    lease_until  timestamptz,
    done         boolean NOT NULL DEFAULT false,
    PRIMARY KEY (job, step)
);
-- The processes working on a job (host:pid:random), as their heartbeats last said.
CREATE TABLE IF NOT EXISTS rangecopy.workers (
    job          text NOT NULL REFERENCES rangecopy.jobs ON DELETE CASCADE,
    worker       text NOT NULL,
    host         text NOT NULL,
    pid          int NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    threads      int NOT NULL,
    chunks_held  int NOT NULL DEFAULT 0,
    rows_done    bigint NOT NULL DEFAULT 0,
    rows_per_sec float8 NOT NULL DEFAULT 0,
    PRIMARY KEY (job, worker)
);
-- Claims look for the first pending chunk of a job.
CREATE INDEX IF NOT EXISTS chunks_pending ON rangecopy.chunks (job, table_no, chunk_no) WHERE status = 'pending';
-- The objects around the rows, in the order they are created (before the load, or after it).
CREATE TABLE IF NOT EXISTS rangecopy.objects (
    job          text NOT NULL REFERENCES rangecopy.jobs ON DELETE CASCADE,
    object_no    int NOT NULL,
    phase        text NOT NULL,          -- before | after
    kind         text NOT NULL,
    name         text NOT NULL,
    status       text NOT NULL,          -- pending | created (not yet validated) | done | failed | listed
    detail       text,                   -- why it failed, or how it differs
    definition   jsonb NOT NULL,         -- the object: its SQL, validation and outcome
    finished_at  timestamptz,
    PRIMARY KEY (job, object_no)
);
-- verify --watch: one row per pass of a watch (named by --job, or after what it compares).
-- consistency is the percentage of compared rows not divergent; tables holds, per table,
-- rows compared, divergent, in flight and left out (--since-column).
CREATE TABLE IF NOT EXISTS rangecopy.verify_passes (
    watch          text NOT NULL,
    pass           int NOT NULL,
    started_at     timestamptz NOT NULL,
    finished_at    timestamptz NOT NULL,
    verdict        text NOT NULL,
    rows_compared  bigint NOT NULL,
    rows_divergent bigint NOT NULL,
    rows_in_flight bigint NOT NULL,
    consistency    numeric NOT NULL,
    tables         jsonb NOT NULL,
    PRIMARY KEY (watch, pass)
);
";

/// A job as recorded in the target.
#[derive(Debug, Clone, Serialize)]
pub struct JobRecord {
    pub job: String,
    pub status: String,
    pub source: String,
    pub settings: serde_json::Value,
    pub runs: i32,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub last_error: Option<String>,
    pub p0: Option<SourcePosition>,
    pub p1: Option<SourcePosition>,
    /// Whether every chunk was read in one snapshot whose position is P0 (`--consistent`,
    /// in one run).
    pub consistent: bool,
}

/// A table of a job, as recorded in the target.
#[derive(Debug, Clone)]
pub struct TableRecord {
    pub table_no: usize,
    pub table: Table,
    pub created_by_job: bool,
    pub plan_complete: bool,
    pub phase: String,
}

/// Per-table totals for status and reports.
#[derive(Debug, Clone, Serialize)]
pub struct TableProgress {
    pub table_no: usize,
    pub source_table: String,
    pub target_table: String,
    pub key: Option<String>,
    pub phase: String,
    pub plan_complete: bool,
    pub chunks_total: i64,
    pub chunks_done: i64,
    pub rows: i64,
    pub bytes: i64,
    pub estimated_rows: i64,
    pub digests: Vec<String>,
    /// From the table's first chunk to its end (or now): copying and indexing.
    pub seconds: Option<f64>,
    /// The copying phase alone: from the first chunk to the start of the index builds.
    pub copy_seconds: Option<f64>,
    /// The index builds, ANALYZE and sequences, once started.
    pub index_seconds: Option<f64>,
    /// Per column, values copied as NULL by policy (MySQL zero dates), over the done chunks.
    pub nulled: Vec<(String, i64)>,
    /// `--into-existing`: what the merges of its done chunks did (none for a table loaded by
    /// plain COPY).
    pub merged: Option<Merged>,
}

pub fn schema_exists(conn: &mut PgConn) -> Result<bool> {
    let row = conn.query_one(
        "SELECT to_regclass('rangecopy.chunks') IS NOT NULL",
        &[],
        "looking for the rangecopy state schema",
    )?;
    Ok(row.get(0))
}

/// Creates the state schema if it is missing (inside the caller's transaction). Two jobs set
/// up at once would both find it missing and race on the catalog's unique names: the
/// transaction-scoped lock makes the second wait for the first one's commit, then find it.
/// A state that is already up to date is left alone: its `ALTER TABLE … ADD COLUMN IF NOT
/// EXISTS` would take an exclusive lock on tables that running jobs are writing to, and
/// deadlock with them.
pub fn ensure_schema(conn: &mut PgConn) -> Result<()> {
    let what = "creating the rangecopy state schema";
    conn.batch("SELECT pg_advisory_xact_lock(hashtext('rangecopy state schema'))", what)?;
    if schema_up_to_date(conn)? {
        return Ok(());
    }
    conn.batch(SCHEMA_DDL, what)
}

/// The (table, column) pairs `SCHEMA_DDL` adds to older states.
fn added_columns() -> (Vec<String>, Vec<String>) {
    let added = SCHEMA_DDL.lines().filter_map(|l| l.trim().strip_prefix("ALTER TABLE rangecopy.")).filter_map(|l| {
        let (table, rest) = l.split_once(' ')?;
        let column = rest.strip_prefix("ADD COLUMN IF NOT EXISTS ")?.split_whitespace().next()?;
        Some((table.to_string(), column.to_string()))
    });
    // A table added later shows as its missing first column.
    let lines: Vec<&str> = SCHEMA_DDL.lines().collect();
    let tables = lines.iter().enumerate().filter_map(|(i, l)| {
        let table = l.trim().strip_prefix("CREATE TABLE IF NOT EXISTS rangecopy.")?.split_whitespace().next()?;
        let first = lines.get(i + 1)?.split_whitespace().next()?;
        Some((table.to_string(), first.to_string()))
    });
    added.chain(tables).unzip()
}

/// Whether every table and column `SCHEMA_DDL` creates is there.
fn schema_up_to_date(conn: &mut PgConn) -> Result<bool> {
    let (tables, columns) = added_columns();
    let row = conn.query_one(
        "SELECT to_regclass('rangecopy.chunks') IS NOT NULL AND NOT EXISTS (
                SELECT 1 FROM unnest($1::text[], $2::text[]) e(t, c)
                 WHERE NOT EXISTS (SELECT 1 FROM pg_attribute
                                    WHERE attrelid = to_regclass('rangecopy.' || e.t) AND attname = e.c
                                      AND NOT attisdropped))",
        &[&tables, &columns],
        "checking the rangecopy state schema",
    )?;
    Ok(row.get(0))
}

pub fn load_job(conn: &mut PgConn, job: &str) -> Result<Option<JobRecord>> {
    if !schema_exists(conn)? {
        return Ok(None);
    }
    let row = conn.query_opt(
        &format!("SELECT {JOB_COLUMNS} FROM rangecopy.jobs WHERE job = $1"),
        &[&job],
        "reading the job state",
    )?;
    Ok(row.map(|r| job_from_row(&r)))
}

pub fn list_jobs(conn: &mut PgConn) -> Result<Vec<JobRecord>> {
    if !schema_exists(conn)? {
        return Ok(Vec::new());
    }
    let rows =
        conn.query(&format!("SELECT {JOB_COLUMNS} FROM rangecopy.jobs ORDER BY started_at"), &[], "listing jobs")?;
    Ok(rows.iter().map(job_from_row).collect())
}

/// A job's columns as `job_from_row` reads them. A job recorded as running whose lock no
/// session holds, and that no worker process is working on, was stopped without recording it
/// (kill -9, a crash of the machine or of the target): it reads as interrupted.
const JOB_COLUMNS: &str = "job,
       CASE WHEN status = 'running' AND NOT EXISTS (
                 SELECT 1 FROM pg_locks l
                  WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
                    AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                    AND ((l.classid = hashtext('rangecopy job')::oid AND l.objid = hashtext(job)::oid)
                         OR l.classid = hashtext('rangecopy worker:' || job)::oid))
            THEN 'interrupted' ELSE status END,
       source, settings::text, runs, started_at::text, finished_at::text, last_error,
       p0::text, p1::text, consistent";

fn job_from_row(r: &tokio_postgres::Row) -> JobRecord {
    JobRecord {
        job: r.get(0),
        status: r.get(1),
        source: r.get(2),
        settings: serde_json::from_str(r.get::<_, &str>(3)).unwrap_or(serde_json::Value::Null),
        runs: r.get(4),
        started_at: r.get(5),
        finished_at: r.get(6),
        last_error: r.get(7),
        p0: r.get::<_, Option<&str>>(8).and_then(|t| serde_json::from_str(t).ok()),
        p1: r.get::<_, Option<&str>>(9).and_then(|t| serde_json::from_str(t).ok()),
        consistent: r.get(10),
    }
}

/// Whether P0 may still be recorded: the job has none and no chunk of it is committed yet
/// (a position read after rows were copied would make CDC miss the changes in between).
pub fn p0_recordable(conn: &mut PgConn, job: &str) -> Result<bool> {
    let row = conn.query_one(
        "SELECT p0 IS NULL AND NOT EXISTS (SELECT 1 FROM rangecopy.chunks c WHERE c.job = j.job AND c.status = 'done')
           FROM rangecopy.jobs j WHERE job = $1",
        &[&job],
        "reading the source position P0",
    )?;
    Ok(row.get(0))
}

/// Records P0 (the caller gives one only while `p0_recordable`; a job keeps the first it got),
/// and whether this run reads one consistent snapshot; returns the job's P0.
pub fn record_p0(
    conn: &mut PgConn,
    job: &str,
    p0: Option<&SourcePosition>,
    consistent: bool,
) -> Result<Option<SourcePosition>> {
    let p0 = p0.map(|p| serde_json::to_string(p).expect("a position serializes"));
    let row = conn.query_one(
        "UPDATE rangecopy.jobs SET p0 = coalesce(p0, $2::text::jsonb), p1 = NULL, consistent = $3, updated_at = now()
          WHERE job = $1 RETURNING p0::text",
        &[&job, &p0, &consistent],
        "recording the source position P0",
    )?;
    row.get::<_, Option<&str>>(0)
        .map(serde_json::from_str)
        .transpose()
        .map_err(|e| Error::input(format!("job {job}: its recorded P0 cannot be read by this version ({e})")))
}

/// Records P1, the source position after the job's last chunk.
pub fn record_p1(conn: &mut PgConn, job: &str, p1: &SourcePosition) -> Result<()> {
    conn.execute(
        "UPDATE rangecopy.jobs SET p1 = $2::text::jsonb, updated_at = now() WHERE job = $1",
        &[&job, &serde_json::to_string(p1).expect("a position serializes")],
        "recording the source position P1",
    )
    .map(|_| ())
}

/// Records a new job and its tables (inside the caller's setup transaction).
pub fn create_job(
    conn: &mut PgConn,
    job: &str,
    source: &str,
    settings: &serde_json::Value,
    tables: &[(Table, bool)],
) -> Result<()> {
    let what = "recording the job";
    conn.execute(
        "INSERT INTO rangecopy.jobs (job, status, source, settings) VALUES ($1, 'running', $2, $3::text::jsonb)",
        &[&job, &source, &settings.to_string()],
        what,
    )?;
    for (no, (table, created)) in tables.iter().enumerate() {
        let definition = serde_json::to_string(table).expect("a table serializes");
        conn.execute(
            "INSERT INTO rangecopy.tables (job, table_no, source_table, target_schema, target_name, key,
                                               created_by_job, definition, estimated_rows)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text::jsonb, $9)",
            &[
                &job,
                &(no as i32),
                &table.name.to_string(),
                &table.target.schema,
                &table.target.name,
                &table.key.as_ref().map(|k| k.description.clone()),
                created,
                &definition,
                &(table.estimated_rows as i64),
            ],
            what,
        )?;
    }
    Ok(())
}

/// Forgets what a job did of one table, for `--restart TABLE`: its chunks go, and the table
/// starts over with its current definition (inside the caller's transaction; its rows are
/// the caller's business).
pub fn reset_table(conn: &mut PgConn, job: &str, table_no: usize, table: &Table, created_by_job: bool) -> Result<()> {
    let what = "restarting a table of the job";
    conn.execute("DELETE FROM rangecopy.chunks WHERE job = $1 AND table_no = $2", &[&job, &(table_no as i32)], what)?;
    conn.execute("DELETE FROM rangecopy.claims WHERE job = $1 AND table_no = $2", &[&job, &(table_no as i32)], what)?;
    conn.execute(
        "DELETE FROM rangecopy.steps WHERE job = $1 AND step IN ('plan:' || $2, 'finalize:' || $2, 'after')",
        &[&job, &(table_no as i32).to_string()],
        what,
    )?;
    conn.execute(
        "UPDATE rangecopy.tables SET source_table = $3, target_schema = $4, target_name = $5, key = $6,
                created_by_job = $7, definition = $8::text::jsonb, estimated_rows = $9, plan_complete = false,
                phase = 'copying', deferred_done = 0, started_at = NULL, finished_at = NULL
          WHERE job = $1 AND table_no = $2",
        &[
            &job,
            &(table_no as i32),
            &table.name.to_string(),
            &table.target.schema,
            &table.target.name,
            &table.key.as_ref().map(|k| k.description.clone()),
            &created_by_job,
            &serde_json::to_string(table).expect("a table serializes"),
            &(table.estimated_rows as i64),
        ],
        what,
    )
    .map(|_| ())
}

/// Deletes a job and everything recorded under it (its tables' rows are the caller's business).
pub fn delete_job(conn: &mut PgConn, job: &str) -> Result<()> {
    conn.execute("DELETE FROM rangecopy.jobs WHERE job = $1", &[&job], "removing the old job state").map(|_| ())
}

pub fn load_tables(conn: &mut PgConn, job: &str) -> Result<Vec<TableRecord>> {
    let rows = conn.query(
        "SELECT table_no, definition::text, created_by_job, plan_complete, phase
           FROM rangecopy.tables WHERE job = $1 ORDER BY table_no",
        &[&job],
        "reading the job's tables",
    )?;
    rows.iter()
        .map(|r| {
            let table: Table = serde_json::from_str(r.get::<_, &str>(1)).map_err(|e| {
                Error::input(format!(
                    "job {job}: its recorded table definition cannot be read by this version ({e}); use --restart"
                ))
            })?;
            Ok(TableRecord {
                table_no: r.get::<_, i32>(0) as usize,
                table,
                created_by_job: r.get(2),
                plan_complete: r.get(3),
                phase: r.get(4),
            })
        })
        .collect()
}

/// Where a table's copy resumes: the chunks still to copy (gaps planned again among them),
/// and where planning goes on (`None` once planning is complete).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumePoint {
    pub pending: Vec<Chunk>,
    pub cursor: Option<PlanCursor>,
    /// Key ranges no recorded chunk covered, now planned again (also in `pending`).
    pub gaps: Vec<Chunk>,
}

/// Reads a table's chunks and checks that they tile its key range: chunk 0 starts at the
/// start, each chunk starts where the one before it ends, and a completely planned table's
/// last chunk runs to the end. A target that lost commits it had acknowledged (a crash with
/// `synchronous_commit = off` or `fsync = off`) leaves holes; each hole is planned again as
/// one chunk and recorded before it is copied. Chunks not done are always copied again.
pub fn resume_point(conn: &mut PgConn, job: &str, table_no: usize, plan_complete: bool) -> Result<ResumePoint> {
    let rows = conn.query(
        "SELECT chunk_no, lo, hi, status = 'done' FROM rangecopy.chunks WHERE job = $1 AND table_no = $2 ORDER BY chunk_no",
        &[&job, &(table_no as i32)],
        "reading the job's chunks",
    )?;
    let recorded = rows
        .iter()
        .map(|r| (Chunk { table_no, chunk_no: r.get::<_, i32>(0) as u32, lo: r.get(1), hi: r.get(2) }, r.get(3)))
        .collect();
    let point = tile(table_no, recorded, plan_complete).map_err(|e| Error::State(format!("job {job}: {e}")))?;
    for gap in &point.gaps {
        insert_chunk(conn, job, gap, false, None)?;
    }
    Ok(point)
}

/// The tiling check of `resume_point` over `(chunk, done)` in chunk order. Chunk numbers
/// follow key order, so a hole takes the first number free before the chunk after it.
fn tile(
    table_no: usize,
    recorded: Vec<(Chunk, bool)>,
    plan_complete: bool,
) -> std::result::Result<ResumePoint, String> {
    let mut point = ResumePoint { pending: Vec::new(), cursor: None, gaps: Vec::new() };
    // Where the next chunk must start; `None` once a chunk ran to the end of the key range.
    let mut at: Option<Bound> = Some(None);
    let mut next_no = 0u32;
    let hole = |point: &mut ResumePoint, chunk_no: u32, lo: &Bound, hi: &Bound| {
        let gap = Chunk { table_no, chunk_no, lo: lo.clone(), hi: hi.clone() };
        point.gaps.push(gap.clone());
        point.pending.push(gap);
    };
    for (chunk, done) in recorded {
        let meets = at.as_ref().is_some_and(|lo| *lo == chunk.lo);
        // A hole lies before this chunk only if it starts inside the key range, after the
        // end of the last one, with a number free for the hole.
        let hole_fits = at.is_some() && chunk.lo.is_some() && chunk.chunk_no > next_no;
        if !meets && !hole_fits {
            return Err(format!(
                "chunk {} of table {table_no} covers {} but the chunk before it ends at {}: the recorded chunks do \
                 not tile the key range; copy this table again with --restart and its name",
                chunk.chunk_no,
                chunk.range_text(),
                at.as_ref().map_or("+∞".to_string(), |b| bound_text(b, "-∞")),
            ));
        }
        if !meets {
            hole(&mut point, next_no, at.as_ref().expect("checked above"), &chunk.lo);
        }
        at = chunk.hi.clone().map(Some);
        next_no = chunk.chunk_no + 1;
        if !done {
            point.pending.push(chunk);
        }
    }
    match at {
        // Planning goes on from the end of the last chunk.
        Some(lo) if !plan_complete => point.cursor = Some(PlanCursor { next_chunk_no: next_no, lo }),
        // Planned to the end, but the chunks that ran to the end were lost.
        Some(lo) => hole(&mut point, next_no, &lo, &None),
        None => {}
    }
    Ok(point)
}

/// Every chunk planned for a table, in key order (for verifying a job range by range).
pub fn job_chunks(conn: &mut PgConn, job: &str, table_no: usize) -> Result<Vec<Chunk>> {
    let rows = conn.query(
        "SELECT chunk_no, lo, hi FROM rangecopy.chunks WHERE job = $1 AND table_no = $2 ORDER BY chunk_no",
        &[&job, &(table_no as i32)],
        "reading the job's chunks",
    )?;
    Ok(rows
        .iter()
        .map(|r| Chunk { table_no, chunk_no: r.get::<_, i32>(0) as u32, lo: r.get(1), hi: r.get(2) })
        .collect())
}

/// Whether a chunk is recorded done (its rows committed).
/// A table's chunks with whether each is done, in chunk order (read-only; for `verify --job`,
/// which checks that they tile the table).
pub fn job_chunks_done(conn: &mut PgConn, job: &str, table_no: usize) -> Result<Vec<(Chunk, bool)>> {
    let rows = conn.query(
        "SELECT chunk_no, lo, hi, status = 'done' FROM rangecopy.chunks
          WHERE job = $1 AND table_no = $2 ORDER BY chunk_no",
        &[&job, &(table_no as i32)],
        "reading the job's chunks",
    )?;
    Ok(rows
        .iter()
        .map(|r| (Chunk { table_no, chunk_no: r.get::<_, i32>(0) as u32, lo: r.get(1), hi: r.get(2) }, r.get(3)))
        .collect())
}

pub fn chunk_is_done(conn: &mut PgConn, job: &str, chunk: &Chunk) -> Result<bool> {
    let row = conn.query_opt(
        "SELECT status = 'done' FROM rangecopy.chunks WHERE job = $1 AND table_no = $2 AND chunk_no = $3",
        &[&job, &(chunk.table_no as i32), &(chunk.chunk_no as i32)],
        "reading a chunk's status",
    )?;
    Ok(row.is_some_and(|r| r.get(0)))
}

/// How many of a table's deferred DDL statements are built.
pub fn deferred_done(conn: &mut PgConn, job: &str, table_no: usize) -> Result<usize> {
    let row = conn.query_one(
        "SELECT deferred_done FROM rangecopy.tables WHERE job = $1 AND table_no = $2",
        &[&job, &(table_no as i32)],
        "reading a table's index builds",
    )?;
    Ok(row.get::<_, i32>(0) as usize)
}

/// Persists a planned chunk (pending) before any process claims it. `plan` is the planning
/// step's claim: a planner whose claim was taken over records nothing (`Error::Fenced`), so
/// the chunks of a table always come from one walk of its keys.
pub fn insert_chunk(conn: &mut PgConn, job: &str, chunk: &Chunk, last: bool, plan: Option<&StepFence>) -> Result<()> {
    let what = "recording a chunk";
    conn.transaction(what, |conn| {
        conn.execute(
            // A retry after a commit whose answer was lost finds the chunk already there.
            "INSERT INTO rangecopy.chunks (job, table_no, chunk_no, lo, hi) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (job, table_no, chunk_no) DO NOTHING",
            &[&job, &(chunk.table_no as i32), &(chunk.chunk_no as i32), &chunk.lo, &chunk.hi],
            what,
        )?;
        if last {
            conn.execute(
                "UPDATE rangecopy.tables SET plan_complete = true WHERE job = $1 AND table_no = $2",
                &[&job, &(chunk.table_no as i32)],
                what,
            )?;
        }
        match plan {
            Some(fence) => fence.check(conn),
            None => Ok(()),
        }
    })
}

/// Marks a chunk done with its totals and digest, inside the transaction that loaded its rows,
/// if `claim` still holds it (its fencing token is the chunk's); else `Error::Fenced`, and the
/// caller's transaction, rows included, rolls back. The claim is recorded done in the same
/// transaction, so the claim history holds exactly one `done` per chunk.
pub fn mark_chunk_done(conn: &mut PgConn, job: &str, claim: &Claim, summary: &ChunkSummary) -> Result<()> {
    let chunk = &claim.chunk;
    let nulled = (!summary.nulled.is_empty()).then(|| {
        serde_json::Value::Object(summary.nulled.iter().map(|(c, n)| (c.clone(), (*n).into())).collect()).to_string()
    });
    let started = std::time::Instant::now();
    let n = conn.execute(
        "UPDATE rangecopy.chunks SET status = 'done', rows = $4, bytes = $5, digest = $6, nulled = $7::text::jsonb,
                attempts = attempts + 1, started_at = now(), finished_at = clock_timestamp(), lease_until = NULL
          WHERE job = $1 AND table_no = $2 AND chunk_no = $3 AND status = 'pending' AND fence = $8",
        &[
            &job,
            &(chunk.table_no as i32),
            &(chunk.chunk_no as i32),
            &(summary.rows as i64),
            &(summary.bytes as i64),
            &summary.digest.to_string(),
            &nulled,
            &claim.fence,
        ],
        "marking a chunk done",
    )?;
    if n == 1 {
        let coord_ms = claim.claim_ms + started.elapsed().as_secs_f64() * 1000.0;
        conn.execute(
            "UPDATE rangecopy.claims SET outcome = 'done', ended_at = clock_timestamp(), coord_ms = $5
              WHERE job = $1 AND table_no = $2 AND chunk_no = $3 AND fence = $4",
            &[&job, &(chunk.table_no as i32), &(chunk.chunk_no as i32), &claim.fence, &coord_ms],
            "recording a chunk's claim done",
        )?;
        return Ok(());
    }
    // Committing now would either duplicate rows another process committed, or record a chunk
    // the state no longer knows: either way this transaction is rolled back.
    let row = conn.query_opt(
        "SELECT fence FROM rangecopy.chunks WHERE job = $1 AND table_no = $2 AND chunk_no = $3",
        &[&job, &(chunk.table_no as i32), &(chunk.chunk_no as i32)],
        "reading a chunk's claim",
    )?;
    match row {
        Some(_) => Err(Error::Fenced(format!("chunk {} of table {} (key range {})", chunk.chunk_no, chunk.table_no, chunk.range_text()))),
        None => Err(Error::State(format!(
            "chunk {} of job {job} is no longer recorded in the target (the target lost commits it had \
             acknowledged: a crash with synchronous_commit or fsync off? or the job was started over); resume plans it again",
            chunk.chunk_no
        ))),
    }
}

/// Records what a chunk's merge did (`--into-existing`), in the transaction that marks it done.
pub fn record_merged(conn: &mut PgConn, job: &str, chunk: &Chunk, merged: &Merged) -> Result<()> {
    conn.execute(
        "UPDATE rangecopy.chunks SET inserted = $4, skipped = $5, updated = $6
          WHERE job = $1 AND table_no = $2 AND chunk_no = $3",
        &[&job, &(chunk.table_no as i32), &(chunk.chunk_no as i32), &merged.inserted, &merged.skipped, &merged.updated],
        "recording a chunk's merge",
    )
    .map(|_| ())
}

/// Records when the copy of a table started: its first chunk, in its first run.
pub fn table_started(conn: &mut PgConn, job: &str, table_no: usize) -> Result<()> {
    conn.execute(
        "UPDATE rangecopy.tables SET started_at = coalesce(started_at, now()) WHERE job = $1 AND table_no = $2",
        &[&job, &(table_no as i32)],
        "recording a table's start",
    )
    .map(|_| ())
}

pub fn set_table_phase(conn: &mut PgConn, job: &str, table_no: usize, phase: &str) -> Result<()> {
    conn.execute(
        "UPDATE rangecopy.tables SET phase = $3, started_at = coalesce(started_at, now()), finished_at = NULL,
                indexing_at = CASE WHEN $3 = 'indexing' THEN now() END
          WHERE job = $1 AND table_no = $2",
        &[&job, &(table_no as i32), &phase],
        "recording a table's phase",
    )
    .map(|_| ())
}

/// Records a table done, which it is only once its planning is complete and every chunk of
/// it is done; otherwise the state is not what the run believed (it lost commits) and the
/// table stays unfinished for resume.
pub fn finish_table(conn: &mut PgConn, job: &str, table_no: usize, step: Option<&StepFence>) -> Result<()> {
    conn.transaction("recording a table done", |conn| {
        let row = conn.query_one(
            "WITH open AS (
                 SELECT count(*) AS n FROM rangecopy.chunks WHERE job = $1 AND table_no = $2 AND status <> 'done'),
             done AS (
                 UPDATE rangecopy.tables SET phase = 'done', finished_at = now()
                  WHERE job = $1 AND table_no = $2 AND plan_complete AND (SELECT n FROM open) = 0
              RETURNING 1)
             SELECT (SELECT count(*) FROM done), (SELECT n FROM open)",
            &[&job, &(table_no as i32)],
            "recording a table done",
        )?;
        if row.get::<_, i64>(0) == 1 {
            return match step {
                Some(fence) => fence.check(conn),
                None => Ok(()),
            };
        }
        Err(Error::State(format!(
            "job {job}: table {table_no} was to be done, but the state has {} chunks of it not done or its planning \
             incomplete (the target lost commits it had acknowledged?); resume copies what is missing",
            row.get::<_, i64>(1)
        )))
    })
}

/// Records that the deferred DDL statement `done - 1` of a table is built (same transaction).
pub fn set_deferred_done(conn: &mut PgConn, job: &str, table_no: usize, done: usize) -> Result<()> {
    conn.execute(
        "UPDATE rangecopy.tables SET deferred_done = $3 WHERE job = $1 AND table_no = $2",
        &[&job, &(table_no as i32), &(done as i32)],
        "recording an index build",
    )
    .map(|_| ())
}

/// Records how a job's run ended. A job that another process has finished stays done: a
/// starting process stopped afterwards does not make it interrupted again.
pub fn set_job_status(conn: &mut PgConn, job: &str, status: &str, error: Option<&str>) -> Result<()> {
    conn.execute(
        "UPDATE rangecopy.jobs SET status = $2, last_error = $3, updated_at = now(),
                finished_at = CASE WHEN $2 = 'done' THEN now() END
          WHERE job = $1 AND NOT (status = 'done' AND $2 <> 'done')",
        &[&job, &status, &error],
        "recording the job's status",
    )
    .map(|_| ())
}

/// Marks a job running again for a resumed run, with the settings of this run. Its last step
/// (objects after the load, P1) is run again; workers join once the run has set up again.
pub fn resume_job(conn: &mut PgConn, job: &str, settings: &serde_json::Value) -> Result<()> {
    let what = "recording the resumed run";
    conn.execute(
        "UPDATE rangecopy.jobs SET status = 'running', runs = runs + 1, last_error = NULL, updated_at = now(),
                settings = $2::text::jsonb, open_to_workers = false
          WHERE job = $1",
        &[&job, &settings.to_string()],
        what,
    )?;
    conn.execute("DELETE FROM rangecopy.steps WHERE job = $1 AND step = 'after'", &[&job], what).map(|_| ())
}

/// Per-table totals of a job, for status and reports.
pub fn table_progress(conn: &mut PgConn, job: &str) -> Result<Vec<TableProgress>> {
    let rows = conn.query(
        "SELECT t.table_no, t.source_table, quote_ident(t.target_schema) || '.' || quote_ident(t.target_name),
                t.key, t.phase, t.plan_complete, count(c.chunk_no), count(c.chunk_no) FILTER (WHERE c.status = 'done'),
                coalesce(sum(c.rows), 0)::int8, coalesce(sum(c.bytes), 0)::int8, t.estimated_rows,
                coalesce(array_agg(c.digest ORDER BY c.chunk_no) FILTER (WHERE c.status = 'done'), '{}'),
                extract(epoch FROM (coalesce(t.finished_at, now()) - t.started_at))::float8,
                extract(epoch FROM (coalesce(t.indexing_at, t.finished_at, now()) - t.started_at))::float8,
                extract(epoch FROM (coalesce(t.finished_at, now()) - t.indexing_at))::float8,
                (SELECT coalesce(array_agg(z.col ORDER BY z.col), '{}') || '{}'::text[]
                   FROM (SELECT e.key AS col FROM rangecopy.chunks n, jsonb_each_text(n.nulled) e
                          WHERE n.job = t.job AND n.table_no = t.table_no AND n.status = 'done'
                          GROUP BY e.key) z),
                (SELECT coalesce(array_agg(z.total ORDER BY z.col), '{}')
                   FROM (SELECT e.key AS col, sum(e.value::int8)::int8 AS total
                           FROM rangecopy.chunks n, jsonb_each_text(n.nulled) e
                          WHERE n.job = t.job AND n.table_no = t.table_no AND n.status = 'done'
                          GROUP BY e.key) z),
                count(c.inserted) FILTER (WHERE c.status = 'done'),
                coalesce(sum(c.inserted) FILTER (WHERE c.status = 'done'), 0)::int8,
                coalesce(sum(c.skipped) FILTER (WHERE c.status = 'done'), 0)::int8,
                coalesce(sum(c.updated) FILTER (WHERE c.status = 'done'), 0)::int8
           FROM rangecopy.tables t
           LEFT JOIN rangecopy.chunks c ON c.job = t.job AND c.table_no = t.table_no
          WHERE t.job = $1
          GROUP BY t.job, t.table_no ORDER BY t.table_no",
        &[&job],
        "reading the job's progress",
    )?;
    Ok(rows
        .iter()
        .map(|r| TableProgress {
            table_no: r.get::<_, i32>(0) as usize,
            source_table: r.get(1),
            target_table: r.get(2),
            key: r.get(3),
            phase: r.get(4),
            plan_complete: r.get(5),
            chunks_total: r.get(6),
            chunks_done: r.get(7),
            rows: r.get(8),
            bytes: r.get(9),
            estimated_rows: r.get(10),
            digests: r.get(11),
            seconds: r.get(12),
            copy_seconds: r.get(13),
            index_seconds: r.get(14),
            nulled: r.get::<_, Vec<String>>(15).into_iter().zip(r.get::<_, Vec<i64>>(16)).collect(),
            merged: (r.get::<_, i64>(17) > 0).then(|| Merged {
                inserted: r.get(18),
                skipped: r.get(19),
                updated: r.get(20),
            }),
        })
        .collect())
}

/// What a job is to run with, as `rangecopy throttle` and the watching processes set it.
#[derive(Debug, Clone, Copy, Default)]
pub struct JobThrottle {
    /// 0 = no limit.
    pub rows_per_sec: u64,
    /// 0 = no limit.
    pub bytes_per_sec: u64,
    /// `rangecopy throttle --pause`.
    pub paused: bool,
    /// The hold in force of a process watching --max-lag or --throttle-query (`Lag`, `Query`),
    /// else `None`.
    pub held: PauseReason,
}

/// A job's throttle and hold; `None` if there is no such job.
pub fn read_throttle(conn: &mut PgConn, job: &str) -> Result<Option<JobThrottle>> {
    let row = conn.query_opt(
        "SELECT max_rows_per_sec, max_bytes_per_sec, paused, CASE WHEN held_until > now() THEN held END
           FROM rangecopy.jobs WHERE job = $1",
        &[&job],
        "reading the job's throttle",
    )?;
    Ok(row.map(|r| JobThrottle {
        rows_per_sec: r.get::<_, i64>(0) as u64,
        bytes_per_sec: r.get::<_, i64>(1) as u64,
        paused: r.get(2),
        held: match r.get::<_, Option<&str>>(3) {
            Some("lag") => PauseReason::Lag,
            Some("query") => PauseReason::Query,
            _ => PauseReason::None,
        },
    }))
}

/// Changes a job's limits and pause (`None` leaves a setting as it is); false if no such job.
pub fn write_throttle(
    conn: &mut PgConn,
    job: &str,
    rows_per_sec: Option<u64>,
    bytes_per_sec: Option<u64>,
    paused: Option<bool>,
) -> Result<bool> {
    let n = conn.execute(
        "UPDATE rangecopy.jobs SET max_rows_per_sec = coalesce($2, max_rows_per_sec),
                max_bytes_per_sec = coalesce($3, max_bytes_per_sec), paused = coalesce($4, paused),
                updated_at = now()
          WHERE job = $1",
        &[&job, &rows_per_sec.map(|v| v as i64), &bytes_per_sec.map(|v| v as i64), &paused],
        "changing the job's throttle",
    )?;
    Ok(n == 1)
}

/// How long a hold written by [`write_hold`] lasts unless written again.
pub const HOLD_SECONDS: f64 = 10.0;

/// Records the pause a process that watches --max-lag or --throttle-query decided, for the
/// job's other processes (`Lag`, `Query`), or lifts it (any other).
pub fn write_hold(conn: &mut PgConn, job: &str, held: PauseReason) -> Result<()> {
    let held = match held {
        PauseReason::Lag => Some("lag"),
        PauseReason::Query => Some("query"),
        _ => None,
    };
    conn.execute(
        "UPDATE rangecopy.jobs SET held = $2,
                held_until = CASE WHEN $2::text IS NULL THEN NULL
                                  ELSE now() + $3::float8 * interval '1 second' END
          WHERE job = $1",
        &[&job, &held, &HOLD_SECONDS],
        "recording the job's hold",
    )?;
    Ok(())
}

/// Holds the job's advisory lock for the life of the connection, so two processes never
/// run the same job at once. Returns false if another session holds it.
pub fn try_lock_job(conn: &mut PgConn, job: &str) -> Result<bool> {
    let row = conn.query_one(
        "SELECT pg_try_advisory_lock(hashtext('rangecopy job'), hashtext($1))",
        &[&job],
        "locking the job",
    )?;
    Ok(row.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(no: u32, lo: Option<&str>, hi: Option<&str>) -> Chunk {
        let b = |v: Option<&str>| v.map(|v| vec![v.to_string()]);
        Chunk { table_no: 3, chunk_no: no, lo: b(lo), hi: b(hi) }
    }

    #[test]
    fn the_columns_added_to_older_states_are_all_checked() {
        let (tables, columns) = added_columns();
        let pairs: Vec<(&str, &str)> =
            tables.iter().map(String::as_str).zip(columns.iter().map(String::as_str)).collect();
        let added = SCHEMA_DDL.matches("ADD COLUMN IF NOT EXISTS").count();
        let created = SCHEMA_DDL.matches("CREATE TABLE IF NOT EXISTS").count();
        assert_eq!(pairs.len(), added + created, "{pairs:?}");
        assert!(pairs.contains(&("chunks", "nulled")) && pairs.contains(&("tables", "indexing_at")), "{pairs:?}");
        // A table added later is found missing by its job column.
        assert!(pairs.contains(&("objects", "job")), "{pairs:?}");
    }

    #[test]
    fn complete_tiling_resumes_only_chunks_not_done() {
        let recorded = vec![
            (chunk(0, None, Some("10")), true),
            (chunk(1, Some("10"), Some("20")), false),
            (chunk(2, Some("20"), None), true),
        ];
        let point = tile(3, recorded, true).unwrap();
        assert_eq!(point.pending, vec![chunk(1, Some("10"), Some("20"))]);
        assert_eq!(point.cursor, None);
        assert!(point.gaps.is_empty());
    }

    #[test]
    fn planning_goes_on_after_the_last_recorded_chunk() {
        let recorded = vec![(chunk(0, None, Some("10")), true), (chunk(1, Some("10"), Some("20")), true)];
        let point = tile(3, recorded, false).unwrap();
        assert!(point.pending.is_empty());
        assert_eq!(point.cursor, Some(PlanCursor { next_chunk_no: 2, lo: Some(vec!["20".into()]) }));
        assert_eq!(tile(3, Vec::new(), false).unwrap().cursor, Some(PlanCursor::start()));
    }

    /// Regression: a target crash with synchronous_commit off lost the planned rows of chunks
    /// 15 and 16 while planning went on; resume skipped their key range.
    #[test]
    fn a_hole_left_by_lost_chunks_is_planned_again_under_a_free_number() {
        let recorded = vec![(chunk(14, Some("140"), Some("150")), true), (chunk(17, Some("170"), Some("180")), false)];
        let point = tile(3, recorded, false).unwrap();
        assert_eq!(point.gaps, vec![chunk(0, None, Some("140")), chunk(15, Some("150"), Some("170"))]);
        assert_eq!(point.pending.len(), 3);
        assert_eq!(point.cursor, Some(PlanCursor { next_chunk_no: 18, lo: Some(vec!["180".into()]) }));
    }

    #[test]
    fn a_complete_plan_whose_end_was_lost_is_finished_with_one_more_chunk() {
        let point = tile(3, vec![(chunk(0, None, Some("10")), true)], true).unwrap();
        assert_eq!(point.gaps, vec![chunk(1, Some("10"), None)]);
        let point = tile(3, Vec::new(), true).unwrap();
        assert_eq!(point.gaps, vec![chunk(0, None, None)]);
    }

    #[test]
    fn chunks_that_do_not_meet_without_a_free_number_are_refused() {
        let recorded = vec![(chunk(0, None, Some("10")), true), (chunk(1, Some("12"), None), true)];
        let err = tile(3, recorded, true).unwrap_err();
        assert!(err.contains("do not tile") && err.contains("--restart"), "{err}");
    }

    /// A chunk recorded after the one that ran to the end, or one open below after the
    /// first, would be copied twice: refused, never taken for a hole.
    #[test]
    fn chunks_past_the_end_or_open_below_mid_table_are_refused() {
        let past_end = vec![(chunk(0, None, None), true), (chunk(5, Some("50"), Some("60")), false)];
        assert!(tile(3, past_end, true).unwrap_err().contains("ends at +∞"));
        let open_below = vec![(chunk(0, None, Some("10")), true), (chunk(5, None, Some("60")), false)];
        assert!(tile(3, open_below, false).unwrap_err().contains("do not tile"));
    }
}

/// An object of a job, as recorded in the target.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectRecord {
    pub object_no: usize,
    #[serde(flatten)]
    pub object: DbObject,
    /// `pending`, `created` (added, not yet validated), `done`, `failed`, or `listed` (not
    /// carried over, in the report only).
    pub status: String,
    pub detail: Option<String>,
}

/// Records a job's objects (inside the caller's set-up transaction), each with its status so
/// far: the ones created before the load are done or failed already.
pub fn record_objects(conn: &mut PgConn, job: &str, objects: &[ObjectRecord]) -> Result<()> {
    let column = |f: &dyn Fn(&ObjectRecord) -> String| objects.iter().map(f).collect::<Vec<String>>();
    let numbers: Vec<i32> = objects.iter().map(|o| o.object_no as i32).collect();
    let phases = column(&|o| if o.object.phase == Phase::Before { "before".into() } else { "after".into() });
    let kinds = column(&|o| o.object.kind.clone());
    let names = column(&|o| o.object.name.clone());
    let statuses = column(&|o| o.status.clone());
    let details: Vec<Option<String>> = objects.iter().map(|o| o.detail.clone()).collect();
    let definitions = column(&|o| serde_json::to_string(&o.object).expect("an object serializes"));
    conn.execute(
        "INSERT INTO rangecopy.objects (job, object_no, phase, kind, name, status, detail, definition, finished_at)
         SELECT $1, o, p, k, n, s, d, def::jsonb, CASE WHEN s <> 'pending' THEN now() END
           FROM unnest($2::int[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])
                AS u(o, p, k, n, s, d, def)",
        &[&job, &numbers, &phases, &kinds, &names, &statuses, &details, &definitions],
        "recording the job's objects",
    )?;
    Ok(())
}

/// A job's objects in the order they are created.
pub fn load_objects(conn: &mut PgConn, job: &str) -> Result<Vec<ObjectRecord>> {
    let what = "reading the job's objects";
    if conn.query_one("SELECT to_regclass('rangecopy.objects') IS NULL", &[], what)?.get(0) {
        return Ok(Vec::new());
    }
    let rows = conn.query(
        "SELECT object_no, definition::text, status, detail FROM rangecopy.objects WHERE job = $1 ORDER BY object_no",
        &[&job],
        what,
    )?;
    rows.iter()
        .map(|r| {
            let object = serde_json::from_str(r.get::<_, &str>(1)).map_err(|e| {
                Error::State(format!("job {job:?}: an object's recorded definition is unreadable: {e}"))
            })?;
            Ok(ObjectRecord { object_no: r.get::<_, i32>(0) as usize, object, status: r.get(2), detail: r.get(3) })
        })
        .collect()
}

/// Records how an object's creation (or validation) went.
pub fn set_object_status(
    conn: &mut PgConn,
    job: &str,
    object_no: usize,
    status: &str,
    detail: Option<&str>,
) -> Result<()> {
    conn.execute(
        "UPDATE rangecopy.objects SET status = $3, detail = $4, finished_at = now() WHERE job = $1 AND object_no = $2",
        &[&job, &(object_no as i32), &status, &detail],
        "recording an object",
    )?;
    Ok(())
}

/// A pass of `verify --watch` as the state records it.
#[derive(Debug, Clone)]
pub struct VerifyPass {
    pub watch: String,
    pub pass: i32,
    /// UTC, `YYYY-MM-DD HH:MM:SS`.
    pub started_at: String,
    pub finished_at: String,
    pub verdict: String,
    pub rows_compared: i64,
    pub rows_divergent: i64,
    pub rows_in_flight: i64,
    pub consistency: f64,
    pub tables: serde_json::Value,
}

const PASS_COLUMNS: &str = "watch, pass, to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), \
     to_char(finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), verdict, rows_compared, rows_divergent, \
     rows_in_flight, consistency::float8, tables::text";

fn pass_from_row(r: &tokio_postgres::Row) -> VerifyPass {
    VerifyPass {
        watch: r.get(0),
        pass: r.get(1),
        started_at: r.get(2),
        finished_at: r.get(3),
        verdict: r.get(4),
        rows_compared: r.get(5),
        rows_divergent: r.get(6),
        rows_in_flight: r.get(7),
        consistency: r.get(8),
        tables: serde_json::from_str(r.get::<_, &str>(9)).unwrap_or_default(),
    }
}

/// Records a finished pass (it took `seconds`, and ends now) as the watch's next; returns it.
#[allow(clippy::too_many_arguments)]
pub fn record_pass(
    conn: &mut PgConn,
    watch: &str,
    seconds: f64,
    verdict: &str,
    (compared, divergent, in_flight): (i64, i64, i64),
    consistency: f64,
    tables: &serde_json::Value,
) -> Result<VerifyPass> {
    let row = conn.query_one(
        &format!(
            "INSERT INTO rangecopy.verify_passes AS p (watch, pass, started_at, finished_at, verdict, rows_compared, \
                 rows_divergent, rows_in_flight, consistency, tables)
             SELECT $1, coalesce((SELECT max(pass) FROM rangecopy.verify_passes WHERE watch = $1), 0) + 1,
                    now() - $2 * interval '1 second', now(), $3, $4, $5, $6, $7::float8::numeric, $8::text::jsonb
             RETURNING {PASS_COLUMNS}"
        ),
        &[&watch, &seconds, &verdict, &compared, &divergent, &in_flight, &consistency, &tables.to_string()],
        "recording the verification pass",
    )?;
    Ok(pass_from_row(&row))
}

/// A watch's passes, the last `limit` of them, oldest first.
pub fn load_passes(conn: &mut PgConn, watch: &str, limit: i64) -> Result<Vec<VerifyPass>> {
    if !passes_exist(conn)? {
        return Ok(Vec::new());
    }
    let rows = conn.query(
        &format!(
            "SELECT * FROM (SELECT {PASS_COLUMNS} FROM rangecopy.verify_passes WHERE watch = $1
                             ORDER BY pass DESC LIMIT $2) p ORDER BY 2"
        ),
        &[&watch, &limit],
        "reading the verification passes",
    )?;
    Ok(rows.iter().map(pass_from_row).collect())
}

/// The latest pass of every watch (of `watch` only, when given), by watch name.
pub fn latest_passes(conn: &mut PgConn, watch: Option<&str>) -> Result<Vec<VerifyPass>> {
    if !passes_exist(conn)? {
        return Ok(Vec::new());
    }
    let rows = conn.query(
        &format!(
            "SELECT DISTINCT ON (watch) {PASS_COLUMNS} FROM rangecopy.verify_passes
              WHERE $1::text IS NULL OR watch = $1 ORDER BY watch, pass DESC"
        ),
        &[&watch],
        "reading the verification passes",
    )?;
    Ok(rows.iter().map(pass_from_row).collect())
}

/// Since when a watch's passes have all been fully consistent (no divergent row, verdict
/// identical), as UTC text, and for how many seconds until now; `None` when its latest pass
/// is not.
pub fn consistent_since(conn: &mut PgConn, watch: &str) -> Result<Option<(String, f64)>> {
    let row = conn.query_one(
        "SELECT to_char(min(started_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'),
                extract(epoch FROM now() - min(started_at))::float8
           FROM rangecopy.verify_passes
          WHERE watch = $1
            AND pass > coalesce((SELECT max(pass) FROM rangecopy.verify_passes
                                  WHERE watch = $1 AND (rows_divergent > 0 OR verdict <> 'identical')), 0)",
        &[&watch],
        "reading since when the watch is consistent",
    )?;
    Ok(row.get::<_, Option<String>>(0).map(|since| (since, row.get::<_, Option<f64>>(1).unwrap_or(0.0))))
}

fn passes_exist(conn: &mut PgConn) -> Result<bool> {
    let row = conn.query_one(
        "SELECT to_regclass('rangecopy.verify_passes') IS NOT NULL",
        &[],
        "looking for verification passes",
    )?;
    Ok(row.get(0))
}

// ---------------------------------------------------------------------------------------------
// Many processes, one job: claims, leases and fences.
//
// Every process (the starting `copy` and any `rangecopy worker`) takes its work from these
// tables. A claim is one statement that takes a row under `FOR UPDATE SKIP LOCKED` (or an
// `INSERT … ON CONFLICT DO UPDATE` for a step), raises its fencing token and sets a lease that
// the holder's heartbeat renews. A lease that runs out (the holder died, froze or lost its
// network) lets another process claim the row again, with a higher token.
//
// The token is what keeps the copy exactly-once; the lease only decides when to try again. A
// chunk's done-mark (`mark_chunk_done`) and a step's work (`StepFence::check`) update the row
// `WHERE fence = <the holder's token>` inside the transaction that writes the work. Under READ
// COMMITTED that is sound both ways round: if the new claim committed first, the holder's
// UPDATE re-reads the row, finds another token, matches nothing and the whole transaction
// (rows included) rolls back; if the holder's UPDATE came first, it holds the row's lock until
// its commit, so a claimer skips the row (`SKIP LOCKED`) or waits for it (a step's upsert),
// then re-checks its WHERE against what committed (a chunk done, a lease just renewed) and
// claims nothing.
// ---------------------------------------------------------------------------------------------

/// SQL true when the holder named by `{owner}` of a row of job `$1` no longer holds its
/// process lock (`lock_worker`): its session is gone, so its lease need not be waited out. A
/// holder cut off from the target may not know yet; its token is what stops it.
fn owner_gone(owner: &str) -> String {
    format!(
        "NOT EXISTS (SELECT 1 FROM pg_locks l
                      WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
                        AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                        AND l.classid = hashtext('rangecopy worker:' || $1)::oid
                        AND l.objid = hashtext({owner})::oid)"
    )
}

/// SQL true when the lease of a row (`{t}.lease_until`, `{t}.owner`) may be taken over by the
/// process named `${me}`. Its own leases it only takes back once they ran out: while its
/// heartbeat's session is being replaced its lock is missing, and its threads must not take
/// each other's work meanwhile.
fn lease_free(t: &str, me: u8) -> String {
    format!(
        "CASE WHEN {t}.lease_until IS NULL OR {t}.lease_until < now() THEN true
              WHEN {t}.owner = ${me} THEN false ELSE {} END",
        owner_gone(&format!("{t}.owner"))
    )
}

/// A chunk this process holds, with its fencing token.
#[derive(Debug, Clone)]
pub struct Claim {
    pub chunk: Chunk,
    pub fence: i64,
    /// How long the claim statement took, in milliseconds.
    pub claim_ms: f64,
}

/// Claims the first pending chunk of the job (tables in job order, chunks in key order) whose
/// lease is free, for `lease` seconds, and records the claim; a previous holder's claim whose
/// lease ran out is recorded as released.
///
/// `run` is when the job was set up (`JobRecord::started_at`): a job started over since
/// (`--restart`) has other tables and chunks, and a process that joined the old one claims
/// nothing of it.
pub fn claim_chunk(conn: &mut PgConn, job: &str, run: &str, worker: &str, lease: f64) -> Result<Option<Claim>> {
    let started = std::time::Instant::now();
    let row = conn.query_opt(
        &format!(
            "WITH s AS (
                 SELECT table_no, chunk_no FROM rangecopy.chunks x
                  WHERE job = $1 AND status = 'pending' AND {}
                    AND EXISTS (SELECT 1 FROM rangecopy.jobs j WHERE j.job = $1 AND j.started_at::text = $4)
                  ORDER BY table_no, chunk_no LIMIT 1 FOR UPDATE SKIP LOCKED),
             c AS (
                 UPDATE rangecopy.chunks c SET owner = $2,
                        -- A chunk recorded again (the target lost it) never reuses a token.
                        fence = greatest(c.fence, (SELECT max(k.fence) FROM rangecopy.claims k
                                                    WHERE k.job = $1 AND k.table_no = c.table_no
                                                      AND k.chunk_no = c.chunk_no)) + 1,
                        lease_until = now() + $3::float8 * interval '1 second'
                   FROM s WHERE c.job = $1 AND c.table_no = s.table_no AND c.chunk_no = s.chunk_no
                 RETURNING c.table_no, c.chunk_no, c.lo, c.hi, c.fence),
             old AS (
                 UPDATE rangecopy.claims k SET outcome = 'released', ended_at = now() FROM c
                  WHERE k.job = $1 AND k.table_no = c.table_no AND k.chunk_no = c.chunk_no AND k.outcome = 'running'
),
             new AS (
                 INSERT INTO rangecopy.claims (job, table_no, chunk_no, fence, worker)
                 SELECT $1, table_no, chunk_no, fence, $2 FROM c)
             SELECT table_no, chunk_no, lo, hi, fence FROM c",
            lease_free("x", 2)
        ),
        &[&job, &worker, &lease, &run],
        "claiming a chunk",
    )?;
    Ok(row.map(|r| Claim {
        chunk: Chunk {
            table_no: r.get::<_, i32>(0) as usize,
            chunk_no: r.get::<_, i32>(1) as u32,
            lo: r.get(2),
            hi: r.get(3),
        },
        fence: r.get(4),
        claim_ms: started.elapsed().as_secs_f64() * 1000.0,
    }))
}

/// Where a claimed chunk stands now, for a retry after a transient failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimState {
    /// Its rows are committed (by this claim, whose answer was lost, or by another).
    Done,
    /// Still this claim's to copy.
    Held,
    /// Another process holds it now.
    Lost,
}

pub fn claim_state(conn: &mut PgConn, job: &str, claim: &Claim) -> Result<ClaimState> {
    let c = &claim.chunk;
    let row = conn.query_opt(
        "SELECT status = 'done', fence FROM rangecopy.chunks WHERE job = $1 AND table_no = $2 AND chunk_no = $3",
        &[&job, &(c.table_no as i32), &(c.chunk_no as i32)],
        "reading a chunk's claim",
    )?;
    Ok(match row {
        Some(r) if r.get(0) => ClaimState::Done,
        Some(r) if r.get::<_, i64>(1) == claim.fence => ClaimState::Held,
        _ => ClaimState::Lost,
    })
}

/// Ends a claim that did not commit the chunk (`fenced`, `failed` or `released`; a claim
/// already taken over, `released` by its taker, becomes `fenced` when its holder learns it),
/// and lets the chunk go at once if this claim still holds it.
pub fn end_claim(conn: &mut PgConn, job: &str, claim: &Claim, outcome: &str) -> Result<()> {
    let c = &claim.chunk;
    conn.execute(
        "WITH k AS (UPDATE rangecopy.claims SET outcome = $5, ended_at = now()
                      WHERE job = $1 AND table_no = $2 AND chunk_no = $3 AND fence = $4 AND outcome <> 'done')
         UPDATE rangecopy.chunks SET lease_until = NULL
          WHERE job = $1 AND table_no = $2 AND chunk_no = $3 AND fence = $4 AND status = 'pending'",
        &[&job, &(c.table_no as i32), &(c.chunk_no as i32), &claim.fence, &outcome],
        "ending a chunk's claim",
    )?;
    Ok(())
}

/// A step this process holds: its name and fencing token, and the lease its checks renew.
#[derive(Debug, Clone)]
pub struct StepFence {
    pub job: String,
    pub step: String,
    pub fence: i64,
    pub lease: f64,
}

impl StepFence {
    /// Checks, inside the caller's transaction, that this process still holds the step (and
    /// renews its lease); otherwise `Error::Fenced`, and the caller's transaction rolls back.
    /// Called after the step's own statements, just before the commit, so the step's row is
    /// locked only for the moment of the commit.
    pub fn check(&self, conn: &mut PgConn) -> Result<()> {
        let n = conn.execute(
            "UPDATE rangecopy.steps SET lease_until = now() + $4::float8 * interval '1 second'
              WHERE job = $1 AND step = $2 AND fence = $3",
            &[&self.job, &self.step, &self.fence, &self.lease],
            "checking the step's claim",
        )?;
        if n == 1 {
            Ok(())
        } else {
            Err(Error::Fenced(format!("job {}: step {}", self.job, self.step)))
        }
    }
}

/// Claims a step of the job (`plan:<table_no>`, `finalize:<table_no>`, `after`) unless another
/// process holds its lease or it is done; the caller has checked that the step is due.
pub fn claim_step(
    conn: &mut PgConn,
    job: &str,
    run: &str,
    step: &str,
    worker: &str,
    lease: f64,
) -> Result<Option<StepFence>> {
    let row = conn.query_opt(
        &format!(
            "INSERT INTO rangecopy.steps AS x (job, step, owner, fence, lease_until)
             SELECT $1, $2, $3, 1, now() + $4::float8 * interval '1 second'
              WHERE EXISTS (SELECT 1 FROM rangecopy.jobs j WHERE j.job = $1 AND j.started_at::text = $5)
             ON CONFLICT (job, step) DO UPDATE SET owner = EXCLUDED.owner, fence = x.fence + 1,
                    lease_until = EXCLUDED.lease_until
              WHERE NOT x.done AND {}
             RETURNING fence",
            lease_free("x", 3)
        ),
        &[&job, &step, &worker, &lease, &run],
        "claiming a step of the job",
    )?;
    Ok(row.map(|r| StepFence { job: job.to_string(), step: step.to_string(), fence: r.get(0), lease }))
}

/// Lets a step go (its work is finished, or given up), if this process still holds it.
pub fn release_step(conn: &mut PgConn, fence: &StepFence) -> Result<()> {
    conn.execute(
        "UPDATE rangecopy.steps SET lease_until = NULL WHERE job = $1 AND step = $2 AND fence = $3",
        &[&fence.job, &fence.step, &fence.fence],
        "letting a step of the job go",
    )
    .map(|_| ())
}

/// Records the job's last step done, and the job itself done unless the starting process is
/// to verify it first (`copy --verify` records it done once verified).
pub fn finish_after(conn: &mut PgConn, fence: &StepFence, job_done: bool) -> Result<()> {
    conn.transaction("recording the job's work done", |conn| {
        fence.check(conn)?;
        conn.execute(
            "UPDATE rangecopy.steps SET done = true, lease_until = NULL WHERE job = $1 AND step = $2",
            &[&fence.job, &fence.step],
            "recording the job's work done",
        )?;
        if job_done {
            set_job_status(conn, &fence.job, "done", None)?;
        }
        Ok(())
    })
}

/// One table's standing, as the claiming loop sees it.
#[derive(Debug, Clone)]
pub struct TableStanding {
    pub table_no: usize,
    pub plan_complete: bool,
    pub phase: String,
    /// Whether some of its chunks are not done.
    pub open: bool,
}

/// What the claiming loop needs to know when no chunk was free.
#[derive(Debug, Clone)]
pub struct JobStanding {
    pub tables: Vec<TableStanding>,
    /// The job's last step (objects after the load, P1) is done.
    pub after_done: bool,
    /// The recorded status (`failed` stops every process) and its error; `None` once the job
    /// is gone.
    pub status: Option<(String, Option<String>)>,
    /// When the job was set up: another value means it was started over (`--restart`) since.
    pub started_at: Option<String>,
}

pub fn job_standing(conn: &mut PgConn, job: &str) -> Result<JobStanding> {
    let what = "reading where the job stands";
    let rows = conn.query(
        "SELECT table_no, plan_complete, phase,
                EXISTS (SELECT 1 FROM rangecopy.chunks c
                         WHERE c.job = t.job AND c.table_no = t.table_no AND c.status = 'pending')
           FROM rangecopy.tables t WHERE job = $1 ORDER BY table_no",
        &[&job],
        what,
    )?;
    let tables = rows
        .iter()
        .map(|r| TableStanding {
            table_no: r.get::<_, i32>(0) as usize,
            plan_complete: r.get(1),
            phase: r.get(2),
            open: r.get(3),
        })
        .collect();
    let row = conn.query_opt(
        "SELECT status, last_error,
                EXISTS (SELECT 1 FROM rangecopy.steps s WHERE s.job = j.job AND s.step = 'after' AND s.done),
                started_at::text
           FROM rangecopy.jobs j WHERE job = $1",
        &[&job],
        what,
    )?;
    Ok(JobStanding {
        tables,
        after_done: row.as_ref().is_some_and(|r| r.get(2)),
        started_at: row.as_ref().map(|r| r.get(3)),
        status: row.map(|r| (r.get(0), r.get(1))),
    })
}

/// Where a table's planning goes on: after its last recorded chunk, or from the start; `None`
/// once its planning is complete.
pub fn plan_cursor(conn: &mut PgConn, job: &str, table_no: usize) -> Result<Option<PlanCursor>> {
    let row = conn.query_one(
        "SELECT t.plan_complete, c.chunk_no, c.hi, c.chunk_no IS NOT NULL
           FROM rangecopy.tables t
           LEFT JOIN LATERAL (SELECT chunk_no, hi FROM rangecopy.chunks c
                               WHERE c.job = t.job AND c.table_no = t.table_no ORDER BY chunk_no DESC LIMIT 1) c ON true
          WHERE t.job = $1 AND t.table_no = $2",
        &[&job, &(table_no as i32)],
        "reading where a table's planning stands",
    )?;
    let (complete, last_no, hi, any): (bool, Option<i32>, Bound, bool) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    Ok(match (complete, any) {
        (true, _) => None,
        (false, false) => Some(PlanCursor::start()),
        // A chunk that runs to the end was the last one; its table's planning is complete.
        (false, true) if hi.is_none() => None,
        (false, true) => Some(PlanCursor { next_chunk_no: last_no.unwrap_or(0) as u32 + 1, lo: hi }),
    })
}

/// How many of the job's chunks wait for a claim, counting up to `limit`.
pub fn unclaimed_chunks(conn: &mut PgConn, job: &str, limit: i64) -> Result<i64> {
    let row = conn.query_one(
        "SELECT count(*) FROM (SELECT 1 FROM rangecopy.chunks
                                WHERE job = $1 AND status = 'pending' AND (lease_until IS NULL OR lease_until < now())
                                LIMIT $2) x",
        &[&job, &limit],
        "counting the chunks planned ahead",
    )?;
    Ok(row.get(0))
}

/// Lets workers join the job: its set-up is done and P0 recorded.
pub fn open_to_workers(conn: &mut PgConn, job: &str) -> Result<()> {
    conn.execute(
        "UPDATE rangecopy.jobs SET open_to_workers = true WHERE job = $1",
        &[&job],
        "opening the job to workers",
    )
    .map(|_| ())
}

/// Whether the job's starting process has set it up for workers to join.
pub fn is_open_to_workers(conn: &mut PgConn, job: &str) -> Result<bool> {
    let row = conn.query_opt(
        "SELECT open_to_workers FROM rangecopy.jobs WHERE job = $1",
        &[&job],
        "reading whether the job takes workers",
    )?;
    Ok(row.is_some_and(|r| r.get(0)))
}

/// Takes this process's lock (held for the life of `conn`: while it is held, the leases of
/// the process are not taken over before they run out) and records the process among the
/// job's workers.
pub fn register_worker(conn: &mut PgConn, job: &str, worker: &str, host: &str, threads: usize) -> Result<()> {
    let what = "registering this process among the job's workers";
    // After a lost connection the old session may hold the lock a while longer (until its
    // backend notices): it stands for this process meanwhile.
    conn.query_one(
        "SELECT pg_try_advisory_lock(hashtext('rangecopy worker:' || $1), hashtext($2))",
        &[&job, &worker],
        what,
    )?;
    conn.execute(
        "INSERT INTO rangecopy.workers (job, worker, host, pid, threads) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (job, worker) DO UPDATE SET heartbeat_at = now(), threads = EXCLUDED.threads",
        &[&job, &worker, &host, &(std::process::id() as i32), &(threads as i32)],
        what,
    )?;
    Ok(())
}

/// Renews the leases this process holds (chunks and steps), and records its heartbeat.
pub fn heartbeat(
    conn: &mut PgConn,
    job: &str,
    worker: &str,
    lease: f64,
    rows_done: i64,
    rows_per_sec: f64,
) -> Result<()> {
    let what = "renewing this process's claims";
    conn.execute(
        "WITH c AS (UPDATE rangecopy.chunks SET lease_until = now() + $3::float8 * interval '1 second'
                     WHERE job = $1 AND owner = $2 AND status = 'pending' AND lease_until IS NOT NULL RETURNING 1),
              s AS (UPDATE rangecopy.steps SET lease_until = now() + $3::float8 * interval '1 second'
                     WHERE job = $1 AND owner = $2 AND NOT done AND lease_until IS NOT NULL)
         UPDATE rangecopy.workers SET heartbeat_at = now(), chunks_held = (SELECT count(*) FROM c),
                rows_done = $4, rows_per_sec = $5
          WHERE job = $1 AND worker = $2",
        &[&job, &worker, &lease, &rows_done, &rows_per_sec],
        what,
    )?;
    Ok(())
}

/// The worker threads of the job's live processes (heartbeat within two leases) other than
/// this one: the job's rate limits are shared out in proportion to threads.
pub fn other_threads(conn: &mut PgConn, job: &str, worker: &str, lease: f64) -> Result<u64> {
    let row = conn.query_one(
        "SELECT coalesce(sum(threads), 0)::int8 FROM rangecopy.workers
          WHERE job = $1 AND worker <> $2 AND heartbeat_at > now() - 2 * $3::float8 * interval '1 second'",
        &[&job, &worker, &lease],
        "reading the job's other workers",
    )?;
    Ok(row.get::<_, i64>(0).max(0) as u64)
}

/// Takes a process that ends its run off the job's list of workers.
pub fn leave(conn: &mut PgConn, job: &str, worker: &str) -> Result<()> {
    conn.execute(
        "DELETE FROM rangecopy.workers WHERE job = $1 AND worker = $2",
        &[&job, &worker],
        "taking this process off the job's workers",
    )?;
    Ok(())
}

/// Rows and bytes of the job's chunks that other processes than `worker` committed since
/// `worker` joined.
pub fn done_by_others(conn: &mut PgConn, job: &str, worker: &str) -> Result<(u64, u64)> {
    let row = conn.query_one(
        "SELECT coalesce(sum(c.rows), 0)::int8, coalesce(sum(c.bytes), 0)::int8
           FROM rangecopy.claims k
           JOIN rangecopy.chunks c ON (c.job, c.table_no, c.chunk_no) = (k.job, k.table_no, k.chunk_no)
          WHERE k.job = $1 AND k.outcome = 'done' AND k.worker <> $2
            AND k.claimed_at >= (SELECT started_at FROM rangecopy.workers WHERE job = $1 AND worker = $2)",
        &[&job, &worker],
        "counting the rows other processes copied",
    )?;
    Ok((row.get::<_, i64>(0).max(0) as u64, row.get::<_, i64>(1).max(0) as u64))
}

/// A live worker process of a job, for `status`.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerRecord {
    pub worker: String,
    pub host: String,
    pub pid: i32,
    pub threads: i32,
    pub chunks_held: i32,
    pub rows_done: i64,
    pub rows_per_sec: f64,
    /// Seconds since its last heartbeat.
    pub heartbeat_age: f64,
}

/// The job's processes whose heartbeat is recent (within a minute, whatever their lease).
pub fn live_workers(conn: &mut PgConn, job: &str) -> Result<Vec<WorkerRecord>> {
    if conn.query_one("SELECT to_regclass('rangecopy.workers') IS NULL", &[], "reading the job's workers")?.get(0) {
        return Ok(Vec::new());
    }
    let rows = conn.query(
        "SELECT worker, host, pid, threads, chunks_held, rows_done, rows_per_sec,
                extract(epoch FROM now() - heartbeat_at)::float8
           FROM rangecopy.workers WHERE job = $1 AND heartbeat_at > now() - interval '1 minute' ORDER BY started_at",
        &[&job],
        "reading the job's workers",
    )?;
    Ok(rows
        .iter()
        .map(|r| WorkerRecord {
            worker: r.get(0),
            host: r.get(1),
            pid: r.get(2),
            threads: r.get(3),
            chunks_held: r.get(4),
            rows_done: r.get(5),
            rows_per_sec: r.get(6),
            heartbeat_age: r.get(7),
        })
        .collect())
}

/// A chunk whose first holder did not commit it: its lease ran out (or its commit was refused)
/// and another process took it over.
#[derive(Debug, Clone, Serialize)]
pub struct TakenOver {
    pub table_no: usize,
    pub chunk_no: u32,
    /// The holders in claim order, each with how its claim ended.
    pub claims: Vec<String>,
}

pub fn taken_over(conn: &mut PgConn, job: &str) -> Result<Vec<TakenOver>> {
    if conn.query_one("SELECT to_regclass('rangecopy.claims') IS NULL", &[], "reading the job's claims")?.get(0) {
        return Ok(Vec::new());
    }
    let rows = conn.query(
        "SELECT table_no, chunk_no, array_agg(worker || ' ' || outcome ORDER BY fence)
           FROM rangecopy.claims WHERE job = $1
          GROUP BY table_no, chunk_no
         HAVING count(*) FILTER (WHERE outcome IN ('released', 'fenced')) > 0
          ORDER BY table_no, chunk_no",
        &[&job],
        "reading the job's claims",
    )?;
    Ok(rows
        .iter()
        .map(|r| TakenOver {
            table_no: r.get::<_, i32>(0) as usize,
            chunk_no: r.get::<_, i32>(1) as u32,
            claims: r.get(2),
        })
        .collect())
}
