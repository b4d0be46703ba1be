//! The rangecopy command: parses arguments, runs the command, and maps the outcome to an
//! exit code. This is the only place that decides exit codes and prints top-level errors.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rangecopy::cli::{Cli, Command};
use rangecopy::config::{
    CopyConfig, LiveConfig, ProgressMode, StatusConfig, ThrottleChange, VerifyConfig, WorkerConfig,
};
use rangecopy::error::{redact, Error};
use rangecopy::listen::Control;
use rangecopy::live::{self, Live, Mode};
use rangecopy::verify::Verdict;
use rangecopy::{copy, listen, report, verify, watch, worker};

/// An error, the exit code it means for this command, and for failures that kept state,
/// the command that resumes.
struct Failure {
    error: Box<Error>,
    exit: u8,
    resume: Option<String>,
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure { exit: error.exit_code(), error: Box::new(error), resume: None }
    }
}

/// Allocations this large or larger are mapped on their own and given back to the system when
/// freed. glibc otherwise raises this threshold after each large free, up to 32 MiB, and keeps
/// freed blocks below it in per-thread arenas: the buffers that grow to hold a row with a
/// 50 MB value then stay resident in every thread that read one.
const MMAP_THRESHOLD: i32 = 4 << 20;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn bound_allocator_retention() {
    // SAFETY: mallopt only sets an allocator parameter; it runs before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn bound_allocator_retention() {}

fn main() -> ExitCode {
    bound_allocator_retention();
    match run(Cli::parse_args()) {
        Ok(code) => code,
        Err(Failure { error, exit, resume }) => {
            rangecopy::say!("error: {}", redact(&error.to_string()));
            if let Some(hint) = resume {
                match error.root() {
                    Error::SourceChanged { .. } => {
                        rangecopy::say!(
                            "committed chunks are kept; copy that table again (its new definition) with:\n  {hint}"
                        )
                    }
                    Error::Interrupted => rangecopy::say!("committed chunks are kept; resume with:\n  {hint}"),
                    _ => rangecopy::say!("committed chunks are kept; once the cause is fixed, resume with:\n  {hint}"),
                }
            }
            ExitCode::from(exit)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, Failure> {
    match cli.command {
        Command::Copy(args) => {
            let live_cfg = LiveConfig::from_args(&args.view)?;
            rangecopy::log::set_format(live_cfg.log_format);
            let mut cfg = CopyConfig::from_args(&args)?;
            if rangecopy::log::json() {
                // Events take the progress lines' place.
                cfg.progress = ProgressMode::None;
            }
            let control = Control::Job { target: Box::new(cfg.target.clone()), job: cfg.job.clone() };
            start_live(&live_cfg, &cfg.job, Mode::Copy, control)?;
            let hint = copy::resume_hint(&cfg);
            let outcome = copy::run(&cfg, interrupt_flag(1, Some(hint.clone()))).map_err(|error| Failure {
                resume: match error.root() {
                    Error::SourceChanged { table, .. } => Some(copy::restart_hint(&cfg, table)),
                    _ => (!error.is_input()).then_some(hint),
                },
                exit: error.exit_code(),
                error: Box::new(error),
            })?;
            rangecopy::say!("{}", report::summary_line(&outcome));
            if let Some(path) = &cfg.report {
                rangecopy::say!("report written to {}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Worker(args) => {
            let live_cfg = LiveConfig::from_args(&args.view)?;
            rangecopy::log::set_format(live_cfg.log_format);
            let mut cfg = WorkerConfig::from_args(&args)?;
            if rangecopy::log::json() {
                cfg.progress = ProgressMode::None;
            }
            let control = Control::Job { target: Box::new(cfg.target.clone()), job: cfg.job.clone() };
            start_live(&live_cfg, &cfg.job, Mode::Copy, control)?;
            let outcome = worker::run(&cfg, interrupt_flag(1, None))?;
            rangecopy::say!("{}", outcome.summary_line());
            Ok(ExitCode::SUCCESS)
        }
        Command::Status(args) => {
            let cfg = StatusConfig::from_args(&args)?;
            match report::print_status(&cfg, &mut std::io::stdout().lock()) {
                // A closed pipe (`status | head`) is not an error.
                Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::BrokenPipe => {
                    Ok(ExitCode::SUCCESS)
                }
                other => Ok(other.map(|()| ExitCode::SUCCESS)?),
            }
        }
        Command::Throttle(args) => {
            let change = ThrottleChange::from_args(&args)?;
            report::apply_throttle(&change)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify(args) => {
            // Whatever stops a verification, the answer is "could not verify": exit 2.
            let could_not = |error: Error| Failure { error: Box::new(error), exit: 2, resume: None };
            let live_cfg = LiveConfig::from_args(&args.view).map_err(could_not)?;
            rangecopy::log::set_format(live_cfg.log_format);
            let cfg = VerifyConfig::from_args(&args).map_err(could_not)?;
            let job = cfg.job.as_deref().unwrap_or("verify");
            start_live(&live_cfg, job, Mode::Verify, Control::InProcess).map_err(could_not)?;
            let started = std::time::Instant::now();
            let failed = |e: Error| {
                let status = if matches!(e.root(), Error::Interrupted) { "interrupted" } else { "failed" };
                live::finished(status, 0, started.elapsed().as_secs_f64(), Some(&e));
                could_not(e)
            };
            let cancel = interrupt_flag(2, None);
            let v = if cfg.live.watch.is_some() {
                rangecopy::say!(
                    "watching as {} (its passes are kept in the target's rangecopy schema)",
                    watch::watch_name(&cfg)
                );
                watch::run(&cfg, &cancel, |v, pass, previous| {
                    live::watch_pass(pass);
                    println!("{}", pass.line(previous));
                    write_verify_reports(&cfg, v, Some(&pass.watch))
                })
                .map_err(failed)?
            } else {
                let v = verify::run(&cfg, &cancel).map_err(failed)?;
                match report::print_verification(&v, &mut std::io::stdout().lock()) {
                    Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::BrokenPipe => {}
                    other => other.map_err(could_not)?,
                }
                write_verify_reports(&cfg, &v, None).map_err(could_not)?;
                v
            };
            Ok(match v.verdict() {
                Verdict::Identical => ExitCode::SUCCESS,
                Verdict::Different => ExitCode::from(1),
                // Columns no rule accounts for were not compared: not verified in full.
                Verdict::Incomplete => ExitCode::from(2),
            })
        }
    }
}

/// Makes the live view the run reports to and, with `--listen`, serves it; a bind failure is bad
/// input, reported before anything is written.
fn start_live(cfg: &LiveConfig, job: &str, mode: Mode, control: Control) -> Result<(), Error> {
    let view = Live::new(job, mode, cfg.control);
    live::install(view.clone());
    if let Some(addr) = cfg.listen {
        listen::start(addr, view, cfg.control.then_some(control))?;
    }
    Ok(())
}

/// Writes the verification reports asked for; a watch's HTML report shows its trend.
fn write_verify_reports(cfg: &VerifyConfig, v: &verify::Verification, watch: Option<&str>) -> Result<(), Error> {
    if let Some(path) = &cfg.json_report {
        report::write_verify_json(cfg, v, path)?;
        if watch.is_none() {
            rangecopy::say!("report written to {}", path.display());
        }
    }
    if let Some(path) = &cfg.html_report {
        let history = match watch {
            Some(name) => watch::history(cfg, name)?,
            None => Vec::new(),
        };
        report::write_verify_html_with_trend(cfg, v, &history, path)?;
        if watch.is_none() {
            rangecopy::say!("report written to {}", path.display());
        }
    }
    Ok(())
}

/// How long after Ctrl-C / SIGTERM the process may take to stop by itself. Connections waiting
/// for a server are given up at once (see `wait`), but a MySQL read cannot be interrupted: it
/// would end only at its `--io-timeout`.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// A flag that Ctrl-C / SIGTERM sets; a second one leaves at once, and so does the process
/// when it has not stopped by itself `STOP_GRACE` after the first, with exit code `exit` and
/// the resume hint (the state in the target is consistent at every moment, so nothing is lost
/// either way).
fn interrupt_flag(exit: u8, resume: Option<String>) -> Arc<AtomicBool> {
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = cancel.clone();
    let _ = ctrlc::set_handler(move || {
        if rangecopy::wait::interrupt() {
            std::process::exit(130);
        }
        flag.store(true, Ordering::SeqCst);
        rangecopy::say!("stopping: rolling back work in flight, keeping everything committed…");
        let resume = resume.clone();
        std::thread::spawn(move || {
            std::thread::sleep(STOP_GRACE);
            rangecopy::say!(
                "error: interrupted; a connection did not let go within {}s, so it is left behind",
                STOP_GRACE.as_secs()
            );
            if let Some(hint) = resume {
                rangecopy::say!("committed chunks are kept; resume with:\n  {hint}");
            }
            std::process::exit(exit.into());
        });
    });
    cancel
}
