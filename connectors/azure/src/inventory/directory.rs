//! Applications, service principals, managed identities and agent
//! identities: the directory listing, the beta agent identity listing, and
//! an [`Identity`] for each object kept.
//!
//! A service principal is classified by its `servicePrincipalType`, never
//! by the organisation that owns it: Entra ID reports Microsoft's
//! first-party services tenant as the owner of every managed identity, so
//! an owner-based filter would hide them all.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use nhi_contract::{Gap, Identity, IdentityKind, Inventory, Provider, Trust, Unseen};

use super::credentials::Federated;
use super::usage::{usage_of, Activity};
use super::Scan;
use crate::client::{Api, ApiError};
use crate::model::{self, ts};

/// Microsoft's own tenants: an *application* service principal they own is
/// a first-party Microsoft service present in every tenant, not the
/// tenant's identity. Only ever applied to `servicePrincipalType`
/// `Application` (managed identities carry the first of these too).
const MICROSOFT_TENANTS: [&str; 2] = [
    "f8cdef31-a31e-4b4a-93e4-5f571e91255a",
    "72f988bf-86f1-41af-91ab-2d7cd011db47",
];

/// `@odata.type` of an agent identity (Entra Agent ID).
const AGENT_ODATA_TYPE: &str = "#microsoft.graph.agentIdentity";

const SELECT_APP: &str =
    "id,appId,displayName,createdDateTime,tags,notes,passwordCredentials,keyCredentials";
const SELECT_SP: &str = "id,appId,displayName,servicePrincipalType,accountEnabled,appOwnerOrganizationId,tags,notes,alternativeNames,passwordCredentials,keyCredentials";
const SELECT_AGENT: &str =
    "id,displayName,agentIdentityBlueprintId,accountEnabled,servicePrincipalType,tags";
const EXPAND_OWNERS: &str = "owners($select=id,displayName,userPrincipalName)";
const EXPAND_SPONSORS: &str = "sponsors($select=id,displayName,userPrincipalName)";

/// How a service principal is inventoried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Class {
    /// The tenant's identity, of this kind.
    Kept(IdentityKind),
    /// A first-party Microsoft application: left out.
    FirstParty,
}

/// Classify by `servicePrincipalType` (and, for agent identities, their
/// derived `@odata.type` or presence in the agent listing).
pub(super) fn classify(s: &model::ServicePrincipal, agent: bool) -> Class {
    let typed_agent = s
        .odata_type
        .as_deref()
        .is_some_and(|t| t.eq_ignore_ascii_case(AGENT_ODATA_TYPE));
    if agent || typed_agent {
        return Class::Kept(IdentityKind::Agent);
    }
    match s.service_principal_type.as_deref() {
        Some("ManagedIdentity") => Class::Kept(IdentityKind::ManagedIdentity),
        Some("Application")
            if s.app_owner_organization_id
                .as_deref()
                .is_some_and(|o| MICROSOFT_TENANTS.contains(&o)) =>
        {
            Class::FirstParty
        }
        // Application, Legacy (no app registration, tenant-local) and
        // SocialIdp are service principals. So is a type Graph documents
        // later, or none at all: it is still a principal that can hold
        // credentials and roles, and dropping what we do not recognise
        // would make it invisible — unknown is not empty. It is kept,
        // tagged with its type, for a reader to judge.
        _ => Class::Kept(IdentityKind::ServicePrincipal),
    }
}

/// The tenant's application registrations and its own service principals,
/// managed identities and agent identities (Microsoft's first-party
/// applications left out), each with its kind.
pub(super) struct Directory {
    pub apps: Vec<model::Application>,
    pub sps: Vec<model::ServicePrincipal>,
    /// Kind of each kept principal, by object id.
    pub kinds: HashMap<String, IdentityKind>,
    /// The agent listing failing (refused, or absent on this tenant).
    pub gaps: Vec<Gap>,
}

impl Directory {
    /// Object ids of the principals kept: only their assignments and
    /// grants are read into the inventory.
    pub fn kept(&self) -> BTreeSet<&str> {
        self.sps.iter().map(|s| s.id.as_str()).collect()
    }

    /// The kind of a kept principal.
    pub fn kind(&self, id: &str) -> IdentityKind {
        self.kinds
            .get(id)
            .copied()
            .unwrap_or(IdentityKind::ServicePrincipal)
    }
}

fn name_of(o: &model::DirObject) -> String {
    o.user_principal_name
        .clone()
        .or_else(|| o.display_name.clone())
        .unwrap_or_else(|| o.id.clone())
}

fn owners_of(list: &[model::DirObject]) -> Option<String> {
    let names: Vec<String> = list.iter().map(name_of).collect();
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

/// The ARM resource id a managed identity belongs to (its
/// `alternativeNames` hold `isExplicit=True|False` and that id).
pub(super) fn mi_resource(s: &model::ServicePrincipal) -> Option<&str> {
    s.alternative_names
        .iter()
        .map(String::as_str)
        .find(|n| n.starts_with('/'))
}

/// A user-assigned managed identity (`isExplicit=True`): the
/// `Microsoft.ManagedIdentity/userAssignedIdentities` resource that holds
/// its federated credentials. System-assigned ones have none.
pub(super) fn user_assigned(s: &model::ServicePrincipal) -> Option<&str> {
    let explicit = s
        .alternative_names
        .iter()
        .any(|n| n.eq_ignore_ascii_case("isExplicit=True"));
    mi_resource(s).filter(|r| {
        explicit
            && r.to_ascii_lowercase()
                .contains("/providers/microsoft.managedidentity/userassignedidentities/")
    })
}

impl Scan<'_> {
    /// Every application and service principal, every page, and the agent
    /// identities (beta); each principal classified by its type.
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
        let mut gaps = Vec::new();
        let mut agents = self.agents(&mut gaps).await;
        let mut kinds = HashMap::new();
        let mut sps = Vec::new();
        for mut s in all_sps {
            let agent = agents.remove(&s.id);
            let Class::Kept(kind) = classify(&s, agent.is_some()) else {
                continue;
            };
            if let Some(a) = agent {
                // The agent listing carries what the v1.0 one does not.
                s.agent_identity_blueprint_id = a.agent_identity_blueprint_id;
                s.sponsors = a.sponsors;
                s.odata_type = s.odata_type.or(a.odata_type);
            }
            kinds.insert(s.id.clone(), kind);
            sps.push(s);
        }
        // Agent identities the v1.0 listing did not serve: added once each,
        // so their assignments flow like every other principal's.
        for (id, a) in agents {
            kinds.insert(id, IdentityKind::Agent);
            sps.push(a);
        }
        Ok(Directory {
            apps,
            sps,
            kinds,
            gaps,
        })
    }

    /// The agent identities (Entra Agent ID, beta), with their sponsors, by
    /// object id. Refused, absent on this tenant or failing → an
    /// `Identities{Agent}` gap; the rest of the tenant is still read.
    async fn agents(&self, gaps: &mut Vec<Gap>) -> BTreeMap<String, model::ServicePrincipal> {
        let listed: Result<Vec<model::ServicePrincipal>, ApiError> = self
            .client
            .list(
                Api::Graph,
                &format!(
                    "/beta/servicePrincipals/microsoft.graph.agentIdentity?$select={SELECT_AGENT}&$expand={EXPAND_SPONSORS}"
                ),
            )
            .await;
        match listed {
            Ok(list) => list.into_iter().map(|a| (a.id.clone(), a)).collect(),
            Err(e) => {
                let why = if matches!(e.status(), Some(400 | 403 | 404)) {
                    "refused or not available on this tenant"
                } else {
                    "failed"
                };
                tracing::warn!(source = %self.cfg.name, error = %e, "agent identities {why}");
                gaps.push(Gap {
                    unseen: Unseen::Identities {
                        kind: IdentityKind::Agent,
                    },
                    reason: format!("agent identity listing {why}: {e}"),
                });
                BTreeMap::new()
            }
        }
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
                provider_managed: false,
                attached_to: Vec::new(),
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

    /// Each kept service principal, managed identity or agent identity,
    /// then its secrets, certificates and federated credentials; an agent
    /// identity's blueprint application may act as it (a trust).
    pub(super) fn push_service_principals(
        &self,
        inv: &mut Inventory,
        dir: &Directory,
        federated: &Federated,
        activity: &Option<Activity>,
    ) {
        let app_by_appid: HashMap<&str, &model::Application> =
            dir.apps.iter().map(|a| (a.app_id.as_str(), a)).collect();
        for s in &dir.sps {
            let kind = dir.kind(&s.id);
            let mut tags = tags_of(&s.tags, &s.notes);
            if let Some(t) = &s.service_principal_type {
                tags.insert("servicePrincipalType".into(), t.clone());
            }
            if kind == IdentityKind::ManagedIdentity {
                // The resource the identity belongs to, for the reader.
                if let Some(r) = mi_resource(s) {
                    tags.insert("resource".into(), r.to_string());
                }
                let assigned = if user_assigned(s).is_some() {
                    "user"
                } else {
                    "system"
                };
                tags.insert("assigned".into(), assigned.into());
            }
            let blueprint = s
                .agent_identity_blueprint_id
                .as_deref()
                .and_then(|b| app_by_appid.get(b));
            if let Some(b) = &s.agent_identity_blueprint_id {
                tags.insert("agentIdentityBlueprintId".into(), b.clone());
            }
            if let Some(b) = blueprint {
                // The blueprint's credentials obtain the agent's tokens.
                inv.trusts.push(Trust {
                    from: b.id.clone(),
                    to: s.id.clone(),
                });
            }
            // Its own owners; an agent's sponsors; else the app
            // registration's owners answer for its service principal.
            let owner = owners_of(&s.owners)
                .or_else(|| owners_of(&s.sponsors))
                .or_else(|| {
                    app_by_appid
                        .get(s.app_id.as_str())
                        .and_then(|a| owners_of(&a.owners))
                });
            // Without an appId the sign-in reports cannot be matched: unknown.
            let usage = if s.app_id.is_empty() {
                nhi_contract::Usage::Unknown
            } else {
                usage_of(
                    activity,
                    activity.as_ref().and_then(|x| x.by_app.get(&s.app_id)),
                )
            };
            let name = s
                .display_name
                .clone()
                .or_else(|| (!s.app_id.is_empty()).then(|| s.app_id.clone()))
                .unwrap_or_else(|| s.id.clone());
            inv.identities.push(Identity {
                provider: Provider::Azure,
                id: s.id.clone(),
                kind,
                name,
                account: self.cfg.tenant_id.clone(),
                owner,
                created: None,
                usage,
                enabled: s.account_enabled.unwrap_or(true),
                tags,
                human_login: false,
                human_login_last_used: None,
                privilege: None,
                privilege_reason: None,
                provider_managed: false,
                attached_to: Vec::new(),
            });
            // A managed identity's key credential is the certificate the
            // platform holds and rotates for it: no one can use, rotate or
            // remove it, so it is not reported as a credential.
            if kind != IdentityKind::ManagedIdentity {
                self.push_creds(
                    inv,
                    &s.id,
                    &s.password_credentials,
                    &s.key_credentials,
                    activity,
                );
            }
            self.push_federated(inv, &s.id, federated);
        }
    }
}
