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
//! - an RBAC role is judged by what it allows after its `notActions`
//!   (a subtraction within the role, not a deny), whatever its name: a
//!   custom role that can still assign roles or rewrite role definitions,
//!   or that allows `*` as Contributor does, is admin like the built-ins
//!   named in [`ADMIN_AZURE_ROLES`]; built-ins keep their rows by name;
//! - a role held through a group or as eligible (PIM) counts as held: the
//!   holder's privilege is the same, only how it is removed differs;
//! - a directory role is admin only tenant-wide (`/`); scoped to an
//!   administrative unit or an object it is write;
//! - delegated permissions are bounded by the signed-in user's own rights,
//!   so never admin-equivalent by themselves.

use nhi_contract::pattern::Syntax;
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

/// RBAC actions that make a role, whatever its name, administrator-
/// equivalent at a broad scope when it allows them after its `notActions`:
/// each is a concrete action matched against the role's patterns (Azure
/// action names are case-insensitive; `*` is the only wildcard).
pub const ROLE_GRANTING_ACTIONS: &[Row] = &[
    row(
        "Microsoft.Authorization/roleAssignments/write",
        "creates role assignments: assigns itself Owner",
    ),
    row(
        "Microsoft.Authorization/roleDefinitions/write",
        "rewrites a custom role it holds to allow every action",
    ),
    row(
        "Microsoft.Authorization/roleAssignmentScheduleRequests/write",
        "creates active (PIM) role assignments: assigns itself Owner",
    ),
    row(
        "Microsoft.Authorization/roleEligibilityScheduleRequests/write",
        "makes itself eligible for Owner, then activates it",
    ),
];

/// An action pattern that, allowed and not taken out by `notActions`,
/// makes a role Contributor-like: every action on every resource in scope.
pub const EVERY_ACTION: Row = row(
    "*",
    "every action on every resource in scope: runs code on it and reads its keys, acting as its managed identities (Contributor and its clones)",
);

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

/// How Azure action patterns compare: `*` only, case-insensitive.
const AZURE_ACTION: Syntax = Syntax::STAR_ASCII_CASELESS;

/// What one Azure role definition allows after its `notActions` and
/// `notDataActions`: a subtraction within the role (Azure documents them
/// as such, not as denies), so an action is allowed when some `actions`
/// pattern of a block matches it and no `notActions` pattern of the same
/// block does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RoleActions {
    /// Control-plane patterns allowed, each with the exclusions that only
    /// partly take it out (a pattern wholly covered by an exclusion is
    /// dropped).
    pub actions: Vec<(String, Vec<String>)>,
    /// Data-plane patterns allowed, likewise.
    pub data_actions: Vec<(String, Vec<String>)>,
}

fn subtract(allowed: &[String], excluded: &[String]) -> Vec<(String, Vec<String>)> {
    allowed
        .iter()
        .filter(|a| !excluded.iter().any(|n| AZURE_ACTION.covers(n, a)))
        .map(|a| {
            let partly: Vec<String> = excluded
                .iter()
                .filter(|n| AZURE_ACTION.overlaps(a, n))
                .cloned()
                .collect();
            (a.clone(), partly)
        })
        .collect()
}

impl RoleActions {
    /// The role's permission blocks, each subtracted within itself.
    pub(crate) fn of(blocks: &[crate::model::Permission]) -> RoleActions {
        let mut out = RoleActions::default();
        for b in blocks {
            out.actions.extend(subtract(&b.actions, &b.not_actions));
            out.data_actions
                .extend(subtract(&b.data_actions, &b.not_data_actions));
        }
        out
    }

    /// Whether the concrete control-plane `action` is allowed.
    pub(crate) fn allows(&self, action: &str) -> bool {
        self.actions.iter().any(|(a, not)| {
            AZURE_ACTION.matches(a, action) && !not.iter().any(|n| AZURE_ACTION.matches(n, action))
        })
    }

    /// Whether some allowed pattern is `*` with no exclusion covering a
    /// whole verb (`*/write`, `*/action`, `*/delete`): every action on
    /// every resource type but a few named ones, as Contributor.
    pub(crate) fn every_action(&self) -> bool {
        self.actions.iter().any(|(a, not)| {
            a == EVERY_ACTION.id
                && !["*/write", "*/action", "*/delete"]
                    .iter()
                    .any(|verb| not.iter().any(|n| AZURE_ACTION.covers(n, verb)))
        })
    }

    /// The allowed patterns as the entitlement lists them: control plane
    /// then data plane, a pattern wholly excluded left out. A pattern only
    /// partly excluded (Contributor's `*` less `Microsoft.Authorization/*/Write`)
    /// stays whole: globs cannot express the difference, and listing more
    /// than is allowed errs towards reporting access, never hiding it.
    pub(crate) fn listed(&self) -> Vec<String> {
        self.actions
            .iter()
            .chain(self.data_actions.iter())
            .map(|(a, _)| a.clone())
            .collect()
    }
}

/// Privilege of an Azure role at a scope, from what it allows after its
/// exclusions: built-in roles by name ([`ADMIN_AZURE_ROLES`]), any role
/// (custom ones included) by its actions ([`ROLE_GRANTING_ACTIONS`],
/// [`EVERY_ACTION`]).
pub(crate) fn rbac_privilege(role: &str, allowed: &RoleActions, scope: &str) -> PrivilegeLevel {
    let grants_roles = ROLE_GRANTING_ACTIONS.iter().any(|r| allowed.allows(r.id));
    if broad_scope(scope)
        && (listed(ADMIN_AZURE_ROLES, role) || grants_roles || allowed.every_action())
    {
        PrivilegeLevel::Admin
    } else if allowed
        .actions
        .iter()
        .chain(allowed.data_actions.iter())
        .any(|(a, _)| !a.to_ascii_lowercase().ends_with("/read"))
    {
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
        let star = allows(&["*"], &[]);
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
        let read = allows(&["Microsoft.Storage/storageAccounts/read"], &[]);
        assert_eq!(
            rbac_privilege("Reader", &read, "/subscriptions/s1"),
            PrivilegeLevel::Read
        );
    }

    fn allows(actions: &[&str], not: &[&str]) -> RoleActions {
        RoleActions::of(&[crate::model::Permission {
            actions: actions.iter().map(|s| s.to_string()).collect(),
            not_actions: not.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }])
    }

    #[test]
    fn custom_roles_are_judged_by_what_they_allow_after_not_actions() {
        let sub = "/subscriptions/s1";
        // A Contributor clone under another name.
        let clone = allows(
            &["*"],
            &[
                "Microsoft.Authorization/*/Delete",
                "Microsoft.Authorization/*/Write",
                "Microsoft.Authorization/elevateAccess/Action",
            ],
        );
        assert_eq!(
            rbac_privilege("Deploy Operator", &clone, sub),
            PrivilegeLevel::Admin
        );
        assert_eq!(clone.listed(), vec!["*".to_string()]);
        // Authorization everything, role-granting writes taken out.
        let auth = allows(
            &["Microsoft.Authorization/*"],
            &[
                "microsoft.authorization/roleassignments/write",
                "Microsoft.Authorization/roleDefinitions/write",
                "Microsoft.Authorization/roleAssignmentScheduleRequests/*",
                "Microsoft.Authorization/roleEligibilityScheduleRequests/*",
            ],
        );
        assert_eq!(
            rbac_privilege("Auth Helper", &auth, sub),
            PrivilegeLevel::Write
        );
        // The same without the exclusions assigns roles.
        let auth_all = allows(&["Microsoft.Authorization/*"], &[]);
        assert_eq!(
            rbac_privilege("Auth Helper", &auth_all, sub),
            PrivilegeLevel::Admin
        );
        // A role excluded wholly is dropped from what is listed.
        let gone = allows(
            &["Microsoft.Web/sites/write", "*/read"],
            &["Microsoft.Web/*"],
        );
        assert_eq!(gone.listed(), vec!["*/read".to_string()]);
        assert_eq!(rbac_privilege("Viewer", &gone, sub), PrivilegeLevel::Read);
        // `*` without any write is not Contributor-like.
        let no_writes = allows(&["*"], &["*/write", "*/delete", "*/action"]);
        assert!(!no_writes.every_action());
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
