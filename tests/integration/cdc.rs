//! The hand-over to change-data-capture: the source positions P0 (before the first chunk is
//! read) and P1 (after the last is committed) for both engines, in the state, `status` and the
//! report; a resumed job keeping its P0; `--create-slot` making a logical slot whose consistent
//! point is P0 (and refusing an existing name); `--consistent` reading every chunk in one
//! snapshot, proven with rows inserted into the source while a throttled copy runs.
//!
//! Orderings are checked by the servers themselves: LSNs as `pg_lsn`, binlog positions and
//! times (both dev servers share the host's clock) against the chunks' recorded times.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{
    self, assert_writes_nothing, connect, exec, random_suffix, run, scalar, setup, wait_until, TestDbs,
};
use crate::mysql::{my_exec, my_setup, my_text, MyDb, MyUser};

/// The job's (P0, P1, consistent) as recorded in the target.
fn positions(target: &str, job: &str) -> (Value, Value, bool) {
    let row = connect(target)
        .query_one("SELECT p0::text, p1::text, consistent FROM rangecopy.jobs WHERE job = $1", &[&job])
        .expect("reading the job's positions");
    let json = |i: usize| row.get::<_, Option<String>>(i).map_or(Value::Null, |t| serde_json::from_str(&t).unwrap());
    (json(0), json(1), row.get(2))
}

fn text<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field].as_str().unwrap_or_else(|| panic!("no {field} in {v}"))
}

/// Asserts that P0 was read before any chunk's transaction began and P1 after the last
/// chunk committed (by the recorded times).
#[track_caller]
fn assert_brackets_chunks(target: &str, job: &str, p0: &Value, p1: &Value) {
    let sql = format!(
        "SELECT {}::timestamptz <= min(started_at) AND {}::timestamptz >= max(finished_at) AND bool_and(status = 'done')
           FROM rangecopy.chunks WHERE job = {}",
        common::quote_literal(text(p0, "taken_at")),
        common::quote_literal(text(p1, "taken_at")),
        common::quote_literal(job)
    );
    assert!(scalar::<bool>(target, &sql), "P0 {p0} and P1 {p1} do not bracket the chunks of {job}");
}

/// Asserts that `pg_lsn` a <= b on the source server.
#[track_caller]
fn assert_lsn_le(source: &str, a: &str, b: &str) {
    let sql = format!("SELECT {}::pg_lsn <= {}::pg_lsn", common::quote_literal(a), common::quote_literal(b));
    assert!(scalar::<bool>(source, &sql), "expected LSN {a} <= {b}");
}

fn read_report(db: &TestDbs, path: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(path).expect("reading the report");
    let _ = db;
    serde_json::from_str(&text).expect("a JSON report")
}

/// Chunks done so far (0 before the state exists).
fn done_chunks(target: &str, job: &str) -> i64 {
    let mut c = connect(target);
    let exists: bool = c.query_one("SELECT to_regclass('rangecopy.chunks') IS NOT NULL", &[]).unwrap().get(0);
    if !exists {
        return 0;
    }
    c.query_one("SELECT count(*) FROM rangecopy.chunks WHERE job = $1 AND status = 'done'", &[&job]).unwrap().get(0)
}

/// Drops a replication slot a test created when the test ends (before its databases go:
/// a database with a slot cannot be dropped). Declare it after the `TestDbs`.
struct SlotGuard {
    source: String,
    name: String,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        if let Ok(mut c) = common::Client::connect(&self.source) {
            let _ = c.query(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1",
                &[&self.name],
            );
        }
    }
}

fn pg_rows(db: &TestDbs, rows: i64) {
    exec(
        &db.source,
        &format!(
            "CREATE TABLE items (id int PRIMARY KEY, v text NOT NULL);
             INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, {rows}) g;"
        ),
    );
}

#[test]
fn pg_p0_is_taken_before_the_first_chunk_and_p1_after_the_last() {
    let Some(db) = setup("cdc_pg_p0_p1") else { return };
    pg_rows(&db, 20_000);
    let report = db.dir.join("report.json");
    let run = db
        .copy(&["--chunk-rows", "2000", "--workers", "3", "--progress", "none", "--report", report.to_str().unwrap()])
        .ok();
    assert!(run.stderr.contains("P0"), "the copy names P0:\n{run:?}");
    let (p0, p1, consistent) = positions(&db.target, db.job());
    assert_eq!(p0["engine"], "postgres");
    assert!(!consistent, "a copy without --consistent is not one snapshot");
    assert!(p0.get("slot").is_none(), "no slot was asked for: {p0}");
    assert_brackets_chunks(&db.target, db.job(), &p0, &p1);
    assert_lsn_le(&db.source, text(&p0, "lsn"), text(&p1, "lsn"));
    let now: String = scalar(&db.source, "SELECT pg_current_wal_lsn()::text");
    assert_lsn_le(&db.source, text(&p1, "lsn"), &now);

    let status = db.status(db.job()).ok();
    let p0_line = status.stdout.lines().find(|l| l.contains("P0")).unwrap_or_else(|| panic!("{status:?}"));
    assert!(p0_line.contains(text(&p0, "lsn")), "{status:?}");
    let p1_line = status.stdout.lines().find(|l| l.contains("P1")).unwrap_or_else(|| panic!("{status:?}"));
    assert!(p1_line.contains(text(&p1, "lsn")), "{status:?}");

    let r = read_report(&db, &report);
    assert_eq!(r["p0"], p0);
    assert_eq!(r["p1"], p1);
    assert_eq!(r["consistent"], false);
}

#[test]
fn mysql_p0_is_taken_before_the_first_chunk_and_p1_after_the_last() {
    let Some((db, my)) = my_setup("cdc_my_p0_p1") else { return };
    my_exec(
        &my.url,
        "CREATE TABLE items (id int PRIMARY KEY, v varchar(40) NOT NULL);
         INSERT INTO items SELECT seq, md5(seq) FROM seq_1_to_20000;",
    );
    let report = db.dir.join("report.json");
    let r = report.to_str().unwrap();
    run(&["copy", "--source", &my.url, "--target", &db.target, "--job", "myjob", "--chunk-rows", "2000"]
        .into_iter()
        .chain(["--workers", "3", "--progress", "none", "--report", r])
        .collect::<Vec<_>>())
    .ok();
    let (p0, p1, consistent) = positions(&db.target, "myjob");
    assert_eq!(p0["engine"], "mysql");
    assert!(!consistent);
    assert_brackets_chunks(&db.target, "myjob", &p0, &p1);
    // The dev MariaDB writes a binary log with GTIDs.
    let file = text(&p0, "binlog_file");
    assert!(!file.is_empty());
    let pos = |p: &Value| p["binlog_pos"].as_u64().unwrap_or_else(|| panic!("no binlog_pos in {p}"));
    assert!((text(&p1, "binlog_file"), pos(&p1)) >= (file, pos(&p0)), "P1 {p1} before P0 {p0}");
    assert!(!text(&p0, "gtid").is_empty(), "no GTID position in {p0}");
    // Other tests write to the same server meanwhile: P0 <= P1 <= now, by GTID sequence number.
    let seq = |g: &str| -> u64 { g.split(',').next().and_then(|d| d.rsplit('-').next()).unwrap().parse().unwrap() };
    let now = my_text(&my.url, "SELECT @@GLOBAL.gtid_binlog_pos").unwrap_or_default();
    assert!(seq(text(&p0, "gtid")) <= seq(text(&p1, "gtid")) && seq(text(&p1, "gtid")) <= seq(&now), "{p0} {p1} {now}");
    let status = db.status("myjob").ok();
    assert!(status.stdout.contains(&format!("binlog {file}:{}", pos(&p0))), "{status:?}");
    assert!(status.stdout.contains(&format!("GTID {}", text(&p0, "gtid"))), "{status:?}");
    let rep = read_report(&db, &report);
    assert_eq!(rep["p0"], p0);
    assert_eq!(rep["p1"], p1);
    assert_eq!(rep["consistent"], false);
}

#[test]
fn resumed_job_keeps_its_p0_and_is_not_one_snapshot() {
    let Some(db) = setup("cdc_resume_keeps_p0") else { return };
    pg_rows(&db, 12_000);
    let args = ["--job", "j", "--chunk-rows", "1000", "--workers", "2", "--progress", "none", "--consistent"];
    let mut first = db.spawn_copy(&[&args[..], &["--max-rows-per-sec", "3000"]].concat());
    assert!(wait_until(Duration::from_secs(30), || done_chunks(&db.target, "j") >= 2), "no chunk got done");
    first.kill9();
    let (p0, p1, consistent) = positions(&db.target, "j");
    assert!(p1.is_null(), "an interrupted job has no P1: {p1}");
    assert!(consistent, "the first run read one snapshot");
    // The source moves on before the resume.
    exec(&db.source, "CREATE TABLE moved (x int); INSERT INTO moved VALUES (1);");
    let report = db.dir.join("report.json");
    let resumed = db.copy(&[&args[..], &["--resume", "--report", report.to_str().unwrap()]].concat()).ok();
    assert!(resumed.stderr.contains("not one consistent snapshot"), "the resume must say so:\n{resumed:?}");
    let (p0_after, p1, consistent) = positions(&db.target, "j");
    assert_eq!(p0_after, p0, "a resumed job keeps the P0 of its first run");
    assert!(!consistent, "a resumed job is not one snapshot");
    assert_lsn_le(&db.source, text(&p0, "lsn"), text(&p1, "lsn"));
    assert_ne!(text(&p0, "lsn"), text(&p1, "lsn"), "the source wrote between P0 and P1");
    let r = read_report(&db, &report);
    assert_eq!(r["p0"], p0);
    assert_eq!(r["consistent"], false);
    common::assert_same_table(&db, "items", "id");
}

#[test]
fn create_slot_makes_a_logical_slot_whose_consistent_point_is_p0() {
    let Some(db) = setup("cdc_create_slot") else { return };
    let name = format!("rct_slot_{}", random_suffix());
    let _slot = SlotGuard { source: db.source.clone(), name: name.clone() };
    pg_rows(&db, 5_000);
    let report = db.dir.join("report.json");
    db.copy(&[
        "--create-slot",
        &name,
        "--chunk-rows",
        "1000",
        "--progress",
        "none",
        "--report",
        report.to_str().unwrap(),
    ])
    .ok();
    let (p0, p1, _) = positions(&db.target, db.job());
    assert_eq!(p0["slot"], name.as_str());
    let row = connect(&db.source)
        .query_one(
            "SELECT plugin::text, slot_type, database::text, confirmed_flush_lsn::text, restart_lsn <= confirmed_flush_lsn
               FROM pg_replication_slots WHERE slot_name = $1",
            &[&name],
        )
        .expect("the slot exists");
    assert_eq!(row.get::<_, String>(0), "pgoutput");
    assert_eq!(row.get::<_, String>(1), "logical");
    assert_eq!(row.get::<_, String>(2), db.job(), "the slot is in the source database");
    assert_eq!(row.get::<_, String>(3), text(&p0, "lsn"), "the slot's consistent point is P0");
    assert!(row.get::<_, bool>(4), "restart_lsn is at or before the consistent point");
    assert_brackets_chunks(&db.target, db.job(), &p0, &p1);
    let r = read_report(&db, &report);
    assert_eq!(r["p0"]["slot"], name.as_str());
    assert_eq!(r["settings"]["create_slot"], name.as_str());
    let status = db.status(db.job()).ok();
    assert!(status.stdout.contains(&format!("slot {name}")), "{status:?}");
}

#[test]
fn create_slot_refuses_an_existing_slot_other_engines_and_bad_names() {
    let Some(db) = setup("cdc_slot_refusals") else { return };
    let name = format!("rct_slot_{}", random_suffix());
    let _slot = SlotGuard { source: db.source.clone(), name: name.clone() };
    pg_rows(&db, 100);
    exec(&db.source, &format!("SELECT pg_create_logical_replication_slot('{name}', 'pgoutput')"));
    let before: String = scalar(
        &db.source,
        &format!("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = '{name}'"),
    );
    assert_writes_nothing(&db.target, || db.copy(&["--create-slot", &name, "--progress", "none"])).refused(&[
        "--create-slot",
        "already has a replication slot",
        &name,
    ]);
    let after: String = scalar(
        &db.source,
        &format!("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = '{name}'"),
    );
    assert_eq!(before, after, "the existing slot is left alone");
    assert_writes_nothing(&db.target, || db.copy(&["--create-slot", "Bad-Name", "--progress", "none"]))
        .refused(&["--create-slot", "lower-case"]);
    run(&["copy", "--source", "mysql://u@127.0.0.1:1/x", "--target", &db.target, "--create-slot", "s"])
        .refused(&["--create-slot", "PostgreSQL sources only"]);
    assert_eq!(run(&["copy", "--source", &db.source, "--target", &db.target, "--slot-plugin", "x"]).code, 2);
    // A resumed job keeps its first run's P0: no slot can be made for it.
    assert_writes_nothing(&db.target, || db.copy(&["--create-slot", "later", "--resume", "--progress", "none"]))
        .refused(&["--create-slot", "resumed job keeps the P0"]);

    // A job refused after its checks leaves no slot behind.
    let other = format!("rct_slot_{}", random_suffix());
    let _other = SlotGuard { source: db.source.clone(), name: other.clone() };
    exec(&db.target, "CREATE TABLE items (id int PRIMARY KEY, v text NOT NULL); INSERT INTO items VALUES (1, 'x');");
    assert_writes_nothing(&db.target, || db.copy(&["--create-slot", &other, "--progress", "none"]))
        .refused(&["already has rows"]);
    let sql = format!("SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{other}'");
    assert_eq!(scalar::<i64>(&db.source, &sql), 0, "a refused job must not leave its slot");
}

/// A throttled copy of 4000 rows in 8 chunks into `target`; once a chunk is done (and before
/// the last one can have started), `insert` adds rows beyond every key. Returns the job's
/// (P0, P1, consistent) afterwards.
fn copy_with_late_rows(
    source: &str,
    target: &str,
    job: &str,
    consistent: bool,
    insert: impl FnOnce(),
) -> (Value, Value, bool) {
    let mut args = vec!["copy", "--source", source, "--target", target, "--job", job];
    args.extend(["--chunk-rows", "500", "--workers", "2", "--max-rows-per-sec", "1000", "--progress", "none"]);
    if consistent {
        args.push("--consistent");
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_rangecopy"))
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting rangecopy");
    let started = wait_until(Duration::from_secs(30), || done_chunks(target, job) >= 1);
    if started {
        insert();
    }
    // Chunks are handed out in key order, at most one per worker in flight: with at most
    // 8 - 2 - 1 chunks done after the insert committed, the last chunk was read after it.
    let done = done_chunks(target, job);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("polling rangecopy") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    let _ = std::io::Read::read_to_string(child.stderr.as_mut().expect("piped stderr"), &mut stderr);
    let _ = child.wait();
    common::assert_no_password(&stderr, "stderr");
    assert!(started, "no chunk got done:\n{stderr}");
    assert!(status.is_some_and(|s| s.success()), "the copy failed ({status:?}):\n{stderr}");
    assert!(done <= 5, "the copy went too fast ({done} chunks done) for the test to mean anything");
    positions(target, job)
}

fn late_rows(target: &str, table: &str) -> i64 {
    scalar(target, &format!("SELECT count(*) FROM {table} WHERE id > 100000"))
}

#[test]
fn pg_consistent_copy_reads_one_snapshot() {
    let Some(mut db) = setup("cdc_pg_consistent") else { return };
    pg_rows(&db, 4000);
    let source = db.source.clone();
    let late = |from: i64| {
        let source = source.clone();
        move || exec(&source, &format!("INSERT INTO items SELECT g, 'late' FROM generate_series({from}, {from} + 9) g"))
    };
    let (p0, p1, consistent) = copy_with_late_rows(&db.source, &db.target, "snap", true, late(100_001));
    assert!(consistent);
    assert_eq!(late_rows(&db.target, "items"), 0, "rows inserted after the snapshot must not be copied");
    assert_eq!(scalar::<i64>(&db.target, "SELECT count(*) FROM items"), 4000);
    assert_lsn_le(&db.source, text(&p0, "lsn"), text(&p1, "lsn"));
    assert_ne!(text(&p0, "lsn"), text(&p1, "lsn"), "the late rows were written after P0");

    // Without --consistent, each chunk reads what is committed when it runs.
    let plain = db.extra_target("plain");
    let late2 = late(200_001);
    let (_, _, consistent) = copy_with_late_rows(&db.source, &plain, "plain", false, late2);
    assert!(!consistent);
    assert_eq!(late_rows(&plain, "items"), 20, "rows committed before their chunk ran are copied");
}

#[test]
fn mysql_consistent_copy_reads_one_snapshot() {
    let Some((mut db, my)) = my_setup("cdc_my_consistent") else { return };
    my_exec(
        &my.url,
        "CREATE TABLE items (id int PRIMARY KEY, v varchar(40) NOT NULL);
         INSERT INTO items SELECT seq, md5(seq) FROM seq_1_to_4000;",
    );
    let late = |from: i64, my: &MyDb| {
        let url = my.url.clone();
        move || my_exec(&url, &format!("INSERT INTO items SELECT seq, 'late' FROM seq_{from}_to_{}", from + 9))
    };
    let (p0, p1, consistent) = copy_with_late_rows(&my.url, &db.target, "snap", true, late(100_001, &my));
    assert!(consistent);
    let table = format!("\"{}\".items", db.job());
    assert_eq!(late_rows(&db.target, &table), 0, "rows inserted after the snapshot must not be copied");
    assert_eq!(scalar::<i64>(&db.target, &format!("SELECT count(*) FROM {table}")), 4000);
    let pos = |p: &Value| (text(p, "binlog_file").to_string(), p["binlog_pos"].as_u64().unwrap());
    assert!(pos(&p1) > pos(&p0), "the late rows were written after P0: {p0} {p1}");
    assert_ne!(text(&p0, "gtid"), text(&p1, "gtid"), "the late rows have their own GTID");

    // Without --consistent, each chunk reads what is committed when it runs.
    let plain = db.extra_target("plain");
    let (_, _, consistent) = copy_with_late_rows(&my.url, &plain, "plain", false, late(200_001, &my));
    assert!(!consistent);
    assert_eq!(late_rows(&plain, &table), 20, "rows committed before their chunk ran are copied");
}

/// Regression: a MariaDB user with SELECT only copied everything, then the job failed on P1
/// (and so did every resume); after BINLOG MONITOR was granted, resume recorded a P0 taken
/// after rows were copied, which CDC would have started from and missed the changes before.
/// Positions that cannot be read are warnings, and P0 is recorded before the first chunk or never.
#[test]
fn mysql_positions_that_cannot_be_read_are_warnings_and_p0_is_never_recorded_late() {
    let Some((mut db, my)) = my_setup("cdc_my_no_binlog") else { return };
    my_exec(
        &my.url,
        "CREATE TABLE items (id int PRIMARY KEY, v varchar(40) NOT NULL);
         INSERT INTO items SELECT seq, md5(seq) FROM seq_1_to_20000;",
    );
    let database = my.url.rsplit('/').next().unwrap().to_string();
    let name = format!("rct_u_{}", random_suffix());
    let _user = MyUser::create(&name, "%", common::PASSWORD, &format!("GRANT SELECT ON `{database}`.* TO {{user}}"));
    let source = common::as_login(&my.url, &name, common::PASSWORD);
    let copy = run(&["copy", "--source", &source, "--target", &db.target, "--job", "a", "--progress", "none"]).ok();
    assert!(copy.stderr.contains("P0 could not be read"), "{copy:?}");
    assert!(copy.stderr.contains("P1 could not be read"), "{copy:?}");
    let (p0, p1, _) = positions(&db.target, "a");
    assert_eq!((p0, p1), (Value::Null, Value::Null));

    // Job b (into a database of its own) is stopped after a few chunks; by its resume the
    // user may read positions.
    let target = db.extra_target("b");
    let args = ["copy", "--source", &source, "--target", &target, "--job", "b", "--chunk-rows", "1000"];
    let mut child = Command::new(env!("CARGO_BIN_EXE_rangecopy"))
        .args(args.iter().chain(&["--workers", "1", "--max-rows-per-sec", "4000", "--progress", "none"]))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting rangecopy");
    let going = wait_until(Duration::from_secs(30), || done_chunks(&target, "b") >= 2);
    let _ = child.kill();
    let _ = child.wait();
    assert!(going, "job b never got going");
    let admin = std::env::var("RANGECOPY_TEST_MYSQL").expect("checked by my_setup");
    my_exec(&admin, &format!("GRANT BINLOG MONITOR ON *.* TO '{name}'@'%'"));
    let mut resume = args.to_vec();
    resume.extend(["--resume", "--progress", "none"]);
    let resumed = run(&resume).ok();
    assert!(resumed.stderr.contains("P0 was not recorded before its first chunk"), "{resumed:?}");
    let (p0, p1, _) = positions(&target, "b");
    assert_eq!(p0, Value::Null, "a P0 read after rows were copied must not be recorded");
    assert_eq!(p1["engine"], "mysql", "P1 is readable now: {p1}");
    let status = run(&["status", "--target", &target, "--job", "b"]).ok();
    assert!(status.stdout.contains("P0 (before the first chunk; CDC starts here): not recorded"), "{status:?}");
}
