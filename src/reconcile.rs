//! Enforce mode: carry out the plan behind the safety rails, journaling
//! every action before and after the provider call, and undo.
//!
//! Order of a reconcile: finish interrupted actions first (intents without
//! an outcome are re-applied — every remediation is idempotent — and keep
//! the undo data journaled with the intent), then filter the plan through
//! the rails (protected and unknown were already applied by the plan; here:
//! grace period, disable before delete with quarantine, blast radius), then
//! act one action at a time.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use nhi_aws::AwsRemediator;
use nhi_azure::AzureRemediator;
use nhi_contract::{ActionRequest, Operation, Remediator};
use serde::Serialize;

use crate::cli::PassResult;
use crate::config::{Config, SourceConfig};
use crate::findings::Finding;
use crate::plan::ResolvedAction;
use crate::rules::{Action, Severity};
use crate::store::journal::{Entry, Intent};
use crate::store::lease::Fence;
use crate::store::{SourcedFinding, SqlStore};

/// Remediators by source name (a snapshot source has none: it is read-only).
pub async fn remediators(cfg: &Config) -> HashMap<String, Box<dyn Remediator>> {
    let mut out: HashMap<String, Box<dyn Remediator>> = HashMap::new();
    for s in &cfg.sources {
        match s {
            SourceConfig::Aws(c) => {
                out.insert(c.name.clone(), Box::new(AwsRemediator::new(c).await));
            }
            SourceConfig::Azure(c) => {
                out.insert(c.name.clone(), Box::new(AzureRemediator::new(c)));
            }
            SourceConfig::Snapshot(_) => {}
        }
    }
    out
}

/// What happened to one planned action in this reconcile.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// Journal id, if it was journaled.
    pub action_id: Option<i64>,
    /// The action.
    #[serde(flatten)]
    pub request: ActionRequest,
    /// Rules behind it.
    pub rules: Vec<String>,
    /// `done`, `failed`, `recovered`, `skip`, `held`.
    pub status: String,
    /// Why skipped / held, or the error, or what cannot be undone.
    pub detail: Option<String>,
}

/// Who runs this, for the journal.
pub fn actor() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let host = hostname();
    format!("{user}@{host} via nhi-assure {}", env!("CARGO_PKG_VERSION"))
}

/// This machine's name, for the journal's actor and the lease holder.
pub fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".into())
}

/// Re-apply interrupted actions and record their outcome.
pub async fn recover(
    store: &SqlStore,
    rems: &HashMap<String, Box<dyn Remediator>>,
    fence: &Fence,
) -> anyhow::Result<Vec<Outcome>> {
    let mut out = Vec::new();
    for e in store.journal_open().await? {
        store.check_fence(fence).await?;
        let Some(rem) = rems.get(&e.source) else {
            tracing::warn!(action = e.id, source = %e.source, "interrupted action of a source without remediator");
            continue;
        };
        tracing::warn!(action = e.id, "finishing an interrupted action");
        let result = if let Some(orig) = e.undo_of {
            match store
                .journal_get(orig)
                .await?
                .and_then(|o| o.undo.or(o.planned_undo))
            {
                Some(data) => rem.undo(&data).await,
                None => Err(nhi_contract::SourceError::Invalid {
                    location: format!("action {orig}"),
                    message: "no undo data".into(),
                }),
            }
        } else {
            rem.apply(&e.request).await
        };
        let (status, detail) = match result {
            Ok(mut o) => {
                // Re-applied on a subject already in the target state: the
                // undo data is the one journaled with the intent.
                if o.undo.is_none() && e.undo_of.is_none() {
                    o.undo = e.planned_undo.clone();
                }
                store.journal_outcome(e.id, "recovered", Ok(&o)).await?;
                if let Some(orig) = e.undo_of {
                    store.journal_mark_undone(orig).await?;
                }
                ("recovered", None)
            }
            Err(err) => {
                store
                    .journal_outcome(e.id, "failed", Err(&err.to_string()))
                    .await?;
                ("failed", Some(err.to_string()))
            }
        };
        out.push(Outcome {
            action_id: Some(e.id),
            request: e.request.clone(),
            rules: e.rules.clone(),
            status: status.into(),
            detail,
        });
    }
    Ok(out)
}

fn parse_ts(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

fn fingerprint(rule: &str, a: &ActionRequest) -> String {
    crate::findings::fingerprint(
        rule,
        &a.identity_id,
        a.credential_id.as_deref().unwrap_or_default(),
    )
}

/// Reconcile: recover, apply the rails, act. `pause_after_call` is a test
/// hook that widens the window between the provider call and the outcome.
pub async fn enforce(
    pass: &PassResult,
    rems: &HashMap<String, Box<dyn Remediator>>,
    fence: &Fence,
    pause_after_call: Option<Duration>,
) -> anyhow::Result<Vec<Outcome>> {
    let store = &pass.store;
    let rails = &pass.cfg.enforce;
    let mut out = recover(store, rems, fence).await?;
    let first_seen = store.first_seen().await?;
    let now = pass.now;

    // Rails that hold individual actions.
    let mut ready: Vec<(ResolvedAction, String)> = Vec::new();
    for a in &pass.plan {
        let mut held = |status: &str, why: String| {
            out.push(Outcome {
                action_id: None,
                request: a.request.clone(),
                rules: a.rules.clone(),
                status: status.into(),
                detail: Some(why),
            })
        };
        if a.status != "act" {
            held("skip", a.reason.clone().unwrap_or_default());
            continue;
        }
        // The subject's own source acts on it (two AWS sources are two
        // accounts with their own credentials).
        let source = Some(a.source.clone()).filter(|s| rems.contains_key(s));
        let Some(source) = source else {
            held(
                "skip",
                "its source has no remediator (read-only source)".into(),
            );
            continue;
        };
        // Grace: some finding behind it must be open long enough.
        let open_long_enough = a.rules.iter().any(|r| {
            let grace = rails
                .grace_hours
                .get(r)
                .copied()
                .unwrap_or(rails.default_grace_hours);
            first_seen
                .get(&fingerprint(r, &a.request))
                .and_then(|t| parse_ts(t))
                .is_some_and(|t| now - t >= chrono::Duration::hours(grace))
        });
        if !open_long_enough {
            held("held", "in its grace period".into());
            continue;
        }
        let mut a = a.clone();
        let credential_op = matches!(
            a.request.operation,
            Operation::DisableCredential | Operation::DeleteCredential
        );
        let cannot_disable = a
            .request
            .credential_kind
            .filter(|k| credential_op && rems.get(&source).is_some_and(|r| !r.can_disable(*k)));
        if let Some(kind) = cannot_disable {
            // No reversible first step exists: removal or nothing.
            if rails.remove_when_cannot_disable.contains(&kind) {
                a.request.operation = Operation::DeleteCredential;
            } else {
                held(
                    "held",
                    format!(
                        "a {kind} cannot be disabled on {provider}, only removed, which cannot be \
                         undone: allow it with [enforce] remove_when_cannot_disable = [\"{kind}\"]",
                        kind = kind.as_str(),
                        provider = a.request.provider
                    ),
                );
                continue;
            }
        } else if a.request.operation == Operation::DeleteCredential {
            // Disable before delete; delete only after the quarantine, still
            // unused since it was disabled (still unapproved: it is planned).
            let cred = a.request.credential_id.clone().unwrap_or_default();
            match store
                .disabled_since(&cred)
                .await?
                .and_then(|t| parse_ts(&t))
            {
                None => a.request.operation = Operation::DisableCredential,
                Some(t) if now - t < chrono::Duration::days(rails.quarantine_days) => {
                    held(
                        "held",
                        format!(
                            "disabled {t}; in quarantine for {} days",
                            rails.quarantine_days
                        ),
                    );
                    continue;
                }
                Some(t) if pass.last_used.get(&cred).is_some_and(|u| *u > t) => {
                    held(
                        "held",
                        format!("used since it was disabled at {t}: not deleted"),
                    );
                    continue;
                }
                Some(_) => {}
            }
        }
        ready.push((a, source));
    }

    // Blast radius: on a breach, act on none and say why.
    if let Some(why) = blast_radius(pass, &ready) {
        tracing::error!(%why, "blast-radius limit: no action taken");
        record_self_finding(pass, &why).await?;
        for (a, _) in ready {
            out.push(Outcome {
                action_id: None,
                request: a.request,
                rules: a.rules,
                status: "held".into(),
                detail: Some(format!("blast-radius limit: {why}")),
            });
        }
        return Ok(out);
    }

    let actor = actor();
    let evidence: BTreeMap<String, &serde_json::Value> = pass
        .findings
        .iter()
        .map(|f| (f.fingerprint(), &f.evidence["approval"]))
        .collect();
    let bar = crate::progress::actions(ready.len());
    for (a, source) in ready {
        bar.inc(1);
        bar.set_message(a.request.credential_id.clone().unwrap_or_default());
        let Some(rem) = rems.get(&source) else {
            continue;
        };
        let fps: Vec<String> = a.rules.iter().map(|r| fingerprint(r, &a.request)).collect();
        let approvals: BTreeMap<&String, serde_json::Value> = fps
            .iter()
            .map(|f| {
                (
                    f,
                    evidence
                        .get(f)
                        .map_or(serde_json::Value::Null, |v| (*v).clone()),
                )
            })
            .collect();
        let id = store
            .journal_intent(&Intent {
                run_id: pass.summary.run_id,
                request: &a.request,
                source: &source,
                rules: &a.rules,
                findings: &fps,
                evidence: serde_json::json!({ "approval_considered": approvals }),
                actor: &actor,
                planned_undo: rem.planned_undo(&a.request),
                undo_of: None,
                fence,
            })
            .await?;
        let result = rem.apply(&a.request).await;
        if let Some(p) = pause_after_call {
            tokio::time::sleep(p).await;
        }
        let (status, detail) = match &result {
            Ok(o) => {
                store.journal_outcome(id, "done", Ok(o)).await?;
                ("done", o.irreversible.clone())
            }
            Err(e) => {
                store
                    .journal_outcome(id, "failed", Err(&e.to_string()))
                    .await?;
                ("failed", Some(e.to_string()))
            }
        };
        out.push(Outcome {
            action_id: Some(id),
            request: a.request,
            rules: a.rules,
            status: status.into(),
            detail,
        });
    }
    Ok(out)
}

fn blast_radius(pass: &PassResult, ready: &[(ResolvedAction, String)]) -> Option<String> {
    let rails = &pass.cfg.enforce;
    let mut subjects: Vec<&str> = ready
        .iter()
        .map(|(a, _)| a.request.identity_id.as_str())
        .collect();
    subjects.sort_unstable();
    subjects.dedup();
    if subjects.len() > rails.max_subjects {
        return Some(format!(
            "{} identities would be acted on, more than max_subjects = {}",
            subjects.len(),
            rails.max_subjects
        ));
    }
    for (i, s) in pass.sources.iter().enumerate() {
        let n = ready
            .iter()
            .filter(|(a, src)| *src == s.name && a.request.credential_id.is_some())
            .count();
        let total = pass.source_credentials.get(i).copied().unwrap_or(0).max(1);
        let share = 100.0 * n as f64 / total as f64;
        if n >= rails.percent_floor && share > rails.max_percent {
            return Some(format!(
                "{n} of {total} credentials of source {} ({share:.1}%) would be acted on, more than max_percent = {}",
                s.name, rails.max_percent
            ));
        }
    }
    None
}

/// The blast-radius breach is itself a finding, stored with the run.
async fn record_self_finding(pass: &PassResult, why: &str) -> anyhow::Result<()> {
    let f = Finding {
        rule_id: "enforce-blast-radius".into(),
        title: "Enforce mode stopped by the blast-radius limit".into(),
        severity: Severity::High,
        provider: None,
        identity_id: "nhi-assure".into(),
        credential_id: None,
        controls: vec!["NIST-800-53r5:AC-2".into(), "NIST-CSF-2.0:PR.AA-05".into()],
        evidence: serde_json::json!({ "reason": why, "run_id": pass.summary.run_id }),
        recommended_action: Action::Flag,
    };
    pass.store
        .add_finding(
            pass.summary.run_id,
            &SourcedFinding {
                finding: f,
                source: String::new(),
                credential_kind: None,
            },
        )
        .await?;
    Ok(())
}

/// Undo one journaled action, journaling the undo itself.
pub async fn undo(
    store: &SqlStore,
    rems: &HashMap<String, Box<dyn Remediator>>,
    entry: &Entry,
    run_id: i64,
    fence: &Fence,
) -> anyhow::Result<Outcome> {
    let base = Outcome {
        action_id: Some(entry.id),
        request: entry.request.clone(),
        rules: entry.rules.clone(),
        status: String::new(),
        detail: None,
    };
    if !matches!(entry.status.as_str(), "done" | "recovered") {
        return Ok(Outcome {
            status: "skip".into(),
            detail: Some(format!(
                "action {} is {}: nothing to undo",
                entry.id, entry.status
            )),
            ..base
        });
    }
    let Some(data) = entry.undo.clone() else {
        return Ok(Outcome {
            status: "irreversible".into(),
            detail: Some(entry.irreversible.clone().unwrap_or_else(|| {
                "nothing was changed by this action (already in the target state)".into()
            })),
            ..base
        });
    };
    let rem = rems
        .get(&entry.source)
        .ok_or_else(|| anyhow::anyhow!("no remediator for source {}", entry.source))?;
    let id = store
        .journal_intent(&Intent {
            run_id,
            request: &entry.request,
            source: &entry.source,
            rules: &["undo".to_string()],
            findings: &[],
            evidence: serde_json::json!({ "undo_of": entry.id }),
            actor: &actor(),
            planned_undo: None,
            undo_of: Some(entry.id),
            fence,
        })
        .await?;
    match rem.undo(&data).await {
        Ok(o) => {
            store.journal_outcome(id, "done", Ok(&o)).await?;
            store.journal_mark_undone(entry.id).await?;
            Ok(Outcome {
                action_id: Some(id),
                status: "undone".into(),
                ..base
            })
        }
        Err(e) => {
            store
                .journal_outcome(id, "failed", Err(&e.to_string()))
                .await?;
            Ok(Outcome {
                action_id: Some(id),
                status: "failed".into(),
                detail: Some(e.to_string()),
                ..base
            })
        }
    }
}
