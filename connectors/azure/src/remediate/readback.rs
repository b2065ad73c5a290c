//! What every remediation shares: ids checked before they enter a URL, a
//! GET that maps 404 to absence (the read-back after each call), the call
//! itself, locating an object's collection, and the [`Undo`] record every
//! reversible step returns, replayed by [`AzureRemediator::undo_step`].

use azure_core::http::Method;
use nhi_contract::SourceError;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::AzureRemediator;
use crate::client::{Api, Client};
use crate::model::RoleAssignmentProps;

/// Which directory collection an object lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) enum Collection {
    Applications,
    ServicePrincipals,
}

impl Collection {
    pub(super) fn path(self) -> &'static str {
        match self {
            Collection::Applications => "applications",
            Collection::ServicePrincipals => "servicePrincipals",
        }
    }
}

/// What undo needs, per reversed step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "undo", rename_all = "snake_case")]
pub(super) enum Undo {
    EnableServicePrincipal {
        id: String,
    },
    RestoreKeyCredential {
        collection: Collection,
        id: String,
        /// The keyCredential as read (public certificate, never a private key).
        credential: Value,
    },
    RecreateRoleAssignment {
        id: String,
        properties: RoleAssignmentProps,
    },
    RecreateAppRoleAssignment {
        principal_id: String,
        resource_id: String,
        app_role_id: String,
    },
    RecreateDirectoryRoleAssignment {
        principal_id: String,
        role_definition_id: String,
        directory_scope_id: String,
    },
    RecreateFederatedCredential {
        application: String,
        /// name, issuer, subject, audiences, description as read.
        credential: Value,
    },
    /// A federated credential nhi-assure added for an approval: removed.
    RemoveFederatedCredential {
        application: String,
        name: String,
        credential: nhi_contract::FederatedCredential,
    },
    /// A federated credential nhi-assure removed at an approval's end:
    /// added again.
    AddFederatedCredential {
        application: String,
        name: String,
        credential: nhi_contract::FederatedCredential,
    },
    /// A user-assigned managed identity's federated credential (ARM).
    RecreateManagedIdentityFederatedCredential {
        /// Its ARM id (the name is its last segment).
        id: String,
        /// issuer, subject, audiences (or claimsMatchingExpression) as read.
        properties: Value,
    },
}

pub(super) fn invalid(m: impl Into<String>) -> SourceError {
    SourceError::Invalid {
        location: "azure remediation".into(),
        message: m.into(),
    }
}

/// Graph object ids and ARM ids go into URLs: accept only what they look like.
pub(super) fn check_id(id: &str) -> Result<&str, SourceError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    ok.then_some(id)
        .ok_or_else(|| invalid(format!("{id:?} is not a directory object id")))
}

pub(super) fn check_arm_id(id: &str) -> Result<&str, SourceError> {
    let ok = id.starts_with('/')
        && id.contains("/providers/Microsoft.Authorization/roleAssignments/")
        && !id.contains("..")
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./()".contains(c));
    ok.then_some(id)
        .ok_or_else(|| invalid(format!("{id:?} is not an ARM role assignment id")))
}

/// A user-assigned managed identity's federated credential by ARM id,
/// `{identity}/federatedIdentityCredentials/{name}`: `(identity, id)`.
pub(super) fn check_mi_fic_id(id: &str) -> Result<(&str, &str), SourceError> {
    const FIC: &str = "/federatedidentitycredentials/";
    let lower = id.to_ascii_lowercase();
    let shaped = id.starts_with("/subscriptions/")
        && lower.contains("/providers/microsoft.managedidentity/userassignedidentities/")
        && !id.contains("..")
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./()".contains(c));
    match lower.rfind(FIC) {
        Some(at)
            if shaped
                && !id[at + FIC.len()..].is_empty()
                && !id[at + FIC.len()..].contains('/') =>
        {
            Ok((&id[..at], id))
        }
        _ => Err(invalid(format!(
            "{id:?} is not a managed identity's federated credential id"
        ))),
    }
}

impl AzureRemediator {
    pub(super) fn c(&self) -> Result<&Client, SourceError> {
        self.client
            .as_ref()
            .map_err(|e| SourceError::Auth(format!("source {}: {e}", self.config.name)))
    }

    /// GET that maps 404 to `None`.
    pub(super) async fn get_opt(&self, api: Api, path: &str) -> Result<Option<Value>, SourceError> {
        let c = self.c()?;
        match c.get::<Value>(api, path).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub(super) async fn send(
        &self,
        api: Api,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, SourceError> {
        let c = self.c()?;
        let base = match api {
            Api::Graph => &c.graph_url,
            Api::Arm => &c.arm_url,
        };
        let url = format!("{base}{path}");
        c.call::<Value>(api, method, &url, body)
            .await
            .map_err(SourceError::from)
    }

    /// Which collection holds `id`, with the fields asked for.
    pub(super) async fn locate(
        &self,
        id: &str,
        select: &str,
    ) -> Result<(Collection, Value), SourceError> {
        for coll in [Collection::Applications, Collection::ServicePrincipals] {
            if let Some(v) = self
                .get_opt(
                    Api::Graph,
                    &format!("/v1.0/{}/{id}?$select={select}", coll.path()),
                )
                .await?
            {
                return Ok((coll, v));
            }
        }
        Err(invalid(format!(
            "{id} is neither an application nor a service principal"
        )))
    }

    pub(super) async fn read(
        &self,
        coll: Collection,
        id: &str,
        select: &str,
    ) -> Result<Value, SourceError> {
        self.get_opt(
            Api::Graph,
            &format!("/v1.0/{}/{id}?$select={select}", coll.path()),
        )
        .await?
        .ok_or_else(|| invalid(format!("{} {id} no longer exists", coll.path())))
    }

    /// Replay one undo step; each family checks the state is restored.
    pub(super) async fn undo_step(&self, s: &Undo) -> Result<Value, SourceError> {
        match s {
            Undo::EnableServicePrincipal { id } => self.enable_again(id).await,
            Undo::RestoreKeyCredential {
                collection,
                id,
                credential,
            } => {
                self.restore_key_credential(*collection, id, credential)
                    .await
            }
            Undo::RecreateRoleAssignment { id, properties } => {
                self.recreate_role_assignment(id, properties).await
            }
            Undo::RecreateDirectoryRoleAssignment {
                principal_id,
                role_definition_id,
                directory_scope_id,
            } => {
                self.recreate_directory_role(principal_id, role_definition_id, directory_scope_id)
                    .await
            }
            Undo::RecreateFederatedCredential {
                application,
                credential,
            } => self.recreate_federated(application, credential).await,
            Undo::RemoveFederatedCredential {
                application,
                name,
                credential,
            } => {
                self.redo_federated(application, name, credential, false)
                    .await
            }
            Undo::AddFederatedCredential {
                application,
                name,
                credential,
            } => {
                self.redo_federated(application, name, credential, true)
                    .await
            }
            Undo::RecreateManagedIdentityFederatedCredential { id, properties } => {
                self.recreate_mi_federated(id, properties).await
            }
            Undo::RecreateAppRoleAssignment {
                principal_id,
                resource_id,
                app_role_id,
            } => {
                self.recreate_app_role_assignment(principal_id, resource_id, app_role_id)
                    .await
            }
        }
    }
}
