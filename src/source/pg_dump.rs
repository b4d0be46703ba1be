//! The source's own `pg_dump`, as the reference for every PostgreSQL object around the rows.
//!
//! One `pg_dump --schema-only --format=custom` of the source (one snapshot) is read back twice
//! with `pg_restore --verbose --file=-`: its pre-data section (schemas, extensions, types,
//! functions, sequences, tables, views …) and its post-data section (indexes, constraints,
//! foreign keys, triggers, rules, policies, materialized view data …). The verbose listing puts
//! a header before each archive entry naming its catalog OID and type, which is how entries are
//! told apart and matched against what rangecopy builds itself (each table's own indexes).
//!
//! The password reaches the child processes in their environment (`PGPASSWORD`), never on
//! their command line. This module must never write to the source.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::config::PgEndpoint;
use crate::error::{Error, Result};
use crate::schema::TableName;
use crate::tls::PgSslMode;

/// One archive entry of the dump, with the SQL `pg_restore` writes for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The catalog the object lives in (`pg_class`, `pg_constraint` … as an OID) and its OID there.
    pub class_oid: u32,
    pub oid: u32,
    /// pg_dump's word for it: `TABLE`, `FK CONSTRAINT`, `INDEX`, `ACL`, `COMMENT` …
    pub kind: String,
    /// pg_dump's name for it (`table constraint` for constraints, `TABLE t` for an ACL …).
    pub name: String,
    /// Its schema, when it has one.
    pub schema: Option<String>,
    pub owner: String,
    pub sql: String,
}

impl Entry {
    /// `schema.name` for people.
    pub fn display_name(&self) -> String {
        match &self.schema {
            Some(s) => format!("{s}.{}", self.name),
            None => self.name.clone(),
        }
    }
}

/// The two sections of a schema dump.
#[derive(Debug, Default)]
pub struct Dump {
    pub pre: Vec<Entry>,
    pub post: Vec<Entry>,
}

/// What the dump leaves out or changes.
pub struct DumpOptions<'a> {
    /// Tables (and partitioned parents) not dumped.
    pub excluded: &'a [TableName],
    pub no_owner: bool,
    pub no_privileges: bool,
}

/// Dumps the source's schema and reads both sections back as entries.
pub fn dump(ep: &PgEndpoint, server_major: u32, opts: &DumpOptions<'_>) -> Result<Dump> {
    let pg_dump = tool("pg_dump", server_major)?;
    let pg_restore = pg_dump.with_file_name("pg_restore");
    let mut args: Vec<String> =
        ["--schema-only", "--format=custom", "--no-tablespaces", "--no-subscriptions"].map(String::from).to_vec();
    args.extend(opts.excluded.iter().map(|t| format!("--exclude-table={}", t.quoted())));
    let (conninfo, password) = libpq_conninfo(ep);
    args.push(format!("--dbname={conninfo}"));
    let env: Vec<(&str, String)> = password.map(|p| ("PGPASSWORD", p)).into_iter().collect();
    let archive = run(&pg_dump, &args, &env, None, "dumping the source's schema")?;
    let mut sections = Vec::new();
    for section in ["pre-data", "post-data"] {
        let mut args: Vec<String> = vec!["--verbose".into(), format!("--section={section}"), "--file=-".into()];
        if opts.no_owner {
            args.push("--no-owner".into());
        }
        if opts.no_privileges {
            args.push("--no-privileges".into());
        }
        let text = run(&pg_restore, &args, &[], Some(&archive), "reading the source's schema dump")?;
        sections.push(parse(&String::from_utf8_lossy(&text)));
    }
    let post = sections.pop().unwrap_or_default();
    let pre = sections.pop().unwrap_or_default();
    Ok(Dump { pre, post })
}

/// Runs a PostgreSQL client program, feeding it `input`, and returns what it wrote.
fn run(program: &Path, args: &[String], env: &[(&str, String)], input: Option<&[u8]>, what: &str) -> Result<Vec<u8>> {
    let mut cmd = Command::new(program);
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    // Only what this endpoint says: none of the caller's PG* settings.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            cmd.env_remove(&key);
        }
    }
    cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    let mut child =
        cmd.spawn().map_err(|e| Error::input(format!("{what}: could not run {}: {e}", program.display())))?;
    let writer = match (input, child.stdin.take()) {
        (Some(bytes), Some(mut stdin)) => {
            let bytes = bytes.to_vec();
            Some(std::thread::spawn(move || stdin.write_all(&bytes)))
        }
        _ => None,
    };
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut out = Vec::new();
    child
        .stdout
        .take()
        .expect("stdout is piped")
        .read_to_end(&mut out)
        .map_err(|e| Error::input(format!("{what}: reading from {}: {e}", program.display())))?;
    let status = child.wait().map_err(|e| Error::input(format!("{what}: {e}")))?;
    if let Some(w) = writer {
        let _ = w.join();
    }
    let errors = errors.join().unwrap_or_default();
    if !status.success() {
        let messages: Vec<&str> =
            errors.lines().filter(|l| !l.contains(": creating ") && !l.contains(": processing ")).collect();
        return Err(Error::input(format!(
            "{what}: {} failed ({status}): {}",
            program.display(),
            crate::error::redact(messages.join("; ").trim())
        )));
    }
    Ok(out)
}

/// The libpq connection string that reaches the endpoint as rangecopy's own connections do
/// (TLS settings, keepalive, `--io-timeout` as the TCP user timeout: pg_dump never waits on a
/// silent server for ever), and the password, which goes in the environment instead.
fn libpq_conninfo(ep: &PgEndpoint) -> (String, Option<String>) {
    use tokio_postgres::config::Host;
    let cfg = &ep.config;
    let quote = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
    let hosts: Vec<String> = cfg
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let mut parts = vec![format!("host={}", quote(&hosts.join(","))), format!("dbname={}", quote(&ep.database))];
    let ports: Vec<String> = cfg.get_ports().iter().map(|p| p.to_string()).collect();
    if !ports.is_empty() {
        parts.push(format!("port={}", quote(&ports.join(","))));
    }
    if let Some(user) = cfg.get_user() {
        parts.push(format!("user={}", quote(user)));
    }
    if let Some(options) = cfg.get_options() {
        parts.push(format!("options={}", quote(options)));
    }
    if let Some(t) = cfg.get_connect_timeout() {
        parts.push(format!("connect_timeout={}", t.as_secs().max(2)));
    }
    let mode = match ep.tls.mode {
        PgSslMode::Disable => "disable",
        PgSslMode::Prefer => "prefer",
        PgSslMode::Require => "require",
        PgSslMode::VerifyCa => "verify-ca",
        PgSslMode::VerifyFull => "verify-full",
    };
    parts.push(format!("sslmode={mode}"));
    if let Some(root) = &ep.tls.root_cert {
        parts.push(format!("sslrootcert={}", quote(&root.display().to_string())));
    }
    parts.push("application_name=rangecopy".to_string());
    parts.push("keepalives_idle=30".to_string());
    parts.push(format!("tcp_user_timeout={}", ep.io_timeout.as_millis().max(1000)));
    let password = cfg.get_password().map(|pw| String::from_utf8_lossy(pw).into_owned());
    (parts.join(" "), password)
}

/// The newest `name` (pg_dump, pg_restore) this machine has, refused when older than the
/// source server: an older pg_dump cannot read a newer server's catalog.
fn tool(name: &str, server_major: u32) -> Result<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = Vec::new();
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(dir) = std::env::var_os("RANGECOPY_PG_BIN") {
        candidates.push(Path::new(&dir).join(name));
    }
    if let Ok(dirs) = std::fs::read_dir("/usr/lib/postgresql") {
        candidates.extend(dirs.flatten().map(|d| d.path().join("bin").join(name)));
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join(name)));
    }
    for path in candidates.into_iter().filter(|p| p.is_file()) {
        if let Some(major) = tool_major(&path) {
            found.push((major, path));
        }
    }
    // The first candidate of the newest version: RANGECOPY_PG_BIN wins among equals.
    let newest = found.iter().map(|(m, _)| *m).max();
    match newest {
        Some(major) if major >= server_major => {
            Ok(found.into_iter().find(|(m, _)| *m == major).map(|(_, p)| p).expect("the newest is found"))
        }
        Some(major) => Err(Error::input(format!(
            "{name} {major} cannot dump the source server (PostgreSQL {server_major}): install the PostgreSQL \
             {server_major} client programs (Debian/Ubuntu: postgresql-client-{server_major}), or point \
             RANGECOPY_PG_BIN at their directory, or copy rows only with --data-only"
        ))),
        None => Err(Error::input(format!(
            "{name} was not found (looked in RANGECOPY_PG_BIN, /usr/lib/postgresql/*/bin and PATH): rangecopy \
             creates the target's schema from the source's own pg_dump; install the PostgreSQL {server_major} \
             client programs (Debian/Ubuntu: postgresql-client-{server_major}), or copy rows only with --data-only"
        ))),
    }
}

/// `pg_dump (PostgreSQL) 15.18 (Debian …)` → 15.
fn tool_major(path: &Path) -> Option<u32> {
    let out = Command::new(path).arg("--version").stdin(Stdio::null()).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.split(") ").nth(1)?.split_whitespace().next()?;
    version.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// Splits `pg_restore --verbose` output into its entries. Each starts with a header:
///
/// ```text
/// --
/// -- TOC entry 3197 (class 2606 OID 40966)
/// -- Dependencies: 214
/// -- Name: t t_pkey; Type: CONSTRAINT; Schema: public; Owner: app
/// --
/// ```
///
/// Text before the first header is the preamble (session settings; see [`PREAMBLE`]). psql
/// meta-commands (`\restrict`) are dropped: they are not SQL.
pub fn parse(text: &str) -> Vec<Entry> {
    let lines: Vec<&str> = text.lines().collect();
    let mut entries: Vec<Entry> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let header = line == "--" && lines.get(i + 1).is_some_and(|l| l.starts_with("-- TOC entry "));
        if header {
            let (class_oid, oid) = toc_ids(lines[i + 1]);
            let mut j = i + 2;
            let mut described = None;
            while j < lines.len() && lines[j] != "--" {
                if let Some(rest) = lines[j].strip_prefix("-- Name: ") {
                    described = Some(name_line(rest));
                }
                j += 1;
            }
            let (name, kind, schema, owner) = described.unwrap_or_default();
            entries.push(Entry { class_oid, oid, kind, name, schema, owner, sql: String::new() });
            i = j + 1;
            continue;
        }
        if let Some(entry) = entries.last_mut() {
            if !line.starts_with('\\') {
                entry.sql.push_str(line);
                entry.sql.push('\n');
            }
        }
        i += 1;
    }
    for e in &mut entries {
        e.sql = strip_comments(&e.sql);
    }
    entries
}

/// `-- TOC entry 3197 (class 2606 OID 40966)` → (2606, 40966).
fn toc_ids(line: &str) -> (u32, u32) {
    let inner = line.split_once("(class ").map(|(_, r)| r.trim_end_matches(')')).unwrap_or("");
    let mut parts = inner.split(" OID ");
    let class = parts.next().and_then(|p| p.trim().parse().ok()).unwrap_or(0);
    let oid = parts.next().and_then(|p| p.trim().parse().ok()).unwrap_or(0);
    (class, oid)
}

/// `t t_pkey; Type: CONSTRAINT; Schema: public; Owner: app` (split from the right: a name may
/// hold anything).
fn name_line(rest: &str) -> (String, String, Option<String>, String) {
    let (rest, owner) = rest.rsplit_once("; Owner: ").unwrap_or((rest, ""));
    let (rest, schema) = rest.rsplit_once("; Schema: ").unwrap_or((rest, "-"));
    let (name, kind) = rest.rsplit_once("; Type: ").unwrap_or((rest, ""));
    let schema = (schema != "-").then(|| schema.to_string());
    (name.to_string(), kind.to_string(), schema, owner.to_string())
}

/// The entry's SQL without the comment lines and blank lines around it (pg_restore's
/// trailers, `-- Completed on …`); comments inside function bodies are kept.
fn strip_comments(sql: &str) -> String {
    let lines: Vec<&str> = sql.lines().collect();
    let is_noise = |l: &str| l.trim().is_empty() || l.starts_with("--");
    let start = lines.iter().position(|l| !is_noise(l)).unwrap_or(lines.len());
    let end = lines.iter().rposition(|l| !is_noise(l)).map_or(start, |e| e + 1);
    lines[start..end].join("\n")
}

/// `ALTER TABLE … ADD CONSTRAINT … FOREIGN KEY …;` with `NOT VALID` added, so that adding it
/// reads no row; `None` when it already is (or cannot be made) `NOT VALID`.
pub fn not_valid(sql: &str) -> Option<String> {
    let body = sql.trim_end().strip_suffix(';')?;
    if body.ends_with("NOT VALID") {
        return None;
    }
    Some(format!("{body} NOT VALID;"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTING: &str = "--
-- PostgreSQL database dump
--

\\restrict abc

SET statement_timeout = 0;

--
-- TOC entry 3197 (class 2606 OID 40966)
-- Dependencies: 214
-- Name: zz_t zz_t_pkey; Type: CONSTRAINT; Schema: public; Owner: rangecopy
-- Data Pos: 0
--

ALTER TABLE ONLY public.zz_t
    ADD CONSTRAINT zz_t_pkey PRIMARY KEY (id);


--
-- TOC entry 3198 (class 2606 OID 40970)
-- Name: a b; Type: FK CONSTRAINT; Schema: My; Schema; Owner: app
--

ALTER TABLE ONLY \"My; Schema\".a
    ADD CONSTRAINT b FOREIGN KEY (x) REFERENCES public.zz_t(id);


--
-- PostgreSQL database dump complete
--

\\unrestrict abc
";

    #[test]
    fn entries_are_split_at_their_headers() {
        let entries = parse(LISTING);
        assert_eq!(entries.len(), 2);
        assert_eq!((entries[0].class_oid, entries[0].oid), (2606, 40966));
        assert_eq!(entries[0].kind, "CONSTRAINT");
        assert_eq!(entries[0].name, "zz_t zz_t_pkey");
        assert_eq!(entries[0].schema.as_deref(), Some("public"));
        assert_eq!(entries[0].sql, "ALTER TABLE ONLY public.zz_t\n    ADD CONSTRAINT zz_t_pkey PRIMARY KEY (id);");
        assert_eq!(entries[1].kind, "FK CONSTRAINT");
        assert_eq!(entries[1].schema.as_deref(), Some("My; Schema"));
        assert!(entries[1].sql.ends_with("REFERENCES public.zz_t(id);"), "{}", entries[1].sql);
    }

    #[test]
    fn foreign_keys_are_added_not_valid_once() {
        let sql = "ALTER TABLE ONLY a\n    ADD CONSTRAINT b FOREIGN KEY (x) REFERENCES c(id) DEFERRABLE;";
        let nv = not_valid(sql).unwrap();
        assert!(nv.ends_with("DEFERRABLE NOT VALID;"), "{nv}");
        assert_eq!(not_valid(&nv), None);
    }
}
