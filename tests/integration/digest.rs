//! Chunk digests depend only on the data and the chunking: the same table copied twice gives
//! the same digests whatever the parallelism, the table digest does not depend on the chunk
//! size, and a changed row changes exactly its chunk's digest.

use serde_json::Value;

use crate::common::{chunks, exec, setup, ChunkRow, TestDbs};
use crate::report::merge_digests;

const SOURCE_SQL: &str = "
    CREATE TYPE tone AS ENUM ('low', 'high');
    CREATE TABLE mixed (id int PRIMARY KEY, n numeric, f float8, t text, b bytea, j jsonb, js json, a int[],
                        ts timestamptz, d date, u uuid, e tone, flag boolean);
    INSERT INTO mixed
    SELECT g, g * 1.5, g / 3.0, 'text ' || g, decode(md5(g::text), 'hex'), jsonb_build_object('g', g, 'k', 'v'),
           ('{\"b\": 1,  \"a\": ' || g || '}')::json, ARRAY[g, NULL, -g], '2020-01-01 00:00:00+00'::timestamptz + g * interval '1 h',
           '2000-01-01'::date + g, md5(g::text)::uuid, (ARRAY['low', 'high']::tone[])[1 + g % 2], g % 2 = 0
      FROM generate_series(1, 300) g;
    UPDATE mixed SET f = 0.0 WHERE id = 300;
    INSERT INTO mixed (id) VALUES (1000);";

/// (chunk_no, lo, hi, rows, digest) of a chunk.
type DigestRow = (i32, Option<Vec<String>>, Option<Vec<String>>, Option<i64>, Option<String>);

/// (chunk_no, lo, hi, rows, digest) of every chunk of the job.
fn digests(target: &str, job: &str) -> Vec<DigestRow> {
    chunks(target, job)
        .into_iter()
        .map(|ChunkRow { chunk_no, lo, hi, rows, digest, .. }| (chunk_no, lo, hi, rows, digest))
        .collect()
}

/// Copies `mixed` into `target` and returns the report's table digest.
fn copy_into(db: &TestDbs, target: &str, job: &str, chunk_rows: &str, workers: &str) -> String {
    let path = db.dir.join(format!("{job}.json"));
    db.copy_to(
        target,
        &["mixed", "--job", job, "--chunk-rows", chunk_rows, "--workers", workers, "--report", path.to_str().unwrap()],
    )
    .ok();
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("the report")).expect("JSON");
    report["tables"][0]["digest"].as_str().expect("a table digest").to_string()
}

#[test]
fn copying_the_same_table_twice_gives_identical_chunk_digests() {
    let Some(mut db) = setup("digest_stable") else { return };
    exec(&db.source, SOURCE_SQL);
    let (a, b, c) = (db.target.clone(), db.extra_target("b"), db.extra_target("c"));

    let whole_a = copy_into(&db, &a, "one", "25", "1");
    let whole_b = copy_into(&db, &b, "two", "25", "3");
    let (da, db_) = (digests(&a, "one"), digests(&b, "two"));
    assert_eq!(da.len(), 13);
    assert!(da.iter().all(|d| d.4.as_deref().is_some_and(|s| s.len() == 64 + 1 + d.3.unwrap().to_string().len())));
    assert_eq!(da, db_, "same data, same chunk size: same bounds, rows and digests");
    assert_eq!(whole_a, whole_b);
    assert_eq!(whole_a, merge_digests(da.iter().map(|d| d.4.as_deref().unwrap())));
    assert!(whole_a.starts_with("301:"), "{whole_a}");

    // The table digest is a sum over rows: another chunk size gives the same one.
    let whole_c = copy_into(&db, &c, "three", "70", "2");
    assert_eq!(digests(&c, "three").len(), 5);
    assert_eq!(whole_c, whole_a, "the table digest must not depend on the chunk size");
}

#[test]
fn a_changed_row_changes_only_its_chunks_digest() {
    let Some(mut db) = setup("digest_change") else { return };
    exec(&db.source, SOURCE_SQL);
    let (a, b) = (db.target.clone(), db.extra_target("b"));
    let before = copy_into(&db, &a, "before", "25", "2");
    // Row 130 lives in chunk 5 ([126, 151)); -0.0 and 0.0 are the same value, so this
    // second change must not show.
    exec(&db.source, "UPDATE mixed SET t = 'changed' WHERE id = 130; UPDATE mixed SET f = '-0' WHERE id = 300;");
    let after = copy_into(&db, &b, "after", "25", "2");
    assert_ne!(before, after);
    let (x, y) = (digests(&a, "before"), digests(&b, "after"));
    let differing: Vec<i32> = x.iter().zip(&y).filter(|(p, q)| p != q).map(|(p, _)| p.0).collect();
    assert_eq!(differing, [5], "only the chunk holding the changed row differs");
}
