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
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo");
    for sub in ["estate", "approvals"] {
        std::fs::create_dir_all(dir.join(sub)).expect("mkdir");
        for e in std::fs::read_dir(src.join(sub)).expect("read") {
            let p = e.expect("entry").path();
            std::fs::copy(&p, dir.join(sub).join(p.file_name().expect("name"))).expect("copy");
        }
    }
    let cfg = dir.join("nhi-assure.toml");
    std::fs::copy(src.join("nhi-assure.toml"), &cfg).expect("copy config");
    cfg
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
        metrics.contains("nhi_assure_findings{severity=\"critical\"} 11"),
        "{metrics}"
    );
    assert!(metrics.contains("nhi_assure_pass_duration_seconds_count"));
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
        approvals: Vec::new(),
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
    assert_eq!(
        targeted.findings.len(),
        full.findings.len(),
        "findings still cover the whole estate (nothing resolved by omission)"
    );

    // Targets naming nothing known fall back to a full pass.
    let unknown = Targets {
        identities: Vec::new(),
        approvals: vec!["APR-NOPE".into()],
    };
    let fallback = ctx
        .pass_scoped("daemon-targeted", Some(&mut cache), Some(&unknown))
        .await
        .expect("pass");
    assert_eq!(fallback.plan.len(), full.plan.len());
    assert!(fallback.targeted.is_none());
}
