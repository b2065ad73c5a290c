//! Assignments: app role assignments (application permissions), Entra ID
//! directory role assignments and Azure RBAC role assignments — found from
//! the entitlement ids the inventory gives, deleted with their properties
//! kept for undo, and recreated by undo.

use azure_core::http::Method;
use nhi_contract::{ActionOutcome, ActionRequest, SourceError};
use serde_json::{json, Value};

use super::indirect::{refused, RoleRef};
use super::readback::{check_arm_id, check_id, invalid, Undo};
use super::AzureRemediator;
use crate::client::Api;
use crate::model::{
    last_segment, AppRoleAssignment, DirectoryRoleAssignment, RoleAssignment, RoleAssignmentProps,
    ARM_API_VERSION,
};

impl AzureRemediator {
    /// Every RBAC assignment of `principal` in the configured subscriptions.
    pub(super) async fn rbac_of(
        &self,
        principal: &str,
    ) -> Result<Vec<RoleAssignment>, SourceError> {
        let c = self.c()?;
        let mut out: Vec<RoleAssignment> = Vec::new();
        for sub in &self.config.subscriptions {
            let list: Vec<RoleAssignment> = c
                .list(
                    Api::Arm,
                    &format!(
                        "/subscriptions/{}/providers/Microsoft.Authorization/roleAssignments?api-version={ARM_API_VERSION}&$filter=principalId%20eq%20'{principal}'",
                        check_id(sub)?
                    ),
                )
                .await?;
            for ra in list {
                if ra.properties.principal_id == principal && !out.iter().any(|x| x.id == ra.id) {
                    out.push(ra);
                }
            }
        }
        Ok(out)
    }

    pub(super) async fn app_roles_of(
        &self,
        principal: &str,
    ) -> Result<Vec<AppRoleAssignment>, SourceError> {
        Ok(self
            .c()?
            .list(
                Api::Graph,
                &format!("/v1.0/servicePrincipals/{principal}/appRoleAssignments"),
            )
            .await?)
    }

    pub(super) async fn delete_role_assignment(
        &self,
        id: &str,
    ) -> Result<Option<Undo>, SourceError> {
        let id = check_arm_id(id)?;
        let path = format!("{id}?api-version={ARM_API_VERSION}");
        let before = self.get_opt(Api::Arm, &path).await?;
        let mut undo = None;
        if let Some(v) = before {
            let ra: RoleAssignment = serde_json::from_value(v)
                .map_err(|e| invalid(format!("role assignment {id}: {e}")))?;
            self.send(Api::Arm, Method::Delete, &path, None).await?;
            let mut properties = ra.properties;
            // `scope` is part of the URL of a PUT, not of its body.
            properties.scope = None;
            undo = Some(Undo::RecreateRoleAssignment {
                id: id.to_string(),
                properties,
            });
        }
        if self.get_opt(Api::Arm, &path).await?.is_some() {
            return Err(invalid(format!(
                "role assignment {id} still exists after delete"
            )));
        }
        Ok(undo)
    }

    pub(super) async fn delete_app_role_assignment(
        &self,
        sp: &str,
        id: &str,
    ) -> Result<Option<Undo>, SourceError> {
        let path = format!(
            "/v1.0/servicePrincipals/{}/appRoleAssignments/{}",
            check_id(sp)?,
            check_id(id)?
        );
        let before = self.get_opt(Api::Graph, &path).await?;
        let mut undo = None;
        if let Some(v) = before {
            let a: AppRoleAssignment = serde_json::from_value(v)
                .map_err(|e| invalid(format!("app role assignment {id}: {e}")))?;
            self.send(Api::Graph, Method::Delete, &path, None).await?;
            undo = Some(Undo::RecreateAppRoleAssignment {
                principal_id: a.principal_id,
                resource_id: a.resource_id,
                app_role_id: a.app_role_id,
            });
        }
        if self.get_opt(Api::Graph, &path).await?.is_some() {
            return Err(invalid(format!(
                "app role assignment {id} still exists after delete"
            )));
        }
        Ok(undo)
    }

    /// The app role assignments of `sp` that hold `{resourceAppId}/approles/{roleId}`.
    pub(super) async fn app_role_assignments_for(
        &self,
        sp: &str,
        resource_app: &str,
        role: &str,
    ) -> Result<Vec<AppRoleAssignment>, SourceError> {
        let mut out = Vec::new();
        for a in self.app_roles_of(sp).await? {
            if !a.app_role_id.eq_ignore_ascii_case(role) {
                continue;
            }
            let res = self
                .get_opt(
                    Api::Graph,
                    &format!(
                        "/v1.0/servicePrincipals/{}?$select=id,appId",
                        check_id(&a.resource_id)?
                    ),
                )
                .await?;
            let app = res
                .as_ref()
                .and_then(|r| r.get("appId"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            if app.eq_ignore_ascii_case(resource_app)
                || a.resource_id.eq_ignore_ascii_case(resource_app)
            {
                out.push(a);
            }
        }
        Ok(out)
    }

    /// The directory role assignments of `principal` for a role (by
    /// template id, which is also the built-in definition's id) at a scope.
    pub(super) async fn directory_roles_of(
        &self,
        principal: &str,
        template: &str,
        scope: &str,
    ) -> Result<Vec<DirectoryRoleAssignment>, SourceError> {
        Ok(self
            .all_directory_roles_of(principal)
            .await?
            .into_iter()
            .filter(|r| {
                r.role_definition_id.eq_ignore_ascii_case(template)
                    && r.directory_scope_id.as_deref().unwrap_or("/") == scope
            })
            .collect())
    }

    /// Every directory role assignment of `principal`.
    pub(super) async fn all_directory_roles_of(
        &self,
        principal: &str,
    ) -> Result<Vec<DirectoryRoleAssignment>, SourceError> {
        let list: Vec<DirectoryRoleAssignment> = self
            .c()?
            .list(
                Api::Graph,
                &format!(
                    "/v1.0/roleManagement/directory/roleAssignments?$filter=principalId%20eq%20'{}'",
                    check_id(principal)?
                ),
            )
            .await?;
        Ok(list
            .into_iter()
            .filter(|r| r.principal_id == principal)
            .collect())
    }

    pub(super) async fn delete_directory_role(
        &self,
        ra: &DirectoryRoleAssignment,
    ) -> Result<Option<Undo>, SourceError> {
        let path = format!(
            "/v1.0/roleManagement/directory/roleAssignments/{}",
            check_id(&ra.id)?
        );
        if self.get_opt(Api::Graph, &path).await?.is_none() {
            return Ok(None);
        }
        self.send(Api::Graph, Method::Delete, &path, None).await?;
        if self.get_opt(Api::Graph, &path).await?.is_some() {
            return Err(invalid(format!(
                "directory role assignment {} still exists",
                ra.id
            )));
        }
        Ok(Some(Undo::RecreateDirectoryRoleAssignment {
            principal_id: ra.principal_id.clone(),
            role_definition_id: ra.role_definition_id.clone(),
            directory_scope_id: ra.directory_scope_id.clone().unwrap_or_else(|| "/".into()),
        }))
    }

    /// The RBAC assignments of `principal` that hold `{scope}/…/roleDefinitions/{guid}`.
    pub(super) async fn role_assignments_for(
        &self,
        principal: &str,
        ent: &str,
    ) -> Result<Vec<RoleAssignment>, SourceError> {
        let Some((scope, guid)) =
            ent.split_once("/providers/Microsoft.Authorization/roleDefinitions/")
        else {
            return Err(invalid(format!("{ent} is not a role at a scope")));
        };
        Ok(self
            .rbac_of(principal)
            .await?
            .into_iter()
            .filter(|r| {
                let s = r.properties.scope.as_deref().unwrap_or_default();
                s.trim_end_matches('/').eq_ignore_ascii_case(scope)
                    && last_segment(&r.properties.role_definition_id).eq_ignore_ascii_case(guid)
            })
            .collect())
    }

    /// Detach each entitlement's direct, active assignments. Before any
    /// write, every role is checked for how else `sp` holds it (see
    /// [`super::indirect`]): held only through a group or as eligible →
    /// the whole action is refused; held also that way → only the direct
    /// assignment goes, and `after` lists what still holds it
    /// (`still_held_via`).
    pub(super) async fn detach(&self, a: &ActionRequest) -> Result<ActionOutcome, SourceError> {
        let sp = check_id(&a.identity_id)?;
        let groups = if a.entitlements.iter().any(|e| RoleRef::of(e).is_some()) {
            self.groups_of(sp).await?
        } else {
            Vec::new()
        };
        let mut otherwise = Vec::new();
        for ent in &a.entitlements {
            let how = match RoleRef::of(ent) {
                Some(held) => {
                    let how = self.held_otherwise(sp, &groups, &held).await?;
                    if !how.is_empty() && !self.held_directly(sp, ent, &held).await? {
                        return Err(refused(ent, sp, &how));
                    }
                    how
                }
                None => Vec::new(),
            };
            otherwise.push(how);
        }
        let mut undo = Vec::new();
        let mut before = Vec::new();
        let mut after = Vec::new();
        for (ent, still) in a.entitlements.iter().zip(otherwise) {
            let mut steps = Vec::new();
            if ent.contains("/providers/Microsoft.Authorization/roleAssignments/") {
                // An assignment by id: only one that is the principal's own.
                let path = format!("{}?api-version={ARM_API_VERSION}", check_arm_id(ent)?);
                if let Some(v) = self.get_opt(Api::Arm, &path).await? {
                    let ra: RoleAssignment = serde_json::from_value(v)
                        .map_err(|e| invalid(format!("role assignment {ent}: {e}")))?;
                    if !ra.properties.principal_id.eq_ignore_ascii_case(sp) {
                        return Err(invalid(format!(
                            "{ent} is assigned to {}, not to {sp}: not detached (a group's assignment would be taken from every member)",
                            ra.properties.principal_id
                        )));
                    }
                }
                steps.extend(self.delete_role_assignment(ent).await?);
            } else if ent.contains("/providers/Microsoft.Authorization/roleDefinitions/") {
                for ra in self.role_assignments_for(sp, ent).await? {
                    steps.extend(self.delete_role_assignment(&ra.id).await?);
                }
                if !self.role_assignments_for(sp, ent).await?.is_empty() {
                    return Err(invalid(format!("{ent} still assigned to {sp}")));
                }
            } else if let Some(rest) =
                ent.strip_prefix("/roleManagement/directory/roleDefinitions/")
            {
                let (template, scope) = rest.split_once('@').unwrap_or((rest, "/"));
                for x in self.directory_roles_of(sp, template, scope).await? {
                    steps.extend(self.delete_directory_role(&x).await?);
                }
                if !self
                    .directory_roles_of(sp, template, scope)
                    .await?
                    .is_empty()
                {
                    return Err(invalid(format!("{ent} still assigned to {sp}")));
                }
            } else if let Some((res_app, role)) = ent.split_once("/approles/") {
                for x in self.app_role_assignments_for(sp, res_app, role).await? {
                    steps.extend(self.delete_app_role_assignment(sp, &x.id).await?);
                }
                if !self
                    .app_role_assignments_for(sp, res_app, role)
                    .await?
                    .is_empty()
                {
                    return Err(invalid(format!("{ent} still assigned to {sp}")));
                }
            } else {
                return Err(invalid(format!(
                    "{ent}: only application permissions and Azure role assignments are detached; revoke delegated grants in the enterprise application's permissions"
                )));
            }
            before.push(json!({"entitlement": ent, "present": !steps.is_empty()}));
            if still.is_empty() {
                after.push(json!({"entitlement": ent, "present": false}));
            } else {
                after.push(json!({"entitlement": ent, "present": false, "still_held_via": still}));
            }
            undo.extend(steps);
        }
        Ok(ActionOutcome {
            via: None,
            before: Value::Array(before),
            after: Value::Array(after),
            undo: (!undo.is_empty()).then(|| json!(undo)),
            irreversible: None,
        })
    }

    /// Undo of an RBAC assignment deletion: PUT it back under its id.
    pub(super) async fn recreate_role_assignment(
        &self,
        id: &str,
        properties: &RoleAssignmentProps,
    ) -> Result<Value, SourceError> {
        let id = check_arm_id(id)?;
        let path = format!("{id}?api-version={ARM_API_VERSION}");
        if self.get_opt(Api::Arm, &path).await?.is_none() {
            self.send(
                Api::Arm,
                Method::Put,
                &path,
                Some(&json!({ "properties": properties })),
            )
            .await?;
        }
        if self.get_opt(Api::Arm, &path).await?.is_none() {
            return Err(invalid(format!("role assignment {id} not recreated")));
        }
        Ok(json!({"entitlement": id, "present": true}))
    }

    /// Undo of a directory role assignment deletion: assign the role again.
    pub(super) async fn recreate_directory_role(
        &self,
        principal_id: &str,
        role_definition_id: &str,
        directory_scope_id: &str,
    ) -> Result<Value, SourceError> {
        let sp = check_id(principal_id)?;
        if self
            .directory_roles_of(sp, role_definition_id, directory_scope_id)
            .await?
            .is_empty()
        {
            self.send(
                Api::Graph,
                Method::Post,
                "/v1.0/roleManagement/directory/roleAssignments",
                Some(&json!({
                    "principalId": sp,
                    "roleDefinitionId": role_definition_id,
                    "directoryScopeId": directory_scope_id,
                })),
            )
            .await?;
        }
        if self
            .directory_roles_of(sp, role_definition_id, directory_scope_id)
            .await?
            .is_empty()
        {
            return Err(invalid(format!(
                "directory role {role_definition_id} of {sp} not recreated"
            )));
        }
        Ok(
            json!({"directory_role": role_definition_id, "scope": directory_scope_id, "present": true}),
        )
    }

    /// Undo of an app role assignment deletion: assign it again (a new id).
    pub(super) async fn recreate_app_role_assignment(
        &self,
        principal_id: &str,
        resource_id: &str,
        app_role_id: &str,
    ) -> Result<Value, SourceError> {
        let sp = check_id(principal_id)?;
        let same =
            |a: &AppRoleAssignment| a.resource_id == resource_id && a.app_role_id == app_role_id;
        if !self.app_roles_of(sp).await?.iter().any(same) {
            self.send(
                Api::Graph,
                Method::Post,
                &format!("/v1.0/servicePrincipals/{sp}/appRoleAssignments"),
                Some(&json!({"principalId": sp, "resourceId": resource_id, "appRoleId": app_role_id})),
            )
            .await?;
        }
        let now = self.app_roles_of(sp).await?;
        let Some(found) = now.iter().find(|a| same(a)) else {
            return Err(invalid(format!(
                "app role {app_role_id} of {sp} not recreated"
            )));
        };
        Ok(json!({"entitlement": format!("appRoleAssignment:{}", found.id), "present": true}))
    }
}
