//! End to end against the fake Azure tenant (documented Graph / ARM shapes
//! served on loopback, see `connectors/azure/src/testing/`): run
//! `nhi-assure scan` and `plan` through the CLI, assert the exact findings
//! and planned actions, that refused reports or a failing directory never
//! pass for "never used" or "empty", and that no secret value reaches any
//! output, log or the store.

#[path = "support/cli.rs"]
mod cli_support;
use cli_support::listed;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

use nhi_azure::testing::{
    ids, FakeTenant, Tenant, CLIENT_SECRET, LEAKED_SECRET_TEXT, SUBSCRIPTION,
};

const BIN: &str = env!("CARGO_BIN_EXE_nhi-assure");
const SECRET_ENV: &str = "NHI_TEST_AZURE_CLIENT_SECRET";

fn day(d: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::days(d))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn approvals() -> String {
    format!(
        r#"approvals:
  - id: APR-AZ-PAY
    subject: "{pay}"
    credentials: ["{ci}", "{c1}", "{c2}"]
    scope: {{actions: ["microsoft.graph/user.read.all"]}}
    requester: priya.nair@contoso.com
    approver: tom.becker@contoso.com
    approved_at: {a}
    expires_at: {e}
  - id: APR-AZ-LEGACY
    subject: "{legacy}"
    scope: {{actions: ["microsoft.graph/user.read.all"]}}
    requester: ops@contoso.com
    approver: tom.becker@contoso.com
    approved_at: {old}
    expires_at: {expired}
  - id: APR-AZ-DEPLOY
    subject: "{dep}"
    scope: {{actions: ["Microsoft.Resources/deployments/*"]}}
    requester: tom.becker@contoso.com
    approver: priya.nair@contoso.com
    approved_at: {a}
    expires_at: {e}
  - id: APR-AZ-DEPLOY-SP
    subject: "{dep_sp}"
    scope: {{actions: ["Microsoft.Resources/deployments/*"]}}
    requester: tom.becker@contoso.com
    approver: priya.nair@contoso.com
    approved_at: {a}
    expires_at: {e}
"#,
        pay = ids::APP_PAYMENTS,
        ci = ids::SECRET_PAYMENTS_CI,
        c1 = ids::CERT_PAYMENTS,
        c2 = ids::CERT_PAYMENTS_NEXT,
        legacy = ids::APP_LEGACY,
        dep = ids::APP_DEPLOYER,
        dep_sp = ids::SP_DEPLOYER,
        a = day(-30),
        e = day(200),
        old = day(-300),
        expired = day(-5),
    )
}

fn setup(fake: &FakeTenant, dir: &Path) -> String {
    std::fs::create_dir_all(dir.join("approvals")).expect("mkdir");
    std::fs::write(dir.join("approvals/azure.yaml"), approvals()).expect("approvals");
    let cfg = dir.join("nhi-assure.toml");
    std::fs::write(
        &cfg,
        format!(
            "store = \"store.db\"\n{}\n[[approvals]]\ntype = \"files\"\nname = \"approvals\"\npath = \"approvals\"\n",
            fake.source_toml("azure", SECRET_ENV)
        ),
    )
    .expect("config");
    cfg.to_str().expect("utf8").to_string()
}

/// Run the CLI off the async runtime (the fake serves on it meanwhile).
async fn run(args: &[&str]) -> Output {
    run_logged(args, "debug").await
}

async fn run_logged(args: &[&str], level: &str) -> Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let level = level.to_string();
    tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(&args)
            .env(SECRET_ENV, CLIENT_SECRET)
            .env("RUST_LOG", level)
            .output()
            .expect("run nhi-assure")
    })
    .await
    .expect("join")
}

fn json(o: &Output) -> Vec<serde_json::Value> {
    assert!(
        matches!(o.status.code(), Some(0 | 1)),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    listed(&o.stdout)
}

type Key = (String, String, Option<String>);

fn key(rule: &str, ident: &str, cred: Option<&str>) -> Key {
    (
        rule.to_string(),
        ident.to_string(),
        cred.map(str::to_string),
    )
}

fn keys(findings: &[serde_json::Value]) -> BTreeSet<Key> {
    findings
        .iter()
        .map(|f| {
            (
                f["rule_id"].as_str().expect("rule").to_string(),
                f["identity_id"].as_str().expect("identity").to_string(),
                f["credential_id"].as_str().map(str::to_string),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_and_plan_against_the_fake_tenant_give_exactly_the_expected_findings() {
    let fake = FakeTenant::start(Tenant::demo()).await.expect("fake");
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = setup(&fake, dir.path());

    let scan = run(&["scan", "--config", &cfg, "--format", "json"]).await;
    let findings = json(&scan);
    assert!(findings.iter().all(|f| f["provider"] == "azure"));
    use ids::*;
    let want: BTreeSet<Key> = [
        // payments-api: the old secret is outside its approval (which lists
        // credentials), never used in 800 days, a 3-year secret, overdue.
        key(
            "credential-unapproved",
            APP_PAYMENTS,
            Some(SECRET_PAYMENTS_OLD),
        ),
        key(
            "credential-never-used",
            APP_PAYMENTS,
            Some(SECRET_PAYMENTS_OLD),
        ),
        key("secret-long-lived", APP_PAYMENTS, Some(SECRET_PAYMENTS_OLD)),
        key(
            "credential-rotation-overdue",
            APP_PAYMENTS,
            Some(SECRET_PAYMENTS_OLD),
        ),
        // The secret in use is 200 days old: overdue for rotation.
        key(
            "credential-rotation-overdue",
            APP_PAYMENTS,
            Some(SECRET_PAYMENTS_CI),
        ),
        // legacy-sync: approval expired, stale 200 days, 10-year secret,
        // no owner on the app or its service principal, admin via Graph.
        key("approval-expired", APP_LEGACY, Some(SECRET_LEGACY)),
        key("credential-stale", APP_LEGACY, Some(SECRET_LEGACY)),
        key("secret-long-lived", APP_LEGACY, Some(SECRET_LEGACY)),
        key(
            "credential-rotation-overdue",
            APP_LEGACY,
            Some(SECRET_LEGACY),
        ),
        key("identity-no-owner", APP_LEGACY, None),
        key("identity-no-owner", SP_LEGACY, None),
        key("identity-admin-equivalent", SP_LEGACY, None),
        // gh-actions-deployer: federated only (no secret finding); its
        // service principal is Contributor on the subscription, beyond the
        // approved deployments scope.
        key("identity-admin-equivalent", SP_DEPLOYER, None),
        key("identity-overscoped", SP_DEPLOYER, None),
        // The managed identity records no owner.
        key("identity-no-owner", MI_ORDERS, None),
    ]
    .into_iter()
    .collect();
    let got = keys(&findings);
    let missing: Vec<_> = want.difference(&got).collect();
    let extra: Vec<_> = got.difference(&want).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:#?}\nextra {extra:#?}"
    );

    let plan = json(&run(&["plan", "--config", &cfg, "--format", "json"]).await);
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
    let act = |op: &str, id: &str, c: Option<&str>| {
        (
            op.to_string(),
            id.to_string(),
            c.map(str::to_string),
            "act".to_string(),
        )
    };
    let want: BTreeSet<_> = [
        act(
            "disable_credential",
            APP_PAYMENTS,
            Some(SECRET_PAYMENTS_OLD),
        ),
        act("disable_credential", APP_LEGACY, Some(SECRET_LEGACY)),
    ]
    .into_iter()
    .collect();
    assert_eq!(got, want);

    // A dry run changes nothing in the tenant.
    assert!(fake.tenant().writes().is_empty());

    // No secret value anywhere: stdout, logs (debug), the store.
    let mut text = String::from_utf8_lossy(&scan.stdout).to_string();
    text += &String::from_utf8_lossy(&scan.stderr);
    let store = std::fs::read(dir.path().join("store.db")).expect("store");
    text += &String::from_utf8_lossy(&store);
    // The fake's access tokens start with this JWT header.
    for bad in [LEAKED_SECRET_TEXT, CLIENT_SECRET, "eyJ0eXAiOiJKV1Qi"] {
        assert!(!text.contains(bad), "secret value leaked");
    }
    assert!(
        text.contains(SECRET_PAYMENTS_OLD),
        "ids are kept (the check reads real text)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_reports_are_unknown_usage_and_a_failed_directory_resolves_nothing() {
    let mut t = Tenant::demo();
    t.reports_forbidden = true;
    let fake = FakeTenant::start(t).await.expect("fake");
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = setup(&fake, dir.path());

    let o = run(&["scan", "--config", &cfg, "--format", "json"]).await;
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(err.contains("PARTIAL (usage:"), "{err}");
    assert_eq!(
        o.status.code(),
        Some(3),
        "a partial run is not clean: {err}"
    );
    let got = keys(&listed(&o.stdout));
    // Without reports nothing is "never used" or "stale"...
    assert!(
        got.iter()
            .all(|k| k.0 != "credential-never-used" && k.0 != "credential-stale"),
        "{got:#?}"
    );
    // ...but what does not depend on usage is still found.
    assert!(got.contains(&key(
        "approval-expired",
        ids::APP_LEGACY,
        Some(ids::SECRET_LEGACY)
    )));
    // Nothing of a partly seen source is acted on.
    let plan = run(&["plan", "--config", &cfg, "--format", "json"]).await;
    assert_eq!(plan.status.code(), Some(3));
    let plan = listed(&plan.stdout);
    assert!(
        !plan.is_empty() && plan.iter().all(|a| a["status"] == "skip"),
        "{plan:#?}"
    );

    // The directory failing: the source is unknown, nothing resolved.
    fake.tenant().directory_down = true;
    let o = run(&["scan", "--config", &cfg, "--format", "json"]).await;
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(err.contains("source azure is FAILED"), "{err}");
    assert!(
        err.contains(", 0 resolved"),
        "nothing may be resolved: {err}"
    );
    assert_eq!(o.status.code(), Some(3), "a blind run is not clean");
    assert!(listed(&o.stdout).is_empty());
    let plan = run(&["plan", "--config", &cfg, "--format", "json"]).await;
    assert_eq!(plan.status.code(), Some(3));
    assert!(
        listed(&plan.stdout).is_empty(),
        "no action on an unknown source"
    );
    let _ = SUBSCRIPTION;
}

#[test]
fn the_azure_example_config_and_approvals_load() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cfg = nhi_assure::config::Config::load(
        &root.join("examples/azure/nhi-assure.toml"),
        std::iter::empty(),
    )
    .expect("example config");
    assert!(matches!(
        cfg.sources.as_slice(),
        [nhi_assure::config::SourceConfig::Azure(_)]
    ));
    let o = Command::new(BIN)
        .args(["rules", "--config"])
        .arg(root.join("examples/azure/nhi-assure.toml"))
        .output()
        .expect("run");
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforce_disables_admin_principals_holds_secrets_unless_allowed_and_undo_restores() {
    let fake = FakeTenant::start(Tenant::demo()).await.expect("fake");
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = setup(&fake, dir.path());
    // Pilot policy: disable admin-equivalent principals at once.
    let extra = "\n[rules.overrides.identity-admin-equivalent]\naction = \"disable\"\n\
                 [enforce]\ndefault_grace_hours = 0\nmax_percent = 100.0\n";
    let text = std::fs::read_to_string(&cfg).expect("read") + extra;
    std::fs::write(&cfg, text).expect("write");

    let o = run_logged(
        &[
            "reconcile",
            "--config",
            &cfg,
            "--enforce",
            "--format",
            "json",
        ],
        "warn",
    )
    .await;
    // Exit 0: nothing failed; the secret is held (below), not attempted.
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let done = listed(&o.stdout);
    let status = |id: &str, cred: Option<&str>| -> Vec<String> {
        done.iter()
            .filter(|x| x["identity_id"] == id && x["credential_id"].as_str() == cred)
            .filter_map(|x| x["status"].as_str().map(str::to_string))
            .collect()
    };
    assert_eq!(status(ids::SP_LEGACY, None), vec!["done"], "{done:#?}");
    assert_eq!(status(ids::SP_DEPLOYER, None), vec!["done"], "{done:#?}");
    // Entra ID cannot disable a secret and removing it cannot be undone:
    // held, with the reason and the setting that allows it; untouched.
    assert_eq!(
        status(ids::APP_LEGACY, Some(ids::SECRET_LEGACY)),
        vec!["held"]
    );
    let held = done
        .iter()
        .find(|x| x["credential_id"] == ids::SECRET_LEGACY)
        .and_then(|x| x["detail"].as_str())
        .unwrap_or_default()
        .to_string();
    assert!(
        held.contains("cannot be disabled") && held.contains("remove_when_cannot_disable"),
        "{held}"
    );
    {
        let t = fake.tenant();
        assert_eq!(t.enabled(ids::SP_LEGACY), Some(false));
        assert_eq!(t.enabled(ids::SP_DEPLOYER), Some(false));
        assert_eq!(t.enabled(ids::SP_PAYMENTS), Some(true));
        assert_eq!(
            t.secrets_of(ids::APP_LEGACY),
            vec![ids::SECRET_LEGACY.to_string()]
        );
        let writes: Vec<String> = t
            .writes()
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        let mut want = vec![
            format!("PATCH /v1.0/servicePrincipals/{}", ids::SP_LEGACY),
            format!("PATCH /v1.0/servicePrincipals/{}", ids::SP_DEPLOYER),
        ];
        let mut got = writes.clone();
        got.sort();
        want.sort();
        assert_eq!(got, want, "only the two principals were written");
    }

    // Undo the run: both principals enabled again.
    let journal = run(&["journal", "--config", &cfg]).await;
    let journal: Vec<serde_json::Value> = serde_json::from_slice(&journal.stdout).expect("journal");
    let run_id = journal
        .iter()
        .find_map(|e| e["run_id"].as_i64())
        .expect("run id")
        .to_string();
    let undo = run(&["undo", "--config", &cfg, "--run", &run_id]).await;
    assert_eq!(
        undo.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&undo.stderr)
    );
    {
        let t = fake.tenant();
        assert_eq!(t.enabled(ids::SP_LEGACY), Some(true));
        assert_eq!(t.enabled(ids::SP_DEPLOYER), Some(true));
    }

    // The operator allows removing secrets: the secret goes, irreversibly,
    // and only it among the application's credentials.
    let others_before: Vec<String> = fake
        .tenant()
        .secrets_of(ids::APP_LEGACY)
        .into_iter()
        .filter(|s| s != ids::SECRET_LEGACY)
        .collect();
    let text = std::fs::read_to_string(&cfg).expect("read")
        + "remove_when_cannot_disable = [\"client_secret\"]\n";
    std::fs::write(&cfg, text).expect("write");
    let o = run(&[
        "reconcile",
        "--config",
        &cfg,
        "--enforce",
        "--format",
        "json",
    ])
    .await;
    let done = listed(&o.stdout);
    let secret: Vec<&serde_json::Value> = done
        .iter()
        .filter(|x| x["credential_id"] == ids::SECRET_LEGACY)
        .collect();
    assert_eq!(secret.len(), 1, "{done:#?}");
    assert_eq!(secret[0]["status"], "done", "{done:#?}");
    assert_eq!(secret[0]["operation"], "delete_credential");
    let t = fake.tenant();
    assert!(!t
        .secrets_of(ids::APP_LEGACY)
        .contains(&ids::SECRET_LEGACY.to_string()));
    let others_after: Vec<String> = t.secrets_of(ids::APP_LEGACY);
    assert_eq!(others_after, others_before, "no other secret touched");
}

/// An expired secret left on an application beside its live one (the
/// classic two-credentials trap): enforce removes exactly the expired one,
/// at once — no irreversible-action hold, no disable-first quarantine,
/// since it can no longer authenticate — and the live secrets stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforce_removes_exactly_the_expired_secret_and_never_the_live_one() {
    const EXPIRED: &str = "5e000000-0000-4000-8000-0000000000e9";
    let fake = FakeTenant::start(Tenant::demo()).await.expect("fake");
    {
        let mut t = fake.tenant();
        let app = t
            .apps
            .iter_mut()
            .find(|a| a["id"] == ids::APP_PAYMENTS)
            .expect("payments app");
        let secrets = app["passwordCredentials"].as_array_mut().expect("secrets");
        secrets.push(serde_json::json!({
            "customKeyIdentifier": null,
            "displayName": "ci-2025",
            "endDateTime": day(-20),
            "hint": "Qx9",
            "keyId": EXPIRED,
            "secretText": null,
            "startDateTime": day(-385),
        }));
    }
    let live_before: Vec<String> = fake
        .tenant()
        .secrets_of(ids::APP_PAYMENTS)
        .into_iter()
        .filter(|s| s != EXPIRED)
        .collect();
    assert!(live_before.contains(&ids::SECRET_PAYMENTS_CI.to_string()));
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = setup(&fake, dir.path());
    // The grace period still applies: first seen now, held.
    let o = run(&[
        "reconcile",
        "--config",
        &cfg,
        "--enforce",
        "--format",
        "json",
    ])
    .await;
    let first = listed(&o.stdout);
    let held: Vec<&serde_json::Value> = first
        .iter()
        .filter(|x| x["credential_id"] == EXPIRED)
        .collect();
    assert_eq!(held.len(), 1, "{first:#?}");
    assert_eq!(held[0]["status"], "held");
    assert_eq!(held[0]["detail"], "in its grace period");
    assert!(fake
        .tenant()
        .secrets_of(ids::APP_PAYMENTS)
        .contains(&EXPIRED.to_string()));

    let text = std::fs::read_to_string(&cfg).expect("read")
        + "\n[enforce]\ndefault_grace_hours = 0\nmax_percent = 100.0\n";
    std::fs::write(&cfg, text).expect("write");

    let o = run(&[
        "reconcile",
        "--config",
        &cfg,
        "--enforce",
        "--format",
        "json",
    ])
    .await;
    let done = listed(&o.stdout);
    let of = |cred: &str| -> Vec<&serde_json::Value> {
        done.iter()
            .filter(|x| x["credential_id"].as_str() == Some(cred))
            .collect()
    };
    let expired = of(EXPIRED);
    assert_eq!(expired.len(), 1, "{done:#?}");
    assert_eq!(expired[0]["status"], "done", "{done:#?}");
    assert_eq!(expired[0]["operation"], "delete_credential");
    assert_eq!(
        expired[0]["rules"],
        serde_json::json!(["credential-expired-still-present"])
    );
    // A live secret that cannot be disabled is still held as before.
    let legacy = of(ids::SECRET_LEGACY);
    assert_eq!(legacy.len(), 1, "{done:#?}");
    assert_eq!(legacy[0]["status"], "held", "{done:#?}");
    let t = fake.tenant();
    assert_eq!(
        t.secrets_of(ids::APP_PAYMENTS),
        live_before,
        "only the expired secret was removed"
    );
    assert!(t
        .secrets_of(ids::APP_LEGACY)
        .contains(&ids::SECRET_LEGACY.to_string()));
    let removals: Vec<String> = t
        .writes()
        .iter()
        .filter(|r| r.path.ends_with("/removePassword"))
        .map(|r| format!("{} {:?}", r.path, r.body))
        .collect();
    assert_eq!(removals.len(), 1, "{removals:?}");
    assert!(removals[0].contains(EXPIRED), "{removals:?}");
}

#[test]
fn a_secret_in_the_config_file_is_refused_with_its_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("nhi-assure.toml");
    std::fs::write(
        &cfg,
        r#"[[sources]]
type = "azure"
name = "azure"
tenant_id = "7d3f9a1c-2b4e-4c6d-8e0f-1a2b3c4d5e6f"
[sources.auth]
method = "client_secret"
client_id = "5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d"
client_secret = "do-not-put-me-here"
"#,
    )
    .expect("write");
    let o = Command::new(BIN)
        .args(["scan", "--config"])
        .arg(&cfg)
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("nhi-assure.toml:"), "located: {err}");
    assert!(
        err.contains("client_secret") || err.contains("secret_env"),
        "{err}"
    );
    assert!(
        !err.contains("do-not-put-me-here"),
        "the value is not echoed: {err}"
    );
}
