//! MySQL/MariaDB → PostgreSQL: the objects around the rows. ENUM labels as the source has them,
//! foreign keys added `NOT VALID` then validated, CHECK constraints, `ON UPDATE
//! CURRENT_TIMESTAMP` as a trigger, FULLTEXT indexes, BIGINT UNSIGNED AUTO_INCREMENT, NOT NULL
//! zero-date columns, and views, triggers and routines listed with their source SQL.
//!
//! Each test copies a MariaDB database of its own end to end with `rangecopy copy` and checks
//! the target through PostgreSQL's catalog and by using the objects (inserts, updates, deletes).

use crate::common::{self, scalar, texts};
use crate::mysql::{copy, my_exec, my_setup};

/// `(kind, name, status, outcome)` of every object the job recorded, in order.
fn objects(target: &str) -> Vec<String> {
    texts(
        target,
        "SELECT concat_ws(' | ', kind, name, status, definition->'outcome'->>'outcome') FROM rangecopy.objects ORDER BY object_no",
    )
    .into_iter()
    .flatten()
    .collect()
}

#[test]
fn enum_labels_keep_their_case_and_enum_and_set_defaults_are_kept() {
    let Some((db, my)) = my_setup("my_enum_case") else { return };
    my_exec(
        &my.url,
        "CREATE TABLE sizes (
           id int PRIMARY KEY,
           size ENUM('Small', 'MEDIUM', 'large', 'it''s') NOT NULL DEFAULT 'MEDIUM',
           colors SET('Red', 'Green', 'BLUE') DEFAULT 'Red,BLUE'
         );
         INSERT INTO sizes VALUES (1, 'Small', 'Green'), (2, 'large', 'Red,BLUE'), (3, 'it''s', '');
         INSERT INTO sizes (id) VALUES (4);",
    );
    copy(&my, &db.target, &[]).ok();
    let t = format!("\"{}\".sizes", my.name);
    let labels: String = scalar(
        &db.target,
        &format!(
            "SELECT string_agg(enumlabel, ',' ORDER BY enumsortorder) FROM pg_enum
              WHERE enumtypid = (SELECT atttypid FROM pg_attribute WHERE attrelid = '{t}'::regclass AND attname = 'size')"
        ),
    );
    assert_eq!(labels, "Small,MEDIUM,large,it's");
    let rows = texts(&db.target, &format!("SELECT concat_ws('|', id, size, colors) FROM {t} ORDER BY id"));
    assert_eq!(
        rows,
        [
            Some("1|Small|Green".into()),
            Some("2|large|Red,BLUE".into()),
            Some("3|it's|".into()),
            Some("4|MEDIUM|Red,BLUE".into())
        ]
    );
    // The defaults work on the target as they do on the source.
    common::exec(&db.target, &format!("INSERT INTO {t} (id) VALUES (5)"));
    let new: String = scalar(&db.target, &format!("SELECT concat_ws('|', size, colors) FROM {t} WHERE id = 5"));
    assert_eq!(new, "MEDIUM|Red,BLUE");
}

#[test]
fn foreign_keys_arrive_validated_with_their_actions_and_one_to_a_table_left_out_is_listed() {
    let Some((db, my)) = my_setup("my_fks") else { return };
    my_exec(
        &my.url,
        "CREATE TABLE region (code char(2) NOT NULL, sub int NOT NULL, PRIMARY KEY (code, sub));
         CREATE TABLE elsewhere (id int PRIMARY KEY);
         CREATE TABLE shop (
           id int PRIMARY KEY,
           parent int NULL,
           code char(2) NULL, sub int NULL,
           other int NULL,
           CONSTRAINT shop_parent FOREIGN KEY (parent) REFERENCES shop (id) ON DELETE SET NULL,
           CONSTRAINT shop_region FOREIGN KEY (code, sub) REFERENCES region (code, sub) ON DELETE CASCADE ON UPDATE CASCADE,
           CONSTRAINT shop_other FOREIGN KEY (other) REFERENCES elsewhere (id)
         );
         INSERT INTO region VALUES ('DE', 1), ('FR', 2);
         INSERT INTO elsewhere VALUES (7);
         INSERT INTO shop VALUES (1, NULL, 'DE', 1, 7), (2, 1, 'DE', 1, NULL), (3, 2, 'FR', 2, NULL);",
    );
    copy(&my, &db.target, &["region", "shop", "--chunk-rows", "2"]).ok();
    let s = &my.name;
    let fks = texts(
        &db.target,
        &format!(
            "SELECT conname || ' ' || pg_get_constraintdef(oid) || ' ' || convalidated FROM pg_constraint
              WHERE contype = 'f' AND connamespace = '\"{s}\"'::regnamespace ORDER BY conname"
        ),
    );
    assert_eq!(
        fks,
        [
            Some(
                format!("shop_parent FOREIGN KEY (parent) REFERENCES {s}.shop(id) ON UPDATE RESTRICT ON DELETE SET NULL true")
            ),
            Some(format!("shop_region FOREIGN KEY (code, sub) REFERENCES {s}.region(code, sub) ON UPDATE CASCADE ON DELETE CASCADE true")),
        ]
    );
    let listed = objects(&db.target);
    let other = listed.iter().find(|o| o.contains("shop_other")).expect("the FK to a table left out is listed");
    assert!(other.starts_with("FK CONSTRAINT |") && other.ends_with("| listed | not-carried"), "{other}");
    let todo: String = scalar(
        &db.target,
        "SELECT definition->'outcome'->>'todo' FROM rangecopy.objects WHERE name LIKE '%shop_other'",
    );
    assert!(todo.contains("elsewhere") && todo.contains("not copied"), "{todo}");
    for fk in ["shop_parent", "shop_region"] {
        let line = listed.iter().find(|o| o.contains(fk)).expect("recorded");
        assert!(line.ends_with("| done | translated"), "{line}");
    }
    // The actions act: deleting a region deletes its shops, whose children lose their parent.
    common::exec(&db.target, &format!("DELETE FROM \"{s}\".region WHERE code = 'FR'"));
    let left = texts(&db.target, &format!("SELECT concat_ws('|', id, parent) FROM \"{s}\".shop ORDER BY id"));
    assert_eq!(left, [Some("1".into()), Some("2|1".into())]);
}

#[test]
fn checks_on_update_fulltext_unsigned_auto_increment_and_zero_dates_arrive_working() {
    let Some((db, my)) = my_setup("my_objects") else { return };
    my_exec(
        &my.url,
        "SET sql_mode = '';
         CREATE TABLE item (
           id bigint unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY,
           price decimal(8,2) NOT NULL,
           qty int NOT NULL DEFAULT 0,
           name varchar(50) NOT NULL,
           title text, body text,
           changed timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
           touched datetime NULL DEFAULT NULL ON UPDATE CURRENT_TIMESTAMP,
           CONSTRAINT price_positive CHECK (price > 0 AND qty BETWEEN 0 AND 1000),
           CONSTRAINT name_shape CHECK (name REGEXP '^[a-z]'),
           FULLTEXT KEY item_text (title, body),
           FULLTEXT KEY item_title (title)
         );
         INSERT INTO item (id, price, qty, name, title, body, changed) VALUES
           (1, 1.50, 3, 'apple', 'red apples', 'crisp and sweet', '2020-01-01 00:00:00'),
           (10000000000, 2.00, 5, 'pear', 'green pears', 'soft', '2020-01-01 00:00:00');
         CREATE TABLE dated (id int PRIMARY KEY, d date NOT NULL, ok date NOT NULL);
         INSERT INTO dated VALUES (1, '0000-00-00', '2024-01-01'), (2, '2024-02-03', '2024-01-02');",
    );
    let out = copy(&my, &db.target, &[]).ok();
    // Loading a NOT NULL date without its NOT NULL is routine (every TIMESTAMP NOT NULL of a
    // MySQL schema): a table change on record, not a warning per table.
    assert!(!out.stderr.contains("created without NOT NULL"), "{out:?}");
    let changes = texts(
        &db.target,
        "SELECT jsonb_array_elements_text(definition->'changes') FROM rangecopy.tables
          WHERE definition->'name'->>'name' = 'dated'",
    );
    for column in ["d", "ok"] {
        let said = format!("column \"{column}\" is created without NOT NULL while loading");
        assert!(changes.iter().flatten().any(|c| c.starts_with(&said)), "{changes:?}");
    }
    let s = &my.name;
    let item = format!("\"{s}\".item");

    // CHECK: the simple one is in the table and holds; the one PostgreSQL cannot read is listed.
    let checks = texts(
        &db.target,
        &format!(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = '{item}'::regclass AND contype = 'c'"
        ),
    );
    assert_eq!(checks, [Some("CHECK (((price > (0)::numeric) AND ((qty >= 0) AND (qty <= 1000))))".into())]);
    let refused = common::connect(&db.target).batch_execute(&format!("UPDATE {item} SET price = 0 WHERE id = 1"));
    assert!(refused.is_err(), "the CHECK holds on the target");
    let listed = objects(&db.target);
    let shape = listed.iter().find(|o| o.contains("name_shape")).expect("the REGEXP check is listed");
    assert!(shape.starts_with("CHECK CONSTRAINT |") && shape.ends_with("| listed | not-carried"), "{shape}");
    let sql: String = scalar(
        &db.target,
        "SELECT definition->'outcome'->>'source_sql' FROM rangecopy.objects WHERE name LIKE '%name_shape'",
    );
    assert!(sql.contains("regexp"), "{sql}");

    // ON UPDATE CURRENT_TIMESTAMP: the load kept the source's values; an update sets them now.
    let before: String = scalar(
        &db.target,
        &format!("SELECT concat_ws('|', changed AT TIME ZONE 'UTC', touched) FROM {item} WHERE id = 1"),
    );
    assert_eq!(before, "2020-01-01 00:00:00");
    common::exec(&db.target, &format!("UPDATE {item} SET qty = 4 WHERE id = 1"));
    let fresh: bool = scalar(
        &db.target,
        &format!("SELECT changed > now() - interval '1 minute' AND touched IS NOT NULL FROM {item} WHERE id = 1"),
    );
    assert!(fresh, "the trigger sets both ON UPDATE columns");
    common::exec(
        &db.target,
        &format!("UPDATE {item} SET qty = 6, changed = '2021-01-01 00:00:00+00' WHERE id = 10000000000"),
    );
    let kept: String =
        scalar(&db.target, &format!("SELECT (changed AT TIME ZONE 'UTC')::text FROM {item} WHERE id = 10000000000"));
    assert_eq!(kept, "2021-01-01 00:00:00", "a value the statement sets is kept, as MySQL does");

    // FULLTEXT: GIN indexes on the text's vector, used by a matching query.
    let indexes = common::constraints_and_indexes(&db.target, &item).join("\n");
    assert!(indexes.contains("USING gin (to_tsvector('simple'::regconfig, ((COALESCE(title, ''::text) || ' '::text) || COALESCE(body, ''::text))))"), "{indexes}");
    assert!(indexes.contains("USING gin (to_tsvector('simple'::regconfig, title))"), "{indexes}");

    // BIGINT UNSIGNED AUTO_INCREMENT generates values past the copied maximum.
    common::exec(&db.target, &format!("INSERT INTO {item} (price, name) VALUES (3, 'plum')"));
    let next: String = scalar(&db.target, &format!("SELECT id::text FROM {item} WHERE name = 'plum'"));
    assert_eq!(next, "10000000001");

    // NOT NULL: re-added where no zero date was nulled, left off (and said so) where one was.
    let nullable = texts(&db.target, &format!("SELECT attname || ' ' || attnotnull FROM pg_attribute WHERE attrelid = '\"{s}\".dated'::regclass AND attnum > 0 ORDER BY attnum"));
    assert_eq!(nullable, [Some("id true".into()), Some("d false".into()), Some("ok true".into())]);
    let failed: String = scalar(
        &db.target,
        "SELECT status || ': ' || detail FROM rangecopy.objects WHERE kind = 'NOT NULL' AND name LIKE '%.d'",
    );
    assert!(failed.starts_with("failed: ") && failed.contains("holds 1 zero dates copied as NULL"), "{failed}");
}

#[test]
fn views_triggers_procedures_and_functions_are_listed_with_their_source_sql() {
    let Some((db, my)) = my_setup("my_listed") else { return };
    my_exec(
        &my.url,
        "CREATE TABLE t (id int PRIMARY KEY, n int);
         CREATE VIEW big AS SELECT id FROM t WHERE n > 10;
         CREATE TRIGGER t_bump BEFORE INSERT ON t FOR EACH ROW SET NEW.n = NEW.n + 1;
         CREATE PROCEDURE clean() DELETE FROM t WHERE n IS NULL;
         CREATE FUNCTION twice(x int) RETURNS int DETERMINISTIC RETURN x * 2;
         INSERT INTO t VALUES (1, 5);",
    );
    copy(&my, &db.target, &[]).ok();
    let s = &my.name;
    let listed = texts(
        &db.target,
        "SELECT concat_ws(' | ', kind, name, status, definition->'outcome'->>'outcome', definition->'outcome'->>'source_sql' <> '')
           FROM rangecopy.objects ORDER BY object_no",
    );
    for want in [
        format!("VIEW | {s}.big | listed | not-carried | t"),
        format!("TRIGGER | {s}.t_bump | listed | not-carried | t"),
        format!("PROCEDURE | {s}.clean | listed | not-carried | t"),
        format!("FUNCTION | {s}.twice | listed | not-carried | t"),
    ] {
        assert!(listed.contains(&Some(want.clone())), "expected {want:?} in {listed:?}");
    }
    let view: String =
        scalar(&db.target, "SELECT definition->'outcome'->>'source_sql' FROM rangecopy.objects WHERE kind = 'VIEW'");
    assert!(view.contains("CREATE") && view.contains("`n` > 10"), "{view}");
    let trigger: String =
        scalar(&db.target, "SELECT definition->'outcome'->>'source_sql' FROM rangecopy.objects WHERE kind = 'TRIGGER'");
    assert!(trigger.contains("NEW.n + 1"), "{trigger}");
}

const PLACES: &str = "
    CREATE TABLE place (
      id int PRIMARY KEY,
      pt POINT REF_SYSTEM_ID=4326 NOT NULL,
      area POLYGON NULL,
      shape GEOMETRY NULL,
      SPATIAL KEY place_pt (pt)
    );
    INSERT INTO place VALUES
      (1, ST_GeomFromText('POINT(1 2)', 4326), ST_GeomFromText('POLYGON((0 0,4 0,4 4,0 0))'),
          ST_GeomFromText('LINESTRING(0 0,3 4)', 3857)),
      (2, ST_GeomFromText('POINT(-71.0625 42.3125)', 4326), NULL,
          ST_GeomFromText('GEOMETRYCOLLECTION(POINT(1 1),MULTIPOINT(2 2,3 3))'));";

#[test]
fn spatial_columns_arrive_as_postgis_geometry_with_their_srid_and_digests_match() {
    let Some((db, my)) = my_setup("my_postgis") else { return };
    my_exec(&my.url, PLACES);
    copy(&my, &db.target, &[]).ok();
    let t = format!("\"{}\".place", my.name);
    let types = texts(
        &db.target,
        &format!("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = '{t}'::regclass AND attnum > 1 ORDER BY attnum"),
    );
    let types: Vec<String> = types.into_iter().flatten().map(|t| t.replace("public.", "")).collect();
    assert_eq!(types, ["geometry(Point,4326)", "geometry", "geometry"]);
    let rows = texts(
        &db.target,
        &format!("SELECT concat_ws('|', id, ST_AsEWKT(pt), ST_AsEWKT(area), ST_AsEWKT(shape)) FROM {t} ORDER BY id"),
    );
    assert_eq!(
        rows,
        [
            Some("1|SRID=4326;POINT(1 2)|POLYGON((0 0,4 0,4 4,0 0))|SRID=3857;LINESTRING(0 0,3 4)".into()),
            Some("2|SRID=4326;POINT(-71.0625 42.3125)|GEOMETRYCOLLECTION(POINT(1 1),MULTIPOINT(2 2,3 3))".into()),
        ]
    );
    let indexes = common::constraints_and_indexes(&db.target, &t).join("\n");
    assert!(indexes.contains("USING gist (pt)"), "the SPATIAL index is GiST: {indexes}");
    let out = crate::common::run(&["verify", "--source", &my.url, "--target", &db.target, "--job", db.job()]);
    assert_eq!(out.code, 0, "the EWKB hashed at the source is what PostGIS holds: {out:?}");
}

#[test]
fn spatial_columns_without_postgis_on_the_target_stay_bytea_with_a_warning_saying_how_to_get_geometry() {
    let Some((db, my)) = my_setup("my_no_postgis") else { return };
    my_exec(&my.url, PLACES);
    let role = format!("rct_nogis_{}", common::random_suffix());
    let [_, admin] = db.admin_urls();
    common::exec(&admin, &format!("CREATE ROLE {role} LOGIN PASSWORD {}", common::quote_literal(common::PASSWORD)));
    common::exec(
        &db.target,
        &format!("DO $$ BEGIN EXECUTE format('GRANT CREATE ON DATABASE %I TO {role}', current_database()); END $$"),
    );
    let login = common::as_login(&db.target, &role, common::PASSWORD);
    let out = copy(&my, &login, &[]).ok();
    assert!(out.stderr.contains("column \"pt\" (point) is bytea"), "{out:?}");
    assert!(out.stderr.contains("install PostGIS on the target"), "{out:?}");
    let t = format!("\"{}\".place", my.name);
    let hex = texts(
        &db.target,
        &format!("SELECT concat_ws('|', id, encode(pt, 'hex'), encode(area, 'hex')) FROM {t} ORDER BY id"),
    );
    let mariadb: Vec<Option<String>> = (1..=2)
        .map(|id| {
            crate::mysql::my_text(
                &my.url,
                &format!("SELECT LOWER(CONCAT_WS('|', id, HEX(pt), HEX(area))) FROM place WHERE id = {id}"),
            )
        })
        .collect();
    assert_eq!(hex, mariadb, "MySQL's own bytes");
    let changes: String = scalar(&db.target, "SELECT definition::text FROM rangecopy.tables LIMIT 1");
    assert!(changes.contains("is bytea holding MySQL's SRID + WKB bytes"), "Table.changes says so: {changes}");
    drop(db);
    common::exec(&admin, &format!("DROP ROLE {role}"));
}

#[test]
fn lowercase_identifiers_lowercase_every_name_on_the_target_and_verify_still_matches_columns() {
    let Some((db, my)) = my_setup("my_lowercase") else { return };
    my_exec(
        &my.url,
        "CREATE TABLE `Shop` (
           `ID` int NOT NULL PRIMARY KEY,
           `Name` varchar(20) NOT NULL,
           `ParentID` int NULL,
           `Size` ENUM('Big', 'Small') NOT NULL DEFAULT 'Big',
           KEY `IX_Name` (`Name`),
           CONSTRAINT `FK_Parent` FOREIGN KEY (`ParentID`) REFERENCES `Shop` (`ID`),
           CONSTRAINT `CK_Pos` CHECK (`ID` > 0)
         );
         INSERT INTO `Shop` VALUES (1, 'a', NULL, 'Small'), (2, 'b', 1, 'Big');",
    );
    copy(&my, &db.target, &["--lowercase-identifiers"]).ok();
    let s = &my.name;
    let columns = texts(&db.target, &format!("SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute WHERE attrelid = '{s}.shop'::regclass AND attnum > 0"));
    assert_eq!(columns, [Some("id,name,parentid,size".into())]);
    let names = common::constraints_and_indexes(&db.target, &format!("{s}.shop")).join("\n");
    for want in [
        "ck_pos: CHECK ((id > 0))",
        "fk_parent: FOREIGN KEY (parentid) REFERENCES",
        "CREATE INDEX shop_ix_name ON",
        "shop_pkey: PRIMARY KEY (id)",
    ] {
        assert!(names.contains(want), "expected {want:?} in:\n{names}");
    }
    let validated: bool = scalar(&db.target, "SELECT convalidated FROM pg_constraint WHERE conname = 'fk_parent'");
    assert!(validated);
    let rows = texts(&db.target, &format!("SELECT concat_ws('|', id, name, parentid, size) FROM {s}.shop ORDER BY id"));
    assert_eq!(rows, [Some("1|a|Small".into()), Some("2|b|1|Big".into())]);
    let out = crate::common::run(&["verify", "--source", &my.url, "--target", &db.target, "--job", db.job()]);
    assert_eq!(out.code, 0, "the source's columns are the job's, whatever their case: {out:?}");
}
