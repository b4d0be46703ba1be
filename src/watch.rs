//! `verify --watch`: verification passes again and again while CDC keeps the target in step,
//! each pass recorded in the target's state (`rangecopy.verify_passes`), so that how long
//! source and target have stayed fully consistent survives restarts of the watch.
//!
//! This module owns the history of passes and the numbers of one pass (`PassSummary`, for
//! anyone who shows them). It writes nothing but that history, and never to the source.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::VerifyConfig;
use crate::error::{Error, Result};
use crate::pg::PgConn;
use crate::state::{self, VerifyPass};
use crate::verify::{self, Verdict, Verification};

/// Passes of a watch read back for its trend (the HTML report's bars).
pub const TREND_PASSES: i64 = 200;

/// The numbers of one verification pass: overall and per table.
#[derive(Debug, Clone, Serialize)]
pub struct PassSummary {
    /// The watch's name: `--job`, or one made from what it compares (see `watch_name`).
    pub watch: String,
    /// 1 for the watch's first pass; 0 for a pass not recorded (verify without --watch).
    pub pass: i32,
    pub started_at: String,
    pub finished_at: String,
    pub verdict: Verdict,
    pub rows_compared: u64,
    pub rows_divergent: u64,
    pub rows_in_flight: u64,
    /// Percent of the rows compared that are not divergent.
    pub consistency: f64,
    pub tables: Vec<TablePass>,
    /// Since when every pass has been fully consistent (UTC), and for how many seconds.
    pub consistent_since: Option<String>,
    pub consistent_for_seconds: Option<f64>,
}

/// One table's numbers in a pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TablePass {
    pub table: String,
    pub compared: u64,
    pub divergent: u64,
    pub in_flight: u64,
    /// `--since-column`: rows left out as too recent (source, target); absent for a table
    /// compared whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub left_out: Option<(u64, u64)>,
}

impl PassSummary {
    /// The numbers of a verification, before it is recorded.
    pub fn of(watch: &str, v: &Verification) -> PassSummary {
        let (compared, divergent, in_flight) = v.totals();
        PassSummary {
            watch: watch.to_string(),
            pass: 0,
            started_at: String::new(),
            finished_at: String::new(),
            verdict: v.verdict(),
            rows_compared: compared,
            rows_divergent: divergent,
            rows_in_flight: in_flight,
            consistency: consistency(compared, divergent),
            tables: v
                .tables
                .iter()
                .map(|t| TablePass {
                    table: t.source_table.clone(),
                    compared: t.source_rows,
                    divergent: t.differing_rows as u64,
                    in_flight: t.in_flight as u64,
                    left_out: t.left_out.as_ref().map(|l| (l.source_rows, l.target_rows)),
                })
                .collect(),
            consistent_since: None,
            consistent_for_seconds: None,
        }
    }

    /// One line for people: the pass, overall numbers, the tables whose numbers changed since
    /// `previous`, and how long everything has been consistent.
    pub fn line(&self, previous: Option<&VerifyPass>) -> String {
        let before: Vec<TablePass> =
            previous.and_then(|p| serde_json::from_value(p.tables.clone()).ok()).unwrap_or_default();
        let changed: Vec<String> = self
            .tables
            .iter()
            .filter(|t| {
                let was = before.iter().find(|b| b.table == t.table);
                match was {
                    Some(b) => b.divergent != t.divergent || b.in_flight != t.in_flight,
                    None => t.divergent > 0 || t.in_flight > 0,
                }
            })
            .map(|t| format!("{} {} divergent, {} in flight", t.table, t.divergent, t.in_flight))
            .collect();
        let mut line = format!(
            "pass {} of {}: {} consistent, {} rows compared, {} divergent, {} in flight",
            self.pass,
            self.watch,
            percent(self.consistency),
            self.rows_compared,
            self.rows_divergent,
            self.rows_in_flight
        );
        if !changed.is_empty() {
            line.push_str(&format!("; changed: {}", changed.join("; ")));
        }
        match (&self.consistent_since, self.consistent_for_seconds) {
            (Some(since), Some(secs)) => {
                line.push_str(&format!("; consistent (100%) since {since} UTC, for {}", human_duration(secs)))
            }
            _ => line.push_str("; not consistent"),
        }
        line
    }
}

/// Percent of `compared` rows that are not divergent (100 when nothing was compared and
/// nothing differs). Rows extra on the target count as divergent too, so it is held at 0.
pub fn consistency(compared: u64, divergent: u64) -> f64 {
    if compared == 0 {
        return if divergent == 0 { 100.0 } else { 0.0 };
    }
    (compared.saturating_sub(divergent) as f64 / compared as f64) * 100.0
}

/// `99.970%`; exactly 100 only when nothing diverges.
pub fn percent(p: f64) -> String {
    if p >= 100.0 {
        "100%".to_string()
    } else {
        // Never rounds up to a 100 that is not (the nudge undoes binary fractions: 99.95 is
        // held as 99.9499…).
        format!("{:.3}%", ((p * 1000.0) + 1e-6).floor() / 1000.0)
    }
}

/// `42s`, `5m03s`, `2h05m`.
pub fn human_duration(seconds: f64) -> String {
    crate::progress::human_duration(Duration::from_secs_f64(seconds.max(0.0)))
}

/// The watch's name in the history: `--job`, or `verify-` and a hash of what it compares
/// (source, target and tables, passwords left out), so a watch restarted with the same
/// arguments carries on its history.
pub fn watch_name(cfg: &VerifyConfig) -> String {
    if let Some(job) = &cfg.job {
        return job.clone();
    }
    let tables: Vec<String> = cfg.tables.iter().map(|t| format!("{t:?}")).collect();
    let what = format!("{}\n{}\n{}", cfg.source.display(), cfg.target.display, tables.join("\n"));
    format!("verify-{}", &blake3::hash(what.as_bytes()).to_hex()[..10])
}

/// Records a verification as the watch's next pass; returns its summary.
pub fn record(cfg: &VerifyConfig, watch: &str, v: &Verification) -> Result<PassSummary> {
    let mut summary = PassSummary::of(watch, v);
    let mut conn = PgConn::connect(&cfg.target, "")?;
    state::ensure_schema(&mut conn)?;
    let tables = serde_json::to_value(&summary.tables).expect("per-table numbers serialize");
    let verdict = serde_json::to_value(summary.verdict).expect("a verdict serializes");
    let recorded = state::record_pass(
        &mut conn,
        watch,
        v.seconds,
        verdict.as_str().unwrap_or("different"),
        (summary.rows_compared as i64, summary.rows_divergent as i64, summary.rows_in_flight as i64),
        summary.consistency,
        &tables,
    )?;
    summary.pass = recorded.pass;
    summary.started_at = recorded.started_at;
    summary.finished_at = recorded.finished_at;
    if let Some((since, secs)) = state::consistent_since(&mut conn, watch)? {
        summary.consistent_since = Some(since);
        summary.consistent_for_seconds = Some(secs);
    }
    Ok(summary)
}

/// A watch's last passes, oldest first (for the trend).
pub fn history(cfg: &VerifyConfig, watch: &str) -> Result<Vec<VerifyPass>> {
    let mut conn = PgConn::connect(&cfg.target, "SET default_transaction_read_only = on")?;
    state::load_passes(&mut conn, watch, TREND_PASSES)
}

/// Runs passes until `--passes` are done or `cancel` is set, `--watch` apart (measured from
/// the end of a pass). After each recorded pass, `on_pass` gets the verification, its
/// summary and the previous pass. An interrupted pass is not recorded; the watch then ends
/// with the last completed one. A pass that fails for a reason other than bad input is
/// reported and tried again at the next interval. Returns the last completed verification.
pub fn run(
    cfg: &VerifyConfig,
    cancel: &AtomicBool,
    mut on_pass: impl FnMut(&Verification, &PassSummary, Option<&VerifyPass>) -> Result<()>,
) -> Result<Verification> {
    let interval = cfg.live.watch.unwrap_or(Duration::from_secs(60));
    let watch = watch_name(cfg);
    let mut last: Option<Verification> = None;
    let mut done = 0u32;
    loop {
        let previous = {
            let mut conn = PgConn::connect(&cfg.target, "SET default_transaction_read_only = on")?;
            state::latest_passes(&mut conn, Some(&watch))?.pop()
        };
        match verify::run(cfg, cancel) {
            Ok(v) => {
                let summary = record(cfg, &watch, &v)?;
                on_pass(&v, &summary, previous.as_ref())?;
                last = Some(v);
                done += 1;
            }
            Err(_) if cancel.load(Ordering::SeqCst) => break,
            Err(e) if e.is_input() => return Err(e),
            Err(e) => {
                crate::say!("pass of {watch} failed: {e}; trying again in {}", human_duration(interval.as_secs_f64()))
            }
        }
        if cfg.live.passes.is_some_and(|n| done >= n) || !wait(interval, cancel) {
            break;
        }
    }
    last.ok_or(Error::Interrupted)
}

/// Waits `interval`; false when interrupted first.
fn wait(interval: Duration, cancel: &AtomicBool) -> bool {
    let until = Instant::now() + interval;
    while let Some(left) = until.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) {
        if cancel.load(Ordering::SeqCst) {
            return false;
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
    !cancel.load(Ordering::SeqCst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consistency_is_the_share_of_compared_rows_not_divergent_and_never_rounds_up_to_100() {
        assert_eq!(consistency(0, 0), 100.0);
        assert_eq!(consistency(0, 3), 0.0);
        assert_eq!(consistency(4, 1), 75.0);
        assert_eq!(consistency(4, 9), 0.0, "extra rows hold it at 0");
        assert_eq!(percent(consistency(100_000, 0)), "100%");
        assert_eq!(percent(consistency(100_000, 1)), "99.999%");
        assert_eq!(percent(consistency(1_000_000, 1)), "99.999%");
        assert_eq!(percent(consistency(40_000, 12)), "99.970%");
        assert_eq!(percent(consistency(2000, 1)), "99.950%");
        assert_eq!(percent(consistency(1_000_000_000, 1)), "99.999%");
    }
}
