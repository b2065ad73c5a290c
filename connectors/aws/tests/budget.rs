//! The inventory's request budget, counted by the fixture's proxy: the
//! credential report decides which per-user calls are needed, and what it
//! cannot say for sure is asked, never guessed.

use std::collections::BTreeMap;

use nhi_aws::moto::Moto;
use nhi_aws::{AwsConfig, AwsSource};
use nhi_contract::{Credential, CredentialKind, Inventory, InventorySource, Unseen, Usage};

/// `max_attempts`: moto answers ListServiceSpecificCredentials with a 500,
/// retried this many times.
const ATTEMPTS: u64 = 3;

fn config() -> AwsConfig {
    let mut c = AwsConfig::named("aws-budget");
    c.max_attempts = ATTEMPTS as u32;
    c.initial_backoff_ms = 10;
    c
}

async fn scan_via(endpoint: &str) -> Inventory {
    let sdk = Moto::sdk_config(endpoint).await;
    AwsSource::with_sdk_config(config(), sdk)
        .scan()
        .await
        .expect("scan")
}

fn count(actions: &BTreeMap<String, u64>, op: &str) -> u64 {
    actions.get(op).copied().unwrap_or(0)
}

/// The budget scenario changed by `patch`, written to `dir`; its path.
fn budget_with(dir: &std::path::Path, patch: impl FnOnce(&mut serde_json::Value)) -> String {
    let base = nhi_aws::moto::fixture_dir().join("scenarios/budget.json");
    let mut s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(base).expect("scenario")).expect("json");
    patch(&mut s);
    let path = dir.join("budget-variant.json");
    std::fs::write(&path, s.to_string()).expect("write scenario");
    path.to_str().expect("utf8").to_string()
}

fn has_gap(inv: &Inventory, unseen: Unseen) -> bool {
    inv.coverage.gaps.iter().any(|g| g.unseen == unseen)
}

/// Users with keys cost 2 requests (ListAccessKeys, ListSSHPublicKeys),
/// users without 1; a certificate listing only where the report shows one;
/// GetAccessKeyLastUsed only for the keys whose report slot is ambiguous
/// (two keys created in the same second) or incomplete (moto writes no
/// service or region for a used key); per account, the authorization
/// details, the report and one account-wide service-credential listing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_per_user_follow_the_credential_report() {
    let moto = Moto::start("budget", &[]).expect("fixture");
    let inv = scan_via(&moto.ready.proxy).await;
    let (total, actions) = moto.proxy_stats().expect("stats");

    let users = 9 + 20;
    let with_keys = 5 + 20;
    assert_eq!(count(&actions, "ListAccessKeys"), with_keys, "{actions:?}");
    assert_eq!(count(&actions, "ListSSHPublicKeys"), users, "{actions:?}");
    assert_eq!(count(&actions, "ListSigningCertificates"), 1, "{actions:?}");
    // same-second ×2 (ambiguous), used-key ×1 (incomplete on moto).
    assert_eq!(count(&actions, "GetAccessKeyLastUsed"), 3, "{actions:?}");
    assert_eq!(count(&actions, "GetLoginProfile"), 0, "{actions:?}");
    // Per account: one listing of every user's service credentials (a 500
    // from moto, retried, then a gap as before).
    assert_eq!(
        count(&actions, "ListServiceSpecificCredentials"),
        ATTEMPTS,
        "{actions:?}"
    );
    assert_eq!(count(&actions, "GetAccountAuthorizationDetails"), 1);
    assert_eq!(
        count(&actions, "GenerateCredentialReport"),
        2,
        "STARTED, COMPLETE"
    );
    assert_eq!(count(&actions, "GetCredentialReport"), 1);
    // 7 per account; per user 58: 2 for each of the 20 bulk users (a key,
    // never used), 18 for the 9 named ones.
    let per_account = 1 + 2 + 1 + ATTEMPTS;
    assert_eq!(total, per_account + 2 * 20 + 18, "{actions:?}");
    assert!(has_gap(
        &inv,
        Unseen::Credentials {
            kind: CredentialKind::Token
        }
    ));

    // And everything is read: each key with the last use it really has.
    let key = |name: &str| -> &Credential {
        let id = moto.key(name);
        inv.credentials
            .iter()
            .find(|c| c.id == id)
            .unwrap_or_else(|| panic!("key {name}"))
    };
    assert_eq!(key("same-second-0").usage, Usage::Never);
    assert!(
        matches!(&key("same-second-1").usage, Usage::Used { service: Some(s), .. } if s == "s3"),
        "{:?}",
        key("same-second-1").usage
    );
    assert!(matches!(&key("used-key-0").usage, Usage::Used { service: Some(s), .. } if s == "sts"));
    assert_eq!(key("one-key-0").usage, Usage::Never);
    assert!(!key("inactive-key-0").active);
    let of = |user: &str, kind: CredentialKind| {
        inv.credentials
            .iter()
            .filter(|c| c.identity == moto.user(user) && c.kind == kind)
            .count()
    };
    assert_eq!(of("cert-only", CredentialKind::Certificate), 2);
    assert_eq!(of("ssh-only", CredentialKind::SshKey), 1);
    assert_eq!(of("two-keys", CredentialKind::AccessKey), 2);
    assert_eq!(of("no-keys", CredentialKind::AccessKey), 0);
}

/// With a report shaped as AWS writes it (a used key's region and service,
/// which moto leaves out), a used key's last use comes from it too: only
/// the two keys created in the same second are asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_with_service_and_region_answers_for_used_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = budget_with(dir.path(), |s| s["credential_report"] = "aws".into());
    let moto = Moto::start(&scenario, &[]).expect("fixture");
    let inv = scan_via(&moto.ready.proxy).await;
    let (total, actions) = moto.proxy_stats().expect("stats");
    assert_eq!(count(&actions, "GetAccessKeyLastUsed"), 2, "{actions:?}");
    assert_eq!(total, 1 + 2 + 1 + ATTEMPTS + 2 * 20 + 17, "{actions:?}");
    let id = moto.key("used-key-0");
    let used = inv
        .credentials
        .iter()
        .find(|c| c.id == id)
        .expect("used-key-0");
    assert!(
        matches!(&used.usage, Usage::Used { service: Some(s), region: Some(r), .. }
            if s == "sts" && r == "us-east-1"),
        "{:?}",
        used.usage
    );
}

/// The same moto read twice: through the proxy with the credential report
/// refused (every per-user call, as before the report was used) and
/// straight from moto with it. The credentials are the same, field by field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_the_same_with_and_without_the_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let aws_shaped = budget_with(dir.path(), |s| s["credential_report"] = "aws".into());
    for scenario in ["budget", "smoke", aws_shaped.as_str()] {
        let moto = Moto::start(
            scenario,
            &["--proxy-fail-action", "GetCredentialReport=403"],
        )
        .expect("fixture");
        let mut without = scan_via(&moto.ready.proxy).await;
        let (_, actions) = moto.proxy_stats().expect("stats");
        assert!(has_gap(&without, Unseen::CredentialReport));
        let mut with = scan_via(&moto.ready.endpoint).await;
        assert!(!has_gap(&with, Unseen::CredentialReport));

        // Without the report: every listing for every user, each key asked.
        let users = without
            .identities
            .iter()
            .filter(|i| i.kind == nhi_contract::IdentityKind::User)
            .count() as u64;
        let keys = without
            .credentials
            .iter()
            .filter(|c| c.kind == CredentialKind::AccessKey)
            .count() as u64;
        for op in [
            "ListAccessKeys",
            "ListSSHPublicKeys",
            "ListSigningCertificates",
            "GetLoginProfile",
        ] {
            assert_eq!(count(&actions, op), users, "{scenario} {op}: {actions:?}");
        }
        assert_eq!(count(&actions, "GetAccessKeyLastUsed"), keys, "{scenario}");

        // The report adds the root's key slot (smoke) and nothing else.
        with.credentials.retain(|c| !c.id.contains(":root:"));
        for inv in [&mut with, &mut without] {
            inv.credentials.sort_by(|a, b| a.id.cmp(&b.id));
        }
        assert!(!with.credentials.is_empty());
        assert_eq!(with.credentials, without.credentials, "{scenario}");
    }
}

/// An endpoint that refuses `AllUsers` (a 4xx) but may accept per-user
/// calls: the first user probes them; refused too, the kind is a gap and
/// no other user is asked. A 5xx (moto) is a gap at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_credentials_fall_back_per_user_when_all_users_is_refused() {
    let moto = Moto::start(
        "budget",
        &[
            "--proxy-fail-action",
            "ListServiceSpecificCredentials=400:ValidationError",
        ],
    )
    .expect("fixture");
    let inv = scan_via(&moto.ready.proxy).await;
    let (_, actions) = moto.proxy_stats().expect("stats");
    assert_eq!(
        count(&actions, "ListServiceSpecificCredentials"),
        2,
        "all users once, then one user: {actions:?}"
    );
    assert!(has_gap(
        &inv,
        Unseen::Credentials {
            kind: CredentialKind::Token
        }
    ));
    assert!(inv
        .credentials
        .iter()
        .any(|c| c.id == moto.key("one-key-0")));
}

/// Per account, the same fixed cost (authorization details, report,
/// one service-credential listing, the role assumed), and per user the
/// same budget, whichever account the user is in: the budget scenario in
/// the default account, its named users again (same names) in a member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_account_costs_the_same_fixed_requests() {
    const MEMBER: &str = "210987654321";
    let dir = tempfile::tempdir().expect("tempdir");
    let path = budget_with(dir.path(), |s| {
        let mut member_users = s["users"].clone();
        // Logical key names are unique across accounts.
        for u in member_users.as_array_mut().expect("users") {
            for k in u["keys"].as_array_mut().into_iter().flatten() {
                let name = format!("{}-member", k["name"].as_str().expect("key name"));
                k["name"] = serde_json::Value::String(name);
            }
        }
        s["accounts"] = serde_json::json!({ MEMBER: { "users": member_users } });
    });
    let moto = Moto::start(&path, &[]).expect("fixture");

    let sdk = Moto::sdk_config(&moto.ready.proxy).await;
    let mut cfg = config();
    cfg.assume_roles = vec![
        format!("arn:aws:iam::{}:role/scanner", moto.ready.account),
        nhi_aws::moto::member_role(MEMBER),
    ];
    let inv = AwsSource::with_sdk_config(cfg, sdk)
        .scan()
        .await
        .expect("scan");
    let (total, actions) = moto.proxy_stats().expect("stats");
    assert!(inv
        .credentials
        .iter()
        .any(|c| c.id == moto.key("same-second-0-member")));

    for (op, per_account) in [
        ("AssumeRole", 1),
        ("GetAccountAuthorizationDetails", 1),
        ("GenerateCredentialReport", 2),
        ("GetCredentialReport", 1),
        ("ListServiceSpecificCredentials", ATTEMPTS),
    ] {
        assert_eq!(count(&actions, op), 2 * per_account, "{op}: {actions:?}");
    }
    // Per user: 58 in the default account (as above), 18 for the same
    // named users in the member.
    assert_eq!(count(&actions, "ListAccessKeys"), 25 + 5, "{actions:?}");
    assert_eq!(count(&actions, "ListSSHPublicKeys"), 29 + 9, "{actions:?}");
    assert_eq!(
        count(&actions, "GetAccessKeyLastUsed"),
        3 + 3,
        "{actions:?}"
    );
    assert_eq!(
        total,
        2 * (1 + 1 + 2 + 1 + ATTEMPTS) + 58 + 18,
        "{actions:?}"
    );
}

/// An account without users lists no service-specific credentials (and so
/// records no gap for them), as when they were listed per user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_without_users_lists_no_user_credentials() {
    let moto = Moto::start("oidc", &[]).expect("fixture");
    let inv = scan_via(&moto.ready.proxy).await;
    let (_, actions) = moto.proxy_stats().expect("stats");
    for op in [
        "ListServiceSpecificCredentials",
        "ListAccessKeys",
        "ListSSHPublicKeys",
    ] {
        assert_eq!(count(&actions, op), 0, "{op}: {actions:?}");
    }
    assert!(inv.coverage.gaps.is_empty(), "{:?}", inv.coverage);
}

/// The budget scenario with 60 more users holding two service-specific
/// credentials each and one inactive on `no-keys`, which the proxy serves
/// in the documented shape (moto does not implement the API).
fn with_service_credentials(dir: &std::path::Path) -> String {
    budget_with(dir, |s| {
        s["bulk_users"] = serde_json::json!({"count": 60, "prefix": "svc-", "keys_per_user": 1});
        let mut creds = vec![serde_json::json!({"name": "no-keys-git", "user": "no-keys",
            "status": "Inactive", "created_days_ago": 9})];
        for i in 0..60 {
            for service in ["codecommit.amazonaws.com", "cassandra.amazonaws.com"] {
                creds.push(serde_json::json!({"name": format!("svc-{i}-{service}"),
                    "user": format!("svc-{i}"), "service": service, "created_days_ago": 1}));
            }
        }
        s["service_specific_credentials"] = serde_json::Value::Array(creds);
    })
}

fn tokens(inv: &Inventory) -> BTreeMap<String, (String, bool)> {
    inv.credentials
        .iter()
        .filter(|c| c.kind == CredentialKind::Token)
        .map(|c| (c.id.clone(), (c.identity.clone(), c.active)))
        .collect()
}

/// Service-specific credentials come from one listing of all users (two
/// pages of 100 here), each attributed to its user; an endpoint that
/// refuses `AllUsers` (403) but answers per user gets every user asked, with
/// the same result and no gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_credentials_of_all_users_in_one_listing_or_per_user() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = with_service_credentials(dir.path());

    let moto = Moto::start(&scenario, &[]).expect("fixture");
    let inv = scan_via(&moto.ready.proxy).await;
    let (_, actions) = moto.proxy_stats().expect("stats");
    assert_eq!(
        count(&actions, "ListServiceSpecificCredentials"),
        2,
        "{actions:?}"
    );
    assert!(inv.coverage.gaps.is_empty(), "{:?}", inv.coverage);
    let all = tokens(&inv);
    assert_eq!(all.len(), 121);
    let git = moto.key("no-keys-git");
    assert_eq!(all.get(&git), Some(&(moto.user("no-keys"), false)));
    let svc = moto.key("svc-59-cassandra.amazonaws.com");
    assert_eq!(all.get(&svc), Some(&(moto.user("svc-59"), true)));
    let users = 9 + 60;
    assert_eq!(count(&actions, "ListSSHPublicKeys"), users);

    let moto = Moto::start(
        &scenario,
        &[
            "--proxy-fail-action",
            "ListServiceSpecificCredentials/AllUsers=403:AccessDenied",
        ],
    )
    .expect("fixture");
    let inv = scan_via(&moto.ready.proxy).await;
    let (_, actions) = moto.proxy_stats().expect("stats");
    assert_eq!(
        count(&actions, "ListServiceSpecificCredentials"),
        1 + users,
        "{actions:?}"
    );
    assert!(inv.coverage.gaps.is_empty(), "{:?}", inv.coverage);
    let per_user = tokens(&inv);
    assert_eq!(per_user.len(), 121);
    // Ids differ between fixtures: compare by logical name.
    assert_eq!(
        per_user.get(&moto.key("no-keys-git")),
        Some(&(moto.user("no-keys"), false))
    );
}
