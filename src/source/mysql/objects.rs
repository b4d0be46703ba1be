//! The objects around the copied tables, in PostgreSQL's terms: foreign keys (added `NOT VALID`
//! after the load, then validated), `ON UPDATE CURRENT_TIMESTAMP` as a trigger, and what cannot
//! be carried over (views, triggers, procedures and functions, CHECK constraints PostgreSQL
//! cannot read as they are) listed with its MySQL definition, never dropped in silence.
//!
//! This module only reads the source's catalog; the executor (`schema_phases`) runs what it
//! returns.

use std::collections::BTreeMap;

use mysql::Value;

use super::introspect::{check_constraints, translate_check};
use super::{same_name, text_of, MySource};
use crate::config::CopyConfig;
use crate::error::Result;
use crate::objects::{DbObject, Outcome, Phase, SchemaMode};
use crate::schema::{quote_ident, quote_literal, Table, TableName};

/// What `objects` needs of a source column.
struct SourceColumn {
    name: String,
    /// `ON UPDATE CURRENT_TIMESTAMP`.
    on_update: bool,
    not_null: bool,
}

/// A foreign key as `information_schema` describes it, its columns in order.
struct ForeignKey {
    table: TableName,
    name: String,
    columns: Vec<String>,
    referenced: TableName,
    referenced_columns: Vec<String>,
    on_update: String,
    on_delete: String,
}

impl MySource {
    /// The objects around `tables` (foreign keys, CHECK constraints, triggers, views, routines):
    /// what the target gets, and what is listed as not carried over, in the order they are
    /// created.
    pub fn objects(&mut self, tables: &[Table], cfg: &CopyConfig) -> Result<Vec<DbObject>> {
        if cfg.schema_mode == SchemaMode::DataOnly || tables.is_empty() {
            return Ok(Vec::new());
        }
        let mut schemas: Vec<String> = tables.iter().map(|t| t.name.schema.clone()).collect();
        schemas.sort();
        schemas.dedup();
        let mut out = Vec::new();
        for fk in self.foreign_keys(&schemas)? {
            if tables.iter().any(|t| t.name == fk.table) {
                out.push(foreign_key_object(&fk, &self.fold(&fk.name), tables));
            }
        }
        for table in tables {
            let columns = self.rows(
                "SELECT COLUMN_NAME, LOWER(EXTRA), IS_NULLABLE FROM information_schema.COLUMNS
                  WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
                vec![Value::from(table.name.schema.as_str()), Value::from(table.name.name.as_str())],
                &format!("reading the columns of {}", table.name),
            )?;
            let columns: Vec<SourceColumn> = columns
                .iter()
                .map(|r| SourceColumn {
                    name: text_of(r, 0).unwrap_or_default(),
                    on_update: text_of(r, 1).is_some_and(|e| e.contains("on update current_timestamp")),
                    not_null: text_of(r, 2).as_deref() == Some("NO"),
                })
                .collect();
            out.extend(on_update_trigger(&columns, table));
            out.extend(not_null_restores(&columns, table));
            for (name, clause) in check_constraints(self, &table.name)? {
                if translate_check(&clause, &table.columns).is_none() {
                    out.push(DbObject::not_carried(
                        "CHECK CONSTRAINT",
                        format!("{}.{}", table.target, self.fold(&name)),
                        "PostgreSQL cannot read this CHECK expression as it is; add it by hand \
                         (ALTER TABLE … ADD CONSTRAINT … CHECK (…))",
                        format!("CONSTRAINT {} CHECK ({clause})", super::my_ident(&name)),
                    ));
                }
            }
        }
        for schema in &schemas {
            out.extend(self.not_carried_definitions(schema, tables)?);
        }
        Ok(out)
    }

    fn foreign_keys(&mut self, schemas: &[String]) -> Result<Vec<ForeignKey>> {
        let mut out: Vec<ForeignKey> = Vec::new();
        for schema in schemas {
            let rows = self.rows(
                "SELECT k.TABLE_NAME, k.CONSTRAINT_NAME, k.COLUMN_NAME, k.REFERENCED_TABLE_SCHEMA,
                        k.REFERENCED_TABLE_NAME, k.REFERENCED_COLUMN_NAME, r.UPDATE_RULE, r.DELETE_RULE
                   FROM information_schema.KEY_COLUMN_USAGE k
                   JOIN information_schema.REFERENTIAL_CONSTRAINTS r
                     ON r.CONSTRAINT_SCHEMA = k.CONSTRAINT_SCHEMA AND r.CONSTRAINT_NAME = k.CONSTRAINT_NAME
                    AND r.TABLE_NAME = k.TABLE_NAME
                  WHERE k.CONSTRAINT_SCHEMA = ? AND k.REFERENCED_TABLE_NAME IS NOT NULL
                  ORDER BY k.TABLE_NAME, k.CONSTRAINT_NAME, k.ORDINAL_POSITION",
                vec![Value::from(schema.as_str())],
                &format!("reading the foreign keys of {}", quote_ident(schema)),
            )?;
            for r in &rows {
                let t = |i| text_of(r, i).unwrap_or_default();
                let table = TableName::new(schema, t(0));
                match out.last_mut() {
                    Some(fk) if fk.table == table && fk.name == t(1) => {
                        fk.columns.push(t(2));
                        fk.referenced_columns.push(t(5));
                    }
                    _ => out.push(ForeignKey {
                        table,
                        name: t(1),
                        columns: vec![t(2)],
                        referenced: TableName::new(t(3), t(4)),
                        referenced_columns: vec![t(5)],
                        on_update: t(6),
                        on_delete: t(7),
                    }),
                }
            }
        }
        Ok(out)
    }

    /// Views, triggers, procedures and functions of `schema` (triggers: on `tables`), each
    /// with its MySQL definition: PostgreSQL cannot run their SQL as it is.
    fn not_carried_definitions(&mut self, schema: &str, tables: &[Table]) -> Result<Vec<DbObject>> {
        let what = format!("reading the views, triggers and routines of {}", quote_ident(schema));
        let p = || vec![Value::from(schema)];
        let mut found: Vec<(&str, String, String)> = Vec::new();
        let views = "SELECT TABLE_NAME, VIEW_DEFINITION FROM information_schema.VIEWS WHERE TABLE_SCHEMA = ? \
                     ORDER BY TABLE_NAME";
        for r in self.rows(views, p(), &what)? {
            found.push(("VIEW", text_of(&r, 0).unwrap_or_default(), text_of(&r, 1).unwrap_or_default()));
        }
        let triggers = "SELECT TRIGGER_NAME, EVENT_OBJECT_TABLE, ACTION_STATEMENT FROM information_schema.TRIGGERS
                         WHERE TRIGGER_SCHEMA = ? ORDER BY TRIGGER_NAME";
        for r in self.rows(triggers, p(), &what)? {
            let on = TableName::new(schema, text_of(&r, 1).unwrap_or_default());
            if tables.iter().any(|t| t.name == on) {
                found.push(("TRIGGER", text_of(&r, 0).unwrap_or_default(), text_of(&r, 2).unwrap_or_default()));
            }
        }
        let routines = "SELECT ROUTINE_TYPE, ROUTINE_NAME, ROUTINE_DEFINITION FROM information_schema.ROUTINES
                         WHERE ROUTINE_SCHEMA = ? ORDER BY ROUTINE_TYPE, ROUTINE_NAME";
        for r in self.rows(routines, p(), &what)? {
            let kind = if text_of(&r, 0).as_deref() == Some("PROCEDURE") { "PROCEDURE" } else { "FUNCTION" };
            found.push((kind, text_of(&r, 1).unwrap_or_default(), text_of(&r, 2).unwrap_or_default()));
        }
        let target_schema =
            tables.iter().find(|t| t.name.schema == schema).map_or(schema, |t| t.target.schema.as_str());
        let mut out = Vec::with_capacity(found.len());
        for (kind, name, definition) in found {
            // The whole statement when this login may see it; information_schema's body otherwise.
            let sql = self.show_create(kind, schema, &name).unwrap_or(definition);
            let todo = match kind {
                "VIEW" => "rewrite the view's query in PostgreSQL's SQL and create it (CREATE VIEW)",
                "TRIGGER" => "rewrite the trigger as a PL/pgSQL trigger function and a CREATE TRIGGER",
                _ => "rewrite the routine in PL/pgSQL (CREATE FUNCTION / CREATE PROCEDURE)",
            };
            out.push(DbObject::not_carried(kind, format!("{}.{}", target_schema, self.fold(&name)), todo, sql));
        }
        Ok(out)
    }

    /// `SHOW CREATE VIEW/TRIGGER/PROCEDURE/FUNCTION`'s statement; None when this login may not
    /// see it (the definition is then NULL or the statement refused).
    fn show_create(&mut self, kind: &str, schema: &str, name: &str) -> Option<String> {
        let sql = format!("SHOW CREATE {kind} {}.{}", super::my_ident(schema), super::my_ident(name));
        let rows = self.rows(&sql, Vec::new(), &format!("reading the definition of {kind} {name}")).ok()?;
        // VIEW: (View, Create View, …); TRIGGER/PROCEDURE/FUNCTION: (name, sql_mode, statement, …).
        let column = if kind == "VIEW" { 1 } else { 2 };
        rows.first().and_then(|r| text_of(r, column))
    }
}

/// A foreign key among the copied tables as `ALTER TABLE … ADD CONSTRAINT … NOT VALID` with its
/// validation; one that references a table outside the copy (or a column left out) is listed
/// as not carried.
fn foreign_key_object(fk: &ForeignKey, target_name: &str, tables: &[Table]) -> DbObject {
    let from = tables.iter().find(|t| t.name == fk.table).expect("the caller checked");
    let to = tables.iter().find(|t| t.name == fk.referenced);
    // Columns as the target names them.
    let list = |t: &Table, cols: &[String]| {
        cols.iter()
            .map(|c| {
                t.columns
                    .iter()
                    .find(|tc| same_name(&tc.name, c))
                    .map_or_else(|| quote_ident(c), |tc| quote_ident(&tc.name))
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let my_list = |cols: &[String]| cols.iter().map(|c| super::my_ident(c)).collect::<Vec<_>>().join(", ");
    let source_sql = format!(
        "ALTER TABLE {} ADD CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {}.{} ({}) ON UPDATE {} ON DELETE {}",
        super::my_table(&fk.table),
        super::my_ident(&fk.name),
        my_list(&fk.columns),
        super::my_ident(&fk.referenced.schema),
        super::my_ident(&fk.referenced.name),
        my_list(&fk.referenced_columns),
        fk.on_update,
        fk.on_delete
    );
    let name = format!("{}.{target_name}", from.target);
    let Some(to) = to else {
        return DbObject::not_carried(
            "FK CONSTRAINT",
            name,
            format!(
                "it references {}, which is not copied; copy that table too, or add the constraint by hand once \
                 it is there",
                fk.referenced
            ),
            source_sql,
        );
    };
    let copied = |t: &Table, cols: &[String]| cols.iter().all(|c| t.columns.iter().any(|tc| same_name(&tc.name, c)));
    if !copied(from, &fk.columns) || !copied(to, &fk.referenced_columns) {
        return DbObject::not_carried(
            "FK CONSTRAINT",
            name,
            "a column it names is excluded from the copy; add the constraint by hand if it still applies",
            source_sql,
        );
    }
    let constraint = quote_ident(target_name);
    let sql = format!(
        "ALTER TABLE {} ADD CONSTRAINT {constraint} FOREIGN KEY ({}) REFERENCES {} ({}) ON UPDATE {} ON DELETE {} \
         NOT VALID",
        from.target.quoted(),
        list(from, &fk.columns),
        to.target.quoted(),
        list(to, &fk.referenced_columns),
        action(&fk.on_update),
        action(&fk.on_delete)
    );
    DbObject {
        kind: "FK CONSTRAINT".into(),
        name,
        phase: Phase::After,
        sql,
        validate: Some(format!("ALTER TABLE {} VALIDATE CONSTRAINT {constraint}", from.target.quoted())),
        outcome: Outcome::Translated { from: source_sql },
    }
}

/// A referential action as PostgreSQL spells it (MySQL's are the same words; anything else is
/// read as NO ACTION, MySQL's default).
fn action(rule: &str) -> &'static str {
    match rule.to_ascii_uppercase().as_str() {
        "CASCADE" => "CASCADE",
        "SET NULL" => "SET NULL",
        "SET DEFAULT" => "SET DEFAULT",
        "RESTRICT" => "RESTRICT",
        _ => "NO ACTION",
    }
}

/// `ON UPDATE CURRENT_TIMESTAMP` columns of `table` as one trigger function and a `BEFORE UPDATE`
/// trigger doing what MySQL does: when a row changes and the statement did not set the column
/// itself, it gets the current time. Created after the load, so it never fires while rows
/// arrive.
fn on_update_trigger(source: &[SourceColumn], table: &Table) -> Option<DbObject> {
    let mut sets: BTreeMap<usize, String> = BTreeMap::new();
    for sc in source.iter().filter(|sc| sc.on_update) {
        let Some((i, col)) = table.columns.iter().enumerate().find(|(_, c)| same_name(&c.name, &sc.name)) else {
            continue;
        };
        let now = match col.logical {
            crate::schema::LogicalType::TimestampTz => "CURRENT_TIMESTAMP",
            crate::schema::LogicalType::Timestamp => "LOCALTIMESTAMP",
            _ => continue,
        };
        let c = quote_ident(&col.name);
        sets.insert(i, format!("    IF NEW.{c} IS NOT DISTINCT FROM OLD.{c} THEN NEW.{c} := {now}; END IF;"));
    }
    if sets.is_empty() {
        return None;
    }
    let base = super::pg_name(&[&table.target.name, "on_update"]);
    let function = TableName::new(&table.target.schema, &base).quoted();
    let body: Vec<&str> = sets.values().map(String::as_str).collect();
    let sql = format!(
        "CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $rangecopy$\nBEGIN\n  IF NEW IS DISTINCT \
         FROM OLD THEN\n{}\n  END IF;\n  RETURN NEW;\nEND\n$rangecopy$;\nCREATE TRIGGER {} BEFORE UPDATE ON {} FOR \
         EACH ROW EXECUTE FUNCTION {function}()",
        body.join("\n"),
        quote_ident(&base),
        table.target.quoted()
    );
    let columns: Vec<String> =
        sets.keys().map(|&i| format!("{} ON UPDATE CURRENT_TIMESTAMP", quote_ident(&table.columns[i].name))).collect();
    Some(DbObject {
        kind: "TRIGGER".into(),
        name: format!("{}.{base}", table.target),
        phase: Phase::After,
        sql,
        validate: None,
        outcome: Outcome::Translated { from: columns.join(", ") },
    })
}

/// NOT NULL of the columns loaded without it (zero dates copied as NULL, see `describe`),
/// re-added once the table is loaded when none of its values was nulled; otherwise the object
/// fails, saying how many rows hold NULL.
fn not_null_restores(source: &[SourceColumn], table: &Table) -> Vec<DbObject> {
    let mut out = Vec::new();
    for sc in source.iter().filter(|sc| sc.not_null) {
        let Some(col) = table.columns.iter().find(|c| same_name(&c.name, &sc.name) && !c.not_null) else { continue };
        let c = quote_ident(&col.name);
        let t = table.target.quoted();
        let message = quote_literal(&format!(
            "column {} of {} holds % zero dates copied as NULL (--zero-dates null): NOT NULL is not re-added",
            col.name.replace('%', "%%"),
            table.target.to_string().replace('%', "%%")
        ));
        let sql = format!(
            "DO $rangecopy$\nDECLARE nulled bigint;\nBEGIN\n  SELECT count(*) INTO nulled FROM {t} WHERE {c} IS NULL;\n  \
             IF nulled > 0 THEN\n    RAISE EXCEPTION {message}, nulled;\n  END IF;\n  \
             ALTER TABLE {t} ALTER COLUMN {c} SET NOT NULL;\nEND\n$rangecopy$"
        );
        out.push(DbObject {
            kind: "NOT NULL".into(),
            name: format!("{}.{}", table.target, col.name),
            phase: Phase::After,
            sql,
            validate: None,
            outcome: Outcome::Changed {
                why: "loaded without NOT NULL, since zero dates are copied as NULL; re-added after the load".into(),
            },
        });
    }
    out
}
