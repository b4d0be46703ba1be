//! Reading the MySQL/MariaDB catalog into engine-neutral `Table`s with their PostgreSQL DDL:
//! columns, defaults, indexes and the chunking key.

use std::collections::HashSet;

use mysql::Value;

use super::keys::KeyKind;
use super::types::{
    cast_refusal, cast_row, geometry_subtype, in_families, lower_outside_quotes, type_row, unquote_sql_string, Conv,
    TypeInfo, INTS, PG_BIT_OID, SPATIAL, STRINGS,
};
use super::{my_ident, my_table, num_of, pg_name, same_name, text_of, Flavor, MySource};
use crate::config::{CastRule, CastSelector, ColumnRef, TablePattern, TableSpec, ZeroDates};
use crate::error::{Error, Result};
use crate::schema::{quote_ident, quote_literal, Column, Key, LogicalType, SequenceSync, Table, TableName, TargetDdl};

// ---------------------------------------------------------------------------------------------
// Introspection
// ---------------------------------------------------------------------------------------------

/// A column as `information_schema.COLUMNS` describes it.
#[derive(Debug, Clone)]
struct SourceColumn {
    name: String,
    /// COLUMN_TYPE, lower case (`int(10) unsigned`, `enum('a','b')`); `json` for MariaDB JSON.
    column_type: String,
    info: TypeInfo,
    nullable: bool,
    default: Option<String>,
    extra: String,
    charset: Option<String>,
    collation: Option<String>,
    comment: String,
}

impl SourceColumn {
    fn auto_increment(&self) -> bool {
        self.extra.contains("auto_increment")
    }

    /// Forms a `type:` cast rule can name: the full column type, the type without integer
    /// display widths (`int unsigned`, as MySQL 8 shows it), and the bare type name.
    fn type_forms(&self) -> Vec<String> {
        let full = crate::config::normalize_mysql_type(&self.column_type);
        let mut forms = vec![full.clone()];
        if INTS.contains(&self.info.family.as_str()) {
            if let (Some(open), Some(close)) = (full.find('('), full.find(')')) {
                let bare = format!("{}{}", &full[..open], &full[close + 1..]);
                forms.push(crate::config::normalize_mysql_type(&bare));
            }
        }
        forms.push(self.info.family.clone());
        forms
    }

    /// `Column::source_type`: COLUMN_TYPE plus, for character columns, the charset and collation
    /// (key comparisons need them).
    pub(super) fn source_type(&self) -> String {
        match (&self.charset, &self.collation) {
            (Some(cs), Some(co)) if self.info.family != "json" => {
                format!("{} character set {cs} collate {co}", self.column_type)
            }
            _ => self.column_type.clone(),
        }
    }
}

/// An index as `information_schema.STATISTICS` describes it.
#[derive(Debug, Clone)]
struct SourceIndex {
    name: String,
    unique: bool,
    kind: String,
    /// (column name, prefix length, descending); a None name is an expression (MySQL 8).
    parts: Vec<(Option<String>, Option<u32>, bool)>,
}

impl MySource {
    /// Resolves the named tables (every base table of the URL's database when none are named)
    /// and introspects them, applying `--cast`, `--exclude-column` and `--target-schema`.
    pub fn describe_tables(&mut self, specs: &[TableSpec], excluded: &[TablePattern]) -> Result<Vec<Table>> {
        let mut chosen = self.resolve_tables(specs)?;
        chosen.retain(|name| !excluded.iter().any(|p| p.matches(name)));
        if chosen.is_empty() {
            return Err(Error::input(format!("the source database {} has no tables", self.endpoint)));
        }
        let mut used_rules: HashSet<usize> = HashSet::new();
        let mut used_excludes: HashSet<usize> = HashSet::new();
        let mut unsupported: Vec<String> = Vec::new();
        let mut tables = Vec::with_capacity(chosen.len());
        for name in &chosen {
            if let Some(t) = self.describe(name, &mut used_rules, &mut used_excludes, &mut unsupported)? {
                tables.push(t);
            }
        }
        if !unsupported.is_empty() {
            return Err(Error::input(format!(
                "columns of types PostgreSQL has no faithful equivalent for:\n  {}\nmap them with --cast \
                 (e.g. --cast 'column:DB.TABLE.COLUMN=text' or =bytea) or leave them out with \
                 --exclude-column DB.TABLE.COLUMN",
                unsupported.join("\n  ")
            )));
        }
        let unused: Vec<String> = self
            .options
            .casts
            .iter()
            .enumerate()
            .filter(|(i, r)| matches!(r.selector, CastSelector::Column(_)) && !used_rules.contains(i))
            .map(|(_, r)| format!("--cast {}", r.text))
            .chain(
                self.options
                    .excluded
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !used_excludes.contains(i))
                    .map(|(_, c)| format!("--exclude-column {c}")),
            )
            .collect();
        if !unused.is_empty() {
            return Err(Error::input(format!(
                "{} names no column of the tables being copied; check the database, table and column names",
                unused.join(", ")
            )));
        }
        Ok(tables)
    }

    fn resolve_tables(&mut self, specs: &[TableSpec]) -> Result<Vec<TableName>> {
        let list_sql = "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES
                         WHERE TABLE_SCHEMA = ? AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED')
                         ORDER BY TABLE_NAME";
        let db = self.database.clone();
        if specs.is_empty() {
            let rows = self.rows(list_sql, vec![Value::from(db.as_str())], "listing source tables")?;
            return Ok(rows
                .iter()
                .map(|r| TableName::new(text_of(r, 0).unwrap_or_default(), text_of(r, 1).unwrap_or_default()))
                .collect());
        }
        let mut chosen: Vec<TableName> = Vec::new();
        for spec in specs {
            let schema = spec.schema.clone().unwrap_or_else(|| db.clone());
            let rows = self.rows(list_sql, vec![Value::from(schema.as_str())], "listing source tables")?;
            let names: Vec<String> = rows.iter().filter_map(|r| text_of(r, 1)).collect();
            let found = names
                .iter()
                .find(|n| **n == spec.name)
                .or_else(|| {
                    let folded: Vec<&String> = names.iter().filter(|n| n.eq_ignore_ascii_case(&spec.name)).collect();
                    (folded.len() == 1 && !spec.quoted).then(|| folded[0])
                })
                .cloned();
            let Some(name) = found else {
                let here: Vec<TableName> = names.iter().map(|n| TableName::new(&schema, n)).collect();
                return Err(Error::input(format!(
                    "table {} not found in the source (only base tables are copied){}",
                    TableName::new(&schema, &spec.name),
                    crate::schema::did_you_mean(&spec.name, &here)
                )));
            };
            let table = TableName::new(schema, name);
            if chosen.contains(&table) {
                return Err(Error::input(format!("table {table} is listed more than once")));
            }
            chosen.push(table);
        }
        Ok(chosen)
    }

    fn rule_for(&self, table: &TableName, col: &SourceColumn) -> Option<(usize, &CastRule)> {
        let matches_col = |c: &ColumnRef| {
            c.schema.as_deref().unwrap_or(&self.database) == table.schema
                && c.table == table.name
                && c.column == col.name
        };
        let rules = &self.options.casts;
        // Column rules win over type rules; the last matching rule of a kind wins.
        let by_column = rules
            .iter()
            .enumerate()
            .rev()
            .find(|(_, r)| matches!(&r.selector, CastSelector::Column(c) if matches_col(c)));
        by_column.or_else(|| {
            let forms = col.type_forms();
            rules
                .iter()
                .enumerate()
                .rev()
                .find(|(_, r)| matches!(&r.selector, CastSelector::Type(t) if forms.contains(t)))
        })
    }

    fn describe(
        &mut self,
        name: &TableName,
        used_rules: &mut HashSet<usize>,
        used_excludes: &mut HashSet<usize>,
        unsupported: &mut Vec<String>,
    ) -> Result<Option<Table>> {
        let what = format!("introspecting {name}");
        let params = || vec![Value::from(name.schema.as_str()), Value::from(name.name.as_str())];
        let rows = self.rows(
            "SELECT COLUMN_NAME, COLUMN_TYPE, LOWER(DATA_TYPE), IS_NULLABLE, COLUMN_DEFAULT, LOWER(EXTRA),
                    CHARACTER_SET_NAME, COLLATION_NAME, COLUMN_COMMENT
               FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?
              ORDER BY ORDINAL_POSITION",
            params(),
            &what,
        )?;
        let checks = check_constraints(self, name)?;
        let json_checked: HashSet<String> = checks.iter().filter_map(|(_, clause)| json_valid_column(clause)).collect();
        let mut source_cols = Vec::with_capacity(rows.len());
        for r in &rows {
            let col_name = text_of(r, 0).unwrap_or_default();
            let mut column_type = lower_outside_quotes(&text_of(r, 1).unwrap_or_default());
            if json_checked.contains(&col_name) && text_of(r, 2).as_deref() == Some("longtext") {
                column_type = "json".into();
            }
            let info = TypeInfo::parse(&column_type);
            source_cols.push(SourceColumn {
                name: col_name,
                info,
                column_type,
                nullable: text_of(r, 3).as_deref() == Some("YES"),
                default: text_of(r, 4),
                extra: text_of(r, 5).unwrap_or_default(),
                charset: text_of(r, 6),
                collation: text_of(r, 7),
                comment: text_of(r, 8).unwrap_or_default(),
            });
        }

        let target_schema = self.options.target_schema.clone().unwrap_or_else(|| self.fold(&name.schema));
        let target = TableName::new(target_schema, self.fold(&name.name));
        let mut prerequisites = vec![format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(&target.schema))];
        let mut columns: Vec<Column> = Vec::new();
        // Each column's DDL before and after its NOT NULL, which is decided once the key is known.
        let mut col_sql: Vec<(String, String)> = Vec::new();
        // NOT NULL date and time columns whose zero dates would arrive as NULL.
        let mut relax: Vec<usize> = Vec::new();
        let mut after_create: Vec<String> = Vec::new();
        let mut sequences = Vec::new();
        let mut excluded: HashSet<String> = HashSet::new();
        let mut changes: Vec<String> = Vec::new();
        // Spatial columns that declare an SRID (read at the first spatial column).
        let mut srids: Vec<(String, u32)> = Vec::new();
        for sc in &source_cols {
            let ex = self.options.excluded.iter().position(|c| {
                c.schema.as_deref().unwrap_or(&self.database) == name.schema
                    && c.table == name.name
                    && c.column == sc.name
            });
            if let Some(i) = ex {
                used_excludes.insert(i);
                excluded.insert(self.fold(&sc.name));
                continue;
            }
            // The column's name on the target (`--lowercase-identifiers`).
            let col_name = self.fold(&sc.name);
            let rule = self.rule_for(name, sc).map(|(i, r)| (i, r.clone()));
            let (type_sql, logical, cast) = match &rule {
                Some((i, r)) => {
                    used_rules.insert(*i);
                    if let Some(why) = cast_refusal(r.to, &sc.info) {
                        return Err(Error::input(format!(
                            "--cast {}: cannot map column {}.{} ({}): {why}",
                            r.text,
                            name,
                            quote_ident(&sc.name),
                            sc.column_type
                        )));
                    }
                    let row = cast_row(r.to);
                    (row.pg.to_string(), row.logical.clone(), true)
                }
                None => match type_row(&sc.info) {
                    Some(row) if row.conv == Conv::Enum => {
                        let type_name = TableName::new(&target.schema, pg_name(&[&target.name, &col_name]));
                        let labels: Vec<String> = sc.info.labels().iter().map(|l| quote_literal(l)).collect();
                        prerequisites.push(format!("DROP TYPE IF EXISTS {}", type_name.quoted()));
                        prerequisites.push(format!(
                            "CREATE TYPE {} AS ENUM ({})",
                            type_name.quoted(),
                            labels.join(", ")
                        ));
                        (type_name.quoted(), row.logical.clone(), false)
                    }
                    Some(row) if in_families(&sc.info.family, &[SPATIAL]) => match self.postgis.clone() {
                        Some(schema) => {
                            let create =
                                format!("CREATE EXTENSION IF NOT EXISTS postgis SCHEMA {}", quote_ident(&schema));
                            if !prerequisites.contains(&create) {
                                prerequisites.push(create);
                                srids = self.srids(name)?;
                            }
                            let subtype = geometry_subtype(&sc.info.family);
                            let typmod = match srids.iter().find(|(c, _)| c == &sc.name) {
                                Some((_, srid)) => format!("({subtype},{srid})"),
                                None => String::new(),
                            };
                            (format!("{}.geometry{typmod}", quote_ident(&schema)), row.logical.clone(), false)
                        }
                        None => {
                            let change = format!(
                                "column {} ({}) is bytea holding MySQL's SRID + WKB bytes, not geometry: the target \
                                 has no PostGIS and this login cannot create it (install PostGIS on the target, \
                                 e.g. the postgresql-NN-postgis-3 package, and CREATE EXTENSION postgis as a \
                                 superuser, then copy again to get geometry)",
                                quote_ident(&sc.name),
                                sc.column_type
                            );
                            eprintln!("warning: {name}: {change}");
                            changes.push(change);
                            ("bytea".to_string(), LogicalType::Bytea, false)
                        }
                    },
                    Some(row) => ((row.pg)(&sc.info), row.logical.clone(), false),
                    None => {
                        unsupported.push(format!("{name}.{} is {}", quote_ident(&sc.name), sc.column_type));
                        continue;
                    }
                },
            };
            let not_null = !sc.nullable;
            if not_null && zero_dates_nulled(&logical, self.options.zero_dates) {
                relax.push(columns.len());
            }
            let identity = sc.auto_increment() && matches!(type_sql.as_str(), "smallint" | "integer" | "bigint");
            // BIGINT UNSIGNED is numeric(20,0), which cannot be an identity: a bigint sequence of
            // its own generates its values, carried over like an identity's.
            let numeric_serial = sc.auto_increment() && !identity && !cast && type_sql == "numeric(20,0)";
            let default_sql = if numeric_serial {
                let seq = TableName::new(&target.schema, pg_name(&[&target.name, &col_name, "seq"]));
                prerequisites.push(format!("CREATE SEQUENCE IF NOT EXISTS {} AS bigint", seq.quoted()));
                after_create.push(format!(
                    "ALTER SEQUENCE {} OWNED BY {}.{}",
                    seq.quoted(),
                    target.quoted(),
                    quote_ident(&col_name)
                ));
                Some(format!("nextval({}::regclass)", quote_literal(&seq.quoted())))
            } else if identity || sc.extra.contains("generated") {
                None
            } else {
                render_default(sc, &logical, &type_sql, self.flavor, cast)
            };
            let mut sql = format!("{} {}", quote_ident(&col_name), type_sql);
            if identity {
                sql.push_str(" GENERATED BY DEFAULT AS IDENTITY");
            }
            if identity || numeric_serial {
                sequences.push(SequenceSync {
                    source_sql: serde_json::json!([name.schema, name.name, sc.name]).to_string(),
                    target_sql: format!(
                        "pg_get_serial_sequence({}, {})",
                        quote_literal(&target.quoted()),
                        quote_literal(&col_name)
                    ),
                });
            }
            let default_clause = default_sql.as_ref().map(|d| format!(" DEFAULT {d}")).unwrap_or_default();
            col_sql.push((sql, default_clause));
            if !sc.comment.is_empty() {
                after_create.push(format!(
                    "COMMENT ON COLUMN {}.{} IS {}",
                    target.quoted(),
                    quote_ident(&col_name),
                    quote_literal(&sc.comment)
                ));
            }
            columns.push(Column {
                name: col_name,
                type_sql,
                logical,
                not_null,
                default_sql,
                identity_sql: identity.then(|| "GENERATED BY DEFAULT AS IDENTITY".to_string()),
                generated_sql: None,
                user_elem_oid: None,
                user_elem_type_sql: None,
                source_type: sc.source_type(),
            });
        }
        if columns.is_empty() {
            if !unsupported.is_empty() {
                return Ok(None);
            }
            return Err(Error::input(format!("table {name}: every column is excluded; leave the table out instead")));
        }

        let mut indexes = self.indexes(name)?;
        if self.options.lowercase_identifiers {
            for idx in &mut indexes {
                if idx.name != "PRIMARY" {
                    idx.name = self.fold(&idx.name);
                }
                for (col, _, _) in &mut idx.parts {
                    *col = col.as_deref().map(|c| self.fold(c));
                }
            }
        }
        let key = choose_key(&indexes, &columns);
        // A zero date copied as NULL into a NOT NULL column would fail the load after other
        // tables are committed: such columns are loaded without NOT NULL, which is re-added
        // after the load when no value was nulled (see `objects`). Key columns keep it (the
        // key needs it, and a zero date there fails its table either way).
        // This is routine for MySQL schemas (every TIMESTAMP NOT NULL column), so it is noted
        // among the table's changes (report, status) rather than warned about; a column whose
        // NOT NULL cannot be re-added is a failed object at the end of the run.
        for &i in relax.iter().filter(|i| key.as_ref().is_none_or(|k| !k.columns.contains(i))) {
            columns[i].not_null = false;
            changes.push(format!(
                "column {} is created without NOT NULL while loading (zero dates are copied as NULL, \
                 --zero-dates null); NOT NULL is re-added after the load when no value was nulled",
                quote_ident(&columns[i].name)
            ));
        }
        let mut col_sql: Vec<String> = col_sql
            .into_iter()
            .zip(&columns)
            .map(|((head, tail), c)| format!("{head}{}{tail}", if c.not_null { " NOT NULL" } else { "" }))
            .collect();
        let deferred = index_ddl(&indexes, &target, &columns, &excluded, name);

        let stats = self.rows(
            "SELECT TABLE_ROWS, DATA_LENGTH, TABLE_COMMENT FROM information_schema.TABLES
              WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            params(),
            &what,
        )?;
        let (estimated_rows, estimated_bytes, comment) =
            stats.first().map(|r| (num_of(r, 0), num_of(r, 1), text_of(r, 2).unwrap_or_default())).unwrap_or_default();
        if !comment.is_empty() {
            after_create.insert(0, format!("COMMENT ON TABLE {} IS {}", target.quoted(), quote_literal(&comment)));
        }
        // CHECK constraints PostgreSQL reads the same way go into the table; `objects` lists
        // the others as not carried over.
        for (check, clause) in &checks {
            if let Some(expr) = translate_check(clause, &columns) {
                col_sql.push(format!("CONSTRAINT {} CHECK ({expr})", quote_ident(&self.fold(check))));
            }
        }
        let create_table = format!("CREATE TABLE {} (\n  {}\n)", target.quoted(), col_sql.join(",\n  "));
        Ok(Some(Table {
            name: name.clone(),
            target,
            columns,
            key,
            estimated_rows,
            estimated_bytes,
            ddl: TargetDdl { prerequisites, create_table, after_create, deferred, sequences },
            partitioned: false,
            changes,
        }))
    }

    fn indexes(&mut self, name: &TableName) -> Result<Vec<SourceIndex>> {
        let rows = self.rows(
            "SELECT INDEX_NAME, NON_UNIQUE, COLUMN_NAME, SUB_PART, UPPER(INDEX_TYPE), COLLATION
               FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?
              ORDER BY INDEX_NAME = 'PRIMARY' DESC, INDEX_NAME, SEQ_IN_INDEX",
            vec![Value::from(name.schema.as_str()), Value::from(name.name.as_str())],
            &format!("reading the indexes of {name}"),
        )?;
        let mut out: Vec<SourceIndex> = Vec::new();
        for r in &rows {
            let index = text_of(r, 0).unwrap_or_default();
            let part =
                (text_of(r, 2), text_of(r, 3).and_then(|s| s.parse().ok()), text_of(r, 5).as_deref() == Some("D"));
            match out.last_mut() {
                Some(last) if last.name == index => last.parts.push(part),
                _ => out.push(SourceIndex {
                    name: index,
                    unique: num_of(r, 1) == 0,
                    kind: text_of(r, 4).unwrap_or_default(),
                    parts: vec![part],
                }),
            }
        }
        Ok(out)
    }
}

/// The primary key, else the unique index with the fewest columns whose columns are all
/// copied, NOT NULL, whole (no prefix) and of a type the key walk can compare exactly.
fn choose_key(indexes: &[SourceIndex], columns: &[Column]) -> Option<Key> {
    let mut best: Option<(usize, Key)> = None;
    for idx in indexes.iter().filter(|i| i.unique) {
        let positions: Option<Vec<usize>> = idx
            .parts
            .iter()
            .map(|(col, prefix, _)| {
                let pos = columns.iter().position(|c| Some(&c.name) == col.as_ref())?;
                let c = &columns[pos];
                (prefix.is_none() && c.not_null && KeyKind::of(&c.source_type).is_some()).then_some(pos)
            })
            .collect();
        let Some(positions) = positions else { continue };
        let names: Vec<String> = positions.iter().map(|&i| quote_ident(&columns[i].name)).collect();
        let primary = idx.name == "PRIMARY";
        let description = if primary {
            format!("primary key ({})", names.join(", "))
        } else {
            format!("unique index {} ({})", quote_ident(&idx.name), names.join(", "))
        };
        let rank = if primary { 0 } else { positions.len() };
        if best.as_ref().is_none_or(|(r, _)| rank < *r) {
            best = Some((rank, Key { columns: positions, description }));
        }
        if primary {
            break;
        }
    }
    best.map(|(_, k)| k)
}

/// Primary key, unique and plain indexes as PostgreSQL DDL, built after the load. Prefix
/// parts become `left(col, n)` (text) or `substring(col from 1 for n)` (bytea), which index
/// exactly what MySQL indexes. FULLTEXT indexes become GIN indexes on
/// `to_tsvector('simple', …)` of their columns. SPATIAL indexes, and indexes on excluded
/// columns or expressions, are skipped with a warning.
fn index_ddl(
    indexes: &[SourceIndex],
    target: &TableName,
    columns: &[Column],
    excluded: &HashSet<String>,
    source: &TableName,
) -> Vec<String> {
    let mut out = Vec::new();
    for idx in indexes {
        let skip = |why: &str| {
            eprintln!("warning: {source}: index {} is not created on the target: {why}", my_ident(&idx.name))
        };
        if idx.kind == "FULLTEXT" {
            match fulltext_index(idx, target, columns) {
                Ok(sql) => out.push(sql),
                Err(why) => skip(&why),
            }
            continue;
        }
        if idx.kind == "SPATIAL" {
            let geometry = match idx.parts.as_slice() {
                [(Some(col), _, _)] => columns.iter().find(|c| &c.name == col && c.type_sql.contains(".geometry")),
                _ => None,
            };
            match geometry {
                Some(c) => out.push(format!(
                    "CREATE INDEX {} ON {} USING gist ({})",
                    quote_ident(&pg_name(&[&target.name, &idx.name])),
                    target.quoted(),
                    quote_ident(&c.name)
                )),
                None => skip("spatial indexes need PostGIS on the target (the column is bytea there)"),
            }
            continue;
        }
        let mut parts = Vec::new();
        let mut ok = true;
        for (col, prefix, desc) in &idx.parts {
            let Some(col) = col else {
                skip("it indexes an expression");
                ok = false;
                break;
            };
            if excluded.contains(col) {
                skip(&format!("column {} is excluded", my_ident(col)));
                ok = false;
                break;
            }
            let Some(c) = columns.iter().find(|c| &c.name == col) else {
                skip(&format!("column {} is not copied", my_ident(col)));
                ok = false;
                break;
            };
            let mut part = match (prefix, &c.logical) {
                (Some(n), LogicalType::Bytea) => format!("(substring({} from 1 for {n}))", quote_ident(col)),
                (Some(n), LogicalType::Text) => format!("(left({}, {n}))", quote_ident(col)),
                _ => quote_ident(col),
            };
            if *desc {
                part.push_str(" DESC");
            }
            parts.push((part, prefix.is_some()));
        }
        if !ok {
            continue;
        }
        let list: Vec<&str> = parts.iter().map(|(p, _)| p.as_str()).collect();
        if idx.name == "PRIMARY" && parts.iter().all(|(_, prefixed)| !prefixed) {
            out.push(format!("ALTER TABLE {} ADD PRIMARY KEY ({})", target.quoted(), list.join(", ")));
        } else {
            let index_name = if idx.name == "PRIMARY" {
                pg_name(&[&target.name, "pkey"])
            } else {
                pg_name(&[&target.name, &idx.name])
            };
            out.push(format!(
                "CREATE {}INDEX {} ON {} ({})",
                if idx.unique { "UNIQUE " } else { "" },
                quote_ident(&index_name),
                target.quoted(),
                list.join(", ")
            ));
        }
    }
    out
}

/// A FULLTEXT index as a GIN index on the `simple` text search configuration's vector of its
/// columns (MySQL's parser splits words without stemming or stop words in most set-ups; queries
/// must use `to_tsvector('simple', …)` with the same expression to use it).
fn fulltext_index(idx: &SourceIndex, target: &TableName, columns: &[Column]) -> std::result::Result<String, String> {
    let mut parts = Vec::with_capacity(idx.parts.len());
    for (col, _, _) in &idx.parts {
        let col = col.as_ref().ok_or("it indexes an expression")?;
        let c =
            columns.iter().find(|c| &c.name == col).ok_or_else(|| format!("column {} is not copied", my_ident(col)))?;
        if c.logical != LogicalType::Text {
            return Err(format!("column {} is not text on the target", my_ident(col)));
        }
        parts.push(quote_ident(col));
    }
    let document = match parts.as_slice() {
        [one] => one.clone(),
        many => many.iter().map(|p| format!("coalesce({p}, '')")).collect::<Vec<_>>().join(" || ' ' || "),
    };
    Ok(format!(
        "CREATE INDEX {} ON {} USING gin (to_tsvector('simple', {document}))",
        quote_ident(&pg_name(&[&target.name, &idx.name])),
        target.quoted()
    ))
}

/// A column default as PostgreSQL DDL, when PostgreSQL can express it with the same value;
/// None otherwise (the column then has no default: values are never changed, only defaults
/// that cannot be expressed are left out).
fn render_default(
    sc: &SourceColumn,
    logical: &LogicalType,
    type_sql: &str,
    flavor: Flavor,
    cast: bool,
) -> Option<String> {
    let raw = sc.default.as_deref()?;
    // What the default is: a literal value, or an expression.
    let (literal, expression): (Option<String>, Option<String>) = match flavor {
        Flavor::MariaDb => {
            if raw.eq_ignore_ascii_case("NULL") {
                return None;
            } else if raw.starts_with('\'') {
                (Some(unquote_sql_string(raw)?), None)
            } else if is_number(raw) {
                (Some(raw.to_string()), None)
            } else {
                (None, Some(raw.to_ascii_lowercase()))
            }
        }
        Flavor::MySql => {
            // 5.7 flags no expression, but CURRENT_TIMESTAMP is the only one it allows.
            if sc.extra.contains("default_generated") || raw.to_ascii_lowercase().starts_with("current_timestamp") {
                (None, Some(raw.to_ascii_lowercase()))
            } else {
                (Some(raw.to_string()), None)
            }
        }
    };
    if let Some(expr) = expression {
        let is_now = expr.starts_with("current_timestamp") || expr.starts_with("now(") || expr == "localtimestamp";
        return match logical {
            LogicalType::TimestampTz if is_now => Some("CURRENT_TIMESTAMP".into()),
            // DATETIME defaults to the session's wall clock.
            LogicalType::Timestamp if is_now => Some("LOCALTIMESTAMP".into()),
            LogicalType::Raw(PG_BIT_OID) => {
                let bits = expr.strip_prefix("b'")?.strip_suffix('\'')?;
                let width = TypeInfo::parse(&sc.column_type).arg(0)? as usize;
                (bits.chars().all(|c| c == '0' || c == '1') && bits.len() <= width)
                    .then(|| format!("B'{bits:0>width$}'"))
            }
            _ => None,
        };
    }
    let value = literal?;
    let fam = sc.info.family.as_str();
    match logical {
        LogicalType::Int2
        | LogicalType::Int4
        | LogicalType::Int8
        | LogicalType::Numeric
        | LogicalType::Float4
        | LogicalType::Float8 => is_number(&value).then(|| quote_literal(&value)),
        LogicalType::Bool => match value.as_str() {
            "0" => Some("false".into()),
            "1" => Some("true".into()),
            _ => None,
        },
        LogicalType::Text | LogicalType::Enum if !cast || STRINGS.contains(&fam) => {
            (!value.contains('\0')).then(|| quote_literal(&value))
        }
        LogicalType::Date | LogicalType::Timestamp if !is_zero_date_text(&value) => Some(quote_literal(&value)),
        LogicalType::TimestampTz if !is_zero_date_text(&value) => Some(quote_literal(&format!("{value}+00"))),
        LogicalType::Interval if !cast => Some(format!("{}::interval", quote_literal(&value))),
        LogicalType::Jsonb if serde_json::from_str::<serde_json::Value>(&value).is_ok() => {
            Some(format!("{}::jsonb", quote_literal(&value)))
        }
        LogicalType::Raw(PG_BIT_OID) => {
            let bits = value.strip_prefix("b'")?.strip_suffix('\'')?;
            let width = TypeInfo::parse(type_sql).arg(0)? as usize;
            (bits.chars().all(|c| c == '0' || c == '1') && bits.len() <= width).then(|| format!("B'{bits:0>width$}'"))
        }
        _ => None,
    }
}

fn is_number(s: &str) -> bool {
    let t = s.strip_prefix('-').unwrap_or(s);
    !t.is_empty()
        && t.chars().all(|c| c.is_ascii_digit() || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-')
        && t.chars().next().is_some_and(|c| c.is_ascii_digit() || c == '.')
        && s.parse::<f64>().is_ok()
}

/// Whether zero dates of a column of this type arrive as NULL (dates and times under
/// `--zero-dates null`).
fn zero_dates_nulled(logical: &LogicalType, policy: ZeroDates) -> bool {
    policy == ZeroDates::Null
        && matches!(logical, LogicalType::Date | LogicalType::Timestamp | LogicalType::TimestampTz)
}

/// The CHECK constraints of a table as (name, clause), MariaDB's `json_valid()` checks that
/// mark its JSON columns included (see [`json_valid_column`]). None on servers without
/// `information_schema.CHECK_CONSTRAINTS` (MySQL before 8.0.16, MariaDB before 10.2).
pub(super) fn check_constraints(source: &mut MySource, name: &TableName) -> Result<Vec<(String, String)>> {
    let sql = match source.flavor {
        Flavor::MariaDb => {
            "SELECT CONSTRAINT_NAME, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS
              WHERE CONSTRAINT_SCHEMA = ? AND TABLE_NAME = ? ORDER BY CONSTRAINT_NAME"
        }
        Flavor::MySql => {
            "SELECT c.CONSTRAINT_NAME, c.CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS c
               JOIN information_schema.TABLE_CONSTRAINTS t
                 ON t.CONSTRAINT_SCHEMA = c.CONSTRAINT_SCHEMA AND t.CONSTRAINT_NAME = c.CONSTRAINT_NAME
              WHERE t.CONSTRAINT_TYPE = 'CHECK' AND t.TABLE_SCHEMA = ? AND t.TABLE_NAME = ?
              ORDER BY c.CONSTRAINT_NAME"
        }
    };
    let has_table = source
        .rows(
            "SELECT COUNT(*) FROM information_schema.TABLES
              WHERE TABLE_SCHEMA = 'information_schema' AND TABLE_NAME = 'CHECK_CONSTRAINTS'",
            Vec::new(),
            "looking for information_schema.CHECK_CONSTRAINTS",
        )?
        .first()
        .is_some_and(|r| num_of(r, 0) > 0);
    if !has_table {
        return Ok(Vec::new());
    }
    let params = vec![Value::from(name.schema.as_str()), Value::from(name.name.as_str())];
    let rows = source.rows(sql, params, &format!("reading the CHECK constraints of {name}"))?;
    Ok(rows.iter().filter_map(|r| Some((text_of(r, 0)?, text_of(r, 1)?))).collect())
}

/// The column a MariaDB `json_valid(`col`)` CHECK marks as JSON.
pub(super) fn json_valid_column(clause: &str) -> Option<String> {
    let inner = clause.strip_prefix("json_valid(`")?.strip_suffix("`)")?;
    Some(inner.replace("``", "`"))
}

/// A MySQL CHECK expression in PostgreSQL's SQL when it translates simply: comparisons,
/// arithmetic (no division), AND/OR/NOT, IS [NOT] NULL, [NOT] IN, BETWEEN, LIKE, a few
/// functions that mean the same in both, numbers and plain strings, over copied columns whose
/// values compare the same in both engines (numbers, dates and times, text under a binary
/// collation). None for anything else (the constraint is then listed as not carried) and for
/// `json_valid()` checks, which a `jsonb` column enforces itself.
pub(super) fn translate_check(clause: &str, columns: &[Column]) -> Option<String> {
    if json_valid_column(clause).is_some() {
        return None;
    }
    const WORDS: &[&str] = &["and", "or", "not", "is", "null", "in", "between", "like", "true", "false"];
    const FUNCTIONS: &[&str] = &["char_length", "character_length", "lower", "upper", "abs", "coalesce"];
    let mut out = String::with_capacity(clause.len() + 8);
    let mut chars = clause.chars().peekable();
    let mut compares = false;
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => out.push(' '),
            '`' => {
                let mut name = String::new();
                loop {
                    match chars.next()? {
                        '`' if chars.peek() == Some(&'`') => {
                            chars.next();
                            name.push('`');
                        }
                        '`' => break,
                        c => name.push(c),
                    }
                }
                // MySQL's column names are case-insensitive (and may be lowercased on the target).
                let col = columns.iter().find(|col| same_name(&col.name, &name))?;
                let comparable = match &col.logical {
                    LogicalType::Int2
                    | LogicalType::Int4
                    | LogicalType::Int8
                    | LogicalType::Numeric
                    | LogicalType::Float4
                    | LogicalType::Float8
                    | LogicalType::Date
                    | LogicalType::Timestamp
                    | LogicalType::TimestampTz => true,
                    LogicalType::Text => {
                        TypeInfo::parse(&col.source_type).collation.is_some_and(|co| co.ends_with("_bin"))
                    }
                    _ => false,
                };
                if !comparable {
                    return None;
                }
                out.push_str(&quote_ident(&col.name));
            }
            '\'' => {
                let mut text = String::from("'");
                loop {
                    match chars.next()? {
                        '\'' if chars.peek() == Some(&'\'') => {
                            chars.next();
                            text.push_str("''");
                        }
                        '\'' => break,
                        '\\' => return None,
                        c => text.push(c),
                    }
                }
                text.push('\'');
                out.push_str(&text);
            }
            '0'..='9' | '.' => out.push(c),
            '(' | ')' | ',' | '+' | '-' | '*' => out.push(c),
            '<' | '>' | '=' | '!' => {
                let mut op = String::from(c);
                while let Some(&n) = chars.peek().filter(|n| matches!(n, '<' | '>' | '=')) {
                    op.push(n);
                    chars.next();
                }
                if !matches!(op.as_str(), "<" | ">" | "=" | "<=" | ">=" | "<>" | "!=") {
                    return None;
                }
                compares = true;
                out.push_str(&op);
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let mut word = String::from(c);
                while let Some(&n) = chars.peek().filter(|n| n.is_ascii_alphanumeric() || **n == '_') {
                    word.push(n);
                    chars.next();
                }
                let lower = word.to_ascii_lowercase();
                if lower.starts_with('_') && chars.peek() == Some(&'\'') {
                    // A charset introducer (`_utf8mb4'x'`): the string is text either way.
                    continue;
                }
                if WORDS.contains(&lower.as_str()) {
                    compares |= matches!(lower.as_str(), "is" | "in" | "between" | "like");
                    out.push_str(&lower.to_ascii_uppercase());
                } else if FUNCTIONS.contains(&lower.as_str()) && chars.peek() == Some(&'(') {
                    out.push_str(&lower);
                } else {
                    return None;
                }
            }
            _ => return None,
        }
    }
    // A CHECK must be boolean: a bare number or column would be refused by PostgreSQL.
    compares.then_some(out)
}

/// `0000-00-00`, `2024-00-10`, `2024-01-00 …`: month or day zero.
fn is_zero_date_text(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 10 && (&b[5..7] == b"00" || &b[8..10] == b"00")
}

impl MySource {
    /// The spatial columns of a table that declare an SRID (MySQL 8: `SRID n`; MariaDB:
    /// `REF_SYSTEM_ID = n`), with it.
    fn srids(&mut self, name: &TableName) -> Result<Vec<(String, u32)>> {
        let sql = match self.flavor {
            Flavor::MariaDb => {
                "SELECT G_GEOMETRY_COLUMN, SRID FROM information_schema.GEOMETRY_COLUMNS
                  WHERE G_TABLE_SCHEMA = ? AND G_TABLE_NAME = ? AND SRID <> 0"
            }
            Flavor::MySql => {
                "SELECT COLUMN_NAME, SRS_ID FROM information_schema.COLUMNS
                  WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND SRS_ID IS NOT NULL"
            }
        };
        let params = vec![Value::from(name.schema.as_str()), Value::from(name.name.as_str())];
        let rows = self.rows(sql, params, &format!("reading the SRIDs of {name}"))?;
        Ok(rows.iter().filter_map(|r| Some((text_of(r, 0)?, text_of(r, 1)?.parse().ok()?))).collect())
    }

    /// The table's columns as the source has them now, in order (none when it is gone), each
    /// named as `table` records it when it is one of its columns (MySQL's column names are
    /// case-insensitive; `--lowercase-identifiers` records them lowercased).
    pub fn column_names(&mut self, table: &Table) -> Result<Vec<String>> {
        let name = &table.name;
        let rows = self.rows(
            "SELECT CAST(COLUMN_NAME AS CHAR) FROM information_schema.COLUMNS
              WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
            vec![Value::from(name.schema.as_str()), Value::from(name.name.as_str())],
            &format!("reading the columns of {name}"),
        )?;
        Ok(rows
            .iter()
            .filter_map(|r| text_of(r, 0))
            .map(|c| table.columns.iter().find(|tc| same_name(&tc.name, &c)).map_or(c, |tc| tc.name.clone()))
            .collect())
    }

    /// Reads an AUTO_INCREMENT position: the next value the target's identity must hand out
    /// (past both the table's AUTO_INCREMENT and the copied maximum), not yet called.
    pub fn sequence_position(&mut self, source_sql: &str) -> Result<(i64, bool)> {
        let parts: Vec<String> = serde_json::from_str(source_sql)
            .ok()
            .filter(|p: &Vec<String>| p.len() == 3)
            .ok_or_else(|| Error::input(format!("unrecognized MySQL sequence reference {source_sql:?}")))?;
        let (db, table, col) = (&parts[0], &parts[1], &parts[2]);
        let sql = format!(
            "SELECT CAST(GREATEST(COALESCE(MAX({c}), 0) + 1,
                    COALESCE((SELECT AUTO_INCREMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?), 1))
                    AS CHAR) FROM {t}",
            c = my_ident(col),
            t = my_table(&TableName::new(db, table))
        );
        let what = format!("reading the AUTO_INCREMENT position of {db}.{table}");
        let rows = self.rows(&sql, vec![Value::from(db.as_str()), Value::from(table.as_str())], &what)?;
        let next = rows.first().and_then(|r| text_of(r, 0)).unwrap_or_else(|| "1".into());
        let next: i64 = next
            .parse()
            .map_err(|_| Error::input(format!("{what}: {next} does not fit the target's bigint identity")))?;
        Ok((next.max(1), false))
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::source::mysql::types::{type_row, TypeInfo};
    use crate::source::mysql::Flavor;

    fn source_column(column_type: &str, default: Option<&str>, extra: &str) -> SourceColumn {
        SourceColumn {
            name: "c".into(),
            column_type: column_type.into(),
            info: TypeInfo::parse(column_type),
            nullable: true,
            default: default.map(str::to_string),
            extra: extra.into(),
            charset: None,
            collation: None,
            comment: String::new(),
        }
    }

    #[test]
    fn defaults_are_kept_only_when_postgresql_holds_the_same_value() {
        let render = |ty: &str, default: Option<&str>, extra: &str, flavor: Flavor| {
            let sc = source_column(ty, default, extra);
            let row = type_row(&sc.info).unwrap();
            render_default(&sc, &row.logical, &(row.pg)(&sc.info), flavor, false)
        };
        let maria = Flavor::MariaDb;
        assert_eq!(render("varchar(10)", Some("'it''s\\\\x'"), "", maria).as_deref(), Some("'it''s\\x'"));
        assert_eq!(render("varchar(10)", Some("NULL"), "", maria), None);
        assert_eq!(render("decimal(5,2)", Some("1.50"), "", maria).as_deref(), Some("'1.50'"));
        assert_eq!(render("datetime(3)", Some("current_timestamp(3)"), "", maria).as_deref(), Some("LOCALTIMESTAMP"));
        assert_eq!(render("timestamp", Some("current_timestamp()"), "", maria).as_deref(), Some("CURRENT_TIMESTAMP"));
        assert_eq!(render("date", Some("'0000-00-00'"), "", maria), None);
        assert_eq!(render("bit(5)", Some("b'101'"), "", maria).as_deref(), Some("B'00101'"));
        assert_eq!(render("uuid", Some("uuid()"), "", maria), None);
        let mysql = Flavor::MySql;
        assert_eq!(render("varchar(10)", Some("it's"), "", mysql).as_deref(), Some("'it''s'"));
        assert_eq!(render("timestamp", Some("CURRENT_TIMESTAMP"), "", mysql).as_deref(), Some("CURRENT_TIMESTAMP"));
        assert_eq!(
            render("datetime", Some("CURRENT_TIMESTAMP"), "default_generated", mysql).as_deref(),
            Some("LOCALTIMESTAMP")
        );
        assert_eq!(render("int", Some("(rand() * 10)"), "default_generated", mysql), None);
    }

    #[test]
    fn zero_date_text_is_recognized() {
        assert!(is_zero_date_text("0000-00-00"));
        assert!(is_zero_date_text("2024-00-10 00:00:00"));
        assert!(!is_zero_date_text("0009-12-04"));
    }

    /// A column of a MySQL type as introspection maps it (for the engine's tests).
    pub(in crate::source::mysql) fn column(name: &str, source_type: &str) -> Column {
        let row = type_row(&TypeInfo::parse(source_type)).expect("a mapped type");
        Column {
            name: name.into(),
            type_sql: (row.pg)(&TypeInfo::parse(source_type)),
            logical: row.logical.clone(),
            not_null: false,
            default_sql: None,
            identity_sql: None,
            generated_sql: None,
            user_elem_oid: None,
            user_elem_type_sql: None,
            source_type: source_type.into(),
        }
    }

    #[test]
    fn check_constraints_translate_only_when_postgresql_reads_them_the_same_way() {
        let columns = [
            column("Price", "decimal(8,2)"),
            column("qty", "int"),
            column("code", "varchar(5) character set utf8mb4 collate utf8mb4_bin"),
            column("name", "varchar(5) character set utf8mb4 collate utf8mb4_general_ci"),
            column("day", "date"),
            column("kind", "enum('a','b')"),
        ];
        let tr = |clause: &str| translate_check(clause, &columns);
        assert_eq!(
            tr("`price` > 0 and `qty` between 0 and 10").as_deref(),
            Some("\"Price\" > 0 AND \"qty\" BETWEEN 0 AND 10")
        );
        assert_eq!(tr("(`qty` >= 0)").as_deref(), Some("(\"qty\" >= 0)"));
        assert_eq!(tr("`code` in (_utf8mb4'A''b',_utf8mb4'c')").as_deref(), Some("\"code\" IN ('A''b','c')"));
        assert_eq!(tr("char_length(`code`) <> 3").as_deref(), Some("char_length(\"code\") <> 3"));
        assert_eq!(
            tr("`day` >= '2000-01-01' or `day` is null").as_deref(),
            Some("\"day\" >= '2000-01-01' OR \"day\" IS NULL")
        );
        // Not the same in PostgreSQL, or not known to be: listed instead.
        assert_eq!(tr("`name` in ('a','b')"), None, "case-insensitive text compares differently");
        assert_eq!(tr("`kind` = 'a'"), None, "enum labels are checked by their type");
        assert_eq!(tr("`qty` / 2 > 1"), None, "integer division differs");
        assert_eq!(tr("`code` regexp '^a'"), None);
        assert_eq!(tr("`qty` > 0 || `qty` < -5"), None, "|| is OR in MySQL");
        assert_eq!(tr("`qty`"), None, "not a boolean in PostgreSQL");
        assert_eq!(tr("`gone` > 0"), None, "a column that is not copied");
        assert_eq!(tr("json_valid(`doc`)"), None, "jsonb checks itself");
        assert_eq!(tr("`code` <> 'a\\'b'"), None, "backslash escapes are MySQL's");
    }
}
