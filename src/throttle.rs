//! The rate budget every worker of a run shares: rows per second and bytes per second, and a
//! pause. Pacing is smooth: each block of rows waits for its own slot (a "generic cell rate"
//! schedule kept in atomics), so no worker sends a whole chunk and then sleeps for seconds.
//!
//! Rates and the pause change while a job runs (from `rangecopy throttle`, a lag check or a
//! throttle query); this module only holds and applies them. It must never query a database.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Why a run is paused, for progress and status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(u8)]
pub enum PauseReason {
    #[default]
    None = 0,
    /// `rangecopy throttle --pause`.
    Operator = 1,
    /// A replica lags more than `--max-lag`.
    Lag = 2,
    /// `--throttle-query` returned more than `--throttle-above`.
    Query = 3,
}

impl PauseReason {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => PauseReason::Operator,
            2 => PauseReason::Lag,
            3 => PauseReason::Query,
            _ => PauseReason::None,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            PauseReason::None => "running",
            PauseReason::Operator => "paused by `rangecopy throttle --pause`",
            PauseReason::Lag => "paused: replication lag above --max-lag",
            PauseReason::Query => "paused: --throttle-query above --throttle-above",
        }
    }
}

/// One budget (rows or bytes): units per second, and the time its next unit may go.
struct Budget {
    per_sec: AtomicU64,
    /// Nanoseconds since the throttle started at which the next unit may go.
    next_ns: AtomicU64,
}

impl Budget {
    fn new(per_sec: u64) -> Self {
        Budget { per_sec: AtomicU64::new(per_sec), next_ns: AtomicU64::new(0) }
    }

    /// Reserves `units`, returning when (ns since start) the caller may send them.
    fn reserve(&self, units: u64, now_ns: u64) -> u64 {
        let rate = self.per_sec.load(Relaxed);
        if rate == 0 || units == 0 {
            return now_ns;
        }
        let cost = (units as u128 * 1_000_000_000 / rate as u128).min(u64::MAX as u128) as u64;
        let mut current = self.next_ns.load(Relaxed);
        loop {
            // An idle budget does not bank time: pacing starts from now.
            let start = current.max(now_ns);
            match self.next_ns.compare_exchange_weak(current, start + cost, Relaxed, Relaxed) {
                Ok(_) => return start,
                Err(actual) => current = actual,
            }
        }
    }
}

/// The shared budget of a run.
pub struct Throttle {
    rows: Budget,
    bytes: Budget,
    pause: AtomicU8,
    /// Whether the last block had to wait for its slot (for progress).
    waited: AtomicBool,
    start: Instant,
}

impl Throttle {
    /// `0` means unlimited.
    pub fn new(rows_per_sec: u64, bytes_per_sec: u64) -> Self {
        Throttle {
            rows: Budget::new(rows_per_sec),
            bytes: Budget::new(bytes_per_sec),
            pause: AtomicU8::new(PauseReason::None as u8),
            waited: AtomicBool::new(false),
            start: Instant::now(),
        }
    }

    pub fn set_rates(&self, rows_per_sec: u64, bytes_per_sec: u64) {
        self.rows.per_sec.store(rows_per_sec, Relaxed);
        self.bytes.per_sec.store(bytes_per_sec, Relaxed);
    }

    pub fn rates(&self) -> (u64, u64) {
        (self.rows.per_sec.load(Relaxed), self.bytes.per_sec.load(Relaxed))
    }

    pub fn set_pause(&self, reason: PauseReason) {
        self.pause.store(reason as u8, Relaxed);
    }

    pub fn pause(&self) -> PauseReason {
        PauseReason::from_u8(self.pause.load(Relaxed))
    }

    /// Whether the run is being held back right now (paused, or waiting for its rate).
    pub fn holding(&self) -> Option<String> {
        match self.pause() {
            PauseReason::None if self.waited.load(Relaxed) => {
                let (rows, bytes) = self.rates();
                let mut limits = Vec::new();
                if rows > 0 {
                    limits.push(format!("{rows} rows/s"));
                }
                if bytes > 0 {
                    limits.push(format!("{bytes} bytes/s"));
                }
                Some(format!("throttled to {}", limits.join(" and ")))
            }
            PauseReason::None => None,
            reason => Some(reason.describe().to_string()),
        }
    }

    /// Waits until `rows` rows and `bytes` bytes may be sent: while paused, and then for their
    /// slot in the rate budget. Wakes early to an error when `cancel` is set.
    pub fn acquire(&self, rows: u64, bytes: u64, cancel: &AtomicBool) -> Result<()> {
        while self.pause() != PauseReason::None {
            if cancel.load(Relaxed) {
                return Err(Error::Interrupted);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let now = self.now_ns();
        let at = self.rows.reserve(rows, now).max(self.bytes.reserve(bytes, now));
        self.waited.store(at > now, Relaxed);
        while self.now_ns() < at {
            if cancel.load(Relaxed) {
                return Err(Error::Interrupted);
            }
            let left = Duration::from_nanos(at - self.now_ns().min(at));
            std::thread::sleep(left.min(Duration::from_millis(100)));
        }
        Ok(())
    }

    /// The block size that keeps pacing smooth: about a twentieth of a second of budget,
    /// between 16 KiB and `max`. `bytes_per_row` estimates the size of the rows.
    pub fn block_bytes(&self, max: usize, bytes_per_row: f64) -> usize {
        let (rows, bytes) = self.rates();
        let mut block = max as f64;
        if bytes > 0 {
            block = block.min(bytes as f64 / 20.0);
        }
        if rows > 0 {
            block = block.min(rows as f64 * bytes_per_row.max(1.0) / 20.0);
        }
        (block as usize).clamp(16 * 1024, max.max(16 * 1024))
    }

    fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos().min(u64::MAX as u128) as u64
    }
}

/// Parses a rate with an optional K/M/G suffix (powers of 1000 for rows, 1024 for bytes when
/// `binary`): `500`, `20k`, `1.5M`, `64MiB`.
pub fn parse_rate(text: &str, flag: &str, binary: bool) -> Result<u64> {
    let t = text.trim();
    let lower = t.to_ascii_lowercase();
    let (number, unit) = match lower.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => lower.split_at(i),
        None => (lower.as_str(), ""),
    };
    let base: f64 = if binary { 1024.0 } else { 1000.0 };
    let scale = match unit.trim_end_matches("/s").trim_end_matches('b').trim_end_matches('i') {
        "" => 1.0,
        "k" => base,
        "m" => base * base,
        "g" => base * base * base,
        _ => return Err(bad_rate(text, flag)),
    };
    let value: f64 = number.trim().parse().map_err(|_| bad_rate(text, flag))?;
    let rate = value * scale;
    if !(1.0..1e15).contains(&rate) {
        return Err(bad_rate(text, flag));
    }
    Ok(rate as u64)
}

fn bad_rate(text: &str, flag: &str) -> Error {
    Error::input(format!("{flag}: expected a positive rate like 5000, 20k or 1.5M, got {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_with_suffixes() {
        assert_eq!(parse_rate("5000", "--x", false).unwrap(), 5000);
        assert_eq!(parse_rate("20k", "--x", false).unwrap(), 20_000);
        assert_eq!(parse_rate("1.5M", "--x", false).unwrap(), 1_500_000);
        assert_eq!(parse_rate("64MiB", "--x", true).unwrap(), 64 << 20);
        assert_eq!(parse_rate("2G", "--x", true).unwrap(), 2 << 30);
        for bad in ["", "0", "-5", "abc", "5x", "0.1"] {
            assert!(parse_rate(bad, "--x", false).unwrap_err().is_input(), "{bad}");
        }
    }

    #[test]
    fn reservations_are_spaced_by_their_cost() {
        let b = Budget::new(1000);
        assert_eq!(b.reserve(100, 0), 0);
        // 100 units at 1000/s take 0.1 s: the next reservation starts then.
        assert_eq!(b.reserve(100, 0), 100_000_000);
        assert_eq!(b.reserve(100, 50_000_000), 200_000_000);
        // After an idle spell, pacing restarts from now instead of bursting.
        assert_eq!(b.reserve(100, 5_000_000_000), 5_000_000_000);
    }

    #[test]
    fn an_unlimited_budget_never_waits() {
        let t = Throttle::new(0, 0);
        let cancel = AtomicBool::new(false);
        let started = Instant::now();
        for _ in 0..1000 {
            t.acquire(1_000_000, 1 << 30, &cancel).unwrap();
        }
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(t.holding(), None);
    }

    #[test]
    fn a_paused_throttle_waits_and_says_why() {
        let t = Throttle::new(0, 0);
        t.set_pause(PauseReason::Operator);
        assert_eq!(t.holding().as_deref(), Some("paused by `rangecopy throttle --pause`"));
        let cancel = AtomicBool::new(true);
        assert!(matches!(t.acquire(1, 1, &cancel), Err(Error::Interrupted)));
    }

    #[test]
    fn blocks_shrink_at_low_rates() {
        let t = Throttle::new(0, 0);
        assert_eq!(t.block_bytes(1 << 20, 100.0), 1 << 20);
        t.set_rates(1000, 0);
        assert_eq!(t.block_bytes(1 << 20, 100.0), 16 * 1024);
        t.set_rates(0, 10 << 20);
        assert_eq!(t.block_bytes(1 << 20, 100.0), (10 << 20) / 20);
    }
}
