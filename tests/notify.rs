//! Outbound notifications end to end: the CLI runs a pass over the demo
//! estate (or enforce against the fake Azure tenant) and delivers to loopback
//! peers that serve each provider's documented answers — Slack incoming
//! webhook and `chat.postMessage`, a Teams workflow, PagerDuty Events v2, an
//! SMTP server (EHLO/MAIL/RCPT/DATA) and a signed webhook — plus the file
//! sink. Checked: each request's documented shape, retries on 429/5xx, the
//! pass's delivery budget against a dead and a slow sink, the warning sent
//! before the action with the action's time, the hold_unnotified rail, and
//! that no secret reaches the journal, the store or the logs.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use nhi_assure::store::SqlStore;
use nhi_azure::testing::{ids, FakeTenant, Tenant, CLIENT_SECRET};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[path = "support/cli.rs"]
mod cli_support;
use cli_support::listed;

const BIN: &str = env!("CARGO_BIN_EXE_nhi-assure");

const SLACK_URL_TOKEN: &str = "XSECRETSLACKHOOKTOKEN42";
const SLACK_BOT_TOKEN: &str = "xoxb-secret-bot-token-4242";
const TEAMS_SIG: &str = "SECRETTEAMSSIGNATURE4242";
const PD_KEY: &str = "R0UTINGKEYSECRET0123456789abcdef";
const HMAC_KEY: &str = "notify-test-hmac-key-0123456789";
const AZURE_SECRET_ENV: &str = "NOTIFY_TEST_AZURE_SECRET";

/// One request a peer received.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
    at: chrono::DateTime<chrono::Utc>,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

/// A loopback HTTP peer: records every request and answers from a queue
/// (status, Retry-After, body), then with its default.
struct Peer {
    got: Mutex<Vec<Received>>,
    replies: Mutex<VecDeque<(u16, Option<u64>, String)>>,
    default: (u16, String),
    delay: Duration,
}

impl Peer {
    fn new(default: (u16, &str)) -> Arc<Peer> {
        Arc::new(Peer {
            got: Mutex::new(Vec::new()),
            replies: Mutex::new(VecDeque::new()),
            default: (default.0, default.1.to_string()),
            delay: Duration::ZERO,
        })
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().expect("lock").clone()
    }

    fn on(&self, path: &str) -> Vec<Received> {
        self.got()
            .into_iter()
            .filter(|r| r.path.starts_with(path))
            .collect()
    }
}

async fn answer(State(p): State<Arc<Peer>>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    p.got.lock().expect("lock").push(Received {
        path: uri.to_string(),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    v.to_str().unwrap_or_default().to_string(),
                )
            })
            .collect(),
        body: body.to_vec(),
        at: chrono::Utc::now(),
    });
    if !p.delay.is_zero() {
        tokio::time::sleep(p.delay).await;
    }
    let (status, after, body) = p.replies.lock().expect("lock").pop_front().unwrap_or((
        p.default.0,
        None,
        p.default.1.clone(),
    ));
    let mut r = (StatusCode::from_u16(status).expect("status"), body).into_response();
    if let Some(s) = after {
        r.headers_mut()
            .insert("retry-after", s.to_string().parse().expect("header"));
    }
    r
}

/// Serve `peer` on a free loopback port; its base URL.
async fn serve(peer: Arc<Peer>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = axum::Router::new().fallback(answer).with_state(peer);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

/// A small SMTP server: EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT;
/// every message's DATA is captured with its envelope.
#[derive(Default)]
struct Smtp {
    messages: Mutex<Vec<(String, Vec<String>, String)>>,
    /// Answer this many `MAIL` commands with a transient 451 first.
    busy: Mutex<usize>,
}

async fn smtp_server(smtp: Arc<Smtp>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let smtp = Arc::clone(&smtp);
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut lines = BufReader::new(r).lines();
                let _ = w.write_all(b"220 localhost ESMTP test\r\n").await;
                let (mut from, mut to) = (String::new(), Vec::new());
                while let Ok(Some(line)) = lines.next_line().await {
                    let upper = line.to_ascii_uppercase();
                    let reply: &[u8] = if upper.starts_with("EHLO") {
                        b"250-localhost\r\n250 8BITMIME\r\n"
                    } else if upper.starts_with("HELO")
                        || upper.starts_with("RSET")
                        || upper.starts_with("NOOP")
                    {
                        b"250 OK\r\n"
                    } else if upper.starts_with("MAIL FROM:") {
                        let busy = {
                            let mut b = smtp.busy.lock().expect("lock");
                            let was = *b;
                            *b = was.saturating_sub(1);
                            was > 0
                        };
                        if busy {
                            b"451 4.3.2 try again later\r\n"
                        } else {
                            from = line[10..].trim().to_string();
                            b"250 OK\r\n"
                        }
                    } else if upper.starts_with("RCPT TO:") {
                        to.push(line[8..].trim().to_string());
                        b"250 OK\r\n"
                    } else if upper.starts_with("DATA") {
                        let _ = w.write_all(b"354 end with .\r\n").await;
                        let mut data = String::new();
                        while let Ok(Some(l)) = lines.next_line().await {
                            if l == "." {
                                break;
                            }
                            data.push_str(&l);
                            data.push('\n');
                        }
                        smtp.messages.lock().expect("lock").push((
                            from.clone(),
                            std::mem::take(&mut to),
                            data,
                        ));
                        b"250 queued\r\n"
                    } else if upper.starts_with("QUIT") {
                        let _ = w.write_all(b"221 bye\r\n").await;
                        return;
                    } else {
                        b"502 not implemented\r\n"
                    };
                    if w.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// Run the CLI off the runtime (the peers serve on it meanwhile).
async fn run(args: &[&str], env: &[(&str, String)]) -> Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(&args)
            .envs(env)
            .env("RUST_LOG", "debug")
            .output()
            .expect("run nhi-assure")
    })
    .await
    .expect("join")
}

fn demo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo")
}

/// The demo's estate and approval files, with `notify` appended.
fn demo_config(dir: &Path, notify: &str) -> String {
    let d = demo();
    let text = format!(
        r#"store = "store.db"
as_of = "2026-11-20T12:00:00Z"
[[sources]]
type = "snapshot"
name = "aws-org"
provider = "aws"
path = "{aws}"
[[approvals]]
type = "files"
name = "approvals-repo"
path = "{approvals}"
max_validity_days = 365
{notify}
"#,
        aws = d.join("estate/aws.json").display(),
        approvals = d.join("approvals").display(),
    );
    let cfg = dir.join("nhi-assure.toml");
    std::fs::write(&cfg, text).expect("config");
    cfg.display().to_string()
}

async fn journal(dir: &Path) -> Vec<nhi_assure::store::notify::Delivery> {
    let store = SqlStore::open(&dir.join("store.db").display().to_string())
        .await
        .expect("store");
    store.notify_journal().await.expect("journal")
}

fn ok(o: &Output) {
    assert!(
        matches!(o.status.code(), Some(0 | 1)),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// No secret in the logs, the file sink, the journal or the store's bytes.
async fn assert_no_secret(dir: &Path, logs: &[u8]) {
    let secrets = [
        SLACK_URL_TOKEN,
        SLACK_BOT_TOKEN,
        TEAMS_SIG,
        PD_KEY,
        HMAC_KEY,
    ];
    let logs = String::from_utf8_lossy(logs);
    let journal = format!("{:?}", journal(dir).await);
    let mut store = Vec::new();
    for f in ["store.db", "store.db-wal"] {
        store.extend(std::fs::read(dir.join(f)).unwrap_or_default());
    }
    let store = String::from_utf8_lossy(&store);
    let file = std::fs::read_to_string(dir.join("out/owners.jsonl")).unwrap_or_default();
    for s in secrets {
        assert!(!logs.contains(s), "secret {s} in the logs");
        assert!(!journal.contains(s), "secret {s} in the journal");
        assert!(!store.contains(s), "secret {s} in the store");
        assert!(!file.contains(s), "secret {s} in the file sink");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sink_gets_its_documented_request_once_per_owner() {
    let slack = Peer::new((200, "ok"));
    let api = Peer::new((200, r#"{"ok":true,"channel":"C123","ts":"1.2"}"#));
    let teams = Peer::new((202, ""));
    let pd = Peer::new((
        202,
        r#"{"status":"success","message":"Event processed","dedup_key":"x"}"#,
    ));
    let hook = Peer::new((204, ""));
    let (slack_url, api_url, teams_url, pd_url, hook_url) = (
        serve(Arc::clone(&slack)).await,
        serve(Arc::clone(&api)).await,
        serve(Arc::clone(&teams)).await,
        serve(Arc::clone(&pd)).await,
        serve(Arc::clone(&hook)).await,
    );
    let smtp = Arc::new(Smtp::default());
    let smtp_port = smtp_server(Arc::clone(&smtp)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let notify = format!(
        r#"[notify]
default_route = ["file"]
[[notify.routes]]
owner = "payments-team@*"
sinks = ["slack", "slack-bot", "teams", "pd", "mail", "hook"]
[notify.sinks.slack]
type = "slack-webhook"
url_env = "NHI_SECRET_T_SLACK_URL"
[notify.sinks.slack-bot]
type = "slack-api"
token_env = "NHI_SECRET_T_SLACK_TOKEN"
channel = "C123"
base_url = "{api_url}/api"
[notify.sinks.teams]
type = "teams"
url_env = "NHI_SECRET_T_TEAMS_URL"
[notify.sinks.pd]
type = "pagerduty"
routing_key_env = "NHI_SECRET_T_PD_KEY"
base_url = "{pd_url}"
[notify.sinks.mail]
type = "email"
host = "127.0.0.1"
port = {smtp_port}
tls = "none"
from = "nhi-assure@example.com"
to = ["payments-team@example.com"]
[notify.sinks.hook]
type = "webhook"
url = "{hook_url}/hooks/nhi"
secret_env = "NHI_SECRET_T_HMAC"
[notify.sinks.file]
type = "file"
path = "out/owners.jsonl"
"#
    );
    let cfg = demo_config(dir.path(), &notify);
    let env = [
        (
            "NHI_SECRET_T_SLACK_URL",
            format!("{slack_url}/services/T000/B000/{SLACK_URL_TOKEN}"),
        ),
        ("NHI_SECRET_T_SLACK_TOKEN", SLACK_BOT_TOKEN.to_string()),
        (
            "NHI_SECRET_T_TEAMS_URL",
            format!("{teams_url}/workflows/abc/triggers/manual/paths/invoke?sig={TEAMS_SIG}"),
        ),
        ("NHI_SECRET_T_PD_KEY", PD_KEY.to_string()),
        ("NHI_SECRET_T_HMAC", HMAC_KEY.to_string()),
    ];
    let o = run(&["scan", "--config", &cfg, "--format", "json"], &env).await;
    ok(&o);

    // Slack incoming webhook: one Block Kit message for the owner.
    let got = slack.on("/services/T000/B000/");
    assert_eq!(got.len(), 1, "one digest per owner: {got:?}");
    let m = got[0].json();
    assert!(m["text"]
        .as_str()
        .is_some_and(|t| t.contains("payments-team@example.com")));
    let blocks = m["blocks"].as_array().expect("blocks");
    assert_eq!(blocks[0]["type"], "header");
    assert_eq!(blocks[0]["text"]["type"], "plain_text");
    assert!(blocks.len() >= 2);
    assert!(
        blocks[1..]
            .iter()
            .all(|b| b["type"] == "section" && b["text"]["type"] == "mrkdwn"
                || b["type"] == "context")
    );
    assert!(got[0].headers["content-type"].starts_with("application/json"));
    let n_events = blocks.iter().filter(|b| b["type"] == "section").count();

    // chat.postMessage: bearer token, channel, the same blocks.
    let got = api.on("/api/chat.postMessage");
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        got[0].headers["authorization"],
        format!("Bearer {SLACK_BOT_TOKEN}")
    );
    let m = got[0].json();
    assert_eq!(m["channel"], "C123");
    assert_eq!(m["blocks"].as_array().map(Vec::len), Some(blocks.len()));

    // Teams workflow: the message envelope with one Adaptive Card.
    let got = teams.on("/workflows/abc/triggers/manual/paths/invoke");
    assert_eq!(got.len(), 1, "{got:?}");
    let m = got[0].json();
    assert_eq!(m["type"], "message");
    let att = &m["attachments"][0];
    assert_eq!(
        att["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(att["content"]["type"], "AdaptiveCard");
    assert!(att["content"]["version"].as_str().is_some());
    let body = att["content"]["body"].as_array().expect("card body");
    assert!(body.iter().all(|b| b["type"] == "TextBlock"));
    assert_eq!(body.len(), n_events + 1, "a title and a line per event");

    // PagerDuty Events v2: trigger with routing key, dedup key, payload.
    let got = pd.on("/v2/enqueue");
    assert_eq!(got.len(), 1, "{got:?}");
    let e = got[0].json();
    assert_eq!(e["routing_key"], PD_KEY);
    assert_eq!(e["event_action"], "trigger");
    assert_eq!(e["dedup_key"], "nhi-assure:payments-team@example.com");
    assert!(e["payload"]["summary"]
        .as_str()
        .is_some_and(|s| !s.is_empty() && s.len() <= 1024));
    assert_eq!(e["payload"]["source"], "nhi-assure");
    assert_eq!(e["payload"]["severity"], "warning");

    // SMTP: one message, envelope and headers as configured.
    let mails = smtp.messages.lock().expect("lock").clone();
    assert_eq!(mails.len(), 1, "{mails:?}");
    let (from, to, data) = &mails[0];
    assert_eq!(from, "<nhi-assure@example.com>");
    assert_eq!(to, &vec!["<payments-team@example.com>".to_string()]);
    assert!(data.contains("Subject: nhi-assure:"), "{data}");
    assert!(data.contains("To: payments-team@example.com"), "{data}");

    // Signed webhook: verified with the daemon's own inbound check.
    let got = hook.on("/hooks/nhi");
    assert_eq!(got.len(), 1, "{got:?}");
    let mut headers = HeaderMap::new();
    for (k, v) in &got[0].headers {
        headers.insert(
            axum::http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
            v.parse().expect("value"),
        );
    }
    let now = chrono::Utc::now().timestamp();
    nhi_assure::daemon::webhook::verify(HMAC_KEY.as_bytes(), 300, now, &headers, &got[0].body)
        .expect("the signature verifies like an inbound webhook");
    assert!(
        nhi_assure::daemon::webhook::verify(b"other-key", 300, now, &headers, &got[0].body)
            .is_err()
    );
    let m = got[0].json();
    assert_eq!(m["owner"], "payments-team@example.com");
    assert_eq!(m["events"].as_array().map(Vec::len), Some(n_events));

    // File sink: the other owners, one line each, none of payments'.
    let lines: Vec<Value> = std::fs::read_to_string(dir.path().join("out/owners.jsonl"))
        .expect("file sink")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert!(lines.len() >= 2, "{lines:?}");
    let owners: Vec<&str> = lines.iter().filter_map(|l| l["owner"].as_str()).collect();
    let mut unique = owners.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(
        unique.len(),
        owners.len(),
        "one digest per owner: {owners:?}"
    );
    assert!(!owners.contains(&"payments-team@example.com"));
    assert!(lines
        .iter()
        .all(|l| l["events"][0]["kind"] == "finding.opened"));

    // Journal: one row per event per sink, all sent.
    let j = journal(dir.path()).await;
    assert!(
        j.iter().all(|d| d.status == "sent" && d.attempts == 1),
        "{j:?}"
    );
    assert_eq!(j.iter().filter(|d| d.sink == "slack").count(), n_events);

    // A second unchanged pass opens nothing: nothing is sent again.
    let o2 = run(&["scan", "--config", &cfg, "--format", "json"], &env).await;
    ok(&o2);
    assert_eq!(slack.got().len(), 1);
    assert_eq!(smtp.messages.lock().expect("lock").len(), 1);

    let mut logs = o.stderr.clone();
    logs.extend(o2.stderr);
    assert_no_secret(dir.path(), &logs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_on_429_and_5xx_then_succeeds_and_gives_up_on_4xx() {
    let slack = Peer::new((200, "ok"));
    slack.replies.lock().expect("lock").extend([
        (429, Some(1), "rate limited".to_string()),
        (503, None, "busy".into()),
    ]);
    let teams = Peer::new((400, "bad card"));
    // Slack's Web API answers 200 with `ok: false` for most errors.
    let api = Peer::new((200, r#"{"ok":false,"error":"channel_not_found"}"#));
    let (slack_url, teams_url, api_url) = (
        serve(Arc::clone(&slack)).await,
        serve(Arc::clone(&teams)).await,
        serve(Arc::clone(&api)).await,
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = demo_config(
        dir.path(),
        &format!(
            r#"[notify]
default_route = ["slack", "teams", "slack-bot"]
max_attempts = 3
max_backoff_secs = 2
[notify.sinks.slack-bot]
type = "slack-api"
token_env = "NHI_SECRET_T_SLACK_TOKEN"
channel = "C404"
base_url = "{api_url}"
[notify.sinks.slack]
type = "slack-webhook"
url_env = "NHI_SECRET_T_SLACK_URL"
[notify.sinks.teams]
type = "teams"
url_env = "NHI_SECRET_T_TEAMS_URL"
"#
        ),
    );
    let env = [
        (
            "NHI_SECRET_T_SLACK_URL",
            format!("{slack_url}/services/T000/B000/{SLACK_URL_TOKEN}"),
        ),
        (
            "NHI_SECRET_T_TEAMS_URL",
            format!("{teams_url}/wf?sig={TEAMS_SIG}"),
        ),
        ("NHI_SECRET_T_SLACK_TOKEN", SLACK_BOT_TOKEN.to_string()),
    ];
    let o = run(&["scan", "--config", &cfg, "--format", "json"], &env).await;
    ok(&o);
    let got = slack.got();
    // The first owner's digest took three tries: 429 (Retry-After 1 s
    // honoured), 503, then 200; the later digests went at once.
    assert!(got.len() >= 4, "{}", got.len());
    let gap = got[1].at - got[0].at;
    assert!(
        gap >= chrono::Duration::milliseconds(900),
        "Retry-After honoured: {gap}"
    );
    assert_eq!(got[0].body, got[2].body, "the same digest retried");
    let j = journal(dir.path()).await;
    let first = &j[0];
    assert_eq!(first.sink, "slack");
    assert_eq!(
        (first.status.as_str(), first.attempts),
        ("sent", 3),
        "{j:?}"
    );
    // 400 is final: one try per digest, failed, with the peer's answer.
    let t: Vec<_> = j.iter().filter(|d| d.sink == "teams").collect();
    assert!(!t.is_empty());
    assert!(t.iter().all(|d| d.status == "failed" && d.attempts == 1));
    assert!(
        t[0].error.as_deref().is_some_and(|e| e.contains("400")),
        "{t:?}"
    );
    // `ok: false` is a failure, not retried; Slack's error code is kept.
    let b: Vec<_> = j.iter().filter(|d| d.sink == "slack-bot").collect();
    assert!(!b.is_empty());
    assert!(
        b.iter().all(|d| d.status == "failed" && d.attempts == 1),
        "{b:?}"
    );
    assert!(
        b[0].error
            .as_deref()
            .is_some_and(|e| e.contains("channel_not_found")),
        "{b:?}"
    );
    assert!(api.got().iter().all(|r| r.path == "/chat.postMessage"));
    assert_no_secret(dir.path(), &o.stderr).await;

    // Opened findings belong to their pass: an unchanged pass sends
    // nothing more to either sink (warnings are re-derived every pass until
    // one is sent: see the enforce test).
    let (s, t) = (slack.got().len(), teams.got().len());
    let o = run(&["scan", "--config", &cfg, "--format", "json"], &env).await;
    ok(&o);
    assert_eq!((slack.got().len(), teams.got().len()), (s, t));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_or_slow_sink_cannot_slow_a_pass_beyond_its_budget() {
    let slow = Arc::new(Peer {
        got: Mutex::new(Vec::new()),
        replies: Mutex::new(VecDeque::new()),
        default: (200, "ok".into()),
        delay: Duration::from_secs(60),
    });
    let slow_url = serve(Arc::clone(&slow)).await;
    // A port nothing listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = demo_config(
        dir.path(),
        &format!(
            r#"[notify]
default_route = ["dead", "slow"]
max_attempts = 10
timeout_secs = 30
budget_secs = 3
sink_timeout_secs = {{ slow = 1 }}
[notify.sinks.dead]
type = "webhook"
url = "http://127.0.0.1:{dead}/hook"
secret_env = "NHI_SECRET_T_HMAC"
[notify.sinks.slow]
type = "webhook"
url = "{slow_url}/hook"
secret_env = "NHI_SECRET_T_HMAC"
"#
        ),
    );
    let env = [("NHI_SECRET_T_HMAC", HMAC_KEY.to_string())];
    // The pass alone, for comparison.
    std::fs::create_dir_all(dir.path().join("q")).expect("mkdir");
    let quiet = demo_config(&dir.path().join("q"), "");
    let t = Instant::now();
    ok(&run(&["scan", "--config", &quiet, "--format", "json"], &env).await);
    let alone = t.elapsed();
    let t = Instant::now();
    let o = run(&["scan", "--config", &cfg, "--format", "json"], &env).await;
    let took = t.elapsed();
    ok(&o);
    assert!(
        took < alone + Duration::from_secs(3) + Duration::from_millis(1500),
        "the pass took {took:?} (alone {alone:?}) with a 3 s delivery budget"
    );
    let j = journal(dir.path()).await;
    assert!(!j.is_empty());
    assert!(j.iter().all(|d| d.status == "failed"), "{j:?}");
    assert!(
        j.iter()
            .any(|d| d.error.as_deref().is_some_and(|e| e.contains("budget"))),
        "{j:?}"
    );
}

fn enforce_config(fake: &FakeTenant, dir: &Path, hook_url: &str, lead_hours: i64) -> String {
    std::fs::create_dir_all(dir.join("approvals")).expect("mkdir");
    std::fs::write(dir.join("approvals/none.yaml"), "approvals: []\n").expect("approvals");
    let cfg = dir.join("nhi-assure.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"store = "store.db"
{source}
[[approvals]]
type = "files"
name = "approvals"
path = "approvals"
[rules.overrides.identity-admin-equivalent]
action = "disable"
[enforce]
max_percent = 100.0
max_subjects = 100
[enforce.grace_hours]
identity-admin-equivalent = 0
[notify]
default_route = ["hook"]
hold_unnotified = true
warn_lead_hours = {lead_hours}
max_attempts = 1
[notify.sinks.hook]
type = "webhook"
url = "{hook_url}/hook"
secret_env = "NHI_SECRET_T_HMAC"
"#,
            source = fake.source_toml("azure", AZURE_SECRET_ENV),
        ),
    )
    .expect("config");
    cfg.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_is_warned_before_the_action_and_an_unwarned_one_is_held() {
    let fake = FakeTenant::start(Tenant::demo()).await.expect("fake");
    let hook = Peer::new((500, "down"));
    let hook_url = serve(Arc::clone(&hook)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = enforce_config(&fake, dir.path(), &hook_url, 24);
    let env = [
        ("NHI_SECRET_T_HMAC", HMAC_KEY.to_string()),
        (AZURE_SECRET_ENV, CLIENT_SECRET.to_string()),
    ];
    let args = [
        "reconcile",
        "--config",
        &cfg,
        "--enforce",
        "--format",
        "json",
    ];

    // The sink is down: the warning is not delivered, so nothing is done.
    let o = run(&args, &env).await;
    ok(&o);
    let outcomes: Vec<Value> = listed(&o.stdout);
    let legacy: Vec<&Value> = outcomes
        .iter()
        .filter(|x| x["identity_id"] == ids::SP_LEGACY)
        .collect();
    assert!(!legacy.is_empty(), "{outcomes:#?}");
    assert!(
        legacy.iter().all(|x| x["status"] == "held"
            && x["detail"]
                .as_str()
                .is_some_and(|d| d.contains("hold_unnotified"))),
        "{legacy:#?}"
    );
    assert!(fake.tenant().writes().is_empty(), "nothing acted on");
    let j = journal(dir.path()).await;
    assert!(
        j.iter()
            .any(|d| d.kind == "action.pending" && d.status == "failed"),
        "{j:?}"
    );

    // The sink is back: the warning goes first, with the action's time,
    // then the action, then the actions digest with the undo command.
    *hook.replies.lock().expect("lock") = VecDeque::new();
    let hook_ok = Peer::new((204, ""));
    let ok_url = serve(Arc::clone(&hook_ok)).await;
    let text = std::fs::read_to_string(&cfg)
        .expect("cfg")
        .replace(&hook_url, &ok_url);
    std::fs::write(&cfg, text).expect("cfg");
    let o = run(&args, &env).await;
    ok(&o);
    let outcomes: Vec<Value> = listed(&o.stdout);
    let done = outcomes
        .iter()
        .find(|x| x["identity_id"] == ids::SP_LEGACY && x["status"] == "done")
        .unwrap_or_else(|| panic!("{outcomes:#?}"));
    let action_id = done["action_id"].as_i64().expect("action id");
    // Per owner: the pass digest (with the warning), then the actions
    // digest; the legacy principal has no owner, so both go to the default
    // route as "(no owner)".
    let got: Vec<(Received, Value)> = hook_ok
        .got()
        .into_iter()
        .map(|r| {
            let v = r.json();
            (r, v)
        })
        .collect();
    let find = |kind: &str| {
        got.iter()
            .find_map(|(r, m)| {
                let e = m["events"]
                    .as_array()?
                    .iter()
                    .find(|e| e["kind"] == kind && e["identity_id"] == ids::SP_LEGACY)?;
                Some((r.at, m.clone(), e.clone()))
            })
            .unwrap_or_else(|| {
                panic!(
                    "no {kind} event for the legacy principal in {} messages",
                    got.len()
                )
            })
    };
    let (warned_at, warning, pending) = find("action.pending");
    let (taken_at, taken, ev) = find("action.taken");
    assert_eq!(warning["owner"], "(no owner)");
    assert_eq!(taken["owner"], "(no owner)");
    assert!(warned_at < taken_at);
    let owners: Vec<&str> = got
        .iter()
        .filter_map(|(_, m)| m["owner"].as_str())
        .collect();
    assert!(
        owners.len() <= 2 * 3,
        "at most two digests per owner: {owners:?}"
    );
    let deadline =
        chrono::DateTime::parse_from_rfc3339(pending["deadline"].as_str().expect("deadline"))
            .expect("time");
    // Grace 0: the action's time is when the finding was first seen.
    assert!(
        deadline <= chrono::Utc::now()
            && deadline > chrono::Utc::now() - chrono::Duration::minutes(5)
    );
    assert_eq!(pending["operation"], "disable_identity");
    // The warning arrived before the provider was called (the intent is
    // journaled just before the call).
    let j = run(&["journal", "--config", &cfg], &env).await;
    let entries: Vec<Value> = listed(&j.stdout);
    let intent = entries
        .iter()
        .find(|e| e["id"] == action_id)
        .and_then(|e| e["intent_at"].as_str())
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .unwrap_or_else(|| panic!("{entries:#?}"));
    assert!(
        warned_at <= intent,
        "warned at {warned_at} acted at {intent}"
    );
    assert!(!fake.tenant().writes().is_empty());
    // Findings still in their grace period are announced with their time.
    let later = warning["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["kind"] == "action.pending")
        .filter_map(|e| e["deadline"].as_str())
        .filter_map(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .any(|t| t > chrono::Utc::now() + chrono::Duration::hours(1));
    assert!(later, "{warning:#}");
    assert!(
        ev["undo"]
            .as_str()
            .is_some_and(|u| u.contains("nhi-assure undo") && u.ends_with(&action_id.to_string())),
        "{ev}"
    );

    // The warning is journaled once: a third pass does not send it again.
    let j = journal(dir.path()).await;
    let sent = |kind: &str| {
        j.iter()
            .filter(|d| d.kind == kind && d.status == "sent")
            .count()
    };
    assert!(sent("action.pending") >= 1);
    assert_no_secret(dir.path(), &o.stderr).await;
}

#[test]
fn notify_settings_are_checked_and_located() {
    let load = |notify: &str| {
        nhi_assure::config::Config::from_text(
            "c.toml",
            format!("[[sources]]\ntype = \"snapshot\"\nname = \"s\"\nprovider = \"aws\"\npath = \"x.json\"\n{notify}"),
            PathBuf::from("."),
            Vec::<(String, String)>::new(),
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
    };
    let e = load("[notify]\ndefault_route = [\"nope\"]\n").unwrap_err();
    assert!(
        e.contains("c.toml:7:") && e.contains("no sink is named \"nope\""),
        "{e}"
    );
    let e = load("[notify]\ndefault_route = [\"s\"]\n[notify.sinks.s]\ntype = \"slack-webhook\"\nurl = \"https://hooks.slack.com/x\"\n").unwrap_err();
    assert!(
        e.contains("c.toml:10:") && e.contains("unknown field"),
        "a URL is never in the file: {e}"
    );
    let e = load("[notify]\ndefault_route = [\"s\"]\n[notify.sinks.s]\ntype = \"slack-webhook\"\nurl_env = \"NHI_ASSURE_SLACK\"\n").unwrap_err();
    assert!(e.contains("override prefix"), "{e}");
    let e = load("[notify]\nsink_timeout_secs = { gone = 3 }\n").unwrap_err();
    assert!(
        e.contains("c.toml:7:") && e.contains("no sink is named \"gone\""),
        "{e}"
    );
    let e = load("[notify]\nbudget_secs = 0\n").unwrap_err();
    assert!(e.contains("c.toml:7:") && e.contains("budget_secs"), "{e}");
    let e = load("[notify]\ndefault_route = [\"p\"]\n[notify.sinks.p]\ntype = \"pagerduty\"\nrouting_key_env = \"K\"\nseverity = \"loud\"\n").unwrap_err();
    assert!(e.contains("PagerDuty severity"), "{e}");
    load("[notify]\ndefault_route = [\"f\"]\n[notify.sinks.f]\ntype = \"file\"\npath = \"n.jsonl\"\n").expect("valid");
}

#[path = "support/pg.rs"]
mod pg;

/// The journal on both backends: rows round-trip, `sent` and `warned` see
/// only what was sent.
async fn journal_round_trip(store: SqlStore) {
    use nhi_assure::store::notify::Delivery;
    let row = |kind: &str, fp: &str, status: &str| Delivery {
        run_id: Some(7),
        sink: "hook".into(),
        sink_kind: "webhook".into(),
        owner: "team@example.com".into(),
        kind: kind.into(),
        fingerprint: fp.into(),
        dedup: "2026-12-01T00:00:00Z".into(),
        digest_size: 2,
        status: status.into(),
        attempts: 3,
        error: (status == "failed").then(|| "HTTP 503: busy".to_string()),
        at: "2026-12-01T00:00:00.000Z".into(),
    };
    let rows = [
        row("action.pending", "r|a|", "sent"),
        row("action.pending", "r|b|", "failed"),
        row("finding.opened", "r|c|", "sent"),
    ];
    store.notify_record(&rows).await.expect("record");
    assert_eq!(
        store.notify_journal().await.expect("journal"),
        rows.to_vec()
    );
    let sent = store.notify_sent("hook", 7).await.expect("sent");
    assert_eq!(sent.len(), 2);
    assert!(sent.contains(&(
        "r|a|".to_string(),
        "action.pending".to_string(),
        "2026-12-01T00:00:00Z".to_string()
    )));
    assert!(store
        .notify_sent("other", 7)
        .await
        .expect("sent")
        .is_empty());
    // A later run does not read an earlier run's own events.
    let mut opened = row("finding.opened", "r|d|", "sent");
    opened.dedup = "run 7".into();
    store.notify_record(&[opened]).await.expect("record");
    assert_eq!(store.notify_sent("hook", 7).await.expect("sent").len(), 3);
    assert_eq!(store.notify_sent("hook", 8).await.expect("sent").len(), 2);
    let warned = store.notify_warned().await.expect("warned");
    assert_eq!(
        warned.into_iter().collect::<Vec<_>>(),
        vec!["r|a|".to_string()]
    );
}

#[tokio::test]
async fn the_journal_round_trips_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqlStore::open(&dir.path().join("s.db").display().to_string())
        .await
        .expect("open sqlite");
    journal_round_trip(store).await;
}

#[tokio::test]
async fn the_journal_round_trips_on_postgres() {
    let store = SqlStore::open(&pg::database())
        .await
        .expect("open postgres");
    journal_round_trip(store).await;
}

/// Warnings follow the grace period: "pending" with the action's time when
/// it starts, nothing more while nothing changes, the reminder once
/// `warn_lead_hours` before that time — with the same deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reminder_comes_warn_lead_hours_before_the_action() {
    let fake = FakeTenant::start(Tenant::demo()).await.expect("fake");
    let hook = Peer::new((204, ""));
    let hook_url = serve(Arc::clone(&hook)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = enforce_config(&fake, dir.path(), &hook_url, 24);
    // Everything in a 30-hour grace period; nothing admin-related acts.
    let text = std::fs::read_to_string(&cfg)
        .expect("cfg")
        .replace(
            "identity-admin-equivalent = 0",
            "identity-admin-equivalent = 30",
        )
        .replace(
            "max_subjects = 100",
            "max_subjects = 100\ndefault_grace_hours = 30",
        );
    std::fs::write(&cfg, &text).expect("cfg");
    let env = [
        ("NHI_SECRET_T_HMAC", HMAC_KEY.to_string()),
        (AZURE_SECRET_ENV, CLIENT_SECRET.to_string()),
    ];
    let args = [
        "reconcile",
        "--config",
        &cfg,
        "--enforce",
        "--format",
        "json",
    ];
    let events = |from: usize| -> Vec<Value> {
        hook.got()[from..]
            .iter()
            .flat_map(|r| r.json()["events"].as_array().cloned().unwrap_or_default())
            .collect()
    };
    let started = chrono::Utc::now();
    ok(&run(&args, &env).await);
    let first = events(0);
    let pending: Vec<&Value> = first
        .iter()
        .filter(|e| e["kind"] == "action.pending")
        .collect();
    assert!(!pending.is_empty(), "{first:#?}");
    assert!(first.iter().all(|e| e["kind"] != "action.reminder"));
    let deadlines: std::collections::BTreeMap<String, String> = pending
        .iter()
        .map(|e| {
            let d = e["deadline"].as_str().expect("deadline").to_string();
            let t = chrono::DateTime::parse_from_rfc3339(&d).expect("time");
            assert!(
                t > started + chrono::Duration::hours(29)
                    && t < chrono::Utc::now() + chrono::Duration::hours(30)
            );
            (e["fingerprint"].as_str().expect("fp").to_string(), d)
        })
        .collect();
    assert!(
        fake.tenant().writes().is_empty(),
        "nothing acted on in grace"
    );

    // An unchanged pass: nothing is sent again.
    let n = hook.got().len();
    ok(&run(&args, &env).await);
    assert_eq!(hook.got().len(), n, "{:#?}", events(n));

    // Seven hours on, inside the 24-hour lead: the reminder, same deadline.
    let later = (chrono::Utc::now() + chrono::Duration::hours(7))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    std::fs::write(&cfg, format!("as_of = \"{later}\"\n{text}")).expect("cfg");
    ok(&run(&args, &env).await);
    let third = events(n);
    let reminders: Vec<&Value> = third
        .iter()
        .filter(|e| e["kind"] == "action.reminder")
        .collect();
    assert_eq!(reminders.len(), deadlines.len(), "{third:#?}");
    for r in reminders {
        let fp = r["fingerprint"].as_str().expect("fp");
        assert_eq!(
            r["deadline"].as_str(),
            deadlines.get(fp).map(String::as_str)
        );
        assert!(r["message"]
            .as_str()
            .is_some_and(|m| m.contains("unless its approval is renewed")));
    }
    assert!(third.iter().all(|e| e["kind"] != "action.pending"));
    assert!(fake.tenant().writes().is_empty());
}

/// An exception ending re-opens its finding, and its owner is told so,
/// once per end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_exception_is_announced_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let notify = format!(
        r#"[exceptions]
path = "{}"
[notify]
default_route = ["file"]
[notify.sinks.file]
type = "file"
path = "out/owners.jsonl"
"#,
        demo().join("exceptions").display()
    );
    let cfg = demo_config(dir.path(), &notify);
    let read = || -> Vec<Value> {
        std::fs::read_to_string(dir.path().join("out/owners.jsonl"))
            .unwrap_or_default()
            .lines()
            .flat_map(|l| {
                serde_json::from_str::<Value>(l).expect("JSON line")["events"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .collect()
    };
    let ended = |events: &[Value]| {
        events
            .iter()
            .filter(|e| e["exception_expired"] == "EXC-7")
            .count()
    };
    // In force: the finding is recorded excepted, nothing says it ended.
    ok(&run(&["scan", "--config", &cfg, "--format", "json"], &[]).await);
    assert_eq!(ended(&read()), 0);
    // After its end: open again, and the owner is told, once.
    let text = std::fs::read_to_string(&cfg)
        .expect("cfg")
        .replace("2026-11-20T12:00:00Z", "2026-12-16T12:00:00Z");
    std::fs::write(&cfg, text).expect("cfg");
    ok(&run(&["scan", "--config", &cfg, "--format", "json"], &[]).await);
    let events = read();
    assert_eq!(ended(&events), 1, "{events:#?}");
    let e = events
        .iter()
        .find(|e| e["exception_expired"] == "EXC-7")
        .expect("event");
    assert_eq!(e["kind"], "finding.opened");
    assert_eq!(e["credential_id"], "AKIA6IE7QDLNOXY5PBKS");
    assert!(e["message"]
        .as_str()
        .is_some_and(|m| m.contains("exception EXC-7 has ended")));
    ok(&run(&["scan", "--config", &cfg, "--format", "json"], &[]).await);
    assert_eq!(ended(&read()), 1, "not again");
}

/// `daemon --check` finds a sink whose secret variable is not set, at its
/// key, without printing any secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_check_finds_an_unset_sink_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = demo_config(
        dir.path(),
        r#"[notify]
default_route = ["slack"]
[notify.sinks.slack]
type = "slack-webhook"
url_env = "NHI_SECRET_T_CHECK_SLACK_URL"
"#,
    );
    let o = run(&["daemon", "--check", "--config", &cfg], &[]).await;
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("nhi-assure.toml:17:")
            && err.contains("NHI_SECRET_T_CHECK_SLACK_URL, which is not set"),
        "{err}"
    );
    let url = format!("https://hooks.slack.com/services/T0/B0/{SLACK_URL_TOKEN}");
    let o = run(
        &["daemon", "--check", "--config", &cfg],
        &[("NHI_SECRET_T_CHECK_SLACK_URL", url)],
    )
    .await;
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!String::from_utf8_lossy(&o.stderr).contains(SLACK_URL_TOKEN));
    assert!(!String::from_utf8_lossy(&o.stdout).contains(SLACK_URL_TOKEN));
}

/// The file sink writes owners' messages `0600` and never through a link
/// planted at its path: the delivery fails, the link's target is untouched.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_sink_is_private_and_never_follows_a_link() {
    use std::os::unix::fs::PermissionsExt;
    let notify = r#"[notify]
default_route = ["file"]
[notify.sinks.file]
type = "file"
path = "out/owners.jsonl"
"#;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = demo_config(dir.path(), notify);
    ok(&run(&["scan", "--config", &cfg, "--format", "json"], &[]).await);
    let mode = std::fs::metadata(dir.path().join("out/owners.jsonl"))
        .expect("written")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = demo_config(dir.path(), notify);
    let victim = dir.path().join("victim");
    std::fs::write(&victim, b"do not touch").expect("victim");
    std::fs::create_dir_all(dir.path().join("out")).expect("mkdir");
    std::os::unix::fs::symlink(&victim, dir.path().join("out/owners.jsonl")).expect("link");
    ok(&run(&["scan", "--config", &cfg, "--format", "json"], &[]).await);
    assert_eq!(std::fs::read(&victim).expect("victim"), b"do not touch");
    let j = journal(dir.path()).await;
    assert!(
        !j.is_empty() && j.iter().all(|d| d.status == "failed"),
        "{j:?}"
    );
}

/// PagerDuty: an owner's alert is triggered by its digest and resolved when
/// the owner has nothing open left — even when the identity is gone, its
/// owner is the one told before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagerduty_resolves_an_owners_alert_when_nothing_is_left_open() {
    let pd = Peer::new((202, r#"{"status":"success","message":"Event processed"}"#));
    let pd_url = serve(Arc::clone(&pd)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = demo_config(
        dir.path(),
        &format!(
            r#"[notify]
default_route = []
[[notify.routes]]
owner = "finops@example.com"
sinks = ["pd"]
[notify.sinks.pd]
type = "pagerduty"
routing_key_env = "NHI_SECRET_T_PD_KEY"
base_url = "{pd_url}"
severity = "error"
"#
        ),
    );
    let env = [("NHI_SECRET_T_PD_KEY", PD_KEY.to_string())];
    ok(&run(&["scan", "--config", &cfg, "--format", "json"], &env).await);
    let got = pd.on("/v2/enqueue");
    assert_eq!(got.len(), 1, "finops' digest only");
    let e = got[0].json();
    assert_eq!(e["event_action"], "trigger");
    assert_eq!(e["dedup_key"], "nhi-assure:finops@example.com");
    assert_eq!(e["payload"]["severity"], "error");

    // The vendor role is removed: its findings resolve, the alert with them.
    let vendor = "arn:aws:iam::111122223333:role/vendor-cost-explorer";
    let mut estate: Value = serde_json::from_str(
        &std::fs::read_to_string(demo().join("estate/aws.json")).expect("estate"),
    )
    .expect("json");
    let keep = |list: &str, key: &str, estate: &mut Value| {
        if let Some(a) = estate[list].as_array_mut() {
            a.retain(|x| x[key] != vendor);
        }
    };
    keep("identities", "id", &mut estate);
    keep("credentials", "identity", &mut estate);
    keep("grants", "identity", &mut estate);
    keep("trusts", "from", &mut estate);
    keep("trusts", "to", &mut estate);
    let copy = dir.path().join("aws.json");
    std::fs::write(&copy, estate.to_string()).expect("estate");
    let text = std::fs::read_to_string(&cfg).expect("cfg").replace(
        &demo().join("estate/aws.json").display().to_string(),
        &copy.display().to_string(),
    );
    std::fs::write(&cfg, text).expect("cfg");
    ok(&run(&["scan", "--config", &cfg, "--format", "json"], &env).await);
    let got = pd.on("/v2/enqueue");
    assert_eq!(got.len(), 2, "{got:?}");
    let e = got[1].json();
    assert_eq!(e["event_action"], "resolve", "{e:#}");
    assert_eq!(e["dedup_key"], "nhi-assure:finops@example.com");
    assert_eq!(e["routing_key"], PD_KEY);
    assert!(e.get("payload").is_none());
}

/// SMTP: a transient 451 is tried again; the message then goes once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_retries_a_transient_refusal() {
    let smtp = Arc::new(Smtp::default());
    *smtp.busy.lock().expect("lock") = 1;
    let port = smtp_server(Arc::clone(&smtp)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = demo_config(
        dir.path(),
        &format!(
            r#"[notify]
default_route = []
[[notify.routes]]
owner = "finops@*"
sinks = ["mail"]
[notify.sinks.mail]
type = "email"
host = "127.0.0.1"
port = {port}
tls = "none"
from = "nhi-assure@example.com"
to = ["finops@example.com", "secops@example.com"]
"#
        ),
    );
    ok(&run(&["scan", "--config", &cfg, "--format", "json"], &[]).await);
    let mails = smtp.messages.lock().expect("lock").clone();
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert_eq!(mails[0].1.len(), 2, "both recipients in one envelope");
    assert!(mails[0].2.contains("finops@example.com"));
    let j = journal(dir.path()).await;
    assert!(!j.is_empty());
    assert!(
        j.iter()
            .all(|d| d.status == "sent" && d.attempts == 2 && d.sink_kind == "email"),
        "{j:?}"
    );
}
