//! `rangecopy status` and the `--report` JSON describe what is committed in the target.

use serde_json::Value;

use crate::common::{assert_no_password, chunks, exec, run, scalar, setup, TestDbs};

fn three_tables(db: &TestDbs) {
    exec(
        &db.source,
        "CREATE SCHEMA sales;
         CREATE TABLE sales.orders (id int PRIMARY KEY, note text);
         INSERT INTO sales.orders SELECT g, repeat('n', g % 50) FROM generate_series(1, 95) g;
         CREATE TABLE public.tiny (id int PRIMARY KEY); INSERT INTO public.tiny VALUES (1), (2);
         CREATE TABLE public.nothing (id int PRIMARY KEY);",
    );
}

/// Merges chunk digests (`rows:hex` of a little-endian 256-bit sum) as DESIGN.md defines
/// a range digest: rows added, sums added modulo 2^256.
pub fn merge_digests<'a>(digests: impl IntoIterator<Item = &'a str>) -> String {
    let (mut rows, mut sum) = (0u64, [0u8; 32]);
    for d in digests {
        let (r, hex) = d.split_once(':').unwrap_or_else(|| panic!("malformed digest {d:?}"));
        assert_eq!(hex.len(), 64, "malformed digest {d:?}");
        rows += r.parse::<u64>().expect("digest rows");
        let mut carry = 0u16;
        for (i, byte) in sum.iter_mut().enumerate() {
            let x = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("digest hex") as u16;
            let s = *byte as u16 + x + carry;
            *byte = s as u8;
            carry = s >> 8;
        }
    }
    let hex: String = sum.iter().map(|b| format!("{b:02x}")).collect();
    format!("{rows}:{hex}")
}

#[test]
fn status_lists_every_table_with_its_phase_chunks_and_rows() {
    let Some(db) = setup("status") else { return };
    three_tables(&db);
    let empty = run(&["status", "--target", &db.target]).ok();
    assert!(empty.stdout.contains("no rangecopy jobs"), "{empty:?}");

    db.copy(&["--job", "nightly", "--chunk-rows", "10"]).ok();
    let status = db.status("nightly").ok();
    assert!(status.stdout.contains("job nightly: done"), "{status:?}");
    for (schema, name, rows) in [("sales", "orders", 95), ("public", "tiny", 2), ("public", "nothing", 0)] {
        let table = format!("{schema}.{name}");
        let n = chunks(&db.target, "nightly").iter().filter(|c| c.table == table).count();
        let words = status.table_line(schema, name);
        assert!(words.contains(&"done"), "{table} should be done: {words:?}");
        assert!(words.contains(&format!("{n}/{n}").as_str()), "{table} should show {n}/{n} chunks: {words:?}");
        assert!(words.contains(&rows.to_string().as_str()), "{table} should show {rows} rows: {words:?}");
    }
    // Without --job every job is listed; an unknown job is bad input.
    // Regression: a table a finished job filled was said to be filled by "no rangecopy job".
    db.copy(&["tiny", "--job", "second"]).refused(&[
        "public.tiny",
        "finished job \"nightly\"",
        "--job nightly --restart",
    ]);
    let all = run(&["status", "--target", &db.target]).ok();
    assert!(all.stdout.contains("job nightly: done"), "{all:?}");
    run(&["status", "--target", &db.target, "--job", "nope"]).refused(&["nope"]);
}

#[test]
fn report_json_has_per_table_figures_digests_totals_and_settings() {
    let Some(db) = setup("report") else { return };
    three_tables(&db);
    let path = db.dir.join("copy.report.json");
    let path_s = path.to_str().expect("a UTF-8 path");
    db.copy(&["--job", "rep", "--chunk-rows", "10", "--workers", "2", "--report", path_s]).ok();
    let text = std::fs::read_to_string(&path).expect("the report file");
    assert_no_password(&text, "the report");
    let report: Value = serde_json::from_str(&text).expect("the report is JSON");

    assert_eq!(report["job"], "rep");
    assert_eq!(report["status"], "done");
    let settings = &report["settings"];
    assert_eq!(settings["workers"].to_string(), "2");
    assert_eq!(settings["chunk_rows"].to_string(), "10");
    for side in ["source", "target"] {
        let url = settings[side].as_str().unwrap_or_else(|| panic!("settings.{side} should be a URL: {settings}"));
        assert!(url.starts_with("postgres://rangecopy@127.0.0.1:"), "settings.{side} = {url}");
    }

    let tables = report["tables"].as_array().expect("tables");
    assert_eq!(tables.len(), 3);
    let state = chunks(&db.target, "rep");
    let (mut total_rows, mut total_chunks, mut total_bytes) = (0i64, 0i64, 0i64);
    for (name, quoted) in
        [("sales.orders", "sales.orders"), ("public.tiny", "public.tiny"), ("public.nothing", "public.nothing")]
    {
        let t = tables
            .iter()
            .find(|t| {
                t["source_table"] == quoted || t["target_table"].as_str().is_some_and(|s| s.replace('"', "") == name)
            })
            .unwrap_or_else(|| panic!("{name} missing from the report: {tables:#?}"));
        let count: i64 = scalar(&db.source, &format!("SELECT count(*) FROM {name}"));
        let mine: Vec<_> = state.iter().filter(|c| c.table == name).collect();
        let figure = |k: &str| t[k].to_string().parse::<i64>().unwrap_or_else(|_| panic!("{name}.{k} in {t}"));
        assert_eq!(figure("rows"), count, "{name}: {t}");
        assert_eq!(figure("chunks"), mine.len() as i64, "{name}: {t}");
        assert_eq!(figure("chunks_done"), mine.len() as i64, "{name}: {t}");
        assert_eq!(t["phase"], "done", "{name}: {t}");
        if count > 0 {
            assert!(figure("bytes") > 0, "{name}: {t}");
        }
        // The table's digest covers exactly its rows and merges its chunks' digests.
        let digest = t["digest"].as_str().unwrap_or_else(|| panic!("{name}: no digest in {t}"));
        assert_eq!(digest.split(':').next(), Some(count.to_string().as_str()), "{name}: {t}");
        assert_eq!(digest, merge_digests(mine.iter().map(|c| c.digest.as_deref().expect("a done chunk's digest"))));
        total_rows += count;
        total_chunks += mine.len() as i64;
        total_bytes += figure("bytes");
    }
    let totals = &report["totals"];
    assert_eq!(totals["rows"].to_string(), total_rows.to_string(), "{totals}");
    assert_eq!(totals["chunks"].to_string(), total_chunks.to_string(), "{totals}");
    assert_eq!(totals["bytes"].to_string(), total_bytes.to_string(), "{totals}");
    assert_eq!(totals["tables"].to_string(), "3", "{totals}");
}

/// Regression: a table's `seconds` in the report covered only its index builds (its start was
/// set when indexing began), so the demo reported 30 million rows/s for a table. A throttled
/// copy shows the copying phase taking as long as the throttle makes it, and rates under it.
#[test]
fn report_times_each_table_from_its_first_chunk_with_copy_and_index_phases() {
    let Some(db) = setup("report_times") else { return };
    exec(
        &db.source,
        "CREATE TABLE timed (id int PRIMARY KEY, v text); INSERT INTO timed SELECT g, md5(g::text) FROM generate_series(1, 30000) g;",
    );
    let report = db.dir.join("report.json");
    let path = report.to_str().unwrap();
    db.copy(&["--chunk-rows", "2000", "--max-rows-per-sec", "15000", "--report", path, "--progress", "none"]).ok();
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let t = &r["tables"][0];
    let num = |k: &str| t[k].as_f64().unwrap_or_else(|| panic!("no {k} in {t}"));
    // 30000 rows at 15000 rows/s: about two seconds of copying, whatever the index build takes.
    assert!(num("copy_seconds") >= 1.5, "{t}");
    assert!(num("rows_per_second") <= 20_000.0, "{t}");
    assert!(num("index_seconds") >= 0.0, "{t}");
    let sum = num("copy_seconds") + num("index_seconds");
    assert!((num("seconds") - sum).abs() < 0.01, "the phases add up to the table's time: {t}");
    // The table has statistics the moment the copy ends.
    let analyzed: i64 = scalar(&db.target, "SELECT count(*) FROM pg_stats WHERE tablename = 'timed'");
    assert!(analyzed >= 2, "no statistics for timed");
}

/// Regression: after a resume the progress counted the earlier runs' rows as copied in no
/// time (a huge rate, an ETA near zero), and during a pause the ETA grew instead of saying so.
#[test]
fn progress_after_a_resume_and_during_a_pause_tells_the_truth() {
    use std::time::Duration;

    use crate::common::wait_until;
    let Some(db) = setup("report_progress") else { return };
    exec(
        &db.source,
        "CREATE TABLE slow (id int PRIMARY KEY, v text); INSERT INTO slow SELECT g, md5(g::text) FROM generate_series(1, 40000) g;",
    );
    let args = ["--job", "p", "--chunk-rows", "1000", "--workers", "1", "--max-rows-per-sec", "4000"];
    let mut first = db.spawn_copy(&[&args[..], &["--progress", "none"]].concat());
    let going = wait_until(Duration::from_secs(60), || crate::common::done_rows(&db.target, "p") >= 12_000);
    assert!(going, "{}", first.stderr());
    first.kill9();

    let lines = ["--resume", "--progress", "lines", "--progress-interval", "1"];
    let mut resumed = db.spawn_copy(&[&args[..], &lines[..]].concat());
    let rated =
        wait_until(Duration::from_secs(30), || resumed.stderr().lines().filter(|l| l.contains(" rows/s")).count() >= 4);
    assert!(rated, "{}", resumed.stderr());
    run(&["throttle", "--target", &db.target, "--job", "p", "--pause"]).ok();
    let paused = wait_until(Duration::from_secs(10), || resumed.stderr().contains("ETA paused"));
    run(&["throttle", "--target", &db.target, "--job", "p", "--unpause"]).ok();
    let done = resumed.wait(Duration::from_secs(120));
    assert_eq!(done.code, 0, "{done:?}");
    assert!(paused, "no line said the run was paused:\n{}", done.stderr);
    for line in done.stderr.lines().filter(|l| l.starts_with("progress:")) {
        // "…, 3.9k rows/s, …": never the earlier runs' rows over the first seconds.
        let rate = line.split(", ").find(|p| p.ends_with(" rows/s")).unwrap_or_else(|| panic!("{line}"));
        let n = rate.trim_end_matches(" rows/s");
        let value = match n.strip_suffix('k') {
            Some(k) => k.parse::<f64>().unwrap() * 1000.0,
            None if n == "-" => 0.0,
            None => n.parse::<f64>().unwrap_or_else(|_| panic!("{line}")),
        };
        assert!(value <= 6000.0, "a rate above the 4000 rows/s throttle: {line}\n{}", done.stderr);
        assert!(!line.contains("ETA 0s"), "{line}");
    }
}
