//! Progress of a running copy: counters the workers bump (atomics, no locks), and a display
//! that draws them as indicatif bars on a terminal or as plain periodic lines otherwise.
//!
//! Counters are advisory: the state tables are the truth. This module must never block a
//! worker, and never print a URL (only table names and numbers).

use std::collections::VecDeque;
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
    /// Chunks planned so far (planning runs ahead of the copy; the total once it is complete).
    pub chunks_planned: AtomicU64,
    pub done: AtomicBool,
}

/// Shared counters of one run. Rows and bytes include chunks in flight, both counted as their
/// blocks are written (a failed chunk subtracts what it added), so the display moves smoothly
/// within large chunks.
pub struct Progress {
    pub tables: Vec<TableCounters>,
    /// Why the run is held back right now (throttled, paused), set by the control thread.
    hold: std::sync::Mutex<Option<String>>,
    /// Whether the run is paused (by `rangecopy throttle --pause`, lag or the throttle query).
    paused: AtomicBool,
    /// The longest wait for a silent server right now, set by the pipeline's watcher.
    waiting: std::sync::Mutex<Option<String>>,
    /// Rows and bytes of the job that other processes committed since this one joined, as its
    /// heartbeat last read them: the totals shown are the job's.
    others: (AtomicU64, AtomicU64),
}

impl Progress {
    /// `tables`: (display name, estimated rows, rows already done, bytes already done, finished).
    pub fn new(tables: Vec<(String, u64, u64, u64, bool)>) -> Self {
        Progress {
            tables: tables
                .into_iter()
                .map(|(name, estimated_rows, rows, bytes, done)| TableCounters {
                    name,
                    estimated_rows,
                    rows: AtomicU64::new(rows),
                    bytes: AtomicU64::new(bytes),
                    chunks_done: AtomicU64::new(0),
                    chunks_planned: AtomicU64::new(0),
                    done: AtomicBool::new(done),
                })
                .collect(),
            hold: std::sync::Mutex::new(None),
            paused: AtomicBool::new(false),
            waiting: std::sync::Mutex::new(None),
            others: (AtomicU64::new(0), AtomicU64::new(0)),
        }
    }

    /// What other processes of the job have committed since this one joined (rows, bytes).
    pub fn set_others(&self, rows: u64, bytes: u64) {
        self.others.0.store(rows, Relaxed);
        self.others.1.store(bytes, Relaxed);
    }

    /// Rows and bytes of the job other processes committed since this one joined, as last read.
    pub fn others(&self) -> (u64, u64) {
        (self.others.0.load(Relaxed), self.others.1.load(Relaxed))
    }

    /// Says why the run is held back (None: it is not), and whether it is paused; shown with
    /// the progress (a paused run has no ETA).
    pub fn set_hold(&self, hold: Option<String>, paused: bool) {
        *self.hold.lock().unwrap_or_else(|e| e.into_inner()) = hold;
        self.paused.store(paused, Relaxed);
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

    /// A table's chunks done and planned before this run.
    pub fn set_chunks(&self, table_no: usize, done: u64, planned: u64) {
        let t = &self.tables[table_no];
        t.chunks_done.store(done, Relaxed);
        t.chunks_planned.store(planned, Relaxed);
    }

    pub fn chunk_planned(&self, table_no: usize) {
        self.tables[table_no].chunks_planned.fetch_add(1, Relaxed);
    }

    pub fn table_done(&self, table_no: usize) {
        self.tables[table_no].done.store(true, Relaxed);
    }

    /// The totals now, with rates over the `window`'s recent samples (which this call adds to).
    fn totals(&self, window: &mut RateWindow) -> Totals {
        let others = self.others();
        let rows: u64 = self.tables.iter().map(|t| t.rows.load(Relaxed)).sum::<u64>() + others.0;
        let bytes: u64 = self.tables.iter().map(|t| t.bytes.load(Relaxed)).sum::<u64>() + others.1;
        let estimated: u64 =
            self.tables.iter().map(|t| t.estimated_rows.max(t.rows.load(Relaxed))).sum::<u64>().max(rows);
        let tables_done = self.tables.iter().filter(|t| t.done.load(Relaxed)).count();
        let rates = window.sample(Instant::now(), rows, bytes);
        Totals { rows, bytes, estimated, tables_done, rates, paused: self.paused.load(Relaxed), by_others: others.0 }
    }
}

struct Totals {
    rows: u64,
    bytes: u64,
    estimated: u64,
    tables_done: usize,
    /// Rows/s and bytes/s over the recent window; `None` until it spans enough time.
    rates: Option<(f64, f64)>,
    paused: bool,
    /// Of `rows`, those other processes of the job copied.
    by_others: u64,
}

impl Totals {
    /// Remaining rows at the recent rate: "paused" while paused (no rate means nothing then),
    /// "-" until the rate is known.
    fn eta(&self) -> String {
        match self.rates {
            _ if self.paused => "paused".into(),
            _ if self.estimated <= self.rows => "-".into(),
            Some((rows, _)) if rows >= 1.0 => {
                human_duration(Duration::from_secs_f64((self.estimated - self.rows) as f64 / rows))
            }
            _ => "-".into(),
        }
    }

    fn rates_text(&self) -> String {
        match self.rates {
            Some((rows, bytes)) => format!("{} rows/s, {}/s", human_count(rows as u64), human_bytes(bytes as u64)),
            None => "- rows/s".into(),
        }
    }
}

/// Rates over the last `RateWindow::SPAN` of samples, so that a pause or a slow start fades
/// out of them, and a resumed job's earlier rows (there from the first sample) never count.
#[derive(Default)]
struct RateWindow {
    samples: VecDeque<(Instant, u64, u64)>,
}

impl RateWindow {
    const SPAN: Duration = Duration::from_secs(20);
    /// The shortest span a rate is given for.
    const MIN_SPAN: Duration = Duration::from_secs(2);

    fn sample(&mut self, now: Instant, rows: u64, bytes: u64) -> Option<(f64, f64)> {
        self.samples.push_back((now, rows, bytes));
        while self.samples.len() > 2 && now.duration_since(self.samples[1].0) >= Self::SPAN {
            self.samples.pop_front();
        }
        let (t0, r0, b0) = *self.samples.front()?;
        let span = now.duration_since(t0);
        (span >= Self::MIN_SPAN).then(|| {
            let secs = span.as_secs_f64();
            (rows.saturating_sub(r0) as f64 / secs, bytes.saturating_sub(b0) as f64 / secs)
        })
    }
}

/// Draws progress until `stop` is set. Runs on its own thread (spawned by the pipeline).
pub fn display(progress: &Progress, mode: ProgressMode, interval: Duration, stop: &AtomicBool) {
    match mode {
        ProgressMode::None => {
            wait(stop, Duration::MAX);
        }
        ProgressMode::Lines => {
            // Sampled every second, printed every interval, so the rate is recent whatever
            // the interval.
            let mut window = RateWindow::default();
            progress.totals(&mut window);
            let mut last = Instant::now();
            while !wait(stop, Duration::from_secs(1).min(interval)) {
                let t = progress.totals(&mut window);
                if last.elapsed() + Duration::from_millis(50) >= interval {
                    eprintln!("{}", line(progress, &t));
                    last = Instant::now();
                }
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
fn line(progress: &Progress, t: &Totals) -> String {
    let others = match t.by_others {
        0 => String::new(),
        n => format!(", {} by other processes", human_count(n)),
    };
    let pct = if t.estimated > 0 {
        format!(" ({:.0}%{others})", 100.0 * t.rows as f64 / t.estimated as f64)
    } else if !others.is_empty() {
        format!(" ({})", &others[2..])
    } else {
        String::new()
    };
    let hold = progress.hold().map(|h| format!("; {h}")).unwrap_or_default();
    format!(
        "progress: {}/{} rows{pct}, {}, {}, ETA {}, tables done {}/{}{hold}",
        human_count(t.rows),
        human_count(t.estimated),
        human_bytes(t.bytes),
        t.rates_text(),
        t.eta(),
        t.tables_done,
        progress.tables.len()
    )
}

fn bars(progress: &Progress, stop: &AtomicBool) {
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(5));
    let total_style = ProgressStyle::with_template("{prefix:>12.bold} [{bar:30.cyan/blue}] {pos}/{len} rows {msg}")
        .expect("valid template")
        .progress_chars("=> ");
    let table_style = ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} rows {msg}")
        .expect("valid template")
        .progress_chars("=> ");
    let total = multi.add(ProgressBar::new(0).with_style(total_style).with_prefix("total"));
    let mut table_bars: Vec<Option<ProgressBar>> = progress.tables.iter().map(|_| None).collect();
    let mut window = RateWindow::default();
    loop {
        let stopping = wait(stop, Duration::from_millis(200));
        let t = progress.totals(&mut window);
        total.set_length(t.estimated);
        total.set_position(t.rows);
        total.set_message(format!(
            "{} {}, ETA {}, tables {}/{}{}",
            human_bytes(t.bytes),
            t.rates_text(),
            t.eta(),
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

    /// Regression: the ETA counted a resumed job's earlier rows as copied in no time, grew
    /// during a pause, and said "ETA 0s" at the start. Rates are over a recent window.
    #[test]
    fn eta_comes_from_the_recent_rate_and_says_paused_while_paused() {
        let start = Instant::now();
        let mut w = RateWindow::default();
        // A resumed job: 900k rows there from the first sample, then 1000 rows/s.
        assert_eq!(w.sample(start, 900_000, 0), None, "no rate before the window spans anything");
        let at = |s: u64| start + Duration::from_secs(s);
        assert_eq!(w.sample(at(1), 901_000, 0), None);
        let (rows, _) = w.sample(at(4), 904_000, 0).expect("a rate after 4 s");
        assert!((rows - 1000.0).abs() < 1e-6, "{rows}");
        let t = |rates, paused| Totals {
            rows: 904_000,
            bytes: 0,
            estimated: 1_000_000,
            tables_done: 0,
            rates,
            paused,
            by_others: 0,
        };
        assert_eq!(t(Some((1000.0, 0.0)), false).eta(), "1m36s");
        assert_eq!(t(Some((1000.0, 0.0)), true).eta(), "paused");
        assert_eq!(t(None, false).eta(), "-");
        // A long pause fades out of the window: the rate is the recent one, not the average.
        for s in 5..60 {
            w.sample(at(s), 904_000, 0);
        }
        let (rows, _) = w.sample(at(60), 904_000, 0).unwrap();
        assert_eq!(rows, 0.0);
        for s in 61..=90 {
            w.sample(at(s), 904_000 + (s - 60) * 2000, 0);
        }
        let (rows, _) = w.sample(at(91), 904_000 + 31 * 2000, 0).unwrap();
        assert!((rows - 2000.0).abs() < 1.0, "{rows}");
    }

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
        let text = now(&p);
        assert!(text.starts_with("progress: 0/100 rows (0%)"), "{text}");
        assert!(text.contains("- rows/s, ETA -"), "no rate nor ETA at the start: {text}");
    }

    #[test]
    fn the_totals_are_the_jobs_with_the_rows_of_other_processes() {
        let p = Progress::new(vec![("t".into(), 1000, 0, 0, false)]);
        p.add(0, 300, 3000);
        p.set_others(400, 4000);
        let text = now(&p);
        assert!(text.starts_with("progress: 700/1000 rows (70%, 400 by other processes), 6.8 KiB"), "{text}");
        // More than estimated: the estimate grows with them.
        p.set_others(900, 9000);
        assert!(now(&p).starts_with("progress: 1200/1200 rows (100%, 900 by other processes)"), "{}", now(&p));
    }

    /// A progress line now (no rate yet).
    fn now(p: &Progress) -> String {
        line(p, &p.totals(&mut RateWindow::default()))
    }

    #[test]
    fn a_held_connection_shows_before_the_throttle() {
        let p = Progress::new(vec![("t".into(), 100, 0, 0, false)]);
        p.set_hold(Some("throttled to 10 rows/s".into()), false);
        p.set_waiting(Some("waiting 45s for the target (writing; chunk 7 of t)".into()));
        assert!(now(&p).ends_with("; waiting 45s for the target (writing; chunk 7 of t); throttled to 10 rows/s"));
        p.set_waiting(None);
        assert!(now(&p).ends_with("; throttled to 10 rows/s"), "{}", now(&p));
        p.set_hold(Some("paused by rangecopy throttle".into()), true);
        assert!(now(&p).contains("ETA paused"), "{}", now(&p));
    }
}
