//! `nhi-assure credentials` end to end on moto: the credential_process JSON
//! on stdout only, the issuance recorded (store table, audit log) without
//! the secret, refusals that issue nothing.

#[path = "support/cli.rs"]
mod cli_support;

use std::path::Path;
use std::process::Output;

use chrono::{Duration, SecondsFormat, Utc};
use nhi_aws::moto::Moto;

fn at(d: Duration) -> String {
    (Utc::now() + d).to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn setup(moto: &Moto, dir: &Path) -> String {
    let role = moto.role("deployer");
    let other = "arn:aws:iam::999988887777:role/deployer";
    let approval =
        |id: &str, role: &str, start: Duration, end: Duration, revoked: Option<Duration>| {
            format!(
                "  - id: {id}
    subject: {role}
    scope: {{actions: [\"s3:GetObject\"]}}
    requester: dev@example.com
    approver: lead@example.com
    approved_at: {a}
    starts_at: {s}
    expires_at: {e}
{r}    role: {role}
",
                a = at(Duration::days(-1)),
                s = at(start),
                e = at(end),
                r = revoked.map_or(String::new(), |d| format!("    revoked_at: {}\n", at(d))),
            )
        };
    let text = format!(
        "approvals:\n{}{}{}{}{}",
        approval(
            "APR-OK",
            &role,
            Duration::hours(-1),
            Duration::hours(5),
            None
        ),
        approval(
            "APR-OLD",
            &role,
            Duration::hours(-20),
            Duration::hours(-1),
            None
        ),
        approval(
            "APR-REVOKED",
            &role,
            Duration::hours(-2),
            Duration::hours(5),
            Some(Duration::hours(-1))
        ),
        approval(
            "APR-LATER",
            &role,
            Duration::hours(2),
            Duration::hours(5),
            None
        ),
        approval(
            "APR-ELSEWHERE",
            other,
            Duration::hours(-1),
            Duration::hours(5),
            None
        ),
    ) + &format!(
        "  - id: APR-NOROLE
    subject: {role}
    scope: {{actions: [\"s3:GetObject\"]}}
    requester: dev@example.com
    approver: lead@example.com
    approved_at: {a}
    expires_at: {e}
",
        a = at(Duration::days(-1)),
        e = at(Duration::hours(5)),
    );
    std::fs::create_dir_all(dir.join("approvals")).expect("mkdir");
    std::fs::write(dir.join("approvals/jit.yaml"), text).expect("approvals");
    let cfg = dir.join("nhi-assure.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"store = "store.db"
[[sources]]
type = "aws"
name = "aws"
endpoint_url = "{}"
max_attempts = 2
initial_backoff_ms = 10
max_session_seconds = 1800

[[approvals]]
type = "files"
name = "approvals"
path = "approvals"
"#,
            moto.ready.proxy
        ),
    )
    .expect("config");
    cfg.to_str().expect("utf8").to_string()
}

fn credentials(cfg: &str, approval: &str) -> Output {
    cli_support::moto_cmd(&["credentials", "--config", cfg, "--approval", approval])
        .env("RUST_LOG", "debug")
        .output()
        .expect("run nhi-assure")
}

/// Every byte under `dir` (store, WAL, anything written), as text.
fn everything_under(dir: &Path) -> String {
    let mut out = String::new();
    for e in std::fs::read_dir(dir).expect("dir") {
        let p = e.expect("entry").path();
        if p.is_file() {
            out.push_str(&String::from_utf8_lossy(&std::fs::read(&p).expect("read")));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_process_json_on_stdout_recorded_without_the_secret() {
    let moto = Moto::start("smoke", &[]).expect("fixture");
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = setup(&moto, dir.path());

    let out = credentials(&cfg, "APR-OK");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // stdout is exactly one JSON document, the credential_process shape.
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON only");
    let o = v.as_object().expect("object");
    let mut keys: Vec<&str> = o.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "AccessKeyId",
            "Expiration",
            "SecretAccessKey",
            "SessionToken",
            "Version"
        ]
    );
    assert_eq!(v["Version"], 1);
    let secret = v["SecretAccessKey"].as_str().expect("secret").to_string();
    let token = v["SessionToken"].as_str().expect("token").to_string();
    let key_id = v["AccessKeyId"].as_str().expect("key id").to_string();
    assert!(secret.len() >= 20 && token.len() >= 20);
    let exp = chrono::DateTime::parse_from_rfc3339(v["Expiration"].as_str().expect("exp"))
        .expect("rfc3339");
    // The source's cap (1800 s) is the shortest bound here.
    let left = (exp.with_timezone(&Utc) - Utc::now()).num_seconds();
    assert!((1700..=1800).contains(&left), "{left}");

    // The request carried the approval.
    let reqs = moto.assume_role_requests().expect("requests");
    let last = reqs.last().expect("one AssumeRole");
    assert_eq!(last["SourceIdentity"], ["APR-OK"]);
    assert_eq!(last["DurationSeconds"], ["1800"]);

    // Recorded: the audit log names approval, session, expiry and caller.
    let audit = cli_support::moto_cmd(&["audit", "list", "--config", &cfg])
        .output()
        .expect("audit");
    let entries: Vec<serde_json::Value> =
        serde_json::from_slice(&audit.stdout).expect("audit json");
    let issued: Vec<&serde_json::Value> = entries
        .iter()
        .filter(|e| e["kind"] == "session.issued")
        .collect();
    assert_eq!(issued.len(), 1, "{entries:?}");
    let d = &issued[0]["data"];
    assert_eq!(issued[0]["subject"], "APR-OK");
    assert_eq!(d["access_key_id"], key_id.as_str());
    assert!(d["session_name"]
        .as_str()
        .expect("name")
        .starts_with("APR-OK."));
    assert!(d["caller"]
        .as_str()
        .expect("caller")
        .contains("via nhi-assure"));
    assert!(d["expires_at"].is_string());

    // The secret and token are nowhere but stdout: not in stderr (debug
    // logging on), the store, the audit listing.
    for (what, text) in [
        ("stderr", stderr),
        ("store files", everything_under(dir.path())),
        ("audit", String::from_utf8_lossy(&audit.stdout).to_string()),
    ] {
        assert!(!text.contains(&secret), "secret in {what}");
        assert!(!text.contains(&token), "token in {what}");
    }
    let verify = cli_support::moto_cmd(&["audit", "verify", "--config", &cfg])
        .output()
        .expect("verify");
    assert_eq!(verify.status.code(), Some(0));

    // The next run's report shows the approval served by issuance: the
    // session issued, valid, no standing secret; one without a role by none.
    let scan = cli_support::moto_cmd(&["scan", "--config", &cfg])
        .output()
        .expect("scan");
    // moto cannot list service-specific credentials: the run is partial
    // (its own exit code), but recorded.
    assert!(
        String::from_utf8_lossy(&scan.stderr).contains("run 1:"),
        "{}",
        String::from_utf8_lossy(&scan.stderr)
    );
    let report = cli_support::moto_cmd(&["report", "--config", &cfg, "--format", "json"])
        .output()
        .expect("report");
    assert_eq!(
        report.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&report.stderr)
    );
    let text = String::from_utf8_lossy(&report.stdout).to_string();
    assert!(!text.contains(&secret) && !text.contains(&token));
    let doc: serde_json::Value = serde_json::from_str(&text).expect("report json");
    let access = |id: &str| {
        doc["access"]
            .as_array()
            .expect("access")
            .iter()
            .find(|a| a["approval"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} in access"))
    };
    let ok = access("APR-OK");
    assert_eq!(ok["issuance"], "session");
    assert_eq!(ok["sessions_issued"], 1);
    assert_eq!(ok["sessions_valid"], 1);
    assert_eq!(ok["standing"], serde_json::json!([]));
    assert_eq!(ok["served"], "issued");
    let plain = access("APR-NOROLE");
    assert_eq!(plain["issuance"], serde_json::Value::Null);
    assert_eq!(plain["sessions_issued"], 0);
    assert_eq!(plain["served"], "none");
    assert_eq!(access("APR-OLD")["state"], "expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_print_nothing_on_stdout_and_issue_nothing() {
    let moto = Moto::start("smoke", &[]).expect("fixture");
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = setup(&moto, dir.path());
    for (id, want) in [
        ("APR-OLD", "expired"),
        ("APR-REVOKED", "revoked"),
        ("APR-LATER", "not started"),
        ("APR-NOROLE", "no IAM role"),
        ("APR-NONE", "no approval APR-NONE"),
        ("APR-ELSEWHERE", "not in an account of the estate"),
    ] {
        let out = credentials(&cfg, id);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{id}: {stderr}");
        assert!(
            out.stdout.is_empty(),
            "{id}: stdout {:?}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(stderr.contains(want), "{id}: {stderr}");
    }
    assert!(moto.assume_role_requests().expect("requests").is_empty());

    // A bad approval file is a located error before anything is asked.
    std::fs::write(
        dir.path().join("approvals/bad.yaml"),
        "approvals:\n  - id: X\n    subject: s\n    scope: {actions: [a]}\n    requester: r\n    approver: a\n    approved_at: 2026-01-01T00:00:00Z\n    expires_at: 2026-02-01T00:00:00Z\n    role: not-a-role\n",
    )
    .expect("write");
    let out = credentials(&cfg, "APR-OK");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());
    assert!(stderr.contains("bad.yaml:9:11"), "{stderr}");
    assert!(moto.assume_role_requests().expect("requests").is_empty());
}

/// The role's inline policy `name` on moto, if any.
async fn role_policy(moto: &Moto, role: &str, name: &str) -> Option<String> {
    let sdk = Moto::sdk_config(&moto.ready.endpoint).await;
    let iam = nhi_aws::moto::aws_sdk_iam::Client::new(&sdk);
    iam.get_role_policy()
        .role_name(role)
        .policy_name(name)
        .send()
        .await
        .ok()
        .map(|o| o.policy_document().to_string())
}

fn reconcile(cfg: &str) -> Vec<serde_json::Value> {
    let out = cli_support::moto_cmd(&[
        "reconcile",
        "--config",
        cfg,
        "--enforce",
        "--allow-partial",
        "--format",
        "json",
    ])
    .output()
    .expect("reconcile");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    cli_support::listed(&out.stdout)
        .into_iter()
        .filter(|o| o["rules"][0] == "approval-ended-sessions")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_revocation_denies_issued_sessions_until_they_expire() {
    let moto = Moto::start("smoke", &[]).expect("fixture");
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = setup(&moto, dir.path());
    let out = credentials(&cfg, "APR-OK");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let policy = "nhi-assure-revoked-APR-OK";

    // Nothing ended yet: no deny.
    assert!(reconcile(&cfg).is_empty());
    assert_eq!(role_policy(&moto, "deployer", policy).await, None);

    // The approval is revoked a minute ago, its session has 29 minutes left.
    let file = dir.path().join("approvals/jit.yaml");
    let text = std::fs::read_to_string(&file).expect("read");
    let revoked = text.replacen(
        "    role: ",
        &format!("    revoked_at: {}\n    role: ", at(Duration::minutes(-1))),
        1,
    );
    assert!(revoked.contains("id: APR-OK") && revoked != text);
    std::fs::write(&file, revoked).expect("write");
    let steps = reconcile(&cfg);
    assert_eq!(steps.len(), 1, "{steps:?}");
    assert_eq!(steps[0]["operation"], "deny_sessions");
    assert_eq!(steps[0]["status"], "done");
    assert_eq!(steps[0]["identity_id"], moto.role("deployer"));
    let doc = role_policy(&moto, "deployer", policy)
        .await
        .expect("deny on the role");
    let doc = percent_encoding::percent_decode_str(&doc)
        .decode_utf8_lossy()
        .to_string();
    let doc: serde_json::Value = serde_json::from_str(&doc).expect("policy json");
    assert_eq!(
        doc["Statement"][0],
        serde_json::json!({"Sid": "ApprovalEnded", "Effect": "Deny", "Action": "*", "Resource": "*",
            "Condition": {"StringEquals": {"aws:SourceIdentity": "APR-OK"}}})
    );
    // Idempotent: a second pass adds nothing.
    assert!(reconcile(&cfg).is_empty());

    // Undo takes it off, like any journaled action.
    let id = steps[0]["action_id"]
        .as_i64()
        .expect("action id")
        .to_string();
    let undo = cli_support::moto_cmd(&["undo", "--config", &cfg, &id])
        .output()
        .expect("undo");
    assert_eq!(
        undo.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&undo.stderr)
    );
    assert_eq!(role_policy(&moto, "deployer", policy).await, None);
    // …and the reconciler puts it back while the session could still be used.
    let steps = reconcile(&cfg);
    assert_eq!(steps.len(), 1, "{steps:?}");
    assert!(role_policy(&moto, "deployer", policy).await.is_some());

    // Once the last session would have expired (as_of two hours on), the
    // deny is lifted.
    let text = std::fs::read_to_string(&cfg).expect("config");
    std::fs::write(
        &cfg,
        format!("as_of = \"{}\"\n{text}", at(Duration::hours(2))),
    )
    .expect("config");
    let steps = reconcile(&cfg);
    assert_eq!(steps.len(), 1, "{steps:?}");
    assert_eq!(steps[0]["operation"], "lift_session_deny");
    assert_eq!(steps[0]["status"], "done");
    assert_eq!(role_policy(&moto, "deployer", policy).await, None);
    assert!(reconcile(&cfg).is_empty());
}
