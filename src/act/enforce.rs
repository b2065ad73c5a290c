//! Carry out the plan: recover, rails, act, one action at a time.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use nhi_contract::Remediator;

use crate::engine::plan::{ResolvedAction, Verdict};
use crate::pass::PassResult;
use crate::store::journal::{Intent, Status};
use crate::store::lease::Fence;

use super::rails::{
    blast_radius, first_step, grace, hold, record_self_finding, resolve_self_finding, Budget, Hold,
    SelfFinding,
};
use super::{actor, fingerprint, recover, Outcome, OutcomeStatus};

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
    let mut out = recover(pass, rems, fence).await?;
    let first_seen = store.first_seen().await?;
    let held = |a: &ResolvedAction, h: Hold| Outcome {
        action_id: None,
        request: a.request.clone(),
        rules: a.rules.clone(),
        status: h.status,
        detail: Some(h.why),
    };

    // Rails that hold individual actions.
    let mut ready: Vec<(ResolvedAction, String)> = Vec::new();
    for a in &pass.plan {
        if a.status != Verdict::Act {
            out.push(held(
                a,
                Hold {
                    status: OutcomeStatus::Skip,
                    why: a.reason.clone().unwrap_or_default(),
                },
            ));
            continue;
        }
        // The subject's own source acts on it, through the account or
        // tenant that read it.
        let Some(rem) = rems.get(&a.source) else {
            out.push(held(
                a,
                Hold {
                    status: OutcomeStatus::Skip,
                    why: "its source has no remediator (read-only source)".into(),
                },
            ));
            continue;
        };
        if let Err(h) = grace(a, rails, &first_seen, pass.now) {
            out.push(held(a, h));
            continue;
        }
        match first_step(a.clone(), rem.as_ref(), pass).await? {
            Ok(a) => {
                let source = a.source.clone();
                ready.push((a, source));
            }
            Err(h) => out.push(held(a, h)),
        }
    }

    // Blast radius of this pass: on a breach, act on none and say why.
    if let Some(why) = blast_radius(pass, &ready) {
        tracing::error!(%why, "blast-radius limit: no action taken");
        record_self_finding(pass, SelfFinding::BlastRadius, &why).await?;
        for (a, _) in ready {
            out.push(held(&a, hold(format!("blast-radius limit: {why}"))));
        }
        return Ok(out);
    }
    resolve_self_finding(pass, SelfFinding::BlastRadius).await?;

    let mut budget = Budget::load(store, &rails.budget).await?;
    let mut over_budget: Option<String> = None;
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
        if let Err(why) = budget.spend(&source) {
            out.push(held(&a, hold(why.clone())));
            over_budget.get_or_insert(why);
            continue;
        }
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
                store.journal_outcome(id, Status::Done, Ok(o)).await?;
                (OutcomeStatus::Done, o.irreversible.clone())
            }
            Err(e) => {
                store
                    .journal_outcome(id, Status::Failed, Err(&e.to_string()))
                    .await?;
                (OutcomeStatus::Failed, Some(e.to_string()))
            }
        };
        out.push(Outcome {
            action_id: Some(id),
            request: a.request,
            rules: a.rules,
            status,
            detail,
        });
    }
    match over_budget {
        Some(why) => {
            tracing::error!(%why, "action budget spent: the rest is held");
            record_self_finding(pass, SelfFinding::Budget, &why).await?;
        }
        None => resolve_self_finding(pass, SelfFinding::Budget).await?,
    }
    Ok(out)
}
