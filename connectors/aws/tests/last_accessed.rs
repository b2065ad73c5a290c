//! Service last-accessed data against moto. moto does not implement
//! `GenerateServiceLastAccessedDetails` / `GetServiceLastAccessedDetails`:
//! the fixture's proxy answers them from the scenario's
//! `service_last_accessed` in the IAM API reference's shapes.

use chrono::Utc;
use nhi_aws::moto::Moto;
use nhi_aws::{AwsConfig, AwsRemediator, AwsSource};
use nhi_contract::{
    ActionRequest, Inventory, InventorySource, Operation, Provider, Remediator, Unseen, Usage,
};

const SCENARIO: &str = "last-accessed";

fn config(max_calls: u64) -> AwsConfig {
    let mut c = AwsConfig::named("aws-test");
    c.max_attempts = 3;
    c.initial_backoff_ms = 10;
    c.last_accessed.enabled = true;
    c.last_accessed.max_calls = max_calls;
    c.last_accessed.poll_interval_ms = 10;
    // Pages of one service: every principal with two services pages.
    c.last_accessed.page_size = 1;
    c
}

async fn scan(moto: &Moto, cfg: AwsConfig) -> Inventory {
    let sdk = Moto::sdk_config(&moto.ready.proxy).await;
    AwsSource::with_sdk_config(cfg, sdk)
        .scan()
        .await
        .expect("scan")
}

fn policy(name: &str) -> String {
    format!("arn:aws:iam::123456789012:policy/{name}")
}

/// The last use read for `principal`'s grant of `entitlement`.
fn last_used(inv: &Inventory, principal: &str, entitlement: &str) -> Option<Usage> {
    inv.grants
        .iter()
        .find(|g| g.identity == principal && g.entitlement == entitlement)
        .unwrap_or_else(|| panic!("grant {principal} {entitlement}"))
        .last_used
        .clone()
}

fn days(u: &Option<Usage>) -> i64 {
    let at = u.as_ref().and_then(Usage::last_used_at).expect("used");
    (Utc::now() - at).num_days()
}

fn stats(moto: &Moto) -> (u64, u64) {
    let (_, actions) = moto.proxy_stats().expect("stats");
    let n = |a: &str| actions.get(a).copied().unwrap_or(0);
    (
        n("GenerateServiceLastAccessedDetails"),
        n("GetServiceLastAccessedDetails"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_grant_reads_the_latest_access_among_its_services() {
    let moto = Moto::start(SCENARIO, &[]).expect("fixture");
    let inv = scan(&moto, config(1_000)).await;
    let stale = moto.user("app-stale");
    let s3 = last_used(&inv, &stale, &policy("s3-read"));
    assert!((199..=200).contains(&days(&s3)), "{s3:?}");
    assert!(matches!(&s3, Some(Usage::Used { service: Some(s), .. }) if s == "s3"));
    let dynamo = last_used(&inv, &stale, &policy("dynamo-rw"));
    assert!((4..=5).contains(&days(&dynamo)), "{dynamo:?}");
    assert!((1..=2).contains(&days(&last_used(
        &inv,
        &moto.user("app-used"),
        &policy("s3-read")
    ))));
    assert!((299..=300).contains(&days(&last_used(
        &inv,
        &moto.role("etl"),
        &policy("dynamo-rw")
    ))));
    // Listed, never accessed in the tracking period.
    let never = moto.user("app-never");
    assert_eq!(
        last_used(&inv, &never, &policy("sqs-send")),
        Some(Usage::Never)
    );
    // An inline policy is read like a managed one.
    let inline = last_used(&inv, &never, &format!("{never}#inline/notify"));
    assert!((149..=150).contains(&days(&inline)), "{inline:?}");
    // A group-held policy is read too (the holder's use of its services).
    let grouped = moto.user("app-grouped");
    assert_eq!(
        last_used(&inv, &grouped, &policy("sns-publish")),
        Some(Usage::Never)
    );
    // IAM listed no service of it: not judged, never "never".
    assert_eq!(
        last_used(&inv, &moto.user("app-unlisted"), &policy("sqs-send")),
        Some(Usage::Unknown)
    );
    assert!(!inv
        .coverage
        .gaps
        .iter()
        .any(|g| g.unseen == Unseen::EntitlementUsage));
    // 7 principals hold a policy directly: one job each, one page per
    // service listed (page size 1), at least one get.
    let (generate, get) = stats(&moto);
    assert_eq!(generate, 7);
    assert_eq!(get, 1 + 2 + 2 + 1 + 2 + 1 + 1, "pages");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_by_default_and_not_read_is_none() {
    let moto = Moto::start(SCENARIO, &[]).expect("fixture");
    let mut cfg = config(1_000);
    cfg.last_accessed.enabled = false;
    let inv = scan(&moto, cfg).await;
    assert!(inv.grants.iter().all(|g| g.last_used.is_none()));
    assert_eq!(stats(&moto), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_budget_reads_the_most_privileged_first_and_says_what_it_left() {
    let moto = Moto::start(SCENARIO, &[]).expect("fixture");
    let mut cfg = config(4);
    cfg.last_accessed.page_size = 100;
    let inv = scan(&moto, cfg).await;
    // Write before read, then by ARN: the role etl (dynamo-rw), then
    // app-grouped (sns:Publish through its group), before app-never
    // (sns:Publish inline) and app-stale; every other principal is unknown.
    let read: Vec<String> = inv
        .grants
        .iter()
        .filter(|g| g.last_used.is_some())
        .map(|g| g.identity.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(read, vec![moto.role("etl"), moto.user("app-grouped")]);
    assert_eq!(
        last_used(&inv, &moto.user("app-never"), &policy("sqs-send")),
        None
    );
    let gap = inv
        .coverage
        .gaps
        .iter()
        .find(|g| g.unseen == Unseen::EntitlementUsage)
        .expect("entitlement usage gap");
    assert!(gap.reason.contains("5 of 7 principals"), "{}", gap.reason);
    assert_eq!(stats(&moto), (2, 2), "within 4 calls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polls_draw_on_the_budget_and_an_unfinished_job_is_not_read() {
    // Every job answers IN_PROGRESS once: 3 calls per principal.
    let moto = Moto::start(SCENARIO, &["--proxy-last-accessed-in-progress", "1"]).expect("fixture");
    let mut cfg = config(7);
    cfg.last_accessed.page_size = 100;
    let inv = scan(&moto, cfg).await;
    // Three principals reserved (6 calls), one poll left: one finishes.
    let read = inv
        .grants
        .iter()
        .filter(|g| g.last_used.is_some())
        .map(|g| g.identity.clone())
        .collect::<std::collections::BTreeSet<_>>();
    assert_eq!(read.len(), 1, "{read:?}");
    let (generate, get) = stats(&moto);
    assert_eq!((generate, get), (3, 4));
    assert!(inv
        .coverage
        .gaps
        .iter()
        .any(|g| g.unseen == Unseen::EntitlementUsage && g.reason.contains("6 of 7")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_job_leaves_its_principals_unknown() {
    let moto = Moto::start(
        SCENARIO,
        &[
            "--proxy-fail-action",
            "GenerateServiceLastAccessedDetails=403",
        ],
    )
    .expect("fixture");
    let inv = scan(&moto, config(1_000)).await;
    assert!(inv.grants.iter().all(|g| g.last_used.is_none()));
    assert!(inv
        .coverage
        .gaps
        .iter()
        .any(|g| g.unseen == Unseen::EntitlementUsage && g.reason.contains("7 of 7")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detaching_the_unused_policy_and_undoing_it_read_back_from_moto() {
    let moto = Moto::start(SCENARIO, &[]).expect("fixture");
    let sdk = Moto::sdk_config(&moto.ready.endpoint).await;
    let rem = AwsRemediator::with_sdk_config(&config(1_000), &sdk);
    let stale = moto.user("app-stale");
    let held = |inv: &Inventory| -> Vec<String> {
        let mut v: Vec<String> = inv
            .grants
            .iter()
            .filter(|g| g.identity == stale)
            .map(|g| g.entitlement.clone())
            .collect();
        v.sort();
        v
    };
    let before = scan(&moto, config(1_000)).await;
    assert_eq!(held(&before), vec![policy("dynamo-rw"), policy("s3-read")]);
    let out = rem
        .apply(&ActionRequest {
            operation: Operation::DetachEntitlements,
            provider: Provider::Aws,
            identity_id: stale.clone(),
            credential_id: None,
            credential_kind: None,
            entitlements: vec![policy("s3-read")],
            federated: None,
        })
        .await
        .expect("detach");
    let after = scan(&moto, config(1_000)).await;
    assert_eq!(held(&after), vec![policy("dynamo-rw")], "only s3-read went");
    // Nobody else lost anything.
    let others =
        |inv: &Inventory| -> usize { inv.grants.iter().filter(|g| g.identity != stale).count() };
    assert_eq!(others(&after), others(&before));
    rem.undo(&out.undo.expect("undo data")).await.expect("undo");
    let restored = scan(&moto, config(1_000)).await;
    assert_eq!(held(&restored), held(&before));
}

const MEMBER: &str = "210987654321";

/// Both accounts through their roles, the scanner account's first.
fn two_accounts(moto: &Moto, max_calls: u64) -> AwsConfig {
    let mut c = config(max_calls);
    c.assume_roles = vec![
        nhi_aws::moto::member_role(&moto.ready.account),
        nhi_aws::moto::member_role(MEMBER),
    ];
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_named_principals_in_two_accounts_read_their_own_data() {
    let moto = Moto::start("last-accessed-accounts", &[]).expect("fixture");
    let inv = scan(&moto, two_accounts(&moto, 1_000)).await;
    let here = moto.user("ci-bot");
    let there = here.replace(&moto.ready.account, MEMBER);
    let mine = format!("arn:aws:iam::{}:policy/s3-read", moto.ready.account);
    let theirs = format!("arn:aws:iam::{MEMBER}:policy/s3-read");
    assert!((199..=200).contains(&days(&last_used(&inv, &here, &mine))));
    assert!((0..=1).contains(&days(&last_used(&inv, &there, &theirs))));
    assert_eq!(stats(&moto), (2, 2));

    // One budget for the whole source: the first account read, the second
    // unknown and its account's gap.
    let moto = Moto::start("last-accessed-accounts", &[]).expect("fixture");
    let inv = scan(&moto, two_accounts(&moto, 2)).await;
    assert!(last_used(&inv, &here, &mine).is_some());
    assert_eq!(last_used(&inv, &there, &theirs), None);
    let gaps: Vec<&nhi_contract::Gap> = inv
        .coverage
        .gaps
        .iter()
        .filter(|g| g.unseen == Unseen::EntitlementUsage)
        .collect();
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert!(gaps[0].reason.contains("1 of 1"), "{}", gaps[0].reason);
    assert_eq!(stats(&moto), (1, 1));
}

/// Cost of the reading on a generated account (`NHI_LA_USERS` users, 500 by
/// default, each holding one policy directly): calls and wall time with it
/// off and on. `cargo test -p nhi-aws --test last_accessed -- --ignored
/// --nocapture last_accessed_scale`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn last_accessed_scale() {
    let n: usize = std::env::var("NHI_LA_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let users: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            serde_json::json!({"name": format!("svc-{i}"), "created_days_ago": 400,
                                    "managed_policies": ["custom:s3-read"]})
        })
        .collect();
    let data: serde_json::Map<String, serde_json::Value> = (0..n)
        .map(|i| (format!("svc-{i}"), serde_json::json!({"s3": (i % 300)})))
        .collect();
    let scenario = serde_json::json!({
        "aws_managed_policies": "referenced",
        "policies": [{"name": "s3-read", "document": {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}}],
        "users": users,
        "service_last_accessed": data,
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("scale.json");
    std::fs::write(&path, scenario.to_string()).expect("write");
    let moto = Moto::start(path.to_str().expect("utf8"), &[]).expect("fixture");
    for enabled in [false, true] {
        let (before, _) = moto.proxy_stats().expect("stats");
        let mut cfg = config(1_000_000);
        cfg.last_accessed.enabled = enabled;
        cfg.last_accessed.page_size = 100;
        let t = std::time::Instant::now();
        let inv = scan(&moto, cfg).await;
        let wall = t.elapsed();
        let (after, _) = moto.proxy_stats().expect("stats");
        let read = inv.grants.iter().filter(|g| g.last_used.is_some()).count();
        println!(
            "last_accessed {}: {n} users, {} calls, {:.1} s, {read} grants with a last use",
            if enabled { "on" } else { "off" },
            after - before,
            wall.as_secs_f64()
        );
    }
}
