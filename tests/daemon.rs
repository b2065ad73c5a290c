//! The daemon: scheduled passes, health and metrics, graceful shutdown, a
//! pass at an approval's end instant (against moto).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nhi_aws::moto::Moto;

#[path = "support/pg.rs"]
mod pg;

#[path = "support/daemon.rs"]
mod daemon_support;
#[path = "support/demo.rs"]
mod demo;
use daemon_support::{free_port, post, terminate};

const BIN: &str = env!("CARGO_BIN_EXE_nhi-assure");

fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    Some((
        status,
        out.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default(),
    ))
}

fn passes(port: u16) -> u64 {
    get(port, "/metrics")
        .and_then(|(_, body)| {
            body.lines()
                .find(|l| l.starts_with("nhi_assure_passes_total "))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn spawn(cfg: &Path, port: u16) -> Child {
    spawn_with(cfg, port, &[])
}

fn spawn_with(cfg: &Path, port: u16, env: &[(&str, &str)]) -> Child {
    Command::new(BIN)
        .args([
            "daemon",
            "--config",
            cfg.to_str().expect("utf8"),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn daemon")
}

fn demo_copy(dir: &Path) -> std::path::PathBuf {
    demo::demo_into(dir)
}

#[test]
fn scheduled_passes_health_metrics_and_graceful_shutdown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = demo_copy(dir.path());
    let text =
        std::fs::read_to_string(&cfg).expect("read") + "\n[daemon]\nschedule = \"* * * * * *\"\n";
    std::fs::write(&cfg, text).expect("write");
    let port = free_port();
    let child = spawn(&cfg, port);
    let deadline = Instant::now() + Duration::from_secs(60);
    while passes(port) < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(passes(port) >= 3, "a pass at start, then every second");
    assert_eq!(get(port, "/healthz").map(|r| r.0), Some(200));
    assert_eq!(get(port, "/readyz").map(|r| r.0), Some(200));
    let (_, metrics) = get(port, "/metrics").expect("metrics");
    assert!(
        metrics.contains("nhi_assure_findings{severity=\"critical\"} 12"),
        "{metrics}"
    );
    assert!(metrics.contains("nhi_assure_pass_duration_seconds_count"));
    // The demo routes owners to a file sink: the first pass's digests were
    // delivered and counted per sink; later passes open nothing new.
    let sent = metrics
        .lines()
        .find(|l| l.starts_with("nhi_assure_notify_sent_total{sink=\"owners-file\"}"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok());
    assert!(sent.is_some_and(|n| n >= 1), "{metrics}");
    assert!(metrics.contains("nhi_assure_notify_failed_total{sink=\"owners-file\"} 0"));
    let lines = std::fs::read_to_string(dir.path().join("demo-notifications.jsonl"))
        .expect("owners' messages");
    assert_eq!(lines.lines().count() as u64, sent.unwrap_or(0));
    assert_eq!(terminate(child), Some(0), "SIGTERM exits 0");
}

#[test]
fn bad_schedule_fails_before_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = demo_copy(dir.path());
    let text =
        std::fs::read_to_string(&cfg).expect("read") + "\n[daemon]\nschedule = \"*/5 * * * *\"\n";
    std::fs::write(&cfg, text).expect("write");
    let o = Command::new(BIN)
        .args([
            "daemon",
            "--config",
            cfg.to_str().expect("utf8"),
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("nhi-assure.toml") && err.contains("schedule"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_end_triggers_a_pass_that_disables_the_key() {
    use nhi_contract::InventorySource;
    let moto = Moto::start("estate", &[]).expect("fixture");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("approvals")).expect("mkdir");
    let fmt = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    let now = chrono::Utc::now();
    let end = now + chrono::Duration::seconds(6);
    std::fs::write(
        dir.path().join("approvals/tf.yaml"),
        format!(
            "approvals:\n  - id: APR-TF\n    subject: \"arn:aws:iam::123456789012:user/terraform\"\n    scope: {{actions: [\"*\"]}}\n    requester: a@example.com\n    approver: b@example.com\n    approved_at: {}\n    expires_at: {}\n",
            fmt(now - chrono::Duration::days(1)),
            fmt(end)
        ),
    )
    .expect("approval");
    let cfg = dir.path().join("nhi-assure.toml");
    std::fs::write(
        &cfg,
        format!(
            "store = \"store.db\"\nmode = \"enforce\"\n[[sources]]\ntype = \"aws\"\nname = \"aws\"\nendpoint_url = \"{}\"\nmax_attempts = 3\ninitial_backoff_ms = 10\n[[approvals]]\ntype = \"files\"\nname = \"approvals\"\npath = \"approvals\"\n[enforce]\nmax_percent = 100.0\n[daemon]\nschedule = \"0 0 0 1 1 *\"\n",
            moto.ready.endpoint
        ),
    )
    .expect("config");
    let port = free_port();
    let child = spawn(&cfg, port);
    let tf = moto.key("tf-key");
    let sdk = Moto::sdk_config(&moto.ready.endpoint).await;
    let src = nhi_aws::AwsSource::with_sdk_config(nhi_aws::AwsConfig::named("check"), sdk);
    let active = || async {
        let inv = src.scan().await.expect("scan");
        inv.credentials
            .iter()
            .find(|c| c.id == tf)
            .expect("tf key")
            .active
    };
    // The journal says when the action completed: no polling of moto
    // (which would slow the peer down and blur the figure).
    let journal = || -> Vec<serde_json::Value> {
        let o = Command::new(BIN)
            .args(["journal", "--config", cfg.to_str().expect("utf8")])
            .output()
            .expect("journal");
        serde_json::from_slice(&o.stdout).unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut done_at = None;
    while Instant::now() < deadline && done_at.is_none() {
        done_at = journal()
            .iter()
            .find(|e| e["request"]["credential_id"] == tf.as_str() && e["status"] == "done")
            .and_then(|e| {
                Some((
                    e["intent_at"].as_str()?.to_string(),
                    e["outcome_at"].as_str()?.to_string(),
                ))
            });
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = terminate(child);
    let (intent_at, done_at) =
        done_at.expect("disabled after the approval ended, without a cron tick");
    let parse = |s: &str| {
        chrono::DateTime::parse_from_rfc3339(s)
            .expect("timestamp")
            .with_timezone(&chrono::Utc)
    };
    assert!(parse(&intent_at) >= end, "not acted on while approved");
    let at = parse(&done_at);
    assert!(!active().await, "disabled in moto");
    let latency = (at - end).num_milliseconds();
    println!("approval end -> key disabled (journal outcome): {latency} ms");
    assert!(latency >= 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_revocation_event_disables_the_key_and_forgeries_are_refused() {
    let moto = Moto::start("estate", &[]).expect("fixture");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("approvals")).expect("mkdir");
    let fmt = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let now = chrono::Utc::now();
    std::fs::write(
        dir.path().join("approvals/tf.yaml"),
        format!(
            "approvals:\n  - id: APR-TF\n    subject: \"arn:aws:iam::123456789012:user/terraform\"\n    scope: {{actions: [\"*\"]}}\n    requester: a@example.com\n    approver: b@example.com\n    approved_at: {}\n    expires_at: {}\n",
            fmt(now - chrono::Duration::days(1)),
            fmt(now + chrono::Duration::days(100))
        ),
    )
    .expect("approval");
    let cfg = dir.path().join("nhi-assure.toml");
    std::fs::write(
        &cfg,
        format!(
            "store = \"store.db\"\nmode = \"enforce\"\n[[sources]]\ntype = \"aws\"\nname = \"aws\"\nendpoint_url = \"{}\"\n[[approvals]]\ntype = \"files\"\nname = \"approvals\"\npath = \"approvals\"\n[enforce]\nmax_percent = 100.0\n[daemon]\nschedule = \"0 0 0 1 1 *\"\nwebhook_secret_env = \"NHIA_TEST_WEBHOOK_SECRET\"\n",
            moto.ready.endpoint
        ),
    )
    .expect("config");
    let secret = b"test-secret-of-32-bytes-exactly!";
    let port = free_port();
    let secret_text = std::str::from_utf8(secret).expect("utf8");
    let child = spawn_with(&cfg, port, &[("NHIA_TEST_WEBHOOK_SECRET", secret_text)]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while get(port, "/readyz").map(|r| r.0) != Some(200) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let body = r#"{"event":"revocation.requested","approval_id":"APR-TF","requested_by":"soc@example.com"}"#;
    let t = chrono::Utc::now().timestamp();
    assert_eq!(
        post(port, body, t, b"wrong-secret-wrong-secret-wrong!"),
        401,
        "forged signature"
    );
    assert_eq!(post(port, body, t - 3600, secret), 401, "stale timestamp");
    let sent = chrono::Utc::now();
    assert_eq!(post(port, body, t, secret), 202);
    assert_eq!(post(port, body, t, secret), 409, "replay refused");

    let tf = moto.key("tf-key");
    let mut done = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    while done.is_none() && Instant::now() < deadline {
        let o = Command::new(BIN)
            .args(["journal", "--config", cfg.to_str().expect("utf8")])
            .output()
            .expect("journal");
        let list: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap_or_default();
        done = list
            .iter()
            .find(|e| e["request"]["credential_id"] == tf.as_str() && e["status"] == "done")
            .and_then(|e| e["outcome_at"].as_str().map(str::to_string));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = terminate(child);
    let at = chrono::DateTime::parse_from_rfc3339(&done.expect("disabled after the revocation"))
        .expect("timestamp")
        .with_timezone(&chrono::Utc);
    println!(
        "event -> key disabled (journal outcome): {} ms",
        (at - sent).num_milliseconds()
    );
}

#[test]
fn replicas_on_postgres_one_leads_and_a_standby_takes_over() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = demo_copy(dir.path());
    let text = std::fs::read_to_string(&cfg).expect("read")
        + "\n[daemon]\nschedule = \"0 0 0 1 1 *\"\nlease_secs = 3\nwebhook_secret_env = \"TEST_WEBHOOK_SECRET\"\n";
    std::fs::write(&cfg, text).expect("write");
    let db = pg::database();
    let secret = "replica-webhook-secret-0123456789";
    let env = [
        ("NHI_ASSURE_STORE", db.as_str()),
        ("TEST_WEBHOOK_SECRET", secret),
    ];
    let (pa, pb) = (free_port(), free_port());
    let mut a = spawn_with(&cfg, pa, &env);
    let deadline = Instant::now() + Duration::from_secs(60);
    while passes(pa) < 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(passes(pa), 1, "the first replica leads and passes once");
    let b = spawn_with(&cfg, pb, &env);
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(pb, "/healthz").is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(3));
    let (code, body) = get(pb, "/readyz").expect("readyz");
    assert_eq!((code, body.trim()), (503, "standby: another replica leads"));
    assert_eq!(passes(pb), 0, "a standby runs no pass");
    assert_eq!(get(pa, "/readyz").map(|r| r.0), Some(200));
    let (_, metrics) = get(pa, "/metrics").expect("metrics");
    assert!(metrics.contains("nhi_assure_leader 1"), "{metrics}");

    // A revocation sent to the standby is stored there and picked up by
    // the leader, which runs a pass for it.
    let body = r#"{"event":"approval.revoked","approval_id":"APR-PAY-001"}"#;
    let now = chrono::Utc::now().timestamp();
    assert_eq!(post(pb, body, now, secret.as_bytes()), 202);
    let deadline = Instant::now() + Duration::from_secs(15);
    while passes(pa) < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(passes(pa), 2, "the leader acted on the standby's event");
    assert_eq!(passes(pb), 0);

    // A one-shot enforce run does not act beside a leading daemon.
    let o = Command::new(BIN)
        .args([
            "reconcile",
            "--enforce",
            "--config",
            cfg.to_str().expect("utf8"),
        ])
        .env("NHI_ASSURE_STORE", &db)
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("holds the leader lease"));

    // The leader dies without a word: the standby takes over once its
    // lease runs out (3 s), checking every second.
    a.kill().expect("kill");
    let _ = a.wait();
    let killed = Instant::now();
    let deadline = killed + Duration::from_secs(30);
    while passes(pb) < 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = killed.elapsed();
    assert!(passes(pb) >= 1, "the standby took over");
    assert!(took < Duration::from_secs(10), "takeover in {took:?}");
    eprintln!("takeover after the leader was killed: {took:?} (lease 3 s)");
    assert_eq!(get(pb, "/readyz").map(|r| r.0), Some(200));
    assert_eq!(terminate(b), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_targeted_pass_plans_only_for_its_subjects() {
    use nhi_assure::pass::{Context, InventoryCache, Targets};
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = demo_copy(dir.path());
    let ctx = Context::load(&cfg).expect("config");
    let mut cache = InventoryCache::new();
    let full = ctx
        .pass_scoped("daemon", Some(&mut cache), None)
        .await
        .expect("full pass");
    assert!(!cache.is_empty(), "a full pass fills the cache");
    let mut identities: Vec<&str> = full
        .plan
        .iter()
        .map(|a| a.request.identity_id.as_str())
        .collect();
    identities.sort();
    identities.dedup();
    assert!(
        identities.len() > 2,
        "the demo plans for several identities"
    );
    let subject = identities[1].to_string();

    let only = Targets {
        identities: vec![subject.clone()],
        ..Targets::default()
    };
    let targeted = ctx
        .pass_scoped("daemon-targeted", Some(&mut cache), Some(&only))
        .await
        .expect("targeted pass");
    assert!(!targeted.plan.is_empty());
    assert!(
        targeted
            .plan
            .iter()
            .all(|a| a.request.identity_id == subject),
        "acts on nothing but its subject"
    );
    let expected = full
        .plan
        .iter()
        .filter(|a| a.request.identity_id == subject)
        .count();
    assert_eq!(targeted.plan.len(), expected, "and on all of its subject");
    // It evaluated what its subject reaches, but what the daemon and the
    // rails ask of the whole estate is the whole estate's.
    assert_eq!(targeted.source_credentials, full.source_credentials);
    assert_eq!(targeted.approvals, full.approvals);
    assert_eq!(targeted.next_expiry, full.next_expiry);
    assert_eq!(targeted.sources.len(), full.sources.len());
    // It records its subject's findings, as the full pass saw them, and
    // nothing else: the rest is not resolved by omission, and reports
    // still read the full pass (the targeted one kept no reading).
    let mut of_subject: Vec<String> = full
        .findings
        .iter()
        .filter(|f| f.identity_id == subject)
        .map(|f| f.fingerprint())
        .collect();
    of_subject.sort();
    let mut seen: Vec<String> = targeted.findings.iter().map(|f| f.fingerprint()).collect();
    seen.sort();
    assert!(!seen.is_empty());
    assert_eq!(seen, of_subject);
    assert_eq!(
        (targeted.summary.opened, targeted.summary.resolved),
        (0, 0),
        "nothing opened or resolved by omission"
    );
    let store = ctx.store().await.expect("store");
    let open = nhi_assure::store::Store::open_findings(store)
        .await
        .expect("open");
    assert_eq!(open.len(), full.findings.len());
    let run = store
        .run_info(targeted.summary.run_id)
        .await
        .expect("run")
        .expect("recorded");
    assert_eq!(run.scope, Some(vec![subject.clone()]));
    assert_eq!(
        store.latest_detailed_run_id().await.expect("latest"),
        Some(full.summary.run_id)
    );
    assert!(store
        .run_reading(targeted.summary.run_id)
        .await
        .expect("reading")
        .is_none());

    // Targets naming nothing known fall back to a full pass.
    let unknown = Targets {
        approvals: vec!["APR-NOPE".into()],
        ..Targets::default()
    };
    let fallback = ctx
        .pass_scoped("daemon-targeted", Some(&mut cache), Some(&unknown))
        .await
        .expect("pass");
    assert_eq!(fallback.plan.len(), full.plan.len());
    assert!(fallback.targeted.is_none());
}

/// POST `body` to `path` with `headers`; the HTTP status.
fn post_raw(port: u16, path: &str, headers: &[(&str, String)], body: &str) -> u16 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(
        s,
        "POST {path} HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n{body}",
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

fn hmac_hex(secret: &[u8], body: &str) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret).expect("key");
    mac.update(body.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The `targeted` field of each "pass done" line the daemon logged.
fn passes_logged(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "pass done")
        .map(|v| v["fields"]["targeted"].as_str().unwrap_or("").to_string())
        .collect()
}

/// A Jira webhook (Jira's own payload, signed as Jira signs) for a ticket
/// closed as done runs a targeted pass for exactly that ticket's subjects,
/// which disables its key; a bad signature is refused with no pass, a
/// replayed delivery is refused. ServiceNow messages are verified by HMAC
/// or basic auth; a ticket no pass knows runs a full pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_jira_event_closing_a_ticket_disables_exactly_its_subjects_keys() {
    let moto = Moto::start("estate", &[]).expect("fixture");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("approvals")).expect("mkdir");
    let fmt = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let now = chrono::Utc::now();
    let approvals = |revoked: Option<chrono::DateTime<chrono::Utc>>| {
        let revoked = revoked
            .map(|t| format!("    revoked_at: {}\n", fmt(t)))
            .unwrap_or_default();
        format!(
            "approvals:\n  - id: APR-TF\n    subject: \"arn:aws:iam::123456789012:user/terraform\"\n    scope: {{actions: [\"*\"]}}\n    requester: a@example.com\n    approver: b@example.com\n    approved_at: {a}\n    expires_at: {e}\n    reference: SEC-5\n{revoked}  - id: APR-CI\n    subject: \"arn:aws:iam::123456789012:user/machine/ci-deployer\"\n    scope: {{actions: [\"*\"]}}\n    requester: a@example.com\n    approver: b@example.com\n    approved_at: {a}\n    expires_at: {e}\n    reference: SEC-6\n",
            a = fmt(now - chrono::Duration::days(1)),
            e = fmt(now + chrono::Duration::days(100)),
        )
    };
    std::fs::write(dir.path().join("approvals/tickets.yaml"), approvals(None)).expect("approval");
    let cfg = dir.path().join("nhi-assure.toml");
    std::fs::write(
        &cfg,
        format!(
            "store = \"store.db\"\nmode = \"enforce\"\n[[sources]]\ntype = \"aws\"\nname = \"aws\"\nendpoint_url = \"{}\"\n[[approvals]]\ntype = \"files\"\nname = \"approvals\"\npath = \"approvals\"\n[enforce]\nmax_percent = 100.0\n[daemon]\nschedule = \"0 0 0 1 1 *\"\njira_webhook_secret_env = \"NHIA_TEST_JIRA\"\nservicenow_hmac_secret_env = \"NHIA_TEST_SNOW\"\nservicenow_basic_auth_env = \"NHIA_TEST_SNOW_BASIC\"\n",
            moto.ready.endpoint
        ),
    )
    .expect("config");
    let jira = "jira-webhook-secret-0123456789ab";
    let snow = "servicenow-secret-0123456789abcd";
    let basic = "nhi-events:basic-password-0123456";
    let port = free_port();
    let log = dir.path().join("daemon.log");
    let child = Command::new(BIN)
        .args([
            "daemon",
            "--config",
            cfg.to_str().expect("utf8"),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("RUST_LOG", "nhi_assure=info")
        .env("NHIA_TEST_JIRA", jira)
        .env("NHIA_TEST_SNOW", snow)
        .env("NHIA_TEST_SNOW_BASIC", basic)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn daemon");
    let deadline = Instant::now() + Duration::from_secs(60);
    while get(port, "/readyz").map(|r| r.0) != Some(200) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        passes_logged(&log),
        vec!["None".to_string()],
        "one full pass"
    );

    // The ticket is closed as done: the source now reads its approval ended.
    std::fs::write(
        dir.path().join("approvals/tickets.yaml"),
        approvals(Some(chrono::Utc::now() - chrono::Duration::seconds(5))),
    )
    .expect("close the ticket");
    let ms = chrono::Utc::now().timestamp_millis();
    let body = format!(
        r#"{{"timestamp":{ms},"webhookEvent":"jira:issue_updated","issue_event_type_name":"issue_generic","user":{{"accountId":"5b10a2844c20165700ede21g"}},"issue":{{"id":"10002","self":"https://example.atlassian.net/rest/api/3/issue/10002","key":"SEC-5","fields":{{"status":{{"name":"Done"}}}}}},"changelog":{{"id":"10001","items":[{{"field":"status","fieldtype":"jira","from":"3","fromString":"In Progress","to":"10001","toString":"Done"}}]}}}}"#
    );
    let signed = |secret: &str, body: &str| {
        vec![
            (
                "X-Hub-Signature",
                format!("sha256={}", hmac_hex(secret.as_bytes(), body)),
            ),
            ("X-Atlassian-Webhook-Identifier", "delivery-1".to_string()),
        ]
    };
    assert_eq!(
        post_raw(
            port,
            "/v1/events/jira",
            &signed("not-the-jira-secret-0123456", &body),
            &body
        ),
        401,
        "bad signature"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(passes_logged(&log).len(), 1, "no pass on a refused event");

    let sent = chrono::Utc::now();
    let t0 = Instant::now();
    assert_eq!(
        post_raw(port, "/v1/events/jira", &signed(jira, &body), &body),
        202
    );
    let mut targeted = Vec::new();
    while targeted.is_empty() && t0.elapsed() < Duration::from_secs(30) {
        targeted = passes_logged(&log).into_iter().skip(1).collect();
        std::thread::sleep(Duration::from_millis(2));
    }
    let pass_done = t0.elapsed();
    assert_eq!(
        post_raw(port, "/v1/events/jira", &signed(jira, &body), &body),
        409,
        "replayed delivery"
    );
    assert_eq!(
        targeted,
        vec![r#"Some(["arn:aws:iam::123456789012:user/terraform"])"#.to_string()],
        "a targeted pass for exactly the ticket's subject"
    );

    let tf = moto.key("tf-key");
    let mut done = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    while done.is_none() && Instant::now() < deadline {
        let o = Command::new(BIN)
            .args(["journal", "--config", cfg.to_str().expect("utf8")])
            .output()
            .expect("journal");
        let list: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap_or_default();
        done = list
            .iter()
            .find(|e| e["request"]["credential_id"] == tf.as_str() && e["status"] == "done")
            .and_then(|e| e["outcome_at"].as_str().map(str::to_string));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let at = chrono::DateTime::parse_from_rfc3339(&done.expect("disabled after the ticket closed"))
        .expect("timestamp")
        .with_timezone(&chrono::Utc);
    println!(
        "jira event -> targeted pass done: {} ms (log polled); key disabled (journal outcome): {} ms",
        pass_done.as_millis(),
        (at - sent).num_milliseconds()
    );

    // ServiceNow: HMAC in its header, or basic auth; a ticket no pass knows
    // is a full pass.
    let snow_body = format!(
        r#"{{"number":"RITM0010001","state":"3","timestamp":{}}}"#,
        chrono::Utc::now().timestamp()
    );
    let hmac_header =
        |s: &str| vec![("X-ServiceNow-Signature", hmac_hex(s.as_bytes(), &snow_body))];
    assert_eq!(
        post_raw(
            port,
            "/v1/events/servicenow",
            &hmac_header("wrong-servicenow-secret-0123"),
            &snow_body
        ),
        401
    );
    assert_eq!(
        post_raw(
            port,
            "/v1/events/servicenow",
            &hmac_header(snow),
            &snow_body
        ),
        202
    );
    assert_eq!(
        post_raw(
            port,
            "/v1/events/servicenow",
            &hmac_header(snow),
            &snow_body
        ),
        409,
        "replayed message"
    );
    use base64::Engine as _;
    let auth = |cred: &str| {
        vec![(
            "Authorization",
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(cred)
            ),
        )]
    };
    let basic_body = format!(
        r#"{{"number":"RITM0010002","timestamp":{}}}"#,
        chrono::Utc::now().timestamp()
    );
    assert_eq!(
        post_raw(
            port,
            "/v1/events/servicenow",
            &auth("nhi-events:wrong"),
            &basic_body
        ),
        401
    );
    assert_eq!(
        post_raw(port, "/v1/events/servicenow", &auth(basic), &basic_body),
        202
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while passes_logged(&log).len() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = terminate(child);
    let all = passes_logged(&log);
    assert!(all.len() >= 3, "{all:?}");
    assert!(
        all[2..].iter().all(|t| t == "None"),
        "an unknown ticket is a full pass: {all:?}"
    );
}

/// A Jira search page (the API's own shape) holding one ticket approving
/// `subject`, approved by another person than its reporter; `done` closes
/// it with a resolution date.
fn jira_page(key: &str, subject: &str, done: Option<&str>) -> String {
    let user = |id: &str, email: &str| serde_json::json!({"accountId": id, "emailAddress": email, "displayName": email, "active": true});
    let status = if done.is_some() { "Done" } else { "Approved" };
    let mut histories = vec![serde_json::json!({
        "id": "1", "author": user("5b10ac8d82e05b22cc7d4ef5", "approver@example.com"),
        "created": "2026-11-02T09:15:00.000+0000",
        "items": [{"field": "status", "fieldtype": "jira", "fieldId": "status", "from": "10003",
                   "fromString": "Waiting for approval", "to": "10001", "toString": "Approved"}]})];
    if let Some(at) = done {
        histories.push(serde_json::json!({
            "id": "2", "author": user("5b10a2844c20165700ede21g", "requester@example.com"), "created": at,
            "items": [{"field": "status", "fieldtype": "jira", "fieldId": "status", "from": "10001",
                       "fromString": "Approved", "to": "10002", "toString": "Done"}]}));
    }
    serde_json::json!({"issues": [{
        "id": "10002", "key": key, "self": format!("https://example.atlassian.net/rest/api/3/issue/10002"),
        "fields": {
            "status": {"name": status, "id": "10001"},
            "reporter": user("5b10a2844c20165700ede21g", "requester@example.com"),
            "assignee": user("5b109f2e9729b51b54dc274d", "engineer@example.com"),
            "resolutiondate": done, "updated": done.unwrap_or("2026-11-02T09:15:00.000+0000"),
            "customfield_10040": [subject],
            "customfield_10042": (chrono::Utc::now() + chrono::Duration::days(90)).format("%Y-%m-%d").to_string(),
            "customfield_10044": "*"
        },
        "changelog": {"startAt": 0, "maxResults": histories.len(), "total": histories.len(), "histories": histories}
    }], "isLast": true})
    .to_string()
}

/// YAML files, Jira and ServiceNow approval sources in one config against
/// moto: each source's approval covers its own user's keys and nothing
/// else; then, in the daemon, a signed Jira event for the ticket closed as
/// done disables exactly that ticket's subject's key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yaml_jira_and_servicenow_approvals_cover_their_keys_and_a_closed_ticket_ends_access() {
    let moto = Moto::start("estate", &[]).expect("fixture");
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let account = "arn:aws:iam::123456789012:user";
    for sub in [
        "approvals",
        "jira",
        "snow/sc_req_item",
        "snow/sysapproval_approver",
    ] {
        std::fs::create_dir_all(d.join(sub)).expect("mkdir");
    }
    let now = chrono::Utc::now();
    let fmt = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    std::fs::write(
        d.join("approvals/legacy.yaml"),
        format!(
            "approvals:\n  - id: APR-LEGACY\n    subject: \"{account}/legacy-batch\"\n    scope: {{actions: [\"*\"]}}\n    requester: a@example.com\n    approver: b@example.com\n    approved_at: {}\n    expires_at: {}\n",
            fmt(now - chrono::Duration::days(1)),
            fmt(now + chrono::Duration::days(100))
        ),
    )
    .expect("yaml");
    std::fs::write(
        d.join("jira/search-1.json"),
        jira_page("ACC-1", &format!("{account}/terraform"), None),
    )
    .expect("jira");
    std::fs::write(
        d.join("snow/sc_req_item/page-1.json"),
        serde_json::json!({"result": [{
            "sys_id": "a1d5c3a1db2f0010c8d2f0f5ca9619a1", "number": "RITM0010001", "approval": "approved",
            "state": "2", "sys_updated_on": "2026-11-10 09:00:00",
            "requested_for": "5137153cc611227c000bbd1bd8cd2005", "opened_by": "5137153cc611227c000bbd1bd8cd2005",
            "assigned_to": "681ccaf9c0a8016400b98a06818d57c7", "closed_at": "",
            "variables.identity_id": format!("arn:aws:iam::123456789012:user/machine/ci-deployer"),
            "variables.actions": "*", "variables.access_until": "2099-12-31"
        }]})
        .to_string(),
    )
    .expect("snow");
    std::fs::write(
        d.join("snow/sysapproval_approver/page-1.json"),
        serde_json::json!({"result": [{
            "sys_id": "b2e6d4b2ec3f0010d9e3f1f6db7a2ab1", "sysapproval": "a1d5c3a1db2f0010c8d2f0f5ca9619a1",
            "approver": "46d44a23a9fe19810012d100cca80666", "state": "approved",
            "sys_updated_on": "2026-11-09 10:00:00"
        }]})
        .to_string(),
    )
    .expect("snow approvals");
    let cfg = d.join("nhi-assure.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"store = "store.db"
[[sources]]
type = "aws"
name = "aws"
endpoint_url = "{endpoint}"
[[approvals]]
type = "files"
name = "approvals"
path = "approvals"
[[approvals]]
type = "jira"
name = "jira"
base_url = "https://example.atlassian.net"
export_dir = "jira"
[approvals.fields]
subjects = "customfield_10040"
expires_at = "customfield_10042"
actions = "customfield_10044"
[[approvals]]
type = "servicenow"
name = "servicenow"
instance_url = "https://example.service-now.com"
export_dir = "snow"
[approvals.mapping]
subject = "variables.identity_id"
actions = "variables.actions"
expires_at = "variables.access_until"
[enforce]
max_percent = 100.0
[daemon]
schedule = "0 0 0 1 1 *"
jira_webhook_secret_env = "NHIA_TEST_JIRA_E2E"
"#,
            endpoint = moto.ready.endpoint
        ),
    )
    .expect("config");
    let aws_env = [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_CONFIG_FILE", "/dev/null"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
    ];

    // One-shot scan: exactly the keys no source approves are unapproved.
    let scan = Command::new(BIN)
        .args([
            "scan",
            "--config",
            cfg.to_str().expect("utf8"),
            "--format",
            "json",
        ])
        .envs(aws_env)
        .output()
        .expect("scan");
    let doc: serde_json::Value = serde_json::from_slice(&scan.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&scan.stderr)));
    let unapproved: std::collections::BTreeSet<String> = doc["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["rule_id"] == "credential-unapproved")
        .filter_map(|f| f["credential_id"].as_str().map(str::to_string))
        .collect();
    let key = |name: &str| moto.key(name);
    for approved in ["legacy-key", "tf-key", "ci-old", "ci-new"] {
        assert!(
            !unapproved.contains(&key(approved)),
            "{approved} is approved: {unapproved:?}"
        );
    }
    for not in ["inline-key", "chain-key"] {
        assert!(
            unapproved.contains(&key(not)),
            "{not} has no approval: {unapproved:?}"
        );
    }
    // Every ticket read and mapped, nothing held for a ticket (moto's
    // missing service-specific credentials make the AWS source partial).
    let err = String::from_utf8_lossy(&scan.stderr);
    assert!(
        !err.contains("could not be mapped") && !err.contains("unmapped"),
        "{err}"
    );

    // The daemon, enforcing: the ticket is closed as done, and Jira says so.
    let secret = "jira-e2e-webhook-secret-0123456";
    let text = std::fs::read_to_string(&cfg).expect("read").replace(
        "store = \"store.db\"",
        "store = \"store.db\"\nmode = \"enforce\"",
    );
    std::fs::write(&cfg, text).expect("enforce");
    let port = free_port();
    let log = d.join("daemon.log");
    let child = Command::new(BIN)
        .args([
            "daemon",
            "--config",
            cfg.to_str().expect("utf8"),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .envs(aws_env)
        .env("RUST_LOG", "nhi_assure=info")
        .env("NHIA_TEST_JIRA_E2E", secret)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn daemon");
    let deadline = Instant::now() + Duration::from_secs(60);
    while passes_logged(&log).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(passes_logged(&log).len(), 1, "one full pass");
    let closed = fmt(chrono::Utc::now() - chrono::Duration::seconds(5)).replace('Z', ".000+0000");
    std::fs::write(
        d.join("jira/search-1.json"),
        jira_page("ACC-1", &format!("{account}/terraform"), Some(&closed)),
    )
    .expect("close the ticket");
    let body = format!(
        r#"{{"timestamp":{},"webhookEvent":"jira:issue_updated","issue":{{"id":"10002","key":"ACC-1","fields":{{"status":{{"name":"Done"}}}}}},"changelog":{{"id":"2","items":[{{"field":"status","fieldtype":"jira","from":"10001","fromString":"Approved","to":"10002","toString":"Done"}}]}}}}"#,
        chrono::Utc::now().timestamp_millis()
    );
    let headers = vec![
        (
            "X-Hub-Signature",
            format!("sha256={}", hmac_hex(secret.as_bytes(), &body)),
        ),
        (
            "X-Atlassian-Webhook-Identifier",
            "e2e-delivery-1".to_string(),
        ),
    ];
    let t0 = Instant::now();
    assert_eq!(post_raw(port, "/v1/events/jira", &headers, &body), 202);
    let tf = key("tf-key");
    let mut done = false;
    while !done && t0.elapsed() < Duration::from_secs(30) {
        let o = Command::new(BIN)
            .args(["journal", "--config", cfg.to_str().expect("utf8")])
            .output()
            .expect("journal");
        let list: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap_or_default();
        done = list
            .iter()
            .any(|e| e["request"]["credential_id"] == tf.as_str() && e["status"] == "done");
        if !done {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert!(done, "the closed ticket's key is disabled");
    println!(
        "jira event (real connector, export) -> key disabled: {} ms",
        t0.elapsed().as_millis()
    );
    let targeted: Vec<String> = passes_logged(&log).into_iter().skip(1).collect();
    assert_eq!(
        targeted,
        vec![format!(r#"Some(["{account}/terraform"])"#)],
        "a targeted pass for exactly the ticket's subject"
    );
    // Nothing else was acted on: the other approved keys are untouched.
    let o = Command::new(BIN)
        .args(["journal", "--config", cfg.to_str().expect("utf8")])
        .output()
        .expect("journal");
    let list: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap_or_default();
    for other in ["legacy-key", "ci-old", "ci-new"] {
        assert!(
            !list
                .iter()
                .any(|e| e["request"]["credential_id"] == key(other).as_str()),
            "{other} must not be acted on"
        );
    }
    assert_eq!(terminate(child), Some(0));
}

/// The demo with its approval files as the only approval source (the
/// ticket exports are read whole by every pass, by design).
fn files_only_demo(dir: &Path) -> std::path::PathBuf {
    let cfg = demo_copy(dir);
    let text = std::fs::read_to_string(&cfg).expect("read");
    let cut = text
        .find("[[approvals]]\ntype = \"jira\"")
        .expect("jira block");
    let rest = text.find("[exceptions]").expect("exceptions");
    std::fs::write(&cfg, format!("{}{}", &text[..cut], &text[rest..])).expect("write");
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_approvals_are_shared_between_passes_and_changes_are_read() {
    use nhi_assure::pass::{Context, InventoryCache, Targets};
    use std::sync::Arc;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = files_only_demo(dir.path());
    let ctx = Context::load(&cfg).expect("config");
    let mut cache = InventoryCache::new();
    let full = ctx
        .pass_scoped("daemon", Some(&mut cache), None)
        .await
        .expect("full pass");
    let subject = full
        .plan
        .first()
        .expect("a plan")
        .request
        .identity_id
        .clone();
    let only = Targets {
        identities: vec![subject],
        ..Targets::default()
    };
    macro_rules! targeted {
        () => {
            ctx.pass_scoped("daemon-targeted", Some(&mut cache), Some(&only))
        };
    }
    let t1 = targeted!().await.expect("t1");
    let t2 = targeted!().await.expect("t2");
    assert_eq!(t1.approvals, full.approvals);
    assert!(
        Arc::ptr_eq(&t1.approvals, &t2.approvals),
        "unchanged files: the same approvals, not a copy"
    );
    // A file removed is read at once.
    let approvals = dir.path().join("approvals");
    let gone = std::fs::read_to_string(approvals.join("data.yaml")).expect("data.yaml");
    std::fs::remove_file(approvals.join("data.yaml")).expect("rm");
    let t3 = targeted!().await.expect("t3");
    assert!(t3.approvals.len() < t2.approvals.len());
    // Put back: read again, as before.
    std::fs::write(approvals.join("data.yaml"), gone).expect("write");
    let t4 = targeted!().await.expect("t4");
    assert_eq!(t4.approvals, full.approvals);
    // A revocation ends its approval in the list the pass hands on; the
    // revoked copy is kept while neither side changes.
    let id = full.approvals[0].id.clone();
    let store = ctx.store().await.expect("store");
    let at = chrono::Utc::now();
    store
        .add_revocation(&id, at, "test", Some("ended early"))
        .await
        .expect("revoke");
    let t5 = targeted!().await.expect("t5");
    let t6 = targeted!().await.expect("t6");
    let revoked = |p: &nhi_assure::pass::PassResult| {
        p.approvals
            .iter()
            .find(|a| a.id == id)
            .and_then(|a| a.revoked_at)
    };
    assert!(revoked(&t5).is_some(), "revoked in the pass's approvals");
    assert!(revoked(&t4).is_none());
    assert!(Arc::ptr_eq(&t5.approvals, &t6.approvals));
    assert_eq!(
        t5.approvals
            .iter()
            .filter(|a| a.revoked_at.is_some())
            .count(),
        t4.approvals
            .iter()
            .filter(|a| a.revoked_at.is_some())
            .count()
            + 1,
        "that approval only"
    );
}
