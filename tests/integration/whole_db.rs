//! The whole database arrives: production-like fixtures (`tests/fixtures/pg_whole.sql`,
//! `tests/fixtures/my_whole.sql`, and `*_film_rental.sql` in the shape of the sample databases
//! users try first) copied with default settings, then the target compared with
//! the source object by object: for PostgreSQL through `pg_dump --schema-only` of both sides,
//! for MariaDB through the target's catalog and behaviour (foreign keys, CHECKs, the `ON UPDATE`
//! trigger, index methods, enum labels). Rows are compared by PostgreSQL and by `verify`, and a
//! copy killed with `-9` while it adds foreign keys is resumed to the same database.
//!
//! The fixture loaders here are the ones to reuse (demo, benchmarks): `load_pg_whole`,
//! `create_fixture_roles`, `load_my_script`. Both fixtures also load with the engines' own
//! clients (`psql -1 -f`, `mariadb DB <`).
//!
//! The checks after a successful copy are collected, not stopped at the first: a failure lists
//! every difference found, so one run says everything that is missing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use mysql::prelude::Queryable;
use serde_json::Value;

use crate::common::{
    self, connect, exec, my_conn, run, setup, texts, wait_until, without_password, Run, TestDbs, PASSWORD,
};
use crate::mysql::{my_setup, my_text, MyDb};

/// Longest a whole-database copy, resume or verify may take in these tests.
const WHOLE_LIMIT: Duration = Duration::from_secs(300);

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

/// The path of a file in `tests/fixtures`.
pub fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("fixtures").join(name)
}

fn read_fixture(name: &str) -> String {
    let path = fixture_path(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Creates the roles `pg_whole.sql` grants to (`pg_whole_roles.sql`) on the server behind
/// `admin_url`; safe to run again and concurrently.
pub fn create_fixture_roles(admin_url: &str) {
    exec(admin_url, &read_fixture("pg_whole_roles.sql"));
}

/// Loads `pg_whole.sql` into the test's source database in one transaction, after creating its
/// roles on both servers (the target needs them to restore the grants).
pub fn load_pg_whole(db: &TestDbs) {
    for admin in db.admin_urls() {
        create_fixture_roles(&admin);
    }
    exec(&db.source, &format!("BEGIN;\n{}\nCOMMIT;", read_fixture("pg_whole.sql")));
}

/// Runs a MariaDB script the way the `mariadb` client does: a statement ends at the current
/// delimiter (`;`, or what a `DELIMITER` line sets) and is sent on its own, all on one session
/// (so `SET SESSION sql_mode` holds for the rest).
pub fn load_my_script(url: &str, script: &str) {
    let mut conn = my_conn(url).expect("connecting to MariaDB");
    let mut delimiter = ";".to_string();
    let mut statement = String::new();
    for line in script.lines() {
        let trimmed = line.trim();
        if statement.is_empty() {
            if trimmed.is_empty() || trimmed.starts_with("--") {
                continue;
            }
            if let Some(d) = trimmed.strip_prefix("DELIMITER ") {
                delimiter = d.trim().to_string();
                continue;
            }
        }
        statement.push_str(line);
        statement.push('\n');
        if trimmed.ends_with(delimiter.as_str()) {
            let sql = statement.trim_end();
            let sql = &sql[..sql.len() - delimiter.len()];
            conn.query_drop(sql)
                .unwrap_or_else(|e| panic!("{}\nwhile running:\n{sql}", e.to_string().replace(PASSWORD, "***")));
            statement.clear();
        }
    }
    assert!(statement.trim().is_empty(), "the script ends inside a statement:\n{statement}");
}

// ---------------------------------------------------------------------------------------------
// Comparing two PostgreSQL databases
// ---------------------------------------------------------------------------------------------

/// `pg_dump --schema-only` of a database without the `rangecopy` state schema, as its entries
/// (each `-- Name: …; Type: …` header with its statements), sorted, without what differs between
/// any two dumps (the `\restrict` key, the version lines). Sorted because pg_dump breaks some
/// ties by OID, and OIDs differ between two databases built in different orders.
pub fn schema_dump(url: &str) -> Vec<String> {
    let out = Command::new("pg_dump")
        .args(["--schema-only", "--exclude-schema=rangecopy", "--dbname"])
        .arg(without_password(url))
        .env("PGPASSWORD", PASSWORD)
        .output()
        .expect("running pg_dump (it comes with the PostgreSQL client package)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "pg_dump failed: {}", stderr.replace(PASSWORD, "***"));
    let dump = String::from_utf8(out.stdout).expect("pg_dump writes UTF-8");
    let kept: Vec<&str> = dump
        .lines()
        .filter(|l| {
            !(l.starts_with("\\restrict ")
                || l.starts_with("\\unrestrict ")
                || l.starts_with("-- Dumped from database version")
                || l.starts_with("-- Dumped by pg_dump version"))
        })
        .collect();
    let kept = kept.join("\n");
    let mut entries: Vec<String> = kept
        .split("\n--\n-- Name: ")
        .skip(1) // the preamble: SET lines, the same on both sides
        .map(|e| {
            let e = e.split("\n--\n-- PostgreSQL database dump complete").next().unwrap_or(e);
            format!("-- Name: {}", e.trim())
        })
        .collect();
    entries.sort();
    entries
}

/// What is in `a` and not in `b`, both sorted (counting repeats).
fn sorted_minus<'a>(a: &'a [String], b: &[String]) -> Vec<&'a String> {
    let (mut i, mut j, mut only) = (0, 0, Vec::new());
    while i < a.len() {
        if j < b.len() && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if j < b.len() && b[j] < a[i] {
            j += 1;
        } else {
            only.push(&a[i]);
            i += 1;
        }
    }
    only
}

/// `None` when the two schema dumps are equal, else the entries only one side has.
pub fn schema_difference(source: &str, target: &str) -> Option<String> {
    let (s, t) = (schema_dump(source), schema_dump(target));
    if s == t {
        return None;
    }
    let (only_s, only_t) = (sorted_minus(&s, &t), sorted_minus(&t, &s));
    let show = |v: &[&String]| v.iter().map(|e| e.as_str()).collect::<Vec<_>>().join("\n\n");
    Some(format!(
        "pg_dump --schema-only differs: {} of {} source entries missing or different on the target, {} target \
         entries not in the source\n\n--- only in the source ---\n{}\n\n+++ only in the target +++\n{}",
        only_s.len(),
        s.len(),
        only_t.len(),
        show(&only_s),
        show(&only_t)
    ))
}

/// Every ordinary table and materialized view outside the system and state schemas, quoted.
fn relations(url: &str) -> Vec<String> {
    texts(
        url,
        "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'rangecopy')
            AND n.nspname !~ '^pg_toast' ORDER BY 1",
    )
    .into_iter()
    .flatten()
    .collect()
}

/// Each relation's rows (its own, not its inheritance children's) as count and md5, computed by
/// PostgreSQL in the text form's order.
fn fingerprints(url: &str, relations: &[String]) -> Vec<String> {
    // One session for all: logging in costs a SCRAM exchange, slow in a debug build.
    let mut client = connect(url);
    relations
        .iter()
        .map(|r| {
            let sql = format!(
                "SELECT count(*) || ' rows, md5 ' || coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t::text COLLATE \"C\")), '')
                   FROM ONLY {r} t"
            );
            format!("{r}: {}", lines_on(&mut client, &sql).join(""))
        })
        .collect()
}

/// A query's first column as text (NULL as `NULL`); an error becomes the one line `ERROR …`,
/// so that a missing object is one more finding, not the end of the test.
fn lines(url: &str, sql: &str) -> Vec<String> {
    lines_on(&mut connect(url), sql)
}

fn lines_on(client: &mut common::Client, sql: &str) -> Vec<String> {
    match client.query(sql, &[]) {
        Ok(rows) => rows.iter().map(|r| r.get::<_, Option<String>>(0).unwrap_or_else(|| "NULL".into())).collect(),
        Err(e) => vec![format!("ERROR {}", common::pg_error(&e))],
    }
}

/// Sequence positions: `schema.name last_value` (empty when never called).
const SEQUENCES: &str = "SELECT format('%I.%I %s', schemaname, sequencename, last_value) FROM pg_sequences
     WHERE schemaname <> 'rangecopy' ORDER BY 1";

/// Partition keys and bounds.
const PARTITIONS: &str = "SELECT c.oid::regclass::text || ' ' || coalesce(pg_get_expr(c.relpartbound, c.oid), '')
            || coalesce(' KEY ' || pg_get_partkeydef(c.oid), '')
       FROM pg_class c WHERE c.relispartition OR c.relkind = 'p' ORDER BY 1";

/// Foreign keys not validated.
const UNVALIDATED_FKS: &str =
    "SELECT k.conrelid::regclass::text || ' ' || k.conname || ' -> ' || k.confrelid::regclass::text
            || coalesce(' (clone of ' || (SELECT p.conname FROM pg_constraint p WHERE p.oid = k.conparentid) || ')', '')
       FROM pg_constraint k WHERE k.contype = 'f' AND NOT k.convalidated ORDER BY 1";

/// Loaded tables ANALYZE has not seen.
const NOT_ANALYZED: &str = "SELECT format('%I.%I', s.schemaname, s.relname) FROM pg_stat_user_tables s
       JOIN pg_class c ON c.oid = s.relid
      WHERE c.relkind = 'r' AND s.schemaname <> 'rangecopy'
        AND s.last_analyze IS NULL AND s.last_autoanalyze IS NULL ORDER BY 1";

/// The large object the fixture stores.
const LARGE_OBJECT: &str = "SELECT (SELECT count(*) FROM pg_largeobject_metadata)::text || ' ' ||
            coalesce((SELECT md5(lo_get(loid)) FROM audit.blobs WHERE name = 'manual'
                       AND EXISTS (SELECT FROM pg_largeobject_metadata WHERE oid = loid)), 'missing')";

/// The differences found after a copy, reported all at once.
#[derive(Default)]
struct Findings(Vec<String>);

impl Findings {
    fn check(&mut self, what: &str, ok: bool, detail: impl FnOnce() -> String) {
        if !ok {
            self.0.push(format!("{what}: {}", detail()));
        }
    }

    fn same<T: PartialEq + std::fmt::Debug>(&mut self, what: &str, source: T, target: T) {
        self.check(what, source == target, || format!("\n  source: {source:#?}\n  target: {target:#?}"));
    }

    #[track_caller]
    fn assert_none(self, context: &str) {
        assert!(self.0.is_empty(), "{context}: {} problem(s)\n\n{}", self.0.len(), self.0.join("\n\n"));
    }
}

/// Everything a complete PG→PG copy of `pg_whole.sql` must show on the target.
fn check_pg_whole(db: &TestDbs, findings: &mut Findings) {
    check_pg_copy(db, findings);
    findings.same("the large object", lines(&db.source, LARGE_OBJECT), lines(&db.target, LARGE_OBJECT));
    let matview = "SELECT relispopulated::text FROM pg_class WHERE oid = '\"Inventory\".stock_value'::regclass";
    findings.same("materialized view populated", lines(&db.source, matview), lines(&db.target, matview));
    let view = "SELECT count(*)::text || ' ' || md5(string_agg(t::text, ',' ORDER BY id)) FROM sales.top_customers t";
    findings.same("a view over a view answers alike", lines(&db.source, view), lines(&db.target, view));
}

/// What any complete PG→PG copy of a whole database must show on the target: the same schema
/// dump, rows, sequence positions and partitions, foreign keys all there and validated, every
/// table analyzed, and `verify` finding nothing.
fn check_pg_copy(db: &TestDbs, findings: &mut Findings) {
    if let Some(diff) = schema_difference(&db.source, &db.target) {
        findings.0.push(diff);
    }
    let rels = relations(&db.source);
    findings.same("tables and materialized views", rels.clone(), relations(&db.target));
    findings.same("rows of every table", fingerprints(&db.source, &rels), fingerprints(&db.target, &rels));
    let verify = run(&["verify", "--source", &db.source, "--target", &db.target]);
    findings.check("rangecopy verify", verify.code == 0, || format!("{verify:?}"));
    findings.same("sequence positions", lines(&db.source, SEQUENCES), lines(&db.target, SEQUENCES));
    findings.same("partition keys and bounds", lines(&db.source, PARTITIONS), lines(&db.target, PARTITIONS));
    let unvalidated = lines(&db.target, UNVALIDATED_FKS);
    findings.check("foreign keys validated", unvalidated.is_empty(), || format!("not validated: {unvalidated:?}"));
    let fks = "SELECT count(*)::text FROM pg_constraint
                WHERE contype = 'f' AND connamespace NOT IN (SELECT oid FROM pg_namespace WHERE nspname = 'rangecopy')";
    findings.same("number of foreign keys", lines(&db.source, fks), lines(&db.target, fks));
    // Statistics reach pg_stat a moment after the ANALYZE commits.
    let mut not_analyzed = Vec::new();
    wait_until(Duration::from_secs(10), || {
        not_analyzed = lines(&db.target, NOT_ANALYZED);
        not_analyzed.is_empty()
    });
    findings.check("loaded tables analyzed", not_analyzed.is_empty(), || format!("never analyzed: {not_analyzed:?}"));
    let never = "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE c.relkind = 'r' AND c.reltuples < 0 AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'rangecopy')
                    AND n.nspname !~ '^pg_toast' ORDER BY 1";
    let unknown = lines(&db.target, never);
    findings.check("pg_class.reltuples known", unknown.is_empty(), || format!("reltuples = -1: {unknown:?}"));
}

/// The report's schema objects: `schema.objects`, each with `kind`, `name`, `phase`, `sql`,
/// `outcome` (`{"outcome": "created" | "translated" | "changed" | "not-carried", …}`), `status`.
fn report_objects(report: &Value) -> Vec<&Value> {
    report["schema"]["objects"].as_array().map(|a| a.iter().collect()).unwrap_or_default()
}

fn read_report(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    common::assert_no_password(&text, "the report");
    serde_json::from_str(&text).map_err(|e| format!("the report is not JSON: {e}"))
}

/// A copy that must succeed; the whole output is shown when it does not.
#[track_caller]
fn assert_copied(run: Run, what: &str) -> Run {
    assert_eq!(run.code, 0, "{what} must succeed (exit 0):\n{run:?}");
    run
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL → PostgreSQL
// ---------------------------------------------------------------------------------------------

/// The comparison the whole-database tests rely on: the fixture loaded on both sides compares
/// equal (its dump is deterministic, whatever the OIDs), and one missing index, one changed
/// grant and one sequence position are each caught.
#[test]
fn pg_whole_fixture_compares_equal_to_itself_and_the_comparison_sees_a_difference() {
    let Some(db) = setup("pg_whole_self") else { return };
    load_pg_whole(&db);
    let [_, target_admin] = db.admin_urls();
    create_fixture_roles(&target_admin);
    // Built in a different order on the target (an unrelated object first), so OIDs differ.
    exec(&db.target, "CREATE TABLE public.oid_shift (x int); DROP TABLE public.oid_shift;");
    exec(&db.target, &format!("BEGIN;\n{}\nCOMMIT;", read_fixture("pg_whole.sql")));
    if let Some(diff) = schema_difference(&db.source, &db.target) {
        panic!("the same fixture dumps differently:\n{diff}");
    }
    let rels = relations(&db.source);
    assert!(rels.len() >= 30, "the fixture has {} tables: {rels:?}", rels.len());
    let source_rows = fingerprints(&db.source, &rels);
    assert_eq!(source_rows, fingerprints(&db.target, &rels), "the fixture is not deterministic");
    let empty: Vec<&String> = source_rows.iter().filter(|f| f.contains(": 0 rows")).collect();
    assert!(empty.is_empty(), "tables without rows in the fixture: {empty:?}");

    exec(
        &db.target,
        "DROP INDEX \"Inventory\".products_search; REVOKE SELECT ON sales.top_customers FROM rc_fixture_reader;",
    );
    let diff = schema_difference(&db.source, &db.target).expect("a dropped index and a revoked grant are differences");
    assert!(diff.contains("products_search") && diff.contains("top_customers"), "{diff}");
    exec(&db.target, "SELECT setval('audit.unused_seq', 78)");
    assert_ne!(lines(&db.source, SEQUENCES), lines(&db.target, SEQUENCES));
}

#[test]
fn pg_whole_database_arrives_object_by_object() {
    let Some(db) = setup("pg_whole") else { return };
    load_pg_whole(&db);
    let report = db.dir.join("report.json");
    let report_s = report.to_str().expect("a UTF-8 path");
    assert_copied(db.copy_within(WHOLE_LIMIT, &["--progress", "none", "--report", report_s]), "a default copy");

    let mut findings = Findings::default();
    check_pg_whole(&db, &mut findings);
    match read_report(&report) {
        Err(why) => findings.0.push(why),
        Ok(r) => {
            let objects = report_objects(&r);
            findings.check("the report's schema summary", r["schema"]["summary"].is_string(), || {
                format!("schema.summary is {}", r["schema"]["summary"])
            });
            let unfinished: Vec<String> = objects
                .iter()
                .filter(|o| o["status"] != "done")
                .map(|o| format!("{} {}: {} {}", o["kind"], o["name"], o["status"], o["detail"]))
                .collect();
            findings.check("every reported object done", unfinished.is_empty(), || format!("{unfinished:#?}"));
            let kinds: std::collections::BTreeSet<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
            for kind in ["FK CONSTRAINT", "VIEW", "TRIGGER", "MATERIALIZED VIEW"] {
                findings.check("the report's schema objects", kinds.contains(kind), || {
                    format!("no {kind:?} among {} objects (kinds: {kinds:?})", objects.len())
                });
            }
            let fk = objects.iter().find(|o| o["name"].as_str().is_some_and(|n| n.contains("order_lines_order")));
            findings.check("the report names each foreign key", fk.is_some(), || {
                "no object named *order_lines_order*".into()
            });
        }
    }
    findings.assert_none("the copy of pg_whole.sql");
}

/// The shape of the sample database PostgreSQL users try first (`pg_film_rental.sql`): circular
/// foreign keys, a partitioned table with foreign keys on its parent, an aggregate a view uses,
/// a trigger-kept tsvector. A default copy must give the same database, and the application's
/// next insert must work (sequences past the copied keys, triggers firing).
#[test]
fn pg_film_rental_database_arrives_whole() {
    let Some(db) = setup("pg_film_rental") else { return };
    exec(&db.source, &format!("BEGIN;\n{}\nCOMMIT;", read_fixture("pg_film_rental.sql")));
    assert_copied(db.copy_within(WHOLE_LIMIT, &["--progress", "none"]), "a default copy");

    let mut findings = Findings::default();
    check_pg_copy(&db, &mut findings);
    let matview = "SELECT count(*)::text || ' ' || sum(total_sales)::text FROM public.rental_by_category";
    findings.same("the materialized view's rows", lines(&db.source, matview), lines(&db.target, matview));
    let view = "SELECT count(*)::text || ' ' || md5(string_agg(actors, ',' ORDER BY fid)) FROM public.film_list";
    findings.same("the view over the aggregate", lines(&db.source, view), lines(&db.target, view));
    let insert = "INSERT INTO public.film (title, description, language_id, fulltext)
                  VALUES ('NEW FILM', 'an epic', 1, '') RETURNING film_id::text || ' ' || fulltext::text";
    findings.same("the next film's key and tsvector", lines(&db.source, insert), lines(&db.target, insert));
    let customer = "INSERT INTO public.customer (store_id, first_name, last_name, address_id)
                    VALUES (1, 'New', 'Customer', 1) RETURNING customer_id::text";
    findings.same("the next customer's key", lines(&db.source, customer), lines(&db.target, customer));
    let orphan = "INSERT INTO public.payment (customer_id, staff_id, rental_id, amount, payment_date)
                  VALUES (100000, 1, 1, 1, '2022-01-05') RETURNING 'accepted'";
    findings.same("a payment of no customer", lines(&db.source, orphan), lines(&db.target, orphan));
    findings.assert_none("the copy of pg_film_rental.sql");
}

/// The foreign-key phase is made to wait on a lock the test holds on a referenced table (the
/// first one loaded while others still load); once every table is loaded and a copy session
/// waits for that lock, the copy is killed with `-9`, the lock released, and `--resume` must
/// finish the schema.
#[test]
fn pg_whole_database_resumes_after_kill9_in_the_foreign_key_phase() {
    let Some(db) = setup("pg_whole_kill") else { return };
    load_pg_whole(&db);
    let referenced = lines(
        &db.source,
        "SELECT DISTINCT confrelid::regclass::text FROM pg_constraint k JOIN pg_class c ON c.oid = k.confrelid
          WHERE k.contype = 'f' AND k.conparentid = 0 AND c.relkind = 'r'",
    );
    // Throttled so that some referenced table is finished while other tables still load.
    let mut bg = db.spawn_copy(&["--progress", "none", "--workers", "2", "--max-rows-per-sec", "20000"]);
    let job = db.job().to_string();
    // One watching session: logging in costs a SCRAM exchange, slow in a debug build.
    let mut watch = connect(&db.target);
    let done_tables = |watch: &mut common::Client| -> (Vec<String>, i64) {
        let has_state: bool =
            watch.query_one("SELECT to_regclass('rangecopy.tables') IS NOT NULL", &[]).unwrap().get(0);
        if !has_state {
            return (Vec::new(), -1);
        }
        let rows = watch
            .query(
                "SELECT format('%I.%I', target_schema, target_name), phase = 'done' FROM rangecopy.tables WHERE job = $1",
                &[&job],
            )
            .unwrap();
        let done = rows.iter().filter(|r| r.get::<_, bool>(1)).map(|r| r.get::<_, String>(0)).collect();
        let loading = rows.iter().filter(|r| !r.get::<_, bool>(1)).count() as i64;
        (done, loading)
    };
    let mut victim = None;
    wait_until(WHOLE_LIMIT, || {
        let (done, loading) = done_tables(&mut watch);
        victim = referenced.iter().find(|t| done.contains(t)).cloned().filter(|_| loading > 0);
        victim.is_some() || bg.try_wait().is_some()
    });
    let Some(victim) = victim else {
        panic!("no referenced table was loaded while others still loaded:\n{:?}", bg.output(-1));
    };

    let mut lock = common::Client::connect(&db.target).expect("a second target session");
    lock.batch_execute(&format!("BEGIN; LOCK TABLE {victim} IN ACCESS EXCLUSIVE MODE")).expect("locking the table");
    let waiting_sql = format!(
        "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = {}::regclass",
        common::quote_literal(&victim)
    );
    // Blocked in the after-load phase: every table loaded and a copy session waiting for the lock.
    let blocked = wait_until(WHOLE_LIMIT, || {
        let waiting: i64 = watch.query_one(&waiting_sql, &[]).unwrap().get(0);
        (waiting > 0 && done_tables(&mut watch).1 == 0) || bg.try_wait().is_some()
    });
    let objects = lines_on(
        &mut watch,
        &format!(
            "SELECT status || ' ' || count(*) FROM rangecopy.objects WHERE job = {} GROUP BY status ORDER BY 1",
            common::quote_literal(&job)
        ),
    );
    assert!(
        blocked && bg.try_wait().is_none(),
        "the copy never waited for {victim} after loading every table (objects: {objects:?}):\n{:?}",
        bg.output(-1)
    );
    assert!(objects.iter().any(|s| s.starts_with("pending")), "no object left to create when killed: {objects:?}");
    assert_eq!(bg.kill9(), None, "the copy ended by itself before the kill:\n{:?}", bg.output(-1));
    lock.batch_execute("ROLLBACK").expect("releasing the lock");
    drop(lock);

    assert_copied(db.copy_within(WHOLE_LIMIT, &["--resume", "--progress", "none"]), "the resumed copy");
    let leftover = lines(
        &db.target,
        &format!(
            "SELECT name || ' ' || status || coalesce(' ' || detail, '') FROM rangecopy.objects
              WHERE job = {} AND status <> 'done' ORDER BY object_no",
            common::quote_literal(&job)
        ),
    );
    let mut findings = Findings::default();
    findings.check("every object done after the resume", leftover.is_empty(), || format!("{leftover:#?}"));
    check_pg_whole(&db, &mut findings);
    findings.assert_none("the resumed copy of pg_whole.sql");
}

// ---------------------------------------------------------------------------------------------
// MariaDB → PostgreSQL
// ---------------------------------------------------------------------------------------------

/// A MariaDB query's rows, every column as text joined by `|` (NULL as `NULL`).
fn my_lines(url: &str, sql: &str) -> Vec<String> {
    let mut c = my_conn(url).expect("connecting to MariaDB");
    let rows: Vec<mysql::Row> = c.query(sql).unwrap_or_else(|e| panic!("{e}\nwhile running:\n{sql}"));
    rows.into_iter()
        .map(|row| {
            (0..row.len())
                .map(|i| match row.as_ref(i) {
                    Some(mysql::Value::NULL) | None => "NULL".to_string(),
                    Some(mysql::Value::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
                    Some(v) => v.as_sql(true).trim_matches('\'').to_string(),
                })
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect()
}

/// The SQLSTATE a target statement fails with, or `None` when it succeeds.
fn pg_sqlstate(url: &str, sql: &str) -> Option<String> {
    connect(url)
        .batch_execute(sql)
        .err()
        .map(|e| e.code().map(|c| c.code().to_string()).unwrap_or_else(|| e.to_string()))
}

/// Index access methods on a target table.
fn index_methods(url: &str, table: &str) -> Vec<String> {
    lines(
        url,
        &format!(
            "SELECT am.amname::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam
              WHERE i.indrelid = {}::regclass ORDER BY 1",
            common::quote_literal(table)
        ),
    )
}

/// Whether the report lists `name` as not carried over, with a source definition holding `text`.
fn reported_not_carried(objects: &[&Value], name: &str, text: &str) -> Result<(), String> {
    let mine: Vec<&&Value> = objects.iter().filter(|o| o["name"].as_str().is_some_and(|n| n.contains(name))).collect();
    if mine.is_empty() {
        return Err(format!("not in the report ({} objects there)", objects.len()));
    }
    let listed = mine.iter().find(|o| o["outcome"]["outcome"] == "not-carried");
    let Some(listed) = listed else {
        return Err(format!("not reported as not carried over: {mine:#?}"));
    };
    let source_sql = listed["outcome"]["source_sql"].as_str().unwrap_or_default();
    if !source_sql.contains(text) {
        return Err(format!("its source SQL (with {text:?}) is not in the report: {listed:#}"));
    }
    if listed["outcome"]["todo"].as_str().is_none_or(str::is_empty) {
        return Err(format!("no word on what to do about it: {listed:#}"));
    }
    Ok(())
}

#[test]
fn my_whole_database_arrives_with_keys_checks_triggers_and_a_report() {
    let Some((db, my)) = my_setup("my_whole") else { return };
    load_my_whole(&my);
    let report = db.dir.join("report.json");
    let report_s = report.to_str().expect("a UTF-8 path");
    let mut args = vec!["copy", "--source", &my.url, "--target", &db.target, "--progress", "none"];
    args.extend(["--report", report_s]);
    assert_copied(common::run_limited(&args, &[], WHOLE_LIMIT), "a default copy from MariaDB");

    let schema = db.job().to_string();
    let q = |t: &str| format!("\"{schema}\".\"{t}\"");
    let mut findings = Findings::default();
    check_my_copy(&my, &db, &["Orders|shipped", "Events|happened_on"], &mut findings);

    // CHECK constraints: as many per table as MariaDB has (its json_valid checks are the jsonb type).
    let my_checks = my_lines(
        &my.url,
        "SELECT table_name, COUNT(*) FROM information_schema.check_constraints
          WHERE constraint_schema = DATABASE() AND check_clause NOT LIKE 'json_valid(%' GROUP BY table_name",
    );
    for line in &my_checks {
        let (table, n) = line.split_once('|').expect("table|count");
        let sql = format!(
            "SELECT count(*)::text FROM pg_constraint WHERE contype = 'c' AND conrelid = {}::regclass",
            common::quote_literal(&q(table))
        );
        let got = lines(&db.target, &sql).join("");
        findings.check(
            &format!("CHECK constraints of {table}"),
            got.parse::<i64>().is_ok_and(|g| g >= n.parse().unwrap()),
            || format!("MariaDB has {n}, the target {got}"),
        );
    }
    for (what, sql) in [
        ("CHECK (stars BETWEEN 1 AND 5) enforced", format!("UPDATE {} SET stars = 9 WHERE id = 1", q("reviews"))),
        ("CHECK (valid_to >= valid_from) enforced", format!("UPDATE {} SET valid_to = valid_from - 1", q("coupons"))),
        ("column CHECK (qty > 0) enforced", format!("UPDATE {} SET qty = 0 WHERE order_id = 1000", q("order_items"))),
    ] {
        let state = pg_sqlstate(&db.target, &sql);
        findings.check(what, state.as_deref() == Some("23514"), || format!("{sql} gave {state:?}, not 23514"));
    }

    // ON UPDATE CURRENT_TIMESTAMP: an update on the target moves the column to now.
    // (as in MariaDB, only an update that changes the row moves it)
    for (table, column, change) in
        [("Customers", "updated_at", "name = name || '!'"), ("Events", "stamp", "kind = 'Login'")]
    {
        let sql = format!(
            "WITH u AS (UPDATE {t} SET {change} WHERE id = 1 RETURNING {column}) SELECT (SELECT {column} FROM u) > now() - interval '1 hour'",
            t = q(table)
        );
        let moved = connect(&db.target).query_one(&sql, &[]).map(|r| r.get::<_, Option<bool>>(0));
        findings.check(
            &format!("ON UPDATE CURRENT_TIMESTAMP on {table}.{column}"),
            matches!(moved, Ok(Some(true))),
            || format!("{sql} gave {:?}", moved.map_err(|e| common::pg_error(&e))),
        );
    }

    // AUTO_INCREMENT continues where MariaDB would.
    let next = connect(&db.target)
        .query_one(&format!("INSERT INTO {} (id, label) VALUES (DEFAULT, 'fresh') RETURNING id::int8", q("tags")), &[])
        .map(|r| r.get::<_, i64>(0));
    findings.check("AUTO_INCREMENT position", matches!(next, Ok(30)), || {
        format!("the next tags.id is {:?}, MariaDB's would be 30", next.map_err(|e| common::pg_error(&e)))
    });

    // ENUM labels exactly as declared, in order, with their defaults.
    for (table, column, labels, default) in [
        ("Orders", "status", "New,Paid,Shipped,cancelled", Some("New")),
        ("Customers", "tier", "Free,Pro,ENTERPRISE", Some("Free")),
        ("Products", "size", "small,Medium,LARGE,x-large", Some("Medium")),
        ("payments", "method", "card,Bank Transfer,cash", Some("card")),
    ] {
        let sql = format!(
            "SELECT coalesce((SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = a.atttypid),
                             'not an enum: ' || format_type(a.atttypid, a.atttypmod))
                    || ' default ' || coalesce(pg_get_expr(d.adbin, d.adrelid), 'none')
               FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
              WHERE a.attrelid = {}::regclass AND a.attname = '{column}'",
            common::quote_literal(&q(table))
        );
        let got = lines(&db.target, &sql).join("");
        findings
            .check(&format!("ENUM {table}.{column}"), got.starts_with(&format!("{labels} default ")), || got.clone());
        if let Some(d) = default {
            findings
                .check(&format!("ENUM default of {table}.{column}"), got.contains(&format!("'{d}'")), || got.clone());
        }
        let my_values = my_lines(&my.url, &format!("SELECT `{column}`, COUNT(*) FROM `{table}` GROUP BY 1 ORDER BY 1"));
        let pg_values = lines(
            &db.target,
            &format!(
                "SELECT coalesce(\"{column}\"::text, 'NULL') || '|' || count(*) FROM {} GROUP BY \"{column}\"",
                q(table)
            ),
        );
        let (mut a, mut b) = (my_values, pg_values);
        a.sort();
        b.sort();
        findings.same(&format!("ENUM values of {table}.{column}"), a, b);
    }

    // The NOT NULL DATE column holding zero dates: every row arrives, zero dates as NULL (or
    // -infinity), the others as they were, and the report says how the column changed.
    let zero = lines(
        &db.target,
        &format!(
            "SELECT count(*) FILTER (WHERE shipped IS NULL OR NOT isfinite(shipped)) || ' zero, '
                    || count(*) FILTER (WHERE isfinite(shipped)) || ' dated, '
                    || count(*) FILTER (WHERE shipped = ordered + 2) || ' two days on' FROM {t}",
            t = q("Orders")
        ),
    );
    findings.same("Orders.shipped zero dates", vec!["2250 zero, 750 dated, 750 two days on".to_string()], zero);

    // Spatial and fulltext indexes: GiST and GIN on the target, or listed as not carried over.
    let objects_json = read_report(&report);
    let objects: Vec<&Value> = objects_json.as_ref().map(report_objects).unwrap_or_default();
    if let Ok(r) = &objects_json {
        // Where it says so is the engine's choice: a table change, or the NOT NULL object.
        let said: Vec<String> = r["schema"]["table_changes"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(report_objects(r))
            .map(Value::to_string)
            .filter(|s| s.contains("Orders") && s.contains("shipped"))
            .collect();
        findings.check("the report says what became of Orders.shipped's NOT NULL", !said.is_empty(), || {
            format!("schema: {:#}", r["schema"])
        });
    }
    for (table, method, index) in [
        ("warehouses", "gist", "warehouses_location"),
        ("Products", "gin", "products_text"),
        ("reviews", "gin", "reviews_body"),
    ] {
        let methods = index_methods(&db.target, &q(table));
        let fallback = reported_not_carried(&objects, index, index);
        findings.check(&format!("{index} ({method})"), methods.iter().any(|m| m == method) || fallback.is_ok(), || {
            format!("target indexes use {methods:?}; report: {fallback:?}")
        });
    }

    // Views, triggers and routines: listed as not carried over, with their source SQL.
    match &objects_json {
        Err(why) => findings.0.push(why.clone()),
        Ok(_) => {
            for (name, text) in [
                ("customer_orders", "spent"),
                ("Top Customers", "spent"),
                ("orders_audit_insert", "Audit Log"),
                ("products_price_guard", "OLD.price"),
                ("add_stock", "ON DUPLICATE KEY UPDATE"),
                ("order_total", "order_items"),
            ] {
                if let Err(why) = reported_not_carried(&objects, name, text) {
                    findings.0.push(format!("report on {name}: {why}"));
                }
            }
        }
    }
    findings.assert_none("the copy of my_whole.sql");
}

/// What any complete copy of a MariaDB database must show on the target: every table with its
/// rows (and `verify` finding nothing), the same foreign keys, all validated, and the same NOT
/// NULL columns (those loaded without it are given it back), but for the `table|column`s in
/// `nullable` (zero dates copied as NULL).
fn check_my_copy(my: &MyDb, db: &TestDbs, nullable: &[&str], findings: &mut Findings) {
    let schema = db.job().to_string();
    let q = |t: &str| format!("\"{schema}\".\"{t}\"");
    // Every table, every row.
    let tables = my_lines(
        &my.url,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE'
          ORDER BY table_name",
    );
    let my_counts: Vec<String> = tables
        .iter()
        .map(|t| format!("{t} {}", my_text(&my.url, &format!("SELECT COUNT(*) FROM `{t}`")).unwrap_or_default()))
        .collect();
    let pg_counts: Vec<String> = tables
        .iter()
        .map(|t| {
            let n = connect(&db.target).query_one(&format!("SELECT count(*) FROM {}", q(t)), &[]);
            format!("{t} {}", n.map(|r| r.get::<_, i64>(0).to_string()).unwrap_or_else(|e| common::pg_error(&e)))
        })
        .collect();
    findings.same("tables and row counts", my_counts, pg_counts);
    let verify = run(&["verify", "--source", &my.url, "--target", &db.target]);
    findings.check("rangecopy verify", verify.code == 0, || format!("{verify:?}"));

    // Foreign keys: the same ones (table, referenced table, actions), all validated.
    let rule = |r: &str| if r == "RESTRICT" { "NO ACTION".to_string() } else { r.to_string() };
    let mut my_fks: Vec<String> = my_lines(
        &my.url,
        "SELECT table_name, referenced_table_name, delete_rule, update_rule FROM information_schema.referential_constraints
          WHERE constraint_schema = DATABASE()",
    )
    .into_iter()
    .map(|l| {
        let p: Vec<&str> = l.split('|').collect();
        format!("{} -> {} ON DELETE {} ON UPDATE {}", p[0], p[1], rule(p[2]), rule(p[3]))
    })
    .collect();
    my_fks.sort();
    let pg_fks = lines(
        &db.target,
        &format!(
            "SELECT c.relname || ' -> ' || r.relname
                    || ' ON DELETE ' || (CASE k.confdeltype WHEN 'c' THEN 'CASCADE' WHEN 'n' THEN 'SET NULL'
                                         WHEN 'd' THEN 'SET DEFAULT' ELSE 'NO ACTION' END)
                    || ' ON UPDATE ' || (CASE k.confupdtype WHEN 'c' THEN 'CASCADE' WHEN 'n' THEN 'SET NULL'
                                         WHEN 'd' THEN 'SET DEFAULT' ELSE 'NO ACTION' END)
               FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class r ON r.oid = k.confrelid
              WHERE k.contype = 'f' AND c.relnamespace = {}::regnamespace",
            common::quote_literal(&format!("\"{schema}\""))
        ),
    );
    let mut pg_fks_sorted = pg_fks.clone();
    pg_fks_sorted.sort();
    findings.same("foreign keys", my_fks, pg_fks_sorted);
    let unvalidated = lines(&db.target, UNVALIDATED_FKS);
    findings.check("foreign keys validated", unvalidated.is_empty(), || format!("not validated: {unvalidated:?}"));

    let not_null = |rows: Vec<String>| {
        let mut rows = rows;
        rows.sort();
        rows
    };
    let my_not_null = my_lines(
        &my.url,
        "SELECT table_name, column_name FROM information_schema.columns
          WHERE table_schema = DATABASE() AND is_nullable = 'NO'
            AND table_name IN (SELECT table_name FROM information_schema.tables
                                WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE')",
    );
    let pg_not_null = lines(
        &db.target,
        &format!(
            "SELECT c.relname || '|' || a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
              WHERE c.relnamespace = {}::regnamespace AND c.relkind = 'r' AND a.attnum > 0
                AND NOT a.attisdropped AND a.attnotnull",
            common::quote_literal(&format!("\"{schema}\""))
        ),
    );
    let (my_not_null, pg_not_null) = (not_null(my_not_null), not_null(pg_not_null));
    let lost: Vec<&String> =
        sorted_minus(&my_not_null, &pg_not_null).into_iter().filter(|c| !nullable.contains(&c.as_str())).collect();
    let gained = sorted_minus(&pg_not_null, &my_not_null);
    findings.check("NOT NULL columns", lost.is_empty() && gained.is_empty(), || {
        format!("NOT NULL only on MariaDB: {lost:?}; only on the target: {gained:?}")
    });
}

/// Loads `my_whole.sql` into the test's MariaDB database.
pub(crate) fn load_my_whole(my: &MyDb) {
    load_my_script(&my.url, &read_fixture("my_whole.sql"));
}

/// The shape of the sample database MySQL users try first (`my_film_rental.sql`): unsigned keys
/// of every width, YEAR, ENUM, SET, a NOT NULL GEOMETRY with a SPATIAL index, FULLTEXT,
/// circular foreign keys, `ON UPDATE CURRENT_TIMESTAMP` on every table. A default copy must
/// give every row, key, foreign key and NOT NULL, and the application's next insert must work.
#[test]
fn my_film_rental_database_arrives_whole() {
    let Some((db, my)) = my_setup("my_film_rental") else { return };
    load_my_script(&my.url, &read_fixture("my_film_rental.sql"));
    let args = ["copy", "--source", &my.url, "--target", &db.target, "--progress", "none"];
    let out = assert_copied(common::run_limited(&args, &[], WHOLE_LIMIT), "a default copy from MariaDB");
    assert!(!out.stderr.contains("warning"), "a sample database copies without warnings:\n{out:?}");

    let schema = db.job().to_string();
    let q = |t: &str| format!("\"{schema}\".\"{t}\"");
    let mut findings = Findings::default();
    check_my_copy(&my, &db, &[], &mut findings);
    for (table, key) in [("actor", "actor_id"), ("rental", "rental_id"), ("language", "language_id")] {
        let sql = format!("SELECT AUTO_INCREMENT FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = '{table}'");
        let expected = my_lines(&my.url, &sql);
        let insert = match table {
            "actor" => format!("INSERT INTO {} (first_name, last_name) VALUES ('NEW', 'ACTOR')", q(table)),
            "language" => format!("INSERT INTO {} (name) VALUES ('Klingon')", q(table)),
            _ => format!(
                "INSERT INTO {} (rental_date, inventory_id, customer_id, staff_id) VALUES (now(), 1, 1, 1)",
                q(table)
            ),
        };
        let got = lines(&db.target, &format!("{insert} RETURNING {key}::text"));
        findings.same(&format!("the next {table}.{key}"), expected, got);
    }
    let features = lines(
        &db.target,
        &format!(
            "SELECT coalesce(special_features, 'NULL') FROM {} WHERE film_id IN (1, 2, 3) ORDER BY film_id",
            q("film")
        ),
    );
    let my_features =
        my_lines(&my.url, "SELECT special_features FROM film WHERE film_id IN (1, 2, 3) ORDER BY film_id");
    findings.same("SET values", my_features, features);
    let location = lines(&db.target, &format!("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = {}::regclass AND attname = 'location'", common::quote_literal(&q("address"))));
    findings.check(
        "address.location",
        location.len() == 1 && (location[0] == "geometry" || location[0] == "bytea"),
        || format!("{location:?}"),
    );
    findings.assert_none("the copy of my_film_rental.sql");
}
