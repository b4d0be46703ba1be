//! Creating the objects around the rows on the target, in the two phases of a copy: before
//! the load (inside the job's set-up transaction, so a failure there writes nothing), and once
//! every table is loaded and has its own indexes (each object in its own transaction with its
//! recorded status, so a resumed run goes on from the first object not created).
//!
//! Foreign keys arrive `NOT VALID` and are validated once every object exists: the load never
//! checks them row by row, and a validation that fails leaves the data and the constraint in
//! place, named in the report. An object that cannot be created is recorded as failed with
//! the server's reason and the copy goes on; only a table that cannot be created stops it.

use std::sync::atomic::AtomicBool;

use crate::config::PgEndpoint;
use crate::error::{Error, ErrorCode, Result};
use crate::objects::{DbObject, Phase};
use crate::pg::PgConn;
use crate::schema::{quote_literal, SequenceSync};
use crate::source::Source;
use crate::state::{self, ObjectRecord, StepFence};
use crate::target::postgres::PgTarget;

/// The session every object is created in (pg_restore's preamble, for this transaction only):
/// names in the SQL are fully qualified, function bodies are checked when they run, and
/// nothing waits on a timeout.
const SESSION: &str = "SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = 0; \
     SET LOCAL idle_in_transaction_session_timeout = 0; SET LOCAL check_function_bodies = false; \
     SET LOCAL xmloption = content; SET LOCAL client_min_messages = warning; SET LOCAL row_security = off; \
     SELECT pg_catalog.set_config('search_path', '', true)";

/// Bytes of a large object read and written at a time.
const LARGE_OBJECT_PART: i32 = 1 << 20;

/// Creates the objects of the phase before the load, inside the caller's set-up transaction,
/// each under a savepoint, and returns every object with its status: `done`, `failed` (with
/// the reason), `pending` (created after the load) or `listed` (not carried over).
///
/// An object that exists already (a schema made by hand, a type from an earlier job) counts as
/// created. A table that cannot be created is an error: the whole set-up rolls back.
pub fn run_before(conn: &mut PgConn, objects: Vec<DbObject>) -> Result<Vec<ObjectRecord>> {
    conn.batch(SESSION, "preparing to create the schema's objects")?;
    let mut records = Vec::with_capacity(objects.len());
    for (object_no, object) in objects.into_iter().enumerate() {
        let (status, detail) = match object.phase {
            _ if !object.runs() => ("listed", None),
            Phase::After => ("pending", None),
            Phase::Before => match create_before(conn, &object)? {
                Created::Now => ("done", None),
                Created::Before => ("done", Some("it was on the target already".to_string())),
                Created::Not(why) => ("failed", Some(why)),
            },
        };
        records.push(ObjectRecord { object_no, object, status: status.into(), detail });
    }
    Ok(records)
}

/// Whether an object exists on the target.
enum Created {
    Now,
    /// It was there already (a schema made by hand, a type from an earlier job).
    Before,
    /// It could not be created, for this reason.
    Not(String),
}

/// Creates one object under a savepoint.
fn create_before(conn: &mut PgConn, object: &DbObject) -> Result<Created> {
    let what = format!("creating {} {} on the target", object.kind, object.name);
    conn.batch("SAVEPOINT rangecopy_object", &what)?;
    match conn.batch(&object.sql, &what) {
        Ok(()) => {
            conn.batch("RELEASE SAVEPOINT rangecopy_object", &what)?;
            Ok(Created::Now)
        }
        Err(e) if is_transient(&e) => Err(e),
        Err(e) => {
            conn.batch("ROLLBACK TO SAVEPOINT rangecopy_object", &what)?;
            if already_exists(&e) {
                return Ok(Created::Before);
            }
            if object.kind == "TABLE" {
                return Err(Error::input(format!(
                    "table {} cannot be created on the target: {}",
                    object.name,
                    server_reason(&e)
                )));
            }
            Ok(Created::Not(server_reason(&e)))
        }
    }
}

/// Creates the objects of the phase after the load that are not created yet, then validates
/// the foreign keys added `NOT VALID`. Returns the objects that failed, for the summary.
///
/// `fence` is the claim of the job's last step when many processes share the job: each
/// object's transaction checks it before its commit, so a process whose claim was taken over
/// creates nothing more (`Error::Fenced`).
pub fn run_after(
    job: &str,
    source: &mut Source,
    target: &mut PgTarget,
    ep: &PgEndpoint,
    workers: usize,
    fence: Option<&StepFence>,
) -> Result<Vec<ObjectRecord>> {
    let records = state::load_objects(&mut target.conn, job)?;
    let pending: Vec<&ObjectRecord> = records.iter().filter(|r| r.status == "pending").collect();
    let unvalidated = records.iter().filter(|r| r.status == "created").count();
    if pending.is_empty() && unvalidated == 0 {
        return Ok(records.into_iter().filter(|r| r.status == "failed").collect());
    }
    crate::say!(
        "job {job}: creating {} objects that span tables (foreign keys, triggers, policies, sequence positions …)",
        pending.len()
    );
    // Statistics of partitioned parents are gathered alongside the validations (below).
    for record in pending.into_iter().filter(|r| r.object.kind != "STATISTICS") {
        if crate::wait::interrupted() {
            return Err(Error::Interrupted);
        }
        let outcome = match record.object.kind.as_str() {
            "SEQUENCE SET" => set_sequence(job, record, source, target, fence),
            "LARGE OBJECTS" => copy_large_objects(job, record, source, target, fence),
            _ => create_after(job, record, &mut target.conn, fence),
        };
        fail_softly(job, record, &record.object.sql, outcome, &mut target.conn, fence)?;
    }
    let last: Vec<ObjectRecord> = state::load_objects(&mut target.conn, job)?
        .into_iter()
        .filter(|r| r.status == "created" || (r.status == "pending" && r.object.kind == "STATISTICS"))
        .collect();
    finish_in_parallel(job, last, ep, workers, fence)?;
    Ok(state::load_objects(&mut target.conn, job)?.into_iter().filter(|r| r.status == "failed").collect())
}

/// Validates the foreign keys added `NOT VALID` and analyzes partitioned parents, on
/// `workers` connections at once: each table's validations in one go on one connection (two
/// validations of one table would wait for each other's lock; validations of different tables
/// do not block each other).
fn finish_in_parallel(
    job: &str,
    records: Vec<ObjectRecord>,
    ep: &PgEndpoint,
    workers: usize,
    fence: Option<&StepFence>,
) -> Result<()> {
    let mut by_table: Vec<(String, Vec<ObjectRecord>)> = Vec::new();
    for record in records {
        let sql = record.object.validate.as_deref().unwrap_or(&record.object.sql);
        let table = sql.split(" VALIDATE CONSTRAINT ").next().unwrap_or(sql).to_string();
        match by_table.iter_mut().find(|(t, _)| *t == table) {
            Some((_, group)) => group.push(record),
            None => by_table.push((table, vec![record])),
        }
    }
    if by_table.is_empty() {
        return Ok(());
    }
    let cancel = AtomicBool::new(false);
    let groups: Vec<Vec<ObjectRecord>> = by_table.into_iter().map(|(_, g)| g).collect();
    let outcomes = crate::pipeline::parallel_map(
        workers.min(groups.len()),
        groups,
        &cancel,
        || PgTarget::connect(ep),
        |target: &mut PgTarget, group: Vec<ObjectRecord>| -> Result<()> {
            for record in &group {
                if crate::wait::interrupted() {
                    return Err(Error::Interrupted);
                }
                let Some(validate) = record.object.validate.as_deref().filter(|_| record.status == "created") else {
                    let outcome = create_after(job, record, &mut target.conn, fence);
                    fail_softly(job, record, &record.object.sql, outcome, &mut target.conn, fence)?;
                    continue;
                };
                let what = format!("validating {} {}", record.object.kind, record.object.name);
                let outcome = target.conn.transaction(&what, |conn| {
                    conn.batch(SESSION, &what)?;
                    conn.patiently(|conn| conn.batch(validate, &what))?;
                    record_status(conn, job, record.object_no, "done", None, fence)
                });
                fail_softly(job, record, validate, outcome, &mut target.conn, fence)?;
            }
            Ok(())
        },
    )?;
    outcomes.into_iter().collect()
}

/// Creates one object in its own transaction with its status: `created` when a validation
/// follows, else `done`.
fn create_after(job: &str, record: &ObjectRecord, conn: &mut PgConn, fence: Option<&StepFence>) -> Result<()> {
    let object = &record.object;
    let what = format!("creating {} {} on the target", object.kind, object.name);
    let status = if object.validate.is_some() { "created" } else { "done" };
    conn.transaction(&what, |conn| {
        conn.batch(SESSION, &what)?;
        // Building an index or refreshing a materialized view sends nothing for long.
        conn.patiently(|conn| conn.batch(&object.sql, &what))?;
        record_status(conn, job, record.object_no, status, None, fence)
    })
}

/// Records an object's status, inside the caller's transaction, if this process still holds
/// the job's last step.
fn record_status(
    conn: &mut PgConn,
    job: &str,
    object_no: usize,
    status: &str,
    detail: Option<&str>,
    fence: Option<&StepFence>,
) -> Result<()> {
    state::set_object_status(conn, job, object_no, status, detail)?;
    match fence {
        Some(fence) => fence.check(conn),
        None => Ok(()),
    }
}

/// A failure that a resumed run can get past stops the run; any other is recorded against the
/// object (which stays as it is: a foreign key not validated keeps its rows) and the run goes on.
fn fail_softly(
    job: &str,
    record: &ObjectRecord,
    sql: &str,
    outcome: Result<()>,
    conn: &mut PgConn,
    fence: Option<&StepFence>,
) -> Result<()> {
    let Err(e) = outcome else { return Ok(()) };
    if is_transient(&e) || matches!(e, Error::Interrupted | Error::Fenced(_)) {
        return Err(e);
    }
    let reason = match record.status.as_str() {
        "created" => format!("added NOT VALID; validation failed: {}", server_reason(&e)),
        _ => server_reason(&e),
    };
    crate::say!("warning: {} {}: {reason}\n  ({sql})", record.object.kind, record.object.name);
    conn.transaction("recording an object", |conn| {
        record_status(conn, job, record.object_no, "failed", Some(&reason), fence)
    })
}

/// Moves a target sequence to where the source's is now.
fn set_sequence(
    job: &str,
    record: &ObjectRecord,
    source: &mut Source,
    target: &mut PgTarget,
    fence: Option<&StepFence>,
) -> Result<()> {
    let name = &record.object.sql;
    let seq =
        SequenceSync { source_sql: format!("{}::regclass", quote_literal(name)), target_sql: quote_literal(name) };
    let (last, called) = source.sequence_position(&seq)?;
    target.conn.transaction("carrying a sequence position over", |conn| {
        crate::target::postgres::set_sequence(conn, &seq.target_sql, last, called)?;
        record_status(conn, job, record.object_no, "done", None, fence)
    })
}

/// Copies every large object with its OID, each in one target transaction (a large object is
/// written whole or not at all; one already there is written again, to the same bytes).
fn copy_large_objects(
    job: &str,
    record: &ObjectRecord,
    source: &mut Source,
    target: &mut PgTarget,
    fence: Option<&StepFence>,
) -> Result<()> {
    let Source::Postgres(pg) = source else { return Ok(()) };
    for oid in pg.large_objects()? {
        if crate::wait::interrupted() {
            return Err(Error::Interrupted);
        }
        let what = format!("copying large object {oid}");
        target.conn.transaction(&what, |conn| {
            conn.execute(
                "SELECT lo_create($1) WHERE NOT EXISTS (SELECT 1 FROM pg_largeobject_metadata WHERE oid = $1)",
                &[&oid],
                &what,
            )?;
            let mut offset = 0i64;
            loop {
                let part = pg.large_object_part(oid, offset, LARGE_OBJECT_PART)?;
                if part.is_empty() {
                    break;
                }
                conn.execute("SELECT lo_put($1, $2, $3)", &[&oid, &offset, &part], &what)?;
                offset += part.len() as i64;
            }
            Ok(())
        })?;
    }
    target
        .conn
        .transaction("recording an object", |conn| record_status(conn, job, record.object_no, "done", None, fence))
}

fn is_transient(e: &Error) -> bool {
    matches!(e.root(), Error::Sql { code, .. } if code.is_transient())
}

/// duplicate_table, duplicate_object, duplicate_schema, duplicate_function.
fn already_exists(e: &Error) -> bool {
    matches!(e.root(), Error::Sql { code: ErrorCode::Sqlstate(s), .. }
        if matches!(s.as_str(), "42P07" | "42710" | "42P06" | "42723"))
}

/// The server's words for a failure, without the statement that caused it.
fn server_reason(e: &Error) -> String {
    match e.root() {
        Error::Sql { detail, .. } => detail.clone(),
        other => other.to_string(),
    }
}

/// Finds, before anything is written, everything the target lacks for the objects to be
/// created (extensions, collations) and reports all of it in one message.
///
/// Roles are not a reason to stop: objects whose source owner is not on the target (or is one
/// the target user may not give objects to) stay with the target user, and grants to roles the
/// target does not have are left out; each such object says so in the report, and one warning
/// names the roles.
pub fn prepare(conn: &mut PgConn, objects: &mut [DbObject]) -> Result<()> {
    let what = "checking what the target needs for the source's objects";
    let extensions: Vec<String> =
        objects.iter().filter(|o| o.runs() && o.kind == "EXTENSION").map(|o| o.name.clone()).collect();
    let mut roles = Vec::new();
    let mut collations = Vec::new();
    for o in objects.iter() {
        for line in o.sql.lines() {
            roles.extend(line_roles(line));
            let mut rest = line;
            while let Some((_, after)) = rest.split_once("COLLATE pg_catalog.") {
                collations.push(role_name(after));
                rest = after;
            }
        }
    }
    for list in [&mut roles, &mut collations] {
        list.sort();
        list.dedup();
    }
    let mut problems = Vec::new();
    let rows = conn.query(
        "SELECT e, a.name IS NULL,
                NOT EXISTS (SELECT 1 FROM pg_extension x WHERE x.extname = e)
                AND NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
                AND NOT coalesce((SELECT bool_or(v.trusted) FROM pg_available_extension_versions v WHERE v.name = e), false)
           FROM unnest($1::text[]) e LEFT JOIN pg_available_extensions a ON a.name = e",
        &[&extensions],
        what,
    )?;
    for r in rows {
        let (name, missing, forbidden): (String, bool, bool) = (r.get(0), r.get(1), r.get(2));
        if missing {
            problems
                .push(format!("extension {name} is not available on the target server (install its package there)"));
        } else if forbidden {
            problems.push(format!(
                "extension {name} is not installed in the target database and the target user may not create it \
                 (a superuser can: CREATE EXTENSION {name})"
            ));
        }
    }
    let rows = conn.query(
        "SELECT c FROM unnest($1::text[]) c WHERE NOT EXISTS (
             SELECT 1 FROM pg_collation WHERE collname = c AND collnamespace = 'pg_catalog'::regnamespace)",
        &[&collations],
        what,
    )?;
    for r in rows {
        let collation: String = r.get(0);
        problems.push(format!(
            "collation {collation} is used by the source's columns but the target server does not have it (install \
             its locale there)"
        ));
    }
    if !problems.is_empty() {
        return Err(Error::input(format!(
            "the target lacks what the source's objects need:\n  {}\nnothing was written to the target",
            problems.join("\n  ")
        )));
    }
    // Roles the target user cannot hand objects to or grant to: missing ones, and (for owners)
    // ones it is not a member of. Granting to a role needs only that it exists.
    let rows = conn.query(
        "SELECT r, NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r),
                NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) OR NOT pg_has_role(current_user, r, 'MEMBER')
           FROM unnest($1::text[]) r",
        &[&roles],
        what,
    )?;
    let missing: Vec<String> = rows.iter().filter(|r| r.get::<_, bool>(1)).map(|r| r.get(0)).collect();
    let foreign: Vec<String> = rows.iter().filter(|r| r.get::<_, bool>(2)).map(|r| r.get(0)).collect();
    let mut changed = 0;
    for o in objects.iter_mut() {
        let mut dropped = Vec::new();
        let kept: Vec<&str> = o
            .sql
            .lines()
            .filter(|line| {
                let owner = line.split_once(" OWNER TO ").map(|(_, r)| role_name(r));
                let unusable = match owner {
                    Some(role) => foreign.contains(&role),
                    None => line_roles(line)
                        .iter()
                        .any(|r| missing.contains(r) || foreign.contains(r) && line.contains(" FOR ROLE ")),
                };
                if unusable {
                    dropped.push(line.trim().to_string());
                }
                !unusable
            })
            .collect();
        if dropped.is_empty() {
            continue;
        }
        o.sql = kept.join("\n");
        changed += 1;
        if o.outcome == crate::objects::Outcome::Created {
            o.outcome = crate::objects::Outcome::Changed {
                why: format!("left out, as the target lacks their roles: {}", dropped.join(" ")),
            };
        }
    }
    if changed > 0 {
        crate::say!(
            "warning: role{} {} of the source {} not on the target, or not one{} the target user may give objects \
             to: {changed} objects are created without their source owner or grants (the report lists them); create \
             the roles on the target and copy again to keep them, or pass --no-owner / --no-privileges",
            if foreign.len() == 1 { "" } else { "s" },
            foreign.join(", "),
            if foreign.len() == 1 { "is" } else { "are" },
            if foreign.len() == 1 { "" } else { "s" },
        );
    }
    Ok(())
}

/// The roles a dump line gives objects to, grants to or acts for.
fn line_roles(line: &str) -> Vec<String> {
    let mut roles = Vec::new();
    if let Some((_, r)) = line.split_once(" OWNER TO ") {
        roles.push(role_name(r));
    }
    if line.starts_with("GRANT ") {
        if let Some((_, r)) = line.rsplit_once(" TO ") {
            roles.push(role_name(r));
        }
    }
    if line.starts_with("REVOKE ") {
        if let Some((_, r)) = line.rsplit_once(" FROM ") {
            roles.push(role_name(r));
        }
    }
    if let Some((_, r)) = line.split_once(" FOR ROLE ") {
        roles.push(role_name(r));
    }
    roles.retain(|r| !matches!(r.as_str(), "" | "PUBLIC" | "CURRENT_USER" | "SESSION_USER" | "CURRENT_ROLE"));
    roles
}

/// The name at the start of `text` (`"My Role";` → `My Role`, `app_owner;` → `app_owner`).
fn role_name(text: &str) -> String {
    let text = text.trim_start();
    if let Some(quoted) = text.strip_prefix('"') {
        let mut name = String::new();
        let mut chars = quoted.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                } else {
                    break;
                }
            }
            name.push(c);
        }
        return name;
    }
    text.chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '$').collect()
}

#[cfg(test)]
mod tests {
    use super::role_name;

    #[test]
    fn role_names_are_read_quoted_or_plain() {
        assert_eq!(role_name("app_owner;"), "app_owner");
        assert_eq!(role_name(" \"My \"\"Role\"\"\";"), "My \"Role\"");
        assert_eq!(role_name("\"en_US\" NOT NULL"), "en_US");
    }
}
