//! Throttling of a real copy: `--max-rows-per-sec` and `--max-bytes-per-sec` are never
//! exceeded and pace the run evenly, `rangecopy throttle --pause/--unpause` holds and releases
//! a running job, `--throttle-query` holds the copy while its number is above the limit,
//! `--max-lag` on a primary copies normally, and `verify` honours the rate too.
//!
//! Rates are checked from the state's own chunk timestamps (`started_at` is the chunk
//! transaction's start, before its first block; `finished_at` the clock at its done-mark), so
//! what is asserted is a guarantee of the pacing, not a wall-clock speed: the limit is never
//! exceeded on any window, and a run takes at least rows/rate. How close to the limit a run
//! gets depends on the machine; that lower band is only asserted when an unthrottled run of
//! the same table just showed the machine has three times the capacity.

use std::time::{Duration, Instant};

use crate::common::done_rows;
use crate::common::{
    assert_same_table, assert_writes_nothing, connect, exec, run, scalar, setup, wait_until, Run, TestDbs,
};

const ROWS: i64 = 200_000;
const CHUNK_ROWS: &str = "5000";

/// `t` with `rows` rows of about 50 bytes, analyzed (the block size follows the estimate).
pub fn rows_table(db: &TestDbs, rows: i64) {
    exec(
        &db.source,
        &format!(
            "CREATE TABLE t (id bigint PRIMARY KEY, v text);
             INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, {rows}) g;
             ANALYZE t;"
        ),
    );
}

/// How a finished job's chunks were paced, in `unit` (`rows` or `bytes`) of the chunks table.
#[derive(Debug)]
struct Pacing {
    total: i64,
    /// From the first chunk's start to the last chunk's done-mark, seconds.
    span: f64,
    /// Over every window of at least a second from a chunk's start to a chunk's done-mark: the
    /// most units of the chunks wholly inside it beyond what `rate` allows in it.
    worst_excess: f64,
    /// Units of the chunks done in the middle half of the span, per second.
    middle_rate: f64,
}

fn pacing(target: &str, job: &str, unit: &str, rate: f64) -> Pacing {
    let sql = format!(
        "WITH c AS (SELECT started_at s, finished_at f, {unit}::float8 u FROM rangecopy.chunks
                     WHERE job = $1 AND status = 'done'),
              w AS (SELECT a.s lo, z.f hi, extract(epoch FROM z.f - a.s)::float8 len FROM c a, c z
                     WHERE z.f - a.s >= interval '1 s'),
              x AS (SELECT max((SELECT sum(u) FROM c WHERE c.s >= w.lo AND c.f <= w.hi) - $2 * w.len) excess FROM w),
              b AS (SELECT min(s) t0, max(f) t1 FROM c)
         SELECT (SELECT sum(u) FROM c)::int8,
                extract(epoch FROM b.t1 - b.t0)::float8,
                coalesce(x.excess, 0)::float8,
                (SELECT coalesce(sum(u), 0) FROM c WHERE c.f >= b.t0 + (b.t1 - b.t0) / 4
                                                     AND c.f < b.t0 + (b.t1 - b.t0) * 3 / 4)::float8
                  / nullif(extract(epoch FROM b.t1 - b.t0) / 2, 0)::float8
           FROM b, x"
    );
    let row = connect(target).query_one(&sql, &[&job, &rate]).expect("reading the chunks' timing");
    Pacing {
        total: row.get(0),
        span: row.get(1),
        worst_excess: row.get(2),
        middle_rate: row.get::<_, Option<f64>>(3).unwrap_or(0.0),
    }
}

/// Copies `t` unthrottled into a scratch target database: the rows per second (or bytes per
/// second of COPY data) this machine manages right now, whole run included.
fn capacity(db: &mut TestDbs, unit: &str) -> f64 {
    let scratch = db.extra_target("base");
    let started = Instant::now();
    db.copy_to(&scratch, &["t", "--job", "base", "--chunk-rows", CHUNK_ROWS, "--workers", "2", "--progress", "none"])
        .ok();
    let seconds = started.elapsed().as_secs_f64();
    let total: i64 = scalar(
        &scratch,
        &format!("SELECT sum({unit})::int8 FROM rangecopy.chunks WHERE job = 'base' AND status = 'done'"),
    );
    total as f64 / seconds
}

/// Runs a copy of `t` limited by `flag rate_text` (`rate` units of `unit` per second) and
/// checks that the limit held on every window and, when the machine has room, that the middle
/// of the run went at the limit.
fn assert_limit_holds(test: &str, flag: &str, rate_text: &str, rate: f64, unit: &str, slack: f64) {
    let Some(mut db) = setup(test) else { return };
    rows_table(&db, ROWS);
    let room = capacity(&mut db, unit);
    let started = Instant::now();
    let args =
        ["t", "--job", "paced", "--chunk-rows", CHUNK_ROWS, "--workers", "2", "--progress", "none", flag, rate_text];
    let out = db.copy_within(Duration::from_secs(120), &args).ok();
    let wall = started.elapsed().as_secs_f64();
    assert_eq!(assert_same_table(&db, "t", "t.id"), ROWS);
    let p = pacing(&db.target, "paced", unit, rate * 1.02);
    eprintln!("{test}: capacity {room:.0} {unit}/s, limit {rate:.0}, {p:?}, wall {wall:.2}s");
    let least = 0.9 * p.total as f64 / rate;
    assert!(wall >= least, "{} {unit} at {rate:.0}/s took {wall:.2}s, less than {least:.2}s:\n{out:?}", p.total);
    assert!(p.span >= least, "the chunks were copied in {:.2}s, less than {least:.2}s: {p:?}", p.span);
    assert!(
        p.worst_excess <= slack,
        "some window of the run went faster than {rate:.0} {unit}/s, by {:.0} {unit} (allowed: {slack}): {p:?}",
        p.worst_excess
    );
    assert!(p.middle_rate <= rate * 1.2, "the middle of the run went at {:.0} {unit}/s: {p:?}", p.middle_rate);
    if room >= 3.0 * rate {
        assert!(
            p.middle_rate >= rate * 0.8,
            "the middle of the run went at {:.0} {unit}/s, below 80% of the limit {rate:.0} although an \
             unthrottled run managed {room:.0}: {p:?}",
            p.middle_rate
        );
    } else {
        eprintln!("note: {test}: the machine is too busy ({room:.0} {unit}/s) to check the rate's lower band");
    }
}

#[test]
fn max_rows_per_sec_is_never_exceeded_and_paces_the_run_evenly() {
    // A block carries about a twentieth of a second of budget: 2,000 rows at 40k/s.
    assert_limit_holds("throttle_rows", "--max-rows-per-sec", "40k", 40_000.0, "rows", 5_000.0);
}

#[test]
fn max_bytes_per_sec_is_never_exceeded_and_paces_the_run_evenly() {
    // 2 MiB/s: blocks of about 100 KiB, which may run over by one network message.
    assert_limit_holds("throttle_bytes", "--max-bytes-per-sec", "2M", 2.0 * 1024.0 * 1024.0, "bytes", 256.0 * 1024.0);
}

/// `rangecopy throttle --target T --job J ARGS…`.
fn throttle(db: &TestDbs, job: &str, args: &[&str]) -> Run {
    let mut all = vec!["throttle", "--target", &db.target, "--job", job];
    all.extend_from_slice(args);
    run(&all)
}

#[test]
fn pause_holds_a_running_job_and_unpause_lets_it_finish() {
    let Some(db) = setup("throttle_pause") else { return };
    rows_table(&db, ROWS);
    let job = "held";
    // Slow enough (about 5 s) that the pause surely lands mid-copy.
    let mut copy = db.spawn_copy(&[
        "t",
        "--job",
        job,
        "--chunk-rows",
        CHUNK_ROWS,
        "--workers",
        "2",
        "--max-rows-per-sec",
        "40k",
        "--progress",
        "lines",
        "--progress-interval",
        "0.2",
    ]);
    let going = wait_until(Duration::from_secs(60), || done_rows(&db.target, job) >= 10_000);
    assert!(going, "the copy never got going:\n{}", copy.stderr());
    let out = throttle(&db, job, &["--pause"]).ok();
    assert!(out.stderr.contains("paused"), "the command should say the job is paused:\n{out:?}");

    // Within two seconds (a control tick, and the blocks already granted) nothing more commits.
    std::thread::sleep(Duration::from_millis(2500));
    let held = done_rows(&db.target, job);
    assert!(held < ROWS, "the copy finished before the pause took effect");
    let status = db.status(job).ok();
    assert!(status.stdout.contains("paused"), "status should show the pause:\n{status:?}");
    // The rate can change while paused, and status shows it.
    throttle(&db, job, &["--max-rows-per-sec", "50k"]).ok();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(done_rows(&db.target, job), held, "rows were committed while the job was paused");
    assert_eq!(copy.try_wait(), None, "the paused copy ended:\n{}", copy.stderr());
    let status = db.status(job).ok();
    assert!(status.stdout.contains("paused") && status.stdout.contains("50000 rows/s"), "{status:?}");
    assert!(copy.stderr().contains("paused by `rangecopy throttle --pause`"), "progress should say why it is held");

    throttle(&db, job, &["--unpause"]).ok();
    let run = copy.wait(Duration::from_secs(120));
    assert_eq!(run.code, 0, "the unpaused copy should finish:\n{run:?}");
    assert_eq!(assert_same_table(&db, "t", "t.id"), ROWS);
    assert_eq!(scalar::<i64>(&db.target, "SELECT count(*) - count(DISTINCT id) FROM t"), 0);
    let status = db.status(job).ok();
    assert!(status.stdout.contains(&format!("job {job}: done")) && !status.stdout.contains("paused"), "{status:?}");
}

#[test]
fn throttle_command_refuses_an_unknown_job_and_a_missing_change() {
    let Some(db) = setup("throttle_refusals") else { return };
    rows_table(&db, 100);
    // No state at all on the target, then a state without that job.
    throttle(&db, "nope", &["--pause"]).refused(&["nope"]);
    db.copy(&["--job", "other", "--progress", "none"]).ok();
    assert_writes_nothing(&db.target, || throttle(&db, "nope", &["--pause"]).refused(&["nope"]));
    assert_writes_nothing(&db.target, || throttle(&db, "other", &[]).refused(&["--pause"]));
    assert_writes_nothing(&db.target, || throttle(&db, "other", &["--pause", "--unpause"]).refused(&["--unpause"]));
    assert_writes_nothing(&db.target, || {
        throttle(&db, "other", &["--max-rows-per-sec", "fast"]).refused(&["--max-rows-per-sec"])
    });
}

#[test]
fn throttle_query_holds_the_copy_until_its_number_drops() {
    let Some(db) = setup("throttle_query") else { return };
    rows_table(&db, ROWS);
    exec(&db.source, "CREATE TABLE gate (n int); INSERT INTO gate VALUES (1);");
    let job = "gated";
    // The rate limit only makes the copy last long enough to watch; the gate is closed from the start.
    let mut copy = db.spawn_copy(&[
        "t",
        "--job",
        job,
        "--chunk-rows",
        CHUNK_ROWS,
        "--workers",
        "2",
        "--max-rows-per-sec",
        "40k",
        "--throttle-query",
        "SELECT n FROM public.gate",
        "--throttle-above",
        "0",
        "--progress",
        "lines",
        "--progress-interval",
        "0.2",
    ]);
    let set_up = wait_until(Duration::from_secs(60), || {
        scalar::<bool>(&db.target, "SELECT to_regclass('rangecopy.jobs') IS NOT NULL")
            && scalar::<i64>(&db.target, "SELECT count(*) FROM rangecopy.jobs WHERE job = 'gated'") == 1
    });
    assert!(set_up, "the job was never set up:\n{}", copy.stderr());
    std::thread::sleep(Duration::from_millis(2500));
    let before_gate_checked = done_rows(&db.target, job);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(done_rows(&db.target, job), before_gate_checked, "rows were committed while the gate was closed");
    assert_eq!(copy.try_wait(), None, "the gated copy ended:\n{}", copy.stderr());
    assert!(
        copy.stderr().contains("paused: --throttle-query above --throttle-above"),
        "progress should say why the copy is held:\n{}",
        copy.stderr()
    );

    exec(&db.source, "UPDATE gate SET n = 0");
    let run = copy.wait(Duration::from_secs(120));
    assert_eq!(run.code, 0, "the copy should finish once the gate opens:\n{run:?}");
    assert_eq!(assert_same_table(&db, "t", "t.id"), ROWS);
    // Regression: the query's first answer is known before the first chunk; a gate closed at
    // the start holds the copy from its start, not from the first control tick a second later.
    assert_eq!(before_gate_checked, 0, "rows were committed before the closed gate was first applied");
}

/// A user's throttle query names their tables as they would in psql: along their search path.
#[test]
fn throttle_query_resolves_names_along_the_users_search_path() {
    let Some(db) = setup("throttle_query_path") else { return };
    rows_table(&db, 1000);
    exec(&db.source, "CREATE TABLE gate (n int); INSERT INTO gate VALUES (0);");
    db.copy(&["--progress", "none", "--throttle-query", "SELECT n FROM gate", "--throttle-above", "0"]).ok();
    assert_same_table(&db, "t", "t.id");
}

#[test]
fn a_bad_throttle_query_is_refused_before_anything_is_written() {
    let Some(db) = setup("throttle_query_bad") else { return };
    rows_table(&db, 1000);
    for (query, word) in [("SELEC n FROM nowhere", "--throttle-query"), ("SELECT 'many'", "not a number")] {
        assert_writes_nothing(&db.target, || {
            db.copy(&["--progress", "none", "--throttle-query", query, "--throttle-above", "0"]).refused(&[word])
        });
    }
    assert_writes_nothing(&db.target, || db.copy(&["--throttle-query", "SELECT 1"]).refused(&["--throttle-above"]));
}

#[test]
fn max_lag_on_a_primary_copies_and_an_unreachable_lag_replica_is_refused() {
    let Some(db) = setup("throttle_lag") else { return };
    rows_table(&db, 20_000);
    let replica = "postgres://rangecopy:nothing-here@127.0.0.1:1/none";
    let run = assert_writes_nothing(&db.target, || {
        db.copy(&["--progress", "none", "--max-lag", "5", "--lag-replica", replica, "--connect-timeout", "2"])
            .refused(&["127.0.0.1:1"])
    });
    assert!(!run.stderr.contains("nothing-here"), "the replica's password was printed:\n{run:?}");
    assert_writes_nothing(&db.target, || db.copy(&["--lag-replica", &db.source]).refused(&["--max-lag"]));
    // The source is a primary: its lag is zero and the copy is never held.
    let out =
        db.copy(&["--progress", "lines", "--progress-interval", "0.2", "--max-lag", "5", "--chunk-rows", "2000"]).ok();
    assert!(!out.stderr.contains("paused"), "a primary has no lag to wait for:\n{out:?}");
    assert_same_table(&db, "t", "t.id");
}

#[test]
fn verify_with_a_row_limit_takes_its_time_and_finds_the_copy_identical() {
    let Some(db) = setup("throttle_verify") else { return };
    let rows = 100_000;
    rows_table(&db, rows);
    db.copy(&["--job", "v", "--chunk-rows", "10000", "--progress", "none"]).ok();
    let rate = 40_000.0;
    let started = Instant::now();
    let out =
        run(&["verify", "--source", &db.source, "--target", &db.target, "--job", "v", "--max-rows-per-sec", "40k"]);
    let took = started.elapsed().as_secs_f64();
    assert_eq!(out.code, 0, "the copy verifies identical:\n{out:?}");
    assert!(out.stdout.contains("identical"), "{out:?}");
    let least = 0.9 * rows as f64 / rate;
    assert!(took >= least, "verifying {rows} rows at {rate}/s took {took:.2}s, less than {least:.2}s:\n{out:?}");
}
