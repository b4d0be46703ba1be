//! Validated configuration, built from the raw command line.
//!
//! Everything past this module sees checked values: parsed endpoints with their secrets
//! registered for redaction, positive counts, parsed table names. It must never connect to
//! a database; checks that need one happen in the command that owns the connection.

use std::path::PathBuf;
use std::time::Duration;

use crate::cli::{CopyArgs, LiveArgs, LoadArgs, MappingArgs, RateArgs, StatusArgs, ThrottleCommandArgs, VerifyArgs};
use crate::credentials::{self, split_url, PasswordSource};
use crate::error::{register_public, register_secret, Error, Result};
use crate::objects::SchemaMode;
use crate::throttle::parse_rate;
use crate::tls::{MyTls, PgTls};

/// Which engine a source URL points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    Postgres,
    Mysql,
}

/// Where rows come from.
#[derive(Debug, Clone)]
pub enum SourceEndpoint {
    Postgres(PgEndpoint),
    Mysql(MyEndpoint),
}

impl SourceEndpoint {
    fn parse(url: &str) -> Result<Self> {
        Self::parse_as(url, "source")
    }

    /// Parses a URL of either engine; `role` names the option in errors.
    fn parse_as(url: &str, role: &str) -> Result<Self> {
        match source_engine(url)? {
            Engine::Postgres => Ok(SourceEndpoint::Postgres(PgEndpoint::parse(url, role)?)),
            Engine::Mysql => Ok(SourceEndpoint::Mysql(MyEndpoint::parse(url, role)?)),
        }
    }

    pub fn engine(&self) -> Engine {
        match self {
            SourceEndpoint::Postgres(_) => Engine::Postgres,
            SourceEndpoint::Mysql(_) => Engine::Mysql,
        }
    }

    /// The password-free URL, for messages, state and reports.
    pub fn display(&self) -> &str {
        match self {
            SourceEndpoint::Postgres(ep) => &ep.display,
            SourceEndpoint::Mysql(ep) => &ep.display,
        }
    }

    pub fn database(&self) -> &str {
        match self {
            SourceEndpoint::Postgres(ep) => &ep.database,
            SourceEndpoint::Mysql(ep) => &ep.database,
        }
    }

    /// The URL to give again (resume hint): as written, without any password.
    pub fn hint_url(&self) -> &str {
        match self {
            SourceEndpoint::Postgres(ep) => &ep.hint_url,
            SourceEndpoint::Mysql(ep) => &ep.hint_url,
        }
    }

    pub fn password_source(&self) -> &PasswordSource {
        match self {
            SourceEndpoint::Postgres(ep) => &ep.password_source,
            SourceEndpoint::Mysql(ep) => &ep.password_source,
        }
    }

    pub fn set_connect_timeout(&mut self, timeout: Duration) {
        match self {
            SourceEndpoint::Postgres(ep) => {
                ep.config.connect_timeout(timeout);
            }
            SourceEndpoint::Mysql(ep) => {
                ep.opts = mysql::OptsBuilder::from_opts(ep.opts.clone()).tcp_connect_timeout(Some(timeout)).into();
            }
        }
    }

    /// `--exclude-column` rules as [database, table, column] (none for PostgreSQL sources).
    pub fn excluded_columns(&self) -> Vec<[String; 3]> {
        match self {
            SourceEndpoint::Mysql(ep) => ep
                .options
                .excluded
                .iter()
                .map(|c| [c.schema.clone().unwrap_or_else(|| ep.database.clone()), c.table.clone(), c.column.clone()])
                .collect(),
            SourceEndpoint::Postgres(_) => Vec::new(),
        }
    }

    /// `--io-timeout`: see `PgEndpoint::set_io_timeout` and `MyEndpoint::set_io_timeout`.
    pub fn set_io_timeout(&mut self, timeout: Duration) {
        match self {
            SourceEndpoint::Postgres(ep) => ep.set_io_timeout(timeout),
            SourceEndpoint::Mysql(ep) => ep.set_io_timeout(timeout),
        }
    }
}

/// A MySQL/MariaDB endpoint: connection options plus a password-free form for messages.
#[derive(Clone)]
pub struct MyEndpoint {
    pub opts: mysql::Opts,
    /// `mysql://user@host:port/db`, never containing the password.
    pub display: String,
    pub database: String,
    /// How tables and values are mapped (`--target-schema`, `--zero-dates`, `--cast`,
    /// `--exclude-column`).
    pub options: MyOptions,
    /// `ssl-mode` and `ssl-ca`, validated (already part of `opts`).
    pub tls: MyTls,
    /// The URL as written, without its password: what to give again to resume.
    pub hint_url: String,
    /// Where the password came from.
    pub password_source: PasswordSource,
    /// `--io-timeout`: how long a call may wait for a server that sends nothing (already part
    /// of `opts` as the socket's read and write timeouts).
    pub io_timeout: Duration,
}

/// The MySQL/MariaDB mapping options, validated.
#[derive(Debug, Clone, Default)]
pub struct MyOptions {
    pub target_schema: Option<String>,
    /// `--lowercase-identifiers`: schema, table, column, index and constraint names lowercased
    /// on the target.
    pub lowercase_identifiers: bool,
    pub zero_dates: ZeroDates,
    pub casts: Vec<CastRule>,
    pub excluded: Vec<ColumnRef>,
}

/// What happens to MySQL zero dates, which PostgreSQL cannot hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ZeroDates {
    /// Copied as NULL and counted per column.
    #[default]
    Null,
    /// The chunk fails, naming table, column and key.
    Error,
}

/// `[db.]table.column`, as given to `--cast column:…` and `--exclude-column`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnRef {
    /// None: the URL's database.
    pub schema: Option<String>,
    pub table: String,
    pub column: String,
}

impl std::fmt::Display for ColumnRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.schema {
            Some(s) => write!(f, "{s}.{}.{}", self.table, self.column),
            None => write!(f, "{}.{}", self.table, self.column),
        }
    }
}

/// A `--cast` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CastRule {
    pub selector: CastSelector,
    pub to: CastTarget,
    /// The rule as the user typed it, for messages.
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CastSelector {
    /// A column type as MySQL shows it (`tinyint(1)`, `int unsigned`) or a type name
    /// (`geometry`), lower case, single-spaced.
    Type(String),
    Column(ColumnRef),
}

/// The PostgreSQL types a `--cast` rule may map to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CastTarget {
    Boolean,
    Text,
    Bytea,
    Jsonb,
    Uuid,
}

impl CastTarget {
    pub const ALL: [(&'static str, CastTarget); 5] = [
        ("boolean", CastTarget::Boolean),
        ("text", CastTarget::Text),
        ("bytea", CastTarget::Bytea),
        ("jsonb", CastTarget::Jsonb),
        ("uuid", CastTarget::Uuid),
    ];

    pub fn name(self) -> &'static str {
        CastTarget::ALL.iter().find(|(_, t)| *t == self).map(|(n, _)| *n).unwrap_or("?")
    }
}

impl MyOptions {
    /// `--target-schema`, `--cast` and `--exclude-column` (copy and verify alike) and copy's
    /// `--zero-dates`.
    fn from_args(args: &MappingArgs, zero_dates: Option<&str>) -> Result<Self> {
        let target_schema = match &args.target_schema {
            Some(s) if s.is_empty() || s.len() > 63 => {
                return Err(Error::input("--target-schema: expected a schema name of 1 to 63 bytes"))
            }
            other => other.clone(),
        };
        let zero_dates = match zero_dates {
            Some("error") => ZeroDates::Error,
            _ => ZeroDates::Null,
        };
        let casts = args.casts.iter().map(|r| CastRule::parse(r)).collect::<Result<Vec<_>>>()?;
        let excluded = args
            .exclude_columns
            .iter()
            .map(|c| ColumnRef::parse(c).map_err(|why| Error::input(format!("--exclude-column {c:?}: {why}"))))
            .collect::<Result<Vec<_>>>()?;
        Ok(MyOptions { target_schema, lowercase_identifiers: args.lowercase_identifiers, zero_dates, casts, excluded })
    }

    fn any_given(args: &MappingArgs) -> bool {
        args.target_schema.is_some()
            || args.lowercase_identifiers
            || !args.casts.is_empty()
            || !args.exclude_columns.is_empty()
    }
}

impl ColumnRef {
    /// `table.column` or `db.table.column`; parts may be backquoted (`` `a.b` ``, doubled
    /// backquotes inside).
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let mut parts: Vec<String> = Vec::new();
        let mut chars = text.chars().peekable();
        loop {
            let mut part = String::new();
            if chars.peek() == Some(&'`') {
                chars.next();
                loop {
                    match chars.next() {
                        Some('`') if chars.peek() == Some(&'`') => {
                            chars.next();
                            part.push('`');
                        }
                        Some('`') => break,
                        Some(c) => part.push(c),
                        None => return Err("unterminated backquote".into()),
                    }
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == '.' {
                        break;
                    }
                    part.push(c);
                    chars.next();
                }
            }
            if part.is_empty() {
                return Err("empty name part; expected [DB.]TABLE.COLUMN".into());
            }
            parts.push(part);
            match chars.next() {
                None => break,
                Some('.') => continue,
                Some(_) => return Err("expected `.` after a backquoted name part".into()),
            }
        }
        let mut it = parts.into_iter();
        match (it.next(), it.next(), it.next(), it.next()) {
            (Some(table), Some(column), None, None) => Ok(ColumnRef { schema: None, table, column }),
            (Some(schema), Some(table), Some(column), None) => Ok(ColumnRef { schema: Some(schema), table, column }),
            _ => Err("expected [DB.]TABLE.COLUMN (backquote parts that contain dots)".into()),
        }
    }
}

impl CastRule {
    /// `type:MYSQLTYPE=PGTYPE` or `column:[DB.]TABLE.COLUMN=PGTYPE`.
    pub fn parse(text: &str) -> Result<Self> {
        let targets = || CastTarget::ALL.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ");
        let bad = |why: String| {
            Error::input(format!(
                "--cast {text:?}: {why}; expected type:MYSQLTYPE=PGTYPE (e.g. type:tinyint(1)=boolean) or \
                 column:[DB.]TABLE.COLUMN=PGTYPE (e.g. column:shop.orders.shape=text), PGTYPE one of {}",
                targets()
            ))
        };
        let Some((kind, rest)) = text.split_once(':') else { return Err(bad("missing `type:` or `column:`".into())) };
        let Some((what, to)) = rest.rsplit_once('=') else { return Err(bad("missing `=PGTYPE`".into())) };
        let to_norm = to.trim().to_ascii_lowercase();
        let to = match CastTarget::ALL.iter().find(|(n, _)| *n == to_norm) {
            Some((_, t)) => *t,
            None => return Err(bad(format!("unknown PostgreSQL type {to:?}"))),
        };
        let selector = match kind.trim() {
            "type" => {
                let ty = normalize_mysql_type(what);
                if ty.is_empty() {
                    return Err(bad("empty MySQL type".into()));
                }
                CastSelector::Type(ty)
            }
            "column" => CastSelector::Column(ColumnRef::parse(what.trim()).map_err(bad)?),
            other => return Err(bad(format!("unknown rule kind {other:?}"))),
        };
        Ok(CastRule { selector, to, text: text.to_string() })
    }
}

/// A MySQL column type in the form rules compare: lower case, single spaces, no space
/// before `(` or after `,`.
pub fn normalize_mysql_type(text: &str) -> String {
    let lower = text.trim().to_ascii_lowercase();
    let spaced = lower.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out = String::with_capacity(spaced.len());
    for c in spaced.chars() {
        if c == ' ' && out.ends_with(['(', ',']) {
            continue;
        }
        if matches!(c, '(' | ')' | ',') && out.ends_with(' ') {
            out.pop();
        }
        out.push(c);
    }
    out
}

impl std::fmt::Debug for MyEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display)
    }
}

impl MyEndpoint {
    /// Parses a `mysql://` / `mariadb://` URL; `role` names it in errors (source, lag-replica).
    /// A password not in the URL comes from MYSQL_PWD, else the option files.
    pub fn parse(url: &str, role: &str) -> Result<Self> {
        // The driver never sees the userinfo: it would misread a password holding URL syntax,
        // and its errors quote what it could not parse.
        let split = split_url(url).map_err(|e| Error::input(format!("--{role}: {e}")))?;
        // The mysql driver refuses URL parameters it does not know: the TLS ones are ours.
        let (rest, tls_params) = crate::tls::take_params(&split.rest, &["ssl-mode", "ssl_mode", "ssl-ca", "ssl_ca"]);
        let tls = MyTls::from_params(
            crate::tls::param(&tls_params, &["ssl-mode", "ssl_mode"]),
            crate::tls::param(&tls_params, &["ssl-ca", "ssl_ca"]),
        )
        .map_err(|e| Error::input(format!("--{role}: {e}")))?;
        let opts = mysql::Opts::from_url(&format!("mysql://{rest}")).map_err(|e| {
            Error::input(format!(
                "--{role}: invalid MySQL URL {} ({}); expected mysql://user:password@host:3306/database",
                redact_url(url),
                crate::error::redact(&e.to_string())
            ))
        })?;
        let mut builder = mysql::OptsBuilder::from_opts(opts.clone());
        let user = match split.user {
            Some(user) => {
                builder = builder.user(Some(&user));
                user
            }
            None => opts.get_user().unwrap_or("").to_string(),
        };
        let password_source = match (split.password, opts.get_pass()) {
            (Some(pw), _) => {
                let pw = String::from_utf8(pw).map_err(|_| {
                    Error::input(format!("--{role}: the password in the URL is not valid UTF-8 once percent-decoded"))
                })?;
                builder = builder.pass(Some(pw));
                PasswordSource::Url
            }
            (None, Some(pw)) => {
                register_secret(pw);
                PasswordSource::Url
            }
            (None, None) => match credentials::my_password() {
                Some((pw, source)) => {
                    builder = builder.pass(Some(pw));
                    source
                }
                None => PasswordSource::None,
            },
        };
        let database = opts.get_db_name().filter(|d| !d.is_empty()).map(str::to_string).ok_or_else(|| {
            Error::input(format!("--{role}: the MySQL URL names no database; use mysql://user@host:3306/database"))
        })?;
        builder = builder.tcp_connect_timeout(Some(DEFAULT_CONNECT_TIMEOUT)).ssl_opts(tls.ssl_opts());
        // The driver's default, on a loopback address, reads the server's `@@socket` and
        // reconnects through that local socket: where the port is a tunnel, a port map or a
        // second instance, that socket belongs to another server, whose data would be copied.
        // Connect exactly where the URL says, through a socket only when the URL asks for one.
        let (_, socket_param) = crate::tls::take_params(&rest, &["prefer_socket"]);
        let socket_asked = crate::tls::param(&socket_param, &["prefer_socket"]).is_some_and(|v| v == "true");
        if tls.required() || !socket_asked {
            builder = builder.prefer_socket(false);
        }
        if opts.get_tcp_keepalive_time_ms().is_none() {
            builder = keepalive(builder);
        }
        let display = format!("mysql://{user}@{}:{}/{database}", opts.get_ip_or_hostname(), opts.get_tcp_port());
        register_public(&display);
        let hint_url = hint_url(&split.scheme, split.user_as_written.as_deref(), &split.rest);
        let mut ep = MyEndpoint {
            opts: builder.into(),
            display,
            database,
            options: MyOptions::default(),
            tls,
            hint_url,
            password_source,
            io_timeout: DEFAULT_IO_TIMEOUT,
        };
        ep.set_io_timeout(DEFAULT_IO_TIMEOUT);
        Ok(ep)
    }

    /// Bounds every read and write on the connection's socket by `timeout`, so that a server
    /// that stops answering fails the call (and the work is retried) instead of holding it.
    pub fn set_io_timeout(&mut self, timeout: Duration) {
        let builder =
            mysql::OptsBuilder::from_opts(self.opts.clone()).read_timeout(Some(timeout)).write_timeout(Some(timeout));
        #[cfg(target_os = "linux")]
        let builder = builder.tcp_user_timeout_ms(Some(timeout.as_millis().min(u32::MAX as u128) as u32));
        self.opts = builder.into();
        self.io_timeout = timeout;
    }
}

/// TCP keepalive probes, so that a server that is gone (not merely silent) is noticed within
/// about a minute even by a connection that waits without a bound (see `KEEPALIVE_IDLE`).
fn keepalive(builder: mysql::OptsBuilder) -> mysql::OptsBuilder {
    let builder = builder.tcp_keepalive_time_ms(Some(KEEPALIVE_IDLE.as_millis() as u32));
    #[cfg(any(target_os = "linux", target_os = "macos"))]
    let builder = builder
        .tcp_keepalive_probe_interval_secs(Some(KEEPALIVE_INTERVAL.as_secs() as u32))
        .tcp_keepalive_probe_count(Some(KEEPALIVE_RETRIES));
    builder
}

/// A PostgreSQL endpoint: connection settings plus a password-free form for messages.
#[derive(Clone)]
pub struct PgEndpoint {
    pub config: tokio_postgres::Config,
    /// `postgres://user@host:port/db`, never containing the password.
    pub display: String,
    pub database: String,
    /// `sslmode` and `sslrootcert`, validated; the connector every connection uses.
    pub tls: PgTls,
    /// The URL as written, without its password: what to give again to resume.
    pub hint_url: String,
    /// Where the password came from.
    pub password_source: PasswordSource,
    /// `--io-timeout`: how long a call may wait for a server that sends nothing.
    pub io_timeout: Duration,
}

impl std::fmt::Debug for PgEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display)
    }
}

pub const DEFAULT_CHUNK_ROWS: u64 = 100_000;

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// `--io-timeout`'s default: far above any answer a healthy server takes to a chunk's statements.
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(300);

/// TCP keepalive on every connection (unless the URL sets it): the first probe after this much
/// idleness, then every `KEEPALIVE_INTERVAL`, `KEEPALIVE_RETRIES` times.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_RETRIES: u32 = 3;

impl PgEndpoint {
    /// Parses a `postgres://` / `postgresql://` URL. `role` names it in errors (source/target).
    /// A password not in the URL comes from PGPASSWORD, else the password file.
    pub fn parse(url: &str, role: &str) -> Result<Self> {
        let scheme = url.split("://").next().unwrap_or("");
        if !url.contains("://") || !matches!(scheme, "postgres" | "postgresql") {
            return Err(Error::input(format!(
                "--{role}: expected a URL like postgres://user:password@host:5432/database, got {}",
                redact_url(url)
            )));
        }
        // The driver never sees the userinfo: it ends the userinfo at the first `@`, and a
        // password holding URL syntax would be misread as the host.
        let split = split_url(url).map_err(|e| Error::input(format!("--{role}: {e}")))?;
        // tokio-postgres knows sslmode disable/prefer/require only: the TLS parameters are ours.
        let (rest, tls_params) = crate::tls::take_params(&split.rest, &["sslmode", "sslrootcert"]);
        let tls = PgTls::from_params(
            crate::tls::param(&tls_params, &["sslmode"]),
            crate::tls::param(&tls_params, &["sslrootcert"]),
        )
        .map_err(|e| Error::input(format!("--{role}: {e}")))?;
        // An empty userinfo, so that an `@` in a parameter value is not taken for its end.
        let mut config: tokio_postgres::Config = format!("postgres://@{rest}")
            .parse()
            .map_err(|e| Error::input(format!("--{role}: invalid PostgreSQL URL {}: {e}", redact_url(url))))?;
        config.ssl_mode(tls.driver_mode());
        let user = match split.user {
            Some(user) => user,
            None => match config.get_user().filter(|u| !u.is_empty()) {
                Some(user) => user.to_string(),
                None => std::env::var("PGUSER")
                    .or_else(|_| std::env::var("USER"))
                    .map_err(|_| Error::input(format!("--{role}: the URL names no user and PGUSER is not set")))?,
            },
        };
        config.user(&user);
        if config.get_hosts().is_empty() {
            return Err(Error::input(format!("--{role}: the URL names no host")));
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        if !rest.contains("keepalives") {
            config.keepalives(true);
            config.keepalives_idle(KEEPALIVE_IDLE);
            config.keepalives_interval(KEEPALIVE_INTERVAL);
            config.keepalives_retries(KEEPALIVE_RETRIES);
        }
        config.application_name("rangecopy");
        let database = config.get_dbname().unwrap_or(&user).to_string();
        config.dbname(&database);
        let host = match &config.get_hosts()[0] {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let password_source = match (split.password, config.get_password()) {
            (Some(pw), _) => {
                config.password(pw);
                PasswordSource::Url
            }
            (None, Some(pw)) => {
                register_secret(&String::from_utf8_lossy(pw));
                PasswordSource::Url
            }
            (None, None) => match credentials::pg_password(&host, port, &database, &user) {
                Some((pw, source)) => {
                    config.password(pw);
                    source
                }
                None => PasswordSource::None,
            },
        };
        let display = format!("postgres://{user}@{host}:{port}/{database}");
        register_public(&display);
        let hint_url = hint_url(&split.scheme, split.user_as_written.as_deref(), &split.rest);
        let mut ep =
            PgEndpoint { config, display, database, tls, hint_url, password_source, io_timeout: DEFAULT_IO_TIMEOUT };
        ep.set_io_timeout(DEFAULT_IO_TIMEOUT);
        Ok(ep)
    }

    /// Bounds how long a call waits for a server that sends nothing (`pg::PgConn` enforces
    /// it), and makes it the TCP_USER_TIMEOUT unless the URL set one.
    pub fn set_io_timeout(&mut self, timeout: Duration) {
        if self.config.get_tcp_user_timeout().is_none_or(|t| *t == self.io_timeout) {
            self.config.tcp_user_timeout(timeout);
        }
        self.io_timeout = timeout;
    }
}

/// `scheme://[user@]rest` without any password parameter: a URL that names the same endpoint
/// with the same settings, for the user to give again. Registered as public, so that a password
/// equal to the user name does not hide it.
fn hint_url(scheme: &str, user_as_written: Option<&str>, rest: &str) -> String {
    let (base, query) = rest.split_once('?').unwrap_or((rest, ""));
    let query = credentials::public_params(query);
    let user = user_as_written.map(|u| format!("{u}@")).unwrap_or_default();
    let url =
        if query.is_empty() { format!("{scheme}://{user}{base}") } else { format!("{scheme}://{user}{base}?{query}") };
    register_public(&url);
    url
}

/// The URL without its password, for messages about a URL that could not be used: the
/// password (in the userinfo or a parameter) becomes `***`; when the userinfo cannot be told
/// apart, everything up to the last `@` is hidden, since the userinfo ends at one of them.
pub fn redact_url(url: &str) -> String {
    let scheme = url.split_once("://").map(|(s, _)| format!("{s}://")).unwrap_or_default();
    let (userinfo, rest) = match split_url(url) {
        Ok(split) => {
            let user = split.user_as_written.unwrap_or_default();
            let userinfo = match (split.password.is_some(), user.is_empty()) {
                (true, _) => format!("{user}:***@"),
                (false, false) => format!("{user}@"),
                (false, true) => String::new(),
            };
            (userinfo, split.rest)
        }
        Err(_) => ("***@".to_string(), url.rsplit_once('@').map(|(_, r)| r.to_string()).unwrap_or_default()),
    };
    // Parameters may carry a password too (`?password=…`).
    let rest = match rest.split_once('?') {
        Some((base, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|part| match part.split_once('=') {
                    Some((key, _)) if credentials::is_secret_param(key) => format!("{key}=***"),
                    _ => part.to_string(),
                })
                .collect();
            format!("{base}?{}", query.join("&"))
        }
        None => rest,
    };
    crate::error::redact(&format!("{scheme}{userinfo}{rest}"))
}

/// A table as named on the command line, before it is looked up in the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    pub schema: Option<String>,
    pub name: String,
    /// Whether the user quoted the name (then it is matched exactly, never case-folded).
    pub quoted: bool,
}

impl TableSpec {
    /// Parses `name`, `schema.name`, `"Sch.ema"."Na""me"` as SQL would split them.
    pub fn parse(text: &str) -> Result<Self> {
        let bad = |why: &str| Error::input(format!("table {text:?}: {why}"));
        let mut parts: Vec<(String, bool)> = Vec::new();
        let mut chars = text.chars().peekable();
        loop {
            let mut part = String::new();
            let quoted = chars.peek() == Some(&'"');
            if quoted {
                chars.next();
                loop {
                    match chars.next() {
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            part.push('"');
                        }
                        Some('"') => break,
                        Some(c) => part.push(c),
                        None => return Err(bad("unterminated double quote")),
                    }
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == '.' {
                        break;
                    }
                    if c == '"' {
                        return Err(bad("a double quote may only open a name part"));
                    }
                    part.push(c);
                    chars.next();
                }
            }
            if part.is_empty() {
                return Err(bad("empty name part"));
            }
            parts.push((part, quoted));
            match chars.next() {
                None => break,
                Some('.') => continue,
                Some(_) => return Err(bad("expected `.` after a quoted name part")),
            }
        }
        match parts.len() {
            1 => {
                let (name, quoted) = parts.pop().unwrap();
                Ok(TableSpec { schema: None, name, quoted })
            }
            2 => {
                let (name, q2) = parts.pop().unwrap();
                let (schema, q1) = parts.pop().unwrap();
                Ok(TableSpec { schema: Some(schema), name, quoted: q1 || q2 })
            }
            _ => Err(bad("expected `name` or `schema.name` (quote parts that contain dots)")),
        }
    }
}

/// What to do with an existing job of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StartMode {
    /// The job must not exist yet (or must have been removed).
    Fresh,
    Resume,
    Restart,
}

/// `--into-existing`: what a source row does to a target row with the same key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnConflict {
    /// The target's row stays (the application wrote it).
    Skip,
    /// The source's row overwrites it.
    Update,
}

impl OnConflict {
    /// The word of `--on-conflict`, also how the job's settings record it.
    pub fn word(self) -> &'static str {
        match self {
            OnConflict::Skip => "skip",
            OnConflict::Update => "update",
        }
    }

    pub fn from_word(word: &str) -> Option<Self> {
        match word {
            "skip" => Some(OnConflict::Skip),
            "update" => Some(OnConflict::Update),
            _ => None,
        }
    }
}

/// What stderr carries: text for people, or one JSON object per line for log shippers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `--listen`, `--control` and `--log-format` (copy and verify).
#[derive(Debug, Clone, Default)]
pub struct LiveConfig {
    /// Where the live view is served.
    pub listen: Option<std::net::SocketAddr>,
    /// Whether POSTs may change the throttle.
    pub control: bool,
    pub log_format: LogFormat,
}

impl LiveConfig {
    pub fn from_args(args: &LiveArgs) -> Result<Self> {
        let listen = args.listen.as_deref().map(listen_address).transpose()?;
        let log_format = if args.log_format == "json" { LogFormat::Json } else { LogFormat::Text };
        Ok(LiveConfig { listen, control: args.control, log_format })
    }
}

/// A bare port means loopback: the live view shows table names and rates, which are nobody
/// else's business unless the user says so with a host.
fn listen_address(text: &str) -> Result<std::net::SocketAddr> {
    use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
    let bad = || {
        Error::input(format!(
            "--listen {text:?}: expected a port (9187, on 127.0.0.1) or HOST:PORT (0.0.0.0:9187, [::1]:9187, \
             localhost:9187)"
        ))
    };
    if let Ok(port) = text.trim().parse::<u16>() {
        return Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    }
    text.trim().to_socket_addrs().map_err(|_| bad())?.next().ok_or_else(bad)
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    Bars,
    Lines,
    None,
}

#[derive(Debug, Clone)]
pub struct CopyConfig {
    pub source: SourceEndpoint,
    pub target: PgEndpoint,
    pub tables: Vec<TableSpec>,
    pub job: String,
    pub workers: usize,
    pub chunk_rows: u64,
    /// Whether `--chunk-rows` was given (a resumed job otherwise keeps its own).
    pub chunk_rows_given: bool,
    pub mode: StartMode,
    pub report: Option<PathBuf>,
    /// Verify the tables once copied (`--verify`).
    pub verify: bool,
    pub retry: RetryPolicy,
    pub throttle: ThrottleConfig,
    pub progress: ProgressMode,
    pub progress_interval: Duration,
    /// `--create-slot NAME --slot-plugin PLUGIN` (PostgreSQL sources).
    pub create_slot: Option<SlotRequest>,
    /// `--consistent`: every worker reads one snapshot.
    pub consistent: bool,
    /// Whether the source / target URL came from RANGECOPY_SOURCE / RANGECOPY_TARGET (the
    /// resume hint then names the variable instead of printing the URL).
    pub source_from_env: bool,
    pub target_from_env: bool,
    /// `--exclude-table`: tables left out, as patterns.
    pub exclude_tables: Vec<TablePattern>,
    /// `--schema-only` / `--data-only` / both (the default).
    pub schema_mode: SchemaMode,
    /// `--no-owner`, `--no-privileges` (PostgreSQL sources).
    pub no_owner: bool,
    pub no_privileges: bool,
    /// `--into-existing [--on-conflict MODE]`: merge into tables that hold rows. `None` when
    /// not given; a resumed or restarted job then keeps the mode it was started with.
    pub into_existing: Option<OnConflict>,
    /// `--lease`: seconds a claim lasts unless renewed.
    pub lease: f64,
}

/// A `--exclude-table` pattern: `name` or `schema.name`, `*` any characters, `?` one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TablePattern {
    pub schema: Option<String>,
    pub name: String,
}

impl TablePattern {
    pub fn parse(text: &str) -> Result<Self> {
        let spec = TableSpec::parse(text).map_err(|e| {
            Error::input(format!("--exclude-table {text:?}: {}", e.to_string().trim_start_matches("table ")))
        })?;
        Ok(TablePattern { schema: spec.schema, name: spec.name })
    }

    /// Whether the pattern matches a table (`schema` is the database for MySQL/MariaDB).
    pub fn matches(&self, table: &crate::schema::TableName) -> bool {
        glob(&self.name, &table.name) && self.schema.as_deref().is_none_or(|s| glob(s, &table.schema))
    }
}

/// `*` matches any run of characters, `?` any one; everything else matches itself.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// A logical replication slot to create before the copy.
#[derive(Debug, Clone)]
pub struct SlotRequest {
    pub name: String,
    pub plugin: String,
}

impl SlotRequest {
    fn from_args(args: &CopyArgs, source: &SourceEndpoint) -> Result<Option<Self>> {
        let Some(name) = &args.create_slot else { return Ok(None) };
        if source.engine() != Engine::Postgres {
            return Err(Error::input(
                "--create-slot applies to PostgreSQL sources only (MySQL/MariaDB: CDC starts from the \
                 recorded binlog position or GTID set)",
            ));
        }
        if name.is_empty()
            || name.len() > 63
            || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(Error::input(format!(
                "--create-slot {name:?}: a slot name is 1 to 63 lower-case letters, digits and underscores"
            )));
        }
        let plugin = args.slot_plugin.clone().unwrap_or_else(|| "pgoutput".into());
        if plugin.is_empty() {
            return Err(Error::input("--slot-plugin: expected an output plugin name, e.g. pgoutput"));
        }
        Ok(Some(SlotRequest { name: name.clone(), plugin }))
    }
}

impl CopyConfig {
    pub fn from_args(args: &CopyArgs) -> Result<Self> {
        let mut source = SourceEndpoint::parse(&args.source)?;
        match &mut source {
            SourceEndpoint::Mysql(my) => my.options = MyOptions::from_args(&args.mapping, args.zero_dates.as_deref())?,
            SourceEndpoint::Postgres(_) if MyOptions::any_given(&args.mapping) || args.zero_dates.is_some() => {
                return Err(Error::input(
                    "--target-schema, --lowercase-identifiers, --zero-dates, --cast and --exclude-column apply to \
                     MySQL/MariaDB sources only",
                ))
            }
            SourceEndpoint::Postgres(_) => {}
        }
        let connect_timeout = seconds(args.connect_timeout, "--connect-timeout")?;
        source.set_connect_timeout(connect_timeout);
        let io_timeout = seconds(args.io_timeout, "--io-timeout")?;
        source.set_io_timeout(io_timeout);
        let mut target = PgEndpoint::parse(&args.target, "target")?;
        target.config.connect_timeout(connect_timeout);
        target.set_io_timeout(io_timeout);
        let tables = args.tables.iter().map(|t| TableSpec::parse(t)).collect::<Result<Vec<_>>>()?;
        let workers = workers(args.workers)?;
        let chunk_rows = positive(args.chunk_rows.unwrap_or(DEFAULT_CHUNK_ROWS as i64), "--chunk-rows")?;
        let job = match &args.job {
            Some(j) if j.trim().is_empty() => return Err(Error::input("--job: the name must not be empty")),
            Some(j) => j.clone(),
            None => source.database().to_string(),
        };
        let mode = match (args.resume, args.restart) {
            (true, _) => StartMode::Resume,
            (_, true) => StartMode::Restart,
            _ => StartMode::Fresh,
        };
        let progress = match args.progress.as_str() {
            "bars" => ProgressMode::Bars,
            "lines" => ProgressMode::Lines,
            "none" => ProgressMode::None,
            _ if std::io::IsTerminal::is_terminal(&std::io::stderr()) => ProgressMode::Bars,
            _ => ProgressMode::Lines,
        };
        if !(args.progress_interval.is_finite() && args.progress_interval > 0.0) {
            return Err(Error::input("--progress-interval: expected a positive number of seconds"));
        }
        if let Some(path) = &args.report {
            check_report_path(path)?;
        }
        let create_slot = SlotRequest::from_args(args, &source)?;
        let exclude_tables = args.exclude_tables.iter().map(|p| TablePattern::parse(p)).collect::<Result<Vec<_>>>()?;
        let schema_mode = match (args.schema_only, args.data_only) {
            (true, _) => SchemaMode::SchemaOnly,
            (_, true) => SchemaMode::DataOnly,
            _ => SchemaMode::All,
        };
        if source.engine() != Engine::Postgres && (args.no_owner || args.no_privileges) {
            return Err(Error::input(
                "--no-owner and --no-privileges apply to PostgreSQL sources only (MySQL/MariaDB objects belong to the target user)",
            ));
        }
        Ok(CopyConfig {
            source,
            target,
            tables,
            job,
            workers,
            chunk_rows,
            chunk_rows_given: args.chunk_rows.is_some(),
            mode,
            report: args.report.clone(),
            verify: args.verify,
            throttle: ThrottleConfig::from_args(&args.rates, Some(&args.load))?.with_io_timeout(io_timeout),
            retry: RetryPolicy {
                retries: nonnegative(args.retries, "--retries")? as u32,
                max_wait: seconds(args.retry_max_wait, "--retry-max-wait")?,
            },
            progress,
            progress_interval: Duration::from_secs_f64(args.progress_interval),
            create_slot,
            consistent: args.consistent,
            source_from_env: args.source_from_env,
            target_from_env: args.target_from_env,
            exclude_tables,
            schema_mode,
            no_owner: args.no_owner,
            no_privileges: args.no_privileges,
            lease: lease(args.lease)?,
            into_existing: args
                .into_existing
                .then(|| args.on_conflict.as_deref().and_then(OnConflict::from_word).unwrap_or(OnConflict::Skip)),
        })
    }
}

#[derive(Debug, Clone)]
pub struct VerifyConfig {
    pub source: SourceEndpoint,
    pub target: PgEndpoint,
    pub tables: Vec<TableSpec>,
    pub job: Option<String>,
    pub workers: usize,
    pub chunk_rows: u64,
    pub json_report: Option<PathBuf>,
    pub html_report: Option<PathBuf>,
    pub redact_values: bool,
    pub max_diff_rows: usize,
    pub throttle: ThrottleConfig,
    pub live: LiveVerify,
}

/// `verify`'s options for a source that keeps changing.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveVerify {
    /// Times rows that differ are read again (0: never).
    pub rechecks: u32,
    pub recheck_delay: Duration,
    /// `--since-column`: rows changed more recently than `min_age` are left out.
    pub since: Option<SinceFilter>,
    /// `--watch`: the pause between passes.
    pub watch: Option<Duration>,
    /// `--passes`: stop after this many.
    pub passes: Option<u32>,
}

impl Default for LiveVerify {
    fn default() -> Self {
        LiveVerify { rechecks: 0, recheck_delay: DEFAULT_RECHECK_DELAY, since: None, watch: None, passes: None }
    }
}

const DEFAULT_RECHECK_DELAY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq)]
pub struct SinceFilter {
    pub column: String,
    pub min_age: Duration,
}

impl LiveVerify {
    pub fn from_args(args: &crate::cli::LiveVerifyArgs) -> Result<Self> {
        let rechecks = nonnegative(args.recheck, "--recheck")?;
        if rechecks > 1000 {
            return Err(Error::input(format!("--recheck: at most 1000, got {rechecks}")));
        }
        let recheck_delay = match args.recheck_delay {
            Some(_) if rechecks == 0 => {
                return Err(Error::input("--recheck-delay: give --recheck N too (how many times to read rows again)"))
            }
            Some(s) => seconds(s, "--recheck-delay")?,
            None => DEFAULT_RECHECK_DELAY,
        };
        let since = match (&args.since_column, &args.min_age) {
            (Some(column), Some(age)) if !column.is_empty() => {
                Some(SinceFilter { column: column.clone(), min_age: duration(age, "--min-age")? })
            }
            (Some(_), _) => return Err(Error::input("--since-column: name a timestamp column, such as updated_at")),
            _ => None,
        };
        let watch = args.watch.as_deref().map(|w| duration(w, "--watch")).transpose()?;
        let passes = args.passes.map(|n| positive(n, "--passes")).transpose()?.map(|n| n.min(u32::MAX as u64) as u32);
        Ok(LiveVerify { rechecks: rechecks as u32, recheck_delay, since, watch, passes })
    }
}

/// A duration as `30s`, `5m`, `1h`, `2d`, `250ms` or a plain number of seconds.
pub fn duration(text: &str, flag: &str) -> Result<Duration> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let scale = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        _ => f64::NAN,
    };
    match number.parse::<f64>() {
        Ok(n) if scale.is_finite() => seconds(n * scale, flag),
        _ => Err(Error::input(format!("{flag}: expected a duration such as 30s, 5m, 1h or 2d, got {text:?}"))),
    }
}

impl VerifyConfig {
    pub fn from_args(args: &VerifyArgs) -> Result<Self> {
        let io_timeout = seconds(args.io_timeout, "--io-timeout")?;
        let mut source = SourceEndpoint::parse(&args.source)?;
        source.set_io_timeout(io_timeout);
        if MyOptions::any_given(&args.mapping) {
            match &mut source {
                SourceEndpoint::Postgres(_) => {
                    return Err(Error::input(
                        "--target-schema, --lowercase-identifiers, --cast and --exclude-column apply to MySQL/MariaDB \
                         sources only",
                    ))
                }
                SourceEndpoint::Mysql(_) if args.job.is_some() => return Err(Error::input(
                    "--target-schema, --lowercase-identifiers, --cast and --exclude-column: with --job, verify uses \
                         the rules the job was copied with; leave them out, or leave out --job",
                )),
                // Zero dates read as NULL, as copy's default policy wrote them (under `error`
                // the copy holds none).
                SourceEndpoint::Mysql(my) => my.options = MyOptions::from_args(&args.mapping, None)?,
            }
        }
        let mut target = PgEndpoint::parse(&args.target, "target")?;
        target.set_io_timeout(io_timeout);
        let tables = args.tables.iter().map(|t| TableSpec::parse(t)).collect::<Result<Vec<_>>>()?;
        let workers = workers(args.workers)?;
        let chunk_rows = positive(args.chunk_rows.unwrap_or(DEFAULT_CHUNK_ROWS as i64), "--chunk-rows")?;
        let max_diff_rows = positive(args.max_diff_rows, "--max-diff-rows")? as usize;
        let (mut json_report, mut html_report) = (None, None);
        for path in &args.report {
            check_report_path(path)?;
            let slot = match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
                Some("json") => &mut json_report,
                Some("html") | Some("htm") => &mut html_report,
                _ => {
                    return Err(Error::input(format!(
                        "--report {}: name the file .json or .html to choose the format",
                        path.display()
                    )))
                }
            };
            if slot.replace(path.clone()).is_some() {
                return Err(Error::input("--report: give at most one .json and one .html file"));
            }
        }
        Ok(VerifyConfig {
            source,
            target,
            tables,
            job: args.job.clone(),
            workers,
            chunk_rows,
            json_report,
            html_report,
            redact_values: args.redact_values,
            max_diff_rows,
            throttle: ThrottleConfig::from_args(&args.rates, None)?,
            live: LiveVerify::from_args(&args.live)?,
        })
    }
}

impl VerifyConfig {
    /// The verification `copy --verify` runs: the job's tables along its chunks.
    pub fn for_copy(copy: &CopyConfig) -> Self {
        VerifyConfig {
            source: copy.source.clone(),
            target: copy.target.clone(),
            tables: Vec::new(),
            job: Some(copy.job.clone()),
            workers: copy.workers,
            chunk_rows: copy.chunk_rows,
            json_report: None,
            html_report: None,
            redact_values: false,
            max_diff_rows: 1000,
            throttle: copy.throttle.clone(),
            live: LiveVerify::default(),
        }
    }
}

/// `rangecopy worker`: which job to join and how this process works on it; everything else
/// (tables, chunk size, mapping, limits) is the job's, read from its state.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub source: SourceEndpoint,
    pub target: PgEndpoint,
    pub job: String,
    pub workers: usize,
    /// How long to wait for the job to be started.
    pub wait: Duration,
    pub lease: f64,
    pub retry: RetryPolicy,
    pub progress: ProgressMode,
    pub progress_interval: Duration,
    /// --max-lag and --throttle-query this process watches for the job (its rates are the job's).
    pub throttle: ThrottleConfig,
}

impl WorkerConfig {
    pub fn from_args(args: &crate::cli::WorkerArgs) -> Result<Self> {
        let mut source = SourceEndpoint::parse(&args.source)?;
        let connect_timeout = seconds(args.connect_timeout, "--connect-timeout")?;
        let io_timeout = seconds(args.io_timeout, "--io-timeout")?;
        source.set_connect_timeout(connect_timeout);
        source.set_io_timeout(io_timeout);
        let mut target = PgEndpoint::parse(&args.target, "target")?;
        target.config.connect_timeout(connect_timeout);
        target.set_io_timeout(io_timeout);
        if args.job.trim().is_empty() {
            return Err(Error::input("--job: the name must not be empty"));
        }
        if !(args.progress_interval.is_finite() && args.progress_interval > 0.0) {
            return Err(Error::input("--progress-interval: expected a positive number of seconds"));
        }
        Ok(WorkerConfig {
            source,
            target,
            job: args.job.clone(),
            workers: workers(args.workers)?,
            wait: duration(&args.wait, "--wait")?,
            lease: lease(args.lease)?,
            retry: RetryPolicy {
                retries: nonnegative(args.retries, "--retries")? as u32,
                max_wait: seconds(args.retry_max_wait, "--retry-max-wait")?,
            },
            progress: match args.progress.as_str() {
                "bars" => ProgressMode::Bars,
                "lines" => ProgressMode::Lines,
                "none" => ProgressMode::None,
                _ if std::io::IsTerminal::is_terminal(&std::io::stderr()) => ProgressMode::Bars,
                _ => ProgressMode::Lines,
            },
            progress_interval: Duration::from_secs_f64(args.progress_interval),
            throttle: ThrottleConfig::from_args(&crate::cli::RateArgs::default(), Some(&args.load))?
                .with_io_timeout(io_timeout),
        })
    }
}

#[derive(Debug, Clone)]
pub struct StatusConfig {
    pub target: PgEndpoint,
    pub job: Option<String>,
}

impl StatusConfig {
    pub fn from_args(args: &StatusArgs) -> Result<Self> {
        Ok(StatusConfig { target: PgEndpoint::parse(&args.target, "target")?, job: args.job.clone() })
    }
}

fn source_engine(url: &str) -> Result<Engine> {
    match url.split("://").next().unwrap_or("") {
        "postgres" | "postgresql" => Ok(Engine::Postgres),
        "mysql" | "mariadb" => Ok(Engine::Mysql),
        _ => Err(Error::input(format!(
            "--source: unsupported URL {}; expected postgres://user:password@host:5432/database \
             or mysql://user:password@host:3306/database",
            redact_url(url)
        ))),
    }
}

/// How hard a run may read the source: rate limits and the conditions that pause it.
#[derive(Debug, Clone, Default)]
pub struct ThrottleConfig {
    /// 0 = unlimited.
    pub rows_per_sec: u64,
    /// 0 = unlimited.
    pub bytes_per_sec: u64,
    /// Pause while replication lag exceeds this.
    pub max_lag: Option<Duration>,
    /// Replicas to watch for lag; none means the source itself.
    pub lag_replicas: Vec<SourceEndpoint>,
    /// Pause while this query's number (run on the source every second) exceeds the limit.
    pub query: Option<(String, f64)>,
}

impl ThrottleConfig {
    fn from_args(rates: &RateArgs, load: Option<&LoadArgs>) -> Result<Self> {
        let rate = |v: &Option<String>, flag: &str, binary: bool| match v {
            Some(text) => parse_rate(text, flag, binary),
            None => Ok(0),
        };
        let rows_per_sec = rate(&rates.max_rows_per_sec, "--max-rows-per-sec", false)?;
        let bytes_per_sec = rate(&rates.max_bytes_per_sec, "--max-bytes-per-sec", true)?;
        let Some(args) = load else {
            return Ok(ThrottleConfig { rows_per_sec, bytes_per_sec, ..ThrottleConfig::default() });
        };
        if !args.lag_replica.is_empty() && args.max_lag.is_none() {
            return Err(Error::input("--lag-replica needs --max-lag SECONDS"));
        }
        let max_lag = match args.max_lag {
            Some(s) => Some(seconds(s, "--max-lag")?),
            None => None,
        };
        let lag_replicas = args
            .lag_replica
            .iter()
            .map(|url| SourceEndpoint::parse_as(url, "lag-replica"))
            .collect::<Result<Vec<_>>>()?;
        let query = match (&args.throttle_query, args.throttle_above) {
            (Some(q), Some(above)) if !q.trim().is_empty() && above.is_finite() => Some((q.clone(), above)),
            (Some(_), Some(_)) => {
                return Err(Error::input("--throttle-query needs a query and --throttle-above a finite number"))
            }
            _ => None,
        };
        Ok(ThrottleConfig { rows_per_sec, bytes_per_sec, max_lag, lag_replicas, query })
    }

    /// The lag replicas' connections get `--io-timeout` too.
    fn with_io_timeout(mut self, timeout: Duration) -> Self {
        self.lag_replicas.iter_mut().for_each(|r| r.set_io_timeout(timeout));
        self
    }
}

/// `rangecopy throttle`: what to change in a job.
#[derive(Debug, Clone)]
pub struct ThrottleChange {
    pub target: PgEndpoint,
    pub job: String,
    /// New limits; `Some(0)` removes one.
    pub rows_per_sec: Option<u64>,
    pub bytes_per_sec: Option<u64>,
    pub paused: Option<bool>,
}

impl ThrottleChange {
    pub fn from_args(args: &ThrottleCommandArgs) -> Result<Self> {
        let rate = |v: &Option<String>, flag: &str, binary: bool| -> Result<Option<u64>> {
            match v.as_deref().map(str::trim) {
                None => Ok(None),
                Some("0") => Ok(Some(0)),
                Some(text) => parse_rate(text, flag, binary).map(Some),
            }
        };
        Ok(ThrottleChange {
            target: PgEndpoint::parse(&args.target, "target")?,
            job: args.job.clone(),
            rows_per_sec: rate(&args.rates.max_rows_per_sec, "--max-rows-per-sec", false)?,
            bytes_per_sec: rate(&args.rates.max_bytes_per_sec, "--max-bytes-per-sec", true)?,
            paused: match (args.pause, args.unpause) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            },
        })
    }
}

/// How transient failures are retried.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub retries: u32,
    pub max_wait: Duration,
}

impl RetryPolicy {
    /// The wait before retry `attempt` (1-based): half a second, doubling, capped.
    pub fn wait(&self, attempt: u32) -> Duration {
        let secs = 0.5 * 2f64.powi(attempt.saturating_sub(1).min(30) as i32);
        Duration::from_secs_f64(secs).min(self.max_wait)
    }
}

/// `--lease`: at least a second (renewed every third of it), at most a day.
pub fn lease(value: f64) -> Result<f64> {
    if !(value.is_finite() && (1.0..=86_400.0).contains(&value)) {
        return Err(Error::input(format!("--lease: expected a number of seconds from 1 to 86400, got {value}")));
    }
    Ok(value)
}

fn seconds(value: f64, flag: &str) -> Result<Duration> {
    if !(value.is_finite() && value > 0.0 && value < 1e9) {
        return Err(Error::input(format!("{flag}: expected a positive number of seconds, got {value}")));
    }
    Ok(Duration::from_secs_f64(value))
}

fn nonnegative(n: i64, flag: &str) -> Result<u64> {
    if n < 0 {
        return Err(Error::input(format!("{flag}: expected zero or a positive number, got {n}")));
    }
    Ok(n as u64)
}

/// `--workers`: default the number of cores; at most 256 (each holds two connections).
fn workers(arg: Option<i64>) -> Result<usize> {
    let n = match arg {
        None => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
        Some(n) => positive(n, "--workers")? as usize,
    };
    if n > 256 {
        return Err(Error::input("--workers: at most 256 (each worker holds two connections)"));
    }
    Ok(n)
}

fn positive(n: i64, flag: &str) -> Result<u64> {
    if n <= 0 {
        return Err(Error::input(format!("{flag}: expected a positive number, got {n}")));
    }
    Ok(n as u64)
}

fn check_report_path(path: &std::path::Path) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    if !dir.is_dir() {
        return Err(Error::input(format!(
            "--report: directory {} does not exist; create it or choose another path",
            dir.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_listen_port_is_loopback_and_a_host_is_taken_as_given() {
        assert_eq!(listen_address("9187").unwrap().to_string(), "127.0.0.1:9187");
        assert_eq!(listen_address("0").unwrap().to_string(), "127.0.0.1:0");
        assert_eq!(listen_address("0.0.0.0:9187").unwrap().to_string(), "0.0.0.0:9187");
        assert_eq!(listen_address("[::1]:9187").unwrap().to_string(), "[::1]:9187");
        for bad in ["", "99999", "localhost", "1.2.3.4:port", "http://x:1"] {
            let e = listen_address(bad).unwrap_err().to_string();
            assert!(e.contains("--listen") && e.contains("HOST:PORT"), "{bad}: {e}");
        }
    }

    #[test]
    fn table_specs_split_like_sql() {
        let t = TableSpec::parse("orders").unwrap();
        assert_eq!((t.schema, t.name.as_str(), t.quoted), (None, "orders", false));
        let t = TableSpec::parse("shop.orders").unwrap();
        assert_eq!((t.schema.as_deref(), t.name.as_str()), (Some("shop"), "orders"));
        let t = TableSpec::parse(r#""My.Schema"."we""ird name""#).unwrap();
        assert_eq!((t.schema.as_deref(), t.name.as_str(), t.quoted), (Some("My.Schema"), r#"we"ird name"#, true));
        let t = TableSpec::parse("with space").unwrap();
        assert_eq!(t.name, "with space");
    }

    #[test]
    fn malformed_table_specs_are_refused() {
        for bad in ["", "a.", ".b", "a.b.c", r#""open"#, r#"a"b"#, r#""x"y"#] {
            let err = TableSpec::parse(bad).unwrap_err();
            assert!(err.is_input(), "{bad:?} gave {err}");
        }
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:pw@h:5432/db?sslmode=require"),
            "postgres://u:***@h:5432/db?sslmode=require"
        );
        assert_eq!(redact_url("postgres://u@h/db?password=pw&x=1"), "postgres://u@h/db?password=***&x=1");
        assert_eq!(redact_url("mysql://h/db"), "mysql://h/db");
        assert_eq!(redact_url("rangecopy:pw@127.0.0.1:54330/db"), "rangecopy:***@127.0.0.1:54330/db");
        assert_eq!(redact_url("postgres://u:p/@:%#?w@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact_url("postgres://u@h/db?sslpassword=k"), "postgres://u@h/db?sslpassword=***");
    }

    #[test]
    fn endpoint_display_never_holds_the_password() {
        let ep = PgEndpoint::parse("postgres://alice:hunter2-xyz@localhost:5433/app", "source").unwrap();
        assert_eq!(ep.display, "postgres://alice@localhost:5433/app");
        assert!(!format!("{ep:?}").contains("hunter2-xyz"));
        assert_eq!(crate::error::redact("x hunter2-xyz"), "x ***");
    }

    #[test]
    fn a_pg_password_with_url_syntax_in_it_is_parsed_not_misread_as_the_host() {
        let url = "postgres://bob:p/@:%#?w-7c1@db.example:6543/app?sslmode=disable&application_name=x";
        let ep = PgEndpoint::parse(url, "source").unwrap();
        assert_eq!(ep.config.get_user(), Some("bob"));
        assert_eq!(ep.config.get_password(), Some(&b"p/@:%#?w-7c1"[..]));
        assert_eq!(ep.config.get_hosts(), [tokio_postgres::config::Host::Tcp("db.example".into())]);
        assert_eq!(ep.config.get_ports(), [6543]);
        assert_eq!(ep.display, "postgres://bob@db.example:6543/app");
        assert_eq!(ep.hint_url, "postgres://bob@db.example:6543/app?sslmode=disable&application_name=x");
        assert_eq!(ep.password_source, PasswordSource::Url);
        assert_eq!(crate::error::redact("x p/@:%#?w-7c1 y"), "x *** y");
    }

    #[test]
    fn a_mysql_password_with_url_syntax_in_it_is_parsed_not_misread_as_the_host() {
        let url = "mysql://bob:p/@:%#?w-9d2@db.example:3307/shop?ssl-mode=DISABLED";
        let ep = MyEndpoint::parse(url, "source").unwrap();
        assert_eq!(ep.opts.get_user(), Some("bob"));
        assert_eq!(ep.opts.get_pass(), Some("p/@:%#?w-9d2"));
        assert_eq!((ep.opts.get_ip_or_hostname().as_ref(), ep.opts.get_tcp_port()), ("db.example", 3307));
        assert_eq!(ep.display, "mysql://bob@db.example:3307/shop");
        assert_eq!(ep.hint_url, "mysql://bob@db.example:3307/shop?ssl-mode=DISABLED");
        let ep = MyEndpoint::parse("mariadb://a%40b:p%2Fw@h/d", "lag-replica").unwrap();
        assert_eq!((ep.opts.get_user(), ep.opts.get_pass()), (Some("a@b"), Some("p/w")));
        assert_eq!(ep.hint_url, "mariadb://a%40b@h/d");
    }

    #[test]
    fn a_password_equal_to_the_user_name_leaves_the_user_name_shown() {
        let ep = PgEndpoint::parse("postgres://samename-4e1:samename-4e1@h:5432/db", "target").unwrap();
        let message = format!("cannot connect to {}: user \"samename-4e1\" refused", ep.display);
        assert_eq!(
            crate::error::redact(&message),
            "cannot connect to postgres://samename-4e1@h:5432/db: user \"***\" refused"
        );
        let ep = MyEndpoint::parse("mysql://samename-5f2:samename-5f2@h:3306/db", "source").unwrap();
        assert_eq!(crate::error::redact(&ep.display), "mysql://samename-5f2@h:3306/db");
        assert_eq!(crate::error::redact(&ep.hint_url), "mysql://samename-5f2@h:3306/db");
    }

    #[test]
    fn a_password_parameter_is_used_but_never_repeated() {
        let ep = PgEndpoint::parse("postgres://u@h/db?password=qp-secret-61&sslmode=disable", "target").unwrap();
        assert_eq!(ep.config.get_password(), Some(&b"qp-secret-61"[..]));
        assert_eq!(ep.password_source, PasswordSource::Url);
        assert_eq!(ep.hint_url, "postgres://u@h/db?sslmode=disable");
        assert_eq!(crate::error::redact("qp-secret-61"), "***");
    }

    #[test]
    fn urls_that_read_two_ways_are_refused_without_echoing_the_userinfo() {
        for (url, secret) in [
            ("postgres://u:Pa@ss/w0rd-3a@h", "Pa@ss/w0rd-3a"),
            ("mysql://u:Pa@ss/w0rd-3b@h", "Pa@ss/w0rd-3b"),
            ("postgres://u:pw-3c@h/db?application_name=me@box", "pw-3c"),
        ] {
            let err = SourceEndpoint::parse(url).unwrap_err();
            assert!(err.is_input(), "{url}: {err}");
            assert!(err.to_string().contains("more than one way"), "{err}");
            for part in [secret, "w0rd", "Pa@"] {
                assert!(!err.to_string().contains(part), "{url}: {err}");
            }
        }
        assert_eq!(redact_url("postgres://u:Pa@ss/w0rd-3d@h"), "postgres://***@h");
        assert_eq!(redact_url("mysql://u:p/@:%#?w@h o/db"), "mysql://***@h o/db");
    }

    #[test]
    fn wrong_schemes_are_input_errors() {
        assert!(PgEndpoint::parse("http://x/y", "target").unwrap_err().is_input());
        assert!(PgEndpoint::parse("localhost:5432", "target").unwrap_err().is_input());
        assert_eq!(source_engine("mysql://u@h/db").unwrap(), Engine::Mysql);
        assert_eq!(source_engine("mariadb://u@h/db").unwrap(), Engine::Mysql);
        assert!(source_engine("sqlite://x").unwrap_err().is_input());
    }

    #[test]
    fn mysql_urls_connect_where_they_say_never_through_the_servers_own_socket() {
        let ep = MyEndpoint::parse("mysql://u@127.0.0.1:3306/db", "source").unwrap();
        assert!(!ep.opts.get_prefer_socket(), "a loopback URL must not be swapped for the server's @@socket");
        assert_eq!(ep.opts.get_socket(), None);
        assert!(!MyEndpoint::parse("mysql://u@localhost/db?ssl-mode=REQUIRED", "source")
            .unwrap()
            .opts
            .get_prefer_socket());
        // Asked for: a socket preference, or a socket path.
        assert!(MyEndpoint::parse("mysql://u@localhost:3306/db?prefer_socket=true", "source")
            .unwrap()
            .opts
            .get_prefer_socket());
        let ep = MyEndpoint::parse("mysql://u@localhost/db?socket=%2Frun%2Fmysqld%2Fmysqld.sock", "source").unwrap();
        assert_eq!(ep.opts.get_socket(), Some("/run/mysqld/mysqld.sock"));
    }

    #[test]
    fn io_timeout_bounds_every_connection_of_a_run() {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from([
            "rangecopy",
            "copy",
            "--source",
            "mysql://u@127.0.0.1:3306/db",
            "--target",
            "postgres://u@localhost/db",
            "--max-lag",
            "5",
            "--lag-replica",
            "mysql://u@localhost:3307/db",
            "--io-timeout",
            "7",
        ])
        .unwrap();
        let crate::cli::Command::Copy(args) = cli.command else { panic!("a copy command") };
        let cfg = CopyConfig::from_args(&args).unwrap();
        let seven = Duration::from_secs(7);
        for ep in std::iter::once(&cfg.source).chain(&cfg.throttle.lag_replicas) {
            let SourceEndpoint::Mysql(my) = ep else { panic!("a MySQL endpoint") };
            assert_eq!(
                (my.io_timeout, my.opts.get_read_timeout(), my.opts.get_write_timeout()),
                (seven, Some(&seven), Some(&seven))
            );
            assert!(!my.opts.get_prefer_socket());
            assert!(my.opts.get_tcp_keepalive_time_ms().is_some());
        }
        assert_eq!((cfg.target.io_timeout, cfg.target.config.get_tcp_user_timeout()), (seven, Some(&seven)));
        assert_eq!(cfg.target.config.get_keepalives_idle(), KEEPALIVE_IDLE);
        // The URL's own TCP settings win.
        let ep = PgEndpoint::parse("postgres://u@h/db?tcp_user_timeout=9&keepalives_idle=99", "target").unwrap();
        assert_eq!(ep.config.get_tcp_user_timeout(), Some(&Duration::from_secs(9)));
        assert_eq!(ep.config.get_keepalives_idle(), Duration::from_secs(99));
        assert!(PgEndpoint::parse("postgres://u@h/db", "target").unwrap().io_timeout == DEFAULT_IO_TIMEOUT);
    }

    fn verify_config(args: &[&str]) -> Result<VerifyConfig> {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from([&["rangecopy", "verify"][..], args].concat()).unwrap();
        let crate::cli::Command::Verify(args) = cli.command else { panic!("a verify command") };
        VerifyConfig::from_args(&args)
    }

    #[test]
    fn live_verify_options_take_durations_and_refuse_what_would_be_ignored() {
        let pg = "postgres://u@localhost/db";
        let base = ["--source", pg, "--target", pg];
        let live = |more: &[&str]| verify_config(&[&base[..], more].concat()).map(|c| c.live);
        assert_eq!(live(&[]).unwrap(), LiveVerify::default());
        let l = live(&["--recheck", "5", "--recheck-delay", "2", "--since-column", "updated_at", "--min-age", "5m"])
            .unwrap();
        assert_eq!((l.rechecks, l.recheck_delay), (5, Duration::from_secs(2)));
        assert_eq!(l.since, Some(SinceFilter { column: "updated_at".into(), min_age: Duration::from_secs(300) }));
        let l = live(&["--watch", "1h", "--passes", "3"]).unwrap();
        assert_eq!((l.watch, l.passes), (Some(Duration::from_secs(3600)), Some(3)));
        assert_eq!(duration("30s", "x").unwrap(), Duration::from_secs(30));
        assert_eq!(duration("2d", "x").unwrap(), Duration::from_secs(172_800));
        assert_eq!(duration("1.5", "x").unwrap(), Duration::from_millis(1500));
        for (args, words) in [
            (&["--recheck-delay", "2"][..], "give --recheck N"),
            (&["--recheck", "-1"][..], "--recheck"),
            (&["--watch", "soon"][..], "expected a duration such as 30s"),
            (&["--watch", "0s"][..], "--watch"),
            (&["--since-column", "", "--min-age", "5m"][..], "name a timestamp column"),
            (&["--since-column", "u", "--min-age", "5 fortnights"][..], "--min-age"),
        ] {
            let e = live(args).unwrap_err();
            assert!(e.is_input() && e.to_string().contains(words), "{args:?}: {e}");
        }
        // Half of a pair, or --passes without --watch, is refused by the parser.
        use clap::Parser;
        for lone in [&["--min-age", "5m"][..], &["--since-column", "u"][..], &["--passes", "3"][..]] {
            assert!(crate::cli::Cli::try_parse_from([&["rangecopy", "verify"][..], &base[..], lone].concat()).is_err());
        }
    }

    #[test]
    fn verify_takes_copys_mapping_options_for_mysql_sources_without_a_job() {
        let (my, pg) = ("mysql://u@localhost/shop", "postgres://u@localhost/db");
        let rules = ["--cast", "type:tinyint(1)=boolean", "--exclude-column", "t.notes", "--target-schema", "app"];
        let cfg = verify_config(&[&["--source", my, "--target", pg][..], &rules].concat()).unwrap();
        let SourceEndpoint::Mysql(ep) = &cfg.source else { panic!("a MySQL source") };
        assert_eq!(ep.options.casts, vec![CastRule::parse("type:tinyint(1)=boolean").unwrap()]);
        assert_eq!(ep.options.target_schema.as_deref(), Some("app"));
        assert_eq!(cfg.source.excluded_columns(), [["shop", "t", "notes"].map(String::from)]);
        // Parsed as copy parses them.
        let e = verify_config(&["--source", my, "--target", pg, "--cast", "type:x=float"]).unwrap_err();
        assert!(e.is_input() && e.to_string().contains("unknown PostgreSQL type"), "{e}");
        let e = verify_config(&["--source", my, "--target", pg, "--exclude-column", "a..b"]).unwrap_err();
        assert!(e.to_string().contains("--exclude-column"), "{e}");
        // With --job the job's rules hold; a PostgreSQL source has none of these.
        let e = verify_config(&[&["--source", my, "--target", pg, "--job", "j"][..], &rules].concat()).unwrap_err();
        assert!(e.is_input() && e.to_string().contains("with --job"), "{e}");
        let e = verify_config(&["--source", pg, "--target", pg, "--exclude-column", "t.c"]).unwrap_err();
        assert!(e.is_input() && e.to_string().contains("MySQL/MariaDB sources only"), "{e}");
    }

    #[test]
    fn cast_rules_and_column_refs_parse() {
        let r = CastRule::parse("type:TinyInt( 1 )=BOOLEAN").unwrap();
        assert_eq!((r.selector, r.to), (CastSelector::Type("tinyint(1)".into()), CastTarget::Boolean));
        let r = CastRule::parse("type:int  unsigned=text").unwrap();
        assert_eq!(r.selector, CastSelector::Type("int unsigned".into()));
        let r = CastRule::parse("column:`my.db`.t.c=bytea").unwrap();
        let want = ColumnRef { schema: Some("my.db".into()), table: "t".into(), column: "c".into() };
        assert_eq!((r.selector, r.to), (CastSelector::Column(want), CastTarget::Bytea));
        assert_eq!(ColumnRef::parse("t.c").unwrap(), ColumnRef { schema: None, table: "t".into(), column: "c".into() });
        assert_eq!(ColumnRef::parse("`a``b`.c").unwrap().table, "a`b");
        for bad in [
            "tinyint(1)=boolean",
            "type:tinyint(1)",
            "type:x=float",
            "kind:x=text",
            "column:c=text",
            "column:a.b.c.d=text",
        ] {
            assert!(CastRule::parse(bad).unwrap_err().is_input(), "{bad}");
        }
        for bad in ["c", "a..c", "`a.b", "a.b.c.d", ""] {
            assert!(ColumnRef::parse(bad).is_err(), "{bad}");
        }
    }
}
