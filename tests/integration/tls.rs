//! TLS on both engines against the dev servers, whose certificate names `localhost` only and is
//! signed by the CA at `RANGECOPY_TEST_TLS_CA` (`scripts/dev-db.sh`). The login `rangecopy_tls`
//! is accepted over TLS only (pg_hba `hostssl`, MariaDB `REQUIRE SSL`), so a copy that works as
//! it went over TLS; PostgreSQL's `pg_stat_ssl` is checked during one copy besides.
//!
//! Covered: `sslmode=require`, `verify-ca`, `verify-full` (by `localhost`) copy; `verify-full`
//! by `127.0.0.1` is a host name mismatch while `verify-ca` there works; an unknown CA and
//! `sslmode=disable` for the TLS-only login are refused with exit 2; bad parameters are refused
//! before anything is written; MySQL `ssl-mode` REQUIRED, VERIFY_CA and VERIFY_IDENTITY copy
//! and DISABLED is refused. The harness checks every run's output for the password.

use std::time::Duration;

use mysql::prelude::Queryable;

use crate::common::my_conn;
use crate::common::{
    assert_same_table, assert_writes_nothing, exec, run, run_limited, run_with_env, scalar, setup, wait_until,
    with_database, TestDbs, PASSWORD, RUN_LIMIT,
};

/// The login the dev servers accept over TLS only.
const TLS_USER: &str = "rangecopy_tls";

/// A CA that signed nothing the dev servers use (public certificate only).
const UNRELATED_CA: &str = include_str!("../fixtures/unrelated-ca.pem");

/// The dev CA's path; `None` (after a note) when the environment does not name one and `CI`
/// is not `true`.
fn dev_ca(test: &str) -> Option<String> {
    match std::env::var("RANGECOPY_TEST_TLS_CA") {
        Ok(path) if std::path::Path::new(&path).is_file() => Some(path),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{test}: RANGECOPY_TEST_TLS_CA does not name a file; run scripts/dev-db.sh start and env")
        }
        _ => {
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "!!! {test} SKIPPED: RANGECOPY_TEST_TLS_CA is not set");
            None
        }
    }
}

/// `url` as the TLS-only login, to `host`, with `params` as its query string.
fn tls_url(url: &str, host: &str, params: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
    let (_, after_user) = rest.split_once('@').expect("a URL with a user");
    let (_, port_and_path) = after_user.split_once(':').expect("a URL with a port");
    let base = format!("{scheme}://{TLS_USER}:{PASSWORD}@{host}:{port_and_path}");
    let base = base.split('?').next().unwrap_or_default().to_string();
    if params.is_empty() {
        base
    } else {
        format!("{base}?{params}")
    }
}

fn source_table(db: &TestDbs, name: &str, rows: u32) {
    exec(
        &db.source,
        &format!(
            "CREATE TABLE {name} (id int PRIMARY KEY, v text); \
             INSERT INTO {name} SELECT g, repeat('x', g % 50) FROM generate_series(1, {rows}) g;"
        ),
    );
}

fn copy_as_tls_user(db: &TestDbs, host: &str, params: &str, args: &[&str]) -> crate::common::Run {
    let (source, target) = (tls_url(&db.source, host, params), tls_url(&db.target, host, params));
    let mut all = vec!["copy", "--source", &source, "--target", &target];
    all.extend_from_slice(args);
    run(&all)
}

#[test]
fn pg_copies_with_require_verify_ca_and_verify_full() {
    let Some(ca) = dev_ca("pg_copies_with_require_verify_ca_and_verify_full") else { return };
    let Some(db) = setup("tls_pg_modes") else { return };
    let root = format!("sslrootcert={ca}");
    for (table, params) in [
        ("t_require", "sslmode=require".to_string()),
        ("t_verify_ca", format!("sslmode=verify-ca&{root}")),
        ("t_verify_full", format!("sslmode=verify-full&{root}")),
        ("t_require_root", format!("sslmode=require&{root}")),
    ] {
        source_table(&db, table, 500);
        copy_as_tls_user(&db, "localhost", &params, &[table, "--job", table, "--chunk-rows", "100"]).ok();
        assert_same_table(&db, table, "id");
    }
}

#[test]
fn pg_sessions_of_a_verify_full_copy_are_encrypted() {
    let Some(ca) = dev_ca("pg_sessions_of_a_verify_full_copy_are_encrypted") else { return };
    let Some(db) = setup("tls_pg_stat_ssl") else { return };
    source_table(&db, "t", 3000);
    let params = format!("sslmode=verify-full&sslrootcert={ca}");
    // As the ordinary login (plain connections allowed), slowed down so its sessions can be seen.
    let source = with_host(&db.source, "localhost", &params);
    let target = with_host(&db.target, "localhost", &params);
    let args =
        ["copy", "--source", &source, "--target", &target, "t", "--chunk-rows", "100", "--max-rows-per-sec", "600"];
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let copy = std::thread::spawn(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_limited(&args, &[], RUN_LIMIT)
    });
    // Every rangecopy session on the test's databases, on both servers, uses TLS.
    let sessions = |admin: &str| {
        scalar::<String>(
            admin,
            &format!(
                "SELECT coalesce(string_agg(s.ssl::text, ','), '') FROM pg_stat_activity a \
                 JOIN pg_stat_ssl s USING (pid) WHERE a.datname = '{}' AND a.application_name = 'rangecopy'",
                db.job()
            ),
        )
    };
    let (mut seen_source, mut seen_target) = (false, false);
    wait_until(Duration::from_secs(30), || {
        for (admin, seen) in [(&db.source, &mut seen_source), (&db.target, &mut seen_target)] {
            let ssl = sessions(admin);
            assert!(!ssl.contains("false"), "a rangecopy session without TLS: {ssl}");
            *seen |= ssl.contains("true");
        }
        (seen_source && seen_target) || copy.is_finished()
    });
    copy.join().expect("the copy thread").ok();
    assert!(seen_source && seen_target, "no rangecopy session seen on both servers");
    assert_same_table(&db, "t", "id");
}

/// `url` with `host` and `params`, same login.
fn with_host(url: &str, host: &str, params: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
    let (user, after_user) = rest.split_once('@').expect("a URL with a user");
    let (_, port_and_path) = after_user.split_once(':').expect("a URL with a port");
    format!("{scheme}://{user}@{host}:{port_and_path}?{params}")
}

#[test]
fn pg_verify_full_refuses_a_host_name_the_certificate_does_not_hold() {
    let Some(ca) = dev_ca("pg_verify_full_refuses_a_host_name_the_certificate_does_not_hold") else { return };
    let Some(db) = setup("tls_pg_host_mismatch") else { return };
    source_table(&db, "t", 200);
    let full = format!("sslmode=verify-full&sslrootcert={ca}");
    let run = assert_writes_nothing(&db.target, || copy_as_tls_user(&db, "127.0.0.1", &full, &["t"]));
    run.refused(&["host name mismatch", "127.0.0.1", "sslmode=verify-ca"]);
    // The same address with the chain checked only: the certificate is the CA's.
    copy_as_tls_user(&db, "127.0.0.1", &format!("sslmode=verify-ca&sslrootcert={ca}"), &["t"]).ok();
    assert_same_table(&db, "t", "id");
}

#[test]
fn pg_verify_ca_refuses_a_certificate_from_another_ca() {
    let Some(_) = dev_ca("pg_verify_ca_refuses_a_certificate_from_another_ca") else { return };
    let Some(db) = setup("tls_pg_wrong_ca") else { return };
    source_table(&db, "t", 200);
    let wrong = db.dir.join("unrelated-ca.pem");
    std::fs::write(&wrong, UNRELATED_CA).expect("writing the unrelated CA");
    let params = format!("sslmode=verify-ca&sslrootcert={}", wrong.display());
    let run = assert_writes_nothing(&db.target, || copy_as_tls_user(&db, "localhost", &params, &["t"]));
    run.refused(&["certificate verification failed", "not signed by sslrootcert", "unrelated-ca.pem"]);
}

#[test]
fn pg_sslmode_disable_is_refused_for_a_tls_only_login() {
    let Some(_) = dev_ca("pg_sslmode_disable_is_refused_for_a_tls_only_login") else { return };
    let Some(db) = setup("tls_pg_disable") else { return };
    source_table(&db, "t", 200);
    let run = assert_writes_nothing(&db.target, || copy_as_tls_user(&db, "localhost", "sslmode=disable", &["t"]));
    run.refused(&["no encryption", "sslmode=require"]);
}

#[test]
fn pg_bad_tls_parameters_are_refused_before_anything_is_written() {
    let Some(_) = dev_ca("pg_bad_tls_parameters_are_refused_before_anything_is_written") else { return };
    let Some(db) = setup("tls_pg_bad_params") else { return };
    source_table(&db, "t", 10);
    // HOME without ~/.postgresql/root.crt, so verify modes have no default root certificate.
    let home = db.dir.to_str().expect("a UTF-8 path").to_string();
    for (params, words) in [
        ("sslmode=sometimes".to_string(), vec!["invalid sslmode", "verify-full"]),
        ("sslmode=verify-full".to_string(), vec!["needs sslrootcert"]),
        ("sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem".to_string(), vec!["/nonexistent/ca.pem", "cannot read"]),
        (format!("sslmode=verify-ca&sslrootcert={home}"), vec!["sslrootcert", "cannot read"]),
        ("sslmode=allow".to_string(), vec!["sslmode=allow is not supported"]),
    ] {
        let target = tls_url(&db.target, "localhost", &params);
        let run = assert_writes_nothing(&db.target, || {
            run_with_env(&["copy", "--source", &db.source, "--target", &target, "t"], &[("HOME", &home)])
        });
        run.refused(&words);
    }
}

// ---------------------------------------------------------------- MySQL / MariaDB

/// A MariaDB database for one test, dropped at the end.
struct MyDb {
    admin: String,
    name: String,
}

impl Drop for MyDb {
    fn drop(&mut self) {
        if let Ok(mut c) = my_conn(&self.admin) {
            let _ = c.query_drop(format!("DROP DATABASE IF EXISTS `{}`", self.name));
        }
    }
}

/// The test's PostgreSQL databases, a MariaDB database of the same name holding table `t`, the
/// URL of that database as the TLS-only login (on 127.0.0.1, no parameters) and the dev CA.
fn my_setup(test: &str) -> Option<(TestDbs, MyDb, String, String)> {
    let ca = dev_ca(test)?;
    let db = setup(test)?;
    let admin = match std::env::var("RANGECOPY_TEST_MYSQL") {
        Ok(url) => url,
        Err(_) if std::env::var("CI").is_ok_and(|v| v == "true") => panic!("{test}: RANGECOPY_TEST_MYSQL is not set"),
        Err(_) => return None,
    };
    let mut conn = my_conn(&admin).expect("connecting to MariaDB");
    let name = db.job().to_string();
    conn.query_drop(format!(
        "CREATE DATABASE `{name}` CHARACTER SET utf8mb4; \
         CREATE TABLE `{name}`.t (id int PRIMARY KEY, v varchar(50)); \
         INSERT INTO `{name}`.t SELECT seq, repeat('y', seq % 40) FROM seq_1_to_400"
    ))
    .expect("creating the test's MariaDB database");
    let url = with_database(&admin, &name);
    let url = url.replace("://rangecopy:", &format!("://{TLS_USER}:"));
    Some((db, MyDb { admin, name }, url, ca))
}

fn my_copy(db: &TestDbs, source: &str, schema: &str) -> crate::common::Run {
    run(&["copy", "--source", source, "--target", &db.target, "t", "--target-schema", schema, "--job", schema])
}

#[test]
fn mysql_copies_over_tls_as_a_login_that_requires_it() {
    let Some((db, _my, url, ca)) = my_setup("tls_mysql_modes") else { return };
    for (schema, host, params) in [
        ("required", "127.0.0.1", "ssl-mode=REQUIRED".to_string()),
        ("verify_ca", "127.0.0.1", format!("ssl-mode=VERIFY_CA&ssl-ca={ca}")),
        ("verify_identity", "localhost", format!("ssl-mode=VERIFY_IDENTITY&ssl-ca={ca}")),
    ] {
        let source = format!("{}?{params}", url.replace("@127.0.0.1:", &format!("@{host}:")));
        my_copy(&db, &source, schema).ok();
        let rows: i64 = scalar(&db.target, &format!("SELECT count(*) FROM {schema}.t"));
        assert_eq!(rows, 400, "ssl-mode in {schema}");
    }
}

#[test]
fn mysql_refusals_name_what_to_check() {
    let Some((db, _my, url, ca)) = my_setup("tls_mysql_refusals") else { return };
    let wrong = db.dir.join("unrelated-ca.pem");
    std::fs::write(&wrong, UNRELATED_CA).expect("writing the unrelated CA");
    let localhost = url.replace("@127.0.0.1:", "@localhost:");
    for (source, words) in [
        (format!("{url}?ssl-mode=DISABLED"), vec!["Access denied", "REQUIRE SSL", "ssl-mode=REQUIRED"]),
        (format!("{url}?ssl-mode=VERIFY_IDENTITY&ssl-ca={ca}"), vec!["host name mismatch", "127.0.0.1", "VERIFY_CA"]),
        (
            format!("{localhost}?ssl-mode=VERIFY_CA&ssl-ca={}", wrong.display()),
            vec!["certificate verification failed", "unrelated-ca.pem"],
        ),
        (format!("{url}?ssl-mode=VERIFY_CA"), vec!["needs ssl-ca"]),
        (format!("{url}?ssl-mode=SOMETIMES"), vec!["invalid ssl-mode"]),
        (format!("{url}?ssl-ca=/nonexistent/ca.pem"), vec!["/nonexistent/ca.pem", "cannot read"]),
    ] {
        let run = assert_writes_nothing(&db.target, || my_copy(&db, &source, "refused"));
        run.refused(&words);
    }
}
