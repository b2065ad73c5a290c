//! Issuance on Entra ID: a federated identity credential added to an
//! application for an approval's window and removed at its end. The
//! workload exchanges its own OIDC token (issuer and subject exactly as
//! approved) for an Entra ID token: no secret exists anywhere.
//!
//! Both calls are idempotent and refuse to touch what nhi-assure did not
//! put there: a credential of the same name with another issuer or subject
//! is never overwritten nor removed. Graph allows at most
//! [`MAX_FEDERATED_PER_APP`] federated credentials per application, names
//! unique per application.

use azure_core::http::Method;
use nhi_contract::{ActionOutcome, FederatedCredential, SourceError};
use serde_json::{json, Value};

use super::readback::{check_id, invalid, Undo};
use super::AzureRemediator;
use crate::client::Api;

/// The audience Entra ID accepts in an exchanged token (Microsoft's
/// documented value for its public cloud).
pub const TOKEN_EXCHANGE_AUDIENCE: &str = "api://AzureADTokenExchange";

/// Graph's limit of federated identity credentials on one application.
pub const MAX_FEDERATED_PER_APP: usize = 20;

/// Graph's limit on a federated credential's description.
const MAX_DESCRIPTION: usize = 600;

fn text<'v>(v: &'v Value, k: &str) -> Option<&'v str> {
    v.get(k).and_then(Value::as_str)
}

/// Whether a federated credential as read trusts exactly `spec`'s token.
fn trusts(v: &Value, spec: &FederatedCredential) -> bool {
    text(v, "issuer") == Some(spec.issuer.as_str())
        && text(v, "subject") == Some(spec.subject.as_str())
}

/// Ids and public fields of a federated credential as read (never more).
fn shown(app: &str, name: &str, v: Option<&Value>) -> Value {
    match v {
        None => json!({"application": app, "name": name, "present": false}),
        Some(v) => json!({
            "application": app, "name": name, "present": true,
            "id": v.get("id"), "issuer": v.get("issuer"), "subject": v.get("subject"),
            "audiences": v.get("audiences"),
        }),
    }
}

impl AzureRemediator {
    fn fic_path(app: &str, name: &str) -> String {
        format!("/v1.0/applications/{app}/federatedIdentityCredentials/{name}")
    }

    /// The application `app` names in this tenant, by application (client)
    /// id first, then by object id: its `id`, `appId` and `displayName`;
    /// `None` when this tenant holds no such application.
    pub async fn find_application(&self, app: &str) -> Result<Option<Value>, SourceError> {
        let app = check_id(app)?;
        let select = "$select=id,appId,displayName";
        if let Some(v) = self
            .get_opt(
                Api::Graph,
                &format!("/v1.0/applications(appId='{app}')?{select}"),
            )
            .await?
        {
            return Ok(Some(v));
        }
        self.get_opt(Api::Graph, &format!("/v1.0/applications/{app}?{select}"))
            .await
    }

    /// Add the federated credential `name` trusting `spec` to application
    /// `app` (object id). Already there with the same issuer and subject: a
    /// no-op success. Another credential of that name, or the application's
    /// 20 taken: refused, nothing written.
    pub(super) async fn add_federated(
        &self,
        app: &str,
        name: &str,
        spec: &FederatedCredential,
    ) -> Result<ActionOutcome, SourceError> {
        let list_path = format!("/v1.0/applications/{app}/federatedIdentityCredentials");
        let list: Vec<Value> = self.c()?.list(Api::Graph, &list_path).await?;
        let before = list.iter().find(|f| text(f, "name") == Some(name));
        match before {
            Some(f) if !trusts(f, spec) => {
                return Err(invalid(format!(
                    "application {app} already has a federated credential named {name} trusting another issuer or subject: not overwritten"
                )));
            }
            Some(_) => {}
            None => {
                if let Some(other) = list.iter().find(|f| trusts(f, spec)) {
                    return Err(invalid(format!(
                        "application {app} already trusts that issuer and subject through federated credential {}, which nhi-assure did not add: not added (its life is not bound to the approval)",
                        text(other, "name").unwrap_or("?")
                    )));
                }
                if list.len() >= MAX_FEDERATED_PER_APP {
                    return Err(invalid(format!(
                        "application {app} has {} federated credentials, Graph's maximum: not added",
                        list.len()
                    )));
                }
                let description: String = spec.description.chars().take(MAX_DESCRIPTION).collect();
                let body = json!({
                    "name": name,
                    "issuer": spec.issuer,
                    "subject": spec.subject,
                    "audiences": [TOKEN_EXCHANGE_AUDIENCE],
                    "description": description,
                });
                self.send(Api::Graph, Method::Post, &list_path, Some(&body))
                    .await?;
            }
        }
        let after = self.get_opt(Api::Graph, &Self::fic_path(app, name)).await?;
        if !after.as_ref().is_some_and(|f| trusts(f, spec)) {
            return Err(invalid(format!(
                "federated credential {name} of {app} not present as requested after create"
            )));
        }
        Ok(ActionOutcome {
            via: None,
            before: shown(app, name, before),
            after: shown(app, name, after.as_ref()),
            undo: Some(json!([Undo::RemoveFederatedCredential {
                application: app.to_string(),
                name: name.to_string(),
                credential: spec.clone(),
            }])),
            irreversible: None,
        })
    }

    /// Remove the federated credential `name` that trusts `spec` from
    /// application `app`. Absent: a no-op success. Present with another
    /// issuer or subject: not the one nhi-assure added — refused.
    /// Reversible: undo adds it again.
    pub(super) async fn remove_added_federated(
        &self,
        app: &str,
        name: &str,
        spec: &FederatedCredential,
    ) -> Result<ActionOutcome, SourceError> {
        let path = Self::fic_path(app, name);
        let before = self.get_opt(Api::Graph, &path).await?;
        if let Some(f) = &before {
            if !trusts(f, spec) {
                return Err(invalid(format!(
                    "federated credential {name} of {app} trusts another issuer or subject than the one nhi-assure added: not removed"
                )));
            }
            self.send(Api::Graph, Method::Delete, &path, None).await?;
        }
        if self.get_opt(Api::Graph, &path).await?.is_some() {
            return Err(invalid(format!(
                "federated credential {name} of {app} still present after delete"
            )));
        }
        Ok(ActionOutcome {
            via: None,
            before: shown(app, name, before.as_ref()),
            after: shown(app, name, None),
            undo: Some(json!([Undo::AddFederatedCredential {
                application: app.to_string(),
                name: name.to_string(),
                credential: spec.clone(),
            }])),
            irreversible: None,
        })
    }

    /// Add (`add`) or remove the credential `name` of the application
    /// `app` names (application id or object id), found first in this
    /// tenant; never on nhi-assure's own application.
    pub(super) async fn federate(
        &self,
        app: &str,
        name: &str,
        spec: &FederatedCredential,
        add: bool,
    ) -> Result<ActionOutcome, SourceError> {
        let found = self.find_application(app).await?.ok_or_else(|| {
            invalid(format!(
                "no application {app} in tenant {}",
                self.config.tenant_id
            ))
        })?;
        let app_id = text(&found, "appId").unwrap_or_default();
        if self
            .own_client_id()
            .is_some_and(|own| own.eq_ignore_ascii_case(app_id))
        {
            return Err(invalid(format!(
                "{app} is nhi-assure's own application: never acted on"
            )));
        }
        let object = check_id(text(&found, "id").unwrap_or_default())?;
        if add {
            self.add_federated(object, name, spec).await
        } else {
            self.remove_added_federated(object, name, spec).await
        }
    }

    /// Undo step: add (`add`) or remove the credential again; the state as
    /// read back after.
    pub(super) async fn redo_federated(
        &self,
        application: &str,
        name: &str,
        credential: &FederatedCredential,
        add: bool,
    ) -> Result<Value, SourceError> {
        let (app, name) = (check_id(application)?, check_id(name)?);
        Ok(self.federate(app, name, credential, add).await?.after)
    }
}
