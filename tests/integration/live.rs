//! The live view of a running job (`--listen`, `--control`) and `--log-format json`: during a
//! real copy, `/metrics` counts up and parses as Prometheus text (with a real parser), the
//! status page fills itself in a real headless browser, `/api/status` is JSON, a pause through
//! HTTP holds the copy and a resume lets it finish, control requests are refused without
//! `--control`, and no endpoint ever shows the password of the URLs given.
//!
//! The copies are slowed with `--max-rows-per-sec`, so there is time to look at them.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use crate::common::{
    assert_no_password, assert_writes_nothing, done_rows, exec, run, scalar, setup, wait_until, Running, TestDbs,
    PASSWORD,
};
use crate::faults::{database_of, terminate_backends};

const ROWS: i64 = 100_000;

fn rows_table(db: &TestDbs) {
    exec(
        &db.source,
        &format!(
            "CREATE TABLE orders (id bigint PRIMARY KEY, v text);
             INSERT INTO orders SELECT g, md5(g::text) FROM generate_series(1, {ROWS}) g;
             CREATE TABLE \"odd \"\"name\\\" (id int PRIMARY KEY);
             INSERT INTO \"odd \"\"name\\\" SELECT generate_series(1, 100);
             ANALYZE;"
        ),
    );
}

/// Starts a copy slowed to 5k rows/s (about 20 s) with `extra` options, listening on any free
/// port, and returns it with the address it printed.
fn slow_copy(db: &TestDbs, job: &str, extra: &[&str]) -> (Running, String) {
    let mut args =
        vec!["--job", job, "--chunk-rows", "2000", "--workers", "2", "--max-rows-per-sec", "5k", "--listen", "0"];
    args.extend_from_slice(extra);
    let copy = db.spawn_copy(&args);
    let addr = listening_address(&copy);
    (copy, addr)
}

/// The address a run with `--listen 0` says it listens on (waits half a minute at most).
#[track_caller]
fn listening_address(child: &Running) -> String {
    let mut addr = None;
    let found = wait_until(Duration::from_secs(30), || {
        addr = child.stderr().lines().find_map(|l| {
            l.strip_prefix("listening on http://").map(|rest| rest.split('/').next().unwrap_or_default().to_string())
        });
        addr.is_some()
    });
    assert!(found, "the run never said where it listens:\n{}", child.stderr());
    addr.unwrap()
}

/// One HTTP/1.0 request (the server closes the connection after answering): status and body.
fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    http_with(addr, method, path, "", body)
}

/// `http` with extra header lines (`Name: value\r\n` each).
fn http_with(addr: &str, method: &str, path: &str, headers: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The caller's own Host, if it names one (a request as a browser would send it to a name).
    let host = if headers.starts_with("Host:") { String::new() } else { format!("Host: {addr}\r\n") };
    write!(stream, "{method} {path} HTTP/1.0\r\n{host}{headers}Content-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap_or_else(|e| panic!("reading {method} {path}: {e}"));
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no HTTP response: {response:?}"));
    let code = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("{head}"));
    (code, body.to_string())
}

fn get(addr: &str, path: &str) -> String {
    let (code, body) = http(addr, "GET", path, "");
    assert_eq!(code, 200, "GET {path}: {body}");
    assert_no_password(&body, path);
    body
}

/// `/metrics` parsed by a Prometheus text parser: (metric, labels as `k=v,…`) → value.
fn scrape(addr: &str) -> Vec<(String, String, f64)> {
    let text = get(addr, "/metrics");
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let parsed =
        prometheus_parse::Scrape::parse(lines).unwrap_or_else(|e| panic!("not Prometheus text ({e}):\n{text}"));
    assert!(!parsed.samples.is_empty(), "no samples:\n{text}");
    assert!(parsed.docs.contains_key("rangecopy_job_info"), "no HELP for rangecopy_job_info:\n{text}");
    parsed
        .samples
        .into_iter()
        .map(|s| {
            let mut labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            labels.sort();
            let value = match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                other => panic!("{}: unexpected value {other:?}", s.metric),
            };
            (s.metric, labels.join(","), value)
        })
        .collect()
}

fn try_sample(samples: &[(String, String, f64)], metric: &str, labels: &str) -> Option<f64> {
    samples.iter().find(|(m, l, _)| m == metric && l == labels).map(|s| s.2)
}

#[track_caller]
fn sample(samples: &[(String, String, f64)], metric: &str, labels: &str) -> f64 {
    try_sample(samples, metric, labels).unwrap_or_else(|| panic!("no sample {metric}{{{labels}}} in {samples:?}"))
}

fn status(addr: &str) -> serde_json::Value {
    let body = get(addr, "/api/status");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("/api/status is not JSON ({e}): {body}"))
}

/// The status page's DOM after its script has run, from headless Chromium.
fn page_dom(addr: &str) -> String {
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--virtual-time-budget=4000",
            "--dump-dom",
            &format!("http://{addr}/"),
        ])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run chromium ({e}): the status page is tested in a real browser; install it \
                 (apt-get install chromium; scripts/test.sh does)"
            )
        });
    let dom = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success() && dom.contains("<html"),
        "chromium failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dom
}

/// The text of the element whose id is `id` in a dumped DOM (its first text run).
fn element_text<'a>(dom: &'a str, id: &str) -> &'a str {
    let start = dom.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id} in the page:\n{dom}"));
    let rest = &dom[start..];
    let open = rest.find('>').unwrap() + 1;
    &rest[open..open + rest[open..].find('<').unwrap()]
}

#[test]
fn the_live_view_counts_up_parses_and_fills_its_page_without_showing_a_password() {
    let Some(db) = setup("live_view") else { return };
    rows_table(&db);
    assert!(db.source.contains(PASSWORD), "the test means to give URLs with a password");
    let (mut copy, addr) = slow_copy(&db, "watched", &[]);
    assert!(addr.starts_with("127.0.0.1:"), "a bare port listens on loopback: {addr}");
    let going = wait_until(Duration::from_secs(30), || {
        try_sample(&scrape(&addr), "rangecopy_rows_copied_total", "table=public.orders").is_some_and(|v| v > 0.0)
    });
    assert!(going, "no rows counted:\n{}", copy.stderr());
    let first = scrape(&addr);
    let dom_first = page_dom(&addr);
    std::thread::sleep(Duration::from_millis(1500));
    let second = scrape(&addr);
    let dom_second = page_dom(&addr);

    // Counters grow; the job, the throttle and every table are there, names escaped right.
    for metric in ["rangecopy_rows_copied_total", "rangecopy_bytes_copied_total"] {
        let (a, b) = (sample(&first, metric, "table=public.orders"), sample(&second, metric, "table=public.orders"));
        assert!(b > a, "{metric} did not grow: {a} then {b}");
    }
    assert_eq!(sample(&second, "rangecopy_job_info", "job=watched,mode=copy,stage=copying"), 1.0);
    assert_eq!(sample(&second, "rangecopy_throttle_rows_per_second_limit", ""), 5_000.0);
    assert_eq!(sample(&second, "rangecopy_paused", ""), 0.0);
    assert_eq!(sample(&second, "rangecopy_pause_reason", "reason=none"), 1.0);
    // `public."odd ""name\"` with its quotes and backslash escaped (prometheus-parse keeps escapes
    // as they are and cuts a value that ends in an escaped quote, so the raw text is checked).
    let raw = get(&addr, "/metrics");
    assert!(raw.contains(r#"rangecopy_rows_estimated{table="public.\"odd \"\"name\\\""} 100"#), "{raw}");
    assert!(sample(&second, "rangecopy_chunks_planned", "table=public.orders") >= 1.0);

    // The page was filled in by its script from /api/status, and moved between the two loads.
    for dom in [&dom_first, &dom_second] {
        assert!(dom.contains("data-table=\"public.orders\""), "the page shows no row for the table:\n{dom}");
        assert!(dom.contains("watched (copy)"), "the page does not name the job:\n{dom}");
        assert_no_password(dom, "the status page");
    }
    let (a, b) = (element_text(&dom_first, "total-rows"), element_text(&dom_second, "total-rows"));
    assert_ne!(a, b, "the page's row count did not change between two loads");

    let s = status(&addr);
    assert_eq!(s["job"], "watched");
    assert_eq!(s["throttle"]["rows_per_second_limit"], 5_000);
    assert!(s["tables"].as_array().unwrap().iter().any(|t| t["table"] == "public.orders"), "{s}");

    // Without --control, changes are refused and nothing changes; unknown pages and methods too.
    let (code, body) = http(&addr, "POST", "/api/pause", "");
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("--control"), "the refusal should say how to allow it: {body}");
    assert_eq!(http(&addr, "POST", "/api/rate", r#"{"rows_per_sec": 1}"#).0, 403);
    assert_eq!(http(&addr, "GET", "/api/pause", "").0, 405);
    assert_eq!(http(&addr, "POST", "/metrics", "").0, 405);
    assert_eq!(http(&addr, "GET", "/nothing-here", "").0, 404);
    std::thread::sleep(Duration::from_millis(1500));
    let paused: bool = scalar(&db.target, "SELECT paused FROM rangecopy.jobs WHERE job = 'watched'");
    assert!(!paused, "a refused pause paused the job");
    assert_eq!(status(&addr)["throttle"]["paused"], false);
    let limit: i64 = scalar(&db.target, "SELECT max_rows_per_sec FROM rangecopy.jobs WHERE job = 'watched'");
    assert_eq!(limit, 5_000, "a refused rate change changed the rate");

    // A fault the copy gets past shows as a retry, and among the recent errors, without a password.
    let killed = terminate_backends(&db.admin_urls()[0], &database_of(&db.source));
    assert!(killed > 0, "no source connection of the copy was found to terminate");
    let retried = wait_until(Duration::from_secs(30), || {
        scrape(&addr).iter().any(|(m, _, v)| m == "rangecopy_retries_total" && *v > 0.0)
    });
    assert!(retried, "no retry counted:\n{}", copy.stderr());
    let s = status(&addr);
    let recent = s["recent"].as_array().unwrap();
    assert!(recent.iter().any(|n| n["text"].as_str().unwrap().starts_with("retry 1")), "{s}");
    assert!(recent.iter().all(|n| !n["text"].as_str().unwrap().contains('@')), "a URL's user part is shown: {s}");
    let page = page_dom(&addr);
    assert!(page.contains("retry 1"), "the page shows no recent retry:\n{page}");

    let done = copy.wait(Duration::from_secs(120));
    assert_eq!(done.code, 0, "{done:?}");
    assert_eq!(done_rows(&db.target, "watched"), ROWS + 100);
}

/// A backfill's /metrics count what its merges did, as its chunks in the state record it.
#[test]
fn a_backfill_counts_rows_inserted_and_skipped_by_its_merges() {
    let Some(db) = setup("live_backfill") else { return };
    rows_table(&db);
    exec(
        &db.target,
        "CREATE TABLE orders (id bigint PRIMARY KEY, v text);
         INSERT INTO orders SELECT g, 'app' FROM generate_series(10, 100000, 10) g;
         CREATE TABLE \"odd \"\"name\\\" (id int PRIMARY KEY);",
    );
    let (mut copy, addr) = slow_copy(&db, "backfilled", &["--into-existing"]);
    let going = wait_until(Duration::from_secs(60), || done_rows(&db.target, "backfilled") >= 20_000);
    assert!(going, "the backfill never got going:\n{}", copy.stderr());
    let recorded = || -> (f64, f64) {
        let mut c = crate::common::connect(&db.target);
        let row = c
            .query_one(
                "SELECT coalesce(sum(inserted), 0)::float8, coalesce(sum(skipped), 0)::float8 FROM rangecopy.chunks
                  WHERE job = 'backfilled' AND status = 'done'",
                &[],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    let before = recorded();
    let samples = scrape(&addr);
    let after = recorded();
    let counted = |outcome: &str| -> f64 {
        samples
            .iter()
            .filter(|(m, l, _)| m == "rangecopy_rows_merged_total" && l.starts_with(&format!("outcome={outcome},")))
            .map(|s| s.2)
            .sum()
    };
    let (inserted, skipped) = (counted("inserted"), counted("skipped"));
    // A chunk (2000 rows) may be committed and not counted yet at the moment of the scrape.
    assert!(before.0 - 2000.0 <= inserted && inserted <= after.0, "inserted {inserted}, state {before:?}..{after:?}");
    assert!(before.1 - 2000.0 <= skipped && skipped <= after.1, "skipped {skipped}, state {before:?}..{after:?}");
    assert!(skipped > 0.0 && inserted > 9.0 * skipped - 2000.0, "inserted {inserted}, skipped {skipped}");
    assert_eq!(sample(&samples, "rangecopy_rows_merged_total", "outcome=updated,table=public.orders"), 0.0);
    let s = status(&addr);
    let orders = s["tables"].as_array().unwrap().iter().find(|t| t["table"] == "public.orders").unwrap().clone();
    assert!(orders["merged"]["skipped"].as_f64().unwrap() > 0.0, "{orders}");

    let done = copy.wait(Duration::from_secs(120));
    assert_eq!(done.code, 0, "{done:?}");
    assert_eq!(scalar::<i64>(&db.target, "SELECT count(*) FROM orders WHERE v = 'app'"), 10_000);
    assert_eq!(scalar::<i64>(&db.target, "SELECT count(*) FROM orders"), ROWS);
}

#[test]
fn control_pauses_a_copy_through_http_and_resume_lets_it_finish() {
    let Some(db) = setup("live_control") else { return };
    rows_table(&db);
    let (mut copy, addr) = slow_copy(&db, "steered", &["--control"]);
    let going = wait_until(Duration::from_secs(30), || done_rows(&db.target, "steered") >= 4000);
    assert!(going, "the copy never got going:\n{}", copy.stderr());

    // A browser page of another site may not steer the job (a form could POST here).
    let (code, body) = http_with(&addr, "POST", "/api/pause", "Origin: http://elsewhere.example\r\n", "");
    assert_eq!(code, 403, "{body}");
    // Nor a page of a public name re-pointed at this address (DNS rebinding): same origin to the browser.
    let port = addr.rsplit_once(':').unwrap().1;
    let rebound = format!("Host: evil.example:{port}\r\nOrigin: http://evil.example:{port}\r\n");
    let (code, body) = http_with(&addr, "POST", "/api/pause", &rebound, "");
    assert_eq!(code, 403, "{body}");
    let (code, body) = http_with(&addr, "POST", "/api/pause", &format!("Origin: http://{addr}\r\n"), "");
    assert_eq!(code, 200, "the status page's own origin may: {body}");
    // A control tick (a second) and the blocks already granted, then nothing more commits.
    let paused = wait_until(Duration::from_secs(10), || status(&addr)["throttle"]["paused"] == true);
    assert!(paused, "the status never said paused: {}", status(&addr));
    std::thread::sleep(Duration::from_millis(2500));
    let held = done_rows(&db.target, "steered");
    assert!(held < ROWS + 100, "the copy finished before the pause took effect");
    let s = status(&addr);
    assert_eq!(s["throttle"]["pause_reason"], "operator", "{s}");
    assert_eq!(sample(&scrape(&addr), "rangecopy_paused", ""), 1.0);
    assert_eq!(sample(&scrape(&addr), "rangecopy_pause_reason", "reason=operator"), 1.0);

    // A rate change while paused is recorded as `rangecopy throttle` records it.
    let (code, body) = http(&addr, "POST", "/api/rate", r#"{"rows_per_sec": 20000}"#);
    assert_eq!(code, 200, "{body}");
    let (code, body) = http(&addr, "POST", "/api/rate", r#"{"rows_per_sec": "fast"}"#);
    assert_eq!(code, 400, "{body}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(done_rows(&db.target, "steered"), held, "rows were committed while the job was paused");
    assert_eq!(copy.try_wait(), None, "the paused copy ended:\n{}", copy.stderr());
    let limit: i64 = scalar(&db.target, "SELECT max_rows_per_sec FROM rangecopy.jobs WHERE job = 'steered'");
    assert_eq!(limit, 20_000);
    let status_cmd = db.status("steered").ok();
    assert!(status_cmd.stdout.contains("paused"), "{status_cmd:?}");

    let (code, body) = http(&addr, "POST", "/api/resume", "");
    assert_eq!(code, 200, "{body}");
    let done = copy.wait(Duration::from_secs(120));
    assert_eq!(done.code, 0, "{done:?}");
    assert_eq!(done_rows(&db.target, "steered"), ROWS + 100);
    let paused: bool = scalar(&db.target, "SELECT paused FROM rangecopy.jobs WHERE job = 'steered'");
    assert!(!paused);
}

/// Every stderr line of a run, parsed as JSON; fails on any line that is not an object.
fn json_lines(stderr: &str) -> Vec<serde_json::Value> {
    stderr
        .lines()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("a stderr line is not JSON ({e}): {l:?}"));
            assert!(v["ts"].is_string() && v["event"].is_string(), "no ts or event: {l}");
            v
        })
        .collect()
}

#[test]
fn json_logs_are_one_object_per_line_with_chunk_events_for_copy_and_verify() {
    let Some(db) = setup("live_json") else { return };
    rows_table(&db);
    let out = db
        .copy(&["--job", "logged", "--chunk-rows", "20000", "--log-format", "json", "--listen", "0", "--verify"])
        .ok();
    let events = json_lines(&out.stderr);
    let named = |name: &str| events.iter().filter(|e| e["event"] == name).collect::<Vec<_>>();
    // The copy starts, and later its --verify.
    let started = named("started");
    assert_eq!(started.len(), 2, "{}", out.stderr);
    assert_eq!(started[0]["job"], "logged");
    assert_eq!((&started[0]["mode"], &started[1]["mode"]), (&"copy".into(), &"verify".into()));
    let chunks = named("chunk");
    let orders: Vec<_> = chunks.iter().filter(|c| c["table"] == "public.orders").collect();
    assert_eq!(orders.len() as i64, ROWS / 20_000, "a chunk event per chunk of 20000 rows: {}", out.stderr);
    assert_eq!(orders.iter().map(|c| c["rows"].as_i64().unwrap()).sum::<i64>(), ROWS);
    assert!(orders.iter().all(|c| c["bytes"].as_i64().unwrap() > 0 && c["ms"].is_u64()), "{orders:?}");
    let phases: Vec<_> =
        named("table").iter().filter(|e| e["table"] == "public.orders").map(|e| e["phase"].clone()).collect();
    assert_eq!(phases, ["copying", "indexing", "done", "verified"], "{}", out.stderr);
    assert!(!named("schema").is_empty(), "{}", out.stderr);
    assert!(!named("listening").is_empty(), "{}", out.stderr);
    let finished = named("finished");
    assert_eq!(finished.len(), 1, "{}", out.stderr);
    assert_eq!(finished[0]["status"], "done");
    assert_eq!(finished[0]["rows"], ROWS + 100);
    // The P0 note, and any other message, is an event too.
    assert!(named("message").iter().any(|m| m["text"].as_str().unwrap().contains("P0")), "{}", out.stderr);
    // --verify's verdict comes as events too.
    assert!(named("verified").iter().any(|e| e["verdict"] == "identical"), "{}", out.stderr);

    let out =
        run(&["verify", "--source", &db.source, "--target", &db.target, "--job", "logged", "--log-format", "json"]);
    assert_eq!(out.code, 0, "{out:?}");
    let events = json_lines(&out.stderr);
    assert!(events.iter().any(|e| e["event"] == "started" && e["mode"] == "verify"), "{}", out.stderr);
    let verified: Vec<_> = events.iter().filter(|e| e["event"] == "table" && e["phase"] == "verified").collect();
    assert_eq!(verified.len(), 2, "{}", out.stderr);
    assert!(verified.iter().all(|e| e["status"] == "identical"), "{verified:?}");
    assert!(events.iter().any(|e| e["event"] == "finished" && e["verdict"] == "identical"), "{}", out.stderr);
}

#[test]
fn a_verify_shows_its_ranges_and_consistency_while_it_runs() {
    let Some(db) = setup("live_verify") else { return };
    rows_table(&db);
    db.copy(&["--job", "checked", "--chunk-rows", "2000", "--progress", "none"]).ok();
    exec(&db.target, "UPDATE orders SET v = 'changed' WHERE id = 77");
    let args = [
        "verify",
        "--source",
        &db.source,
        "--target",
        &db.target,
        "--job",
        "checked",
        "--max-rows-per-sec",
        "10k",
        "--workers",
        "2",
        "--listen",
        "0",
        "--control",
    ];
    let mut child = db.spawn(&args);
    let addr = listening_address(&child);
    let compared =
        |s: &[(String, String, f64)]| try_sample(s, "rangecopy_verify_rows_compared_total", "table=public.orders");
    assert!(
        wait_until(Duration::from_secs(30), || compared(&scrape(&addr)).is_some_and(|v| v > 0.0)),
        "no rows compared:\n{}",
        child.stderr()
    );
    let metrics = scrape(&addr);
    assert_eq!(sample(&metrics, "rangecopy_verify_ranges", "table=public.orders"), (ROWS / 2000) as f64);
    assert_eq!(sample(&metrics, "rangecopy_job_info", "job=checked,mode=verify,stage=verifying"), 1.0);
    // The changed row is in the first range, which is among the first compared.
    let orders = |s: &serde_json::Value| {
        s["verify"]["tables"].as_array().unwrap().iter().find(|t| t["table"] == "public.orders").unwrap().clone()
    };
    let seen = wait_until(Duration::from_secs(30), || orders(&status(&addr))["map"].as_str().unwrap().starts_with('x'));
    let s = status(&addr);
    assert!(seen, "the range map never showed the differing range: {s}");
    let t = orders(&s);
    assert!(t["rows_differing"].as_u64().unwrap() >= 1, "{t}");
    assert!(t["ranges_done"].as_u64().unwrap() < (ROWS / 2000) as u64, "the verify was not throttled: {t}");
    let pct = s["verify"]["consistency_percent"].as_f64().unwrap();
    assert!(pct < 100.0 && pct > 99.0, "{s}");
    assert!(sample(&scrape(&addr), "rangecopy_verify_consistency_percent", "") < 100.0);
    let page = page_dom(&addr);
    assert!(page.contains("class=\"r-bad\""), "the page's range map shows no differing range:\n{page}");
    // --control on a verify changes its own throttle: lifting the limit lets it finish.
    let (code, body) = http(&addr, "POST", "/api/rate", r#"{"rows_per_sec": 0}"#);
    assert_eq!(code, 200, "{body}");
    let out = child.wait(Duration::from_secs(60));
    assert_eq!(out.code, 1, "one row differs: {out:?}");
}

/// `verify --watch` with `--listen`: after each recorded pass, `/metrics`, `/api/status` and the
/// page show that pass's numbers and how long every pass has been consistent.
#[test]
fn a_watch_shows_its_last_pass_and_how_long_it_has_been_consistent() {
    let Some(db) = setup("live_watch") else { return };
    rows_table(&db);
    db.copy(&["--job", "watched", "--progress", "none"]).ok();
    let args = [
        "verify", "--source", &db.source, "--target", &db.target, "--job", "watched", "--watch", "1", "--passes", "30",
        "--listen", "0",
    ];
    let mut child = db.spawn(&args);
    let addr = listening_address(&child);
    let passes = |s: &[(String, String, f64)]| try_sample(s, "rangecopy_watch_passes_total", "watch=watched");
    assert!(
        wait_until(Duration::from_secs(60), || passes(&scrape(&addr)).is_some_and(|p| p >= 2.0)),
        "no second pass in /metrics:\n{}",
        child.stderr()
    );
    let metrics = scrape(&addr);
    assert_eq!(sample(&metrics, "rangecopy_watch_consistency_percent", ""), 100.0);
    assert_eq!(sample(&metrics, "rangecopy_watch_rows_divergent", ""), 0.0);
    assert!(sample(&metrics, "rangecopy_watch_consistent_seconds", "") > 0.0, "{metrics:?}");
    let w = status(&addr)["watch"].clone();
    assert_eq!(w["watch"], "watched", "{w}");
    assert_eq!(w["rows_compared"].as_u64(), Some(ROWS as u64 + 100), "{w}");
    assert!(w["consistent_since"].is_string(), "{w}");

    // A divergence planted on the target shows in the next pass, and the streak ends.
    exec(&db.target, "DELETE FROM orders WHERE id = 5");
    let diverged = |s: &[(String, String, f64)]| try_sample(s, "rangecopy_watch_rows_divergent", "") == Some(1.0);
    assert!(wait_until(Duration::from_secs(60), || diverged(&scrape(&addr))), "{}", child.stderr());
    let metrics = scrape(&addr);
    assert_eq!(sample(&metrics, "rangecopy_watch_consistent_seconds", ""), 0.0);
    assert!(sample(&metrics, "rangecopy_watch_consistency_percent", "") < 100.0);
    let page = page_dom(&addr);
    let line = element_text(&page, "watch");
    assert!(line.contains("watch watched: pass ") && line.contains("1 divergent"), "{line}");
    child.kill9();
}

#[test]
fn a_listen_address_that_cannot_be_bound_is_refused_before_anything_is_written() {
    let Some(db) = setup("live_bind") else { return };
    rows_table(&db);
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    assert_writes_nothing(&db.target, || {
        db.copy(&["--job", "nope", "--listen", &port]).refused(&["--listen", &port, "another port"]);
        db.copy(&["--job", "nope", "--listen", "no-such-host.invalid:80"]).refused(&["--listen", "HOST:PORT"]);
        db.copy(&["--job", "nope", "--listen", "1.2.3.4:99999"]).refused(&["--listen"]);
        db.copy(&["--job", "nope", "--control"]).refused(&["--listen"]);
    });
    drop(taken);
}
