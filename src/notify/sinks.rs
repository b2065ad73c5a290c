//! The sinks: each renders a [`Digest`] in its provider's documented shape
//! and sends it. Secrets are read from their variables when a digest is
//! sent, kept only for that send, and scrubbed from any error text.

use std::io::Write;
use std::time::Duration;

use serde_json::{json, Value};

use super::{Digest, EventKind};
use crate::config::{Config, SinkConfig, SmtpTls};

/// Why a try failed.
pub(super) enum Failure {
    /// Worth another try (429, 5xx, transport), after `after` if the peer
    /// said so.
    Retry {
        error: String,
        after: Option<Duration>,
    },
    /// Another try would fail the same way.
    Final(String),
}

/// Longest error text journaled.
const MAX_ERROR: usize = 300;

/// A sink with its secrets read.
pub(super) struct Resolved<'a> {
    sink: &'a SinkConfig,
    cfg: &'a Config,
    /// The secret (URL, token, key, password): never shown.
    secret: String,
}

impl<'a> Resolved<'a> {
    /// Read the sink's secret from its variable.
    pub(super) fn new(sink: &'a SinkConfig, cfg: &'a Config) -> Result<Resolved<'a>, String> {
        let secret = match sink.secret_variables().first() {
            Some((_, var)) => std::env::var(var)
                .ok()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("the variable {var} is not set"))?,
            None => String::new(),
        };
        Ok(Resolved { sink, cfg, secret })
    }

    /// `text` bounded, with the secret (and a URL's query) removed.
    pub(super) fn clean(&self, text: &str) -> String {
        let mut t = text.to_string();
        if !self.secret.is_empty() {
            t = t.replace(&self.secret, "[secret]");
        }
        if t.len() > MAX_ERROR {
            let mut cut = MAX_ERROR;
            while !t.is_char_boundary(cut) {
                cut -= 1;
            }
            t.truncate(cut);
            t.push('…');
        }
        t
    }

    /// One try.
    pub(super) async fn send(
        &self,
        client: Option<&reqwest::Client>,
        d: &Digest,
        timeout: Duration,
    ) -> Result<(), Failure> {
        match self.sink {
            SinkConfig::SlackWebhook { .. } => {
                let body = slack_message(d, None);
                post(client, &self.secret, &[], &body, timeout)
                    .await
                    .map(|_| ())
            }
            SinkConfig::SlackApi {
                channel, base_url, ..
            } => {
                let body = slack_message(d, Some(channel));
                let url = format!("{}/chat.postMessage", base_url.trim_end_matches('/'));
                let auth = format!("Bearer {}", self.secret);
                let answer =
                    post(client, &url, &[("authorization", &auth)], &body, timeout).await?;
                // Slack answers 200 with `ok: false` for most errors.
                match answer.get("ok").and_then(Value::as_bool) {
                    Some(true) => Ok(()),
                    _ => {
                        let why = answer
                            .get("error")
                            .and_then(Value::as_str)
                            .unwrap_or("no `ok` in the answer");
                        if why == "ratelimited" {
                            Err(Failure::Retry {
                                error: format!("slack: {why}"),
                                after: None,
                            })
                        } else {
                            Err(Failure::Final(format!("slack: {why}")))
                        }
                    }
                }
            }
            SinkConfig::Teams { .. } => post(client, &self.secret, &[], &teams_message(d), timeout)
                .await
                .map(|_| ()),
            SinkConfig::Pagerduty {
                base_url, severity, ..
            } => {
                let url = format!("{}/v2/enqueue", base_url.trim_end_matches('/'));
                let body = pagerduty_event(d, &self.secret, severity);
                post(client, &url, &[], &body, timeout).await.map(|_| ())
            }
            SinkConfig::Webhook { url, .. } => {
                let body = serde_json::to_vec(&webhook_body(d)).unwrap_or_default();
                let ts = chrono::Utc::now().timestamp();
                let sig = super::signature::sign(self.secret.as_bytes(), ts, &body);
                let ts = ts.to_string();
                let headers = [
                    (super::signature::TIMESTAMP_HEADER, ts.as_str()),
                    (super::signature::SIGNATURE_HEADER, sig.as_str()),
                ];
                post_bytes(client, url, &headers, body, timeout)
                    .await
                    .map(|_| ())
            }
            SinkConfig::File { path } => {
                let path = self.cfg.resolve(path);
                let mut line = serde_json::to_vec(&webhook_body(d)).unwrap_or_default();
                line.push(b'\n');
                append(&path, &line).map_err(|e| Failure::Final(format!("{}: {e}", path.display())))
            }
            SinkConfig::Email {
                host,
                port,
                tls,
                username,
                from,
                to,
                ..
            } => {
                email(
                    host,
                    *port,
                    *tls,
                    username.as_deref().map(|u| (u, self.secret.as_str())),
                    from,
                    to,
                    d,
                    timeout,
                )
                .await
            }
        }
    }
}

/// Append `line` to `path` (created, with its directory, if absent).
fn append(path: &std::path::Path, line: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Owners' messages are for them: not world-readable, and never
        // written through a planted symlink.
        opts.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    opts.open(path)?.write_all(line)
}

async fn post(
    client: Option<&reqwest::Client>,
    url: &str,
    headers: &[(&str, &str)],
    body: &Value,
    timeout: Duration,
) -> Result<Value, Failure> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    post_bytes(client, url, headers, bytes, timeout).await
}

/// POST JSON; 2xx is success (its JSON body, or null), 429 and 5xx are
/// worth another try.
async fn post_bytes(
    client: Option<&reqwest::Client>,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
    timeout: Duration,
) -> Result<Value, Failure> {
    let Some(client) = client else {
        return Err(Failure::Final(
            "no HTTP client (TLS could not be set up)".into(),
        ));
    };
    let mut req = client
        .post(url)
        .timeout(timeout)
        .header("content-type", "application/json; charset=utf-8")
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    // The URL may be the secret: never in the error.
    let resp = req.send().await.map_err(|e| Failure::Retry {
        error: e.without_url().to_string(),
        after: None,
    })?;
    let status = resp.status();
    let after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let text = resp.text().await.unwrap_or_default();
    if status.is_success() {
        return Ok(serde_json::from_str(&text).unwrap_or(Value::Null));
    }
    let error = format!(
        "HTTP {}: {}",
        status.as_u16(),
        text.chars().take(200).collect::<String>()
    );
    if status.as_u16() == 429 || status.is_server_error() {
        Err(Failure::Retry { error, after })
    } else {
        Err(Failure::Final(error))
    }
}

/// Block Kit: a header, a section per event (Slack allows 50 blocks), a
/// context line for the rest; `text` is the notification fallback.
fn slack_message(d: &Digest, channel: Option<&str>) -> Value {
    const MAX_EVENTS: usize = 45;
    let mut blocks = vec![json!({
        "type": "header",
        "text": { "type": "plain_text", "text": clip(&d.title(), 150) }
    })];
    for e in d.events.iter().take(MAX_EVENTS) {
        blocks.push(json!({
            "type": "section",
            "text": { "type": "mrkdwn", "text": clip(&format!("{} {}", icon(e.kind), e.line()), 3000) }
        }));
    }
    let rest = d.events.len().saturating_sub(MAX_EVENTS);
    if rest > 0 {
        blocks.push(json!({
            "type": "context",
            "elements": [{ "type": "mrkdwn", "text": format!("and {rest} more (run {})", d.run_id) }]
        }));
    }
    let mut m = json!({ "text": d.title(), "blocks": blocks });
    if let Some(c) = channel {
        m["channel"] = json!(c);
    }
    m
}

fn icon(k: EventKind) -> &'static str {
    match k {
        EventKind::Pending | EventKind::Reminder => ":warning:",
        EventKind::ActionTaken => ":no_entry:",
        EventKind::Opened => ":red_circle:",
        EventKind::Resolved => ":white_check_mark:",
    }
}

/// A Teams workflow webhook's message: one Adaptive Card attachment.
fn teams_message(d: &Digest) -> Value {
    let mut body = vec![json!({
        "type": "TextBlock", "text": d.title(), "weight": "Bolder", "size": "Medium", "wrap": true
    })];
    for e in &d.events {
        body.push(json!({ "type": "TextBlock", "text": e.line(), "wrap": true }));
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": body
            }
        }]
    })
}

/// A PagerDuty v2 event: one alert per owner (`dedup_key`), triggered by a
/// digest and resolved when the owner has nothing open left.
fn pagerduty_event(d: &Digest, routing_key: &str, severity: &str) -> Value {
    let dedup_key = format!("nhi-assure:{}", d.owner);
    let only_resolutions = d.events.iter().all(|e| e.kind == EventKind::Resolved);
    if only_resolutions && d.all_clear {
        return json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": dedup_key,
        });
    }
    let lines: Vec<String> = d.events.iter().map(super::Event::line).collect();
    json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "payload": {
            "summary": clip(&d.title(), 1024),
            "source": "nhi-assure",
            "severity": severity,
            "component": d.owner,
            "custom_details": { "run_id": d.run_id, "events": lines }
        }
    })
}

/// The webhook's and the file's JSON.
fn webhook_body(d: &Digest) -> Value {
    // Each event with its line for people, so a file or a relay can show
    // the message as the chat sinks would.
    let events: Vec<Value> = d
        .events
        .iter()
        .map(|e| {
            let mut v = serde_json::to_value(e).unwrap_or(Value::Null);
            if let Some(o) = v.as_object_mut() {
                o.insert("message".into(), json!(e.line()));
            }
            v
        })
        .collect();
    json!({
        "event": "notify.digest",
        "owner": d.owner,
        "run_id": d.run_id,
        "title": d.title(),
        "events": events,
    })
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[allow(clippy::too_many_arguments)]
async fn email(
    host: &str,
    port: u16,
    tls: SmtpTls,
    login: Option<(&str, &str)>,
    from: &str,
    to: &[String],
    d: &Digest,
    timeout: Duration,
) -> Result<(), Failure> {
    use lettre::message::{header::ContentType, Mailbox};
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
    let mailbox = |a: &str| {
        a.parse::<Mailbox>()
            .map_err(|e| Failure::Final(format!("address {a:?}: {e}")))
    };
    let mut m = Message::builder().from(mailbox(from)?).subject(d.title());
    for t in to {
        m = m.to(mailbox(t)?);
    }
    let mut text = String::new();
    for e in &d.events {
        text.push_str("- ");
        text.push_str(&e.line());
        text.push('\n');
    }
    text.push_str(&format!("\n(run {})\n", d.run_id));
    let message = m
        .header(ContentType::TEXT_PLAIN)
        .body(text)
        .map_err(|e| Failure::Final(format!("message: {e}")))?;
    let builder = match tls {
        SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
        SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host)
            .map_err(|e| Failure::Final(format!("smtp: {e}")))?,
        SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
            .map_err(|e| Failure::Final(format!("smtp: {e}")))?,
    };
    let mut builder = builder.port(port).timeout(Some(timeout));
    if let Some((user, password)) = login {
        builder = builder.credentials(Credentials::new(user.to_string(), password.to_string()));
    }
    match builder.build().send(message).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_permanent() => Err(Failure::Final(format!("smtp: {e}"))),
        Err(e) => Err(Failure::Retry {
            error: format!("smtp: {e}"),
            after: None,
        }),
    }
}
