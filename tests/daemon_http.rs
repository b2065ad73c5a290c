//! The daemon's HTTP side under abuse (debug build, where arithmetic
//! overflow panics): dripped headers and bodies, idle connections, more
//! connections than the cap, oversized bodies, absurd timestamps, replays
//! in another spelling, after a restart and on another replica, and
//! repeated failed authentication.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "support/demo.rs"]
mod demo;
#[path = "support/pg.rs"]
mod pg;

const BIN: &str = env!("CARGO_BIN_EXE_nhi-assure");
const SECRET: &str = "http-test-secret-0123456789abcdef";
const EVENT: &str = r#"{"event":"approval.created","approval_id":"APR-PAY-001"}"#;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The demo with `[daemon]` settings `extra` (a schedule that never fires
/// again and the webhook on).
fn config(cfg: &Path, extra: &str) {
    let text = std::fs::read_to_string(cfg).expect("read")
        + "\n[daemon]\nschedule = \"0 0 0 1 1 *\"\nwebhook_secret_env = \"NHI_SECRET_WEBHOOK\"\n"
        + extra;
    std::fs::write(cfg, text).expect("write");
}

struct Daemon {
    child: Child,
    port: u16,
}

impl Daemon {
    fn start(cfg: &Path, env: &[(&str, &str)]) -> Daemon {
        let port = free_port();
        let child = Command::new(BIN)
            .args(["daemon", "--config", cfg.to_str().expect("utf8")])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("NHI_SECRET_WEBHOOK", SECRET)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn daemon");
        let d = Daemon { child, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        while request(port, "GET /healthz HTTP/1.0\r\n\r\n").0 != 200 {
            assert!(Instant::now() < deadline, "daemon did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
        d
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Send `raw`, read the whole answer: (status, body); status 0 when the
/// connection closed without an answer.
fn request(port: u16, raw: &str) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
    if s.write_all(raw.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let out = String::from_utf8_lossy(&out).to_string();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn sign(stamp: &str, body: &str) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac =
        <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()).expect("key");
    mac.update(format!("{stamp}.{body}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn post(port: u16, stamp: &str, sig: &str, body: &str) -> (u16, String) {
    request(
        port,
        &format!(
            "POST /webhook HTTP/1.0\r\nContent-Type: application/json\r\nX-NHI-Assure-Timestamp: {stamp}\r\nX-NHI-Assure-Signature: sha256={sig}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}

/// How long until the server closes a connection that wrote `first` and
/// then `drip` once every 200 ms (None: still open after `limit`).
fn closed_after(port: u16, first: &str, drip: Option<&str>, limit: Duration) -> Option<Duration> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let start = Instant::now();
    s.write_all(first.as_bytes()).expect("write");
    let mut buf = [0u8; 4096];
    while start.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return Some(start.elapsed()),
        }
        if let Some(d) = drip {
            if s.write_all(d.as_bytes()).is_err() {
                return Some(start.elapsed());
            }
        }
    }
    None
}

#[test]
fn an_extreme_timestamp_is_refused_without_a_panic() {
    let (_dir, cfg) = demo::demo();
    config(&cfg, "");
    let d = Daemon::start(&cfg, &[]);
    for stamp in [
        "-9223372036854775808",
        "9223372036854775807",
        "-1",
        "99999999999999999999",
    ] {
        let (code, body) = post(d.port, stamp, &sign(stamp, EVENT), EVENT);
        assert_eq!(code, 401, "timestamp {stamp}: {body}");
    }
    assert_eq!(request(d.port, "GET /healthz HTTP/1.0\r\n\r\n").0, 200);
    d.stop();
}

#[test]
fn a_replay_is_refused_in_any_spelling_and_after_a_restart() {
    let (_dir, cfg) = demo::demo();
    config(&cfg, "");
    let d = Daemon::start(&cfg, &[]);
    let stamp = chrono::Utc::now().timestamp().to_string();
    let sig = sign(&stamp, EVENT);
    assert_eq!(post(d.port, &stamp, &sig, EVENT).0, 202);
    let (code, body) = post(d.port, &stamp, &sig.to_uppercase(), EVENT);
    assert_eq!(code, 409, "the same MAC in upper case is a replay: {body}");
    d.stop();
    // The replay set lives in the store: a restarted daemon still refuses it.
    let d = Daemon::start(&cfg, &[]);
    assert_eq!(
        post(d.port, &stamp, &sig, EVENT).0,
        409,
        "replay after a restart"
    );
    let stamp2 = chrono::Utc::now().timestamp().to_string();
    let other = r#"{"event":"approval.created","approval_id":"APR-PAY-002"}"#;
    assert_eq!(post(d.port, &stamp2, &sign(&stamp2, other), other).0, 202);
    d.stop();
}

#[test]
fn a_replay_sent_to_another_replica_is_refused() {
    let (_dir, cfg) = demo::demo();
    config(&cfg, "lease_secs = 3\n");
    let db = pg::database();
    let env = [("NHI_ASSURE_STORE", db.as_str())];
    let a = Daemon::start(&cfg, &env);
    let b = Daemon::start(&cfg, &env);
    let stamp = chrono::Utc::now().timestamp().to_string();
    let sig = sign(&stamp, EVENT);
    assert_eq!(
        post(b.port, &stamp, &sig, EVENT).0,
        202,
        "accepted by one replica"
    );
    assert_eq!(
        post(a.port, &stamp, &sig, EVENT).0,
        409,
        "refused by the other"
    );
    assert_eq!(post(b.port, &stamp, &sig.to_uppercase(), EVENT).0, 409);
    a.stop();
    b.stop();
}

#[test]
fn failed_authentication_is_rate_limited_per_peer() {
    let (_dir, cfg) = demo::demo();
    config(
        &cfg,
        "auth_failure_burst = 3\nauth_failures_per_minute = 1\n",
    );
    let d = Daemon::start(&cfg, &[]);
    let stamp = chrono::Utc::now().timestamp().to_string();
    let forged = "00".repeat(32);
    for i in 0..3 {
        assert_eq!(post(d.port, &stamp, &forged, EVENT).0, 401, "failure {i}");
    }
    let (code, body) = post(d.port, &stamp, &forged, EVENT);
    assert_eq!(code, 429, "{body}");
    // Even a correct event waits until the bucket refills: no oracle.
    assert_eq!(post(d.port, &stamp, &sign(&stamp, EVENT), EVENT).0, 429);
    assert_eq!(request(d.port, "GET /healthz HTTP/1.0\r\n\r\n").0, 200);
    d.stop();
}

#[test]
fn dripped_headers_and_bodies_are_cut_off_and_bodies_bounded() {
    let (_dir, cfg) = demo::demo();
    config(&cfg,
        "header_timeout_secs = 1\nbody_timeout_secs = 1\nidle_timeout_secs = 30\nmax_body_bytes = 2048\n",
    );
    let d = Daemon::start(&cfg, &[]);
    let limit = Duration::from_secs(10);
    // Headers dripped a byte at a time: closed at the header deadline.
    let t = closed_after(d.port, "GET /healthz HTTP/1.1\r\n", Some("X"), limit)
        .expect("a dripping header is cut off");
    assert!(t < Duration::from_secs(5), "header drip closed after {t:?}");
    // A body dripped after its headers: answered 408 and closed.
    let stamp = chrono::Utc::now().timestamp().to_string();
    let head = format!(
        "POST /webhook HTTP/1.1\r\nHost: x\r\nX-NHI-Assure-Timestamp: {stamp}\r\nX-NHI-Assure-Signature: sha256={}\r\nContent-Length: 1000\r\n\r\n",
        "00".repeat(32)
    );
    let t = closed_after(d.port, &head, Some("x"), limit).expect("a dripping body is cut off");
    assert!(t < Duration::from_secs(5), "body drip closed after {t:?}");
    // Too large a body: 413.
    let big = "x".repeat(4096);
    let (code, _) = post(d.port, &stamp, &sign(&stamp, &big), &big);
    assert_eq!(code, 413);
    assert_eq!(request(d.port, "GET /healthz HTTP/1.0\r\n\r\n").0, 200);
    d.stop();
}

#[test]
fn idle_connections_are_closed() {
    let (_dir, cfg) = demo::demo();
    config(&cfg, "header_timeout_secs = 30\nidle_timeout_secs = 1\n");
    let d = Daemon::start(&cfg, &[]);
    let limit = Duration::from_secs(10);
    // A connection that sends nothing.
    let t = closed_after(d.port, "", None, limit).expect("an idle connection is closed");
    assert!(t < Duration::from_secs(5), "idle closed after {t:?}");
    // Half a request line, then nothing.
    let t = closed_after(d.port, "GET /hea", None, limit).expect("a stalled request is closed");
    assert!(t < Duration::from_secs(5), "stalled closed after {t:?}");
    d.stop();
}

#[test]
fn connections_over_the_cap_wait_for_a_free_slot() {
    let (_dir, cfg) = demo::demo();
    config(
        &cfg,
        "max_connections = 2\nheader_timeout_secs = 30\nidle_timeout_secs = 30\n",
    );
    let d = Daemon::start(&cfg, &[]);
    let hold1 = TcpStream::connect(("127.0.0.1", d.port)).expect("first");
    let _hold2 = TcpStream::connect(("127.0.0.1", d.port)).expect("second");
    std::thread::sleep(Duration::from_millis(300));
    let mut third = TcpStream::connect(("127.0.0.1", d.port)).expect("third (in the backlog)");
    third
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .expect("timeout");
    third
        .write_all(b"GET /healthz HTTP/1.0\r\n\r\n")
        .expect("write");
    let mut buf = [0u8; 256];
    let early = third.read(&mut buf);
    assert!(
        matches!(&early, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut),
        "served beyond the cap: {early:?}"
    );
    drop(hold1);
    third
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut out = Vec::new();
    let _ = third.read_to_end(&mut out);
    assert!(
        String::from_utf8_lossy(&out).starts_with("HTTP/1.0 200")
            || String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200"),
        "served once a slot freed: {:?}",
        String::from_utf8_lossy(&out)
    );
    d.stop();
}
