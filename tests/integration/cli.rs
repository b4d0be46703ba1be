//! The command line itself: help, version, and usage errors (no database needed).

use crate::common::run;

#[test]
fn help_describes_the_commands_and_flags() {
    let top = run(&["--help"]).ok();
    for word in ["copy", "status"] {
        assert!(top.stdout.contains(word), "{top:?}");
    }
    let copy = run(&["copy", "--help"]).ok();
    for flag in ["--source", "--target", "--job", "--workers", "--chunk-rows", "--resume", "--restart", "--report"] {
        assert!(copy.stdout.contains(flag), "copy --help should document {flag}:\n{copy:?}");
    }
    let status = run(&["status", "--help"]).ok();
    assert!(status.stdout.contains("--target") && status.stdout.contains("--job"), "{status:?}");
}

#[test]
fn version_is_printed() {
    let v = run(&["--version"]).ok();
    assert!(v.stdout.starts_with("rangecopy ") && v.stdout.contains(env!("CARGO_PKG_VERSION")), "{v:?}");
}

#[test]
fn usage_errors_exit_2() {
    for args in [&[][..], &["frobnicate"], &["copy"], &["copy", "--source", "postgres://h/db"], &["status"]] {
        let r = run(args);
        assert_eq!(r.code, 2, "{r:?}");
        assert!(r.stdout.is_empty(), "errors go to stderr:\n{r:?}");
    }
}

/// Regression: `copy --help` was a flat list of 27 options with three styles of default.
/// Options come in headed groups, defaults read `[default: …]`, and `-h` is the short form.
#[test]
fn copy_help_groups_its_options_and_h_is_the_short_form() {
    let long = run(&["copy", "--help"]).ok();
    let short = run(&["copy", "-h"]).ok();
    for heading in [
        "What to copy:",
        "Speed and memory:",
        "Safety and throttling:",
        "CDC hand-over:",
        "MySQL/MariaDB sources:",
        "Reports and progress:",
    ] {
        assert!(short.stdout.contains(heading), "copy -h should have {heading}:\n{short:?}");
        assert!(long.stdout.contains(heading), "copy --help should have {heading}:\n{long:?}");
    }
    assert!(short.stdout.len() < long.stdout.len(), "-h should be shorter than --help");
    assert!(!long.stdout.contains("Default:"), "defaults read one way, [default: …]:\n{long:?}");
    assert!(short.stdout.contains("[default: the number of CPU cores]"), "{short:?}");
    let verify = run(&["verify", "--help"]).ok();
    assert!(verify.stdout.contains("give --report twice"), "{verify:?}");
}
