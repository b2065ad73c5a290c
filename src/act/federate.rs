//! Issuance on Azure: for an approval that names an Azure application
//! (`role`) and a workload (`issue_to`), a federated identity credential
//! trusting exactly that issuer and subject is wanted on the application
//! for the approval's window, and removed at its end. [`plan_steps`] says
//! what is due; `act::issuance` takes the steps, journaled, in enforce mode.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use nhi_contract::{Approval, FederatedCredential, Operation};
use sha2::{Digest, Sha256};

use crate::store::journal::{Entry, Status};

/// Rule id the federated-credential actions are journaled under.
pub const FEDERATION_RULE: &str = "approval-federation";

/// The federated credential's name for approval `id`, deterministic:
/// `nhi-assure-jit-<id>` when the id is URL-safe and short, else its
/// sanitised prefix and a digest of the whole id (so two ids never share
/// a name); at most 64 characters of `[A-Za-z0-9_-]` (Graph allows 120).
pub fn credential_name(id: &str) -> String {
    let clean: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if clean == id && !id.is_empty() && id.len() <= 49 {
        return format!("nhi-assure-jit-{id}");
    }
    let digest = hex::encode(Sha256::digest(id.as_bytes()));
    let prefix: String = clean.chars().take(36).collect();
    format!("nhi-assure-jit-{prefix}-{}", &digest[..12])
}

/// A federated credential the journal says nhi-assure added and has not
/// removed (nor undone) since, by `(source, application, name)`.
pub fn federations_in_force(
    entries: &[Entry],
) -> BTreeMap<(String, String, String), FederatedCredential> {
    let mut sorted: Vec<&Entry> = entries
        .iter()
        .filter(|e| {
            e.undo_of.is_none()
                && matches!(
                    e.request.operation,
                    Operation::AddFederatedCredential | Operation::RemoveFederatedCredential
                )
        })
        .collect();
    sorted.sort_by_key(|e| e.id);
    let mut out = BTreeMap::new();
    for e in sorted {
        let add = e.request.operation == Operation::AddFederatedCredential;
        let present = match e.status {
            Status::Done | Status::Recovered => add,
            Status::Undone => !add,
            _ => continue,
        };
        let (Some(name), Some(f)) = (&e.request.credential_id, &e.request.federated) else {
            continue;
        };
        let key = (
            e.source.clone(),
            e.request.identity_id.clone(),
            name.clone(),
        );
        if present {
            out.insert(key, f.clone());
        } else {
            out.remove(&key);
        }
    }
    out
}

/// Whether `a` asks for a federated credential: it names an application
/// that is not an AWS role ARN, and a workload.
pub fn federates(a: &Approval) -> bool {
    a.issuance() == Some(nhi_contract::Issuance::Federation)
}

/// Whether `a`'s credential is wanted at `now`: within its window
/// (`starts_at` to the earliest of expiry, revocation, emergency end).
pub fn wanted(a: &Approval, now: DateTime<Utc>) -> bool {
    federates(a) && a.starts() <= now && now < a.ends()
}

/// Which credentials in force must go at `now`: those whose approval is
/// no longer wanted — ended, revoked, outside its window, bound to another
/// workload or application — and, when the approval read was `complete`,
/// those whose approval no read returns any more (access must not outlive
/// its record). After an incomplete read (records a source could not map)
/// an absent approval's credential is kept: it may be the unmapped one.
pub fn to_remove<'a>(
    in_force: &'a BTreeMap<(String, String, String), FederatedCredential>,
    approvals: &[Approval],
    complete: bool,
    now: DateTime<Utc>,
) -> Vec<(&'a (String, String, String), &'a FederatedCredential)> {
    in_force
        .iter()
        .filter(
            |((_, app, name), f)| match approvals.iter().find(|a| a.id == f.approval) {
                None => complete,
                Some(a) => {
                    let same = a.role.as_deref() == Some(app.as_str())
                        && credential_name(&a.id) == *name
                        && a.issue_to
                            .as_ref()
                            .is_some_and(|w| w.issuer == f.issuer && w.subject == f.subject);
                    !(same && wanted(a, now))
                }
            },
        )
        .collect()
}

/// The add and remove steps due at `now`; `complete` when every approval
/// record was mapped (only then does an absent approval end its
/// credential). Removals come first and need no
/// lookup (the journal names the source that added the credential);
/// additions are made through the one Azure source (with a remediator)
/// whose tenant holds the application. Found in none, in several, or not
/// known because a tenant could not be asked: the step is blocked, with
/// why, and nothing is guessed.
#[cfg(feature = "azure")]
pub async fn plan_steps(
    sources: &[crate::sources::SourceConfig],
    rems: &crate::sources::Remediators,
    approvals: &[Approval],
    complete: bool,
    journal: &[Entry],
    now: DateTime<Utc>,
) -> Vec<super::IssuanceStep> {
    let in_force = federations_in_force(journal);
    let gone = to_remove(&in_force, approvals, complete, now);
    let mut steps: Vec<super::IssuanceStep> = gone
        .iter()
        .map(|((source, app, name), f)| super::IssuanceStep {
            source: source.clone(),
            approval: f.approval.clone(),
            rule: FEDERATION_RULE,
            request: request(
                Operation::RemoveFederatedCredential,
                app,
                name,
                (*f).clone(),
            ),
            blocked: None,
        })
        .collect();
    let kept = |app: &str, name: &str, f: &FederatedCredential| {
        in_force.iter().any(|((_, a, n), g)| {
            a == app
                && n == name
                && g.issuer == f.issuer
                && g.subject == f.subject
                && !gone.iter().any(|((_, ga, gn), _)| ga == a && gn == n)
        })
    };
    let tenants: Vec<(&str, nhi_azure::AzureRemediator)> = sources
        .iter()
        .filter_map(|s| match s {
            crate::sources::SourceConfig::Azure(c) if rems.contains_key(s.name()) => {
                Some((s.name(), nhi_azure::AzureRemediator::new(c)))
            }
            _ => None,
        })
        .collect();
    for a in approvals.iter().filter(|a| wanted(a, now)) {
        let (Some(app), Some(w)) = (a.role.as_deref(), a.issue_to.as_ref()) else {
            continue;
        };
        let name = credential_name(&a.id);
        let spec = FederatedCredential {
            approval: a.id.clone(),
            issuer: w.issuer.clone(),
            subject: w.subject.clone(),
            description: format!(
                "nhi-assure: approval {} until {}",
                a.id,
                a.ends().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        };
        if kept(app, &name, &spec) {
            continue;
        }
        let (source, blocked) = holder(&tenants, app).await;
        steps.push(super::IssuanceStep {
            source,
            approval: a.id.clone(),
            rule: FEDERATION_RULE,
            request: request(Operation::AddFederatedCredential, app, &name, spec),
            blocked,
        });
    }
    steps
}

/// The source whose tenant holds application `app`, or why none can be
/// named.
#[cfg(feature = "azure")]
async fn holder(
    tenants: &[(&str, nhi_azure::AzureRemediator)],
    app: &str,
) -> (String, Option<String>) {
    let mut found = Vec::new();
    let mut unknown = Vec::new();
    for (name, rem) in tenants {
        match rem.find_application(app).await {
            Ok(Some(_)) => found.push(*name),
            Ok(None) => {}
            Err(e) => unknown.push(format!("{name}: {e}")),
        }
    }
    match (found.as_slice(), unknown.is_empty()) {
        // Application ids and object ids are GUIDs: found in one tenant,
        // no other (even one that could not be asked) holds it.
        ([one], _) => (one.to_string(), None),
        ([], true) => (
            String::new(),
            Some(format!(
                "application {app} is in no Azure source with enforce rights ({} asked)",
                tenants.len()
            )),
        ),
        ([], false) => (
            String::new(),
            Some(format!(
                "application {app} not found; could not ask {}",
                unknown.join("; ")
            )),
        ),
        (many, _) => (
            String::new(),
            Some(format!(
                "application {app} is in several sources ({}): refusing to choose",
                many.join(", ")
            )),
        ),
    }
}

#[cfg(feature = "azure")]
fn request(
    operation: Operation,
    app: &str,
    name: &str,
    f: FederatedCredential,
) -> nhi_contract::ActionRequest {
    nhi_contract::ActionRequest {
        operation,
        provider: nhi_contract::Provider::Azure,
        identity_id: app.to_string(),
        credential_id: Some(name.to_string()),
        credential_kind: Some(nhi_contract::CredentialKind::Federated),
        entitlements: Vec::new(),
        federated: Some(f),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_deterministic_url_safe_and_distinct() {
        assert_eq!(credential_name("APR-7"), "nhi-assure-jit-APR-7");
        let a = credential_name("jira:SEC/9");
        let b = credential_name("jira-SEC-9");
        assert_ne!(a, b);
        assert_eq!(a, credential_name("jira:SEC/9"));
        let long = credential_name(&"x".repeat(500));
        assert!(long.len() <= 64, "{long}");
        assert!(a
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    }

    fn approval(id: &str, revoked: Option<&str>) -> Approval {
        serde_json::from_value(serde_json::json!({
            "id": id, "subject": "a1", "requester": "r", "approver": "p",
            "approved_at": "2026-12-01T00:00:00Z", "expires_at": "2026-12-03T00:00:00Z",
            "revoked_at": revoked, "role": "c1000000-0000-4000-8000-000000000001",
            "issue_to": {"issuer": "https://iss", "subject": "repo:x"},
        }))
        .expect("approval")
    }

    #[test]
    fn ended_revoked_and_vanished_approvals_lose_their_credential() {
        let now: DateTime<Utc> = "2026-12-02T00:00:00Z".parse().expect("now");
        let key = |id: &str| {
            (
                "azure".to_string(),
                "c1000000-0000-4000-8000-000000000001".to_string(),
                credential_name(id),
            )
        };
        let fic = |id: &str| FederatedCredential {
            approval: id.into(),
            issuer: "https://iss".into(),
            subject: "repo:x".into(),
            description: String::new(),
        };
        let in_force: BTreeMap<_, _> = ["APR-1", "APR-2", "APR-3"]
            .into_iter()
            .map(|id| (key(id), fic(id)))
            .collect();
        let approvals = vec![
            approval("APR-1", None),
            approval("APR-2", Some("2026-12-01T12:00:00Z")),
        ];
        let gone = |complete| -> Vec<String> {
            to_remove(&in_force, &approvals, complete, now)
                .into_iter()
                .map(|(_, f)| f.approval.clone())
                .collect()
        };
        assert_eq!(gone(true), vec!["APR-2", "APR-3"]);
        // An incomplete read keeps the one no read returned.
        assert_eq!(gone(false), vec!["APR-2"]);
        // After expiry, all go.
        let later: DateTime<Utc> = "2026-12-04T00:00:00Z".parse().expect("later");
        assert_eq!(to_remove(&in_force, &approvals, true, later).len(), 3);
        assert!(wanted(&approvals[0], now) && !wanted(&approvals[1], now));
    }
}
