//! Waiting for a server: the process's interrupt, the register of calls that are waiting for
//! a peer right now, and running a blocking call on a thread of its own so that its caller
//! can stop waiting for it.
//!
//! A peer that stops answering while its socket stays open (a network that drops packets, an
//! SSH tunnel or a port map that hangs) holds a call for ever: TCP notices a peer that is gone,
//! not one that is silent. So the connection modules bound every wait by `--io-timeout` and
//! give a connection up when the process is interrupted, and every call that waits for a server
//! registers here while it waits, so that the pipeline can say which connection is held and by
//! what. This module sits below every stage; it decides no policy (what is retried) and never
//! prints.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Once the process is interrupted, the longest any call begun afterwards may wait (a rollback,
/// recording the job's end, ending a session that was given up): the process stops within
/// seconds whatever the servers do.
pub const STOP_BOUND: Duration = Duration::from_secs(3);

/// How often a waiting call looks at the interrupt and at its peer's silence.
pub const TICK: Duration = Duration::from_millis(100);

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Records that the process was asked to stop (Ctrl-C, SIGTERM); returns whether it had been
/// already. Calls waiting at that moment give their connections up at once.
pub fn interrupt() -> bool {
    INTERRUPTED.swap(true, Ordering::SeqCst)
}

/// Whether the process was asked to stop.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// The bound on a call that begins now: `bound` (None: unbounded), or `STOP_BOUND` at most once
/// the process is interrupted. The second value says whether the call is to be stopped by an
/// interrupt (it is not when the interrupt came first: the call is part of stopping).
pub fn bound_for_call(bound: Option<Duration>) -> (Option<Duration>, bool) {
    if interrupted() {
        (Some(bound.map_or(STOP_BOUND, |b| b.min(STOP_BOUND))), false)
    } else {
        (bound, true)
    }
}

// ---------------------------------------------------------------------------------------------
// Who is waiting
// ---------------------------------------------------------------------------------------------

thread_local! {
    /// What this thread is working on (`chunk 7 of shop.orders`), named in reports of its waits.
    static ACTIVITY: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Names what the current thread works on until the guard is dropped.
pub struct Activity(Option<String>);

pub fn doing(activity: impl Into<String>) -> Activity {
    Activity(ACTIVITY.with(|a| a.replace(Some(activity.into()))))
}

impl Drop for Activity {
    fn drop(&mut self) {
        let previous = self.0.take();
        ACTIVITY.with(|a| *a.borrow_mut() = previous);
    }
}

fn clock() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

struct Entry {
    endpoint: String,
    what: String,
    /// When the peer was last heard from (or the wait began), in `clock()` nanoseconds.
    since: AtomicU64,
    /// The caller is busy with something else (handing a block on) and not waiting meanwhile.
    paused: AtomicBool,
    /// Already reported as held.
    reported: AtomicBool,
    /// Whether silence here is suspicious; a statement that legitimately runs long (an index
    /// build) is not reported as held.
    watched: bool,
}

fn register() -> &'static Mutex<Vec<Arc<Entry>>> {
    static WAITS: OnceLock<Mutex<Vec<Arc<Entry>>>> = OnceLock::new();
    WAITS.get_or_init(|| Mutex::new(Vec::new()))
}

/// A call waiting for a server, registered until dropped.
pub struct Waiting(Arc<Entry>);

impl Waiting {
    /// Registers a wait for `endpoint` (password-free), doing `what`; `watched`: whether a long
    /// silence is reported (false for statements that legitimately run long).
    pub fn begin(endpoint: &str, what: &str, watched: bool) -> Waiting {
        let what = match ACTIVITY.with(|a| a.borrow().clone()) {
            Some(activity) => format!("{what}; {activity}"),
            None => what.to_string(),
        };
        let entry = Arc::new(Entry {
            endpoint: endpoint.to_string(),
            what,
            since: AtomicU64::new(clock()),
            paused: AtomicBool::new(false),
            reported: AtomicBool::new(false),
            watched,
        });
        register().lock().unwrap_or_else(|e| e.into_inner()).push(entry.clone());
        Waiting(entry)
    }

    /// The peer sent something: the silence starts again from now.
    pub fn heard(&self) {
        self.0.since.store(clock(), Ordering::Relaxed);
        self.0.reported.store(false, Ordering::Relaxed);
    }

    /// The caller stops waiting for the peer for a while (it hands a block on).
    pub fn pause(&self) {
        self.0.paused.store(true, Ordering::Relaxed);
    }

    /// The caller waits for the peer again.
    pub fn resume(&self) {
        self.heard();
        self.0.paused.store(false, Ordering::Relaxed);
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let mut waits = register().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = waits.iter().position(|e| Arc::ptr_eq(e, &self.0)) {
            waits.swap_remove(i);
        }
    }
}

/// A call that has waited long for a silent peer.
#[derive(Debug, Clone)]
pub struct Held {
    /// The password-free URL of the server.
    pub endpoint: String,
    /// What the call does, and for what (`reading COPY data from the source; chunk 7 of t`).
    pub what: String,
    pub waited: Duration,
    /// Whether this is the first time this wait is reported.
    pub first: bool,
}

/// The watched calls whose peer has been silent for at least `longer_than`, longest first;
/// each is `first` only the first time it is returned (per silence).
pub fn held(longer_than: Duration) -> Vec<Held> {
    let now = clock();
    let waits = register().lock().unwrap_or_else(|e| e.into_inner());
    let mut held: Vec<Held> = waits
        .iter()
        .filter(|e| e.watched && !e.paused.load(Ordering::Relaxed))
        .filter_map(|e| {
            let waited = Duration::from_nanos(now.saturating_sub(e.since.load(Ordering::Relaxed)));
            (waited >= longer_than).then(|| Held {
                endpoint: e.endpoint.clone(),
                what: e.what.clone(),
                waited,
                first: !e.reported.swap(true, Ordering::Relaxed),
            })
        })
        .collect();
    held.sort_by_key(|h| std::cmp::Reverse(h.waited));
    held
}

// ---------------------------------------------------------------------------------------------
// Calls on a thread of their own
// ---------------------------------------------------------------------------------------------

/// A blocking call running on a thread of its own (see `detach`).
pub struct Detached<T> {
    result: crossbeam_channel::Receiver<T>,
}

/// Why `Detached::wait` returned without a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotYet {
    /// Still running.
    Running,
    /// The thread ended without a result (it panicked).
    Died,
}

/// Runs `f` on a thread of its own: for a blocking call that cannot be interrupted (a MySQL
/// read, a login to a server that never answers). A caller that stops waiting leaves the call
/// to finish or fail on its own; its result is then dropped.
pub fn detach<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Detached<T> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    Detached { result: rx }
}

impl<T> Detached<T> {
    /// The result, if it comes within `d`.
    pub fn wait(&self, d: Duration) -> Result<T, NotYet> {
        self.result.recv_timeout(d).map_err(|e| match e {
            crossbeam_channel::RecvTimeoutError::Timeout => NotYet::Running,
            crossbeam_channel::RecvTimeoutError::Disconnected => NotYet::Died,
        })
    }
}

/// Runs `f` on a thread of its own and waits at most `limit` for it (see `detach`).
pub fn with_deadline<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    detach(f).wait(limit).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silent_watched_waits_are_reported_once_per_silence() {
        let _doing = doing("chunk 7 of shop.orders");
        let quiet = Waiting::begin("postgres://u@h:1/quiet-test", "reading", true);
        let patient = Waiting::begin("postgres://u@h:1/patient-test", "building an index", false);
        std::thread::sleep(Duration::from_millis(30));
        let mine = |held: Vec<Held>| held.into_iter().filter(|h| h.endpoint.ends_with("-test")).collect::<Vec<_>>();
        let first = mine(held(Duration::from_millis(20)));
        assert_eq!(first.len(), 1, "{first:?}");
        assert_eq!(first[0].what, "reading; chunk 7 of shop.orders");
        assert!(first[0].first);
        assert!(!mine(held(Duration::from_millis(20)))[0].first, "reported once");
        quiet.heard();
        assert!(mine(held(Duration::from_millis(20))).is_empty(), "heard from: not silent");
        quiet.pause();
        std::thread::sleep(Duration::from_millis(30));
        assert!(mine(held(Duration::from_millis(20))).is_empty(), "paused: not waiting");
        quiet.resume();
        drop((quiet, patient));
        std::thread::sleep(Duration::from_millis(30));
        assert!(mine(held(Duration::ZERO)).is_empty(), "ended waits leave the register");
    }

    #[test]
    fn detached_calls_can_be_left_behind() {
        let slow = detach(|| std::thread::sleep(Duration::from_secs(5)));
        assert_eq!(slow.wait(Duration::from_millis(10)).unwrap_err(), NotYet::Running);
        assert_eq!(with_deadline(Duration::from_secs(5), || 7), Some(7));
    }
}
