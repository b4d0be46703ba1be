//! The state a run leaves is the truth resume goes on from: chunks the target lost are planned
//! again, a table is done only when all of it is, a stopped job reads as interrupted, two jobs
//! can be set up at once, `--restart TABLE` redoes only that table, and whatever stops a job
//! after it started is exit 1 with the command that goes on.

use std::time::Duration;

use crate::common::{
    assert_same_indexes, assert_same_table, chunks, exec, quote_literal, run, scalar, setup, wait_until, Running,
    TestDbs, PASSWORD,
};

/// `t` with `rows` rows (ids 1..=rows) and a secondary index.
fn keyed_table(url: &str, rows: i64) {
    exec(
        url,
        &format!(
            "CREATE TABLE t (id int PRIMARY KEY, grp int NOT NULL, v text);
             INSERT INTO t SELECT g, g % 7, md5(g::text) FROM generate_series(1, {rows}) g;
             CREATE INDEX t_grp ON t (grp);"
        ),
    );
}

/// Starts `rangecopy copy ARGS…` in the background (throttled by the caller so that it lasts)
/// and waits until it has committed `chunks` chunks.
fn spawn_going(db: &TestDbs, args: &[&str], chunks: i64) -> Running {
    let copy = db.spawn_copy(args);
    let going = wait_until(Duration::from_secs(60), || {
        scalar::<bool>(&db.target, "SELECT to_regclass('rangecopy.chunks') IS NOT NULL")
            && scalar::<i64>(&db.target, "SELECT count(*) FROM rangecopy.chunks WHERE status = 'done'") >= chunks
    });
    assert!(going, "the copy never got going:\n{}", copy.stderr());
    copy
}

/// Throws away chunk `no` of `job` as a target that lost its commit would: its rows, and its
/// row in the state (`forget`) or its done-mark (otherwise).
fn lose_chunk(target: &str, job: &str, no: i32, forget: bool) {
    let c = chunks(target, job).into_iter().find(|c| c.chunk_no == no).expect("the chunk exists");
    let bound =
        |b: &Option<Vec<String>>, op: &str| b.as_ref().map_or("true".to_string(), |v| format!("id {op} {}", v[0]));
    exec(target, &format!("DELETE FROM t WHERE {} AND {}", bound(&c.lo, ">="), bound(&c.hi, "<")));
    let which = format!("job = {} AND chunk_no = {no}", quote_literal(job));
    match forget {
        true => exec(target, &format!("DELETE FROM rangecopy.chunks WHERE {which}")),
        false => exec(
            target,
            &format!("UPDATE rangecopy.chunks SET status = 'pending', rows = NULL, digest = NULL WHERE {which}"),
        ),
    }
}

/// Regression: after a target crash took back acknowledged commits, resume finished "done"
/// with a key range no chunk covered, and a table recorded done kept a pending chunk for good.
#[test]
fn chunks_the_target_lost_are_copied_again_on_resume() {
    let Some(db) = setup("durability_lost") else { return };
    keyed_table(&db.source, 10_000);
    db.copy(&["--job", "j", "--chunk-rows", "1000", "--progress", "none"]).ok();
    lose_chunk(&db.target, "j", 0, true);
    lose_chunk(&db.target, "j", 3, true);
    lose_chunk(&db.target, "j", 4, true);
    lose_chunk(&db.target, "j", 7, false);
    lose_chunk(&db.target, "j", 9, true);
    assert_eq!(scalar::<i64>(&db.target, "SELECT count(*) FROM t"), 5_000);
    let verify = ["verify", "--source", &db.source, "--target", &db.target, "--job", "j"];
    let lost = run(&verify);
    assert_eq!(lost.code, 1, "verify --job must see the lost chunks:\n{lost:?}");

    let resumed = db.copy(&["--job", "j", "--resume", "--progress", "none"]).ok();
    assert!(resumed.stderr.contains("no recorded chunk covers the key range [-∞, 1001)"), "{resumed:?}");
    assert!(resumed.stderr.contains("no recorded chunk covers the key range [3001, 5001)"), "{resumed:?}");
    assert!(resumed.stderr.contains("no recorded chunk covers the key range [9001, +∞)"), "{resumed:?}");
    assert!(resumed.stderr.contains("was recorded done but 4 of its chunks are not"), "{resumed:?}");
    assert_eq!(assert_same_table(&db, "t", "t.id"), 10_000);
    assert_same_indexes(&db, "t");
    let all = chunks(&db.target, "j");
    assert!(all.iter().all(|c| c.status == "done"), "{all:#?}");
    assert_eq!(all.iter().map(|c| c.rows.unwrap_or(0)).sum::<i64>(), 10_000, "{all:#?}");
    // The chunks tile the keys again: each starts where the one before it ends.
    for pair in all.windows(2) {
        assert_eq!(pair[1].lo, pair[0].hi, "{all:#?}");
    }
    assert_eq!((all[0].lo.clone(), all[all.len() - 1].hi.clone()), (None, None), "{all:#?}");
    let status = db.status("j").ok();
    assert!(status.stdout.contains("job j: done"), "{status:?}");
    run(&verify).ok();
}

/// Regression: a job whose process was killed stayed `running` in status for good.
#[test]
fn a_killed_job_reads_as_interrupted() {
    let Some(db) = setup("durability_killed") else { return };
    keyed_table(&db.source, 50_000);
    exec(&db.source, "CREATE TABLE z_later (id int PRIMARY KEY); INSERT INTO z_later SELECT generate_series(1, 10)");
    let args = ["--job", "k", "--chunk-rows", "1000", "--max-rows-per-sec", "5000", "--workers", "1"];
    let mut copy = spawn_going(&db, &[&args[..], &["--progress", "none"]].concat(), 1);
    let live = db.status("k").ok();
    assert!(live.stdout.contains("job k: running"), "{live:?}");
    // Regression: a table not started showed as `copying 0/0+`, and `+` went unexplained.
    assert_eq!(live.table_line("public", "z_later")[1..3], ["waiting", "-"], "{live:?}");
    assert!(live.table_line("public", "t")[2].ends_with('+'), "{live:?}");
    assert!(live.stdout.contains("(n+: n chunks planned so far"), "{live:?}");
    assert_eq!(copy.kill9(), None, "the copy should still have been running");
    let dead = wait_until(Duration::from_secs(10), || db.status("k").stdout.contains("job k: interrupted"));
    assert!(dead, "{:?}", db.status("k"));
    let refused = db.copy(&["--job", "k", "--progress", "none"]).refused(&["interrupted", "--resume"]);
    assert!(!refused.stderr.contains("running"), "{refused:?}");
}

/// Regression: two jobs set up at once on a target without the state schema raced to create
/// it, and one failed with a duplicate key on pg_namespace.
#[test]
fn two_jobs_set_up_at_once_on_a_fresh_target_both_finish() {
    let Some(mut db) = setup("durability_race") else { return };
    exec(
        &db.source,
        "CREATE TABLE a (id int PRIMARY KEY); INSERT INTO a SELECT generate_series(1, 100);
         CREATE TABLE b (id int PRIMARY KEY); INSERT INTO b SELECT generate_series(1, 100);",
    );
    for round in 0..3 {
        let target = db.extra_target(&format!("r{round}"));
        let args = |job: &'static str, table: &'static str| {
            vec!["copy", "--source", &db.source, "--target", &target, "--job", job, table, "--progress", "none"]
                .into_iter()
                .map(String::from)
                .collect::<Vec<_>>()
        };
        let (a, b) = (args("ja", "a"), args("jb", "b"));
        let (ra, rb) = std::thread::scope(|s| {
            let ha = s.spawn(|| run(&a.iter().map(String::as_str).collect::<Vec<_>>()));
            let hb = s.spawn(|| run(&b.iter().map(String::as_str).collect::<Vec<_>>()));
            (ha.join().unwrap(), hb.join().unwrap())
        });
        ra.ok();
        rb.ok();
        assert_eq!(scalar::<i64>(&target, "SELECT (SELECT count(*) FROM a) + (SELECT count(*) FROM b)"), 200);
    }
}

/// `--restart TABLE` on a job of several tables copies that table again and keeps the others,
/// saying first what it throws away. Regression: it dropped every other table of the job.
#[test]
fn restart_of_one_table_keeps_the_rest_of_the_job() {
    let Some(db) = setup("durability_restart") else { return };
    keyed_table(&db.source, 2_000);
    exec(&db.source, "CREATE TABLE keep (id int PRIMARY KEY, v text); INSERT INTO keep SELECT g, 'k' FROM generate_series(1, 500) g;");
    db.copy(&["--job", "j", "--chunk-rows", "500", "--progress", "none"]).ok();
    let finished = |table: &str| {
        scalar::<String>(
            &db.target,
            &format!(
                "SELECT string_agg(c.finished_at::text, ',' ORDER BY chunk_no) FROM rangecopy.chunks c
                   JOIN rangecopy.tables t USING (job, table_no) WHERE job = 'j' AND t.target_name = {}",
                quote_literal(table)
            ),
        )
    };
    let keep_before = finished("keep");
    exec(&db.source, "UPDATE t SET v = 'changed' WHERE id % 3 = 0; INSERT INTO keep VALUES (501, 'late')");
    let run = db.copy(&["--job", "j", "--restart", "t", "--progress", "none"]).ok();
    assert!(
        run.stderr.contains("restart: discarding what job j copied of public.t (2000 rows in 4 chunks)"),
        "{run:?}"
    );
    assert!(!run.stderr.contains("of public.keep"), "{run:?}");
    assert_same_table(&db, "t", "t.id");
    assert_same_indexes(&db, "t");
    assert_eq!(finished("keep"), keep_before, "the chunks of keep were not touched");
    assert_eq!(scalar::<i64>(&db.target, "SELECT count(*) FROM keep"), 500, "keep is as the job left it");
    // A table the job does not copy is refused, naming what the job copies.
    db.copy(&["--job", "j", "--restart", "nosuch", "--progress", "none"]).refused(&["does not copy", "public.keep"]);
}

/// Regression: a column dropped on the source mid-copy failed the job with "resume once fixed",
/// which could never succeed. The message says the source changed and how to copy that table
/// again; doing so finishes the job.
#[test]
fn a_column_dropped_on_the_source_mid_copy_says_to_restart_that_table() {
    let Some(db) = setup("durability_dropcol") else { return };
    keyed_table(&db.source, 40_000);
    let mut copy = spawn_going(
        &db,
        &["--job", "d", "--chunk-rows", "1000", "--workers", "1", "--max-rows-per-sec", "10000", "--progress", "none"],
        2,
    );
    exec(&db.source, "ALTER TABLE t DROP COLUMN v");
    let failed = copy.wait(Duration::from_secs(60));
    assert_eq!(failed.code, 1, "{failed:?}");
    assert!(failed.stderr.contains("the source's table public.t changed since the job started"), "{failed:?}");
    assert!(failed.stderr.contains("--job d --restart public.t"), "{failed:?}");
    assert!(!failed.stderr.contains("--resume"), "{failed:?}");
    db.copy(&["--job", "d", "--restart", "public.t", "--progress", "none"]).ok();
    assert_same_table(&db, "t", "t.id");
}

/// Whatever stops a job once it has started is exit 1 with the command that resumes it, even
/// an error that would be bad input before the start (here: the source database is gone and
/// every reconnect is refused). Regression: such runs exited 2 without a resume hint.
#[test]
fn a_failure_after_the_start_is_exit_1_with_the_resume_command() {
    let Some(db) = setup("durability_exit") else { return };
    keyed_table(&db.source, 40_000);
    let mut copy = spawn_going(
        &db,
        &[
            "--job",
            "e",
            "--chunk-rows",
            "1000",
            "--max-rows-per-sec",
            "8000",
            "--retries",
            "2",
            "--retry-max-wait",
            "0.5",
            "--progress",
            "none",
        ],
        2,
    );
    drop_source(&db);
    let failed = copy.wait(Duration::from_secs(60));
    assert_eq!(failed.code, 1, "{failed:?}");
    assert!(failed.stderr.contains("resume with:") && failed.stderr.contains("--job e --resume"), "{failed:?}");
    let status: String = scalar(&db.target, "SELECT status FROM rangecopy.jobs WHERE job = 'e'");
    assert_eq!(status, "failed");
}

/// Drops the test's source database under a running copy.
fn drop_source(db: &TestDbs) {
    let [admin, _] = db.admin_urls();
    let name = db.source.rsplit('/').next().unwrap_or_default().split('?').next().unwrap_or_default().to_string();
    exec(&admin, &format!("DROP DATABASE \"{name}\" WITH (FORCE)"));
}

/// A PostgreSQL source role with SELECT on the tables only cannot read the positions of their
/// sequences: refused before anything is written, naming the sequence and the grant.
/// Regression: the job failed after its whole copy on "permission denied for sequence".
#[test]
fn a_source_role_that_cannot_read_sequences_is_refused_naming_the_grant() {
    let Some(db) = setup("durability_seq") else { return };
    exec(
        &db.source,
        "CREATE TABLE s (id serial PRIMARY KEY, v text); INSERT INTO s (v) SELECT 'x' FROM generate_series(1, 10);",
    );
    let role = format!("rct_seq_{}", crate::common::random_suffix());
    let [admin, _] = db.admin_urls();
    exec(&admin, &format!("CREATE ROLE {role} LOGIN PASSWORD {}", quote_literal(PASSWORD)));
    exec(&db.source, &format!("GRANT SELECT ON s TO {role}"));
    let url = db.source.replacen("://rangecopy:", &format!("://{role}:"), 1);
    let refused = crate::common::assert_writes_nothing(&db.target, || {
        run(&["copy", "--source", &url, "--target", &db.target, "--progress", "none"])
    });
    refused.refused(&["may not read the sequences public.s_id_seq", "GRANT SELECT ON SEQUENCE public.s_id_seq TO"]);
    exec(&db.source, &format!("GRANT SELECT ON SEQUENCE s_id_seq TO {role}"));
    run(&["copy", "--source", &url, "--target", &db.target, "--progress", "none"]).ok();
    assert_same_table(&db, "s", "t.id");
    exec(&db.source, &format!("REVOKE ALL ON s, s_id_seq FROM {role}"));
    drop(db);
    exec(&admin, &format!("DROP ROLE {role}"));
}
