//! Entitlements Entra ID grants indirectly, against the fake tenant serving
//! Microsoft's documented shapes (`src/testing/entitlements.rs`): roles held
//! through groups, PIM-eligible roles, custom RBAC roles judged by their
//! actions, each sub-read failing as its own gap, and detaching never
//! acting on a group's or an eligible assignment.

use nhi_azure::testing::{
    ent_ids, ids, FakeTenant, Tenant, ARM, AUTHORITY, CLIENT_SECRET, GRAPH, SUBSCRIPTION, TENANT,
};
use nhi_azure::{AzureAuth, AzureConfig, AzureRemediator, AzureSource};
use nhi_contract::{
    ActionRequest, Inventory, InventorySource, Operation, PrivilegeLevel, Provider, Remediator,
    Unseen,
};

fn config(fake: &FakeTenant, env: &str) -> AzureConfig {
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
    c.max_retries = 1;
    c
}

async fn scan_of(t: Tenant, env: &str) -> (Inventory, AzureSource, FakeTenant) {
    let fake = FakeTenant::start(t).await.expect("fake");
    let src = AzureSource::new(config(&fake, env));
    let inv = src.scan().await.expect("scan");
    (inv, src, fake)
}

/// `(entitlement name, privilege, via, eligible)` of what `who` holds.
fn held(inv: &Inventory, who: &str) -> Vec<(String, PrivilegeLevel, Option<String>, bool)> {
    let mut v: Vec<_> = inv
        .grants
        .iter()
        .filter(|g| g.identity == who)
        .filter_map(|g| {
            let e = inv.entitlements.iter().find(|e| e.id == g.entitlement)?;
            Some((e.name.clone(), e.privilege, g.via.clone(), g.eligible))
        })
        .collect();
    v.sort();
    v
}

fn via(group: &str) -> Option<String> {
    Some(format!("group:{group}"))
}

fn sub() -> String {
    format!("/subscriptions/{SUBSCRIPTION}")
}

fn mg() -> String {
    format!(
        "/providers/Microsoft.Management/managementGroups/{}",
        ent_ids::MANAGEMENT_GROUP
    )
}

#[tokio::test]
async fn roles_held_through_groups_are_granted_via_the_group() {
    let (inv, src, _fake) = scan_of(Tenant::demo(), "NHI_AZ_E1").await;
    assert!(inv.coverage.gaps.is_empty(), "{:?}", inv.coverage.gaps);
    let indirect: Vec<_> = held(&inv, ids::SP_DEPLOYER)
        .into_iter()
        .filter(|h| h.2.is_some())
        .collect();
    // gh-actions-deployer is in CI Runners, itself in Tier0 Automation.
    assert_eq!(
        indirect,
        vec![
            (
                format!("Access Helper at {}", sub()),
                PrivilegeLevel::Write,
                via(ent_ids::GROUP_TIER0),
                false
            ),
            (
                format!("Deployment Operator at {}", mg()),
                PrivilegeLevel::Admin,
                via(ent_ids::GROUP_CI),
                false
            ),
            (
                "Privileged Role Administrator (directory role at /)".to_string(),
                PrivilegeLevel::Admin,
                via(ent_ids::GROUP_TIER0),
                false
            ),
            (
                format!("payments-api: {} (application)", ent_ids::APP_ROLE_DEFAULT),
                PrivilegeLevel::Read,
                via(ent_ids::GROUP_CI),
                false
            ),
        ]
    );
    // Its direct grants are still direct.
    assert!(held(&inv, ids::SP_DEPLOYER).contains(&(
        format!("Contributor at {}", sub()),
        PrivilegeLevel::Admin,
        None,
        false
    )));
    // One membership read per kept principal, each group's assignments once.
    let calls = src.calls().snapshot();
    assert_eq!(
        calls.get("GET /v1.0/servicePrincipals/{id}/transitiveMemberOf/microsoft.graph.group"),
        Some(&6)
    );
    assert_eq!(
        calls.get("GET /v1.0/groups/{id}/appRoleAssignments"),
        Some(&2)
    );
}

#[tokio::test]
async fn eligible_directory_and_rbac_roles_are_granted_eligible() {
    let (inv, _src, _fake) = scan_of(Tenant::demo(), "NHI_AZ_E2").await;
    let eligible = |who: &str| -> Vec<_> { held(&inv, who).into_iter().filter(|h| h.3).collect() };
    assert_eq!(
        eligible(ids::SP_DEPLOYER),
        vec![
            (
                "Global Administrator (directory role at /)".to_string(),
                PrivilegeLevel::Admin,
                None,
                true
            ),
            (
                format!("Owner at {}", sub()),
                PrivilegeLevel::Admin,
                None,
                true
            ),
        ]
    );
    // An eligibility that has ended is not held.
    assert!(eligible(ids::SP_LEGACY).is_empty());
    // Eligible is a way of holding, not another entitlement: the same ids.
    let owner = inv
        .grants
        .iter()
        .find(|g| {
            g.identity == ids::SP_DEPLOYER
                && g.eligible
                && g.entitlement.contains(ent_ids::ROLE_OWNER)
        })
        .expect("eligible owner");
    assert_eq!(
        owner.entitlement,
        format!(
            "{}/providers/Microsoft.Authorization/roleDefinitions/{}",
            sub(),
            ent_ids::ROLE_OWNER
        )
    );
}

#[tokio::test]
async fn custom_roles_are_judged_by_what_they_allow_after_not_actions() {
    let (inv, _src, _fake) = scan_of(Tenant::demo(), "NHI_AZ_E3").await;
    let ent = |guid: &str, scope: &str| {
        inv.entitlements
            .iter()
            .find(|e| {
                e.id == format!("{scope}/providers/Microsoft.Authorization/roleDefinitions/{guid}")
            })
            .cloned()
            .unwrap_or_else(|| panic!("{guid} at {scope} missing"))
    };
    // A Contributor clone at management-group scope: admin there.
    let operator = ent(ent_ids::ROLE_DEPLOY_OPERATOR, &mg());
    assert_eq!(operator.privilege, PrivilegeLevel::Admin);
    assert_eq!(operator.resources, vec![mg()]);
    // Authorization everything, every role-granting write taken out: write.
    let helper = ent(ent_ids::ROLE_ACCESS_HELPER, &sub());
    assert_eq!(helper.privilege, PrivilegeLevel::Write);
    assert_eq!(
        helper.actions,
        vec![
            "Microsoft.Authorization/*".to_string(),
            "*/read".to_string()
        ]
    );
}

/// What every fault below must leave in the inventory, apart from what it
/// blinds: every identity and credential, and the direct grants.
fn everything_else_is_seen(inv: &Inventory) {
    assert_eq!(inv.identities.len(), 10, "identities");
    assert_eq!(inv.credentials.len(), 10, "credentials");
    assert!(held(inv, ids::SP_LEGACY).contains(&(
        "Microsoft Graph: Directory.ReadWrite.All (application)".to_string(),
        PrivilegeLevel::Admin,
        None,
        false
    )));
}

fn has(inv: &Inventory, who: &str, name: &str, via_: Option<String>, eligible: bool) -> bool {
    held(inv, who)
        .iter()
        .any(|h| h.0 == name && h.2 == via_ && h.3 == eligible)
}

fn unseen(inv: &Inventory) -> Vec<Unseen> {
    inv.coverage.gaps.iter().map(|g| g.unseen.clone()).collect()
}

#[tokio::test]
async fn a_failing_membership_read_is_a_group_gap_and_the_rest_is_read() {
    let mut t = Tenant::demo();
    t.failing_memberships.insert(ids::SP_DEPLOYER.into());
    let (inv, _src, _fake) = scan_of(t, "NHI_AZ_E4").await;
    assert_eq!(unseen(&inv), vec![Unseen::GroupMemberships]);
    everything_else_is_seen(&inv);
    assert!(held(&inv, ids::SP_DEPLOYER).iter().all(|h| h.2.is_none()));
    assert!(has(
        &inv,
        ids::SP_DEPLOYER,
        &format!("Contributor at {}", sub()),
        None,
        false
    ));
    assert!(has(
        &inv,
        ids::SP_DEPLOYER,
        &format!("Owner at {}", sub()),
        None,
        true
    ));
}

#[tokio::test]
async fn a_failing_group_assignment_read_is_a_group_gap_and_the_rest_is_read() {
    let mut t = Tenant::demo();
    t.failing_group_assignments.insert(ent_ids::GROUP_CI.into());
    let (inv, _src, _fake) = scan_of(t, "NHI_AZ_E5").await;
    assert_eq!(unseen(&inv), vec![Unseen::GroupMemberships]);
    everything_else_is_seen(&inv);
    // The group's other roles are still read.
    assert!(has(
        &inv,
        ids::SP_DEPLOYER,
        "Privileged Role Administrator (directory role at /)",
        via(ent_ids::GROUP_TIER0),
        false
    ));
}

#[tokio::test]
async fn a_refused_directory_eligibility_is_an_eligibility_gap_and_the_rest_is_read() {
    let mut t = Tenant::demo();
    t.directory_eligibility_forbidden = true;
    let (inv, _src, _fake) = scan_of(t, "NHI_AZ_E6").await;
    assert_eq!(unseen(&inv), vec![Unseen::EligibleAssignments]);
    assert!(inv.coverage.gaps[0]
        .reason
        .contains("directory role eligibility"));
    everything_else_is_seen(&inv);
    assert!(has(
        &inv,
        ids::SP_DEPLOYER,
        &format!("Owner at {}", sub()),
        None,
        true
    ));
    assert!(has(
        &inv,
        ids::SP_DEPLOYER,
        "Privileged Role Administrator (directory role at /)",
        via(ent_ids::GROUP_TIER0),
        false
    ));
}

#[tokio::test]
async fn a_failing_rbac_eligibility_is_an_eligibility_gap_and_the_rest_is_read() {
    let mut t = Tenant::demo();
    t.rbac_eligibility_down = true;
    let (inv, _src, _fake) = scan_of(t, "NHI_AZ_E7").await;
    assert_eq!(unseen(&inv), vec![Unseen::EligibleAssignments]);
    assert!(inv.coverage.gaps[0].reason.contains(SUBSCRIPTION));
    everything_else_is_seen(&inv);
    assert!(has(
        &inv,
        ids::SP_DEPLOYER,
        "Global Administrator (directory role at /)",
        None,
        true
    ));
    assert!(has(
        &inv,
        ids::SP_DEPLOYER,
        &format!("Contributor at {}", sub()),
        None,
        false
    ));
}

#[tokio::test]
async fn refused_directory_roles_are_a_directory_gap_and_the_rest_is_read() {
    let mut t = Tenant::demo();
    t.directory_roles_forbidden = true;
    let (inv, _src, _fake) = scan_of(t, "NHI_AZ_E8").await;
    assert_eq!(unseen(&inv), vec![Unseen::DirectoryRoles]);
    everything_else_is_seen(&inv);
    assert!(has(
        &inv,
        ids::SP_DEPLOYER,
        &format!("Deployment Operator at {}", mg()),
        via(ent_ids::GROUP_CI),
        false
    ));
    assert!(has(
        &inv,
        ids::SP_DEPLOYER,
        &format!("Owner at {}", sub()),
        None,
        true
    ));
}

#[tokio::test]
async fn a_failing_subscription_is_its_gap_and_the_directory_is_read() {
    let mut t = Tenant::demo();
    t.failing_subscriptions.insert(SUBSCRIPTION.into());
    let (inv, _src, _fake) = scan_of(t, "NHI_AZ_E9").await;
    // The managed identity living in it: its federated credentials too.
    assert_eq!(
        unseen(&inv),
        vec![
            Unseen::Credentials {
                kind: nhi_contract::CredentialKind::Federated
            },
            Unseen::Subscription {
                id: SUBSCRIPTION.into()
            },
            Unseen::EligibleAssignments
        ]
    );
    // Every identity; every credential but the managed identity's federated
    // one, which lives in the failing subscription; the direct Graph grants.
    assert_eq!(inv.identities.len(), 10, "identities");
    assert_eq!(inv.credentials.len(), 9, "credentials");
    assert!(inv.credentials.iter().all(|c| c.identity != ids::MI_ORDERS));
    assert!(held(&inv, ids::SP_LEGACY).contains(&(
        "Microsoft Graph: Directory.ReadWrite.All (application)".to_string(),
        PrivilegeLevel::Admin,
        None,
        false
    )));
    assert!(has(
        &inv,
        ids::SP_DEPLOYER,
        "Privileged Role Administrator (directory role at /)",
        via(ent_ids::GROUP_TIER0),
        false
    ));
    assert!(has(
        &inv,
        ids::SP_DEPLOYER,
        "Global Administrator (directory role at /)",
        None,
        true
    ));
}

#[tokio::test]
async fn refused_sign_in_reports_are_a_usage_gap_and_every_entitlement_is_read() {
    let mut t = Tenant::demo();
    t.reports_forbidden = true;
    let (inv, _src, _fake) = scan_of(t, "NHI_AZ_E10").await;
    assert_eq!(unseen(&inv), vec![Unseen::Usage]);
    everything_else_is_seen(&inv);
    assert!(has(
        &inv,
        ids::SP_DEPLOYER,
        "Privileged Role Administrator (directory role at /)",
        via(ent_ids::GROUP_TIER0),
        false
    ));
    assert!(has(
        &inv,
        ids::SP_DEPLOYER,
        &format!("Owner at {}", sub()),
        None,
        true
    ));
}

fn detach(who: &str, ents: &[&str]) -> ActionRequest {
    ActionRequest {
        operation: Operation::DetachEntitlements,
        provider: Provider::Azure,
        identity_id: who.into(),
        credential_id: None,
        credential_kind: None,
        entitlements: ents.iter().map(|s| s.to_string()).collect(),
        federated: None,
    }
}

fn writes(fake: &FakeTenant) -> Vec<(String, String)> {
    fake.tenant()
        .writes()
        .into_iter()
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect()
}

#[tokio::test]
async fn detaching_a_role_held_directly_and_through_a_group_removes_only_the_direct_one() {
    let mut t = Tenant::demo();
    // gh-actions-deployer also holds Privileged Role Administrator itself.
    t.directory_role_assignments.push(serde_json::json!({
        "id": "lAPpYvVpN0KRkAEhdxReEJC2sEqbR_9Hlqk1ihjq0aY-3", "principalId": ids::SP_DEPLOYER,
        "roleDefinitionId": ent_ids::DIR_PRIVILEGED_ROLE_ADMIN, "directoryScopeId": "/"}));
    let members_before = t.group_members.clone();
    let fake = FakeTenant::start(t).await.expect("fake");
    let rem = AzureRemediator::new(&config(&fake, "NHI_AZ_E11"));
    let ent = format!(
        "/roleManagement/directory/roleDefinitions/{}",
        ent_ids::DIR_PRIVILEGED_ROLE_ADMIN
    );
    let out = rem
        .apply(&detach(ids::SP_DEPLOYER, &[&ent]))
        .await
        .expect("detached");
    assert_eq!(
        writes(&fake),
        vec![(
            "DELETE".to_string(),
            "/v1.0/roleManagement/directory/roleAssignments/lAPpYvVpN0KRkAEhdxReEJC2sEqbR_9Hlqk1ihjq0aY-3".to_string()
        )]
    );
    let t = fake.tenant();
    assert!(t
        .directory_role_assignments
        .iter()
        .any(|a| a["id"] == ent_ids::DIR_ASSIGN_TIER0));
    assert_eq!(t.group_members, members_before, "no membership touched");
    drop(t);
    assert_eq!(
        out.after,
        serde_json::json!([{
            "entitlement": ent, "present": false,
            "still_held_via": [format!("group:{}", ent_ids::GROUP_TIER0)]
        }])
    );
}

#[tokio::test]
async fn detaching_a_role_held_only_through_a_group_or_as_eligible_is_refused() {
    let fake = FakeTenant::start(Tenant::demo()).await.expect("fake");
    let rem = AzureRemediator::new(&config(&fake, "NHI_AZ_E12"));
    let operator = format!(
        "{}/providers/Microsoft.Authorization/roleDefinitions/{}",
        mg(),
        ent_ids::ROLE_DEPLOY_OPERATOR
    );
    let tier0 = format!(
        "/roleManagement/directory/roleDefinitions/{}",
        ent_ids::DIR_PRIVILEGED_ROLE_ADMIN
    );
    let default_access = format!(
        "c1000000-0000-4000-8000-000000000001/approles/{}",
        ent_ids::APP_ROLE_DEFAULT
    );
    let global_admin = format!(
        "/roleManagement/directory/roleDefinitions/{}",
        ent_ids::DIR_GLOBAL_ADMIN
    );
    let owner = format!(
        "{}/providers/Microsoft.Authorization/roleDefinitions/{}",
        sub(),
        ent_ids::ROLE_OWNER
    );
    let cases = [
        (ids::SP_DEPLOYER, operator.as_str(), "group:"),
        (ids::SP_DEPLOYER, tier0.as_str(), "group:"),
        (ids::SP_DEPLOYER, default_access.as_str(), "group:"),
        (ids::SP_DEPLOYER, global_admin.as_str(), "eligible"),
        (ids::SP_DEPLOYER, owner.as_str(), "eligible"),
    ];
    for (who, ent, how) in cases {
        let err = rem.apply(&detach(who, &[ent])).await.expect_err("refused");
        let m = err.to_string();
        assert!(m.contains("not detached") && m.contains(how), "{ent}: {m}");
    }
    // Refused before any write, even beside a role it may detach.
    let contributor = format!(
        "{}/providers/Microsoft.Authorization/roleDefinitions/{}",
        sub(),
        nhi_azure::testing::ROLE_CONTRIBUTOR
    );
    assert!(rem
        .apply(&detach(ids::SP_DEPLOYER, &[&contributor, &operator]))
        .await
        .is_err());
    assert!(writes(&fake).is_empty(), "{:?}", writes(&fake));
    // A group's assignment named by its id is not the principal's own.
    let by_id = format!(
        "{}/providers/Microsoft.Authorization/roleAssignments/4e000000-0000-4000-8000-0000000000f4",
        sub()
    );
    let err = rem
        .apply(&detach(ids::SP_DEPLOYER, &[&by_id]))
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("not detached"), "{err}");
    assert!(writes(&fake).is_empty());
}
