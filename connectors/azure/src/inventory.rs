//! Reading one Entra ID tenant (and its subscriptions' RBAC) into the
//! contract model.
//!
//! Calls, in order: applications and service principals (`$select`,
//! owners by `$expand`, every page); the two beta sign-in reports (refused
//! → usage unknown plus a `usage` gap, never "never used"); the tenant's
//! delegated grants; then, with bounded concurrency, each application's
//! federated credentials and each kept service principal's app role
//! assignments, and each assigned resource's app roles once; finally per
//! subscription the role definitions and role assignments. Listing the
//! directory, grants or app role assignments failing makes the source
//! unknown; a subscription or the federated credentials of an application
//! failing is recorded as a gap (the rest is still read).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use async_trait::async_trait;
use futures_util::stream::{self, StreamExt};
use nhi_contract::{
    Credential, CredentialKind, Entitlement, Gap, Grant, Identity, IdentityKind, Inventory,
    InventorySource, PrivilegeLevel, Provider, SourceError, Timestamp, Unseen, Usage,
};

use crate::client::{Api, ApiError, CallStats, Client};
use crate::config::AzureConfig;
use crate::model::{self, ts};

/// Microsoft's own tenants: service principals of first-party Microsoft
/// services live in every tenant and are not the tenant's identities.
const MICROSOFT_TENANTS: [&str; 2] = [
    "f8cdef31-a31e-4b4a-93e4-5f571e91255a",
    "72f988bf-86f1-41af-91ab-2d7cd011db47",
];
/// Microsoft Graph's and Azure AD Graph's application ids.
const GRAPH_APP_IDS: [&str; 2] = [
    "00000003-0000-0000-c000-000000000000",
    "00000002-0000-0000-c000-000000000000",
];

/// Graph application permissions that let the holder grant itself (or
/// anyone) any other permission or role in the tenant.
pub const ADMIN_GRAPH_PERMISSIONS: &[&str] = &[
    "Directory.ReadWrite.All",
    "RoleManagement.ReadWrite.Directory",
    "AppRoleAssignment.ReadWrite.All",
    "Application.ReadWrite.All",
    "RoleAssignmentSchedule.ReadWrite.Directory",
    "RoleEligibilitySchedule.ReadWrite.Directory",
    "RoleManagementPolicy.ReadWrite.Directory",
    "PrivilegedAccess.ReadWrite.AzureADGroup",
    "PrivilegedAssignmentSchedule.ReadWrite.AzureADGroup",
    "UserAuthenticationMethod.ReadWrite.All",
    "Domain.ReadWrite.All",
    "Policy.ReadWrite.PermissionGrant",
];

/// Entra ID directory roles (template ids) that can grant themselves or
/// anyone any permission: Global Administrator, Privileged Role
/// Administrator, Privileged Authentication Administrator, Application
/// Administrator and Cloud Application Administrator (the last two can add
/// credentials to any application, including privileged ones).
pub const ADMIN_DIRECTORY_ROLES: &[&str] = &[
    "62e90394-69f5-4237-9190-012177145e10",
    "e8611ab8-c189-46e8-94e1-60213ab1f814",
    "7be44c8a-adaf-4e2a-84d6-ab2649e08a13",
    "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3",
    "158c047a-c907-4556-b7ef-446551a6b5f7",
];

/// Azure roles that are administrator-equivalent at subscription,
/// management-group or root scope.
pub const ADMIN_AZURE_ROLES: &[&str] = &["Owner", "Contributor", "User Access Administrator"];

const SELECT_APP: &str =
    "id,appId,displayName,createdDateTime,tags,notes,passwordCredentials,keyCredentials";
const SELECT_SP: &str = "id,appId,displayName,servicePrincipalType,accountEnabled,appOwnerOrganizationId,tags,notes,alternativeNames,passwordCredentials,keyCredentials";
const EXPAND_OWNERS: &str = "owners($select=id,displayName,userPrincipalName)";
/// ARM Authorization API version used for role assignments and definitions.
pub const ARM_API_VERSION: &str = "2022-04-01";

/// The Azure [`InventorySource`].
pub struct AzureSource {
    config: AzureConfig,
    calls: CallStats,
}

impl AzureSource {
    /// A source for one tenant; the credential is built at scan time.
    pub fn new(config: AzureConfig) -> AzureSource {
        AzureSource {
            config,
            calls: CallStats::default(),
        }
    }

    /// HTTP calls made so far (token requests included), by shape.
    pub fn calls(&self) -> &CallStats {
        &self.calls
    }
}

#[async_trait]
impl InventorySource for AzureSource {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn provider(&self) -> Provider {
        Provider::Azure
    }

    async fn scan(&self) -> Result<Inventory, SourceError> {
        let client = Client::new(&self.config, self.calls.clone())?;
        let scan = Scan {
            cfg: &self.config,
            client: &client,
            now: chrono::Utc::now(),
        };
        let result = scan.tenant().await;
        match &result {
            Ok(inv) => tracing::info!(
                source = %self.config.name,
                identities = inv.identities.len(),
                credentials = inv.credentials.len(),
                gaps = inv.coverage.gaps.len(),
                calls = self.calls.total(),
                "azure scan done"
            ),
            Err(e) => {
                tracing::error!(source = %self.config.name, error = %e, "azure tenant scan failed")
            }
        }
        result
    }
}

struct Scan<'a> {
    cfg: &'a AzureConfig,
    client: &'a Client,
    now: Timestamp,
}

/// What the sign-in reports say, if they could be read: per application id
/// and per key id, the last use (`None`: listed, but no usable date).
struct Activity {
    by_app: HashMap<String, Option<Timestamp>>,
    by_key: HashMap<String, Option<Timestamp>>,
}

fn usage_of(activity: &Option<Activity>, found: Option<&Option<Timestamp>>) -> Usage {
    match (activity, found) {
        (None, _) => Usage::Unknown,
        (Some(_), Some(Some(at))) => Usage::Used {
            at: *at,
            service: None,
            region: None,
        },
        // Listed without a date the report could give: unknown, not never.
        (Some(_), Some(None)) => Usage::Unknown,
        // The report was read and holds nothing for it: no recorded use.
        (Some(_), None) => Usage::Never,
    }
}

fn owners_of(list: &[model::DirObject]) -> Option<String> {
    let names: Vec<String> = list
        .iter()
        .map(|o| {
            o.user_principal_name
                .clone()
                .or_else(|| o.display_name.clone())
                .unwrap_or_else(|| o.id.clone())
        })
        .collect();
    (!names.is_empty()).then(|| names.join(", "))
}

fn tags_of(tags: &[String], notes: &Option<String>) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> =
        tags.iter().map(|t| (t.clone(), String::new())).collect();
    if let Some(n) = notes.as_ref().filter(|n| !n.trim().is_empty()) {
        out.insert("notes".into(), n.clone());
    }
    out
}

/// Whether an Azure role assignment scope is a subscription, a
/// management group or the root (not a resource group or resource).
pub(crate) fn broad_scope(scope: &str) -> bool {
    let s = scope.trim_end_matches('/');
    if s.is_empty() {
        return true;
    }
    let parts: Vec<&str> = s.split('/').filter(|p| !p.is_empty()).collect();
    matches!(
        parts.as_slice(),
        ["subscriptions", _] | ["providers", "Microsoft.Management", "managementGroups", _]
    )
}

/// Privilege of an application permission (`value` of an app role).
pub(crate) fn app_role_privilege(resource_app_id: &str, value: &str) -> PrivilegeLevel {
    if GRAPH_APP_IDS.contains(&resource_app_id) && ADMIN_GRAPH_PERMISSIONS.contains(&value) {
        PrivilegeLevel::Admin
    } else if is_write_scope(value) {
        PrivilegeLevel::Write
    } else {
        PrivilegeLevel::Read
    }
}

fn is_write_scope(value: &str) -> bool {
    let v = value.to_ascii_lowercase();
    v.contains("write") || v.contains("fullcontrol") || v.contains("manage") || v.ends_with(".send")
}

/// Privilege of an Azure role at a scope.
pub(crate) fn rbac_privilege(role: &str, actions: &[String], scope: &str) -> PrivilegeLevel {
    let grants_roles = actions.iter().any(|a| {
        a == "*"
            || a == "Microsoft.Authorization/*"
            || a == "Microsoft.Authorization/roleAssignments/write"
    });
    if broad_scope(scope) && (ADMIN_AZURE_ROLES.contains(&role) || grants_roles) {
        PrivilegeLevel::Admin
    } else if actions.iter().any(|a| !a.ends_with("/read")) {
        PrivilegeLevel::Write
    } else {
        PrivilegeLevel::Read
    }
}

/// Entitlement id of an application permission: `{resource appId}/approles/{appRoleId}`.
pub(crate) fn app_role_entitlement(resource_app_id: &str, app_role_id: &str) -> String {
    format!("{resource_app_id}/approles/{app_role_id}")
}

/// Entitlement id of an Azure role at a scope:
/// `{scope}/providers/Microsoft.Authorization/roleDefinitions/{guid}`.
pub(crate) fn rbac_entitlement(scope: &str, role_definition_id: &str) -> String {
    format!(
        "{}/providers/Microsoft.Authorization/roleDefinitions/{}",
        scope.trim_end_matches('/'),
        last_segment(role_definition_id)
    )
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
    if GRAPH_APP_IDS[0] == resource_app_id {
        format!("microsoft.graph/{}", value.to_ascii_lowercase())
    } else if GRAPH_APP_IDS[1] == resource_app_id {
        format!("aad.graph/{}", value.to_ascii_lowercase())
    } else {
        format!("{resource_app_id}/{}", value.to_ascii_lowercase())
    }
}

fn resource_uri(resource_app_id: &str, resource_id: &str, graph_url: &str) -> String {
    if GRAPH_APP_IDS[0] == resource_app_id {
        graph_url.to_string()
    } else {
        resource_id.to_string()
    }
}

pub(crate) fn last_segment(id: &str) -> &str {
    id.rsplit('/').next().unwrap_or(id)
}

impl Scan<'_> {
    fn cred(
        &self,
        id: &str,
        identity: &str,
        kind: CredentialKind,
        name: Option<String>,
        (start, end): (Option<&str>, Option<&str>),
        usage: Usage,
    ) -> Credential {
        let expires = ts(end);
        Credential {
            id: id.to_string(),
            identity: identity.to_string(),
            kind,
            created: ts(start),
            expires,
            usage,
            // An expired secret or certificate no longer authenticates.
            active: expires.is_none_or(|e| e > self.now),
            name,
        }
    }

    async fn activity(&self, gaps: &mut Vec<Gap>) -> Option<Activity> {
        if !self.cfg.sign_in_reports {
            gaps.push(Gap {
                unseen: Unseen::Usage,
                reason: "sign-in reports disabled in the config: last use unknown".into(),
            });
            return None;
        }
        let sps = self
            .client
            .list::<model::SpSignIn>(Api::Graph, "/beta/reports/servicePrincipalSignInActivities")
            .await;
        let creds = match &sps {
            Ok(_) => Some(
                self.client
                    .list::<model::CredentialSignIn>(
                        Api::Graph,
                        "/beta/reports/appCredentialSignInActivities",
                    )
                    .await,
            ),
            Err(_) => None,
        };
        let refused = |e: &ApiError| matches!(e.status(), Some(400 | 401 | 403 | 404));
        match (sps, creds) {
            (Ok(sps), Some(Ok(creds))) => Some(Activity {
                by_app: sps
                    .into_iter()
                    .map(|s| (s.app_id.clone(), s.last_client_use()))
                    .collect(),
                by_key: creds
                    .into_iter()
                    .map(|c| {
                        let at = c
                            .sign_in_activity
                            .and_then(|a| ts(a.last_sign_in_date_time.as_deref()));
                        (c.key_id, at)
                    })
                    .collect(),
            }),
            (Err(e), _) | (_, Some(Err(e))) => {
                // No licence or permission (403), or a beta endpoint failing:
                // usage is unknown — never "never used" — and the rest of the
                // tenant is still read.
                let why = if refused(&e) { "refused" } else { "failed" };
                tracing::warn!(source = %self.cfg.name, error = %e, "sign-in reports {why}: usage unknown");
                gaps.push(Gap {
                    unseen: Unseen::Usage,
                    reason: format!("sign-in activity reports {why} ({e}): last use unknown"),
                });
                None
            }
            (Ok(_), None) => None,
        }
    }

    async fn tenant(&self) -> Result<Inventory, SourceError> {
        let c = self.client;
        let tenant = &self.cfg.tenant_id;
        let apps: Vec<model::Application> = c
            .list(
                Api::Graph,
                &format!("/v1.0/applications?$select={SELECT_APP}&$expand={EXPAND_OWNERS}"),
            )
            .await?;
        let all_sps: Vec<model::ServicePrincipal> = c
            .list(
                Api::Graph,
                &format!("/v1.0/servicePrincipals?$select={SELECT_SP}&$expand={EXPAND_OWNERS}"),
            )
            .await?;
        let sps: Vec<model::ServicePrincipal> = all_sps
            .into_iter()
            .filter(|s| {
                !s.app_owner_organization_id
                    .as_deref()
                    .is_some_and(|o| MICROSOFT_TENANTS.contains(&o))
            })
            .collect();
        let mut inv = Inventory::default();
        let activity = self.activity(&mut inv.coverage.gaps).await;
        let grants: Vec<model::PermissionGrant> =
            c.list(Api::Graph, "/v1.0/oauth2PermissionGrants").await?;

        let app_by_appid: HashMap<&str, &model::Application> =
            apps.iter().map(|a| (a.app_id.as_str(), a)).collect();

        // Applications, their secrets, certificates and federated credentials.
        let n = self.cfg.max_concurrency.max(1);
        let fics: Vec<(String, Result<Vec<model::FederatedCredential>, ApiError>)> =
            stream::iter(apps.iter().map(|a| a.id.clone()).collect::<Vec<_>>())
                .map(|app| async move {
                    let r = c
                        .list(
                            Api::Graph,
                            &format!(
                                "/v1.0/applications/{app}/federatedIdentityCredentials?$select=id,name,issuer,subject"
                            ),
                        )
                        .await;
                    (app, r)
                })
                .buffer_unordered(n)
                .collect()
                .await;
        let mut fic_by_app: HashMap<String, Vec<model::FederatedCredential>> = HashMap::new();
        for (app, r) in fics {
            match r {
                Ok(list) => {
                    fic_by_app.insert(app, list);
                }
                Err(e) => {
                    tracing::warn!(source = %self.cfg.name, %app, error = %e, "federated credentials not read");
                    inv.coverage.gaps.push(Gap {
                        unseen: Unseen::Credentials {
                            kind: CredentialKind::Federated,
                        },
                        reason: format!("federated credentials of application {app}: {e}"),
                    });
                }
            }
        }
        for a in &apps {
            let name = a.display_name.clone().unwrap_or_else(|| a.app_id.clone());
            inv.identities.push(Identity {
                provider: Provider::Azure,
                id: a.id.clone(),
                kind: IdentityKind::Application,
                name,
                account: tenant.clone(),
                owner: owners_of(&a.owners),
                created: ts(a.created_date_time.as_deref()),
                usage: usage_of(
                    &activity,
                    activity.as_ref().and_then(|x| x.by_app.get(&a.app_id)),
                ),
                enabled: true,
                tags: tags_of(&a.tags, &a.notes),
                human_login: false,
                human_login_last_used: None,
                privilege: None,
                privilege_reason: None,
            });
            self.push_creds(
                &mut inv,
                &a.id,
                &a.password_credentials,
                &a.key_credentials,
                &activity,
            );
            for f in fic_by_app.get(&a.id).into_iter().flatten() {
                let detail = match (&f.issuer, &f.subject) {
                    (Some(i), Some(s)) => format!("{} ({i} → {s})", f.name),
                    _ => f.name.clone(),
                };
                inv.credentials.push(Credential {
                    id: f.id.clone(),
                    identity: a.id.clone(),
                    kind: CredentialKind::Federated,
                    created: None,
                    expires: None,
                    usage: Usage::Unknown,
                    active: true,
                    name: Some(detail),
                });
            }
        }

        // Service principals and managed identities.
        for s in &sps {
            let kind = match s.service_principal_type.as_deref() {
                Some("ManagedIdentity") => IdentityKind::ManagedIdentity,
                _ => IdentityKind::ServicePrincipal,
            };
            let mut tags = tags_of(&s.tags, &s.notes);
            if let Some(t) = &s.service_principal_type {
                tags.insert("servicePrincipalType".into(), t.clone());
            }
            if kind == IdentityKind::ManagedIdentity {
                // The resource the identity belongs to, for the reader.
                if let Some(r) = s.alternative_names.iter().find(|n| n.starts_with('/')) {
                    tags.insert("resource".into(), r.clone());
                }
            }
            // The app registration's owners answer for its service principal.
            let owner = owners_of(&s.owners).or_else(|| {
                app_by_appid
                    .get(s.app_id.as_str())
                    .and_then(|a| owners_of(&a.owners))
            });
            inv.identities.push(Identity {
                provider: Provider::Azure,
                id: s.id.clone(),
                kind,
                name: s.display_name.clone().unwrap_or_else(|| s.app_id.clone()),
                account: tenant.clone(),
                owner,
                created: None,
                usage: usage_of(
                    &activity,
                    activity.as_ref().and_then(|x| x.by_app.get(&s.app_id)),
                ),
                enabled: s.account_enabled.unwrap_or(true),
                tags,
                human_login: false,
                human_login_last_used: None,
                privilege: None,
                privilege_reason: None,
            });
            self.push_creds(
                &mut inv,
                &s.id,
                &s.password_credentials,
                &s.key_credentials,
                &activity,
            );
        }

        // Application permissions held by each kept service principal.
        let assignments: Vec<Result<Vec<model::AppRoleAssignment>, ApiError>> =
            stream::iter(sps.iter().map(|s| s.id.clone()).collect::<Vec<_>>())
                .map(|sp| async move {
                    c.list(
                        Api::Graph,
                        &format!("/v1.0/servicePrincipals/{sp}/appRoleAssignments"),
                    )
                    .await
                })
                .buffer_unordered(n)
                .collect()
                .await;
        let mut assignments_flat = Vec::new();
        for r in assignments {
            assignments_flat.extend(r?);
        }
        let kept: BTreeSet<&str> = sps.iter().map(|s| s.id.as_str()).collect();
        let mut resources: BTreeSet<String> = assignments_flat
            .iter()
            .map(|a| a.resource_id.clone())
            .collect();
        resources.extend(
            grants
                .iter()
                .filter(|g| kept.contains(g.client_id.as_str()))
                .map(|g| g.resource_id.clone()),
        );
        let fetched: Vec<Result<model::ResourceSp, ApiError>> =
            stream::iter(resources.iter().cloned().collect::<Vec<_>>())
                .map(|r| async move {
                    c.get(
                        Api::Graph,
                        &format!(
                            "/v1.0/servicePrincipals/{r}?$select=id,appId,displayName,appRoles"
                        ),
                    )
                    .await
                })
                .buffer_unordered(n)
                .collect()
                .await;
        let mut res_by_id: HashMap<String, model::ResourceSp> = HashMap::new();
        for r in fetched {
            let r = r?;
            res_by_id.insert(r.id.clone(), r);
        }
        let mut have: BTreeSet<String> = BTreeSet::new();
        let mut granted: BTreeSet<(String, String)> = BTreeSet::new();
        for a in &assignments_flat {
            if !kept.contains(a.principal_id.as_str()) {
                continue;
            }
            let res = res_by_id.get(&a.resource_id);
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
            let id = app_role_entitlement(res_app, &a.app_role_id);
            if have.insert(id.clone()) {
                inv.entitlements.push(Entitlement {
                    id: id.clone(),
                    name: format!("{res_name}: {value} (application)"),
                    actions: vec![action_name(res_app, &value)],
                    resources: vec![resource_uri(
                        res_app,
                        &a.resource_id,
                        &self.client.graph_url,
                    )],
                    privilege: app_role_privilege(res_app, &value),
                });
            }
            if granted.insert((a.principal_id.clone(), id.clone())) {
                inv.grants.push(Grant {
                    identity: a.principal_id.clone(),
                    entitlement: id,
                    via: None,
                });
            }
        }

        // Entra ID directory roles held by kept principals. Refused (the
        // scanner lacks RoleManagement.Read.Directory) → a gap, not a failure.
        match self.directory_roles().await {
            Ok((defs, ras)) => {
                for ra in ras
                    .iter()
                    .filter(|r| kept.contains(r.principal_id.as_str()))
                {
                    let def = defs.get(&ra.role_definition_id);
                    let scope = ra.directory_scope_id.clone().unwrap_or_else(|| "/".into());
                    let template = def
                        .and_then(|d| d.template_id.clone())
                        .unwrap_or_else(|| ra.role_definition_id.clone());
                    let name = def
                        .and_then(|d| d.display_name.clone())
                        .unwrap_or_else(|| ra.role_definition_id.clone());
                    let actions: Vec<String> = def
                        .map(|d| {
                            d.role_permissions
                                .iter()
                                .flat_map(|p| p.allowed_resource_actions.iter().cloned())
                                .collect()
                        })
                        .unwrap_or_default();
                    let privilege =
                        if scope == "/" && ADMIN_DIRECTORY_ROLES.contains(&template.as_str()) {
                            PrivilegeLevel::Admin
                        } else if actions
                            .iter()
                            .any(|a| !a.ends_with("/read") && !a.contains("/read/"))
                        {
                            PrivilegeLevel::Write
                        } else {
                            PrivilegeLevel::Read
                        };
                    let id = directory_role_entitlement(&scope, &template);
                    if have.insert(id.clone()) {
                        inv.entitlements.push(Entitlement {
                            id: id.clone(),
                            name: format!("{name} (directory role at {scope})"),
                            actions,
                            resources: vec![scope.clone()],
                            privilege,
                        });
                    }
                    if granted.insert((ra.principal_id.clone(), id.clone())) {
                        inv.grants.push(Grant {
                            identity: ra.principal_id.clone(),
                            entitlement: id,
                            via: None,
                        });
                    }
                }
            }
            Err(e) => {
                tracing::warn!(source = %self.cfg.name, error = %e, "directory roles not read");
                inv.coverage.gaps.push(Gap {
                    unseen: Unseen::DirectoryRoles,
                    reason: e.to_string(),
                });
            }
        }

        // Delegated permissions: bounded by the signed-in user's own rights,
        // so never admin-equivalent by themselves.
        for g in grants
            .iter()
            .filter(|g| kept.contains(g.client_id.as_str()))
        {
            let res = res_by_id.get(&g.resource_id);
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
            let privilege = if scopes.iter().any(|s| is_write_scope(s)) {
                PrivilegeLevel::Write
            } else {
                PrivilegeLevel::Read
            };
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
                privilege,
            });
            inv.grants.push(Grant {
                identity: g.client_id.clone(),
                entitlement: id,
                via: Some("delegated".into()),
            });
        }

        // Azure RBAC, per subscription. One failing is a gap, not a failure.
        // An assignment at management-group scope shows in every subscription.
        let mut seen_ra = BTreeSet::new();
        for sub in &self.cfg.subscriptions {
            match self.subscription(sub).await {
                Ok((defs, ras)) => {
                    for ra in ras {
                        let p = &ra.properties;
                        if !kept.contains(p.principal_id.as_str()) || !seen_ra.insert(ra.id.clone())
                        {
                            continue;
                        }
                        let scope = p
                            .scope
                            .clone()
                            .unwrap_or_else(|| format!("/subscriptions/{sub}"));
                        let def = defs.get(last_segment(&p.role_definition_id));
                        let role = def
                            .map(|d| d.properties.role_name.clone())
                            .unwrap_or_else(|| last_segment(&p.role_definition_id).to_string());
                        let actions: Vec<String> = def
                            .map(|d| {
                                d.properties
                                    .permissions
                                    .iter()
                                    .flat_map(|x| x.actions.iter().chain(x.data_actions.iter()))
                                    .cloned()
                                    .collect()
                            })
                            .unwrap_or_default();
                        // The role at its scope, as approvals and snapshots
                        // name it; the assignment itself is found again by
                        // principal, scope and role when it is detached.
                        let id = rbac_entitlement(&scope, &p.role_definition_id);
                        if have.insert(id.clone()) {
                            inv.entitlements.push(Entitlement {
                                id: id.clone(),
                                name: format!("{role} at {scope}"),
                                privilege: rbac_privilege(&role, &actions, &scope),
                                actions,
                                resources: vec![scope],
                            });
                        }
                        if granted.insert((p.principal_id.clone(), id.clone())) {
                            inv.grants.push(Grant {
                                identity: p.principal_id.clone(),
                                entitlement: id,
                                via: None,
                            });
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(source = %self.cfg.name, subscription = %sub, error = %e, "subscription not read: its role assignments are unknown");
                    inv.coverage.gaps.push(Gap {
                        unseen: Unseen::Subscription { id: sub.clone() },
                        reason: e.to_string(),
                    });
                }
            }
        }
        Ok(inv)
    }

    fn push_creds(
        &self,
        inv: &mut Inventory,
        owner: &str,
        passwords: &[model::PasswordCredential],
        keys: &[model::KeyCredential],
        activity: &Option<Activity>,
    ) {
        for p in passwords {
            let usage = usage_of(
                activity,
                activity.as_ref().and_then(|x| x.by_key.get(&p.key_id)),
            );
            inv.credentials.push(self.cred(
                &p.key_id,
                owner,
                CredentialKind::ClientSecret,
                p.display_name.clone(),
                (p.start_date_time.as_deref(), p.end_date_time.as_deref()),
                usage,
            ));
        }
        for k in keys {
            let usage = usage_of(
                activity,
                activity.as_ref().and_then(|x| x.by_key.get(&k.key_id)),
            );
            let name = match (&k.display_name, &k.usage) {
                (Some(n), Some(u)) => Some(format!("{n} ({u})")),
                (Some(n), None) => Some(n.clone()),
                (None, u) => u.clone(),
            };
            inv.credentials.push(self.cred(
                &k.key_id,
                owner,
                CredentialKind::Certificate,
                name,
                (k.start_date_time.as_deref(), k.end_date_time.as_deref()),
                usage,
            ));
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

    async fn subscription(
        &self,
        sub: &str,
    ) -> Result<
        (
            HashMap<String, model::RoleDefinition>,
            Vec<model::RoleAssignment>,
        ),
        ApiError,
    > {
        let base = format!("/subscriptions/{sub}/providers/Microsoft.Authorization");
        let defs: Vec<model::RoleDefinition> = self
            .client
            .list(
                Api::Arm,
                &format!("{base}/roleDefinitions?api-version={ARM_API_VERSION}"),
            )
            .await?;
        let ras: Vec<model::RoleAssignment> = self
            .client
            .list(
                Api::Arm,
                &format!("{base}/roleAssignments?api-version={ARM_API_VERSION}"),
            )
            .await?;
        Ok((
            defs.into_iter()
                .map(|d| (last_segment(&d.id).to_string(), d))
                .collect(),
            ras,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn privilege_of_rbac_depends_on_role_and_scope() {
        let star = vec!["*".to_string()];
        assert_eq!(
            rbac_privilege("Owner", &star, "/subscriptions/s1"),
            PrivilegeLevel::Admin
        );
        assert_eq!(
            rbac_privilege(
                "Contributor",
                &star,
                "/providers/Microsoft.Management/managementGroups/mg"
            ),
            PrivilegeLevel::Admin
        );
        assert_eq!(
            rbac_privilege("Owner", &star, "/subscriptions/s1/resourceGroups/rg"),
            PrivilegeLevel::Write
        );
        let read = vec!["Microsoft.Storage/storageAccounts/read".to_string()];
        assert_eq!(
            rbac_privilege("Reader", &read, "/subscriptions/s1"),
            PrivilegeLevel::Read
        );
    }

    #[test]
    fn usage_is_never_only_when_a_read_report_does_not_list_it() {
        let at = chrono::Utc::now();
        let act = Some(Activity {
            by_app: [
                ("listed".to_string(), Some(at)),
                ("undated".to_string(), None),
            ]
            .into(),
            by_key: HashMap::new(),
        });
        let get = |k: &str| usage_of(&act, act.as_ref().and_then(|a| a.by_app.get(k)));
        assert_eq!(get("listed").last_used_at(), Some(at));
        assert_eq!(get("undated"), Usage::Unknown);
        assert_eq!(get("absent"), Usage::Never);
        assert_eq!(usage_of(&None, None), Usage::Unknown);
    }

    #[test]
    fn privilege_of_graph_permissions() {
        let g = GRAPH_APP_IDS[0];
        assert_eq!(
            app_role_privilege(g, "Directory.ReadWrite.All"),
            PrivilegeLevel::Admin
        );
        assert_eq!(
            app_role_privilege(g, "RoleManagement.ReadWrite.Directory"),
            PrivilegeLevel::Admin
        );
        assert_eq!(app_role_privilege(g, "Mail.Send"), PrivilegeLevel::Write);
        assert_eq!(app_role_privilege(g, "User.Read.All"), PrivilegeLevel::Read);
        // The same name on another resource is that resource's business.
        assert_eq!(
            app_role_privilege("other", "Directory.ReadWrite.All"),
            PrivilegeLevel::Write
        );
    }
}
