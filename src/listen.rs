//! The HTTP server of `--listen`: `/metrics`, `/api/status` and `/` from the live view, and
//! with `--control` the POSTs that change the throttle. It runs on threads of its own (tiny_http
//! parses HTTP; one thread answers, one feeds the rates), reads the live view's snapshot, and
//! never touches a worker: a slow or hostile client holds only this server.
//!
//! A control request has the effect `rangecopy throttle` has: for a copy it writes the job's
//! row in the target's state, which the run's control thread reads every second; a verify has
//! no recorded job, so its own throttle is changed in place. This module must never print or
//! serve a URL or a password.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tiny_http::{Header, Method, Request, Response, Server};

use crate::config::PgEndpoint;
use crate::error::{redact, Error, Result};
use crate::live::Live;
use crate::pg::PgConn;
use crate::state;
use crate::throttle::PauseReason;

/// A request body larger than this is refused (a rate change is a few dozen bytes).
const MAX_BODY: u64 = 4096;

/// What a control request changes.
pub enum Control {
    /// A copy job's throttle in the target's state.
    Job { target: Box<PgEndpoint>, job: String },
    /// The run's own throttle (verify).
    InProcess,
}

/// Binds `addr` and serves the live view until the process ends; returns the address bound
/// (port 0 becomes the one the system chose). Failing to bind is bad input: nothing has been
/// written yet.
pub fn start(addr: SocketAddr, live: Arc<Live>, control: Option<Control>) -> Result<SocketAddr> {
    let server = Server::http(addr).map_err(|e| {
        Error::input(format!("--listen {addr}: cannot listen there ({e}); choose another port or address"))
    })?;
    let bound = server.server_addr().to_ip().unwrap_or(addr);
    let with_control = control.is_some();
    let sampled = live.clone();
    std::thread::Builder::new()
        .name("listen-rates".into())
        .spawn(move || loop {
            sampled.sample();
            std::thread::sleep(Duration::from_secs(1));
        })
        .map_err(|e| Error::io("starting the --listen server", e))?;
    std::thread::Builder::new()
        .name("listen".into())
        .spawn(move || {
            for request in server.incoming_requests() {
                answer(request, &live, control.as_ref());
            }
        })
        .map_err(|e| Error::io("starting the --listen server", e))?;
    if crate::log::json() {
        crate::log::event("listening", json!({ "address": bound.to_string(), "control": with_control }));
    } else {
        crate::say!("listening on http://{bound}/ (live status; /metrics for Prometheus, /api/status as JSON)");
    }
    Ok(bound)
}

/// What the server answers: status code, content type, body.
struct Reply {
    code: u16,
    content_type: &'static str,
    body: String,
    allow: Option<&'static str>,
}

impl Reply {
    fn new(code: u16, content_type: &'static str, body: String) -> Self {
        Reply { code, content_type, body, allow: None }
    }

    fn json(code: u16, value: serde_json::Value) -> Self {
        Reply::new(code, "application/json", value.to_string())
    }

    fn error(code: u16, message: impl Into<String>) -> Self {
        Reply::json(code, json!({ "error": redact(&message.into()) }))
    }
}

fn answer(mut request: Request, live: &Live, control: Option<&Control>) {
    let path = request.url().split('?').next().unwrap_or("").to_string();
    let method = request.method().clone();
    let reply = route(&method, &path, &mut request, live, control);
    let mut response = Response::from_string(reply.body).with_status_code(reply.code);
    let header =
        |name: &str, value: &str| Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("a valid header");
    response.add_header(header("Content-Type", reply.content_type));
    response.add_header(header("Cache-Control", "no-store"));
    if let Some(allow) = reply.allow {
        response.add_header(header("Allow", allow));
    }
    // A client that went away is no concern of the run.
    let _ = request.respond(response);
}

fn route(method: &Method, path: &str, request: &mut Request, live: &Live, control: Option<&Control>) -> Reply {
    let get = matches!(method, Method::Get | Method::Head);
    let post = *method == Method::Post;
    match path {
        "/" | "/index.html" if get => Reply::new(200, "text/html; charset=utf-8", crate::live::page()),
        "/metrics" if get => {
            Reply::new(200, "text/plain; version=0.0.4; charset=utf-8", crate::live::metrics(&live.status()))
        }
        "/api/status" if get => match serde_json::to_string(&live.status()) {
            Ok(body) => Reply::new(200, "application/json", body),
            Err(e) => Reply::error(500, format!("could not render the status: {e}")),
        },
        "/api/pause" | "/api/resume" | "/api/rate" if post => match control {
            None => Reply::error(
                403,
                "changing the job through HTTP is off; start rangecopy with --listen ADDR --control to allow it \
                 (or use `rangecopy throttle`)",
            ),
            Some(_) if cross_site(request) => Reply::error(
                403,
                "a control request from a browser is taken only from this server's own page, opened by its IP \
                 address or localhost; send it directly otherwise (curl, a script)",
            ),
            Some(control) => match change(path, request, live, control) {
                Ok(reply) => reply,
                Err(reply) => reply,
            },
        },
        "/" | "/index.html" | "/metrics" | "/api/status" => {
            Reply { allow: Some("GET, HEAD"), ..Reply::error(405, format!("{path} answers GET only")) }
        }
        "/api/pause" | "/api/resume" | "/api/rate" => {
            Reply { allow: Some("POST"), ..Reply::error(405, format!("{path} answers POST only")) }
        }
        _ => Reply::error(404, format!("no such page {path:?}; try /, /metrics or /api/status")),
    }
}

/// Whether a browser sent the request from a page of another site: it names an `Origin` whose
/// host is not the one the request was sent to. Any web page a user opens could otherwise pause
/// the job with a form; tools (curl, scripts) send no `Origin`.
fn cross_site(request: &Request) -> bool {
    let header = |name: &'static str| {
        request.headers().iter().find(|h| h.field.equiv(name)).map(|h| h.value.as_str().to_string())
    };
    browser_request_refused(header("Origin").as_deref(), header("Host").as_deref())
}

/// A browser's request (it names its `Origin`) is taken only from this server's own page:
/// the origin's host must be the `Host` the request was sent to, and that host a name no
/// outside site can point at this server. A page of a domain its owner re-points at this
/// machine's address (DNS rebinding) is same-origin to the browser; its host is a public name.
fn browser_request_refused(origin: Option<&str>, host: Option<&str>) -> bool {
    let Some(origin) = origin else { return false };
    let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    match host {
        Some(host) => !origin_host.eq_ignore_ascii_case(host) || !private_host(host),
        None => true,
    }
}

/// Whether a `Host` header (with or without a port) names this server by an address or a name
/// only a local resolver gives out: an IP address, `localhost`, a single label (a Kubernetes
/// Service, a host in /etc/hosts), or a name under `.localhost`, `.local`, `.internal`, `.svc`,
/// `.cluster.local` or `.home.arpa`.
fn private_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        // [v6]:port
        Some(rest) => return rest.split_once(']').is_some_and(|(ip, _)| ip.parse::<std::net::Ipv6Addr>().is_ok()),
        None => {
            host.rsplit_once(':').map_or(host, |(name, port)| if port.parse::<u16>().is_ok() { name } else { host })
        }
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if name.parse::<std::net::Ipv4Addr>().is_ok() || name == "localhost" || !name.contains('.') {
        return !name.is_empty();
    }
    [".localhost", ".local", ".internal", ".svc", ".cluster.local", ".home.arpa"].iter().any(|s| name.ends_with(s))
}

/// The limits a rate change asks for (`None`: leave as it is; 0 removes the limit).
#[derive(Debug, PartialEq, Eq)]
struct RateChange {
    rows_per_sec: Option<u64>,
    bytes_per_sec: Option<u64>,
}

/// `{"rows_per_sec": N, "bytes_per_sec": N}`, either or both.
fn rate_change(body: &str) -> std::result::Result<RateChange, String> {
    const EXPECTED: &str =
        "expected a JSON object such as {\"rows_per_sec\": 20000, \"bytes_per_sec\": 50000000} (0 removes a limit)";
    let value: serde_json::Value = serde_json::from_str(body).map_err(|_| EXPECTED.to_string())?;
    let object = value.as_object().ok_or(EXPECTED)?;
    if let Some(other) = object.keys().find(|k| *k != "rows_per_sec" && *k != "bytes_per_sec") {
        return Err(format!("unknown field {other:?}; {EXPECTED}"));
    }
    let field = |name: &str| match object.get(name) {
        None => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| format!("{name}: expected a whole number ≥ 0")),
    };
    let change = RateChange { rows_per_sec: field("rows_per_sec")?, bytes_per_sec: field("bytes_per_sec")? };
    if change == (RateChange { rows_per_sec: None, bytes_per_sec: None }) {
        return Err(EXPECTED.into());
    }
    Ok(change)
}

fn change(path: &str, request: &mut Request, live: &Live, control: &Control) -> std::result::Result<Reply, Reply> {
    let (paused, rates) = match path {
        "/api/pause" => (Some(true), RateChange { rows_per_sec: None, bytes_per_sec: None }),
        "/api/resume" => (Some(false), RateChange { rows_per_sec: None, bytes_per_sec: None }),
        _ => {
            let mut body = String::new();
            request
                .as_reader()
                .take(MAX_BODY + 1)
                .read_to_string(&mut body)
                .map_err(|_| Reply::error(400, "the request body is not UTF-8 text"))?;
            if body.len() as u64 > MAX_BODY {
                return Err(Reply::error(413, "the request body is too large"));
            }
            (None, rate_change(&body).map_err(|e| Reply::error(400, e))?)
        }
    };
    match control {
        Control::Job { target, job } => {
            let written = PgConn::connect(target, "").and_then(|mut conn| {
                state::write_throttle(&mut conn, job, rates.rows_per_sec, rates.bytes_per_sec, paused)
            });
            match written {
                Ok(true) => {}
                Ok(false) => {
                    return Err(Reply::error(409, format!("job {job:?} is not recorded on the target yet; try again")))
                }
                Err(e) => return Err(Reply::error(502, format!("could not change the job's throttle: {e}"))),
            }
        }
        Control::InProcess => {
            let throttle =
                live.throttle().ok_or_else(|| Reply::error(409, "the run has not started yet; try again"))?;
            if let Some(paused) = paused {
                throttle.set_pause(if paused { PauseReason::Operator } else { PauseReason::None });
            }
            let (rows, bytes) = throttle.rates();
            throttle.set_rates(rates.rows_per_sec.unwrap_or(rows), rates.bytes_per_sec.unwrap_or(bytes));
        }
    }
    let what = match (paused, &rates) {
        (Some(true), _) => "pause".to_string(),
        (Some(false), _) => "resume".to_string(),
        (None, r) => format!("rate {:?} rows/s, {:?} bytes/s", r.rows_per_sec, r.bytes_per_sec),
    };
    crate::log::event("control", json!({ "change": what }));
    Ok(Reply::json(200, json!({ "ok": true, "change": what, "note": "a running copy follows within about a second" })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_browser_steers_only_from_this_servers_own_page_at_a_private_name() {
        // Tools send no Origin.
        assert!(!browser_request_refused(None, Some("example.com")));
        for host in ["127.0.0.1:9187", "localhost:9187", "[::1]:9187", "rangecopy:9187", "rc.jobs.svc", "10.0.0.7"] {
            let origin = format!("http://{host}");
            assert!(!browser_request_refused(Some(&origin), Some(host)), "{host}");
        }
        // Another site's page.
        assert!(browser_request_refused(Some("http://elsewhere.example"), Some("127.0.0.1:9187")));
        // A public name re-pointed at this machine: same origin to the browser, refused.
        assert!(browser_request_refused(Some("http://evil.example:9187"), Some("evil.example:9187")));
        assert!(browser_request_refused(Some("http://127.0.0.1.nip.io:9187"), Some("127.0.0.1.nip.io:9187")));
        assert!(browser_request_refused(Some("http://localhost:9187"), None));
        assert!(!private_host(":9187") && !private_host("[not-an-ip]:1"));
    }

    #[test]
    fn a_rate_change_names_known_limits_as_whole_numbers() {
        assert_eq!(
            rate_change(r#"{"rows_per_sec": 100}"#),
            Ok(RateChange { rows_per_sec: Some(100), bytes_per_sec: None })
        );
        assert_eq!(
            rate_change(r#"{"rows_per_sec": 0, "bytes_per_sec": 5}"#),
            Ok(RateChange { rows_per_sec: Some(0), bytes_per_sec: Some(5) })
        );
        assert!(rate_change("{}").is_err());
        assert!(rate_change(r#"{"rows_per_sec": -1}"#).unwrap_err().contains("rows_per_sec"));
        assert!(rate_change(r#"{"rows": 5}"#).unwrap_err().contains("unknown field \"rows\""));
        assert!(rate_change("20k").is_err());
    }
}
