//! `POST /webhook`: signed approval events.
//!
//! A request is checked in this order, cheapest refusal first: the peer's
//! budget of failed authentications (token bucket per IP: over it, 429
//! without looking further), the body read within its time and size, the
//! signature headers (timestamp inside the window, `sha256=` + hex
//! HMAC-SHA256 of `"{timestamp}.{body}"`), then the replay check in the
//! store, keyed on the MAC's decoded bytes — so the same signature spelt in
//! another case is the same event — and kept until the event's timestamp
//! leaves the window: it survives restarts and every replica sharing the
//! store sees it. Only then is the body parsed as an event.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;

use super::Shared;
use crate::store::SqlStore;

// One scheme for both directions: the webhook sink signs with it.
pub use crate::notify::signature::{SIGNATURE_HEADER, TIMESTAMP_HEADER};

/// Webhook verification state.
pub(super) struct Webhook {
    pub(super) secret: Vec<u8>,
    pub(super) window: i64,
    pub(super) store: SqlStore,
    pub(super) limiter: FailureLimiter,
    pub(super) body_timeout: Duration,
    pub(super) max_body: usize,
}

/// An approval event.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// `approval.created`, `approval.revoked`, `task.completed`, `revocation.requested`.
    pub event: String,
    /// The approval concerned.
    #[serde(default)]
    pub approval_id: Option<String>,
    /// The identity concerned.
    #[serde(default)]
    pub subject: Option<String>,
    /// Who asked (revocations).
    #[serde(default)]
    pub requested_by: Option<String>,
    /// Why (revocations).
    #[serde(default)]
    pub reason: Option<String>,
}

/// Why a request's signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A signature header is absent or not text.
    #[error("missing signature headers")]
    Missing,
    /// The timestamp is not an integer.
    #[error("bad timestamp")]
    BadTimestamp,
    /// The timestamp is too far from now.
    #[error("timestamp outside the window")]
    OutsideWindow,
    /// The signature is not `sha256=` + 64 hex digits.
    #[error("bad signature format")]
    BadFormat,
    /// The MAC does not match.
    #[error("signature mismatch")]
    Mismatch,
}

/// A request whose signature holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The signed timestamp.
    pub timestamp: i64,
    /// The MAC, decoded: the replay key whatever the header's spelling.
    pub mac: Vec<u8>,
}

type Hmac256 = hmac::Hmac<sha2::Sha256>;

/// Check the signature headers of a request with `body` at `now` (Unix
/// seconds). Pure, so it is property-tested and fuzzed on any input.
pub fn verify(
    secret: &[u8],
    window: i64,
    now: i64,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Verified, Refusal> {
    use hmac::{KeyInit, Mac};
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let (Some(stamp), Some(sig)) = (header(TIMESTAMP_HEADER), header(SIGNATURE_HEADER)) else {
        return Err(Refusal::Missing);
    };
    let timestamp: i64 = stamp.parse().map_err(|_| Refusal::BadTimestamp)?;
    // abs_diff cannot overflow, whatever the sender put in the header.
    if now.abs_diff(timestamp) > window.unsigned_abs() {
        return Err(Refusal::OutsideWindow);
    }
    let given = sig
        .strip_prefix("sha256=")
        .filter(|h| h.len() == 64)
        .and_then(|h| hex::decode(h).ok())
        .ok_or(Refusal::BadFormat)?;
    let mut mac = <Hmac256 as KeyInit>::new_from_slice(secret).map_err(|_| Refusal::Mismatch)?;
    mac.update(stamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&given).map_err(|_| Refusal::Mismatch)?;
    Ok(Verified {
        timestamp,
        mac: given,
    })
}

/// Parse a verified body as an event.
pub fn parse_event(body: &[u8]) -> Result<Event, String> {
    serde_json::from_slice(body).map_err(|e| format!("event: {e}"))
}

/// Failed authentications per peer address, as token buckets: each failure
/// takes a token, tokens come back at a steady rate, an empty bucket means
/// 429. The map is bounded: full buckets are forgotten when it grows.
pub(super) struct FailureLimiter {
    burst: f64,
    per_sec: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

/// Peers tracked at once before full buckets are dropped.
const MAX_TRACKED_PEERS: usize = 10_000;

impl FailureLimiter {
    pub(super) fn new(burst: u64, per_minute: u64) -> FailureLimiter {
        FailureLimiter {
            burst: burst as f64,
            per_sec: per_minute as f64 / 60.0,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn level(&self, (tokens, at): (f64, Instant), now: Instant) -> f64 {
        let earned = now.saturating_duration_since(at).as_secs_f64() * self.per_sec;
        (tokens + earned).min(self.burst)
    }

    /// Seconds until `ip` may try again, if it has no token left.
    pub(super) fn blocked(&self, ip: IpAddr) -> Option<u64> {
        let now = Instant::now();
        let buckets = self.buckets.lock().ok()?;
        let level = self.level(*buckets.get(&ip)?, now);
        if level >= 1.0 {
            return None;
        }
        let wait = ((1.0 - level) / self.per_sec).ceil();
        Some(if wait.is_finite() { wait as u64 } else { 60 })
    }

    /// Record a failed authentication from `ip`.
    pub(super) fn failed(&self, ip: IpAddr) {
        let now = Instant::now();
        let Ok(mut buckets) = self.buckets.lock() else {
            return;
        };
        if buckets.len() >= MAX_TRACKED_PEERS && !buckets.contains_key(&ip) {
            let burst = self.burst;
            buckets.retain(|_, b| self.level(*b, now) < burst);
            if buckets.len() >= MAX_TRACKED_PEERS {
                // Every tracked peer is failing: forget the oldest.
                if let Some(old) = buckets.iter().min_by_key(|(_, b)| b.1).map(|(k, _)| *k) {
                    buckets.remove(&old);
                }
            }
        }
        let b = buckets.entry(ip).or_insert((self.burst, now));
        let level = self.level(*b, now);
        *b = ((level - 1.0).max(0.0), now);
    }
}

fn refuse(code: StatusCode, why: impl std::fmt::Display) -> Response {
    (code, format!("{why}\n")).into_response()
}

/// 429 with `Retry-After` when `ip` has no failed authentication left.
pub(super) fn refuse_blocked(limiter: &FailureLimiter, ip: IpAddr) -> Option<Response> {
    let wait = limiter.blocked(ip)?;
    tracing::warn!(%ip, "too many failed authentications");
    let mut r = refuse(
        StatusCode::TOO_MANY_REQUESTS,
        "too many failed authentications",
    );
    if let Ok(v) = axum::http::HeaderValue::from_str(&wait.to_string()) {
        r.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
    }
    Some(r)
}

/// The body, read within `timeout` and `max` bytes, or the refusal.
pub(super) async fn read_body(
    body: axum::body::Body,
    timeout: Duration,
    max: usize,
) -> Result<axum::body::Bytes, Response> {
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, max)).await {
        Err(_) => Err(refuse(
            StatusCode::REQUEST_TIMEOUT,
            "body not received in time",
        )),
        Ok(Err(_)) => Err(refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            format_args!("body larger than {max} bytes or broken"),
        )),
        Ok(Ok(b)) => Ok(b),
    }
}

/// Verify, refuse replays, record revocations, wake the pass loop.
pub(super) async fn handler(
    State(s): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let Some(w) = &s.webhook else {
        return refuse(StatusCode::NOT_FOUND, "webhook not configured");
    };
    let ip = peer.ip();
    if let Some(r) = refuse_blocked(&w.limiter, ip) {
        return r;
    }
    let body = match read_body(body, w.body_timeout, w.max_body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let now = Utc::now().timestamp();
    let signed = match verify(&w.secret, w.window, now, &headers, &body) {
        Ok(v) => v,
        Err(why) => {
            w.limiter.failed(ip);
            tracing::warn!(%ip, %why, "webhook refused");
            return refuse(StatusCode::UNAUTHORIZED, why);
        }
    };
    // Kept until the timestamp leaves the window: after that the window
    // check refuses the event anyway.
    let until = signed.timestamp.saturating_add(w.window);
    match w.store.webhook_seen(&signed.mac, until, now).await {
        Ok(true) => return refuse(StatusCode::CONFLICT, "replayed event"),
        Ok(false) => {}
        Err(e) => {
            tracing::error!(error = %e, "webhook: replay check failed");
            return refuse(StatusCode::SERVICE_UNAVAILABLE, "store unavailable");
        }
    }
    let ev = match parse_event(&body) {
        Ok(e) => e,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e),
    };
    match ev.event.as_str() {
        "approval.revoked" | "revocation.requested" => {
            let Some(id) = ev.approval_id.as_deref() else {
                return refuse(StatusCode::BAD_REQUEST, "approval_id required");
            };
            let by = ev.requested_by.as_deref().unwrap_or("webhook");
            if let Err(e) = w
                .store
                .add_revocation(id, Utc::now(), by, ev.reason.as_deref())
                .await
            {
                return refuse(StatusCode::INTERNAL_SERVER_ERROR, e);
            }
            if let Ok(mut r) = s.revoked.lock() {
                r.insert(id.to_string());
            }
        }
        "approval.created" | "task.completed" => {}
        other => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format_args!("unknown event {other:?}"),
            )
        }
    }
    tracing::info!(event = %ev.event, approval = ?ev.approval_id, subject = ?ev.subject, "event accepted: targeted pass triggered");
    if let Ok(mut p) = s.pending.lock() {
        p.identities.extend(ev.subject.clone());
        p.approvals.extend(ev.approval_id.clone());
    }
    s.trigger.notify_one();
    (StatusCode::ACCEPTED, "accepted\n").into_response()
}

/// The fuzzing entry point (`fuzz/fuzz_targets/webhook.rs`), also run by the
/// property tests: `data` split at its first two newlines into the
/// timestamp header, the signature header and the body, checked as sent
/// and — so the event parser is reached too — signed correctly.
#[doc(hidden)]
pub fn fuzz_one(data: &[u8]) {
    use axum::http::HeaderValue;
    use hmac::{KeyInit, Mac};
    const KEY: &[u8] = b"fuzz-secret-0123456789abcdef";
    let mut parts = data.splitn(3, |b| *b == b'\n');
    let stamp = parts.next().unwrap_or_default();
    let sig = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default();
    let now = Utc::now().timestamp();
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(stamp) {
        headers.insert(TIMESTAMP_HEADER, v);
    }
    if let Ok(v) = HeaderValue::from_bytes(sig) {
        headers.insert(SIGNATURE_HEADER, v);
    }
    let _ = verify(KEY, 300, now, &headers, body);
    let _ = verify(KEY, i64::MAX, i64::MIN, &headers, body);
    // The same body, validly signed at `now`: verification holds and the
    // event parser sees the body.
    let Ok(mut mac) = <Hmac256 as KeyInit>::new_from_slice(KEY) else {
        return;
    };
    let now_text = now.to_string();
    mac.update(now_text.as_bytes());
    mac.update(b".");
    mac.update(body);
    let good = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let mut headers = HeaderMap::new();
    if let (Ok(t), Ok(s)) = (
        HeaderValue::from_str(&now_text),
        HeaderValue::from_str(&good),
    ) {
        headers.insert(TIMESTAMP_HEADER, t);
        headers.insert(SIGNATURE_HEADER, s);
    }
    let verified = verify(KEY, 300, now, &headers, body);
    assert!(verified.is_ok(), "a correct signature verifies");
    let _ = parse_event(body);
}
