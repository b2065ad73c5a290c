//! Remediation on Entra ID and Azure RBAC. Every action reads the state
//! back after the call and is idempotent: acting on what is already in the
//! target state is a no-op success that still reports what it found.
//!
//! Reversible (undo data in the outcome): removing a certificate (the
//! public certificate is kept in the undo data and patched back — it is
//! not a secret), deleting a federated credential (undo recreates it with
//! the same name, issuer, subject and audiences), disabling a service
//! principal (undo re-enables),
//! deleting an app role assignment or an RBAC role assignment (undo
//! recreates it from the saved properties; a recreated app role assignment
//! gets a new id). Irreversible, and said so: removing a client secret
//! (`removePassword`) — Entra ID cannot disable a secret, and a removed one
//! cannot be brought back.
//!
//! Managed identities cannot be disabled (their `accountEnabled` is owned by
//! the resource): disabling one removes its role assignments instead.

use async_trait::async_trait;
use azure_core::http::Method;
use nhi_contract::{
    ActionOutcome, ActionRequest, CredentialKind, Operation, Provider, Remediator, SourceError,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::client::{Api, CallStats, Client};
use crate::config::{AzureAuth, AzureConfig};
use crate::inventory::{last_segment, ARM_API_VERSION};
use crate::model::{
    AppRoleAssignment, DirectoryRoleAssignment, RoleAssignment, RoleAssignmentProps,
};

/// The Azure [`Remediator`].
pub struct AzureRemediator {
    config: AzureConfig,
    client: Result<Client, String>,
    calls: CallStats,
}

/// Which directory collection an object lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
enum Collection {
    Applications,
    ServicePrincipals,
}

impl Collection {
    fn path(self) -> &'static str {
        match self {
            Collection::Applications => "applications",
            Collection::ServicePrincipals => "servicePrincipals",
        }
    }
}

/// What undo needs, per reversed step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "undo", rename_all = "snake_case")]
enum Undo {
    EnableServicePrincipal {
        id: String,
    },
    RestoreKeyCredential {
        collection: Collection,
        id: String,
        /// The keyCredential as read (public certificate, never a private key).
        credential: Value,
    },
    RecreateRoleAssignment {
        id: String,
        properties: RoleAssignmentProps,
    },
    RecreateAppRoleAssignment {
        principal_id: String,
        resource_id: String,
        app_role_id: String,
    },
    RecreateDirectoryRoleAssignment {
        principal_id: String,
        role_definition_id: String,
        directory_scope_id: String,
    },
    RecreateFederatedCredential {
        application: String,
        /// name, issuer, subject, audiences, description as read.
        credential: Value,
    },
}

fn invalid(m: impl Into<String>) -> SourceError {
    SourceError::Invalid {
        location: "azure remediation".into(),
        message: m.into(),
    }
}

/// Graph object ids and ARM ids go into URLs: accept only what they look like.
fn check_id(id: &str) -> Result<&str, SourceError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    ok.then_some(id)
        .ok_or_else(|| invalid(format!("{id:?} is not a directory object id")))
}

fn check_arm_id(id: &str) -> Result<&str, SourceError> {
    let ok = id.starts_with('/')
        && id.contains("/providers/Microsoft.Authorization/roleAssignments/")
        && !id.contains("..")
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./()".contains(c));
    ok.then_some(id)
        .ok_or_else(|| invalid(format!("{id:?} is not an ARM role assignment id")))
}

impl AzureRemediator {
    /// An outcome stamped with where it acted: this source's tenant.
    fn tenant_bound(&self, mut o: ActionOutcome) -> ActionOutcome {
        o.via = Some(format!("tenant {}", self.config.tenant_id));
        o
    }

    /// A remediator for the tenant of `config`. A credential that cannot be
    /// built makes every action fail with the reason (not the constructor:
    /// other sources' remediators must still be usable).
    pub fn new(config: &AzureConfig) -> AzureRemediator {
        let calls = CallStats::default();
        AzureRemediator {
            config: config.clone(),
            client: Client::new(config, calls.clone()).map_err(|e| e.to_string()),
            calls,
        }
    }

    /// Calls made so far.
    pub fn calls(&self) -> &CallStats {
        &self.calls
    }

    /// The application (client) id the remediator signs in as, if the config names it.
    fn own_client_id(&self) -> Option<&str> {
        match &self.config.auth {
            AzureAuth::ClientSecret { client_id, .. }
            | AzureAuth::ClientCertificate { client_id, .. } => Some(client_id),
            AzureAuth::WorkloadIdentity { client_id, .. }
            | AzureAuth::ManagedIdentity { client_id } => client_id.as_deref(),
            AzureAuth::AzureCli => None,
        }
    }

    /// Refuse to act on the scanner's own application or service principal
    /// (it would lock itself out mid-run), whatever `[plan] protected` says.
    async fn guard_self(&self, id: &str) -> Result<(), SourceError> {
        let Some(own) = self.own_client_id() else {
            return Ok(());
        };
        let (_, v) = self.locate(id, "id,appId").await?;
        if v.get("appId")
            .and_then(Value::as_str)
            .is_some_and(|a| a.eq_ignore_ascii_case(own))
        {
            return Err(invalid(format!(
                "{id} is nhi-assure's own identity (application {own}): never acted on"
            )));
        }
        Ok(())
    }

    fn c(&self) -> Result<&Client, SourceError> {
        self.client
            .as_ref()
            .map_err(|e| SourceError::Auth(format!("source {}: {e}", self.config.name)))
    }

    /// GET that maps 404 to `None`.
    async fn get_opt(&self, api: Api, path: &str) -> Result<Option<Value>, SourceError> {
        let c = self.c()?;
        match c.get::<Value>(api, path).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn send(
        &self,
        api: Api,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, SourceError> {
        let c = self.c()?;
        let base = match api {
            Api::Graph => &c.graph_url,
            Api::Arm => &c.arm_url,
        };
        let url = format!("{base}{path}");
        c.call::<Value>(api, method, &url, body)
            .await
            .map_err(SourceError::from)
    }

    /// Which collection holds `id`, with the fields asked for.
    async fn locate(&self, id: &str, select: &str) -> Result<(Collection, Value), SourceError> {
        for coll in [Collection::Applications, Collection::ServicePrincipals] {
            if let Some(v) = self
                .get_opt(
                    Api::Graph,
                    &format!("/v1.0/{}/{id}?$select={select}", coll.path()),
                )
                .await?
            {
                return Ok((coll, v));
            }
        }
        Err(invalid(format!(
            "{id} is neither an application nor a service principal"
        )))
    }

    async fn read(&self, coll: Collection, id: &str, select: &str) -> Result<Value, SourceError> {
        self.get_opt(
            Api::Graph,
            &format!("/v1.0/{}/{id}?$select={select}", coll.path()),
        )
        .await?
        .ok_or_else(|| invalid(format!("{} {id} no longer exists", coll.path())))
    }

    fn key_ids(v: &Value, field: &str) -> Vec<String> {
        v.get(field)
            .and_then(Value::as_array)
            .map(|l| {
                l.iter()
                    .filter_map(|c| c.get("keyId").and_then(Value::as_str).map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    async fn remove_secret(&self, id: &str, key: &str) -> Result<ActionOutcome, SourceError> {
        let (coll, before) = self.locate(id, "id,passwordCredentials").await?;
        let had = Self::key_ids(&before, "passwordCredentials")
            .iter()
            .any(|k| k == key);
        if had {
            self.send(
                Api::Graph,
                Method::Post,
                &format!("/v1.0/{}/{id}/removePassword", coll.path()),
                Some(&json!({ "keyId": key })),
            )
            .await?;
        }
        let after = self.read(coll, id, "id,passwordCredentials").await?;
        if Self::key_ids(&after, "passwordCredentials")
            .iter()
            .any(|k| k == key)
        {
            return Err(invalid(format!(
                "client secret {key} still present after removePassword"
            )));
        }
        let state = |present: bool| json!({"object": id, "collection": coll, "credential_id": key, "present": present});
        Ok(ActionOutcome {
            via: None,
            before: state(had),
            after: state(false),
            undo: None,
            irreversible: had.then(|| {
                format!("client secret {key} of {id} was removed: Entra ID cannot restore a removed secret; add a new secret if access is still needed")
            }),
        })
    }

    /// keyCredentials of one object as a single GET returns them (with the
    /// public `key`, which a PATCH must send back for the ones kept).
    async fn key_credentials(&self, coll: Collection, id: &str) -> Result<Vec<Value>, SourceError> {
        let v = self.read(coll, id, "id,keyCredentials").await?;
        Ok(v.get("keyCredentials")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default())
    }

    async fn patch_keys(
        &self,
        coll: Collection,
        id: &str,
        keys: Vec<Value>,
    ) -> Result<(), SourceError> {
        // A token-signing certificate (SAML) travels with a private key that
        // a read never returns: rewriting the collection would lose it.
        if keys
            .iter()
            .any(|k| k.get("usage").and_then(Value::as_str) == Some("Sign"))
        {
            return Err(invalid(format!(
                "{id} holds a token-signing certificate: its keyCredentials are not rewritten (the private key cannot be sent back); remove the certificate in the portal"
            )));
        }
        // A kept certificate without its public key would be wiped by the
        // PATCH: refuse rather than touch credentials we were not asked to.
        if keys.iter().any(|k| k.get("key").is_none_or(Value::is_null)) {
            return Err(invalid(format!(
                "{id}: the service did not return the public key of every certificate; patching keyCredentials would remove certificates that must stay"
            )));
        }
        self.send(
            Api::Graph,
            Method::Patch,
            &format!("/v1.0/{}/{id}", coll.path()),
            Some(&json!({ "keyCredentials": keys })),
        )
        .await?;
        Ok(())
    }

    async fn remove_certificate(&self, id: &str, key: &str) -> Result<ActionOutcome, SourceError> {
        let (coll, _) = self.locate(id, "id").await?;
        let before = self.key_credentials(coll, id).await?;
        let key_of = |k: &Value| k.get("keyId").and_then(Value::as_str).map(str::to_string);
        let target = before
            .iter()
            .find(|k| key_of(k).as_deref() == Some(key))
            .cloned();
        let mut undo = None;
        if let Some(cred) = &target {
            if cred.get("key").is_none_or(Value::is_null) {
                return Err(invalid(format!("certificate {key}: public key not returned, it could not be restored: not removed")));
            }
            let kept: Vec<Value> = before
                .iter()
                .filter(|k| key_of(k).as_deref() != Some(key))
                .cloned()
                .collect();
            self.patch_keys(coll, id, kept).await?;
            undo = Some(Undo::RestoreKeyCredential {
                collection: coll,
                id: id.to_string(),
                credential: cred.clone(),
            });
        }
        let after = self.key_credentials(coll, id).await?;
        if after.iter().any(|k| key_of(k).as_deref() == Some(key)) {
            return Err(invalid(format!(
                "certificate {key} still present after update"
            )));
        }
        let ids = |l: &[Value]| l.iter().filter_map(key_of).collect::<Vec<_>>();
        Ok(ActionOutcome {
            via: None,
            before: json!({"object": id, "collection": coll, "certificates": ids(&before)}),
            after: json!({"object": id, "collection": coll, "certificates": ids(&after)}),
            undo: undo.map(|u| json!([u])),
            irreversible: None,
        })
    }

    /// Remove a federated identity credential (an application's trust in an
    /// external issuer). Reversible: undo recreates it with the same name,
    /// issuer, subject and audiences (under a new id).
    async fn remove_federated(&self, app: &str, fic: &str) -> Result<ActionOutcome, SourceError> {
        let path = format!("/v1.0/applications/{app}/federatedIdentityCredentials/{fic}");
        let before = self.get_opt(Api::Graph, &path).await?;
        let mut undo = None;
        if let Some(v) = &before {
            let mut keep = serde_json::Map::new();
            for k in ["name", "issuer", "subject", "audiences", "description"] {
                if let Some(x) = v.get(k).filter(|x| !x.is_null()) {
                    keep.insert(k.to_string(), x.clone());
                }
            }
            self.send(Api::Graph, Method::Delete, &path, None).await?;
            undo = Some(Undo::RecreateFederatedCredential {
                application: app.to_string(),
                credential: Value::Object(keep),
            });
        }
        if self.get_opt(Api::Graph, &path).await?.is_some() {
            return Err(invalid(format!(
                "federated credential {fic} still present after delete"
            )));
        }
        Ok(ActionOutcome {
            via: None,
            before: json!({"application": app, "credential_id": fic, "present": before.is_some()}),
            after: json!({"application": app, "credential_id": fic, "present": false}),
            undo: undo.map(|u| json!([u])),
            irreversible: None,
        })
    }

    async fn sp_state(&self, id: &str) -> Result<Option<(Option<String>, bool)>, SourceError> {
        let v = self
            .get_opt(
                Api::Graph,
                &format!(
                    "/v1.0/servicePrincipals/{id}?$select=id,servicePrincipalType,accountEnabled"
                ),
            )
            .await?;
        Ok(v.map(|v| {
            (
                v.get("servicePrincipalType")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                v.get("accountEnabled")
                    .and_then(Value::as_bool)
                    .unwrap_or(true),
            )
        }))
    }

    async fn set_enabled(&self, id: &str, on: bool) -> Result<bool, SourceError> {
        self.send(
            Api::Graph,
            Method::Patch,
            &format!("/v1.0/servicePrincipals/{id}"),
            Some(&json!({ "accountEnabled": on })),
        )
        .await?;
        let now = self.sp_state(id).await?.map(|s| s.1);
        if now != Some(on) {
            return Err(invalid(format!(
                "service principal {id} accountEnabled is {now:?}, expected {on}"
            )));
        }
        Ok(on)
    }

    async fn disable_identity(&self, id: &str) -> Result<ActionOutcome, SourceError> {
        let Some((kind, enabled)) = self.sp_state(id).await? else {
            return Err(invalid(format!(
                "{id} is not a service principal: an application registration is disabled through its service principal"
            )));
        };
        if kind.as_deref() == Some("ManagedIdentity") {
            return self.strip_managed_identity(id).await;
        }
        if enabled {
            self.set_enabled(id, false).await?;
        } else if self.sp_state(id).await?.map(|s| s.1) != Some(false) {
            return Err(invalid(format!("service principal {id} is not disabled")));
        }
        Ok(ActionOutcome {
            via: None,
            before: json!({"service_principal": id, "accountEnabled": enabled}),
            after: json!({"service_principal": id, "accountEnabled": false}),
            undo: enabled.then(|| json!([Undo::EnableServicePrincipal { id: id.to_string() }])),
            irreversible: None,
        })
    }

    /// Every RBAC assignment of `principal` in the configured subscriptions.
    async fn rbac_of(&self, principal: &str) -> Result<Vec<RoleAssignment>, SourceError> {
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

    async fn app_roles_of(&self, principal: &str) -> Result<Vec<AppRoleAssignment>, SourceError> {
        Ok(self
            .c()?
            .list(
                Api::Graph,
                &format!("/v1.0/servicePrincipals/{principal}/appRoleAssignments"),
            )
            .await?)
    }

    async fn strip_managed_identity(&self, id: &str) -> Result<ActionOutcome, SourceError> {
        let ras = self.rbac_of(id).await?;
        let apps = self.app_roles_of(id).await?;
        let dirs = self.all_directory_roles_of(id).await?;
        let before = json!({
            "managed_identity": id,
            "role_assignments": ras.iter().map(|r| &r.id).collect::<Vec<_>>(),
            "app_role_assignments": apps.iter().map(|a| &a.id).collect::<Vec<_>>(),
            "directory_role_assignments": dirs.iter().map(|a| &a.id).collect::<Vec<_>>(),
        });
        let mut undo = Vec::new();
        for ra in &ras {
            if let Some(u) = self.delete_role_assignment(&ra.id).await? {
                undo.push(u);
            }
        }
        for a in &apps {
            if let Some(u) = self.delete_app_role_assignment(id, &a.id).await? {
                undo.push(u);
            }
        }
        for d in &dirs {
            if let Some(u) = self.delete_directory_role(d).await? {
                undo.push(u);
            }
        }
        let left = self.rbac_of(id).await?.len()
            + self.app_roles_of(id).await?.len()
            + self.all_directory_roles_of(id).await?.len();
        if left > 0 {
            return Err(invalid(format!(
                "managed identity {id} still holds {left} assignments"
            )));
        }
        Ok(ActionOutcome {
            via: None,
            before,
            after: json!({
                "managed_identity": id,
                "role_assignments": [],
                "app_role_assignments": [],
                "directory_role_assignments": [],
                "note": "a managed identity cannot be disabled: its role assignments were removed instead (undo recreates them)",
            }),
            undo: (!undo.is_empty()).then(|| json!(undo)),
            irreversible: None,
        })
    }

    async fn delete_role_assignment(&self, id: &str) -> Result<Option<Undo>, SourceError> {
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

    async fn delete_app_role_assignment(
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
    async fn app_role_assignments_for(
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
    async fn directory_roles_of(
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
    async fn all_directory_roles_of(
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

    async fn delete_directory_role(
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
    async fn role_assignments_for(
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

    async fn detach(&self, a: &ActionRequest) -> Result<ActionOutcome, SourceError> {
        let sp = check_id(&a.identity_id)?;
        let mut undo = Vec::new();
        let mut before = Vec::new();
        let mut after = Vec::new();
        for ent in &a.entitlements {
            let mut steps = Vec::new();
            if ent.contains("/providers/Microsoft.Authorization/roleAssignments/") {
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
            after.push(json!({"entitlement": ent, "present": false}));
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

    async fn undo_step(&self, s: &Undo) -> Result<Value, SourceError> {
        match s {
            Undo::EnableServicePrincipal { id } => {
                let id = check_id(id)?;
                // Idempotent, and a no-op on a managed identity (never disabled).
                if self.sp_state(id).await?.map(|s| s.1) != Some(true) {
                    self.set_enabled(id, true).await?;
                }
                Ok(json!({"service_principal": id, "accountEnabled": true}))
            }
            Undo::RestoreKeyCredential {
                collection,
                id,
                credential,
            } => {
                let id = check_id(id)?;
                let key = credential
                    .get("keyId")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let mut keys = self.key_credentials(*collection, id).await?;
                let has = |l: &[Value]| {
                    l.iter()
                        .any(|k| k.get("keyId").and_then(Value::as_str) == Some(key.as_str()))
                };
                if !has(&keys) {
                    keys.push(credential.clone());
                    self.patch_keys(*collection, id, keys).await?;
                }
                if !has(&self.key_credentials(*collection, id).await?) {
                    return Err(invalid(format!("certificate {key} not restored")));
                }
                Ok(json!({"object": id, "credential_id": key, "present": true}))
            }
            Undo::RecreateRoleAssignment { id, properties } => {
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
            Undo::RecreateDirectoryRoleAssignment {
                principal_id,
                role_definition_id,
                directory_scope_id,
            } => {
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
            Undo::RecreateFederatedCredential {
                application,
                credential,
            } => {
                let app = check_id(application)?;
                let name = credential
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let list_path = format!("/v1.0/applications/{app}/federatedIdentityCredentials");
                let named = |l: &[Value]| {
                    l.iter()
                        .any(|f| f.get("name").and_then(Value::as_str) == Some(name.as_str()))
                };
                let list: Vec<Value> = self.c()?.list(Api::Graph, &list_path).await?;
                if !named(&list) {
                    self.send(Api::Graph, Method::Post, &list_path, Some(credential))
                        .await?;
                }
                let list: Vec<Value> = self.c()?.list(Api::Graph, &list_path).await?;
                if !named(&list) {
                    return Err(invalid(format!(
                        "federated credential {name} of {app} not recreated"
                    )));
                }
                Ok(json!({"application": app, "federated_credential": name, "present": true}))
            }
            Undo::RecreateAppRoleAssignment {
                principal_id,
                resource_id,
                app_role_id,
            } => {
                let sp = check_id(principal_id)?;
                let same = |a: &AppRoleAssignment| {
                    &a.resource_id == resource_id && &a.app_role_id == app_role_id
                };
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
                Ok(
                    json!({"entitlement": format!("appRoleAssignment:{}", found.id), "present": true}),
                )
            }
        }
    }
}

#[async_trait]
impl Remediator for AzureRemediator {
    fn provider(&self) -> Provider {
        Provider::Azure
    }

    fn can_disable(&self, kind: CredentialKind) -> bool {
        // Entra ID has no disabled state for a password credential.
        kind != CredentialKind::ClientSecret
    }

    async fn apply(&self, a: &ActionRequest) -> Result<ActionOutcome, SourceError> {
        if a.provider != Provider::Azure {
            return Err(invalid(format!("not an Azure action: {}", a.provider)));
        }
        let id = check_id(&a.identity_id)?;
        self.guard_self(id).await?;
        let key = || {
            a.credential_id
                .as_deref()
                .ok_or_else(|| invalid("no credential id"))
                .and_then(check_id)
        };
        let done = match (a.operation, a.credential_kind) {
            (Operation::DeleteCredential, Some(CredentialKind::ClientSecret)) => {
                self.remove_secret(id, key()?).await
            }
            (Operation::DisableCredential, Some(CredentialKind::ClientSecret)) => Err(invalid(
                "Entra ID cannot disable a client secret: it can only be removed (removePassword), which is irreversible; plan delete_credential, or disable_identity on its service principal",
            )),
            (
                Operation::DisableCredential | Operation::DeleteCredential,
                Some(CredentialKind::Certificate),
            ) => self.remove_certificate(id, key()?).await,
            (
                Operation::DisableCredential | Operation::DeleteCredential,
                Some(CredentialKind::Federated),
            ) => self.remove_federated(id, key()?).await,
            (Operation::DisableCredential | Operation::DeleteCredential, k) => Err(invalid(format!(
                "{} of a {} credential is not supported on Azure",
                a.operation.as_str(),
                k.map_or("unspecified", |k| k.as_str())
            ))),
            (Operation::DisableIdentity, _) => self.disable_identity(id).await,
            (Operation::DetachEntitlements, _) => self.detach(a).await,
            (Operation::RemoveLogin, _) => Err(invalid(
                "service principals have no interactive login to remove",
            )),
        };
        done.map(|o| self.tenant_bound(o))
    }

    /// Only re-enabling is known before the call. Removing a certificate or
    /// an assignment needs what the call itself reads (the public
    /// certificate, the assignment's properties): an action interrupted
    /// between the provider call and its journaled outcome keeps no undo
    /// data for those.
    fn planned_undo(&self, a: &ActionRequest) -> Option<Value> {
        if a.operation != Operation::DisableIdentity || check_id(&a.identity_id).is_err() {
            return None;
        }
        Some(json!([Undo::EnableServicePrincipal {
            id: a.identity_id.clone()
        }]))
    }

    async fn undo(&self, data: &Value) -> Result<ActionOutcome, SourceError> {
        let steps: Vec<Undo> =
            serde_json::from_value(data.clone()).map_err(|e| invalid(format!("undo data: {e}")))?;
        let mut after = Vec::new();
        for s in &steps {
            after.push(self.undo_step(s).await?);
        }
        Ok(self.tenant_bound(ActionOutcome {
            via: None,
            before: data.clone(),
            after: Value::Array(after),
            undo: None,
            irreversible: None,
        }))
    }
}
