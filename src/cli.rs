//! Command-line arguments exactly as the user typed them (clap definitions only).
//!
//! Nothing here is validated beyond what clap parses; `config` turns these into checked
//! configuration. No other module may depend on clap types.

use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::credentials::{SOURCE_ENV, TARGET_ENV};

#[derive(Debug, Parser)]
#[command(
    name = "rangecopy",
    version,
    about = "Parallel, resumable, checksummed bulk copy into PostgreSQL",
    long_about = "Copies tables from PostgreSQL or MySQL/MariaDB into PostgreSQL in \
                  key-range chunks with binary COPY. Each chunk commits with its state row, so a \
                  killed copy resumes with --resume without losing or duplicating a row; each \
                  chunk's blake3 digest is recorded in the target's `rangecopy` schema.\n\n\
                  To keep passwords out of the process list, give the URLs in RANGECOPY_SOURCE and \
                  RANGECOPY_TARGET, or leave the password out of the URL: PostgreSQL takes it from \
                  PGPASSWORD, else ~/.pgpass (PGPASSFILE); MySQL/MariaDB from MYSQL_PWD, else the \
                  [client] group of $MYSQL_HOME/my.cnf and ~/.my.cnf."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Parses the process's arguments (exiting on bad ones, as clap does), noting which URLs
    /// came from the environment: the resume hint must not print those.
    pub fn parse_args() -> Self {
        let matches = Cli::command().get_matches();
        let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        if let (Command::Copy(args), Some(("copy", sub))) = (&mut cli.command, matches.subcommand()) {
            let from_env = |id: &str| sub.value_source(id) == Some(ValueSource::EnvVariable);
            args.source_from_env = from_env("source");
            args.target_from_env = from_env("target");
        }
        cli
    }
}

// Parsed once per run; boxing the larger variants would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Copy tables from the source into the target.
    Copy(CopyArgs),
    /// Show the progress and state of copy jobs recorded in the target.
    Status(StatusArgs),
    /// Compare source and target range by range with canonical checksums, and list the rows
    /// that differ. Exit code 0: identical; 1: differences found; 2: could not verify.
    Verify(VerifyArgs),
    /// Join a job that `rangecopy copy` started (on this machine or any other) and work on it
    /// until it is done: claim chunks from the job's state in the target, copy them, build the
    /// indexes of tables once loaded. Exit code 0 once the job is done, 1 if it failed, 2 on bad
    /// input (another source than the job's, a --consistent job, no such job within --wait).
    Worker(WorkerArgs),
    /// Change the rate of a running (or resumable) job (a rate of 0 removes that limit), or pause
    /// and unpause it, through the job's state in the target; a running job follows within two
    /// seconds.
    Throttle(ThrottleCommandArgs),
}

/// How fast a run may read the source (copy and verify).
#[derive(Debug, Default, Args)]
pub struct RateArgs {
    /// Read at most this many rows per second, all workers together (K/M/G suffixes: 20k, 1.5M).
    #[arg(long, value_name = "RATE")]
    pub max_rows_per_sec: Option<String>,

    /// Read at most this many bytes per second, all workers together (K/M/G suffixes: 50M).
    #[arg(long, value_name = "RATE")]
    pub max_bytes_per_sec: Option<String>,
}

/// A live view of a running job, and how it logs (copy and verify).
#[derive(Debug, Args)]
pub struct LiveArgs {
    /// Serve the job's live view over HTTP at ADDR: `/metrics` (Prometheus), `/` (a status page),
    /// `/api/status` (JSON).
    ///
    /// A bare port (9187) listens on loopback only; HOST:PORT as given (0.0.0.0:9187 for every
    /// interface); port 0 takes any free port. The address is printed on stderr at start.
    #[arg(help_heading = "Reports and progress", long, value_name = "ADDR")]
    pub listen: Option<String>,

    /// With --listen: accept `POST /api/pause`, `/api/resume` and `/api/rate`, which change the
    /// job's throttle as `rangecopy throttle` does. Anyone who reaches the address can then use them.
    #[arg(help_heading = "Reports and progress", long, requires = "listen")]
    pub control: bool,

    /// What goes to stderr: progress lines and messages (text), or one JSON object per event and
    /// message, for log shippers (json).
    #[arg(help_heading = "Reports and progress", long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

/// When a copy pauses to spare a loaded source.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Pause while replication lag exceeds SECONDS: of the replicas named with --lag-replica,
    /// or of the source itself when it is a replica.
    #[arg(long, value_name = "SECONDS")]
    pub max_lag: Option<f64>,

    /// A replica whose lag --max-lag watches (repeatable; same URL forms as --source).
    #[arg(long, value_name = "URL")]
    pub lag_replica: Vec<String>,

    /// A query run on the source every second; the run pauses while its number exceeds
    /// --throttle-above (e.g. SHOW GLOBAL STATUS LIKE 'Threads_running').
    #[arg(long, value_name = "SQL", requires = "throttle_above")]
    pub throttle_query: Option<String>,

    /// The limit for --throttle-query.
    #[arg(long, value_name = "N", requires = "throttle_query", allow_negative_numbers = true)]
    pub throttle_above: Option<f64>,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("change").required(true).multiple(true)
    .args(["max_rows_per_sec", "max_bytes_per_sec", "pause", "unpause"])))]
pub struct ThrottleCommandArgs {
    /// Target PostgreSQL URL holding the job's state.
    #[arg(long, value_name = "URL", env = TARGET_ENV, hide_env_values = true)]
    pub target: String,

    /// The job to change.
    #[arg(long, value_name = "NAME")]
    pub job: String,

    /// New limits (0 removes one).
    #[command(flatten)]
    pub rates: RateArgs,

    /// Hold the job: workers finish the block they are sending and wait.
    #[arg(long, conflicts_with = "unpause")]
    pub pause: bool,

    /// Let a paused job go on.
    #[arg(long)]
    pub unpause: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Source database URL (as for `copy`).
    #[arg(long, value_name = "URL", env = SOURCE_ENV, hide_env_values = true)]
    pub source: String,

    /// Target PostgreSQL URL.
    #[arg(long, value_name = "URL", env = TARGET_ENV, hide_env_values = true)]
    pub target: String,

    /// Tables to verify, as `name` or `schema.name` (source names).
    ///
    /// None means every table of the job (with --job) or every base table of the source.
    #[arg(value_name = "TABLE")]
    pub tables: Vec<String>,

    /// Verify the tables of this copy job, range by range along its chunks.
    #[arg(long, value_name = "NAME")]
    pub job: Option<String>,

    /// Parallel workers, each reading one range from both sides at once [default: the number of
    /// CPU cores].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub workers: Option<i64>,

    /// Rows per range when planning ranges (without --job) [default: 100000].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub chunk_rows: Option<i64>,

    /// Write a report: FILE.json (machine-readable) or FILE.html (for people); give --report twice
    /// for both.
    #[arg(long, value_name = "FILE")]
    pub report: Vec<PathBuf>,

    /// Show differing rows by key and column only, never their values.
    #[arg(long)]
    pub redact_values: bool,

    /// Differing rows listed in full per run (all are counted).
    #[arg(long, value_name = "N", default_value_t = 1000, allow_negative_numbers = true)]
    pub max_diff_rows: i64,

    /// Seconds a connection may wait for a silent server before the work is retried on a fresh one.
    ///
    /// Silent: no answer to a statement, no next COPY message, no room to write COPY data. Also the
    /// TCP_USER_TIMEOUT of every connection. Statements that legitimately run long without a word
    /// (index builds, key walks) are not cut: every SECONDS a fresh connection checks that the
    /// server is still running them.
    #[arg(long, value_name = "SECONDS", default_value_t = 300.0)]
    pub io_timeout: f64,

    #[command(flatten)]
    pub rates: RateArgs,

    #[command(flatten)]
    pub live: LiveVerifyArgs,

    #[command(flatten)]
    pub view: LiveArgs,

    // Without --job, the mapping options the copy was made with, so that verify compares what
    // the copy holds; with --job, the job's recorded rules are used.
    #[command(flatten)]
    pub mapping: MappingArgs,
}

/// Verifying a source that keeps changing (replication or CDC keeps the target in step).
#[derive(Debug, clap::Args)]
pub struct LiveVerifyArgs {
    /// Read rows that differ again on both sides, up to N times, --recheck-delay apart: a row
    /// that converges is counted as in flight (replication lag), not as a difference.
    #[arg(
        help_heading = "Verifying while the source changes",
        long,
        value_name = "N",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub recheck: i64,

    /// Seconds to wait before each recheck [default: 5].
    #[arg(help_heading = "Verifying while the source changes", long, value_name = "SECONDS")]
    pub recheck_delay: Option<f64>,

    /// A timestamp column (such as updated_at): rows whose value is more recent than --min-age
    /// on either side are left out of the comparison (and counted). Tables without it are
    /// compared whole.
    #[arg(help_heading = "Verifying while the source changes", long, value_name = "COLUMN", requires = "min_age")]
    pub since_column: Option<String>,

    /// How old a row's --since-column must be to be compared: 30s, 5m, 1h, 2d (or seconds).
    #[arg(
        help_heading = "Verifying while the source changes",
        long,
        value_name = "DURATION",
        requires = "since_column"
    )]
    pub min_age: Option<String>,

    /// Verify again and again, INTERVAL (30s, 5m, 1h or seconds) after each pass ends, keeping a
    /// history of passes in the target's rangecopy schema, until interrupted.
    #[arg(help_heading = "Verifying while the source changes", long, value_name = "INTERVAL")]
    pub watch: Option<String>,

    /// With --watch: stop after N passes.
    #[arg(
        help_heading = "Verifying while the source changes",
        long,
        value_name = "N",
        requires = "watch",
        allow_negative_numbers = true
    )]
    pub passes: Option<i64>,
}

#[derive(Debug, Args)]
pub struct CopyArgs {
    /// Source database URL: postgres://user[:password]@host[:port]/db[?sslmode=…] or
    /// mysql://user[:password]@host[:port]/db (also mariadb://).
    ///
    /// A password left out of the URL comes from PGPASSWORD, else ~/.pgpass (PGPASSFILE);
    /// MySQL/MariaDB: from MYSQL_PWD, else the [client] group of ~/.my.cnf ($MYSQL_HOME/my.cnf).
    #[arg(help_heading = "What to copy", long, value_name = "URL", env = SOURCE_ENV, hide_env_values = true)]
    pub source: String,

    /// Whether --source came from RANGECOPY_SOURCE (set by `Cli::parse_args`).
    #[arg(skip)]
    pub source_from_env: bool,

    /// Target PostgreSQL URL (a password left out of it comes from PGPASSWORD, else ~/.pgpass).
    #[arg(help_heading = "What to copy", long, value_name = "URL", env = TARGET_ENV, hide_env_values = true)]
    pub target: String,

    /// Whether --target came from RANGECOPY_TARGET (set by `Cli::parse_args`).
    #[arg(skip)]
    pub target_from_env: bool,

    /// Tables to copy, as `name` or `schema.name` (double-quote parts that contain dots or quotes, as
    /// in SQL).
    ///
    /// None means every base table of every non-system schema.
    #[arg(value_name = "TABLE")]
    pub tables: Vec<String>,

    /// Name of the job in the target's state; needed to resume [default: the source database
    /// name].
    #[arg(help_heading = "What to copy", long, value_name = "NAME")]
    pub job: Option<String>,

    /// Number of parallel workers [default: the number of CPU cores].
    ///
    /// Each holds one source and one target connection.
    #[arg(help_heading = "Speed and memory", long, value_name = "N", allow_negative_numbers = true)]
    pub workers: Option<i64>,

    /// Rows per chunk: the unit of work, of resume and of checksums [default: 100000].
    ///
    /// A resumed job keeps the chunk size it was started with.
    #[arg(help_heading = "Speed and memory", long, value_name = "N", allow_negative_numbers = true)]
    pub chunk_rows: Option<i64>,

    /// Leave out tables whose name matches PATTERN (repeatable): `name` or `schema.name`, where `*`
    /// matches any characters and `?` one (pg_dump's -T).
    ///
    /// Objects that need a left-out table (a foreign key to it, a view over it) are listed in the
    /// schema report as not carried over.
    #[arg(help_heading = "What to copy", long = "exclude-table", value_name = "PATTERN")]
    pub exclude_tables: Vec<String>,

    /// Create the schema's objects only, no rows (pg_dump's --schema-only).
    #[arg(help_heading = "What to copy", long, conflicts_with = "data_only")]
    pub schema_only: bool,

    /// Copy rows only, into tables that already exist on the target; create no objects
    /// (pg_dump's --data-only).
    #[arg(help_heading = "What to copy", long)]
    pub data_only: bool,

    /// PostgreSQL sources: do not give objects their source owners (they belong to the target user).
    #[arg(help_heading = "What to copy", long)]
    pub no_owner: bool,

    /// PostgreSQL sources: do not carry grants (GRANT/REVOKE) over.
    #[arg(help_heading = "What to copy", long)]
    pub no_privileges: bool,

    /// Load into target tables that already hold rows and take writes (backfilling history under
    /// dual writes): each chunk is staged and merged on the target table's primary key (else a
    /// unique NOT NULL key), never deleting a row. Implies --on-conflict skip unless given; a
    /// resumed or restarted job keeps the mode it was started with.
    ///
    /// Indexes stay as they are; a table without such a key is refused. Missing tables are
    /// created and loaded as usual. Tables with foreign keys or triggers load with
    /// session_replication_role = replica where the target user may (the application's
    /// triggers do not fire for backfilled rows, and tables load in any order). --restart
    /// forgets the job's state of a table that existed before the job, never empties it.
    /// Target sequences only move forward.
    #[arg(help_heading = "What to copy", long, conflicts_with = "schema_only")]
    pub into_existing: bool,

    /// With --into-existing: when a source row's key is already in the target table, keep the
    /// target's row (`skip`, the default: the application's write wins) or overwrite it with the
    /// source's (`update`).
    #[arg(help_heading = "What to copy", long, value_name = "MODE", requires = "into_existing",
          value_parser = ["skip", "update"])]
    pub on_conflict: Option<String>,

    /// Continue an unfinished job from its committed chunks.
    #[arg(help_heading = "What to copy", long, conflicts_with = "restart")]
    pub resume: bool,

    /// Throw away an existing job's progress and the rows it loaded, and start it over.
    ///
    /// With TABLEs named, only those tables of the job are copied again (from their current
    /// source definition); the rest of the job is kept. What is thrown away is listed first. A job
    /// run with --into-existing never empties a table that existed before it: only the job's
    /// record of the table goes, and its rows are merged again.
    #[arg(help_heading = "What to copy", long)]
    pub restart: bool,

    /// Write a report of the run, with what became of every schema object: FILE.html for people,
    /// any other name (FILE.json) for machines.
    #[arg(help_heading = "Reports and progress", long, value_name = "FILE")]
    pub report: Option<PathBuf>,

    /// Times a chunk, planning step or index build is retried after a transient failure.
    ///
    /// Transient: a connection lost, a server restarting, a deadlock, a serialization failure, a
    /// lock timeout, a silent server (--io-timeout).
    #[arg(
        help_heading = "Safety and throttling",
        long,
        value_name = "N",
        default_value_t = 10,
        allow_negative_numbers = true
    )]
    pub retries: i64,

    /// Longest wait between retries, in seconds (waits double from half a second up to this).
    #[arg(help_heading = "Safety and throttling", long, value_name = "SECONDS", default_value_t = 60.0)]
    pub retry_max_wait: f64,

    /// Seconds to wait for a connection before giving up on a server.
    #[arg(help_heading = "Safety and throttling", long, value_name = "SECONDS", default_value_t = 15.0)]
    pub connect_timeout: f64,

    /// Seconds a connection may wait for a silent server before the work is retried on a fresh one.
    ///
    /// Silent: no answer to a statement, no next COPY message, no room to write COPY data. Also the
    /// TCP_USER_TIMEOUT of every connection. Statements that legitimately run long without a word
    /// (index builds, key walks) are not cut: every SECONDS a fresh connection checks that the
    /// server is still running them.
    #[arg(help_heading = "Safety and throttling", long, value_name = "SECONDS", default_value_t = 300.0)]
    pub io_timeout: f64,

    /// Seconds a claim on a chunk or step lasts unless its process renews it (every third of it).
    /// A process that dies, freezes or loses the target loses its claims after this long, and
    /// another process sharing the job (`rangecopy worker`) takes them over.
    #[arg(help_heading = "Safety and throttling", long, value_name = "SECONDS", default_value_t = 30.0)]
    pub lease: f64,

    /// Once the copy is done, verify every table range by range (as `rangecopy verify --job`)
    /// and fail the job if anything differs.
    #[arg(help_heading = "Safety and throttling", long)]
    pub verify: bool,

    #[command(flatten, next_help_heading = "Safety and throttling")]
    pub rates: RateArgs,

    #[command(flatten, next_help_heading = "Safety and throttling")]
    pub load: LoadArgs,

    /// PostgreSQL sources: create the logical replication slot NAME before the copy; P0 is its
    /// consistent point, from which CDC (a subscription, Debezium) replays every later change.
    #[arg(help_heading = "CDC hand-over", long, value_name = "NAME")]
    pub create_slot: Option<String>,

    /// The output plugin of the --create-slot slot [default: pgoutput].
    #[arg(help_heading = "CDC hand-over", long, value_name = "PLUGIN", requires = "create_slot")]
    pub slot_plugin: Option<String>,

    /// All workers read one consistent snapshot of the source, whose position is P0 (PostgreSQL: an
    /// exported snapshot; MySQL/MariaDB: a brief global read lock while every worker starts a
    /// consistent-snapshot transaction).
    ///
    /// Holds one long transaction open on the source for the whole run, and cannot survive a restart of
    /// the process.
    #[arg(help_heading = "CDC hand-over", long)]
    pub consistent: bool,

    /// Progress display: bars on a terminal, periodic lines otherwise (auto), or none.
    #[arg(help_heading = "Reports and progress", long, value_name = "MODE", default_value = "auto", value_parser = ["auto", "bars", "lines", "none"])]
    pub progress: String,

    /// Seconds between progress lines when not drawing bars.
    #[arg(help_heading = "Reports and progress", long, value_name = "SECONDS", default_value_t = 10.0)]
    pub progress_interval: f64,

    /// MySQL/MariaDB sources: zero dates are copied as NULL (`null`) or stop the copy (`error`)
    /// [default: null].
    ///
    /// Zero dates ('0000-00-00', '2024-00-10', zero DATETIME/TIMESTAMP) cannot be held by
    /// PostgreSQL: `null` copies them as NULL and counts them per column; `error` stops at the
    /// first one, naming table, column and key.
    #[arg(help_heading = "MySQL/MariaDB sources", long, value_name = "POLICY", value_parser = ["null", "error"])]
    pub zero_dates: Option<String>,

    #[command(flatten)]
    pub view: LiveArgs,

    #[command(flatten)]
    pub mapping: MappingArgs,
}

/// How MySQL/MariaDB tables map to PostgreSQL: given to `copy`, and to `verify` (without
/// `--job`) to compare a copy made with them.
#[derive(Debug, Args)]
pub struct MappingArgs {
    /// MySQL/MariaDB sources: the target schema the tables go into (verify: are in) [default: the
    /// source database's name].
    #[arg(help_heading = "MySQL/MariaDB sources", long, value_name = "NAME")]
    pub target_schema: Option<String>,

    /// MySQL/MariaDB sources: lowercase schema, table, column, index and constraint names on
    /// the target (as pgloader does), so they need no quoting in PostgreSQL.
    #[arg(help_heading = "MySQL/MariaDB sources", long)]
    pub lowercase_identifiers: bool,

    /// MySQL/MariaDB sources: map a type or one column to another PostgreSQL type (repeatable).
    ///
    /// `type:MYSQLTYPE=PGTYPE` (MYSQLTYPE is a column type as MySQL shows it, `tinyint(1)`, `int
    /// unsigned`, or a type name, `geometry`, `datetime`) or `column:[DB.]TABLE.COLUMN=PGTYPE`
    /// (backquote parts that contain dots).
    /// PGTYPE is one of boolean (integers and BIT: 0/1, any other value is an error), text (any type,
    /// as MySQL renders it; spatial types as WKT), bytea (strings, binary, JSON; spatial types as
    /// MySQL's SRID + WKB), jsonb (strings) or uuid (BINARY(16), CHAR(36)). Column rules win over type
    /// rules.
    #[arg(help_heading = "MySQL/MariaDB sources", long = "cast", value_name = "RULE")]
    pub casts: Vec<String>,

    /// MySQL/MariaDB sources: leave a column out of the copy, or of verify's comparison
    /// (repeatable): `[DB.]TABLE.COLUMN`.
    ///
    /// Indexes that use it are not created on the target. Verify names it in its verdict as not
    /// compared. (Other indexes are built after the load; FULLTEXT ones as
    /// `USING gin (to_tsvector('simple', …))` of their columns.)
    #[arg(help_heading = "MySQL/MariaDB sources", long = "exclude-column", value_name = "[DB.]TABLE.COLUMN")]
    pub exclude_columns: Vec<String>,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Source database URL: the job's own source (as `copy` was given it; the password may come
    /// from elsewhere).
    #[arg(long, value_name = "URL", env = SOURCE_ENV, hide_env_values = true)]
    pub source: String,

    /// Target PostgreSQL URL holding the job's state.
    #[arg(long, value_name = "URL", env = TARGET_ENV, hide_env_values = true)]
    pub target: String,

    /// The job to join (`copy --job NAME`).
    #[arg(long, value_name = "NAME")]
    pub job: String,

    /// Number of parallel workers in this process [default: the number of CPU cores].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub workers: Option<i64>,

    /// How long to wait for the job to be started (30s, 10m, 1h or seconds); past it, exit 2.
    #[arg(long, value_name = "DURATION", default_value = "10m")]
    pub wait: String,

    /// Seconds a claim lasts unless renewed (as for `copy`).
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
    pub lease: f64,

    /// Times a chunk or step is retried after a transient failure (as for `copy`).
    #[arg(long, value_name = "N", default_value_t = 10, allow_negative_numbers = true)]
    pub retries: i64,

    /// Longest wait between retries, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0)]
    pub retry_max_wait: f64,

    /// Seconds to wait for a connection before giving up on a server.
    #[arg(long, value_name = "SECONDS", default_value_t = 15.0)]
    pub connect_timeout: f64,

    /// Seconds a connection may wait for a silent server before the work is retried (as for `copy`).
    #[arg(long, value_name = "SECONDS", default_value_t = 300.0)]
    pub io_timeout: f64,

    /// Progress display: bars on a terminal, periodic lines otherwise (auto), or none.
    #[arg(long, value_name = "MODE", default_value = "auto", value_parser = ["auto", "bars", "lines", "none"])]
    pub progress: String,

    /// Seconds between progress lines when not drawing bars.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    pub progress_interval: f64,

    /// --max-lag and --throttle-query watched by this process: while they call for a pause,
    /// every process of the job waits (as when the starting `copy` watches them).
    #[command(flatten, next_help_heading = "Safety and throttling")]
    pub load: LoadArgs,

    #[command(flatten)]
    pub view: LiveArgs,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Target PostgreSQL URL holding the `rangecopy` state schema.
    #[arg(long, value_name = "URL", env = TARGET_ENV, hide_env_values = true)]
    pub target: String,

    /// Show only this job (default: every job).
    #[arg(long, value_name = "NAME")]
    pub job: Option<String>,
}
