//! Credentials: removing a client secret (irreversible), a certificate
//! (PATCH of the remaining keyCredentials; the public certificate kept for
//! undo) and a federated identity credential of an application (Graph) or
//! of a user-assigned managed identity (ARM), each recreated by undo.

use azure_core::http::Method;
use nhi_contract::{ActionOutcome, SourceError};
use serde_json::{json, Value};

use super::readback::{check_id, check_mi_fic_id, invalid, Collection, Undo};
use super::AzureRemediator;
use crate::client::Api;
use crate::model::MSI_API_VERSION;

impl AzureRemediator {
    pub(super) fn key_ids(v: &Value, field: &str) -> Vec<String> {
        v.get(field)
            .and_then(Value::as_array)
            .map(|l| {
                l.iter()
                    .filter_map(|c| c.get("keyId").and_then(Value::as_str).map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(super) async fn remove_secret(
        &self,
        id: &str,
        key: &str,
    ) -> Result<ActionOutcome, SourceError> {
        let (coll, before) = self.locate(id, "id,passwordCredentials").await?;
        let had = Self::key_ids(&before, "passwordCredentials")
            .iter()
            .any(|k| k == key);
        if had {
            self.send(
                Api::Graph,
                Method::Post,
                &format!("/v1.0/{}/{id}/removePassword", coll.path()),
                Some(&json!({ "keyId": key })),
            )
            .await?;
        }
        let after = self.read(coll, id, "id,passwordCredentials").await?;
        if Self::key_ids(&after, "passwordCredentials")
            .iter()
            .any(|k| k == key)
        {
            return Err(invalid(format!(
                "client secret {key} still present after removePassword"
            )));
        }
        let state = |present: bool| json!({"object": id, "collection": coll, "credential_id": key, "present": present});
        Ok(ActionOutcome {
            via: None,
            before: state(had),
            after: state(false),
            undo: None,
            irreversible: had.then(|| {
                format!("client secret {key} of {id} was removed: Entra ID cannot restore a removed secret; add a new secret if access is still needed")
            }),
        })
    }

    /// keyCredentials of one object as a single GET returns them (with the
    /// public `key`, which a PATCH must send back for the ones kept).
    pub(super) async fn key_credentials(
        &self,
        coll: Collection,
        id: &str,
    ) -> Result<Vec<Value>, SourceError> {
        let v = self.read(coll, id, "id,keyCredentials").await?;
        Ok(v.get("keyCredentials")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default())
    }

    pub(super) async fn patch_keys(
        &self,
        coll: Collection,
        id: &str,
        keys: Vec<Value>,
    ) -> Result<(), SourceError> {
        // A token-signing certificate (SAML) travels with a private key that
        // a read never returns: rewriting the collection would lose it.
        if keys
            .iter()
            .any(|k| k.get("usage").and_then(Value::as_str) == Some("Sign"))
        {
            return Err(invalid(format!(
                "{id} holds a token-signing certificate: its keyCredentials are not rewritten (the private key cannot be sent back); remove the certificate in the portal"
            )));
        }
        // A kept certificate without its public key would be wiped by the
        // PATCH: refuse rather than touch credentials we were not asked to.
        if keys.iter().any(|k| k.get("key").is_none_or(Value::is_null)) {
            return Err(invalid(format!(
                "{id}: the service did not return the public key of every certificate; patching keyCredentials would remove certificates that must stay"
            )));
        }
        self.send(
            Api::Graph,
            Method::Patch,
            &format!("/v1.0/{}/{id}", coll.path()),
            Some(&json!({ "keyCredentials": keys })),
        )
        .await?;
        Ok(())
    }

    pub(super) async fn remove_certificate(
        &self,
        id: &str,
        key: &str,
    ) -> Result<ActionOutcome, SourceError> {
        let (coll, _) = self.locate(id, "id").await?;
        let before = self.key_credentials(coll, id).await?;
        let key_of = |k: &Value| k.get("keyId").and_then(Value::as_str).map(str::to_string);
        let target = before
            .iter()
            .find(|k| key_of(k).as_deref() == Some(key))
            .cloned();
        let mut undo = None;
        if let Some(cred) = &target {
            if cred.get("key").is_none_or(Value::is_null) {
                return Err(invalid(format!("certificate {key}: public key not returned, it could not be restored: not removed")));
            }
            let kept: Vec<Value> = before
                .iter()
                .filter(|k| key_of(k).as_deref() != Some(key))
                .cloned()
                .collect();
            self.patch_keys(coll, id, kept).await?;
            undo = Some(Undo::RestoreKeyCredential {
                collection: coll,
                id: id.to_string(),
                credential: cred.clone(),
            });
        }
        let after = self.key_credentials(coll, id).await?;
        if after.iter().any(|k| key_of(k).as_deref() == Some(key)) {
            return Err(invalid(format!(
                "certificate {key} still present after update"
            )));
        }
        let ids = |l: &[Value]| l.iter().filter_map(key_of).collect::<Vec<_>>();
        Ok(ActionOutcome {
            via: None,
            before: json!({"object": id, "collection": coll, "certificates": ids(&before)}),
            after: json!({"object": id, "collection": coll, "certificates": ids(&after)}),
            undo: undo.map(|u| json!([u])),
            irreversible: None,
        })
    }

    /// Remove a federated identity credential (an application's trust in an
    /// external issuer). Reversible: undo recreates it with the same name,
    /// issuer, subject — or claims-matching expression — and audiences
    /// (under a new id). Through Graph beta: only beta returns and accepts a
    /// flexible credential's `claimsMatchingExpression`, which v1.0 would
    /// silently drop from the undo data.
    pub(super) async fn remove_federated(
        &self,
        app: &str,
        fic: &str,
    ) -> Result<ActionOutcome, SourceError> {
        let path = format!("/beta/applications/{app}/federatedIdentityCredentials/{fic}");
        let before = self.get_opt(Api::Graph, &path).await?;
        let mut undo = None;
        if let Some(v) = &before {
            let mut keep = serde_json::Map::new();
            for k in [
                "name",
                "issuer",
                "subject",
                "audiences",
                "description",
                "claimsMatchingExpression",
            ] {
                if let Some(x) = v.get(k).filter(|x| !x.is_null()) {
                    keep.insert(k.to_string(), x.clone());
                }
            }
            self.send(Api::Graph, Method::Delete, &path, None).await?;
            undo = Some(Undo::RecreateFederatedCredential {
                application: app.to_string(),
                credential: Value::Object(keep),
            });
        }
        if self.get_opt(Api::Graph, &path).await?.is_some() {
            return Err(invalid(format!(
                "federated credential {fic} still present after delete"
            )));
        }
        Ok(ActionOutcome {
            via: None,
            before: json!({"application": app, "credential_id": fic, "present": before.is_some()}),
            after: json!({"application": app, "credential_id": fic, "present": false}),
            undo: undo.map(|u| json!([u])),
            irreversible: None,
        })
    }

    /// Undo of a certificate removal: patch the saved public certificate back.
    pub(super) async fn restore_key_credential(
        &self,
        collection: Collection,
        id: &str,
        credential: &Value,
    ) -> Result<Value, SourceError> {
        let id = check_id(id)?;
        let key = credential
            .get("keyId")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let mut keys = self.key_credentials(collection, id).await?;
        let has = |l: &[Value]| {
            l.iter()
                .any(|k| k.get("keyId").and_then(Value::as_str) == Some(key.as_str()))
        };
        if !has(&keys) {
            keys.push(credential.clone());
            self.patch_keys(collection, id, keys).await?;
        }
        if !has(&self.key_credentials(collection, id).await?) {
            return Err(invalid(format!("certificate {key} not restored")));
        }
        Ok(json!({"object": id, "credential_id": key, "present": true}))
    }

    /// Undo of a federated credential removal: recreate it by name.
    pub(super) async fn recreate_federated(
        &self,
        application: &str,
        credential: &Value,
    ) -> Result<Value, SourceError> {
        let app = check_id(application)?;
        let name = credential
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let list_path = format!("/beta/applications/{app}/federatedIdentityCredentials");
        let named = |l: &[Value]| {
            l.iter()
                .any(|f| f.get("name").and_then(Value::as_str) == Some(name.as_str()))
        };
        let list: Vec<Value> = self.c()?.list(Api::Graph, &list_path).await?;
        if !named(&list) {
            self.send(Api::Graph, Method::Post, &list_path, Some(credential))
                .await?;
        }
        let list: Vec<Value> = self.c()?.list(Api::Graph, &list_path).await?;
        if !named(&list) {
            return Err(invalid(format!(
                "federated credential {name} of {app} not recreated"
            )));
        }
        Ok(json!({"application": app, "federated_credential": name, "present": true}))
    }

    /// Remove a user-assigned managed identity's federated credential
    /// (ARM), after checking it belongs to `principal` (the identity's
    /// `alternativeNames` name its resource). Reversible: undo puts it back
    /// under the same name with the same issuer, subject and audiences.
    pub(super) async fn remove_mi_federated(
        &self,
        principal: &str,
        fic: &str,
    ) -> Result<ActionOutcome, SourceError> {
        let (identity, fic) = check_mi_fic_id(fic)?;
        let sp = self
            .get_opt(
                Api::Graph,
                &format!("/v1.0/servicePrincipals/{principal}?$select=id,alternativeNames"),
            )
            .await?
            .ok_or_else(|| invalid(format!("managed identity {principal} not found")))?;
        let owns = sp
            .get("alternativeNames")
            .and_then(Value::as_array)
            .is_some_and(|l| {
                l.iter()
                    .filter_map(Value::as_str)
                    .any(|n| n.eq_ignore_ascii_case(identity))
            });
        if !owns {
            return Err(invalid(format!(
                "{fic} is not a federated credential of managed identity {principal}"
            )));
        }
        let path = format!("{fic}?api-version={MSI_API_VERSION}");
        let before = self.get_opt(Api::Arm, &path).await?;
        let mut undo = None;
        if let Some(v) = &before {
            let mut keep = serde_json::Map::new();
            for k in ["issuer", "subject", "audiences", "claimsMatchingExpression"] {
                if let Some(x) = v
                    .get("properties")
                    .and_then(|p| p.get(k))
                    .filter(|x| !x.is_null())
                {
                    keep.insert(k.to_string(), x.clone());
                }
            }
            self.send(Api::Arm, Method::Delete, &path, None).await?;
            undo = Some(Undo::RecreateManagedIdentityFederatedCredential {
                id: fic.to_string(),
                properties: Value::Object(keep),
            });
        }
        if self.get_opt(Api::Arm, &path).await?.is_some() {
            return Err(invalid(format!(
                "federated credential {fic} still present after delete"
            )));
        }
        Ok(ActionOutcome {
            via: None,
            before: json!({"managed_identity": principal, "credential_id": fic, "present": before.is_some()}),
            after: json!({"managed_identity": principal, "credential_id": fic, "present": false}),
            undo: undo.map(|u| json!([u])),
            irreversible: None,
        })
    }

    /// Undo of a managed identity's federated credential removal: PUT it
    /// back by id.
    pub(super) async fn recreate_mi_federated(
        &self,
        id: &str,
        properties: &Value,
    ) -> Result<Value, SourceError> {
        let (_, fic) = check_mi_fic_id(id)?;
        let path = format!("{fic}?api-version={MSI_API_VERSION}");
        if self.get_opt(Api::Arm, &path).await?.is_none() {
            let body = json!({ "properties": properties });
            self.send(Api::Arm, Method::Put, &path, Some(&body)).await?;
        }
        if self.get_opt(Api::Arm, &path).await?.is_none() {
            return Err(invalid(format!("federated credential {fic} not recreated")));
        }
        Ok(json!({"credential_id": fic, "present": true}))
    }
}
