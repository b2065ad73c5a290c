//! Credentials: client secrets and certificates as listed on their
//! application or service principal (ids and dates only — a secret value
//! has no field in [`crate::model`]), and each application's federated
//! identity credentials.

use std::collections::HashMap;

use futures_util::stream::{self, StreamExt};
use nhi_contract::{Credential, CredentialKind, Gap, Inventory, Unseen, Usage};

use super::usage::{usage_of, Activity};
use super::Scan;
use crate::client::{Api, ApiError};
use crate::model::{self, ts};

/// Federated credentials by application object id (an application whose
/// list could not be read is absent, with a gap).
pub(super) type Federated = HashMap<String, Vec<model::FederatedCredential>>;

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

    /// Each application's federated credentials, with bounded concurrency;
    /// one failing is a `federated` gap, not a failure.
    pub(super) async fn federated_credentials(
        &self,
        apps: &[model::Application],
        gaps: &mut Vec<Gap>,
    ) -> Federated {
        let c = self.client;
        let fics: Vec<(String, Result<Vec<model::FederatedCredential>, ApiError>)> =
            stream::iter(apps.iter().map(|a| a.id.clone()).collect::<Vec<_>>())
                .map(|app| async move {
                    let r = c
                        .list(
                            Api::Graph,
                            &format!(
                                "/v1.0/applications/{app}/federatedIdentityCredentials?$select=id,name,issuer,subject"
                            ),
                        )
                        .await;
                    (app, r)
                })
                .buffer_unordered(self.concurrency())
                .collect()
                .await;
        let mut fic_by_app = Federated::new();
        for (app, r) in fics {
            match r {
                Ok(list) => {
                    fic_by_app.insert(app, list);
                }
                Err(e) => {
                    tracing::warn!(source = %self.cfg.name, %app, error = %e, "federated credentials not read");
                    gaps.push(Gap {
                        unseen: Unseen::Credentials {
                            kind: CredentialKind::Federated,
                        },
                        reason: format!("federated credentials of application {app}: {e}"),
                    });
                }
            }
        }
        fic_by_app
    }

    /// The federated credentials of application `app`: they never expire and
    /// the sign-in reports do not attribute use to them.
    pub(super) fn push_federated(&self, inv: &mut Inventory, app: &str, federated: &Federated) {
        for f in federated.get(app).into_iter().flatten() {
            let detail = match (&f.issuer, &f.subject) {
                (Some(i), Some(s)) => format!("{} ({i} → {s})", f.name),
                _ => f.name.clone(),
            };
            inv.credentials.push(Credential {
                id: f.id.clone(),
                identity: app.to_string(),
                kind: CredentialKind::Federated,
                created: None,
                expires: None,
                usage: Usage::Unknown,
                active: true,
                name: Some(detail),
                federation: None,
            });
        }
    }
}
