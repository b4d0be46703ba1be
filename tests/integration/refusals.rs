//! Bad input is refused with exit code 2 before anything is written: no table created or
//! filled, no `rangecopy` state recorded or changed.

use std::time::Duration;

use crate::common::{
    assert_same_table, assert_writes_nothing, exec, quote_literal, scalar, setup, table_fingerprint, wait_until,
    TestDbs,
};

fn two_tables(db: &TestDbs) {
    exec(
        &db.source,
        "CREATE TABLE a (id int PRIMARY KEY, v text); INSERT INTO a SELECT g, 'a' || g FROM generate_series(1, 50) g;
         CREATE TABLE b (id int PRIMARY KEY, v text); INSERT INTO b SELECT g, 'b' || g FROM generate_series(1, 50) g;",
    );
}

#[test]
fn non_empty_target_table_not_filled_by_a_job_is_refused() {
    let Some(db) = setup("refuse_nonempty") else { return };
    two_tables(&db);
    exec(&db.target, "CREATE TABLE b (id int PRIMARY KEY, v text); INSERT INTO b VALUES (1, 'mine');");
    assert_writes_nothing(&db.target, || db.copy(&[]).refused(&["public.b", "rows"]));
    assert_writes_nothing(&db.target, || db.copy(&["a", "b"]).refused(&["public.b", "rows"]));
    // The table that was not in the way is still copyable on its own.
    db.copy(&["a"]).ok();
    assert_same_table(&db, "a", "t.id");
}

/// Starts a copy of `big` and kills it once a few chunks are done: an unfinished job.
fn killed_job(db: &TestDbs, job: &str) {
    exec(
        &db.source,
        "CREATE TABLE big (id int PRIMARY KEY, v text);
         INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, 60000) g;",
    );
    let mut copy = db.spawn_copy(&["big", "--job", job, "--chunk-rows", "1000", "--workers", "1"]);
    let sql = format!("SELECT count(*) FROM rangecopy.chunks WHERE job = {} AND status = 'done'", quote_literal(job));
    let got_going = wait_until(Duration::from_secs(60), || {
        scalar::<bool>(&db.target, "SELECT to_regclass('rangecopy.chunks') IS NOT NULL")
            && scalar::<i64>(&db.target, &sql) >= 3
    });
    assert!(got_going, "the copy never got going:\n{}", copy.stderr());
    assert_eq!(copy.kill9(), None, "the copy should still have been running");
}

#[test]
fn unfinished_job_run_again_without_resume_is_refused() {
    let Some(db) = setup("refuse_unfinished") else { return };
    killed_job(&db, "j1");
    let args = ["big", "--job", "j1", "--chunk-rows", "1000", "--workers", "1"];
    let run = assert_writes_nothing(&db.target, || db.copy(&args).refused(&["--resume"]));
    assert!(run.stderr.contains("j1"), "the message should name the job:\n{run:?}");
    // Another job may not fill the same table meanwhile.
    assert_writes_nothing(&db.target, || db.copy(&["big", "--job", "j2"]).refused(&["j1"]));

    // Two processes never run the same job at once. Hold the first one at its first COPY
    // (a lock on the target table) so the second surely starts while the first runs.
    let mut locker = crate::common::connect(&db.target);
    locker.batch_execute("BEGIN; LOCK TABLE big IN ACCESS EXCLUSIVE MODE").expect("locking big");
    let mut first = db.spawn_copy(&[&args[..], &["--resume", "--progress", "none"]].concat());
    let holding = wait_until(Duration::from_secs(30), || {
        // Advisory locks of this database only: other tests' jobs hold theirs meanwhile.
        let sql = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted
                      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())";
        scalar::<i64>(&db.target, sql) > 0
    });
    assert!(holding, "the resumed copy never took its job lock:\n{}", first.stderr());
    db.copy(&[&args[..], &["--resume"]].concat()).refused(&["j1", "another"]);
    locker.batch_execute("COMMIT").expect("releasing big");
    let run = first.wait(Duration::from_secs(120));
    assert_eq!(run.code, 0, "the resumed copy should finish:\n{run:?}");
    assert_same_table(&db, "big", "t.id");

    // A finished job is not run again by accident either.
    let run = assert_writes_nothing(&db.target, || db.copy(&args).refused(&["--restart"]));
    assert!(run.stderr.contains("j1"), "{run:?}");
}

#[test]
fn resume_of_an_unknown_job_is_refused() {
    let Some(db) = setup("refuse_unknown_job") else { return };
    two_tables(&db);
    assert_writes_nothing(&db.target, || db.copy(&["--resume", "--job", "nope"]).refused(&["nope"]));
    db.copy(&["a", "--job", "other"]).ok();
    assert_writes_nothing(&db.target, || db.copy(&["--resume", "--job", "nope"]).refused(&["nope"]));
    assert_writes_nothing(&db.target, || db.copy(&["b", "--resume", "--job", "nope"]).refused(&["nope"]));
}

#[test]
fn missing_source_table_is_refused() {
    let Some(db) = setup("refuse_missing") else { return };
    two_tables(&db);
    assert_writes_nothing(&db.target, || db.copy(&["a", "absent"]).refused(&["absent"]));
    assert_writes_nothing(&db.target, || db.copy(&["nowhere.a"]).refused(&["nowhere"]));
    assert_writes_nothing(&db.target, || db.copy(&[r#""A""#]).refused(&["A"]));
}

#[test]
fn table_listed_twice_is_refused() {
    let Some(db) = setup("refuse_twice") else { return };
    two_tables(&db);
    assert_writes_nothing(&db.target, || db.copy(&["a", "b", "a"]).refused(&["more than once"]));
    assert_writes_nothing(&db.target, || db.copy(&["a", "public.a"]).refused(&["more than once"]));
    assert_writes_nothing(&db.target, || db.copy(&["A", r#""public"."a""#]).refused(&["more than once"]));
}

#[test]
fn bad_numbers_and_flag_combinations_are_refused() {
    let Some(db) = setup("refuse_flags") else { return };
    two_tables(&db);
    let cases: &[(&[&str], &str)] = &[
        (&["--workers", "0"], "--workers"),
        (&["--workers=-1"], "--workers"),
        (&["--workers", "many"], "--workers"),
        (&["--chunk-rows", "-5"], "-5"),
        (&["--chunk-rows=-5"], "--chunk-rows"),
        (&["--chunk-rows", "0"], "--chunk-rows"),
        (&["--resume", "--restart"], "--restart"),
        (&["--progress-interval", "0"], "--progress-interval"),
        (&["--report", "/nonexistent-dir-of-rangecopy-tests/r.json"], "--report"),
        (&["--job", " "], "--job"),
        (&["a.b.c"], "a.b.c"),
        (&[r#""unterminated"#], "quote"),
    ];
    for (args, word) in cases {
        assert_writes_nothing(&db.target, || db.copy(args).refused(&[word]));
    }
}

#[test]
fn bad_urls_are_refused() {
    let Some(db) = setup("refuse_urls") else { return };
    two_tables(&db);
    let target_as = |scheme: &str| db.target.replacen("postgres://", scheme, 1);
    let cases: Vec<(String, String, &str)> = vec![
        (db.source.clone(), target_as("http://"), "--target"),
        (db.source.clone(), target_as("mysql://"), "--target"),
        (db.source.replacen("postgres://", "postgress://", 1), db.target.clone(), "--source"),
        (db.source.replacen("postgres://", "", 1), db.target.clone(), "--source"),
        (db.source.clone(), "localhost:54331".to_string(), "--target"),
    ];
    for (source, target, word) in &cases {
        assert_writes_nothing(&db.target, || {
            crate::common::run(&["copy", "--source", source, "--target", target, "a"]).refused(&[word])
        });
    }
    crate::common::run(&["status", "--target", &target_as("http://")]).refused(&["--target"]);
}

#[test]
fn existing_empty_target_table_with_a_different_column_type_is_refused() {
    let Some(db) = setup("refuse_mismatch") else { return };
    two_tables(&db);
    exec(&db.target, "CREATE TABLE a (id int PRIMARY KEY, v int);");
    let run = assert_writes_nothing(&db.target, || db.copy(&["a", "b"]).refused(&["public.a", "v"]));
    assert!(
        run.stderr.contains("text") && run.stderr.contains("integer"),
        "the message should name both types:\n{run:?}"
    );
    exec(&db.target, "DROP TABLE a; CREATE TABLE a (id int PRIMARY KEY);");
    assert_writes_nothing(&db.target, || db.copy(&["a"]).refused(&["public.a", "v"]));
}

#[test]
fn existing_empty_target_table_that_matches_is_loaded_as_it_is() {
    let Some(db) = setup("existing_table") else { return };
    two_tables(&db);
    exec(
        &db.target,
        "CREATE TABLE a (id int PRIMARY KEY, v text, extra text DEFAULT 'target only');
         CREATE INDEX a_target_own ON a (extra);
         CREATE TABLE b (id int, v text);",
    );
    db.copy(&["a", "b", "--chunk-rows", "7"]).ok();
    let copied = "(SELECT id, v FROM a)";
    assert_eq!(table_fingerprint(&db.source, copied, "t.id"), table_fingerprint(&db.target, copied, "t.id"));
    assert_eq!(scalar::<i64>(&db.target, "SELECT count(*) FROM a WHERE extra = 'target only'"), 50);
    // The table kept its own shape: its extra column and index, one primary key.
    let indexes: i64 = scalar(&db.target, "SELECT count(*) FROM pg_index WHERE indrelid = 'a'::regclass");
    assert_eq!(indexes, 2, "the target table's own indexes, nothing added twice");
    assert_eq!(table_fingerprint(&db.source, "b", "t.id"), table_fingerprint(&db.target, "b", "t.id"));
}

/// Regression: an unknown unqualified table was shown as `"".name`, with no hint. It is shown
/// as written, with the closest names the source has.
#[test]
fn an_unknown_table_is_shown_as_written_with_the_closest_names() {
    let Some(db) = setup("refuse_unknown_table") else { return };
    exec(&db.source, "CREATE SCHEMA shop; CREATE TABLE shop.orders (id int PRIMARY KEY); CREATE TABLE shop.staff (id int PRIMARY KEY);");
    let run = assert_writes_nothing(&db.target, || db.copy(&["order"]).refused(&["did you mean shop.orders?"]));
    assert!(run.stderr.contains("table order not found"), "{run:?}");
    assert!(!run.stderr.contains("\"\""), "{run:?}");
    assert_writes_nothing(&db.target, || db.copy(&["invoices"]).refused(&["table invoices not found"]));
}
