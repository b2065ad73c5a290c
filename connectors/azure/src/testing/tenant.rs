//! The fake tenant's data: the documented-shape demo tenant, a generated
//! one for scale runs, the fault switches, and what was requested.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Duration, Utc};
use serde_json::{json, Value};

use super::{
    ids, LEAKED_SECRET_TEXT, MICROSOFT_SERVICES_TENANT, ROLE_BLOB_READER, ROLE_CONTRIBUTOR,
    ROLE_OWNER, SUBSCRIPTION, TENANT,
};

/// One recorded request.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// HTTP method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Query string, if any (percent-decoded).
    pub query: Option<String>,
    /// JSON body, if any (never the token form).
    pub body: Option<Value>,
}

/// The fake tenant's state and fault switches.
#[derive(Debug, Default)]
pub struct Tenant {
    /// Application objects as Graph returns them (owners under `owners`).
    pub apps: Vec<Value>,
    /// Service principal objects (owners under `owners`, resource SPs with `appRoles`).
    pub sps: Vec<Value>,
    /// Federated identity credentials by application object id.
    pub fics: BTreeMap<String, Vec<Value>>,
    /// Agent identities (`#microsoft.graph.agentIdentity`, owners under
    /// `owners`, sponsors under `sponsors`): served by the beta agent
    /// listing and, as the service principals they are, in
    /// `/v1.0/servicePrincipals` too.
    pub agents: Vec<Value>,
    /// ARM federated identity credentials by user-assigned managed
    /// identity resource id.
    pub mi_fics: BTreeMap<String, Vec<Value>>,
    /// appRoleAssignment objects.
    pub app_role_assignments: Vec<Value>,
    /// oauth2PermissionGrant objects.
    pub grants: Vec<Value>,
    /// servicePrincipalSignInActivity objects.
    pub sp_activity: Vec<Value>,
    /// appCredentialSignInActivity objects.
    pub cred_activity: Vec<Value>,
    /// Entra ID directory role definitions (unifiedRoleDefinition).
    pub directory_roles: Vec<Value>,
    /// Entra ID directory role assignments (unifiedRoleAssignment).
    pub directory_role_assignments: Vec<Value>,
    /// ARM role definitions.
    pub role_definitions: Vec<Value>,
    /// ARM role assignments.
    pub role_assignments: Vec<Value>,
    /// Items per page of every collection.
    pub page_size: usize,
    /// The beta reports answer 403 (no licence / permission).
    pub reports_forbidden: bool,
    /// The beta reports answer 500 (every retry).
    pub reports_down: bool,
    /// Subscriptions whose ARM calls answer 500.
    pub failing_subscriptions: BTreeSet<String>,
    /// Paths whose first request answers 429 with `Retry-After`.
    pub throttle_once: BTreeSet<String>,
    /// Seconds the 429 asks to wait (1 unless set).
    pub retry_after_secs: Option<u64>,
    /// The directory role assignments answer 403.
    pub directory_roles_forbidden: bool,
    /// Graph next links point to another host.
    pub foreign_next_link: bool,
    /// The directory listing answers 500.
    pub directory_down: bool,
    /// The beta agent identity listing answers this status (403 refused,
    /// 400/404 on a tenant or cloud without it).
    pub agents_refused: Option<u16>,
    /// Agent identities are served by the beta agent listing only, not
    /// among `/v1.0/servicePrincipals`.
    pub agents_only_in_beta: bool,
    /// Managed identity resource ids whose federated credentials answer
    /// 403 (the scanner lacks read on them).
    pub failing_mi_fics: BTreeSet<String>,
    /// Every request received.
    pub requests: Vec<Recorded>,
    /// Milliseconds each request is held before it is answered.
    pub delay_ms: u64,
    /// Most requests in flight at once so far.
    pub max_in_flight: usize,
    pub(super) in_flight: usize,
    pub(super) issued: BTreeSet<String>,
    pub(super) counter: u64,
    /// Groups (`group` objects as documented).
    pub groups: Vec<Value>,
    /// Direct members (service principal or group ids) of each group.
    pub group_members: BTreeMap<String, Vec<String>>,
    /// appRoleAssignment objects held by groups.
    pub group_app_role_assignments: Vec<Value>,
    /// Directory role eligibility schedule instances (PIM).
    pub directory_eligibility: Vec<Value>,
    /// ARM role eligibility schedule instances (PIM).
    pub rbac_eligibility: Vec<Value>,
    /// Service principals whose `transitiveMemberOf` answers 500.
    pub failing_memberships: BTreeSet<String>,
    /// Groups whose `appRoleAssignments` answer 500.
    pub failing_group_assignments: BTreeSet<String>,
    /// The directory role eligibility answers 403.
    pub directory_eligibility_forbidden: bool,
    /// The ARM role eligibility answers 500.
    pub rbac_eligibility_down: bool,
}

pub(super) fn ago(days: i64) -> String {
    (Utc::now() - Duration::days(days))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn within(days: i64) -> String {
    (Utc::now() + Duration::days(days))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// A client secret as the passwordCredential resource documents it;
/// `end` days from now (negative: expired).
fn secret(key: &str, name: &str, start: i64, end: i64) -> Value {
    json!({
        "customKeyIdentifier": null,
        "displayName": name,
        "endDateTime": within(end),
        "hint": &LEAKED_SECRET_TEXT[..3],
        "keyId": key,
        "secretText": LEAKED_SECRET_TEXT,
        "startDateTime": ago(start),
    })
}

/// A certificate as the keyCredential resource documents it; `end` days
/// from now (negative: expired).
fn cert(key: &str, name: &str, start: i64, end: i64) -> Value {
    json!({
        "customKeyIdentifier": "52ED9B5038A47B9E2E2190715CC238359D4F8F73",
        "displayName": name,
        "endDateTime": within(end),
        "key": "MIIDDDCCAfSgAwIBAgIQM6JQ7N8Lp5pP7d1T3k8r2DANBgkqhkiG9w0BAQsFADAzMTEwLwYDVQQDEyhwYXltZW50cy1hcGk",
        "keyId": key,
        "startDateTime": ago(start),
        "type": "AsymmetricX509Cert",
        "usage": "Verify",
    })
}

fn user(id: &str, name: &str, upn: &str) -> Value {
    json!({"@odata.type": "#microsoft.graph.user", "id": id, "displayName": name, "userPrincipalName": upn})
}

fn role_def(guid: &str, name: &str, actions: &[&str], data: &[&str]) -> Value {
    json!({
        "id": format!("/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Authorization/roleDefinitions/{guid}"),
        "name": guid,
        "type": "Microsoft.Authorization/roleDefinitions",
        "properties": {
            "roleName": name,
            "type": "BuiltInRole",
            "description": format!("{name} built-in role"),
            "assignableScopes": ["/"],
            "permissions": [{"actions": actions, "notActions": [], "dataActions": data, "notDataActions": []}],
        }
    })
}

fn role_assignment(name: &str, scope: &str, role_guid: &str, principal: &str) -> Value {
    json!({
        "id": format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{name}"),
        "name": name,
        "type": "Microsoft.Authorization/roleAssignments",
        "properties": {
            "roleDefinitionId": format!("/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Authorization/roleDefinitions/{role_guid}"),
            "principalId": principal,
            "principalType": "ServicePrincipal",
            "scope": scope,
        }
    })
}

impl Tenant {
    /// The documented-shape tenant the tests scan (see [`ids`]).
    pub fn demo() -> Tenant {
        let (sp_activity, cred_activity) = demo_sign_ins();
        let (directory_roles, directory_role_assignments) = demo_directory_roles();
        let (role_definitions, role_assignments) = demo_rbac();
        let mut t = Tenant {
            apps: demo_apps(),
            sps: demo_service_principals(),
            fics: demo_federated(),
            agents: demo_agents(),
            mi_fics: demo_mi_federated(),
            app_role_assignments: demo_app_role_assignments(),
            grants: demo_grants(),
            sp_activity,
            cred_activity,
            directory_roles,
            directory_role_assignments,
            role_definitions,
            role_assignments,
            page_size: 2,
            ..Tenant::default()
        };
        super::entitlements::extend_demo(&mut t);
        t
    }

    /// A generated tenant for scale runs: `n` applications, each with one
    /// client secret (used `i % 200` days ago), its service principal holding
    /// `User.Read.All`; Microsoft Graph's principal; pages of 100 as Graph's
    /// default.
    pub fn synthetic(n: usize) -> Tenant {
        let mut t = Tenant::demo();
        let graph = t.sps.iter().find(|s| s["id"] == ids::SP_GRAPH).cloned();
        t.apps.clear();
        t.sps = graph.into_iter().collect();
        t.fics.clear();
        t.agents.clear();
        t.mi_fics.clear();
        t.app_role_assignments.clear();
        t.grants.clear();
        t.sp_activity.clear();
        t.cred_activity.clear();
        t.role_assignments.clear();
        t.directory_role_assignments.clear();
        for i in 0..n {
            let app = format!("a9000000-0000-4000-8000-{i:012}");
            let sp = format!("b9000000-0000-4000-8000-{i:012}");
            let app_id = format!("c9000000-0000-4000-8000-{i:012}");
            let key = format!("59000000-0000-4000-8000-{i:012}");
            t.apps.push(json!({
                "id": app, "appId": app_id, "displayName": format!("svc-{i}"), "createdDateTime": ago(400),
                "tags": [], "notes": null,
                "passwordCredentials": [secret(&key, "generated", 300, 65)],
                "keyCredentials": [],
                "owners": [user("e9000000-0000-4000-8000-0000000000aa", "Owner", "owner@contoso.com")],
            }));
            t.sps.push(json!({
                "id": sp, "appId": app_id, "displayName": format!("svc-{i}"),
                "servicePrincipalType": "Application", "accountEnabled": true,
                "appOwnerOrganizationId": TENANT, "tags": [], "notes": null, "alternativeNames": [],
                "passwordCredentials": [], "keyCredentials": [], "owners": [],
            }));
            t.app_role_assignments.push(json!({
                "id": format!("c3ludGhldGljLWFzc2lnbm1lbnQ{i}"), "appRoleId": ids::ROLE_USER_READ,
                "principalId": sp, "principalType": "ServicePrincipal", "createdDateTime": ago(300),
                "resourceDisplayName": "Microsoft Graph", "resourceId": ids::SP_GRAPH,
            }));
            t.sp_activity.push(json!({"id": format!("c3A{i}"), "appId": app_id,
                "applicationAuthenticationClientSignInActivity": {"lastSignInDateTime": ago((i % 200) as i64)}}));
            t.cred_activity.push(
                json!({"id": format!("a2V5{i}"), "keyId": key, "keyType": "clientSecret",
                "appId": app_id, "credentialOrigin": "application",
                "signInActivity": {"lastSignInDateTime": ago((i % 200) as i64)}}),
            );
        }
        t.page_size = 100;
        t
    }

    /// Secret key ids of an app or service principal.
    pub fn secrets_of(&self, id: &str) -> Vec<String> {
        self.key_ids(id, "passwordCredentials")
    }

    /// Certificate key ids of an app or service principal.
    pub fn certificates_of(&self, id: &str) -> Vec<String> {
        self.key_ids(id, "keyCredentials")
    }

    fn key_ids(&self, id: &str, field: &str) -> Vec<String> {
        self.apps
            .iter()
            .chain(self.sps.iter())
            .filter(|o| o["id"] == id)
            .flat_map(|o| o[field].as_array().cloned().unwrap_or_default())
            .filter_map(|c| c["keyId"].as_str().map(str::to_string))
            .collect()
    }

    /// `accountEnabled` of a service principal.
    pub fn enabled(&self, sp: &str) -> Option<bool> {
        self.sps
            .iter()
            .chain(self.agents.iter())
            .find(|o| o["id"] == sp)
            .and_then(|o| o["accountEnabled"].as_bool())
    }

    /// Requests other than token requests, as `METHOD path`.
    pub fn calls(&self) -> Vec<String> {
        self.requests
            .iter()
            .filter(|r| !r.path.ends_with("/oauth2/v2.0/token"))
            .map(|r| format!("{} {}", r.method, r.path))
            .collect()
    }

    /// Requests that change something.
    pub fn writes(&self) -> Vec<&Recorded> {
        self.requests
            .iter()
            .filter(|r| r.method != "GET" && !r.path.ends_with("/oauth2/v2.0/token"))
            .collect()
    }
}

/// The demo tenant's application registrations, in the field set of the
/// documented `application` examples (`testdata/docs/graph-v1.0-application-*`).
fn demo_apps() -> Vec<Value> {
    use ids::*;
    let app = |id: &str, app_id: &str, name: &str, created: i64, owners: Vec<Value>| {
        json!({
            "id": id, "appId": app_id, "displayName": name, "createdDateTime": ago(created),
            "signInAudience": "AzureADMyOrg", "publisherDomain": "contoso.onmicrosoft.com",
            "identifierUris": [], "tags": [], "notes": null,
            "passwordCredentials": [], "keyCredentials": [], "owners": owners,
        })
    };
    let priya = user(
        "e1000000-0000-4000-8000-0000000000aa",
        "Priya Nair",
        "priya.nair@contoso.com",
    );
    let tom = user(
        "e2000000-0000-4000-8000-0000000000bb",
        "Tom Becker",
        "tom.becker@contoso.com",
    );
    let mut payments = app(
        APP_PAYMENTS,
        APPID_PAYMENTS,
        "payments-api",
        900,
        vec![priya],
    );
    payments["tags"] = json!(["team:payments"]);
    payments["passwordCredentials"] = json!([
        secret(SECRET_PAYMENTS_CI, "ci-deploy", 200, 100),
        secret(SECRET_PAYMENTS_OLD, "old-rotation", 800, 300),
    ]);
    payments["keyCredentials"] = json!([
        cert(CERT_PAYMENTS, "CN=payments-api", 30, 335),
        cert(CERT_PAYMENTS_NEXT, "CN=payments-api-next", 2, 363),
    ]);
    let mut legacy = app(
        APP_LEGACY,
        "c2000000-0000-4000-8000-000000000002",
        "legacy-sync",
        2000,
        vec![],
    );
    legacy["notes"] = json!("sync to the old CRM");
    // A 10-year secret in use, and the one it replaced: expired a year
    // ago and never removed.
    legacy["passwordCredentials"] = json!([
        secret(SECRET_LEGACY, "forever", 1000, 2650),
        secret(SECRET_LEGACY_EXPIRED, "2023-rotation", 1100, -400),
    ]);
    let deployer = app(
        APP_DEPLOYER,
        "c3000000-0000-4000-8000-000000000003",
        "gh-actions-deployer",
        100,
        vec![tom.clone()],
    );
    // An agent identity blueprint is an application (derived type): its
    // credentials are what its agent identities obtain tokens with.
    let mut blueprint = app(
        APP_BLUEPRINT,
        APPID_BLUEPRINT,
        "support-agent-blueprint",
        60,
        vec![tom],
    );
    blueprint["@odata.type"] = json!("#microsoft.graph.agentIdentityBlueprint");
    vec![payments, legacy, deployer, blueprint]
}

/// The apps' service principals, two managed identities exactly as Graph
/// returns them (Microsoft's services tenant as `appOwnerOrganizationId`,
/// `alternativeNames` with `isExplicit` and the resource id, the
/// platform-held certificate), and Microsoft Graph's own principal: a
/// first-party application, with its app roles.
fn demo_service_principals() -> Vec<Value> {
    use ids::*;
    let graph_app = "00000003-0000-0000-c000-000000000000";
    let sp = |id: &str, app_id: &str, name: &str, owners: Vec<Value>| {
        json!({
            "id": id, "appId": app_id, "displayName": name, "appDisplayName": name,
            "servicePrincipalType": "Application", "accountEnabled": true,
            "appOwnerOrganizationId": TENANT, "appRoleAssignmentRequired": false,
            "tags": ["WindowsAzureActiveDirectoryIntegratedApp"],
            "notes": null, "alternativeNames": [], "servicePrincipalNames": [app_id],
            "passwordCredentials": [], "keyCredentials": [], "owners": owners,
        })
    };
    let mi = |id: &str, app_id: &str, name: &str, explicit: bool, resource: String| {
        json!({
            "id": id, "appId": app_id, "displayName": name, "appDisplayName": null,
            "servicePrincipalType": "ManagedIdentity", "accountEnabled": true,
            "appOwnerOrganizationId": MICROSOFT_SERVICES_TENANT, "appRoleAssignmentRequired": false,
            "tags": [], "notes": null,
            "alternativeNames": [format!("isExplicit={}", if explicit { "True" } else { "False" }), resource],
            "servicePrincipalNames": [app_id, format!("https://identity.azure.net/{}", &app_id[..8])],
            "passwordCredentials": [],
            // The certificate the platform holds and rotates for the identity.
            "keyCredentials": [{
                "customKeyIdentifier": "2A7E9B1C4D5F60718293A4B5C6D7E8F901234567",
                "displayName": format!("CN={app_id}"),
                "endDateTime": within(80), "key": null,
                "keyId": format!("{}-0000-4000-8000-00000000c0de", &id[..8]),
                "startDateTime": ago(10), "type": "AsymmetricX509Cert", "usage": "Verify",
            }],
            "owners": [],
        })
    };
    let mut payments = sp(SP_PAYMENTS, APPID_PAYMENTS, "payments-api", vec![]);
    // A SAML signing certificate that expired ten days ago, still present.
    payments["keyCredentials"] = json!([cert(
        CERT_SP_PAYMENTS_EXPIRED,
        "CN=payments-api-saml",
        375,
        -10
    )]);
    vec![
        payments,
        sp(
            SP_LEGACY,
            "c2000000-0000-4000-8000-000000000002",
            "legacy-sync",
            vec![],
        ),
        sp(
            SP_DEPLOYER,
            "c3000000-0000-4000-8000-000000000003",
            "gh-actions-deployer",
            vec![],
        ),
        mi(
            MI_ORDERS,
            "c4000000-0000-4000-8000-000000000004",
            "mi-orders",
            true,
            MI_ORDERS_RESOURCE.to_string(),
        ),
        mi(
            MI_BUILD,
            "c6000000-0000-4000-8000-000000000006",
            "vm-build",
            false,
            format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/build/providers/Microsoft.Compute/virtualMachines/vm-build"),
        ),
        json!({
            "id": SP_GRAPH, "appId": graph_app, "displayName": "Microsoft Graph",
            "appDisplayName": "Microsoft Graph",
            "servicePrincipalType": "Application", "accountEnabled": true,
            "appOwnerOrganizationId": MICROSOFT_SERVICES_TENANT, "appRoleAssignmentRequired": false,
            "tags": [], "notes": null, "alternativeNames": [],
            "servicePrincipalNames": [graph_app, "https://graph.microsoft.com"],
            "passwordCredentials": [], "keyCredentials": [], "owners": [],
            "appRoles": [
                {"allowedMemberTypes": ["Application"], "description": "Allows the app to read and write data in your organization's directory.", "displayName": "Read and write directory data", "id": ROLE_DIRECTORY_RW, "isEnabled": true, "origin": "Application", "value": "Directory.ReadWrite.All"},
                {"allowedMemberTypes": ["Application"], "description": "Allows the app to read user profiles without a signed in user.", "displayName": "Read all users' full profiles", "id": ROLE_USER_READ, "isEnabled": true, "origin": "Application", "value": "User.Read.All"}
            ],
        }),
    ]
}

/// Federated credentials of the deployer (exact subject) and of the agent
/// blueprint (flexible: a claims-matching expression admitting every
/// repository of the organisation).
fn demo_federated() -> BTreeMap<String, Vec<Value>> {
    use ids::*;
    [
        (
            APP_DEPLOYER.to_string(),
            vec![json!({
                "id": FIC_DEPLOYER, "name": "github-main",
                "issuer": "https://token.actions.githubusercontent.com",
                "subject": "repo:contoso/infra:ref:refs/heads/main",
                "description": "deploy from main", "audiences": ["api://AzureADTokenExchange"],
            })],
        ),
        (
            APP_BLUEPRINT.to_string(),
            vec![json!({
                "id": FIC_BLUEPRINT, "name": "github-any-repo",
                "issuer": "https://token.actions.githubusercontent.com",
                "subject": null,
                "description": "agents built in any contoso repository",
                "audiences": ["api://AzureADTokenExchange"],
                "claimsMatchingExpression": {"value": FIC_BLUEPRINT_EXPRESSION, "languageVersion": 1},
            })],
        ),
    ]
    .into()
}

/// The agent identity of the blueprint, sponsored by Priya, as the beta
/// agent listing documents it.
fn demo_agents() -> Vec<Value> {
    use ids::*;
    vec![json!({
        "@odata.type": "#microsoft.graph.agentIdentity",
        "id": AGENT_SUPPORT, "displayName": "support-agent",
        "createdDateTime": ago(30), "createdByAppId": APPID_BLUEPRINT,
        "agentIdentityBlueprintId": APPID_BLUEPRINT, "accountEnabled": true,
        "disabledByMicrosoftStatus": null, "servicePrincipalType": "ServiceIdentity", "tags": [],
        "owners": [],
        "sponsors": [user("e1000000-0000-4000-8000-0000000000aa", "Priya Nair", "priya.nair@contoso.com")],
    })]
}

/// The user-assigned managed identity's federated credential (an AKS
/// workload), as the ARM reference example shows it.
fn demo_mi_federated() -> BTreeMap<String, Vec<Value>> {
    use ids::*;
    [(
        MI_ORDERS_RESOURCE.to_string(),
        vec![json!({
            "id": MI_FIC_ORDERS, "name": "aks-orders",
            "properties": {
                "issuer": "https://westeurope.oic.prod-aks.azure.com/7d3f9a1c-2b4e-4c6d-8e0f-1a2b3c4d5e6f/0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f/",
                "subject": "system:serviceaccount:orders:orders-api",
                "audiences": ["api://AzureADTokenExchange"],
            },
            "type": "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials",
        })],
    )]
    .into()
}

/// Graph application permissions held.
fn demo_app_role_assignments() -> Vec<Value> {
    use ids::*;
    let assign = |id: &str, principal: &str, name: &str, role: &str| {
        json!({
            "id": id, "appRoleId": role, "createdDateTime": ago(300),
            "principalDisplayName": name, "principalId": principal, "principalType": "ServicePrincipal",
            "resourceDisplayName": "Microsoft Graph", "resourceId": SP_GRAPH,
        })
    };
    vec![
        assign(
            "cGF5bWVudHMtdXNlci1yZWFkLWFsbA",
            SP_PAYMENTS,
            "payments-api",
            ROLE_USER_READ,
        ),
        assign(
            ASSIGN_LEGACY_DIRECTORY,
            SP_LEGACY,
            "legacy-sync",
            ROLE_DIRECTORY_RW,
        ),
        assign(
            "c3VwcG9ydC1hZ2VudC11c2VyLXJlYWQ",
            AGENT_SUPPORT,
            "support-agent",
            ROLE_USER_READ,
        ),
    ]
}

/// A delegated grant.
fn demo_grants() -> Vec<Value> {
    use ids::*;
    vec![json!({
        "clientId": SP_PAYMENTS, "consentType": "AllPrincipals",
        "id": "cGF5bWVudHMtZGVsZWdhdGVkLWdyYW50", "principalId": null,
        "resourceId": SP_GRAPH, "scope": "openid profile User.Read",
    })]
}

/// Sign-in activity per application and per credential.
fn demo_sign_ins() -> (Vec<Value>, Vec<Value>) {
    use ids::*;
    (
        vec![
            json!({"id": "YzEwMDAwMDA", "appId": "c1000000-0000-4000-8000-000000000001",
                   "applicationAuthenticationClientSignInActivity": {"lastSignInDateTime": ago(2), "lastSignInRequestId": "4ea8ac36-d43d-431c-bb05-739348e18c66"},
                   "applicationAuthenticationResourceSignInActivity": {"lastSignInDateTime": ago(1), "lastSignInRequestId": "0f251de7-e611-41fb-bed0-6eb650757e72"},
                   "delegatedClientSignInActivity": {"lastSignInDateTime": null, "lastSignInRequestId": null},
                   "delegatedResourceSignInActivity": {"lastSignInDateTime": null, "lastSignInRequestId": null},
                   "lastSignInActivity": {"lastSignInDateTime": ago(1), "lastSignInRequestId": "0f251de7-e611-41fb-bed0-6eb650757e72"}}),
            // legacy-sync: still called as a resource yesterday, but its
            // own last sign-in as a client was 200 days ago.
            json!({"id": "YzIwMDAwMDA", "appId": "c2000000-0000-4000-8000-000000000002",
                   "applicationAuthenticationClientSignInActivity": {"lastSignInDateTime": ago(200), "lastSignInRequestId": "b26f6bf8-af96-4f2a-bef7-07913f634d6d"},
                   "applicationAuthenticationResourceSignInActivity": {"lastSignInDateTime": ago(1), "lastSignInRequestId": "e58c9022-c965-4ec0-960b-9c197e549f27"},
                   "lastSignInActivity": {"lastSignInDateTime": ago(1), "lastSignInRequestId": "e58c9022-c965-4ec0-960b-9c197e549f27"}}),
            json!({"id": "YzMwMDAwMDA", "appId": "c3000000-0000-4000-8000-000000000003",
                   "lastSignInActivity": {"lastSignInDateTime": ago(3), "lastSignInRequestId": "e58c9022-c965-4ec0-960b-9c197e549f27"}}),
        ],
        vec![
            json!({"id": "a2V5MQ", "keyId": SECRET_PAYMENTS_CI, "keyType": "clientSecret", "keyUsage": "verify",
                   "appId": "c1000000-0000-4000-8000-000000000001", "appObjectId": APP_PAYMENTS,
                   "servicePrincipalObjectId": SP_PAYMENTS, "resourceId": SP_GRAPH, "credentialOrigin": "application",
                   "expirationDate": within(100), "signInActivity": {"lastSignInDateTime": ago(2), "lastSignInRequestId": "guid1"}}),
            json!({"id": "a2V5Mg", "keyId": SECRET_LEGACY, "keyType": "clientSecret", "keyUsage": "verify",
                   "appId": "c2000000-0000-4000-8000-000000000002", "appObjectId": APP_LEGACY,
                   "servicePrincipalObjectId": SP_LEGACY, "resourceId": SP_GRAPH, "credentialOrigin": "application",
                   "expirationDate": within(2650), "signInActivity": {"lastSignInDateTime": ago(200), "lastSignInRequestId": "guid2"}}),
            json!({"id": "a2V5Mw", "keyId": CERT_PAYMENTS, "keyType": "certificate", "keyUsage": "verify",
                   "appId": "c1000000-0000-4000-8000-000000000001", "appObjectId": APP_PAYMENTS,
                   "servicePrincipalObjectId": SP_PAYMENTS, "resourceId": SP_GRAPH, "credentialOrigin": "application",
                   "expirationDate": within(335), "signInActivity": {"lastSignInDateTime": ago(5), "lastSignInRequestId": "guid3"}}),
        ],
    )
}

/// Directory role definitions and assignments.
fn demo_directory_roles() -> (Vec<Value>, Vec<Value>) {
    use ids::*;
    (
        vec![
            json!({"id": "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3", "description": "Can create and manage all aspects of app registrations and enterprise apps.",
                   "displayName": "Application Administrator", "isBuiltIn": true, "isEnabled": true,
                   "templateId": "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3", "version": "1",
                   "rolePermissions": [{"allowedResourceActions": ["microsoft.directory/applications/create", "microsoft.directory/applications/credentials/update", "microsoft.directory/servicePrincipals/appRoleAssignedTo/update"], "condition": null}]}),
            json!({"id": "88d8e3e3-8f55-4a1e-953a-9b9898b8876b", "description": "Can read basic directory information.",
                   "displayName": "Directory Readers", "isBuiltIn": true, "isEnabled": true,
                   "templateId": "88d8e3e3-8f55-4a1e-953a-9b9898b8876b", "version": "1",
                   "rolePermissions": [{"allowedResourceActions": ["microsoft.directory/users/standard/read", "microsoft.directory/groups/standard/read"], "condition": null}]}),
        ],
        vec![
            json!({"id": "lAPpYvVpN0KRkAEhdxReEJC2sEqbR_9Hlqk1ihjq0aY-1", "principalId": SP_DEPLOYER,
                   "roleDefinitionId": "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3", "directoryScopeId": "/"}),
            json!({"id": "lAPpYvVpN0KRkAEhdxReEJC2sEqbR_9Hlqk1ihjq0aY-2", "principalId": SP_PAYMENTS,
                   "roleDefinitionId": "88d8e3e3-8f55-4a1e-953a-9b9898b8876b", "directoryScopeId": "/"}),
        ],
    )
}

/// RBAC role definitions and assignments of the subscription.
fn demo_rbac() -> (Vec<Value>, Vec<Value>) {
    use ids::*;
    (
        vec![
            role_def(ROLE_OWNER, "Owner", &["*"], &[]),
            role_def(ROLE_CONTRIBUTOR, "Contributor", &["*"], &[]),
            role_def(
                "acdd72a7-3385-48ef-bd42-f606fba81ae7",
                "Reader",
                &["*/read"],
                &[],
            ),
            role_def(
                ROLE_BLOB_READER,
                "Storage Blob Data Reader",
                &["Microsoft.Storage/storageAccounts/blobServices/containers/read"],
                &["Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"],
            ),
        ],
        vec![
            role_assignment(
                RA_DEPLOYER,
                &format!("/subscriptions/{SUBSCRIPTION}"),
                ROLE_CONTRIBUTOR,
                SP_DEPLOYER,
            ),
            role_assignment(
                RA_BUILD,
                &format!("/subscriptions/{SUBSCRIPTION}"),
                ROLE_OWNER,
                MI_BUILD,
            ),
            role_assignment(
                RA_ORDERS,
                &format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/orders"),
                ROLE_BLOB_READER,
                MI_ORDERS,
            ),
        ],
    )
}
