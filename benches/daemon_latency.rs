//! Latency of the daemon's targeted passes against moto: approval end →
//! key disabled, signed revocation event → key disabled, and a Jira ticket
//! closed as done (the `jira` approval source reading an export, Jira's own
//! signed `jira:issue_updated` event) → key disabled, as p50 / p99 / max
//! over N subjects each.
//!
//!     cargo bench --bench daemon_latency -- [--subjects N] [--spacing-ms MS]
//!
//! Needs `moto[server]` (tests/run.sh installs it). Each subject is a user
//! with one access key and an approval; the daemon (enforce mode, the
//! shipped rails but an action budget large enough for every subject: the
//! measure is latency, not the budget) runs one full pass at start, then nothing but the targeted
//! passes measured here. Completion times are the journal's outcome
//! timestamps, so the measurement does not poll (and slow) moto.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use nhi_aws::moto::Moto;

const BIN: &str = env!("CARGO_BIN_EXE_nhi-assure");
const SECRET: &str = "bench-webhook-secret-0123456789";
const JIRA_SECRET: &str = "bench-jira-webhook-secret-01234";

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("daemon_latency: {msg}");
    std::process::exit(2);
}

fn rfc(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

fn post_revocation(port: u16, approval: &str) -> Result<u16, std::io::Error> {
    use hmac::{KeyInit, Mac};
    let body = format!(r#"{{"event":"approval.revoked","approval_id":"{approval}"}}"#);
    let stamp = Utc::now().timestamp();
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes())
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    mac.update(format!("{stamp}.{body}").as_bytes());
    let sig = hex::encode(mac.finalize().into_bytes());
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    write!(
        s,
        "POST /webhook HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/json\r\nX-NHI-Assure-Timestamp: {stamp}\r\nX-NHI-Assure-Signature: sha256={sig}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0))
}

/// A Jira `search/jql` page (the API's shape) of one ticket per subject,
/// `ACC-{i}`, approving it until `until`; those in `done` closed as done.
fn jira_page(
    subjects: &[(u64, String)],
    until: &str,
    done: &std::collections::HashSet<u64>,
) -> String {
    let user = |id: &str| serde_json::json!({"accountId": id, "displayName": id, "active": true});
    let now = Utc::now().format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string();
    let issues: Vec<serde_json::Value> = subjects
        .iter()
        .map(|(i, subject)| {
            let closed = done.contains(i);
            let mut histories = vec![serde_json::json!({"id": "1", "author": user("approver"),
                "created": "2026-11-02T09:15:00.000+0000",
                "items": [{"field": "status", "fieldtype": "jira", "from": "10003",
                           "fromString": "Waiting for approval", "to": "10001", "toString": "Approved"}]})];
            if closed {
                histories.push(serde_json::json!({"id": "2", "author": user("requester"), "created": now,
                    "items": [{"field": "status", "fieldtype": "jira", "from": "10001",
                               "fromString": "Approved", "to": "10002", "toString": "Done"}]}));
            }
            serde_json::json!({"id": i.to_string(), "key": format!("ACC-{i}"),
                "fields": {"status": {"name": if closed { "Done" } else { "Approved" }},
                    "reporter": user("requester"), "assignee": user("engineer"),
                    "resolutiondate": if closed { Some(now.clone()) } else { None },
                    "updated": now, "customfield_10040": [subject],
                    "customfield_10042": until, "customfield_10044": "*"},
                "changelog": {"startAt": 0, "maxResults": histories.len(), "total": histories.len(),
                              "histories": histories}})
        })
        .collect();
    serde_json::json!({"issues": issues, "isLast": true}).to_string()
}

/// Jira's event for ticket `key` moved to Done, signed as Jira signs.
fn post_jira(port: u16, key: &str, i: u64) -> Result<u16, std::io::Error> {
    use hmac::{KeyInit, Mac};
    let body = format!(
        r#"{{"timestamp":{},"webhookEvent":"jira:issue_updated","issue":{{"id":"{i}","key":"{key}","fields":{{"status":{{"name":"Done"}}}}}},"changelog":{{"id":"2","items":[{{"field":"status","fieldtype":"jira","from":"10001","fromString":"Approved","to":"10002","toString":"Done"}}]}}}}"#,
        Utc::now().timestamp_millis()
    );
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(JIRA_SECRET.as_bytes())
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    mac.update(body.as_bytes());
    let sig = hex::encode(mac.finalize().into_bytes());
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    write!(
        s,
        "POST /v1/events/jira HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Hub-Signature: sha256={sig}\r\nX-Atlassian-Webhook-Identifier: bench-{i}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    Ok(resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0))
}

fn ready(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    if write!(s, "GET /readyz HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut out = String::new();
    s.read_to_string(&mut out).is_ok() && out.contains(" 200 ")
}

/// Outcome time of the disable action on each key, from the journal.
fn disabled_at(cfg: &Path) -> std::collections::HashMap<String, DateTime<Utc>> {
    let out = Command::new(BIN)
        .args(["journal", "--config"])
        .arg(cfg)
        .output()
        .unwrap_or_else(|e| fail(e));
    let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
    list.iter()
        .filter(|e| e["status"] == "done" && e["request"]["operation"] == "disable_credential")
        .filter_map(|e| {
            let id = e["request"]["credential_id"].as_str()?.to_string();
            let at = DateTime::parse_from_rfc3339(e["outcome_at"].as_str()?).ok()?;
            Some((id, at.with_timezone(&Utc)))
        })
        .collect()
}

fn summary(name: &str, mut ms: Vec<i64>) {
    ms.sort_unstable();
    if ms.is_empty() {
        fail(format!("{name}: no sample"));
    }
    let pct = |p: f64| ms[((ms.len() as f64 * p).ceil() as usize).clamp(1, ms.len()) - 1];
    println!(
        "{name}: n={} p50={} ms p99={} ms max={} ms min={} ms",
        ms.len(),
        pct(0.50),
        pct(0.99),
        ms[ms.len() - 1],
        ms[0]
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n = arg(&args, "--subjects", 40);
    let spacing = Duration::from_millis(arg(&args, "--spacing-ms", 1200));
    let dir = tempfile::tempdir().unwrap_or_else(|e| fail(e));
    let scenario = dir.path().join("bulk.json");
    std::fs::write(
        &scenario,
        format!(
            r#"{{"bulk_users": {{"count": {}, "prefix": "svc-", "keys_per_user": 1}}}}"#,
            3 * n
        ),
    )
    .unwrap_or_else(|e| fail(e));
    let moto = Moto::start(scenario.to_str().unwrap_or_default(), &[]).unwrap_or_else(|e| fail(e));

    // Subjects 0..n: approvals ending one after another, `spacing` apart,
    // after a start-up margin. Subjects n..2n: long approvals revoked by
    // signed events.
    let start = Utc::now() + chrono::Duration::seconds(20);
    let step = chrono::Duration::from_std(spacing).unwrap_or_else(|e| fail(e));
    let mut yaml = String::from("approvals:\n");
    let mut ends = Vec::new();
    for i in 0..2 * n {
        let user = moto.user(&format!("svc-{i}"));
        let end = if i < n {
            start + step * i32::try_from(i).unwrap_or(i32::MAX)
        } else {
            Utc::now() + chrono::Duration::days(30)
        };
        ends.push(end);
        yaml.push_str(&format!(
            "  - id: APR-{i}\n    subject: \"{user}\"\n    scope: {{actions: [\"*\"]}}\n    requester: a@example.com\n    approver: b@example.com\n    approved_at: {}\n    expires_at: {}\n",
            rfc(Utc::now() - chrono::Duration::days(1)),
            rfc(end)
        ));
    }
    std::fs::create_dir_all(dir.path().join("approvals")).unwrap_or_else(|e| fail(e));
    std::fs::write(dir.path().join("approvals/bench.yaml"), yaml).unwrap_or_else(|e| fail(e));
    // Subjects 2n..3n: approved by Jira tickets, closed as done one by one.
    let tickets: Vec<(u64, String)> = (2 * n..3 * n)
        .map(|i| (i, moto.user(&format!("svc-{i}"))))
        .collect();
    let until = (Utc::now() + chrono::Duration::days(30))
        .format("%Y-%m-%d")
        .to_string();
    let mut closed = std::collections::HashSet::new();
    let page = dir.path().join("jira/search-1.json");
    std::fs::create_dir_all(dir.path().join("jira")).unwrap_or_else(|e| fail(e));
    std::fs::write(&page, jira_page(&tickets, &until, &closed)).unwrap_or_else(|e| fail(e));
    let cfg = dir.path().join("nhi-assure.toml");
    std::fs::write(
        &cfg,
        format!(
            "store = \"store.db\"\nmode = \"enforce\"\n[[sources]]\ntype = \"aws\"\nname = \"aws\"\nendpoint_url = \"{}\"\n[[approvals]]\ntype = \"files\"\nname = \"approvals\"\npath = \"approvals\"\n[[approvals]]\ntype = \"jira\"\nname = \"jira\"\nbase_url = \"https://example.atlassian.net\"\nexport_dir = \"jira\"\n[approvals.fields]\nsubjects = \"customfield_10040\"\nexpires_at = \"customfield_10042\"\nactions = \"customfield_10044\"\n[enforce]\nmax_percent = 100.0\n[enforce.budget]\noverall = [{{ window_secs = 3600, actions = 100000 }}]\nper_source = [{{ window_secs = 3600, actions = 100000 }}]\n[daemon]\nschedule = \"0 0 0 1 1 *\"\nwebhook_secret_env = \"BENCH_WEBHOOK_SECRET\"\njira_webhook_secret_env = \"BENCH_JIRA_SECRET\"\n",
            moto.ready.endpoint
        ),
    )
    .unwrap_or_else(|e| fail(e));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| fail(e));
    let mut daemon = Command::new(BIN)
        .args(["daemon", "--config"])
        .arg(&cfg)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("BENCH_WEBHOOK_SECRET", SECRET)
        .env("BENCH_JIRA_SECRET", JIRA_SECRET)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| fail(e));
    let t = Instant::now();
    while !ready(port) {
        if t.elapsed() > Duration::from_secs(60) {
            let _ = daemon.kill();
            fail("daemon not ready after 60 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "moto: {} users with a key; first full pass done {:.1} s after start",
        3 * n,
        t.elapsed().as_secs_f64()
    );

    // Revocation events, spaced like the expiries, after the last expiry.
    let last_end = ends[usize::try_from(n.saturating_sub(1)).unwrap_or(0)];
    let wait = (last_end - Utc::now()).to_std().unwrap_or_default() + Duration::from_secs(2);
    std::thread::sleep(wait);
    let mut sent = Vec::new();
    for i in n..2 * n {
        let at = Utc::now();
        match post_revocation(port, &format!("APR-{i}")) {
            Ok(202) => sent.push((i, at)),
            Ok(code) => fail(format!("webhook answered {code}")),
            Err(e) => fail(e),
        }
        std::thread::sleep(spacing);
    }
    // Jira: each ticket closed as done in the export, then Jira's event.
    let mut jira_sent = Vec::new();
    for (i, _) in &tickets {
        closed.insert(*i);
        std::fs::write(&page, jira_page(&tickets, &until, &closed)).unwrap_or_else(|e| fail(e));
        let at = Utc::now();
        match post_jira(port, &format!("ACC-{i}"), *i) {
            Ok(202) => jira_sent.push((*i, at)),
            Ok(code) => fail(format!("jira event answered {code}")),
            Err(e) => fail(e),
        }
        std::thread::sleep(spacing);
    }
    std::thread::sleep(Duration::from_secs(3));
    let _ = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status();
    let _ = daemon.wait();

    let done = disabled_at(&cfg);
    let key = |i: u64| moto.key(&format!("svc-{i}-key-0"));
    let expiry: Vec<i64> = (0..n)
        .filter_map(|i| {
            let at = done.get(&key(i))?;
            Some((*at - ends[usize::try_from(i).ok()?]).num_milliseconds())
        })
        .collect();
    let event: Vec<i64> = sent
        .iter()
        .filter_map(|(i, t)| Some((*done.get(&key(*i))? - *t).num_milliseconds()))
        .collect();
    let jira: Vec<i64> = jira_sent
        .iter()
        .filter_map(|(i, t)| Some((*done.get(&key(*i))? - *t).num_milliseconds()))
        .collect();
    if expiry.len() as u64 != n || event.len() as u64 != n || jira.len() as u64 != n {
        fail(format!(
            "not every key was disabled: {} of {n} at expiry, {} of {n} on events, {} of {n} on Jira closes",
            expiry.len(),
            event.len(),
            jira.len()
        ));
    }
    summary("approval end -> key disabled", expiry);
    summary("signed event  -> key disabled", event);
    summary("jira closed   -> key disabled", jira);
}
