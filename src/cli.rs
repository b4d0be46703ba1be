//! Command-line arguments exactly as the user typed them (clap definitions only).
//!
//! Nothing here is validated beyond what clap parses; `config` turns these into checked
//! configuration. No other module may depend on clap types.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "rangecopy",
    version,
    about = "Parallel, resumable, checksummed bulk copy into PostgreSQL",
    long_about = "Copies tables from PostgreSQL (and, later, MySQL/MariaDB) into PostgreSQL in \
                  key-range chunks with binary COPY. Each chunk commits with its state row, so a \
                  killed copy resumes with --resume without losing or duplicating a row; each \
                  chunk's blake3 digest is recorded in the target's `rangecopy` schema."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Copy tables from the source into the target.
    Copy(CopyArgs),
    /// Show the progress and state of copy jobs recorded in the target.
    Status(StatusArgs),
}

#[derive(Debug, Args)]
pub struct CopyArgs {
    /// Source database URL: postgres://user[:password]@host[:port]/db[?sslmode=…]
    /// (the password may also come from PGPASSWORD).
    #[arg(long, value_name = "URL")]
    pub source: String,

    /// Target PostgreSQL URL (the password may also come from PGPASSWORD).
    #[arg(long, value_name = "URL")]
    pub target: String,

    /// Tables to copy, as `name` or `schema.name` (double-quote parts that contain dots or
    /// quotes, as in SQL). None means every base table of every non-system schema.
    #[arg(value_name = "TABLE")]
    pub tables: Vec<String>,

    /// Name of the job in the target's state; needed to resume. Default: the source database name.
    #[arg(long, value_name = "NAME")]
    pub job: Option<String>,

    /// Number of parallel workers (each holds one source and one target connection).
    /// Default: the number of CPU cores.
    #[arg(long, value_name = "N")]
    pub workers: Option<i64>,

    /// Rows per chunk: the unit of work, of resume and of checksums [default: 100000].
    /// A resumed job keeps the chunk size it was started with.
    #[arg(long, value_name = "N")]
    pub chunk_rows: Option<i64>,

    /// Continue an unfinished job from its committed chunks.
    #[arg(long, conflicts_with = "restart")]
    pub resume: bool,

    /// Throw away an existing job's progress and the rows it loaded, and start it over.
    #[arg(long)]
    pub restart: bool,

    /// Write a JSON report of the run to FILE.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,

    /// Progress display: bars on a terminal, periodic lines otherwise (auto), or none.
    #[arg(long, value_name = "MODE", default_value = "auto", value_parser = ["auto", "bars", "lines", "none"])]
    pub progress: String,

    /// Seconds between progress lines when not drawing bars.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    pub progress_interval: f64,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Target PostgreSQL URL holding the `rangecopy` state schema.
    #[arg(long, value_name = "URL")]
    pub target: String,

    /// Show only this job (default: every job).
    #[arg(long, value_name = "NAME")]
    pub job: Option<String>,
}
