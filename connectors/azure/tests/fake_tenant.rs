//! The connector against a local server serving the documented Graph / ARM
//! shapes (see `src/testing/`): inventory, paging, throttling, refused
//! reports, failures, and every remediation with its undo.

use std::time::Instant;

use nhi_azure::testing::{
    ids, FakeTenant, Tenant, ARM, AUTHORITY, CLIENT_SECRET, GRAPH, LEAKED_SECRET_TEXT,
    SUBSCRIPTION, TENANT,
};
use nhi_azure::{AzureAuth, AzureConfig, AzureRemediator, AzureSource};
use nhi_contract::{
    ActionRequest, CredentialKind, IdentityKind, Inventory, InventorySource, Operation,
    PrivilegeLevel, Provider, Remediator, SourceError, Unseen, Usage,
};

fn config(fake: &FakeTenant, env: &str) -> AzureConfig {
    // Each test uses its own variable: tests run in parallel threads.
    std::env::set_var(env, CLIENT_SECRET);
    let mut c = AzureConfig::new(
        "azure",
        TENANT,
        AzureAuth::ClientSecret {
            client_id: nhi_azure::testing::CLIENT_ID.into(),
            secret_env: env.into(),
        },
    );
    c.subscriptions = vec![SUBSCRIPTION.into()];
    c.authority_host = AUTHORITY.into();
    c.graph_url = GRAPH.into();
    c.arm_url = ARM.into();
    c.test_loopback = Some(fake.addr.to_string());
    c.initial_backoff_ms = 10;
    c.max_retries = 2;
    c
}

async fn scan(fake: &FakeTenant, env: &str) -> (Result<Inventory, SourceError>, AzureSource) {
    let src = AzureSource::new(config(fake, env));
    let r = src.scan().await;
    (r, src)
}

fn usage_of<'a>(inv: &'a Inventory, cred: &str) -> &'a Usage {
    &inv.credentials
        .iter()
        .find(|c| c.id == cred)
        .unwrap_or_else(|| panic!("credential {cred} missing"))
        .usage
}

/// What `who` holds by direct, active assignment (held through a group or
/// as eligible: see tests/entitlements.rs).
fn entitlements_of(inv: &Inventory, who: &str) -> Vec<(String, PrivilegeLevel)> {
    let mut v: Vec<(String, PrivilegeLevel)> = inv
        .grants
        .iter()
        .filter(|g| {
            g.identity == who && g.via.as_deref().is_none_or(|v| v == "delegated") && !g.eligible
        })
        .filter_map(|g| inv.entitlements.iter().find(|e| e.id == g.entitlement))
        .map(|e| (e.name.clone(), e.privilege))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[tokio::test]
async fn scan_reads_identities_credentials_usage_and_entitlements() {
    let fake = FakeTenant::start(Tenant::demo()).await.expect("fake");
    let (inv, src) = scan(&fake, "NHI_AZ_T1").await;
    let inv = inv.expect("scan");
    assert!(inv.coverage.gaps.is_empty(), "{:?}", inv.coverage.gaps);

    // Microsoft's own Graph service principal is not the tenant's identity;
    // managed identities (reported as owned by Microsoft's services tenant)
    // and the agent identity are.
    let mut idents: Vec<(&str, IdentityKind, bool, Option<&str>)> = inv
        .identities
        .iter()
        .map(|i| (i.id.as_str(), i.kind, i.enabled, i.owner.as_deref()))
        .collect();
    idents.sort_by_key(|x| x.0);
    let priya = Some("priya.nair@contoso.com");
    let tom = Some("tom.becker@contoso.com");
    assert_eq!(
        idents,
        vec![
            (ids::APP_PAYMENTS, IdentityKind::Application, true, priya),
            (ids::APP_LEGACY, IdentityKind::Application, true, None),
            (ids::APP_DEPLOYER, IdentityKind::Application, true, tom),
            (ids::APP_BLUEPRINT, IdentityKind::Application, true, tom),
            (
                ids::SP_PAYMENTS,
                IdentityKind::ServicePrincipal,
                true,
                priya
            ),
            (ids::SP_LEGACY, IdentityKind::ServicePrincipal, true, None),
            (ids::SP_DEPLOYER, IdentityKind::ServicePrincipal, true, tom),
            (ids::MI_ORDERS, IdentityKind::ManagedIdentity, true, None),
            (ids::AGENT_SUPPORT, IdentityKind::Agent, true, priya),
            (ids::MI_BUILD, IdentityKind::ManagedIdentity, true, None),
        ]
    );
    assert!(inv
        .identities
        .iter()
        .all(|i| i.provider == Provider::Azure && i.account == TENANT));

    let mut creds: Vec<(&str, &str, CredentialKind)> = inv
        .credentials
        .iter()
        .map(|c| (c.id.as_str(), c.identity.as_str(), c.kind))
        .collect();
    creds.sort_by_key(|c| (c.0, c.1));
    let mut want = vec![
        (
            ids::SECRET_PAYMENTS_CI,
            ids::APP_PAYMENTS,
            CredentialKind::ClientSecret,
        ),
        (
            ids::SECRET_PAYMENTS_OLD,
            ids::APP_PAYMENTS,
            CredentialKind::ClientSecret,
        ),
        (
            ids::CERT_PAYMENTS,
            ids::APP_PAYMENTS,
            CredentialKind::Certificate,
        ),
        (
            ids::CERT_PAYMENTS_NEXT,
            ids::APP_PAYMENTS,
            CredentialKind::Certificate,
        ),
        (
            ids::SECRET_LEGACY,
            ids::APP_LEGACY,
            CredentialKind::ClientSecret,
        ),
        (
            ids::FIC_DEPLOYER,
            ids::APP_DEPLOYER,
            CredentialKind::Federated,
        ),
        (
            ids::SECRET_LEGACY_EXPIRED,
            ids::APP_LEGACY,
            CredentialKind::ClientSecret,
        ),
        (
            ids::CERT_SP_PAYMENTS_EXPIRED,
            ids::SP_PAYMENTS,
            CredentialKind::Certificate,
        ),
        (
            ids::FIC_BLUEPRINT,
            ids::APP_BLUEPRINT,
            CredentialKind::Federated,
        ),
        (
            ids::MI_FIC_ORDERS,
            ids::MI_ORDERS,
            CredentialKind::Federated,
        ),
    ];
    want.sort_by_key(|c| (c.0, c.1));
    assert_eq!(creds, want);

    // Long-lived: the legacy secret ends years from now.
    let legacy = inv
        .credentials
        .iter()
        .find(|c| c.id == ids::SECRET_LEGACY)
        .expect("legacy");
    let lifetime = legacy.expires.expect("end") - legacy.created.expect("start");
    assert!(lifetime.num_days() > 3000, "{lifetime}");
    assert_eq!(legacy.name.as_deref(), Some("forever"));

    // Usage per key id; a key the report does not list was never used.
    assert!(matches!(
        usage_of(&inv, ids::SECRET_PAYMENTS_CI),
        Usage::Used { .. }
    ));
    assert_eq!(usage_of(&inv, ids::SECRET_PAYMENTS_OLD), &Usage::Never);
    let legacy_used = usage_of(&inv, ids::SECRET_LEGACY)
        .last_used_at()
        .expect("used");
    assert_eq!((chrono::Utc::now() - legacy_used).num_days(), 200);
    // An identity's use is its own sign-ins as a client: legacy-sync is
    // still called as a resource daily, but last signed in 200 days ago.
    let ident_used = |id: &str| {
        inv.identities
            .iter()
            .find(|i| i.id == id)
            .and_then(|i| i.usage.last_used_at())
            .map(|t| (chrono::Utc::now() - t).num_days())
    };
    assert_eq!(ident_used(ids::SP_LEGACY), Some(200));
    assert_eq!(ident_used(ids::SP_PAYMENTS), Some(2));
    // A federated credential has no usage report of its own.
    assert_eq!(usage_of(&inv, ids::FIC_DEPLOYER), &Usage::Unknown);

    // Entitlements and their privilege.
    assert_eq!(
        entitlements_of(&inv, ids::SP_LEGACY),
        vec![(
            "Microsoft Graph: Directory.ReadWrite.All (application)".to_string(),
            PrivilegeLevel::Admin
        )]
    );
    // Ids and actions as approvals (and snapshots) name them.
    let dir_rw = inv
        .entitlements
        .iter()
        .find(|e| {
            e.id == format!(
                "00000003-0000-0000-c000-000000000000/approles/{}",
                ids::ROLE_DIRECTORY_RW
            )
        })
        .expect("permission entitlement");
    assert_eq!(
        dir_rw.actions,
        vec!["microsoft.graph/directory.readwrite.all".to_string()]
    );
    let contributor = format!(
        "/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Authorization/roleDefinitions/{}",
        nhi_azure::testing::ROLE_CONTRIBUTOR
    );
    assert!(inv
        .grants
        .iter()
        .any(|g| g.identity == ids::SP_DEPLOYER && g.entitlement == contributor));
    assert_eq!(
        entitlements_of(&inv, ids::SP_DEPLOYER),
        vec![
            (
                "Application Administrator (directory role at /)".to_string(),
                PrivilegeLevel::Admin
            ),
            (
                format!("Contributor at /subscriptions/{SUBSCRIPTION}"),
                PrivilegeLevel::Admin
            ),
        ]
    );
    assert_eq!(
        entitlements_of(&inv, ids::MI_ORDERS),
        vec![(
            format!(
                "Storage Blob Data Reader at /subscriptions/{SUBSCRIPTION}/resourceGroups/orders"
            ),
            PrivilegeLevel::Read
        )]
    );
    assert_eq!(
        entitlements_of(&inv, ids::SP_PAYMENTS),
        vec![
            (
                "Directory Readers (directory role at /)".to_string(),
                PrivilegeLevel::Read
            ),
            (
                "Microsoft Graph: User.Read.All (application)".to_string(),
                PrivilegeLevel::Read
            ),
            (
                "Microsoft Graph: openid profile User.Read (delegated, AllPrincipals)".to_string(),
                PrivilegeLevel::Read
            ),
        ]
    );

    // Paging followed, $select sent, every call authorised by one token.
    let t = fake.tenant();
    let pages = t
        .requests
        .iter()
        .filter(|r| r.query.as_deref().is_some_and(|q| q.contains("$skiptoken")))
        .count();
    assert!(pages >= 4, "next links followed: {pages}");
    let list = t
        .requests
        .iter()
        .find(|r| r.path == "/v1.0/applications")
        .expect("apps listed");
    assert!(
        list.query
            .as_deref()
            .is_some_and(|q| q.contains("$select=id,appId")),
        "{:?}",
        list.query
    );
    let tokens = t
        .requests
        .iter()
        .filter(|r| r.path.ends_with("/oauth2/v2.0/token"))
        .count();
    assert_eq!(tokens, 2, "one token per audience (Graph, ARM)");
    assert!(t.writes().is_empty(), "a scan writes nothing");
    assert_eq!(src.calls().total() as usize, t.requests.len());
    // Per-object calls: one per application and per kept principal
    // (Microsoft's own Graph principal is not asked), one per resource
    // (Microsoft Graph, and payments-api which a group is assigned to), one
    // per user-assigned managed identity.
    let calls = src.calls().snapshot();
    assert_eq!(
        calls.get("GET /beta/applications/{id}/federatedIdentityCredentials"),
        Some(&4)
    );
    assert_eq!(
        calls.get("GET /v1.0/servicePrincipals/{id}/appRoleAssignments"),
        Some(&6)
    );
    assert_eq!(
        calls.get("GET /beta/servicePrincipals/microsoft.graph.agentIdentity"),
        Some(&1)
    );
    assert_eq!(calls.get("GET /v1.0/servicePrincipals/{id}"), Some(&2));
    assert_eq!(
        calls.get("GET /v1.0/servicePrincipals/{id}/transitiveMemberOf/microsoft.graph.group"),
        Some(&6)
    );
    // The whole scan, every call by shape (tokens included).
    assert_eq!(src.calls().total(), 47, "{calls:#?}");
    // Every kind of workload identity the tenant holds is seen.
    let mut kinds = std::collections::BTreeMap::new();
    for i in &inv.identities {
        *kinds.entry(i.kind.as_str()).or_insert(0) += 1;
    }
    assert_eq!(
        kinds,
        [
            ("agent", 1),
            ("application", 4),
            ("managed_identity", 2),
            ("service_principal", 3)
        ]
        .into()
    );
}

#[tokio::test]
async fn no_secret_value_is_kept() {
    let fake = FakeTenant::start(Tenant::demo()).await.expect("fake");
    let (inv, _) = scan(&fake, "NHI_AZ_T2").await;
    let inv = inv.expect("scan");
    let text = format!("{inv:?} {}", serde_json::to_string(&inv).expect("json"));
    assert!(!text.contains(LEAKED_SECRET_TEXT), "secretText leaked");
    assert!(!text.contains(&LEAKED_SECRET_TEXT[..3]), "hint leaked");
    assert!(!text.contains(CLIENT_SECRET), "scanner secret leaked");
}

#[tokio::test]
async fn a_429_is_retried_after_retry_after() {
    let mut t = Tenant::demo();
    t.throttle_once.insert("/v1.0/servicePrincipals".into());
    let fake = FakeTenant::start(t).await.expect("fake");
    let started = Instant::now();
    let (inv, _) = scan(&fake, "NHI_AZ_T3").await;
    let inv = inv.expect("scan survives one 429");
    assert!(
        started.elapsed().as_millis() >= 1000,
        "waited Retry-After: {:?}",
        started.elapsed()
    );
    assert_eq!(inv.identities.len(), 10);
    let t = fake.tenant();
    let first_pages = t
        .requests
        .iter()
        .filter(|r| {
            r.path == "/v1.0/servicePrincipals"
                && !r.query.as_deref().unwrap_or("").contains("$skiptoken")
        })
        .count();
    assert_eq!(first_pages, 2, "the throttled page was asked again, once");
}

#[tokio::test]
async fn a_retry_after_longer_than_the_budget_does_not_stall_the_scan() {
    let mut t = Tenant::demo();
    t.throttle_once.insert("/v1.0/applications".into());
    t.retry_after_secs = Some(3600);
    let fake = FakeTenant::start(t).await.expect("fake");
    let mut cfg = config(&fake, "NHI_AZ_T3B");
    cfg.max_retry_secs = 2;
    let started = Instant::now();
    let inv = AzureSource::new(cfg)
        .scan()
        .await
        .expect("scan after the bounded wait");
    let took = started.elapsed().as_secs_f64();
    assert!(
        (2.0..10.0).contains(&took),
        "waited the budget, not the hour: {took}s"
    );
    assert_eq!(inv.identities.len(), 10);
}

#[tokio::test]
async fn refused_reports_make_usage_unknown_never_never() {
    let mut t = Tenant::demo();
    t.reports_forbidden = true;
    let fake = FakeTenant::start(t).await.expect("fake");
    let (inv, _) = scan(&fake, "NHI_AZ_T4").await;
    let inv = inv.expect("scan");
    assert!(inv.credentials.iter().all(|c| c.usage == Usage::Unknown));
    assert!(inv.identities.iter().all(|i| i.usage == Usage::Unknown));
    assert_eq!(inv.coverage.gaps.len(), 1);
    assert_eq!(inv.coverage.gaps[0].unseen, Unseen::Usage);
    assert!(
        inv.coverage.gaps[0].reason.contains("403"),
        "{}",
        inv.coverage.gaps[0].reason
    );
    // Everything else is still read.
    assert_eq!(inv.credentials.len(), 10);
}

#[tokio::test]
async fn failing_reports_are_a_usage_gap_not_a_failed_tenant() {
    let mut t = Tenant::demo();
    t.reports_down = true;
    let fake = FakeTenant::start(t).await.expect("fake");
    let (inv, _) = scan(&fake, "NHI_AZ_T4B").await;
    let inv = inv.expect("scan");
    assert!(inv.credentials.iter().all(|c| c.usage == Usage::Unknown));
    assert_eq!(inv.coverage.gaps.len(), 1);
    assert_eq!(inv.coverage.gaps[0].unseen, Unseen::Usage);
    assert!(
        inv.coverage.gaps[0].reason.contains("HTTP 500"),
        "{}",
        inv.coverage.gaps[0].reason
    );
    assert_eq!(inv.identities.len(), 10);
}

#[tokio::test]
async fn a_failing_subscription_is_a_gap_and_a_failing_directory_fails_the_source() {
    let mut t = Tenant::demo();
    t.failing_subscriptions.insert(SUBSCRIPTION.into());
    let fake = FakeTenant::start(t).await.expect("fake");
    let (inv, _) = scan(&fake, "NHI_AZ_T5").await;
    let inv = inv.expect("partial scan");
    // The subscription's role assignments and eligibility, and the
    // federated credentials of the managed identity that lives in it: each
    // read, each a gap.
    let unseen: Vec<&Unseen> = inv.coverage.gaps.iter().map(|g| &g.unseen).collect();
    assert_eq!(
        unseen,
        vec![
            &Unseen::Credentials {
                kind: CredentialKind::Federated
            },
            &Unseen::Subscription {
                id: SUBSCRIPTION.into()
            },
            &Unseen::EligibleAssignments
        ]
    );
    assert!(
        inv.entitlements
            .iter()
            .all(|e| !e.id.starts_with("/subscriptions")),
        "no RBAC from a failed subscription"
    );

    fake.tenant().directory_down = true;
    let (r, _) = scan(&fake, "NHI_AZ_T5").await;
    match r {
        Err(SourceError::Unavailable(m)) => assert!(m.contains("HTTP 500"), "{m}"),
        other => panic!("expected unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn a_next_link_to_another_host_is_not_followed() {
    let mut t = Tenant::demo();
    t.foreign_next_link = true;
    let fake = FakeTenant::start(t).await.expect("fake");
    let (r, _) = scan(&fake, "NHI_AZ_T9").await;
    let e = r.expect_err("refused");
    assert!(e.to_string().contains("another host"), "{e}");
    // The bearer token never went to the link (it would arrive here too,
    // through the loopback redirect).
    let t = fake.tenant();
    assert!(t
        .requests
        .iter()
        .all(|r| !r.query.as_deref().unwrap_or("").contains("$skiptoken")));
}

#[tokio::test]
async fn a_refused_client_secret_fails_the_source_as_auth() {
    let fake = FakeTenant::start(Tenant::demo()).await.expect("fake");
    let mut cfg = config(&fake, "NHI_AZ_T6");
    std::env::set_var("NHI_AZ_T6_BAD", "not-the-secret");
    cfg.auth = AzureAuth::ClientSecret {
        client_id: nhi_azure::testing::CLIENT_ID.into(),
        secret_env: "NHI_AZ_T6_BAD".into(),
    };
    let r = AzureSource::new(cfg).scan().await;
    match r {
        Err(SourceError::Auth(m)) => assert!(!m.contains("not-the-secret"), "{m}"),
        other => panic!("expected auth failure, got {other:?}"),
    }
}

#[test]
fn plain_http_off_the_machine_is_refused() {
    let mut cfg = AzureConfig::new("azure", TENANT, AzureAuth::AzureCli);
    cfg.test_loopback = Some("10.0.0.5:80".into());
    let r = futures_executor_scan(cfg.clone());
    assert!(r.contains("loopback"), "{r}");
    cfg.test_loopback = None;
    cfg.graph_url = "http://graph.example".into();
    let r = futures_executor_scan(cfg);
    assert!(r.contains("https"), "{r}");
}

fn futures_executor_scan(cfg: AzureConfig) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    match rt.block_on(AzureSource::new(cfg).scan()) {
        Ok(_) => "scanned".into(),
        Err(e) => e.to_string(),
    }
}

fn action(
    op: Operation,
    who: &str,
    cred: Option<(&str, CredentialKind)>,
    ents: &[&str],
) -> ActionRequest {
    ActionRequest {
        operation: op,
        provider: Provider::Azure,
        identity_id: who.into(),
        credential_id: cred.map(|c| c.0.to_string()),
        credential_kind: cred.map(|c| c.1),
        entitlements: ents.iter().map(|s| s.to_string()).collect(),
        federated: None,
    }
}

fn writes(fake: &FakeTenant) -> Vec<(String, String, Option<serde_json::Value>)> {
    fake.tenant()
        .writes()
        .iter()
        .map(|r| (r.method.clone(), r.path.clone(), r.body.clone()))
        .collect()
}

#[tokio::test]
async fn removing_a_secret_touches_only_that_secret_and_says_it_is_irreversible() {
    let fake = FakeTenant::start(Tenant::demo()).await.expect("fake");
    let rem = AzureRemediator::new(&config(&fake, "NHI_AZ_R1"));
    let a = action(
        Operation::DeleteCredential,
        ids::APP_PAYMENTS,
        Some((ids::SECRET_PAYMENTS_OLD, CredentialKind::ClientSecret)),
        &[],
    );
    let out = rem.apply(&a).await.expect("removed");
    assert_eq!(
        writes(&fake),
        vec![(
            "POST".to_string(),
            format!("/v1.0/applications/{}/removePassword", ids::APP_PAYMENTS),
            Some(serde_json::json!({"keyId": ids::SECRET_PAYMENTS_OLD}))
        )]
    );
    assert_eq!(
        fake.tenant().secrets_of(ids::APP_PAYMENTS),
        vec![ids::SECRET_PAYMENTS_CI.to_string()]
    );
    assert!(out.undo.is_none());
    assert!(out
        .irreversible
        .as_deref()
        .is_some_and(|m| m.contains("cannot restore")));
    assert_eq!(out.before["present"], true);
    assert_eq!(out.after["present"], false);
    // Idempotent: again is a no-op success with no write and nothing lost.
    let again = rem.apply(&a).await.expect("no-op");
    assert_eq!(writes(&fake).len(), 1);
    assert!(again.irreversible.is_none());
    // A secret cannot be "disabled": refused without any call that writes.
    let d = action(
        Operation::DisableCredential,
        ids::APP_PAYMENTS,
        Some((ids::SECRET_PAYMENTS_CI, CredentialKind::ClientSecret)),
        &[],
    );
    let e = rem.apply(&d).await.expect_err("refused");
    assert!(
        e.to_string().contains("cannot disable a client secret"),
        "{e}"
    );
    assert_eq!(writes(&fake).len(), 1);
    assert!(rem.calls().total() > 0);
}

#[tokio::test]
async fn removing_a_certificate_keeps_the_other_and_undo_restores_it() {
    let fake = FakeTenant::start(Tenant::demo()).await.expect("fake");
    let rem = AzureRemediator::new(&config(&fake, "NHI_AZ_R2"));
    let next_before = fake
        .tenant()
        .apps
        .iter()
        .find(|a| a["id"] == ids::APP_PAYMENTS)
        .and_then(|a| a["keyCredentials"].as_array().cloned())
        .and_then(|l| {
            l.into_iter()
                .find(|c| c["keyId"] == ids::CERT_PAYMENTS_NEXT)
        })
        .expect("second cert");
    let a = action(
        Operation::DisableCredential,
        ids::APP_PAYMENTS,
        Some((ids::CERT_PAYMENTS, CredentialKind::Certificate)),
        &[],
    );
    let out = rem.apply(&a).await.expect("removed");
    let w = writes(&fake);
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].0, "PATCH");
    assert_eq!(w[0].1, format!("/v1.0/applications/{}", ids::APP_PAYMENTS));
    // Exactly the other certificate, sent back whole (with its public key).
    assert_eq!(
        w[0].2,
        Some(serde_json::json!({"keyCredentials": [next_before]}))
    );
    assert_eq!(
        fake.tenant().certificates_of(ids::APP_PAYMENTS),
        vec![ids::CERT_PAYMENTS_NEXT.to_string()]
    );
    assert_eq!(
        fake.tenant().secrets_of(ids::APP_PAYMENTS).len(),
        2,
        "secrets untouched"
    );

    let undo = out.undo.expect("reversible");
    rem.undo(&undo).await.expect("undone");
    let mut certs = fake.tenant().certificates_of(ids::APP_PAYMENTS);
    certs.sort();
    assert_eq!(
        certs,
        vec![
            ids::CERT_PAYMENTS.to_string(),
            ids::CERT_PAYMENTS_NEXT.to_string()
        ]
    );
    // Undo twice is a no-op.
    rem.undo(&undo).await.expect("no-op");
    assert_eq!(writes(&fake).len(), 2);
}

#[tokio::test]
async fn disabling_a_service_principal_and_undo() {
    let fake = FakeTenant::start(Tenant::demo()).await.expect("fake");
    let rem = AzureRemediator::new(&config(&fake, "NHI_AZ_R3"));
    let a = action(Operation::DisableIdentity, ids::SP_LEGACY, None, &[]);
    let out = rem.apply(&a).await.expect("disabled");
    assert_eq!(
        writes(&fake),
        vec![(
            "PATCH".to_string(),
            format!("/v1.0/servicePrincipals/{}", ids::SP_LEGACY),
            Some(serde_json::json!({"accountEnabled": false}))
        )]
    );
    assert_eq!(fake.tenant().enabled(ids::SP_LEGACY), Some(false));
    assert_eq!(fake.tenant().enabled(ids::SP_PAYMENTS), Some(true));
    rem.apply(&a).await.expect("idempotent");
    assert_eq!(writes(&fake).len(), 1);
    rem.undo(&out.undo.expect("undo"))
        .await
        .expect("re-enabled");
    assert_eq!(fake.tenant().enabled(ids::SP_LEGACY), Some(true));
    assert_eq!(
        writes(&fake)[1].2,
        Some(serde_json::json!({"accountEnabled": true}))
    );
    // Known before the call, so an interrupted disable can still be undone;
    // undoing again writes nothing.
    let planned = rem.planned_undo(&a).expect("planned undo");
    rem.undo(&planned).await.expect("no-op");
    assert_eq!(writes(&fake).len(), 2);
}

#[tokio::test]
async fn disabling_a_managed_identity_removes_its_role_assignments_and_undo_recreates_them() {
    let fake = FakeTenant::start(Tenant::demo()).await.expect("fake");
    let rem = AzureRemediator::new(&config(&fake, "NHI_AZ_R4"));
    let ra = format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/orders/providers/Microsoft.Authorization/roleAssignments/{}",
        ids::RA_ORDERS
    );
    let before = fake.tenant().role_assignments.clone();
    let out = rem
        .apply(&action(
            Operation::DisableIdentity,
            ids::MI_ORDERS,
            None,
            &[],
        ))
        .await
        .expect("stripped");
    assert_eq!(
        writes(&fake),
        vec![("DELETE".to_string(), ra.clone(), None)]
    );
    assert_eq!(
        fake.tenant().enabled(ids::MI_ORDERS),
        Some(true),
        "accountEnabled not touched"
    );
    assert_eq!(fake.tenant().role_assignments.len(), before.len() - 1);
    rem.undo(&out.undo.expect("undo")).await.expect("recreated");
    let w = writes(&fake);
    assert_eq!(w[1].0, "PUT");
    assert_eq!(w[1].1, ra);
    let body = w[1].2.clone().expect("body");
    assert_eq!(body["properties"]["principalId"], ids::MI_ORDERS);
    assert_eq!(
        body["properties"]["roleDefinitionId"],
        format!(
            "/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Authorization/roleDefinitions/{}",
            nhi_azure::testing::ROLE_BLOB_READER
        )
    );
    assert_eq!(fake.tenant().role_assignments.len(), before.len());
}

#[tokio::test]
async fn detaching_an_app_role_and_an_rbac_assignment_and_undo() {
    let fake = FakeTenant::start(Tenant::demo()).await.expect("fake");
    let rem = AzureRemediator::new(&config(&fake, "NHI_AZ_R5"));
    let out = rem
        .apply(&action(
            Operation::DetachEntitlements,
            ids::SP_LEGACY,
            None,
            &[&format!(
                "00000003-0000-0000-c000-000000000000/approles/{}",
                ids::ROLE_DIRECTORY_RW
            )],
        ))
        .await
        .expect("detached");
    assert_eq!(
        writes(&fake),
        vec![(
            "DELETE".to_string(),
            format!(
                "/v1.0/servicePrincipals/{}/appRoleAssignments/{}",
                ids::SP_LEGACY,
                ids::ASSIGN_LEGACY_DIRECTORY
            ),
            None
        )]
    );
    assert_eq!(
        fake.tenant().app_role_assignments.len(),
        2,
        "the other principals' assignments stay"
    );
    rem.undo(&out.undo.expect("undo")).await.expect("recreated");
    let w = writes(&fake);
    assert_eq!(
        (w[1].0.as_str(), w[1].1.as_str(), w[1].2.clone()),
        (
            "POST",
            format!(
                "/v1.0/servicePrincipals/{}/appRoleAssignments",
                ids::SP_LEGACY
            )
            .as_str(),
            Some(
                serde_json::json!({"principalId": ids::SP_LEGACY, "resourceId": ids::SP_GRAPH, "appRoleId": ids::ROLE_DIRECTORY_RW})
            )
        )
    );

    let ra = format!(
        "/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Authorization/roleAssignments/{}",
        ids::RA_DEPLOYER
    );
    let out = rem
        .apply(&action(
            Operation::DetachEntitlements,
            ids::SP_DEPLOYER,
            None,
            &[&ra],
        ))
        .await
        .expect("detached");
    assert_eq!(writes(&fake)[2], ("DELETE".to_string(), ra.clone(), None));
    assert_eq!(
        out.before,
        serde_json::json!([{"entitlement": ra, "present": true}])
    );
    rem.undo(&out.undo.expect("undo")).await.expect("recreated");
    assert_eq!(writes(&fake)[3].0, "PUT");
    assert!(fake
        .tenant()
        .role_assignments
        .iter()
        .any(|r| r["id"] == ra.as_str()));
    // The role at its scope, as the inventory and approvals name it, finds
    // the same assignment through the principal's assignments.
    let ent = format!(
        "/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Authorization/roleDefinitions/{}",
        nhi_azure::testing::ROLE_CONTRIBUTOR
    );
    let out = rem
        .apply(&action(
            Operation::DetachEntitlements,
            ids::SP_DEPLOYER,
            None,
            &[&ent],
        ))
        .await
        .expect("detached by role");
    assert_eq!(writes(&fake)[4], ("DELETE".to_string(), ra.clone(), None));
    assert_eq!(
        out.before,
        serde_json::json!([{"entitlement": ent, "present": true}])
    );
    rem.undo(&out.undo.expect("undo")).await.expect("recreated");
    assert_eq!(writes(&fake)[5].0, "PUT");
    // A delegated grant is not detached by us: refused, nothing written.
    let e = rem
        .apply(&action(
            Operation::DetachEntitlements,
            ids::SP_PAYMENTS,
            None,
            &["oauth2PermissionGrant:x"],
        ))
        .await
        .expect_err("refused");
    assert!(e.to_string().contains("delegated"), "{e}");
    assert_eq!(writes(&fake).len(), 6);
}

#[tokio::test]
async fn the_scanner_never_acts_on_its_own_identity() {
    let fake = FakeTenant::start(Tenant::demo()).await.expect("fake");
    // payments-api is, in this variant, the application nhi-assure runs as.
    {
        let mut guard = fake.tenant();
        let t = &mut *guard;
        for a in t.apps.iter_mut().chain(t.sps.iter_mut()) {
            if a["appId"] == "c1000000-0000-4000-8000-000000000001" {
                a["appId"] = serde_json::json!(nhi_azure::testing::CLIENT_ID);
            }
        }
    }
    let rem = AzureRemediator::new(&config(&fake, "NHI_AZ_R6"));
    for a in [
        action(
            Operation::DeleteCredential,
            ids::APP_PAYMENTS,
            Some((ids::SECRET_PAYMENTS_OLD, CredentialKind::ClientSecret)),
            &[],
        ),
        action(Operation::DisableIdentity, ids::SP_PAYMENTS, None, &[]),
    ] {
        let e = rem.apply(&a).await.expect_err("refused");
        assert!(e.to_string().contains("own identity"), "{e}");
    }
    assert!(writes(&fake).is_empty());
    assert_eq!(fake.tenant().secrets_of(ids::APP_PAYMENTS).len(), 2);
}

#[tokio::test]
async fn a_token_signing_certificate_blocks_rewriting_key_credentials() {
    let fake = FakeTenant::start(Tenant::demo()).await.expect("fake");
    for a in fake.tenant().apps.iter_mut() {
        if a["id"] == ids::APP_PAYMENTS {
            a["keyCredentials"][1]["usage"] = serde_json::json!("Sign");
        }
    }
    let rem = AzureRemediator::new(&config(&fake, "NHI_AZ_R7"));
    let e = rem
        .apply(&action(
            Operation::DeleteCredential,
            ids::APP_PAYMENTS,
            Some((ids::CERT_PAYMENTS, CredentialKind::Certificate)),
            &[],
        ))
        .await
        .expect_err("refused");
    assert!(e.to_string().contains("token-signing"), "{e}");
    assert!(writes(&fake).is_empty());
}

#[tokio::test]
async fn calls_grow_by_three_per_application_with_bounded_concurrency() {
    let n = 250;
    let mut t = Tenant::synthetic(n);
    t.delay_ms = 5;
    let fake = FakeTenant::start(t).await.expect("fake");
    let mut cfg = config(&fake, "NHI_AZ_T8");
    cfg.max_concurrency = 8;
    let src = AzureSource::new(cfg);
    let inv = src.scan().await.expect("scan");
    assert_eq!(inv.identities.len(), 2 * n);
    assert_eq!(inv.credentials.len(), n);
    let pages = |items: usize| items.div_ceil(100).max(1) as u64;
    let expected = 2 // tokens: Graph and ARM audiences
        + pages(n) // applications
        + pages(n + 1) // service principals (with Microsoft Graph's)
        + 2 * pages(n) // the two reports
        + 1 // agent identities (none)
        + 1 // delegated grants
        + 3 // directory role definitions, assignments and eligibility
        + 3 * n as u64 // federated credentials, app role assignments and groups, one each
        + 1 // Microsoft Graph's app roles, once
        + 3; // role definitions, assignments and eligibility of the subscription
    assert_eq!(
        src.calls().total(),
        expected,
        "{:#?}",
        src.calls().snapshot()
    );
    let max = fake.tenant().max_in_flight;
    assert!((2..=8).contains(&max), "in flight at once: {max}");
}

#[tokio::test]
async fn removing_a_federated_credential_and_undo() {
    let fake = FakeTenant::start(Tenant::demo()).await.expect("fake");
    let rem = AzureRemediator::new(&config(&fake, "NHI_AZ_R8"));
    let out = rem
        .apply(&action(
            Operation::DisableCredential,
            ids::APP_DEPLOYER,
            Some((ids::FIC_DEPLOYER, CredentialKind::Federated)),
            &[],
        ))
        .await
        .expect("removed");
    assert_eq!(
        writes(&fake),
        vec![(
            "DELETE".to_string(),
            format!(
                "/beta/applications/{}/federatedIdentityCredentials/{}",
                ids::APP_DEPLOYER,
                ids::FIC_DEPLOYER
            ),
            None
        )]
    );
    assert!(fake.tenant().fics[ids::APP_DEPLOYER].is_empty());
    rem.undo(&out.undo.expect("undo")).await.expect("recreated");
    let w = writes(&fake);
    assert_eq!(w[1].0, "POST");
    assert_eq!(
        w[1].2,
        Some(serde_json::json!({
            "name": "github-main",
            "issuer": "https://token.actions.githubusercontent.com",
            "subject": "repo:contoso/infra:ref:refs/heads/main",
            "audiences": ["api://AzureADTokenExchange"],
            "description": "deploy from main",
        }))
    );
    assert_eq!(fake.tenant().fics[ids::APP_DEPLOYER].len(), 1);
}

#[tokio::test]
async fn directory_roles_are_read_detached_and_restored_and_a_refusal_is_a_gap() {
    let fake = FakeTenant::start(Tenant::demo()).await.expect("fake");
    let rem = AzureRemediator::new(&config(&fake, "NHI_AZ_R9"));
    let ent = "/roleManagement/directory/roleDefinitions/9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3";
    let out = rem
        .apply(&action(
            Operation::DetachEntitlements,
            ids::SP_DEPLOYER,
            None,
            &[ent],
        ))
        .await
        .expect("detached");
    assert_eq!(
        writes(&fake),
        vec![(
            "DELETE".to_string(),
            "/v1.0/roleManagement/directory/roleAssignments/lAPpYvVpN0KRkAEhdxReEJC2sEqbR_9Hlqk1ihjq0aY-1".to_string(),
            None
        )]
    );
    assert_eq!(
        fake.tenant().directory_role_assignments.len(),
        2,
        "the other principals' roles stay"
    );
    rem.undo(&out.undo.expect("undo")).await.expect("recreated");
    assert_eq!(
        writes(&fake)[1],
        (
            "POST".to_string(),
            "/v1.0/roleManagement/directory/roleAssignments".to_string(),
            Some(serde_json::json!({
                "principalId": ids::SP_DEPLOYER,
                "roleDefinitionId": "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3",
                "directoryScopeId": "/",
            }))
        )
    );
    assert_eq!(fake.tenant().directory_role_assignments.len(), 3);

    fake.tenant().directory_roles_forbidden = true;
    let (inv, _) = scan(&fake, "NHI_AZ_R9").await;
    let inv = inv.expect("scan");
    assert_eq!(inv.coverage.gaps.len(), 1);
    assert_eq!(inv.coverage.gaps[0].unseen, Unseen::DirectoryRoles);
    // Only eligibility, read on its own, still names directory roles.
    assert!(inv
        .grants
        .iter()
        .all(|g| !g.entitlement.starts_with("/roleManagement") || g.eligible));
}
