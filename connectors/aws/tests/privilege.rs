//! AWS privilege analysis against moto: every escalation method and a near
//! miss for each, denies across policies, permissions boundaries, key
//! attribution by ARN, and trust across accounts.

use std::collections::BTreeMap;

use nhi_aws::moto::Moto;
use nhi_aws::{AwsConfig, AwsSource};
use nhi_contract::{Inventory, InventorySource, PrivilegeLevel};

const ACCOUNT_B: &str = "210987654321";

fn config() -> AwsConfig {
    let mut c = AwsConfig::named("aws-test");
    c.max_attempts = 3;
    c.initial_backoff_ms = 10;
    c
}

async fn scan_with(moto: &Moto, cfg: AwsConfig) -> Inventory {
    let sdk = Moto::sdk_config(&moto.ready.proxy).await;
    AwsSource::with_sdk_config(cfg, sdk)
        .scan()
        .await
        .expect("scan")
}

/// The privilege the engine uses for an identity: the connector's
/// whole-identity assessment, else the highest entitlement it holds.
fn level(inv: &Inventory, id: &str) -> PrivilegeLevel {
    let ident = inv
        .identities
        .iter()
        .find(|i| i.id == id)
        .unwrap_or_else(|| panic!("identity {id}"));
    ident.privilege.unwrap_or_else(|| {
        inv.grants
            .iter()
            .filter(|g| g.identity == id)
            .filter_map(|g| inv.entitlements.iter().find(|e| e.id == g.entitlement))
            .map(|e| e.privilege)
            .max()
            .unwrap_or_default()
    })
}

fn reason<'a>(inv: &'a Inventory, id: &str) -> &'a str {
    inv.identities
        .iter()
        .find(|i| i.id == id)
        .and_then(|i| i.privilege_reason.as_deref())
        .unwrap_or("")
}

/// Scenario principals whose name starts with `prefix`, by ARN.
fn named(moto: &Moto, prefix: &str) -> BTreeMap<String, String> {
    moto.ready
        .users
        .iter()
        .chain(&moto.ready.roles)
        .filter(|(name, _)| name.starts_with(prefix))
        .map(|(name, arn)| (name.clone(), arn.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_escalation_method_is_admin_and_every_near_miss_is_not() {
    let moto = Moto::start("privilege", &[]).expect("fixture");
    let inv = scan_with(&moto, config()).await;

    let positives = named(&moto, "p-");
    let negatives = named(&moto, "n-");
    assert!(positives.len() >= 30 && negatives.len() >= 40);
    let mut wrong = Vec::new();
    for (name, arn) in &positives {
        if level(&inv, arn) != PrivilegeLevel::Admin {
            wrong.push(format!("{name}: {:?}, want admin", level(&inv, arn)));
        }
    }
    for (name, arn) in &negatives {
        if level(&inv, arn) == PrivilegeLevel::Admin {
            wrong.push(format!("{name}: admin ({})", reason(&inv, arn)));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");

    // The finding can say which method: the resource-pattern cases the
    // issue reproduced, by name.
    for (name, method) in [
        ("p-full-access", "*:* on every resource"),
        ("p-add-user-to-admin-group", "iam:AddUserToGroup"),
        ("p-attach-user-policy", "iam:AttachUserPolicy"),
        ("p-create-access-key", "iam:CreateAccessKey"),
        ("p-put-user-policy", "iam:PutUserPolicy"),
        ("p-create-policy-version-held", "iam:CreatePolicyVersion"),
        ("p-passrole-ec2", "iam:PassRole + ec2:RunInstances"),
        (
            "p-delete-user-permissions-boundary",
            "iam:DeleteUserPermissionsBoundary",
        ),
    ] {
        assert_eq!(
            reason(&inv, &positives[name]),
            format!("admin-equivalent via {method}"),
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_of_the_table_has_a_principal_it_makes_admin() {
    let moto = Moto::start("privilege", &[]).expect("fixture");
    let inv = scan_with(&moto, config()).await;
    let reasons: Vec<&str> = named(&moto, "p-")
        .values()
        .map(|arn| reason(&inv, arn))
        .collect();
    for m in nhi_aws::policy::METHODS {
        let want = format!("admin-equivalent via {}", m.name);
        assert!(
            reasons.iter().any(|r| *r == want),
            "no p-* principal is admin through {:?}",
            m.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denies_across_policies_and_boundaries_limit_privilege() {
    let moto = Moto::start("privilege", &[]).expect("fixture");
    let inv = scan_with(&moto, config()).await;
    let user = |n: &str| moto.user(n);
    let role = |n: &str| moto.role(n);

    // AdministratorAccess through a group, every IAM resource denied inline.
    assert_eq!(level(&inv, &user("deny-across")), PrivilegeLevel::Write);
    // A deny elsewhere leaves the escalation paths open.
    assert_eq!(level(&inv, &user("deny-elsewhere")), PrivilegeLevel::Admin);

    // Same policy, boundary s3:* only: write, not admin.
    assert_eq!(level(&inv, &role("bounded-admin")), PrivilegeLevel::Write);
    assert_eq!(level(&inv, &role("unbounded-admin")), PrivilegeLevel::Admin);
    assert_eq!(level(&inv, &role("bounded-open")), PrivilegeLevel::Admin);
    // The entitlement itself is still what it is on its own.
    let admin_access = inv
        .entitlements
        .iter()
        .find(|e| e.id == "arn:aws:iam::aws:policy/AdministratorAccess")
        .expect("AdministratorAccess");
    assert_eq!(admin_access.privilege, PrivilegeLevel::Admin);

    // iam:PassRole in one policy, Lambda in another: harmless apart,
    // admin together.
    let split = user("split-passrole-lambda");
    assert_eq!(level(&inv, &split), PrivilegeLevel::Admin);
    assert!(
        reason(&inv, &split).contains("lambda:CreateFunction"),
        "{}",
        reason(&inv, &split)
    );
    for p in ["pass-roles", "run-lambda"] {
        let id = format!("arn:aws:iam::{}:policy/{p}", moto.ready.account);
        let e = inv
            .entitlements
            .iter()
            .find(|e| e.id == id)
            .unwrap_or_else(|| panic!("{id}"));
        assert_eq!(e.privilege, PrivilegeLevel::Write, "{p}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_go_to_the_user_never_to_a_same_named_role() {
    // Roles are listed on the first page, users on the second.
    let moto = Moto::start("same-name", &["--proxy-gaad-roles-first"]).expect("fixture");
    let inv = scan_with(&moto, config()).await;
    for (name, key) in [("deploy", "deploy-key"), ("other", "other-key")] {
        let id = moto.key(key);
        let owners: Vec<&str> = inv
            .credentials
            .iter()
            .filter(|c| c.id == id)
            .map(|c| c.identity.as_str())
            .collect();
        assert_eq!(owners, vec![moto.user(name).as_str()], "{key}");
        assert!(
            !inv.credentials
                .iter()
                .any(|c| c.identity == moto.role(name)),
            "role {name} holds no key"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_account_trust_needs_both_sides_and_follows_account_roots() {
    let moto = Moto::start("accounts", &[]).expect("fixture");
    let a = moto.ready.account.clone();
    let mut cfg = config();
    cfg.assume_roles = vec![
        format!("arn:aws:iam::{a}:role/scanner"),
        format!("arn:aws:iam::{ACCOUNT_B}:role/scanner"),
    ];
    let inv = scan_with(&moto, cfg).await;
    let b_user = |n: &str| format!("arn:aws:iam::{ACCOUNT_B}:user/{n}");
    assert!(
        inv.identities.iter().any(|i| i.id == b_user("ops")),
        "account B read"
    );
    let has = |from: &str, to: &str| inv.trusts.iter().any(|t| t.from == from && t.to == to);
    let org_admin = moto.role("org-admin");
    let named_cross = moto.role("named-cross");

    // Trust to B's root, followed to the B principals allowed to assume it.
    assert!(has(&b_user("ops"), &org_admin), "{:#?}", inv.trusts);
    assert!(
        !has(&b_user("dev"), &org_admin),
        "dev has no sts:AssumeRole"
    );
    assert!(
        !has(&b_user("denied-ops"), &org_admin),
        "explicit deny on the role"
    );
    // B is read: its root is followed, not recorded as a principal.
    assert!(!has(&format!("arn:aws:iam::{ACCOUNT_B}:root"), &org_admin));

    // Named in the trust policy, but across accounts the principal's own
    // permission is needed too.
    assert!(has(&b_user("ops"), &named_cross));
    assert!(!has(&b_user("dev"), &named_cross), "{:#?}", inv.trusts);

    // Accounts not read: recorded as the trust policy says, account roots.
    let partner = moto.role("partner");
    assert!(has("arn:aws:iam::999999999999:root", &partner));
    assert!(has("arn:aws:iam::888888888888:root", &partner));
    assert!(!inv
        .identities
        .iter()
        .any(|i| i.id.contains("999999999999") || i.id.contains("888888888888")));

    // The same trusts as federated credentials: B is read, so ours; the
    // partner's accounts are not. The scanner roles trust their own
    // account, or A, which is read.
    let outside = |role: &str, account: &str| {
        inv.credentials
            .iter()
            .find(|c| c.id == format!("{role}#trust/{account}"))
            .and_then(|c| c.federation.as_ref())
            .and_then(|f| f.outside_estate)
    };
    assert_eq!(outside(&org_admin, ACCOUNT_B), Some(false));
    assert_eq!(outside(&named_cross, ACCOUNT_B), Some(false));
    assert_eq!(outside(&partner, "999999999999"), Some(true));
    assert_eq!(outside(&partner, "888888888888"), Some(true));
    let b_scanner = format!("arn:aws:iam::{ACCOUNT_B}:role/scanner");
    assert_eq!(outside(&b_scanner, &a), Some(false));
    assert_eq!(outside(&moto.role("scanner"), &a), None, "own account");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taking_over_one_named_principal_is_a_trust_edge_to_it() {
    let moto = Moto::start("privilege", &[]).expect("fixture");
    let inv = scan_with(&moto, config()).await;
    let has = |from: &str, to: &str| {
        inv.trusts
            .iter()
            .any(|t| t.from == moto.user(from) && t.to == to)
    };
    let admin_user = moto.user("admin-user");
    let admin_role = moto.role("unbounded-admin");
    assert_eq!(level(&inv, &admin_user), PrivilegeLevel::Admin);
    assert!(has("t-key-of-admin", &admin_user), "{:#?}", inv.trusts);
    assert!(has("t-pass-admin-ec2", &admin_role));
    assert!(has("t-trust-of-admin", &admin_role));
    assert!(
        !has("t-pass-admin-only", &admin_role),
        "iam:PassRole without a service to run code"
    );
    // Not admin by themselves: through the edge, to what they reach.
    for u in ["t-key-of-admin", "t-pass-admin-ec2", "t-trust-of-admin"] {
        assert_eq!(level(&inv, &moto.user(u)), PrivilegeLevel::Write, "{u}");
    }
    // An admin could take over anyone: no edge to everyone from it.
    assert!(!inv
        .trusts
        .iter()
        .any(|t| t.from == moto.user("p-full-access") || t.from == admin_user));
    // Self-service keys are no takeover of anyone.
    assert!(!inv
        .trusts
        .iter()
        .any(|t| t.from == moto.user("n-create-access-key")));
}
