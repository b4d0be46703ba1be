//! The MySQL/MariaDB → PostgreSQL type table and the per-column converters that turn a
//! MySQL value into a binary COPY field and its canonical value.

use mysql::Value;

use super::keys::value_text;
use super::my_ident;
use crate::canonical::RowEncoder;
use crate::config::CastTarget;
use crate::copy_format::CopyEncoder;
use crate::schema::{quote_ident, Column, LogicalType};

/// PostgreSQL's `bit` type OID: BIT(n) values are hashed as their PostgreSQL binary form.
pub(super) const PG_BIT_OID: u32 = 1560;

/// A MySQL column type parsed from `COLUMN_TYPE` (plus the charset/collation suffix that
/// `Column::source_type` carries for character columns).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct TypeInfo {
    /// `int`, `varchar`, `enum`, `json`… (the DATA_TYPE).
    pub(super) family: String,
    /// The raw arguments between the first parentheses, split at top-level commas.
    args: Vec<String>,
    pub(super) unsigned: bool,
    pub(super) charset: Option<String>,
    pub(super) collation: Option<String>,
}

impl TypeInfo {
    pub(super) fn parse(text: &str) -> TypeInfo {
        let text = text.trim();
        let family_end = text.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(text.len());
        let mut info = TypeInfo { family: text[..family_end].to_ascii_lowercase(), ..TypeInfo::default() };
        let mut rest = &text[family_end..];
        if rest.starts_with('(') {
            let (args, after) = split_args(&rest[1..]);
            info.args = args;
            rest = after;
        }
        let words: Vec<String> = rest.split_whitespace().map(|w| w.to_ascii_lowercase()).collect();
        info.unsigned = words.iter().any(|w| w == "unsigned");
        for (i, w) in words.iter().enumerate() {
            match w.as_str() {
                "set" => info.charset = words.get(i + 1).cloned(),
                "collate" => info.collation = words.get(i + 1).cloned(),
                _ => {}
            }
        }
        info
    }

    pub(super) fn arg(&self, i: usize) -> Option<u32> {
        self.args.get(i).and_then(|a| a.trim().parse().ok())
    }

    /// ENUM/SET labels, unquoted.
    pub(super) fn labels(&self) -> Vec<String> {
        self.args.iter().map(|a| unquote_sql_string(a.trim()).unwrap_or_else(|| a.clone())).collect()
    }
}

/// A `COLUMN_TYPE` in lower case except its quoted parts: ENUM and SET labels keep their case
/// (`enum('Red','GREEN')` → `enum('Red','GREEN')`, `INT(10) UNSIGNED` → `int(10) unsigned`).
pub(super) fn lower_outside_quotes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_quote = false;
    let mut escaped = false;
    for c in text.chars() {
        if in_quote {
            // '' inside a label closes and reopens the quote: the same result.
            in_quote = escaped || c != '\'';
            escaped = !escaped && c == '\\';
            out.push(c);
        } else {
            in_quote = c == '\'';
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// Splits `a,'b,c',d)rest` into (["a", "'b,c'", "d"], "rest"), honouring '…' with '' escapes.
fn split_args(text: &str) -> (Vec<String>, &str) {
    let mut args = Vec::new();
    let mut cur = String::new();
    let mut in_quote = false;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if in_quote {
            cur.push(c);
            if c == '\'' {
                if chars.peek().map(|p| p.1) == Some('\'') {
                    cur.push('\'');
                    chars.next();
                } else {
                    in_quote = false;
                }
            } else if c == '\\' {
                if let Some((_, n)) = chars.next() {
                    cur.push(n);
                }
            }
            continue;
        }
        match c {
            '\'' => {
                in_quote = true;
                cur.push(c);
            }
            ',' => args.push(std::mem::take(&mut cur)),
            ')' => {
                args.push(cur);
                return (args, &text[i + 1..]);
            }
            _ => cur.push(c),
        }
    }
    args.push(cur);
    (args, "")
}

/// `'it''s'` → `it's` (MySQL also writes `\\` for a backslash); None if not a plain literal.
pub(super) fn unquote_sql_string(text: &str) -> Option<String> {
    let inner = text.strip_prefix('\'')?.strip_suffix('\'')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' if chars.peek() == Some(&'\'') => {
                chars.next();
                out.push('\'');
            }
            '\'' => return None,
            '\\' => match chars.next()? {
                '\\' => out.push('\\'),
                '\'' => out.push('\''),
                '"' => out.push('"'),
                // \n, \0 and friends: not worth guessing; the default is skipped.
                _ => return None,
            },
            c => out.push(c),
        }
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------------
// The type mapping
// ---------------------------------------------------------------------------------------------

/// How one MySQL value becomes a COPY field and a canonical value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Conv {
    /// Integer → smallint / integer / bigint (range-checked).
    Int2,
    Int4,
    Int8,
    /// BIGINT UNSIGNED → numeric(20,0), hashed as a DECIMAL.
    U64Numeric,
    /// DECIMAL text → numeric.
    Decimal,
    /// FLOAT (32-bit) → real, hashed as `f64::from(f32)`.
    Float4,
    Float8,
    /// Integer or BIT 0/1 → boolean (any other value is an error).
    Bool,
    /// UTF-8 text (the session converts every charset); a NUL byte is an error.
    Text,
    /// Bytes that must be valid UTF-8 to become text (binary strings cast to text).
    TextUtf8,
    /// An ENUM label → PostgreSQL enum; the empty "invalid value" label is an error.
    Enum,
    Bytes,
    Date,
    /// DATETIME (wall clock) and TIMESTAMP (UTC in this session) → timestamp / timestamptz.
    DateTime,
    /// TIME (may be negative or beyond 24 h) → interval of microseconds.
    Time,
    /// BIT(n) → bit(n) (right-aligned bytes → left-aligned bit string).
    Bit,
    Json,
    /// Text UUID (MariaDB UUID, CHAR(36)) → uuid.
    UuidText,
    /// BINARY(16) → uuid.
    UuidBytes,
    /// MySQL's geometry (4-byte SRID + WKB) → PostGIS geometry (EWKB, its binary COPY form).
    Ewkb,
}

/// One row of the type mapping: a MySQL type family and what it becomes.
pub(super) struct TypeRow {
    /// MySQL DATA_TYPE names covered by this row.
    mysql: &'static [&'static str],
    /// `Some(true)`: UNSIGNED columns only; `Some(false)`: signed only; `None`: both.
    unsigned: Option<bool>,
    /// The PostgreSQL type as `format_type` spells it.
    pub(super) pg: fn(&TypeInfo) -> String,
    pub(super) logical: LogicalType,
    pub(super) conv: Conv,
}

pub(super) const INTS: &[&str] = &["tinyint", "smallint", "mediumint", "int", "integer", "bigint"];
pub(super) const STRINGS: &[&str] = &["char", "varchar", "tinytext", "text", "mediumtext", "longtext"];
pub(super) const BINARIES: &[&str] = &["binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"];
pub(super) const SPATIAL: &[&str] = &[
    "geometry",
    "point",
    "linestring",
    "polygon",
    "multipoint",
    "multilinestring",
    "multipolygon",
    "geometrycollection",
    "geomcollection",
];

/// MySQL/MariaDB → PostgreSQL, one row per type family (README: "MySQL/MariaDB → PostgreSQL
/// type mapping"). A family missing here (spatial types, MariaDB INET4/INET6/VECTOR) is
/// refused up front unless a `--cast` rule maps the column or `--exclude-column` drops it.
#[rustfmt::skip]
pub(super) const TYPE_MAP: &[TypeRow] = &[
    TypeRow { mysql: &["tinyint"], unsigned: None, pg: |_| "smallint".into(), logical: LogicalType::Int2, conv: Conv::Int2 },
    TypeRow { mysql: &["smallint"], unsigned: Some(false), pg: |_| "smallint".into(), logical: LogicalType::Int2, conv: Conv::Int2 },
    TypeRow { mysql: &["smallint"], unsigned: Some(true), pg: |_| "integer".into(), logical: LogicalType::Int4, conv: Conv::Int4 },
    TypeRow { mysql: &["mediumint"], unsigned: None, pg: |_| "integer".into(), logical: LogicalType::Int4, conv: Conv::Int4 },
    TypeRow { mysql: &["int", "integer"], unsigned: Some(false), pg: |_| "integer".into(), logical: LogicalType::Int4, conv: Conv::Int4 },
    TypeRow { mysql: &["int", "integer"], unsigned: Some(true), pg: |_| "bigint".into(), logical: LogicalType::Int8, conv: Conv::Int8 },
    TypeRow { mysql: &["bigint"], unsigned: Some(false), pg: |_| "bigint".into(), logical: LogicalType::Int8, conv: Conv::Int8 },
    TypeRow { mysql: &["bigint"], unsigned: Some(true), pg: |_| "numeric(20,0)".into(), logical: LogicalType::Numeric, conv: Conv::U64Numeric },
    TypeRow {
        mysql: &["decimal", "numeric"],
        unsigned: None,
        pg: |t| format!("numeric({},{})", t.arg(0).unwrap_or(10), t.arg(1).unwrap_or(0)),
        logical: LogicalType::Numeric,
        conv: Conv::Decimal,
    },
    TypeRow { mysql: &["float"], unsigned: None, pg: |_| "real".into(), logical: LogicalType::Float4, conv: Conv::Float4 },
    TypeRow { mysql: &["double", "real"], unsigned: None, pg: |_| "double precision".into(), logical: LogicalType::Float8, conv: Conv::Float8 },
    TypeRow {
        mysql: &["char", "varchar"],
        unsigned: None,
        pg: |t| match t.arg(0) {
            Some(n) if n > 0 => format!("character varying({n})"),
            _ => "text".into(),
        },
        logical: LogicalType::Text,
        conv: Conv::Text,
    },
    TypeRow { mysql: &["tinytext", "text", "mediumtext", "longtext"], unsigned: None, pg: |_| "text".into(), logical: LogicalType::Text, conv: Conv::Text },
    TypeRow { mysql: BINARIES, unsigned: None, pg: |_| "bytea".into(), logical: LogicalType::Bytea, conv: Conv::Bytes },
    TypeRow { mysql: &["date"], unsigned: None, pg: |_| "date".into(), logical: LogicalType::Date, conv: Conv::Date },
    TypeRow {
        mysql: &["datetime"],
        unsigned: None,
        pg: |t| format!("timestamp({}) without time zone", t.arg(0).unwrap_or(0)),
        logical: LogicalType::Timestamp,
        conv: Conv::DateTime,
    },
    TypeRow {
        mysql: &["timestamp"],
        unsigned: None,
        pg: |t| format!("timestamp({}) with time zone", t.arg(0).unwrap_or(0)),
        logical: LogicalType::TimestampTz,
        conv: Conv::DateTime,
    },
    TypeRow { mysql: &["time"], unsigned: None, pg: |_| "interval".into(), logical: LogicalType::Interval, conv: Conv::Time },
    TypeRow { mysql: &["year"], unsigned: None, pg: |_| "smallint".into(), logical: LogicalType::Int2, conv: Conv::Int2 },
    // The enum type itself is created per column (`enum_type_name`); `pg` is filled in there.
    TypeRow { mysql: &["enum"], unsigned: None, pg: |_| String::new(), logical: LogicalType::Enum, conv: Conv::Enum },
    TypeRow { mysql: &["set"], unsigned: None, pg: |_| "text".into(), logical: LogicalType::Text, conv: Conv::Text },
    TypeRow { mysql: &["bit"], unsigned: None, pg: |t| format!("bit({})", t.arg(0).unwrap_or(1)), logical: LogicalType::Raw(PG_BIT_OID), conv: Conv::Bit },
    TypeRow { mysql: &["json"], unsigned: None, pg: |_| "jsonb".into(), logical: LogicalType::Jsonb, conv: Conv::Json },
    TypeRow { mysql: &["uuid"], unsigned: None, pg: |_| "uuid".into(), logical: LogicalType::Uuid, conv: Conv::UuidText },
    // PostGIS geometry (schema, subtype and SRID filled in by `describe`), hashed as its EWKB;
    // bytea (MySQL's SRID + WKB, conv Bytes) when the target cannot have PostGIS.
    TypeRow { mysql: SPATIAL, unsigned: None, pg: |_| "geometry".into(), logical: LogicalType::Bytea, conv: Conv::Ewkb },
];

/// What a `--cast` rule may map to: the PostgreSQL type, and which source families qualify.
pub(super) struct CastRow {
    to: CastTarget,
    /// Families this cast accepts (empty: any).
    from: &'static [&'static [&'static str]],
    pub(super) pg: &'static str,
    pub(super) logical: LogicalType,
}

#[rustfmt::skip]
pub(super) const CAST_MAP: &[CastRow] = &[
    CastRow { to: CastTarget::Boolean, from: &[INTS, &["bit"]], pg: "boolean", logical: LogicalType::Bool },
    CastRow { to: CastTarget::Text, from: &[], pg: "text", logical: LogicalType::Text },
    CastRow { to: CastTarget::Bytea, from: &[STRINGS, BINARIES, SPATIAL, &["json"]], pg: "bytea", logical: LogicalType::Bytea },
    CastRow { to: CastTarget::Jsonb, from: &[STRINGS, &["json"]], pg: "jsonb", logical: LogicalType::Jsonb },
    CastRow { to: CastTarget::Uuid, from: &[&["binary", "char", "varchar", "uuid"]], pg: "uuid", logical: LogicalType::Uuid },
];

pub(super) fn type_row(info: &TypeInfo) -> Option<&'static TypeRow> {
    TYPE_MAP.iter().find(|r| r.mysql.contains(&info.family.as_str()) && r.unsigned.is_none_or(|u| u == info.unsigned))
}

pub(super) fn cast_row(to: CastTarget) -> &'static CastRow {
    CAST_MAP.iter().find(|r| r.to == to).expect("every cast target has a row")
}

pub(super) fn in_families(family: &str, lists: &[&[&str]]) -> bool {
    lists.iter().any(|l| l.contains(&family))
}

/// Whether a cast applies to a column of this type (None) or why not.
pub(super) fn cast_refusal(to: CastTarget, info: &TypeInfo) -> Option<String> {
    let row = cast_row(to);
    if !row.from.is_empty() && !in_families(&info.family, row.from) {
        return Some(format!("{} columns cannot be mapped to {}", info.family, row.pg));
    }
    if to == CastTarget::Uuid && info.family == "binary" && info.arg(0) != Some(16) {
        return Some("only BINARY(16) holds a uuid".into());
    }
    None
}

/// The converter and SELECT expression of a copied column, from what `describe_tables`
/// recorded in it (so resumed jobs read their columns exactly as the job was set up).
pub(super) fn column_conv(col: &Column) -> std::result::Result<(Conv, String), String> {
    let info = TypeInfo::parse(&col.source_type);
    let name = my_ident(&col.name);
    // Spatial columns as bytea (no PostGIS on the target, or `--cast …=bytea`): MySQL's bytes.
    if in_families(&info.family, &[SPATIAL]) && col.type_sql == "bytea" {
        return Ok((Conv::Bytes, name));
    }
    if let Some(row) = type_row(&info) {
        if row.logical == col.logical {
            return Ok((row.conv, name));
        }
    }
    let conv_for = |conv: Conv| Ok((conv, name.clone()));
    let fam = info.family.as_str();
    match &col.logical {
        LogicalType::Bool if in_families(fam, &[INTS, &["bit"]]) => conv_for(Conv::Bool),
        LogicalType::Text if in_families(fam, &[STRINGS, &["json", "set", "enum"]]) => conv_for(Conv::Text),
        LogicalType::Text if in_families(fam, &[BINARIES]) => conv_for(Conv::TextUtf8),
        LogicalType::Text if in_families(fam, &[SPATIAL]) => Ok((Conv::Text, format!("ST_AsText({name})"))),
        // Bits as their number; everything else as MySQL renders it.
        LogicalType::Text if fam == "bit" => Ok((Conv::Text, format!("CAST({name} + 0 AS CHAR)"))),
        LogicalType::Text => Ok((Conv::Text, format!("CAST({name} AS CHAR)"))),
        LogicalType::Bytea if in_families(fam, &[STRINGS, BINARIES, SPATIAL, &["json"]]) => conv_for(Conv::Bytes),
        LogicalType::Jsonb if in_families(fam, &[STRINGS, &["json"]]) => conv_for(Conv::Json),
        LogicalType::Uuid if fam == "binary" => conv_for(Conv::UuidBytes),
        LogicalType::Uuid if in_families(fam, &[&["char", "varchar", "uuid"]]) => conv_for(Conv::UuidText),
        other => Err(format!(
            "column {} ({}) cannot be read as {} ({other:?}); the job's table definition does not fit this build",
            quote_ident(&col.name),
            col.source_type,
            col.type_sql
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Extraction
// ---------------------------------------------------------------------------------------------

/// What is wrong with one value.
pub(super) enum Problem {
    /// A zero date: NULL under `--zero-dates null`, an error otherwise.
    ZeroDate(String),
    Invalid(String),
}

type ConvFn = fn(&Value, &ColPlan, &mut CopyEncoder, &mut RowEncoder) -> std::result::Result<(), Problem>;

/// A copied column's converter, chosen once per chunk.
pub(super) struct ColPlan {
    pub(super) name: String,
    pub(super) conv: ConvFn,
    /// BIT(n): n. Others: unused.
    pub(super) width: u32,
    /// ENUM: whether '' is one of the declared labels.
    pub(super) empty_label: bool,
}

pub(super) fn conv_fn(conv: Conv) -> ConvFn {
    match conv {
        Conv::Int2 => conv_int2,
        Conv::Int4 => conv_int4,
        Conv::Int8 => conv_int8,
        Conv::U64Numeric => conv_u64_numeric,
        Conv::Decimal => conv_decimal,
        Conv::Float4 => conv_float4,
        Conv::Float8 => conv_float8,
        Conv::Bool => conv_bool,
        Conv::Text => conv_text,
        Conv::TextUtf8 => conv_text_utf8,
        Conv::Enum => conv_enum,
        Conv::Bytes => conv_bytes,
        Conv::Date => conv_date,
        Conv::DateTime => conv_datetime,
        Conv::Time => conv_time,
        Conv::Bit => conv_bit,
        Conv::Json => conv_json,
        Conv::UuidText => conv_uuid_text,
        Conv::UuidBytes => conv_uuid_bytes,
        Conv::Ewkb => conv_ewkb,
    }
}

#[cold]
fn unexpected(v: &Value) -> Problem {
    Problem::Invalid(format!("unexpected value {v:?} from the server"))
}

#[inline]
fn int_of(v: &Value) -> std::result::Result<i128, Problem> {
    match v {
        Value::Int(n) => Ok(i128::from(*n)),
        Value::UInt(n) => Ok(i128::from(*n)),
        Value::Bytes(b) => std::str::from_utf8(b).ok().and_then(|s| s.parse().ok()).ok_or_else(|| unexpected(v)),
        _ => Err(unexpected(v)),
    }
}

#[cold]
fn out_of_range(n: i128, pg: &str) -> Problem {
    Problem::Invalid(format!("{n} does not fit PostgreSQL {pg}"))
}

fn conv_int2(v: &Value, _: &ColPlan, c: &mut CopyEncoder, h: &mut RowEncoder) -> std::result::Result<(), Problem> {
    let n = int_of(v)?;
    let x = i16::try_from(n).map_err(|_| out_of_range(n, "smallint"))?;
    c.i16(x);
    h.int(n);
    Ok(())
}

fn conv_int4(v: &Value, _: &ColPlan, c: &mut CopyEncoder, h: &mut RowEncoder) -> std::result::Result<(), Problem> {
    let n = int_of(v)?;
    let x = i32::try_from(n).map_err(|_| out_of_range(n, "integer"))?;
    c.i32(x);
    h.int(n);
    Ok(())
}

fn conv_int8(v: &Value, _: &ColPlan, c: &mut CopyEncoder, h: &mut RowEncoder) -> std::result::Result<(), Problem> {
    let n = int_of(v)?;
    let x = i64::try_from(n).map_err(|_| out_of_range(n, "bigint"))?;
    c.i64(x);
    h.int(n);
    Ok(())
}

fn conv_u64_numeric(
    v: &Value,
    _: &ColPlan,
    c: &mut CopyEncoder,
    h: &mut RowEncoder,
) -> std::result::Result<(), Problem> {
    let n = int_of(v)?;
    // Rendered on the stack: no allocation per value.
    let mut buf = [0u8; 40];
    let text = render_int(n, &mut buf);
    c.numeric_from_decimal_str(text).map_err(|e| Problem::Invalid(e.to_string()))?;
    h.decimal(text).map_err(|e| Problem::Invalid(e.to_string()))?;
    Ok(())
}

fn render_int(n: i128, buf: &mut [u8; 40]) -> &str {
    let mut i = buf.len();
    let neg = n < 0;
    let mut m = n.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (m % 10) as u8;
        m /= 10;
        if m == 0 {
            break;
        }
    }
    if neg {
        i -= 1;
        buf[i] = b'-';
    }
    std::str::from_utf8(&buf[i..]).expect("ASCII digits")
}

fn conv_decimal(v: &Value, _: &ColPlan, c: &mut CopyEncoder, h: &mut RowEncoder) -> std::result::Result<(), Problem> {
    let Value::Bytes(b) = v else { return Err(unexpected(v)) };
    let text = std::str::from_utf8(b).map_err(|_| unexpected(v))?;
    c.numeric_from_decimal_str(text).map_err(|e| Problem::Invalid(e.to_string()))?;
    h.decimal(text).map_err(|e| Problem::Invalid(e.to_string()))?;
    Ok(())
}

fn conv_float4(v: &Value, _: &ColPlan, c: &mut CopyEncoder, h: &mut RowEncoder) -> std::result::Result<(), Problem> {
    let x = match v {
        Value::Float(x) => *x,
        Value::Double(d) if f64::from(*d as f32) == *d => *d as f32,
        _ => return Err(unexpected(v)),
    };
    c.f32(x);
    h.float(f64::from(x));
    Ok(())
}

fn conv_float8(v: &Value, _: &ColPlan, c: &mut CopyEncoder, h: &mut RowEncoder) -> std::result::Result<(), Problem> {
    let x = match v {
        Value::Double(x) => *x,
        Value::Float(x) => f64::from(*x),
        _ => return Err(unexpected(v)),
    };
    c.f64(x);
    h.float(x);
    Ok(())
}

fn conv_bool(v: &Value, _: &ColPlan, c: &mut CopyEncoder, h: &mut RowEncoder) -> std::result::Result<(), Problem> {
    let n = match v {
        // BIT(n) arrives as big-endian bytes.
        Value::Bytes(b) if !b.is_empty() && b.len() <= 8 => b.iter().fold(0i128, |acc, &x| acc << 8 | i128::from(x)),
        _ => int_of(v)?,
    };
    let x = match n {
        0 => false,
        1 => true,
        _ => return Err(Problem::Invalid(format!("{n} is neither 0 nor 1, so it is not a boolean"))),
    };
    c.bool(x);
    h.bool(x);
    Ok(())
}

#[cold]
fn nul_in_text() -> Problem {
    Problem::Invalid(
        "text contains a NUL byte, which PostgreSQL text cannot hold (map the column to bytea with --cast)".into(),
    )
}

fn conv_text(v: &Value, _: &ColPlan, c: &mut CopyEncoder, h: &mut RowEncoder) -> std::result::Result<(), Problem> {
    let Value::Bytes(b) = v else { return Err(unexpected(v)) };
    if b.contains(&0) {
        return Err(nul_in_text());
    }
    c.field(b);
    h.text(b);
    Ok(())
}

fn conv_text_utf8(v: &Value, p: &ColPlan, c: &mut CopyEncoder, h: &mut RowEncoder) -> std::result::Result<(), Problem> {
    let Value::Bytes(b) = v else { return Err(unexpected(v)) };
    if std::str::from_utf8(b).is_err() {
        return Err(Problem::Invalid(
            "bytes are not valid UTF-8, so they cannot be text (map the column to bytea)".into(),
        ));
    }
    conv_text(v, p, c, h)
}

fn conv_enum(v: &Value, p: &ColPlan, c: &mut CopyEncoder, h: &mut RowEncoder) -> std::result::Result<(), Problem> {
    if let Value::Bytes(b) = v {
        if b.is_empty() && !p.empty_label {
            return Err(Problem::Invalid(
                "the empty ENUM value (MySQL's index 0, stored for invalid values outside strict mode) is not a \
                 declared label; map the column to text with --cast"
                    .into(),
            ));
        }
    }
    conv_text(v, p, c, h)
}

fn conv_ewkb(v: &Value, _: &ColPlan, c: &mut CopyEncoder, h: &mut RowEncoder) -> std::result::Result<(), Problem> {
    let Value::Bytes(b) = v else { return Err(unexpected(v)) };
    let ewkb = ewkb_of(b).ok_or_else(|| Problem::Invalid("not a MySQL geometry value (SRID + WKB)".into()))?;
    c.field(&ewkb);
    h.bytes(&ewkb);
    Ok(())
}

/// MySQL's stored geometry (SRID as 4 little-endian bytes, then WKB) as PostGIS EWKB: the
/// WKB with the SRID flag in its type word and the SRID after it, in the WKB's byte order;
/// SRID 0 is plain WKB. PostGIS sends geometry back in the same form, so digests match.
pub(super) fn ewkb_of(stored: &[u8]) -> Option<Vec<u8>> {
    const SRID_FLAG: u32 = 0x2000_0000;
    let srid = u32::from_le_bytes(stored.get(..4)?.try_into().ok()?);
    let wkb = stored.get(4..)?;
    let little = match wkb.first()? {
        1 => true,
        0 => false,
        _ => return None,
    };
    let word: [u8; 4] = wkb.get(1..5)?.try_into().ok()?;
    if srid == 0 {
        return Some(wkb.to_vec());
    }
    let (kind, flagged, srid) = if little {
        (u32::from_le_bytes(word), (u32::from_le_bytes(word) | SRID_FLAG).to_le_bytes(), srid.to_le_bytes())
    } else {
        (u32::from_be_bytes(word), (u32::from_be_bytes(word) | SRID_FLAG).to_be_bytes(), srid.to_be_bytes())
    };
    if kind & SRID_FLAG != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(wkb.len() + 4);
    out.push(wkb[0]);
    out.extend_from_slice(&flagged);
    out.extend_from_slice(&srid);
    out.extend_from_slice(&wkb[5..]);
    Some(out)
}

/// PostGIS's name of a MySQL spatial type, for `geometry(Type, SRID)`.
pub(super) fn geometry_subtype(family: &str) -> &'static str {
    match family {
        "point" => "Point",
        "linestring" => "LineString",
        "polygon" => "Polygon",
        "multipoint" => "MultiPoint",
        "multilinestring" => "MultiLineString",
        "multipolygon" => "MultiPolygon",
        "geometrycollection" | "geomcollection" => "GeometryCollection",
        _ => "Geometry",
    }
}

fn conv_bytes(v: &Value, _: &ColPlan, c: &mut CopyEncoder, h: &mut RowEncoder) -> std::result::Result<(), Problem> {
    let Value::Bytes(b) = v else { return Err(unexpected(v)) };
    c.field(b);
    h.bytes(b);
    Ok(())
}

/// Days since 1970-01-01 of a proleptic Gregorian date (year 0 is 1 BC, as in both engines).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// Days since 1970 of a MySQL date; zero dates (month or day 0) and impossible dates
/// (`2023-02-30`, stored under ALLOW_INVALID_DATES) are problems.
#[inline]
fn checked_days(y: u16, m: u8, d: u8, v: &Value) -> std::result::Result<i64, Problem> {
    if m == 0 || d == 0 {
        return Err(Problem::ZeroDate(value_text(v)));
    }
    let y = i64::from(y);
    if m > 12 || u32::from(d) > days_in_month(y, u32::from(m)) {
        return Err(Problem::Invalid(format!("{} is not a valid date", value_text(v))));
    }
    Ok(days_from_civil(y, u32::from(m), u32::from(d)))
}

fn conv_date(v: &Value, _: &ColPlan, c: &mut CopyEncoder, h: &mut RowEncoder) -> std::result::Result<(), Problem> {
    let Value::Date(y, m, d, ..) = *v else { return Err(unexpected(v)) };
    let days = checked_days(y, m, d, v)? as i32;
    c.date_from_days_since_1970(days).map_err(|e| Problem::Invalid(e.to_string()))?;
    h.date_days(days);
    Ok(())
}

fn conv_datetime(v: &Value, _: &ColPlan, c: &mut CopyEncoder, h: &mut RowEncoder) -> std::result::Result<(), Problem> {
    let Value::Date(y, m, d, hh, mi, ss, us) = *v else { return Err(unexpected(v)) };
    let days = checked_days(y, m, d, v)?;
    let secs = days * 86_400 + i64::from(hh) * 3600 + i64::from(mi) * 60 + i64::from(ss);
    let unix_us = secs * 1_000_000 + i64::from(us);
    c.timestamp_from_unix_us(unix_us).map_err(|e| Problem::Invalid(e.to_string()))?;
    h.timestamp_us(unix_us);
    Ok(())
}

fn conv_time(v: &Value, _: &ColPlan, c: &mut CopyEncoder, h: &mut RowEncoder) -> std::result::Result<(), Problem> {
    let Value::Time(neg, days, hh, mi, ss, us) = *v else { return Err(unexpected(v)) };
    let secs = i64::from(days) * 86_400 + i64::from(hh) * 3600 + i64::from(mi) * 60 + i64::from(ss);
    let mut total = secs * 1_000_000 + i64::from(us);
    if neg {
        total = -total;
    }
    // Exactly what PostgreSQL's binary interval of this value reads back as: no days, no months.
    c.interval(0, 0, total);
    h.interval(0, 0, total);
    Ok(())
}

fn conv_bit(v: &Value, p: &ColPlan, c: &mut CopyEncoder, h: &mut RowEncoder) -> std::result::Result<(), Problem> {
    let Value::Bytes(b) = v else { return Err(unexpected(v)) };
    let n = p.width.clamp(1, 64);
    if b.len() > 8 {
        return Err(unexpected(v));
    }
    let value = b.iter().fold(0u64, |acc, &x| acc << 8 | u64::from(x));
    if n < 64 && value >> n != 0 {
        return Err(Problem::Invalid(format!("{value:#x} has more than {n} bits")));
    }
    // bit_send: int32 bit length, then the bits left-aligned in ceil(n / 8) bytes.
    let nbytes = n.div_ceil(8) as usize;
    let aligned = value << (64 - n);
    let mut field = [0u8; 12];
    field[..4].copy_from_slice(&(n as i32).to_be_bytes());
    field[4..12].copy_from_slice(&aligned.to_be_bytes());
    let field = &field[..4 + nbytes];
    c.field(field);
    h.raw(PG_BIT_OID, field);
    Ok(())
}

fn conv_json(v: &Value, _: &ColPlan, c: &mut CopyEncoder, h: &mut RowEncoder) -> std::result::Result<(), Problem> {
    let Value::Bytes(b) = v else { return Err(unexpected(v)) };
    let text = std::str::from_utf8(b).map_err(|_| Problem::Invalid("JSON is not valid UTF-8".into()))?;
    if text.contains("\\u0000") {
        return Err(Problem::Invalid("JSON holds \\u0000, which PostgreSQL jsonb cannot (map to text)".into()));
    }
    h.json(text).map_err(|e| Problem::Invalid(e.to_string()))?;
    c.jsonb(text);
    Ok(())
}

fn conv_uuid_text(v: &Value, _: &ColPlan, c: &mut CopyEncoder, h: &mut RowEncoder) -> std::result::Result<(), Problem> {
    let Value::Bytes(b) = v else { return Err(unexpected(v)) };
    let uuid =
        parse_uuid(b).ok_or_else(|| Problem::Invalid(format!("{:?} is not a UUID", String::from_utf8_lossy(b))))?;
    c.uuid(&uuid);
    h.uuid(&uuid);
    Ok(())
}

fn conv_uuid_bytes(
    v: &Value,
    _: &ColPlan,
    c: &mut CopyEncoder,
    h: &mut RowEncoder,
) -> std::result::Result<(), Problem> {
    let Value::Bytes(b) = v else { return Err(unexpected(v)) };
    let uuid: [u8; 16] = b.as_slice().try_into().map_err(|_| Problem::Invalid(format!("{} bytes, not 16", b.len())))?;
    c.uuid(&uuid);
    h.uuid(&uuid);
    Ok(())
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (hyphens optional, either case) → 16 bytes.
fn parse_uuid(text: &[u8]) -> Option<[u8; 16]> {
    let mut out = [0u8; 16];
    let mut n = 0;
    let mut high: Option<u8> = None;
    for &ch in text {
        if ch == b'-' {
            continue;
        }
        let d = (ch as char).to_digit(16)? as u8;
        match high.take() {
            None => high = Some(d),
            Some(hi) => {
                *out.get_mut(n)? = hi << 4 | d;
                n += 1;
            }
        }
    }
    (n == 16 && high.is_none()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_types_parse() {
        let t = TypeInfo::parse("int(10) unsigned zerofill");
        assert_eq!((t.family.as_str(), t.arg(0), t.unsigned), ("int", Some(10), true));
        let t = TypeInfo::parse("decimal(65,30)");
        assert_eq!((t.arg(0), t.arg(1)), (Some(65), Some(30)));
        let t = TypeInfo::parse("enum('a','it''s','x,y',')') character set latin1 collate latin1_swedish_ci");
        assert_eq!(t.labels(), ["a", "it's", "x,y", ")"]);
        let mixed = lower_outside_quotes("ENUM('Red','it''S','B\\'C') CHARACTER SET Latin1");
        assert_eq!(mixed, "enum('Red','it''S','B\\'C') character set latin1");
        assert_eq!(TypeInfo::parse(&mixed).labels(), ["Red", "it'S", "B'C"]);
        assert_eq!((t.charset.as_deref(), t.collation.as_deref()), (Some("latin1"), Some("latin1_swedish_ci")));
    }

    #[test]
    fn every_mapping_row_is_reachable_and_integers_widen() {
        let pg = |ty: &str| type_row(&TypeInfo::parse(ty)).map(|r| (r.pg)(&TypeInfo::parse(ty)));
        assert_eq!(pg("tinyint(4)").as_deref(), Some("smallint"));
        assert_eq!(pg("tinyint(3) unsigned").as_deref(), Some("smallint"));
        assert_eq!(pg("smallint(5) unsigned").as_deref(), Some("integer"));
        assert_eq!(pg("mediumint(8) unsigned").as_deref(), Some("integer"));
        assert_eq!(pg("int unsigned").as_deref(), Some("bigint"));
        assert_eq!(pg("bigint(20) unsigned").as_deref(), Some("numeric(20,0)"));
        assert_eq!(pg("decimal(65,30)").as_deref(), Some("numeric(65,30)"));
        assert_eq!(pg("datetime(6)").as_deref(), Some("timestamp(6) without time zone"));
        assert_eq!(pg("timestamp").as_deref(), Some("timestamp(0) with time zone"));
        assert_eq!(pg("varchar(16)").as_deref(), Some("character varying(16)"));
        assert_eq!(pg("bit(5)").as_deref(), Some("bit(5)"));
        assert_eq!(pg("geometry").as_deref(), Some("geometry"));
        assert_eq!(pg("linestring").as_deref(), Some("geometry"));
        assert_eq!(pg("inet6"), None);
        for row in TYPE_MAP {
            for fam in row.mysql {
                let probe =
                    TypeInfo { family: fam.to_string(), unsigned: row.unsigned == Some(true), ..TypeInfo::default() };
                assert!(type_row(&probe).is_some(), "{fam}");
            }
        }
    }

    #[test]
    fn mysql_geometry_becomes_ewkb_with_its_srid() {
        // POINT(1 2), SRID 4326, as MySQL stores it: SRID LE, then NDR WKB.
        let mut stored = 4326u32.to_le_bytes().to_vec();
        stored.push(1);
        stored.extend_from_slice(&1u32.to_le_bytes());
        stored.extend_from_slice(&1f64.to_le_bytes());
        stored.extend_from_slice(&2f64.to_le_bytes());
        let ewkb = ewkb_of(&stored).unwrap();
        assert_eq!(&ewkb[..9], &[1, 1, 0, 0, 0x20, 0xE6, 0x10, 0, 0]);
        assert_eq!(&ewkb[9..], &stored[9..]);
        let mut plain = 0u32.to_le_bytes().to_vec();
        plain.extend_from_slice(&stored[4..]);
        assert_eq!(ewkb_of(&plain).unwrap(), &stored[4..]);
        assert_eq!(ewkb_of(&[1, 2, 3]), None);
        assert_eq!(geometry_subtype("geomcollection"), "GeometryCollection");
    }

    #[test]
    fn dates_count_days_like_postgresql() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 1, 1), 10_957);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(days_from_civil(9, 12, 4), -715_903);
        assert_eq!(days_from_civil(0, 1, 1), -719_528);
        assert_eq!(days_in_month(2000, 2), 29);
        assert_eq!(days_in_month(1900, 2), 28);
    }

    #[test]
    fn uuids_and_ints_render() {
        let u = parse_uuid(b"123e4567-e89b-12d3-a456-426614174000").unwrap();
        assert_eq!(u[0], 0x12);
        assert_eq!(u[15], 0x00);
        assert!(parse_uuid(b"123e4567").is_none());
        let mut buf = [0u8; 40];
        assert_eq!(render_int(18_446_744_073_709_551_615, &mut buf), "18446744073709551615");
        assert_eq!(render_int(-5, &mut buf), "-5");
        assert_eq!(render_int(0, &mut buf), "0");
    }
}
