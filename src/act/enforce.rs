//! Carry out the plan: recover, rails, act, one action at a time.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use nhi_contract::Remediator;

use crate::engine::plan::{ResolvedAction, Verdict};
use crate::pass::PassResult;
use crate::store::journal::{Intent, Status};
use crate::store::lease::Fence;

use super::rails::{
    blast_radius, first_step, grace, hold, notified, record_self_finding, resolve_self_finding,
    Budget, Hold, SelfFinding,
};
use super::{actor, fingerprint, recover, Outcome, OutcomeStatus};

/// Reconcile: recover, screen the plan through the per-action rails, check
/// the blast radius, then act one action at a time within the budget.
/// `pause_after_call` is a test hook that widens the window between the
/// provider call and the outcome.
pub async fn enforce(
    pass: &PassResult,
    rems: &HashMap<String, Box<dyn Remediator>>,
    fence: &Fence,
    pause_after_call: Option<Duration>,
) -> anyhow::Result<Vec<Outcome>> {
    let mut out = recover(pass, rems, fence).await?;
    let ready = screen(pass, rems, &mut out).await?;

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

    let mut budget = Budget::load(&pass.store, &pass.cfg.enforce.budget).await?;
    let mut over_budget: Option<String> = None;
    let journaled = Journaled::new(pass, fence, pause_after_call);
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
        out.push(journaled.act(a, &source, rem.as_ref()).await?);
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

/// The outcome of an action a rail holds (or the plan skips).
fn held(a: &ResolvedAction, h: Hold) -> Outcome {
    Outcome {
        action_id: None,
        request: a.request.clone(),
        rules: a.rules.clone(),
        status: h.status,
        detail: Some(h.why),
    }
}

/// The per-action rails: what the plan skips, what no remediator can act
/// on, [`grace`], [`first_step`]. Returns what may go ahead (with its
/// source); the rest is pushed to `out` with why.
async fn screen(
    pass: &PassResult,
    rems: &HashMap<String, Box<dyn Remediator>>,
    out: &mut Vec<Outcome>,
) -> anyhow::Result<Vec<(ResolvedAction, String)>> {
    let first_seen = pass.store.first_seen().await?;
    let notify = &pass.cfg.notify;
    let warned = if notify.hold_unnotified && notify.enabled() {
        Some(pass.store.notify_warned().await?)
    } else {
        None
    };
    let mut ready = Vec::new();
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
        if let Err(h) = grace(a, &pass.cfg.enforce, &first_seen, pass.now) {
            out.push(held(a, h));
            continue;
        }
        if let Err(h) = notified(a, warned.as_ref()) {
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
    Ok(ready)
}

/// Acting with the journal: an intent committed (under the lease's fence)
/// before the provider call, the outcome after it.
struct Journaled<'a> {
    pass: &'a PassResult,
    fence: &'a Fence,
    actor: String,
    /// Each finding's evidence, by fingerprint: the approval it considered
    /// is the intent's evidence (read for the findings acted on only).
    evidence: BTreeMap<String, &'a crate::engine::findings::Evidence>,
    pause_after_call: Option<Duration>,
}

impl<'a> Journaled<'a> {
    fn new(pass: &'a PassResult, fence: &'a Fence, pause_after_call: Option<Duration>) -> Self {
        Journaled {
            pass,
            fence,
            actor: actor(),
            evidence: pass
                .findings
                .iter()
                .map(|f| (f.fingerprint(), &f.evidence))
                .collect(),
            pause_after_call,
        }
    }

    /// Journal the intent, call the provider, journal the outcome.
    async fn act(
        &self,
        a: ResolvedAction,
        source: &str,
        rem: &dyn Remediator,
    ) -> anyhow::Result<Outcome> {
        let store = &self.pass.store;
        let fps: Vec<String> = a.rules.iter().map(|r| fingerprint(r, &a.request)).collect();
        let approvals: BTreeMap<&String, serde_json::Value> = fps
            .iter()
            .map(|f| {
                (
                    f,
                    self.evidence
                        .get(f)
                        .and_then(|e| e.get("approval"))
                        .unwrap_or(serde_json::Value::Null),
                )
            })
            .collect();
        let id = store
            .journal_intent(&Intent {
                run_id: self.pass.summary.run_id,
                request: &a.request,
                source,
                rules: &a.rules,
                findings: &fps,
                evidence: serde_json::json!({ "approval_considered": approvals }),
                actor: &self.actor,
                planned_undo: rem.planned_undo(&a.request),
                undo_of: None,
                fence: self.fence,
            })
            .await?;
        let result = rem.apply(&a.request).await;
        if let Some(p) = self.pause_after_call {
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
        Ok(Outcome {
            action_id: Some(id),
            request: a.request,
            rules: a.rules,
            status,
            detail,
        })
    }
}
