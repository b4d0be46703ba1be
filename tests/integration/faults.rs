//! Faults a long copy survives, and bad input it refuses.
//!
//! Transient faults (backends terminated on either side, MariaDB `KILL`, the target server
//! restarting) are retried chunk by chunk and the job finishes on its own; a value the target
//! rejects stops the job with exit 1 and a resume hint, keeping its committed chunks; Ctrl-C
//! stops promptly; `kill -9` at random moments of a MariaDB copy loses and duplicates nothing.
//! Every scenario ends with the target equal to the source and no duplicate keys. Bad input
//! (a server that never answers, a missing database, a target without the privileges for the
//! state schema, a read-only target) exits 2 with a message saying what to fix and writes
//! nothing.
//!
//! Copies run under a rows/s limit only so that a fault surely lands mid-copy.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;

use crate::common::done_rows;
use crate::common::my_conn;
use crate::common::{
    assert_chunks_tile, assert_no_password, assert_same_indexes, assert_writes_nothing, connect, exec, quote_literal,
    random_suffix, run, run_limited, scalar, setup, table_fingerprint, wait_until, with_database, Client, TestDbs,
    PASSWORD,
};

pub(crate) const ROWS: i64 = 200_000;
pub(crate) const CHUNK_ROWS: i64 = 5000;

/// `big` with `rows` rows and a secondary index, analyzed.
pub(crate) fn big_table(url: &str, rows: i64) {
    exec(
        url,
        &format!(
            "CREATE TABLE big (id bigint PRIMARY KEY, grp int NOT NULL, label text, amount numeric(12, 2));
             INSERT INTO big SELECT g, g % 1000, md5(g::text), (g * 1.37)::numeric(12, 2)
               FROM generate_series(1, {rows}) g;
             CREATE INDEX big_grp ON big (grp);
             ANALYZE big;"
        ),
    );
}

/// `table` on the target holds exactly the rows of the job's done chunks, each key once
/// (counted in one statement, so no chunk commits between the two counts).
#[track_caller]
pub(crate) fn assert_exactly_committed(target: &str, job: &str, table: &str, when: &str) {
    let sql = format!(
        "SELECT (SELECT count(*) FROM {table}),
                (SELECT coalesce(sum(rows), 0)::int8 FROM rangecopy.chunks WHERE job = $1 AND status = 'done'),
                (SELECT count(*) - count(DISTINCT id) FROM {table})"
    );
    let row = connect(target).query_one(&sql, &[&job]).expect("counting the committed rows");
    let (present, done, dups): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(present, done, "{when}: {table} holds {present} rows, its done chunks {done}");
    assert_eq!(dups, 0, "{when}: duplicate keys in {table}");
}

/// The end of every scenario: `big` equal to the source with its indexes, each key once,
/// its chunks tiling the keys, and the job done.
#[track_caller]
pub(crate) fn assert_copied(db: &TestDbs, target: &str, job: &str) {
    let rows = crate::common::assert_same_table_in(db, target, "big", "t.id");
    assert_eq!(rows, ROWS);
    assert_eq!(scalar::<i64>(target, "SELECT count(*) - count(DISTINCT id) FROM big"), 0, "duplicate keys");
    assert_chunks_tile(target, job, "public.big", CHUNK_ROWS, rows);
    let status: String =
        scalar(target, &format!("SELECT status FROM rangecopy.jobs WHERE job = {}", quote_literal(job)));
    assert_eq!(status, "done");
}

/// A copy in the background whose process id the test needs (for SIGINT); killed when dropped.
pub(crate) struct Bg {
    child: Option<Child>,
    err: PathBuf,
    out: PathBuf,
    started: Instant,
}

pub(crate) fn spawn(args: &[&str], dir: &Path) -> Bg {
    let stem = dir.join(format!("bg{}", random_suffix()));
    let (out, err) = (stem.with_extension("out"), stem.with_extension("err"));
    let child = Command::new(env!("CARGO_BIN_EXE_rangecopy"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("a log file"))
        .stderr(std::fs::File::create(&err).expect("a log file"))
        .spawn()
        .expect("starting rangecopy");
    Bg { child: Some(child), err, out, started: Instant::now() }
}

/// `copy --source S --target T --job JOB --chunk-rows 5000 --workers 2 --progress none` + `extra`.
pub(crate) fn copy_args<'a>(source: &'a str, target: &'a str, job: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["copy", "--source", source, "--target", target, "--job", job, "--chunk-rows", "5000"];
    all.extend_from_slice(&["--workers", "2", "--progress", "none"]);
    all.extend_from_slice(extra);
    all
}

impl Bg {
    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().expect("a running child").id()
    }

    pub(crate) fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    pub(crate) fn try_wait(&mut self) -> Option<i32> {
        let child = self.child.as_mut().expect("a running child");
        child.try_wait().expect("polling rangecopy").map(|s| s.code().unwrap_or(-1))
    }

    /// `kill -9`; the exit code if it had already ended by itself.
    fn kill9(&mut self) -> Option<i32> {
        if let Some(code) = self.try_wait() {
            self.child = None;
            return Some(code);
        }
        let mut child = self.child.take().expect("a running child");
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// Waits for the end, failing the test after `limit`: (exit code, stderr).
    pub(crate) fn wait(&mut self, limit: Duration) -> (i32, String) {
        let ended = wait_until(limit, || self.try_wait().is_some());
        if !ended {
            self.kill9();
            panic!("rangecopy still running after {limit:?}; killed it. stderr:\n{}", self.stderr());
        }
        let code = self.try_wait().expect("ended");
        self.child = None;
        let (out, err) = (std::fs::read_to_string(&self.out).unwrap_or_default(), self.stderr());
        assert_no_password(&out, "stdout");
        assert_no_password(&err, "stderr");
        (code, err)
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits until `job` has committed at least `rows` rows on `target`.
#[track_caller]
pub(crate) fn wait_for_rows(bg: &mut Bg, target: &str, job: &str, rows: i64) {
    let got = wait_until(Duration::from_secs(60), || bg.try_wait().is_some() || done_rows(target, job) >= rows);
    assert!(got, "the copy never committed {rows} rows:\n{}", bg.stderr());
    assert_eq!(bg.try_wait(), None, "the copy ended before the fault:\n{}", bg.stderr());
}

/// Terminates the backends of rangecopy's connections to `database` on the server of
/// `admin`, returning how many there were.
pub(crate) fn terminate_backends(admin: &str, database: &str) -> i64 {
    scalar(
        admin,
        &format!(
            "SELECT count(pg_terminate_backend(pid))::int8 FROM pg_stat_activity
              WHERE application_name = 'rangecopy' AND datname = {} AND pid <> pg_backend_pid()",
            quote_literal(database)
        ),
    )
}

pub(crate) fn database_of(url: &str) -> String {
    let path = url.split('?').next().unwrap_or(url);
    path.rsplit('/').next().unwrap_or_default().to_string()
}

/// A copy of `big` under a rate limit that lasts about 4 s, faulted by `fault` three times once
/// rows are flowing; it must retry and finish by itself with exit 0.
fn survives(test: &str, fault: impl Fn(&TestDbs) -> i64) {
    let Some(db) = setup(test) else { return };
    big_table(&db.source, ROWS);
    let job = "faulted";
    let args = copy_args(&db.source, &db.target, job, &["--max-rows-per-sec", "50k", "--retry-max-wait", "1"]);
    let mut bg = spawn(&args, &db.dir);
    for at in [30_000, 80_000, 130_000] {
        wait_for_rows(&mut bg, &db.target, job, at);
        let n = fault(&db);
        assert!(n > 0, "no backend of the copy was found to terminate");
        assert_exactly_committed(&db.target, job, "big", "right after the fault");
    }
    let (code, err) = bg.wait(Duration::from_secs(180));
    assert_eq!(code, 0, "the copy should retry and finish by itself:\n{err}");
    assert!(err.contains("warning:") && err.contains("retry 1 of"), "stderr should show the retry:\n{err}");
    assert_copied(&db, &db.target, job);
    assert_same_indexes(&db, "big");
}

#[test]
fn terminated_target_backends_are_retried_and_the_copy_finishes() {
    survives("faults_term_target", |db| {
        let admin = db.admin_urls()[1].clone();
        terminate_backends(&admin, &database_of(&db.target))
    });
}

#[test]
fn terminated_source_backends_are_retried_and_the_copy_finishes() {
    survives("faults_term_source", |db| {
        let admin = db.admin_urls()[0].clone();
        terminate_backends(&admin, &database_of(&db.source))
    });
}

#[test]
fn with_no_retries_a_terminated_backend_fails_the_job_and_resume_completes_it() {
    let Some(db) = setup("faults_no_retries") else { return };
    big_table(&db.source, ROWS);
    let job = "fragile";
    let args = copy_args(&db.source, &db.target, job, &["--max-rows-per-sec", "50k", "--retries", "0"]);
    let mut bg = spawn(&args, &db.dir);
    wait_for_rows(&mut bg, &db.target, job, 30_000);
    assert!(terminate_backends(&db.admin_urls()[1], &database_of(&db.target)) > 0);
    let (code, err) = bg.wait(Duration::from_secs(60));
    assert_eq!(code, 1, "a lost connection with --retries 0 fails the run:\n{err}");
    assert!(!err.contains("retry 1 of"), "--retries 0 must not retry:\n{err}");
    assert!(err.contains("--resume") && err.contains(&format!("--job {job}")), "a resume hint:\n{err}");
    assert_exactly_committed(&db.target, job, "big", "after the failure");
    assert!(done_rows(&db.target, job) < ROWS, "the job finished although it failed");
    run(&copy_args(&db.source, &db.target, job, &["--resume"])).ok();
    assert_copied(&db, &db.target, job);
}

#[test]
fn a_value_the_target_rejects_stops_the_job_with_a_resume_hint_and_resume_finishes_once_fixed() {
    let Some(db) = setup("faults_check") else { return };
    big_table(&db.source, ROWS);
    // The target's own table rejects ids above 100000: chunk 20 onwards ([100001, 105001)).
    exec(
        &db.target,
        "CREATE TABLE big (id bigint PRIMARY KEY, grp int NOT NULL, label text, amount numeric(12, 2),
                           CONSTRAINT small_ids CHECK (id <= 100000));",
    );
    let job = "checked";
    let args = ["big", "--job", job, "--chunk-rows", "5000", "--workers", "1", "--progress", "none"];
    let out = db.copy(&args);
    assert_eq!(out.code, 1, "a rejected value is a failure at run time:\n{out:?}");
    for word in
        ["public.big", "chunk 20", "key range [100001, 105001)", "small_ids", "--resume", "once the cause is fixed"]
    {
        assert!(out.stderr.contains(word), "the message should mention {word:?}:\n{out:?}");
    }
    // The twenty chunks before it are committed and kept; nothing of the failed one is.
    assert_eq!(done_rows(&db.target, job), 100_000);
    assert_exactly_committed(&db.target, job, "big", "after the failure");
    let status = db.status(job).ok();
    assert!(status.stdout.contains(&format!("job {job}: failed")) && status.stdout.contains("small_ids"), "{status:?}");

    exec(&db.target, "ALTER TABLE big DROP CONSTRAINT small_ids");
    db.copy(&[&args[..], &["--resume"]].concat()).ok();
    assert_copied(&db, &db.target, job);
}

#[test]
fn ctrl_c_stops_promptly_keeping_committed_chunks_and_resume_copies_each_row_once() {
    let Some(db) = setup("faults_sigint") else { return };
    big_table(&db.source, ROWS);
    let job = "interrupted";
    let args = copy_args(&db.source, &db.target, job, &["--max-rows-per-sec", "50k"]);
    let mut bg = spawn(&args, &db.dir);
    wait_for_rows(&mut bg, &db.target, job, 40_000);
    let sent = Command::new("kill").args(["-INT", &bg.pid().to_string()]).status().expect("running kill");
    assert!(sent.success());
    let (code, err) = bg.wait(Duration::from_secs(30));
    assert_eq!(code, 1, "Ctrl-C ends the run with exit 1:\n{err}");
    assert!(err.contains("interrupted") && err.contains("--resume"), "a resume hint:\n{err}");
    assert_exactly_committed(&db.target, job, "big", "after Ctrl-C");
    let kept = done_rows(&db.target, job);
    assert!((40_000..ROWS).contains(&kept), "{kept} rows kept");
    let status: String = scalar(&db.target, "SELECT status FROM rangecopy.jobs WHERE job = 'interrupted'");
    assert_eq!(status, "interrupted");
    run(&copy_args(&db.source, &db.target, job, &["--resume"])).ok();
    assert_copied(&db, &db.target, job);
}

// ---------------------------------------------------------------------------------------------
// The target server restarting: a throwaway PostgreSQL of the test's own
// ---------------------------------------------------------------------------------------------

/// A PostgreSQL server of one test (initdb into a temporary directory, as the `postgres`
/// system user when running as root), so restarting it disturbs no other test.
struct OwnServer {
    bin: PathBuf,
    dir: PathBuf,
    data: PathBuf,
    url: String,
}

pub(crate) fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A fresh directory the server's system user owns, and a free loopback port.
fn server_dir_and_port() -> (PathBuf, u16) {
    let dir = std::env::temp_dir().join(format!("rct_pg_{}", random_suffix()));
    std::fs::create_dir_all(&dir).expect("creating the server's directory");
    if is_root() {
        let ok = Command::new("chown").arg("postgres:").arg(&dir).status().is_ok_and(|s| s.success());
        assert!(ok, "chown postgres {}", dir.display());
    }
    let port = TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().unwrap().port();
    (dir, port)
}

impl OwnServer {
    /// `None` when no PostgreSQL server binaries are installed.
    fn start() -> Option<OwnServer> {
        let mut bins: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|b| b.join("initdb").exists())
            .collect();
        bins.sort();
        let bin = bins.pop()?;
        let (dir, port) = server_dir_and_port();
        let server = OwnServer {
            bin,
            data: dir.join("data"),
            url: format!("postgres://rangecopy:{PASSWORD}@127.0.0.1:{port}/postgres"),
            dir,
        };
        server.pg(
            "initdb",
            &["-D", server.data.to_str().unwrap(), "-U", "rangecopy", "--auth=trust", "-E", "UTF8", "--no-sync"],
        );
        // synchronous_commit = off, as some production servers run: rangecopy's own commits
        // must be durable all the same.
        let opts = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c max_connections=50 \
             -c synchronous_commit=off",
            server.dir.display()
        );
        server.pg_ctl(&["-o", &opts, "-l", server.dir.join("log").to_str().unwrap(), "start"]);
        Some(server)
    }

    /// A PostgreSQL tool, run as the server's system user.
    fn tool(&self, name: &str) -> Command {
        let exe = self.bin.join(name);
        if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    /// Runs a tool to its end. Its output goes to a file, never a pipe: a server that
    /// `pg_ctl` starts inherits them and would hold a pipe open for good.
    fn pg(&self, tool: &str, args: &[&str]) {
        let log = self.dir.join(format!("{tool}.out"));
        let file = || std::fs::File::create(&log).expect("a log file");
        let status = self.tool(tool).args(args).stdin(Stdio::null()).stdout(file()).stderr(file()).status();
        assert!(
            status.expect("running a PostgreSQL tool").success(),
            "{tool} {args:?} failed:\n{}\nserver log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default(),
            std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
        );
    }

    fn pg_ctl(&self, args: &[&str]) {
        let mut all = vec!["-D", self.data.to_str().unwrap(), "-w", "-t", "60", "-m", "fast"];
        all.extend_from_slice(args);
        self.pg("pg_ctl", &all);
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = self
            .tool("pg_ctl")
            .args(["-D", self.data.to_str().unwrap(), "-m", "immediate", "-w", "stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn the_target_restarting_mid_copy_is_retried_and_the_copy_finishes() {
    let Some(db) = setup("faults_restart") else { return };
    let Some(server) = OwnServer::start() else {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("no PostgreSQL server binaries under /usr/lib/postgresql");
        }
        eprintln!("!!! faults_restart SKIPPED: no PostgreSQL server binaries under /usr/lib/postgresql");
        return;
    };
    big_table(&db.source, ROWS);
    let target = server.url.clone();
    let job = "restarted";
    let args = copy_args(&db.source, &target, job, &["--max-rows-per-sec", "50k", "--retry-max-wait", "1"]);
    let mut bg = spawn(&args, &db.dir);
    wait_for_rows(&mut bg, &target, job, 30_000);
    let down = Instant::now();
    server.pg_ctl(&["-l", server.dir.join("log").to_str().unwrap(), "restart"]);
    eprintln!("the target restarted in {:?}", down.elapsed());
    assert_exactly_committed(&target, job, "big", "right after the restart");
    let (code, err) = bg.wait(Duration::from_secs(180));
    assert_eq!(code, 0, "the copy should outlast the restart and finish by itself:\n{err}");
    assert!(err.contains("retry 1 of"), "stderr should show the retry:\n{err}");
    assert_copied(&db, &target, job);
    assert_eq!(
        crate::common::constraints_and_indexes(&db.source, "big"),
        crate::common::constraints_and_indexes(&target, "big")
    );
}

/// Regression: with the target's sessions at synchronous_commit = off, a target crash took
/// back chunk commits the run had counted (and chunks it had planned); resume then finished
/// with a key range missing, and `verify --job` called it identical. Commits rangecopy counts
/// are durable, so after the crash the state holds every chunk the run was told was done.
#[test]
fn a_target_crash_takes_back_no_counted_chunk_and_resume_copies_every_row_once() {
    let Some(db) = setup("faults_crash") else { return };
    let Some(server) = OwnServer::start() else {
        assert!(std::env::var("CI").is_err(), "no PostgreSQL server binaries under /usr/lib/postgresql");
        eprintln!("!!! faults_crash SKIPPED: no PostgreSQL server binaries under /usr/lib/postgresql");
        return;
    };
    big_table(&db.source, ROWS);
    let target = server.url.clone();
    let job = "crashed";
    let args = copy_args(&db.source, &target, job, &["--max-rows-per-sec", "40k", "--retries", "0"]);
    let mut bg = spawn(&args, &db.dir);
    wait_for_rows(&mut bg, &target, job, 60_000);
    server.pg_ctl(&["-m", "immediate", "stop"]);
    let (code, err) = bg.wait(Duration::from_secs(60));
    assert_eq!(code, 1, "the copy should fail with its target gone:\n{err}");
    assert!(err.contains("--resume"), "{err}");
    // Started again with the options it last ran with.
    server.pg_ctl(&["-l", server.dir.join("log").to_str().unwrap(), "restart"]);
    assert_exactly_committed(&target, job, "big", "after the crash");
    let done_chunks: i64 = scalar(&target, "SELECT count(*) FROM rangecopy.chunks WHERE status = 'done'");
    assert!(done_chunks >= 12, "the crash took back counted chunks: only {done_chunks} are recorded done");
    let status = run(&["status", "--target", &target, "--job", job]).ok();
    assert!(status.stdout.contains(&format!("job {job}: interrupted")), "{status:?}");

    let resume = copy_args(&db.source, &target, job, &["--resume"]);
    run_limited(&resume, &[], Duration::from_secs(120)).ok();
    assert_copied(&db, &target, job);
    run(&["verify", "--source", &db.source, "--target", &target, "--job", job]).ok();
}

// ---------------------------------------------------------------------------------------------
// MariaDB source: KILL of its connections, kill -9 at random moments
// ---------------------------------------------------------------------------------------------

/// The test's MariaDB database, dropped at the end.
pub(crate) struct MyDb {
    pub(crate) admin: String,
    pub(crate) name: String,
    pub(crate) url: String,
}

impl Drop for MyDb {
    fn drop(&mut self) {
        if let Ok(mut c) = my_conn(&self.admin) {
            let _ = c.query_drop(format!("DROP DATABASE IF EXISTS `{}`", self.name));
        }
    }
}

/// The test's databases and a MariaDB database named like them, with `big` of `ROWS` rows
/// (ids 3n - 50000, so negative ones too); `None` when MariaDB is not there and `CI` is not `true`.
pub(crate) fn my_setup(test: &str) -> Option<(TestDbs, MyDb)> {
    let db = setup(test)?;
    let skip = |why: String| {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{test}: {why}; under CI=true a test that cannot reach its database fails");
        }
        eprintln!("!!! {test} SKIPPED: {why} (start scripts/dev-db.sh)");
        None
    };
    let Ok(admin) = std::env::var("RANGECOPY_TEST_MYSQL") else {
        return skip("RANGECOPY_TEST_MYSQL is not set".into());
    };
    let mut conn = match my_conn(&admin) {
        Ok(c) => c,
        Err(e) => return skip(format!("cannot reach MariaDB: {e}")),
    };
    let name = db.job().to_string();
    conn.query_drop(format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4")).expect("creating the MariaDB database");
    let my = MyDb { url: with_database(&admin, &name), admin, name };
    let mut c = my_conn(&my.url).expect("connecting to the test's MariaDB database");
    c.query_drop(format!(
        "CREATE TABLE big (id bigint PRIMARY KEY, grp int NOT NULL, label varchar(64), amount decimal(12,2));
         INSERT INTO big SELECT CAST(seq AS SIGNED) * 3 - 50000, seq % 1000, MD5(seq), seq * 1.25 FROM seq_1_to_{ROWS};"
    ))
    .expect("filling big on MariaDB");
    Some((db, my))
}

/// Every row of the MariaDB `big` arrived once with its values.
#[track_caller]
pub(crate) fn assert_my_copied(db: &TestDbs, my: &MyDb, job: &str) {
    let table = format!("\"{}\".big", my.name);
    let check: String = scalar(
        &db.target,
        &format!(
            "SELECT count(*) || ' ' || count(DISTINCT id) || ' ' || sum(id) || ' ' ||
                    count(*) FILTER (WHERE grp = (id + 50000) / 3 % 1000 AND label = md5(((id + 50000) / 3)::text)
                                       AND amount = (id + 50000) / 3 * 1.25)
               FROM {table}"
        ),
    );
    let sum: i64 = (1..=ROWS).map(|s| s * 3 - 50_000).sum();
    assert_eq!(check, format!("{ROWS} {ROWS} {sum} {ROWS}"), "every row once, every value right");
    assert_chunks_tile(&db.target, job, &format!("{}.big", my.name), CHUNK_ROWS, ROWS);
    let status: String =
        scalar(&db.target, &format!("SELECT status FROM rangecopy.jobs WHERE job = {}", quote_literal(job)));
    assert_eq!(status, "done");
}

#[test]
fn mariadb_kill_of_the_source_connections_is_retried_and_the_copy_finishes() {
    let Some((db, my)) = my_setup("faults_my_kill") else { return };
    let job = "mykilled";
    let table = format!("\"{}\".big", my.name);
    let args = copy_args(&my.url, &db.target, job, &["--max-rows-per-sec", "50k", "--retry-max-wait", "1"]);
    let mut bg = spawn(&args, &db.dir);
    let mut admin = my_conn(&my.admin).expect("connecting to MariaDB");
    for at in [30_000, 90_000] {
        wait_for_rows(&mut bg, &db.target, job, at);
        let ids: Vec<u64> = admin
            .exec(
                "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = ? AND ID <> CONNECTION_ID()
                    AND COMMAND IN ('Query', 'Sleep', 'Execute', 'Fetch')",
                (my.name.as_str(),),
            )
            .expect("listing the copy's connections");
        assert!(!ids.is_empty(), "no connection of the copy found on MariaDB");
        for id in ids {
            // A connection may end between the listing and the KILL.
            let _ = admin.query_drop(format!("KILL {id}"));
        }
        assert_exactly_committed(&db.target, job, &table, "right after KILL");
    }
    let (code, err) = bg.wait(Duration::from_secs(180));
    assert_eq!(code, 0, "the copy should retry and finish by itself:\n{err}");
    assert!(err.contains("retry 1 of"), "stderr should show the retry:\n{err}");
    assert_my_copied(&db, &my, job);
}

#[test]
fn mariadb_kill_9_at_random_moments_then_resume_copies_every_row_once() {
    let Some((db, my)) = my_setup("faults_my_kill9") else { return };
    let job = "mykill9";
    let table = format!("\"{}\".big", my.name);
    // About 4 s per whole run; each round is killed at a random moment of its first 2.5 s.
    let base = copy_args(&my.url, &db.target, job, &["--max-rows-per-sec", "50k"]);
    let mut seed = u32::from_str_radix(&random_suffix(), 16).expect("hex");
    let (mut kills, mut finished) = (0, false);
    for round in 0..5 {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let at = Duration::from_millis(200 + u64::from(seed >> 8) % 2300);
        let exists = scalar::<bool>(&db.target, "SELECT to_regclass('rangecopy.jobs') IS NOT NULL")
            && scalar::<i64>(&db.target, &format!("SELECT count(*) FROM rangecopy.jobs WHERE job = '{job}'")) == 1;
        let args = if exists { [&base[..], &["--resume"]].concat() } else { base.clone() };
        let mut bg = spawn(&args, &db.dir);
        wait_until(at, || bg.try_wait().is_some());
        match bg.kill9() {
            Some(code) => {
                assert_eq!(code, 0, "round {round} ended by itself, unsuccessfully:\n{}", bg.stderr());
                finished = true;
            }
            None => {
                kills += 1;
                eprintln!(
                    "round {round}: killed after {:?}, {} rows done",
                    bg.started.elapsed(),
                    done_rows(&db.target, job)
                );
            }
        }
        let has_table: bool = scalar(&db.target, &format!("SELECT to_regclass({}) IS NOT NULL", quote_literal(&table)));
        if has_table {
            assert_exactly_committed(&db.target, job, &table, &format!("round {round}"));
        }
        if finished {
            break;
        }
    }
    assert!(kills >= 2, "expected at least two kills mid-copy, got {kills}");
    if !finished {
        run(&[&base[..], &["--resume"]].concat()).ok();
    }
    assert_my_copied(&db, &my, job);
}

// ---------------------------------------------------------------------------------------------
// Bad input: exit 2, a message saying what to fix, nothing written
// ---------------------------------------------------------------------------------------------

/// A port nobody listens on, and a server that accepts connections and never answers (a hung
/// server, or a proxy in front of an unreachable one): `--connect-timeout` bounds the wait for
/// every connection, login included. The limit only tells a hang from an answer; it is far
/// above the timeout so that a slow machine never trips it.
#[test]
fn unreachable_and_silent_servers_are_given_up_after_the_connect_timeout() {
    let Some(db) = setup("faults_unreachable") else { return };
    big_table(&db.source, 100);
    let limit = Duration::from_secs(20);
    let refused = |source: &str, target: &str, host: &str| {
        // Which case a hang is in (the harness's panic cannot say).
        eprintln!("connecting to {host} (source {}, target {})", source.contains(host), target.contains(host));
        let args = ["copy", "--source", source, "--target", target, "--connect-timeout", "2", "--progress", "none"];
        assert_writes_nothing(&db.target, || run_limited(&args, &[], limit).refused(&["cannot connect", host]));
    };
    // A loopback port nobody listens on: refused at once (tests send no traffic off this machine).
    let closed = TcpListener::bind("127.0.0.1:0").expect("a listener");
    let closed_host = format!("127.0.0.1:{}", closed.local_addr().unwrap().port());
    drop(closed);
    refused(&format!("postgres://rangecopy:{PASSWORD}@{closed_host}/nowhere"), &db.target, &closed_host);
    let silent = TcpListener::bind("127.0.0.1:0").expect("a listener");
    let host = format!("127.0.0.1:{}", silent.local_addr().unwrap().port());
    refused(&format!("postgres://rangecopy:{PASSWORD}@{host}/nowhere"), &db.target, &host);
    refused(&format!("mysql://rangecopy:{PASSWORD}@{host}/nowhere"), &db.target, &host);
    refused(&db.source, &format!("postgres://rangecopy:{PASSWORD}@{host}/nowhere"), &host);
    drop(silent);
}

#[test]
fn a_missing_database_is_refused_naming_it() {
    let Some(db) = setup("faults_missing_db") else { return };
    big_table(&db.source, 100);
    let absent = format!("absent_{}", random_suffix());
    let source = with_database(&db.source, &absent);
    let target = with_database(&db.target, &absent);
    assert_writes_nothing(&db.target, || {
        run(&["copy", "--source", &source, "--target", &db.target]).refused(&[&absent, "check the database name"])
    });
    run(&["copy", "--source", &db.source, "--target", &target]).refused(&[&absent, "check the database name"]);
    run(&["status", "--target", &target]).refused(&[&absent]);
    if let Ok(admin) = std::env::var("RANGECOPY_TEST_MYSQL") {
        if my_conn(&admin).is_ok() {
            let my = with_database(&admin, &absent);
            assert_writes_nothing(&db.target, || {
                run(&["copy", "--source", &my, "--target", &db.target]).refused(&[&absent, "check the database name"])
            });
        }
    }
}

/// A login role on the target server, dropped after the test's databases (declare it first).
struct Role {
    name: String,
    admin: String,
}

impl Role {
    fn create(db: &TestDbs, settings: &str) -> Role {
        let admin = db.admin_urls()[1].clone();
        let name = format!("rct_role_{}", random_suffix());
        exec(
            &admin,
            &format!("CREATE ROLE {name} LOGIN PASSWORD {}; {settings}", quote_literal(PASSWORD))
                .replace("{role}", &name),
        );
        Role { name, admin }
    }

    /// The test's target database as this role.
    fn url(&self, db: &TestDbs) -> String {
        db.target.replacen("://rangecopy:", &format!("://{}:", self.name), 1)
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        if let Ok(mut c) = Client::connect(&self.admin) {
            let _ = c.batch_execute(&format!("DROP OWNED BY {0}; DROP ROLE IF EXISTS {0}", self.name));
        }
    }
}

#[test]
fn a_target_role_that_cannot_create_the_state_schema_is_refused_before_anything_is_written() {
    let role;
    let Some(db) = setup("faults_no_create") else { return };
    role = Role::create(&db, "");
    big_table(&db.source, 1000);
    // The role may connect (PUBLIC may) but create neither schemas nor tables.
    exec(&db.target, &format!("REVOKE CREATE ON DATABASE \"{}\" FROM PUBLIC", database_of(&db.target)));
    let target = role.url(&db);
    assert_writes_nothing(&db.target, || {
        crate::common::run(&["copy", "--source", &db.source, "--target", &target, "--progress", "none"]).refused(&[
            "rangecopy state schema",
            "permission denied",
            "nothing was written",
        ])
    });
    let n: i64 = scalar(&db.target, "SELECT count(*) FROM pg_namespace WHERE nspname = 'rangecopy'");
    assert_eq!(n, 0);
}

#[test]
fn a_read_only_target_is_refused_before_anything_is_written() {
    let role;
    let Some(db) = setup("faults_read_only") else { return };
    role = Role::create(&db, "ALTER ROLE {role} SET default_transaction_read_only = on");
    big_table(&db.source, 1000);
    exec(
        &db.target,
        &format!(
            "GRANT ALL ON DATABASE \"{0}\" TO {1}; GRANT ALL ON SCHEMA public TO {1}",
            database_of(&db.target),
            role.name
        ),
    );
    // The role is read-only; then the whole database is.
    let as_role = role.url(&db);
    assert_writes_nothing(&db.target, || {
        run(&["copy", "--source", &db.source, "--target", &as_role, "--progress", "none"]).refused(&["read-only"])
    });
    let database = database_of(&db.target);
    let admin = db.admin_urls()[1].clone();
    exec(&admin, &format!("ALTER DATABASE \"{database}\" SET default_transaction_read_only = on"));
    assert_writes_nothing(&db.target, || db.copy(&["--progress", "none"]).refused(&["read-only"]));
    assert_eq!(scalar::<i64>(&db.target, "SELECT count(*) FROM pg_class WHERE relname = 'big'"), 0);
    // Once writable, the same command copies.
    exec(&admin, &format!("ALTER DATABASE \"{database}\" RESET default_transaction_read_only"));
    db.copy(&["--progress", "none"]).ok();
    assert_eq!(table_fingerprint(&db.source, "big", "t.id"), table_fingerprint(&db.target, "big", "t.id"));
}

impl OwnServer {
    /// A hot standby of this server, streaming from it, with `settings` (`-c` options).
    fn standby(&self, settings: &str) -> OwnServer {
        let (dir, port) = server_dir_and_port();
        let primary_port = self.url.rsplit(':').next().and_then(|p| p.split('/').next()).expect("a port").to_string();
        let standby = OwnServer {
            bin: self.bin.clone(),
            data: dir.join("data"),
            url: format!("postgres://rangecopy:{PASSWORD}@127.0.0.1:{port}/postgres"),
            dir,
        };
        let data = standby.data.to_str().unwrap();
        standby.pg("pg_basebackup", &["-D", data, "-R", "-h", "127.0.0.1", "-p", &primary_port, "-U", "rangecopy"]);
        let opts = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c hot_standby=on {settings}",
            standby.dir.display()
        );
        standby.pg_ctl(&["-o", &opts, "-l", standby.dir.join("log").to_str().unwrap(), "start"]);
        standby
    }
}

/// Regression: `--consistent` against a hot standby died after about 30 s with "invalid
/// snapshot identifier" (the standby cancelled the snapshot on a recovery conflict). It is
/// refused up front, saying what to set, and works once the standby keeps snapshots.
#[test]
fn consistent_on_a_hot_standby_is_refused_unless_it_keeps_snapshots() {
    let Some(db) = setup("faults_standby") else { return };
    let Some(primary) = OwnServer::start() else {
        assert!(std::env::var("CI").is_err(), "no PostgreSQL server binaries under /usr/lib/postgresql");
        eprintln!("!!! faults_standby SKIPPED: no PostgreSQL server binaries under /usr/lib/postgresql");
        return;
    };
    big_table(&primary.url, 20_000);
    let standby = primary.standby("");
    let replayed = wait_until(Duration::from_secs(30), || {
        Client::connect(&standby.url)
            .is_ok_and(|mut c| c.query_one("SELECT count(*) FROM big", &[]).is_ok_and(|r| r.get::<_, i64>(0) == 20_000))
    });
    assert!(replayed, "the standby never caught up");
    let copy =
        |source: &str| run(&["copy", "--source", source, "--target", &db.target, "--consistent", "--progress", "none"]);
    assert_writes_nothing(&db.target, || {
        copy(&standby.url).refused(&["hot standby", "hot_standby_feedback = on", "max_standby_streaming_delay = -1"])
    });
    for sql in [
        "ALTER SYSTEM SET hot_standby_feedback = on",
        "ALTER SYSTEM SET max_standby_streaming_delay = -1",
        "ALTER SYSTEM SET max_standby_archive_delay = -1",
        "SELECT pg_reload_conf()",
    ] {
        exec(&standby.url, sql);
    }
    let kept = wait_until(Duration::from_secs(10), || {
        scalar::<String>(&standby.url, "SELECT current_setting('max_standby_streaming_delay')") == "-1"
    });
    assert!(kept, "the standby did not take the new settings");
    copy(&standby.url).ok();
    assert_eq!(table_fingerprint(&primary.url, "big", "t.id"), table_fingerprint(&db.target, "big", "t.id"));
}
