//! Undo one journaled action.

use std::collections::HashMap;

use nhi_contract::Remediator;

use crate::store::journal::{Entry, Intent, Status};
use crate::store::lease::Fence;
use crate::store::SqlStore;

use super::{actor, Outcome, OutcomeStatus};

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
        status: OutcomeStatus::Undone,
        detail: None,
    };
    if !entry.status.took_effect() {
        return Ok(Outcome {
            status: OutcomeStatus::Skip,
            detail: Some(format!(
                "action {} is {}: nothing to undo",
                entry.id, entry.status
            )),
            ..base
        });
    }
    let Some(data) = entry.undo.clone() else {
        return Ok(Outcome {
            status: OutcomeStatus::Irreversible,
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
            store.journal_outcome(id, Status::Done, Ok(&o)).await?;
            store.journal_mark_undone(entry.id).await?;
            Ok(Outcome {
                action_id: Some(id),
                status: OutcomeStatus::Undone,
                ..base
            })
        }
        Err(e) => {
            store
                .journal_outcome(id, Status::Failed, Err(&e.to_string()))
                .await?;
            Ok(Outcome {
                action_id: Some(id),
                status: OutcomeStatus::Failed,
                detail: Some(e.to_string()),
                ..base
            })
        }
    }
}
