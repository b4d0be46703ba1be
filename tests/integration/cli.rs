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
