//! `--restart` throws a job's progress and loaded rows away and copies again from scratch.

use std::time::Duration;

use crate::common::{
    assert_chunks_tile, assert_same_indexes, assert_same_table, chunks, exec, quote_literal, scalar, setup,
    table_fingerprint, wait_until,
};

#[test]
fn restart_after_a_finished_job_copies_the_source_again() {
    let Some(db) = setup("restart_done") else { return };
    exec(
        &db.source,
        "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 100) g;
         CREATE TABLE pre (id int NOT NULL, v text); INSERT INTO pre SELECT g, 'p' || g FROM generate_series(1, 30) g;",
    );
    // `pre` exists on the target before the job: restart empties it rather than dropping it.
    exec(&db.target, "CREATE TABLE pre (id int NOT NULL, v text); COMMENT ON TABLE pre IS 'made by hand';");
    db.copy(&["--chunk-rows", "10"]).ok();
    assert_same_table(&db, "t", "t.id");

    exec(
        &db.source,
        "DELETE FROM t WHERE id % 10 = 0; UPDATE t SET v = 'changed' WHERE id % 7 = 0;
         INSERT INTO t SELECT g, 'new' || g FROM generate_series(101, 160) g;
         DELETE FROM pre WHERE id > 20; INSERT INTO pre VALUES (99, 'late');",
    );
    db.copy(&["--restart", "--chunk-rows", "10"]).ok();
    let rows = assert_same_table(&db, "t", "t.id");
    assert_eq!(rows, 150);
    assert_eq!(scalar::<i64>(&db.target, "SELECT count(*) - count(DISTINCT id) FROM t"), 0);
    assert_same_indexes(&db, "t");
    assert_chunks_tile(&db.target, db.job(), "public.t", 10, rows);
    assert_eq!(table_fingerprint(&db.source, "pre", "t.id"), table_fingerprint(&db.target, "pre", "t.id"));
    assert_eq!(
        scalar::<Option<String>>(&db.target, "SELECT obj_description('pre'::regclass, 'pg_class')").as_deref(),
        Some("made by hand"),
        "a table the job did not create is emptied and refilled, not recreated"
    );
    let status = db.status(db.job()).ok();
    assert!(status.stdout.contains(&format!("job {}: done", db.job())), "{status:?}");
}

#[test]
fn restart_after_a_killed_job_starts_over() {
    let Some(db) = setup("restart_killed") else { return };
    exec(
        &db.source,
        "CREATE TABLE big (id int PRIMARY KEY, v text); INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, 60000) g;",
    );
    let mut copy = db.spawn_copy(&["--job", "r", "--chunk-rows", "1000", "--workers", "1", "--progress", "none"]);
    let done = "SELECT count(*) FROM rangecopy.chunks WHERE job = 'r' AND status = 'done'";
    let got_going = wait_until(Duration::from_secs(60), || {
        scalar::<bool>(&db.target, "SELECT to_regclass('rangecopy.chunks') IS NOT NULL")
            && scalar::<i64>(&db.target, done) >= 3
    });
    assert!(got_going, "the copy never got going:\n{}", copy.stderr());
    assert_eq!(copy.kill9(), None, "the copy should still have been running");

    // The killed job is visibly unfinished.
    let status = db.status("r").ok();
    assert!(!status.stdout.contains("job r: done"), "{status:?}");
    assert!(!status.table_line("public", "big").contains(&"done"), "big is not done yet:\n{status:?}");

    db.copy(&["--job", "r", "--restart", "--chunk-rows", "3000", "--workers", "2"]).ok();
    let rows = assert_same_table(&db, "big", "t.id");
    assert_eq!(scalar::<i64>(&db.target, "SELECT count(*) - count(DISTINCT id) FROM big"), 0);
    assert_same_indexes(&db, "big");
    // The new run's chunk size applies: the old chunks are gone.
    assert_chunks_tile(&db.target, "r", "public.big", 3000, rows);
    let jobs: i64 =
        scalar(&db.target, &format!("SELECT count(*) FROM rangecopy.jobs WHERE job = {}", quote_literal("r")));
    assert_eq!(jobs, 1);
    assert!(chunks(&db.target, "r").iter().all(|c| c.status == "done"));
}
