//! Progress of a running copy: counters the workers bump (atomics, no locks), and a display
//! that draws them as indicatif bars on a terminal or as plain periodic lines otherwise.
//!
//! Counters are advisory: the state tables are the truth. This module must never block a
//! worker, and never print a URL (only table names and numbers).

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::config::ProgressMode;

pub struct TableCounters {
    pub name: String,
    pub estimated_rows: u64,
    pub rows: AtomicU64,
    pub bytes: AtomicU64,
    pub chunks_done: AtomicU64,
    pub done: AtomicBool,
}

/// Shared counters of one run. Rows and bytes include chunks in flight (a failed chunk
/// subtracts what it added), so the display moves smoothly within large chunks.
pub struct Progress {
    pub tables: Vec<TableCounters>,
    started: Instant,
    /// Rows and bytes already copied by earlier runs of a resumed job (not counted in rates).
    base_rows: u64,
    base_bytes: u64,
    /// Why the run is held back right now (throttled, paused), set by the control thread.
    hold: std::sync::Mutex<Option<String>>,
    /// The longest wait for a silent server right now, set by the pipeline's watcher.
    waiting: std::sync::Mutex<Option<String>>,
}

impl Progress {
    /// `tables`: (display name, estimated rows, rows already done, bytes already done, finished).
    pub fn new(tables: Vec<(String, u64, u64, u64, bool)>) -> Self {
        let base_rows = tables.iter().map(|t| t.2).sum();
        let base_bytes = tables.iter().map(|t| t.3).sum();
        Progress {
            tables: tables
                .into_iter()
                .map(|(name, estimated_rows, rows, bytes, done)| TableCounters {
                    name,
                    estimated_rows,
                    rows: AtomicU64::new(rows),
                    bytes: AtomicU64::new(bytes),
                    chunks_done: AtomicU64::new(0),
                    done: AtomicBool::new(done),
                })
                .collect(),
            started: Instant::now(),
            base_rows,
            base_bytes,
            hold: std::sync::Mutex::new(None),
            waiting: std::sync::Mutex::new(None),
        }
    }

    /// Says why the run is held back (None: it is not); shown with the progress.
    pub fn set_hold(&self, hold: Option<String>) {
        *self.hold.lock().unwrap_or_else(|e| e.into_inner()) = hold;
    }

    /// Says which connection waits for a silent server (None: none does); shown first, since
    /// a held connection, not the throttle, is then what holds the run back.
    pub fn set_waiting(&self, waiting: Option<String>) {
        *self.waiting.lock().unwrap_or_else(|e| e.into_inner()) = waiting;
    }

    /// What holds the run back: a connection waiting for a silent server, the throttle, a pause.
    fn hold(&self) -> Option<String> {
        let waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let hold = self.hold.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match (waiting, hold) {
            (Some(w), Some(h)) => Some(format!("{w}; {h}")),
            (w, h) => w.or(h),
        }
    }

    pub fn add(&self, table_no: usize, rows: i64, bytes: i64) {
        let t = &self.tables[table_no];
        // Wrapping adds of a two's-complement delta: a rollback subtracts exactly what it added.
        t.rows.fetch_add(rows as u64, Relaxed);
        t.bytes.fetch_add(bytes as u64, Relaxed);
    }

    pub fn chunk_done(&self, table_no: usize) {
        self.tables[table_no].chunks_done.fetch_add(1, Relaxed);
    }

    pub fn table_done(&self, table_no: usize) {
        self.tables[table_no].done.store(true, Relaxed);
    }

    fn totals(&self) -> Totals {
        let rows: u64 = self.tables.iter().map(|t| t.rows.load(Relaxed)).sum();
        let bytes: u64 = self.tables.iter().map(|t| t.bytes.load(Relaxed)).sum();
        let estimated: u64 = self.tables.iter().map(|t| t.estimated_rows.max(t.rows.load(Relaxed))).sum();
        let tables_done = self.tables.iter().filter(|t| t.done.load(Relaxed)).count();
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let row_rate = rows.saturating_sub(self.base_rows) as f64 / secs;
        let byte_rate = bytes.saturating_sub(self.base_bytes) as f64 / secs;
        Totals { rows, bytes, estimated, tables_done, row_rate, byte_rate }
    }
}

struct Totals {
    rows: u64,
    bytes: u64,
    estimated: u64,
    tables_done: usize,
    row_rate: f64,
    byte_rate: f64,
}

impl Totals {
    fn eta(&self) -> String {
        if self.row_rate < 1.0 || self.estimated <= self.rows {
            return "-".into();
        }
        human_duration(Duration::from_secs_f64((self.estimated - self.rows) as f64 / self.row_rate))
    }
}

/// Draws progress until `stop` is set. Runs on its own thread (spawned by the pipeline).
pub fn display(progress: &Progress, mode: ProgressMode, interval: Duration, stop: &AtomicBool) {
    match mode {
        ProgressMode::None => {
            wait(stop, Duration::MAX);
        }
        ProgressMode::Lines => {
            while !wait(stop, interval) {
                eprintln!("{}", line(progress));
            }
        }
        ProgressMode::Bars => bars(progress, stop),
    }
}

/// Sleeps up to `d`, waking early when `stop` is set; returns whether it was.
fn wait(stop: &AtomicBool, d: Duration) -> bool {
    let until = Instant::now().checked_add(d);
    while !stop.load(Relaxed) {
        if until.is_some_and(|u| Instant::now() >= u) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

/// One plain progress line, for logs and non-terminals.
pub fn line(progress: &Progress) -> String {
    let t = progress.totals();
    let pct =
        if t.estimated > 0 { format!(" ({:.0}%)", 100.0 * t.rows as f64 / t.estimated as f64) } else { String::new() };
    let hold = progress.hold().map(|h| format!("; {h}")).unwrap_or_default();
    format!(
        "progress: {}/{} rows{pct}, {}, {} rows/s, {}/s, ETA {}, tables done {}/{}{hold}",
        human_count(t.rows),
        human_count(t.estimated),
        human_bytes(t.bytes),
        human_count(t.row_rate as u64),
        human_bytes(t.byte_rate as u64),
        t.eta(),
        t.tables_done,
        progress.tables.len()
    )
}

fn bars(progress: &Progress, stop: &AtomicBool) {
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(5));
    let total_style =
        ProgressStyle::with_template("{prefix:>12.bold} [{bar:30.cyan/blue}] {pos}/{len} rows {msg} ETA {eta}")
            .expect("valid template")
            .progress_chars("=> ");
    let table_style = ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} rows {msg}")
        .expect("valid template")
        .progress_chars("=> ");
    let total = multi.add(ProgressBar::new(0).with_style(total_style).with_prefix("total"));
    let mut table_bars: Vec<Option<ProgressBar>> = progress.tables.iter().map(|_| None).collect();
    loop {
        let stopping = wait(stop, Duration::from_millis(200));
        let t = progress.totals();
        total.set_length(t.estimated);
        total.set_position(t.rows);
        total.set_message(format!(
            "{} {} rows/s {}/s, tables {}/{}{}",
            human_bytes(t.bytes),
            human_count(t.row_rate as u64),
            human_bytes(t.byte_rate as u64),
            t.tables_done,
            progress.tables.len(),
            progress.hold().map(|h| format!(" — {h}")).unwrap_or_default()
        ));
        // A bar per table that is being copied; a finished table's bar is removed.
        for (counters, bar) in progress.tables.iter().zip(table_bars.iter_mut()) {
            let rows = counters.rows.load(Relaxed);
            let done = counters.done.load(Relaxed);
            match bar {
                None if rows > 0 && !done => {
                    let b =
                        multi.add(ProgressBar::new(counters.estimated_rows.max(rows)).with_style(table_style.clone()));
                    b.set_prefix(truncate(&counters.name, 12));
                    *bar = Some(b);
                }
                Some(b) if done => {
                    b.finish_and_clear();
                    multi.remove(b);
                }
                _ => {}
            }
            if let Some(b) = bar.as_ref().filter(|_| !done) {
                b.set_length(counters.estimated_rows.max(rows));
                b.set_position(rows);
                b.set_message(human_bytes(counters.bytes.load(Relaxed)));
            }
        }
        if stopping {
            break;
        }
    }
    for b in table_bars.into_iter().flatten() {
        b.finish_and_clear();
    }
    total.finish_and_clear();
    let _ = std::io::stderr().flush();
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let tail: String = s.chars().rev().take(n - 1).collect::<Vec<_>>().into_iter().rev().collect();
        format!("…{tail}")
    }
}

pub fn human_count(n: u64) -> String {
    match n {
        0..=9_999 => n.to_string(),
        10_000..=999_999 => format!("{:.1}k", n as f64 / 1e3),
        _ => format!("{:.2}M", n as f64 / 1e6),
    }
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// `n` and the noun in its number: "1 table", "3 tables".
pub fn counted(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A duration as a person says it: tenths under ten seconds (never "0s" for a short run).
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=9 => format!("{:.1}s", d.as_secs_f64()),
        10..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_durations_and_single_things_read_right() {
        assert_eq!(human_duration(Duration::from_millis(400)), "0.4s");
        assert_eq!(human_duration(Duration::from_secs(42)), "42s");
        assert_eq!(human_duration(Duration::from_secs(125)), "2m05s");
        assert_eq!(counted(1, "table", "tables"), "1 table");
        assert_eq!(counted(0, "table", "tables"), "0 tables");
    }

    #[test]
    fn numbers_read_like_a_person_wrote_them() {
        assert_eq!(human_count(950), "950");
        assert_eq!(human_count(12_345), "12.3k");
        assert_eq!(human_count(5_000_000), "5.00M");
        assert_eq!(human_count(50_000_000), "50.00M");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 * 1024 * 1024), "3.0 MiB");
        assert_eq!(human_duration(Duration::from_secs(3725)), "1h02m");
    }

    #[test]
    fn rollback_subtracts_what_a_chunk_added() {
        let p = Progress::new(vec![("t".into(), 100, 0, 0, false)]);
        p.add(0, 40, 4000);
        p.add(0, -40, -4000);
        assert_eq!(p.tables[0].rows.load(Relaxed), 0);
        assert!(line(&p).starts_with("progress: 0/100 rows (0%)"), "{}", line(&p));
    }

    #[test]
    fn a_held_connection_shows_before_the_throttle() {
        let p = Progress::new(vec![("t".into(), 100, 0, 0, false)]);
        p.set_hold(Some("throttled to 10 rows/s".into()));
        p.set_waiting(Some("waiting 45s for the target (writing; chunk 7 of t)".into()));
        assert!(line(&p).ends_with("; waiting 45s for the target (writing; chunk 7 of t); throttled to 10 rows/s"));
        p.set_waiting(None);
        assert!(line(&p).ends_with("; throttled to 10 rows/s"), "{}", line(&p));
    }
}
