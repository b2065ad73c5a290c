//! Applications, service principals and managed identities: the directory
//! listing, and an [`Identity`] for each object kept.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use nhi_contract::{Identity, IdentityKind, Inventory, Provider};

use super::credentials::Federated;
use super::usage::{usage_of, Activity};
use super::Scan;
use crate::client::{Api, ApiError};
use crate::model::{self, ts};

/// Microsoft's own tenants: service principals of first-party Microsoft
/// services live in every tenant and are not the tenant's identities.
const MICROSOFT_TENANTS: [&str; 2] = [
    "f8cdef31-a31e-4b4a-93e4-5f571e91255a",
    "72f988bf-86f1-41af-91ab-2d7cd011db47",
];

const SELECT_APP: &str =
    "id,appId,displayName,createdDateTime,tags,notes,passwordCredentials,keyCredentials";
const SELECT_SP: &str = "id,appId,displayName,servicePrincipalType,accountEnabled,appOwnerOrganizationId,tags,notes,alternativeNames,passwordCredentials,keyCredentials";
const EXPAND_OWNERS: &str = "owners($select=id,displayName,userPrincipalName)";

/// The tenant's application registrations and its own service principals
/// (Microsoft's first-party ones left out).
pub(super) struct Directory {
    pub apps: Vec<model::Application>,
    pub sps: Vec<model::ServicePrincipal>,
}

impl Directory {
    /// Object ids of the service principals kept: only their assignments
    /// and grants are read into the inventory.
    pub fn kept(&self) -> BTreeSet<&str> {
        self.sps.iter().map(|s| s.id.as_str()).collect()
    }
}

fn owners_of(list: &[model::DirObject]) -> Option<String> {
    let names: Vec<String> = list
        .iter()
        .map(|o| {
            o.user_principal_name
                .clone()
                .or_else(|| o.display_name.clone())
                .unwrap_or_else(|| o.id.clone())
        })
        .collect();
    (!names.is_empty()).then(|| names.join(", "))
}

fn tags_of(tags: &[String], notes: &Option<String>) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> =
        tags.iter().map(|t| (t.clone(), String::new())).collect();
    if let Some(n) = notes.as_ref().filter(|n| !n.trim().is_empty()) {
        out.insert("notes".into(), n.clone());
    }
    out
}

impl Scan<'_> {
    /// Every application and service principal, every page.
    pub(super) async fn directory(&self) -> Result<Directory, ApiError> {
        let apps: Vec<model::Application> = self
            .client
            .list(
                Api::Graph,
                &format!("/v1.0/applications?$select={SELECT_APP}&$expand={EXPAND_OWNERS}"),
            )
            .await?;
        let all_sps: Vec<model::ServicePrincipal> = self
            .client
            .list(
                Api::Graph,
                &format!("/v1.0/servicePrincipals?$select={SELECT_SP}&$expand={EXPAND_OWNERS}"),
            )
            .await?;
        let sps = all_sps
            .into_iter()
            .filter(|s| {
                !s.app_owner_organization_id
                    .as_deref()
                    .is_some_and(|o| MICROSOFT_TENANTS.contains(&o))
            })
            .collect();
        Ok(Directory { apps, sps })
    }

    /// Each application, then its secrets, certificates and federated
    /// credentials.
    pub(super) fn push_applications(
        &self,
        inv: &mut Inventory,
        apps: &[model::Application],
        federated: &Federated,
        activity: &Option<Activity>,
    ) {
        for a in apps {
            let name = a.display_name.clone().unwrap_or_else(|| a.app_id.clone());
            inv.identities.push(Identity {
                provider: Provider::Azure,
                id: a.id.clone(),
                kind: IdentityKind::Application,
                name,
                account: self.cfg.tenant_id.clone(),
                owner: owners_of(&a.owners),
                created: ts(a.created_date_time.as_deref()),
                usage: usage_of(
                    activity,
                    activity.as_ref().and_then(|x| x.by_app.get(&a.app_id)),
                ),
                enabled: true,
                tags: tags_of(&a.tags, &a.notes),
                human_login: false,
                human_login_last_used: None,
                privilege: None,
                privilege_reason: None,
            });
            self.push_creds(
                inv,
                &a.id,
                &a.password_credentials,
                &a.key_credentials,
                activity,
            );
            self.push_federated(inv, &a.id, federated);
        }
    }

    /// Each kept service principal or managed identity, then its secrets
    /// and certificates.
    pub(super) fn push_service_principals(
        &self,
        inv: &mut Inventory,
        dir: &Directory,
        activity: &Option<Activity>,
    ) {
        let app_by_appid: HashMap<&str, &model::Application> =
            dir.apps.iter().map(|a| (a.app_id.as_str(), a)).collect();
        for s in &dir.sps {
            let kind = match s.service_principal_type.as_deref() {
                Some("ManagedIdentity") => IdentityKind::ManagedIdentity,
                _ => IdentityKind::ServicePrincipal,
            };
            let mut tags = tags_of(&s.tags, &s.notes);
            if let Some(t) = &s.service_principal_type {
                tags.insert("servicePrincipalType".into(), t.clone());
            }
            if kind == IdentityKind::ManagedIdentity {
                // The resource the identity belongs to, for the reader.
                if let Some(r) = s.alternative_names.iter().find(|n| n.starts_with('/')) {
                    tags.insert("resource".into(), r.clone());
                }
            }
            // The app registration's owners answer for its service principal.
            let owner = owners_of(&s.owners).or_else(|| {
                app_by_appid
                    .get(s.app_id.as_str())
                    .and_then(|a| owners_of(&a.owners))
            });
            inv.identities.push(Identity {
                provider: Provider::Azure,
                id: s.id.clone(),
                kind,
                name: s.display_name.clone().unwrap_or_else(|| s.app_id.clone()),
                account: self.cfg.tenant_id.clone(),
                owner,
                created: None,
                usage: usage_of(
                    activity,
                    activity.as_ref().and_then(|x| x.by_app.get(&s.app_id)),
                ),
                enabled: s.account_enabled.unwrap_or(true),
                tags,
                human_login: false,
                human_login_last_used: None,
                privilege: None,
                privilege_reason: None,
            });
            self.push_creds(
                inv,
                &s.id,
                &s.password_credentials,
                &s.key_credentials,
                activity,
            );
        }
    }
}
