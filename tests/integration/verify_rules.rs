//! `rangecopy verify` of a MariaDB copy made with `--cast`, `--exclude-column` and
//! `--target-schema`: without `--job`, given the same options it compares what the copy holds
//! (identical, or the changed row named); not given them, every column it could not compare is
//! named with the option to give, and the verdict is never a plain "identical"; with `--job`,
//! the job's recorded rules are used and the excluded column is still named.

use crate::common::{exec, run, Run, TestDbs};
use crate::mysql::{copy, my_exec, my_setup, MyDb};
use crate::verify::{
    assert_could_not_verify, assert_different, assert_identical, assert_incomplete, assert_listed, last_line,
    read_html, read_json, report_table, summary,
};

/// `t`: 200 rows in ranges of 50, a boolean-like `flag`, JSON text `doc`, and `notes` that the
/// copy leaves out.
const TABLE: &str = "CREATE TABLE t (id int PRIMARY KEY, flag tinyint(1) NOT NULL, label varchar(20),
                                     notes text, doc varchar(40));
     INSERT INTO t SELECT seq, seq % 2, CONCAT('row ', seq), CONCAT('note ', seq), CONCAT('{\"n\": ', seq, '}')
       FROM seq_1_to_200;";

/// The options the copy is made with.
const RULES: [&str; 6] =
    ["--cast", "type:tinyint(1)=boolean", "--cast", "column:t.doc=jsonb", "--exclude-column", "t.notes"];

/// `rangecopy verify --source MY --target PG ARGS…` in ranges of 50 rows.
fn verify(my: &MyDb, db: &TestDbs, args: &[&str]) -> Run {
    let mut all = vec!["verify", "--source", &my.url, "--target", &db.target, "--chunk-rows", "50"];
    all.extend_from_slice(args);
    run(&all)
}

/// The columns a JSON report names as not compared in `table`: (column, excluded).
fn not_compared(report: &serde_json::Value, table: &str) -> Vec<(String, bool)> {
    report_table(report, table)["columns_not_compared"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| (c["column"].as_str().unwrap_or_default().to_string(), c["excluded"] == true))
        .collect()
}

#[test]
fn a_copy_with_casts_and_an_excluded_column_verifies_with_the_same_options_never_silently_without() {
    let Some((db, my)) = my_setup("verify_rules") else { return };
    my_exec(&my.url, TABLE);
    copy(&my, &db.target, &[&RULES[..], &["--chunk-rows", "50"]].concat()).ok();
    let table = format!("{}.t", my_setup_name(&db));
    let (json, html) = (db.dir.join("r.json"), db.dir.join("r.html"));
    let reports = ["--report", json.to_str().unwrap(), "--report", html.to_str().unwrap()];

    // The same options: identical, the excluded column named as not compared.
    let run = assert_identical(verify(&my, &db, &[&RULES[..], &reports].concat()));
    assert!(run.stdout.contains("column \"notes\": left out by --exclude-column, not compared"), "{run:?}");
    assert!(last_line(&run.stdout).contains("1 column left out by --exclude-column not compared"), "{run:?}");
    assert_eq!(summary(&run, &table).status, "identical", "{run:?}");
    let report = read_json(&json);
    assert_eq!(report["verdict"], "identical", "{report:#}");
    assert_eq!(not_compared(&report, &table), [("notes".to_string(), true)], "{report:#}");
    assert!(read_html(&html).contains("column &quot;notes&quot;: left out by --exclude-column"));

    // Without them: the cast columns and the left-out one are named with the option to give.
    let db_name = my_setup_name(&db);
    let words = [
        format!("column \"notes\": not on the target (copied with --exclude-column? give verify --exclude-column {db_name}.t.notes too)"),
        "column \"flag\": boolean on the target, smallint by the default mapping".to_string(),
        format!("--cast column:{db_name}.t.flag=boolean"),
        "column \"doc\": jsonb on the target, character varying(40) by the default mapping".to_string(),
        format!("--cast column:{db_name}.t.doc=jsonb"),
    ];
    let run = assert_incomplete(verify(&my, &db, &reports), &words.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(summary(&run, &table).status, "COLUMNS NOT COMPARED", "{run:?}");
    let report = read_json(&json);
    assert_eq!(report["verdict"], "incomplete", "{report:#}");
    let named: Vec<(String, bool)> = ["flag", "notes", "doc"].map(|c| (c.to_string(), false)).into();
    assert_eq!(not_compared(&report, &table), named, "{report:#}");
    let page = read_html(&html);
    for column in ["flag", "notes", "doc"] {
        assert!(page.contains(&format!("column &quot;{column}&quot;: ")), "{column} not in the HTML report");
    }
    assert!(page.contains("Incomplete: 1 of 1 table not compared in full"), "the HTML verdict");

    // One value changed in a cast column: found with the options, named by key and column.
    exec(&db.target, &format!("UPDATE \"{db_name}\".t SET flag = NOT flag WHERE id = 77"));
    let run = assert_different(verify(&my, &db, &RULES));
    assert_listed(&run, "id", "77", "changed: flag");
    assert_eq!(summary(&run, &table).differing_rows, 1, "{run:?}");
    // Without the options the change is in a column not compared: never identical.
    assert_incomplete(verify(&my, &db, &[]), &["column \"flag\": boolean on the target"]);
    // A change in a column both mappings share is found either way.
    exec(&db.target, &format!("UPDATE \"{db_name}\".t SET doc = '{{\"n\": 0}}' WHERE id = 120"));
    let run = assert_different(verify(&my, &db, &RULES));
    assert_listed(&run, "id", "120", "changed: doc");
    exec(&db.target, &format!("UPDATE \"{db_name}\".t SET label = 'other' WHERE id = 150"));
    let run = assert_different(verify(&my, &db, &[]));
    assert_listed(&run, "id", "150", "changed: label");
    assert!(run.stdout.contains("column \"flag\": boolean on the target"), "{run:?}");
    assert!(last_line(&run.stdout).contains("3 columns not compared"), "{run:?}");
}

/// With `--job` the job's recorded rules are used (the options are refused), and the excluded
/// column is still named.
#[test]
fn a_job_copied_with_rules_verifies_by_its_own_rules_and_names_the_excluded_column() {
    let Some((db, my)) = my_setup("verify_rules_job") else { return };
    my_exec(&my.url, TABLE);
    copy(&my, &db.target, &[&RULES[..], &["--job", "ruled", "--chunk-rows", "50"]].concat()).ok();
    let run = assert_identical(verify(&my, &db, &["--job", "ruled"]));
    assert!(
        run.stdout.contains("column \"notes\": left out of the copy by the job's --exclude-column, not compared"),
        "{run:?}"
    );
    assert_could_not_verify(verify(&my, &db, &[&RULES[..], &["--job", "ruled"]].concat()), &["with --job"]);
    exec(&db.target, &format!("UPDATE \"{}\".t SET flag = NOT flag WHERE id = 3", my_setup_name(&db)));
    assert_listed(&assert_different(verify(&my, &db, &["--job", "ruled"])), "id", "3", "changed: flag");
}

/// A copy into another schema (`--target-schema`) is found there only when verify is told.
#[test]
fn a_copy_into_another_target_schema_verifies_with_target_schema() {
    let Some((db, my)) = my_setup("verify_rules_schema") else { return };
    my_exec(
        &my.url,
        "CREATE TABLE s (id int PRIMARY KEY, v varchar(10)); INSERT INTO s SELECT seq, 'v' FROM seq_1_to_120;",
    );
    copy(&my, &db.target, &["--target-schema", "app", "--chunk-rows", "50"]).ok();
    let table = format!("{}.s", my_setup_name(&db));
    let run = assert_different(verify(&my, &db, &[]));
    assert_eq!(summary(&run, &table).status, "MISSING ON TARGET", "{run:?}");
    assert_identical(verify(&my, &db, &["--target-schema", "app"]));
    assert_could_not_verify(run_pg_with_mapping(&db), &["MySQL/MariaDB sources only"]);
}

/// The MariaDB database `my_setup` made: named like the test's target database.
fn my_setup_name(db: &TestDbs) -> String {
    db.job().to_string()
}

/// A PostgreSQL source given a MySQL mapping option: refused before anything is read.
fn run_pg_with_mapping(db: &TestDbs) -> Run {
    run(&["verify", "--source", &db.source, "--target", &db.target, "--target-schema", "app"])
}
