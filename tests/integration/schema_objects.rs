//! PostgreSQL → PostgreSQL: the objects around the rows arrive (pg_dump's pre-data before the
//! load, post-data after it), with the options that choose what is created, the refusals that
//! come before anything is written, and a foreign key whose validation fails.

use crate::common::*;

/// A small schema with an object of most classes: types, a sequence a default uses, a
/// partitioned table of two levels with default partitions, inheritance, foreign keys (self
/// and composite), a view, a populated materialized view, a trigger, RLS, a comment, a large
/// object, an UNLOGGED table, a zero-column and a generated-only table.
const SCHEMA: &str = r#"
CREATE SCHEMA "Shop";
CREATE TYPE "Shop".mood AS ENUM ('Happy', 'sad');
CREATE SEQUENCE "Shop".ticket_seq START 1000;
CREATE TABLE "Shop".customers (id int PRIMARY KEY, name text NOT NULL, mood "Shop".mood DEFAULT 'Happy',
    ticket bigint DEFAULT nextval('"Shop".ticket_seq'));
CREATE TABLE "Shop".orders (id bigserial PRIMARY KEY, customer_id int REFERENCES "Shop".customers (id),
    parent_id bigint REFERENCES "Shop".orders (id), placed date NOT NULL);
CREATE INDEX orders_placed ON "Shop".orders (placed);
CREATE TABLE "Shop".lines (order_id bigint, no int, qty int, PRIMARY KEY (order_id, no));
CREATE TABLE "Shop".notes (order_id bigint, no int, body text,
    FOREIGN KEY (order_id, no) REFERENCES "Shop".lines (order_id, no));
CREATE TABLE "Shop".events (id int, at date NOT NULL, v text, PRIMARY KEY (id, at, v)) PARTITION BY RANGE (at);
CREATE TABLE "Shop".events_2024 PARTITION OF "Shop".events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')
    PARTITION BY LIST (v);
CREATE TABLE "Shop".events_2024_a PARTITION OF "Shop".events_2024 FOR VALUES IN ('a');
CREATE TABLE "Shop".events_2024_rest PARTITION OF "Shop".events_2024 DEFAULT;
CREATE TABLE "Shop".events_rest PARTITION OF "Shop".events DEFAULT;
CREATE VIEW "Shop".big_customers AS SELECT * FROM "Shop".customers WHERE id > 10;
CREATE MATERIALIZED VIEW "Shop".per_customer AS SELECT customer_id, count(*) AS n FROM "Shop".orders GROUP BY 1;
CREATE FUNCTION "Shop".touch() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN NEW.placed := now(); RETURN NEW; END$$;
CREATE TRIGGER touch BEFORE UPDATE ON "Shop".orders FOR EACH ROW EXECUTE FUNCTION "Shop".touch();
CREATE UNLOGGED TABLE "Shop".cache (k text PRIMARY KEY, v jsonb) WITH (fillfactor = 70);
CREATE TABLE "Shop".only_generated (g int GENERATED ALWAYS AS (1) STORED);
CREATE TABLE "Shop".nothing ();
CREATE TABLE parent_t (id int PRIMARY KEY, a text);
CREATE TABLE child_t (b int) INHERITS (parent_t);
INSERT INTO "Shop".customers SELECT g, 'c' || g, (CASE WHEN g % 2 = 0 THEN 'Happy' ELSE 'sad' END)::"Shop".mood
    FROM generate_series(1, 50) g;
INSERT INTO "Shop".orders (customer_id, placed) SELECT g % 50 + 1, date '2024-01-01' + g % 300 FROM generate_series(1, 1000) g;
UPDATE "Shop".orders SET parent_id = id - 1 WHERE id > 1;
INSERT INTO "Shop".lines SELECT g, 1, g FROM generate_series(1, 100) g;
INSERT INTO "Shop".notes SELECT g, 1, 'n' FROM generate_series(1, 100) g;
INSERT INTO "Shop".events SELECT g, date '2023-06-01' + g, CASE WHEN g % 2 = 0 THEN 'a' ELSE 'b' END
    FROM generate_series(1, 900) g;
INSERT INTO "Shop".cache SELECT 'k' || g, '{}' FROM generate_series(1, 10) g;
INSERT INTO "Shop".only_generated DEFAULT VALUES;
INSERT INTO "Shop".nothing DEFAULT VALUES;
INSERT INTO "Shop".nothing DEFAULT VALUES;
INSERT INTO parent_t VALUES (1, 'p');
INSERT INTO child_t VALUES (2, 'c', 3);
ALTER TABLE "Shop".customers ENABLE ROW LEVEL SECURITY;
CREATE POLICY positive ON "Shop".customers USING (id > 0);
COMMENT ON TABLE "Shop".customers IS 'people';
SELECT lo_from_bytea(0, 'hello large object');
SELECT nextval('"Shop".ticket_seq');
REFRESH MATERIALIZED VIEW "Shop".per_customer;
"#;

#[track_caller]
fn assert_same_schema(db: &TestDbs) {
    if let Some(diff) = crate::whole_db::schema_difference(&db.source, &db.target) {
        panic!("the target's schema differs from the source's:\n{diff}");
    }
}

#[test]
fn a_default_copy_brings_every_object_and_the_schema_dumps_match() {
    let Some(db) = setup("objects_default") else { return };
    exec(&db.source, SCHEMA);
    let report = db.dir.join("report.json");
    let run = db.copy(&["--progress", "none", "--report", report.to_str().unwrap()]).ok();
    assert!(run.stderr.contains("schema:"), "{run:?}");
    assert_same_schema(&db);
    // Rows, read with ONLY on both sides: inheritance parents hold only their own.
    run_verify(&db);
    let q = |url: &str, sql: &str| texts(url, sql);
    for sql in [
        "SELECT last_value::text FROM \"Shop\".ticket_seq",
        "SELECT count(*)::text FROM \"Shop\".per_customer",
        "SELECT string_agg(conname || ':' || convalidated, ',' ORDER BY conname) FROM pg_constraint WHERE contype = 'f'
            AND connamespace::regnamespace::text <> 'rangecopy'",
        "SELECT string_agg(lo_get(oid)::text, ',') FROM pg_largeobject_metadata",
        "SELECT count(*)::text FROM \"Shop\".nothing",
        "SELECT count(*)::text FROM ONLY parent_t",
    ] {
        assert_eq!(q(&db.source, sql), q(&db.target, sql), "{sql}");
    }
    let analyzed: i64 = scalar(
        &db.target,
        "SELECT count(*) FROM pg_stat_user_tables WHERE schemaname <> 'rangecopy' AND last_analyze IS NULL
            AND relname NOT IN ('per_customer')",
    );
    assert_eq!(analyzed, 0, "every loaded table is analyzed");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let objects = json["schema"]["objects"].as_array().expect("the report lists the objects");
    assert!(objects.iter().any(|o| o["kind"] == "FK CONSTRAINT" && o["status"] == "done"), "{json}");
    assert!(objects.iter().all(|o| o["status"] == "done"), "{json}");
}

fn run_verify(db: &TestDbs) {
    let out = run(&["verify", "--source", &db.source, "--target", &db.target, "--job", db.job()]);
    assert_eq!(out.code, 0, "verify: {out:?}");
}

#[test]
fn a_named_partitioned_table_is_copied_leaf_by_leaf_with_its_parents() {
    let Some(db) = setup("objects_partitions") else { return };
    exec(&db.source, SCHEMA);
    db.copy(&["--progress", "none", "\"Shop\".events"]).ok();
    let leaves = texts(
        &db.target,
        "SELECT string_agg(c.relname || '=' || pg_get_expr(c.relpartbound, c.oid), ';' ORDER BY c.relname)
           FROM pg_class c WHERE c.relispartition",
    );
    let source_leaves = texts(
        &db.source,
        "SELECT string_agg(c.relname || '=' || pg_get_expr(c.relpartbound, c.oid), ';' ORDER BY c.relname)
           FROM pg_class c WHERE c.relispartition",
    );
    assert_eq!(leaves, source_leaves);
    let rows: i64 = scalar(&db.target, "SELECT count(*) FROM \"Shop\".events");
    assert_eq!(rows, 900);
    let others: i64 = scalar(&db.target, "SELECT count(*) FROM pg_class WHERE relname IN ('customers', 'orders')");
    assert_eq!(others, 0, "tables not named are not created");
}

#[test]
fn exclude_table_leaves_tables_out_and_lists_what_needed_them() {
    let Some(mut db) = setup("objects_exclude") else { return };
    exec(&db.source, SCHEMA);
    let report = db.dir.join("report.json");
    db.copy(&["--progress", "none", "--exclude-table", "\"Shop\".cust*", "--report", report.to_str().unwrap()]).ok();
    let customers: i64 = scalar(&db.target, "SELECT count(*) FROM pg_class WHERE relname = 'customers'");
    assert_eq!(customers, 0);
    let orders: i64 = scalar(&db.target, "SELECT count(*) FROM \"Shop\".orders");
    assert_eq!(orders, 1000);
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let failed: Vec<&serde_json::Value> =
        json["schema"]["objects"].as_array().unwrap().iter().filter(|o| o["status"] == "failed").collect();
    // The view over customers and the foreign key to it cannot exist without it, and say why.
    assert!(failed.iter().any(|o| o["name"].as_str().unwrap().contains("big_customers")), "{json}");
    assert!(failed.iter().all(|o| o["detail"].as_str().is_some_and(|d| d.contains("customers"))), "{json}");
    // The page for people says the same: what needs attention first, with the reasons.
    let page = db.dir.join("report.html");
    let other = db.extra_target("html");
    db.copy_to(
        &other,
        &["--progress", "none", "--exclude-table", "\"Shop\".cust*", "--report", page.to_str().unwrap()],
    )
    .ok();
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("<h2>Schema</h2>") && html.contains("Needs attention"), "{html}");
    assert!(html.contains("big_customers") && html.contains("customers"), "{html}");
}

#[test]
fn schema_only_creates_the_objects_without_rows_and_data_only_loads_into_them() {
    let Some(db) = setup("objects_schema_only") else { return };
    exec(&db.source, SCHEMA);
    db.copy(&["--progress", "none", "--schema-only", "--job", "schema"]).ok();
    assert_same_schema(&db);
    let rows: i64 = scalar(&db.target, "SELECT count(*) FROM \"Shop\".orders");
    assert_eq!(rows, 0);
    // The tables exist now, with their foreign keys: rows load whatever order tables and
    // chunks commit in (a child's rows before its parent's; orders referencing earlier orders
    // in later chunks), as pg_restore's --disable-triggers would.
    let args = ["--progress", "none", "--data-only", "--job", "rows", "--chunk-rows", "100", "--workers", "2"];
    db.copy(&args).ok();
    for (table, expected) in [("\"Shop\".orders", 1000), ("\"Shop\".notes", 100), ("\"Shop\".nothing", 2)] {
        let rows: i64 = scalar(&db.target, &format!("SELECT count(*) FROM {table}"));
        assert_eq!(rows, expected, "{table}");
    }
}

#[test]
fn data_only_refuses_missing_tables_and_tables_made_by_hand_are_loaded_as_they_are() {
    let Some(db) = setup("objects_refusals") else { return };
    exec(&db.source, SCHEMA);
    assert_writes_nothing(&db.target, || {
        db.copy(&["--progress", "none", "--data-only"]).refused(&["--data-only", "do not", "create them first"]);
    });
    exec(&db.target, "CREATE TABLE parent_t (id int PRIMARY KEY, a text); COMMENT ON TABLE parent_t IS 'by hand'");
    db.copy(&["--progress", "none"]).ok();
    let comment: Option<String> = scalar(&db.target, "SELECT obj_description('parent_t'::regclass, 'pg_class')");
    assert_eq!(comment.as_deref(), Some("by hand"), "the table made by hand is kept");
    let rows: i64 = scalar(&db.target, "SELECT count(*) FROM \"Shop\".orders");
    assert_eq!(rows, 1000);
}

#[test]
fn a_missing_extension_is_refused_up_front_naming_it() {
    let Some(db) = setup("objects_extension") else { return };
    // An extension the source has and the target server lacks is simulated by a made-up
    // name: the catalog entry is what pg_dump reads.
    exec(&db.source, "CREATE EXTENSION IF NOT EXISTS citext; CREATE TABLE t (id int PRIMARY KEY, e citext)");
    exec(&db.source, "INSERT INTO t VALUES (1, 'A')");
    exec(&db.source, "UPDATE pg_extension SET extname = 'rangecopy_no_such_extension' WHERE extname = 'citext'");
    let refused = db.copy(&["--progress", "none"]);
    exec(&db.source, "UPDATE pg_extension SET extname = 'citext' WHERE extname = 'rangecopy_no_such_extension'");
    refused.refused(&["rangecopy_no_such_extension", "not available on the target", "nothing was written"]);
}

#[test]
fn a_foreign_key_that_rows_violate_is_left_not_valid_and_named() {
    let Some(db) = setup("objects_fk_violation") else { return };
    exec(
        &db.source,
        "CREATE TABLE p (id int PRIMARY KEY); CREATE TABLE c (id int PRIMARY KEY, p int);
         INSERT INTO p VALUES (1); INSERT INTO c VALUES (1, 1), (2, 2);
         ALTER TABLE c ADD CONSTRAINT c_p_fkey FOREIGN KEY (p) REFERENCES p (id) NOT VALID;
         UPDATE pg_constraint SET convalidated = true WHERE conname = 'c_p_fkey'",
    );
    let report = db.dir.join("report.json");
    let run = db.copy(&["--progress", "none", "--report", report.to_str().unwrap()]).ok();
    assert!(run.stderr.contains("c_p_fkey") && run.stderr.contains("validation failed"), "{run:?}");
    let rows: i64 = scalar(&db.target, "SELECT count(*) FROM c");
    assert_eq!(rows, 2, "the rows stay");
    let valid: bool = scalar(&db.target, "SELECT convalidated FROM pg_constraint WHERE conname = 'c_p_fkey'");
    assert!(!valid, "the constraint stays, not valid");
    let status = db.status(db.job()).ok();
    assert!(status.stdout.contains("1 failed"), "{status:?}");
}
