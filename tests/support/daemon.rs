//! Driving a daemon from a test: a free loopback port, a signed webhook
//! POST, a graceful stop.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A loopback port free right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// POST `body` to the daemon's webhook, signed with `secret` at `stamp`
/// (unix seconds) as the README documents; the HTTP status.
pub fn post(port: u16, body: &str, stamp: i64, secret: &[u8]) -> u16 {
    use hmac::{KeyInit, Mac};
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret).expect("key");
    mac.update(format!("{stamp}.{body}").as_bytes());
    let sig = hex::encode(mac.finalize().into_bytes());
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(
        s,
        "POST /webhook HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/json\r\nX-NHI-Assure-Timestamp: {stamp}\r\nX-NHI-Assure-Signature: sha256={sig}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// SIGTERM, then wait up to 15 s (kill after that); the exit code.
pub fn terminate(mut child: Child) -> Option<i32> {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(st)) = child.try_wait() {
            return st.code();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    None
}
