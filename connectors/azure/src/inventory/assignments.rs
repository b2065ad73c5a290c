//! Role assignments in the directory: application permissions (app role
//! assignments), Entra ID directory roles and delegated permission grants
//! held by the kept service principals, each as an [`Entitlement`] held
//! through a [`Grant`].

use std::collections::{BTreeSet, HashMap};

use futures_util::stream::{self, StreamExt};
use nhi_contract::{Entitlement, Gap, Grant, Inventory, Unseen};

use super::groups::Memberships;
use super::{Held, Scan};
use crate::client::{Api, ApiError};
use crate::model::{self, ts};
use crate::privilege::{
    app_role_privilege, delegated_privilege, directory_role_privilege, AAD_GRAPH_APP_ID,
    MICROSOFT_GRAPH_APP_ID,
};

/// Service principals that assignments and grants point at, by object id,
/// with their app roles.
pub(super) type Resources = HashMap<String, model::ResourceSp>;

/// Entitlement id of an application permission: `{resource appId}/approles/{appRoleId}`.
pub(crate) fn app_role_entitlement(resource_app_id: &str, app_role_id: &str) -> String {
    format!("{resource_app_id}/approles/{app_role_id}")
}

/// Entitlement id of a directory role at a directory scope:
/// `/roleManagement/directory/roleDefinitions/{templateId}` (`@{scope}` when
/// not tenant-wide).
pub(crate) fn directory_role_entitlement(scope: &str, template: &str) -> String {
    let base = format!("/roleManagement/directory/roleDefinitions/{template}");
    if scope == "/" {
        base
    } else {
        format!("{base}@{scope}")
    }
}

/// `microsoft.graph/user.read.all` for Graph; `{appId}/{value}` otherwise
/// (lowercase, as permission names are case-insensitive).
fn action_name(resource_app_id: &str, value: &str) -> String {
    if resource_app_id == MICROSOFT_GRAPH_APP_ID {
        format!("microsoft.graph/{}", value.to_ascii_lowercase())
    } else if resource_app_id == AAD_GRAPH_APP_ID {
        format!("aad.graph/{}", value.to_ascii_lowercase())
    } else {
        format!("{resource_app_id}/{}", value.to_ascii_lowercase())
    }
}

fn resource_uri(resource_app_id: &str, resource_id: &str, graph_url: &str) -> String {
    if resource_app_id == MICROSOFT_GRAPH_APP_ID {
        graph_url.to_string()
    } else {
        resource_id.to_string()
    }
}

impl Scan<'_> {
    /// The tenant's delegated permission grants, every page.
    pub(super) async fn delegated_grants(&self) -> Result<Vec<model::PermissionGrant>, ApiError> {
        self.client
            .list(Api::Graph, "/v1.0/oauth2PermissionGrants")
            .await
    }

    /// Each kept service principal's app role assignments, with bounded
    /// concurrency; any failing fails the scan.
    pub(super) async fn app_role_assignments(
        &self,
        sps: &[model::ServicePrincipal],
    ) -> Result<Vec<model::AppRoleAssignment>, ApiError> {
        let c = self.client;
        let assignments: Vec<Result<Vec<model::AppRoleAssignment>, ApiError>> =
            stream::iter(sps.iter().map(|s| s.id.clone()).collect::<Vec<_>>())
                .map(|sp| async move {
                    c.list(
                        Api::Graph,
                        &format!("/v1.0/servicePrincipals/{sp}/appRoleAssignments"),
                    )
                    .await
                })
                .buffer_unordered(self.concurrency())
                .collect()
                .await;
        let mut flat = Vec::new();
        for r in assignments {
            flat.extend(r?);
        }
        Ok(flat)
    }

    /// Each resource an assignment or a kept principal's grant points at,
    /// read once, with bounded concurrency.
    pub(super) async fn resources(
        &self,
        assigned: &[model::AppRoleAssignment],
        grants: &[model::PermissionGrant],
        kept: &BTreeSet<&str>,
    ) -> Result<Resources, ApiError> {
        let c = self.client;
        let mut wanted: BTreeSet<String> = assigned.iter().map(|a| a.resource_id.clone()).collect();
        wanted.extend(
            grants
                .iter()
                .filter(|g| kept.contains(g.client_id.as_str()))
                .map(|g| g.resource_id.clone()),
        );
        let fetched: Vec<Result<model::ResourceSp, ApiError>> =
            stream::iter(wanted.into_iter().collect::<Vec<_>>())
                .map(|r| async move {
                    c.get(
                        Api::Graph,
                        &format!(
                            "/v1.0/servicePrincipals/{r}?$select=id,appId,displayName,appRoles"
                        ),
                    )
                    .await
                })
                .buffer_unordered(self.concurrency())
                .collect()
                .await;
        let mut by_id = Resources::new();
        for r in fetched {
            let r = r?;
            by_id.insert(r.id.clone(), r);
        }
        Ok(by_id)
    }

    /// Application permissions held by kept service principals, directly
    /// or through a group they are a member of.
    pub(super) fn push_app_roles(
        &self,
        inv: &mut Inventory,
        held: &mut Held,
        assigned: &[model::AppRoleAssignment],
        resources: &Resources,
        (kept, groups): (&BTreeSet<&str>, &Memberships),
    ) {
        for a in assigned {
            let holders = groups.holders(&a.principal_id, kept, false);
            if holders.is_empty() {
                continue;
            }
            let res = resources.get(&a.resource_id);
            let res_app = res.map(|r| r.app_id.as_str()).unwrap_or(&a.resource_id);
            let res_name = res
                .and_then(|r| r.display_name.clone())
                .or_else(|| a.resource_display_name.clone())
                .unwrap_or_else(|| a.resource_id.clone());
            let value = res
                .and_then(|r| r.app_roles.iter().find(|x| x.id == a.app_role_id))
                .and_then(|x| x.value.clone())
                .unwrap_or_else(|| a.app_role_id.clone());
            // The permission itself, the same in every tenant: what an
            // approval names (`scope.entitlements`), as in snapshots.
            let entitlement = Entitlement {
                id: app_role_entitlement(res_app, &a.app_role_id),
                name: format!("{res_name}: {value} (application)"),
                actions: vec![action_name(res_app, &value)],
                resources: vec![resource_uri(
                    res_app,
                    &a.resource_id,
                    &self.client.graph_url,
                )],
                privilege: app_role_privilege(res_app, &value),
            };
            for (who, how) in holders {
                held.add(inv, &who, entitlement.clone(), how);
            }
        }
    }

    async fn directory_roles(
        &self,
    ) -> Result<
        (
            HashMap<String, model::DirectoryRoleDefinition>,
            Vec<model::DirectoryRoleAssignment>,
        ),
        ApiError,
    > {
        let defs: Vec<model::DirectoryRoleDefinition> = self
            .client
            .list(
                Api::Graph,
                "/v1.0/roleManagement/directory/roleDefinitions?$select=id,displayName,templateId,rolePermissions",
            )
            .await?;
        let ras: Vec<model::DirectoryRoleAssignment> = self
            .client
            .list(
                Api::Graph,
                "/v1.0/roleManagement/directory/roleAssignments?$select=id,principalId,roleDefinitionId,directoryScopeId",
            )
            .await?;
        Ok((defs.into_iter().map(|d| (d.id.clone(), d)).collect(), ras))
    }

    /// The directory roles kept principals are eligible for now (PIM
    /// schedule instances: current eligibility, not future schedules).
    async fn directory_eligibility(&self) -> Result<Vec<model::DirectoryEligibility>, ApiError> {
        self.client
            .list(
                Api::Graph,
                "/v1.0/roleManagement/directory/roleEligibilityScheduleInstances?$select=id,principalId,roleDefinitionId,directoryScopeId,endDateTime",
            )
            .await
    }

    /// Entra ID directory roles held by kept principals, directly or
    /// through a group, active or eligible. The role assignments refused
    /// (the scanner lacks RoleManagement.Read.Directory) → a `directory
    /// roles` gap; the eligibility refused or failing → an `eligible
    /// assignments` gap (Microsoft documents no answer meaning "this
    /// tenant has no PIM", so a tenant without the licence shows the gap
    /// too, with the service's reason). Neither fails the scan.
    pub(super) async fn push_directory_roles(
        &self,
        inv: &mut Inventory,
        held: &mut Held,
        (kept, groups): (&BTreeSet<&str>, &Memberships),
    ) {
        let defs = match self.directory_roles().await {
            Ok((defs, ras)) => {
                for ra in &ras {
                    let scope = ra.directory_scope_id.as_deref().unwrap_or("/");
                    for (who, how) in groups.holders(&ra.principal_id, kept, false) {
                        let e = directory_role(&defs, &ra.role_definition_id, scope);
                        held.add(inv, &who, e, how);
                    }
                }
                defs
            }
            Err(e) => {
                tracing::warn!(source = %self.cfg.name, error = %e, "directory roles not read");
                inv.coverage.gaps.push(Gap {
                    unseen: Unseen::DirectoryRoles,
                    reason: e.to_string(),
                });
                HashMap::new()
            }
        };
        match self.directory_eligibility().await {
            Ok(list) => {
                for el in list {
                    let ended = ts(el.end_date_time.as_deref()).is_some_and(|end| end <= self.now);
                    if ended {
                        continue;
                    }
                    let scope = el.directory_scope_id.as_deref().unwrap_or("/");
                    for (who, how) in groups.holders(&el.principal_id, kept, true) {
                        let e = directory_role(&defs, &el.role_definition_id, scope);
                        held.add(inv, &who, e, how);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(source = %self.cfg.name, error = %e, "directory role eligibility not read");
                inv.coverage.gaps.push(Gap {
                    unseen: Unseen::EligibleAssignments,
                    reason: format!("directory role eligibility: {e}"),
                });
            }
        }
    }

    /// Delegated permissions of kept principals: one entitlement per grant,
    /// held `via` "delegated" (bounded by the signed-in user's own rights).
    pub(super) fn push_delegated(
        &self,
        inv: &mut Inventory,
        grants: &[model::PermissionGrant],
        resources: &Resources,
        kept: &BTreeSet<&str>,
    ) {
        for g in grants
            .iter()
            .filter(|g| kept.contains(g.client_id.as_str()))
        {
            let res = resources.get(&g.resource_id);
            let res_app = res.map(|r| r.app_id.as_str()).unwrap_or(&g.resource_id);
            let res_name = res
                .and_then(|r| r.display_name.clone())
                .unwrap_or_else(|| g.resource_id.clone());
            let scopes: Vec<&str> = g
                .scope
                .as_deref()
                .unwrap_or("")
                .split_whitespace()
                .collect();
            let id = format!("oauth2PermissionGrant:{}", g.id);
            inv.entitlements.push(Entitlement {
                id: id.clone(),
                name: format!(
                    "{res_name}: {} (delegated, {})",
                    scopes.join(" "),
                    g.consent_type.as_deref().unwrap_or("unknown consent")
                ),
                actions: scopes.iter().map(|s| action_name(res_app, s)).collect(),
                resources: vec![resource_uri(
                    res_app,
                    &g.resource_id,
                    &self.client.graph_url,
                )],
                privilege: delegated_privilege(&scopes),
            });
            inv.grants.push(Grant {
                identity: g.client_id.clone(),
                entitlement: id,
                via: Some("delegated".into()),
                eligible: false,
                last_used: None,
            });
        }
    }
}

/// A directory role at a directory scope as an entitlement, named from its
/// definition when it was read.
fn directory_role(
    defs: &HashMap<String, model::DirectoryRoleDefinition>,
    role_definition_id: &str,
    scope: &str,
) -> Entitlement {
    let def = defs.get(role_definition_id);
    let template = def
        .and_then(|d| d.template_id.clone())
        .unwrap_or_else(|| role_definition_id.to_string());
    let name = def
        .and_then(|d| d.display_name.clone())
        .unwrap_or_else(|| role_definition_id.to_string());
    let actions: Vec<String> = def
        .map(|d| {
            d.role_permissions
                .iter()
                .flat_map(|p| p.allowed_resource_actions.iter().cloned())
                .collect()
        })
        .unwrap_or_default();
    Entitlement {
        id: directory_role_entitlement(scope, &template),
        name: format!("{name} (directory role at {scope})"),
        privilege: directory_role_privilege(&template, scope, &actions),
        actions,
        resources: vec![scope.to_string()],
    }
}
