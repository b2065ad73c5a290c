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

/// `reconcile --enforce` with JSON output.
async fn enforce(cfg: &str) -> Output {
    run(&[
        "reconcile",
        "--config",
        cfg,
        "--enforce",
        "--format",
        "json",
    ])
    .await
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
        // The managed identities record no owner; the system-assigned one
        // (reported, like every managed identity, as owned by Microsoft's
        // services tenant) is Owner of the subscription.
        key("identity-no-owner", MI_ORDERS, None),
        key("identity-no-owner", MI_BUILD, None),
        key("identity-admin-equivalent", MI_BUILD, None),
        // Federated credentials no approval covers: the user-assigned
        // managed identity's (read from ARM) and the agent blueprint's.
        key("credential-unapproved", MI_ORDERS, Some(MI_FIC_ORDERS)),
        key("credential-unapproved", APP_BLUEPRINT, Some(FIC_BLUEPRINT)),
        // Expired but still present: legacy-sync's previous secret, the
        // payments principal's previous certificate.
        key(
            "credential-expired-still-present",
            APP_LEGACY,
            Some(SECRET_LEGACY_EXPIRED),
        ),
        key(
            "credential-expired-still-present",
            SP_PAYMENTS,
            Some(CERT_SP_PAYMENTS_EXPIRED),
        ),
        // The blueprint's flexible credential admits every repository of
        // the organisation (`repo:contoso/*`); the managed identity's, pinned
        // to one service account of an AKS issuer, is not broad.
        key("federated-trust-broad", APP_BLUEPRINT, Some(FIC_BLUEPRINT)),
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
        // Unapproved federated credentials: removable, and undo puts them back.
        act("disable_credential", APP_BLUEPRINT, Some(FIC_BLUEPRINT)),
        act("disable_credential", MI_ORDERS, Some(MI_FIC_ORDERS)),
        // Expired credentials still present: removed (they cannot
        // authenticate, so no disable comes first).
        act("delete_credential", APP_LEGACY, Some(SECRET_LEGACY_EXPIRED)),
        act(
            "delete_credential",
            SP_PAYMENTS,
            Some(CERT_SP_PAYMENTS_EXPIRED),
        ),
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
    // The usage gap holds only what reads last use: the expired
    // approval's secret and the unapproved one are still disabled.
    let plan = run(&["plan", "--config", &cfg, "--format", "json"]).await;
    assert_eq!(plan.status.code(), Some(3));
    let plan = listed(&plan.stdout);
    let legacy = plan
        .iter()
        .find(|a| a["credential_id"] == ids::SECRET_LEGACY)
        .unwrap_or_else(|| panic!("an action on the legacy secret: {plan:#?}"));
    assert_eq!(legacy["status"], "act", "{legacy:#?}");
    assert_eq!(legacy["rules"], serde_json::json!(["approval-expired"]));
    assert!(plan.iter().all(|a| a["status"] == "act"), "{plan:#?}");

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

/// Directory roles refused: the gap is reported and holds only what reads
/// privilege — the expired approval's secret is still planned for
/// disabling, the admin and overscope findings are still reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_directory_roles_hold_privilege_not_credential_actions() {
    let mut t = Tenant::demo();
    t.directory_roles_forbidden = true;
    let fake = FakeTenant::start(t).await.expect("fake");
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = setup(&fake, dir.path());

    let o = run(&["plan", "--config", &cfg, "--format", "json"]).await;
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(err.contains("PARTIAL (directory roles:"), "{err}");
    assert_eq!(
        o.status.code(),
        Some(3),
        "a partial run is not clean: {err}"
    );
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(doc["sources"][0]["state"], "partial", "{doc:#}");
    assert_eq!(
        doc["sources"][0]["blinds"],
        serde_json::json!([{"type": "privilege"}]),
        "{doc:#}"
    );
    let plan = listed(&o.stdout);
    let legacy = plan
        .iter()
        .find(|a| a["credential_id"] == ids::SECRET_LEGACY)
        .unwrap_or_else(|| panic!("an action on the legacy secret: {plan:#?}"));
    assert_eq!(legacy["operation"], "disable_credential");
    assert_eq!(legacy["status"], "act", "{legacy:#?}");

    let scan = run(&["scan", "--config", &cfg, "--format", "json"]).await;
    let got = keys(&listed(&scan.stdout));
    assert!(
        got.contains(&key(
            "approval-expired",
            ids::APP_LEGACY,
            Some(ids::SECRET_LEGACY)
        )),
        "{got:#?}"
    );
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
        // The live secret untouched; the expired one removed at once (it
        // cannot authenticate: no irreversible hold, no quarantine).
        assert_eq!(
            t.secrets_of(ids::APP_LEGACY),
            vec![ids::SECRET_LEGACY.to_string()]
        );
        let writes: Vec<String> = t
            .writes()
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        // The two principals disabled; the admin-equivalent managed identity
        // (which cannot be disabled) stripped of its Owner assignment; the
        // two unapproved federated credentials removed; the two expired
        // credentials removed (a secret by removePassword, a certificate by
        // writing the principal's keyCredentials without it). Nothing else.
        let mut want = vec![
            format!(
                "POST /v1.0/applications/{}/removePassword",
                ids::APP_LEGACY
            ),
            format!("PATCH /v1.0/servicePrincipals/{}", ids::SP_PAYMENTS),
            format!("PATCH /v1.0/servicePrincipals/{}", ids::SP_LEGACY),
            format!("PATCH /v1.0/servicePrincipals/{}", ids::SP_DEPLOYER),
            format!(
                "DELETE /subscriptions/{SUBSCRIPTION}/providers/Microsoft.Authorization/roleAssignments/{}",
                ids::RA_BUILD
            ),
            format!("DELETE {}", ids::MI_FIC_ORDERS),
            format!(
                "DELETE /beta/applications/{}/federatedIdentityCredentials/{}",
                ids::APP_BLUEPRINT,
                ids::FIC_BLUEPRINT
            ),
        ];
        let mut got = writes.clone();
        got.sort();
        want.sort();
        assert_eq!(got, want, "only the intended objects were written");
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
        assert!(t
            .role_assignments
            .iter()
            .any(|r| r["id"].as_str().is_some_and(|i| i.ends_with(ids::RA_BUILD))));
        assert_eq!(t.mi_fics[ids::MI_ORDERS_RESOURCE].len(), 1);
        assert_eq!(t.fics[ids::APP_BLUEPRINT].len(), 1);
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
    let o = enforce(&cfg).await;
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
    let o = enforce(&cfg).await;
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

    let o = enforce(&cfg).await;
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
    // Exactly the expired secrets: this one, and legacy-sync's previous one
    // the demo tenant already holds; never a live one.
    assert_eq!(removals.len(), 2, "{removals:?}");
    assert!(removals.iter().any(|r| r.contains(EXPIRED)), "{removals:?}");
    assert!(
        removals
            .iter()
            .any(|r| r.contains(ids::SECRET_LEGACY_EXPIRED)),
        "{removals:?}"
    );
    assert!(
        removals.iter().all(|r| !r.contains(ids::SECRET_LEGACY)),
        "{removals:?}"
    );
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

/// The example approvals name what the connector emits: every action and
/// entitlement in their scopes is one the connector reports for the
/// documented tenant (a scope naming `graph:User.Read.All` matches nothing,
/// so the example would make every real credential look overscoped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_azure_example_approvals_name_ids_the_connector_emits() {
    use nhi_contract::pattern::Syntax;
    use nhi_contract::InventorySource;

    let fake = FakeTenant::start(Tenant::demo()).await.expect("fake");
    let env = "NHI_TEST_AZURE_SECRET_EXAMPLES";
    std::env::set_var(env, CLIENT_SECRET);
    let mut cfg = nhi_azure::AzureConfig::new(
        "azure",
        nhi_azure::testing::TENANT,
        nhi_azure::AzureAuth::ClientSecret {
            client_id: nhi_azure::testing::CLIENT_ID.into(),
            secret_env: env.into(),
        },
    );
    cfg.subscriptions = vec![SUBSCRIPTION.into()];
    cfg.authority_host = nhi_azure::testing::AUTHORITY.into();
    cfg.graph_url = nhi_azure::testing::GRAPH.into();
    cfg.arm_url = nhi_azure::testing::ARM.into();
    cfg.test_loopback = Some(fake.addr.to_string());
    let inv = nhi_azure::AzureSource::new(cfg)
        .scan()
        .await
        .expect("scan of the fake tenant");
    let actions: BTreeSet<&str> = inv
        .entitlements
        .iter()
        .flat_map(|e| e.actions.iter().map(String::as_str))
        .collect();
    let entitlements: BTreeSet<&str> = inv.entitlements.iter().map(|e| e.id.as_str()).collect();

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/azure/approvals");
    let approvals = nhi_approvals_as_code::load_dir(&dir, 3650).expect("example approvals");
    assert!(!approvals.is_empty());
    let scope = Syntax::STAR_ASCII_CASELESS;
    for a in &approvals {
        assert!(
            uuid_like(&a.subject),
            "{}: subject {} is not an Entra object id",
            a.id,
            a.subject
        );
        for p in &a.scope.actions {
            assert!(
                actions.iter().any(|x| scope.matches(p, x)),
                "{}: action {p} matches nothing the connector emits: {actions:?}",
                a.id
            );
        }
        for e in &a.scope.entitlements {
            assert!(
                entitlements.contains(e.as_str()),
                "{}: entitlement {e} is not one the connector emits: {entitlements:?}",
                a.id
            );
        }
    }
}

fn uuid_like(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
        && parts
            .iter()
            .all(|p| p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// `trace` on a managed identity shows the identity and its subscription
/// Owner as admin (the first-party filter once hid managed identities: the
/// trace said `identity: null`); on a principal holding roles through a
/// group and as PIM-eligible, each entitlement says how it is held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_shows_a_managed_identity_and_how_each_role_is_held() {
    let fake = FakeTenant::start(Tenant::demo()).await.expect("fake");
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = setup(&fake, dir.path());
    std::env::set_var(SECRET_ENV, CLIENT_SECRET);
    let scan = run(&["scan", "--config", &cfg, "--format", "json"]).await;
    assert!(
        matches!(scan.status.code(), Some(0 | 1)),
        "{}",
        String::from_utf8_lossy(&scan.stderr)
    );
    let trace = |subject: &'static str| {
        let cfg = cfg.clone();
        async move {
            let o = run(&["trace", "--config", &cfg, subject]).await;
            assert_eq!(
                o.status.code(),
                Some(0),
                "{}",
                String::from_utf8_lossy(&o.stderr)
            );
            serde_json::from_slice::<serde_json::Value>(&o.stdout).expect("trace json")
        }
    };

    let mi = trace(ids::MI_BUILD).await;
    assert_eq!(mi["identity"]["kind"], "managed_identity", "{mi:#}");
    let owner = mi["entitlements"]
        .as_array()
        .expect("entitlements")
        .iter()
        .find(|e| e["name"] == format!("Owner at /subscriptions/{SUBSCRIPTION}"))
        .unwrap_or_else(|| panic!("Owner at the subscription: {mi:#}"));
    assert_eq!(owner["privilege"], "admin");
    assert!(mi["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .any(|f| f["rule_id"] == "identity-admin-equivalent"));

    let deployer = trace(ids::SP_DEPLOYER).await;
    let held = deployer["entitlements"].as_array().expect("entitlements");
    let tier0 = format!("group:{}", nhi_azure::testing::ent_ids::GROUP_TIER0);
    assert!(
        held.iter().any(|e| e["via"] == tier0.as_str()),
        "a role through the group: {held:#?}"
    );
    assert!(
        held.iter()
            .any(|e| e["eligible"] == true && e["privilege"] == "admin"),
        "an eligible admin role: {held:#?}"
    );
}

/// Issuance on Azure through the CLI, in an estate of two tenants: an
/// approval naming the payments application (by its client id) and a
/// workload gets a federated credential in the one tenant that holds the
/// application, only in its window; `plan` shows the step and writes
/// nothing; a repeat adds nothing; revoking the approval removes exactly
/// that credential as another approval's window opens and adds its own,
/// and the other tenant is never written to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_federates_its_workload_in_the_tenant_holding_the_app_for_its_window_only() {
    const ISSUER: &str = "https://token.actions.githubusercontent.com";
    const SUBJECT: &str = "repo:contoso/payments:environment:prod";
    const NAME: &str = "nhi-assure-jit-APR-AZ-JIT";
    let home = FakeTenant::start(Tenant::demo()).await.expect("fake");
    let other = FakeTenant::start(Tenant::synthetic(3)).await.expect("fake");
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = setup(&home, dir.path());
    let text = std::fs::read_to_string(&cfg).expect("read")
        + &other.source_toml("azure-other", SECRET_ENV);
    std::fs::write(&cfg, text).expect("write");
    let jit = |revoked: Option<String>, later: String| {
        format!(
            r#"approvals:
  - id: APR-AZ-JIT
    subject: "{app}"
    role: "{appid}"
    issue_to: {{issuer: "{ISSUER}", subject: "{SUBJECT}"}}
    scope: {{actions: ["microsoft.graph/user.read.all"]}}
    requester: priya.nair@contoso.com
    approver: tom.becker@contoso.com
    approved_at: {a}
    expires_at: {e}
{revoked}  - id: APR-AZ-LATER
    subject: "{app}"
    role: "{appid}"
    issue_to: {{issuer: "{ISSUER}", subject: "repo:contoso/payments:environment:staging"}}
    scope: {{actions: ["microsoft.graph/user.read.all"]}}
    requester: priya.nair@contoso.com
    approver: tom.becker@contoso.com
    approved_at: {a}
    starts_at: {later}
    expires_at: {e}
"#,
            app = ids::APP_PAYMENTS,
            appid = ids::APPID_PAYMENTS,
            a = day(-1),
            e = day(2),
            revoked = revoked
                .map(|r| format!("    revoked_at: {r}\n"))
                .unwrap_or_default(),
        )
    };
    let jit_file = dir.path().join("approvals/jit.yaml");
    std::fs::write(&jit_file, jit(None, day(1))).expect("jit approvals");
    let fics = |t: &FakeTenant| -> Vec<serde_json::Value> {
        t.tenant().fics.values().flatten().cloned().collect()
    };
    let ours = |t: &FakeTenant| -> Vec<serde_json::Value> {
        fics(t)
            .into_iter()
            .filter(|f| {
                f["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("nhi-assure-jit-"))
            })
            .collect()
    };
    let before = fics(&home);
    let federation = |rows: &[serde_json::Value]| -> Vec<serde_json::Value> {
        rows.iter()
            .filter(|r| r["rules"] == serde_json::json!(["approval-federation"]))
            .cloned()
            .collect()
    };

    // The dry run shows the step, through the home tenant, and writes nothing.
    let o = run(&["plan", "--config", &cfg, "--format", "json"]).await;
    let planned = federation(&json(&o));
    assert_eq!(planned.len(), 1, "{planned:#?}");
    assert_eq!(planned[0]["operation"], "add_federated_credential");
    assert_eq!(planned[0]["identity_id"], ids::APPID_PAYMENTS);
    assert_eq!(planned[0]["credential_id"], NAME);
    assert_eq!(planned[0]["source"], "azure");
    assert_eq!(planned[0]["status"], "act");
    assert!(home.tenant().writes().is_empty() && other.tenant().writes().is_empty());

    let o = enforce(&cfg).await;
    let done = federation(&listed(&o.stdout));
    assert_eq!(
        done.len(),
        1,
        "{done:#?}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(done[0]["status"], "done", "{done:#?}");
    let added = ours(&home);
    assert_eq!(added.len(), 1, "{added:#?}");
    assert_eq!(added[0]["name"], NAME);
    assert_eq!(added[0]["issuer"], ISSUER);
    assert_eq!(added[0]["subject"], SUBJECT);
    assert_eq!(
        added[0]["audiences"],
        serde_json::json!(["api://AzureADTokenExchange"])
    );
    // Only the one credential was added: the application's own are as
    // they were, the approval not yet started has none, the other tenant
    // saw no write.
    assert_eq!(fics(&home).len(), before.len() + 1);
    assert!(other.tenant().writes().is_empty());
    let posts = home.tenant().writes().len();

    // Again: in force, nothing to do.
    let o = enforce(&cfg).await;
    assert!(federation(&listed(&o.stdout)).is_empty());
    assert_eq!(home.tenant().writes().len(), posts);

    // APR-AZ-JIT revoked as APR-AZ-LATER starts: one removed, the other
    // added, planned first and written by the reconcile only.
    std::fs::write(&jit_file, jit(Some(day(0)), day(0))).expect("revoke");
    let ops = |rows: &[serde_json::Value]| -> Vec<(String, String, String)> {
        rows.iter()
            .map(|r| {
                let text = |k: &str| r[k].as_str().unwrap_or_default().to_string();
                (text("operation"), text("credential_id"), text("status"))
            })
            .collect()
    };
    let want = |status: &str| {
        vec![
            (
                "remove_federated_credential".to_string(),
                NAME.to_string(),
                status.to_string(),
            ),
            (
                "add_federated_credential".to_string(),
                "nhi-assure-jit-APR-AZ-LATER".to_string(),
                status.to_string(),
            ),
        ]
    };
    let o = run(&["plan", "--config", &cfg, "--format", "json"]).await;
    assert_eq!(ops(&federation(&json(&o))), want("act"));
    assert_eq!(home.tenant().writes().len(), posts);
    let o = enforce(&cfg).await;
    assert_eq!(ops(&federation(&listed(&o.stdout))), want("done"));
    let now_ours = ours(&home);
    assert_eq!(now_ours.len(), 1, "{now_ours:#?}");
    assert_eq!(now_ours[0]["name"], "nhi-assure-jit-APR-AZ-LATER");
    assert_eq!(
        now_ours[0]["subject"],
        "repo:contoso/payments:environment:staging"
    );
    assert_eq!(fics(&home).len(), before.len() + 1);
    assert!(other.tenant().writes().is_empty());
}
