//! Where user names and passwords come from, and the URL forms that never hold a password.
//!
//! A URL's userinfo is split off here before any driver sees the URL, so that a password full of
//! URL syntax (`/ @ : % # ?`) is neither misread as the host nor echoed in a driver's parse
//! error. A password left out of the URL is looked up as each engine's own client does:
//! PostgreSQL from `PGPASSWORD`, then the libpq password file (`PGPASSFILE`, `~/.pgpass`);
//! MySQL/MariaDB from `MYSQL_PWD`, then the `[client]` group of the option files
//! (`$MYSQL_HOME/my.cnf`, `~/.my.cnf`). Every password found is registered as a secret before
//! anything else happens to it.
//!
//! This module never connects, and never prints a password or any part of a URL's userinfo.
//! The one thing it prints is the warning about a password file it ignores for being open to
//! other users, as libpq and the mysql client do: the user must learn why their file is not used.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use crate::error::register_secret;

/// Why a URL's userinfo could not be split off. The messages never quote the URL: any part of
/// it may be the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserinfoError {
    /// Two readings of the URL are both well formed.
    #[error(
        "the URL can be read in more than one way: an `@` after the host (in the database name or a \
         parameter value) could also end the password; percent-encode `@` there or in the password \
         as %40 (`/` as %2F, `?` as %3F, `#` as %23, `:` as %3A, `%` as %25), or leave the password \
         out of the URL (see the environment variables and password files in --help)"
    )]
    Ambiguous,
    /// No `@` is followed by a readable host.
    #[error(
        "no host can be read after the user name and password in the URL; percent-encode `@` in the \
         password as %40 (`/` as %2F, `?` as %3F, `#` as %23, `%` as %25), or leave the password out \
         of the URL (see the environment variables and password files in --help)"
    )]
    NoHost,
    /// The user name decodes to bytes that are not UTF-8.
    #[error("the user name in the URL is not valid UTF-8 once percent-decoded")]
    UserNotUtf8,
}

/// A URL with its userinfo taken out and decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitUrl {
    /// What comes before `://` (empty when there is none).
    pub scheme: String,
    /// The user name as written (still percent-encoded), when the URL names one.
    pub user_as_written: Option<String>,
    /// The user name, percent-decoded.
    pub user: Option<String>,
    /// The password, percent-decoded; `None` when the userinfo has no `:`.
    pub password: Option<Vec<u8>>,
    /// Everything after the userinfo, exactly as written: `host[:port][,…][/db][?params]`.
    pub rest: String,
}

/// Splits `scheme://[user[:password]@]rest`, registering the password (as written and decoded)
/// as a secret first.
///
/// The userinfo ends at an `@` followed by a well-formed `host[:port][/database][?key=value&…]`.
/// When several readings qualify (a password holding `@`, a database name or parameter value
/// holding another, or no userinfo at all), the one whose user part holds no `/ ? #` wins, and if
/// that still leaves more than one, the URL is refused as ambiguous. The user and password split at the first `:`, so a user
/// name may hold `@` but not `:`; `%XX` is decoded in both, any other `%` is kept as written.
pub fn split_url(url: &str) -> Result<SplitUrl, UserinfoError> {
    let (scheme, after) = match url.split_once("://") {
        Some((scheme, after)) => (scheme.to_string(), after),
        None => (String::new(), url),
    };
    // Each reading: the `@` that ends the userinfo, or none at all.
    let readings: Vec<Option<usize>> = std::iter::once(None)
        .chain(after.match_indices('@').map(|(i, _)| Some(i)))
        .filter(|at| is_host_part(&after[at.map_or(0, |i| i + 1)..]))
        .collect();
    let chosen = match readings.as_slice() {
        [] => return Err(UserinfoError::NoHost),
        [one] => *one,
        several => {
            // A `/`, `?` or `#` is at home in a password, not in a user name.
            let plain_user = |at: &&Option<usize>| {
                at.is_none_or(|i| !after[..i].split(':').next().unwrap_or_default().contains(['/', '?', '#']))
            };
            match several.iter().filter(plain_user).collect::<Vec<_>>().as_slice() {
                [one] => **one,
                _ => return Err(UserinfoError::Ambiguous),
            }
        }
    };
    let Some(chosen) = chosen else {
        return Ok(SplitUrl { scheme, user_as_written: None, user: None, password: None, rest: after.to_string() });
    };
    let userinfo = &after[..chosen];
    let (user_raw, password) = match userinfo.split_once(':') {
        Some((user, pw)) => {
            let decoded = percent_decode(pw);
            register_secret(pw);
            register_secret(&String::from_utf8_lossy(&decoded));
            (user, Some(decoded))
        }
        None => (userinfo, None),
    };
    let user = String::from_utf8(percent_decode(user_raw)).map_err(|_| UserinfoError::UserNotUtf8)?;
    Ok(SplitUrl {
        scheme,
        user_as_written: Some(user_raw.to_string()).filter(|u| !u.is_empty()),
        user: Some(user).filter(|u| !u.is_empty()),
        password,
        rest: after[chosen + 1..].to_string(),
    })
}

/// Whether `text` reads as `host[:port][,host[:port]…][/database][?key=value&…]`: hosts of
/// host-name, address and percent-escape characters only (so never an `@`) with numeric ports,
/// a database name without `/`, parameters whose keys are plain words.
fn is_host_part(text: &str) -> bool {
    let host_end = text.find(['/', '?']).unwrap_or(text.len());
    let (hosts, mut tail) = text.split_at(host_end);
    if !hosts.split(',').all(is_host_and_port) {
        return false;
    }
    if let Some(path) = tail.strip_prefix('/') {
        let end = path.find('?').unwrap_or(path.len());
        if path[..end].contains('/') {
            return false;
        }
        tail = &path[end..];
    }
    match tail.strip_prefix('?') {
        None => tail.is_empty(),
        Some(query) => query.split('&').filter(|p| !p.is_empty()).all(|p| match p.split_once('=') {
            Some((key, _)) => !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
            None => false,
        }),
    }
}

/// `name[:port]` or `[address][:port]`, the port digits only; empty parts are allowed (the
/// driver's default host or port).
fn is_host_and_port(text: &str) -> bool {
    let (name, port) = match text.strip_prefix('[') {
        Some(bracketed) => match bracketed.split_once(']') {
            Some((address, "")) => (address, ""),
            Some((address, after)) => match after.strip_prefix(':') {
                Some(port) => (address, port),
                None => return false,
            },
            None => return false,
        },
        None => text.split_once(':').unwrap_or((text, "")),
    };
    let name_ok = name.chars().all(|c| c.is_ascii_alphanumeric() || "-._%:".contains(c))
        && (text.starts_with('[') || !name.contains(':'));
    name_ok && port.chars().all(|c| c.is_ascii_digit())
}

/// `%XX` decoded; a `%` not followed by two hex digits is kept as it is.
pub fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// `text` with every byte outside RFC 3986's unreserved set percent-encoded, for a user name
/// put back into a URL.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Whether a URL parameter may carry a secret, and so must never be shown or repeated.
pub fn is_secret_param(key: &str) -> bool {
    key.to_ascii_lowercase().contains("pass")
}

/// `query` (`a=1&b=2`, no `?`) without the parameters that may carry a secret.
pub fn public_params(query: &str) -> String {
    query
        .split('&')
        .filter(|p| !p.is_empty() && !is_secret_param(p.split_once('=').map_or(*p, |(k, _)| k)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Where an endpoint's password came from: named in connection errors and in the resume hint,
/// so the user knows what to fix or set, while the password itself is never shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// Written in the URL (its userinfo or a `password` parameter).
    Url,
    /// An environment variable (`PGPASSWORD`, `MYSQL_PWD`).
    Env(&'static str),
    /// A password file: the libpq password file or a MySQL option file.
    File(PathBuf),
    /// None was found (the server may not ask for one).
    None,
}

impl PasswordSource {
    /// `the URL`, `PGPASSWORD`, `the file ~/.pgpass`, `none given`: for messages.
    pub fn describe(&self) -> String {
        match self {
            PasswordSource::Url => "the URL".into(),
            PasswordSource::Env(var) => (*var).into(),
            PasswordSource::File(path) => format!("the file {}", path.display()),
            PasswordSource::None => "none given".into(),
        }
    }
}

impl PasswordSource {
    /// What to check after the server refused the login: where the password came from, or
    /// where to put one (`var` and `files` are the engine's).
    pub fn login_hint(&self, var: &str, files: &str) -> String {
        match self {
            PasswordSource::None => format!("no password was given: put it in the URL, {var} or {files}"),
            other => format!("the password came from {}", other.describe()),
        }
    }
}

/// The environment variable that may hold `--source`, so the URL (and any password in it)
/// stays out of the process list.
pub const SOURCE_ENV: &str = "RANGECOPY_SOURCE";
/// The environment variable that may hold `--target`.
pub const TARGET_ENV: &str = "RANGECOPY_TARGET";

/// The environment variable that holds a PostgreSQL password.
pub const PG_PASSWORD_VAR: &str = "PGPASSWORD";
/// The environment variable that holds a MySQL/MariaDB password.
pub const MY_PASSWORD_VAR: &str = "MYSQL_PWD";

/// A non-empty environment variable.
fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// A PostgreSQL password not written in the URL: `PGPASSWORD`, else the password file's
/// first line that matches host, port, database and user. Registered as a secret.
pub fn pg_password(host: &str, port: u16, dbname: &str, user: &str) -> Option<(Vec<u8>, PasswordSource)> {
    if let Some(pw) = env_var(PG_PASSWORD_VAR) {
        register_secret(&pw);
        return Some((pw.into_bytes(), PasswordSource::Env(PG_PASSWORD_VAR)));
    }
    let path = pgpass_path()?;
    let contents = read_private_file(&path, PrivateFile::PgPass)?;
    let pw = pgpass_match(&contents, host, port, dbname, user)?;
    register_secret(&pw);
    Some((pw.into_bytes(), PasswordSource::File(path)))
}

/// `PGPASSFILE`, else `~/.pgpass`.
fn pgpass_path() -> Option<PathBuf> {
    if let Some(path) = env_var("PGPASSFILE") {
        return Some(PathBuf::from(path));
    }
    env_var("HOME").map(|home| Path::new(&home).join(".pgpass"))
}

/// The password of the first `host:port:database:username:password` line that matches, as
/// libpq reads the file: `*` matches any value, `\` escapes `:` and `\`, `#` starts a comment
/// line. A Unix-socket connection to the default directory matches `localhost`.
fn pgpass_match(contents: &str, host: &str, port: u16, dbname: &str, user: &str) -> Option<String> {
    if dbname.is_empty() || user.is_empty() {
        return None;
    }
    let host = match host {
        "" | "/tmp" | "/var/run/postgresql" | "/run/postgresql" => "localhost",
        other => other,
    };
    let port = port.to_string();
    for line in contents.lines() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields = pgpass_fields(line);
        let [h, p, d, u, pw, ..] = fields.as_slice() else { continue };
        let matches = |field: &(String, bool), value: &str| field.1 || field.0 == value;
        if matches(h, host) && matches(p, &port) && matches(d, dbname) && matches(u, user) {
            return Some(pw.0.clone());
        }
    }
    None
}

/// The `:`-separated fields of a password file line, unescaped, each with whether it was a
/// bare `*` (the wildcard; `\*` is a literal star).
fn pgpass_fields(line: &str) -> Vec<(String, bool)> {
    let mut fields = Vec::new();
    let (mut field, mut escaped_any) = (String::new(), false);
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(next) => {
                    field.push(next);
                    escaped_any = true;
                }
                None => field.push('\\'),
            },
            ':' => {
                let wildcard = field == "*" && !escaped_any;
                fields.push((std::mem::take(&mut field), wildcard));
                escaped_any = false;
            }
            c => field.push(c),
        }
    }
    let wildcard = field == "*" && !escaped_any;
    fields.push((field, wildcard));
    fields
}

/// A MySQL/MariaDB password not written in the URL: `MYSQL_PWD`, else the `password` of the
/// `[client]` group in the option files `$MYSQL_HOME/my.cnf` and `~/.my.cnf` (the later file
/// wins, as in the mysql client). Registered as a secret.
pub fn my_password() -> Option<(String, PasswordSource)> {
    if let Ok(pw) = std::env::var(MY_PASSWORD_VAR) {
        register_secret(&pw);
        return Some((pw, PasswordSource::Env(MY_PASSWORD_VAR)));
    }
    let files = [
        env_var("MYSQL_HOME").map(|dir| Path::new(&dir).join("my.cnf")),
        env_var("HOME").map(|home| Path::new(&home).join(".my.cnf")),
    ];
    let mut found = None;
    for path in files.into_iter().flatten() {
        let Some(contents) = read_private_file(&path, PrivateFile::MyOptions) else { continue };
        if let Some(pw) = option_file_password(&contents) {
            register_secret(&pw);
            found = Some((pw, PasswordSource::File(path)));
        }
    }
    found
}

/// The last `password=VALUE` in the `[client]` group of a MySQL option file, read as the
/// mysql client reads it: `#` outside quotes and lines starting with `;` are comments, `-` and
/// `_` are the same in option names, a value may be quoted, `\n \t \r \b \s \\ \" \'` are
/// escapes. A bare `password` (which asks the mysql client to prompt) gives nothing.
fn option_file_password(contents: &str) -> Option<String> {
    let mut in_client = false;
    let mut found = None;
    for line in contents.lines() {
        let line = strip_option_comment(line).trim();
        if line.is_empty() || line.starts_with(';') || line.starts_with('!') {
            continue;
        }
        if let Some(group) = line.strip_prefix('[') {
            in_client = group.trim_end_matches(']').trim().eq_ignore_ascii_case("client");
            continue;
        }
        if !in_client {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else { continue };
        if name.trim().replace('-', "_").eq_ignore_ascii_case("password") {
            found = Some(option_value(value.trim()));
        }
    }
    found
}

/// The line up to a `#` that is not inside quotes.
fn strip_option_comment(line: &str) -> &str {
    let (mut quote, mut escape) = (None, false);
    for (i, c) in line.char_indices() {
        if (c == '\'' || c == '"') && !escape {
            match quote {
                None => quote = Some(c),
                Some(q) if q == c => quote = None,
                Some(_) => {}
            }
        }
        if quote.is_none() && c == '#' {
            return &line[..i];
        }
        escape = quote.is_some() && c == '\\' && !escape;
    }
    line
}

/// An option value with its surrounding quotes removed and escapes resolved.
fn option_value(value: &str) -> String {
    let unquoted = match value.as_bytes() {
        [q @ (b'"' | b'\''), .., last] if last == q && value.len() >= 2 => &value[1..value.len() - 1],
        _ => value,
    };
    let mut out = String::with_capacity(unquoted.len());
    let mut chars = unquoted.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' || chars.peek().is_none() {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('b') => out.push('\u{8}'),
            Some('s') => out.push(' '),
            Some(c @ ('\\' | '"' | '\'')) => out.push(c),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => {}
        }
    }
    out
}

/// Which client's rule for a password file open to other users applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PrivateFile {
    /// libpq: ignored when the group or others have any access.
    PgPass,
    /// The mysql client: ignored when anyone may write it.
    MyOptions,
}

/// The file's text, or `None` when it is missing, unreadable, or ignored for its permissions
/// (with a warning, once per file).
fn read_private_file(path: &Path, kind: PrivateFile) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() {
        warn_once(path, format!("warning: password file {} is not a plain file; ignored", path.display()));
        return None;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode();
        match kind {
            PrivateFile::PgPass if mode & 0o077 != 0 => {
                warn_once(
                    path,
                    format!(
                        "warning: password file {} has group or world access; permissions should be \
                         u=rw (0600) or less; ignored",
                        path.display()
                    ),
                );
                return None;
            }
            PrivateFile::MyOptions if mode & 0o002 != 0 => {
                warn_once(path, format!("warning: world-writable option file {} is ignored", path.display()));
                return None;
            }
            _ => {}
        }
    }
    std::fs::read_to_string(path).ok()
}

/// Prints a warning about a file once per process, however many endpoints read it.
fn warn_once(path: &Path, message: String) {
    static WARNED: OnceLock<Mutex<HashSet<PathBuf>>> = OnceLock::new();
    let mut warned = WARNED.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if warned.insert(path.to_path_buf()) {
        crate::say!("{message}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(url: &str) -> (Option<String>, Option<String>, String) {
        let s = split_url(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        (s.user, s.password.map(|p| String::from_utf8(p).unwrap()), s.rest)
    }

    fn some(s: &str) -> Option<String> {
        Some(s.to_string())
    }

    #[test]
    fn plain_urls_split_as_usual() {
        assert_eq!(
            split("postgres://u:pw@h:5432/db?sslmode=require"),
            (some("u"), some("pw"), "h:5432/db?sslmode=require".into())
        );
        assert_eq!(split("postgres://u@h/db"), (some("u"), None, "h/db".into()));
        assert_eq!(split("postgres://h/db"), (None, None, "h/db".into()));
        assert_eq!(
            split("postgres://u@h/db?application_name=me@box"),
            (some("u"), None, "h/db?application_name=me@box".into())
        );
        assert_eq!(split("mysql://u:@h/db"), (some("u"), some(""), "h/db".into()));
        assert_eq!(split("postgres://:pw@h/db"), (None, some("pw"), "h/db".into()));
        assert_eq!(split("postgres://u:pw@/db?host=/tmp"), (some("u"), some("pw"), "/db?host=/tmp".into()));
        assert_eq!(
            split("postgres://u:pw@[::1]:5432,h2:5433/db"),
            (some("u"), some("pw"), "[::1]:5432,h2:5433/db".into())
        );
        assert_eq!(split("u:pw@127.0.0.1:54330/db"), (some("u"), some("pw"), "127.0.0.1:54330/db".into()));
    }

    #[test]
    fn passwords_with_unencoded_url_syntax_split_at_the_last_at_before_the_host() {
        assert_eq!(split("postgres://u:p/@:%#?w@h:1/db"), (some("u"), some("p/@:%#?w"), "h:1/db".into()));
        assert_eq!(
            split("mysql://u:Pa@ss/w0rd@h/db?ssl-mode=REQUIRED"),
            (some("u"), some("Pa@ss/w0rd"), "h/db?ssl-mode=REQUIRED".into())
        );
        assert_eq!(split("postgres://u:a@b@h/db"), (some("u"), some("a@b"), "h/db".into()));
        assert_eq!(split("postgres://u:p@ss:w/rd%?&=#é x@h/db"), (some("u"), some("p@ss:w/rd%?&=#é x"), "h/db".into()));
        // The first `:` splits: the password may hold more.
        assert_eq!(split("postgres://u:a:b:c@h/db"), (some("u"), some("a:b:c"), "h/db".into()));
        // `u:p` is no host: a port is digits.
        assert_eq!(split("postgres://u:p/x@h"), (some("u"), some("p/x"), "h".into()));
    }

    #[test]
    fn user_names_may_hold_an_at_sign() {
        assert_eq!(split("postgres://app@srv:pw@h/db"), (some("app@srv"), some("pw"), "h/db".into()));
        assert_eq!(split("postgres://app@srv@h/db"), (some("app@srv"), None, "h/db".into()));
        // Without a password, a user part with `/` is no reading: the database holds the `@`.
        assert_eq!(split("postgres://u@h/a@b"), (some("u"), None, "h/a@b".into()));
    }

    #[test]
    fn percent_escapes_are_decoded_and_stray_percents_kept() {
        assert_eq!(split("postgres://a%40b:p%40ss%3Aw%2Frd@h/db"), (some("a@b"), some("p@ss:w/rd"), "h/db".into()));
        assert_eq!(split("postgres://u:100%@h/db"), (some("u"), some("100%"), "h/db".into()));
        assert_eq!(split("postgres://u:%zz%4@h/db"), (some("u"), some("%zz%4"), "h/db".into()));
        assert_eq!(split_url("postgres://%ff:pw@h/db").unwrap_err(), UserinfoError::UserNotUtf8);
        let s = split_url("postgres://u:%ff@h/db").unwrap();
        assert_eq!(s.password, Some(vec![0xff]));
    }

    #[test]
    fn two_readings_are_refused_without_quoting_the_url() {
        for url in [
            // Password `Pa@ss/w0rd`, or host `ss` and database `w0rd@h`.
            "postgres://u:Pa@ss/w0rd@h",
            // An `@` in a parameter value after a password in the URL.
            "postgres://u:pw@h/db?application_name=me@box",
            // Host `h` and a parameter holding `@`, or user `h` with password `5432/db?x=a`.
            "postgres://h:5432/db?x=a@b",
            // Password `1234/x` on host `h`, or host `u`, port 1234 and database `x@h`.
            "postgres://u:1234/x@h",
        ] {
            let err = split_url(url).unwrap_err();
            assert_eq!(err, UserinfoError::Ambiguous, "{url}");
            for part in ["Pa@ss", "w0rd", "pw", "me@box", "1234/x"] {
                assert!(!err.to_string().contains(part), "{err}");
            }
        }
        assert_eq!(split_url("postgres://u:pw@h o s t/db").unwrap_err(), UserinfoError::NoHost);
        assert_eq!(split_url("postgres://u:p@w@h#x/db").unwrap_err(), UserinfoError::NoHost);
    }

    #[test]
    fn user_names_are_percent_encoded_for_urls() {
        assert_eq!(percent_encode("app@srv:x/y z"), "app%40srv%3Ax%2Fy%20z");
        assert_eq!(percent_encode("plain_user-1.x~"), "plain_user-1.x~");
    }

    #[test]
    fn secret_parameters_are_dropped() {
        assert_eq!(
            public_params("sslmode=require&password=x&sslrootcert=/a@b&PassWord=y&"),
            "sslmode=require&sslrootcert=/a@b"
        );
        assert_eq!(public_params("password=x"), "");
    }

    #[test]
    fn pgpass_lines_match_like_libpq() {
        let file = "# comment\n\
                    other:5432:*:u:nope\n\
                    db1:5432:shop:u:first\n\
                    *:*:shop:u:second\n\
                    localhost:*:*:*:sock\\:et\\\\pw\n\
                    h\\:x:*:*:*:escaped-host\n\
                    *:*:*:\\*:literal-star\n";
        assert_eq!(pgpass_match(file, "db1", 5432, "shop", "u").as_deref(), Some("first"));
        assert_eq!(pgpass_match(file, "db1", 5433, "shop", "u").as_deref(), Some("second"));
        assert_eq!(pgpass_match(file, "/var/run/postgresql", 5432, "x", "v").as_deref(), Some("sock:et\\pw"));
        assert_eq!(pgpass_match(file, "", 5432, "x", "v").as_deref(), Some("sock:et\\pw"));
        assert_eq!(pgpass_match(file, "h:x", 1, "x", "v").as_deref(), Some("escaped-host"));
        assert_eq!(pgpass_match(file, "db9", 1, "x", "*").as_deref(), Some("literal-star"));
        assert_eq!(pgpass_match(file, "db9", 1, "x", "v"), None);
        assert_eq!(pgpass_match("h:1:d:u\n", "h", 1, "d", "u"), None, "a line without a password field");
        assert_eq!(pgpass_match("h:1:d:u:pw\r\n", "h", 1, "d", "u").as_deref(), Some("pw"));
    }

    #[test]
    fn option_files_give_the_client_group_s_password() {
        let file = "[mysqld]\npassword=server-side\n\n[client]\nuser=app\npassword = \"a#b c\\\"d\" # trailing\n\
                    [mysql]\npassword=mysql-only\n";
        assert_eq!(option_file_password(file).as_deref(), Some("a#b c\"d"));
        assert_eq!(option_file_password("[client]\npassword=x # y\npass-word=no\n").as_deref(), Some("x"));
        assert_eq!(option_file_password("[Client]\npassword='it''s'\n").as_deref(), Some("it''s"));
        assert_eq!(option_file_password("[client]\npassword=a\\sb\\\\c\\q\n").as_deref(), Some("a b\\c\\q"));
        assert_eq!(option_file_password("[client]\n; password=no\n# password=no\npassword\n"), None);
        assert_eq!(option_file_password("[client]\npassword=first\npassword=last\n").as_deref(), Some("last"));
        assert_eq!(option_file_password("[client]\npassword=\n").as_deref(), Some(""));
        assert_eq!(option_file_password("password=outside\n[mysqld]\npassword=x\n"), None);
    }

    #[cfg(unix)]
    #[test]
    fn password_files_open_to_others_are_ignored() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("rangecopy-cred-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pgpass");
        std::fs::write(&file, "*:*:*:*:pw\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(read_private_file(&file, PrivateFile::PgPass), None);
        assert!(read_private_file(&file, PrivateFile::MyOptions).is_some(), "mysql minds writers only");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(read_private_file(&file, PrivateFile::PgPass).is_some());
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o646)).unwrap();
        assert_eq!(read_private_file(&file, PrivateFile::MyOptions), None);
        assert_eq!(read_private_file(&dir, PrivateFile::PgPass), None, "a directory");
        assert_eq!(read_private_file(&dir.join("missing"), PrivateFile::PgPass), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
