//! Servers that stop answering, and a server that is not the one the URL names.
//!
//! A loopback TCP proxy (`proxy::Proxy`) stands between rangecopy and one server; at a fault
//! it turns into a black hole for the connections open at that moment (their sockets stay
//! open, nothing passes), as a hung tunnel or a network that drops packets does, while new
//! connections pass again. With a small `--io-timeout` the copy gives the held connections up,
//! retries their chunks on fresh ones and finishes with every row once; Ctrl-C / SIGTERM stops
//! it within seconds however its connections are held, and so during a long index build; a
//! resume completes the job. A throwaway MariaDB whose socket leads to the dev server checks
//! that a copy, its positions and its verification read the server the URL names.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;

use crate::common::{
    assert_same_indexes, exec, my_conn, random_suffix, run, scalar, setup, texts, wait_until, with_database, PASSWORD,
};
use crate::faults::{
    assert_copied, assert_exactly_committed, assert_my_copied, big_table, copy_args, database_of, is_root, my_setup,
    spawn, wait_for_rows, Bg, MyDb,
};
use crate::proxy::Proxy;

/// Sends SIGTERM to a background copy.
fn sigterm(bg: &Bg) {
    let sent = Command::new("kill").args(["-TERM", &bg.pid().to_string()]).status().expect("running kill");
    assert!(sent.success());
}

// ---------------------------------------------------------------------------------------------
// Silent servers: given up after --io-timeout, the copy finishes
// ---------------------------------------------------------------------------------------------

/// Copy options for a black-holed run: a rate that makes the faults land mid-copy, a small
/// --io-timeout, quick retries.
const SILENT_RUN: [&str; 6] = ["--max-rows-per-sec", "50k", "--io-timeout", "3", "--retry-max-wait", "1"];

/// Black-holes the proxy twice while `bg` copies to `target`, then checks the run finished by
/// itself, having waited for and given up the held connections.
#[track_caller]
fn survives_black_holes(bg: &mut Bg, proxy: &Proxy, target: &str, job: &str, table: &str) {
    for at in [30_000, 110_000] {
        wait_for_rows(bg, target, job, at);
        assert!(proxy.black_hole() > 0, "no connection of the copy went through the proxy");
        assert_exactly_committed(target, job, table, "right after the fault");
    }
    let (code, err) = bg.wait(Duration::from_secs(180));
    assert_eq!(code, 0, "the copy should give the held connections up and finish by itself:\n{err}");
    for word in ["warning: waiting for", "--io-timeout", "retry 1 of"] {
        assert!(err.contains(word), "stderr should mention {word:?}:\n{err}");
    }
}

#[test]
fn a_silent_postgresql_source_is_given_up_after_the_io_timeout_and_the_copy_finishes() {
    let Some(db) = setup("hangs_silent_pg_source") else { return };
    big_table(&db.source, crate::faults::ROWS);
    let proxy = Proxy::start(&db.source);
    let (source, job) = (proxy.url(&db.source), "silent_source");
    let mut bg = spawn(&copy_args(&source, &db.target, job, &SILENT_RUN), &db.dir);
    survives_black_holes(&mut bg, &proxy, &db.target, job, "big");
    assert_copied(&db, &db.target, job);
    assert_same_indexes(&db, "big");
}

/// The target's held sessions are ended on the server, so the job's lock, held by the lost
/// main session, is free again for the planner's fresh one.
#[test]
fn a_silent_target_is_given_up_after_the_io_timeout_and_the_copy_finishes() {
    let Some(db) = setup("hangs_silent_pg_target") else { return };
    big_table(&db.source, crate::faults::ROWS);
    let proxy = Proxy::start(&db.target);
    let (target, job) = (proxy.url(&db.target), "silent_target");
    let mut bg = spawn(&copy_args(&db.source, &target, job, &SILENT_RUN), &db.dir);
    survives_black_holes(&mut bg, &proxy, &db.target, job, "big");
    assert_copied(&db, &db.target, job);
    assert_same_indexes(&db, "big");
    // No session of the copy is left behind on the target server.
    let left = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'rangecopy' AND datname = '{}'",
        database_of(&db.target)
    );
    assert!(wait_until(Duration::from_secs(10), || scalar::<i64>(&db.admin_urls()[1], &left) == 0), "sessions left");
}

#[test]
fn a_silent_mariadb_source_is_given_up_after_the_io_timeout_and_the_copy_finishes() {
    let Some((db, my)) = my_setup("hangs_silent_my_source") else { return };
    // Dropped before `my`: the sessions it holds would keep their locks on the database.
    let proxy = Proxy::start(&my.url);
    let (source, job) = (proxy.url(&my.url), "my_silent");
    let mut bg = spawn(&copy_args(&source, &db.target, job, &SILENT_RUN), &db.dir);
    survives_black_holes(&mut bg, &proxy, &db.target, job, &format!("\"{}\".big", my.name));
    assert_my_copied(&db, &my, job);
}

// ---------------------------------------------------------------------------------------------
// Ctrl-C / SIGTERM stops within seconds whatever the connections do
// ---------------------------------------------------------------------------------------------

/// How long a stop may take here: far below the --io-timeout of these runs, so that only the
/// interrupt can have ended them, and far above what a stop needs, so that a slow machine never
/// trips it.
const STOP_LIMIT: Duration = Duration::from_secs(30);

/// Black-holes the proxy under a running copy that would wait 10 minutes for it, sends SIGTERM
/// and checks that the run stopped by itself within `STOP_LIMIT`, with exit 1 and the resume
/// hint; returns its stderr.
#[track_caller]
fn stops_while_held(bg: &mut Bg, proxy: &Proxy, target: &str, job: &str, table: &str) -> String {
    wait_for_rows(bg, target, job, 30_000);
    assert!(proxy.black_hole() > 0, "no connection of the copy went through the proxy");
    // Long enough for the workers to be waiting on the held connections.
    std::thread::sleep(Duration::from_secs(2));
    let sent = Instant::now();
    sigterm(bg);
    let (code, err) = bg.wait(STOP_LIMIT);
    eprintln!("stopped {:?} after SIGTERM", sent.elapsed());
    assert_eq!(code, 1, "SIGTERM ends the run with exit 1:\n{err}");
    assert!(err.contains("interrupted") && err.contains("--resume") && err.contains(job), "a resume hint:\n{err}");
    assert_exactly_committed(target, job, table, "after SIGTERM");
    err
}

#[test]
fn sigterm_while_the_postgresql_source_is_silent_stops_at_once_and_resume_completes() {
    let Some(db) = setup("hangs_sigterm_pg") else { return };
    big_table(&db.source, crate::faults::ROWS);
    let proxy = Proxy::start(&db.source);
    let (source, job) = (proxy.url(&db.source), "held_then_stopped");
    let args = copy_args(&source, &db.target, job, &["--max-rows-per-sec", "50k", "--io-timeout", "600"]);
    let mut bg = spawn(&args, &db.dir);
    let err = stops_while_held(&mut bg, &proxy, &db.target, job, "big");
    // PostgreSQL calls give their connections up themselves: no need for the last resort.
    assert!(!err.contains("left behind"), "the PostgreSQL connections should have let go:\n{err}");
    let status: String = scalar(&db.target, &format!("SELECT status FROM rangecopy.jobs WHERE job = '{job}'"));
    assert_eq!(status, "interrupted");
    // New connections pass the proxy again.
    run(&copy_args(&source, &db.target, job, &["--resume"])).ok();
    assert_copied(&db, &db.target, job);
}

/// A MySQL read cannot be interrupted: the process leaves it behind a few seconds after the
/// signal, with the resume hint.
#[test]
fn sigterm_while_the_mariadb_source_is_silent_stops_within_seconds_and_resume_completes() {
    let Some((db, my)) = my_setup("hangs_sigterm_my") else { return };
    let proxy = Proxy::start(&my.url);
    let (source, job) = (proxy.url(&my.url), "my_held_then_stopped");
    let args = copy_args(&source, &db.target, job, &["--max-rows-per-sec", "50k", "--io-timeout", "600"]);
    let mut bg = spawn(&args, &db.dir);
    stops_while_held(&mut bg, &proxy, &db.target, job, &format!("\"{}\".big", my.name));
    run(&copy_args(&source, &db.target, job, &["--resume"])).ok();
    assert_my_copied(&db, &my, job);
}

/// An index build outlasts many --io-timeouts (it legitimately sends nothing meanwhile: it is
/// checked on the server instead); the index phase stops at the signal too (the running build is
/// cancelled on the server); the indexes left are built by the resume.
#[test]
fn a_long_index_build_is_not_cut_and_sigterm_stops_it_at_once_and_resume_builds_the_rest() {
    let Some(db) = setup("hangs_sigterm_index") else { return };
    // The index's function is instant on the source and slow on the target (10 ms a row: 50 s).
    let function = |body: &str| {
        format!("CREATE FUNCTION public.slow(i int) RETURNS int IMMUTABLE LANGUAGE plpgsql AS $$ BEGIN {body} RETURN i; END $$;")
    };
    exec(
        &db.source,
        &format!(
            "{}
             CREATE TABLE idx (id int PRIMARY KEY, v int NOT NULL);
             INSERT INTO idx SELECT g, g % 97 FROM generate_series(1, 5000) g;
             CREATE INDEX idx_slow ON idx (public.slow(v));",
            function("")
        ),
    );
    exec(&db.target, &function("PERFORM pg_sleep(0.01);"));
    let job = "indexing";
    let args = ["copy", "--source", &db.source, "--target", &db.target, "idx", "--job", job, "--io-timeout", "1"];
    let mut bg = spawn(&args, &db.dir);
    let building = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'rangecopy'
                      AND state = 'active' AND query LIKE 'CREATE INDEX idx_slow%'";
    let started = wait_until(Duration::from_secs(60), || {
        bg.try_wait().is_some() || scalar::<i64>(&db.admin_urls()[1], building) > 0
    });
    assert!(started && bg.try_wait().is_none(), "the slow index build never started:\n{}", bg.stderr());
    std::thread::sleep(Duration::from_secs(5));
    assert!(bg.try_wait().is_none(), "the copy ended while the index was building:\n{}", bg.stderr());
    assert!(scalar::<i64>(&db.admin_urls()[1], building) > 0, "the build stopped:\n{}", bg.stderr());
    sigterm(&bg);
    let (code, err) = bg.wait(STOP_LIMIT);
    assert_eq!(code, 1, "SIGTERM ends the run with exit 1:\n{err}");
    assert!(err.contains("interrupted") && err.contains("--resume"), "a resume hint:\n{err}");
    assert!(!err.contains("left behind"), "the build's connection should have let go:\n{err}");
    assert!(!err.contains("given up") && !err.contains("retry"), "the build was cut before the signal:\n{err}");
    // The build was cancelled on the server, not left to run on.
    assert!(
        wait_until(Duration::from_secs(10), || scalar::<i64>(&db.admin_urls()[1], building) == 0),
        "still building"
    );
    assert!(!scalar::<bool>(&db.target, "SELECT to_regclass('public.idx_slow') IS NOT NULL"), "the index exists");
    exec(&db.target, &function("").replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION"));
    run(&[&args[..], &["--resume", "--progress", "none"]].concat()).ok();
    assert_same_indexes(&db, "idx");
}

/// A MySQL key walk that waits long for the server (here behind another session's table lock)
/// is checked on the server every --io-timeout and not cut: it goes on once the lock is gone.
#[test]
fn a_long_mariadb_key_walk_is_not_cut_by_the_io_timeout() {
    let Some((db, my)) = my_setup("hangs_long_walk") else { return };
    let mut locker = my_conn(&my.url).expect("connecting to MariaDB");
    locker.query_drop("LOCK TABLES big WRITE").expect("locking big");
    let job = "walk_waits";
    let args = ["copy", "--source", &my.url, "--target", &db.target, "--job", job, "--chunk-rows", "5000"];
    let mut bg = spawn(&[&args[..], &["--io-timeout", "1", "--progress", "none"]].concat(), &db.dir);
    let waiting =
        format!("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = '{}' AND STATE LIKE '%lock%'", my.name);
    let mut admin = my_conn(&my.admin).expect("connecting to MariaDB");
    let walking = wait_until(Duration::from_secs(60), || {
        bg.try_wait().is_some() || admin.query_first::<i64, _>(&waiting).ok().flatten().unwrap_or(0) > 0
    });
    assert!(walking && bg.try_wait().is_none(), "the key walk never waited for the lock:\n{}", bg.stderr());
    // Several --io-timeouts, each with a check on the server.
    std::thread::sleep(Duration::from_secs(5));
    assert!(bg.try_wait().is_none(), "the copy ended while the walk waited:\n{}", bg.stderr());
    locker.query_drop("UNLOCK TABLES").expect("unlocking big");
    let (code, err) = bg.wait(Duration::from_secs(120));
    assert_eq!(code, 0, "the copy should go on once the lock is gone:\n{err}");
    assert!(!err.contains("given up") && !err.contains("retry"), "the walk was cut:\n{err}");
    assert_my_copied(&db, &my, job);
}

// ---------------------------------------------------------------------------------------------
// The server the URL names, not the one behind its socket
// ---------------------------------------------------------------------------------------------

/// A MariaDB server of one test (its own data directory, port and socket, binary log `xbin`,
/// server id 7; as the `mysql` system user when running as root), killed and removed when
/// dropped.
struct OwnMariaDb {
    dir: PathBuf,
    socket: PathBuf,
    port: u16,
    server: Child,
    /// The OS user whose name logs in as the server's root through its socket.
    admin_user: String,
}

impl OwnMariaDb {
    /// `None` when no MariaDB server binaries are installed.
    fn start() -> Option<OwnMariaDb> {
        let on_path = |exe: &str| {
            std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(exe).is_file()))
        };
        if !on_path("mariadb-install-db") || !on_path("mariadb") || !std::path::Path::new("/usr/sbin/mariadbd").exists()
        {
            return None;
        }
        let dir = std::env::temp_dir().join(format!("rct_my_{}", random_suffix()));
        std::fs::create_dir_all(&dir).expect("creating the server's directory");
        let root = is_root();
        if root {
            let ok = Command::new("chown").arg("mysql:").arg(&dir).status().is_ok_and(|s| s.success());
            assert!(ok, "chown mysql {}", dir.display());
        }
        let port = TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().unwrap().port();
        let socket = dir.join("my.sock");
        let cnf = dir.join("my.cnf");
        let user = if root { "user = mysql\n" } else { "" };
        std::fs::write(
            &cnf,
            format!(
                "[mysqld]\ndatadir = {d}/data\nsocket = {s}\npid-file = {d}/pid\nlog-error = {d}/err.log\n\
                 port = {port}\nbind-address = 127.0.0.1\nskip-name-resolve\nlog-bin = xbin\nserver_id = 7\n\
                 innodb_buffer_pool_size = 16M\ninnodb_log_file_size = 16M\nperformance_schema = off\n{user}",
                d = dir.display(),
                s = socket.display()
            ),
        )
        .expect("writing my.cnf");
        let admin_user =
            String::from_utf8_lossy(&Command::new("id").arg("-un").output().expect("id -un").stdout).trim().to_string();
        let mut install = Command::new("mariadb-install-db");
        install.arg(format!("--defaults-file={}", cnf.display()));
        install.args(["--auth-root-authentication-method=socket", "--skip-test-db"]);
        if root {
            install.arg("--user=mysql");
        } else {
            install.arg(format!("--auth-root-socket-user={admin_user}"));
        }
        let log = || std::fs::File::create(dir.join("install.log")).expect("a log file");
        let installed = install.stdin(Stdio::null()).stdout(log()).stderr(log()).status();
        assert!(
            installed.is_ok_and(|s| s.success()),
            "mariadb-install-db failed:\n{}",
            std::fs::read_to_string(dir.join("install.log")).unwrap_or_default()
        );
        let server = Command::new("/usr/sbin/mariadbd")
            .arg(format!("--defaults-file={}", cnf.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting mariadbd");
        let own = OwnMariaDb { dir, socket, port, server, admin_user };
        let up = wait_until(Duration::from_secs(60), || own.admin("SELECT 1").is_ok());
        assert!(
            up,
            "the test's MariaDB did not start:\n{}",
            std::fs::read_to_string(own.dir.join("err.log")).unwrap_or_default()
        );
        own.admin(&format!(
            "CREATE USER 'rangecopy'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}';
             CREATE USER 'rangecopy'@'localhost' IDENTIFIED BY '{PASSWORD}';
             GRANT ALL PRIVILEGES ON *.* TO 'rangecopy'@'127.0.0.1';
             GRANT ALL PRIVILEGES ON *.* TO 'rangecopy'@'localhost';"
        ))
        .expect("creating the rangecopy login");
        Some(own)
    }

    /// Runs SQL as the server's root, through its socket (so only before `redirect_socket`).
    fn admin(&self, sql: &str) -> Result<(), String> {
        let out = Command::new("mariadb")
            .args(["--no-defaults", &format!("--socket={}", self.socket.display()), "-u", &self.admin_user, "-e", sql])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Replaces the server's socket file with a link to `other`: a client that trusts the
    /// server's `@@socket` reaches the other server.
    fn redirect_socket(&self, other: &str) {
        std::fs::remove_file(&self.socket).expect("removing the socket");
        std::os::unix::fs::symlink(other, &self.socket).expect("linking the socket");
    }

    /// The URL of database `db` on this server, over TCP.
    fn url(&self, db: &str) -> String {
        format!("mysql://rangecopy:{PASSWORD}@127.0.0.1:{}/{db}", self.port)
    }
}

impl Drop for OwnMariaDb {
    fn drop(&mut self) {
        // The link first: nothing may reach the other server through it any more.
        let _ = std::fs::remove_file(&self.socket);
        let _ = self.server.kill();
        let _ = self.server.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The `mysql` driver, given a loopback address, reads the server's `@@socket` and reconnects
/// through it; where that socket is another server's (a tunnel, a port map, two instances on
/// one host), rangecopy used to copy the other server's rows, record its binary log position
/// as P0 and verify against it. The two servers here hold the same database with other rows.
#[test]
fn mariadb_on_loopback_is_read_from_the_server_the_url_names_not_the_one_behind_its_socket() {
    let Some(db) = setup("hangs_wrong_server") else { return };
    let skip = |why: &str| {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("hangs_wrong_server: {why}; under CI=true a test that cannot reach its database fails");
        }
        eprintln!("!!! hangs_wrong_server SKIPPED: {why}");
    };
    let Some(dev) = std::env::var("RANGECOPY_TEST_MYSQL").ok().filter(|u| my_conn(u).is_ok()) else {
        return skip("the dev MariaDB (RANGECOPY_TEST_MYSQL) cannot be reached");
    };
    let Some(own) = OwnMariaDb::start() else { return skip("no MariaDB server binaries are installed") };
    let name = db.job().to_string();
    let table = "CREATE TABLE t (id int PRIMARY KEY, server varchar(10) NOT NULL)";
    let mut dev_conn = my_conn(&dev).expect("connecting to the dev MariaDB");
    dev_conn.query_drop(format!("CREATE DATABASE `{name}`")).expect("creating the dev database");
    let _dev_db = MyDb { admin: dev.clone(), name: name.clone(), url: with_database(&dev, &name) };
    let fill = |rows: &str| format!("USE `{name}`; {table}; INSERT INTO t VALUES {rows};");
    dev_conn.query_drop(fill("(1, 'dev'), (2, 'dev')")).expect("filling the dev table");
    own.admin(&format!("CREATE DATABASE `{name}`; {}", fill("(1, 'own'), (2, 'own'), (3, 'own')")))
        .expect("filling the test server's table");
    let dev_socket: String = dev_conn.query_first("SELECT @@socket").expect("the dev socket").expect("a socket");
    own.redirect_socket(&dev_socket);
    let url = own.url(&name);
    // The trap is armed: the driver's default connects to the dev server (id 1) through it.
    let naive: Option<u32> = my_conn(&url).expect("connecting").query_first("SELECT @@server_id").expect("server id");
    assert_eq!(naive, Some(1), "the driver's default should follow the socket to the dev server");

    let job = "wrong_server";
    run(&["copy", "--source", &url, "--target", &db.target, "--job", job, "--progress", "none"]).ok();
    let rows = texts(&db.target, &format!("SELECT id || ' ' || server FROM \"{name}\".t ORDER BY id"));
    let rows: Vec<String> = rows.into_iter().flatten().collect();
    assert_eq!(rows, ["1 own", "2 own", "3 own"], "the copy read another server than the URL's");
    // The positions are the test server's binary log, not the dev server's.
    let files = texts(
        &db.target,
        &format!("SELECT (p0->>'binlog_file') || ' ' || (p1->>'binlog_file') FROM rangecopy.jobs WHERE job = '{job}'"),
    );
    let files = files.into_iter().flatten().collect::<Vec<_>>().join("");
    assert!(files.starts_with("xbin.") && files.contains(" xbin."), "P0 and P1 of another server: {files}");
    // Verification reads the same server (the dev rows would differ).
    run(&["verify", "--source", &url, "--target", &db.target, "--job", job]).ok();
}
