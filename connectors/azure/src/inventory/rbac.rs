//! Azure RBAC per configured subscription: role definitions and role
//! assignments of the kept principals, each role at its scope an
//! [`Entitlement`]. A subscription failing is a gap, not a failure.

use std::collections::{BTreeSet, HashMap};

use nhi_contract::{Entitlement, Gap, Inventory, Unseen};

use super::{Held, Scan};
use crate::client::{Api, ApiError};
use crate::model::{self, last_segment, ARM_API_VERSION};
use crate::privilege::rbac_privilege;

/// Entitlement id of an Azure role at a scope:
/// `{scope}/providers/Microsoft.Authorization/roleDefinitions/{guid}`.
pub(crate) fn rbac_entitlement(scope: &str, role_definition_id: &str) -> String {
    format!(
        "{}/providers/Microsoft.Authorization/roleDefinitions/{}",
        scope.trim_end_matches('/'),
        last_segment(role_definition_id)
    )
}

/// A subscription's role definitions (by guid) and role assignments.
type Subscription = (
    HashMap<String, model::RoleDefinition>,
    Vec<model::RoleAssignment>,
);

impl Scan<'_> {
    async fn subscription(&self, sub: &str) -> Result<Subscription, ApiError> {
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

    /// Every configured subscription in turn. An assignment at
    /// management-group scope shows in every subscription: read once.
    pub(super) async fn push_rbac(
        &self,
        inv: &mut Inventory,
        held: &mut Held,
        kept: &BTreeSet<&str>,
    ) {
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
                        let entitlement = role_at_scope(sub, &defs, p);
                        held.add(inv, &p.principal_id, entitlement);
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
    }
}

/// The role of an assignment at its scope, as approvals and snapshots name
/// it; the assignment itself is found again by principal, scope and role
/// when it is detached.
fn role_at_scope(
    sub: &str,
    defs: &HashMap<String, model::RoleDefinition>,
    p: &model::RoleAssignmentProps,
) -> Entitlement {
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
    Entitlement {
        id: rbac_entitlement(&scope, &p.role_definition_id),
        name: format!("{role} at {scope}"),
        privilege: rbac_privilege(&role, &actions, &scope),
        actions,
        resources: vec![scope],
    }
}
