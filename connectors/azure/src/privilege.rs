//! Which Entra ID and Azure permissions count as administrator-equivalent,
//! write or read: every table the connector judges privilege by, as data
//! with the reason for each row, and the few functions that apply them.
//!
//! Admin-equivalent means the holder can grant itself (or anyone) any other
//! permission or role in the tenant or at the scope. Judgment calls, all
//! towards reporting more access, never less:
//! - a permission name is "write" when it says so (`write`, `fullcontrol`,
//!   `manage`, `.send`), whatever the resource;
//! - an RBAC role is admin only at a broad scope (subscription, management
//!   group, root); the same role on a resource group is write;
//! - a directory role is admin only tenant-wide (`/`); scoped to an
//!   administrative unit or an object it is write;
//! - delegated permissions are bounded by the signed-in user's own rights,
//!   so never admin-equivalent by themselves.

use nhi_contract::PrivilegeLevel;

/// One row of a privilege table: the name or id the provider uses, and why
/// it is in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    /// Matched exactly against what Graph or ARM returns.
    pub id: &'static str,
    /// Why holding it counts (for the reader; never matched).
    pub why: &'static str,
}

const fn row(id: &'static str, why: &'static str) -> Row {
    Row { id, why }
}

fn listed(table: &[Row], id: &str) -> bool {
    table.iter().any(|r| r.id == id)
}

/// Microsoft Graph's application id (the resource of Graph permissions).
pub const MICROSOFT_GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";
/// Azure AD Graph's application id (retired, still granted in old tenants).
pub const AAD_GRAPH_APP_ID: &str = "00000002-0000-0000-c000-000000000000";
/// The resources whose permissions [`ADMIN_GRAPH_PERMISSIONS`] names.
pub const GRAPH_APP_IDS: [&str; 2] = [MICROSOFT_GRAPH_APP_ID, AAD_GRAPH_APP_ID];

/// Graph application permissions that let the holder grant itself (or
/// anyone) any other permission or role in the tenant.
pub const ADMIN_GRAPH_PERMISSIONS: &[Row] = &[
    row(
        "Directory.ReadWrite.All",
        "writes users, groups, applications and service principals across the directory (Microsoft rates it privileged)",
    ),
    row(
        "RoleManagement.ReadWrite.Directory",
        "assigns any directory role, Global Administrator included",
    ),
    row(
        "AppRoleAssignment.ReadWrite.All",
        "grants any application permission to any service principal, itself included",
    ),
    row(
        "Application.ReadWrite.All",
        "adds a credential to any application or service principal, then signs in as it",
    ),
    row(
        "RoleAssignmentSchedule.ReadWrite.Directory",
        "creates active (PIM) assignments of any directory role",
    ),
    row(
        "RoleEligibilitySchedule.ReadWrite.Directory",
        "creates eligible (PIM) assignments of any directory role, then activates them",
    ),
    row(
        "RoleManagementPolicy.ReadWrite.Directory",
        "removes the approval and authentication conditions on activating a directory role",
    ),
    row(
        "PrivilegedAccess.ReadWrite.AzureADGroup",
        "adds members to role-assignable groups through PIM for groups",
    ),
    row(
        "PrivilegedAssignmentSchedule.ReadWrite.AzureADGroup",
        "creates active membership of role-assignable groups through PIM for groups",
    ),
    row(
        "UserAuthenticationMethod.ReadWrite.All",
        "resets any user's authentication methods, administrators' included",
    ),
    row(
        "Domain.ReadWrite.All",
        "adds or federates a domain, then signs in as its users",
    ),
    row(
        "Policy.ReadWrite.PermissionGrant",
        "changes which permissions can be consented to without an administrator",
    ),
];

/// Entra ID directory roles (by template id) that can grant themselves or
/// anyone any permission, when held tenant-wide.
pub const ADMIN_DIRECTORY_ROLES: &[Row] = &[
    row(
        "62e90394-69f5-4237-9190-012177145e10",
        "Global Administrator: every directory permission",
    ),
    row(
        "e8611ab8-c189-46e8-94e1-60213ab1f814",
        "Privileged Role Administrator: assigns any directory role",
    ),
    row(
        "7be44c8a-adaf-4e2a-84d6-ab2649e08a13",
        "Privileged Authentication Administrator: resets any user's credentials, Global Administrators' included",
    ),
    row(
        "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3",
        "Application Administrator: adds credentials to any application, privileged ones included",
    ),
    row(
        "158c047a-c907-4556-b7ef-446551a6b5f7",
        "Cloud Application Administrator: adds credentials to any application, privileged ones included",
    ),
];

/// Azure roles (by name) that are administrator-equivalent at subscription,
/// management-group or root scope.
pub const ADMIN_AZURE_ROLES: &[Row] = &[
    row("Owner", "every action, role assignment included"),
    row(
        "Contributor",
        "every action but role assignment: runs code on, and reads the keys of, what is in scope, acting as its managed identities",
    ),
    row(
        "User Access Administrator",
        "assigns any role in scope, Owner included",
    ),
];

/// RBAC actions that let a role, whatever its name, assign roles.
pub const ROLE_GRANTING_ACTIONS: &[Row] = &[
    row("*", "every action"),
    row(
        "Microsoft.Authorization/*",
        "every authorization action, role assignment included",
    ),
    row(
        "Microsoft.Authorization/roleAssignments/write",
        "creates role assignments",
    ),
];

/// Words in a permission or scope name (case-insensitive) that make it write.
pub const WRITE_WORDS: &[Row] = &[
    row("write", "`ReadWrite`, `Write`: changes data"),
    row(
        "fullcontrol",
        "`FullControl`: every operation on the resource",
    ),
    row("manage", "`Manage`: administers the resource"),
];

/// Endings of a permission or scope name (case-insensitive) that make it write.
pub const WRITE_ENDINGS: &[Row] = &[row(".send", "`Mail.Send` and the like: acts as a sender")];

/// Whether a permission or delegated scope name writes.
pub(crate) fn is_write_scope(value: &str) -> bool {
    let v = value.to_ascii_lowercase();
    WRITE_WORDS.iter().any(|w| v.contains(w.id)) || WRITE_ENDINGS.iter().any(|w| v.ends_with(w.id))
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
    if GRAPH_APP_IDS.contains(&resource_app_id) && listed(ADMIN_GRAPH_PERMISSIONS, value) {
        PrivilegeLevel::Admin
    } else if is_write_scope(value) {
        PrivilegeLevel::Write
    } else {
        PrivilegeLevel::Read
    }
}

/// Privilege of a delegated grant of `scopes`.
pub(crate) fn delegated_privilege(scopes: &[&str]) -> PrivilegeLevel {
    if scopes.iter().any(|s| is_write_scope(s)) {
        PrivilegeLevel::Write
    } else {
        PrivilegeLevel::Read
    }
}

/// Privilege of a directory role (by template id) at a directory scope,
/// given its allowed resource actions.
pub(crate) fn directory_role_privilege(
    template: &str,
    scope: &str,
    actions: &[String],
) -> PrivilegeLevel {
    if scope == "/" && listed(ADMIN_DIRECTORY_ROLES, template) {
        PrivilegeLevel::Admin
    } else if actions
        .iter()
        .any(|a| !a.ends_with("/read") && !a.contains("/read/"))
    {
        PrivilegeLevel::Write
    } else {
        PrivilegeLevel::Read
    }
}

/// Privilege of an Azure role at a scope.
pub(crate) fn rbac_privilege(role: &str, actions: &[String], scope: &str) -> PrivilegeLevel {
    let grants_roles = actions.iter().any(|a| listed(ROLE_GRANTING_ACTIONS, a));
    if broad_scope(scope) && (listed(ADMIN_AZURE_ROLES, role) || grants_roles) {
        PrivilegeLevel::Admin
    } else if actions.iter().any(|a| !a.ends_with("/read")) {
        PrivilegeLevel::Write
    } else {
        PrivilegeLevel::Read
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
