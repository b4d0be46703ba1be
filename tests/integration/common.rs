//! The harness every integration test uses: fresh source and target databases per test,
//! running the `rangecopy` binary, and independent ways to look at what arrived.
//!
//! The dev servers are found through `RANGECOPY_TEST_PG_SOURCE` / `RANGECOPY_TEST_PG_TARGET`
//! (`eval "$(scripts/dev-db.sh env)"`). When they are missing or unreachable a test fails
//! under `CI=true` and is skipped loudly otherwise. Nothing here uses rangecopy's own code:
//! every comparison is computed by PostgreSQL itself.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use tokio_postgres::types::{FromSql, ToSql};
use tokio_postgres::{NoTls, Row};

/// The dev servers' password: it must never appear in anything rangecopy prints or stores.
pub const PASSWORD: &str = "rangecopy-dev-pw";

/// Session settings for every comparison, so both sides render values identically.
const COMPARE_SESSION: &str = "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; \
     SET IntervalStyle = 'postgres'; SET extra_float_digits = 1; SET bytea_output = 'hex'";

struct Servers {
    source: String,
    target: String,
}

/// The admin URLs of the dev servers, checked once per test binary.
fn servers() -> Result<&'static Servers, String> {
    static SERVERS: OnceLock<Result<Servers, String>> = OnceLock::new();
    SERVERS
        .get_or_init(|| {
            let var = |name: &str| std::env::var(name).map_err(|_| format!("{name} is not set"));
            let servers =
                Servers { source: var("RANGECOPY_TEST_PG_SOURCE")?, target: var("RANGECOPY_TEST_PG_TARGET")? };
            for url in [&servers.source, &servers.target] {
                Client::connect(url).map_err(|e| format!("cannot reach {}: {e}", redact(url)))?;
            }
            Ok(servers)
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Hides the dev password, and any password in a URL's user part.
fn redact(text: &str) -> String {
    let text = text.replace(PASSWORD, "***");
    match text.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((user, host)) if user.contains(':') && !user.contains('/') => {
                format!("{scheme}://{}:***@{host}", user.split(':').next().unwrap_or_default())
            }
            _ => text.clone(),
        },
        None => text.clone(),
    }
}

/// `url` with its database replaced by `db`.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let (scheme, rest) = base.split_once("://").expect("a URL with a scheme");
    let authority = rest.split('/').next().unwrap_or(rest);
    format!("{scheme}://{authority}/{db}{query}")
}

/// A dev server URL logging in as `user` with `password` written into it as it is, with no
/// percent-encoding.
pub fn as_login(url: &str, user: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{user}:{password}@{host}")
}

/// `url` without its password (`user:pw@` becomes `user@`), for PGPASSWORD runs.
pub fn without_password(url: &str) -> String {
    url.replace(&format!(":{PASSWORD}@"), "@")
}

/// Eight hex digits, different for every call (test names, roles, log files).
pub fn random_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_nanos());
    h.write_u32(std::process::id());
    format!("{:08x}", h.finish() as u32)
}

/// Fresh databases for one test on both servers (and any extra target databases it asks
/// for), dropped with `WITH (FORCE)` when the guard goes out of scope, even on panic.
pub struct TestDbs {
    /// URL of this test's source database (with the password).
    pub source: String,
    /// URL of this test's target database (with the password).
    pub target: String,
    created: Vec<(String, String)>,
    name: String,
    /// A scratch directory for reports and logs, removed at the end.
    pub dir: PathBuf,
}

/// Creates the test's databases, or returns `None` (after a loud note) when the servers are
/// not there and `CI` is not `true`. Use as `let Some(db) = setup("name") else { return };`.
pub fn setup(test: &str) -> Option<TestDbs> {
    let servers = match servers() {
        Ok(s) => s,
        Err(why) => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{test}: {why}; under CI=true a test that cannot reach its database fails");
            }
            // Straight to the process's stderr: the test harness would swallow eprintln!.
            use std::io::Write;
            static BANNER: std::sync::Once = std::sync::Once::new();
            BANNER.call_once(|| {
                let _ = writeln!(
                    std::io::stderr(),
                    "\n!!! rangecopy integration tests SKIPPED: {why}.\n!!! Start the dev databases: \
                     scripts/dev-db.sh start && eval \"$(scripts/dev-db.sh env)\" (CI=true makes this a failure)\n"
                );
            });
            return None;
        }
    };
    let mut short: String = test.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(40).collect();
    short.make_ascii_lowercase();
    let name = format!("rct_{short}_{}", random_suffix());
    let dir = std::env::temp_dir().join(&name);
    std::fs::create_dir_all(&dir).expect("creating the test's scratch directory");
    let mut dbs =
        TestDbs { source: String::new(), target: String::new(), created: Vec::new(), name: name.clone(), dir };
    dbs.source = dbs.create(&servers.source, &name);
    dbs.target = dbs.create(&servers.target, &name);
    Some(dbs)
}

impl TestDbs {
    fn create(&mut self, admin: &str, db: &str) -> String {
        let mut client = Client::connect(admin).expect("connecting to the admin database");
        client
            .batch_execute(&format!("CREATE DATABASE \"{db}\""))
            .unwrap_or_else(|e| panic!("CREATE DATABASE {db}: {}", pg_error(&e)));
        self.created.push((admin.to_string(), db.to_string()));
        with_database(admin, db)
    }

    /// Another empty database on the target server, dropped with the others.
    pub fn extra_target(&mut self, tag: &str) -> String {
        let db = format!("{}_{tag}", self.name);
        let admin = servers().expect("servers checked by setup").target.clone();
        self.create(&admin, &db)
    }

    /// The servers' admin URLs (source, target), as the environment gives them.
    pub fn admin_urls(&self) -> [String; 2] {
        let s = servers().expect("servers checked by setup");
        [s.source.clone(), s.target.clone()]
    }

    /// The default job name: the source database's name.
    pub fn job(&self) -> &str {
        &self.name
    }

    /// Runs `rangecopy copy --source S --target T ARGS…`.
    pub fn copy(&self, args: &[&str]) -> Run {
        self.copy_to(&self.target, args)
    }

    /// Runs `rangecopy copy --source S --target TARGET ARGS…`.
    pub fn copy_to(&self, target: &str, args: &[&str]) -> Run {
        let mut all = vec!["copy", "--source", &self.source, "--target", target];
        all.extend_from_slice(args);
        run(&all)
    }

    /// Like `copy`, failing the test if the command takes longer than `limit`.
    pub fn copy_within(&self, limit: Duration, args: &[&str]) -> Run {
        let mut all = vec!["copy", "--source", &self.source, "--target", &self.target];
        all.extend_from_slice(args);
        run_limited(&all, &[], limit)
    }

    /// Starts `rangecopy copy` in the background (stdout and stderr go to files in `dir`).
    pub fn spawn_copy(&self, args: &[&str]) -> Running {
        let mut all = vec!["copy", "--source", &self.source, "--target", &self.target];
        all.extend_from_slice(args);
        let stem = format!("run{}", random_suffix());
        let (out, err) = (self.dir.join(format!("{stem}.out")), self.dir.join(format!("{stem}.err")));
        let child = command(&all)
            .stdout(std::fs::File::create(&out).expect("creating a log file"))
            .stderr(std::fs::File::create(&err).expect("creating a log file"))
            .spawn()
            .expect("starting rangecopy");
        Running { child: Some(child), out, err, started: Instant::now(), remove_logs: false }
    }

    /// Starts `rangecopy ARGS…` in the background (stdout and stderr go to files in `dir`).
    pub fn spawn(&self, args: &[&str]) -> Running {
        let stem = format!("run{}", random_suffix());
        let (out, err) = (self.dir.join(format!("{stem}.out")), self.dir.join(format!("{stem}.err")));
        let child = command(args)
            .stdout(std::fs::File::create(&out).expect("creating a log file"))
            .stderr(std::fs::File::create(&err).expect("creating a log file"))
            .spawn()
            .expect("starting rangecopy");
        Running { child: Some(child), out, err, started: Instant::now(), remove_logs: false }
    }

    /// `rangecopy status --target T --job JOB`.
    pub fn status(&self, job: &str) -> Run {
        run(&["status", "--target", &self.target, "--job", job])
    }
}

impl Drop for TestDbs {
    fn drop(&mut self) {
        for (admin, db) in self.created.drain(..).rev() {
            match Client::connect(&admin) {
                Ok(mut c) => {
                    if let Err(e) = c.batch_execute(&format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)")) {
                        eprintln!("warning: could not drop test database {db}: {}", pg_error(&e));
                    }
                }
                Err(e) => eprintln!("warning: could not drop test database {db}: {}", pg_error(&e)),
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A finished run of the binary.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    args: String,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "rangecopy {}\nexit code {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.args, self.code, self.stdout, self.stderr
        )
    }
}

impl Run {
    /// The whitespace-separated words of the stdout line about table `schema.name` (written
    /// plain or quoted), for `status` output; fails if there is none.
    #[track_caller]
    pub fn table_line(&self, schema: &str, name: &str) -> Vec<&str> {
        let (plain, quoted) = (format!("{schema}.{name}"), format!("\"{schema}\".\"{name}\""));
        let line = self.stdout.lines().find(|l| l.contains(&plain) || l.contains(&quoted));
        line.unwrap_or_else(|| panic!("no line about {plain}:\n{self:?}")).split_whitespace().collect()
    }

    /// Asserts exit code 0 and returns self.
    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(self.code, 0, "expected success:\n{self:?}");
        self
    }

    /// Asserts exit code 2 (bad input) and that stderr mentions every one of `words`.
    #[track_caller]
    pub fn refused(self, words: &[&str]) -> Self {
        assert_eq!(self.code, 2, "expected a refusal (exit 2):\n{self:?}");
        for w in words {
            assert!(self.stderr.contains(w), "expected stderr to mention {w:?}:\n{self:?}");
        }
        self
    }
}

fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rangecopy"));
    cmd.args(args).stdin(Stdio::null());
    // Only what the test passes: no ambient libpq or mysql settings, no URLs from the
    // environment, and a home without password or option files.
    for var in [
        "PGPASSWORD",
        "PGUSER",
        "PGHOST",
        "PGPORT",
        "PGDATABASE",
        "PGPASSFILE",
        "PGSERVICE",
        "MYSQL_PWD",
        "MYSQL_HOME",
        "RANGECOPY_SOURCE",
        "RANGECOPY_TARGET",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("HOME", empty_home());
    cmd
}

/// An empty directory for HOME (a test passes its own HOME to give rangecopy files there).
fn empty_home() -> &'static PathBuf {
    static HOME: OnceLock<PathBuf> = OnceLock::new();
    HOME.get_or_init(|| {
        let dir = std::env::temp_dir().join("rct_empty_home");
        std::fs::create_dir_all(&dir).expect("creating an empty HOME for rangecopy");
        dir
    })
}

/// Runs the binary with `args` and waits; asserts that no output holds the password.
pub fn run(args: &[&str]) -> Run {
    run_with_env(args, &[])
}

/// Longest any single command may take before the test fails (and the process is killed):
/// a hang is a failure, never a stuck suite.
pub const RUN_LIMIT: Duration = Duration::from_secs(60);

/// Like `run`, with extra environment variables for the child.
pub fn run_with_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    run_limited(args, env, RUN_LIMIT)
}

/// Runs the binary, killing it and failing the test if it runs longer than `limit`.
pub fn run_limited(args: &[&str], env: &[(&str, &str)], limit: Duration) -> Run {
    let stem = std::env::temp_dir().join(format!("rct_run_{}", random_suffix()));
    let (out, err) = (stem.with_extension("out"), stem.with_extension("err"));
    let mut cmd = command(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdout(std::fs::File::create(&out).expect("creating a log file"));
    cmd.stderr(std::fs::File::create(&err).expect("creating a log file"));
    let child = Some(cmd.spawn().expect("starting rangecopy"));
    let mut running = Running { child, out, err, started: Instant::now(), remove_logs: true };
    let mut run = running.wait(limit);
    run.args = redact(&args.join(" "));
    run
}

/// Fails if `text` contains the dev servers' password.
#[track_caller]
pub fn assert_no_password(text: &str, what: &str) {
    assert!(!text.contains(PASSWORD), "the password appears in {what}:\n{}", text.replace(PASSWORD, ">>>PASSWORD<<<"));
}

/// A copy running in the background; killed (SIGKILL) if still running when dropped.
pub struct Running {
    child: Option<Child>,
    out: PathBuf,
    err: PathBuf,
    pub started: Instant,
    /// Whether the log files are removed on drop (they live outside any test's directory).
    remove_logs: bool,
}

impl Running {
    /// The process id (for signals).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("a running child").id()
    }

    /// The exit code if the process has finished.
    pub fn try_wait(&mut self) -> Option<i32> {
        let child = self.child.as_mut().expect("a running child");
        child.try_wait().expect("polling rangecopy").map(|s| s.code().unwrap_or(-1))
    }

    /// `kill -9` (Child::kill is SIGKILL on Unix) and reap. Returns the exit code if the
    /// process had already finished by itself.
    pub fn kill9(&mut self) -> Option<i32> {
        if let Some(code) = self.try_wait() {
            return Some(code);
        }
        let child = self.child.as_mut().expect("a running child");
        let _ = child.kill();
        let status = child.wait().expect("reaping rangecopy");
        use std::os::unix::process::ExitStatusExt;
        // Killed by us, unless it happened to exit in between.
        if status.signal() == Some(9) {
            None
        } else {
            status.code()
        }
    }

    /// Waits for the process to end, up to `limit`.
    pub fn wait(&mut self, limit: Duration) -> Run {
        let deadline = Instant::now() + limit;
        let code = loop {
            if let Some(code) = self.try_wait() {
                break code;
            }
            if Instant::now() >= deadline {
                self.kill9();
                let tail: String =
                    self.stderr().chars().rev().take(4000).collect::<Vec<_>>().into_iter().rev().collect();
                panic!("rangecopy still running after {limit:?}; killed it. stderr ends with:\n{}", redact(&tail));
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        self.child = None;
        self.output(code)
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// What the process printed so far, checked for the password.
    pub fn output(&self, code: i32) -> Run {
        let run = Run {
            code,
            stdout: std::fs::read_to_string(&self.out).unwrap_or_default(),
            stderr: self.stderr(),
            args: "(background copy)".into(),
        };
        assert_no_password(&run.stdout, "stdout");
        assert_no_password(&run.stderr, "stderr");
        run
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if self.remove_logs {
            let _ = std::fs::remove_file(&self.out);
            let _ = std::fs::remove_file(&self.err);
        }
    }
}

/// A blocking PostgreSQL client: tokio-postgres driven by its own single-threaded runtime
/// (the crate rangecopy itself uses), so tests stay plain sequential code.
pub struct Client {
    rt: tokio::runtime::Runtime,
    inner: tokio_postgres::Client,
}

pub type PgResult<T> = Result<T, tokio_postgres::Error>;

/// A driver error with the server's message (tokio-postgres's Display says only "db error").
pub fn pg_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {} ({})", db.severity(), db.message(), db.code().code()),
        None => e.to_string(),
    }
}

impl Client {
    pub fn connect(url: &str) -> PgResult<Self> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
        let (inner, connection) = rt.block_on(tokio_postgres::connect(url, NoTls))?;
        rt.spawn(async move {
            let _ = connection.await;
        });
        Ok(Client { rt, inner })
    }

    pub fn batch_execute(&mut self, sql: &str) -> PgResult<()> {
        self.rt.block_on(self.inner.batch_execute(sql))
    }

    pub fn query(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> PgResult<Vec<Row>> {
        self.rt.block_on(self.inner.query(sql, params))
    }

    pub fn query_one(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> PgResult<Row> {
        self.rt.block_on(self.inner.query_one(sql, params))
    }
}

/// A connection with the comparison session settings.
pub fn connect(url: &str) -> Client {
    let mut client = Client::connect(url).unwrap_or_else(|e| panic!("connecting to {}: {}", redact(url), pg_error(&e)));
    client.batch_execute(COMPARE_SESSION).expect("setting up the comparison session");
    client
}

/// Runs SQL statements (no results).
#[track_caller]
pub fn exec(url: &str, sql: &str) {
    connect(url).batch_execute(sql).unwrap_or_else(|e| panic!("{}\nwhile running:\n{sql}", pg_error(&e)));
}

/// The first column of the first row of a query, as `T`.
#[track_caller]
pub fn scalar<T: for<'a> FromSql<'a>>(url: &str, sql: &str) -> T {
    connect(url).query_one(sql, &[]).unwrap_or_else(|e| panic!("{}\nwhile running:\n{sql}", pg_error(&e))).get(0)
}

/// Every row of a query's first column, as text (NULL as `None`).
#[track_caller]
pub fn texts(url: &str, sql: &str) -> Vec<Option<String>> {
    let rows = connect(url).query(sql, &[]).unwrap_or_else(|e| panic!("{}\nwhile running:\n{sql}", pg_error(&e)));
    rows.iter().map(|r| r.get(0)).collect()
}

/// Row count and the md5 of every row's text form in `order_by` order, computed by
/// PostgreSQL: `SELECT count(*), md5(string_agg(t::text, E'\n' ORDER BY …)) FROM table t`.
#[track_caller]
pub fn table_fingerprint(url: &str, table: &str, order_by: &str) -> (i64, String) {
    let sql = format!("SELECT count(*), md5(string_agg(t::text, E'\\n' ORDER BY {order_by})) FROM {table} t");
    let row = connect(url).query_one(&sql, &[]).unwrap_or_else(|e| panic!("{}\nwhile running:\n{sql}", pg_error(&e)));
    (row.get(0), row.get::<_, Option<String>>(1).unwrap_or_default())
}

/// Each column of a table as `name type [COLLATE c] [NOT NULL] [DEFAULT …] identity= generated=`.
#[track_caller]
pub fn column_shapes(url: &str, table: &str) -> Vec<String> {
    let sql = format!(
        "SELECT a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                || coalesce(CASE WHEN a.attcollation <> t.typcollation THEN ' COLLATE ' || co.collname END, '')
                || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
                || coalesce(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), '')
                || ' identity=' || a.attidentity::text || ' generated=' || a.attgenerated::text
           FROM pg_attribute a
           JOIN pg_type t ON t.oid = a.atttypid
           LEFT JOIN pg_collation co ON co.oid = a.attcollation
           LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
          WHERE a.attrelid = {}::regclass AND a.attnum > 0 AND NOT a.attisdropped
          ORDER BY a.attnum",
        quote_literal(table)
    );
    texts(url, &sql).into_iter().map(|s| s.unwrap_or_default()).collect()
}

/// A SQL string literal.
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Asserts that `table` has the same rows (fingerprint) and column definitions on both
/// sides, and returns its row count.
#[track_caller]
pub fn assert_same_table(db: &TestDbs, table: &str, order_by: &str) -> i64 {
    assert_same_table_in(db, &db.target, table, order_by)
}

#[track_caller]
pub fn assert_same_table_in(db: &TestDbs, target: &str, table: &str, order_by: &str) -> i64 {
    assert_eq!(column_shapes(&db.source, table), column_shapes(target, table), "columns of {table} differ");
    let source = table_fingerprint(&db.source, table, order_by);
    let copied = table_fingerprint(target, table, order_by);
    assert_eq!(source, copied, "rows of {table} differ (count, md5)");
    source.0
}

/// One row of `rangecopy.chunks`.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkRow {
    /// The target table as `schema.name` (unquoted).
    pub table: String,
    pub chunk_no: i32,
    pub lo: Option<Vec<String>>,
    pub hi: Option<Vec<String>>,
    pub status: String,
    pub rows: Option<i64>,
    pub digest: Option<String>,
}

/// The chunks of a job, by table and chunk number.
pub fn chunks(target: &str, job: &str) -> Vec<ChunkRow> {
    let rows = connect(target)
        .query(
            "SELECT t.target_schema || '.' || t.target_name, c.chunk_no, c.lo, c.hi, c.status, c.rows, c.digest
               FROM rangecopy.chunks c JOIN rangecopy.tables t USING (job, table_no)
              WHERE c.job = $1 ORDER BY t.table_no, c.chunk_no",
            &[&job],
        )
        .expect("reading rangecopy.chunks");
    rows.iter()
        .map(|r| ChunkRow {
            table: r.get(0),
            chunk_no: r.get(1),
            lo: r.get(2),
            hi: r.get(3),
            status: r.get(4),
            rows: r.get(5),
            digest: r.get(6),
        })
        .collect()
}

/// Asserts that a finished keyed table's chunks tile its key space: numbered from 0, the
/// first open below and the last open above, each starting where the previous ended, all
/// done, each exactly `chunk_rows` rows but the last (1..=chunk_rows), `rows` in total.
#[track_caller]
pub fn assert_chunks_tile(target: &str, job: &str, table: &str, chunk_rows: i64, rows: i64) -> Vec<ChunkRow> {
    let all = chunks(target, job);
    let mine: Vec<ChunkRow> = all.into_iter().filter(|c| c.table == table).collect();
    assert!(!mine.is_empty(), "no chunks recorded for {table}");
    let show = || format!("{mine:#?}");
    let n = mine.len();
    for (i, c) in mine.iter().enumerate() {
        assert_eq!(c.chunk_no, i as i32, "chunk numbers of {table} are not 0..n: {}", show());
        assert_eq!(c.status, "done", "chunk {i} of {table} is not done: {}", show());
        let r = c.rows.expect("a done chunk has rows");
        assert!(r <= chunk_rows, "chunk {i} of {table} holds {r} rows, more than {chunk_rows}: {}", show());
        if i + 1 < n {
            assert_eq!(r, chunk_rows, "chunk {i} of {table} (not the last) holds {r} rows: {}", show());
        } else if rows > 0 {
            assert!(r >= 1, "the last chunk of {table} is empty: {}", show());
        }
        if i == 0 {
            assert_eq!(c.lo, None, "the first chunk of {table} must be open below: {}", show());
        } else {
            assert_eq!(c.lo, mine[i - 1].hi, "chunk {i} of {table} does not start where {} ended: {}", i - 1, show());
            assert!(c.lo.is_some(), "chunk {i} of {table} is open below: {}", show());
        }
        if i + 1 == n {
            assert_eq!(c.hi, None, "the last chunk of {table} must be open above: {}", show());
        }
    }
    let sum: i64 = mine.iter().map(|c| c.rows.unwrap_or(0)).sum();
    assert_eq!(sum, rows, "chunks of {table} hold {sum} rows in total, the table {rows}");
    mine
}

/// Everything a refused command must leave untouched on the target: every relation outside
/// the system schemas with its row count, every schema and type, and the whole
/// `rangecopy` state (jobs, tables, chunks) when it exists.
pub fn target_snapshot(url: &str) -> String {
    let mut c = connect(url);
    let mut out = String::new();
    let rels = c
        .query(
            "SELECT n.nspname, c.relname, c.relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'
              ORDER BY 1, 2",
            &[],
        )
        .expect("listing relations");
    for r in &rels {
        let (schema, name, kind): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        out.push_str(&format!("rel {schema}.{name} {kind}"));
        if kind == "r" || kind == "p" {
            let q =
                format!("SELECT count(*) FROM \"{}\".\"{}\"", schema.replace('"', "\"\""), name.replace('"', "\"\""));
            let n: i64 = c.query_one(&q, &[]).expect("counting rows").get(0);
            out.push_str(&format!(" rows={n}"));
        }
        out.push('\n');
    }
    for sql in [
        "SELECT string_agg(nspname, ',' ORDER BY nspname) FROM pg_namespace",
        "SELECT string_agg(format_type(oid, NULL), ',' ORDER BY 1) FROM pg_type WHERE oid >= 16384",
    ] {
        let s: Option<String> = c.query_one(sql, &[]).expect("listing schemas and types").get(0);
        out.push_str(&s.unwrap_or_default());
        out.push('\n');
    }
    let has_state: bool = c.query_one("SELECT to_regclass('rangecopy.chunks') IS NOT NULL", &[]).unwrap().get(0);
    if has_state {
        for t in ["jobs", "tables", "chunks"] {
            let s: Option<String> = c
                .query_one(&format!("SELECT string_agg(x::text, E'\\n' ORDER BY x::text) FROM rangecopy.{t} x"), &[])
                .expect("reading the state")
                .get(0);
            out.push_str(&format!("state {t}:\n{}\n", s.unwrap_or_default()));
        }
    }
    out
}

/// Asserts that running `f` leaves the target exactly as it was, and returns its result.
#[track_caller]
pub fn assert_writes_nothing<T>(target: &str, f: impl FnOnce() -> T) -> T {
    let before = target_snapshot(target);
    let result = f();
    let after = target_snapshot(target);
    assert_eq!(before, after, "the refused command changed the target");
    result
}

/// Polls `cond` every 10 ms until it is true or `limit` passes; returns whether it became true.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}

/// The table's constraints (`name: definition`) and indexes (`CREATE INDEX …`), sorted.
#[track_caller]
pub fn constraints_and_indexes(url: &str, table: &str) -> Vec<String> {
    let t = quote_literal(table);
    let sql = format!(
        "SELECT d FROM (
           SELECT conname || ': ' || pg_get_constraintdef(oid) AS d FROM pg_constraint WHERE conrelid = {t}::regclass
           UNION ALL
           SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = {t}::regclass) x
         ORDER BY 1"
    );
    texts(url, &sql).into_iter().map(|s| s.unwrap_or_default()).collect()
}

/// Asserts that the target has the same constraints and indexes on `table` as the source.
#[track_caller]
pub fn assert_same_indexes(db: &TestDbs, table: &str) {
    let source = constraints_and_indexes(&db.source, table);
    assert!(!source.is_empty(), "{table} has no constraints or indexes to compare");
    assert_eq!(source, constraints_and_indexes(&db.target, table), "constraints and indexes of {table} differ");
}

/// A MariaDB connection for a test; its error never holds the password.
pub fn my_conn(url: &str) -> Result<mysql::Conn, String> {
    let opts = mysql::Opts::from_url(url).map_err(|e| e.to_string())?;
    mysql::Conn::new(opts).map_err(|e| e.to_string().replace(PASSWORD, "***"))
}

/// Rows committed by `job` so far (0 while the state does not exist yet).
pub fn done_rows(target: &str, job: &str) -> i64 {
    let mut c = connect(target);
    let exists: bool = c.query_one("SELECT to_regclass('rangecopy.chunks') IS NOT NULL", &[]).unwrap().get(0);
    if !exists {
        return 0;
    }
    c.query_one("SELECT coalesce(sum(rows), 0)::int8 FROM rangecopy.chunks WHERE job = $1 AND status = 'done'", &[&job])
        .expect("reading the done chunks")
        .get(0)
}
