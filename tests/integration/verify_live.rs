//! `rangecopy verify` while the source keeps changing: a writer changes the source while a
//! small applier replays each change on the target a second later (a replica with lag);
//! `--recheck` counts the lagging rows as in flight, not as differences, and still reports a
//! real divergence planted where the applier never writes. `--since-column/--min-age` leaves
//! recent rows out on either side and counts them; `--watch` keeps a history of passes that
//! `status` and the HTML report show.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{connect, exec, run, scalar, setup, texts, TestDbs};
use crate::verify::{assert_different, assert_identical, verify};

/// Rows of `live.t` at the start: ids 1..=ROWS. The writer changes ids up to `WRITTEN` and
/// inserts ids above `ROWS`; ids in between are never touched by it.
const ROWS: i32 = 2000;
const WRITTEN: i32 = 1500;
/// How long after a change the applier replays it on the target.
const LAG: Duration = Duration::from_secs(1);

/// A source table and its copy on the target (job `live`).
fn live_table(db: &TestDbs) {
    exec(
        &db.source,
        &format!(
            "CREATE SCHEMA live;
             CREATE TABLE live.t (id int PRIMARY KEY, v int NOT NULL, note text);
             INSERT INTO live.t SELECT g, g, 'row ' || g FROM generate_series(1, {ROWS}) g;"
        ),
    );
    db.copy(&["live.t", "--job", "live", "--chunk-rows", "500", "--workers", "2", "--progress", "none"]).ok();
}

/// A writer changing the source and an applier replaying each change on the target `LAG`
/// later: the writer writes until `finish` (at most `WRITING_AT_MOST`), the applier until it
/// has replayed every change.
struct LaggingReplica {
    stop: Arc<AtomicBool>,
    stop_writing: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<u64>>,
}

/// How long the writer goes on at most, should a test never call `finish`.
const WRITING_AT_MOST: Duration = Duration::from_secs(120);

/// How long the writer goes on after a rechecking verify starts: its first pass (well within
/// this time, however slow the machine) sees rows the applier has not replayed yet, and its
/// rechecks (`--recheck 5 --recheck-delay 2`, ten seconds) outlast the writer and the lag, so
/// every lagging row converges before the last one.
const WRITING_DURING_RECHECKS: Duration = Duration::from_secs(5);

impl LaggingReplica {
    fn start(db: &TestDbs) -> LaggingReplica {
        let stop = Arc::new(AtomicBool::new(false));
        let stop_writing = Arc::new(AtomicBool::new(false));
        let writing = stop_writing.clone();
        let (tx, rx) = mpsc::channel::<(i32, Instant)>();
        let source = db.source.clone();
        let writer = thread::spawn(move || {
            let mut c = connect(&source);
            let started = Instant::now();
            let mut next_id: i32 = c.query_one("SELECT max(id) + 1 FROM live.t", &[]).unwrap().get(0);
            let (mut seed, mut changes) = (12345u64 + next_id as u64, 0u64);
            while !writing.load(Ordering::SeqCst) && started.elapsed() < WRITING_AT_MOST {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let pick = (seed >> 33) as i32;
                let id = 1 + pick.rem_euclid(WRITTEN);
                let id = match pick.rem_euclid(10) {
                    0 => {
                        c.batch_execute(&format!("INSERT INTO live.t VALUES ({next_id}, 0, 'new')")).unwrap();
                        next_id += 1;
                        next_id - 1
                    }
                    1 => {
                        c.batch_execute(&format!("DELETE FROM live.t WHERE id = {id}")).unwrap();
                        id
                    }
                    _ => {
                        c.batch_execute(&format!("UPDATE live.t SET v = v + 1, note = 'changed' WHERE id = {id}"))
                            .unwrap();
                        id
                    }
                };
                changes += 1;
                // The change is committed: the applier may see it from now on.
                tx.send((id, Instant::now())).unwrap();
                thread::sleep(Duration::from_millis(20));
            }
            changes
        });
        let (source, target, halt) = (db.source.clone(), db.target.clone(), stop.clone());
        let applier = thread::spawn(move || {
            let (mut from, mut to) = (connect(&source), connect(&target));
            let mut applied = 0u64;
            // Ends once the writer has hung up and every change is replayed.
            while let Ok((id, at)) = rx.recv() {
                if halt.load(Ordering::SeqCst) {
                    break;
                }
                if let Some(wait) = (at + LAG).checked_duration_since(Instant::now()) {
                    thread::sleep(wait);
                }
                // Replays the row as the source holds it now, as CDC converges.
                let row = from.query("SELECT v, note FROM live.t WHERE id = $1", &[&id]).unwrap();
                match row.first() {
                    Some(r) => {
                        let (v, note): (i32, Option<String>) = (r.get(0), r.get(1));
                        to.query(
                            "INSERT INTO live.t VALUES ($1, $2, $3)
                             ON CONFLICT (id) DO UPDATE SET v = excluded.v, note = excluded.note",
                            &[&id, &v, &note],
                        )
                        .unwrap();
                    }
                    None => {
                        to.query("DELETE FROM live.t WHERE id = $1", &[&id]).unwrap();
                    }
                }
                applied += 1;
            }
            applied
        });
        LaggingReplica { stop, stop_writing, threads: vec![writer, applier] }
    }

    /// Stops the writer and waits for the applier to replay everything; returns how many
    /// changes were written.
    fn finish(mut self) -> u64 {
        self.stop_writing.store(true, Ordering::SeqCst);
        let mut counts = self.threads.drain(..).map(|t| t.join().expect("a replica thread"));
        let written = counts.next().unwrap_or_default();
        let applied = counts.next().unwrap_or_default();
        assert_eq!(written, applied, "the applier replays every change");
        written
    }
}

impl Drop for LaggingReplica {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn read_json(path: &std::path::Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("the JSON report")).expect("JSON")
}

fn table<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["tables"].as_array().unwrap().iter().find(|t| t["source_table"] == name).expect("the table in the report")
}

/// Runs `verify live.t --recheck 5 --recheck-delay 2 --report JSON` while the replica's writer
/// goes on for `WRITING_DURING_RECHECKS`, then stops the writer; returns the run and how many
/// changes the writer made.
fn verify_while_writing(db: &TestDbs, replica: LaggingReplica, json: &str) -> (crate::common::Run, u64) {
    let args = ["live.t", "--workers", "2", "--recheck", "5", "--recheck-delay", "2", "--report", json];
    let mut all = vec!["verify", "--source", &db.source, "--target", &db.target];
    all.extend_from_slice(&args);
    let mut verifying = db.spawn(&all);
    thread::sleep(WRITING_DURING_RECHECKS);
    let written = replica.finish();
    (verifying.wait(Duration::from_secs(120)), written)
}

/// Lagging rows converge when read again: none is a difference, some are in flight; the
/// same run without rechecks reports them, and a row the applier never touches, changed on
/// the target, is reported after every recheck (exit 1).
#[test]
fn rechecked_rows_that_converge_are_in_flight_and_a_planted_divergence_is_still_reported() {
    let Some(db) = setup("verify_live_recheck") else { return };
    live_table(&db);
    let json = db.dir.join("r.json");
    let json_arg = json.to_str().unwrap();

    // Premise: with the replica lagging, a single comparison sees differences.
    let replica = LaggingReplica::start(&db);
    thread::sleep(Duration::from_millis(1500));
    let once = verify(&db, &["live.t", "--workers", "2"]);
    assert_different(once);
    let rechecked = verify_while_writing(&db, replica, json_arg);
    let written = rechecked.1;
    let rechecked = rechecked.0;
    assert!(written > 50, "the writer made {written} changes");
    let rechecked = assert_identical(rechecked);
    let report = read_json(&json);
    let t = table(&report, "live.t");
    assert_eq!(t["differing_rows"], 0, "{report:#}");
    assert!(t["in_flight"].as_u64().unwrap() > 0, "some rows lagged: {report:#}");
    assert_eq!(report["rows_divergent"], 0);
    assert_eq!(report["rows_in_flight"], t["in_flight"]);
    assert_eq!(report["consistency"].as_f64(), Some(100.0));
    assert!(report["rechecks"].as_u64().unwrap() >= 1, "{report:#}");
    assert!(rechecked.stdout.contains("in flight"), "{}", rechecked.stdout);

    // A real divergence where the applier never writes: reported after all rechecks.
    exec(&db.target, &format!("UPDATE live.t SET v = -1 WHERE id = {}", WRITTEN + 100));
    let replica = LaggingReplica::start(&db);
    thread::sleep(Duration::from_millis(1500));
    let (run, _) = verify_while_writing(&db, replica, json_arg);
    let run = assert_different(run);
    let report = read_json(&json);
    let t = table(&report, "live.t");
    assert_eq!(t["differing_rows"], 1, "only the planted row is divergent: {report:#}");
    assert!(t["in_flight"].as_u64().unwrap() > 0, "{report:#}");
    assert_eq!(report["rechecks"], 5, "a divergence that stays is read again every time");
    let diff = &t["diffs"][0];
    assert_eq!(diff["kind"], "changed");
    assert_eq!(diff["key"][0][1], (WRITTEN + 100).to_string(), "{diff}");
    assert!(run.stdout.contains("1 divergent"), "{}", run.stdout);
    let consistency = report["consistency"].as_f64().unwrap();
    assert!(consistency < 100.0 && consistency > 99.0, "{consistency}");
}

/// A table without a key is rechecked by its rows' hashes: a row changed on the source and
/// replayed on the target while verify waits is in flight.
#[test]
fn a_table_without_a_key_is_rechecked_whole() {
    let Some(db) = setup("verify_live_keyless") else { return };
    exec(
        &db.source,
        "CREATE TABLE bag (v int, note text); INSERT INTO bag SELECT g % 50, 'x' FROM generate_series(1, 3000) g;",
    );
    db.copy(&["bag", "--job", "bag", "--progress", "none"]).ok();
    exec(&db.source, "UPDATE bag SET note = 'late' WHERE v = 7");
    // The change reaches the target while verify waits for its first recheck: after its first
    // pass (six seconds is ample for 3000 rows, even on a loaded machine) and before its first
    // recheck (eight seconds after that pass).
    let target = db.target.clone();
    let applier = thread::spawn(move || {
        thread::sleep(Duration::from_secs(6));
        exec(&target, "UPDATE bag SET note = 'late' WHERE v = 7");
    });
    let json = db.dir.join("r.json");
    let run = verify(&db, &["bag", "--recheck", "3", "--recheck-delay", "8", "--report", json.to_str().unwrap()]);
    applier.join().unwrap();
    assert_identical(run);
    let t = table(&read_json(&json), "public.bag").clone();
    // 60 rows changed: each one missing (old) and one extra (new) until it converged.
    assert_eq!((t["differing_rows"].as_u64(), t["in_flight"].as_u64()), (Some(0), Some(120)), "{t:#}");
}

/// Rows changed within --min-age on either side are left out and counted per side; a table
/// without the column is compared whole; a column that is no timestamp is refused.
#[test]
fn since_column_leaves_out_recent_rows_on_either_side_and_counts_them() {
    let Some(db) = setup("verify_live_since") else { return };
    exec(
        &db.source,
        "CREATE TABLE orders (id int PRIMARY KEY, v int, updated_at timestamptz);
         INSERT INTO orders SELECT g, g, now() - interval '2 days' FROM generate_series(1, 1000) g;
         UPDATE orders SET updated_at = NULL WHERE id % 100 = 0;
         CREATE TABLE plain (id int PRIMARY KEY, v int);
         INSERT INTO plain SELECT g, g FROM generate_series(1, 100) g;
         CREATE TABLE stamped (id int PRIMARY KEY, updated_at text);
         INSERT INTO stamped VALUES (1, 'yesterday');",
    );
    db.copy(&["orders", "plain", "stamped", "--job", "s", "--progress", "none"]).ok();
    // Recent on the source only (not yet replicated), a new row on the source, and rows the
    // application wrote on the target only; one old row really differs.
    exec(&db.source, "UPDATE orders SET v = -v, updated_at = now() WHERE id IN (1, 2, 3, 500, 999)");
    exec(&db.source, "INSERT INTO orders VALUES (1001, 1, now())");
    exec(&db.target, "UPDATE orders SET v = 0, updated_at = now() WHERE id IN (10, 20, 30)");
    exec(&db.target, "UPDATE orders SET v = 7 WHERE id = 700");
    let json = db.dir.join("r.json");
    let since =
        ["orders", "plain", "--since-column", "updated_at", "--min-age", "1h", "--report", json.to_str().unwrap()];
    let run = assert_different(verify(&db, &since));
    let report = read_json(&json);
    let t = table(&report, "public.orders");
    assert_eq!(t["differing_rows"], 1, "only id 700 differs: {report:#}");
    assert_eq!(t["diffs"][0]["key"][0][1], "700");
    assert_eq!((t["left_out"]["source_rows"].as_u64(), t["left_out"]["target_rows"].as_u64()), (Some(6), Some(3)));
    assert!(table(&report, "public.plain").get("left_out").is_none(), "plain is compared whole");
    assert!(report["cutoff"].is_string());
    assert!(run.stdout.contains("public.plain: compared whole"), "{}", run.stdout);
    assert!(run.stdout.contains("6 on the source, 3 on the target"), "{}", run.stdout);
    // Without the filter every recent row is a difference too.
    exec(&db.target, "UPDATE orders SET v = 700 WHERE id = 700");
    let plain = assert_different(verify(&db, &["orders", "--report", json.to_str().unwrap()]));
    assert_eq!(table(&read_json(&json), "public.orders")["differing_rows"], 9, "{}", plain.stdout);
    assert_identical(verify(&db, &since[..6]));
    // A column that records no time is refused, before anything is compared.
    let bad = verify(&db, &["stamped", "--since-column", "updated_at", "--min-age", "5m"]);
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(bad.stderr.contains("not a timestamp"), "{bad:?}");
}

/// `--watch 1 --passes 3` records three passes; `status` shows the latest with how long it
/// has been consistent; a later watch carries the history on, and its HTML report shows the
/// trend.
#[test]
fn watch_records_its_passes_and_status_shows_the_latest() {
    let Some(db) = setup("verify_live_watch") else { return };
    live_table(&db);
    let run = assert_identical_watch(verify(&db, &["live.t", "--watch", "1", "--passes", "3"]));
    let lines: Vec<&str> = run.stdout.lines().filter(|l| l.starts_with("pass ")).collect();
    assert_eq!(lines.len(), 3, "{}", run.stdout);
    assert!(lines[2].starts_with("pass 3 of verify-"), "{}", lines[2]);
    assert!(lines[2].contains("100% consistent") && lines[2].contains("consistent (100%) since"), "{}", lines[2]);
    let watch = lines[0].split_whitespace().nth(3).unwrap().trim_end_matches(':').to_string();
    assert!(run.stderr.contains(&watch), "the watch's name is shown: {}", run.stderr);
    let passes: i64 =
        scalar(&db.target, &format!("SELECT count(*) FROM rangecopy.verify_passes WHERE watch = '{watch}'"));
    assert_eq!(passes, 3);
    let compared: Vec<Option<String>> =
        texts(&db.target, "SELECT rows_compared || '/' || rows_divergent || '/' || consistency FROM rangecopy.verify_passes ORDER BY pass");
    assert_eq!(compared, vec![Some(format!("{ROWS}/0/100")); 3]);
    let status = run_status(&db, None);
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("verify watch {watch}: pass 3")))
        .unwrap_or_else(|| panic!("status shows the latest pass:\n{status}"));
    assert!(line.contains("100% consistent") && line.contains("consistent (100%) since"), "{line}");

    // A divergence: the next pass of the same watch (same arguments) says so, exit 1, and
    // the trend shows four passes.
    exec(&db.target, "DELETE FROM live.t WHERE id = 5");
    let html = db.dir.join("w.html");
    let run = verify(&db, &["live.t", "--watch", "1", "--passes", "1", "--report", html.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout.contains(&format!("pass 4 of {watch}")) && run.stdout.contains("not consistent"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("live.t 1 divergent"), "the changed table is named: {}", run.stdout);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<svg class=trend"), "the HTML report shows the trend");
    assert_eq!(page.matches("<rect ").count(), 4, "one bar per pass");
    assert!(page.contains("99.950%"), "{page}");
    let status = run_status(&db, Some(&watch));
    assert!(status.contains(&format!("verify watch {watch}: pass 4")) && status.contains("not consistent"), "{status}");
}

fn assert_identical_watch(run: crate::common::Run) -> crate::common::Run {
    assert_eq!(run.code, 0, "a watch whose last pass is identical exits 0:\n{run:?}");
    run
}

fn run_status(db: &TestDbs, job: Option<&str>) -> String {
    let mut args = vec!["status", "--target", &db.target];
    if let Some(job) = job {
        args.extend(["--job", job]);
    }
    let status = run(&args);
    assert_eq!(status.code, 0, "{status:?}");
    status.stdout
}

/// From MariaDB: TIMESTAMP (an instant) and DATETIME (read as UTC) columns filter alike on
/// both sides, with the one cutoff from MariaDB's clock.
#[test]
fn since_column_filters_mariadb_timestamps_and_datetimes() {
    let Some((db, my)) = crate::mysql::my_setup("verify_live_my_since") else { return };
    crate::mysql::my_exec(
        &my.url,
        "CREATE TABLE ts (id int PRIMARY KEY, v int, updated_at timestamp(6) NULL);
         CREATE TABLE dt (id int PRIMARY KEY, v int, updated_at datetime(6) NULL);
         INSERT INTO ts SELECT seq, seq, '2020-01-01 00:00:00' FROM seq_1_to_300;
         INSERT INTO dt SELECT seq, seq, '2020-01-01 00:00:00' FROM seq_1_to_300;",
    );
    crate::mysql::copy(&my, &db.target, &["--job", "my_since"]).ok();
    crate::mysql::my_exec(
        &my.url,
        "UPDATE ts SET v = -v, updated_at = NOW(6) WHERE id IN (3, 4);
         UPDATE dt SET v = -v, updated_at = UTC_TIMESTAMP(6) WHERE id IN (5, 6);",
    );
    let schema = db.job();
    exec(
        &db.target,
        &format!(
            "UPDATE \"{schema}\".ts SET v = 0, updated_at = now() WHERE id = 7;
             UPDATE \"{schema}\".dt SET v = 0, updated_at = now() AT TIME ZONE 'UTC' WHERE id = 8;"
        ),
    );
    let json = db.dir.join("r.json");
    let verify = |args: &[&str]| {
        let mut all = vec!["verify", "--source", &my.url, "--target", &db.target, "ts", "dt"];
        all.extend_from_slice(args);
        run(&all)
    };
    let since = ["--since-column", "updated_at", "--min-age", "1h", "--report", json.to_str().unwrap()];
    let run = assert_identical(verify(&since));
    let report = read_json(&json);
    for name in ["ts", "dt"] {
        let t =
            report["tables"].as_array().unwrap().iter().find(|t| t["target_table"].as_str().unwrap().ends_with(name));
        let left = &t.expect("the table in the report")["left_out"];
        assert_eq!(
            (left["source_rows"].as_u64(), left["target_rows"].as_u64()),
            (Some(2), Some(1)),
            "{name}: {}",
            run.stdout
        );
    }
    // The premise: without the filter those rows differ.
    assert_different(verify(&[]));
}

/// SIGTERM ends a watch between passes or during one: the pass in progress is not recorded,
/// and the exit code is the last completed pass's (here 1: a row differs).
#[test]
fn an_interrupted_watch_exits_with_its_last_completed_pass() {
    let Some(db) = setup("verify_live_watch_stop") else { return };
    live_table(&db);
    exec(&db.target, "UPDATE live.t SET v = 0 WHERE id = 9");
    let mut watch = db.spawn(&["verify", "--source", &db.source, "--target", &db.target, "live.t", "--watch", "1"]);
    let passes = || scalar::<i64>(&db.target, "SELECT count(*) FROM rangecopy.verify_passes");
    let recorded = crate::common::wait_until(Duration::from_secs(60), || {
        scalar::<bool>(&db.target, "SELECT to_regclass('rangecopy.verify_passes') IS NOT NULL") && passes() >= 2
    });
    assert!(recorded, "two passes recorded: {}", watch.stderr());
    let sent = std::process::Command::new("kill").args(["-TERM", &watch.pid().to_string()]).status().unwrap();
    assert!(sent.success());
    let run = watch.wait(Duration::from_secs(30));
    assert_eq!(run.code, 1, "{run:?}");
    let lines = run.stdout.lines().filter(|l| l.starts_with("pass ")).count() as i64;
    assert_eq!(lines, passes(), "every pass printed is recorded, and no other: {}", run.stdout);
}

/// More differing rows than the recheck holds by key (100k): the table's differing ranges are
/// compared again instead, and the report says so; rows fixed meanwhile are in flight.
#[test]
fn past_the_keys_it_can_hold_the_recheck_compares_the_differing_ranges_again() {
    let Some(db) = setup("verify_live_overflow") else { return };
    exec(
        &db.source,
        "CREATE TABLE big (id int PRIMARY KEY, v int); INSERT INTO big SELECT g, g FROM generate_series(1, 105000) g;",
    );
    db.copy(&["big", "--job", "big", "--progress", "none"]).ok();
    exec(&db.target, "UPDATE big SET v = -v WHERE id > 1000");
    // The fix lands once the first pass is over: verify's connections to the target have been
    // seen reading, and then all gone (it waits for its recheck).
    let target = db.target.clone();
    let applier = thread::spawn(move || {
        let others = "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()";
        let reading = format!("SELECT count(*) {others} AND query LIKE 'COPY (SELECT%'");
        assert!(crate::common::wait_until(Duration::from_secs(60), || scalar::<i64>(&target, &reading) > 0));
        let open = format!("SELECT count(*) {others}");
        assert!(crate::common::wait_until(Duration::from_secs(60), || scalar::<i64>(&target, &open) == 0));
        exec(&target, "UPDATE big SET v = -v WHERE id > 1000");
    });
    let json = db.dir.join("r.json");
    let run = verify(
        &db,
        &["big", "--chunk-rows", "20000", "--recheck", "2", "--recheck-delay", "5", "--report", json.to_str().unwrap()],
    );
    applier.join().unwrap();
    assert_identical(run);
    let t = table(&read_json(&json), "public.big").clone();
    assert_eq!((t["differing_rows"].as_u64(), t["in_flight"].as_u64()), (Some(0), Some(104_000)), "{t:#}");
    assert!(t["recheck_note"].as_str().unwrap().contains("comparing 6 ranges again"), "{t:#}");
}
