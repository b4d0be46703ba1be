//! Which tables are copied and under which names: every base table when none is named,
//! `schema.name` and bare names resolved as SQL would, identifiers of any shape, partitioned
//! tables once, and table definitions (defaults, identity, serial, generated columns,
//! constraints, indexes) recreated on the target.

use crate::common::{
    assert_chunks_tile, assert_same_indexes, assert_same_table, connect, exec, quote_literal, scalar, setup, texts,
};

/// Base tables on the target outside the system schemas and rangecopy's own, as `schema.name`.
fn target_tables(url: &str) -> Vec<String> {
    texts(
        url,
        "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'rangecopy')
            AND n.nspname !~ '^pg_toast'
          ORDER BY 1",
    )
    .into_iter()
    .flatten()
    .collect()
}

#[test]
fn no_table_arguments_copy_every_base_table_of_every_user_schema() {
    let Some(db) = setup("names_all") else { return };
    exec(
        &db.source,
        "CREATE SCHEMA s1; CREATE SCHEMA s2;
         CREATE TABLE s1.t1 (id int PRIMARY KEY, v text); INSERT INTO s1.t1 SELECT g, 's1t1 ' || g FROM generate_series(1, 30) g;
         CREATE TABLE s1.t2 (id int PRIMARY KEY, v text); INSERT INTO s1.t2 SELECT g, 's1t2 ' || g FROM generate_series(1, 20) g;
         CREATE TABLE s2.t1 (id int PRIMARY KEY, v int); INSERT INTO s2.t1 SELECT g, -g FROM generate_series(1, 25) g;
         CREATE TABLE s2.t3 (k text PRIMARY KEY); INSERT INTO s2.t3 SELECT 'k' || g FROM generate_series(1, 15) g;
         CREATE TABLE public.p1 (id int PRIMARY KEY); INSERT INTO public.p1 VALUES (1), (2);
         CREATE TABLE s2.empty (id int PRIMARY KEY);
         CREATE VIEW s1.v AS SELECT * FROM s1.t1;
         CREATE MATERIALIZED VIEW s2.mv AS SELECT * FROM s2.t1;
         CREATE SEQUENCE s1.lonely_seq;",
    );
    db.copy(&["--chunk-rows", "8"]).ok();
    assert_eq!(target_tables(&db.target), ["public.p1", "s1.t1", "s1.t2", "s2.empty", "s2.t1", "s2.t3"]);
    for t in ["s1.t1", "s1.t2", "s2.t1", "public.p1", "s2.empty"] {
        assert_same_table(&db, t, "t.id");
        assert_same_indexes(&db, t);
    }
    assert_same_table(&db, "s2.t3", "t.k");
    // Views are created as views (their rows are not copied; the materialized view is
    // refreshed from the copied rows).
    let views: Vec<Option<String>> = texts(
        &db.target,
        "SELECT relname || ':' || relkind::text FROM pg_class WHERE relname IN ('v', 'mv') ORDER BY 1",
    );
    assert_eq!(views, [Some("mv:m".to_string()), Some("v:v".to_string())]);
    let mv_rows: i64 = scalar(&db.target, "SELECT count(*) FROM s2.mv");
    assert_eq!(mv_rows, 25);
    let tables: i64 =
        scalar(&db.target, &format!("SELECT count(*) FROM rangecopy.tables WHERE job = {}", quote_literal(db.job())));
    assert_eq!(tables, 6);
}

#[test]
fn named_tables_resolve_like_sql_names() {
    let Some(db) = setup("names_resolve") else { return };
    exec(
        &db.source,
        r#"CREATE SCHEMA shop; CREATE SCHEMA audit;
           CREATE TABLE public.orders (id int PRIMARY KEY, who text); INSERT INTO public.orders VALUES (1, 'public');
           CREATE TABLE shop.orders (id int PRIMARY KEY, who text); INSERT INTO shop.orders VALUES (1, 'shop'), (2, 'shop');
           CREATE TABLE shop.items (id int PRIMARY KEY); INSERT INTO shop.items VALUES (1), (2), (3);
           CREATE TABLE audit.log (id int PRIMARY KEY); INSERT INTO audit.log VALUES (1);
           CREATE TABLE public."Customers" (id int PRIMARY KEY); INSERT INTO public."Customers" VALUES (7);
           CREATE TABLE public.customers (id int PRIMARY KEY); INSERT INTO public.customers VALUES (8);
           CREATE TABLE shop.untouched (id int PRIMARY KEY);"#,
    );
    // `shop.orders` qualified; `items` only exists in shop; `AUDIT.LOG` folds to audit.log
    // as SQL folds unquoted names; `"Customers"` is quoted, so exact.
    db.copy(&["shop.orders", "items", "AUDIT.LOG", r#""Customers""#]).ok();
    assert_eq!(target_tables(&db.target), ["audit.log", r#"public.Customers"#, "shop.items", "shop.orders"]);
    assert_eq!(scalar::<i64>(&db.target, r#"SELECT sum(id) FROM public."Customers""#), 7);
    assert_same_table(&db, "shop.orders", "t.id");
}

/// An unqualified name found in several schemas means the first of them on the search path,
/// as it would in SQL (here `public`, PostgreSQL's default search path).
#[test]
fn bare_name_in_several_schemas_means_the_one_on_the_search_path() {
    let Some(db) = setup("names_search_path") else { return };
    exec(
        &db.source,
        "CREATE SCHEMA shop;
         CREATE TABLE public.orders (id int PRIMARY KEY, who text); INSERT INTO public.orders VALUES (1, 'public');
         CREATE TABLE shop.orders (id int PRIMARY KEY, who text); INSERT INTO shop.orders VALUES (1, 'shop');",
    );
    db.copy(&["orders"]).ok();
    assert_eq!(target_tables(&db.target), ["public.orders"]);
    assert_eq!(scalar::<String>(&db.target, "SELECT who FROM public.orders"), "public");
}

#[test]
fn identifiers_with_spaces_dots_quotes_and_case_are_copied_exactly() {
    let Some(db) = setup("names_odd") else { return };
    exec(
        &db.source,
        r#"CREATE SCHEMA "My Schema";
           CREATE TABLE "My Schema"."we""ird.table" ("Col A" int, "select" text, "x""y" text, "ÄÖ ü" text,
                                                    PRIMARY KEY ("Col A", "select"));
           CREATE INDEX "idx with ""quotes"".and dots" ON "My Schema"."we""ird.table" ("x""y");
           INSERT INTO "My Schema"."we""ird.table" SELECT g % 3, 's' || g, 'q"' || g, 'ü' || g FROM generate_series(1, 40) g;
           CREATE TABLE "My Schema"."MixedCase" ("Id" int PRIMARY KEY); INSERT INTO "My Schema"."MixedCase" VALUES (1), (2);
           CREATE TABLE public."it's $cost; * `x` \ & |" (id int PRIMARY KEY, "$v" text);
           INSERT INTO public."it's $cost; * `x` \ & |" SELECT g, '$' || g FROM generate_series(1, 12) g;"#,
    );
    db.copy(&[
        r#""My Schema"."we""ird.table""#,
        r#""My Schema"."MixedCase""#,
        r#"it's $cost; * `x` \ & |"#,
        "--chunk-rows",
        "5",
    ])
    .ok();
    assert_eq!(
        target_tables(&db.target),
        [r#"My Schema.MixedCase"#, r#"My Schema.we"ird.table"#, r#"public.it's $cost; * `x` \ & |"#]
    );
    let weird = r#""My Schema"."we""ird.table""#;
    let rows = assert_same_table(&db, weird, r#"t."Col A", t."select""#);
    assert_same_indexes(&db, weird);
    assert_chunks_tile(&db.target, db.job(), r#"My Schema.we"ird.table"#, 5, rows);
    assert_same_table(&db, r#""My Schema"."MixedCase""#, r#"t."Id""#);
    let costly = r#"public."it's $cost; * `x` \ & |""#;
    assert_same_table(&db, costly, "t.id");
    assert_same_indexes(&db, costly);
}

#[test]
fn partitioned_table_stays_partitioned_and_each_leaf_is_copied_as_a_table() {
    let Some(db) = setup("names_partitioned") else { return };
    exec(
        &db.source,
        "CREATE TABLE ev (id int, region text, v text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
         CREATE TABLE ev_eu PARTITION OF ev FOR VALUES IN ('eu');
         CREATE TABLE ev_us PARTITION OF ev FOR VALUES IN ('us');
         CREATE TABLE ev_asia PARTITION OF ev FOR VALUES IN ('asia') PARTITION BY RANGE (id);
         CREATE TABLE ev_asia_low PARTITION OF ev_asia FOR VALUES FROM (MINVALUE) TO (100);
         CREATE TABLE ev_asia_high PARTITION OF ev_asia FOR VALUES FROM (100) TO (MAXVALUE);
         CREATE TABLE ev_other PARTITION OF ev DEFAULT;
         CREATE INDEX ev_v ON ev (v);
         INSERT INTO ev SELECT g, (ARRAY['eu', 'us', 'asia', 'mars'])[1 + g % 4], md5(g::text) FROM generate_series(1, 400) g;
         CREATE TABLE plain (id int PRIMARY KEY); INSERT INTO plain VALUES (1);",
    );
    db.copy(&["--chunk-rows", "30"]).ok();
    let leaves = ["public.ev_asia_high", "public.ev_asia_low", "public.ev_eu", "public.ev_other", "public.ev_us"];
    let recorded: Vec<Option<String>> = texts(
        &db.target,
        &format!("SELECT source_table FROM rangecopy.tables WHERE job = {} ORDER BY 1", quote_literal(db.job())),
    );
    let mut expected: Vec<Option<String>> = leaves.iter().map(|l| Some(l.to_string())).collect();
    expected.push(Some("public.plain".into()));
    assert_eq!(recorded, expected, "each leaf is a table of the job; parents hold no rows");
    let kinds =
        "SELECT string_agg(relname || ':' || relkind::text || ':' || coalesce(pg_get_expr(relpartbound, oid), ''), ', '
                   ORDER BY relname) FROM pg_class WHERE relname LIKE 'ev%' AND relkind IN ('r', 'p')";
    assert_eq!(texts(&db.target, kinds), texts(&db.source, kinds), "the same tree with the same bounds");
    let rows = assert_same_table(&db, "ev", "t.id, t.region");
    assert_eq!(rows, 400);
    assert_chunks_tile(&db.target, db.job(), "public.ev_eu", 30, 100);
    let indexes = "SELECT string_agg(c.relname || ':' || i.indisvalid, ', ' ORDER BY c.relname)
                     FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname LIKE 'ev%'";
    assert_eq!(texts(&db.target, indexes), texts(&db.source, indexes), "every index, attached and valid");
}

#[test]
fn table_definition_is_recreated_with_defaults_generated_columns_checks_and_indexes() {
    let Some(db) = setup("names_definition") else { return };
    exec(
        &db.source,
        "CREATE TABLE items (
           id int PRIMARY KEY,
           sku text NOT NULL UNIQUE,
           qty int NOT NULL DEFAULT 1 CHECK (qty >= 0),
           price numeric(10, 2) DEFAULT 9.99,
           total numeric GENERATED ALWAYS AS (qty * price) STORED,
           created date DEFAULT '2020-02-02',
           note text COLLATE \"C\",
           CONSTRAINT price_positive CHECK (price > 0),
           CONSTRAINT note_short CHECK (length(note) < 100) NOT VALID
         );
         CREATE INDEX items_note_idx ON items (note);
         CREATE INDEX items_partial_idx ON items (qty) WHERE qty > 100;
         CREATE UNIQUE INDEX items_lower_sku ON items (lower(sku));
         CREATE INDEX items_multi ON items USING btree (created DESC, qty) INCLUDE (price);
         INSERT INTO items (id, sku, qty, price, note)
         SELECT g, 'sku-' || g, g % 150, (g % 50) + 0.5, CASE WHEN g % 4 = 0 THEN NULL ELSE 'note ' || g END
           FROM generate_series(1, 200) g;",
    );
    db.copy(&["--chunk-rows", "16"]).ok();
    let rows = assert_same_table(&db, "items", "t.id");
    assert_eq!(rows, 200);
    assert_same_indexes(&db, "items");
    assert_chunks_tile(&db.target, db.job(), "public.items", 16, rows);

    // Defaults and generated columns work on the target; constraints hold.
    let mut t = connect(&db.target);
    let row = t
        .query_one(
            "INSERT INTO items (id, sku) VALUES (1000, 'new') RETURNING qty, price::text, total::text, created::text",
            &[],
        )
        .expect("inserting with defaults");
    let got: (i32, String, String, String) = (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(got, (1, "9.99".into(), "9.99".into(), "2020-02-02".into()));
    assert!(
        t.batch_execute("INSERT INTO items (id, sku, qty) VALUES (1001, 'neg', -1)").is_err(),
        "CHECK (qty >= 0) must hold"
    );
    assert!(
        t.batch_execute("INSERT INTO items (id, sku, price) VALUES (1002, 'free', 0)").is_err(),
        "price_positive must hold"
    );
    assert!(t.batch_execute("INSERT INTO items (id, sku) VALUES (1003, 'sku-1')").is_err(), "UNIQUE (sku) must hold");
    assert!(t.batch_execute("INSERT INTO items (id, sku) VALUES (1, 'dup')").is_err(), "the primary key must hold");
}

/// Every sequence of the target database as `name type start min max increment cycle`.
fn sequences(url: &str) -> String {
    scalar(
        url,
        "SELECT coalesce(string_agg(format('%s.%s %s start=%s min=%s max=%s inc=%s cycle=%s', schemaname, sequencename,
                data_type, start_value, min_value, max_value, increment_by, cycle), E'\\n' ORDER BY sequencename), '')
           FROM pg_sequences",
    )
}

#[test]
fn serial_column_gets_its_own_sequence_continuing_after_the_copied_rows() {
    let Some(db) = setup("names_serial") else { return };
    exec(
        &db.source,
        "CREATE TABLE tickets (id serial PRIMARY KEY, big bigserial, v text);
         INSERT INTO tickets (v) SELECT 't' || g FROM generate_series(1, 120) g;
         DELETE FROM tickets WHERE id > 110;
         SELECT nextval('tickets_id_seq') FROM generate_series(1, 5);",
    );
    db.copy(&["--chunk-rows", "16"]).ok();
    assert_same_table(&db, "tickets", "t.id");
    assert_eq!(sequences(&db.target), sequences(&db.source), "sequence definitions differ");
    // The sequences belong to their columns, as on the source (dropping the table drops them).
    for col in ["id", "big"] {
        let owner = format!("SELECT pg_get_serial_sequence('tickets', '{col}')");
        assert_eq!(scalar::<Option<String>>(&db.target, &owner), scalar::<Option<String>>(&db.source, &owner), "{col}");
    }
    // They continue where the source's are, past every copied value.
    for seq in ["tickets_id_seq", "tickets_big_seq"] {
        let next = format!("SELECT nextval('{seq}')");
        assert_eq!(scalar::<i64>(&db.target, &next), scalar::<i64>(&db.source, &next), "{seq}");
    }
    let id: i32 = scalar(&db.target, "INSERT INTO tickets (v) VALUES ('new') RETURNING id");
    assert!(id > 120, "a new row's id {id} must not collide with copied or used ones");
}

#[test]
fn identity_columns_keep_their_options_and_continue_after_the_copied_rows() {
    let Some(db) = setup("names_identity") else { return };
    exec(
        &db.source,
        "CREATE TABLE \"Events\" (
           id bigint GENERATED BY DEFAULT AS IDENTITY (START WITH 1000 INCREMENT BY 7) PRIMARY KEY,
           \"Seq No\" int GENERATED ALWAYS AS IDENTITY,
           v text);
         INSERT INTO \"Events\" (v) SELECT 'e' || g FROM generate_series(1, 150) g;
         DELETE FROM \"Events\" WHERE v IN ('e149', 'e150');",
    );
    db.copy(&["--chunk-rows", "16"]).ok();
    assert_same_table(&db, r#""Events""#, "t.id");
    assert_eq!(sequences(&db.target), sequences(&db.source), "sequence definitions differ");
    let new_row = r#"INSERT INTO "Events" (v) VALUES ('new') RETURNING id::text || ' ' || "Seq No""#;
    assert_eq!(scalar::<String>(&db.target, new_row), scalar::<String>(&db.source, new_row));
    assert!(
        connect(&db.target).batch_execute(r#"INSERT INTO "Events" ("Seq No", v) VALUES (1, 'x')"#).is_err(),
        "GENERATED ALWAYS must still refuse explicit values"
    );
}
