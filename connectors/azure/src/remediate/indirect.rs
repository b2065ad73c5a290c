//! How a service principal holds an entitlement other than by a direct,
//! active assignment: through a group it is a member of, or as eligible
//! (PIM). Detaching never acts on those through the direct-assignment
//! path — removing the principal from a group would take every other role
//! the group gives, and an eligible assignment is removed through a
//! schedule request, not a delete — so `detach` asks here first: an
//! entitlement held only these ways is refused, one also held directly has
//! only its direct assignment removed and the outcome says what remains.

use nhi_contract::SourceError;
use serde_json::Value;

use super::readback::{check_id, invalid};
use super::AzureRemediator;
use crate::client::Api;
use crate::model::{
    last_segment, AppRoleAssignment, DirectoryEligibility, DirectoryRoleAssignment, Group,
    RbacEligibility, RoleAssignment, ARM_API_VERSION, ARM_PIM_API_VERSION,
};

/// An entitlement id as the inventory names it, by the API that assigns it.
pub(super) enum RoleRef<'a> {
    /// `{scope}/providers/Microsoft.Authorization/roleDefinitions/{guid}`.
    Rbac { scope: &'a str, guid: &'a str },
    /// `/roleManagement/directory/roleDefinitions/{template}[@scope]`.
    Directory { template: &'a str, scope: &'a str },
    /// `{resourceAppId}/approles/{appRoleId}`.
    AppRole {
        resource_app: &'a str,
        role: &'a str,
    },
}

impl<'a> RoleRef<'a> {
    /// The kind of a role entitlement; `None` for what is not a role
    /// (a role assignment id, a delegated grant).
    pub(super) fn of(ent: &'a str) -> Option<RoleRef<'a>> {
        if let Some((scope, guid)) =
            ent.split_once("/providers/Microsoft.Authorization/roleDefinitions/")
        {
            return Some(RoleRef::Rbac { scope, guid });
        }
        if let Some(rest) = ent.strip_prefix("/roleManagement/directory/roleDefinitions/") {
            let (template, scope) = rest.split_once('@').unwrap_or((rest, "/"));
            return Some(RoleRef::Directory { template, scope });
        }
        ent.split_once("/approles/")
            .map(|(resource_app, role)| RoleRef::AppRole { resource_app, role })
    }
}

fn same_scope(a: Option<&str>, b: &str) -> bool {
    a.unwrap_or_default()
        .trim_end_matches('/')
        .eq_ignore_ascii_case(b.trim_end_matches('/'))
}

impl AzureRemediator {
    /// The groups `sp` is a transitive member of.
    pub(super) async fn groups_of(&self, sp: &str) -> Result<Vec<String>, SourceError> {
        let groups: Vec<Group> = self
            .c()?
            .list(
                Api::Graph,
                &format!(
                    "/v1.0/servicePrincipals/{}/transitiveMemberOf/microsoft.graph.group?$select=id",
                    check_id(sp)?
                ),
            )
            .await?;
        Ok(groups.into_iter().map(|g| g.id).collect())
    }

    /// How `sp` (member of `groups`) holds `held` other than directly and
    /// actively: `group:{id}`, `eligible`, `eligible via group:{id}`.
    pub(super) async fn held_otherwise(
        &self,
        sp: &str,
        groups: &[String],
        held: &RoleRef<'_>,
    ) -> Result<Vec<String>, SourceError> {
        let c = self.c()?;
        let is_group = |p: &str| groups.iter().any(|g| g.eq_ignore_ascii_case(p));
        let how = |principal: &str, eligible: bool| -> Option<String> {
            let group = is_group(principal).then(|| format!("group:{principal}"));
            match (group, eligible, principal.eq_ignore_ascii_case(sp)) {
                (Some(g), true, _) => Some(format!("eligible via {g}")),
                (Some(g), false, _) => Some(g),
                (None, true, true) => Some("eligible".into()),
                _ => None,
            }
        };
        let mut out: Vec<String> = Vec::new();
        match held {
            RoleRef::Rbac { scope, guid } => {
                for sub in &self.config.subscriptions {
                    let base = format!(
                        "/subscriptions/{}/providers/Microsoft.Authorization",
                        check_id(sub)?
                    );
                    let active: Vec<RoleAssignment> = c
                        .list(
                            Api::Arm,
                            &format!("{base}/roleAssignments?api-version={ARM_API_VERSION}"),
                        )
                        .await?;
                    for ra in active {
                        let p = &ra.properties;
                        if same_scope(p.scope.as_deref(), scope)
                            && last_segment(&p.role_definition_id).eq_ignore_ascii_case(guid)
                        {
                            out.extend(how(&p.principal_id, false));
                        }
                    }
                    let eligible: Vec<RbacEligibility> = c
                        .list(
                            Api::Arm,
                            &format!(
                                "{base}/roleEligibilityScheduleInstances?api-version={ARM_PIM_API_VERSION}"
                            ),
                        )
                        .await?;
                    for el in eligible {
                        let p = &el.properties;
                        if same_scope(p.scope.as_deref(), scope)
                            && last_segment(&p.role_definition_id).eq_ignore_ascii_case(guid)
                        {
                            out.extend(how(&p.principal_id, true));
                        }
                    }
                }
            }
            RoleRef::Directory { template, scope } => {
                let matches = |role: &str, at: Option<&str>| {
                    role.eq_ignore_ascii_case(template) && at.unwrap_or("/") == *scope
                };
                for g in groups {
                    let active: Vec<DirectoryRoleAssignment> = c
                        .list(
                            Api::Graph,
                            &format!(
                                "/v1.0/roleManagement/directory/roleAssignments?$filter=principalId%20eq%20'{}'",
                                check_id(g)?
                            ),
                        )
                        .await?;
                    for ra in active.iter().filter(|r| r.principal_id == *g) {
                        if matches(&ra.role_definition_id, ra.directory_scope_id.as_deref()) {
                            out.extend(how(g, false));
                        }
                    }
                }
                let eligible: Vec<DirectoryEligibility> = c
                    .list(
                        Api::Graph,
                        "/v1.0/roleManagement/directory/roleEligibilityScheduleInstances?$select=id,principalId,roleDefinitionId,directoryScopeId,endDateTime",
                    )
                    .await?;
                for el in eligible {
                    if matches(&el.role_definition_id, el.directory_scope_id.as_deref()) {
                        out.extend(how(&el.principal_id, true));
                    }
                }
            }
            RoleRef::AppRole { resource_app, role } => {
                for g in groups {
                    let list: Vec<AppRoleAssignment> = c
                        .list(
                            Api::Graph,
                            &format!("/v1.0/groups/{}/appRoleAssignments", check_id(g)?),
                        )
                        .await?;
                    for a in list
                        .iter()
                        .filter(|a| a.app_role_id.eq_ignore_ascii_case(role))
                    {
                        if self.resource_is(&a.resource_id, resource_app).await? {
                            out.extend(how(g, false));
                        }
                    }
                }
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Whether `sp` holds the role `held` (entitlement `ent`) by a direct,
    /// active assignment.
    pub(super) async fn held_directly(
        &self,
        sp: &str,
        ent: &str,
        held: &RoleRef<'_>,
    ) -> Result<bool, SourceError> {
        Ok(match held {
            RoleRef::Rbac { .. } => !self.role_assignments_for(sp, ent).await?.is_empty(),
            RoleRef::Directory { template, scope } => !self
                .directory_roles_of(sp, template, scope)
                .await?
                .is_empty(),
            RoleRef::AppRole { resource_app, role } => !self
                .app_role_assignments_for(sp, resource_app, role)
                .await?
                .is_empty(),
        })
    }

    /// Whether the resource service principal `resource_id` is the
    /// application `resource_app`.
    pub(super) async fn resource_is(
        &self,
        resource_id: &str,
        resource_app: &str,
    ) -> Result<bool, SourceError> {
        if resource_id.eq_ignore_ascii_case(resource_app) {
            return Ok(true);
        }
        let res = self
            .get_opt(
                Api::Graph,
                &format!(
                    "/v1.0/servicePrincipals/{}?$select=id,appId",
                    check_id(resource_id)?
                ),
            )
            .await?;
        Ok(res
            .as_ref()
            .and_then(|r| r.get("appId"))
            .and_then(Value::as_str)
            .is_some_and(|app| app.eq_ignore_ascii_case(resource_app)))
    }
}

/// The refusal for an entitlement held only through a group or as eligible.
pub(super) fn refused(ent: &str, sp: &str, how: &[String]) -> SourceError {
    invalid(format!(
        "{ent} is held by {sp} only {}: not detached — removing {sp} from a group would take every other role the group gives, and an eligible assignment is removed through a PIM schedule request; change the group's or the eligibility's assignment instead",
        how.join(", ")
    ))
}
