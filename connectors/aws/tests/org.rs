//! Organisation discovery against moto's Organizations (tests/aws/scenarios/
//! organization.json): accounts listed by the management account, filtered
//! by id, OU and tag, each read through the member role assumed by name;
//! an account whose role cannot be assumed is held by its subjects' id
//! prefix, the rest go on; same-named principals stay apart; the remediator
//! acts only in accounts discovery keeps in scope, through their role.

use std::collections::{BTreeMap, BTreeSet};

use nhi_aws::moto::aws_sdk_iam::types::StatusType;
use nhi_aws::moto::Moto;
use nhi_aws::{AwsConfig, AwsRemediator, AwsSource, OrganizationConfig};
use nhi_contract::{
    ActionRequest, CredentialKind, Inventory, InventorySource, Operation, Provider, Remediator,
    SourceError, Unseen,
};

const MGMT: &str = "123456789012";
const PROD: &str = "210987654321";
const DEV: &str = "222233334444";
const SANDBOX: &str = "333344445555";
const LEGACY: &str = "444455556666";
const CLOSED: &str = "555566667777";

fn config(org: OrganizationConfig) -> AwsConfig {
    let mut c = AwsConfig::named("aws-org");
    c.max_attempts = 2;
    c.initial_backoff_ms = 10;
    c.organization = Some(Box::new(org));
    c
}

fn member_role() -> OrganizationConfig {
    OrganizationConfig::with_role("nhi-assure-member")
}

async fn scan(moto: &Moto, cfg: AwsConfig) -> Result<Inventory, SourceError> {
    let sdk = Moto::sdk_config(&moto.ready.proxy).await;
    AwsSource::with_sdk_config(cfg, sdk).scan().await
}

fn accounts(inv: &Inventory) -> BTreeSet<String> {
    inv.identities.iter().map(|i| i.account.clone()).collect()
}

fn unread(inv: &Inventory) -> Vec<(Option<String>, Option<String>)> {
    inv.coverage
        .gaps
        .iter()
        .filter_map(|g| match &g.unseen {
            Unseen::Account { via_role, subjects } => Some((via_role.clone(), subjects.clone())),
            _ => None,
        })
        .collect()
}

fn role_in(account: &str) -> String {
    format!("arn:aws:iam::{account}:role/nhi-assure-member")
}

fn count(actions: &BTreeMap<String, u64>, op: &str) -> u64 {
    actions.get(op).copied().unwrap_or(0)
}

/// Every active account is read through its member role; the one whose
/// role cannot be assumed is an account gap naming its subjects' prefix
/// (so only they are held); the suspended account is not read at all.
/// Three users named `ci-bot` in three accounts stay three identities, each
/// with its own key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_reads_every_active_account_and_holds_the_unassumable_one() {
    let moto = Moto::start("organization", &[]).expect("fixture");
    let inv = scan(&moto, config(member_role())).await.expect("scan");
    assert_eq!(
        accounts(&inv),
        [MGMT, PROD, DEV, SANDBOX]
            .into_iter()
            .map(String::from)
            .collect(),
        "every active account but the unassumable one is read; the suspended one is not"
    );
    assert_eq!(
        unread(&inv),
        vec![(
            Some(role_in(LEGACY)),
            Some(format!("arn:aws:iam::{LEGACY}:"))
        )]
    );
    let gap = inv
        .coverage
        .gaps
        .iter()
        .find(|g| matches!(g.unseen, Unseen::Account { .. }))
        .expect("gap");
    assert!(
        gap.reason.contains("AccessDenied") || gap.reason.contains("not authorized"),
        "{gap}"
    );
    assert!(!inv.identities.iter().any(|i| i.account == CLOSED));

    // Same names, different accounts: each ci-bot keeps its own key.
    for (account, key) in [
        (MGMT, "mgmt-ci-bot-key"),
        (PROD, "prod-ci-bot-key"),
        (DEV, "dev-ci-bot-key"),
    ] {
        let arn = format!("arn:aws:iam::{account}:user/ci-bot");
        let keys: Vec<&str> = inv
            .credentials
            .iter()
            .filter(|c| c.identity == arn && c.kind == CredentialKind::AccessKey)
            .map(|c| c.id.as_str())
            .collect();
        assert_eq!(keys, vec![moto.key(key).as_str()], "{arn}");
    }
    // ListAccounts once; no OU or tag calls without such filters.
    let (_, actions) = moto.proxy_stats().expect("stats");
    assert_eq!(count(&actions, "ListAccounts"), 1, "{actions:?}");
    assert_eq!(count(&actions, "ListParents"), 0, "{actions:?}");
    assert_eq!(count(&actions, "ListTagsForResource"), 0, "{actions:?}");
    assert_eq!(
        count(&actions, "GetAccountAuthorizationDetails"),
        4,
        "{actions:?}"
    );
}

/// A role trusting an account of the organisation — even one not read (the
/// suspended one) — trusts inside the estate; a role trusting an account
/// outside the organisation trusts a third party.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_account_of_the_organisation_is_inside_the_estate() {
    let moto = Moto::start("organization", &[]).expect("fixture");
    let inv = scan(&moto, config(member_role())).await.expect("scan");
    let outside = |role: &str, account: &str| {
        let id = format!("arn:aws:iam::{PROD}:role/{role}#trust/{account}");
        inv.credentials
            .iter()
            .find(|c| c.id == id)
            .and_then(|c| c.federation.as_ref())
            .and_then(|f| f.outside_estate)
    };
    assert_eq!(outside("vendor-audit", "999988887777"), Some(true));
    assert_eq!(outside("sandbox-deployer", CLOSED), Some(false));
}

/// Filters: by OU (nested OUs included), by id, by tag; the per-account
/// calls are made only for accounts still in scope.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_are_filtered_by_ou_id_and_tag() {
    let moto = Moto::start("organization", &[]).expect("fixture");
    let org = moto.ready.organization.clone().expect("organization");

    // Under Workloads (Prod is inside it), the unassumable one excluded.
    let mut o = member_role();
    o.include_ous = vec![org.ous["Workloads"].clone()];
    o.exclude_accounts = vec![LEGACY.into()];
    let inv = scan(&moto, config(o)).await.expect("scan");
    assert_eq!(
        accounts(&inv),
        [PROD, DEV].into_iter().map(String::from).collect()
    );
    assert!(unread(&inv).is_empty(), "an excluded account is not a gap");
    // One ListParents per candidate account (4: the closed one and the
    // excluded one are never asked about) and one per OU on the way up (3).
    let (_, actions) = moto.proxy_stats().expect("stats");
    assert_eq!(count(&actions, "ListParents"), 4 + 3, "{actions:?}");
    assert_eq!(count(&actions, "ListTagsForResource"), 0, "{actions:?}");

    // env=prod: prod-payments and legacy (unassumable, so held); the
    // Sandbox OU excluded on top changes nothing for them.
    let mut o = member_role();
    o.include_tags = [("env".to_string(), "prod".to_string())].into();
    o.exclude_ous = vec![org.ous["Sandbox"].clone()];
    let inv = scan(&moto, config(o)).await.expect("scan");
    assert_eq!(
        accounts(&inv),
        [PROD].into_iter().map(String::from).collect()
    );
    assert_eq!(unread(&inv).len(), 1);
    // Tags asked only of the accounts the OU filter kept (all but the
    // Sandbox one and the closed one): 4; parents of the 5 active accounts
    // and the 3 OUs again (a new scan, a new discovery).
    let (_, actions) = moto.proxy_stats().expect("stats");
    assert_eq!(count(&actions, "ListTagsForResource"), 4, "{actions:?}");
    assert_eq!(count(&actions, "ListParents"), 7 + 5 + 3, "{actions:?}");

    // Everything but the management account, by id.
    let mut o = member_role();
    o.exclude_accounts = vec![MGMT.into(), LEGACY.into()];
    o.include_accounts = vec![MGMT.into(), PROD.into(), SANDBOX.into()];
    let inv = scan(&moto, config(o)).await.expect("scan");
    assert_eq!(
        accounts(&inv),
        [PROD, SANDBOX].into_iter().map(String::from).collect()
    );
}

/// Nothing in scope, no organisation, every account unassumable: the source
/// is unknown (an error), never an empty estate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discovery_that_cannot_see_is_an_error_never_an_empty_estate() {
    let moto = Moto::start("organization", &[]).expect("fixture");
    let mut o = member_role();
    o.include_accounts = vec![CLOSED.into()];
    let e = scan(&moto, config(o)).await.expect_err("suspended only");
    assert!(e.to_string().contains("matches the filters"), "{e}");

    let mut o = member_role();
    o.include_accounts = vec![LEGACY.into()];
    let e = scan(&moto, config(o)).await.expect_err("unassumable only");
    assert!(
        matches!(e, SourceError::Auth(_) | SourceError::Unavailable(_)),
        "{e}"
    );

    let plain = Moto::start("same-name", &[]).expect("fixture");
    let e = scan(&plain, config(member_role()))
        .await
        .expect_err("no organisation");
    assert!(e.to_string().contains("ListAccounts"), "{e}");
}

/// The remediator binds a target to the member role of its account as
/// discovered: it disables the prod ci-bot's key and nothing of the other
/// ci-bots; it refuses a target in an account discovery leaves out of
/// scope, with no call in that account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_remediator_acts_in_the_discovered_account_through_its_role_only() {
    let moto = Moto::start("organization", &[]).expect("fixture");
    let mut o = member_role();
    o.exclude_accounts = vec![DEV.into()];
    let cfg = config(o);
    let sdk = Moto::sdk_config(&moto.ready.proxy).await;
    let rem = AwsRemediator::with_sdk_config(&cfg, &sdk);
    let request = |account: &str, key: &str| ActionRequest {
        provider: Provider::Aws,
        identity_id: format!("arn:aws:iam::{account}:user/ci-bot"),
        credential_id: Some(moto.key(key)),
        credential_kind: Some(CredentialKind::AccessKey),
        operation: Operation::DisableCredential,
        entitlements: Vec::new(),
        federated: None,
    };
    let out = rem
        .apply(&request(PROD, "prod-ci-bot-key"))
        .await
        .expect("disable in prod");
    assert!(
        out.via
            .as_deref()
            .is_some_and(|v| v.contains(PROD) && v.contains(&role_in(PROD))),
        "{:?}",
        out.via
    );
    let refused = rem
        .apply(&request(DEV, "dev-ci-bot-key"))
        .await
        .expect_err("dev is out of scope");
    assert!(
        refused
            .to_string()
            .contains("not among the organisation accounts"),
        "{refused}"
    );

    for (account, key, want) in [
        (PROD, "prod-ci-bot-key", StatusType::Inactive),
        (MGMT, "mgmt-ci-bot-key", StatusType::Active),
        (DEV, "dev-ci-bot-key", StatusType::Active),
    ] {
        let client = moto.account_client(account).await;
        let keys = client
            .list_access_keys()
            .user_name("ci-bot")
            .send()
            .await
            .expect("list");
        let k = keys
            .access_key_metadata()
            .iter()
            .find(|k| k.access_key_id() == Some(moto.key(key).as_str()))
            .expect("key");
        assert_eq!(k.status(), Some(&want), "{account}");
    }
}
