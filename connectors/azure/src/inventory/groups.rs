//! Roles held through groups: the groups each kept service principal is a
//! transitive member of (`transitiveMemberOf`, cast to groups), and the app
//! role assignments those groups hold. Directory role, RBAC and eligible
//! assignments whose principal is such a group are granted to every kept
//! member, each grant `via` `group:{groupObjectId}` — removing the member
//! from the group would take every other role the group gives, so the
//! grant says how it is held.
//!
//! A membership or a group's assignments failing to read is one
//! `group memberships` gap for the tenant; what was read is still used.

use std::collections::{BTreeMap, BTreeSet};

use futures_util::stream::{self, StreamExt};
use nhi_contract::{Gap, Unseen};

use super::{How, Scan};
use crate::client::{Api, ApiError};
use crate::model;

/// The groups of the kept service principals, and what could not be read.
#[derive(Default)]
pub(super) struct Memberships {
    /// Kept members of each group (transitive), by group object id.
    members: BTreeMap<String, Vec<String>>,
    /// Why a read failed, one line each.
    failed: Vec<String>,
}

impl Memberships {
    /// Who holds what `principal` is assigned, and how: the principal
    /// itself when it is a kept service principal, each kept member when
    /// it is a group.
    pub fn holders(
        &self,
        principal: &str,
        kept: &BTreeSet<&str>,
        eligible: bool,
    ) -> Vec<(String, How)> {
        let mut out = Vec::new();
        if kept.contains(principal) {
            out.push((
                principal.to_string(),
                How {
                    via: None,
                    eligible,
                },
            ));
        }
        for m in self.members.get(principal).into_iter().flatten() {
            out.push((m.clone(), How::group(principal, eligible)));
        }
        out
    }

    /// The group memberships gap, if any read failed.
    pub fn gap(&self, gaps: &mut Vec<Gap>) {
        if let Some(first) = self.failed.first() {
            gaps.push(Gap {
                unseen: Unseen::GroupMemberships,
                reason: format!(
                    "{} read(s) failed, roles held through groups may be missing: {first}",
                    self.failed.len()
                ),
            });
        }
    }
}

impl Scan<'_> {
    /// Each kept service principal's groups, every page, with bounded
    /// concurrency. A failure is recorded, never fatal.
    pub(super) async fn memberships(&self, sps: &[model::ServicePrincipal]) -> Memberships {
        let c = self.client;
        let read: Vec<(String, Result<Vec<model::Group>, ApiError>)> =
            stream::iter(sps.iter().map(|s| s.id.clone()).collect::<Vec<_>>())
                .map(|sp| async move {
                    let groups = c
                        .list(
                            Api::Graph,
                            &format!(
                                "/v1.0/servicePrincipals/{sp}/transitiveMemberOf/microsoft.graph.group?$select=id"
                            ),
                        )
                        .await;
                    (sp, groups)
                })
                .buffer_unordered(self.concurrency())
                .collect()
                .await;
        let mut m = Memberships::default();
        for (sp, groups) in read {
            match groups {
                Ok(list) => {
                    for g in list {
                        m.members.entry(g.id).or_default().push(sp.clone());
                    }
                }
                Err(e) => {
                    tracing::warn!(source = %self.cfg.name, error = %e, "groups of a service principal not read");
                    m.failed.push(e.to_string());
                }
            }
        }
        for members in m.members.values_mut() {
            members.sort();
        }
        m
    }

    /// The app role assignments each group holds (each group read once,
    /// bounded concurrency). A failure is recorded in `m`, never fatal.
    pub(super) async fn group_app_role_assignments(
        &self,
        m: &mut Memberships,
    ) -> Vec<model::AppRoleAssignment> {
        let c = self.client;
        let read: Vec<Result<Vec<model::AppRoleAssignment>, ApiError>> =
            stream::iter(m.members.keys().cloned().collect::<Vec<_>>())
                .map(|g| async move {
                    c.list(Api::Graph, &format!("/v1.0/groups/{g}/appRoleAssignments"))
                        .await
                })
                .buffer_unordered(self.concurrency())
                .collect()
                .await;
        let mut out = Vec::new();
        for r in read {
            match r {
                Ok(list) => out.extend(list),
                Err(e) => {
                    tracing::warn!(source = %self.cfg.name, error = %e, "app role assignments of a group not read");
                    m.failed.push(e.to_string());
                }
            }
        }
        out
    }
}
