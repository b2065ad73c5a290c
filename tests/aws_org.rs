//! An AWS organisation end to end through the CLI (tests/aws/scenarios/
//! organization.json): the source discovers its accounts and reads each
//! through the member role. When one member's role stops being assumable,
//! that account's subjects are held — their findings stay open, nothing of
//! them is acted on — while enforcement goes on in the other accounts.

#[path = "support/cli.rs"]
mod cli_support;

use std::path::Path;
use std::process::Output;

use nhi_aws::moto::aws_sdk_iam::types::StatusType;
use nhi_aws::moto::Moto;
use serde_json::Value;

const MGMT: &str = "123456789012";
const DEV: &str = "222233334444";
const SANDBOX: &str = "333344445555";

fn setup(moto: &Moto, dir: &Path) -> String {
    std::fs::create_dir_all(dir.join("approvals")).expect("mkdir");
    std::fs::create_dir_all(dir.join("rules")).expect("mkdir");
    std::fs::write(dir.join("approvals/none.yaml"), "approvals: []\n").expect("approvals");
    // Keys never used for ten days are disabled: dev's and sandbox's (the
    // legacy account's too, but it is never read).
    std::fs::write(
        dir.join("rules/idle-keys.yaml"),
        "id: idle-keys\ntitle: idle keys\ndescription: d\nseverity: high\nsubject: credential\n\
         condition: credential.kind == \"access_key\" && credential.active && credential.usage == \"never\" && credential.age_days > 10\n\
         action: disable\nremediation: r\ncontrols: [\"OWASP-NHI-2025:NHI1\"]\n",
    )
    .expect("rule");
    let cfg = dir.join("nhi-assure.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"store = "store.db"
[[sources]]
type = "aws"
name = "org"
endpoint_url = "{proxy}"
max_attempts = 2
initial_backoff_ms = 10

[sources.organization]
role_name = "nhi-assure-member"
max_accounts_concurrency = 3

[[approvals]]
type = "files"
name = "approvals"
path = "approvals"

[rules]
builtin = false
paths = ["rules"]

[enforce]
default_grace_hours = 0
max_percent = 100.0
"#,
            proxy = moto.ready.proxy,
        ),
    )
    .expect("config");
    cfg.display().to_string()
}

fn run(args: &[&str]) -> Output {
    cli_support::moto_cmd(args)
        .output()
        .expect("run nhi-assure")
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

fn key_active(moto: &Moto, account: &str, user: &str, key: &str) -> bool {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let iam = moto.account_client(account).await;
        let keys = iam
            .list_access_keys()
            .user_name(user)
            .send()
            .await
            .expect("keys");
        keys.access_key_metadata()
            .iter()
            .find(|k| k.access_key_id() == Some(moto.key(key).as_str()))
            .map(|k| k.status() == Some(&StatusType::Active))
            .expect("key")
    })
}

/// Findings of `doc` (a run's JSON) on a credential.
fn on_credential<'a>(doc: &'a Value, key: &str) -> Vec<&'a Value> {
    doc["findings"]
        .as_array()
        .map(|f| f.iter().filter(|f| f["credential_id"] == key).collect())
        .unwrap_or_default()
}

#[test]
fn an_unassumable_member_holds_its_subjects_while_the_rest_is_enforced() {
    let moto = Moto::start("organization", &[]).expect("fixture");
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = setup(&moto, dir.path());
    let dev_key = moto.key("dev-ci-bot-key");
    let sandbox_key = moto.key("sandbox-experiment-key");

    // Pass 1, dry: dev's and sandbox's idle keys are findings; legacy's
    // account cannot be read, so the run is not clean.
    let first = run(&["scan", "--config", &cfg, "--format", "json"]);
    assert_ne!(
        first.status.code(),
        Some(0),
        "a partial run never exits clean"
    );
    let doc = json(&first);
    assert_eq!(on_credential(&doc, &dev_key).len(), 1, "{doc:#}");
    assert_eq!(on_credential(&doc, &sandbox_key).len(), 1, "{doc:#}");

    // Dev's member role stops admitting the scanner.
    moto.refuse_role(&format!("arn:aws:iam::{DEV}:role/nhi-assure-member"), true)
        .expect("refuse");
    let second = run(&[
        "reconcile",
        "--config",
        &cfg,
        "--enforce",
        "--allow-partial",
        "--format",
        "json",
    ]);
    let doc = json(&second);
    let outcomes = doc["outcomes"].as_array().cloned().unwrap_or_default();
    let done: Vec<&Value> = outcomes.iter().filter(|o| o["status"] == "done").collect();
    assert_eq!(done.len(), 1, "{outcomes:#?}");
    assert_eq!(done[0]["credential_id"], sandbox_key.as_str());
    assert!(
        !outcomes
            .iter()
            .any(|o| o["credential_id"] == dev_key.as_str() && o["status"] == "done"),
        "{outcomes:#?}"
    );
    assert!(!key_active(
        &moto,
        SANDBOX,
        "experiment",
        "sandbox-experiment-key"
    ));
    assert!(
        key_active(&moto, DEV, "ci-bot", "dev-ci-bot-key"),
        "held: not acted on"
    );
    assert!(key_active(&moto, MGMT, "ci-bot", "mgmt-ci-bot-key"));

    // Dev's finding was not seen by pass 2, yet it is not resolved: its
    // account was not read.
    let diff = run(&["diff", "--config", &cfg, "--format", "json"]);
    let doc = json(&diff);
    let has = |list: &str| {
        doc[list]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| {
                e["fingerprint"]
                    .as_str()
                    .is_some_and(|f| f.contains(&dev_key))
            })
            .cloned()
    };
    assert!(has("resolved").is_none(), "{doc:#}");
    let open = has("still_open").expect("dev's finding still open");
    assert_eq!(open["unverified"], true, "{open:#}");
}
