//! Credentials: client secrets and certificates as listed on their
//! application or service principal (ids and dates only — a secret value
//! has no field in [`crate::model`]), and the federated identity
//! credentials of each application (Graph beta, which alone returns a
//! flexible credential's `claimsMatchingExpression`) and of each
//! user-assigned managed identity (ARM `Microsoft.ManagedIdentity`), each
//! with the external tokens it admits ([`Federation`]).

use std::collections::HashMap;

use futures_util::stream::{self, StreamExt};
use nhi_contract::{Credential, CredentialKind, Federation, Gap, Inventory, Unseen, Usage};

use super::directory::{user_assigned, Directory};
use super::usage::{usage_of, Activity};
use super::Scan;
use crate::client::{Api, ApiError};
use crate::model::{self, ts, MSI_API_VERSION};

/// One federated credential, from Graph or ARM.
#[derive(Debug, Clone)]
pub(super) struct Fic {
    /// Graph object id, or the ARM resource id.
    id: String,
    name: String,
    issuer: Option<String>,
    subject: Option<String>,
    audiences: Vec<String>,
    expression: Option<String>,
}

impl From<model::FederatedCredential> for Fic {
    fn from(f: model::FederatedCredential) -> Fic {
        Fic {
            id: f.id,
            name: f.name,
            issuer: f.issuer,
            subject: f.subject,
            audiences: f.audiences,
            expression: f.claims_matching_expression.and_then(|e| e.value),
        }
    }
}

impl From<model::MiFederatedCredential> for Fic {
    fn from(f: model::MiFederatedCredential) -> Fic {
        let p = f.properties;
        Fic {
            id: f.id,
            name: f.name,
            issuer: p.issuer,
            subject: p.subject,
            audiences: p.audiences,
            expression: p.claims_matching_expression.and_then(|e| e.value),
        }
    }
}

/// What holds a list of federated credentials.
#[derive(Debug, Clone, Copy)]
enum Holder {
    Application,
    ManagedIdentity,
}

impl Holder {
    fn name(self) -> &'static str {
        match self {
            Holder::Application => "application",
            Holder::ManagedIdentity => "managed identity",
        }
    }
}

/// Federated credentials by identity object id (an application or managed
/// identity whose list could not be read is absent, with a gap).
pub(super) type Federated = HashMap<String, Vec<Fic>>;

/// The subject pattern of a claims-matching expression in its documented
/// form `claims['sub'] matches '<pattern>'` (or `eq '<subject>'`), anywhere
/// among `and`-ed terms. `None`: the expression does not constrain `sub`
/// in a form we read (the expression itself is still reported).
pub(super) fn subject_of_expression(expr: &str) -> Option<String> {
    let at = expr.find("claims['sub']")?;
    let rest = expr[at + "claims['sub']".len()..].trim_start();
    let rest = rest
        .strip_prefix("matches")
        .or_else(|| rest.strip_prefix("eq"))?
        .trim_start()
        .strip_prefix('\'')?;
    let end = rest.find('\'')?;
    Some(rest[..end].to_string())
}

fn federation_of(f: &Fic) -> Federation {
    let subjects = match (&f.subject, &f.expression) {
        (Some(s), _) if !s.is_empty() => vec![s.clone()],
        (_, Some(e)) => subject_of_expression(e).into_iter().collect(),
        _ => Vec::new(),
    };
    Federation {
        issuer: f.issuer.clone().unwrap_or_default(),
        subjects,
        audiences: f.audiences.clone(),
        expression: f.expression.clone(),
        ..Federation::default()
    }
}

impl Scan<'_> {
    fn cred(
        &self,
        id: &str,
        identity: &str,
        kind: CredentialKind,
        name: Option<String>,
        (start, end): (Option<&str>, Option<&str>),
        usage: Usage,
    ) -> Credential {
        let expires = ts(end);
        Credential {
            id: id.to_string(),
            identity: identity.to_string(),
            kind,
            created: ts(start),
            expires,
            usage,
            // An expired secret or certificate no longer authenticates.
            active: expires.is_none_or(|e| e > self.now),
            name,
            federation: None,
        }
    }

    /// The secrets, then the certificates, of one object.
    pub(super) fn push_creds(
        &self,
        inv: &mut Inventory,
        owner: &str,
        passwords: &[model::PasswordCredential],
        keys: &[model::KeyCredential],
        activity: &Option<Activity>,
    ) {
        for p in passwords {
            let usage = usage_of(
                activity,
                activity.as_ref().and_then(|x| x.by_key.get(&p.key_id)),
            );
            inv.credentials.push(self.cred(
                &p.key_id,
                owner,
                CredentialKind::ClientSecret,
                p.display_name.clone(),
                (p.start_date_time.as_deref(), p.end_date_time.as_deref()),
                usage,
            ));
        }
        for k in keys {
            let usage = usage_of(
                activity,
                activity.as_ref().and_then(|x| x.by_key.get(&k.key_id)),
            );
            let name = match (&k.display_name, &k.usage) {
                (Some(n), Some(u)) => Some(format!("{n} ({u})")),
                (Some(n), None) => Some(n.clone()),
                (None, u) => u.clone(),
            };
            inv.credentials.push(self.cred(
                &k.key_id,
                owner,
                CredentialKind::Certificate,
                name,
                (k.start_date_time.as_deref(), k.end_date_time.as_deref()),
                usage,
            ));
        }
    }

    /// Each application's federated credentials and each user-assigned
    /// managed identity's, with bounded concurrency; one failing is a
    /// `federated` gap naming it, not a failure.
    pub(super) async fn federated_credentials(
        &self,
        dir: &Directory,
        gaps: &mut Vec<Gap>,
    ) -> Federated {
        let c = self.client;
        let mut reads: Vec<(String, Holder, Api, String)> = dir
            .apps
            .iter()
            .map(|a| {
                (
                    a.id.clone(),
                    Holder::Application,
                    Api::Graph,
                    format!(
                        "/beta/applications/{}/federatedIdentityCredentials?$select=id,name,issuer,subject,audiences,claimsMatchingExpression",
                        a.id
                    ),
                )
            })
            .collect();
        reads.extend(dir.sps.iter().filter_map(|s| {
            let r = user_assigned(s)?;
            Some((
                s.id.clone(),
                Holder::ManagedIdentity,
                Api::Arm,
                format!("{r}/federatedIdentityCredentials?api-version={MSI_API_VERSION}"),
            ))
        }));
        let fics: Vec<(String, Holder, Result<Vec<Fic>, ApiError>)> = stream::iter(reads)
            .map(|(owner, what, api, path)| async move {
                let r = match api {
                    Api::Graph => c
                        .list::<model::FederatedCredential>(api, &path)
                        .await
                        .map(|l| l.into_iter().map(Fic::from).collect()),
                    Api::Arm => c
                        .list::<model::MiFederatedCredential>(api, &path)
                        .await
                        .map(|l| l.into_iter().map(Fic::from).collect()),
                };
                (owner, what, r)
            })
            .buffer_unordered(self.concurrency())
            .collect()
            .await;
        let mut by_owner = Federated::new();
        for (owner, what, r) in fics {
            match r {
                Ok(list) => {
                    by_owner.insert(owner, list);
                }
                Err(e) => {
                    tracing::warn!(source = %self.cfg.name, %owner, error = %e, what = what.name(), "federated credentials not read");
                    gaps.push(Gap {
                        unseen: Unseen::Credentials {
                            kind: CredentialKind::Federated,
                        },
                        reason: format!("federated credentials of {} {owner}: {e}", what.name()),
                    });
                }
            }
        }
        by_owner
    }

    /// The federated credentials of identity `owner`: they never expire and
    /// the sign-in reports do not attribute use to them.
    pub(super) fn push_federated(&self, inv: &mut Inventory, owner: &str, federated: &Federated) {
        for f in federated.get(owner).into_iter().flatten() {
            let federation = federation_of(f);
            let admitted = match (&f.subject, &f.expression) {
                (Some(s), _) => Some(s.as_str()),
                (None, Some(e)) => Some(e.as_str()),
                (None, None) => None,
            };
            let detail = match (&f.issuer, admitted) {
                (Some(i), Some(s)) => format!("{} ({i} → {s})", f.name),
                _ => f.name.clone(),
            };
            inv.credentials.push(Credential {
                id: f.id.clone(),
                identity: owner.to_string(),
                kind: CredentialKind::Federated,
                created: None,
                expires: None,
                usage: Usage::Unknown,
                active: true,
                name: Some(detail),
                federation: Some(Box::new(federation)),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subject_pattern_of_a_documented_expression_is_read() {
        let e = "claims['sub'] matches 'repo:contoso/contoso-repo:ref:refs/heads/*' and claims['repository_id'] eq '456789'";
        assert_eq!(
            subject_of_expression(e).as_deref(),
            Some("repo:contoso/contoso-repo:ref:refs/heads/*")
        );
        assert_eq!(
            subject_of_expression("claims['sub'] eq 'repo:a/b:environment:prod'").as_deref(),
            Some("repo:a/b:environment:prod")
        );
        assert_eq!(
            subject_of_expression("claims['job_workflow_ref'] eq 'x'"),
            None
        );
        assert_eq!(subject_of_expression("claims['sub'] matches 'open"), None);
    }
}
