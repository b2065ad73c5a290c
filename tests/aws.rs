//! End to end against moto: seed an account, write approvals, run
//! `nhi-assure scan` and `plan` through the CLI, assert the exact findings
//! and planned actions.

#[path = "support/cli.rs"]
mod cli_support;
use cli_support::listed;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

use nhi_aws::moto::Moto;

const A: &str = "arn:aws:iam::123456789012:";

fn approvals() -> String {
    let day = |d: i64| {
        (chrono::Utc::now() + chrono::Duration::days(d))
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    };
    format!(
        r#"approvals:
  - id: APR-CI
    subject: "{A}user/machine/ci-deployer"
    scope: {{actions: ["s3:GetObject", "s3:PutObject", "s3:ListBucket"], services: [s3]}}
    requester: dev@example.com
    approver: lead@example.com
    approved_at: {a1}
    expires_at: {e1}
  - id: APR-LEGACY
    subject: "{A}user/legacy-batch"
    scope: {{actions: ["s3:GetObject"]}}
    requester: dev@example.com
    approver: lead@example.com
    approved_at: {a2}
    expires_at: {e2}
  - id: APR-INLINE
    subject: "{A}user/inline-admin"
    scope: {{actions: ["ec2:Describe*"]}}
    requester: dev@example.com
    approver: lead@example.com
    approved_at: {a1}
    expires_at: {e1}
  - id: APR-CHAIN
    subject: "{A}user/chain-user"
    scope: {{actions: ["sts:AssumeRole"]}}
    requester: dev@example.com
    approver: lead@example.com
    approved_at: {a1}
    expires_at: {e1}
"#,
        a1 = day(-30),
        e1 = day(200),
        a2 = day(-300),
        e2 = day(-5),
    )
}

fn setup(moto: &Moto, dir: &Path) -> String {
    std::fs::create_dir_all(dir.join("approvals")).expect("mkdir");
    std::fs::write(dir.join("approvals/aws.yaml"), approvals()).expect("approvals");
    let cfg = dir.join("nhi-assure.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"store = "store.db"
[[sources]]
type = "aws"
name = "aws"
endpoint_url = "{}"
max_attempts = 3
initial_backoff_ms = 10

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

/// The binary with moto's dummy credentials and nothing of the host's AWS setup.
fn cmd(args: &[&str]) -> Command {
    cli_support::moto_cmd(args)
}

/// Run a command. moto answers ListServiceSpecificCredentials with a 500,
/// so every scan of it is partial (tokens unseen, exit 3): the tests that
/// are not about that accept it with `--allow-partial`.
fn run(args: &[&str]) -> Output {
    let mut c = cmd(args);
    if matches!(args.first(), Some(&("scan" | "plan" | "reconcile"))) {
        c.arg("--allow-partial");
    }
    c.output().expect("run nhi-assure")
}

fn json(o: &Output) -> Vec<serde_json::Value> {
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    listed(&o.stdout)
}

type Key = (String, String, Option<String>);

fn key(rule: &str, ident: &str, cred: Option<&str>) -> Key {
    (
        rule.to_string(),
        format!("{A}{ident}"),
        cred.map(str::to_string),
    )
}

#[test]
fn scan_and_plan_against_moto_give_exactly_the_expected_findings_and_actions() {
    let moto = Moto::start("estate", &[]).expect("fixture");
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = setup(&moto, dir.path());

    let findings = json(&run(&["scan", "--config", &cfg, "--format", "json"]));
    let got: BTreeSet<Key> = findings
        .iter()
        .map(|f| {
            (
                f["rule_id"].as_str().expect("rule").to_string(),
                f["identity_id"].as_str().expect("identity").to_string(),
                f["credential_id"].as_str().map(str::to_string),
            )
        })
        .collect();

    let (ci_old, legacy, tf, root) = (
        moto.key("ci-old"),
        moto.key("legacy-key"),
        moto.key("tf-key"),
        format!("{A}root:access_key_1"),
    );
    let ssh: Vec<&serde_json::Value> = findings
        .iter()
        .filter(|f| {
            f["identity_id"] == format!("{A}user/no-owner").as_str()
                && f["credential_id"].is_string()
        })
        .collect();
    let ssh_id = ssh
        .first()
        .and_then(|f| f["credential_id"].as_str())
        .expect("ssh key finding")
        .to_string();
    let want: BTreeSet<Key> = [
        // Two keys on ci-deployer: only the old one is stale and overdue.
        key(
            "credential-stale",
            "user/machine/ci-deployer",
            Some(&ci_old),
        ),
        key(
            "credential-rotation-overdue",
            "user/machine/ci-deployer",
            Some(&ci_old),
        ),
        key(
            "identity-multiple-active-keys",
            "user/machine/ci-deployer",
            None,
        ),
        // Expired approval, never-used old key, console password.
        key("approval-expired", "user/legacy-batch", Some(&legacy)),
        key("credential-never-used", "user/legacy-batch", Some(&legacy)),
        key(
            "credential-rotation-overdue",
            "user/legacy-batch",
            Some(&legacy),
        ),
        key("nhi-human-login", "user/legacy-batch", None),
        // Admin through a group, unapproved key.
        key("identity-admin-equivalent", "user/terraform", None),
        key("credential-unapproved", "user/terraform", Some(&tf)),
        // Admin through an inline *:*, beyond its approved scope.
        key("identity-admin-equivalent", "user/inline-admin", None),
        key("identity-overscoped", "user/inline-admin", None),
        // `*` also lets it assume hop1 (account-wide trust), hence hop2.
        key("identity-overscoped-via-assume", "user/inline-admin", None),
        // Admin by a directly attached policy.
        key("identity-admin-equivalent", "user/direct-admin", None),
        // Admin through user → hop1 → hop2, beyond scope via assume-role.
        key("identity-admin-equivalent", "user/chain-user", None),
        key("identity-overscoped-via-assume", "user/chain-user", None),
        key("identity-admin-equivalent", "role/hop1", None),
        key("identity-admin-equivalent", "role/hop2", None),
        // No owner tag, unapproved SSH key.
        key("identity-no-owner", "user/no-owner", None),
        key("credential-unapproved", "user/no-owner", Some(&ssh_id)),
        // The root's access key.
        key("credential-root-access-key", "root", Some(&root)),
        key("credential-unapproved", "root", Some(&root)),
        key("credential-never-used", "root", Some(&root)),
        key("credential-rotation-overdue", "root", Some(&root)),
    ]
    .into_iter()
    .collect();
    let missing: Vec<_> = want.difference(&got).collect();
    let extra: Vec<_> = got.difference(&want).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:#?}\nextra {extra:#?}"
    );

    let plan = json(&run(&["plan", "--config", &cfg, "--format", "json"]));
    let got: BTreeSet<(String, String, Option<String>, String)> = plan
        .iter()
        .map(|a| {
            (
                a["operation"].as_str().expect("op").to_string(),
                a["identity_id"].as_str().expect("id").to_string(),
                a["credential_id"].as_str().map(str::to_string),
                a["status"].as_str().expect("status").to_string(),
            )
        })
        .collect();
    let act = |op: &str, id: &str, c: Option<&str>, s: &str| {
        (
            op.to_string(),
            format!("{A}{id}"),
            c.map(str::to_string),
            s.to_string(),
        )
    };
    let want: BTreeSet<_> = [
        act(
            "disable_credential",
            "user/machine/ci-deployer",
            Some(&ci_old),
            "act",
        ),
        act(
            "disable_credential",
            "user/legacy-batch",
            Some(&legacy),
            "act",
        ),
        act("remove_login", "user/legacy-batch", None, "act"),
        act("disable_credential", "user/terraform", Some(&tf), "act"),
        act("disable_credential", "user/no-owner", Some(&ssh_id), "act"),
        act("disable_credential", "root", Some(&root), "skip"),
    ]
    .into_iter()
    .collect();
    assert_eq!(got, want);
    // moto refuses service-specific credentials: reported as a gap, the
    // access keys it did see are still acted on.
    let o = run(&["plan", "--config", &cfg]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("PARTIAL (token:"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn unreachable_account_is_unknown_and_resolves_nothing() {
    let moto = Moto::start("estate", &[]).expect("fixture");
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = setup(&moto, dir.path());
    let first = json(&run(&["scan", "--config", &cfg, "--format", "json"]));
    assert!(!first.is_empty());

    // Same account, now behind a proxy that fails every call.
    let broken = Moto::start("estate", &["--proxy-fail-all", "503"]).expect("fixture");
    let text = std::fs::read_to_string(&cfg)
        .expect("read")
        .replace(&moto.ready.proxy, &broken.ready.proxy);
    std::fs::write(&cfg, text).expect("write");
    let o = cmd(&["scan", "--config", &cfg, "--format", "json"])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(err.contains("source aws is FAILED"), "{err}");
    assert!(
        err.contains(", 0 resolved"),
        "nothing may be resolved: {err}"
    );
    // A run that could not see never exits clean, and says which source.
    assert_eq!(o.status.code(), Some(3), "{err}");
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(doc["complete"], false);
    assert_eq!(doc["sources"][0]["name"], "aws");
    assert_eq!(doc["sources"][0]["state"], "failed");
    assert!(listed(&o.stdout).is_empty());
    // --fail-on cannot pass on it, not even with --allow-partial.
    for extra in [
        &["--fail-on", "low"][..],
        &["--fail-on", "low", "--allow-partial"],
    ] {
        let mut args = vec!["scan", "--config", &cfg];
        args.extend_from_slice(extra);
        // `cmd`, not `run`: these runs must not accept partiality silently.
        let o = cmd(&args).output().expect("run");
        assert_eq!(
            o.status.code(),
            Some(3),
            "{extra:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let plan = cmd(&["plan", "--config", &cfg, "--format", "json"])
        .output()
        .expect("run");
    assert_eq!(plan.status.code(), Some(3));
    assert!(
        listed(&plan.stdout).is_empty(),
        "no action on an unknown source"
    );
}

// ---- enforce mode ----

fn with_enforce(cfg: &str, rails: &str) {
    let text = std::fs::read_to_string(cfg).expect("read") + "\n[enforce]\n" + rails;
    std::fs::write(cfg, text).expect("write");
}

fn outcomes(o: &Output) -> Vec<serde_json::Value> {
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    listed(&o.stdout)
}

/// `reconcile --enforce --format json`, as outcomes.
fn enforce(cfg: &str) -> Vec<serde_json::Value> {
    outcomes(&run(&[
        "reconcile",
        "--config",
        cfg,
        "--enforce",
        "--format",
        "json",
    ]))
}

fn status_of<'a>(list: &'a [serde_json::Value], cred: &str) -> Vec<&'a str> {
    list.iter()
        .filter(|o| o["credential_id"] == cred)
        .filter_map(|o| o["status"].as_str())
        .collect()
}

async fn key_active(moto: &Moto, key: &str) -> bool {
    use nhi_contract::InventorySource;
    let sdk = Moto::sdk_config(&moto.ready.endpoint).await;
    let inv = nhi_aws::AwsSource::with_sdk_config(nhi_aws::AwsConfig::named("check"), sdk)
        .scan()
        .await
        .expect("scan");
    inv.credentials
        .iter()
        .find(|c| c.id == key)
        .expect("key exists")
        .active
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforce_acts_on_exactly_the_plan_and_undo_restores() {
    let moto = Moto::start("estate", &[]).expect("fixture");
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = setup(&moto, dir.path());
    // The console password's removal cannot be undone: allowed here, so the
    // undo below meets an irreversible action.
    with_enforce(
        &cfg,
        "default_grace_hours = 0\nmax_percent = 100.0\nallow_irreversible = [\"console_password\"]\n",
    );
    let (ci_old, ci_new, legacy, tf) = (
        moto.key("ci-old"),
        moto.key("ci-new"),
        moto.key("legacy-key"),
        moto.key("tf-key"),
    );

    // Without --enforce: a dry run, nothing changes.
    let dry = run(&["reconcile", "--config", &cfg, "--format", "json"]);
    assert_eq!(dry.status.code(), Some(0));
    assert!(key_active(&moto, &ci_old).await);

    let done = enforce(&cfg);
    for k in [&ci_old, &legacy, &tf] {
        assert_eq!(status_of(&done, k), vec!["done"], "{k}: {done:#?}");
        assert!(!key_active(&moto, k).await, "{k} disabled in moto");
    }
    assert!(
        key_active(&moto, &ci_new).await,
        "the other key of ci-deployer untouched"
    );
    assert!(
        key_active(&moto, &moto.key("inline-key")).await,
        "flag-only findings untouched"
    );
    let root: Vec<_> = done
        .iter()
        .filter(|o| o["identity_id"] == format!("{A}root").as_str())
        .collect();
    assert!(root.iter().all(|o| o["status"] == "skip"), "{root:?}");

    // The journal holds intent, outcome, rules, approval considered, actor.
    let journal = json(&run(&["journal", "--config", &cfg]));
    let entry = journal
        .iter()
        .find(|e| e["request"]["credential_id"] == ci_old.as_str())
        .expect("journaled");
    assert_eq!(entry["status"], "done");
    assert_eq!(entry["rules"], serde_json::json!(["credential-stale"]));
    assert_eq!(entry["before"]["status"], "Active");
    assert_eq!(entry["after"]["status"], "Inactive");
    assert!(entry["actor"]
        .as_str()
        .is_some_and(|a| a.contains("nhi-assure")));

    // Undo the whole run: keys back; the console password cannot come back.
    let run_id = entry["run_id"].as_i64().expect("run id").to_string();
    let undo = run(&["undo", "--config", &cfg, "--run", &run_id]);
    assert_eq!(
        undo.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&undo.stderr)
    );
    let text = String::from_utf8_lossy(&undo.stdout).to_string();
    assert!(text.contains("irreversible"), "{text}");
    for k in [&ci_old, &legacy, &tf] {
        assert!(key_active(&moto, k).await, "{k} reactivated");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grace_period_holds_all_but_expired_approvals() {
    let moto = Moto::start("estate", &[]).expect("fixture");
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = setup(&moto, dir.path());
    with_enforce(&cfg, "max_percent = 100.0\n");
    let done = enforce(&cfg);
    let legacy = moto.key("legacy-key");
    assert_eq!(
        status_of(&done, &legacy),
        vec!["done"],
        "approval-expired has no grace"
    );
    assert_eq!(status_of(&done, &moto.key("ci-old")), vec!["held"]);
    assert!(key_active(&moto, &moto.key("ci-old")).await);
    assert!(!key_active(&moto, &legacy).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blast_radius_limit_acts_on_none_and_records_a_finding() {
    let moto = Moto::start("estate", &[]).expect("fixture");
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = setup(&moto, dir.path());
    with_enforce(&cfg, "default_grace_hours = 0\nmax_subjects = 2\n");
    let done = enforce(&cfg);
    assert!(done.iter().all(|o| o["status"] != "done"), "{done:#?}");
    assert!(done.iter().any(|o| o["detail"]
        .as_str()
        .is_some_and(|d| d.contains("blast-radius"))));
    for k in ["ci-old", "legacy-key", "tf-key"] {
        assert!(key_active(&moto, &moto.key(k)).await, "{k} untouched");
    }
    let store =
        nhi_assure::store::SqlStore::open(&dir.path().join("store.db").display().to_string())
            .await
            .expect("store");
    use nhi_assure::store::Store;
    let open = store.open_findings().await.expect("findings");
    assert!(open
        .iter()
        .any(|f| &*f.finding.rule_id == "enforce-blast-radius"));
    assert!(
        json(&run(&["journal", "--config", &cfg])).is_empty(),
        "nothing journaled"
    );

    // The condition clears (the limit is raised): the finding is resolved.
    let text = std::fs::read_to_string(&cfg).expect("read").replace(
        "max_subjects = 2",
        "max_subjects = 100\nmax_percent = 100.0",
    );
    std::fs::write(&cfg, text).expect("write");
    let next = enforce(&cfg);
    assert!(next.iter().any(|o| o["status"] == "done"), "{next:#?}");
    let open = store.open_findings().await.expect("findings");
    assert!(
        !open
            .iter()
            .any(|f| &*f.finding.rule_id == "enforce-blast-radius"),
        "resolved once the rail lets a run through"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_action_is_finished_once_by_the_next_run() {
    let moto = Moto::start("estate", &[]).expect("fixture");
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = setup(&moto, dir.path());
    with_enforce(&cfg, "default_grace_hours = 0\nmax_percent = 100.0\n");
    // Keep the first action a key (the console password sorts first otherwise).
    // A short leader lease: the killed process holds it until it expires.
    let text = std::fs::read_to_string(&cfg).expect("read")
        + "\n[rules.overrides.nhi-human-login]\naction = \"flag\"\n\n[daemon]\nlease_secs = 10\n";
    std::fs::write(&cfg, text).expect("write");

    // Hold the first action between the provider call and its outcome, and
    // kill the process there.
    let mut child = cmd(&[
        "reconcile",
        "--config",
        &cfg,
        "--enforce",
        "--pause-after-call-ms",
        "60000",
    ])
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .expect("spawn");
    let mut intent = None;
    for _ in 0..300 {
        let j = run(&["journal", "--config", &cfg]);
        if j.status.success() {
            let list: Vec<serde_json::Value> =
                serde_json::from_slice(&j.stdout).unwrap_or_default();
            if let Some(e) = list.iter().find(|e| e["status"] == "intent") {
                intent = Some(e.clone());
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let intent = intent.expect("an intent was journaled");
    let cred = intent["request"]["credential_id"]
        .as_str()
        .expect("credential")
        .to_string();
    // Wait until the provider call has happened, then kill.
    for _ in 0..100 {
        if !key_active(&moto, &cred).await {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    child.kill().expect("kill");
    let _ = child.wait();

    // While the dead process's lease runs, nothing else may act. (Asked at
    // once: the lease is 10 s, renewed every 3.3 s, so at least 6.7 s remain.)
    let early = run(&["reconcile", "--config", &cfg, "--enforce"]);
    assert_eq!(
        early.status.code(),
        Some(2),
        "refused while the lease is held"
    );
    assert!(String::from_utf8_lossy(&early.stderr).contains("holds the leader lease"));
    assert!(
        !key_active(&moto, &cred).await,
        "the provider call went through"
    );
    std::thread::sleep(std::time::Duration::from_millis(10_200));

    // The next run finishes the interrupted action first, without acting twice.
    let done = enforce(&cfg);
    assert_eq!(status_of(&done, &cred), vec!["recovered"], "{done:#?}");
    let journal = json(&run(&["journal", "--config", &cfg]));
    let on_cred: Vec<_> = journal
        .iter()
        .filter(|e| e["request"]["credential_id"] == cred.as_str())
        .collect();
    assert_eq!(
        on_cred.len(),
        1,
        "one record, not a second action: {on_cred:#?}"
    );
    assert_eq!(on_cred[0]["status"], "recovered");
    assert!(
        on_cred[0]["undo"]["steps"].is_array()
            && on_cred[0]["undo"]["target"] == intent["request"]["identity_id"],
        "undo data kept from the intent"
    );
    // And it can still be undone.
    let id = on_cred[0]["id"].as_i64().expect("id").to_string();
    assert_eq!(run(&["undo", "--config", &cfg, &id]).status.code(), Some(0));
    assert!(key_active(&moto, &cred).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_only_after_disable_and_quarantine() {
    let moto = Moto::start("estate", &[]).expect("fixture");
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = setup(&moto, dir.path());
    // A user rule that retires unapproved credentials, active or not.
    std::fs::create_dir_all(dir.path().join("rules")).expect("mkdir");
    std::fs::write(
        dir.path().join("rules/retire.yaml"),
        "id: retire-unapproved\ntitle: Retire unapproved credentials\ndescription: d\nseverity: high\nsubject: credential\ncondition: credential.approval_state == \"none\" && credential.kind == \"access_key\"\naction: delete\nremediation: r\ncontrols: [\"OWASP-NHI-2025:NHI1\"]\n",
    )
    .expect("rule");
    let base = std::fs::read_to_string(&cfg).expect("read");
    let write = |quarantine: i64| {
        let text = format!(
            "{base}\n[rules]\nbuiltin = false\npaths = [\"rules\"]\n\n[enforce]\ndefault_grace_hours = 0\nmax_percent = 100.0\nquarantine_days = {quarantine}\n"
        );
        std::fs::write(&cfg, text).expect("write");
    };
    let tf = moto.key("tf-key");
    write(30);
    let first = enforce(&cfg);
    let tf_out: Vec<_> = first
        .iter()
        .filter(|o| o["credential_id"] == tf.as_str())
        .collect();
    assert_eq!(tf_out.len(), 1);
    assert_eq!(
        tf_out[0]["operation"], "disable_credential",
        "first action is reversible"
    );
    assert!(!key_active(&moto, &tf).await);

    let second = enforce(&cfg);
    assert_eq!(status_of(&second, &tf), vec!["held"], "in quarantine");

    write(0);
    let third = enforce(&cfg);
    assert_eq!(status_of(&third, &tf), vec!["done"]);
    let del = third
        .iter()
        .find(|o| o["credential_id"] == tf.as_str())
        .expect("delete");
    assert_eq!(del["operation"], "delete_credential");
    assert!(del["detail"]
        .as_str()
        .is_some_and(|d| d.contains("cannot be restored")));
    use nhi_contract::InventorySource;
    let sdk = Moto::sdk_config(&moto.ready.endpoint).await;
    let inv = nhi_aws::AwsSource::with_sdk_config(nhi_aws::AwsConfig::named("check"), sdk)
        .scan()
        .await
        .expect("scan");
    assert!(!inv.credentials.iter().any(|c| c.id == tf), "deleted");
    assert!(
        inv.credentials.iter().any(|c| c.id == moto.key("ci-old")),
        "nothing else deleted"
    );
}

/// A process that died after journaling an intent and before the provider
/// call leaves an open intent. If the subject became protected meanwhile,
/// the next run must not finish it: it says so and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_action_on_a_now_protected_subject_is_not_reapplied() {
    use nhi_assure::store::journal::Intent;
    use nhi_assure::store::lease::Leadership;
    let moto = Moto::start("estate", &[]).expect("fixture");
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = setup(&moto, dir.path());
    with_enforce(&cfg, "default_grace_hours = 0\nmax_percent = 100.0\n");
    let ci_old = moto.key("ci-old");
    let plan = run(&["plan", "--config", &cfg, "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_slice(&plan.stdout).expect("json");
    let action = listed(&plan.stdout)
        .into_iter()
        .find(|a| a["credential_id"] == ci_old.as_str())
        .expect("ci-old planned");
    let request: nhi_contract::ActionRequest =
        serde_json::from_value(action.clone()).expect("request");

    // The intent of a process that died before calling AWS.
    let store =
        nhi_assure::store::SqlStore::open(&dir.path().join("store.db").display().to_string())
            .await
            .expect("store");
    let leader = Leadership::acquire(&store, "dead-process", std::time::Duration::from_secs(5))
        .await
        .expect("lease")
        .expect("free");
    let id = store
        .journal_intent(&Intent {
            run_id: doc["run_id"].as_i64().expect("run id"),
            request: &request,
            source: "aws",
            rules: &["credential-stale".to_string()],
            findings: &[],
            evidence: serde_json::Value::Null,
            actor: "test",
            planned_undo: None,
            undo_of: None,
            fence: leader.fence(),
        })
        .await
        .expect("intent");
    leader.release().await;

    // Meanwhile ci-deployer became protected.
    let text = std::fs::read_to_string(&cfg).expect("read")
        + &format!("\n[plan]\nprotected = [\"{A}user/machine/ci-deployer\"]\n");
    std::fs::write(&cfg, text).expect("write");
    let done = enforce(&cfg);
    let mine: Vec<_> = done.iter().filter(|o| o["action_id"] == id).collect();
    assert_eq!(mine.len(), 1, "{done:#?}");
    assert_eq!(mine[0]["status"], "abandoned");
    assert!(mine[0]["detail"]
        .as_str()
        .is_some_and(|d| d.contains("protected")));
    assert!(key_active(&moto, &ci_old).await, "never re-applied");
    let journal = json(&run(&["journal", "--config", &cfg]));
    let entry = journal.iter().find(|e| e["id"] == id).expect("journaled");
    assert_eq!(entry["status"], "abandoned");
}

/// The federated-trust rule serves AWS: a role trusting GitHub Actions for
/// any repository of the organisation, or for any token, is flagged; the
/// role pinned to one branch is not. Enforce never acts on a role's trust.
#[test]
fn broad_oidc_trusts_of_roles_are_flagged_and_never_acted_on() {
    let moto = Moto::start("oidc", &[]).expect("fixture");
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = setup(&moto, dir.path());
    let findings = json(&run(&["scan", "--config", &cfg, "--format", "json"]));
    let gh = "#oidc/token.actions.githubusercontent.com";
    let flagged: BTreeSet<String> = findings
        .iter()
        .filter(|f| f["rule_id"] == "federated-trust-broad")
        .filter_map(|f| f["credential_id"].as_str().map(str::to_string))
        .collect();
    let want: BTreeSet<String> = ["role/deploy-any-repo", "role/deploy-any-token"]
        .iter()
        .map(|r| format!("{A}{r}{gh}"))
        .collect();
    assert_eq!(flagged, want, "{findings:#?}");
    let any_repo = findings
        .iter()
        .find(|f| {
            f["rule_id"] == "federated-trust-broad"
                && f["credential_id"] == format!("{A}role/deploy-any-repo{gh}").as_str()
        })
        .expect("finding");
    assert_eq!(
        any_repo["evidence"]["federation"],
        serde_json::json!({
            "issuer": "https://token.actions.githubusercontent.com",
            "subjects": ["repo:example-org/*"],
            "audiences": ["sts.amazonaws.com"],
            "expression": null,
            "broad": "wildcard subject repo:example-org/*",
        })
    );
    let plan = json(&run(&["plan", "--config", &cfg, "--format", "json"]));
    assert!(
        !plan.iter().any(|a| a["credential_id"]
            .as_str()
            .is_some_and(|c| c.contains("#oidc/"))
            && a["rules"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r == "federated-trust-broad"))),
        "{plan:#?}"
    );

    // The roles are unapproved, so credential-unapproved asks to disable
    // their trusts. Even with every rail open and `federated` allowed as
    // irreversible, enforce holds them: IAM has nothing to disable or delete,
    // the trust policy is changed by hand. Nothing fails, nothing changes.
    with_enforce(
        &cfg,
        "default_grace_hours = 0\nmax_percent = 100.0\nallow_irreversible = [\"federated\"]\n",
    );
    let done = enforce(&cfg);
    for role in ["deploy-main", "deploy-any-repo", "deploy-any-token"] {
        let cred = format!("{A}role/{role}{gh}");
        let of: Vec<&serde_json::Value> = done
            .iter()
            .filter(|o| o["credential_id"] == cred.as_str())
            .collect();
        assert_eq!(of.len(), 1, "{done:#?}");
        assert_eq!(of[0]["status"], "held", "{done:#?}");
        assert!(
            of[0]["detail"]
                .as_str()
                .is_some_and(|d| d.contains("neither disabled nor removed")),
            "{done:#?}"
        );
    }
    let again = json(&run(&["scan", "--config", &cfg, "--format", "json"]));
    assert!(again.iter().any(|f| f["rule_id"] == "federated-trust-broad"
        && f["credential_id"] == format!("{A}role/deploy-any-repo{gh}").as_str()));
}

/// Dangerous trust and idle roles on moto: a role trusting an account
/// outside the estate without an external id (or with one only
/// `IfExists`), a role anyone can assume (or anyone knowing an external
/// id), an OIDC trust with no audience, and roles unused for 90 days that
/// can still be assumed are found; the safe variants (external id
/// required, an account listed in `trusted_accounts`, anyone of the
/// organisation, the account itself, a busy, fresh or untrustable role, a
/// service-linked role) are not. Nothing is planned on a trust or on the
/// service-linked role.
#[test]
fn dangerous_trusts_and_idle_roles_are_found_and_safe_ones_are_not() {
    let moto = Moto::start("trust", &[]).expect("fixture");
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = setup(&moto, dir.path());
    let text = std::fs::read_to_string(&cfg).expect("read").replacen(
        "initial_backoff_ms = 10\n",
        "initial_backoff_ms = 10\ntrusted_accounts = [\"444455556666\"]\n",
        1,
    );
    std::fs::write(&cfg, text).expect("write");
    let findings = json(&run(&["scan", "--config", &cfg, "--format", "json"]));
    let of = |rule: &str| -> BTreeSet<String> {
        findings
            .iter()
            .filter(|f| f["rule_id"] == rule)
            .filter_map(|f| {
                f["credential_id"]
                    .as_str()
                    .or(f["identity_id"].as_str())
                    .map(str::to_string)
            })
            .collect()
    };
    let set = |xs: &[&str]| -> BTreeSet<String> { xs.iter().map(|x| format!("{A}{x}")).collect() };
    assert_eq!(
        of("trust-external-account-no-external-id"),
        set(&[
            "role/vendor-extid-ifexists#trust/999988887777",
            "role/vendor-no-extid#trust/999988887777",
        ]),
        "{findings:#?}"
    );
    assert_eq!(
        of("trust-public-principal"),
        set(&["role/public-extid-only#trust/*", "role/public-open#trust/*"]),
    );
    assert_eq!(
        of("federated-trust-broad"),
        set(&["role/deploy-no-aud#oidc/token.actions.githubusercontent.com"]),
    );
    assert_eq!(
        of("role-unused"),
        set(&["role/idle-deployer", "role/web"]),
        "{findings:#?}"
    );
    let web = findings
        .iter()
        .find(|f| {
            f["rule_id"] == "role-unused" && f["identity_id"] == format!("{A}role/web").as_str()
        })
        .expect("finding");
    assert_eq!(
        web["evidence"]["attached_to"],
        serde_json::json!([format!("{A}instance-profile/web")]),
        "the instance profile wearing the idle role is evidence"
    );
    let vendor = findings
        .iter()
        .find(|f| f["rule_id"] == "trust-external-account-no-external-id")
        .expect("finding");
    assert_eq!(vendor["evidence"]["federation"]["kind"], "account");
    assert_eq!(vendor["evidence"]["federation"]["account"], "999988887777");
    assert_eq!(vendor["evidence"]["federation"]["outside_estate"], true);
    // The service-linked role has AWS as its owner: no ownerless noise.
    assert!(
        !findings.iter().any(|f| f["identity_id"]
            .as_str()
            .is_some_and(|i| i.contains("aws-service-role"))),
        "{findings:#?}"
    );

    let plan = json(&run(&["plan", "--config", &cfg, "--format", "json"]));
    for a in &plan {
        let rules = a["rules"].as_array().cloned().unwrap_or_default();
        assert!(
            !rules
                .iter()
                .any(|r| r == "trust-external-account-no-external-id"
                    || r == "trust-public-principal"
                    || r == "role-unused"),
            "flag rules plan nothing: {a:#}"
        );
        assert!(
            !a["identity_id"]
                .as_str()
                .is_some_and(|i| i.contains("aws-service-role")),
            "{a:#}"
        );
    }
}
