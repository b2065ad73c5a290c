//! The action budget is one budget over time, not one per pass: a daemon
//! receiving a burst of signed revocation events (each its own targeted
//! pass) and one-shot runs after it all draw from the journal's count.
//! Also: revocations can be listed and withdrawn (audited), and one naming
//! no known approval is marked, never kept silently.

#[path = "support/cli.rs"]
mod cli_support;
#[path = "support/daemon.rs"]
mod daemon_support;
use daemon_support::{free_port, terminate};

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use nhi_aws::moto::Moto;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_nhi-assure");
const SECRET: &str = "budget-test-webhook-secret-0123456789";
const USERS: usize = 30;
const WINDOW_SECS: u64 = 45;

fn ready(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    if write!(s, "GET /readyz HTTP/1.0\r\nHost: localhost\r\n\r\n").is_err() {
        return false;
    }
    let mut out = String::new();
    s.read_to_string(&mut out).is_ok() && out.split_whitespace().nth(1) == Some("200")
}

/// POST a webhook event signed now with the test's secret; the status.
fn post(port: u16, body: &str) -> u16 {
    daemon_support::post(
        port,
        body,
        chrono::Utc::now().timestamp(),
        SECRET.as_bytes(),
    )
}

fn run(args: &[&str]) -> Output {
    cli_support::moto_cmd(args)
        .output()
        .expect("run nhi-assure")
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)))
}

fn user(i: usize) -> String {
    format!("arn:aws:iam::123456789012:user/svc-bulk-{i}")
}

/// Thirty approved machine users, one key each; the budget allows five
/// actions per `WINDOW_SECS` in all.
fn setup(moto: &Moto, dir: &Path, actions: u64) -> String {
    std::fs::create_dir_all(dir.join("approvals")).expect("mkdir");
    let fmt = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let now = chrono::Utc::now();
    let mut text = String::from("approvals:\n");
    for i in 0..USERS {
        text += &format!(
            "  - id: APR-SVC-{i}\n    subject: \"{}\"\n    scope: {{actions: [\"s3:GetObject\"]}}\n    requester: a@example.com\n    approver: b@example.com\n    approved_at: {}\n    expires_at: {}\n",
            user(i),
            fmt(now - chrono::Duration::days(1)),
            fmt(now + chrono::Duration::days(100)),
        );
    }
    std::fs::write(dir.join("approvals/svc.yaml"), text).expect("approvals");
    write_config(moto, dir, actions)
}

fn write_config(moto: &Moto, dir: &Path, actions: u64) -> String {
    let cfg = dir.join("nhi-assure.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"store = "store.db"
mode = "enforce"
[[sources]]
type = "aws"
name = "aws"
endpoint_url = "{}"
[[approvals]]
type = "files"
name = "approvals"
path = "approvals"
[enforce]
max_percent = 100.0
[enforce.budget]
overall = [{{ window_secs = {WINDOW_SECS}, actions = {actions} }}]
per_source = []
[daemon]
schedule = "0 0 0 1 1 *"
webhook_secret_env = "BUDGET_TEST_WEBHOOK_SECRET"
"#,
            moto.ready.endpoint
        ),
    )
    .expect("config");
    cfg.display().to_string()
}

/// Journal entries: (credential, status, intent_at).
fn journal(cfg: &str) -> Vec<(String, String, String)> {
    let v = json(&run(&["journal", "--config", cfg]));
    v.as_array()
        .expect("journal")
        .iter()
        .map(|e| {
            (
                e["request"]["credential_id"]
                    .as_str()
                    .unwrap_or_default()
                    .into(),
                e["status"].as_str().unwrap_or_default().into(),
                e["intent_at"].as_str().unwrap_or_default().into(),
            )
        })
        .collect()
}

/// Open findings of enforce mode's action budget, from the store itself.
async fn budget_findings(dir: &Path) -> usize {
    use nhi_assure::store::Store;
    let store = nhi_assure::store::SqlStore::open(&dir.join("store.db").display().to_string())
        .await
        .expect("store");
    store
        .open_findings()
        .await
        .expect("findings")
        .iter()
        .filter(|f| &*f.finding.rule_id == "enforce-action-budget")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_revocations_draws_from_one_budget_over_time() {
    let moto = Moto::start("burst", &[]).expect("fixture");
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = setup(&moto, dir.path(), 5);
    let port = free_port();
    let daemon = Command::new(BIN)
        .args(["daemon", "--config", &cfg, "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("BUDGET_TEST_WEBHOOK_SECRET", SECRET)
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("daemon");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready(port) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(ready(port), "daemon leads");

    // Thirty signed revocations, one second apart: thirty targeted passes.
    for i in 0..USERS {
        let body = format!(
            r#"{{"event":"revocation.requested","approval_id":"APR-SVC-{i}","requested_by":"soc@example.com","reason":"burst {i}"}}"#
        );
        assert_eq!(post(port, &body), 202, "event {i}");
        std::thread::sleep(Duration::from_secs(1));
    }
    // And one naming an approval nobody has.
    assert_eq!(
        post(
            port,
            r#"{"event":"revocation.requested","approval_id":"APR-NOBODY","requested_by":"soc@example.com"}"#
        ),
        202
    );
    // Let the last passes finish, then stop the daemon (it releases its lease).
    std::thread::sleep(Duration::from_secs(3));
    let _ = terminate(daemon);

    let after_burst = journal(&cfg);
    let done: Vec<_> = after_burst.iter().filter(|e| e.1 == "done").collect();
    assert_eq!(done.len(), 5, "exactly the budget acted: {after_burst:#?}");
    assert_eq!(after_burst.len(), 5, "the rest held, never journaled");
    assert_eq!(
        budget_findings(dir.path()).await,
        1,
        "the budget's finding is open"
    );

    // Revocations are listed; the one naming nothing is marked.
    let list = json(&run(&[
        "revocations",
        "list",
        "--config",
        &cfg,
        "--format",
        "json",
    ]));
    let list = list.as_array().expect("list");
    assert_eq!(list.len(), USERS + 1);
    let nobody = list
        .iter()
        .find(|r| r["approval_id"] == "APR-NOBODY")
        .expect("stored");
    assert!(nobody["unmatched_since"].is_string(), "{nobody:#?}");
    assert!(list
        .iter()
        .filter(|r| r["approval_id"] != "APR-NOBODY")
        .all(|r| r["unmatched_since"].is_null()));

    // Withdraw one revocation whose key was held: audited, and its key stays.
    let acted: Vec<&String> = done.iter().map(|e| &e.0).collect();
    let held_user = (0..USERS)
        .find(|i| !acted.contains(&&moto.key(&format!("svc-bulk-{i}-key-0"))))
        .expect("a held one");
    let withdrawn = format!("APR-SVC-{held_user}");
    let w = run(&[
        "revocations",
        "withdraw",
        "--config",
        &cfg,
        &withdrawn,
        "--reason",
        "revoked by mistake",
    ]);
    assert_eq!(
        w.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&w.stderr)
    );
    let again = run(&[
        "revocations",
        "withdraw",
        "--config",
        &cfg,
        &withdrawn,
        "--reason",
        "twice",
    ]);
    assert_eq!(again.status.code(), Some(1), "nothing left to withdraw");
    let audit = json(&run(&["audit", "list", "--config", &cfg]));
    assert!(audit
        .as_array()
        .expect("audit")
        .iter()
        .any(|e| e["kind"] == "approval.revocation_withdrawn"
            && e["subject"] == withdrawn.as_str()
            && e["data"]["reason"] == "revoked by mistake"));

    // Still inside the window: a one-shot run acts on nothing more.
    let reconcile = || {
        json(&run(&[
            "reconcile",
            "--config",
            &cfg,
            "--enforce",
            "--allow-partial",
            "--format",
            "json",
        ]))
    };
    let at = |i: usize| chrono::DateTime::parse_from_rfc3339(&done[i].2).expect("timestamp");
    let (first_at, last_at) = (at(0), at(done.len() - 1));
    let inside = reconcile();
    let outcomes = inside["outcomes"].as_array().expect("outcomes");
    if chrono::Utc::now().signed_duration_since(first_at)
        < chrono::Duration::seconds(WINDOW_SECS as i64 - 2)
    {
        assert!(
            outcomes.iter().all(|o| o["status"] != "done"),
            "{outcomes:#?}"
        );
        assert!(outcomes.iter().any(|o| o["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("action budget:"))));
    }

    // Once the window has rolled past the burst's actions, the next pass
    // continues: five more, no more.
    let wait = last_at + chrono::Duration::seconds(WINDOW_SECS as i64 + 1);
    let left = wait.signed_duration_since(chrono::Utc::now());
    if let Ok(d) = left.to_std() {
        std::thread::sleep(d);
    }
    let later = reconcile();
    let done_later = later["outcomes"]
        .as_array()
        .expect("outcomes")
        .iter()
        .filter(|o| o["status"] == "done")
        .count();
    assert_eq!(done_later, 5, "{later:#?}");
    assert_eq!(
        budget_findings(dir.path()).await,
        1,
        "still over budget: open"
    );

    // A budget that holds nothing back resolves the finding; the withdrawn
    // revocation's key is never disabled.
    write_config(&moto, dir.path(), 1000);
    let last = reconcile();
    let outcomes = last["outcomes"].as_array().expect("outcomes");
    assert!(outcomes.iter().all(|o| o["detail"]
        .as_str()
        .is_none_or(|d| !d.starts_with("action budget:"))));
    assert_eq!(
        budget_findings(dir.path()).await,
        0,
        "resolved once nothing is held"
    );
    let withdrawn_key = moto.key(&format!("svc-bulk-{held_user}-key-0"));
    let final_journal = journal(&cfg);
    assert!(
        !final_journal.iter().any(|e| e.0 == withdrawn_key),
        "the withdrawn revocation's key was not acted on"
    );
    assert_eq!(
        final_journal.iter().filter(|e| e.1 == "done").count(),
        USERS - 1,
        "every other revoked key disabled in the end"
    );
}
