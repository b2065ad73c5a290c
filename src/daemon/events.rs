//! `POST /v1/events/jira` and `POST /v1/events/servicenow`: ticket events
//! in the ticket systems' own shapes, each waking a targeted pass for the
//! subjects of the ticket it names, so a ticket closed as done ends its
//! access within seconds rather than at the next scheduled pass.
//!
//! A request is checked like `/webhook`, cheapest refusal first: the peer's
//! budget of failed authentications, the body read within its time and
//! size, the proof of origin, then — once the body is known to come from
//! the ticket system — its timestamp inside the window and the replay check
//! in the store (kept until the timestamp leaves the window).
//!
//! - **Jira** (an admin webhook with a secret): `X-Hub-Signature:
//!   sha256=<hex HMAC-SHA256 of the raw body>`; the body is Jira's own
//!   (`webhookEvent`, `timestamp` in milliseconds, `issue.key`,
//!   `changelog`). `jira:issue_updated`, `jira:issue_created` and
//!   `jira:issue_deleted` trigger a pass; any other event is acknowledged
//!   and ignored. The replay key is the MAC.
//! - **ServiceNow** (an outbound REST message): the hex HMAC-SHA256 of the
//!   body in the configured header (`sha256=` optional), or basic auth with
//!   the configured `user:password`. Its body is the message's template:
//!   `{"number": "RITM0010001", "timestamp": <Unix seconds>}` (more fields
//!   are ignored). The replay key is the MAC, or the body's SHA-256 under
//!   basic auth.
//!
//! The subjects of a ticket are those of the last pass's approvals (and
//! unmapped records) whose `reference` is its key; a ticket the last pass
//! did not know is resolved against the approvals the pass reads, and a
//! ticket naming nothing there is a full pass (it may be a new approval for
//! anyone).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;

use super::webhook::{read_body, refuse_blocked, FailureLimiter, Refusal};
use super::Shared;
use crate::store::SqlStore;

/// Header carrying Jira's signature.
pub const JIRA_SIGNATURE_HEADER: &str = "x-hub-signature";

/// Verification state of the ticket event routes.
pub(super) struct Events {
    pub(super) jira: Option<Vec<u8>>,
    pub(super) servicenow: ServiceNowAuth,
    pub(super) window: i64,
    pub(super) store: SqlStore,
    pub(super) limiter: FailureLimiter,
    pub(super) body_timeout: Duration,
    pub(super) max_body: usize,
}

/// How ServiceNow messages prove their origin; both unset: the route is off.
#[derive(Default)]
pub struct ServiceNowAuth {
    /// HMAC-SHA256 key.
    pub hmac: Option<Vec<u8>>,
    /// Header carrying the hex HMAC, lower case.
    pub header: String,
    /// `user:password` of basic auth.
    pub basic: Option<Vec<u8>>,
}

impl ServiceNowAuth {
    fn on(&self) -> bool {
        self.hmac.is_some() || self.basic.is_some()
    }
}

type Hmac256 = hmac::Hmac<sha2::Sha256>;

/// `hex` (with an optional `sha256=` prefix) decoded, if it is a SHA-256 MAC.
fn hex_mac(hex_text: &str) -> Option<Vec<u8>> {
    let h = hex_text.strip_prefix("sha256=").unwrap_or(hex_text);
    (h.len() == 64).then(|| hex::decode(h).ok()).flatten()
}

fn check_mac(secret: &[u8], given: &[u8], body: &[u8]) -> Result<(), Refusal> {
    use hmac::{KeyInit, Mac};
    let mut mac = <Hmac256 as KeyInit>::new_from_slice(secret).map_err(|_| Refusal::Mismatch)?;
    mac.update(body);
    mac.verify_slice(given).map_err(|_| Refusal::Mismatch)
}

/// Check a Jira delivery's `X-Hub-Signature`; the MAC, decoded (the replay
/// key whatever the spelling of its hex).
pub fn verify_jira(secret: &[u8], headers: &HeaderMap, body: &[u8]) -> Result<Vec<u8>, Refusal> {
    let sig = headers
        .get(JIRA_SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or(Refusal::Missing)?;
    let given = sig
        .strip_prefix("sha256=")
        .and_then(hex_mac)
        .ok_or(Refusal::BadFormat)?;
    check_mac(secret, &given, body)?;
    Ok(given)
}

/// Check a ServiceNow message's HMAC header or basic auth; the replay key.
pub fn verify_servicenow(
    auth: &ServiceNowAuth,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Vec<u8>, Refusal> {
    use base64::Engine as _;
    use hmac::{KeyInit, Mac};
    use sha2::Digest as _;
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    if let (Some(secret), Some(sig)) = (&auth.hmac, header(&auth.header)) {
        let given = hex_mac(sig).ok_or(Refusal::BadFormat)?;
        check_mac(secret, &given, body)?;
        return Ok(given);
    }
    let (Some(expected), Some(basic)) = (
        &auth.basic,
        header("authorization").and_then(|a| a.strip_prefix("Basic ")),
    ) else {
        return Err(Refusal::Missing);
    };
    let given = base64::engine::general_purpose::STANDARD
        .decode(basic.trim())
        .map_err(|_| Refusal::BadFormat)?;
    // Compared as MACs under one key: constant time, whatever the lengths.
    let tag = |v: &[u8]| {
        let mut m = <Hmac256 as KeyInit>::new_from_slice(b"nhi-assure basic auth")
            .map_err(|_| Refusal::Mismatch)?;
        m.update(v);
        Ok::<_, Refusal>(m)
    };
    let want = tag(expected)?.finalize().into_bytes();
    tag(&given)?
        .verify_slice(&want)
        .map_err(|_| Refusal::Mismatch)?;
    Ok(sha2::Sha256::digest(body).to_vec())
}

/// A Jira webhook body, as far as it is read.
#[derive(Debug, Deserialize)]
pub struct JiraEvent {
    /// `jira:issue_updated`, ...
    #[serde(rename = "webhookEvent")]
    pub webhook_event: String,
    /// When Jira sent it, in Unix milliseconds.
    pub timestamp: i64,
    /// The issue.
    pub issue: Option<JiraIssue>,
}

/// The issue of a Jira event.
#[derive(Debug, Deserialize)]
pub struct JiraIssue {
    /// Its key (`SEC-12`).
    pub key: String,
}

/// A ServiceNow outbound message body, as far as it is read.
#[derive(Debug, Deserialize)]
pub struct ServiceNowEvent {
    /// The record's number (`RITM0010001`, `CHG0030001`).
    pub number: String,
    /// When it was sent, Unix seconds.
    pub timestamp: i64,
}

/// Jira events that may change an approval.
const JIRA_EVENTS: [&str; 3] = [
    "jira:issue_updated",
    "jira:issue_created",
    "jira:issue_deleted",
];

fn refuse(code: StatusCode, why: impl std::fmt::Display) -> Response {
    (code, format!("{why}\n")).into_response()
}

/// Which ticket system a request claims to come from.
#[derive(Clone, Copy)]
enum System {
    Jira,
    ServiceNow,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Jira => "jira",
            System::ServiceNow => "servicenow",
        }
    }
}

/// `POST /v1/events/jira`.
pub(super) async fn jira(
    s: State<Arc<Shared>>,
    peer: ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    handle(System::Jira, s, peer, headers, body).await
}

/// `POST /v1/events/servicenow`.
pub(super) async fn servicenow(
    s: State<Arc<Shared>>,
    peer: ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    handle(System::ServiceNow, s, peer, headers, body).await
}

async fn handle(
    system: System,
    State(s): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let Some(e) = &s.events else {
        return refuse(StatusCode::NOT_FOUND, "ticket events not configured");
    };
    let on = match system {
        System::Jira => e.jira.is_some(),
        System::ServiceNow => e.servicenow.on(),
    };
    if !on {
        return refuse(
            StatusCode::NOT_FOUND,
            format_args!("{} events not configured", system.name()),
        );
    }
    let ip = peer.ip();
    if let Some(r) = refuse_blocked(&e.limiter, ip) {
        return r;
    }
    let body = match read_body(body, e.body_timeout, e.max_body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let verified = match system {
        System::Jira => e
            .jira
            .as_deref()
            .ok_or(Refusal::Missing)
            .and_then(|k| verify_jira(k, &headers, &body)),
        System::ServiceNow => verify_servicenow(&e.servicenow, &headers, &body),
    };
    let mac = match verified {
        Ok(m) => m,
        Err(why) => {
            e.limiter.failed(ip);
            tracing::warn!(%ip, %why, system = system.name(), "ticket event refused");
            return refuse(StatusCode::UNAUTHORIZED, why);
        }
    };
    // Authentic from here: what it says is the ticket system's word.
    let (key, timestamp, relevant) = match system {
        System::Jira => match serde_json::from_slice::<JiraEvent>(&body) {
            Ok(ev) => {
                let relevant = JIRA_EVENTS.contains(&ev.webhook_event.as_str());
                let Some(issue) = ev.issue else {
                    return refuse(StatusCode::BAD_REQUEST, "issue.key required");
                };
                (issue.key, ev.timestamp.div_euclid(1000), relevant)
            }
            Err(err) => return refuse(StatusCode::BAD_REQUEST, format_args!("jira event: {err}")),
        },
        System::ServiceNow => match serde_json::from_slice::<ServiceNowEvent>(&body) {
            Ok(ev) => (ev.number, ev.timestamp, true),
            Err(err) => {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    format_args!("servicenow event: {err}"),
                )
            }
        },
    };
    let now = Utc::now().timestamp();
    if now.abs_diff(timestamp) > e.window.unsigned_abs() {
        tracing::warn!(%ip, system = system.name(), ticket = %key, "ticket event outside the window");
        return refuse(StatusCode::UNAUTHORIZED, Refusal::OutsideWindow);
    }
    let mut replay_key = format!("{}:", system.name()).into_bytes();
    replay_key.extend_from_slice(&mac);
    match e
        .store
        .webhook_seen(&replay_key, timestamp.saturating_add(e.window), now)
        .await
    {
        Ok(true) => return refuse(StatusCode::CONFLICT, "replayed event"),
        Ok(false) => {}
        Err(err) => {
            tracing::error!(error = %err, "ticket event: replay check failed");
            return refuse(StatusCode::SERVICE_UNAVAILABLE, "store unavailable");
        }
    }
    if !relevant {
        return (StatusCode::OK, "ignored\n").into_response();
    }
    let known = s
        .tickets
        .lock()
        .ok()
        .and_then(|t| t.get(&key).cloned())
        .filter(|subjects| !subjects.is_empty());
    tracing::info!(system = system.name(), ticket = %key, subjects = ?known, "ticket event accepted: targeted pass triggered");
    if let Ok(mut p) = s.pending.lock() {
        match known {
            Some(subjects) => p.identities.extend(subjects),
            None => p.tickets.push(key),
        }
    }
    s.trigger.notify_one();
    (StatusCode::ACCEPTED, "accepted\n").into_response()
}
