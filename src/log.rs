//! What a run writes to stderr besides its progress display: messages for people (`say!`), or
//! with `--log-format json` one JSON object per line for every message and event, so that a log
//! shipper never has to parse prose.
//!
//! This module owns the format, not the content: callers pass texts that are already free of
//! passwords (see `error::redact`), and it redacts them once more before they leave. It must
//! never block for long: a line is written whole under stderr's own lock.

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::LogFormat;
use crate::error::redact;

static JSON: AtomicBool = AtomicBool::new(false);

/// Chooses the format for the rest of the process.
pub fn set_format(format: LogFormat) {
    JSON.store(format == LogFormat::Json, Ordering::SeqCst);
}

/// Whether events are written as JSON (and progress lines are left out).
pub fn json() -> bool {
    JSON.load(Ordering::Relaxed)
}

/// Writes a message as `eprintln!` would, or as a `message` event in JSON, whose `level` comes
/// from the message's own `warning:` / `error:` / `note:` prefix.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => { $crate::log::say(format_args!($($arg)*)) };
}

#[doc(hidden)]
pub fn say(args: fmt::Arguments<'_>) {
    if !json() {
        eprintln!("{args}");
        return;
    }
    let text = redact(&args.to_string());
    let (level, text) = ["warning", "error", "note"]
        .iter()
        .find_map(|level| text.strip_prefix(&format!("{level}: ")).map(|rest| (*level, rest.to_string())))
        .unwrap_or(("info", text.clone()));
    write_event("message", serde_json::json!({ "level": level, "text": text }));
}

/// Writes one event (JSON format only; the text format has its own lines for what matters).
/// `fields` is an object; `ts` and `event` are put first.
pub fn event(name: &str, fields: serde_json::Value) {
    if json() {
        write_event(name, fields);
    }
}

fn write_event(name: &str, fields: serde_json::Value) {
    let line = event_line(name, fields, SystemTime::now());
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

fn event_line(name: &str, fields: serde_json::Value, at: SystemTime) -> String {
    // `ts` and `event` first, for people reading the raw lines.
    let head = format!("{{\"ts\":\"{}\",\"event\":{}", rfc3339(at), serde_json::Value::from(name));
    match fields {
        serde_json::Value::Object(rest) if !rest.is_empty() => {
            let rest = serde_json::Value::Object(rest).to_string();
            format!("{head},{}", &rest[1..])
        }
        _ => format!("{head}}}"),
    }
}

/// A UTC time as RFC 3339 with milliseconds (`2026-12-03T11:48:59.123Z`).
pub fn rfc3339(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Days to a civil date (Howard Hinnant's algorithm, for dates after 1970).
    let z = days as i64 + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn times_are_rfc3339_in_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        // 2024-02-29 (a leap day) 13:05:09.250 UTC.
        let at = UNIX_EPOCH + Duration::from_millis(1_709_211_909_250);
        assert_eq!(rfc3339(at), "2024-02-29T13:05:09.250Z");
        let at = UNIX_EPOCH + Duration::from_secs(1_798_761_599);
        assert_eq!(rfc3339(at), "2026-12-31T23:59:59.000Z");
    }

    #[test]
    fn an_event_line_is_one_object_with_ts_and_event_first() {
        let line = event_line("chunk", serde_json::json!({"table": "a\"b\nc", "rows": 3}), UNIX_EPOCH);
        assert!(!line.contains('\n'));
        assert!(line.starts_with(r#"{"ts":"1970-01-01T00:00:00.000Z","event":"chunk","#), "{line}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["table"], "a\"b\nc");
        assert_eq!(v["rows"], 3);
    }
}
