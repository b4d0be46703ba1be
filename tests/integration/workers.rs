//! Many processes sharing one job through the target's state: `rangecopy worker` processes on
//! this machine stand in for machines. Each test checks the two promises that matter, from
//! PostgreSQL itself: the target holds exactly the source's rows (count and `verify`), and the
//! claim history in `rangecopy.claims` has exactly one `done` claim per chunk, whatever
//! happened to the processes (killed, frozen past their lease, cut off from the target).
//!
//! Leases are short (`--lease 3`) and chunks small and slowed by the job's rate limit, so that
//! a chunk takes seconds and the faults land in the middle of one.

use std::process::Command;
use std::time::Duration;

use crate::common::{connect, exec, run, scalar, setup, wait_until, Running, TestDbs};
use crate::proxy::Proxy;
use crate::throttle::rows_table;

/// `rangecopy worker` for the test's job, in the background.
fn worker(db: &TestDbs, target: &str, job: &str, extra: &[&str]) -> Running {
    let mut args = vec![
        "worker",
        "--source",
        &db.source,
        "--target",
        target,
        "--job",
        job,
        "--workers",
        "1",
        "--lease",
        "3",
        "--progress",
        "none",
    ];
    args.extend_from_slice(extra);
    db.spawn(&args)
}

/// `rangecopy copy` of `t` for the test's job, in the background, one worker thread.
fn copy(db: &TestDbs, job: &str, chunk_rows: &str, rate: &str) -> Running {
    db.spawn_copy(&[
        "t",
        "--job",
        job,
        "--workers",
        "1",
        "--chunk-rows",
        chunk_rows,
        "--max-rows-per-sec",
        rate,
        "--lease",
        "3",
        "--progress",
        "none",
    ])
}

/// The name (`host:pid:random`) of the process with `pid` among the job's claims, once it
/// holds a running claim.
fn running_claim_of(target: &str, job: &str, pid: u32) -> Option<(String, i32, i64)> {
    let rows = connect(target)
        .query(
            "SELECT worker, chunk_no, fence FROM rangecopy.claims
              WHERE job = $1 AND outcome = 'running' AND split_part(worker, ':', 2) = $2",
            &[&job, &pid.to_string()],
        )
        .ok()?;
    rows.first().map(|r| (r.get(0), r.get(1), r.get(2)))
}

/// Waits (a minute at most) until the worker `w` holds a chunk; its claim as `running_claim_of`.
#[track_caller]
fn first_claim_of(target: &str, job: &str, w: &Running) -> (String, i32, i64) {
    let mut held = None;
    let found = wait_until(Duration::from_secs(60), || {
        held = running_claim_of(target, job, w.pid());
        held.is_some()
    });
    assert!(found, "the worker never held a chunk: {}", w.stderr());
    held.unwrap()
}

/// Asserts the job copied `t` exactly: the same rows on both sides (count, `verify`), every
/// chunk done, exactly one `done` claim per chunk. Returns the workers that did chunks.
#[track_caller]
fn assert_copied_once(db: &TestDbs, job: &str, rows: i64) -> Vec<String> {
    assert_eq!(scalar::<i64>(&db.target, "SELECT count(*) FROM t"), rows, "rows on the target");
    assert_eq!(scalar::<i64>(&db.target, "SELECT count(DISTINCT id) FROM t"), rows, "distinct keys on the target");
    let verified = run(&["verify", "--source", &db.source, "--target", &db.target, "--job", job]);
    assert_eq!(verified.code, 0, "{verified:?}");
    let mut c = connect(&db.target);
    let not_once: i64 = c
        .query_one(
            "SELECT count(*) FROM rangecopy.chunks c
              WHERE c.job = $1 AND (c.status <> 'done' OR (SELECT count(*) FROM rangecopy.claims k
                                     WHERE k.job = c.job AND k.table_no = c.table_no AND k.chunk_no = c.chunk_no
                                       AND k.outcome = 'done') <> 1)",
            &[&job],
        )
        .unwrap()
        .get(0);
    assert_eq!(not_once, 0, "chunks not done, or not done by exactly one claim");
    let stray: i64 = c
        .query_one("SELECT count(*) FROM rangecopy.claims WHERE job = $1 AND outcome = 'running'", &[&job])
        .unwrap()
        .get(0);
    assert_eq!(stray, 0, "claims still running once the job is done");
    c.query("SELECT DISTINCT worker FROM rangecopy.claims WHERE job = $1 AND outcome = 'done' ORDER BY 1", &[&job])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[test]
fn three_workers_and_the_copy_share_a_job_and_copy_every_chunk_once() {
    let Some(db) = setup("workers_share") else { return };
    rows_table(&db, 30_000);
    let job = "shared";
    // Started before the job exists: they wait for it, then join.
    let mut workers: Vec<Running> = (0..3).map(|_| worker(&db, &db.target, job, &["--wait", "60s"])).collect();
    // With --verify the job is recorded done by the starting process once verified, whoever
    // ran its last step.
    let mut starter = db.spawn_copy(&[
        "t",
        "--job",
        job,
        "--workers",
        "1",
        "--chunk-rows",
        "500",
        "--max-rows-per-sec",
        "6000",
        "--lease",
        "3",
        "--progress",
        "none",
        "--verify",
    ]);
    // status lists the processes while they work.
    let listed = wait_until(Duration::from_secs(60), || {
        let s = db.status(job);
        s.stdout.lines().filter(|l| l.contains(" pid ") && l.contains("last heartbeat")).count() == 4
    });
    assert!(listed, "status never listed the four processes: {:?}", db.status(job));
    let started = starter.wait(Duration::from_secs(120));
    assert_eq!(started.code, 0, "{started:?}");
    for w in &mut workers {
        let done = w.wait(Duration::from_secs(60));
        assert_eq!(done.code, 0, "{done:?}");
        assert!(done.stderr.contains("waiting for job"), "{done:?}");
        assert!(done.stderr.contains("is done; worker"), "{done:?}");
    }
    let did = assert_copied_once(&db, job, 30_000);
    assert!(did.len() >= 2, "only {did:?} copied chunks");
    // The starting process's summary tells its own rows from the others'.
    assert!(started.stderr.contains("by this process; other processes (rangecopy worker) copied"), "{started:?}");
    // The indexes were built once the table was loaded, whoever did it.
    assert_eq!(scalar::<i64>(&db.target, "SELECT count(*) FROM pg_index WHERE indrelid = 't'::regclass"), 1);
    let status = db.status(job).ok();
    assert!(status.stdout.contains("job shared: done"), "{status:?}");
    // Processes that ended are no longer listed as working on it.
    assert!(!status.stdout.contains("last heartbeat"), "{status:?}");
}

#[test]
fn a_worker_killed_mid_chunk_loses_it_to_another_and_nothing_is_lost_or_doubled() {
    let Some(db) = setup("workers_kill9") else { return };
    rows_table(&db, 15_000);
    let job = "killed";
    let mut victim = worker(&db, &db.target, job, &[]);
    let mut other = worker(&db, &db.target, job, &[]);
    // Three processes of one thread at 1500 rows/s: a chunk of 1000 rows takes two seconds.
    let mut starter = copy(&db, job, "1000", "1500");
    let (name, chunk_no, fence) = first_claim_of(&db.target, job, &victim);
    assert_eq!(victim.kill9(), None, "the worker should still have been running");
    let started = starter.wait(Duration::from_secs(120));
    assert_eq!(started.code, 0, "{started:?}");
    assert_eq!(other.wait(Duration::from_secs(60)).code, 0);
    assert_copied_once(&db, job, 15_000);
    // Its chunk was taken over and finished by another process (unless its commit had gone
    // through in the instant before the kill).
    let mut c = connect(&db.target);
    let outcome: String = c
        .query_one(
            "SELECT outcome FROM rangecopy.claims WHERE job = $1 AND chunk_no = $2 AND fence = $3",
            &[&job, &chunk_no, &fence],
        )
        .unwrap()
        .get(0);
    if outcome != "done" {
        assert_eq!(outcome, "released", "the killed worker's claim");
        let by: String = c
            .query_one(
                "SELECT worker FROM rangecopy.claims WHERE job = $1 AND chunk_no = $2 AND outcome = 'done'",
                &[&job, &chunk_no],
            )
            .unwrap()
            .get(0);
        assert_ne!(by, name, "the chunk should have been finished by another process");
        let status = db.status(job).ok();
        assert!(status.stdout.contains("taken over"), "{status:?}");
    }
}

#[test]
fn a_worker_frozen_past_its_lease_has_its_late_commit_refused_and_carries_on() {
    let Some(db) = setup("workers_sigstop") else { return };
    rows_table(&db, 20_000);
    let job = "frozen";
    let mut frozen = worker(&db, &db.target, job, &[]);
    let mut other = worker(&db, &db.target, job, &[]);
    let mut starter = copy(&db, job, "1000", "1500");
    let (name, chunk_no, fence) = first_claim_of(&db.target, job, &frozen);
    signal(frozen.pid(), "STOP");
    // Past its lease (3 s): another process claims the chunk again, with a higher token.
    let taken = wait_until(Duration::from_secs(30), || {
        scalar::<i64>(
            &db.target,
            &format!("SELECT count(*) FROM rangecopy.claims WHERE job = 'frozen' AND chunk_no = {chunk_no} AND fence > {fence}"),
        ) > 0
    });
    signal(frozen.pid(), "CONT");
    assert!(taken, "nobody took the frozen worker's chunk over");
    let started = starter.wait(Duration::from_secs(120));
    assert_eq!(started.code, 0, "{started:?}");
    assert_eq!(other.wait(Duration::from_secs(60)).code, 0);
    let thawed = frozen.wait(Duration::from_secs(60));
    assert_eq!(thawed.code, 0, "the thawed worker carries on and ends with the job: {thawed:?}");
    let outcome: String = scalar(
        &db.target,
        &format!(
            "SELECT outcome FROM rangecopy.claims WHERE job = 'frozen' AND chunk_no = {chunk_no} AND fence = {fence}"
        ),
    );
    assert_eq!(outcome, "fenced", "the late commit of {name}");
    assert!(thawed.stderr.contains("another rangecopy process took it over"), "{thawed:?}");
    assert_copied_once(&db, job, 20_000);
}

#[test]
fn a_worker_cut_off_from_the_target_loses_its_lease_and_the_job_completes() {
    let Some(db) = setup("workers_cut") else { return };
    rows_table(&db, 15_000);
    let job = "cut";
    let proxy = Proxy::start(&db.target);
    let through = proxy.url(&db.target);
    let mut cut = worker(&db, &through, job, &["--io-timeout", "4", "--retry-max-wait", "1"]);
    let mut other = worker(&db, &db.target, job, &[]);
    let mut starter = copy(&db, job, "1000", "1500");
    let (_, chunk_no, fence) = first_claim_of(&db.target, job, &cut);
    assert!(proxy.black_hole() > 0, "no connection of the worker went through the proxy");
    let started = starter.wait(Duration::from_secs(120));
    assert_eq!(started.code, 0, "{started:?}");
    assert_eq!(other.wait(Duration::from_secs(60)).code, 0);
    let after = cut.wait(Duration::from_secs(60));
    assert_eq!(after.code, 0, "{after:?}");
    let outcome: String = scalar(
        &db.target,
        &format!(
            "SELECT outcome FROM rangecopy.claims WHERE job = 'cut' AND chunk_no = {chunk_no} AND fence = {fence}"
        ),
    );
    assert!(["released", "fenced"].contains(&outcome.as_str()), "the cut-off worker's claim ended {outcome}");
    assert_copied_once(&db, job, 15_000);
}

/// Rows per second of the whole run from the state's chunk timestamps: the first chunk's start
/// to the last chunk's done-mark.
fn run_rate(target: &str, job: &str) -> f64 {
    scalar(
        target,
        &format!(
            "SELECT sum(rows)::float8 / extract(epoch FROM max(finished_at) - min(started_at))::float8
               FROM rangecopy.chunks WHERE job = '{job}' AND status = 'done'"
        ),
    )
}

#[test]
fn the_job_wide_rate_limit_holds_with_three_processes() {
    let Some(db) = setup("workers_rate") else { return };
    rows_table(&db, 300_000);
    let job = "paced";
    let mut workers: Vec<Running> = (0..2).map(|_| worker(&db, &db.target, job, &[])).collect();
    let mut starter = copy(&db, job, "5000", "20k");
    let started = starter.wait(Duration::from_secs(120));
    assert_eq!(started.code, 0, "{started:?}");
    for w in &mut workers {
        assert_eq!(w.wait(Duration::from_secs(60)).code, 0);
    }
    let did = assert_copied_once(&db, job, 300_000);
    assert_eq!(did.len(), 3, "every process should have copied chunks: {did:?}");
    let rate = run_rate(&db.target, job);
    assert!(rate <= 1.1 * 20_000.0, "the job ran at {rate:.0} rows/s, above its limit of 20000");
}

/// --throttle-query (and --max-lag) are watched by the process given them, and its hold is the
/// job's: while the gate is closed, no process of the job copies.
fn a_hold_holds_every_process(name: &str, watcher_is_the_copy: bool) {
    let Some(db) = setup(name) else { return };
    rows_table(&db, 40_000);
    exec(&db.source, "CREATE TABLE gate (n int); INSERT INTO gate VALUES (1);");
    let job = "held";
    let gate = ["--throttle-query", "SELECT n FROM gate", "--throttle-above", "0"];
    let mut w = worker(&db, &db.target, job, if watcher_is_the_copy { &[] } else { &gate });
    let mut copy_args = vec![
        "t",
        "--job",
        job,
        "--workers",
        "1",
        "--chunk-rows",
        "2000",
        "--max-rows-per-sec",
        "5k",
        "--lease",
        "3",
        "--progress",
        "none",
    ];
    if watcher_is_the_copy {
        copy_args.extend_from_slice(&gate);
    }
    let mut starter = db.spawn_copy(&copy_args);
    let both = wait_until(Duration::from_secs(60), || {
        scalar::<bool>(&db.target, "SELECT to_regclass('rangecopy.workers') IS NOT NULL")
            && scalar::<i64>(&db.target, &format!("SELECT count(*) FROM rangecopy.workers WHERE job = '{job}'")) == 2
    });
    assert!(both, "the worker never joined:\n{}\n{}", starter.stderr(), w.stderr());
    let held = wait_until(Duration::from_secs(30), || {
        db.status(job).stdout.contains("held: every process waits: --throttle-query")
    });
    assert!(held, "status never said the job is held: {:?}", db.status(job));
    let done = || {
        scalar::<i64>(
            &db.target,
            &format!("SELECT count(*) FROM rangecopy.chunks WHERE job = '{job}' AND status = 'done'"),
        )
    };
    // Each process applies the hold at its next control tick (a second); a chunk granted its
    // rows before may still commit.
    std::thread::sleep(Duration::from_secs(2));
    let before = done();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(done(), before, "chunks were copied while the gate was closed");
    if watcher_is_the_copy {
        // Closed from the job's start: the copy's first check comes before its first row, and
        // a joining worker's before its own.
        assert_eq!(before, 0, "chunks were copied although the gate was closed from the start");
    }
    assert_eq!(w.try_wait(), None, "the worker ended while held:\n{}", w.stderr());

    exec(&db.source, "UPDATE gate SET n = 0");
    assert_eq!(starter.wait(Duration::from_secs(120)).code, 0, "{}", starter.stderr());
    assert_eq!(w.wait(Duration::from_secs(60)).code, 0, "{}", w.stderr());
    let did = assert_copied_once(&db, job, 40_000);
    assert_eq!(did.len(), 2, "both processes should have copied once the gate opened: {did:?}");
}

#[test]
fn a_hold_of_the_starting_process_holds_every_worker() {
    a_hold_holds_every_process("workers_hold", true);
}

#[test]
fn a_hold_of_a_worker_holds_the_starting_process_too() {
    a_hold_holds_every_process("workers_hold_worker", false);
}

#[test]
fn a_worker_waits_for_its_job_refuses_another_source_and_leaves_a_done_job_alone() {
    let Some(mut db) = setup("workers_refusals") else { return };
    rows_table(&db, 1_000);
    let worker_args = |source: &str, target: &str, job: &str, wait: &str| {
        run(&["worker", "--source", source, "--target", target, "--job", job, "--wait", wait, "--progress", "none"])
    };
    // No such job within --wait: exit 2, naming it.
    let early = worker_args(&db.source, &db.target, "later", "1s");
    assert_eq!(early.code, 2, "{early:?}");
    assert!(early.stderr.contains("\"later\"") && early.stderr.contains("--wait"), "{early:?}");
    // A throttle query that does not run is refused at once.
    let bad_gate = run(&[
        "worker",
        "--source",
        &db.source,
        "--target",
        &db.target,
        "--job",
        "later",
        "--throttle-query",
        "SELEC n FROM nowhere",
        "--throttle-above",
        "0",
    ]);
    assert_eq!(bad_gate.code, 2, "{bad_gate:?}");
    assert!(bad_gate.stderr.contains("--throttle-query"), "{bad_gate:?}");
    db.copy(&["t", "--job", "later", "--progress", "none"]).ok();
    // Done already: exit 0 at once.
    let late = worker_args(&db.source, &db.target, "later", "1s");
    assert_eq!(late.code, 0, "{late:?}");
    assert!(late.stderr.contains("done already"), "{late:?}");
    // Another source than the job's: exit 2, nothing written.
    let other = db.extra_target("other");
    let before = crate::common::target_snapshot(&db.target);
    let wrong = worker_args(&other, &db.target, "later", "1s");
    assert_eq!(wrong.code, 2, "{wrong:?}");
    assert!(wrong.stderr.contains("copies from"), "{wrong:?}");
    assert_eq!(before, crate::common::target_snapshot(&db.target), "a refused worker wrote to the target");
    // A --consistent job's snapshot lives in its starting process.
    let snap = db.extra_target("snap");
    db.copy_to(&snap, &["t", "--job", "snap", "--consistent", "--progress", "none"]).ok();
    let consistent = worker_args(&db.source, &snap, "snap", "1s");
    assert_eq!(consistent.code, 2, "{consistent:?}");
    assert!(consistent.stderr.contains("--consistent"), "{consistent:?}");
}

fn signal(pid: u32, name: &str) {
    let sent = Command::new("kill").args([&format!("-{name}"), &pid.to_string()]).status().expect("running kill");
    assert!(sent.success(), "kill -{name} {pid}");
}
