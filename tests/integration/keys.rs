//! Chunks come from walking the key, whatever its type or shape: each holds exactly
//! `--chunk-rows` rows but the last, chunks tile the key space without gaps or overlaps, and
//! the table arrives identical.

use std::time::Duration;

use crate::common::{
    assert_chunks_tile, assert_same_indexes, assert_same_table, chunks, exec, scalar, setup, ChunkRow, TestDbs,
};

/// Small tables copy in seconds; a hang (a planner that never ends) fails fast instead.
const LIMIT: Duration = Duration::from_secs(30);

/// Copies `tables` (created by `sql`) in chunks of `chunk_rows`, and checks each of them:
/// same columns, rows, constraints and indexes; chunks that tile the key space exactly.
fn copy_keyed(db: &TestDbs, sql: &str, tables: &[(&str, &str)], chunk_rows: i64) -> Vec<Vec<ChunkRow>> {
    exec(&db.source, sql);
    let n = chunk_rows.to_string();
    let mut args: Vec<&str> = tables.iter().map(|(t, _)| *t).collect();
    args.extend(["--chunk-rows", &n, "--workers", "2"]);
    db.copy_within(LIMIT, &args).ok();
    tables
        .iter()
        .map(|(table, order_by)| {
            let rows = assert_same_table(db, table, order_by);
            assert!(rows > 2 * chunk_rows, "{table} should span several chunks");
            assert_same_indexes(db, table);
            assert_chunks_tile(&db.target, db.job(), &format!("public.{table}"), chunk_rows, rows)
        })
        .collect()
}

#[test]
fn composite_int_text_key_is_cut_inside_groups() {
    let Some(db) = setup("keys_composite") else { return };
    let chunks = copy_keyed(
        &db,
        r#"CREATE TABLE pairs (a int, b text, v text, PRIMARY KEY (a, b));
           INSERT INTO pairs
           SELECT g % 5 - 2,
                  'k' || g || CASE g % 4 WHEN 0 THEN ', "q''uote"' WHEN 1 THEN ' {braces}' WHEN 2 THEN ' ünï\' ELSE '' END,
                  md5(g::text)
             FROM generate_series(1, 600) g;"#,
        &[("pairs", "t.a, t.b")],
        13,
    );
    // Boundaries fall inside groups of the first key column, not only between them.
    let inside =
        chunks[0].windows(2).filter(|w| w[0].lo.as_ref().map(|l| &l[0]) == w[1].lo.as_ref().map(|l| &l[0])).count();
    assert!(inside > 10, "expected boundaries within groups of `a`: {:#?}", chunks[0]);
}

#[test]
fn text_key_with_icu_collation_is_walked_in_its_collation() {
    let Some(db) = setup("keys_icu_text") else { return };
    copy_keyed(
        &db,
        r#"CREATE TABLE words (w text COLLATE "en-x-icu" PRIMARY KEY, n int);
           INSERT INTO words
           SELECT x || g, g
             FROM unnest(ARRAY['apple', 'Apple', 'APPLE', 'éclair', 'eclair', 'Eclair', 'zebra', 'Zebra', '_under',
                               '-dash', ' space', 'ß', 'ss', 'Ω', '😀', '10', '9', 'a b', 'a-b', 'ab']) x,
                  generate_series(1, 25) g;"#,
        &[("words", r#"t.w COLLATE "C""#)],
        11,
    );
}

#[test]
fn uuid_key_is_walked() {
    let Some(db) = setup("keys_uuid") else { return };
    copy_keyed(
        &db,
        "CREATE TABLE things (id uuid PRIMARY KEY, n int);
         INSERT INTO things VALUES ('00000000-0000-0000-0000-000000000000', 0), ('ffffffff-ffff-ffff-ffff-ffffffffffff', -1);
         INSERT INTO things SELECT md5(g::text)::uuid, g FROM generate_series(1, 700) g;",
        &[("things", "t.id")],
        17,
    );
}

#[test]
fn timestamp_keys_including_infinities_and_bc_are_walked() {
    let Some(db) = setup("keys_timestamp") else { return };
    copy_keyed(
        &db,
        "CREATE TABLE ev_ts (ts timestamp PRIMARY KEY, n int);
         INSERT INTO ev_ts VALUES ('-infinity', 0), ('infinity', 0), ('4713-01-01 00:00:00 BC', 0),
                                  ('0001-12-31 23:59:59.999999 BC', 0), ('1999-12-31 23:59:59.999999', 0);
         INSERT INTO ev_ts SELECT '2020-01-01'::timestamp + g * interval '1 microsecond', g FROM generate_series(1, 150) g;
         INSERT INTO ev_ts SELECT '1800-01-01'::timestamp + g * interval '7 days 3 s', g FROM generate_series(1, 150) g;
         CREATE TABLE ev_tstz (ts timestamptz PRIMARY KEY, n int);
         INSERT INTO ev_tstz SELECT ts AT TIME ZONE 'Asia/Kolkata', n FROM ev_ts;",
        &[("ev_ts", "t.ts"), ("ev_tstz", "t.ts")],
        9,
    );
}

#[test]
fn numeric_key_with_special_values_is_walked() {
    let Some(db) = setup("keys_numeric") else { return };
    copy_keyed(
        &db,
        "CREATE TABLE amounts (n numeric PRIMARY KEY, label text);
         INSERT INTO amounts VALUES ('NaN', 'nan'), ('Infinity', 'inf'), ('-Infinity', '-inf'), (0, 'zero'),
           (1e-30, 'tiny'), (-1e-30, '-tiny'), (123456789012345678901234567890.123456789, 'big'),
           (-99999999999999999999.5, '-big');
         INSERT INTO amounts SELECT g * 0.001, 'milli' FROM generate_series(-150, 150) g WHERE g <> 0;
         INSERT INTO amounts SELECT g * 1e10 + 0.5, 'huge' FROM generate_series(1, 100) g;",
        &[("amounts", "t.n")],
        10,
    );
}

#[test]
fn negative_and_sparse_integer_keys_are_walked() {
    let Some(db) = setup("keys_sparse") else { return };
    copy_keyed(
        &db,
        "CREATE TABLE sparse (id bigint PRIMARY KEY, v text);
         INSERT INTO sparse VALUES (-1000000000000000, 'a'), (-3, 'b'), (0, 'c'), (7, 'd'), (1000000000000000, 'e'),
                                   (-9223372036854775808, 'min'), (9223372036854775807, 'max');
         CREATE TABLE cubes (id bigint PRIMARY KEY);
         INSERT INTO cubes SELECT g * g * g FROM generate_series(-100, 100) g;",
        &[("sparse", "t.id"), ("cubes", "t.id")],
        3,
    );
}

/// Regression: boundaries were found by sorting the key's text form (`ORDER BY` named the
/// `::text` output column), so `9` sorted after `16`; with ids 9..16 and 7-row chunks the
/// planner emitted the empty chunk [9, 9) forever.
#[test]
fn integer_keys_of_different_widths_are_cut_in_numeric_order() {
    let Some(db) = setup("keys_width") else { return };
    exec(&db.source, "CREATE TABLE w (id int PRIMARY KEY); INSERT INTO w SELECT generate_series(9, 16);");
    db.copy_within(LIMIT, &["w", "--chunk-rows", "7", "--workers", "1"]).ok();
    let rows = assert_same_table(&db, "w", "t.id");
    assert_chunks_tile(&db.target, db.job(), "public.w", 7, rows);
}

/// The same, for a key column whose name could collide with whatever alias the key walk
/// gives its text output columns.
#[test]
fn key_columns_named_like_internal_aliases_are_cut_in_key_order() {
    let Some(db) = setup("keys_alias") else { return };
    exec(
        &db.source,
        "CREATE TABLE a1 (rangecopy_k0 int PRIMARY KEY); INSERT INTO a1 SELECT generate_series(9, 16);
         CREATE TABLE a2 (k0 int, k1 int, PRIMARY KEY (k0, k1)); INSERT INTO a2 SELECT 1, generate_series(9, 16);",
    );
    db.copy_within(LIMIT, &["a1", "a2", "--chunk-rows", "7", "--workers", "1"]).ok();
    for (table, order) in [("a1", "t.rangecopy_k0"), ("a2", "t.k0, t.k1")] {
        let rows = assert_same_table(&db, table, order);
        assert_chunks_tile(&db.target, db.job(), &format!("public.{table}"), 7, rows);
    }
}

#[test]
fn heavily_skewed_composite_key_gives_equal_chunks() {
    let Some(db) = setup("keys_skew") else { return };
    let chunks = copy_keyed(
        &db,
        "CREATE TABLE skew (tenant int, seq int, v text, PRIMARY KEY (tenant, seq));
         INSERT INTO skew SELECT 42, g, md5(g::text) FROM generate_series(1, 1800) g;
         INSERT INTO skew SELECT (g - 100) * 10000019, g, 'x' FROM generate_series(1, 200) g;",
        &[("skew", "t.tenant, t.seq")],
        50,
    );
    assert_eq!(chunks[0].len(), 40);
}

#[test]
fn unique_not_null_key_is_used_without_a_primary_key() {
    let Some(db) = setup("keys_unique") else { return };
    copy_keyed(
        &db,
        "CREATE TABLE coded (code text NOT NULL, alt int UNIQUE, v int, CONSTRAINT coded_code_key UNIQUE (code));
         CREATE UNIQUE INDEX coded_positive_v ON coded (v) WHERE v > 0;
         CREATE UNIQUE INDEX coded_lower ON coded ((lower(code) || 'x'));
         INSERT INTO coded
         SELECT 'C' || lpad(g::text, 5, '0'), CASE WHEN g % 3 = 0 THEN NULL ELSE g END,
                CASE WHEN g % 2 = 0 THEN g ELSE -g END
           FROM generate_series(1, 400) g;",
        &[("coded", "t.code")],
        30,
    );
    let key: String = scalar(&db.target, "SELECT key FROM rangecopy.tables WHERE target_name = 'coded'");
    assert!(key.contains("coded_code_key") && key.contains("code"), "expected the unique NOT NULL key, got {key:?}");
}

#[test]
fn table_without_usable_key_is_copied_whole_with_a_warning() {
    let Some(db) = setup("keys_none") else { return };
    exec(
        &db.source,
        "CREATE TABLE heap (a int, b text);
         CREATE UNIQUE INDEX heap_a ON heap (a);
         INSERT INTO heap SELECT CASE WHEN g % 5 = 0 THEN NULL ELSE g END, 'dup ' || (g % 7) FROM generate_series(1, 250) g;
         INSERT INTO heap SELECT NULL, 'identical' FROM generate_series(1, 20);",
    );
    let run = db.copy_within(LIMIT, &["heap", "--chunk-rows", "10", "--workers", "2"]).ok();
    assert!(
        run.stderr.contains("warning") && run.stderr.contains("heap") && run.stderr.contains("resume"),
        "expected a warning naming the table and what resume can do:\n{run:?}"
    );
    let rows = assert_same_table(&db, "heap", "t::text");
    assert_eq!(rows, 270);
    assert_same_indexes(&db, "heap");
    let chunks = chunks(&db.target, db.job());
    assert!(chunks.iter().all(|c| c.status == "done"), "{chunks:#?}");
    assert_eq!(chunks.iter().map(|c| c.rows.unwrap_or(0)).sum::<i64>(), rows, "{chunks:#?}");
}
