//! Service principals: disabling one (`accountEnabled`, re-enabled by
//! undo); a managed identity cannot be disabled, so its role assignments
//! are removed instead.

use azure_core::http::Method;
use nhi_contract::{ActionOutcome, SourceError};
use serde_json::{json, Value};

use super::readback::{check_id, invalid, Undo};
use super::AzureRemediator;
use crate::client::Api;

impl AzureRemediator {
    pub(super) async fn sp_state(
        &self,
        id: &str,
    ) -> Result<Option<(Option<String>, bool)>, SourceError> {
        let v = self
            .get_opt(
                Api::Graph,
                &format!(
                    "/v1.0/servicePrincipals/{id}?$select=id,servicePrincipalType,accountEnabled"
                ),
            )
            .await?;
        Ok(v.map(|v| {
            (
                v.get("servicePrincipalType")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                v.get("accountEnabled")
                    .and_then(Value::as_bool)
                    .unwrap_or(true),
            )
        }))
    }

    pub(super) async fn set_enabled(&self, id: &str, on: bool) -> Result<bool, SourceError> {
        self.send(
            Api::Graph,
            Method::Patch,
            &format!("/v1.0/servicePrincipals/{id}"),
            Some(&json!({ "accountEnabled": on })),
        )
        .await?;
        let now = self.sp_state(id).await?.map(|s| s.1);
        if now != Some(on) {
            return Err(invalid(format!(
                "service principal {id} accountEnabled is {now:?}, expected {on}"
            )));
        }
        Ok(on)
    }

    pub(super) async fn disable_identity(&self, id: &str) -> Result<ActionOutcome, SourceError> {
        let Some((kind, enabled)) = self.sp_state(id).await? else {
            return Err(invalid(format!(
                "{id} is not a service principal: an application registration is disabled through its service principal"
            )));
        };
        if kind.as_deref() == Some("ManagedIdentity") {
            return self.strip_managed_identity(id).await;
        }
        if enabled {
            self.set_enabled(id, false).await?;
        } else if self.sp_state(id).await?.map(|s| s.1) != Some(false) {
            return Err(invalid(format!("service principal {id} is not disabled")));
        }
        Ok(ActionOutcome {
            via: None,
            before: json!({"service_principal": id, "accountEnabled": enabled}),
            after: json!({"service_principal": id, "accountEnabled": false}),
            undo: enabled.then(|| json!([Undo::EnableServicePrincipal { id: id.to_string() }])),
            irreversible: None,
        })
    }

    pub(super) async fn strip_managed_identity(
        &self,
        id: &str,
    ) -> Result<ActionOutcome, SourceError> {
        let ras = self.rbac_of(id).await?;
        let apps = self.app_roles_of(id).await?;
        let dirs = self.all_directory_roles_of(id).await?;
        let before = json!({
            "managed_identity": id,
            "role_assignments": ras.iter().map(|r| &r.id).collect::<Vec<_>>(),
            "app_role_assignments": apps.iter().map(|a| &a.id).collect::<Vec<_>>(),
            "directory_role_assignments": dirs.iter().map(|a| &a.id).collect::<Vec<_>>(),
        });
        let mut undo = Vec::new();
        for ra in &ras {
            if let Some(u) = self.delete_role_assignment(&ra.id).await? {
                undo.push(u);
            }
        }
        for a in &apps {
            if let Some(u) = self.delete_app_role_assignment(id, &a.id).await? {
                undo.push(u);
            }
        }
        for d in &dirs {
            if let Some(u) = self.delete_directory_role(d).await? {
                undo.push(u);
            }
        }
        let left = self.rbac_of(id).await?.len()
            + self.app_roles_of(id).await?.len()
            + self.all_directory_roles_of(id).await?.len();
        if left > 0 {
            return Err(invalid(format!(
                "managed identity {id} still holds {left} assignments"
            )));
        }
        Ok(ActionOutcome {
            via: None,
            before,
            after: json!({
                "managed_identity": id,
                "role_assignments": [],
                "app_role_assignments": [],
                "directory_role_assignments": [],
                "note": "a managed identity cannot be disabled: its role assignments were removed instead (undo recreates them)",
            }),
            undo: (!undo.is_empty()).then(|| json!(undo)),
            irreversible: None,
        })
    }

    /// Undo of disabling: re-enable.
    pub(super) async fn enable_again(&self, id: &str) -> Result<Value, SourceError> {
        let id = check_id(id)?;
        // Idempotent, and a no-op on a managed identity (never disabled).
        if self.sp_state(id).await?.map(|s| s.1) != Some(true) {
            self.set_enabled(id, true).await?;
        }
        Ok(json!({"service_principal": id, "accountEnabled": true}))
    }
}
