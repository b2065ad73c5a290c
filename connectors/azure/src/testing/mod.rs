//! Test support (feature `fake-tenant`), not used by the connector itself:
//! a fake Entra ID tenant — a local HTTP server that serves the
//! documented Microsoft Graph (v1.0, and beta for the reports, agent
//! identities and flexible federated credentials), ARM Authorization
//! (2022-04-01), ARM Microsoft.ManagedIdentity (2024-11-30) and Entra ID
//! token endpoint shapes for one fake tenant, on a
//! free loopback port. No emulator for Graph or ARM exists; the response
//! bodies follow Microsoft's reference examples (field names, collection
//! envelopes with `@odata.nextLink` / `nextLink`, error envelopes).
//!
//! The connector reaches it through `test_loopback` (every request, token
//! requests included, rewritten to `http://127.0.0.1:PORT`), with its
//! configured https base URLs unchanged — so the next links the fake hands
//! out are on those public-looking origins, as Graph's are.
//!
//! The objects are rebuilt from Microsoft's published examples, kept as
//! data under `testdata/docs/` (each file naming the page it comes from);
//! [`docs::drift`] checks that every object the fake serves uses only the
//! fields, and JSON types, those examples show for its resource type.
//!
//! Faults: page size (paging), one 429 with `Retry-After` per path,
//! 403 on the beta reports, 500 on a subscription or on the directory,
//! a refused agent identity listing, a managed identity whose federated
//! credentials cannot be read.
//! Every request is recorded (method, path, query, JSON body — never the
//! token request's form body, which holds the client secret).
//!
//! `tenant.rs` holds the documented data ([`Tenant::demo`], the generated
//! [`Tenant::synthetic`]) and the fault switches; `server.rs` serves it
//! ([`FakeTenant`]: token endpoint, bearer check, paging, projection) through
//! the routes of `graph.rs` and `arm.rs`.

mod arm;
pub mod docs;
mod entitlements;
mod graph;
mod server;
mod tenant;

pub use entitlements::ent_ids;
pub use server::FakeTenant;
pub use tenant::{Recorded, Tenant};

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
    /// Its application (client) id.
    pub const APPID_PAYMENTS: &str = "c1000000-0000-4000-8000-000000000001";
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
    /// A certificate on that service principal: expired 10 days ago, still present.
    pub const CERT_SP_PAYMENTS_EXPIRED: &str = "ce000000-0000-4000-8000-0000000000c5";
    /// App registration `legacy-sync`: no owner, 10-year secret, stale.
    pub const APP_LEGACY: &str = "a2000000-0000-4000-8000-000000000002";
    /// Its secret.
    pub const SECRET_LEGACY: &str = "5e000000-0000-4000-8000-0000000000d1";
    /// Its previous secret: expired 400 days ago, still present.
    pub const SECRET_LEGACY_EXPIRED: &str = "5e000000-0000-4000-8000-0000000000d2";
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
    /// A user-assigned managed identity (`mi-orders`).
    pub const MI_ORDERS: &str = "b4000000-0000-4000-8000-000000000004";
    /// Its ARM resource.
    pub const MI_ORDERS_RESOURCE: &str = "/subscriptions/3f2b8c1d-5e6a-4b7c-9d8e-0f1a2b3c4d5e/resourcegroups/orders/providers/Microsoft.ManagedIdentity/userAssignedIdentities/mi-orders";
    /// Its federated credential (an AKS service account), read from ARM.
    pub const MI_FIC_ORDERS: &str = "/subscriptions/3f2b8c1d-5e6a-4b7c-9d8e-0f1a2b3c4d5e/resourcegroups/orders/providers/Microsoft.ManagedIdentity/userAssignedIdentities/mi-orders/federatedIdentityCredentials/aks-orders";
    /// Its role assignment (Storage Blob Data Reader on a resource group).
    pub const RA_ORDERS: &str = "4e000000-0000-4000-8000-0000000000f2";
    /// A system-assigned managed identity (of VM `vm-build`).
    pub const MI_BUILD: &str = "b6000000-0000-4000-8000-000000000006";
    /// Its role assignment: Owner of the subscription.
    pub const RA_BUILD: &str = "4e000000-0000-4000-8000-0000000000f3";
    /// App registration `support-agent-blueprint`: an agent identity
    /// blueprint (owner: tom).
    pub const APP_BLUEPRINT: &str = "a5000000-0000-4000-8000-000000000005";
    /// Its application (client) id, which its agent identities name.
    pub const APPID_BLUEPRINT: &str = "c5000000-0000-4000-8000-000000000005";
    /// Its flexible federated credential.
    pub const FIC_BLUEPRINT: &str = "fc000000-0000-4000-8000-0000000000e2";
    /// That credential's claims-matching expression: any contoso repository.
    pub const FIC_BLUEPRINT_EXPRESSION: &str = "claims['sub'] matches 'repo:contoso/*'";
    /// Agent identity `support-agent` (sponsor: priya), holding
    /// `User.Read.All`.
    pub const AGENT_SUPPORT: &str = "b5000000-0000-4000-8000-000000000005";
    /// Microsoft Graph's service principal in the tenant.
    pub const SP_GRAPH: &str = "9a000000-0000-4000-8000-00000000009a";
    /// Microsoft Graph app role `Directory.ReadWrite.All`.
    pub const ROLE_DIRECTORY_RW: &str = "19dbc75e-c2e2-444c-a770-ec69d8559fc7";
    /// Microsoft Graph app role `User.Read.All`.
    pub const ROLE_USER_READ: &str = "df021288-bdef-4463-88db-98f22de89214";
}

/// Microsoft's first-party services tenant: the `appOwnerOrganizationId`
/// Entra ID reports for Microsoft's own applications and for every managed
/// identity.
pub const MICROSOFT_SERVICES_TENANT: &str = "f8cdef31-a31e-4b4a-93e4-5f571e91255a";

/// Built-in role definition ids (the real ones): Owner.
pub const ROLE_OWNER: &str = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635";
/// Contributor.
pub const ROLE_CONTRIBUTOR: &str = "b24988ac-6180-42a0-ab88-20f7382dd24c";
/// Storage Blob Data Reader.
pub const ROLE_BLOB_READER: &str = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1";
