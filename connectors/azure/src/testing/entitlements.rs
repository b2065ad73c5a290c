//! The demo tenant's indirect entitlements, in the shapes of Microsoft's
//! documented examples (saved under `testdata/docs/ent-*.json`): groups and
//! their members (`transitiveMemberOf` cast to groups), a group's app role
//! assignments, directory roles held by a role-assignable group, current
//! PIM eligibility (Graph `roleEligibilityScheduleInstances`, ARM
//! `roleEligibilityScheduleInstances` 2020-10-01) and custom RBAC roles
//! with `notActions`.
//!
//! Everything here is held through a group or as eligible, and by
//! gh-actions-deployer (already admin-equivalent and over its approved
//! scope), so the demo's direct, active grants and its findings are what
//! they were.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::server::{graph_error, page, project, Req};
use super::tenant::{ago, Tenant};
use super::{ids, SUBSCRIPTION};

/// Ids of the demo's indirect entitlements, for assertions.
pub mod ent_ids {
    /// Role-assignable group `Tier0 Automation`: holds Privileged Role
    /// Administrator tenant-wide and the `Access Helper` custom role on the
    /// subscription. Its member: group `CI Runners`.
    pub const GROUP_TIER0: &str = "9f000000-0000-4000-8000-0000000000a1";
    /// Group `CI Runners` (member of Tier0): holds the default access app
    /// role on payments-api and `Deployment Operator` at management-group
    /// scope. Its member: gh-actions-deployer's service principal.
    pub const GROUP_CI: &str = "9f000000-0000-4000-8000-0000000000a2";
    /// The management group `Deployment Operator` is assigned at.
    pub const MANAGEMENT_GROUP: &str = "contoso-platform";
    /// Custom role cloning Contributor (`*` less Authorization writes).
    pub const ROLE_DEPLOY_OPERATOR: &str = "7c1e0000-0000-4000-8000-0000000000d1";
    /// Custom role allowing `Microsoft.Authorization/*` less every
    /// role-granting write: not admin.
    pub const ROLE_ACCESS_HELPER: &str = "7c1e0000-0000-4000-8000-0000000000d2";
    /// Built-in Owner.
    pub const ROLE_OWNER: &str = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635";
    /// Directory role template: Global Administrator.
    pub const DIR_GLOBAL_ADMIN: &str = "62e90394-69f5-4237-9190-012177145e10";
    /// Directory role template: Privileged Role Administrator.
    pub const DIR_PRIVILEGED_ROLE_ADMIN: &str = "e8611ab8-c189-46e8-94e1-60213ab1f814";
    /// Tier0's directory role assignment.
    pub const DIR_ASSIGN_TIER0: &str = "lAPpYvVpN0KRkAEhdxReENRBT2NrMhBJhFxG8t6Frjk-1";
    /// The default access app role (`00000000-…`) CI Runners holds.
    pub const APP_ROLE_DEFAULT: &str = "00000000-0000-0000-0000-000000000000";
}

use ent_ids::*;

fn group(id: &str, name: &str, description: &str, role_assignable: bool) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.group",
        "id": id,
        "createdDateTime": ago(400),
        "description": description,
        "displayName": name,
        "groupTypes": [],
        "isAssignableToRole": role_assignable,
        "mailEnabled": false,
        "securityEnabled": true,
    })
}

fn custom_role(guid: &str, name: &str, actions: &[&str], not_actions: &[&str]) -> Value {
    json!({
        "id": format!("/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Authorization/roleDefinitions/{guid}"),
        "name": guid,
        "type": "Microsoft.Authorization/roleDefinitions",
        "properties": {
            "roleName": name,
            "type": "CustomRole",
            "description": format!("{name} (custom)"),
            "assignableScopes": [format!("/subscriptions/{SUBSCRIPTION}")],
            "permissions": [{"actions": actions, "notActions": not_actions, "dataActions": [], "notDataActions": []}],
        }
    })
}

fn group_assignment(name: &str, scope: &str, role_guid: &str, group: &str) -> Value {
    json!({
        "id": format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{name}"),
        "name": name,
        "type": "Microsoft.Authorization/roleAssignments",
        "properties": {
            "roleDefinitionId": format!("/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Authorization/roleDefinitions/{role_guid}"),
            "principalId": group,
            "principalType": "Group",
            "scope": scope,
        }
    })
}

fn within(days: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::days(days))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Add the indirect entitlements to the demo tenant.
pub(super) fn extend_demo(t: &mut Tenant) {
    let sub = format!("/subscriptions/{SUBSCRIPTION}");
    let mg = format!("/providers/Microsoft.Management/managementGroups/{MANAGEMENT_GROUP}");
    t.groups = vec![
        group(
            GROUP_TIER0,
            "Tier0 Automation",
            "Role-assignable group for tier-0 automation",
            true,
        ),
        group(GROUP_CI, "CI Runners", "Pipelines that deploy", false),
    ];
    t.group_members = [
        (GROUP_TIER0.to_string(), vec![GROUP_CI.to_string()]),
        (GROUP_CI.to_string(), vec![ids::SP_DEPLOYER.to_string()]),
    ]
    .into();
    t.group_app_role_assignments = vec![json!({
        "id": "1p-Bn5OPWEeHwx-3N0CjFc0K3PTk70pIgJbbBJAuHM0", "deletedDateTime": null,
        "appRoleId": APP_ROLE_DEFAULT, "createdDateTime": ago(200),
        "principalDisplayName": "CI Runners", "principalId": GROUP_CI, "principalType": "Group",
        "resourceDisplayName": "payments-api", "resourceId": ids::SP_PAYMENTS,
    })];
    t.directory_roles.push(json!({"id": DIR_PRIVILEGED_ROLE_ADMIN, "description": "Can manage role assignments in Microsoft Entra ID, and all aspects of Privileged Identity Management.",
        "displayName": "Privileged Role Administrator", "isBuiltIn": true, "isEnabled": true,
        "templateId": DIR_PRIVILEGED_ROLE_ADMIN, "version": "1",
        "rolePermissions": [{"allowedResourceActions": ["microsoft.directory/roleAssignments/allProperties/allTasks", "microsoft.directory/roleDefinitions/allProperties/allTasks"], "condition": null}]}));
    t.directory_roles.push(json!({"id": DIR_GLOBAL_ADMIN, "description": "Can manage all aspects of Microsoft Entra ID and Microsoft services that use Microsoft Entra identities.",
        "displayName": "Global Administrator", "isBuiltIn": true, "isEnabled": true,
        "templateId": DIR_GLOBAL_ADMIN, "version": "1",
        "rolePermissions": [{"allowedResourceActions": ["microsoft.directory/applications/allProperties/allTasks", "microsoft.directory/roleAssignments/allProperties/allTasks"], "condition": null}]}));
    t.directory_role_assignments
        .push(json!({"id": DIR_ASSIGN_TIER0, "principalId": GROUP_TIER0,
        "roleDefinitionId": DIR_PRIVILEGED_ROLE_ADMIN, "directoryScopeId": "/"}));
    t.directory_eligibility = vec![
        // gh-actions-deployer may activate Global Administrator for a year.
        json!({"id": "8MYkhImhnkm70CbBdTyW1BbHHAdHgZdDpbqyEFlRzAs-1-e", "principalId": ids::SP_DEPLOYER,
               "roleDefinitionId": DIR_GLOBAL_ADMIN, "directoryScopeId": "/", "appScopeId": null,
               "startDateTime": ago(30), "endDateTime": within(335), "memberType": "Direct",
               "roleEligibilityScheduleId": "77f71919-62f3-4d0c-9f88-0a0391b665cd"}),
        // An eligibility that ended (the documented example's dates): not held.
        json!({"id": "9NZliJmhnkm70CbBdTyW1BbHHAdHgZdDpbqyEFlRzAs-1-e", "principalId": ids::SP_LEGACY,
               "roleDefinitionId": DIR_GLOBAL_ADMIN, "directoryScopeId": "/", "appScopeId": null,
               "startDateTime": "2022-04-12T14:44:50.287Z", "endDateTime": "2024-04-10T00:00:00Z", "memberType": "Direct",
               "roleEligibilityScheduleId": "88f71919-62f3-4d0c-9f88-0a0391b665cd"}),
    ];
    // Owner is the demo tenant's own (tenant.rs).
    t.role_definitions.push(custom_role(
        ROLE_DEPLOY_OPERATOR,
        "Deployment Operator",
        &["*"],
        &[
            "Microsoft.Authorization/*/Delete",
            "Microsoft.Authorization/*/Write",
            "Microsoft.Authorization/elevateAccess/Action",
        ],
    ));
    t.role_definitions.push(custom_role(
        ROLE_ACCESS_HELPER,
        "Access Helper",
        &["Microsoft.Authorization/*", "*/read"],
        &[
            "Microsoft.Authorization/roleAssignments/write",
            "Microsoft.Authorization/roleDefinitions/write",
            "Microsoft.Authorization/roleAssignmentScheduleRequests/*",
            "Microsoft.Authorization/roleEligibilityScheduleRequests/*",
            "Microsoft.Authorization/*/Delete",
        ],
    ));
    t.role_assignments.push(group_assignment(
        "4e000000-0000-4000-8000-0000000000f3",
        &mg,
        ROLE_DEPLOY_OPERATOR,
        GROUP_CI,
    ));
    t.role_assignments.push(group_assignment(
        "4e000000-0000-4000-8000-0000000000f4",
        &sub,
        ROLE_ACCESS_HELPER,
        GROUP_TIER0,
    ));
    // gh-actions-deployer may activate Owner on the subscription.
    t.rbac_eligibility = vec![json!({
        "properties": {
            "scope": sub,
            "roleDefinitionId": format!("/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Authorization/roleDefinitions/{ROLE_OWNER}"),
            "principalId": ids::SP_DEPLOYER, "principalType": "ServicePrincipal", "status": "Provisioned",
            "roleEligibilityScheduleId": format!("/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Authorization/RoleEligibilitySchedules/b1477448-2cc6-4ceb-93b4-54a202a89413"),
            "startDateTime": ago(10), "endDateTime": within(355), "memberType": "Direct", "createdOn": ago(10),
            "condition": null, "conditionVersion": null,
            "expandedProperties": {
                "scope": {"id": sub, "displayName": "Contoso Production", "type": "subscription"},
                "roleDefinition": {"id": format!("/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Authorization/roleDefinitions/{ROLE_OWNER}"), "displayName": "Owner", "type": "BuiltInRole"},
                "principal": {"id": ids::SP_DEPLOYER, "displayName": "gh-actions-deployer", "email": null, "type": "ServicePrincipal"}
            }
        },
        "name": "21e4b59a-0499-4fe0-a3c3-43a3055b773a",
        "id": format!("/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Authorization/RoleEligibilityScheduleInstances/21e4b59a-0499-4fe0-a3c3-43a3055b773a"),
        "type": "Microsoft.Authorization/RoleEligibilityScheduleInstances"
    })];
}

impl Tenant {
    /// Group ids `member` (a service principal or group) belongs to,
    /// directly or through nested groups, each once.
    pub fn transitive_groups(&self, member: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut todo = vec![member.to_string()];
        while let Some(m) = todo.pop() {
            for (g, members) in &self.group_members {
                if members.contains(&m) && !out.contains(g) {
                    out.push(g.clone());
                    todo.push(g.clone());
                }
            }
        }
        out.sort();
        out
    }
}

fn principal_filter(r: &Req) -> Option<String> {
    r.q.get("$filter")
        .and_then(|f| f.strip_prefix("principalId eq '"))
        .map(|p| p.trim_end_matches('\'').to_string())
}

fn server_error() -> Response {
    graph_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "UnknownError",
        "Encountered internal server error.",
    )
}

/// The Graph routes of groups and eligibility, if `r` is one (each under
/// its fault switch).
pub(super) fn route_graph(t: &Tenant, r: &Req) -> Option<Response> {
    if r.method.as_str() != "GET" {
        return None;
    }
    Some(match r.segs.as_slice() {
        ["v1.0", "servicePrincipals", sp, "transitiveMemberOf", "microsoft.graph.group"] => {
            if t.failing_memberships.contains(*sp) {
                return Some(server_error());
            }
            let ids = t.transitive_groups(sp);
            let items = t
                .groups
                .iter()
                .filter(|g| {
                    g["id"]
                        .as_str()
                        .is_some_and(|id| ids.iter().any(|x| x == id))
                })
                .map(|g| project(g, &r.q, false))
                .collect();
            page(r.next_base, r.path, &r.q, items, r.size, false)
        }
        ["v1.0", "groups", g, "appRoleAssignments"] => {
            if t.failing_group_assignments.contains(*g) {
                return Some(server_error());
            }
            let items = t
                .group_app_role_assignments
                .iter()
                .filter(|a| a["principalId"] == *g)
                .cloned()
                .collect();
            page(r.next_base, r.path, &r.q, items, r.size, false)
        }
        ["v1.0", "roleManagement", "directory", "roleEligibilityScheduleInstances"] => {
            if t.directory_eligibility_forbidden {
                return Some(graph_error(
                    StatusCode::FORBIDDEN,
                    "Authorization_RequestDenied",
                    "Insufficient privileges to complete the operation.",
                ));
            }
            let who = principal_filter(r);
            let items = t
                .directory_eligibility
                .iter()
                .filter(|e| who.as_ref().is_none_or(|p| e["principalId"] == p.as_str()))
                .map(|e| project(e, &r.q, false))
                .collect();
            page(r.next_base, r.path, &r.q, items, r.size, false)
        }
        _ => return None,
    })
}

/// The ARM eligibility route (api-version 2020-10-01), if `r` is it:
/// instances at, above and below the subscription.
pub(super) fn route_arm(t: &Tenant, r: &Req) -> Option<Response> {
    let ["subscriptions", sub, "providers", "Microsoft.Authorization", "roleEligibilityScheduleInstances"] =
        r.segs.as_slice()
    else {
        return None;
    };
    if r.method.as_str() != "GET" {
        return None;
    }
    let arm_err = |status: StatusCode, code: &str, message: &str| {
        let b = json!({"error": {"code": code, "message": message}});
        (
            status,
            [("content-type", "application/json")],
            b.to_string(),
        )
            .into_response()
    };
    if r.q.get("api-version").map(String::as_str) != Some("2020-10-01") {
        return Some(arm_err(
            StatusCode::BAD_REQUEST,
            "NoRegisteredProviderFound",
            "No registered resource provider found for location and API version.",
        ));
    }
    if t.rbac_eligibility_down || t.failing_subscriptions.contains(*sub) {
        return Some(arm_err(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "Encountered internal server error.",
        ));
    }
    let who = principal_filter(r);
    let items = t
        .rbac_eligibility
        .iter()
        .filter(|e| {
            let scope = e["properties"]["scope"].as_str().unwrap_or("");
            scope.starts_with(&format!("/subscriptions/{sub}"))
                || scope.starts_with("/providers/Microsoft.Management")
                || scope == "/"
        })
        .filter(|e| {
            who.as_ref()
                .is_none_or(|p| e["properties"]["principalId"] == p.as_str())
        })
        .cloned()
        .collect();
    Some(page(super::ARM, r.path, &r.q, items, r.size, true))
}
