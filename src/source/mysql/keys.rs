//! Key walking: comparing key columns with chunk bounds in the source's own order, and
//! finding the next chunk boundary.

use mysql::Value;

use super::types::{TypeInfo, BINARIES, INTS, STRINGS};
use super::{my_ident, my_table, MySource};
use crate::error::{Error, Result};
use crate::plan::Bound;
use crate::schema::{quote_ident, Table};

/// How a column's values can be compared with a bound in key-walking queries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum KeyKind {
    Signed,
    Unsigned,
    Decimal(u32, u32),
    Date,
    DateTime,
    Time,
    Text { charset: Option<String>, collation: Option<String> },
    Binary,
    Uuid,
}

impl KeyKind {
    /// None for types that cannot be a chunking key: their order or their text form is not
    /// exact (floats, ENUM/SET order by index, BIT, JSON, spatial).
    pub(super) fn of(source_type: &str) -> Option<KeyKind> {
        let info = TypeInfo::parse(source_type);
        let fam = info.family.as_str();
        Some(match fam {
            _ if INTS.contains(&fam) || fam == "year" => {
                if info.unsigned {
                    KeyKind::Unsigned
                } else {
                    KeyKind::Signed
                }
            }
            "decimal" | "numeric" => KeyKind::Decimal(info.arg(0).unwrap_or(10), info.arg(1).unwrap_or(0)),
            "date" => KeyKind::Date,
            "datetime" | "timestamp" => KeyKind::DateTime,
            "time" => KeyKind::Time,
            _ if STRINGS.contains(&fam) => KeyKind::Text { charset: info.charset, collation: info.collation },
            _ if BINARIES.contains(&fam) => KeyKind::Binary,
            "uuid" => KeyKind::Uuid,
            _ => return None,
        })
    }

    /// The SQL that turns a bound's text (a `?` parameter) into a value of the column's type.
    pub(super) fn param_sql(&self) -> String {
        match self {
            KeyKind::Signed | KeyKind::Unsigned | KeyKind::Uuid => "?".into(),
            KeyKind::Decimal(p, s) => format!("CAST(? AS DECIMAL({p},{s}))"),
            KeyKind::Date => "CAST(? AS DATE)".into(),
            KeyKind::DateTime => "CAST(? AS DATETIME(6))".into(),
            KeyKind::Time => "CAST(? AS TIME(6))".into(),
            KeyKind::Binary => "UNHEX(?)".into(),
            KeyKind::Text { charset: Some(cs), collation: Some(co) } if is_word(cs) && is_word(co) => {
                format!("CONVERT(? USING {cs}) COLLATE {co}")
            }
            KeyKind::Text { .. } => "?".into(),
        }
    }

    /// A bound's text as a typed parameter (integers bound as integers: MySQL would compare
    /// an integer column with a string as DOUBLE).
    pub(super) fn param(&self, text: &str) -> std::result::Result<Value, String> {
        match self {
            KeyKind::Signed => text.parse::<i64>().map(Value::Int).map_err(|e| format!("bound {text:?}: {e}")),
            KeyKind::Unsigned => text.parse::<u64>().map(Value::UInt).map_err(|e| format!("bound {text:?}: {e}")),
            _ => Ok(Value::Bytes(text.as_bytes().to_vec())),
        }
    }

    /// A key value as bound text (binary keys as hex, compared through UNHEX).
    pub(super) fn bound_text(&self, v: &Value) -> String {
        match (self, v) {
            (KeyKind::Binary, Value::Bytes(b)) => hex_upper(b),
            _ => value_text(v),
        }
    }
}

fn is_word(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn hex_upper(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

/// A value's text, as bounds and messages show it.
pub(super) fn value_text(v: &Value) -> String {
    match v {
        Value::NULL => "NULL".into(),
        Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        Value::Int(n) => n.to_string(),
        Value::UInt(n) => n.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Double(f) => f.to_string(),
        Value::Date(y, m, d, 0, 0, 0, 0) => format!("{y:04}-{m:02}-{d:02}"),
        Value::Date(y, m, d, h, mi, s, us) => format!("{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02}.{us:06}"),
        Value::Time(neg, days, h, mi, s, us) => {
            let hours = u64::from(*days) * 24 + u64::from(*h);
            format!("{}{hours:02}:{mi:02}:{s:02}.{us:06}", if *neg { "-" } else { "" })
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Key walking
// ---------------------------------------------------------------------------------------------

/// The key columns of a table with how to compare them.
pub(super) fn key_kinds(table: &Table) -> std::result::Result<Vec<(String, KeyKind)>, String> {
    table
        .key_columns()
        .iter()
        .map(|c| {
            KeyKind::of(&c.source_type)
                .map(|k| (my_ident(&c.name), k))
                .ok_or_else(|| format!("key column {} ({}) cannot be compared", quote_ident(&c.name), c.source_type))
        })
        .collect()
}

/// `k1 >= ? AND (k1 > ? OR (k1 = ? AND (k2 > ? OR (k2 = ? AND k3 >= ?))))` for the bound
/// `values` (`op` is `>=` or `<`), with its parameters in order. Expanded rather than a row
/// comparison so that MySQL and MariaDB both use the key's index for the range; the leading
/// `k1 >= ?` (or `<=`) gives the optimizer its range on the first column.
fn key_condition(
    key: &[(String, KeyKind)],
    op: &str,
    values: &[String],
) -> std::result::Result<(String, Vec<Value>), String> {
    if key.len() != values.len() {
        return Err(format!("bound has {} values, the key {} columns", values.len(), key.len()));
    }
    let strict = if op == "<" { "<" } else { ">" };
    let mut params = Vec::new();
    let (c0, k0) = &key[0];
    let mut sql = if key.len() > 1 {
        params.push(k0.param(&values[0])?);
        format!("{c0} {} {} AND ", if op == "<" { "<=" } else { ">=" }, k0.param_sql())
    } else {
        String::new()
    };
    fn nest(
        key: &[(String, KeyKind)],
        values: &[String],
        i: usize,
        op: &str,
        strict: &str,
        params: &mut Vec<Value>,
    ) -> std::result::Result<String, String> {
        let (col, kind) = &key[i];
        let p = kind.param_sql();
        if i + 1 == key.len() {
            params.push(kind.param(&values[i])?);
            return Ok(format!("{col} {op} {p}"));
        }
        params.push(kind.param(&values[i])?);
        params.push(kind.param(&values[i])?);
        let inner = nest(key, values, i + 1, op, strict, params)?;
        Ok(format!("({col} {strict} {p} OR ({col} = {p} AND {inner}))"))
    }
    sql.push_str(&nest(key, values, 0, op, strict, &mut params)?);
    Ok((sql, params))
}

/// `WHERE lo AND hi` of a chunk (empty when the chunk is unbounded), with its parameters.
pub(super) fn chunk_where(table: &Table, lo: &Bound, hi: &Bound) -> std::result::Result<(String, Vec<Value>), String> {
    let key = key_kinds(table)?;
    let mut conds = Vec::new();
    let mut params = Vec::new();
    for (bound, op) in [(lo, ">="), (hi, "<")] {
        if let Some(values) = bound {
            let (sql, p) = key_condition(&key, op, values)?;
            conds.push(format!("({sql})"));
            params.extend(p);
        }
    }
    let sql = if conds.is_empty() { String::new() } else { format!(" WHERE {}", conds.join(" AND ")) };
    Ok((sql, params))
}

pub(super) fn order_by(table: &Table) -> String {
    let key: Vec<String> = table.key_columns().iter().map(|c| my_ident(&c.name)).collect();
    if key.is_empty() {
        String::new()
    } else {
        format!(" ORDER BY {}", key.join(", "))
    }
}

impl MySource {
    /// The key tuple `rows` rows past `from` (inclusive) in the source's own key order, as
    /// text that round-trips as a query parameter: the next chunk boundary; None at the end.
    pub fn next_boundary(&mut self, table: &Table, from: &Bound, rows: u64) -> Result<Bound> {
        self.next_boundary_before(table, from, &None, rows)
    }

    /// Like [`next_boundary`](Self::next_boundary), among the keys below `until` only.
    pub fn next_boundary_before(&mut self, table: &Table, from: &Bound, until: &Bound, rows: u64) -> Result<Bound> {
        let what = format!("walking the key of {}", table.name);
        let kinds = key_kinds(table).map_err(|e| Error::input(format!("{}: {e}", table.name)))?;
        let select: Vec<&str> = kinds.iter().map(|(c, _)| c.as_str()).collect();
        let (cond, params) = chunk_where(table, from, until).map_err(|e| Error::input(format!("{what}: {e}")))?;
        let sql = format!(
            "SELECT {} FROM {}{cond}{} LIMIT 1 OFFSET {rows}",
            select.join(", "),
            my_table(&table.name),
            order_by(table)
        );
        let found = self.walk(sql, params, &what)?;
        Ok(found.first().map(|r| {
            kinds.iter().enumerate().map(|(i, (_, k))| k.bound_text(r.as_ref(i).unwrap_or(&Value::NULL))).collect()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composite_key_conditions_expand() {
        let key = vec![
            ("`a`".to_string(), KeyKind::Signed),
            (
                "`b`".to_string(),
                KeyKind::Text { charset: Some("utf8mb4".into()), collation: Some("utf8mb4_general_ci".into()) },
            ),
        ];
        let (sql, params) = key_condition(&key, ">=", &["-5".into(), "x".into()]).unwrap();
        assert_eq!(
            sql,
            "`a` >= ? AND (`a` > ? OR (`a` = ? AND `b` >= CONVERT(? USING utf8mb4) COLLATE utf8mb4_general_ci))"
        );
        assert_eq!(params.len(), 4);
        assert_eq!(params[0], Value::Int(-5));
        let (sql, _) = key_condition(&key[..1], "<", &["7".into()]).unwrap();
        assert_eq!(sql, "`a` < ?");
        assert!(key_condition(&key, "<", &["x".into(), "y".into()]).is_err());
    }
}
