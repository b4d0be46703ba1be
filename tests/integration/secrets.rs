//! No password ever appears in what rangecopy prints or stores: progress lines, errors, the
//! resume hint, `status`, the report, or the state tables in the target. (Every run of the
//! binary in this suite is also checked for the dev password by the harness.)

use crate::common::{
    assert_writes_nothing, connect, exec, quote_literal, random_suffix, run, run_with_env, setup, without_password,
    Run, TestDbs, PASSWORD,
};

/// Everything rangecopy stored in the target's state, as text.
fn state_text(url: &str) -> String {
    let mut c = connect(url);
    ["jobs", "tables", "chunks"]
        .iter()
        .map(|t| {
            let row = c
                .query_one(&format!("SELECT coalesce(string_agg(x::text, E'\\n'), '') FROM rangecopy.{t} x"), &[])
                .expect("reading the state");
            row.get::<_, String>(0)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[track_caller]
fn assert_absent(secret: &str, text: &str, what: &str) {
    assert!(!text.contains(secret), "{secret:?} appears in {what}:\n{text}");
}

fn tables_with_a_failing_one(db: &TestDbs) {
    exec(
        &db.source,
        "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 3000) g;
         CREATE TABLE c (id int PRIMARY KEY, v int); INSERT INTO c SELECT g, g FROM generate_series(1, 50) g;",
    );
    // The target refuses c's rows at COPY time: a failure at run time, recorded in the job.
    exec(&db.target, "CREATE TABLE c (id int, v int CHECK (v < 10));");
}

/// Runs a successful copy with progress lines and a report, a failing one, and `status`;
/// `env` carries PGPASSWORD when the URLs have none. Returns everything printed, and the
/// reports' text.
fn copy_report_fail_status(db: &TestDbs, source: &str, target: &str, env: &[(&str, &str)]) -> (String, String) {
    let (good, bad) = (db.dir.join("good.json"), db.dir.join("bad.json"));
    let copy = |args: &[&str]| {
        let mut all = vec!["copy", "--source", source, "--target", target];
        all.extend_from_slice(args);
        run_with_env(&all, env)
    };
    let ok = copy(&[
        "t",
        "--job",
        "good",
        "--chunk-rows",
        "100",
        "--progress",
        "lines",
        "--progress-interval",
        "0.01",
        "--report",
        good.to_str().unwrap(),
    ])
    .ok();
    assert!(ok.stderr.contains("progress"), "expected progress lines:\n{ok:?}");
    let failed = copy(&["c", "--job", "bad", "--workers", "1", "--report", bad.to_str().unwrap()]);
    assert_eq!(failed.code, 1, "the CHECK violation is a failure at run time:\n{failed:?}");
    assert!(failed.stderr.contains("--resume"), "a failure at run time says how to resume:\n{failed:?}");
    let status = run_with_env(&["status", "--target", target], env).ok();
    assert!(status.stdout.contains("job good: done") && status.stdout.contains("job bad"), "{status:?}");
    let printed = [ok, failed, status].iter().map(|r| format!("{}\n{}\n", r.stdout, r.stderr)).collect();
    let reports =
        std::fs::read_to_string(&good).expect("the report") + &std::fs::read_to_string(&bad).unwrap_or_default();
    (printed, reports)
}

#[test]
fn password_in_the_url_appears_nowhere() {
    let Some(db) = setup("secrets_url") else { return };
    tables_with_a_failing_one(&db);
    let (_, reports) = copy_report_fail_status(&db, &db.source, &db.target, &[]);
    assert_absent(PASSWORD, &reports, "the reports");
    let state = state_text(&db.target);
    assert!(state.contains("good") && state.contains("bad"), "{state}");
    assert_absent(PASSWORD, &state, "the rangecopy state tables");
}

#[test]
fn password_only_in_pgpassword_appears_nowhere() {
    let Some(db) = setup("secrets_pgpassword") else { return };
    tables_with_a_failing_one(&db);
    let (source, target) = (without_password(&db.source), without_password(&db.target));
    assert!(!source.contains(PASSWORD) && !target.contains(PASSWORD));
    let (_, reports) = copy_report_fail_status(&db, &source, &target, &[("PGPASSWORD", PASSWORD)]);
    assert_absent(PASSWORD, &reports, "the reports");
    assert_absent(PASSWORD, &state_text(&db.target), "the rangecopy state tables");
}

#[test]
fn wrong_password_is_refused_without_being_echoed() {
    let Some(db) = setup("secrets_wrong") else { return };
    tables_with_a_failing_one(&db);
    let wrong = "not-the-pw-7f3a";
    let bad = |url: &str| url.replace(PASSWORD, wrong);
    let check = |run: Run| {
        let run = run.refused(&["password"]);
        assert_absent(wrong, &run.stdout, "stdout");
        assert_absent(wrong, &run.stderr, "stderr");
    };
    assert_writes_nothing(&db.target, || {
        check(run(&["copy", "--source", &bad(&db.source), "--target", &db.target, "t"]));
        check(run(&["copy", "--source", &db.source, "--target", &bad(&db.target), "t"]));
        check(run(&["status", "--target", &bad(&db.target)]));
        let env = [("PGPASSWORD", wrong)];
        check(run_with_env(&["copy", "--source", &without_password(&db.source), "--target", &db.target, "t"], &env));
        check(run_with_env(&["status", "--target", &without_password(&db.target)], &env));
    });
}

/// A role on both servers, dropped after the test's databases (declare it before them).
struct Role {
    name: String,
    admins: [String; 2],
}

impl Drop for Role {
    fn drop(&mut self) {
        for admin in &self.admins {
            if let Ok(mut c) = crate::common::Client::connect(admin) {
                let _ = c.batch_execute(&format!("DROP ROLE IF EXISTS {}", self.name));
            }
        }
    }
}

/// A password full of URL syntax travels percent-encoded in the URL; neither its encoded
/// nor its decoded form may appear anywhere.
#[test]
fn password_with_url_syntax_in_it_appears_nowhere() {
    // Declared first so that it is dropped last, after the databases holding its objects.
    let role: Role;
    let Some(db) = setup("secrets_special") else { return };
    let secret = "p@ss:w/rd%?&=#é x";
    let encoded = "p%40ss%3Aw%2Frd%25%3F%26%3D%23%C3%A9%20x";
    role = Role { name: format!("rct_role_{}", random_suffix()), admins: db.admin_urls() };
    for admin in &role.admins {
        exec(admin, &format!("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}", role.name, quote_literal(secret)));
    }
    tables_with_a_failing_one(&db);
    let as_role = |url: &str| url.replace(&format!("rangecopy:{PASSWORD}@"), &format!("{}:{encoded}@", role.name));
    let (source, target) = (as_role(&db.source), as_role(&db.target));
    let (printed, reports) = copy_report_fail_status(&db, &source, &target, &[]);
    let state = state_text(&db.target);
    for s in [secret, encoded, "p@ss", "w/rd%", "%40ss"] {
        assert_absent(s, &printed, "what rangecopy printed");
        assert_absent(s, &reports, "the reports");
        assert_absent(s, &state, "the rangecopy state tables");
    }
}
