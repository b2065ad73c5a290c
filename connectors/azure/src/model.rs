//! The Graph and ARM response shapes the connector reads, as documented in
//! the Microsoft Graph v1.0 / beta, ARM Authorization 2022-04-01 and ARM
//! Microsoft.ManagedIdentity 2024-11-30 references. Only the fields used are modelled; everything else in a
//! response is ignored by serde — in particular a password credential's
//! `secretText` and `hint` have no field here, so they are dropped at
//! parse time and never reach the inventory, a log or the store.

use chrono::{DateTime, NaiveDateTime, Utc};
use nhi_contract::Timestamp;
use serde::{Deserialize, Serialize};

/// ARM Authorization API version used for role assignments and definitions
/// (the shapes below are that version's).
pub const ARM_API_VERSION: &str = "2022-04-01";

/// ARM Authorization API version of the PIM (eligibility) collections:
/// `roleEligibilityScheduleInstances` is documented in 2020-10-01.
pub const ARM_PIM_API_VERSION: &str = "2020-10-01";
/// ARM Microsoft.ManagedIdentity API version (the latest GA) used for a
/// user-assigned identity's federated identity credentials.
pub const MSI_API_VERSION: &str = "2024-11-30";

/// The last `/`-separated segment of an ARM id (a role definition's guid).
pub(crate) fn last_segment(id: &str) -> &str {
    id.rsplit('/').next().unwrap_or(id)
}

/// Parse a Graph timestamp. Graph sends RFC 3339, but its own reference
/// examples also show offsets like `-8:00`; those are repaired rather than
/// failing the scan. Unparseable → `None` (unknown, never "now").
pub(crate) fn ts(s: Option<&str>) -> Option<Timestamp> {
    let s = s?.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    // `…T00:00:00-8:00` → `…T00:00:00-08:00`
    if let Some(pos) = s.rfind(['+', '-']) {
        let (head, off) = s.split_at(pos);
        if head.contains('T') {
            let sign = &off[..1];
            let rest = &off[1..];
            if let Some((h, m)) = rest.split_once(':') {
                if h.len() == 1 {
                    let fixed = format!("{head}{sign}0{h}:{m}");
                    if let Ok(t) = DateTime::parse_from_rfc3339(&fixed) {
                        return Some(t.with_timezone(&Utc));
                    }
                }
            }
        }
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|n| n.and_utc())
}

/// A directory object as `$expand=owners` returns it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DirObject {
    pub id: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub user_principal_name: Option<String>,
}

/// `passwordCredential`: metadata only (no `secretText`, no `hint`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PasswordCredential {
    pub key_id: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub start_date_time: Option<String>,
    #[serde(default)]
    pub end_date_time: Option<String>,
}

/// `keyCredential` as listed (its `key` is null in collections).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct KeyCredential {
    pub key_id: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub start_date_time: Option<String>,
    #[serde(default)]
    pub end_date_time: Option<String>,
    #[serde(default)]
    pub usage: Option<String>,
}

/// `application` (app registration).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Application {
    pub id: String,
    pub app_id: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub created_date_time: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub notes: Option<String>,
    #[serde(default)]
    pub password_credentials: Vec<PasswordCredential>,
    #[serde(default)]
    pub key_credentials: Vec<KeyCredential>,
    #[serde(default)]
    pub owners: Vec<DirObject>,
}

/// `servicePrincipal`, and its derived `agentIdentity` (beta) as the agent
/// listing returns it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ServicePrincipal {
    pub id: String,
    /// Absent on an agent identity as its listing documents it.
    #[serde(default)]
    pub app_id: String,
    /// `#microsoft.graph.agentIdentity` on an agent identity served in a
    /// collection of service principals.
    #[serde(rename = "@odata.type", default)]
    pub odata_type: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub service_principal_type: Option<String>,
    #[serde(default)]
    pub account_enabled: Option<bool>,
    #[serde(default)]
    pub app_owner_organization_id: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub notes: Option<String>,
    #[serde(default)]
    pub alternative_names: Vec<String>,
    #[serde(default)]
    pub password_credentials: Vec<PasswordCredential>,
    #[serde(default)]
    pub key_credentials: Vec<KeyCredential>,
    #[serde(default)]
    pub owners: Vec<DirObject>,
    /// Agent identity: the `appId` of its blueprint.
    #[serde(default)]
    pub agent_identity_blueprint_id: Option<String>,
    /// Agent identity: who answers for it (`$expand=sponsors`).
    #[serde(default)]
    pub sponsors: Vec<DirObject>,
}

/// `federatedIdentityExpression` (beta): a flexible federated credential's
/// claims-matching expression.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FederatedExpression {
    #[serde(default)]
    pub value: Option<String>,
}

/// `federatedIdentityCredential`: a trust, no secret. `subject` is null
/// when a (beta) `claimsMatchingExpression` admits subjects instead.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FederatedCredential {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub audiences: Vec<String>,
    #[serde(default)]
    pub claims_matching_expression: Option<FederatedExpression>,
}

/// ARM `Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct MiFederatedCredential {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub properties: MiFederatedProps,
}

/// Properties of a managed identity's federated credential (the
/// expression only in the preview API versions that document it).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MiFederatedProps {
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub audiences: Vec<String>,
    #[serde(default)]
    pub claims_matching_expression: Option<FederatedExpression>,
}

/// `appRoleAssignment` (an application permission held by a principal).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AppRoleAssignment {
    pub id: String,
    pub app_role_id: String,
    pub principal_id: String,
    pub resource_id: String,
    #[serde(default)]
    pub resource_display_name: Option<String>,
}

/// A resource service principal's `appRoles`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ResourceSp {
    pub id: String,
    pub app_id: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub app_roles: Vec<AppRole>,
}

/// One `appRole` of a resource.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AppRole {
    pub id: String,
    #[serde(default)]
    pub value: Option<String>,
}

/// `oauth2PermissionGrant` (delegated permissions of a client).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PermissionGrant {
    pub id: String,
    pub client_id: String,
    #[serde(default)]
    pub consent_type: Option<String>,
    pub resource_id: String,
    #[serde(default)]
    pub scope: Option<String>,
}

/// `unifiedRoleAssignment` (an Entra ID directory role held by a principal).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DirectoryRoleAssignment {
    pub id: String,
    pub principal_id: String,
    pub role_definition_id: String,
    #[serde(default)]
    pub directory_scope_id: Option<String>,
}

/// `unifiedRoleDefinition` (an Entra ID directory role).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DirectoryRoleDefinition {
    pub id: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub template_id: Option<String>,
    #[serde(default)]
    pub role_permissions: Vec<DirectoryRolePermission>,
}

/// Allowed actions of a directory role.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DirectoryRolePermission {
    #[serde(default)]
    pub allowed_resource_actions: Vec<String>,
}

/// `signInActivity` inside the beta reports.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SignInActivity {
    #[serde(default)]
    pub last_sign_in_date_time: Option<String>,
}

/// `servicePrincipalSignInActivity` (beta).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SpSignIn {
    pub app_id: String,
    /// Any sign-in, as client or as resource.
    #[serde(default)]
    pub last_sign_in_activity: Option<SignInActivity>,
    /// The application signing in with its own credentials (client side).
    #[serde(default)]
    pub application_authentication_client_sign_in_activity: Option<SignInActivity>,
    /// The application signing in on behalf of a user (client side).
    #[serde(default)]
    pub delegated_client_sign_in_activity: Option<SignInActivity>,
}

impl SpSignIn {
    /// Last use of the principal's own identity: its sign-ins as a client.
    /// Sign-ins where it was only the resource (others calling its API) are
    /// not use of its credentials. `None`: no usable date (unknown).
    pub fn last_client_use(&self) -> Option<Timestamp> {
        let client = [
            &self.application_authentication_client_sign_in_activity,
            &self.delegated_client_sign_in_activity,
        ];
        if client.iter().all(|a| a.is_none()) {
            // An entry without the client-side breakdown: the overall date.
            return ts(self
                .last_sign_in_activity
                .as_ref()?
                .last_sign_in_date_time
                .as_deref());
        }
        client
            .iter()
            .filter_map(|a| ts(a.as_ref()?.last_sign_in_date_time.as_deref()))
            .max()
    }
}

/// `appCredentialSignInActivity` (beta).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CredentialSignIn {
    pub key_id: String,
    #[serde(default)]
    pub sign_in_activity: Option<SignInActivity>,
}

/// ARM `roleAssignment`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RoleAssignment {
    pub id: String,
    pub properties: RoleAssignmentProps,
}

/// Properties of an ARM role assignment (what undo needs to recreate it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RoleAssignmentProps {
    pub role_definition_id: String,
    pub principal_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// ARM `roleDefinition`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct RoleDefinition {
    pub id: String,
    pub properties: RoleDefinitionProps,
}

/// Properties of an ARM role definition.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RoleDefinitionProps {
    pub role_name: String,
    #[serde(default)]
    pub permissions: Vec<Permission>,
}

/// One permission block of a role definition: what it allows, and what
/// its `notActions` / `notDataActions` take out of that (a subtraction
/// from this role only, not a deny: another role can still grant it).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Permission {
    #[serde(default)]
    pub actions: Vec<String>,
    #[serde(default)]
    pub not_actions: Vec<String>,
    #[serde(default)]
    pub data_actions: Vec<String>,
    #[serde(default)]
    pub not_data_actions: Vec<String>,
}

/// A group a service principal is a (transitive) member of, as
/// `transitiveMemberOf/microsoft.graph.group?$select=id` returns it (the
/// grant names the group by id; its name is not needed).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Group {
    pub id: String,
}

/// `unifiedRoleEligibilityScheduleInstance`: a directory role a principal
/// is eligible for now (PIM), until `endDateTime` (none: permanently).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DirectoryEligibility {
    pub principal_id: String,
    pub role_definition_id: String,
    #[serde(default)]
    pub directory_scope_id: Option<String>,
    #[serde(default)]
    pub end_date_time: Option<String>,
}

/// ARM `roleEligibilityScheduleInstance` (api-version 2020-10-01).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct RbacEligibility {
    pub id: String,
    pub properties: RbacEligibilityProps,
}

/// Properties of an ARM role eligibility schedule instance.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RbacEligibilityProps {
    pub role_definition_id: String,
    pub principal_id: String,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub end_date_time: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_from_the_reference_examples_parse() {
        let a = ts(Some("2021-03-01T00:00:00-8:00")).expect("repaired offset");
        assert_eq!(a.to_rfc3339(), "2021-03-01T08:00:00+00:00");
        let b = ts(Some("2024-01-02T03:04:05.1234567Z")).expect("rfc3339");
        assert_eq!(b.format("%F %T").to_string(), "2024-01-02 03:04:05");
        assert_eq!(ts(Some("yesterday")), None);
        assert_eq!(ts(None), None);
    }

    #[test]
    fn a_password_credential_keeps_no_secret() {
        let p: PasswordCredential = serde_json::from_str(
            r#"{"customKeyIdentifier":null,"displayName":"ci","endDateTime":"2030-01-01T00:00:00Z","hint":"Zx9","keyId":"k1","secretText":"Zx9~very-secret","startDateTime":"2025-01-01T00:00:00Z"}"#,
        )
        .expect("documented shape");
        let dbg = format!("{p:?}");
        assert!(
            !dbg.contains("very-secret") && !dbg.contains("Zx9"),
            "{dbg}"
        );
    }
}
