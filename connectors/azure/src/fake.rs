//! Test support (feature `fake-tenant`): a local HTTP server that serves the
//! documented Microsoft Graph (v1.0 and beta reports), ARM Authorization
//! (2022-04-01) and Entra ID token endpoint shapes for one fake tenant, on a
//! free loopback port. No emulator for Graph or ARM exists; the response
//! bodies follow Microsoft's reference examples (field names, collection
//! envelopes with `@odata.nextLink` / `nextLink`, error envelopes).
//!
//! The connector reaches it through `test_loopback` (every request, token
//! requests included, rewritten to `http://127.0.0.1:PORT`), with its
//! configured https base URLs unchanged — so the next links the fake hands
//! out are on those public-looking origins, as Graph's are.
//!
//! Faults: page size (paging), one 429 with `Retry-After` per path,
//! 403 on the beta reports, 500 on a subscription or on the directory.
//! Every request is recorded (method, path, query, JSON body — never the
//! token request's form body, which holds the client secret).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use chrono::{Duration, Utc};
use serde_json::{json, Map, Value};

/// Graph base URL the tests configure (never resolved: requests go to loopback).
pub const GRAPH: &str = "https://graph.fake.test";
/// ARM base URL the tests configure.
pub const ARM: &str = "https://management.fake.test";
/// Token authority the tests configure.
pub const AUTHORITY: &str = "https://login.fake.test";
/// Tenant id of the fake tenant.
pub const TENANT: &str = "7d3f9a1c-2b4e-4c6d-8e0f-1a2b3c4d5e6f";
/// Subscription of the fake tenant.
pub const SUBSCRIPTION: &str = "3f2b8c1d-5e6a-4b7c-9d8e-0f1a2b3c4d5e";
/// Client id the scanner authenticates as.
pub const CLIENT_ID: &str = "5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d";
/// The client secret the fake accepts (tests pass it through an env var).
pub const CLIENT_SECRET: &str = "scanner~SECRET~9f8e7d6c5b4a";
/// The secret value the fake returns in `secretText` — it must never appear
/// in any output, log or store.
pub const LEAKED_SECRET_TEXT: &str = "Xy7~LEAK-CANARY-4f3e2d1c0b9a8877";

/// Object ids of the fake tenant, for assertions.
pub mod ids {
    /// App registration `payments-api` (owner: priya).
    pub const APP_PAYMENTS: &str = "a1000000-0000-4000-8000-000000000001";
    /// Its client secret in use, lifetime 300 days.
    pub const SECRET_PAYMENTS_CI: &str = "5e000000-0000-4000-8000-0000000000c1";
    /// Its old secret: 3-year lifetime, never used.
    pub const SECRET_PAYMENTS_OLD: &str = "5e000000-0000-4000-8000-0000000000c2";
    /// Its certificate.
    pub const CERT_PAYMENTS: &str = "ce000000-0000-4000-8000-0000000000c3";
    /// A second certificate on the same app (must survive removing the first).
    pub const CERT_PAYMENTS_NEXT: &str = "ce000000-0000-4000-8000-0000000000c4";
    /// Its service principal.
    pub const SP_PAYMENTS: &str = "b1000000-0000-4000-8000-000000000001";
    /// App registration `legacy-sync`: no owner, 10-year secret, stale.
    pub const APP_LEGACY: &str = "a2000000-0000-4000-8000-000000000002";
    /// Its secret.
    pub const SECRET_LEGACY: &str = "5e000000-0000-4000-8000-0000000000d1";
    /// Its service principal, holding Directory.ReadWrite.All.
    pub const SP_LEGACY: &str = "b2000000-0000-4000-8000-000000000002";
    /// The Directory.ReadWrite.All assignment.
    pub const ASSIGN_LEGACY_DIRECTORY: &str = "Zm9yLWxlZ2FjeS1kaXJlY3Rvcnktcnc";
    /// App registration `gh-actions-deployer`: federated only.
    pub const APP_DEPLOYER: &str = "a3000000-0000-4000-8000-000000000003";
    /// Its federated credential.
    pub const FIC_DEPLOYER: &str = "fc000000-0000-4000-8000-0000000000e1";
    /// Its service principal: Contributor on the subscription.
    pub const SP_DEPLOYER: &str = "b3000000-0000-4000-8000-000000000003";
    /// The Contributor role assignment (name part).
    pub const RA_DEPLOYER: &str = "4e000000-0000-4000-8000-0000000000f1";
    /// A user-assigned managed identity.
    pub const MI_ORDERS: &str = "b4000000-0000-4000-8000-000000000004";
    /// Its role assignment (Storage Blob Data Reader on a resource group).
    pub const RA_ORDERS: &str = "4e000000-0000-4000-8000-0000000000f2";
    /// Microsoft Graph's service principal in the tenant.
    pub const SP_GRAPH: &str = "9a000000-0000-4000-8000-00000000009a";
    /// Microsoft Graph app role `Directory.ReadWrite.All`.
    pub const ROLE_DIRECTORY_RW: &str = "19dbc75e-c2e2-444c-a770-ec69d8559fc7";
    /// Microsoft Graph app role `User.Read.All`.
    pub const ROLE_USER_READ: &str = "df021288-bdef-4463-88db-98f22de89214";
}

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
    /// Every request received.
    pub requests: Vec<Recorded>,
    /// Milliseconds each request is held before it is answered.
    pub delay_ms: u64,
    /// Most requests in flight at once so far.
    pub max_in_flight: usize,
    in_flight: usize,
    issued: BTreeSet<String>,
    counter: u64,
}

/// A running fake tenant.
pub struct FakeTenant {
    /// Loopback address it listens on (`test_loopback`).
    pub addr: SocketAddr,
    /// Shared state: inspect requests, flip faults, read the directory.
    pub state: Arc<Mutex<Tenant>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeTenant {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn ago(days: i64) -> String {
    (Utc::now() - Duration::days(days))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn within(days: i64) -> String {
    (Utc::now() + Duration::days(days))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

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
            "createdOn": "2015-02-02T21:55:09.8806423Z",
            "updatedOn": "2024-06-01T00:00:00.0000000Z",
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
            "condition": null,
            "conditionVersion": null,
            "createdOn": ago(120),
            "updatedOn": ago(120),
            "createdBy": "0e5c4b3a-1f2d-4e6a-9b8c-7d6e5f4a3b2c",
            "updatedBy": "0e5c4b3a-1f2d-4e6a-9b8c-7d6e5f4a3b2c",
            "delegatedManagedIdentityResourceId": null,
            "description": null
        }
    })
}

/// Built-in role definition ids (the real ones).
pub const ROLE_CONTRIBUTOR: &str = "b24988ac-6180-42a0-ab88-20f7382dd24c";
/// Storage Blob Data Reader.
pub const ROLE_BLOB_READER: &str = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1";

impl Tenant {
    /// The documented-shape tenant the tests scan (see [`ids`]).
    pub fn demo() -> Tenant {
        use ids::*;
        let graph_app = "00000003-0000-0000-c000-000000000000";
        let apps = vec![
            json!({
                "id": APP_PAYMENTS, "appId": "c1000000-0000-4000-8000-000000000001",
                "displayName": "payments-api", "createdDateTime": ago(900),
                "signInAudience": "AzureADMyOrg", "tags": ["team:payments"], "notes": null,
                "publisherDomain": "contoso.onmicrosoft.com",
                "passwordCredentials": [
                    secret(SECRET_PAYMENTS_CI, "ci-deploy", 200, 100),
                    secret(SECRET_PAYMENTS_OLD, "old-rotation", 800, 300),
                ],
                "keyCredentials": [
                    cert(CERT_PAYMENTS, "CN=payments-api", 30, 335),
                    cert(CERT_PAYMENTS_NEXT, "CN=payments-api-next", 2, 363),
                ],
                "owners": [user("e1000000-0000-4000-8000-0000000000aa", "Priya Nair", "priya.nair@contoso.com")],
            }),
            json!({
                "id": APP_LEGACY, "appId": "c2000000-0000-4000-8000-000000000002",
                "displayName": "legacy-sync", "createdDateTime": ago(2000),
                "signInAudience": "AzureADMyOrg", "tags": [], "notes": "sync to the old CRM",
                "passwordCredentials": [secret(SECRET_LEGACY, "forever", 1000, 2650)],
                "keyCredentials": [],
                "owners": [],
            }),
            json!({
                "id": APP_DEPLOYER, "appId": "c3000000-0000-4000-8000-000000000003",
                "displayName": "gh-actions-deployer", "createdDateTime": ago(100),
                "signInAudience": "AzureADMyOrg", "tags": [], "notes": null,
                "passwordCredentials": [], "keyCredentials": [],
                "owners": [user("e2000000-0000-4000-8000-0000000000bb", "Tom Becker", "tom.becker@contoso.com")],
            }),
        ];
        let sp = |id: &str, app_id: &str, name: &str, kind: &str, owners: Vec<Value>| {
            json!({
                "id": id, "appId": app_id, "displayName": name,
                "servicePrincipalType": kind, "accountEnabled": true,
                "appOwnerOrganizationId": TENANT, "tags": ["WindowsAzureActiveDirectoryIntegratedApp"],
                "notes": null, "alternativeNames": [], "servicePrincipalNames": [app_id],
                "passwordCredentials": [], "keyCredentials": [], "owners": owners,
            })
        };
        let mut mi = sp(
            MI_ORDERS,
            "c4000000-0000-4000-8000-000000000004",
            "mi-orders",
            "ManagedIdentity",
            vec![],
        );
        mi["tags"] = json!([]);
        mi["appOwnerOrganizationId"] = Value::Null;
        mi["alternativeNames"] = json!([
            "isExplicit=True",
            format!("/subscriptions/{SUBSCRIPTION}/resourcegroups/orders/providers/Microsoft.ManagedIdentity/userAssignedIdentities/mi-orders")
        ]);
        let sps = vec![
            sp(
                SP_PAYMENTS,
                "c1000000-0000-4000-8000-000000000001",
                "payments-api",
                "Application",
                vec![],
            ),
            sp(
                SP_LEGACY,
                "c2000000-0000-4000-8000-000000000002",
                "legacy-sync",
                "Application",
                vec![],
            ),
            sp(
                SP_DEPLOYER,
                "c3000000-0000-4000-8000-000000000003",
                "gh-actions-deployer",
                "Application",
                vec![],
            ),
            mi,
            json!({
                "id": SP_GRAPH, "appId": graph_app, "displayName": "Microsoft Graph",
                "servicePrincipalType": "Application", "accountEnabled": true,
                "appOwnerOrganizationId": "f8cdef31-a31e-4b4a-93e4-5f571e91255a",
                "tags": [], "notes": null, "alternativeNames": [],
                "passwordCredentials": [], "keyCredentials": [], "owners": [],
                "appRoles": [
                    {"allowedMemberTypes": ["Application"], "description": "Allows the app to read and write data in your organization's directory.", "displayName": "Read and write directory data", "id": ROLE_DIRECTORY_RW, "isEnabled": true, "origin": "Application", "value": "Directory.ReadWrite.All"},
                    {"allowedMemberTypes": ["Application"], "description": "Allows the app to read user profiles without a signed in user.", "displayName": "Read all users' full profiles", "id": ROLE_USER_READ, "isEnabled": true, "origin": "Application", "value": "User.Read.All"}
                ],
            }),
        ];
        let assign = |id: &str, principal: &str, name: &str, role: &str| {
            json!({
                "id": id, "deletedDateTime": null, "appRoleId": role, "createdDateTime": ago(300),
                "principalDisplayName": name, "principalId": principal, "principalType": "ServicePrincipal",
                "resourceDisplayName": "Microsoft Graph", "resourceId": SP_GRAPH,
            })
        };
        Tenant {
            apps,
            sps,
            fics: [(
                APP_DEPLOYER.to_string(),
                vec![json!({
                    "id": FIC_DEPLOYER, "name": "github-main",
                    "issuer": "https://token.actions.githubusercontent.com",
                    "subject": "repo:contoso/infra:ref:refs/heads/main",
                    "description": "deploy from main", "audiences": ["api://AzureADTokenExchange"],
                })],
            )]
            .into(),
            app_role_assignments: vec![
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
            ],
            grants: vec![json!({
                "clientId": SP_PAYMENTS, "consentType": "AllPrincipals",
                "id": "cGF5bWVudHMtZGVsZWdhdGVkLWdyYW50", "principalId": null,
                "resourceId": SP_GRAPH, "scope": "openid profile User.Read",
            })],
            sp_activity: vec![
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
            cred_activity: vec![
                json!({"id": "a2V5MQ", "keyId": SECRET_PAYMENTS_CI, "keyType": "clientSecret", "keyUsage": "verify",
                       "appId": "c1000000-0000-4000-8000-000000000001", "appObjectId": APP_PAYMENTS,
                       "servicePrincipalObjectId": SP_PAYMENTS, "resourceId": SP_GRAPH, "credentialOrigin": "application",
                       "expirationDateTime": within(100), "signInActivity": {"lastSignInDateTime": ago(2), "lastSignInRequestId": "guid1"}}),
                json!({"id": "a2V5Mg", "keyId": SECRET_LEGACY, "keyType": "clientSecret", "keyUsage": "verify",
                       "appId": "c2000000-0000-4000-8000-000000000002", "appObjectId": APP_LEGACY,
                       "servicePrincipalObjectId": SP_LEGACY, "resourceId": SP_GRAPH, "credentialOrigin": "application",
                       "expirationDateTime": within(2650), "signInActivity": {"lastSignInDateTime": ago(200), "lastSignInRequestId": "guid2"}}),
                json!({"id": "a2V5Mw", "keyId": CERT_PAYMENTS, "keyType": "certificate", "keyUsage": "verify",
                       "appId": "c1000000-0000-4000-8000-000000000001", "appObjectId": APP_PAYMENTS,
                       "servicePrincipalObjectId": SP_PAYMENTS, "resourceId": SP_GRAPH, "credentialOrigin": "application",
                       "expirationDateTime": within(335), "signInActivity": {"lastSignInDateTime": ago(5), "lastSignInRequestId": "guid3"}}),
            ],
            directory_roles: vec![
                json!({"id": "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3", "description": "Can create and manage all aspects of app registrations and enterprise apps.",
                       "displayName": "Application Administrator", "isBuiltIn": true, "isEnabled": true,
                       "templateId": "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3", "version": "1",
                       "rolePermissions": [{"allowedResourceActions": ["microsoft.directory/applications/create", "microsoft.directory/applications/credentials/update", "microsoft.directory/servicePrincipals/appRoleAssignedTo/update"], "condition": null}]}),
                json!({"id": "88d8e3e3-8f55-4a1e-953a-9b9898b8876b", "description": "Can read basic directory information.",
                       "displayName": "Directory Readers", "isBuiltIn": true, "isEnabled": true,
                       "templateId": "88d8e3e3-8f55-4a1e-953a-9b9898b8876b", "version": "1",
                       "rolePermissions": [{"allowedResourceActions": ["microsoft.directory/users/standard/read", "microsoft.directory/groups/standard/read"], "condition": null}]}),
            ],
            directory_role_assignments: vec![
                json!({"id": "lAPpYvVpN0KRkAEhdxReEJC2sEqbR_9Hlqk1ihjq0aY-1", "principalId": SP_DEPLOYER,
                       "roleDefinitionId": "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3", "directoryScopeId": "/"}),
                json!({"id": "lAPpYvVpN0KRkAEhdxReEJC2sEqbR_9Hlqk1ihjq0aY-2", "principalId": SP_PAYMENTS,
                       "roleDefinitionId": "88d8e3e3-8f55-4a1e-953a-9b9898b8876b", "directoryScopeId": "/"}),
            ],
            role_definitions: vec![
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
            role_assignments: vec![
                role_assignment(
                    RA_DEPLOYER,
                    &format!("/subscriptions/{SUBSCRIPTION}"),
                    ROLE_CONTRIBUTOR,
                    SP_DEPLOYER,
                ),
                role_assignment(
                    RA_ORDERS,
                    &format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/orders"),
                    ROLE_BLOB_READER,
                    MI_ORDERS,
                ),
            ],
            page_size: 2,
            ..Tenant::default()
        }
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

impl FakeTenant {
    /// Serve `tenant` on a free loopback port.
    pub async fn start(tenant: Tenant) -> std::io::Result<FakeTenant> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(tenant));
        let app = Router::new().fallback(handle).with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FakeTenant { addr, state, task })
    }

    /// Lock the state (test helper: a poisoned lock still yields the data).
    pub fn tenant(&self) -> std::sync::MutexGuard<'_, Tenant> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A TOML `[[sources]]` block pointing an Azure source at this fake,
    /// authenticating with a client secret read from `secret_env`.
    pub fn source_toml(&self, name: &str, secret_env: &str) -> String {
        format!(
            r#"[[sources]]
type = "azure"
name = "{name}"
tenant_id = "{TENANT}"
subscriptions = ["{SUBSCRIPTION}"]
authority_host = "{AUTHORITY}"
graph_url = "{GRAPH}"
arm_url = "{ARM}"
test_loopback = "{}"
initial_backoff_ms = 10
max_retries = 3
[sources.auth]
method = "client_secret"
client_id = "{CLIENT_ID}"
secret_env = "{secret_env}"
"#,
            self.addr
        )
    }
}

fn graph_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({"error": {"code": code, "message": message, "innerError": {
        "date": Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string(),
        "request-id": "94fb3b52-452a-4535-a601-69e0a90e3aa2",
        "client-request-id": "94fb3b52-452a-4535-a601-69e0a90e3aa2"}}});
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn ok_json(v: Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

fn query_map(q: &str) -> BTreeMap<String, String> {
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `$select` projection (owners only with `$expand=owners`).
fn project(obj: &Value, q: &BTreeMap<String, String>, single: bool) -> Value {
    let mut out = Map::new();
    let Some(map) = obj.as_object() else {
        return obj.clone();
    };
    let select: Option<Vec<&str>> = q.get("$select").map(|s| s.split(',').collect());
    for (k, v) in map {
        if k == "owners" {
            continue;
        }
        if select.as_ref().is_some_and(|s| !s.contains(&k.as_str())) {
            continue;
        }
        let mut v = v.clone();
        // A collection never returns a certificate's public key; a single
        // object selected with keyCredentials does (as documented).
        if k == "keyCredentials" && !single {
            if let Some(list) = v.as_array_mut() {
                for c in list {
                    c["key"] = Value::Null;
                }
            }
        }
        out.insert(k.clone(), v);
    }
    if q.get("$expand").is_some_and(|e| e.starts_with("owners")) {
        out.insert(
            "owners".into(),
            map.get("owners").cloned().unwrap_or(json!([])),
        );
    }
    Value::Object(out)
}

/// One page of `items`; the next link repeats the query with `$skiptoken`.
fn page(
    base: &str,
    path: &str,
    q: &BTreeMap<String, String>,
    items: Vec<Value>,
    size: usize,
    arm: bool,
) -> Response {
    let size = size.max(1);
    let skip: usize = q
        .get("$skiptoken")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let chunk: Vec<Value> = items.iter().skip(skip).take(size).cloned().collect();
    let mut body = Map::new();
    if !arm {
        body.insert(
            "@odata.context".into(),
            json!(format!(
                "{base}/v1.0/$metadata#{}",
                path.rsplit('/').next().unwrap_or("")
            )),
        );
    }
    body.insert("value".into(), Value::Array(chunk));
    if skip + size < items.len() {
        let mut rest: Vec<String> = q
            .iter()
            .filter(|(k, _)| *k != "$skiptoken")
            .map(|(k, v)| format!("{k}={}", v.replace(' ', "%20").replace('\'', "%27")))
            .collect();
        rest.push(format!("$skiptoken={}", skip + size));
        let link = format!("{base}{path}?{}", rest.join("&"));
        body.insert(
            if arm { "nextLink" } else { "@odata.nextLink" }.into(),
            json!(link),
        );
    }
    ok_json(Value::Object(body))
}

async fn handle(
    State(state): State<Arc<Mutex<Tenant>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let lock = || state.lock().unwrap_or_else(|p| p.into_inner());
    let delay = {
        let mut t = lock();
        t.in_flight += 1;
        t.max_in_flight = t.max_in_flight.max(t.in_flight);
        t.delay_ms
    };
    if delay > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    }
    let resp = respond(&mut lock(), method, uri, headers, body);
    lock().in_flight -= 1;
    resp
}

fn respond(t: &mut Tenant, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().to_string();
    let raw_q = uri.query().unwrap_or("").to_string();
    let q = query_map(&raw_q);
    let token_req = path.ends_with("/oauth2/v2.0/token");
    let json_body: Option<Value> = if token_req {
        None
    } else {
        serde_json::from_slice(&body).ok()
    };
    t.requests.push(Recorded {
        method: method.to_string(),
        path: path.clone(),
        query: (!raw_q.is_empty()).then(|| decode(&raw_q)),
        body: json_body.clone(),
    });

    if token_req {
        let form = query_map(&String::from_utf8_lossy(&body));
        let tenant_ok = path == format!("/{TENANT}/oauth2/v2.0/token");
        if !tenant_ok
            || form.get("client_id").map(String::as_str) != Some(CLIENT_ID)
            || form.get("client_secret").map(String::as_str) != Some(CLIENT_SECRET)
            || form.get("grant_type").map(String::as_str) != Some("client_credentials")
        {
            let e = json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided.", "error_codes": [7000215]});
            return (
                StatusCode::UNAUTHORIZED,
                [("content-type", "application/json")],
                e.to_string(),
            )
                .into_response();
        }
        t.counter += 1;
        let tok = format!("eyJ0eXAiOiJKV1Qi.fake.{}", t.counter);
        t.issued.insert(tok.clone());
        return ok_json(
            json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": tok}),
        );
    }

    let authorized = headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .is_some_and(|tok| t.issued.contains(tok));
    if !authorized {
        return graph_error(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "Access token is empty.",
        );
    }
    if t.throttle_once.remove(&path) {
        let mut r = graph_error(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            "Too many requests",
        );
        let secs = t.retry_after_secs.unwrap_or(1).to_string();
        if let Ok(v) = axum::http::HeaderValue::from_str(&secs) {
            r.headers_mut().insert("retry-after", v);
        }
        return r;
    }

    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let size = t.page_size;
    // A hostile or broken next link: the client must not follow it.
    let next_base = if t.foreign_next_link {
        "https://graph.attacker.example"
    } else {
        GRAPH
    };
    let is_arm = segs
        .first()
        .is_some_and(|s| *s == "subscriptions" || *s == "providers");
    if is_arm {
        return arm(t, &method, &path, &segs, &q, json_body);
    }
    let not_found = |id: &str| {
        graph_error(
            StatusCode::NOT_FOUND,
            "Request_ResourceNotFound",
            &format!("Resource '{id}' does not exist or one of its queried reference-property objects are not present."),
        )
    };
    match (method.as_str(), segs.as_slice()) {
        ("GET", ["beta", "reports", report]) => {
            if t.reports_forbidden {
                return graph_error(
                    StatusCode::FORBIDDEN,
                    "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
                    "Neither tenant is B2C or tenant doesn't have premium license",
                );
            }
            if t.reports_down {
                return graph_error(StatusCode::INTERNAL_SERVER_ERROR, "UnknownError", "");
            }
            let items = match *report {
                "servicePrincipalSignInActivities" => t.sp_activity.clone(),
                "appCredentialSignInActivities" => t.cred_activity.clone(),
                _ => return not_found(report),
            };
            page(next_base, &path, &q, items, size, false)
        }
        ("GET", ["v1.0", coll @ ("applications" | "servicePrincipals")]) => {
            if t.directory_down {
                return graph_error(StatusCode::INTERNAL_SERVER_ERROR, "UnknownError", "");
            }
            let list = if *coll == "applications" {
                &t.apps
            } else {
                &t.sps
            };
            let items = list.iter().map(|o| project(o, &q, false)).collect();
            page(next_base, &path, &q, items, size, false)
        }
        ("GET", ["v1.0", coll @ ("applications" | "servicePrincipals"), id]) => {
            let list = if *coll == "applications" {
                &t.apps
            } else {
                &t.sps
            };
            match list.iter().find(|o| o["id"] == *id) {
                Some(o) => ok_json(project(o, &q, true)),
                None => not_found(id),
            }
        }
        ("PATCH", ["v1.0", coll @ ("applications" | "servicePrincipals"), id]) => {
            let list = if *coll == "applications" {
                &mut t.apps
            } else {
                &mut t.sps
            };
            let Some(o) = list.iter_mut().find(|o| o["id"] == *id) else {
                return not_found(id);
            };
            let Some(Value::Object(patch)) = json_body else {
                return graph_error(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "Empty Payload. JSON content expected.",
                );
            };
            for (k, v) in patch {
                if k == "keyCredentials" {
                    // Graph rejects a kept certificate sent back without its key.
                    if v.as_array()
                        .is_some_and(|l| l.iter().any(|c| c["key"].is_null()))
                    {
                        return graph_error(StatusCode::BAD_REQUEST, "Request_BadRequest", "Invalid value specified for property 'key' of resource 'KeyCredential'.");
                    }
                }
                o[k.as_str()] = v;
            }
            no_content()
        }
        ("POST", ["v1.0", coll @ ("applications" | "servicePrincipals"), id, "removePassword"]) => {
            let list = if *coll == "applications" {
                &mut t.apps
            } else {
                &mut t.sps
            };
            let Some(o) = list.iter_mut().find(|o| o["id"] == *id) else {
                return not_found(id);
            };
            let key = json_body
                .as_ref()
                .and_then(|b| b["keyId"].as_str())
                .unwrap_or("")
                .to_string();
            let creds = o["passwordCredentials"].as_array_mut();
            match creds {
                Some(l) if l.iter().any(|c| c["keyId"] == key.as_str()) => {
                    l.retain(|c| c["keyId"] != key.as_str());
                    no_content()
                }
                _ => graph_error(
                    StatusCode::BAD_REQUEST,
                    "Request_BadRequest",
                    "No password credential found with keyId.",
                ),
            }
        }
        ("GET", ["v1.0", "applications", id, "federatedIdentityCredentials", fid]) => {
            match t
                .fics
                .get(*id)
                .and_then(|l| l.iter().find(|f| f["id"] == *fid))
            {
                Some(f) => ok_json(f.clone()),
                None => not_found(fid),
            }
        }
        ("DELETE", ["v1.0", "applications", id, "federatedIdentityCredentials", fid]) => {
            let list = t.fics.entry(id.to_string()).or_default();
            let before = list.len();
            list.retain(|f| f["id"] != *fid);
            if list.len() == before {
                return not_found(fid);
            }
            no_content()
        }
        ("POST", ["v1.0", "applications", id, "federatedIdentityCredentials"]) => {
            let mut f = json_body.unwrap_or_default();
            t.counter += 1;
            f["id"] = json!(format!("fc000000-0000-4000-8000-{:012}", t.counter));
            t.fics.entry(id.to_string()).or_default().push(f.clone());
            (
                StatusCode::CREATED,
                [("content-type", "application/json")],
                f.to_string(),
            )
                .into_response()
        }
        ("GET", ["v1.0", "applications", id, "federatedIdentityCredentials"]) => {
            let items = t.fics.get(*id).cloned().unwrap_or_default();
            page(next_base, &path, &q, items, size, false)
        }
        ("GET", ["v1.0", "servicePrincipals", id, "appRoleAssignments"]) => {
            let items = t
                .app_role_assignments
                .iter()
                .filter(|a| a["principalId"] == *id)
                .cloned()
                .collect();
            page(next_base, &path, &q, items, size, false)
        }
        ("GET", ["v1.0", "servicePrincipals", sp, "appRoleAssignments", aid]) => {
            match t
                .app_role_assignments
                .iter()
                .find(|a| a["principalId"] == *sp && a["id"] == *aid)
            {
                Some(a) => ok_json(a.clone()),
                None => not_found(aid),
            }
        }
        ("DELETE", ["v1.0", "servicePrincipals", sp, "appRoleAssignments", aid]) => {
            let before = t.app_role_assignments.len();
            t.app_role_assignments
                .retain(|a| !(a["principalId"] == *sp && a["id"] == *aid));
            if t.app_role_assignments.len() == before {
                return not_found(aid);
            }
            no_content()
        }
        ("POST", ["v1.0", "servicePrincipals", sp, "appRoleAssignments"]) => {
            let b = json_body.unwrap_or_default();
            t.counter += 1;
            let a = json!({
                "id": format!("bmV3LWFzc2lnbm1lbnQ{}", t.counter), "deletedDateTime": null,
                "appRoleId": b["appRoleId"], "createdDateTime": ago(0), "principalDisplayName": null,
                "principalId": sp, "principalType": "ServicePrincipal",
                "resourceDisplayName": "Microsoft Graph", "resourceId": b["resourceId"],
            });
            t.app_role_assignments.push(a.clone());
            (
                StatusCode::CREATED,
                [("content-type", "application/json")],
                a.to_string(),
            )
                .into_response()
        }
        ("GET", ["v1.0", "roleManagement", "directory", "roleDefinitions"]) => {
            let items = t
                .directory_roles
                .iter()
                .map(|o| project(o, &q, false))
                .collect();
            page(next_base, &path, &q, items, size, false)
        }
        ("GET", ["v1.0", "roleManagement", "directory", "roleAssignments"]) => {
            if t.directory_roles_forbidden {
                return graph_error(
                    StatusCode::FORBIDDEN,
                    "Authorization_RequestDenied",
                    "Insufficient privileges to complete the operation.",
                );
            }
            let principal = q
                .get("$filter")
                .and_then(|f| f.strip_prefix("principalId eq '"))
                .map(|p| p.trim_end_matches('\'').to_string());
            let items = t
                .directory_role_assignments
                .iter()
                .filter(|r| {
                    principal
                        .as_ref()
                        .is_none_or(|p| r["principalId"] == p.as_str())
                })
                .map(|o| project(o, &q, false))
                .collect();
            page(next_base, &path, &q, items, size, false)
        }
        ("GET", ["v1.0", "roleManagement", "directory", "roleAssignments", rid]) => {
            match t
                .directory_role_assignments
                .iter()
                .find(|r| r["id"] == *rid)
            {
                Some(r) => ok_json(r.clone()),
                None => not_found(rid),
            }
        }
        ("DELETE", ["v1.0", "roleManagement", "directory", "roleAssignments", rid]) => {
            let before = t.directory_role_assignments.len();
            t.directory_role_assignments.retain(|r| r["id"] != *rid);
            if t.directory_role_assignments.len() == before {
                return not_found(rid);
            }
            no_content()
        }
        ("POST", ["v1.0", "roleManagement", "directory", "roleAssignments"]) => {
            let mut r = json_body.unwrap_or_default();
            t.counter += 1;
            r["id"] = json!(format!("bmV3LWRpcmVjdG9yeS1yb2xl{}", t.counter));
            t.directory_role_assignments.push(r.clone());
            (
                StatusCode::CREATED,
                [("content-type", "application/json")],
                r.to_string(),
            )
                .into_response()
        }
        ("GET", ["v1.0", "oauth2PermissionGrants"]) => {
            let items = t.grants.clone();
            page(next_base, &path, &q, items, size, false)
        }
        _ => graph_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!("Unsupported request: {method} {path}"),
        ),
    }
}

fn arm(
    t: &mut Tenant,
    method: &Method,
    path: &str,
    segs: &[&str],
    q: &BTreeMap<String, String>,
    body: Option<Value>,
) -> Response {
    let arm_err = |status: StatusCode, code: &str, message: &str| {
        let b = json!({"error": {"code": code, "message": message}});
        (
            status,
            [("content-type", "application/json")],
            b.to_string(),
        )
            .into_response()
    };
    if q.get("api-version").map(String::as_str) != Some("2022-04-01") {
        return arm_err(
            StatusCode::BAD_REQUEST,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        );
    }
    if let ["subscriptions", sub, ..] = segs {
        if t.failing_subscriptions.contains(*sub) {
            return arm_err(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                "Encountered internal server error.",
            );
        }
    }
    let size = t.page_size;
    match (method.as_str(), segs) {
        (
            "GET",
            ["subscriptions", _, "providers", "Microsoft.Authorization", "roleDefinitions"],
        ) => page(ARM, path, q, t.role_definitions.clone(), size, true),
        (
            "GET",
            ["subscriptions", sub, "providers", "Microsoft.Authorization", "roleAssignments"],
        ) => {
            let principal = q
                .get("$filter")
                .and_then(|f| f.strip_prefix("principalId eq '"))
                .map(|p| p.trim_end_matches('\'').to_string());
            let items = t
                .role_assignments
                .iter()
                .filter(|r| {
                    let scope = r["properties"]["scope"].as_str().unwrap_or("");
                    scope.starts_with(&format!("/subscriptions/{sub}"))
                        || scope.starts_with("/providers/Microsoft.Management")
                })
                .filter(|r| {
                    principal
                        .as_ref()
                        .is_none_or(|p| r["properties"]["principalId"] == p.as_str())
                })
                .cloned()
                .collect();
            page(ARM, path, q, items, size, true)
        }
        (m, [.., "providers", "Microsoft.Authorization", "roleAssignments", name]) => {
            let pos = t.role_assignments.iter().position(|r| r["id"] == path);
            match (m, pos) {
                ("GET", Some(i)) => ok_json(t.role_assignments[i].clone()),
                ("DELETE", Some(i)) => ok_json(t.role_assignments.remove(i)),
                ("DELETE", None) => StatusCode::NO_CONTENT.into_response(),
                ("PUT", None) => {
                    let props = body.map(|b| b["properties"].clone()).unwrap_or_default();
                    let scope = path
                        .split("/providers/Microsoft.Authorization/")
                        .next()
                        .unwrap_or("");
                    let mut p = props.clone();
                    p["scope"] = json!(scope);
                    let ra = json!({"id": path, "name": name, "type": "Microsoft.Authorization/roleAssignments", "properties": p});
                    t.role_assignments.push(ra.clone());
                    (
                        StatusCode::CREATED,
                        [("content-type", "application/json")],
                        ra.to_string(),
                    )
                        .into_response()
                }
                ("PUT", Some(_)) => arm_err(
                    StatusCode::CONFLICT,
                    "RoleAssignmentExists",
                    "The role assignment already exists.",
                ),
                _ => arm_err(
                    StatusCode::NOT_FOUND,
                    "RoleAssignmentNotFound",
                    &format!("The role assignment '{name}' is not found."),
                ),
            }
        }
        _ => arm_err(
            StatusCode::BAD_REQUEST,
            "InvalidResourceType",
            &format!("Unsupported request: {method} {path}"),
        ),
    }
}
