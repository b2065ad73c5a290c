//! Which principals the directory holds, against the fake tenant rebuilt
//! from Microsoft's published examples (`testdata/docs/`): service
//! principals classified by `servicePrincipalType` (managed identities
//! kept, first-party Microsoft applications left out, unknown types kept),
//! managed identities' RBAC and ARM federated credentials, flexible
//! federated credentials, agent identities, expired credentials still
//! present — and that the fake itself does not drift from the documented
//! shapes.

use nhi_azure::testing::{
    docs, ids, FakeTenant, Tenant, ARM, AUTHORITY, CLIENT_SECRET, GRAPH, ROLE_OWNER, SUBSCRIPTION,
    TENANT,
};
use nhi_azure::{AzureAuth, AzureConfig, AzureSource};
use nhi_contract::{
    Credential, CredentialKind, Identity, IdentityKind, Inventory, InventorySource, PrivilegeLevel,
    Trust, Unseen,
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

async fn scan_of(t: Tenant, env: &str) -> (Inventory, FakeTenant, AzureSource) {
    let fake = FakeTenant::start(t).await.expect("fake");
    let src = AzureSource::new(config(&fake, env));
    let inv = src.scan().await.expect("scan");
    (inv, fake, src)
}

fn identity<'a>(inv: &'a Inventory, id: &str) -> &'a Identity {
    let found: Vec<&Identity> = inv.identities.iter().filter(|i| i.id == id).collect();
    assert_eq!(found.len(), 1, "identity {id} exactly once: {found:#?}");
    found[0]
}

fn credential<'a>(inv: &'a Inventory, id: &str) -> &'a Credential {
    inv.credentials
        .iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("credential {id} missing"))
}

fn entitlements_of(inv: &Inventory, who: &str) -> Vec<(String, PrivilegeLevel)> {
    let mut v: Vec<(String, PrivilegeLevel)> = inv
        .grants
        .iter()
        .filter(|g| g.identity == who)
        .filter_map(|g| inv.entitlements.iter().find(|e| e.id == g.entitlement))
        .map(|e| (e.name.clone(), e.privilege))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn the_fake_serves_only_documented_shapes() {
    let docs = docs::examples().expect("documented examples");
    let t = Tenant::demo();
    let drift = docs::drift(&t, &docs);
    assert!(drift.is_empty(), "{drift:#?}");

    // A made-up field, a changed JSON type, or a made-up field deep inside
    // a credential is caught.
    let mut t = Tenant::demo();
    t.sps[0]["madeUpField"] = serde_json::json!("x");
    t.sps[1]["accountEnabled"] = serde_json::json!("yes");
    t.apps[0]["passwordCredentials"][0]["secretValue"] = serde_json::json!("x");
    t.agents[0]["appId"] = serde_json::json!("not shown for agents");
    let drift = docs::drift(&t, &docs);
    let has = |s: &str| drift.iter().any(|d| d.contains(s));
    assert!(has("b1000000-0000-4000-8000-000000000001: madeUpField: a field no documented example shows"), "{drift:#?}");
    assert!(has("b2000000-0000-4000-8000-000000000002: accountEnabled: a string where the docs show boolean"), "{drift:#?}");
    assert!(
        has("a1000000-0000-4000-8000-000000000001: passwordCredentials[0].secretValue: a field"),
        "{drift:#?}"
    );
    assert!(
        has("agentIdentity b5000000-0000-4000-8000-000000000005: appId: a field"),
        "{drift:#?}"
    );
    assert_eq!(drift.len(), 4, "{drift:#?}");
}

#[tokio::test]
async fn managed_identities_are_identities_with_their_rbac() {
    let (inv, _fake, _) = scan_of(Tenant::demo(), "NHI_AZ_D1").await;
    assert!(inv.coverage.gaps.is_empty(), "{:?}", inv.coverage.gaps);

    // Both, although Entra reports Microsoft's services tenant as their owner.
    let build = identity(&inv, ids::MI_BUILD);
    assert_eq!(build.kind, IdentityKind::ManagedIdentity);
    assert_eq!(build.name, "vm-build");
    assert_eq!(
        build.tags.get("assigned").map(String::as_str),
        Some("system")
    );
    assert!(build
        .tags
        .get("resource")
        .is_some_and(|r| r.ends_with("/virtualMachines/vm-build")));
    let orders = identity(&inv, ids::MI_ORDERS);
    assert_eq!(orders.kind, IdentityKind::ManagedIdentity);
    assert_eq!(
        orders.tags.get("assigned").map(String::as_str),
        Some("user")
    );

    // Owner of the subscription: admin-equivalent.
    assert_eq!(
        entitlements_of(&inv, ids::MI_BUILD),
        vec![(
            format!("Owner at /subscriptions/{SUBSCRIPTION}"),
            PrivilegeLevel::Admin
        )]
    );
    assert!(inv.grants.iter().any(|g| g.identity == ids::MI_BUILD
        && g.entitlement
            == format!(
                "/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Authorization/roleDefinitions/{ROLE_OWNER}"
            )));
    // The certificate the platform holds for a managed identity is not a
    // credential anyone can use or remove.
    assert!(inv
        .credentials
        .iter()
        .filter(|c| c.identity == ids::MI_BUILD || c.identity == ids::MI_ORDERS)
        .all(|c| c.kind == CredentialKind::Federated));
}

#[tokio::test]
async fn managed_identities_get_their_graph_app_roles() {
    let mut t = Tenant::demo();
    t.app_role_assignments.push(serde_json::json!({
        "id": "bWktYnVpbGQtdXNlci1yZWFkLWFsbA", "appRoleId": ids::ROLE_USER_READ,
        "createdDateTime": "2026-01-02T03:04:05Z", "principalDisplayName": "vm-build",
        "principalId": ids::MI_BUILD, "principalType": "ServicePrincipal",
        "resourceDisplayName": "Microsoft Graph", "resourceId": ids::SP_GRAPH,
    }));
    let (inv, _fake, _) = scan_of(t, "NHI_AZ_D2").await;
    assert!(entitlements_of(&inv, ids::MI_BUILD).contains(&(
        "Microsoft Graph: User.Read.All (application)".to_string(),
        PrivilegeLevel::Read
    )));
}

#[tokio::test]
async fn a_first_party_microsoft_application_stays_out_and_unknown_types_are_kept() {
    let mut t = Tenant::demo();
    for s in t.sps.iter_mut() {
        if s["id"] == ids::SP_LEGACY {
            s["servicePrincipalType"] = serde_json::json!("SomethingGraphAddsIn2027");
        }
        if s["id"] == ids::SP_DEPLOYER {
            s["servicePrincipalType"] = serde_json::json!("Legacy");
        }
    }
    let (inv, _fake, src) = scan_of(t, "NHI_AZ_D3").await;
    // Microsoft Graph's own principal (an Application owned by Microsoft)
    // is not the tenant's identity; nothing of it is read per object.
    assert!(inv.identities.iter().all(|i| i.id != ids::SP_GRAPH));
    let calls = src.calls().snapshot();
    assert_eq!(
        calls.get("GET /v1.0/servicePrincipals/{id}/appRoleAssignments"),
        Some(&6),
        "{calls:#?}"
    );
    let unknown = identity(&inv, ids::SP_LEGACY);
    assert_eq!(unknown.kind, IdentityKind::ServicePrincipal);
    assert_eq!(
        unknown.tags.get("servicePrincipalType").map(String::as_str),
        Some("SomethingGraphAddsIn2027")
    );
    // Its entitlements still flow.
    assert_eq!(
        entitlements_of(&inv, ids::SP_LEGACY)[0].1,
        PrivilegeLevel::Admin
    );
    assert_eq!(
        identity(&inv, ids::SP_DEPLOYER).kind,
        IdentityKind::ServicePrincipal
    );
}

#[tokio::test]
async fn managed_identity_federated_credentials_are_read_from_arm() {
    let (inv, fake, _) = scan_of(Tenant::demo(), "NHI_AZ_D4").await;
    let fic = credential(&inv, ids::MI_FIC_ORDERS);
    assert_eq!(fic.identity, ids::MI_ORDERS);
    assert_eq!(fic.kind, CredentialKind::Federated);
    let fed = fic.federation.as_ref().expect("federation");
    assert!(fed
        .issuer
        .starts_with("https://westeurope.oic.prod-aks.azure.com/"));
    assert_eq!(
        fed.subjects,
        vec!["system:serviceaccount:orders:orders-api"]
    );
    assert_eq!(fed.audiences, vec!["api://AzureADTokenExchange"]);
    assert_eq!(fed.expression, None);
    assert!(fic
        .name
        .as_deref()
        .is_some_and(|n| n.starts_with("aks-orders (")));
    // One ARM read, for the user-assigned identity only.
    let t = fake.tenant();
    let reads: Vec<_> = t
        .requests
        .iter()
        .filter(|r| {
            r.path.ends_with("/federatedIdentityCredentials") && r.path.contains("ManagedIdentity")
        })
        .collect();
    assert_eq!(reads.len(), 1, "{reads:#?}");
    assert_eq!(
        reads[0].path,
        format!("{}/federatedIdentityCredentials", ids::MI_ORDERS_RESOURCE)
    );
    assert_eq!(reads[0].query.as_deref(), Some("api-version=2024-11-30"));
}

#[tokio::test]
async fn a_failing_managed_identity_federated_read_is_a_federated_gap() {
    let mut t = Tenant::demo();
    t.failing_mi_fics.insert(ids::MI_ORDERS_RESOURCE.into());
    let (inv, _fake, _) = scan_of(t, "NHI_AZ_D5").await;
    assert_eq!(inv.coverage.gaps.len(), 1, "{:?}", inv.coverage.gaps);
    assert_eq!(
        inv.coverage.gaps[0].unseen,
        Unseen::Credentials {
            kind: CredentialKind::Federated
        }
    );
    let reason = &inv.coverage.gaps[0].reason;
    assert!(
        reason.contains("managed identity")
            && reason.contains(ids::MI_ORDERS)
            && reason.contains("403"),
        "{reason}"
    );
    // The identity and everything else are still read.
    assert_eq!(
        identity(&inv, ids::MI_ORDERS).kind,
        IdentityKind::ManagedIdentity
    );
    assert!(inv.credentials.iter().all(|c| c.id != ids::MI_FIC_ORDERS));
    credential(&inv, ids::FIC_BLUEPRINT);
}

#[tokio::test]
async fn federated_credentials_carry_the_tokens_they_admit() {
    let (inv, _fake, _) = scan_of(Tenant::demo(), "NHI_AZ_D6").await;
    let exact = credential(&inv, ids::FIC_DEPLOYER)
        .federation
        .as_ref()
        .expect("federation");
    assert_eq!(exact.issuer, "https://token.actions.githubusercontent.com");
    assert_eq!(
        exact.subjects,
        vec!["repo:contoso/infra:ref:refs/heads/main"]
    );
    assert_eq!(exact.audiences, vec!["api://AzureADTokenExchange"]);
    assert_eq!(exact.expression, None);

    // A flexible credential: the expression verbatim, the pattern it
    // matches `sub` against as its subject.
    let flexible = credential(&inv, ids::FIC_BLUEPRINT);
    assert_eq!(flexible.identity, ids::APP_BLUEPRINT);
    let fed = flexible.federation.as_ref().expect("federation");
    assert_eq!(fed.subjects, vec!["repo:contoso/*"]);
    assert_eq!(
        fed.expression.as_deref(),
        Some(ids::FIC_BLUEPRINT_EXPRESSION)
    );
    assert_eq!(
        flexible.name.as_deref(),
        Some("github-any-repo (https://token.actions.githubusercontent.com → claims['sub'] matches 'repo:contoso/*')")
    );
}

#[tokio::test]
async fn agent_identities_are_inventoried_once_with_sponsor_entitlements_and_blueprint() {
    let (inv, fake, _) = scan_of(Tenant::demo(), "NHI_AZ_D7").await;
    // Served by the agent listing and by /servicePrincipals: one identity.
    let agent = identity(&inv, ids::AGENT_SUPPORT);
    assert_eq!(agent.kind, IdentityKind::Agent);
    assert_eq!(agent.name, "support-agent");
    assert_eq!(agent.owner.as_deref(), Some("priya.nair@contoso.com"));
    assert_eq!(
        agent
            .tags
            .get("agentIdentityBlueprintId")
            .map(String::as_str),
        Some(ids::APPID_BLUEPRINT)
    );
    assert_eq!(
        entitlements_of(&inv, ids::AGENT_SUPPORT),
        vec![(
            "Microsoft Graph: User.Read.All (application)".to_string(),
            PrivilegeLevel::Read
        )]
    );
    // Its credentials are its blueprint's, which obtains its tokens.
    assert!(inv.trusts.contains(&Trust {
        from: ids::APP_BLUEPRINT.into(),
        to: ids::AGENT_SUPPORT.into()
    }));
    assert_eq!(
        identity(&inv, ids::APP_BLUEPRINT).kind,
        IdentityKind::Application
    );
    let t = fake.tenant();
    let listing = t
        .requests
        .iter()
        .find(|r| r.path == "/beta/servicePrincipals/microsoft.graph.agentIdentity")
        .expect("agents listed");
    assert!(
        listing
            .query
            .as_deref()
            .is_some_and(|q| q.contains("$expand=sponsors")),
        "{listing:?}"
    );
}

#[tokio::test]
async fn an_agent_listed_only_by_the_agent_listing_is_still_inventoried() {
    let mut t = Tenant::demo();
    t.agents_only_in_beta = true;
    let (inv, _fake, src) = scan_of(t, "NHI_AZ_D8").await;
    let agent = identity(&inv, ids::AGENT_SUPPORT);
    assert_eq!(agent.kind, IdentityKind::Agent);
    assert_eq!(agent.owner.as_deref(), Some("priya.nair@contoso.com"));
    // Its app role assignments are read like any kept principal's.
    assert_eq!(entitlements_of(&inv, ids::AGENT_SUPPORT).len(), 1);
    assert_eq!(
        src.calls()
            .snapshot()
            .get("GET /v1.0/servicePrincipals/{id}/appRoleAssignments"),
        Some(&6)
    );
}

#[tokio::test]
async fn a_refused_or_absent_agent_listing_is_an_agent_gap_and_the_rest_is_read() {
    for status in [403, 400, 404] {
        let mut t = Tenant::demo();
        t.agents_refused = Some(status);
        let env = format!("NHI_AZ_D9_{status}");
        let (inv, _fake, _) = scan_of(t, &env).await;
        assert_eq!(inv.coverage.gaps.len(), 1, "{:?}", inv.coverage.gaps);
        assert_eq!(
            inv.coverage.gaps[0].unseen,
            Unseen::Identities {
                kind: IdentityKind::Agent
            }
        );
        assert!(
            inv.coverage.gaps[0].reason.contains(&status.to_string()),
            "{}",
            inv.coverage.gaps[0].reason
        );
        // Everything else is read; the agent, served among the service
        // principals with its type, is still an agent (without sponsor).
        identity(&inv, ids::MI_BUILD);
        credential(&inv, ids::SECRET_LEGACY);
        let agent = identity(&inv, ids::AGENT_SUPPORT);
        assert_eq!(agent.kind, IdentityKind::Agent);
        assert_eq!(agent.owner, None);
    }
}

#[tokio::test]
async fn expired_secrets_and_certificates_stay_in_the_inventory() {
    let (inv, _fake, _) = scan_of(Tenant::demo(), "NHI_AZ_D10").await;
    let now = chrono::Utc::now();
    for (cred, owner, kind) in [
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
    ] {
        let c = credential(&inv, cred);
        assert_eq!((c.identity.as_str(), c.kind), (owner, kind));
        assert!(!c.active, "{cred}: expired, no longer authenticates");
        assert!(
            c.expires.is_some_and(|e| e < now),
            "{cred}: {:?}",
            c.expires
        );
    }
}

/// Figures for the record: objects per kind the demo scan sees, and the
/// calls it makes (`cargo test --test directory -- --nocapture figures`).
#[tokio::test]
async fn figures_of_the_demo_scan() {
    let (inv, _fake, src) = scan_of(Tenant::demo(), "NHI_AZ_D11").await;
    let mut kinds = std::collections::BTreeMap::new();
    for i in &inv.identities {
        *kinds.entry(i.kind.as_str()).or_insert(0) += 1;
    }
    let mut creds = std::collections::BTreeMap::new();
    for c in &inv.credentials {
        *creds.entry(c.kind.as_str()).or_insert(0) += 1;
    }
    println!("identities by kind: {kinds:?}");
    println!("credentials by kind: {creds:?}");
    println!(
        "entitlements: {}, grants: {}, trusts: {}, gaps: {}",
        inv.entitlements.len(),
        inv.grants.len(),
        inv.trusts.len(),
        inv.coverage.gaps.len()
    );
    println!(
        "calls: {} {:#?}",
        src.calls().total(),
        src.calls().snapshot()
    );
    assert_eq!(kinds.get("agent"), Some(&1));
    assert_eq!(kinds.get("managed_identity"), Some(&2));
}

#[tokio::test]
async fn a_managed_identity_federated_credential_is_removed_through_arm_and_undo_restores_it() {
    use nhi_azure::AzureRemediator;
    use nhi_contract::{ActionRequest, Operation, Provider, Remediator};
    let fake = FakeTenant::start(Tenant::demo()).await.expect("fake");
    let rem = AzureRemediator::new(&config(&fake, "NHI_AZ_D12"));
    let action = |identity: &str| ActionRequest {
        operation: Operation::DisableCredential,
        provider: Provider::Azure,
        identity_id: identity.into(),
        credential_id: Some(ids::MI_FIC_ORDERS.into()),
        credential_kind: Some(CredentialKind::Federated),
        entitlements: vec![],
        federated: None,
    };
    // Not a credential of that identity: refused, nothing written.
    let e = rem
        .apply(&action(ids::MI_BUILD))
        .await
        .expect_err("another identity's credential");
    assert!(
        e.to_string().contains("not a federated credential of"),
        "{e}"
    );
    assert!(fake.tenant().writes().is_empty());

    let before = fake.tenant().mi_fics[ids::MI_ORDERS_RESOURCE][0].clone();
    let out = rem.apply(&action(ids::MI_ORDERS)).await.expect("removed");
    let writes: Vec<(String, String, Option<String>)> = fake
        .tenant()
        .writes()
        .iter()
        .map(|r| (r.method.clone(), r.path.clone(), r.query.clone()))
        .collect();
    assert_eq!(
        writes,
        vec![(
            "DELETE".to_string(),
            ids::MI_FIC_ORDERS.to_string(),
            Some("api-version=2024-11-30".to_string())
        )]
    );
    assert!(fake.tenant().mi_fics[ids::MI_ORDERS_RESOURCE].is_empty());

    rem.undo(&out.undo.expect("reversible"))
        .await
        .expect("recreated");
    let t = fake.tenant();
    let put = t
        .writes()
        .last()
        .map(|r| (r.method.clone(), r.body.clone()));
    assert_eq!(
        put,
        Some((
            "PUT".to_string(),
            Some(serde_json::json!({"properties": before["properties"]}))
        ))
    );
    assert_eq!(t.mi_fics[ids::MI_ORDERS_RESOURCE], vec![before]);
}

#[tokio::test]
async fn a_flexible_federated_credential_removed_and_undone_keeps_its_expression() {
    use nhi_azure::AzureRemediator;
    use nhi_contract::{ActionRequest, Operation, Provider, Remediator};
    let fake = FakeTenant::start(Tenant::demo()).await.expect("fake");
    let rem = AzureRemediator::new(&config(&fake, "NHI_AZ_D13"));
    let out = rem
        .apply(&ActionRequest {
            operation: Operation::DisableCredential,
            provider: Provider::Azure,
            identity_id: ids::APP_BLUEPRINT.into(),
            credential_id: Some(ids::FIC_BLUEPRINT.into()),
            credential_kind: Some(CredentialKind::Federated),
            entitlements: vec![],
            federated: None,
        })
        .await
        .expect("removed");
    assert!(fake.tenant().fics[ids::APP_BLUEPRINT].is_empty());
    rem.undo(&out.undo.expect("reversible"))
        .await
        .expect("recreated");
    let t = fake.tenant();
    let recreated = &t.fics[ids::APP_BLUEPRINT];
    assert_eq!(recreated.len(), 1);
    assert_eq!(
        recreated[0]["claimsMatchingExpression"]["value"],
        ids::FIC_BLUEPRINT_EXPRESSION
    );
    assert_eq!(recreated[0]["name"], "github-any-repo");
}

#[tokio::test]
async fn an_agent_identity_is_disabled_like_a_service_principal_and_undo_restores_it() {
    use nhi_azure::AzureRemediator;
    use nhi_contract::{ActionRequest, Operation, Provider, Remediator};
    let fake = FakeTenant::start(Tenant::demo()).await.expect("fake");
    let rem = AzureRemediator::new(&config(&fake, "NHI_AZ_D14"));
    let out = rem
        .apply(&ActionRequest {
            operation: Operation::DisableIdentity,
            provider: Provider::Azure,
            identity_id: ids::AGENT_SUPPORT.into(),
            credential_id: None,
            credential_kind: None,
            entitlements: vec![],
            federated: None,
        })
        .await
        .expect("disabled");
    assert_eq!(fake.tenant().enabled(ids::AGENT_SUPPORT), Some(false));
    rem.undo(&out.undo.expect("reversible"))
        .await
        .expect("enabled again");
    assert_eq!(fake.tenant().enabled(ids::AGENT_SUPPORT), Some(true));
}
