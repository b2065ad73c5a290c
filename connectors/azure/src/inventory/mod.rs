//! Reading one Entra ID tenant (and its subscriptions' RBAC) into the
//! contract model, by object family:
//!
//! - [`directory`]: applications, service principals, managed identities
//!   and (beta) agent identities with their sponsors (`$select`, owners by
//!   `$expand`, every page); each principal classified by its
//!   `servicePrincipalType` — first-party Microsoft *applications* left
//!   out, managed identities and unknown types kept;
//! - [`usage`]: the two beta sign-in reports (refused → usage unknown plus
//!   a `usage` gap, never "never used");
//! - [`credentials`]: client secrets and certificates (ids and dates only,
//!   expired ones kept as inactive) and, with bounded concurrency, the
//!   federated credentials of each application (beta, for flexible
//!   expressions) and each user-assigned managed identity (ARM), with the
//!   tokens they admit;
//! - [`groups`]: each kept service principal's groups (transitive) and the
//!   app role assignments those groups hold;
//! - [`assignments`]: each kept service principal's app role assignments
//!   (each assigned resource's app roles read once), directory roles
//!   (active and PIM-eligible) and the tenant's delegated grants;
//! - [`rbac`]: per subscription, the role definitions, role assignments and
//!   PIM eligibility.
//!
//! A role assigned to a group is granted to each kept member `via`
//! `group:{groupObjectId}`; an eligible one is granted `eligible`.
//!
//! Listing the directory, grants or the principals' own app role
//! assignments failing makes the source unknown. Each other sub-read
//! failing is its own typed gap and the rest is still read: the directory
//! roles (`directory roles`), a subscription (`subscription {id}`), group
//! memberships or a group's assignments (`group memberships`), eligibility
//! in the directory or a subscription (`eligible assignments`), the sign-in
//! reports (`usage`), the agent identity listing (`agent identities`), the
//! federated credentials of an application or a managed identity
//! (`federated`). Privilege is judged by the tables of [`crate::privilege`].

mod assignments;
mod credentials;
mod directory;
mod groups;
mod rbac;
mod usage;

use std::collections::BTreeSet;

use async_trait::async_trait;
use nhi_contract::{
    Entitlement, Grant, Inventory, InventorySource, Provider, SourceError, Timestamp,
};

use crate::client::{CallStats, Client};
use crate::config::AzureConfig;

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

/// One scan of one tenant.
struct Scan<'a> {
    cfg: &'a AzureConfig,
    client: &'a Client,
    now: Timestamp,
}

impl Scan<'_> {
    /// The tenant, step by step; the order of the calls is the order here.
    async fn tenant(&self) -> Result<Inventory, SourceError> {
        let mut dir = self.directory().await?;
        let mut inv = Inventory::default();
        inv.coverage.gaps.append(&mut dir.gaps);
        let activity = self.activity(&mut inv.coverage.gaps).await;
        let grants = self.delegated_grants().await?;
        let federated = self
            .federated_credentials(&dir, &mut inv.coverage.gaps)
            .await;
        self.push_applications(&mut inv, &dir.apps, &federated, &activity);
        self.push_service_principals(&mut inv, &dir, &federated, &activity);

        let kept = dir.kept();
        let mut assigned = self.app_role_assignments(&dir.sps).await?;
        let mut groups = self.memberships(&dir.sps).await;
        assigned.extend(self.group_app_role_assignments(&mut groups).await);
        groups.gap(&mut inv.coverage.gaps);
        let resources = self.resources(&assigned, &grants, &kept).await?;
        let mut held = Held::default();
        let holders = (&kept, &groups);
        self.push_app_roles(&mut inv, &mut held, &assigned, &resources, holders);
        self.push_directory_roles(&mut inv, &mut held, holders)
            .await;
        self.push_delegated(&mut inv, &grants, &resources, &kept);
        self.push_rbac(&mut inv, &mut held, holders).await;
        Ok(inv)
    }

    /// How many per-object calls run at once.
    fn concurrency(&self) -> usize {
        self.cfg.max_concurrency.max(1)
    }
}

/// Entitlements and direct grants as the families add them: each
/// entitlement once, each (identity, entitlement) grant once — an
/// assignment at management-group scope shows in every subscription, and
/// the same permission is held by many principals.
#[derive(Default)]
struct Held {
    have: BTreeSet<String>,
    granted: BTreeSet<(String, String, Option<String>, bool)>,
}

impl Held {
    /// `identity` holds `entitlement` as `how` says (directly, through a
    /// group, as eligible): each way it is held is its own grant.
    fn add(&mut self, inv: &mut Inventory, identity: &str, entitlement: Entitlement, how: How) {
        let id = entitlement.id.clone();
        if self.have.insert(id.clone()) {
            inv.entitlements.push(entitlement);
        }
        let key = (
            identity.to_string(),
            id.clone(),
            how.via.clone(),
            how.eligible,
        );
        if self.granted.insert(key) {
            inv.grants.push(Grant {
                identity: identity.to_string(),
                entitlement: id,
                via: how.via,
                eligible: how.eligible,
                last_used: None,
            });
        }
    }
}

/// How a grant is held when not by a direct, active assignment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct How {
    /// `group:{groupObjectId}` when held through a group.
    via: Option<String>,
    /// PIM-eligible rather than active.
    eligible: bool,
}

impl How {
    fn group(id: &str, eligible: bool) -> How {
        How {
            via: Some(format!("group:{id}")),
            eligible,
        }
    }
}
