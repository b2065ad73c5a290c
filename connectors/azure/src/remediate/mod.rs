//! Remediation on Entra ID and Azure RBAC. Every action reads the state
//! back after the call and is idempotent: acting on what is already in the
//! target state is a no-op success that still reports what it found.
//!
//! Reversible (undo data in the outcome): removing a certificate (the
//! public certificate is kept in the undo data and patched back — it is
//! not a secret), deleting a federated credential (undo recreates it with
//! the same name, issuer, subject and audiences), disabling a service
//! principal (undo re-enables),
//! deleting an app role assignment or an RBAC role assignment (undo
//! recreates it from the saved properties; a recreated app role assignment
//! gets a new id). Irreversible, and said so: removing a client secret
//! (`removePassword`) — Entra ID cannot disable a secret, and a removed one
//! cannot be brought back.
//!
//! Managed identities cannot be disabled (their `accountEnabled` is owned by
//! the resource): disabling one removes its role assignments instead.
//!
//! By object family: [`credentials`] (secrets, certificates, federated
//! credentials), [`service_principals`] (disable / re-enable, managed
//! identities stripped), [`assignments`] (app role, directory role and RBAC
//! assignments, detach), [`indirect`] (how else a principal holds a role:
//! through a group or as eligible — never detached through the direct
//! path). [`readback`] holds what every action shares: ids
//! checked before they enter a URL, reads that map 404 to absence, the
//! call, and the [`readback::Undo`] record with its replay.

mod assignments;
mod credentials;
mod federation;
mod indirect;
mod readback;
mod service_principals;

use async_trait::async_trait;
use nhi_contract::{
    ActionOutcome, ActionRequest, CredentialKind, Operation, Provider, Remediator, SourceError,
};
use serde_json::{json, Value};

use crate::client::{CallStats, Client};
use crate::config::{AzureAuth, AzureConfig};
pub use federation::{MAX_FEDERATED_PER_APP, TOKEN_EXCHANGE_AUDIENCE};
use readback::{check_id, invalid, Undo};

/// The Azure [`Remediator`].
pub struct AzureRemediator {
    config: AzureConfig,
    client: Result<Client, String>,
    calls: CallStats,
}

impl AzureRemediator {
    /// An outcome stamped with where it acted: this source's tenant.
    fn tenant_bound(&self, mut o: ActionOutcome) -> ActionOutcome {
        o.via = Some(format!("tenant {}", self.config.tenant_id));
        o
    }

    /// A remediator for the tenant of `config`. A credential that cannot be
    /// built makes every action fail with the reason (not the constructor:
    /// other sources' remediators must still be usable).
    pub fn new(config: &AzureConfig) -> AzureRemediator {
        let calls = CallStats::default();
        AzureRemediator {
            config: config.clone(),
            client: Client::new(config, calls.clone()).map_err(|e| e.to_string()),
            calls,
        }
    }

    /// Calls made so far.
    pub fn calls(&self) -> &CallStats {
        &self.calls
    }

    /// The application (client) id the remediator signs in as, if the config names it.
    fn own_client_id(&self) -> Option<&str> {
        match &self.config.auth {
            AzureAuth::ClientSecret { client_id, .. }
            | AzureAuth::ClientCertificate { client_id, .. } => Some(client_id),
            AzureAuth::WorkloadIdentity { client_id, .. }
            | AzureAuth::ManagedIdentity { client_id } => client_id.as_deref(),
            AzureAuth::AzureCli => None,
        }
    }

    /// Refuse to act on the scanner's own application or service principal
    /// (it would lock itself out mid-run), whatever `[plan] protected` says.
    async fn guard_self(&self, id: &str) -> Result<(), SourceError> {
        let Some(own) = self.own_client_id() else {
            return Ok(());
        };
        let (_, v) = self.locate(id, "id,appId").await?;
        if v.get("appId")
            .and_then(Value::as_str)
            .is_some_and(|a| a.eq_ignore_ascii_case(own))
        {
            return Err(invalid(format!(
                "{id} is nhi-assure's own identity (application {own}): never acted on"
            )));
        }
        Ok(())
    }
}

#[async_trait]
impl Remediator for AzureRemediator {
    fn provider(&self) -> Provider {
        Provider::Azure
    }

    fn can_disable(&self, kind: CredentialKind) -> bool {
        // Entra ID has no disabled state for a password credential.
        kind != CredentialKind::ClientSecret
    }

    async fn apply(&self, a: &ActionRequest) -> Result<ActionOutcome, SourceError> {
        if a.provider != Provider::Azure {
            return Err(invalid(format!("not an Azure action: {}", a.provider)));
        }
        let id = check_id(&a.identity_id)?;
        let federated = matches!(
            a.operation,
            Operation::AddFederatedCredential | Operation::RemoveFederatedCredential
        );
        // A federated credential's application is named by its application
        // id as often as by its object id: guarded once found (`federate`).
        if !federated {
            self.guard_self(id).await?;
        }
        let key = || {
            a.credential_id
                .as_deref()
                .ok_or_else(|| invalid("no credential id"))
                .and_then(check_id)
        };
        let done = match (a.operation, a.credential_kind) {
            (Operation::DeleteCredential, Some(CredentialKind::ClientSecret)) => {
                self.remove_secret(id, key()?).await
            }
            (Operation::DisableCredential, Some(CredentialKind::ClientSecret)) => Err(invalid(
                "Entra ID cannot disable a client secret: it can only be removed (removePassword), which is irreversible; plan delete_credential, or disable_identity on its service principal",
            )),
            (
                Operation::DisableCredential | Operation::DeleteCredential,
                Some(CredentialKind::Certificate),
            ) => self.remove_certificate(id, key()?).await,
            // A managed identity's federated credential is named by its ARM id.
            (
                Operation::DisableCredential | Operation::DeleteCredential,
                Some(CredentialKind::Federated),
            ) if a.credential_id.as_deref().is_some_and(|c| c.starts_with('/')) => {
                self.remove_mi_federated(id, a.credential_id.as_deref().unwrap_or_default())
                    .await
            }
            (
                Operation::DisableCredential | Operation::DeleteCredential,
                Some(CredentialKind::Federated),
            ) => self.remove_federated(id, key()?).await,
            (Operation::DisableCredential | Operation::DeleteCredential, k) => Err(invalid(format!(
                "{} of a {} credential is not supported on Azure",
                a.operation.as_str(),
                k.map_or("unspecified", |k| k.as_str())
            ))),
            (Operation::DisableIdentity, _) => self.disable_identity(id).await,
            (Operation::DetachEntitlements, _) => self.detach(a).await,
            (Operation::RemoveLogin, _) => Err(invalid(
                "service principals have no interactive login to remove",
            )),
            (Operation::DenySessions | Operation::LiftSessionDeny, _) => Err(invalid(
                "session denies are AWS role policies: Azure issues no sessions to deny",
            )),
            (
                op @ (Operation::AddFederatedCredential | Operation::RemoveFederatedCredential),
                _,
            ) => {
                let spec = a.federated.as_ref().ok_or_else(|| {
                    invalid("no issuer and subject given for the federated credential")
                })?;
                self.federate(id, key()?, spec, op == Operation::AddFederatedCredential)
                    .await
            }
        };
        done.map(|o| self.tenant_bound(o))
    }

    /// Only re-enabling is known before the call. Removing a certificate or
    /// an assignment needs what the call itself reads (the public
    /// certificate, the assignment's properties): an action interrupted
    /// between the provider call and its journaled outcome keeps no undo
    /// data for those.
    fn planned_undo(&self, a: &ActionRequest) -> Option<Value> {
        if a.operation != Operation::DisableIdentity || check_id(&a.identity_id).is_err() {
            return None;
        }
        Some(json!([Undo::EnableServicePrincipal {
            id: a.identity_id.clone()
        }]))
    }

    async fn undo(&self, data: &Value) -> Result<ActionOutcome, SourceError> {
        let steps: Vec<Undo> =
            serde_json::from_value(data.clone()).map_err(|e| invalid(format!("undo data: {e}")))?;
        let mut after = Vec::new();
        for s in &steps {
            after.push(self.undo_step(s).await?);
        }
        Ok(self.tenant_bound(ActionOutcome {
            via: None,
            before: data.clone(),
            after: Value::Array(after),
            undo: None,
            irreversible: None,
        }))
    }
}
