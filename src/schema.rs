//! Engine-neutral description of the tables being copied: names, columns, logical types, keys.
//!
//! Every stage after introspection speaks these types. This module must never talk to a
//! database; the engine modules under `source/` and `target/` fill and read these values.

use std::fmt;

/// A schema-qualified table name, unquoted. Display quotes it as a PostgreSQL identifier.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct TableName {
    pub schema: String,
    pub name: String,
}

impl TableName {
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> Self {
        TableName { schema: schema.into(), name: name.into() }
    }

    /// `"schema"."name"`, safe to splice into PostgreSQL SQL.
    pub fn quoted(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }
}

impl fmt::Display for TableName {
    /// Human form for messages: `schema.name`, quoting only the parts that need it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", display_ident(&self.schema), display_ident(&self.name))
    }
}

/// A table named on the command line as a person wrote it: `name` or `schema.name`.
pub fn named_table(schema: Option<&str>, name: &str) -> String {
    match schema {
        Some(s) => format!("{}.{}", display_ident(s), display_ident(name)),
        None => display_ident(name),
    }
}

/// "; did you mean a.b or c.d?" for the tables whose names are closest to `wanted` (a few
/// typos, or another case or schema), or nothing when none is close.
pub fn did_you_mean<'a>(wanted: &str, tables: impl IntoIterator<Item = &'a TableName>) -> String {
    let wanted = wanted.to_lowercase();
    let mut close: Vec<(usize, String)> = tables
        .into_iter()
        .filter_map(|t| {
            let d = edit_distance(&wanted, &t.name.to_lowercase())
                .min(edit_distance(&wanted, &format!("{}.{}", t.schema, t.name).to_lowercase()));
            (d <= (wanted.chars().count() / 3).max(2)).then(|| (d, t.to_string()))
        })
        .collect();
    close.sort();
    close.dedup_by(|a, b| a.1 == b.1);
    let names: Vec<String> = close.into_iter().take(3).map(|(_, n)| n).collect();
    match names.as_slice() {
        [] => String::new(),
        [one] => format!("; did you mean {one}?"),
        [first @ .., last] => format!("; did you mean {} or {last}?", first.join(", ")),
    }
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1).min(row[j] + 1).min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// Quotes a PostgreSQL identifier: wraps it in double quotes and doubles embedded quotes.
pub fn quote_ident(ident: &str) -> String {
    let mut out = String::with_capacity(ident.len() + 2);
    out.push('"');
    for c in ident.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Quotes a string as a PostgreSQL literal (standard_conforming_strings on, which every
/// supported server has by default and our sessions set explicitly).
pub fn quote_literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if c == '\'' {
            out.push('\'');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

fn display_ident(ident: &str) -> String {
    let plain = !ident.is_empty()
        && ident.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !ident.starts_with(|c: char| c.is_ascii_digit());
    if plain {
        ident.to_string()
    } else {
        quote_ident(ident)
    }
}

/// How a column's values are read for hashing, independent of the engine they come from.
///
/// For PostgreSQL sources this is derived from the column's base type (domains resolved);
/// the binary COPY decoder for each variant is chosen once per column, before the row loop.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum LogicalType {
    Bool,
    Int2,
    Int4,
    Int8,
    /// PostgreSQL `oid` and other unsigned 32-bit integers.
    Oid,
    Numeric,
    Float4,
    Float8,
    /// text, varchar, name, citext and anything whose binary form is its UTF-8 text.
    Text,
    /// char(n): trailing spaces are padding, not data.
    Bpchar,
    Bytea,
    Date,
    Time,
    TimeTz,
    Timestamp,
    TimestampTz,
    Interval,
    Uuid,
    Json,
    Jsonb,
    /// An enum value; its binary form is the label.
    Enum,
    /// A one- or multi-dimensional array of the element type.
    Array(Box<LogicalType>),
    /// Any other type: hashed as its raw binary representation (deterministic between two
    /// PostgreSQL servers, not comparable across engines). Holds the type OID.
    Raw(u32),
}

/// A column of a source table, as it will be created on and copied to the target.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Column {
    pub name: String,
    /// The type as PostgreSQL DDL spells it, schema-qualified where user-defined.
    pub type_sql: String,
    pub logical: LogicalType,
    pub not_null: bool,
    /// Default expression as PostgreSQL DDL, when it can be expressed there.
    pub default_sql: Option<String>,
    /// `GENERATED … AS IDENTITY` clause (without the column), when the column is an identity.
    pub identity_sql: Option<String>,
    /// Stored generated column: the target computes it, so it is neither copied nor hashed.
    pub generated_sql: Option<String>,
    /// For arrays whose element type is user-defined (enum, domain, composite), the source
    /// element type OID that binary COPY embeds and that must be rewritten for the target.
    pub user_elem_oid: Option<u32>,
    /// The element type of such an array as PostgreSQL DDL spells it, to find the target's OID.
    pub user_elem_type_sql: Option<String>,
    /// The column's type as the source engine declares it (`tinyint(1) unsigned` on MySQL);
    /// for PostgreSQL sources the same as `type_sql`.
    #[serde(default)]
    pub source_type: String,
}

impl Column {
    /// Whether the column's values travel in COPY (generated columns are computed by the target).
    pub fn is_copied(&self) -> bool {
        self.generated_sql.is_none()
    }
}

/// The key that chunks are ranges of: the primary key, else a unique NOT NULL key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Key {
    /// Indexes into `Table::columns`, in key order.
    pub columns: Vec<usize>,
    /// Human description, for messages: `primary key (id)` or `unique index orders_uq (a, b)`.
    pub description: String,
}

/// A source table as introspected.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Table {
    /// The table's name in the source (for MySQL/MariaDB, `schema` is the database).
    pub name: TableName,
    /// The table's name on the target; `ddl` creates it under this name.
    pub target: TableName,
    pub columns: Vec<Column>,
    /// None when the table has no primary key and no unique NOT NULL key.
    pub key: Option<Key>,
    /// Estimated row count from the source's statistics (for progress only).
    pub estimated_rows: u64,
    /// Estimated size in bytes from the source's statistics (for progress only).
    pub estimated_bytes: u64,
    /// How to create the table on the target, in PostgreSQL DDL.
    pub ddl: TargetDdl,
    /// The source table is partitioned (PostgreSQL): read through its parent, created on the
    /// target as one plain table.
    pub partitioned: bool,
    /// How the target table differs from the source's, for the schema report (a NOT NULL
    /// dropped, a type translated with a loss …); empty when it is the same.
    #[serde(default)]
    pub changes: Vec<String>,
}

/// The PostgreSQL DDL that recreates a source table on the target. Sources of every engine
/// produce this, since the target is always PostgreSQL.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct TargetDdl {
    /// Idempotent statements run before the table is created: schemas, types, domains, sequences.
    pub prerequisites: Vec<String>,
    /// `CREATE TABLE …` with columns, NOT NULL, defaults and CHECK constraints, no indexes.
    pub create_table: String,
    /// Statements run right after the table is created (sequence ownership, comments).
    pub after_create: Vec<String>,
    /// Primary key, unique constraints and indexes: built once all chunks are loaded.
    pub deferred: Vec<String>,
    /// Sequences whose position is carried over once the table is loaded.
    pub sequences: Vec<SequenceSync>,
}

/// A sequence to bring to the source's position after the load.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SequenceSync {
    /// SQL expression naming the source sequence (a regclass literal).
    pub source_sql: String,
    /// SQL text expression naming the target sequence (a string literal or
    /// `pg_get_serial_sequence(…)`); a sequence the target does not have is left alone.
    pub target_sql: String,
}

impl Table {
    pub fn copied_columns(&self) -> impl Iterator<Item = &Column> {
        self.columns.iter().filter(|c| c.is_copied())
    }

    pub fn key_columns(&self) -> Vec<&Column> {
        self.key.as_ref().map(|k| k.columns.iter().map(|&i| &self.columns[i]).collect()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_tables_suggest_the_closest_names() {
        let tables =
            [TableName::new("shop", "orders"), TableName::new("shop", "order_items"), TableName::new("hr", "staff")];
        assert_eq!(did_you_mean("order", &tables), "; did you mean shop.orders?");
        assert_eq!(did_you_mean("Orders", &tables), "; did you mean shop.orders?");
        assert_eq!(did_you_mean("shop.ordrs", &tables), "; did you mean shop.orders?");
        assert_eq!(did_you_mean("invoices", &tables), "");
        assert_eq!(named_table(None, "orders"), "orders");
        assert_eq!(named_table(Some("Sales"), "Line Items"), "\"Sales\".\"Line Items\"");
    }

    #[test]
    fn quoting_doubles_embedded_quotes() {
        assert_eq!(quote_ident(r#"a"; DROP TABLE victim; --"#), r#""a""; DROP TABLE victim; --""#);
        assert_eq!(quote_literal("it's"), "'it''s'");
    }

    #[test]
    fn display_quotes_only_when_needed() {
        assert_eq!(TableName::new("public", "orders").to_string(), "public.orders");
        assert_eq!(TableName::new("My Schema", "t").to_string(), "\"My Schema\".t");
        assert_eq!(TableName::new("s", "1t").to_string(), "s.\"1t\"");
    }
}
