//! MySQL/MariaDB → PostgreSQL: every row of the type mapping with its extremes, zero dates,
//! casts and excluded columns, refusals, keys under case-insensitive collations, composite,
//! negative and unsigned keys, names that need quoting, DDL (indexes, comments, identity,
//! `--target-schema`), `kill -9` + `--resume`, and per-chunk digests equal across engines.
//!
//! Each test gets its own MariaDB database (on `RANGECOPY_TEST_MYSQL`) and PostgreSQL target
//! database, both dropped at the end. Values are checked through PostgreSQL's own text forms
//! (and MariaDB's own functions), never through rangecopy's code, except the cross-engine digest
//! test, which recomputes digests from the target with the library's binary COPY decoder.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;

use crate::common::my_conn;
use crate::common::{self, connect, run, scalar, setup, texts, with_database, Run, TestDbs, PASSWORD};

/// A MariaDB database for one test, dropped at the end.
pub(crate) struct MyDb {
    admin: String,
    /// The database's name (the target schema of its tables).
    pub(crate) name: String,
    /// URL of the test's database (with the password).
    pub(crate) url: String,
}

impl Drop for MyDb {
    fn drop(&mut self) {
        if let Ok(mut c) = my_conn(&self.admin) {
            let _ = c.query_drop(format!("DROP DATABASE IF EXISTS `{}`", self.name));
        }
    }
}

/// A MariaDB login `name`@`host` on the dev server with `grants` (`{user}` in them stands for
/// the login), dropped at the end of the test.
pub(crate) struct MyUser {
    admin: String,
    /// `'name'@'host'`, as SQL names the login.
    login: String,
}

/// The grants of a login that may do anything.
pub(crate) const ALL: &str = "GRANT ALL PRIVILEGES ON *.* TO {user}";

impl MyUser {
    /// `password` must need no escaping in a MariaDB string literal (no `\` or `'`).
    pub(crate) fn create(name: &str, host: &str, password: &str, grants: &str) -> MyUser {
        let admin = std::env::var("RANGECOPY_TEST_MYSQL").expect("checked by my_setup");
        assert!(!password.contains(['\\', '\'']), "a password for a plain literal");
        let login = format!("'{name}'@'{host}'");
        my_exec(
            &admin,
            &format!("CREATE USER {login} IDENTIFIED BY '{password}'; {}", grants.replace("{user}", &login)),
        );
        MyUser { admin, login }
    }
}

impl Drop for MyUser {
    fn drop(&mut self) {
        if let Ok(mut c) = my_conn(&self.admin) {
            let _ = c.query_drop(format!("DROP USER IF EXISTS {}", self.login));
        }
    }
}

/// The test's target database and a fresh MariaDB database named like it; `None` (after a note)
/// when the servers are not there and `CI` is not `true`.
pub(crate) fn my_setup(test: &str) -> Option<(TestDbs, MyDb)> {
    let db = setup(test)?;
    let admin = match std::env::var("RANGECOPY_TEST_MYSQL") {
        Ok(url) => url,
        Err(_) => return skip(test, "RANGECOPY_TEST_MYSQL is not set"),
    };
    let mut conn = match my_conn(&admin) {
        Ok(c) => c,
        Err(e) => return skip(test, &format!("cannot reach MariaDB: {e}")),
    };
    let name = db.job().to_string();
    conn.query_drop(format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"))
        .expect("creating the test's MariaDB database");
    let url = with_database(&admin, &name);
    Some((db, MyDb { admin, name, url }))
}

fn skip<T>(test: &str, why: &str) -> Option<T> {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: {why}; under CI=true a test that cannot reach its database fails");
    }
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "!!! {test} SKIPPED: {why} (start scripts/dev-db.sh)");
    None
}

/// Runs a batch of statements on MariaDB, failing the test on the first error.
#[track_caller]
pub(crate) fn my_exec(url: &str, sql: &str) {
    let mut c = my_conn(url).expect("connecting to MariaDB");
    let mut result = c.query_iter(sql).unwrap_or_else(|e| panic!("{e}\nwhile running:\n{sql}"));
    while let Some(set) = result.iter() {
        for row in set {
            row.unwrap_or_else(|e| panic!("{e}\nwhile running:\n{sql}"));
        }
    }
}

/// The first column of the first row, as text.
#[track_caller]
pub(crate) fn my_text(url: &str, sql: &str) -> Option<String> {
    let mut c = my_conn(url).expect("connecting to MariaDB");
    c.query_first::<Option<String>, _>(sql).unwrap_or_else(|e| panic!("{e}\nwhile running:\n{sql}")).flatten()
}

/// `rangecopy copy --source MY --target PG ARGS… --progress none`.
pub(crate) fn copy(my: &MyDb, target: &str, args: &[&str]) -> Run {
    let mut all = vec!["copy", "--source", &my.url, "--target", target, "--progress", "none"];
    all.extend_from_slice(args);
    run(&all)
}

// ---------------------------------------------------------------------------------------------
// Every type, its extremes, and digests equal across engines
// ---------------------------------------------------------------------------------------------

/// One column of the all-types table: MySQL type, expected PostgreSQL type, how to render the
/// target value as text, and (row id, MySQL literal, expected text) cases; `""` as the literal
/// means the row's value is not set (generated columns); rows not listed are NULL.
struct TypeCase {
    name: &'static str,
    my_type: &'static str,
    pg_type: &'static str,
    /// `{c}` is the quoted column.
    pg_expr: &'static str,
    cases: &'static [(i32, &'static str, &'static str)],
}

const TEXT: &str = "{c}::text";

#[rustfmt::skip]
const TYPES: &[TypeCase] = &[
    TypeCase { name: "ti", my_type: "tinyint", pg_type: "smallint", pg_expr: TEXT, cases: &[(1, "-128", "-128"), (2, "127", "127"), (3, "0", "0")] },
    TypeCase { name: "tiu", my_type: "tinyint unsigned", pg_type: "smallint", pg_expr: TEXT, cases: &[(1, "0", "0"), (2, "255", "255")] },
    TypeCase { name: "si", my_type: "smallint", pg_type: "smallint", pg_expr: TEXT, cases: &[(1, "-32768", "-32768"), (2, "32767", "32767")] },
    TypeCase { name: "siu", my_type: "smallint unsigned", pg_type: "integer", pg_expr: TEXT, cases: &[(1, "0", "0"), (2, "65535", "65535")] },
    TypeCase { name: "mi", my_type: "mediumint", pg_type: "integer", pg_expr: TEXT, cases: &[(1, "-8388608", "-8388608"), (2, "8388607", "8388607")] },
    TypeCase { name: "miu", my_type: "mediumint unsigned", pg_type: "integer", pg_expr: TEXT, cases: &[(1, "0", "0"), (2, "16777215", "16777215")] },
    TypeCase { name: "i", my_type: "int", pg_type: "integer", pg_expr: TEXT, cases: &[(1, "-2147483648", "-2147483648"), (2, "2147483647", "2147483647")] },
    TypeCase { name: "iu", my_type: "int unsigned", pg_type: "bigint", pg_expr: TEXT, cases: &[(1, "0", "0"), (2, "4294967295", "4294967295")] },
    TypeCase {
        name: "bi",
        my_type: "bigint",
        pg_type: "bigint",
        pg_expr: TEXT,
        cases: &[(1, "-9223372036854775808", "-9223372036854775808"), (2, "9223372036854775807", "9223372036854775807")],
    },
    TypeCase {
        name: "biu",
        my_type: "bigint unsigned",
        pg_type: "numeric(20,0)",
        pg_expr: TEXT,
        cases: &[(1, "0", "0"), (2, "18446744073709551615", "18446744073709551615"), (3, "9223372036854775808", "9223372036854775808")],
    },
    TypeCase { name: "flag", my_type: "tinyint(1)", pg_type: "smallint", pg_expr: TEXT, cases: &[(1, "0", "0"), (2, "1", "1"), (3, "7", "7")] },
    TypeCase {
        name: "de",
        my_type: "decimal(65,30)",
        pg_type: "numeric(65,30)",
        pg_expr: TEXT,
        cases: &[
            (1, "-99999999999999999999999999999999999.999999999999999999999999999999", "-99999999999999999999999999999999999.999999999999999999999999999999"),
            (2, "99999999999999999999999999999999999.999999999999999999999999999999", "99999999999999999999999999999999999.999999999999999999999999999999"),
            (3, "0.000000000000000000000000000001", "0.000000000000000000000000000001"),
            (6, "0", "0.000000000000000000000000000000"),
        ],
    },
    TypeCase { name: "dn", my_type: "decimal(10,2) unsigned", pg_type: "numeric(10,2)", pg_expr: TEXT, cases: &[(1, "12345678.90", "12345678.90"), (2, "0.05", "0.05")] },
    TypeCase {
        name: "f",
        my_type: "float",
        pg_type: "real",
        pg_expr: "encode(float4send({c}), 'hex')",
        cases: &[
            (1, "-3.402823466e38", "ff7fffff"),
            (2, "3.402823466e38", "7f7fffff"),
            (3, "1.401298464e-45", "00000001"),
            (5, "0.1", "3dcccccd"),
            (6, "1.175494351e-38", "00800000"),
        ],
    },
    TypeCase {
        name: "d",
        my_type: "double",
        pg_type: "double precision",
        pg_expr: "encode(float8send({c}), 'hex')",
        cases: &[
            (1, "-1.7976931348623157e308", "ffefffffffffffff"),
            (2, "1.7976931348623157e308", "7fefffffffffffff"),
            (3, "4.9406564584124654e-324", "0000000000000001"),
            (5, "0.1", "3fb999999999999a"),
            (6, "2.2250738585072014e-308", "0010000000000000"),
        ],
    },
    TypeCase { name: "c", my_type: "char(5)", pg_type: "character varying(5)", pg_expr: TEXT, cases: &[(1, "'ab  '", "ab"), (2, "''", "")] },
    TypeCase {
        name: "vc",
        my_type: "varchar(20)",
        pg_type: "character varying(20)",
        pg_expr: TEXT,
        cases: &[(1, "'it''s'", "it's"), (2, "'😀𝄞 four-byte'", "😀𝄞 four-byte"), (3, "'trailing  '", "trailing  ")],
    },
    TypeCase { name: "tx", my_type: "text", pg_type: "text", pg_expr: TEXT, cases: &[(1, "'line1\\nline2\\ttab \\\\ back'", "line1\nline2\ttab \\ back"), (2, "''", "")] },
    TypeCase { name: "lt", my_type: "longtext", pg_type: "text", pg_expr: "length({c})::text", cases: &[(5, "REPEAT('xyz€', 1000000)", "4000000")] },
    TypeCase {
        name: "l1",
        my_type: "varchar(20) CHARACTER SET latin1 COLLATE latin1_german1_ci",
        pg_type: "character varying(20)",
        pg_expr: TEXT,
        cases: &[(1, "'àéîõü ÿß'", "àéîõü ÿß"), (2, "'Ærø ©'", "Ærø ©")],
    },
    TypeCase { name: "bn", my_type: "binary(4)", pg_type: "bytea", pg_expr: "encode({c}, 'hex')", cases: &[(1, "x'01'", "01000000"), (2, "x'ffffffff'", "ffffffff")] },
    TypeCase { name: "vb", my_type: "varbinary(10)", pg_type: "bytea", pg_expr: "encode({c}, 'hex')", cases: &[(1, "x''", ""), (2, "x'00ff00'", "00ff00")] },
    TypeCase { name: "bl", my_type: "longblob", pg_type: "bytea", pg_expr: "length({c})::text || ':' || md5({c})", cases: &[(5, "REPEAT(x'00ff0a', 2000000)", "@md5")] },
    TypeCase {
        name: "dt",
        my_type: "date",
        pg_type: "date",
        pg_expr: TEXT,
        cases: &[(1, "'1000-01-01'", "1000-01-01"), (2, "'9999-12-31'", "9999-12-31"), (3, "'0009-12-04'", "0009-12-04"), (6, "'2024-02-29'", "2024-02-29")],
    },
    TypeCase {
        name: "dtm",
        my_type: "datetime",
        pg_type: "timestamp(0) without time zone",
        pg_expr: TEXT,
        cases: &[(1, "'1000-01-01 00:00:00'", "1000-01-01 00:00:00"), (2, "'9999-12-31 23:59:59'", "9999-12-31 23:59:59")],
    },
    TypeCase {
        name: "dtm6",
        my_type: "datetime(6)",
        pg_type: "timestamp(6) without time zone",
        pg_expr: TEXT,
        cases: &[(1, "'2024-02-29 12:34:56.000001'", "2024-02-29 12:34:56.000001"), (2, "'9999-12-31 23:59:59.999999'", "9999-12-31 23:59:59.999999")],
    },
    TypeCase {
        name: "ts",
        my_type: "timestamp(3) NULL",
        pg_type: "timestamp(3) with time zone",
        pg_expr: TEXT,
        cases: &[
            (1, "'1970-01-01 00:00:01'", "1970-01-01 00:00:01+00"),
            (2, "'2038-01-19 03:14:07.999'", "2038-01-19 03:14:07.999+00"),
            // Written as 12:00:00.5 in a session at +05:00 (see create_types_table).
            (3, "", "2024-06-01 07:00:00.5+00"),
        ],
    },
    TypeCase {
        name: "tm",
        my_type: "time(6)",
        pg_type: "interval",
        pg_expr: TEXT,
        cases: &[
            (1, "'-838:59:59.999999'", "-838:59:59.999999"),
            (2, "'838:59:59.999999'", "838:59:59.999999"),
            (3, "'00:00:00'", "00:00:00"),
            (6, "'-00:00:00.5'", "-00:00:00.5"),
        ],
    },
    TypeCase { name: "yr", my_type: "year", pg_type: "smallint", pg_expr: TEXT, cases: &[(1, "1901", "1901"), (2, "2155", "2155"), (3, "0", "0")] },
    TypeCase { name: "en", my_type: "enum('small','it''s','large')", pg_type: "ENUM", pg_expr: TEXT, cases: &[(1, "'small'", "small"), (2, "'it''s'", "it's")] },
    TypeCase { name: "st", my_type: "set('a','b','c')", pg_type: "text", pg_expr: TEXT, cases: &[(1, "'a,c'", "a,c"), (2, "''", "")] },
    TypeCase { name: "b1", my_type: "bit(1)", pg_type: "bit(1)", pg_expr: TEXT, cases: &[(1, "b'0'", "0"), (2, "b'1'", "1")] },
    TypeCase {
        name: "b64",
        my_type: "bit(64)",
        pg_type: "bit(64)",
        pg_expr: TEXT,
        cases: &[
            (1, "b'1111111111111111111111111111111111111111111111111111111111111111'", "1111111111111111111111111111111111111111111111111111111111111111"),
            (2, "b'1'", "0000000000000000000000000000000000000000000000000000000000000001"),
        ],
    },
    TypeCase { name: "b5", my_type: "bit(5)", pg_type: "bit(5)", pg_expr: TEXT, cases: &[(1, "b'10110'", "10110"), (2, "b'00001'", "00001")] },
    TypeCase {
        name: "js",
        my_type: "json",
        pg_type: "jsonb",
        pg_expr: TEXT,
        cases: &[(1, r#"'{"b": [1, 2.50, null, true], "a": "é😀\\n"}'"#, r#"{"a": "é😀\n", "b": [1, 2.50, null, true]}"#), (2, "'[]'", "[]")],
    },
    TypeCase { name: "gv", my_type: "int AS (ti * 2) VIRTUAL", pg_type: "integer", pg_expr: TEXT, cases: &[(1, "", "-256"), (2, "", "254"), (3, "", "0")] },
    TypeCase { name: "gs", my_type: "varchar(30) AS (concat(vc, '!')) STORED", pg_type: "character varying(30)", pg_expr: TEXT, cases: &[(1, "", "it's!"), (2, "", "😀𝄞 four-byte!"), (3, "", "trailing  !")] },
    TypeCase { name: "uu", my_type: "uuid", pg_type: "uuid", pg_expr: TEXT, cases: &[(1, "'123e4567-e89b-12d3-a456-426614174000'", "123e4567-e89b-12d3-a456-426614174000")] },
];

const ROWS: [i32; 6] = [1, 2, 3, 4, 5, 6];

fn create_types_table(my: &MyDb) {
    let cols: Vec<String> = TYPES.iter().map(|t| format!("`{}` {}", t.name, t.my_type)).collect();
    let mut sql = format!("SET time_zone = '+00:00';\nCREATE TABLE types (id int PRIMARY KEY, {});\n", cols.join(", "));
    sql.push_str(&format!("INSERT INTO types (id) VALUES {};\n", ROWS.map(|r| format!("({r})")).join(", ")));
    for t in TYPES {
        for (row, literal, _) in t.cases {
            if !literal.is_empty() {
                sql.push_str(&format!("UPDATE types SET `{}` = {literal} WHERE id = {row};\n", t.name));
            }
        }
    }
    // A TIMESTAMP written in another session time zone is the same instant.
    sql.push_str("SET time_zone = '+05:00'; UPDATE types SET ts = '2024-06-01 12:00:00.5' WHERE id = 3;");
    my_exec(&my.url, &sql);
}

#[test]
fn every_type_maps_exactly_with_its_extremes_and_digests_match_across_engines() {
    let Some((db, my)) = my_setup("my_types") else { return };
    create_types_table(&my);
    let blob = my_text(&my.url, "SELECT CONCAT(LENGTH(bl), ':', MD5(bl)) FROM types WHERE id = 5").unwrap();
    let out = copy(&my, &db.target, &["--chunk-rows", "2", "--workers", "2"]).ok();
    assert!(out.stderr.is_empty() || !out.stderr.contains("warning"), "{out:?}");
    let schema = my.name.as_str();
    let table = format!("\"{schema}\".types");

    // Column types, in order.
    let types = texts(
        &db.target,
        &format!(
            "SELECT attname || ' ' || format_type(atttypid, atttypmod) FROM pg_attribute
              WHERE attrelid = '{table}'::regclass AND attnum > 0 ORDER BY attnum"
        ),
    );
    let mut want = vec![Some("id integer".to_string())];
    for t in TYPES {
        let pg = if t.pg_type == "ENUM" { format!("{schema}.types_{}", t.name) } else { t.pg_type.to_string() };
        want.push(Some(format!("{} {pg}", t.name)));
    }
    assert_eq!(types, want, "target column types");

    // Every value, through PostgreSQL's text forms.
    let mut c = connect(&db.target);
    for t in TYPES {
        let expr = t.pg_expr.replace("{c}", &format!("\"{}\"", t.name));
        let sql = format!("SELECT id, {expr} FROM {table} ORDER BY id");
        let rows = c.query(&sql, &[]).unwrap_or_else(|e| panic!("{}: {sql}", common::pg_error(&e)));
        let got: Vec<(i32, Option<String>)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        let want: Vec<(i32, Option<String>)> = ROWS
            .iter()
            .map(|&id| {
                let case =
                    t.cases
                        .iter()
                        .find(|c| c.0 == id)
                        .map(|c| if c.2 == "@md5" { blob.clone() } else { c.2.to_string() });
                (id, case)
            })
            .collect();
        assert_eq!(got, want, "column {} ({} → {})", t.name, t.my_type, t.pg_type);
    }

    // The digests the copy stored (computed from MariaDB's values) equal the digests of the
    // same chunks read back from the target's binary COPY.
    let recomputed = target_chunk_digests(&db.target, db.job(), &table, "id");
    assert_eq!(recomputed.len(), 3, "chunks of 2 rows over 6 rows: {recomputed:?}");
    for (stored, from_target) in &recomputed {
        assert_eq!(stored, from_target, "chunk digest from MariaDB vs from the PostgreSQL target");
    }
}

/// (stored digest, digest recomputed from the target) of every chunk of the job's first table,
/// whose single-column integer key is `key`.
fn target_chunk_digests(target: &str, job: &str, table: &str, key: &str) -> Vec<(String, String)> {
    use rangecopy::copy_format::ChunkHasher;
    let definition: String =
        scalar(target, &format!("SELECT definition::text FROM rangecopy.tables WHERE job = '{job}' AND table_no = 0"));
    let def: rangecopy::schema::Table = serde_json::from_str(&definition).expect("a table definition");
    let columns: Vec<&rangecopy::schema::Column> = def.copied_columns().collect();
    let list: Vec<String> = columns.iter().map(|c| format!("\"{}\"", c.name.replace('"', "\"\""))).collect();
    let ep = rangecopy::config::PgEndpoint::parse(target, "target").expect("target URL");
    let mut conn = rangecopy::pg::PgConn::connect(&ep, "").expect("connecting to the target");
    let mut out = Vec::new();
    for chunk in common::chunks(target, job) {
        let mut conds = Vec::new();
        if let Some(lo) = &chunk.lo {
            conds.push(format!("{key} >= {}", lo[0]));
        }
        if let Some(hi) = &chunk.hi {
            conds.push(format!("{key} < {}", hi[0]));
        }
        let filter = if conds.is_empty() { String::new() } else { format!(" WHERE {}", conds.join(" AND ")) };
        let sql =
            format!("COPY (SELECT {} FROM {table}{filter} ORDER BY {key}) TO STDOUT (FORMAT binary)", list.join(", "));
        let mut hasher = ChunkHasher::new(&columns);
        conn.copy_out_blocks(&sql, 1 << 16, |block| {
            hasher.hash(&block).expect("decoding the target's COPY");
            Ok(true)
        })
        .expect("reading the chunk back");
        let summary = hasher.finish().expect("a complete COPY stream");
        out.push((chunk.digest.clone().expect("a done chunk has a digest"), summary.digest.to_string()));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Zero dates, casts, exclusions, refusals
// ---------------------------------------------------------------------------------------------

const ZERO_DATES: &str = "
    SET sql_mode = '';
    CREATE TABLE zd (id int PRIMARY KEY, d date, dt datetime(6), ts timestamp NULL, ok date);
    INSERT INTO zd VALUES
      (1, '0000-00-00', '0000-00-00 00:00:00', '0000-00-00 00:00:00', '0009-12-04'),
      (2, '2024-00-10', '2024-01-00 10:00:00', NULL, '2024-01-10'),
      (3, '2024-05-06', '2024-05-06 07:08:09.5', '2024-05-06 07:08:09', '0001-01-01'),
      (4, '0000-00-00', NULL, NULL, NULL);";

#[test]
fn zero_dates_become_null_and_are_counted_or_refused_by_policy() {
    let Some((mut db, my)) = my_setup("my_zero_dates") else { return };
    my_exec(&my.url, ZERO_DATES);
    let out = copy(&my, &db.target, &[]).ok();
    assert!(out.stderr.contains("column \"d\": 3 zero dates copied as NULL"), "{out:?}");
    assert!(out.stderr.contains("column \"dt\": 2 zero dates copied as NULL"), "{out:?}");
    assert!(out.stderr.contains("column \"ts\": 1 zero date copied as NULL"), "{out:?}");
    assert!(!out.stderr.contains("column \"ok\""), "real dates are never touched: {out:?}");
    let table = format!("\"{}\".zd", my.name);
    let got = texts(&db.target, &format!("SELECT concat_ws('|', id, d, dt, ts, ok) FROM {table} ORDER BY id"));
    assert_eq!(
        got,
        [
            Some("1|0009-12-04".into()),
            Some("2|2024-01-10".into()),
            Some("3|2024-05-06|2024-05-06 07:08:09.5|2024-05-06 07:08:09+00|0001-01-01".into()),
            Some("4".into()),
        ]
    );

    let strict = db.extra_target("strict");
    let out = copy(&my, &strict, &["--zero-dates", "error"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("column \"d\""), "names the column: {out:?}");
    assert!(out.stderr.contains("(\"id\") = (1)"), "names the key: {out:?}");
    assert!(out.stderr.contains("0000-00-00"), "shows the value: {out:?}");
    let rows: i64 = scalar(&strict, &format!("SELECT count(*) FROM {table}"));
    assert_eq!(rows, 0, "the failed chunk is rolled back");
}

#[test]
fn casts_and_excluded_columns_change_exactly_what_they_name() {
    let Some((db, my)) = my_setup("my_casts") else { return };
    my_exec(
        &my.url,
        "CREATE TABLE c (id int PRIMARY KEY, flag tinyint(1) NOT NULL DEFAULT 1, other tinyint(1), n tinyint,
                         shape geometry, bin binary(16), raw varchar(40), secret text, doc text);
         INSERT INTO c VALUES
           (1, 1, 0, 5, ST_GeomFromText('POINT(1 2)'), x'123e4567e89b12d3a456426614174000', '{\"k\": 1}', 's1', 'x'),
           (2, 0, NULL, -5, NULL, NULL, NULL, 's2', NULL);",
    );
    let out = copy(
        &my,
        &db.target,
        &[
            "--cast",
            "type:tinyint(1)=boolean",
            "--cast",
            "column:c.shape=text",
            "--cast",
            &format!("column:{}.c.bin=uuid", my.name),
            "--cast",
            "column:c.raw=jsonb",
            "--exclude-column",
            "c.secret",
            "--target-schema",
            "app",
        ],
    )
    .ok();
    assert!(out.stderr.is_empty() || !out.stderr.contains("error"), "{out:?}");
    let shapes = texts(
        &db.target,
        "SELECT attname || ' ' || format_type(atttypid, atttypmod) || coalesce(' DEFAULT ' || pg_get_expr(adbin, adrelid), '')
           FROM pg_attribute LEFT JOIN pg_attrdef ON adrelid = attrelid AND adnum = attnum
          WHERE attrelid = 'app.c'::regclass AND attnum > 0 ORDER BY attnum",
    );
    let shapes: Vec<String> = shapes.into_iter().map(Option::unwrap).collect();
    assert_eq!(
        shapes,
        [
            "id integer",
            "flag boolean DEFAULT true",
            "other boolean",
            "n smallint",
            "shape text",
            "bin uuid",
            "raw jsonb",
            "doc text"
        ]
    );
    let got =
        texts(&db.target, "SELECT concat_ws('|', id, flag, other, n, shape, bin, raw, doc) FROM app.c ORDER BY id");
    assert_eq!(
        got,
        [Some("1|t|f|5|POINT(1 2)|123e4567-e89b-12d3-a456-426614174000|{\"k\": 1}|x".into()), Some("2|f|-5".into())]
    );

    // A value a cast cannot hold is an error naming table, column and key, never a change.
    my_exec(&my.url, "INSERT INTO c (id, flag, other) VALUES (3, 2, 0)");
    let mut dbs2 = db;
    let t2 = dbs2.extra_target("b");
    let out = copy(&my, &t2, &["--cast", "type:tinyint(1)=boolean", "--exclude-column", "c.shape"]);
    assert_eq!(out.code, 1, "{out:?}");
    for w in ["column \"flag\"", "(\"id\") = (3)", "2 is neither 0 nor 1"] {
        assert!(out.stderr.contains(w), "expected {w:?}: {out:?}");
    }
}

#[test]
fn bad_rules_and_unsupported_types_are_refused_before_anything_is_written() {
    let Some((db, my)) = my_setup("my_refusals") else { return };
    // INET6 (MariaDB 10.5+) has no faithful PostgreSQL type here (spatial types do: PostGIS).
    my_exec(
        &my.url,
        "CREATE TABLE geo (id int PRIMARY KEY, shape inet6, label text); INSERT INTO geo VALUES (1, '::1', 'a');",
    );
    common::exec(&db.target, "CREATE TABLE keep (x int); INSERT INTO keep VALUES (1);");
    for (args, words) in [
        (vec![], vec!["geo", "\"shape\"", "inet6", "--cast", "--exclude-column"]),
        (
            vec!["--cast", "type:inet6=float"],
            vec!["--cast", "unknown PostgreSQL type", "boolean, text, bytea, jsonb, uuid"],
        ),
        (vec!["--cast", "geometry=text"], vec!["missing `type:` or `column:`"]),
        (
            vec!["--cast", "column:geo.label=boolean"],
            vec!["cannot map column", "label", "text columns cannot be mapped to boolean"],
        ),
        (
            vec!["--exclude-column", "geo.shape", "--exclude-column", "geo.nope"],
            vec!["--exclude-column geo.nope names no column"],
        ),
        (vec!["--exclude-column", "a.b.c.d"], vec!["expected [DB.]TABLE.COLUMN"]),
        (vec!["--zero-dates", "maybe"], vec!["maybe"]),
    ] {
        common::assert_writes_nothing(&db.target, || copy(&my, &db.target, &args).refused(&words));
    }
    // Options of MySQL sources are refused for PostgreSQL sources.
    run(&["copy", "--source", &db.source, "--target", &db.target, "--target-schema", "x"])
        .refused(&["MySQL/MariaDB sources only"]);
    // Excluding the column makes the table copyable.
    copy(&my, &db.target, &["--exclude-column", "geo.shape"]).ok();
    let n: i64 = scalar(&db.target, &format!("SELECT count(*) FROM \"{}\".geo", my.name));
    assert_eq!(n, 1);
}

#[test]
fn wrong_password_is_refused_with_a_hint_and_never_echoed() {
    let Some((db, my)) = my_setup("my_password") else { return };
    let bad = my.url.replace(PASSWORD, "wrong-pw-4711");
    let out = run(&["copy", "--source", &bad, "--target", &db.target]).refused(&["check the user and password"]);
    assert!(!out.stderr.contains("wrong-pw-4711"), "{out:?}");
}

// ---------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------

#[test]
fn text_keys_under_a_case_insensitive_collation_are_chunked_in_source_order() {
    let Some((db, my)) = my_setup("my_ci_keys") else { return };
    // Case variants and accents interleave in utf8mb4_general_ci order, but not in binary order.
    let words = [
        "apple", "Apple2", "banana", "Banana2", "cherry", "Cherry2", "éclair", "eclair2", "Zebra", "zebra2", "ÿes",
        "Yes2",
    ];
    let values: Vec<String> = words.iter().enumerate().map(|(i, w)| format!("('{w}', {i})")).collect();
    my_exec(
        &my.url,
        &format!(
            "CREATE TABLE w (word varchar(20) COLLATE utf8mb4_general_ci PRIMARY KEY, n int NOT NULL);
             INSERT INTO w VALUES {};",
            values.join(", ")
        ),
    );
    for chunk_rows in ["1", "2", "5"] {
        let target = format!("{}_{chunk_rows}", db.job());
        copy(&my, &db.target, &["--chunk-rows", chunk_rows, "--job", &target, "--target-schema", &target]).ok();
        let got = texts(&db.target, &format!("SELECT word FROM \"{target}\".w ORDER BY n"));
        let want: Vec<Option<String>> = words.iter().map(|w| Some(w.to_string())).collect();
        assert_eq!(got, want, "every row exactly once with chunks of {chunk_rows}");
        common::assert_chunks_tile(
            &db.target,
            &target,
            &format!("{target}.w"),
            chunk_rows.parse().unwrap(),
            words.len() as i64,
        );
    }
}

#[test]
fn composite_negative_and_unsigned_keys_copy_every_row_once() {
    let Some((db, my)) = my_setup("my_keys") else { return };
    my_exec(
        &my.url,
        "CREATE TABLE comp (a int NOT NULL, b varchar(10) NOT NULL, c date NOT NULL, v int, PRIMARY KEY (a, b, c));
         INSERT INTO comp SELECT CAST(seq AS SIGNED) % 7 - 3, CONCAT('k', seq % 5), DATE '2020-01-01' + INTERVAL seq DAY, seq FROM seq_1_to_500;
         CREATE TABLE uns (id bigint unsigned PRIMARY KEY, v int);
         INSERT INTO uns SELECT 18446744073709551615 - seq * 1000, seq FROM seq_0_to_299;
         INSERT INTO uns VALUES (0, -1), (1, -2), (9223372036854775807, -3), (9223372036854775808, -4);
         CREATE TABLE neg (id int NOT NULL, code binary(3) NOT NULL, v int, UNIQUE KEY (code), KEY (id));
         INSERT INTO neg SELECT CAST(seq AS SIGNED) - 250, UNHEX(LPAD(HEX(seq * 37), 6, '0')), seq FROM seq_1_to_500;",
    );
    copy(&my, &db.target, &["--chunk-rows", "37", "--workers", "2"]).ok();
    let s = &my.name;
    for (table, rows, check) in [
        ("comp", 500, format!("SELECT count(DISTINCT (a, b, c)) = 500 AND sum(v) = 125250 FROM \"{s}\".comp")),
        ("uns", 304, format!("SELECT count(DISTINCT id) = 304 AND sum(v) = 44850 - 10 AND max(id) = 18446744073709551615 FROM \"{s}\".uns")),
        ("neg", 500, format!("SELECT count(DISTINCT code) = 500 AND min(id) = -249 AND sum(v) = 125250 FROM \"{s}\".neg")),
    ] {
        let ok: bool = scalar(&db.target, &check);
        assert!(ok, "{table}: {check}");
        common::assert_chunks_tile(&db.target, db.job(), &format!("{s}.{table}"), 37, rows);
    }
    // Binary keys are stored as hex bounds; the unique key chose them.
    let key: String = scalar(
        &db.target,
        &format!("SELECT key FROM rangecopy.tables WHERE target_name = 'neg' AND job = '{}'", db.job()),
    );
    assert!(key.contains("code"), "{key}");
}

// ---------------------------------------------------------------------------------------------
// Rows with huge values
// ---------------------------------------------------------------------------------------------

/// Each row of `huge` as a line of text, by MariaDB's own functions.
const HUGE_ROWS_MY: &str = "SELECT CONCAT_WS('|', a, b, COALESCE(LENGTH(bl), '-'), COALESCE(MD5(bl), '-'),
        COALESCE(CHAR_LENGTH(tx), '-'), COALESCE(MD5(tx), '-'), COALESCE(JSON_LENGTH(js), '-'), COALESCE(note, '-'))
      FROM huge ORDER BY a, b";

/// The same lines by PostgreSQL's.
fn huge_rows_pg(schema: &str) -> String {
    format!(
        "SELECT concat_ws('|', a, b, coalesce(length(bl)::text, '-'), coalesce(md5(bl), '-'),
                coalesce(char_length(tx)::text, '-'), coalesce(md5(tx), '-'), coalesce(jsonb_array_length(js)::text, '-'),
                coalesce(note, '-'))
           FROM \"{schema}\".huge ORDER BY a, b"
    )
}

/// Every row of a MariaDB query's first column, as text.
#[track_caller]
fn my_texts(url: &str, sql: &str) -> Vec<Option<String>> {
    let mut c = my_conn(url).expect("connecting to MariaDB");
    c.query::<Option<String>, _>(sql).unwrap_or_else(|e| panic!("{e}\nwhile running:\n{sql}"))
}

/// Rows whose wide values (LONGBLOB, LONGTEXT, JSON) together exceed the set-aside limit are
/// left out of the chunk's streaming query and read whole by key afterwards: they must arrive
/// exactly once and unchanged, hashed like any other row. The limit itself streams; chunks of
/// two rows put two huge rows in one chunk.
#[test]
fn rows_with_values_above_the_set_aside_limit_arrive_whole_and_digests_match_verify() {
    let Some((mut db, my)) = my_setup("my_huge_rows") else { return };
    let limit = rangecopy::source::mysql::SET_ASIDE_ABOVE;
    my_exec(
        &my.url,
        &format!(
            "CREATE TABLE huge (a int NOT NULL, b varchar(8) NOT NULL, bl longblob, tx longtext, js json,
                                note varchar(20), PRIMARY KEY (a, b));
             INSERT INTO huge VALUES
               (1, 'a', x'00ff', 'héllo wörld', '[1, 2]', 'small'),
               (1, 'b', REPEAT(x'5a', {limit}), NULL, NULL, 'at the limit'),
               (2, 'a', REPEAT(x'a5', {limit} + 1), NULL, NULL, 'one byte over'),
               (2, 'b', NULL, REPEAT('€😀x', 700000), '[]', 'multibyte text'),
               (3, 'a', NULL, NULL, NULL, NULL),
               (3, 'b', REPEAT(x'01', {limit} - 12), REPEAT('ü', 6), NULL, 'limit, summed'),
               (4, 'a', REPEAT(x'c3', 3000000), REPEAT('ab', 700000), NULL, 'over, summed'),
               (4, 'b', NULL, 'ünïcödé', CONCAT('[', REPEAT('12345, ', 800000), '0]'), 'json'),
               (5, 'a', '', '', '[3]', 'last'),
               (6, 'a', REPEAT(x'77', 12000000), NULL, NULL, 'twelve megabytes');"
        ),
    );
    let want = my_texts(&my.url, HUGE_ROWS_MY);
    assert_eq!(want.len(), 10);

    copy(&my, &db.target, &["--chunk-rows", "2", "--workers", "2"]).ok();
    assert_eq!(texts(&db.target, &huge_rows_pg(&my.name)), want, "every row once, every value whole");
    let chunks = common::assert_chunks_tile(&db.target, db.job(), &format!("{}.huge", my.name), 2, 10);

    // verify reads the source the same way, and recomputes the target's side from PostgreSQL:
    // both equal what the copy stored, chunk by chunk.
    let report = db.dir.join("verify.json");
    let out = run(&[
        "verify",
        "--source",
        &my.url,
        "--target",
        &db.target,
        "--job",
        db.job(),
        "--report",
        report.to_str().expect("a UTF-8 path"),
    ]);
    assert_eq!(out.code, 0, "identical: {out:?}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("the report")).expect("a JSON report");
    let table = &report["tables"][0];
    let mut stored = rangecopy::canonical::RangeDigest::new();
    for c in &chunks {
        stored.merge(&c.digest.as_deref().expect("a done chunk's digest").parse().expect("a digest"));
    }
    assert_eq!(table["source_rows"], 10, "{table:#}");
    assert_eq!(table["source_digest"], stored.to_string(), "digest of the source read again vs stored: {table:#}");
    assert_eq!(table["target_digest"], stored.to_string(), "digest of the target vs stored: {table:#}");

    // Inside --consistent's snapshot, chunks read in the workers' own transactions; one chunk
    // of the whole table sets aside more bytes than may be in flight at once.
    let consistent = db.extra_target("consistent");
    copy(&my, &consistent, &["--workers", "2", "--consistent"]).ok();
    assert_eq!(texts(&consistent, &huge_rows_pg(&my.name)), want, "the same under --consistent");
}

// ---------------------------------------------------------------------------------------------
// Names, DDL, identity, comments, --target-schema
// ---------------------------------------------------------------------------------------------

#[test]
fn quoted_names_indexes_comments_and_auto_increment_are_recreated() {
    let Some((db, my)) = my_setup("my_ddl") else { return };
    my_exec(
        &my.url,
        "CREATE TABLE `we``ird \"t\"` (
           `id` bigint NOT NULL AUTO_INCREMENT COMMENT 'row id',
           `Na\"me` varchar(100) NOT NULL DEFAULT 'x''y',
           `email` varchar(200) NOT NULL,
           `body` text,
           `score` decimal(6,2) DEFAULT 0.50,
           `at` datetime(6) DEFAULT CURRENT_TIMESTAMP(6),
           PRIMARY KEY (`id`),
           UNIQUE KEY `uq email` (`email`),
           KEY `by_name` (`Na\"me`, `score` DESC),
           KEY `body_prefix` (`body`(10))
         ) COMMENT 'a ''quoted'' table' AUTO_INCREMENT = 1000;
         INSERT INTO `we``ird \"t\"` (`Na\"me`, `email`, `body`) SELECT CONCAT('n', seq), CONCAT('e', seq, '@x'), REPEAT('b', seq) FROM seq_1_to_50;",
    );
    copy(&my, &db.target, &["--target-schema", "Sales Dept", "--chunk-rows", "7"]).ok();
    let t = "\"Sales Dept\".\"we`ird \"\"t\"\"\"";
    let n: i64 = scalar(&db.target, &format!("SELECT count(*) FROM {t}"));
    assert_eq!(n, 50);
    let max: i64 = scalar(&db.target, &format!("SELECT max(id) FROM {t}"));
    assert_eq!(max, 1049);
    // The identity continues past the copied maximum.
    common::exec(&db.target, &format!("INSERT INTO {t} (\"Na\"\"me\", email) VALUES ('new', 'new@x')"));
    let next: i64 = scalar(&db.target, &format!("SELECT id FROM {t} WHERE email = 'new@x'"));
    assert!(next > 1049, "next identity value {next}");
    let defaults: String = scalar(&db.target, &format!("SELECT string_agg(attname || '=' || pg_get_expr(adbin, adrelid), ', ' ORDER BY adnum) FROM pg_attrdef JOIN pg_attribute ON attrelid = adrelid AND attnum = adnum WHERE adrelid = '{}'::regclass", t.replace('\'', "''")));
    assert_eq!(defaults, "Na\"me='x''y'::character varying, score=0.50, at=LOCALTIMESTAMP");
    let indexes = common::constraints_and_indexes(&db.target, t);
    let joined = indexes.join("\n");
    for want in [
        "PRIMARY KEY (id)",
        "UNIQUE INDEX \"we`ird \"\"t\"\"_uq email\"",
        "(email)",
        "(\"Na\"\"me\", score DESC)",
        "(\"left\"(body, 10))",
    ] {
        assert!(joined.contains(want), "expected {want:?} in:\n{joined}");
    }
    let comment: String = scalar(&db.target, &format!("SELECT obj_description('{}'::regclass)", t.replace('\'', "''")));
    assert_eq!(comment, "a 'quoted' table");
    let col_comment: String =
        scalar(&db.target, &format!("SELECT col_description('{}'::regclass, 1)", t.replace('\'', "''")));
    assert_eq!(col_comment, "row id");
}

// ---------------------------------------------------------------------------------------------
// kill -9 and --resume
// ---------------------------------------------------------------------------------------------

fn spawn(args: &[&str], dir: &std::path::Path) -> (Child, PathBuf) {
    let err = dir.join(format!("run{}.err", common::random_suffix()));
    let child = Command::new(env!("CARGO_BIN_EXE_rangecopy"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err).expect("a log file"))
        .spawn()
        .expect("starting rangecopy");
    (child, err)
}

#[test]
fn kill_9_then_resume_copies_every_row_exactly_once() {
    let Some((db, my)) = my_setup("my_resume") else { return };
    my_exec(
        &my.url,
        "CREATE TABLE big (id bigint PRIMARY KEY, grp int NOT NULL, note varchar(64), amount decimal(12,2), at datetime(6));
         INSERT INTO big SELECT CAST(seq AS SIGNED) * 3 - 50000, seq % 1000, CONCAT('n', seq * 7), seq * 1.25, '2020-01-01' + INTERVAL seq SECOND FROM seq_1_to_120000;",
    );
    let job = "mykill";
    let args = [
        "copy",
        "--source",
        &my.url,
        "--target",
        &db.target,
        "--job",
        job,
        "--chunk-rows",
        "3000",
        "--workers",
        "2",
        "--progress",
        "none",
    ];
    let (mut child, err) = spawn(&args, &db.dir);
    let done = |min: i64| {
        common::wait_until(Duration::from_secs(60), || {
            let exists: bool = scalar(&db.target, "SELECT to_regclass('rangecopy.chunks') IS NOT NULL");
            exists
                && scalar::<i64>(
                    &db.target,
                    &format!("SELECT count(*) FROM rangecopy.chunks WHERE job = '{job}' AND status = 'done'"),
                ) >= min
        })
    };
    assert!(done(4), "chunks never got done: {}", std::fs::read_to_string(&err).unwrap_or_default());
    let _ = child.kill();
    let _ = child.wait();
    let table = format!("\"{}\".big", my.name);
    let committed: i64 = scalar(
        &db.target,
        &format!("SELECT coalesce(sum(rows), 0)::int8 FROM rangecopy.chunks WHERE job = '{job}' AND status = 'done'"),
    );
    let present: i64 = scalar(&db.target, &format!("SELECT count(*) FROM {table}"));
    assert_eq!(present, committed, "after kill -9 the table holds exactly its done chunks");
    assert!(present < 120_000, "the copy finished before the kill; nothing was tested");

    let started = Instant::now();
    let mut resume = args.to_vec();
    resume.push("--resume");
    run(&resume).ok();
    assert!(started.elapsed() < Duration::from_secs(60));
    let check: String = scalar(
        &db.target,
        &format!(
            "SELECT count(*) || ' ' || count(DISTINCT id) || ' ' || sum(id) || ' ' ||
                    count(*) FILTER (WHERE note = 'n' || ((id + 50000) / 3 * 7) AND amount = (id + 50000) / 3 * 1.25
                                     AND grp = (id + 50000) / 3 % 1000
                                     AND at = '2020-01-01'::timestamp + ((id + 50000) / 3) * interval '1 s')
               FROM {table}"
        ),
    );
    let n: i64 = 120_000;
    let sum: i64 = (1..=n).map(|s| s * 3 - 50_000).sum();
    assert_eq!(check, format!("{n} {n} {sum} {n}"), "every row once, every value right");
    let rows = common::assert_chunks_tile(&db.target, job, &format!("{}.big", my.name), 3000, n);
    assert_eq!(rows.len(), 40);
}
