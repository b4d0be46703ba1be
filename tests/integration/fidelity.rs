//! Every value arrives exactly, per type family: extremes, special values, NULLs, with
//! chunks of 7 rows so boundaries fall all over each table.

use crate::common::{assert_same_table, chunks, exec, scalar, setup, table_fingerprint, TestDbs};

const CHUNK_ROWS: i64 = 7;

/// Creates `sql` in the source, copies `table` alone in chunks of `CHUNK_ROWS`, and checks
/// that it arrived identical (columns and rows) through several chunks. Returns the row count.
/// (Chunk sizes themselves are the `keys` tests' business.)
fn copy_and_compare(db: &TestDbs, sql: &str, table: &str) -> i64 {
    exec(&db.source, sql);
    db.copy(&[table, "--chunk-rows", &CHUNK_ROWS.to_string(), "--workers", "2"]).ok();
    let rows = assert_same_table(db, table, "t.id");
    let chunks = chunks(&db.target, db.job());
    assert!(chunks.len() >= 3, "{table} should have been copied in several chunks: {chunks:#?}");
    assert!(chunks.iter().all(|c| c.status == "done"), "{chunks:#?}");
    assert_eq!(chunks.iter().map(|c| c.rows.unwrap_or(0)).sum::<i64>(), rows, "{chunks:#?}");
    rows
}

#[test]
fn integers_and_booleans_arrive_exactly() {
    let Some(db) = setup("fidelity_integers") else { return };
    copy_and_compare(
        &db,
        "CREATE TABLE ints (id int PRIMARY KEY, i2 int2, i4 int4, i8 int8, b boolean, o oid);
         INSERT INTO ints VALUES
           (1, -32768, -2147483648, -9223372036854775808, true, 0),
           (2, 32767, 2147483647, 9223372036854775807, false, 4294967295),
           (3, 0, 0, 0, NULL, NULL),
           (4, NULL, NULL, NULL, NULL, NULL),
           (5, -1, -1, -1, true, 1);
         INSERT INTO ints
         SELECT g, ((g * 997) % 65535 - 32767)::int2, ((g::int8 * 48271000) % 4294967295 - 2147483647)::int4,
                g * 200000000000000000 * (CASE WHEN g % 2 = 0 THEN -1 ELSE 1 END), g % 3 = 0, g
           FROM generate_series(6, 40) g;",
        "ints",
    );
}

#[test]
fn numerics_arrive_exactly() {
    let Some(db) = setup("fidelity_numeric") else { return };
    copy_and_compare(
        &db,
        "CREATE TABLE nums (id int PRIMARY KEY, n numeric, n2 numeric(12, 2), nneg numeric(6, -3), nsmall numeric(1000, 999));
         INSERT INTO nums VALUES
           (1, 'NaN', 0, 0, 0),
           (2, 'Infinity', -0.00, 123456789, 0.5),
           (3, '-Infinity', 9999999999.99, -999999000, -0.5),
           (4, 0, -9999999999.99, 1, ('0.' || repeat('0', 997) || '12')::numeric),
           (5, -0.000, 0.01, -1, -9.1),
           (6, repeat('9', 1000)::numeric, NULL, NULL, NULL),
           (7, ('-0.' || repeat('0', 1500) || '1')::numeric, 1.10, 500, 1.100),
           (8, 12345678901234567890.12345678901234567890, -0.01, -499, 0),
           (9, 1.10, 1, 1500, 0.000),
           (10, NULL, NULL, NULL, NULL),
           (11, '1e131071'::numeric, 3.14, 314159, 3.14159),
           (12, -1e-16383, 2.50, 2500, 2.50);
         INSERT INTO nums
         SELECT g, (g * 1.000001) ^ 7, g * 1.01, g * 12345, (g / 7.0)
           FROM generate_series(13, 45) g;",
        "nums",
    );
}

#[test]
fn floats_arrive_bit_exact() {
    let Some(db) = setup("fidelity_floats") else { return };
    copy_and_compare(
        &db,
        "CREATE TABLE floats (id int PRIMARY KEY, r real, d double precision);
         INSERT INTO floats VALUES
           (1, 'NaN', 'NaN'),
           (2, 'Infinity', 'Infinity'),
           (3, '-Infinity', '-Infinity'),
           (4, '-0', '-0'),
           (5, 0, 0),
           (6, 1.4e-45, 4.9e-324),
           (7, -1.4e-45, -4.9e-324),
           (8, 1.1754942e-38, 2.225073858507201e-308),
           (9, 1.17549435e-38, 2.2250738585072014e-308),
           (10, 3.4028235e38, 1.7976931348623157e308),
           (11, -3.4028235e38, -1.7976931348623157e308),
           (12, 1.0000001, 1.0000000000000002),
           (13, 0.99999994, 0.9999999999999999),
           (14, 0.1, 0.1),
           (15, NULL, NULL),
           (16, 16777217, 9007199254740993),
           (17, 3.1415927, 3.141592653589793);
         INSERT INTO floats SELECT g, g::real / 7, g::float8 / 7 * 1e-300 FROM generate_series(18, 50) g;",
        "floats",
    );
    // Bit patterns too, not only the text forms: -0, NaN and subnormals included.
    let bits = "(SELECT id, float4send(r) AS r, float8send(d) AS d FROM floats)";
    assert_eq!(table_fingerprint(&db.source, bits, "t.id"), table_fingerprint(&db.target, bits, "t.id"));
    assert_eq!(scalar::<String>(&db.target, "SELECT d::text FROM floats WHERE id = 4"), "-0");
    assert_eq!(scalar::<String>(&db.target, "SELECT d::text FROM floats WHERE id = 6"), "5e-324");
}

#[test]
fn text_and_bytes_arrive_exactly() {
    let Some(db) = setup("fidelity_text") else { return };
    let rows = copy_and_compare(
        &db,
        r#"CREATE TABLE strs (id int PRIMARY KEY, t text, v varchar(20), c char(5), ch "char", nm name, bin bytea);
         INSERT INTO strs VALUES
           (1, '👍🏽 family 👨‍👩‍👧‍👦 flags 🇩🇪🇯🇵', 'emoji 😀', '😀', 'a', 'n😀', '\x00ff'),
           (2, 'שלום עולם — مرحبا بالعالم', 'שלום', 'אב', 'b', 'rtl', '\x'),
           (3, E'e\u0301 n\u0303 a\u030a Z\u0335\u0321\u0327', E'e\u0301', E'e\u0301', 'c', 'combining', '\x0102030405'),
           (4, E'ctl \x01\x02\x1f\x7f tab\there nl\nhere cr\r bs\\ q'' dq" ', E'\t\n\\', E'\t ', E'\t', E'x\ty', '\x5c30'),
           (5, '', '', '', NULL, '', NULL),
           (6, NULL, NULL, NULL, NULL, NULL, NULL),
           (7, repeat('long text ', 100000), repeat('v', 20), 'abcde', 'z', repeat('n', 63), decode(repeat('00', 3000000), 'hex')),
           (8, ' leading and trailing  ', ' x ', 'ab', ' ', ' ', '\x20'),
           (9, E'\\N \\. NULL null', '\N', 'NULL', 'N', 'NULL', '\x5c4e'),
           (10, E'\u2028\u2029\ufeff\u200b zero-width', E'\u200b', E'\ufeff', '~', 'bom', '\xefbbbf');
         INSERT INTO strs SELECT 11, 'eight megabytes', 'big', 'big', 'B', 'big',
                                 decode(string_agg(md5(g::text), '' ORDER BY g), 'hex')
           FROM generate_series(1, 524288) g;
         INSERT INTO strs SELECT g, 'row ' || g || ' ' || chr(256 + g), 'v' || g, g::text, chr(65 + g % 26), 'n' || g,
                                 decode(md5(g::text), 'hex')
           FROM generate_series(12, 40) g;"#,
        "strs",
    );
    assert_eq!(rows, 40);
    // char(n) keeps its padding; the 8 MB value arrived whole.
    assert_eq!(scalar::<String>(&db.target, "SELECT c::text || '|' || octet_length(c) FROM strs WHERE id = 8"), "ab|5");
    assert_eq!(scalar::<i32>(&db.target, "SELECT octet_length(bin) FROM strs WHERE id = 11"), 8 * 1024 * 1024);
    assert_eq!(
        scalar::<String>(&db.source, "SELECT md5(bin) FROM strs WHERE id = 11"),
        scalar::<String>(&db.target, "SELECT md5(bin) FROM strs WHERE id = 11")
    );
}

#[test]
fn dates_and_times_arrive_exactly() {
    let Some(db) = setup("fidelity_times") else { return };
    copy_and_compare(
        &db,
        "CREATE TABLE times (id int PRIMARY KEY, d date, ts timestamp, tstz timestamptz, t time, ttz timetz,
                             iv interval, ts0 timestamp(0), t3 time(3));
         INSERT INTO times VALUES
           (1, 'infinity', 'infinity', 'infinity', '24:00:00', '24:00:00+00', '178000000 years', 'infinity', '00:00'),
           (2, '-infinity', '-infinity', '-infinity', '00:00:00', '00:00:00+15:59', '-178000000 years', '-infinity', '23:59:59.999'),
           (3, '4713-01-01 BC', '4713-01-01 00:00:00 BC', '4713-01-01 00:00:00+00 BC', '23:59:59.999999',
               '23:59:59.999999-15:59', '1 year 2 mons 3 days 04:05:06.789', '0001-01-01 00:00:00 BC', '12:00:00.5'),
           (4, '5874897-12-31', '9999-12-31 23:59:59.999999', '9999-12-31 23:59:59.999999+00', '12:34:56.5',
               '12:34:56+05:30', '-1 mons +2 days -00:00:01', '9999-12-31 23:59:59', '00:00:00.001'),
           (5, '2000-02-29', '2000-02-29 12:00:00.000001', '1999-12-31 23:59:59.999999-08', '00:00:00.000001',
               '00:00:00.000001-00:30', '0 seconds', '1970-01-01', '01:02:03'),
           (6, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
           (7, '0001-01-01 BC', '1970-01-01 00:00:00', '1970-01-01 00:00:00+00', '13:00', '13:00+14',
               '1 microsecond', '1999-12-31 23:59:59', '13:00'),
           (8, '1582-10-10', '1582-10-10 10:10:10.101010', '1582-10-10 10:10:10.10101+01:02:03', '10:10:10.10101',
               '10:10:10-01:02:03', '-2147483648 days -2147483648 mons', '1582-10-10 10:10:10', '10:10:10.101'),
           (9, '2038-01-19', '2038-01-19 03:14:07.999999', '2038-01-19 03:14:07.999999+00', '03:14:07',
               '03:14:07+00', '2147483647 days 2147483647 mons 2562047788:00:54.775807', '2038-01-19 03:14:08', '03:14:07.999'),
           (10, '4714-11-24 BC', '4714-11-24 00:00:00 BC', '4714-11-24 00:00:00+00 BC', '00:00', '00:00-15:59',
               '-2147483648 days -2147483648 mons -2562047788:00:54.775807', '4714-11-24 00:00:00 BC', '00:00');
         INSERT INTO times
         SELECT g, '2000-01-01'::date + g * 1000, '1900-01-01'::timestamp + g * interval '1234567.891011 s',
                '1900-01-01 00:00:00+00'::timestamptz - g * interval '987654.321 s', '00:00'::time + g * interval '1234.5 s',
                ('00:00'::time + g * interval '97 s')::timetz, g * interval '1 day 1.5 s' - interval '3 mons',
                '2000-01-01'::timestamp(0) + g * interval '1 h', '00:00'::time(3) + g * interval '0.123 s'
           FROM generate_series(11, 45) g;",
        "times",
    );
}

/// PostgreSQL's timestamps reach 294276 AD: the last representable microseconds arrive too.
#[test]
fn timestamps_at_the_end_of_postgres_range_arrive_exactly() {
    let Some(db) = setup("fidelity_ts_max") else { return };
    copy_and_compare(
        &db,
        "CREATE TABLE far (id int PRIMARY KEY, ts timestamp, tstz timestamptz);
         INSERT INTO far VALUES
           (1, '294276-12-31 23:59:59.999999', '294276-12-31 23:59:59.999999+00'),
           (2, '294247-01-10 04:00:54.775807', '294247-01-10 04:00:54.775807+00'),
           (3, '294247-01-10 04:00:54.775808', '294247-01-10 04:00:54.775808+00'),
           (4, '4714-11-24 00:00:00 BC', '4714-11-24 00:00:00+00 BC');
         INSERT INTO far SELECT g, '294276-01-01'::timestamp + g * interval '1 day 1 us',
                                '294276-01-01 00:00:00+00'::timestamptz + g * interval '1 day 1 us'
           FROM generate_series(5, 30) g;",
        "far",
    );
}

#[test]
fn json_jsonb_and_uuid_arrive_exactly() {
    let Some(db) = setup("fidelity_json") else { return };
    let json_as_typed = r#"{"a": 1,   "a" : 2 , "b":[1,2,  3],"n":1.000, "big": 1e400}"#;
    copy_and_compare(
        &db,
        &format!(
            r#"CREATE TABLE docs (id int PRIMARY KEY, j json, jb jsonb, u uuid);
             INSERT INTO docs VALUES
               (1, '{json_as_typed}', '{{"b": 1, "a": [1, 2, {{"c": null}}], "a2": 1.000}}', '00000000-0000-0000-0000-000000000000'),
               (2, E'  [ 1,\n\t2 ]  ', '"\u00e9\u263a"', 'ffffffff-ffff-ffff-ffff-ffffffffffff'),
               (3, '"escaped \u0000 nul and \ud83d\ude00 pair"', '1e400', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'),
               (4, '1.000', '1.000', '123e4567-e89b-12d3-a456-426614174000'),
               (5, 'null', 'null', NULL),
               (6, NULL, NULL, NULL),
               (7, '{{"emoji":"😀","rtl":"שלום","ctl":"\t\n\\"}}', '{{"x": {{"y": {{"z": [true, false, null, -0.0, 1e-7]}}}}}}', 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A12'),
               (8, '{{}}', '{{}}', '00000000-0000-0000-0000-000000000001'),
               (9, '[]', '[]', '80000000-0000-0000-0000-000000000000'),
               (10, '"\"quoted\" \/ \b\f"', '"\"quoted\""', '7fffffff-ffff-ffff-ffff-ffffffffffff');
             INSERT INTO docs
             SELECT g, json_build_object('g', g, 'list', json_build_array(g, g * 1.5, g::text)),
                    jsonb_build_object('g', g, 'nested', jsonb_build_object('k' || g, repeat('x', g))),
                    md5(g::text)::uuid
               FROM generate_series(11, 40) g;"#
        ),
        "docs",
    );
    // json keeps its text as typed: whitespace, duplicate keys, number spelling.
    assert_eq!(scalar::<String>(&db.target, "SELECT j::text FROM docs WHERE id = 1"), json_as_typed);
}

#[test]
fn arrays_enums_and_domains_arrive_exactly() {
    let Some(db) = setup("fidelity_arrays") else { return };
    copy_and_compare(
        &db,
        r#"CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy', 'it''s "complicated"', 'ünïcödé 😀');
         CREATE SCHEMA extra;
         CREATE TYPE extra.color AS ENUM ('red', 'green', 'blue');
         CREATE DOMAIN posint AS int CHECK (VALUE > 0);
         CREATE DOMAIN extra.code AS varchar(10) DEFAULT 'X' CHECK (VALUE ~ '^[A-Z]+$');
         CREATE TABLE arrs (
           id int PRIMARY KEY, ia int[], ta text[], m2 int[][], e mood, ea mood[], c extra.color,
           ca extra.color[], p posint, code extra.code, pa posint[], na numeric[], ja jsonb[],
           ua uuid[], tsa timestamptz[], ba bytea[], fa float8[]);
         INSERT INTO arrs VALUES
           (1, '{1,2,3}', '{"a",NULL,"","NULL","with space","quo\"te","back\\slash","{}",","}', '{{1,2},{3,4}}',
               'happy', '{sad,happy}', 'red', '{green,red,NULL}', 5, 'ABC', '{1,2}', '{1.5,NaN,NULL,-0.000}',
               ARRAY['{"a":1}'::jsonb, 'null', NULL], '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11,NULL}',
               '{infinity,-infinity,"2000-01-01 00:00:00+00"}', '{"\\x00ff",NULL,"\\x"}', '{NaN,-0,Infinity,4.9e-324}'),
           (2, '{}', '{}', '{}', 'sad', '{}', 'blue', '{}', 1, 'Z', '{}', '{}', '{}', '{}', '{}', '{}', '{}'),
           (3, '[0:2]={7,8,9}', '{NULL}', '{{NULL,1},{2,NULL}}', 'it''s "complicated"', '{"it''s \"complicated\"",ok}',
               'green', '{blue}', 2147483647, 'QRS', '{7,NULL}', '{1e-30}', '{"[]"}', '{}', '{NULL}', '{NULL}', '{NULL}'),
           (4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
           (5, '{{{1}},{{2}}}', '{{"x","y"},{"z",NULL}}', '[-5:-4][3:4]={{1,2},{3,4}}', 'ünïcödé 😀',
               '{"ünïcödé 😀",NULL}', NULL, '{NULL}', NULL, NULL, '{{1,2},{3,4}}', '{{1.5},{2.5}}', NULL,
               NULL, NULL, NULL, '{{1.5,-1.5}}'),
           (6, '{-2147483648,2147483647}', ARRAY[repeat('t', 10000), '😀'], '{{1}}', 'ok', ARRAY[]::mood[], 'red',
               ARRAY[]::extra.color[], 3, 'AB', ARRAY[]::posint[], '{}', '{}', '{}', '{}', '{}', '{}');
         INSERT INTO arrs
         SELECT g, ARRAY[g, -g, NULL], ARRAY['t' || g, NULL], ARRAY[ARRAY[g, g + 1], ARRAY[g + 2, g + 3]],
                (enum_range(NULL::mood))[1 + g % 5], (enum_range(NULL::mood))[1 : 1 + g % 5],
                (enum_range(NULL::extra.color))[1 + g % 3], (enum_range(NULL::extra.color))[1 : g % 3],
                g, repeat('K', 1 + g % 9), ARRAY[g, g * 2]::posint[], ARRAY[g / 3.0], ARRAY[jsonb_build_object('g', g)],
                ARRAY[md5(g::text)::uuid], ARRAY['2020-01-01 00:00:00+00'::timestamptz + g * interval '1 s'],
                ARRAY[decode(md5(g::text), 'hex')], ARRAY[g / 3.0::float8]
           FROM generate_series(7, 40) g;"#,
        "arrs",
    );
    // The types exist on the target as types (not as text): enum order and domain checks hold.
    assert_eq!(
        scalar::<String>(&db.target, "SELECT enum_range(NULL::mood)::text"),
        scalar::<String>(&db.source, "SELECT enum_range(NULL::mood)::text")
    );
    let check = crate::common::connect(&db.target).batch_execute("INSERT INTO arrs (id, p) VALUES (1000, 0)");
    assert!(check.is_err(), "the posint domain's CHECK should hold on the target");
}
