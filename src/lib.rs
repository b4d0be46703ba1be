//! rangecopy: parallel, resumable, checksummed bulk copy into PostgreSQL.
//!
//! The binary (`main.rs`) is a thin shell over this library; the library is also what the
//! benchmarks in `benches/` measure. See DESIGN.md for how the stages fit together.

pub mod blake3_lanes;
pub mod canonical;
pub mod cli;
pub mod config;
pub mod copy;
pub mod copy_format;
pub mod credentials;
pub mod error;
pub mod listen;
pub mod live;
pub mod log;
pub mod objects;
pub mod pg;
pub mod pipeline;
pub mod plan;
pub mod progress;
pub mod report;
pub mod schema;
pub mod schema_phases;
pub mod source;
pub mod state;
pub mod target;
pub mod throttle;
pub mod tls;
pub mod verify;
pub mod wait;
pub mod watch;
pub mod worker;
