//! Remediation on IAM, each action verified by reading the state back and
//! idempotent (acting on what is already in the target state is a no-op
//! that still reports the state it found).
//!
//! Reversible: deactivating an access key or SSH key (undo reactivates),
//! detaching a managed policy (undo re-attaches), deleting an inline policy
//! (the document is kept in the undo data and put back). Irreversible, and
//! said so: deleting an access key, deleting a console password.
//!
//! Every action and undo is bound to the account of its target's ARN and
//! runs through the credentials the source reads that account with (see
//! [`AwsRemediator`]); the journal records which (`ActionOutcome::via`).

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_iam::types::StatusType;
use aws_sdk_iam::Client;
use nhi_contract::{
    ActionOutcome, ActionRequest, CredentialKind, Operation, Provider, Remediator, SourceError,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::HashMap;

use crate::config::AwsConfig;
use crate::sdk::{self, is_not_found, source_error, CallStats};

/// The AWS [`Remediator`]. Every action is bound to the account its target
/// ARN names and runs through the credentials the source reads that account
/// with: the role of `assume_roles` in that account, the organisation's
/// member role in an account discovery keeps in scope, or the source's own
/// credentials when it assumes none. Before acting, the target is read back
/// by name through those credentials and its ARN must be the target's: an
/// action never lands on a same-named principal of another account.
pub struct AwsRemediator {
    config: AwsConfig,
    base: SdkConfig,
    /// One client per role (`None`: the source's own credentials).
    clients: tokio::sync::Mutex<HashMap<Option<String>, Client>>,
    calls: CallStats,
    /// The organisation's accounts in scope, re-discovered when stale.
    discovery: crate::org::Cache,
}

/// What undo needs, per reversed step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "undo", rename_all = "snake_case")]
enum Undo {
    ReactivateAccessKey {
        user: String,
        key_id: String,
    },
    ReactivateSshKey {
        user: String,
        key_id: String,
    },
    ReattachManagedPolicy {
        principal: Principal,
        policy_arn: String,
    },
    RestoreInlinePolicy {
        principal: Principal,
        policy_name: String,
        document: String,
    },
    /// Undo of a session deny: the inline policy it added goes.
    DeleteInlinePolicy {
        principal: Principal,
        policy_name: String,
    },
}

/// Undo data: the steps and the ARN of the principal they apply to, so undo
/// binds to the same account as the action. Undo data journaled before the
/// account was recorded is a bare array of steps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
enum UndoData {
    Bound { target: String, steps: Vec<Undo> },
    Legacy(Vec<Undo>),
}

/// An IAM user or role by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
enum Principal {
    User(String),
    Role(String),
}

fn invalid(m: impl Into<String>) -> SourceError {
    SourceError::Invalid {
        location: "aws remediation".into(),
        message: m.into(),
    }
}

fn principal_of(arn: &str) -> Result<Principal, SourceError> {
    match sdk::arn_resource(arn) {
        Some(("user", name)) => Ok(Principal::User(name.to_string())),
        Some(("role", name)) => Ok(Principal::Role(name.to_string())),
        _ => Err(invalid(format!("{arn} is not an IAM user or role"))),
    }
}

fn user_of(arn: &str) -> Result<String, SourceError> {
    match principal_of(arn)? {
        Principal::User(u) => Ok(u),
        Principal::Role(_) => Err(invalid(format!(
            "{arn} is a role: roles have no long-term credentials"
        ))),
    }
}

impl AwsRemediator {
    /// A remediator using the standard AWS credential chain.
    pub async fn new(cfg: &AwsConfig) -> AwsRemediator {
        let base = sdk::base_config(cfg).await;
        AwsRemediator::over(cfg, base)
    }

    /// A remediator over an already built SDK config.
    pub fn with_sdk_config(cfg: &AwsConfig, base: &SdkConfig) -> AwsRemediator {
        let base = base.to_builder().retry_config(sdk::retry(cfg)).build();
        AwsRemediator::over(cfg, base)
    }

    fn over(cfg: &AwsConfig, base: SdkConfig) -> AwsRemediator {
        AwsRemediator {
            config: cfg.clone(),
            base,
            clients: tokio::sync::Mutex::new(HashMap::new()),
            calls: CallStats::default(),
            discovery: crate::org::Cache::default(),
        }
    }

    /// Calls made so far.
    pub fn calls(&self) -> &CallStats {
        &self.calls
    }

    /// Bind `arn` to the credentials that read its account, and check that
    /// the principal of that name there is `arn` itself. A target that
    /// cannot be found where the plan says it is is an error, never a no-op.
    async fn bind(&self, arn: &str) -> Result<Bound<'_>, SourceError> {
        let account = sdk::arn_account(arn)
            .ok_or_else(|| invalid(format!("{arn} names no account")))?
            .to_string();
        let principal = principal_of(arn)?;
        // Mirror the scan: with roles configured, each account is read (and
        // so acted on) through its own role, and nothing else is read. In an
        // organisation, the account must still be in scope as discovered
        // (at most `org::CACHE_TTL` ago).
        let role = if let Some(o) = &self.config.organization {
            let d = self
                .discovery
                .get(&self.base, &self.config, o, &self.calls)
                .await?;
            let role = d.role_for(&account).ok_or_else(|| {
                invalid(format!(
                    "account {account} is not among the organisation accounts source {} reads: \
                     not acting on {arn}",
                    self.config.name
                ))
            })?;
            Some(role.to_string())
        } else if self.config.assume_roles.is_empty() {
            None
        } else {
            let role = self
                .config
                .assume_roles
                .iter()
                .find(|r| sdk::arn_account(r) == Some(account.as_str()))
                .ok_or_else(|| {
                    invalid(format!(
                        "source {} reaches account {account} through none of its assume_roles: \
                         not acting on {arn} with other credentials",
                        self.config.name
                    ))
                })?;
            Some(role.clone())
        };
        let client = {
            let mut clients = self.clients.lock().await;
            match clients.get(&role) {
                Some(c) => c.clone(),
                None => {
                    let c = sdk::client_for(&self.base, &self.config, role.as_deref()).await;
                    clients.insert(role.clone(), c.clone());
                    c
                }
            }
        };
        let via = match &role {
            Some(r) => format!("account {account} via {r}"),
            None => format!(
                "account {account} with the credentials of source {}",
                self.config.name
            ),
        };
        let b = Bound {
            client,
            calls: &self.calls,
            principal,
            via,
        };
        let found = b.principal_arn().await?;
        match found {
            Some(found) if found == arn => Ok(b),
            Some(found) => Err(invalid(format!(
                "the principal of that name in {} is {found}, not {arn}: not acting",
                b.via
            ))),
            None => Err(invalid(format!("{arn} does not exist in {}", b.via))),
        }
    }
}

/// One target principal and the client of the account it lives in.
struct Bound<'a> {
    client: Client,
    calls: &'a CallStats,
    principal: Principal,
    /// Account and credentials used, for the journal.
    via: String,
}

impl Bound<'_> {
    /// The ARN of the principal of this name in the bound account, if any.
    async fn principal_arn(&self) -> Result<Option<String>, SourceError> {
        match &self.principal {
            Principal::User(u) => {
                self.calls.count("GetUser");
                match self.client.get_user().user_name(u).send().await {
                    Ok(o) => Ok(o.user().map(|u| u.arn().to_string())),
                    Err(e) if is_not_found(&e) => Ok(None),
                    Err(e) => Err(source_error("GetUser", e)),
                }
            }
            Principal::Role(r) => {
                self.calls.count("GetRole");
                match self.client.get_role().role_name(r).send().await {
                    Ok(o) => Ok(o.role().map(|r| r.arn().to_string())),
                    Err(e) if is_not_found(&e) => Ok(None),
                    Err(e) => Err(source_error("GetRole", e)),
                }
            }
        }
    }

    /// Status of one access key, `None` if it does not exist.
    async fn key_status(&self, user: &str, key: &str) -> Result<Option<String>, SourceError> {
        let mut pages = self
            .client
            .list_access_keys()
            .user_name(user)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            self.calls.count("ListAccessKeys");
            let page = match page {
                Ok(p) => p,
                Err(e) if is_not_found(&e) => return Ok(None),
                Err(e) => return Err(source_error("ListAccessKeys", e)),
            };
            if let Some(k) = page
                .access_key_metadata()
                .iter()
                .find(|k| k.access_key_id() == Some(key))
            {
                return Ok(Some(
                    k.status()
                        .map(|s| s.as_str().to_string())
                        .unwrap_or_default(),
                ));
            }
        }
        Ok(None)
    }

    async fn set_key_status(
        &self,
        user: &str,
        key: &str,
        status: StatusType,
    ) -> Result<(), SourceError> {
        self.calls.count("UpdateAccessKey");
        self.client
            .update_access_key()
            .user_name(user)
            .access_key_id(key)
            .status(status)
            .send()
            .await
            .map_err(|e| source_error("UpdateAccessKey", e))?;
        Ok(())
    }

    async fn ssh_status(&self, user: &str, key: &str) -> Result<Option<String>, SourceError> {
        self.calls.count("ListSSHPublicKeys");
        let out = self
            .client
            .list_ssh_public_keys()
            .user_name(user)
            .send()
            .await
            .map_err(|e| source_error("ListSSHPublicKeys", e))?;
        Ok(out
            .ssh_public_keys()
            .iter()
            .find(|k| k.ssh_public_key_id() == key)
            .map(|k| k.status().as_str().to_string()))
    }

    async fn set_ssh_status(
        &self,
        user: &str,
        key: &str,
        status: StatusType,
    ) -> Result<(), SourceError> {
        self.calls.count("UpdateSSHPublicKey");
        self.client
            .update_ssh_public_key()
            .user_name(user)
            .ssh_public_key_id(key)
            .status(status)
            .send()
            .await
            .map_err(|e| source_error("UpdateSSHPublicKey", e))?;
        Ok(())
    }

    /// Whether the user has a console password. Only called on a bound
    /// user, so "no such entity" means no password, not no user.
    async fn has_login(&self, user: &str) -> Result<bool, SourceError> {
        self.calls.count("GetLoginProfile");
        match self.client.get_login_profile().user_name(user).send().await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(source_error("GetLoginProfile", e)),
        }
    }

    async fn attached(&self, p: &Principal) -> Result<Vec<String>, SourceError> {
        let mut out = Vec::new();
        match p {
            Principal::User(u) => {
                let mut pages = self
                    .client
                    .list_attached_user_policies()
                    .user_name(u)
                    .into_paginator()
                    .send();
                while let Some(page) = pages.next().await {
                    self.calls.count("ListAttachedUserPolicies");
                    let page = page.map_err(|e| source_error("ListAttachedUserPolicies", e))?;
                    out.extend(
                        page.attached_policies()
                            .iter()
                            .filter_map(|a| a.policy_arn().map(str::to_string)),
                    );
                }
            }
            Principal::Role(r) => {
                let mut pages = self
                    .client
                    .list_attached_role_policies()
                    .role_name(r)
                    .into_paginator()
                    .send();
                while let Some(page) = pages.next().await {
                    self.calls.count("ListAttachedRolePolicies");
                    let page = page.map_err(|e| source_error("ListAttachedRolePolicies", e))?;
                    out.extend(
                        page.attached_policies()
                            .iter()
                            .filter_map(|a| a.policy_arn().map(str::to_string)),
                    );
                }
            }
        }
        Ok(out)
    }

    async fn inline_doc(&self, p: &Principal, name: &str) -> Result<Option<String>, SourceError> {
        let doc = match p {
            Principal::User(u) => {
                self.calls.count("GetUserPolicy");
                match self
                    .client
                    .get_user_policy()
                    .user_name(u)
                    .policy_name(name)
                    .send()
                    .await
                {
                    Ok(o) => Some(o.policy_document().to_string()),
                    Err(e) if is_not_found(&e) => None,
                    Err(e) => return Err(source_error("GetUserPolicy", e)),
                }
            }
            Principal::Role(r) => {
                self.calls.count("GetRolePolicy");
                match self
                    .client
                    .get_role_policy()
                    .role_name(r)
                    .policy_name(name)
                    .send()
                    .await
                {
                    Ok(o) => Some(o.policy_document().to_string()),
                    Err(e) if is_not_found(&e) => None,
                    Err(e) => return Err(source_error("GetRolePolicy", e)),
                }
            }
        };
        // IAM returns documents URL-encoded; store them decoded so a
        // re-put sends JSON, not percent escapes.
        Ok(doc.map(|d| {
            percent_encoding::percent_decode_str(&d)
                .decode_utf8()
                .map(|s| s.into_owned())
                .unwrap_or(d)
        }))
    }

    async fn detach(&self, p: &Principal, arn: &str) -> Result<(), SourceError> {
        match p {
            Principal::User(u) => {
                self.calls.count("DetachUserPolicy");
                self.client
                    .detach_user_policy()
                    .user_name(u)
                    .policy_arn(arn)
                    .send()
                    .await
                    .map_err(|e| source_error("DetachUserPolicy", e))?;
            }
            Principal::Role(r) => {
                self.calls.count("DetachRolePolicy");
                self.client
                    .detach_role_policy()
                    .role_name(r)
                    .policy_arn(arn)
                    .send()
                    .await
                    .map_err(|e| source_error("DetachRolePolicy", e))?;
            }
        }
        Ok(())
    }

    async fn attach(&self, p: &Principal, arn: &str) -> Result<(), SourceError> {
        match p {
            Principal::User(u) => {
                self.calls.count("AttachUserPolicy");
                self.client
                    .attach_user_policy()
                    .user_name(u)
                    .policy_arn(arn)
                    .send()
                    .await
                    .map_err(|e| source_error("AttachUserPolicy", e))?;
            }
            Principal::Role(r) => {
                self.calls.count("AttachRolePolicy");
                self.client
                    .attach_role_policy()
                    .role_name(r)
                    .policy_arn(arn)
                    .send()
                    .await
                    .map_err(|e| source_error("AttachRolePolicy", e))?;
            }
        }
        Ok(())
    }

    async fn delete_inline(&self, p: &Principal, name: &str) -> Result<(), SourceError> {
        match p {
            Principal::User(u) => {
                self.calls.count("DeleteUserPolicy");
                self.client
                    .delete_user_policy()
                    .user_name(u)
                    .policy_name(name)
                    .send()
                    .await
                    .map_err(|e| source_error("DeleteUserPolicy", e))?;
            }
            Principal::Role(r) => {
                self.calls.count("DeleteRolePolicy");
                self.client
                    .delete_role_policy()
                    .role_name(r)
                    .policy_name(name)
                    .send()
                    .await
                    .map_err(|e| source_error("DeleteRolePolicy", e))?;
            }
        }
        Ok(())
    }

    async fn put_inline(&self, p: &Principal, name: &str, doc: &str) -> Result<(), SourceError> {
        match p {
            Principal::User(u) => {
                self.calls.count("PutUserPolicy");
                self.client
                    .put_user_policy()
                    .user_name(u)
                    .policy_name(name)
                    .policy_document(doc)
                    .send()
                    .await
                    .map_err(|e| source_error("PutUserPolicy", e))?;
            }
            Principal::Role(r) => {
                self.calls.count("PutRolePolicy");
                self.client
                    .put_role_policy()
                    .role_name(r)
                    .policy_name(name)
                    .policy_document(doc)
                    .send()
                    .await
                    .map_err(|e| source_error("PutRolePolicy", e))?;
            }
        }
        Ok(())
    }

    /// The session-deny policy an action names, on a role: its name and
    /// the source identity it denies.
    fn session_deny_target<'r>(
        &self,
        a: &'r ActionRequest,
    ) -> Result<(&'r str, &'r str), SourceError> {
        if !matches!(self.principal, Principal::Role(_)) {
            return Err(invalid(format!(
                "{} is not a role: no sessions to deny",
                a.identity_id
            )));
        }
        let name = match a.entitlements.as_slice() {
            [one] => one.as_str(),
            _ => return Err(invalid("a session deny names exactly one policy")),
        };
        let id = crate::issue::denied_source_identity(name)
            .ok_or_else(|| invalid(format!("{name} is not a session-deny policy name")))?;
        Ok((name, id))
    }

    /// Put the deny for sessions of one source identity on the role.
    async fn deny_sessions(&self, a: &ActionRequest) -> Result<ActionOutcome, SourceError> {
        let (name, id) = self.session_deny_target(a)?;
        let p = &self.principal;
        let before = self.inline_doc(p, name).await?.is_some();
        self.put_inline(p, name, &crate::issue::session_deny_policy(id))
            .await?;
        let present = self.inline_doc(p, name).await?.is_some();
        if !present {
            return Err(invalid(format!(
                "session deny {name} not on {} after the call",
                a.identity_id
            )));
        }
        let undo = (!before).then(|| {
            undo_data(
                &a.identity_id,
                vec![Undo::DeleteInlinePolicy {
                    principal: p.clone(),
                    policy_name: name.to_string(),
                }],
            )
        });
        Ok(ActionOutcome {
            before: json!({"role": a.identity_id, "entitlement": name, "present": before}),
            after: json!({"role": a.identity_id, "entitlement": name, "present": present, "source_identity": id}),
            undo,
            irreversible: None,
            via: Some(self.via.clone()),
        })
    }

    /// Remove a session deny (its sessions have all expired).
    async fn lift_session_deny(&self, a: &ActionRequest) -> Result<ActionOutcome, SourceError> {
        let (name, _) = self.session_deny_target(a)?;
        let p = &self.principal;
        let doc = self.inline_doc(p, name).await?;
        if doc.is_some() {
            self.delete_inline(p, name).await?;
        }
        let present = self.inline_doc(p, name).await?.is_some();
        if present {
            return Err(invalid(format!(
                "session deny {name} still on {} after the call",
                a.identity_id
            )));
        }
        let undo = doc.map(|document| {
            undo_data(
                &a.identity_id,
                vec![Undo::RestoreInlinePolicy {
                    principal: p.clone(),
                    policy_name: name.to_string(),
                    document,
                }],
            )
        });
        Ok(ActionOutcome {
            before: json!({"role": a.identity_id, "entitlement": name, "present": undo.is_some()}),
            after: json!({"role": a.identity_id, "entitlement": name, "present": present}),
            undo,
            irreversible: None,
            via: Some(self.via.clone()),
        })
    }

    async fn disable_credential(&self, a: &ActionRequest) -> Result<ActionOutcome, SourceError> {
        let user = user_of(&a.identity_id)?;
        let key = a
            .credential_id
            .as_deref()
            .ok_or_else(|| invalid("no credential id"))?;
        let (read, undo): (_, fn(String, String) -> Undo) = match a.credential_kind {
            Some(CredentialKind::AccessKey) | None => (true, |user, key_id| {
                Undo::ReactivateAccessKey { user, key_id }
            }),
            Some(CredentialKind::SshKey) => (false, |user, key_id| Undo::ReactivateSshKey {
                user,
                key_id,
            }),
            Some(k) => {
                return Err(invalid(format!(
                    "disabling a {} is not supported on AWS",
                    k.as_str()
                )))
            }
        };
        let status = |s: Option<String>| json!({"user": user, "credential_id": key, "status": s});
        let before = if read {
            self.key_status(&user, key).await?
        } else {
            self.ssh_status(&user, key).await?
        };
        let Some(state) = before.clone() else {
            return Err(invalid(format!(
                "credential {key} of {user} does not exist"
            )));
        };
        if state != "Inactive" {
            if read {
                self.set_key_status(&user, key, StatusType::Inactive)
                    .await?;
            } else {
                self.set_ssh_status(&user, key, StatusType::Inactive)
                    .await?;
            }
        }
        let after = if read {
            self.key_status(&user, key).await?
        } else {
            self.ssh_status(&user, key).await?
        };
        if after.as_deref() != Some("Inactive") {
            return Err(invalid(format!(
                "credential {key} still {after:?} after deactivation"
            )));
        }
        // Undo only restores what this call changed.
        let undo = (state == "Active").then(|| undo(user.clone(), key.to_string()));
        Ok(ActionOutcome {
            before: status(before),
            after: status(after),
            undo: undo.map(|u| undo_data(&a.identity_id, vec![u])),
            irreversible: None,
            via: Some(self.via.clone()),
        })
    }

    async fn delete_key(&self, a: &ActionRequest) -> Result<ActionOutcome, SourceError> {
        let user = user_of(&a.identity_id)?;
        let key = a
            .credential_id
            .as_deref()
            .ok_or_else(|| invalid("no credential id"))?;
        if !matches!(a.credential_kind, Some(CredentialKind::AccessKey) | None) {
            return Err(invalid("only access keys are deleted on AWS"));
        }
        let before = self.key_status(&user, key).await?;
        if before.is_some() {
            self.calls.count("DeleteAccessKey");
            self.client
                .delete_access_key()
                .user_name(&user)
                .access_key_id(key)
                .send()
                .await
                .map_err(|e| source_error("DeleteAccessKey", e))?;
        }
        let after = self.key_status(&user, key).await?;
        if after.is_some() {
            return Err(invalid(format!(
                "access key {key} still exists after deletion"
            )));
        }
        Ok(ActionOutcome {
            before: json!({"user": user, "credential_id": key, "status": before}),
            after: json!({"user": user, "credential_id": key, "status": null}),
            undo: None,
            via: Some(self.via.clone()),
            irreversible: Some(format!(
                "access key {key} was deleted: a deleted key cannot be restored; create a new key for {user} if access is still needed"
            )),
        })
    }

    async fn remove_login(&self, a: &ActionRequest) -> Result<ActionOutcome, SourceError> {
        let user = user_of(&a.identity_id)?;
        let before = self.has_login(&user).await?;
        if before {
            self.calls.count("DeleteLoginProfile");
            self.client
                .delete_login_profile()
                .user_name(&user)
                .send()
                .await
                .map_err(|e| source_error("DeleteLoginProfile", e))?;
        }
        let after = self.has_login(&user).await?;
        if after {
            return Err(invalid(format!("{user} still has a console password")));
        }
        Ok(ActionOutcome {
            before: json!({"user": user, "console_password": before}),
            after: json!({"user": user, "console_password": after}),
            undo: None,
            via: Some(self.via.clone()),
            irreversible: before.then(|| {
                format!("the console password of {user} was deleted and cannot be restored; an administrator can create a new one")
            }),
        })
    }

    async fn detach_entitlements(&self, a: &ActionRequest) -> Result<ActionOutcome, SourceError> {
        let p = self.principal.clone();
        let mut undo = Vec::new();
        let mut before = Vec::new();
        let mut after = Vec::new();
        for ent in &a.entitlements {
            if let Some((owner, name)) = ent.split_once("#inline/") {
                if owner != a.identity_id {
                    return Err(invalid(format!(
                        "{ent} is held through a group; remove the membership or edit the group"
                    )));
                }
                let doc = self.inline_doc(&p, name).await?;
                before.push(json!({"entitlement": ent, "present": doc.is_some()}));
                if let Some(doc) = doc {
                    self.delete_inline(&p, name).await?;
                    undo.push(Undo::RestoreInlinePolicy {
                        principal: p.clone(),
                        policy_name: name.to_string(),
                        document: doc,
                    });
                }
                let still = self.inline_doc(&p, name).await?.is_some();
                if still {
                    return Err(invalid(format!("inline policy {name} still present")));
                }
                after.push(json!({"entitlement": ent, "present": still}));
            } else {
                let was = self.attached(&p).await?.iter().any(|x| x == ent);
                before.push(json!({"entitlement": ent, "present": was}));
                if was {
                    self.detach(&p, ent).await?;
                    undo.push(Undo::ReattachManagedPolicy {
                        principal: p.clone(),
                        policy_arn: ent.clone(),
                    });
                }
                let still = self.attached(&p).await?.iter().any(|x| x == ent);
                if still {
                    return Err(invalid(format!("policy {ent} still attached")));
                }
                after.push(json!({"entitlement": ent, "present": still}));
            }
        }
        Ok(ActionOutcome {
            before: Value::Array(before),
            after: Value::Array(after),
            undo: (!undo.is_empty()).then(|| undo_data(&a.identity_id, undo)),
            irreversible: None,
            via: Some(self.via.clone()),
        })
    }
}

impl Bound<'_> {
    /// Carry out undo steps on the bound principal.
    async fn undo_steps(&self, steps: &[Undo]) -> Result<Vec<Value>, SourceError> {
        let mut after = Vec::new();
        for s in steps {
            match s {
                Undo::ReactivateAccessKey { user, key_id } => {
                    self.set_key_status(user, key_id, StatusType::Active)
                        .await?;
                    let st = self.key_status(user, key_id).await?;
                    if st.as_deref() != Some("Active") {
                        return Err(invalid(format!(
                            "access key {key_id} is {st:?} after reactivation"
                        )));
                    }
                    after.push(json!({"credential_id": key_id, "status": st}));
                }
                Undo::ReactivateSshKey { user, key_id } => {
                    self.set_ssh_status(user, key_id, StatusType::Active)
                        .await?;
                    let st = self.ssh_status(user, key_id).await?;
                    if st.as_deref() != Some("Active") {
                        return Err(invalid(format!(
                            "SSH key {key_id} is {st:?} after reactivation"
                        )));
                    }
                    after.push(json!({"credential_id": key_id, "status": st}));
                }
                Undo::ReattachManagedPolicy {
                    principal,
                    policy_arn,
                } => {
                    if !self.attached(principal).await?.contains(policy_arn) {
                        self.attach(principal, policy_arn).await?;
                    }
                    let ok = self.attached(principal).await?.contains(policy_arn);
                    if !ok {
                        return Err(invalid(format!("{policy_arn} not attached after undo")));
                    }
                    after.push(json!({"entitlement": policy_arn, "present": ok}));
                }
                Undo::RestoreInlinePolicy {
                    principal,
                    policy_name,
                    document,
                } => {
                    self.put_inline(principal, policy_name, document).await?;
                    let ok = self.inline_doc(principal, policy_name).await?.is_some();
                    if !ok {
                        return Err(invalid(format!("inline policy {policy_name} not restored")));
                    }
                    after.push(json!({"entitlement": policy_name, "present": ok}));
                }
                Undo::DeleteInlinePolicy {
                    principal,
                    policy_name,
                } => {
                    if self.inline_doc(principal, policy_name).await?.is_some() {
                        self.delete_inline(principal, policy_name).await?;
                    }
                    let present = self.inline_doc(principal, policy_name).await?.is_some();
                    if present {
                        return Err(invalid(format!(
                            "inline policy {policy_name} still there after undo"
                        )));
                    }
                    after.push(json!({"entitlement": policy_name, "present": present}));
                }
            }
        }
        Ok(after)
    }
}

/// Undo data for `steps` on the principal `target`.
fn undo_data(target: &str, steps: Vec<Undo>) -> Value {
    json!(UndoData::Bound {
        target: target.to_string(),
        steps,
    })
}

#[async_trait]
impl Remediator for AwsRemediator {
    fn provider(&self) -> Provider {
        Provider::Aws
    }

    async fn apply(&self, a: &ActionRequest) -> Result<ActionOutcome, SourceError> {
        if a.provider != Provider::Aws {
            return Err(invalid(format!("not an AWS action: {}", a.provider)));
        }
        if matches!(
            a.operation,
            Operation::AddFederatedCredential | Operation::RemoveFederatedCredential
        ) {
            return Err(invalid(format!(
                "{} is an Entra ID application operation: an AWS role trusts a workload through its trust policy, and AWS issues approval-bound sessions instead",
                a.operation.as_str()
            )));
        }
        // A role's federated credential is a statement of its trust policy,
        // not a key: it has no status to set and nothing to delete through
        // the access-key API. Refused before any call.
        if a.credential_kind == Some(CredentialKind::Federated) {
            return Err(invalid(format!(
                "{} is a trust of {} (to an OIDC provider, an account or anyone): change the role's trust policy by hand",
                a.credential_id
                    .as_deref()
                    .unwrap_or("the federated credential"),
                a.identity_id
            )));
        }
        // A service-linked role is AWS's: IAM refuses most changes to it,
        // and the service it serves breaks on the others.
        if a.identity_id.contains(":role/aws-service-role/") {
            return Err(invalid(format!(
                "{} is a service-linked role: AWS manages it, nothing acts on it",
                a.identity_id
            )));
        }
        let b = self.bind(&a.identity_id).await?;
        match a.operation {
            Operation::DisableCredential => b.disable_credential(a).await,
            Operation::DeleteCredential => b.delete_key(a).await,
            Operation::RemoveLogin => b.remove_login(a).await,
            Operation::DetachEntitlements => b.detach_entitlements(a).await,
            Operation::DenySessions => b.deny_sessions(a).await,
            Operation::LiftSessionDeny => b.lift_session_deny(a).await,
            Operation::AddFederatedCredential | Operation::RemoveFederatedCredential => {
                Err(invalid("federated credentials are added on Azure only"))
            }
            Operation::DisableIdentity => Err(invalid(
                "IAM users and roles cannot be disabled as such: disable their credentials, remove the login, or detach policies",
            )),
        }
    }

    fn planned_undo(&self, a: &ActionRequest) -> Option<Value> {
        if a.operation != Operation::DisableCredential {
            return None;
        }
        let user = user_of(&a.identity_id).ok()?;
        let key_id = a.credential_id.clone()?;
        let step = match a.credential_kind {
            Some(CredentialKind::AccessKey) | None => Undo::ReactivateAccessKey { user, key_id },
            Some(CredentialKind::SshKey) => Undo::ReactivateSshKey { user, key_id },
            Some(_) => return None,
        };
        Some(undo_data(&a.identity_id, vec![step]))
    }

    fn can_disable(&self, kind: CredentialKind) -> bool {
        // Signing certificates and service-specific credentials can be made
        // inactive in IAM, but this remediator does not do it yet: held.
        matches!(kind, CredentialKind::AccessKey | CredentialKind::SshKey)
    }

    fn can_remove(&self, kind: CredentialKind) -> bool {
        // Only access keys are deleted; a role's federated credential is its
        // trust policy, changed by hand.
        kind == CredentialKind::AccessKey
    }

    async fn undo(&self, data: &Value) -> Result<ActionOutcome, SourceError> {
        let parsed: UndoData =
            serde_json::from_value(data.clone()).map_err(|e| invalid(format!("undo data: {e}")))?;
        let (b, steps) = match parsed {
            UndoData::Bound { target, steps } => (self.bind(&target).await?, steps),
            UndoData::Legacy(steps) => {
                // Undo data from before actions were bound to an account:
                // only a single-account source can say where it applies.
                if !self.config.assume_roles.is_empty() || self.config.organization.is_some() {
                    return Err(invalid(
                        "undo data without an account, on a source with assume_roles: \
                         cannot tell which account it applies to",
                    ));
                }
                let principal = match steps.first() {
                    Some(Undo::ReactivateAccessKey { user, .. })
                    | Some(Undo::ReactivateSshKey { user, .. }) => Principal::User(user.clone()),
                    Some(Undo::ReattachManagedPolicy { principal, .. })
                    | Some(Undo::RestoreInlinePolicy { principal, .. })
                    | Some(Undo::DeleteInlinePolicy { principal, .. }) => principal.clone(),
                    None => return Err(invalid("undo data without steps")),
                };
                let client = sdk::client_for(&self.base, &self.config, None).await;
                let b = Bound {
                    client,
                    calls: &self.calls,
                    principal,
                    via: format!("the credentials of source {}", self.config.name),
                };
                if b.principal_arn().await?.is_none() {
                    return Err(invalid("the principal of the undo data does not exist"));
                }
                (b, steps)
            }
        };
        let after = b.undo_steps(&steps).await?;
        Ok(ActionOutcome {
            before: data.clone(),
            after: Value::Array(after),
            undo: None,
            irreversible: None,
            via: Some(b.via.clone()),
        })
    }
}
