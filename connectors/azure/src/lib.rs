//! Azure connector for nhi-assure: Microsoft Entra ID through Microsoft
//! Graph and Azure RBAC through Azure Resource Manager, with tokens from
//! `azure_identity`.
//!
//! - [`AzureSource`] inventories application registrations, service
//!   principals, managed identities and agent identities (principals
//!   classified by `servicePrincipalType`, first-party Microsoft
//!   applications left out), their client secrets and certificates (ids
//!   and dates only, never a secret value; expired ones kept), federated
//!   credentials of applications and user-assigned managed identities with
//!   the tokens they admit, last use from the sign-in activity reports
//!   (unknown when the tenant refuses them), application permissions,
//!   delegated grants, directory roles and RBAC role assignments — held
//!   directly, through a group (`via` `group:{id}`) or as PIM-eligible
//!   (`eligible`).
//! - [`AzureRemediator`] removes secrets (irreversible), certificates and
//!   federated credentials (reversible), disables service principals, and deletes app role and
//!   RBAC role assignments, reading the state back after each call and
//!   returning what undo needs. For issuance it adds a federated
//!   credential trusting one workload (issuer and subject) for an
//!   approval's window and removes it at the end, never touching one of
//!   the same name it did not add.
//! - [`privilege`] holds every table privilege is judged by (admin-equivalent
//!   Graph permissions, directory roles and Azure roles).
//!
//! Every base URL and the token authority come from [`AzureConfig`], so the
//! same code talks to national clouds and to the test fake.

#![warn(missing_docs)]

mod client;
pub mod config;
mod inventory;
mod model;
pub mod privilege;
mod remediate;
#[cfg(feature = "fake-tenant")]
pub mod testing;

pub use client::{ApiError, CallStats};
pub use config::{AzureAuth, AzureConfig};
pub use inventory::AzureSource;
pub use model::ARM_API_VERSION;
pub use privilege::{ADMIN_AZURE_ROLES, ADMIN_DIRECTORY_ROLES, ADMIN_GRAPH_PERMISSIONS};
pub use remediate::{AzureRemediator, MAX_FEDERATED_PER_APP, TOKEN_EXCHANGE_AUDIENCE};
