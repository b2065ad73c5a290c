//! Finishing interrupted actions, re-checked against the pass.

use std::collections::HashMap;

use nhi_contract::{Operation, Remediator};

use crate::engine::plan::{Protected, Verdict};
use crate::pass::{PassResult, TargetState};
use crate::store::journal::{Entry, Status};
use crate::store::lease::Fence;

use super::{Outcome, OutcomeStatus};

/// Whether an interrupted intent may be finished now: its subject is not
/// protected, and either this pass still plans it, or its target is already
/// in the state it leaves (re-applying records the outcome, changes
/// nothing). `Err(None)`: cannot tell this pass (leave it open);
/// `Err(Some(why))`: no longer wanted.
fn recheck(e: &Entry, pass: &PassResult, protected: &Protected) -> Result<(), Option<String>> {
    let r = &e.request;
    if protected.covers(&r.identity_id)
        || r.credential_id
            .as_deref()
            .is_some_and(|c| protected.covers(c))
    {
        return Err(Some(format!("{} is protected now", r.identity_id)));
    }
    if let Some(t) = &pass.targeted {
        if !t.contains(&r.identity_id) {
            return Err(None);
        }
    }
    let planned = pass.plan.iter().find(|a| {
        a.request.identity_id == r.identity_id
            && a.request.credential_id == r.credential_id
            && (a.request.operation == r.operation
                || (r.operation == Operation::DisableCredential
                    && a.request.operation == Operation::DeleteCredential))
    });
    match (planned, pass.target_states.get(&e.id)) {
        (Some(a), _) if a.status == Verdict::Act => Ok(()),
        (_, Some(TargetState::Settled)) => Ok(()),
        (_, None | Some(TargetState::Unseen)) => Err(None),
        (Some(a), Some(TargetState::Unsettled)) => Err(Some(format!(
            "no longer acted on: {}",
            a.reason.clone().unwrap_or_else(|| "skipped".into())
        ))),
        (None, Some(TargetState::Unsettled)) => {
            Err(Some("no longer planned (approved or changed since)".into()))
        }
    }
}

/// Finish interrupted actions and record their outcome. An interrupted
/// action is re-applied (idempotently) only if its subject is not protected
/// and this pass still plans it or reads its target as already acted on;
/// one no longer wanted is journaled `abandoned` with the reason; one whose
/// subject this pass did not read stays open for the next pass.
pub async fn recover(
    pass: &PassResult,
    rems: &HashMap<String, Box<dyn Remediator>>,
    fence: &Fence,
) -> anyhow::Result<Vec<Outcome>> {
    let store = &pass.store;
    // Compiled once: the protected patterns as this pass's config says.
    let protected = Protected::new(&pass.cfg.plan.protected);
    let mut out = Vec::new();
    for e in store.journal_open().await? {
        store.check_fence(fence).await?;
        let Some(rem) = rems.get(&e.source) else {
            tracing::warn!(action = e.id, source = %e.source, "interrupted action of a source without remediator");
            continue;
        };
        let outcome = |status: OutcomeStatus, detail: Option<String>| Outcome {
            action_id: Some(e.id),
            request: e.request.clone(),
            rules: e.rules.clone(),
            status,
            detail,
        };
        if e.undo_of.is_none() {
            match recheck(&e, pass, &protected) {
                Ok(()) => {}
                Err(None) => {
                    out.push(outcome(
                        OutcomeStatus::Skip,
                        Some("interrupted action whose subject this pass did not read: left for the next pass that does".into()),
                    ));
                    continue;
                }
                Err(Some(why)) => {
                    let read = match pass.target_states.get(&e.id) {
                        Some(TargetState::Settled) => {
                            "this pass read its target as already acted on: the call went \
                             through before the interruption; reverse it by hand if it must be"
                        }
                        _ => "this pass read its target as before the action: nothing was changed",
                    };
                    let detail = format!("interrupted action not re-applied: {why}; {read}");
                    tracing::warn!(action = e.id, %detail, "abandoning an interrupted action");
                    store
                        .journal_outcome(e.id, Status::Abandoned, Err(&detail))
                        .await?;
                    out.push(outcome(OutcomeStatus::Abandoned, Some(detail)));
                    continue;
                }
            }
        }
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
        match result {
            Ok(mut o) => {
                // Re-applied on a subject already in the target state: the
                // undo data is the one journaled with the intent.
                if o.undo.is_none() && e.undo_of.is_none() {
                    o.undo = e.planned_undo.clone();
                }
                store
                    .journal_outcome(e.id, Status::Recovered, Ok(&o))
                    .await?;
                if let Some(orig) = e.undo_of {
                    store.journal_mark_undone(orig).await?;
                }
                out.push(outcome(
                    OutcomeStatus::Recovered,
                    Some("interrupted action re-checked against this pass and finished".into()),
                ));
            }
            Err(err) => {
                store
                    .journal_outcome(e.id, Status::Failed, Err(&err.to_string()))
                    .await?;
                out.push(outcome(OutcomeStatus::Failed, Some(err.to_string())));
            }
        }
    }
    Ok(out)
}
