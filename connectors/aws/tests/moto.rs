//! The AWS connector against moto (real IAM wire protocol on loopback),
//! started per test by `tests/aws/moto_fixture.py`.

use chrono::{Duration, Utc};
use nhi_aws::moto::Moto;
use nhi_aws::{AwsConfig, AwsRemediator, AwsSource};
use nhi_contract::{
    ActionRequest, CredentialKind, FederationKind, IdentityKind, Inventory, InventorySource,
    Operation, PrivilegeLevel, Provider, Remediator, SourceError, Unseen, Usage,
};

fn config() -> AwsConfig {
    let mut c = AwsConfig::named("aws-test");
    c.max_attempts = 3;
    c.initial_backoff_ms = 10;
    c
}

async fn scan(moto: &Moto) -> Result<Inventory, SourceError> {
    let sdk = Moto::sdk_config(&moto.ready.proxy).await;
    AwsSource::with_sdk_config(config(), sdk).scan().await
}

async fn remediator(moto: &Moto) -> AwsRemediator {
    let sdk = Moto::sdk_config(&moto.ready.endpoint).await;
    AwsRemediator::with_sdk_config(&config(), &sdk)
}

fn days_ago(t: Option<chrono::DateTime<Utc>>) -> i64 {
    (Utc::now() - t.expect("timestamp")).num_days()
}

fn cred<'a>(inv: &'a Inventory, id: &str) -> &'a nhi_contract::Credential {
    inv.credentials
        .iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("credential {id}"))
}

fn ident<'a>(inv: &'a Inventory, id: &str) -> &'a nhi_contract::Identity {
    inv.identities
        .iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("identity {id}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_reads_every_key_exactly_and_every_admin_path() {
    let moto = Moto::start("estate", &[]).expect("fixture");
    let inv = scan(&moto).await.expect("scan");

    // Two keys on one user, each with its own dates and last use.
    let ci = moto.user("ci-deployer");
    let ci_keys: Vec<&str> = inv
        .credentials
        .iter()
        .filter(|c| c.identity == ci.replace("user/", "user/machine/") || c.identity == ci)
        .map(|c| c.id.as_str())
        .collect();
    assert_eq!(ci_keys.len(), 2, "{ci_keys:?}");
    let old = cred(&inv, &moto.key("ci-old"));
    let new = cred(&inv, &moto.key("ci-new"));
    assert!(
        (199..=201).contains(&days_ago(old.created)),
        "{:?}",
        old.created
    );
    match &old.usage {
        Usage::Used {
            at,
            service,
            region,
        } => {
            assert!((149..=151).contains(&(Utc::now() - *at).num_days()));
            assert_eq!(service.as_deref(), Some("s3"));
            assert_eq!(region.as_deref(), Some("us-east-1"));
        }
        other => panic!("ci-old usage {other:?}"),
    }
    assert!(matches!(new.usage, Usage::Used { at, .. } if (Utc::now() - at) < Duration::days(2)));
    assert!(old.active && new.active);
    assert_eq!(old.kind, CredentialKind::AccessKey);

    // Never used, old; console password on a machine user.
    let legacy = cred(&inv, &moto.key("legacy-key"));
    assert_eq!(legacy.usage, Usage::Never);
    assert!((399..=401).contains(&days_ago(legacy.created)));
    let legacy_user = ident(&inv, &moto.user("legacy-batch"));
    assert!(legacy_user.human_login);
    assert_eq!(legacy_user.owner.as_deref(), Some("data@example.com"));

    // Entitlements and how they are held.
    let ent = |id: &str| {
        inv.entitlements
            .iter()
            .find(|e| e.id == id)
            .unwrap_or_else(|| panic!("entitlement {id}"))
    };
    assert_eq!(
        ent("arn:aws:iam::aws:policy/AdministratorAccess").privilege,
        PrivilegeLevel::Admin
    );
    let inline = format!("{}#inline/everything", moto.user("inline-admin"));
    assert_eq!(ent(&inline).privilege, PrivilegeLevel::Admin);
    assert_eq!(
        ent("arn:aws:iam::123456789012:policy/deploy-s3").privilege,
        PrivilegeLevel::Write
    );
    let tf_admin = inv
        .grants
        .iter()
        .find(|g| {
            g.identity == moto.user("terraform") && g.entitlement.ends_with("/AdministratorAccess")
        })
        .expect("terraform holds admin");
    assert_eq!(
        tf_admin.via.as_deref(),
        Some("arn:aws:iam::123456789012:group/admins")
    );

    // Trust: account-wide trust needs the principal's own permission.
    let has = |from: &str, to: &str| inv.trusts.iter().any(|t| t.from == from && t.to == to);
    assert!(has(&moto.user("chain-user"), &moto.role("hop1")));
    assert!(
        has(&moto.role("hop1"), &moto.role("hop2")),
        "named principal needs no permission"
    );
    assert!(
        !has(&moto.user("legacy-batch"), &moto.role("hop1")),
        "no sts:AssumeRole permission"
    );
    assert!(
        !has(&moto.user("chain-user"), &moto.role("hop2")),
        "hop2 trusts hop1 only"
    );

    // The root and its access key (from the credential report).
    let root = format!("arn:aws:iam::{}:root", moto.ready.account);
    assert_eq!(ident(&inv, &root).kind, IdentityKind::Root);
    assert!(inv
        .credentials
        .iter()
        .any(|c| c.identity == root && c.active));

    // SSH key, no owner tag.
    let no_owner = ident(&inv, &moto.user("no-owner"));
    assert_eq!(no_owner.owner, None);
    assert!(inv
        .credentials
        .iter()
        .any(|c| c.identity == no_owner.id && c.kind == CredentialKind::SshKey));
    assert!(inv.identities.iter().all(|i| i.provider == Provider::Aws));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_counted_and_frugal() {
    let moto = Moto::start("estate", &[]).expect("fixture");
    let sdk = Moto::sdk_config(&moto.ready.proxy).await;
    let src = AwsSource::with_sdk_config(config(), sdk);
    let inv = src.scan().await.expect("scan");
    let ours = src.calls().snapshot();
    let (_, per_action) = moto.proxy_stats().expect("stats");
    for (op, n) in &ours {
        // moto answers ListServiceSpecificCredentials with a 500, which the
        // SDK retries (max_attempts = 3) before the connector records a gap.
        let attempts = if *op == "ListServiceSpecificCredentials" {
            3
        } else {
            1
        };
        assert_eq!(
            per_action.get(*op).copied(),
            Some(n * attempts),
            "{op}: ours {ours:?} proxy {per_action:?}"
        );
    }
    assert!(
        inv.coverage.gaps.iter().any(|g| g.unseen
            == Unseen::Credentials {
                kind: CredentialKind::Token
            }),
        "{:?}",
        inv.coverage
    );
    let users = inv
        .identities
        .iter()
        .filter(|i| i.kind == IdentityKind::User)
        .count() as u64;
    let holders: std::collections::BTreeSet<&str> = inv
        .credentials
        .iter()
        .filter(|c| c.kind == CredentialKind::AccessKey && !c.id.contains(":root:"))
        .map(|c| c.identity.as_str())
        .collect();
    // The credential report says who holds keys: only they are listed
    // (connectors/aws/tests/budget.rs counts the rest of the budget).
    assert_eq!(
        ours.get("ListAccessKeys").copied(),
        Some(holders.len() as u64)
    );
    assert!((holders.len() as u64) < users);
    assert_eq!(ours.get("ListSSHPublicKeys").copied(), Some(users));
    assert!(
        ours.get("GetAccountAuthorizationDetails")
            .copied()
            .unwrap_or(0)
            >= 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deactivate_then_undo_acts_on_exactly_one_key() {
    let moto = Moto::start("estate", &[]).expect("fixture");
    let rem = remediator(&moto).await;
    let old = moto.key("ci-old");
    let action = ActionRequest {
        operation: Operation::DisableCredential,
        provider: Provider::Aws,
        identity_id: "arn:aws:iam::123456789012:user/machine/ci-deployer".into(),
        credential_id: Some(old.clone()),
        credential_kind: Some(CredentialKind::AccessKey),
        entitlements: Vec::new(),
        federated: None,
    };
    let out = rem.apply(&action).await.expect("deactivate");
    assert_eq!(out.before["status"], "Active");
    assert_eq!(out.after["status"], "Inactive");
    assert!(out.undo.is_some() && out.irreversible.is_none());

    let inv = scan(&moto).await.expect("scan");
    assert!(!cred(&inv, &old).active, "target deactivated");
    assert!(
        cred(&inv, &moto.key("ci-new")).active,
        "the other key on the same user untouched"
    );
    assert!(inv
        .credentials
        .iter()
        .filter(|c| c.kind == CredentialKind::AccessKey && c.id != old)
        .all(|c| c.active));

    // Idempotent: a second deactivation changes nothing and has nothing to undo.
    let again = rem.apply(&action).await.expect("idempotent");
    assert_eq!(again.before["status"], "Inactive");
    assert!(again.undo.is_none());

    let undo = out.undo.expect("undo data");
    rem.undo(&undo).await.expect("undo");
    let inv = scan(&moto).await.expect("scan");
    assert!(cred(&inv, &old).active, "reactivated, read back from moto");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_key_is_exact_and_says_it_is_irreversible() {
    let moto = Moto::start("estate", &[]).expect("fixture");
    let rem = remediator(&moto).await;
    let old = moto.key("ci-old");
    let out = rem
        .apply(&ActionRequest {
            operation: Operation::DeleteCredential,
            provider: Provider::Aws,
            identity_id: "arn:aws:iam::123456789012:user/machine/ci-deployer".into(),
            credential_id: Some(old.clone()),
            credential_kind: Some(CredentialKind::AccessKey),
            entitlements: Vec::new(),
            federated: None,
        })
        .await
        .expect("delete");
    assert!(out.undo.is_none());
    assert!(out
        .irreversible
        .as_deref()
        .is_some_and(|m| m.contains("cannot be restored")));
    let inv = scan(&moto).await.expect("scan");
    assert!(!inv.credentials.iter().any(|c| c.id == old));
    assert!(cred(&inv, &moto.key("ci-new")).active);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_removal_and_policy_detach_with_undo() {
    let moto = Moto::start("estate", &[]).expect("fixture");
    let rem = remediator(&moto).await;
    let base = |op, id: String, ents: Vec<String>| ActionRequest {
        operation: op,
        provider: Provider::Aws,
        identity_id: id,
        credential_id: None,
        credential_kind: None,
        entitlements: ents,
        federated: None,
    };
    let login = rem
        .apply(&base(
            Operation::RemoveLogin,
            moto.user("legacy-batch"),
            vec![],
        ))
        .await
        .expect("remove login");
    assert_eq!(login.before["console_password"], true);
    assert_eq!(login.after["console_password"], false);
    assert!(login.irreversible.is_some());

    let inline = format!("{}#inline/everything", moto.user("inline-admin"));
    let detach = rem
        .apply(&base(
            Operation::DetachEntitlements,
            moto.user("inline-admin"),
            vec![inline.clone()],
        ))
        .await
        .expect("delete inline");
    let managed = rem
        .apply(&base(
            Operation::DetachEntitlements,
            moto.user("direct-admin"),
            vec!["arn:aws:iam::aws:policy/AdministratorAccess".into()],
        ))
        .await
        .expect("detach managed");
    let inv = scan(&moto).await.expect("scan");
    assert!(!ident(&inv, &moto.user("legacy-batch")).human_login);
    assert!(!inv.grants.iter().any(|g| g.entitlement == inline));
    assert!(!inv
        .grants
        .iter()
        .any(|g| g.identity == moto.user("direct-admin")));

    rem.undo(&detach.undo.expect("undo"))
        .await
        .expect("restore inline");
    rem.undo(&managed.undo.expect("undo"))
        .await
        .expect("reattach");
    let inv = scan(&moto).await.expect("scan");
    assert!(inv.grants.iter().any(|g| g.entitlement == inline));
    assert!(inv
        .grants
        .iter()
        .any(|g| g.identity == moto.user("direct-admin")
            && g.entitlement.ends_with("/AdministratorAccess")));
    let restored = inv
        .entitlements
        .iter()
        .find(|e| e.id == inline)
        .expect("inline back");
    assert_eq!(
        restored.privilege,
        PrivilegeLevel::Admin,
        "same document restored"
    );

    // Entitlements held through a group are not detached from the user.
    let err = rem
        .apply(&base(
            Operation::DetachEntitlements,
            moto.user("terraform"),
            vec!["arn:aws:iam::123456789012:group/admins#inline/x".into()],
        ))
        .await
        .expect_err("group-held");
    assert!(err.to_string().contains("group"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_endpoint_makes_the_source_unknown() {
    let moto = Moto::start("estate", &["--proxy-fail-all", "503"]).expect("fixture");
    let err = scan(&moto)
        .await
        .expect_err("must fail, not return an empty inventory");
    assert!(matches!(err, SourceError::Unavailable(_)), "{err}");
    let (total, _) = moto.proxy_stats().expect("stats");
    assert_eq!(total, 3, "max_attempts attempts, then give up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_retried() {
    let moto = Moto::start("estate", &["--proxy-throttle-first", "2"]).expect("fixture");
    let inv = scan(&moto).await.expect("retries get through");
    assert!(inv.credentials.iter().any(|c| c.id == moto.key("ci-old")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credential_type_is_a_gap_not_a_failure() {
    let moto =
        Moto::start("estate", &["--proxy-fail-action", "ListSSHPublicKeys=500"]).expect("fixture");
    let inv = scan(&moto).await.expect("partial, not failed");
    assert!(
        inv.coverage.gaps.iter().any(|g| g.unseen
            == Unseen::Credentials {
                kind: CredentialKind::SshKey
            }),
        "{:?}",
        inv.coverage
    );
    assert!(!inv
        .credentials
        .iter()
        .any(|c| c.kind == CredentialKind::SshKey));
    assert!(
        inv.credentials.iter().any(|c| c.id == moto.key("ci-old")),
        "the rest is read"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_accounts_are_scanned_through_assumed_roles() {
    let moto = Moto::start("estate", &[]).expect("fixture");
    let sdk = Moto::sdk_config(&moto.ready.proxy).await;
    let mut cfg = config();
    cfg.assume_roles = vec![moto.role("hop1")];
    let inv = AwsSource::with_sdk_config(cfg, sdk)
        .scan()
        .await
        .expect("scan via STS");
    assert!(inv.credentials.iter().any(|c| c.id == moto.key("ci-old")));
    let (_, per_action) = moto.proxy_stats().expect("stats");
    assert_eq!(
        per_action.get("AssumeRole").copied(),
        Some(1),
        "{per_action:?}"
    );
}

/// Roles trusting an OIDC provider for web identity carry one federated
/// credential each, whose subjects and audiences are the trust's
/// conditions; the remediator refuses to act on them (the trust policy is
/// edited by hand).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_trusts_are_federated_credentials_and_never_remediated() {
    let moto = Moto::start("oidc", &[]).expect("fixture");
    let inv = scan(&moto).await.expect("scan");
    const GH: &str = "token.actions.githubusercontent.com";
    let fed = |role: &str| {
        let id = format!("{}#oidc/{GH}", moto.role(role));
        let c = cred(&inv, &id).clone();
        assert_eq!(c.kind, CredentialKind::Federated, "{id}");
        assert_eq!(c.identity, moto.role(role));
        assert!(c.active);
        assert_eq!(
            c.name.as_deref(),
            Some(format!("arn:aws:iam::123456789012:oidc-provider/{GH}").as_str())
        );
        c.federation.expect("federation")
    };
    let main = fed("deploy-main");
    assert_eq!(main.issuer, format!("https://{GH}"));
    assert_eq!(
        main.subjects,
        vec!["repo:example-org/app:ref:refs/heads/main"]
    );
    assert_eq!(main.audiences, vec!["sts.amazonaws.com"]);
    let any_repo = fed("deploy-any-repo");
    assert_eq!(any_repo.subjects, vec!["repo:example-org/*"]);
    assert_eq!(any_repo.audiences, vec!["sts.amazonaws.com"]);
    let any_token = fed("deploy-any-token");
    assert!(any_token.subjects.is_empty(), "{any_token:?}");
    assert_eq!(any_token.audiences, vec!["sts.amazonaws.com"]);
    assert_eq!(
        inv.credentials
            .iter()
            .filter(|c| c.kind == CredentialKind::Federated)
            .count(),
        3
    );

    let rem = remediator(&moto).await;
    assert!(!rem.can_disable(CredentialKind::Federated));
    for operation in [Operation::DisableCredential, Operation::DeleteCredential] {
        let err = rem
            .apply(&ActionRequest {
                operation,
                provider: Provider::Aws,
                identity_id: moto.role("deploy-any-repo"),
                credential_id: Some(format!("{}#oidc/{GH}", moto.role("deploy-any-repo"))),
                credential_kind: Some(CredentialKind::Federated),
                entitlements: Vec::new(),
                federated: None,
            })
            .await
            .expect_err("refused");
        assert!(err.to_string().contains("trust policy"), "{err}");
    }
    let after = scan(&moto).await.expect("scan");
    assert_eq!(
        cred(
            &after,
            &format!("{}#oidc/{GH}", moto.role("deploy-any-repo"))
        )
        .federation
        .as_ref()
        .map(|f| f.subjects.clone()),
        Some(vec!["repo:example-org/*".to_string()]),
        "the trust is untouched"
    );
}

/// A role's trusts to other accounts and to anyone are federated
/// credentials (`{role}#trust/{account}`, `{role}#trust/*`) carrying the
/// condition keys every statement requires and whether the account is ours
/// (read, or listed in `trusted_accounts`); a trust to the role's own
/// account is not one. Roles carry what makes them NHIs: the instance
/// profiles that wear them, service-linked roles as provider-managed, a
/// role whose trust admits nobody as not enabled, and no recorded last use
/// as never used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_trusts_and_role_kinds_are_read() {
    let moto = Moto::start("trust", &[]).expect("fixture");
    let sdk = Moto::sdk_config(&moto.ready.proxy).await;
    let mut cfg = config();
    cfg.trusted_accounts = vec!["444455556666".into()];
    let inv = AwsSource::with_sdk_config(cfg, sdk)
        .scan()
        .await
        .expect("scan");
    // Roles, their trusts and instance profiles all come from the one
    // GetAccountAuthorizationDetails: no call per role.
    let (_, per_action) = moto.proxy_stats().expect("stats");
    for per_role in ["GetRole", "ListRoles", "ListInstanceProfilesForRole"] {
        assert_eq!(per_action.get(per_role), None, "{per_action:?}");
    }
    assert_eq!(
        per_action.get("GetAccountAuthorizationDetails"),
        Some(&1),
        "{per_action:?}"
    );
    let trust = |role: &str, to: &str| {
        let id = format!("{}#trust/{to}", moto.role(role));
        let c = cred(&inv, &id).clone();
        assert_eq!(c.kind, CredentialKind::Federated, "{id}");
        assert_eq!(c.identity, moto.role(role));
        assert!(c.active);
        c.federation.expect("federation")
    };
    let vendor = trust("vendor-no-extid", "999988887777");
    assert_eq!(vendor.kind, FederationKind::Account);
    assert_eq!(vendor.account.as_deref(), Some("999988887777"));
    assert_eq!(vendor.issuer, "arn:aws:iam::999988887777:root");
    assert_eq!(vendor.subjects, vec!["arn:aws:iam::999988887777:root"]);
    assert!(vendor.conditions.is_empty());
    assert_eq!(vendor.outside_estate, Some(true));
    let with = trust("vendor-with-extid", "999988887777");
    assert_eq!(with.conditions, vec!["sts:ExternalId"]);
    let if_exists = trust("vendor-extid-ifexists", "999988887777");
    assert!(if_exists.conditions.is_empty(), "{if_exists:?}");
    let partner = trust("partner-trusted", "444455556666");
    assert_eq!(partner.outside_estate, Some(false));
    let open = trust("public-open", "*");
    assert_eq!(open.kind, FederationKind::Public);
    assert_eq!(open.account, None);
    assert!(open.conditions.is_empty());
    assert_eq!(
        trust("public-org", "*").conditions,
        vec!["aws:PrincipalOrgID"]
    );
    assert_eq!(
        trust("public-extid-only", "*").conditions,
        vec!["sts:ExternalId"]
    );
    let trust_creds: Vec<&str> = inv
        .credentials
        .iter()
        .filter(|c| c.id.contains("#trust/"))
        .map(|c| c.id.as_str())
        .collect();
    assert_eq!(trust_creds.len(), 7, "{trust_creds:#?}");
    let no_aud = cred(
        &inv,
        &format!(
            "{}#oidc/token.actions.githubusercontent.com",
            moto.role("deploy-no-aud")
        ),
    );
    let f = no_aud.federation.as_ref().expect("federation");
    assert_eq!(f.kind, FederationKind::Oidc);
    assert!(f.audiences.is_empty());

    let web = ident(&inv, &moto.role("web"));
    assert_eq!(
        web.attached_to,
        vec!["arn:aws:iam::123456789012:instance-profile/web"]
    );
    assert_eq!(web.usage, Usage::Never);
    assert!(web.enabled && !web.provider_managed);
    let slr = moto.ready.roles["AWSServiceRoleForElasticBeanstalk"].clone();
    assert!(slr.contains(":role/aws-service-role/elasticbeanstalk.amazonaws.com/"));
    let slr_ident = ident(&inv, &slr);
    assert!(slr_ident.provider_managed);
    assert_eq!(slr_ident.kind, IdentityKind::Role);
    assert!(!ident(&inv, &moto.role("untrustable")).enabled);
    assert!(matches!(
        ident(&inv, &moto.role("idle-deployer")).usage,
        Usage::Used { .. }
    ));

    // Nothing acts on a service-linked role, whatever is asked.
    let rem = remediator(&moto).await;
    let err = rem
        .apply(&ActionRequest {
            operation: Operation::DetachEntitlements,
            provider: Provider::Aws,
            identity_id: slr.clone(),
            credential_id: None,
            credential_kind: None,
            entitlements: vec![
                "arn:aws:iam::aws:policy/aws-service-role/AWSElasticBeanstalkServiceRolePolicy"
                    .into(),
            ],
            federated: None,
        })
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("service-linked"), "{err}");
    // Neither on a trust to another account.
    let err = rem
        .apply(&ActionRequest {
            operation: Operation::DisableCredential,
            provider: Provider::Aws,
            identity_id: moto.role("vendor-no-extid"),
            credential_id: Some(format!(
                "{}#trust/999988887777",
                moto.role("vendor-no-extid")
            )),
            credential_kind: Some(CredentialKind::Federated),
            entitlements: Vec::new(),
            federated: None,
        })
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("trust policy"), "{err}");
}
