//! The rangecopy command: parses arguments, runs the command, and maps the outcome to an
//! exit code. This is the only place that decides exit codes and prints top-level errors.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::Parser;

use rangecopy::cli::{Cli, Command};
use rangecopy::config::{CopyConfig, StatusConfig};
use rangecopy::error::{redact, Error};
use rangecopy::{copy, report};

/// An error, and for failures that kept state, the command that resumes.
struct Failure {
    error: Error,
    resume: Option<String>,
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure { error, resume: None }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure { error, resume }) => {
            eprintln!("error: {}", redact(&error.to_string()));
            if let Some(hint) = resume {
                eprintln!("committed chunks are kept; once the cause is fixed, resume with:\n  {hint}");
            }
            ExitCode::from(error.exit_code())
        }
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Copy(args) => {
            let cfg = CopyConfig::from_args(&args)?;
            let cancel = Arc::new(AtomicBool::new(false));
            let flag = cancel.clone();
            // A second Ctrl-C leaves at once; the state is consistent at every moment anyway.
            let _ = ctrlc::set_handler(move || {
                if flag.swap(true, Ordering::SeqCst) {
                    std::process::exit(130);
                }
                eprintln!("stopping: rolling back chunks in flight, keeping everything committed…");
            });
            let outcome = copy::run(&cfg, cancel)
                .map_err(|error| Failure { resume: (!error.is_input()).then(|| copy::resume_hint(&cfg)), error })?;
            eprintln!("{}", report::summary_line(&outcome));
            if let Some(path) = &cfg.report {
                eprintln!("report written to {}", path.display());
            }
            Ok(())
        }
        Command::Status(args) => {
            let cfg = StatusConfig::from_args(&args)?;
            let stdout = std::io::stdout();
            match report::print_status(&cfg, &mut stdout.lock()) {
                // A closed pipe (`status | head`) is not an error.
                Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                other => Ok(other?),
            }
        }
    }
}
