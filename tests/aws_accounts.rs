//! Enforce mode in the shape of an AWS organisation: one source reads two
//! accounts through `assume_roles`, and both hold a user `ci-bot`. The
//! scanner account's `ci-bot` is approved; the member account's is not.
//! Every action must land on the member's object, through the member's
//! role, and nothing of the scanner account may change — read back from
//! both accounts after each step.

#[path = "support/cli.rs"]
mod cli_support;

use std::path::Path;
use std::process::Output;

use nhi_aws::moto::aws_sdk_iam::types::StatusType;
use nhi_aws::moto::{member_role, Moto};
use serde_json::Value;

const SCANNER: &str = "123456789012";
const MEMBER: &str = "222233334444";

/// The member account's `ci-bot` (same name as in the scanner account),
/// seeded by the scenario: one access key, a console password, a wide
/// policy.
struct Member {
    key: String,
}

fn member(moto: &Moto) -> Member {
    Member {
        key: moto.key("member-ci-bot-key"),
    }
}

fn user(account: &str) -> String {
    format!("arn:aws:iam::{account}:user/ci-bot")
}

/// Approvals: the scanner's `ci-bot` fully (its policies' actions), the
/// member's `ci-bot` for S3 reads only — its key is unapproved-in-scope
/// only where a rule says so; the test's own rules decide what acts.
fn approvals(dir: &Path) {
    let day = |d: i64| {
        (chrono::Utc::now() + chrono::Duration::days(d))
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    };
    std::fs::create_dir_all(dir.join("approvals")).expect("mkdir");
    std::fs::write(
        dir.join("approvals/org.yaml"),
        format!(
            r#"approvals:
  - id: APR-SCANNER-CI
    subject: "{scanner}"
    scope: {{actions: ["s3:GetObject", "s3:PutObject", "iam:*"]}}
    requester: dev@example.com
    approver: lead@example.com
    approved_at: {a}
    expires_at: {e}
  - id: APR-MEMBER-CI
    subject: "{member}"
    scope: {{actions: ["s3:GetObject"]}}
    requester: dev@example.com
    approver: lead@example.com
    approved_at: {a}
    expires_at: {e}
"#,
            scanner = user(SCANNER),
            member = user(MEMBER),
            a = day(-30),
            e = day(200),
        ),
    )
    .expect("approvals");
}

/// Rules of this test: retire (delete) access keys of identities held
/// beyond their approved scope, remove their console passwords and, with
/// `detach`, detach what the approval does not cover (which ends the
/// overscope the other two rules need). Only the member's `ci-bot` is
/// beyond scope.
fn rules(dir: &Path, detach: bool) {
    std::fs::create_dir_all(dir.join("rules")).expect("mkdir");
    let rule = |id: &str, subject: &str, cond: &str, action: &str, target: Option<&str>| {
        let target = target.map(|t| format!("target: {t}\n")).unwrap_or_default();
        std::fs::write(
            dir.join(format!("rules/{id}.yaml")),
            format!(
                "id: {id}\ntitle: {id}\ndescription: d\nseverity: high\nsubject: {subject}\ncondition: {cond}\naction: {action}\n{target}remediation: r\ncontrols: [\"OWASP-NHI-2025:NHI5\"]\n"
            ),
        )
        .expect("rule");
    };
    rule(
        "retire-overscoped-keys",
        "credential",
        "credential.kind == \"access_key\" && identity.overscope_direct > 0",
        "delete",
        None,
    );
    rule(
        "no-console-on-overscoped",
        "identity",
        "identity.human_login && identity.overscope_direct > 0",
        "disable",
        Some("login"),
    );
    if detach {
        rule(
            "detach-overscoped",
            "identity",
            "identity.overscope_direct > 0",
            "disable",
            Some("entitlements"),
        );
    }
}

fn setup(moto: &Moto, dir: &Path, detach: bool, enforce: &str) -> String {
    approvals(dir);
    rules(dir, detach);
    let cfg = dir.join("nhi-assure.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"store = "store.db"
[[sources]]
type = "aws"
name = "org"
endpoint_url = "{endpoint}"
assume_roles = ["{scanner_role}", "{member_role}"]
max_attempts = 3
initial_backoff_ms = 10

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
{enforce}
"#,
            endpoint = moto.ready.endpoint,
            scanner_role = member_role(SCANNER),
            member_role = member_role(MEMBER),
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

/// `reconcile --enforce`; moto refuses service-specific credentials, so the
/// run is partial and accepted as such.
fn enforce(cfg: &str) -> Vec<Value> {
    let o = run(&[
        "reconcile",
        "--config",
        cfg,
        "--enforce",
        "--allow-partial",
        "--format",
        "json",
    ]);
    assert!(
        matches!(o.status.code(), Some(0 | 2)),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let doc: Value = serde_json::from_slice(&o.stdout).expect("json");
    doc["outcomes"].as_array().cloned().expect("outcomes")
}

fn journal(cfg: &str) -> Vec<Value> {
    serde_json::from_slice(&run(&["journal", "--config", cfg]).stdout).expect("journal")
}

/// The state of `ci-bot` in `account`, read back through that account.
#[derive(Debug, PartialEq)]
struct State {
    keys: Vec<(String, bool)>,
    console: bool,
    policies: Vec<String>,
}

async fn state(moto: &Moto, account: &str) -> State {
    let iam = moto.account_client(account).await;
    let keys = iam
        .list_access_keys()
        .user_name("ci-bot")
        .send()
        .await
        .expect("keys")
        .access_key_metadata()
        .iter()
        .map(|k| {
            (
                k.access_key_id().unwrap_or_default().to_string(),
                k.status() == Some(&StatusType::Active),
            )
        })
        .collect();
    let console = iam
        .get_login_profile()
        .user_name("ci-bot")
        .send()
        .await
        .is_ok();
    let mut policies: Vec<String> = iam
        .list_attached_user_policies()
        .user_name("ci-bot")
        .send()
        .await
        .expect("policies")
        .attached_policies()
        .iter()
        .filter_map(|p| p.policy_name().map(str::to_string))
        .collect();
    policies.sort();
    State {
        keys,
        console,
        policies,
    }
}

fn of<'a>(outcomes: &'a [Value], op: &str) -> Vec<&'a Value> {
    outcomes.iter().filter(|o| o["operation"] == op).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_and_undo_land_in_the_subjects_account_only() {
    let moto = Moto::start("org-same-names", &[]).expect("fixture");
    let member = member(&moto);
    let scanner_before = state(&moto, SCANNER).await;
    assert!(scanner_before.console && scanner_before.keys.iter().all(|k| k.1));
    assert_eq!(scanner_before.policies, vec!["deploy-s3", "iam-wide"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = setup(&moto, dir.path(), true, "quarantine_days = 30");

    let done = enforce(&cfg);
    // Every action targets the member's ci-bot, by its full ARN.
    let acted: Vec<&Value> = done.iter().filter(|o| o["status"] == "done").collect();
    assert!(!acted.is_empty(), "{done:#?}");
    assert!(
        done.iter()
            .all(|o| o["identity_id"] == user(MEMBER).as_str()),
        "{done:#?}"
    );
    // The first action on the key is its reversible disable.
    let disable = of(&done, "disable_credential");
    assert_eq!(disable.len(), 1, "{done:#?}");
    assert_eq!(disable[0]["credential_id"], member.key.as_str());
    assert_eq!(disable[0]["status"], "done");
    // Removing the console password cannot be undone: held by default.
    let login = of(&done, "remove_login");
    assert_eq!(login.len(), 1, "{done:#?}");
    assert_eq!(login[0]["status"], "held");
    assert!(
        login[0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("allow_irreversible") && d.contains("console_password")),
        "{login:#?}"
    );
    assert_eq!(of(&done, "detach_entitlements")[0]["status"], "done");

    let after = state(&moto, MEMBER).await;
    assert_eq!(
        after.keys,
        vec![(member.key.clone(), false)],
        "member key disabled"
    );
    assert!(after.console, "member console password kept (held)");
    assert!(after.policies.is_empty(), "member policy detached");
    assert_eq!(
        state(&moto, SCANNER).await,
        scanner_before,
        "nothing of the scanner account's same-named user changed"
    );

    // The journal says where and as whom each action ran.
    let entries = journal(&cfg);
    assert!(!entries.is_empty());
    for e in &entries {
        assert_eq!(
            e["via"],
            format!("account {MEMBER} via {}", member_role(MEMBER)).as_str(),
            "{e:#?}"
        );
    }

    // Undo goes through the same binding: the member is restored, the
    // scanner account still untouched.
    let run_id = entries[0]["run_id"].as_i64().expect("run").to_string();
    let undo = run(&["undo", "--config", &cfg, "--run", &run_id]);
    assert_eq!(
        undo.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&undo.stderr)
    );
    let restored = state(&moto, MEMBER).await;
    assert_eq!(restored.keys, vec![(member.key.clone(), true)]);
    assert_eq!(restored.policies, vec!["iam-wide"]);
    assert_eq!(state(&moto, SCANNER).await, scanner_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_after_quarantine_and_allowed_console_removal_stay_in_their_account() {
    let moto = Moto::start("org-same-names", &[]).expect("fixture");
    let member = member(&moto);
    let scanner_before = state(&moto, SCANNER).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = setup(
        &moto,
        dir.path(),
        false,
        "quarantine_days = 0\nallow_irreversible = [\"console_password\"]",
    );

    let first = enforce(&cfg);
    assert_eq!(of(&first, "disable_credential")[0]["status"], "done");
    assert_eq!(of(&first, "remove_login")[0]["status"], "done", "allowed");
    // Second pass: the quarantine (0 days) has passed, the key is deleted.
    let second = enforce(&cfg);
    let del = of(&second, "delete_credential");
    assert_eq!(del.len(), 1, "{second:#?}");
    assert_eq!(del[0]["status"], "done");
    assert_eq!(del[0]["credential_id"], member.key.as_str());

    let after = state(&moto, MEMBER).await;
    assert!(after.keys.is_empty(), "member key deleted");
    assert!(!after.console, "member console password removed");
    assert_eq!(
        state(&moto, SCANNER).await,
        scanner_before,
        "the scanner account's ci-bot keeps its key, password and policies"
    );
}

/// The remediator on its own: a target that is not where the plan says is
/// an error, never a silent success, and never a same-named principal of
/// the credentials' own account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_not_found_in_its_account_is_an_error() {
    use nhi_contract::{ActionRequest, CredentialKind, Operation, Provider, Remediator};
    let moto = Moto::start("org-same-names", &[]).expect("fixture");
    let member = member(&moto);
    let scanner_before = state(&moto, SCANNER).await;
    let sdk = Moto::sdk_config(&moto.ready.endpoint).await;
    let req = |op: Operation, identity: String, cred: Option<&str>| ActionRequest {
        operation: op,
        provider: Provider::Aws,
        identity_id: identity,
        credential_id: cred.map(str::to_string),
        credential_kind: cred.map(|_| CredentialKind::AccessKey),
        entitlements: Vec::new(),
        federated: None,
    };

    // A source without roles reads (and acts in) its credentials' account
    // only: the member's ci-bot is not there, the scanner's is a different
    // principal. Both refused; the scanner's user untouched.
    let single =
        nhi_aws::AwsRemediator::with_sdk_config(&nhi_aws::AwsConfig::named("single"), &sdk);
    for op in [Operation::RemoveLogin, Operation::DetachEntitlements] {
        let err = single
            .apply(&req(op, user(MEMBER), None))
            .await
            .expect_err("not acted on in another account");
        assert!(err.to_string().contains(MEMBER), "{err}");
    }
    let err = single
        .apply(&req(
            Operation::DisableCredential,
            user(MEMBER),
            Some(&member.key),
        ))
        .await
        .expect_err("refused");
    assert!(
        err.to_string().contains("not acting") || err.to_string().contains("does not exist"),
        "{err}"
    );

    // A user that exists nowhere: an error naming where it looked.
    let ghost = format!("arn:aws:iam::{SCANNER}:user/ghost");
    let err = single
        .apply(&req(Operation::RemoveLogin, ghost, None))
        .await
        .expect_err("no such user");
    assert!(err.to_string().contains("does not exist"), "{err}");

    // With roles: an account no role reaches is refused outright.
    let mut cfg = nhi_aws::AwsConfig::named("org");
    cfg.assume_roles = vec![member_role(SCANNER)];
    let org = nhi_aws::AwsRemediator::with_sdk_config(&cfg, &sdk);
    let err = org
        .apply(&req(Operation::RemoveLogin, user(MEMBER), None))
        .await
        .expect_err("no role for the member account");
    assert!(err.to_string().contains("assume_roles"), "{err}");

    assert_eq!(state(&moto, SCANNER).await, scanner_before);
    let member_after = state(&moto, MEMBER).await;
    assert!(member_after.console && member_after.keys.iter().all(|k| k.1));
}
