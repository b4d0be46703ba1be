//! rangecopy's integration tests: the real binary against the dev PostgreSQL servers
//! (`scripts/dev-db.sh start`; `eval "$(scripts/dev-db.sh env)"`).
//!
//! Every test works in its own freshly created source and target databases, so the tests run
//! in parallel; each compares what arrived with what left through PostgreSQL itself, never
//! through rangecopy's code.

mod common;

mod backfill;
mod cdc;
mod cli;
mod digest;
mod durability;
mod faults;
mod fidelity;
mod hangs;
mod keys;
mod live;
mod mysql;
mod mysql_objects;
mod names;
mod packaging;
mod proxy;
mod refusals;
mod report;
mod restart;
mod resume;
mod schema_objects;
mod secrets;
mod throttle;
mod tls;
mod verify;
mod verify_live;
mod verify_rules;
mod whole_db;
mod workers;
