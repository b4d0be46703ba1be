//! Engine-neutral description of the database objects around the rows (foreign keys, views,
//! triggers, functions, types …) and what became of each one on the target.
//!
//! Tables and their columns are described by `schema`; this module describes everything else
//! a source engine reports, in the order the target needs it, with the PostgreSQL SQL that
//! creates it, or the reason it is not carried over. The engine modules fill these values;
//! `copy` runs them (before the load, or once every table is loaded) and records each one's
//! outcome in the state, and `report` shows them. This module must never talk to a database.

use serde::{Deserialize, Serialize};

/// When an object is created on the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Before any row is loaded, in the job's set-up transaction: schemas, extensions, types,
    /// functions, sequences, the tables themselves, views.
    Before,
    /// Once every table is loaded (and has its own indexes): foreign keys, triggers, rules,
    /// policies, materialized view data, sequence positions.
    After,
}

/// What became of a source object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Outcome {
    /// Created as the source has it.
    Created,
    /// Created in PostgreSQL's terms from another engine's (`from` says what it was there).
    Translated { from: String },
    /// Created, with a difference the user should know about (`why`).
    Changed { why: String },
    /// Not carried over: `todo` says what the user should do; `source_sql` is the source's
    /// definition, for the user to port by hand.
    NotCarried { todo: String, source_sql: String },
}

/// One object the target should have, or that the report must list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbObject {
    /// What kind of object, in pg_dump's words where it has one: `FK CONSTRAINT`, `VIEW`,
    /// `TRIGGER`, `FUNCTION`, `TYPE`, `INDEX`, `SEQUENCE SET`, `MATERIALIZED VIEW DATA` …
    pub kind: String,
    /// Its name for people: `schema.table.constraint`, `schema.view` …
    pub name: String,
    pub phase: Phase,
    /// The PostgreSQL statements that create it (one or more, run as one batch); empty when
    /// the object is not carried over.
    pub sql: String,
    /// A statement run after `sql`, in its own transaction, once every object of the phase
    /// exists: `ALTER TABLE … VALIDATE CONSTRAINT …` for a foreign key added `NOT VALID`.
    /// A failure leaves the object in place (not validated) and is reported, naming it.
    pub validate: Option<String>,
    pub outcome: Outcome,
}

impl DbObject {
    /// An object created as it is.
    pub fn created(kind: &str, name: impl Into<String>, phase: Phase, sql: impl Into<String>) -> Self {
        DbObject {
            kind: kind.to_string(),
            name: name.into(),
            phase,
            sql: sql.into(),
            validate: None,
            outcome: Outcome::Created,
        }
    }

    /// An object the target will not have, listed with its source definition.
    pub fn not_carried(
        kind: &str,
        name: impl Into<String>,
        todo: impl Into<String>,
        source_sql: impl Into<String>,
    ) -> Self {
        DbObject {
            kind: kind.to_string(),
            name: name.into(),
            phase: Phase::After,
            sql: String::new(),
            validate: None,
            outcome: Outcome::NotCarried { todo: todo.into(), source_sql: source_sql.into() },
        }
    }

    /// Whether there is anything to run on the target.
    pub fn runs(&self) -> bool {
        !self.sql.is_empty()
    }
}

/// How a run treats the schema, in pg_dump's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SchemaMode {
    /// Objects and rows (the default).
    #[default]
    All,
    /// `--schema-only`: the objects, no rows.
    SchemaOnly,
    /// `--data-only`: rows into tables that exist on the target; no objects are created.
    DataOnly,
}
