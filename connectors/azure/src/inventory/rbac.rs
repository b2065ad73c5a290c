//! Azure RBAC per configured subscription: role definitions, role
//! assignments and current PIM eligibility (schedule instances) of the kept
//! principals and of the groups they belong to, each role at its scope an
//! [`Entitlement`] judged by what it allows after its `notActions`
//! ([`RoleActions`]). A subscription failing is a `subscription` gap, its
//! eligibility failing an `eligible assignments` gap; neither fails the
//! scan, and each is read whatever the other did.

use std::collections::{BTreeSet, HashMap};

use nhi_contract::{Entitlement, Gap, Inventory, Unseen};

use super::groups::Memberships;
use super::{Held, Scan};
use crate::client::{Api, ApiError};
use crate::model::{self, last_segment, ts, ARM_API_VERSION, ARM_PIM_API_VERSION};
use crate::privilege::{rbac_privilege, RoleActions};

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

    /// A subscription's current eligibility: instances at, above and
    /// below it (no `$filter`: `atScope()` would leave out resource groups).
    async fn eligibility(&self, sub: &str) -> Result<Vec<model::RbacEligibility>, ApiError> {
        self.client
            .list(
                Api::Arm,
                &format!(
                    "/subscriptions/{sub}/providers/Microsoft.Authorization/roleEligibilityScheduleInstances?api-version={ARM_PIM_API_VERSION}"
                ),
            )
            .await
    }

    /// Every configured subscription in turn. An assignment at
    /// management-group scope shows in every subscription: read once, and
    /// judged at its own scope.
    pub(super) async fn push_rbac(
        &self,
        inv: &mut Inventory,
        held: &mut Held,
        (kept, groups): (&BTreeSet<&str>, &Memberships),
    ) {
        let mut seen = BTreeSet::new();
        for sub in &self.cfg.subscriptions {
            let defs = match self.subscription(sub).await {
                Ok((defs, ras)) => {
                    for ra in ras {
                        let p = &ra.properties;
                        let holders = groups.holders(&p.principal_id, kept, false);
                        if holders.is_empty() || !seen.insert(ra.id.clone()) {
                            continue;
                        }
                        let e =
                            role_at_scope(sub, &defs, &p.role_definition_id, p.scope.as_deref());
                        for (who, how) in holders {
                            held.add(inv, &who, e.clone(), how);
                        }
                    }
                    defs
                }
                Err(e) => {
                    tracing::error!(source = %self.cfg.name, subscription = %sub, error = %e, "subscription not read: its role assignments are unknown");
                    inv.coverage.gaps.push(Gap {
                        unseen: Unseen::Subscription { id: sub.clone() },
                        reason: e.to_string(),
                    });
                    HashMap::new()
                }
            };
            match self.eligibility(sub).await {
                Ok(list) => {
                    for el in list {
                        let p = &el.properties;
                        // Every member type counts (`Direct`, `Group`,
                        // `Inherited` from a parent scope): each names a
                        // principal that may activate the role at `scope`;
                        // an instance repeated is read once by its id.
                        let ended = ts(p.end_date_time.as_deref()).is_some_and(|t| t <= self.now);
                        let holders = groups.holders(&p.principal_id, kept, true);
                        if ended || holders.is_empty() || !seen.insert(el.id.clone()) {
                            continue;
                        }
                        let e =
                            role_at_scope(sub, &defs, &p.role_definition_id, p.scope.as_deref());
                        for (who, how) in holders {
                            held.add(inv, &who, e.clone(), how);
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(source = %self.cfg.name, subscription = %sub, error = %e, "role eligibility not read");
                    inv.coverage.gaps.push(Gap {
                        unseen: Unseen::EligibleAssignments,
                        reason: format!("subscription {sub} role eligibility: {e}"),
                    });
                }
            }
        }
    }
}

/// The role of an assignment (active or eligible) at its scope, as
/// approvals and snapshots name it; the assignment itself is found again
/// by principal, scope and role when it is detached.
fn role_at_scope(
    sub: &str,
    defs: &HashMap<String, model::RoleDefinition>,
    role_definition_id: &str,
    scope: Option<&str>,
) -> Entitlement {
    let scope = scope
        .map(str::to_string)
        .unwrap_or_else(|| format!("/subscriptions/{sub}"));
    let def = defs.get(last_segment(role_definition_id));
    let role = def
        .map(|d| d.properties.role_name.clone())
        .unwrap_or_else(|| last_segment(role_definition_id).to_string());
    let allowed = def
        .map(|d| RoleActions::of(&d.properties.permissions))
        .unwrap_or_default();
    Entitlement {
        id: rbac_entitlement(&scope, role_definition_id),
        name: format!("{role} at {scope}"),
        privilege: rbac_privilege(&role, &allowed, &scope),
        actions: allowed.listed(),
        resources: vec![scope],
    }
}
