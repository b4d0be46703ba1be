//! No password ever appears in what rangecopy prints or stores: progress lines, errors, the
//! resume hint, `status`, the report, or the state tables in the target. (Every run of the
//! binary in this suite is also checked for the dev password by the harness.) Passwords can be
//! kept off the command line: URLs in RANGECOPY_SOURCE / RANGECOPY_TARGET, passwords in
//! PGPASSWORD / MYSQL_PWD, a libpq password file, a MySQL option file.

use std::path::Path;

use crate::common::{
    as_login, assert_writes_nothing, connect, exec, quote_literal, random_suffix, run, run_with_env, scalar, setup,
    without_password, Run, TestDbs, PASSWORD,
};
use crate::mysql::{my_exec, my_setup, MyUser, ALL};

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

impl Role {
    /// A superuser login `name` with `password` on both PostgreSQL servers.
    fn create(db: &TestDbs, name: &str, password: &str) -> Role {
        let role = Role { name: name.to_string(), admins: db.admin_urls() };
        for admin in &role.admins {
            exec(admin, &format!("CREATE ROLE {name} LOGIN SUPERUSER PASSWORD {}", quote_literal(password)));
        }
        role
    }
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
    role = Role::create(&db, &format!("rct_role_{}", random_suffix()), secret);
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

/// Asserts that none of `secrets` appears in anything the runs printed.
#[track_caller]
fn assert_never_printed(runs: &[&Run], secrets: &[&str]) {
    for run in runs {
        for secret in secrets {
            assert_absent(secret, &run.stdout, "stdout");
            assert_absent(secret, &run.stderr, "stderr");
        }
    }
}

/// Writes `text` to `path` with `mode` (password files are only read when private).
fn write_file(path: &Path, text: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).expect("writing a password file");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("setting its permissions");
}

/// The resume hint's command, as words (its URLs hold no spaces), without its note.
fn hint_words(stderr: &str) -> Vec<String> {
    let line = stderr
        .lines()
        .find(|l| l.trim_start().starts_with("rangecopy copy "))
        .unwrap_or_else(|| panic!("no resume hint in:\n{stderr}"));
    let command = line.split("   (").next().unwrap_or(line);
    command.split_whitespace().skip(1).map(|w| w.trim_matches('\'').to_string()).collect()
}

/// The regression: a password with unencoded `/ @ : % # ?` made the URL unreadable and was
/// printed back in the error.
#[test]
fn unencoded_url_syntax_in_a_pg_password_is_read_and_never_printed() {
    let _role: Role;
    let Some(db) = setup("secrets_raw_pg") else { return };
    let suffix = random_suffix();
    let name = format!("rct_raw_{suffix}");
    let secret = format!("Sx/@:%#?{suffix}");
    _role = Role::create(&db, &name, &secret);
    tables_with_a_failing_one(&db);
    let (source, target) = (as_login(&db.source, &name, &secret), as_login(&db.target, &name, &secret));
    let copied = run(&["copy", "--source", &source, "--target", &target, "t", "--progress", "none"]).ok();
    assert_eq!(scalar::<i64>(&db.target, "SELECT count(*) FROM t"), 3000);
    let status = run(&["status", "--target", &target]).ok();
    assert!(status.stdout.contains("done"), "{status:?}");

    let wrong = format!("Sx/@:%#?W{suffix}");
    let shown = format!("postgres://{name}@127.0.0.1:");
    let (bad_source, bad_target, ambiguous) = assert_writes_nothing(&db.target, || {
        let bad_source = run(&["copy", "--source", &as_login(&db.source, &name, &wrong), "--target", &target, "c"])
            .refused(&["password authentication failed", &shown, "the password came from the URL"]);
        let bad_target = run(&["status", "--target", &as_login(&db.target, &name, &wrong)])
            .refused(&["password authentication failed", &shown]);
        // A password holding `@`, and an `@` in a parameter after the host: two readings.
        let ambiguous = run(&["status", "--target", &format!("{target}?application_name=etl@box")]).refused(&[
            "--target",
            "more than one way",
            "%40",
        ]);
        (bad_source, bad_target, ambiguous)
    });
    assert_never_printed(
        &[&copied, &status, &bad_source, &bad_target, &ambiguous],
        &[&secret, &wrong, "Sx/@", ":%#?", "etl@box"],
    );
}

/// The same for MySQL/MariaDB, where the driver's error printed the whole URL; and a password
/// equal to the user name leaves the user name shown.
#[test]
fn unencoded_url_syntax_in_a_mysql_password_is_read_and_never_printed() {
    let Some((db, my)) = my_setup("secrets_raw_my") else { return };
    let suffix = random_suffix();
    let (name, same) = (format!("rct_raw_{suffix}"), format!("rct_same_{suffix}"));
    let secret = format!("Sy/@:%#?{suffix}");
    let _users = [MyUser::create(&name, "127.0.0.1", &secret, ALL), MyUser::create(&same, "127.0.0.1", &same, ALL)];
    my_exec(&my.url, "CREATE TABLE t (id int PRIMARY KEY, v varchar(10)); INSERT INTO t VALUES (1, 'a'), (2, 'b');");
    let source = as_login(&my.url, &name, &secret);
    let copied = run(&["copy", "--source", &source, "--target", &db.target, "--progress", "none"]).ok();
    assert_eq!(scalar::<i64>(&db.target, &format!("SELECT count(*) FROM \"{}\".t", db.job())), 2);

    let wrong = format!("Sy/@:%#?W{suffix}");
    let other = db.job().to_string() + "_none";
    let (bad, unknown_db) = assert_writes_nothing(&db.target, || {
        let bad = run(&["verify", "--source", &as_login(&my.url, &name, &wrong), "--target", &db.target]).refused(&[
            "Access denied",
            &format!("mysql://{name}@127.0.0.1:33306/"),
            "the password came from the URL",
        ]);
        let missing = as_login(&crate::common::with_database(&my.url, &other), &same, &same);
        let unknown_db = run(&["verify", "--source", &missing, "--target", &db.target])
            .refused(&[&format!("cannot connect to mysql://{same}@127.0.0.1:33306/{other}")]);
        (bad, unknown_db)
    });
    assert_never_printed(&[&copied, &bad, &unknown_db], &[&secret, &wrong, "Sy/@", ":%#?"]);
}

/// The regression: with a password equal to the user name, redaction turned the user name in
/// every printed URL into `***`, the resume hint's too.
#[test]
fn a_password_equal_to_the_user_name_leaves_the_user_name_shown() {
    let _role: Role;
    let Some(db) = setup("secrets_same_pg") else { return };
    let name = format!("rct_same_{}", random_suffix());
    _role = Role::create(&db, &name, &name);
    tables_with_a_failing_one(&db);
    let (source, target) = (as_login(&db.source, &name, &name), as_login(&db.target, &name, &name));
    let failed = run(&["copy", "--source", &source, "--target", &target, "c", "--workers", "1"]);
    assert_eq!(failed.code, 1, "{failed:?}");
    let words = hint_words(&failed.stderr);
    let db_name = db.job();
    for url in
        [format!("postgres://{name}@127.0.0.1:54330/{db_name}"), format!("postgres://{name}@127.0.0.1:54331/{db_name}")]
    {
        assert!(words.contains(&url), "the hint gives {url}:\n{failed:?}");
    }
    assert!(failed.stderr.contains("passwords in PGPASSWORD or ~/.pgpass"), "{failed:?}");
    let missing = crate::common::with_database(&target, "rct_no_such_db");
    let refused = run(&["status", "--target", &missing])
        .refused(&[&format!("cannot connect to postgres://{name}@127.0.0.1:54331/rct_no_such_db")]);
    assert!(!refused.stderr.contains("postgres://***"), "{refused:?}");
}

/// URLs given in RANGECOPY_SOURCE / RANGECOPY_TARGET, so that no password is on the command
/// line, for every command; the resume hint names the variables instead of printing the URLs.
#[test]
fn urls_from_rangecopy_source_and_target_keep_passwords_off_the_command_line() {
    let Some(db) = setup("secrets_url_env") else { return };
    tables_with_a_failing_one(&db);
    let both = [("RANGECOPY_SOURCE", db.source.as_str()), ("RANGECOPY_TARGET", db.target.as_str())];
    run_with_env(&["copy", "t", "--job", "good", "--progress", "none"], &both).ok();
    assert_eq!(scalar::<i64>(&db.target, "SELECT count(*) FROM t"), 3000);
    run_with_env(&["verify", "t", "--job", "good"], &both).ok();
    let failed = run_with_env(&["copy", "c", "--job", "bad", "--workers", "1"], &both);
    assert_eq!(failed.code, 1, "{failed:?}");
    assert_eq!(hint_words(&failed.stderr), ["copy", "--job", "bad", "--resume"], "{failed:?}");
    assert!(failed.stderr.contains("(RANGECOPY_SOURCE and RANGECOPY_TARGET set as for this run)"), "{failed:?}");

    let target_only = [("RANGECOPY_TARGET", db.target.as_str())];
    let status = run_with_env(&["status"], &target_only).ok();
    assert!(status.stdout.contains("job good: done") && status.stdout.contains("job bad"), "{status:?}");
    run_with_env(&["throttle", "--job", "bad", "--max-rows-per-sec", "1M"], &target_only).ok();

    // One from the command line, one from the environment: the hint prints the first only.
    let source_only = [("RANGECOPY_SOURCE", db.source.as_str())];
    let mixed =
        run_with_env(&["copy", "--target", &db.target, "c", "--job", "bad"], &source_only).refused(&["--resume"]);
    let hinted = format!("postgres://rangecopy@127.0.0.1:54331/{}", db.job());
    assert_eq!(hint_words(&mixed.stderr), ["copy", "--target", &hinted, "--job", "bad", "--resume"], "{mixed:?}");
    assert!(mixed.stderr.contains("RANGECOPY_SOURCE set as for this run; target password in PGPASSWORD or ~/.pgpass"));

    // Help names the variables, never their values.
    for command in ["copy", "verify", "status", "throttle"] {
        let help = run_with_env(&[command, "--help"], &both).ok();
        assert!(help.stdout.contains("RANGECOPY_TARGET"), "{help:?}");
        assert!(!help.stdout.contains("127.0.0.1"), "{help:?}");
    }

    exec(&db.target, "ALTER TABLE c DROP CONSTRAINT c_v_check");
    run_with_env(&["copy", "--job", "bad", "--resume", "--progress", "none"], &both).ok();
    assert_eq!(scalar::<i64>(&db.target, "SELECT count(*) FROM c"), 50);
}

/// libpq's password file: PGPASSFILE or ~/.pgpass, after PGPASSWORD and the URL's password;
/// ignored, with libpq's warning, when others may read it.
#[test]
fn a_pgpass_file_gives_the_password_after_the_url_and_pgpassword() {
    let Some(db) = setup("secrets_pgpass") else { return };
    tables_with_a_failing_one(&db);
    let (source, target) = (without_password(&db.source), without_password(&db.target));
    let lines = format!(
        "# host:port:database:username:password\n\
         127.0.0.1:54330:other\\:db:rangecopy:not-this-one\n\
         127.0.0.1:54330:{}:rangecopy:{PASSWORD}\n\
         *:54331:*:*:{PASSWORD}\n",
        db.job()
    );
    let file = db.dir.join("pgpass");
    write_file(&file, &lines, 0o600);
    let passfile = [("PGPASSFILE", file.to_str().unwrap())];
    run_with_env(
        &["copy", "--source", &source, "--target", &target, "t", "--job", "good", "--progress", "none"],
        &passfile,
    )
    .ok();
    assert_eq!(scalar::<i64>(&db.target, "SELECT count(*) FROM t"), 3000);

    let home = db.dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    write_file(&home.join(".pgpass"), &lines, 0o600);
    run_with_env(&["status", "--target", &target], &[("HOME", home.to_str().unwrap())]).ok();

    let wrong = "not-the-pw-pgpass-5c";
    let both = [passfile[0], ("PGPASSWORD", wrong)];
    let pgpassword_first = run_with_env(&["status", "--target", &target], &both)
        .refused(&["password authentication failed", "the password came from PGPASSWORD"]);
    run_with_env(&["status", "--target", &db.target], &[("PGPASSWORD", wrong)]).ok();

    // A failure at run time names the file in the resume hint: it will be read again.
    let failed = run_with_env(
        &["copy", "--source", &source, "--target", &target, "c", "--job", "bad", "--workers", "1"],
        &passfile,
    );
    assert_eq!(failed.code, 1, "{failed:?}");
    assert!(failed.stderr.contains(&format!("passwords in {}", file.display())), "{failed:?}");

    write_file(&file, &lines, 0o640);
    let open = run_with_env(&["status", "--target", &target], &passfile)
        .refused(&[&format!("password file {} has group or world access", file.display()), "no password was given"]);
    assert_never_printed(&[&pgpassword_first, &open], &[wrong]);
}

/// MySQL option files: the `[client]` group's password, from $MYSQL_HOME/my.cnf or ~/.my.cnf,
/// after MYSQL_PWD; a world-writable file is ignored, as the mysql client does. A failed copy's
/// resume hint keeps the URLs' TLS parameters, names MYSQL_PWD for the source, and works.
#[test]
fn a_mysql_option_file_gives_the_password_and_the_resume_hint_works() {
    let Some((db, my)) = my_setup("secrets_mycnf") else { return };
    my_exec(
        &my.url,
        "SET sql_mode = '';
         CREATE TABLE zd (id int PRIMARY KEY, d date);
         INSERT INTO zd VALUES (1, '2024-01-02'), (2, '0000-00-00'), (3, '2024-03-04');",
    );
    let source = format!("{}?ssl-mode=REQUIRED", without_password(&my.url));
    let target = format!("{}?sslmode=require", without_password(&db.target));
    let options = format!(
        "[mysqld]\npassword = not-this-one\n\n[client]\nuser = rangecopy\npassword = \"{PASSWORD}\"  # the dev login\n"
    );
    let mysql_home = db.dir.join("mysql-home");
    std::fs::create_dir_all(&mysql_home).unwrap();
    write_file(&mysql_home.join("my.cnf"), &options, 0o600);
    let env = [("MYSQL_HOME", mysql_home.to_str().unwrap()), ("PGPASSWORD", PASSWORD)];
    let args = ["copy", "--source", &source, "--target", &target, "--workers", "1", "--progress", "none"];
    let failed = run_with_env(&[&args[..], &["--zero-dates", "error"]].concat(), &env);
    assert_eq!(failed.code, 1, "a zero date under --zero-dates error fails the run:\n{failed:?}");
    let hinted = [
        format!("mysql://rangecopy@127.0.0.1:33306/{}?ssl-mode=REQUIRED", db.job()),
        format!("postgres://rangecopy@127.0.0.1:54331/{}?sslmode=require", db.job()),
    ];
    let words = hint_words(&failed.stderr);
    assert!(words.contains(&hinted[0]) && words.contains(&hinted[1]), "{failed:?}");
    assert!(
        failed.stderr.contains(&format!(
            "source password in {}; target password in PGPASSWORD",
            mysql_home.join("my.cnf").display()
        )),
        "{failed:?}"
    );

    // ~/.my.cnf, the later file, wins over $MYSQL_HOME/my.cnf; MYSQL_PWD over both.
    let home = db.dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    write_file(&home.join(".my.cnf"), &options, 0o600);
    write_file(&mysql_home.join("my.cnf"), "[client]\npassword=not-this-one\n", 0o600);
    let home_env = [("HOME", home.to_str().unwrap()), env[0], env[1]];
    let wrong = "not-the-pw-mycnf-8e";
    let with_pwd = [home_env[0], home_env[1], home_env[2], ("MYSQL_PWD", wrong)];
    let pwd_first = run_with_env(&["verify", "--source", &source, "--target", &target], &with_pwd)
        .refused(&["Access denied", "the password came from MYSQL_PWD"]);

    // Once the cause is fixed, the hint's own command resumes, with the passwords where it says.
    my_exec(&my.url, "UPDATE zd SET d = '2024-02-03' WHERE id = 2");
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let resumed = run_with_env(&[&words[..], &["--progress", "none"]].concat(), &home_env).ok();
    assert_eq!(scalar::<i64>(&db.target, &format!("SELECT count(*) FROM \"{}\".zd", db.job())), 3);

    write_file(&home.join(".my.cnf"), &options, 0o666);
    std::fs::remove_file(mysql_home.join("my.cnf")).unwrap();
    let open = run_with_env(&["verify", "--source", &source, "--target", &target], &home_env)
        .refused(&["world-writable option file", "no password was given"]);
    assert_never_printed(&[&failed, &pwd_first, &resumed, &open], &[wrong, "not-this-one"]);
}
