//! A loopback TCP proxy that tests put between rangecopy and one server, to break the network
//! on cue.
//!
//! `black_hole()` holds every connection open at that moment (their sockets stay open, nothing
//! passes), as a hung tunnel or a network that drops packets does. `cut()` closes every open
//! connection at once, as a reset does. `refuse(true)` makes new connections fail (they are
//! closed as soon as they are accepted) until `refuse(false)`; otherwise new connections pass.
//! The proxy only ever listens on 127.0.0.1 and forwards to the URL's own host and port.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{connect, scalar, setup, wait_until};

/// One proxied connection.
#[derive(Default)]
struct Link {
    /// Nothing passes any more, in either direction; the sockets stay open.
    held: AtomicBool,
    /// One side closed it, or the proxy cut it.
    closed: AtomicBool,
    /// Both sockets, kept so that `cut` can close them under the pumps' feet.
    sockets: Mutex<Vec<TcpStream>>,
}

/// A loopback TCP proxy in front of the server of a URL, stopped when dropped.
pub struct Proxy {
    port: u16,
    upstream: String,
    stop: Arc<AtomicBool>,
    refusing: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<Arc<Link>>>>,
}

/// How long a proxy thread blocks at most before it looks at its flags again.
const POLL: Duration = Duration::from_millis(50);

impl Proxy {
    /// Listens on a free loopback port and forwards every connection to `url`'s host and port.
    pub fn start(url: &str) -> Proxy {
        let upstream = host_port(url);
        let listener = TcpListener::bind("127.0.0.1:0").expect("a proxy port");
        listener.set_nonblocking(true).expect("a non-blocking listener");
        let port = listener.local_addr().expect("the proxy's address").port();
        let stop = Arc::new(AtomicBool::new(false));
        let refusing = Arc::new(AtomicBool::new(false));
        let links: Arc<Mutex<Vec<Arc<Link>>>> = Arc::default();
        let (to, halt, refuse, all) = (upstream.clone(), stop.clone(), refusing.clone(), links.clone());
        std::thread::spawn(move || {
            while !halt.load(Ordering::SeqCst) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                if refuse.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                // The accepted socket may inherit the listener's non-blocking mode on some
                // systems; the pumps want blocking reads with a timeout.
                let _ = client.set_nonblocking(false);
                let Ok(server) = TcpStream::connect(&to) else { continue };
                let link = Arc::new(Link::default());
                let clone = |s: &TcpStream| s.try_clone().expect("a socket clone");
                *link.sockets.lock().unwrap() = vec![clone(&client), clone(&server)];
                all.lock().unwrap().push(link.clone());
                let (c2, s2) = (clone(&client), clone(&server));
                for (from, into) in [(client, s2), (server, c2)] {
                    let (halt, link) = (halt.clone(), link.clone());
                    std::thread::spawn(move || pump(from, into, &halt, &link));
                }
            }
        });
        Proxy { port, upstream, stop, refusing, links }
    }

    /// `url` through the proxy.
    pub fn url(&self, url: &str) -> String {
        url.replacen(&self.upstream, &format!("127.0.0.1:{}", self.port), 1)
    }

    /// The connections neither side has closed.
    fn open_links(&self) -> Vec<Arc<Link>> {
        let links = self.links.lock().unwrap();
        links.iter().filter(|l| !l.closed.load(Ordering::SeqCst)).cloned().collect()
    }

    /// Holds every connection open now; returns how many there were.
    pub fn black_hole(&self) -> usize {
        let open = self.open_links();
        open.iter().for_each(|l| l.held.store(true, Ordering::SeqCst));
        open.len()
    }

    /// Closes every connection open now (held ones too), on both sides at once; returns how
    /// many there were. New connections still pass unless `refuse(true)` was called first.
    pub fn cut(&self) -> usize {
        let open = self.open_links();
        for link in &open {
            link.closed.store(true, Ordering::SeqCst);
            for socket in link.sockets.lock().unwrap().drain(..) {
                let _ = socket.shutdown(Shutdown::Both);
            }
        }
        open.len()
    }

    /// While `on`, new connections are closed as soon as they are accepted, as an unreachable
    /// server's would fail; connections already open are left as they are.
    pub fn refuse(&self, on: bool) {
        self.refusing.store(on, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // The threads let go of their sockets within a poll.
        std::thread::sleep(POLL * 4);
    }
}

/// Forwards `from` into `into` until either closes, the link is held (then it neither reads
/// nor writes, keeping both sockets open) or the proxy stops.
fn pump(mut from: TcpStream, mut into: TcpStream, stop: &AtomicBool, link: &Link) {
    let _ = from.set_read_timeout(Some(POLL));
    let _ = into.set_write_timeout(Some(POLL));
    let mut buf = vec![0u8; 64 << 10];
    let passing = || !stop.load(Ordering::SeqCst) && !link.held.load(Ordering::SeqCst);
    while !stop.load(Ordering::SeqCst) {
        if link.held.load(Ordering::SeqCst) {
            std::thread::sleep(POLL);
            continue;
        }
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if is_timeout(&e) => continue,
            Err(_) => break,
        };
        let mut rest = &buf[..n];
        while !rest.is_empty() && passing() {
            match into.write(rest) {
                Ok(0) => break,
                Ok(w) => rest = &rest[w..],
                Err(e) if is_timeout(&e) => {}
                Err(_) => break,
            }
        }
    }
    if !link.held.load(Ordering::SeqCst) {
        link.closed.store(true, Ordering::SeqCst);
        let _ = into.shutdown(Shutdown::Write);
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted)
}

/// `host:port` of a URL.
fn host_port(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    authority.rsplit_once('@').map_or(authority, |(_, h)| h).to_string()
}

/// A PostgreSQL session through the proxy dies when the proxy cuts it: the client's next query
/// fails, the server ends the backend, a new connection fails while the proxy refuses and
/// passes again afterwards.
#[test]
fn cut_closes_a_postgresql_session_at_once_and_refuse_keeps_new_ones_out() {
    let Some(db) = setup("proxy_cut") else { return };
    let proxy = Proxy::start(&db.target);
    let through = proxy.url(&db.target);
    assert_ne!(through, db.target, "the URL should lead through the proxy");
    let mut session = connect(&through);
    let pid: i32 = session.query_one("SELECT pg_backend_pid()", &[]).expect("a query through the proxy").get(0);
    let alive = format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}");
    assert_eq!(scalar::<i64>(&db.target, &alive), 1, "the session should be on the server");

    proxy.refuse(true);
    assert_eq!(proxy.cut(), 1, "one connection was open through the proxy");
    let after = session.query_one("SELECT 1", &[]);
    assert!(after.is_err(), "a query on a cut connection should fail");
    assert!(
        wait_until(Duration::from_secs(10), || scalar::<i64>(&db.target, &alive) == 0),
        "the server should end the cut session's backend"
    );
    assert!(crate::common::Client::connect(&through).is_err(), "a new connection should fail while refused");
    assert_eq!(proxy.cut(), 0, "nothing is left open to cut");

    proxy.refuse(false);
    let mut again = connect(&through);
    let one: i32 = again.query_one("SELECT 1", &[]).expect("a query after refuse(false)").get(0);
    assert_eq!(one, 1);
}
