//! The CLI end to end on the bundled demo estate: exact findings, the JSON
//! contract, exit codes, error reporting, unknown-source handling, secrets.

#[path = "support/cli.rs"]
mod cli_support;
use cli_support::listed;

#[path = "support/demo.rs"]
mod demo_copy;
use demo_copy::demo;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_nhi-assure");

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run nhi-assure")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json_findings(cfg: &Path) -> Vec<serde_json::Value> {
    let o = run(&[
        "scan",
        "--config",
        cfg.to_str().expect("utf8"),
        "--format",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    listed(&o.stdout)
}

const P: &str = "arn:aws:iam::111122223333:";
const D: &str = "arn:aws:iam::444455556666:";
const VENDOR: &str = "8c3f846c-c6a9-42d3-83f8-4c485e5c4176";
const VENDOR_SECRET: &str = "a9cc2ff7-4eaf-4d61-8434-d99c09ff7f0c";
const CRM: &str = "e500bddf-37b0-4307-8f0f-4c3c2052e52b";
const CRM_SECRET: &str = "9ce4aa5f-0b47-42d2-9e05-c9906be994f2";
const LEGACY_CI: &str = "github.com/example-legacy-ci";
const PAT: &str = "classic-pat/credential-authorization/90711234";
const SSH: &str = "ssh-key/48812093";
const HR_SYNC: &str = "dc36fc90-2248-4d70-aca4-a1a9f5b19f71";

/// The demo's findings, worked out from its README's scenario table.
fn expected() -> BTreeSet<(String, String, Option<String>)> {
    let p = |s: &str| format!("{P}{s}");
    let d = |s: &str| format!("{D}{s}");
    let c = |r: &str, i: String, k: &str| (r.to_string(), i, Some(k.to_string()));
    let i = |r: &str, i: String| (r.to_string(), i, None);
    [
        i(
            "approval-self-approved",
            "github.com/apps/codecov@example-org".into(),
        ),
        i(
            "approval-approver-is-assignee",
            "github.com/apps/codecov@example-org".into(),
        ),
        i("approval-emergency-too-long", d("role/incident-responder")),
        i(
            "approval-emergency-still-active",
            p("role/break-glass-admin"),
        ),
        c("credential-unapproved", p("root"), "AKIA5CGGEXZ4PVKDV72S"),
        c(
            "credential-unapproved",
            p("user/fraud-scoring"),
            "AKIA2VVYNUEPRAK2U2UQ",
        ),
        // ServiceNow RITM0010042 approved the migration user until the end
        // of the year; closed complete on 2026-11-16, its approval ended.
        c(
            "approval-expired",
            d("user/s3-migration-tmp"),
            "AKIALNXIVXUK3RAPGQL2",
        ),
        // Jira ACC-214 approves the vendor bridge; its approver is also its
        // assignee.
        i("approval-approver-is-assignee", VENDOR.into()),
        c(
            "approval-expired",
            p("user/invoice-mailer"),
            "AKIA527DVR65XVCRX4WR",
        ),
        c(
            "approval-expired",
            p("user/legacy-sftp-sync"),
            "AKIAMISIKCZ67L7FRCQG",
        ),
        c(
            "approval-expired",
            d("user/partner-feed"),
            "AKIA6OVDLV4JS3KNMQ3D",
        ),
        c("approval-expired", LEGACY_CI.into(), PAT),
        c("approval-expired", LEGACY_CI.into(), SSH),
        c(
            "approval-expiring",
            p("user/ledger-reconciler"),
            "AKIA3ZGU3PTZRVIUPZSQ",
        ),
        c(
            "credential-stale",
            p("user/legacy-sftp-sync"),
            "AKIAMISIKCZ67L7FRCQG",
        ),
        c(
            "credential-stale",
            "8c0a70a7-a845-47f9-953a-5154281fa6f5".into(),
            "7a8d9ccd-7582-429f-bac5-26d3d4381551",
        ),
        c(
            "credential-never-used",
            d("user/marketing-sync"),
            "AKIA6IE7QDLNOXY5PBKS",
        ),
        c("credential-never-used", VENDOR.into(), VENDOR_SECRET),
        c(
            "credential-rotation-overdue",
            p("user/legacy-sftp-sync"),
            "AKIAMISIKCZ67L7FRCQG",
        ),
        c("credential-rotation-overdue", CRM.into(), CRM_SECRET),
        c("credential-rotation-overdue", VENDOR.into(), VENDOR_SECRET),
        c("credential-rotation-overdue", LEGACY_CI.into(), PAT),
        c("credential-rotation-overdue", LEGACY_CI.into(), SSH),
        c(
            "credential-rotation-overdue",
            "github.com/example-org/gitops-config/deploy-keys".into(),
            "deploy-key/88213407",
        ),
        c(
            "secret-long-lived",
            "54a5054c-da2e-4003-9e0e-14ca778e6176".into(),
            "50d00787-862a-43db-851b-ec1ede27387c",
        ),
        c("secret-long-lived", CRM.into(), CRM_SECRET),
        c("secret-long-lived", VENDOR.into(), VENDOR_SECRET),
        c(
            "secret-long-lived",
            "github.com/apps/example-org-release-bot".into(),
            "private-key/SHA256:OUoZfmiAtY2XtEF02inKlzNBwqYFIlPgpBmcJV49wMk",
        ),
        c("secret-long-lived", LEGACY_CI.into(), PAT),
        c(
            "credential-used-outside-scope",
            p("user/backup-agent"),
            "AKIANJGXOBG4V7YBCTKR",
        ),
        // APR-PLT-003 names a role the key's work could be issued from.
        c(
            "credential-standing-issuable",
            p("user/backup-agent"),
            "AKIANJGXOBG4V7YBCTKR",
        ),
        c(
            "credential-root-access-key",
            p("root"),
            "AKIA5CGGEXZ4PVKDV72S",
        ),
        // Expired credentials left in place: Azure secrets and certificates
        // the rotation replaced, a GitHub fine-grained token.
        c(
            "credential-expired-still-present",
            HR_SYNC.into(),
            "221c4e00-3f99-41ee-baf2-7f802dc5fd3d",
        ),
        c(
            "credential-expired-still-present",
            "8c0a70a7-a845-47f9-953a-5154281fa6f5".into(),
            "9fb932d4-f039-4722-96ff-82e389e3995a",
        ),
        c(
            "credential-expired-still-present",
            "5df6f817-b099-4bcf-a0ec-6db25097c040".into(),
            "baa1c6f1-404b-4eaf-962a-01dec28753f8",
        ),
        c(
            "credential-expired-still-present",
            "github.com/example-deploy-bot".into(),
            "fine-grained-pat/2104566",
        ),
        c(
            "credential-expired-still-present",
            CRM.into(),
            "2e8a4c71-0b5d-4f39-9c62-d7a13e85f0b4",
        ),
        c(
            "federated-trust-broad",
            "54a5054c-da2e-4003-9e0e-14ca778e6176".into(),
            "e1f0c2d3-7a4b-4c5d-9e6f-0a1b2c3d4e5f",
        ),
        // The managed identity trusts every repository of the organisation.
        c(
            "federated-trust-broad",
            MI_DEPLOY.into(),
            "6d1f0b3a-92c4-4e7d-a5b8-13f2c9e07d41",
        ),
        i("identity-multiple-active-keys", d("user/etl-loader")),
        i("nhi-human-login", p("user/reporting-bot")),
        i("identity-overscoped", d("user/analytics-export")),
        // Its glue policy unused since March; the group's S3 policy never
        // used, but held through the group: not this rule's to detach.
        i("entitlement-unused", d("user/analytics-export")),
        i("identity-overscoped", HR_SYNC.into()),
        i("identity-overscoped-via-assume", p("user/payments-batch")),
        i("identity-admin-equivalent", p("user/payments-batch")),
        i("identity-admin-equivalent", p("role/payments-processor")),
        i("identity-admin-equivalent", p("role/payments-ops-admin")),
        i("identity-admin-equivalent", p("user/terraform-runner")),
        i("identity-admin-equivalent", p("role/break-glass-admin")),
        i("identity-admin-equivalent", HR_SYNC.into()),
        i(
            "identity-admin-equivalent",
            "5df6f817-b099-4bcf-a0ec-6db25097c040".into(),
        ),
        i("identity-admin-equivalent", LEGACY_CI.into()),
        i("identity-no-owner", p("role/lambda-thumbnailer")),
        // Approved roles whose trusts are still dangerous: a third party's
        // account without an external id, anyone (an external id alone is
        // no restriction); and a role worn by EC2 but idle since May.
        c(
            "trust-external-account-no-external-id",
            p("role/vendor-cost-explorer"),
            &format!("{}#trust/999988887777", p("role/vendor-cost-explorer")),
        ),
        c(
            "trust-public-principal",
            p("role/public-audit-reader"),
            &format!("{}#trust/*", p("role/public-audit-reader")),
        ),
        i("role-unused", p("role/reports-exporter")),
        i("identity-no-owner", d("user/s3-migration-tmp")),
        i("identity-no-owner", VENDOR.into()),
        // A user-assigned managed identity with Owner on the subscription.
        i("identity-admin-equivalent", MI_DEPLOY.into()),
        i("identity-overscoped", MI_DEPLOY.into()),
        // Privileged Authentication Administrator held through a group.
        i("identity-admin-equivalent", HELPDESK.into()),
        i("identity-overscoped", HELPDESK.into()),
    ]
    .into_iter()
    .collect()
}

/// Azure `mi-deploy-automation` (managed identity).
const MI_DEPLOY: &str = "3b9d27c4-5a61-4f0e-b8d2-7c41e6a09f35";
/// Azure `helpdesk-automation`.
const HELPDESK: &str = "a7c2e914-3d58-4b6f-9e21-0f8b5c3d7a62";

fn key_of(f: &serde_json::Value) -> (String, String, Option<String>) {
    (
        f["rule_id"].as_str().expect("rule_id").to_string(),
        f["identity_id"].as_str().expect("identity_id").to_string(),
        f["credential_id"].as_str().map(str::to_string),
    )
}

#[test]
fn demo_scan_finds_exactly_the_expected_findings() {
    let (_d, cfg) = demo();
    let got: BTreeSet<_> = json_findings(&cfg).iter().map(key_of).collect();
    let want = expected();
    let missing: Vec<_> = want.difference(&got).collect();
    let extra: Vec<_> = got.difference(&want).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:#?}\nextra {extra:#?}"
    );
}

#[test]
fn every_builtin_rule_fires_on_the_demo_and_clean_identities_stay_clean() {
    let (_d, cfg) = demo();
    let findings = json_findings(&cfg);
    let rules_out = run(&["rules", "--format", "json"]);
    let rules: Vec<serde_json::Value> =
        serde_json::from_slice(&rules_out.stdout).expect("rules json");
    assert_eq!(rules.len(), 26);
    for r in &rules {
        let id = r["id"].as_str().expect("id");
        assert!(
            findings.iter().any(|f| f["rule_id"] == id),
            "rule {id} never fires on the demo"
        );
    }
    for clean in [
        format!("{P}user/ci-deployer"),
        format!("{D}user/dbt-runner"),
        "ec7ac8ad-1b2b-406b-aae1-2c972399d29d".into(),
        "5e571eaa-66c1-44e7-8859-90d2e844c762".into(),
        "0db317d9-4c8e-4fa3-969a-73bf4c83cf3b".into(),
    ] {
        assert!(
            !findings.iter().any(|f| f["identity_id"] == clean.as_str()),
            "{clean} should be clean"
        );
    }
}

#[test]
fn json_output_is_the_documented_contract() {
    let (_d, cfg) = demo();
    let findings = json_findings(&cfg);
    let fields: BTreeSet<&str> = [
        "rule_id",
        "title",
        "severity",
        "provider",
        "identity_id",
        "credential_id",
        "controls",
        "evidence",
        "recommended_action",
    ]
    .into();
    let frameworks = [
        "OWASP-NHI-2025:",
        "NIST-CSF-2.0:",
        "NIST-800-53r5:",
        "CSA-CCM-4:",
    ];
    for f in &findings {
        let obj = f.as_object().expect("object");
        let mut keys: BTreeSet<&str> = obj.keys().map(String::as_str).collect();
        // Present only on an excepted finding (the demo's EXC-7).
        if keys.remove("exception") {
            assert_eq!(f["exception"]["id"], "EXC-7", "{f}");
        }
        assert_eq!(keys, fields);
        assert!(["info", "low", "medium", "high", "critical"]
            .contains(&f["severity"].as_str().expect("sev")));
        assert!(
            ["flag", "disable", "delete"].contains(&f["recommended_action"].as_str().expect("act"))
        );
        let controls: Vec<&str> = f["controls"]
            .as_array()
            .expect("controls")
            .iter()
            .filter_map(|c| c.as_str())
            .collect();
        for fw in frameworks {
            assert!(
                controls.iter().any(|c| c.starts_with(fw)),
                "{} lacks a {fw} control",
                f["rule_id"]
            );
        }
        assert!(f["evidence"].is_object());
    }
    // The approval considered is part of a credential finding's evidence.
    let expired = findings
        .iter()
        .find(|f| f["rule_id"] == "approval-expired")
        .expect("an expired approval finding");
    assert_eq!(expired["evidence"]["approval"]["state"], "expired");
    assert!(expired["evidence"]["approval"]["id"].is_string());
}

#[test]
fn table_output_is_readable_and_exit_codes_follow_fail_on() {
    let (_d, cfg) = demo();
    let c = cfg.to_str().expect("utf8");
    let o = run(&["scan", "--config", c]);
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    assert!(
        out.contains("SEVERITY") && out.contains("credential-root-access-key"),
        "{out}"
    );
    assert!(stderr(&o).contains("finding(s)"));

    assert_eq!(
        run(&["scan", "--config", c, "--fail-on", "critical"])
            .status
            .code(),
        Some(1)
    );

    // Without the critical rules, --fail-on critical passes and --fail-on high fails.
    let text = std::fs::read_to_string(&cfg).expect("read") + "\n[rules.overrides.credential-root-access-key]\nenabled = false\n[rules.overrides.identity-admin-equivalent]\nenabled = false\n[rules.overrides.trust-public-principal]\nenabled = false\n";
    std::fs::write(&cfg, text).expect("write");
    assert_eq!(
        run(&["scan", "--config", c, "--fail-on", "critical"])
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        run(&["scan", "--config", c, "--fail-on", "high"])
            .status
            .code(),
        Some(1)
    );
}

#[test]
fn csv_output_has_one_row_per_finding() {
    let (_d, cfg) = demo();
    let o = run(&[
        "scan",
        "--config",
        cfg.to_str().expect("utf8"),
        "--format",
        "csv",
    ]);
    assert_eq!(o.status.code(), Some(0));
    let mut r = csv::Reader::from_reader(o.stdout.as_slice());
    assert_eq!(r.records().count(), expected().len());
}

#[test]
fn bad_approval_file_stops_the_run_with_file_and_line() {
    let (dir, cfg) = demo();
    let bad = "approvals:\n  - id: APR-X\n    subject: arn:aws:iam::111122223333:user/ci-deployer\n    scope: {actions: [\"s3:GetObject\"]}\n    requester: a@example.com\n    approver: a@example.com\n    approved_at: 2026-11-01T00:00:00Z\n    expires_at: 2026-12-01T00:00:00Z\n";
    std::fs::write(dir.path().join("approvals/zz-bad.yaml"), bad).expect("write");
    let o = run(&["scan", "--config", cfg.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("zz-bad.yaml:6:"), "{err}");
    assert!(err.contains("separation of duties"), "{err}");
    assert!(
        !dir.path().join("demo-store.db").exists(),
        "nothing happens before validation"
    );
}

#[test]
fn bad_config_and_bad_rule_fail_with_location() {
    let (dir, cfg) = demo();
    let c = cfg.to_str().expect("utf8");
    let text = std::fs::read_to_string(&cfg).expect("read");
    std::fs::write(&cfg, text.replace("as_of =", "as_off =")).expect("write");
    let o = run(&["scan", "--config", c]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("nhi-assure.toml:9:"), "{}", stderr(&o));

    std::fs::write(&cfg, &text).expect("write");
    let rules = dir.path().join("my-rules");
    std::fs::create_dir_all(&rules).expect("mkdir");
    std::fs::write(
        rules.join("x.yaml"),
        "id: x\ntitle: X\ndescription: d\nseverity: low\nsubject: credential\ncondition: credential.agedays > 3\naction: flag\nremediation: r\ncontrols: [\"OWASP-NHI-2025:NHI7\"]\n",
    )
    .expect("write rule");
    let with_rules = text.replace(
        "[rules.params]",
        "[rules]\npaths = [\"my-rules\"]\n\n[rules.params]",
    );
    std::fs::write(&cfg, with_rules).expect("write");
    let o = run(&["scan", "--config", c]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("x.yaml:6:") && err.contains("unknown fact credential.agedays"),
        "{err}"
    );
}

#[test]
fn failed_source_is_unknown_not_empty() {
    let (dir, cfg) = demo();
    let c = cfg.to_str().expect("utf8");
    let first: Vec<_> = json_findings(&cfg);
    let azure = first.iter().filter(|f| f["provider"] == "azure").count();
    assert!(azure > 0);

    // Break the Azure export: the source fails this run.
    std::fs::write(dir.path().join("estate/azure.json"), "{ not json").expect("write");
    let o = run(&["scan", "--config", c, "--format", "json"]);
    // Exit 3: the run could not see everything; the JSON says which source.
    assert_eq!(o.status.code(), Some(3));
    let err = stderr(&o);
    assert!(err.contains("azure-tenant is FAILED"), "{err}");
    assert!(
        err.contains("exit 3") && err.contains("failed: azure-tenant"),
        "{err}"
    );
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(doc["complete"], false);
    let states: Vec<(String, String)> = doc["sources"]
        .as_array()
        .expect("sources")
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or("").to_string(),
                s["state"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert!(
        states.contains(&("azure-tenant".into(), "failed".into())),
        "{states:?}"
    );
    assert!(
        states.iter().filter(|(_, st)| st == "complete").count() >= 2,
        "{states:?}"
    );
    // Accepting a partial run: exit 0, unless --fail-on asks of it.
    let ok = run(&["scan", "--config", c, "--allow-partial"]);
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    let gate = run(&[
        "scan",
        "--config",
        c,
        "--allow-partial",
        "--fail-on",
        "critical",
    ]);
    assert_eq!(gate.status.code(), Some(3), "{}", stderr(&gate));
    let plan = run(&["plan", "--config", c]);
    assert_eq!(plan.status.code(), Some(3));
    assert!(
        err.contains("0 resolved"),
        "no finding may be resolved: {err}"
    );
    let second = listed(&o.stdout);
    assert_eq!(
        second.iter().filter(|f| f["provider"] == "azure").count(),
        0
    );
    // A finding on an approval record itself (ACC-214's approver is its
    // assignee) does not depend on the inventory: it is still reported, its
    // subject now unknown.
    let on_records = second
        .iter()
        .filter(|f| f["provider"].is_null() && f["identity_id"] == VENDOR)
        .count();
    assert_eq!(on_records, 1, "{second:#?}");
    assert_eq!(second.len(), first.len() - azure + on_records);
}

#[test]
fn plan_is_a_dry_run_of_exactly_the_disable_findings() {
    let (_d, cfg) = demo();
    let o = run(&[
        "plan",
        "--config",
        cfg.to_str().expect("utf8"),
        "--format",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let plan = listed(&o.stdout);
    let creds: BTreeSet<&str> = plan
        .iter()
        .filter(|a| a["operation"] == "disable_credential")
        .map(|a| a["credential_id"].as_str().expect("credential"))
        .collect();
    let want: BTreeSet<&str> = [
        "AKIA5CGGEXZ4PVKDV72S",
        "AKIA2VVYNUEPRAK2U2UQ",
        "AKIALNXIVXUK3RAPGQL2",
        VENDOR_SECRET,
        "AKIA527DVR65XVCRX4WR",
        "AKIAMISIKCZ67L7FRCQG",
        "AKIA6OVDLV4JS3KNMQ3D",
        PAT,
        SSH,
        "7a8d9ccd-7582-429f-bac5-26d3d4381551",
        "AKIA6IE7QDLNOXY5PBKS",
        "AKIANJGXOBG4V7YBCTKR",
    ]
    .into();
    assert_eq!(creds, want);
    let logins: Vec<&str> = plan
        .iter()
        .filter(|a| a["operation"] == "remove_login")
        .map(|a| a["identity_id"].as_str().expect("id"))
        .collect();
    assert_eq!(logins, vec![format!("{P}user/reporting-bot").as_str()]);
    // The unused policy is detached, the group's is not.
    let detach: Vec<(&str, &serde_json::Value)> = plan
        .iter()
        .filter(|a| a["operation"] == "detach_entitlements")
        .map(|a| (a["identity_id"].as_str().expect("id"), &a["entitlements"]))
        .collect();
    let glue = serde_json::json!(["arn:aws:iam::444455556666:policy/analytics-glue-catalog-admin"]);
    assert_eq!(
        detach,
        vec![(format!("{D}user/analytics-export").as_str(), &glue)]
    );
    // Expired credentials still present are planned for removal.
    let deletes: BTreeSet<&str> = plan
        .iter()
        .filter(|a| a["operation"] == "delete_credential")
        .map(|a| a["credential_id"].as_str().expect("credential"))
        .collect();
    let expired: BTreeSet<&str> = [
        "221c4e00-3f99-41ee-baf2-7f802dc5fd3d",
        "2e8a4c71-0b5d-4f39-9c62-d7a13e85f0b4",
        "9fb932d4-f039-4722-96ff-82e389e3995a",
        "baa1c6f1-404b-4eaf-962a-01dec28753f8",
        "fine-grained-pat/2104566",
    ]
    .into();
    assert_eq!(deletes, expired);
    assert_eq!(plan.len(), 19);
    for a in &plan {
        let root = a["identity_id"] == format!("{P}root").as_str();
        // The demo's exception EXC-7 accepts marketing-sync's unused key.
        let excepted = a["credential_id"] == "AKIA6IE7QDLNOXY5PBKS";
        assert_eq!(
            a["status"],
            if root || excepted { "skip" } else { "act" },
            "{a}"
        );
    }
}

#[test]
fn secret_values_are_rejected_and_never_echoed() {
    let (dir, cfg) = demo();
    let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    let path = dir.path().join("estate/aws.json");
    let text = std::fs::read_to_string(&path).expect("read");
    let leaked = text.replacen(
        "\"kind\": \"access_key\"",
        &format!("\"kind\": \"access_key\", \"secret_access_key\": \"{secret}\""),
        1,
    );
    assert_ne!(text, leaked, "fixture must contain an access key");
    std::fs::write(&path, leaked).expect("write");
    let o = run(&[
        "-v",
        "scan",
        "--config",
        cfg.to_str().expect("utf8"),
        "--format",
        "json",
    ]);
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(
        err.contains("aws-org is FAILED") && err.contains("unknown field `secret_access_key`"),
        "{err}"
    );
    assert!(!out.contains(secret) && !err.contains(secret));
    let db = std::fs::read(dir.path().join("demo-store.db")).expect("store");
    assert!(!String::from_utf8_lossy(&db).contains(secret));
}

#[test]
fn rules_and_controls_list_the_mappings() {
    let o = run(&["controls", "--format", "json"]);
    assert_eq!(o.status.code(), Some(0));
    let controls: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).expect("json");
    let nhi7 = controls
        .iter()
        .find(|c| c["control"] == "OWASP-NHI-2025:NHI7")
        .expect("NHI7 listed");
    assert_eq!(nhi7["title"], "Long-Lived Secrets");
    assert!(nhi7["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .any(|r| r == "secret-long-lived"));
    let table = stdout(&run(&["rules"]));
    assert!(table.contains("credential-unapproved") && table.contains("CIS-AWS-3.0:1.12"));
}

#[test]
fn audit_verify_holds_on_a_clean_log_and_names_the_tampered_entry() {
    let (dir, cfg) = demo();
    let c = cfg.to_str().expect("utf8");
    assert!(run(&["scan", "--config", c]).status.code().is_some());
    // The config changes between runs: that is an audit entry too.
    let text = std::fs::read_to_string(&cfg).expect("read") + "\n# edited\n";
    std::fs::write(&cfg, text).expect("write");
    assert!(run(&["scan", "--config", c]).status.code().is_some());
    let ok = run(&["audit", "verify", "--config", c]);
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    assert!(
        stdout(&ok).starts_with("audit log intact: "),
        "{}",
        stdout(&ok)
    );
    let list: Vec<serde_json::Value> =
        serde_json::from_slice(&run(&["audit", "list", "--config", c]).stdout).expect("json");
    let configs = list
        .iter()
        .filter(|e| e["kind"] == "config.changed")
        .count();
    assert_eq!(configs, 2, "each distinct config is recorded once");

    // Edit one entry behind the tool's back, through a separate connection.
    let db = dir.path().join("demo-store.db");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&format!("sqlite://{}", db.display()))
            .await
            .expect("open");
        sqlx::query("UPDATE audit SET data = '{}' WHERE seq = 5")
            .execute(&pool)
            .await
            .expect("tamper");
    });
    let bad = run(&["audit", "verify", "--config", c]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stdout(&bad).contains("BROKEN at entry 5") && stdout(&bad).contains("edited"),
        "{}",
        stdout(&bad)
    );
}

/// `rules --test` runs the built-in cases and a pack's `<id>/cases.yaml`,
/// and fails, naming file and line, when a case does not hold.
#[test]
fn rules_test_runs_the_cases_and_names_a_failing_one() {
    let cases_of = |o: &Output| -> usize {
        let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
        doc["cases"].as_u64().expect("cases") as usize
    };
    let o = run(&["rules", "--test", "--format", "json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let builtin = cases_of(&o);
    assert!(builtin >= 50, "{builtin}");

    let (dir, cfg) = demo();
    let c = cfg.to_str().expect("utf8");
    let pack = dir.path().join("my-rules/test-approval-ended");
    std::fs::create_dir_all(&pack).expect("mkdir");
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/rules/test-approval-ended");
    for f in ["rule.yaml", "cases.yaml"] {
        std::fs::copy(data.join(f), pack.join(f)).expect("copy");
    }
    let text = std::fs::read_to_string(&cfg).expect("read");
    let with_pack = text.replace(
        "[rules.params]",
        "[rules]\npaths = [\"my-rules\"]\n\n[rules.params]",
    );
    std::fs::write(&cfg, with_pack).expect("write");
    let o = run(&["rules", "--test", "--config", c, "--format", "json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert_eq!(cases_of(&o), builtin + 1);

    let case = std::fs::read_to_string(pack.join("cases.yaml")).expect("read");
    std::fs::write(pack.join("cases.yaml"), case.replace("now-1h", "now+1h")).expect("write");
    let o = run(&["rules", "--test", "--config", c]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let out = stdout(&o);
    assert!(
        out.contains("test-approval-ended/cases.yaml:9: case \"an expiry an hour ago counts as past\": fires_including: test-approval-ended did not fire on AKIAAAAAAAAAAAAAAAA1")
            && out.trim_end().ends_with(&format!("{} cases, 1 failed", builtin + 1)),
        "{out}"
    );
}
