//! AWS connector for nhi-assure, on `aws-sdk-iam`.
//!
//! - [`AwsSource`] inventories IAM users, roles and the account root, their
//!   credentials per access key id (never by key slot), their entitlements
//!   (managed, inline and group policies, analysed by [`policy`]) and the
//!   assume-role trust between principals.
//! - An `organization` source discovers its accounts through AWS
//!   Organizations and reads each through a member role (`org`).
//! - [`AwsIssuer`] issues just-in-time sessions bound to an approval
//!   (`sts:AssumeRole` with a session policy from its scope; [`issue`]).
//! - [`AwsRemediator`] deactivates / deletes access keys, deletes login
//!   profiles and detaches policies, reading the state back after each call
//!   and returning what is needed to undo it.
//!
//! Bulk calls first (GetAccountAuthorizationDetails, the credential report),
//! per-user calls with bounded concurrency, adaptive retries, pagination
//! everywhere. A core call failing makes the source unknown for the run; an
//! optional credential type the endpoint refuses is recorded as a gap.

pub mod config;
mod inventory;
pub mod issue;
mod last_accessed;
#[cfg(feature = "moto-fixture")]
pub mod moto;
mod org;
pub mod policy;
mod remediate;
mod sdk;

pub use config::{AwsConfig, LastAccessedConfig, OrganizationConfig};
pub use inventory::AwsSource;
pub use issue::{AwsIssuer, IssueError, IssuedSession, SessionRequest};
pub use remediate::AwsRemediator;
pub use sdk::CallStats;
