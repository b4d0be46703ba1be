//! `copy --into-existing`: backfilling target tables that already hold rows and take writes
//! while the copy runs. A writer thread (its own connection) inserts and updates rows of the
//! target table during the copy and logs each write with the time the row got it; afterwards
//! every source row is there, `skip` kept every row the writer wrote, and `update` made every
//! row equal to the source except those the writer changed after the copy's chunk passed them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::{assert_writes_nothing, exec, scalar, setup, wait_until, Client, TestDbs};

/// Source rows: ids 1..=ROWS, `v = 'src' || id`, `n = id`.
const ROWS: i64 = 40_000;
const CHUNK_ROWS: &str = "2000";

/// The source table, and the same table on the target holding every tenth key already (the
/// application's rows, `v = 'app-pre'`), with a column of its own that the copy does not fill
/// (`w_at`: when the writer last wrote the row), and the writer's log.
fn tables(db: &TestDbs) {
    exec(
        &db.source,
        &format!(
            "CREATE TABLE public.items (id bigint PRIMARY KEY, v text NOT NULL, n bigint);
             INSERT INTO public.items SELECT g, 'src' || g, g FROM generate_series(1, {ROWS}) g;"
        ),
    );
    exec(
        &db.target,
        &format!(
            "CREATE TABLE public.items (id bigint PRIMARY KEY, v text NOT NULL, n bigint, w_at timestamptz);
             INSERT INTO public.items (id, v, n) SELECT g, 'app-pre', -g FROM generate_series(10, {ROWS}, 10) g;
             CREATE TABLE public.writer_log (id bigint PRIMARY KEY, v text, n bigint, w_at timestamptz);"
        ),
    );
}

/// Writes to the target's `items` until stopped: upserts of keys spread over the source's
/// range and beyond it (rows only the application has), each logged with the values and time
/// the row got (its `DO UPDATE` time is taken once the row lock is held). Returns the writes.
fn writer(target: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<i64> {
    std::thread::spawn(move || {
        let mut c = Client::connect(&target).expect("the writer connects");
        let mut i: i64 = 0;
        while !stop.load(Ordering::SeqCst) {
            i += 1;
            let id = (i * 7919) % (ROWS + ROWS / 10) + 1;
            let sql = format!(
                "WITH w AS (
                     INSERT INTO public.items (id, v, n, w_at) VALUES ({id}, 'app-{i}', -{i}, clock_timestamp())
                     ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v, n = EXCLUDED.n, w_at = clock_timestamp()
                     RETURNING id, v, n, w_at)
                 INSERT INTO public.writer_log SELECT * FROM w
                 ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v, n = EXCLUDED.n, w_at = EXCLUDED.w_at"
            );
            c.batch_execute(&sql).unwrap_or_else(|e| panic!("the writer failed: {}", crate::common::pg_error(&e)));
            std::thread::sleep(Duration::from_millis(2));
        }
        i
    })
}

/// Copies `items` with `--into-existing --on-conflict MODE` while the writer runs; returns the
/// job's JSON report and the writes made.
fn copy_while_writing(db: &TestDbs, mode: &str) -> (serde_json::Value, i64) {
    tables(db);
    let stop = Arc::new(AtomicBool::new(false));
    let writes = writer(db.target.clone(), stop.clone());
    // Some writes land before the copy starts, some during it (the rate keeps it a few seconds long).
    assert!(wait_until(Duration::from_secs(10), || scalar::<i64>(
        &db.target,
        "SELECT count(*) FROM public.writer_log"
    ) > 20));
    let report = db.dir.join("copy.json");
    let out = db.copy(&[
        "items",
        "--into-existing",
        "--on-conflict",
        mode,
        "--chunk-rows",
        CHUNK_ROWS,
        "--workers",
        "2",
        "--max-rows-per-sec",
        "15000",
        "--progress",
        "none",
        "--report",
        report.to_str().unwrap(),
    ]);
    stop.store(true, Ordering::SeqCst);
    let writes = writes.join().expect("the writer thread");
    out.ok();
    let during: i64 = scalar(
        &db.target,
        "SELECT count(*) FROM public.writer_log WHERE w_at BETWEEN (SELECT min(started_at) FROM rangecopy.chunks)
                                                        AND (SELECT max(finished_at) FROM rangecopy.chunks)",
    );
    assert!(during > 0, "the writer wrote nothing while the copy ran ({writes} writes)");
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(report).unwrap()).unwrap();
    (report, writes)
}

/// Every source key is in the target once, and the application's rows beyond it are kept.
fn assert_every_source_row_there(db: &TestDbs) {
    let missing: i64 = scalar(
        &db.target,
        &format!(
            "SELECT count(*) FROM generate_series(1, {ROWS}) g WHERE NOT EXISTS (SELECT 1 FROM public.items WHERE id = g)"
        ),
    );
    assert_eq!(missing, 0, "source rows missing from the target");
    let app_only: i64 = scalar(&db.target, &format!("SELECT count(*) FROM public.writer_log WHERE id > {ROWS}"));
    let kept: i64 = scalar(&db.target, &format!("SELECT count(*) FROM public.items WHERE id > {ROWS}"));
    assert_eq!(kept, app_only, "rows only the application has");
}

/// The report's per-table counts: every source row is inserted, skipped or updated once, and
/// they are the state's chunk counts.
fn merged_counts(db: &TestDbs, report: &serde_json::Value) -> (i64, i64, i64) {
    let table = &report["tables"][0];
    let merged = &table["merged"];
    let (inserted, skipped, updated) = (
        merged["inserted"].as_i64().unwrap(),
        merged["skipped"].as_i64().unwrap(),
        merged["updated"].as_i64().unwrap(),
    );
    assert_eq!(inserted + skipped + updated, ROWS, "{table}");
    assert_eq!(table["rows"].as_i64(), Some(ROWS), "{table}");
    let state: (i64, i64, i64) = {
        let mut c = crate::common::connect(&db.target);
        let r = c
            .query_one(
                "SELECT sum(inserted)::int8, sum(skipped)::int8, sum(updated)::int8 FROM rangecopy.chunks
                  WHERE status = 'done'",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1), r.get(2))
    };
    assert_eq!(state, (inserted, skipped, updated));
    let status = db.status(db.job()).ok();
    let words = format!("{inserted} inserted, {skipped} skipped");
    assert!(status.stdout.contains(&words), "status should say {words:?}:\n{status:?}");
    (inserted, skipped, updated)
}

#[test]
fn skip_keeps_every_row_the_application_wrote_and_adds_every_source_row() {
    let Some(db) = setup("backfill_skip") else { return };
    let (report, writes) = copy_while_writing(&db, "skip");
    assert_eq!(report["settings"]["into_existing"].as_str(), Some("skip"));
    assert_every_source_row_there(&db);
    // The writer's last write of each row it touched is what the row holds.
    let overwritten: i64 = scalar(
        &db.target,
        "SELECT count(*) FROM public.writer_log w JOIN public.items i USING (id)
          WHERE (i.v, i.n, i.w_at) IS DISTINCT FROM (w.v, w.n, w.w_at)",
    );
    assert_eq!(overwritten, 0, "rows the application wrote were overwritten under skip ({writes} writes)");
    let wrong: i64 = scalar(
        &db.target,
        &format!(
            "SELECT count(*) FROM public.items i WHERE id <= {ROWS}
                AND NOT EXISTS (SELECT 1 FROM public.writer_log w WHERE w.id = i.id)
                AND (v, n) IS DISTINCT FROM (CASE WHEN id % 10 = 0 THEN ('app-pre'::text, -id) ELSE ('src' || id, id) END)"
        ),
    );
    assert_eq!(wrong, 0, "rows the writer did not touch are neither the application's nor the source's");
    let (inserted, skipped, updated) = merged_counts(&db, &report);
    assert_eq!(updated, 0);
    assert!(skipped >= ROWS / 10, "every pre-existing row is a conflict: {skipped}");
    let source_keys: i64 = scalar(&db.target, &format!("SELECT count(*) FROM public.items WHERE id <= {ROWS}"));
    assert_eq!(source_keys, ROWS);
    assert!(inserted <= ROWS - ROWS / 10);
}

#[test]
fn update_makes_every_row_the_source_s_except_those_written_after_the_copy_passed() {
    let Some(db) = setup("backfill_update") else { return };
    let (report, writes) = copy_while_writing(&db, "update");
    assert_eq!(report["settings"]["into_existing"].as_str(), Some("update"));
    assert_every_source_row_there(&db);
    // Each row with the chunk that copied it: a row holds the source's values unless the
    // writer's last write came after that chunk began (and then it holds the writer's); a
    // row holds the writer's values only if that write was not over before the chunk began.
    let mut c = crate::common::connect(&db.target);
    let r = c
        .query_one(
            &format!(
                "WITH c AS (SELECT lo[1]::int8 AS lo, hi[1]::int8 AS hi, started_at, finished_at
                              FROM rangecopy.chunks WHERE status = 'done'),
                      r AS (SELECT i.id, i.v, i.n, w.v AS wv, w.n AS wn, w.w_at, c.started_at, c.finished_at
                              FROM public.items i LEFT JOIN public.writer_log w USING (id)
                              JOIN c ON (c.lo IS NULL OR i.id >= c.lo) AND (c.hi IS NULL OR i.id < c.hi)
                             WHERE i.id <= {ROWS})
                 SELECT count(*),
                        count(*) FILTER (WHERE (v, n) = ('src' || id, id) AND w_at > finished_at),
                        count(*) FILTER (WHERE w_at IS NOT NULL AND (v, n) = (wv, wn) AND w_at < started_at),
                        count(*) FILTER (WHERE (v, n) IS DISTINCT FROM ('src' || id, id)
                                           AND (w_at IS NULL OR (v, n) IS DISTINCT FROM (wv, wn))),
                        count(*) FILTER (WHERE w_at IS NOT NULL AND (v, n) = (wv, wn))
                   FROM r"
            ),
            &[],
        )
        .unwrap();
    let (rows, lost_later_write, kept_earlier_write, neither, writer_wins): (i64, i64, i64, i64, i64) =
        (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
    assert_eq!(rows, ROWS, "each source row lies in exactly one done chunk");
    assert_eq!(lost_later_write, 0, "writes made after the copy passed were overwritten");
    assert_eq!(kept_earlier_write, 0, "writes made before the copy reached a row were not overwritten");
    assert_eq!(neither, 0, "rows that are neither the source's nor the writer's");
    eprintln!("{writes} writes, {writer_wins} source rows hold a write made after the copy passed them");
    let (inserted, skipped, updated) = merged_counts(&db, &report);
    assert_eq!(skipped, 0);
    assert!(updated >= ROWS / 10, "every pre-existing row is overwritten: {updated}");
    assert!(inserted > 0);
    // The application's own column is never touched by the copy.
    let app_column: i64 = scalar(&db.target, "SELECT count(*) FROM public.items WHERE w_at IS NOT NULL");
    let logged: i64 = scalar(&db.target, "SELECT count(*) FROM public.writer_log");
    assert_eq!(app_column, logged);
}

/// A kill -9 in the middle, then `--resume` (which keeps the job's mode; another mode is
/// refused): every source row once, the application's rows kept, the counts right.
#[test]
fn kill_9_mid_backfill_then_resume_merges_every_chunk_once() {
    let Some(db) = setup("backfill_kill9") else { return };
    tables(&db);
    let args = [
        "items",
        "--into-existing",
        "--chunk-rows",
        CHUNK_ROWS,
        "--workers",
        "2",
        "--max-rows-per-sec",
        "10000",
        "--progress",
        "none",
    ];
    let mut copy = db.spawn_copy(&args);
    let done = |db: &TestDbs| -> i64 {
        match scalar::<bool>(&db.target, "SELECT to_regclass('rangecopy.chunks') IS NULL") {
            true => 0,
            false => scalar(&db.target, "SELECT count(*) FROM rangecopy.chunks WHERE status = 'done'"),
        }
    };
    let reached = wait_until(Duration::from_secs(60), || done(&db) >= 4);
    let code = copy.kill9();
    assert!(reached && code.is_none(), "the copy should have been killed mid-run (exit {code:?})");
    // At the kill: the source's rows are exactly those of the done chunks; the rest of the
    // table is the application's.
    let mut c = crate::common::connect(&db.target);
    let r = c
        .query_one(
            "WITH c AS (SELECT lo[1]::int8 AS lo, hi[1]::int8 AS hi FROM rangecopy.chunks WHERE status = 'done')
             SELECT count(*) FILTER (WHERE v LIKE 'src%'),
                    count(*) FILTER (WHERE v LIKE 'src%' AND NOT EXISTS (
                        SELECT 1 FROM c WHERE (c.lo IS NULL OR id >= c.lo) AND (c.hi IS NULL OR id < c.hi))),
                    (SELECT coalesce(sum(inserted), 0)::int8 FROM rangecopy.chunks WHERE status = 'done'),
                    count(*) FILTER (WHERE v = 'app-pre')
               FROM public.items",
            &[],
        )
        .unwrap();
    let (copied, outside, inserted, pre): (i64, i64, i64, i64) = (r.get(0), r.get(1), r.get(2), r.get(3));
    assert_eq!(outside, 0, "rows of chunks not done were committed");
    assert_eq!(copied, inserted, "rows committed without their done-mark, or the other way round");
    assert_eq!(pre, ROWS / 10);
    // Resuming under another mode is refused and writes nothing.
    assert_writes_nothing(&db.target, || {
        db.copy(&["--job", db.job(), "--resume", "--into-existing", "--on-conflict", "update", "--progress", "none"])
            .refused(&["--on-conflict skip", "--on-conflict update"])
    });
    let report = db.dir.join("resume.json");
    db.copy(&["--resume", "--progress", "none", "--report", report.to_str().unwrap()]).ok();
    assert_every_source_row_there(&db);
    let (src, pre): (i64, i64) = (
        scalar(&db.target, "SELECT count(*) FROM public.items WHERE (v, n) = ('src' || id, id)"),
        scalar(&db.target, "SELECT count(*) FROM public.items WHERE v = 'app-pre'"),
    );
    assert_eq!((src, pre), (ROWS - ROWS / 10, ROWS / 10));
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(report).unwrap()).unwrap();
    let (inserted, skipped, updated) = merged_counts(&db, &report);
    assert_eq!((inserted, skipped, updated), (ROWS - ROWS / 10, ROWS / 10, 0));
}

/// A target table without a key to merge on is refused (exit 2) before anything is written,
/// as is one whose only unique index is partial; `--on-conflict` needs `--into-existing`.
#[test]
fn a_target_table_without_a_usable_key_is_refused_and_nothing_is_written() {
    let Some(db) = setup("backfill_keyless") else { return };
    exec(
        &db.source,
        "CREATE TABLE public.k (id int PRIMARY KEY, v text); INSERT INTO public.k VALUES (1, 'a'), (2, 'b');
         CREATE TABLE public.p (id int PRIMARY KEY, v text); INSERT INTO public.p VALUES (1, 'a');",
    );
    exec(
        &db.target,
        "CREATE TABLE public.k (id int, v text); INSERT INTO public.k VALUES (1, 'app');
         CREATE TABLE public.p (id int NOT NULL, v text); CREATE UNIQUE INDEX ON public.p (id) WHERE v IS NOT NULL;",
    );
    for table in ["k", "p"] {
        assert_writes_nothing(&db.target, || {
            db.copy(&[table, "--into-existing", "--progress", "none"])
                .refused(&[&format!("target table public.{table} has no primary key"), "--into-existing"])
        });
    }
    let out = db.copy(&["k", "--on-conflict", "skip", "--progress", "none"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("--into-existing"), "{out:?}");
}

/// A source row that collides with an application row on another unique index than the merge
/// key fails its chunk (exit 1) saying which value and what to do; the other chunks are kept,
/// and once the application's row is dealt with, the resume merges the rest.
#[test]
fn a_conflict_on_another_unique_index_says_which_rows_and_resumes_once_resolved() {
    let Some(db) = setup("backfill_other_key") else { return };
    let users = "CREATE TABLE public.users (id int PRIMARY KEY, email text NOT NULL UNIQUE)";
    exec(
        &db.source,
        &format!("{users}; INSERT INTO public.users SELECT g, 'u' || g || '@x' FROM generate_series(1, 10000) g"),
    );
    exec(&db.target, &format!("{users}; INSERT INTO public.users VALUES (20000, 'u7777@x'), (7, 'u7@x')"));
    let args = ["users", "--job", "other_key", "--into-existing", "--chunk-rows", "1000", "--progress", "none"];
    let out = db.copy(&args);
    assert_eq!(out.code, 1, "{out:?}");
    for words in ["users_email_key", "(email)=(u7777@x)", "change or delete one of the two rows", "--resume"] {
        assert!(out.stderr.contains(words), "no {words:?} in:\n{}", out.stderr);
    }
    let done: i64 =
        scalar(&db.target, "SELECT count(*) FROM rangecopy.chunks WHERE job = 'other_key' AND status = 'done'");
    assert!(done >= 1, "no chunk was kept");
    assert_eq!(scalar::<i64>(&db.target, "SELECT count(*) FROM public.users WHERE id BETWEEN 7001 AND 8000"), 0);

    exec(&db.target, "DELETE FROM public.users WHERE id = 20000");
    let mut resume = args.to_vec();
    resume.push("--resume");
    db.copy(&resume).ok();
    assert_eq!(scalar::<i64>(&db.target, "SELECT count(*) FROM public.users"), 10_000);
    assert_eq!(scalar::<i64>(&db.target, "SELECT count(*) FROM public.users WHERE email = 'u' || id || '@x'"), 10_000);
}

/// A `--restart` of a backfill forgets the job's record of a table that existed before it and
/// merges again: the application's rows are never emptied.
#[test]
fn restart_of_a_backfill_keeps_the_tables_rows() {
    let Some(db) = setup("backfill_restart") else { return };
    tables(&db);
    exec(&db.target, "INSERT INTO public.items (id, v, n) VALUES (900000, 'app-only', 0)");
    db.copy(&["items", "--into-existing", "--on-conflict", "update", "--chunk-rows", CHUNK_ROWS, "--progress", "none"])
        .ok();
    let html = db.dir.join("restart.html");
    let out = db.copy(&["items", "--restart", "--progress", "none", "--report", html.to_str().unwrap()]).ok();
    assert!(out.stderr.contains("its rows stay"), "{out:?}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains(&format!("0 inserted, 0 skipped (the target's rows kept), {ROWS} updated")), "{page}");
    assert_eq!(scalar::<i64>(&db.target, "SELECT count(*) FROM public.items"), ROWS + 1);
    assert_eq!(scalar::<i64>(&db.target, "SELECT count(*) FROM public.items WHERE v = 'app-only'"), 1);
    // The restarted job kept its mode: every row was found and overwritten again.
    let updated: i64 = scalar(&db.target, "SELECT sum(updated)::int8 FROM rangecopy.chunks WHERE status = 'done'");
    assert_eq!(updated, ROWS);
}

/// MariaDB source into an existing PostgreSQL table: a first job creates and fills it, the
/// application deletes and changes rows, and a backfill with `update` brings it back.
#[test]
fn mariadb_source_into_an_existing_table() {
    let Some((db, my)) = crate::mysql::my_setup("backfill_mariadb") else { return };
    crate::mysql::my_exec(
        &my.url,
        "CREATE TABLE items (id INT PRIMARY KEY, v VARCHAR(20) NOT NULL);
         INSERT INTO items SELECT seq, CONCAT('src', seq) FROM seq_1_to_5000;",
    );
    crate::mysql::copy(&my, &db.target, &["--job", "first"]).ok();
    let table = format!("\"{}\".items", my.name);
    exec(&db.target, &format!("DELETE FROM {table} WHERE id % 5 = 0; UPDATE {table} SET v = 'app' WHERE id % 5 = 1;"));
    let report = db.dir.join("my.json");
    crate::mysql::copy(
        &my,
        &db.target,
        &["--job", "second", "--into-existing", "--on-conflict", "update", "--report", report.to_str().unwrap()],
    )
    .ok();
    let same: i64 = scalar(&db.target, &format!("SELECT count(*) FROM {table} WHERE v = 'src' || id"));
    assert_eq!(same, 5000);
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(report).unwrap()).unwrap();
    let merged = &report["tables"][0]["merged"];
    assert_eq!((merged["inserted"].as_i64(), merged["updated"].as_i64()), (Some(1000), Some(4000)), "{report}");
}

/// The application's triggers do not fire for backfilled rows, a child table's rows merge
/// before its parent's without tripping its foreign key, and sequences only move forward.
#[test]
fn backfill_holds_triggers_and_foreign_keys_and_never_moves_a_sequence_back() {
    let Some(db) = setup("backfill_triggers") else { return };
    let ddl = "CREATE TABLE public.parent (id bigserial PRIMARY KEY, name text);
               CREATE TABLE public.child (id bigserial PRIMARY KEY, parent_id bigint NOT NULL, note text);
               CREATE TABLE public.tagged (id bigint PRIMARY KEY, tag text);";
    exec(
        &db.source,
        &format!(
            "{ddl}
             INSERT INTO public.parent (name) SELECT 'p' || g FROM generate_series(1, 3000) g;
             INSERT INTO public.child (parent_id, note) SELECT 1 + g % 3000, 'c' || g FROM generate_series(1, 6000) g;
             INSERT INTO public.tagged SELECT g, 't' || g FROM generate_series(1, 500) g;"
        ),
    );
    // The target: the application's rows, a foreign key, an audit trigger on a table with no
    // foreign key (tagged), and sequences one ahead of the source's (parent) and one behind it
    // (child).
    exec(
        &db.target,
        &format!(
            "{ddl}
             ALTER TABLE public.child ADD FOREIGN KEY (parent_id) REFERENCES public.parent;
             CREATE TABLE public.audit (table_name text, id bigint);
             CREATE FUNCTION public.audit() RETURNS trigger LANGUAGE plpgsql AS
                 $$BEGIN INSERT INTO public.audit VALUES (TG_TABLE_NAME, NEW.id); RETURN NEW; END$$;
             CREATE TRIGGER audit AFTER INSERT OR UPDATE ON public.parent FOR EACH ROW EXECUTE FUNCTION public.audit();
             CREATE TRIGGER audit AFTER INSERT OR UPDATE ON public.tagged FOR EACH ROW EXECUTE FUNCTION public.audit();
             INSERT INTO public.parent (id, name) VALUES (50000, 'app');
             SELECT setval('public.parent_id_seq', 50000);
             SELECT setval('public.child_id_seq', 10);"
        ),
    );
    exec(&db.target, "INSERT INTO public.tagged VALUES (1, 'app')");
    let audited_before: i64 = scalar(&db.target, "SELECT count(*) FROM public.audit");
    assert_eq!(audited_before, 2, "the trigger works for the application");
    db.copy(&["tagged", "--job", "tagged", "--into-existing", "--progress", "none"]).ok();
    assert_eq!(scalar::<i64>(&db.target, "SELECT count(*) FROM public.tagged"), 500);
    // Children first, one worker, so the child's rows arrive before their parents'.
    db.copy(&["child", "parent", "--into-existing", "--workers", "1", "--chunk-rows", "1000", "--progress", "none"])
        .ok();
    let child_first: bool = scalar(
        &db.target,
        "SELECT min(c.finished_at) FILTER (WHERE t.target_name = 'child')
              < min(c.finished_at) FILTER (WHERE t.target_name = 'parent')
           FROM rangecopy.chunks c JOIN rangecopy.tables t USING (job, table_no) WHERE c.job <> 'tagged'",
    );
    assert!(child_first, "the child's rows were to be merged first");
    assert_eq!(scalar::<i64>(&db.target, "SELECT count(*) FROM public.parent"), 3001);
    assert_eq!(scalar::<i64>(&db.target, "SELECT count(*) FROM public.child"), 6000);
    assert_eq!(scalar::<i64>(&db.target, "SELECT count(*) FROM public.audit"), audited_before, "triggers fired");
    assert_eq!(scalar::<i64>(&db.target, "SELECT last_value FROM public.parent_id_seq"), 50000, "moved back");
    assert_eq!(scalar::<i64>(&db.target, "SELECT last_value FROM public.child_id_seq"), 6000, "not moved forward");
}

/// Chunks whose key range the target holds no row of go straight into the table (no staging,
/// no merge); a row the application inserts into such a range while the chunk loads makes the
/// load fail on the key, and the chunk is merged instead: the application's row is kept, every
/// source row arrives, and the counts add up.
#[test]
fn an_empty_range_loads_directly_and_a_row_written_into_it_meanwhile_is_kept() {
    let Some(db) = setup("backfill_direct") else { return };
    exec(
        &db.source,
        "CREATE TABLE public.events (id bigint PRIMARY KEY, v text NOT NULL);
         INSERT INTO public.events SELECT g, 'src' || g FROM generate_series(1, 10000) g;",
    );
    // The application has written only new rows so far (keys above the history's).
    exec(
        &db.target,
        "CREATE TABLE public.events (id bigint PRIMARY KEY, v text NOT NULL);
         INSERT INTO public.events SELECT g, 'app' FROM generate_series(9901, 10100) g;",
    );
    // An application transaction inserts a key inside the first chunk's range and stays open:
    // the chunk finds its range empty (the row is not committed), and its load waits on the key.
    let mut app = Client::connect(&db.target).expect("the application connects");
    app.batch_execute("BEGIN; INSERT INTO public.events VALUES (500, 'app-late')").unwrap();
    let report = db.dir.join("copy.json");
    let mut copy = db.spawn_copy(&[
        "events",
        "--into-existing",
        "--chunk-rows",
        "1000",
        "--workers",
        "1",
        "--progress",
        "none",
        "--report",
        report.to_str().unwrap(),
    ]);
    let waiting = wait_until(Duration::from_secs(60), || {
        scalar::<i64>(
            &db.target,
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'COPY%'",
        ) > 0
    });
    assert!(waiting, "the first chunk's load never waited on the application's key:\n{}", copy.stderr());
    app.batch_execute("COMMIT").unwrap();
    let out = copy.wait(Duration::from_secs(120));
    assert_eq!(out.code, 0, "{out:?}");
    let kept: String = scalar(&db.target, "SELECT v FROM public.events WHERE id = 500");
    assert_eq!(kept, "app-late", "the application's row is kept (--on-conflict skip)");
    let (rows, from_source): (i64, i64) = (
        scalar(&db.target, "SELECT count(*) FROM public.events"),
        scalar(&db.target, "SELECT count(*) FROM public.events WHERE v = 'src' || id"),
    );
    assert_eq!((rows, from_source), (10100, 10000 - 100 - 1));
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let merged = &report["tables"][0]["merged"];
    let counts = (merged["inserted"].as_i64(), merged["skipped"].as_i64(), merged["updated"].as_i64());
    assert_eq!(counts, (Some(10000 - 101), Some(101), Some(0)), "{report}");
}
