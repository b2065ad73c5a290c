//! Enforce mode: carry out the plan behind the safety rails, journaling
//! every action before and after the provider call, and undo.
//!
//! Order of a reconcile: finish interrupted actions first (an intent without
//! an outcome is re-applied — every remediation is idempotent — only if its
//! subject is not protected and this pass still plans it or reads it as
//! already acted on; otherwise it is marked `abandoned`), then filter the plan through the rails (protected
//! and unknown were already applied by the plan; here, each a function:
//! the rails in [`rails`] — grace, first step (reversible first, quarantine
//! before delete), blast radius per pass, and the [`Budget`] over time), then
//! act one action at a time ([`enforce`]). [`undo`] reverses a journaled
//! action through the same binding. [`issue`] mints just-in-time sessions
//! bound to an approval.

mod enforce;
pub mod federate;
pub mod issue;
pub mod rails;
mod recover;
mod undo;

use chrono::{DateTime, Utc};
use nhi_contract::ActionRequest;
use serde::Serialize;

use crate::config::Config;
use crate::pass::{Context, PassResult};
use crate::store::lease::{holder_id, Leadership, LeaseState};
use crate::store::SqlStore;

pub use enforce::enforce;
pub use rails::Budget;
pub use recover::recover;
pub use undo::undo;

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
    /// What happened.
    pub status: OutcomeStatus,
    /// Why skipped / held, or the error, or what cannot be undone.
    pub detail: Option<String>,
}

/// What happened to a planned action (or an undo) in one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeStatus {
    /// The provider call succeeded.
    Done,
    /// The provider call failed.
    Failed,
    /// An interrupted action, re-checked and finished.
    Recovered,
    /// An interrupted action no longer wanted: not re-applied.
    Abandoned,
    /// Not acted on by design (skipped in the plan, read-only source,
    /// nothing to undo).
    Skip,
    /// Held by a rail this run (grace, first step, blast radius, budget).
    Held,
    /// Reversed by `undo`.
    Undone,
    /// Asked to be undone, but it cannot be (the detail says why).
    Irreversible,
}

impl OutcomeStatus {
    /// As printed and counted in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeStatus::Done => "done",
            OutcomeStatus::Failed => "failed",
            OutcomeStatus::Recovered => "recovered",
            OutcomeStatus::Abandoned => "abandoned",
            OutcomeStatus::Skip => "skip",
            OutcomeStatus::Held => "held",
            OutcomeStatus::Undone => "undone",
            OutcomeStatus::Irreversible => "irreversible",
        }
    }
}

impl std::fmt::Display for OutcomeStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who runs this, for the journal.
pub fn actor() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let host = crate::store::lease::hostname();
    format!("{user}@{host} via nhi-assure {}", env!("CARGO_PKG_VERSION"))
}

fn parse_ts(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// The fingerprint of the finding of `rule` an action request answers.
pub fn fingerprint(rule: &str, a: &ActionRequest) -> String {
    crate::engine::findings::fingerprint(
        rule,
        &a.identity_id,
        a.credential_id.as_deref().unwrap_or_default(),
    )
}

/// Take the leader lease for a one-shot command that acts, or say plainly
/// who holds it: a daemon (or another operator) is acting on this store.
pub async fn lead_once(store: &SqlStore, cfg: &Config) -> anyhow::Result<Leadership> {
    let ttl = std::time::Duration::from_secs(cfg.daemon.lease_secs);
    match Leadership::acquire(store, &holder_id(), ttl).await? {
        Ok(l) => Ok(l),
        Err(LeaseState::Busy {
            holder,
            remaining_ms,
        }) => anyhow::bail!(
            "not acting: {holder} holds the leader lease on this store for {:.1} s more \
             (a daemon or another operator is acting; stop it or let its lease expire)",
            remaining_ms as f64 / 1000.0
        ),
        Err(LeaseState::Held(_)) => anyhow::bail!("leader lease in an impossible state"),
    }
}

/// One pass and its enforcement, leading for the whole of it, so what is
/// acted on is what this process saw while no one else could act.
/// `pause_after_call` is a test hook (see [`enforce`]). Owners are not told
/// here (`act` sits below `notify`): `reconcile --enforce` runs
/// `notify::reconcile`, the same with the digests around enforcement — with
/// `[notify] hold_unnotified`, this one holds what was never announced.
pub async fn reconcile(
    ctx: &Context,
    command: &str,
    pause_after_call: Option<std::time::Duration>,
) -> anyhow::Result<(PassResult, Vec<Outcome>)> {
    let store = ctx.store().await?;
    let leader = lead_once(store, &ctx.cfg).await?;
    let acted = async {
        let pass = ctx.pass(command).await?;
        pass.report_summary();
        let rems = crate::sources::remediators(&ctx.cfg.sources).await;
        let mut outcomes = enforce(&pass, &rems, leader.fence(), pause_after_call).await?;
        outcomes.extend(issuance(ctx, &pass, &rems, leader.fence()).await?);
        anyhow::Ok((pass, outcomes))
    }
    .await;
    leader.release().await;
    acted
}

/// One step of issuance's lifecycle, outside the rule plan: a deny put on
/// (or lifted from) a role whose sessions outlived their approval, a
/// federated credential added for an approval's window or removed at its
/// end. `blocked` says why a due step cannot be taken (its application
/// found in no source, or in several): shown, never guessed at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuanceStep {
    /// Config source whose remediator takes the step.
    pub source: String,
    /// The approval it serves.
    pub approval: String,
    /// Rule id it is journaled under.
    pub rule: &'static str,
    /// The action.
    pub request: ActionRequest,
    /// Why it cannot be taken, when it cannot.
    pub blocked: Option<String>,
}

impl IssuanceStep {
    /// As `plan` shows it.
    pub fn resolved(&self) -> crate::engine::plan::ResolvedAction {
        use crate::engine::plan::Verdict;
        crate::engine::plan::ResolvedAction {
            request: self.request.clone(),
            rules: vec![self.rule.to_string()],
            source: self.source.clone(),
            status: if self.blocked.is_some() {
                Verdict::Skip
            } else {
                Verdict::Act
            },
            reason: self.blocked.clone(),
        }
    }
}

/// The issuance steps due at this pass, from the approvals it read
/// (revocations applied) and the journal: session denies (AWS, when
/// sessions were ever issued) and federated credentials (Azure, when an
/// Azure source can act). Nothing is read when neither can be due.
pub async fn issuance_steps(
    ctx: &Context,
    pass: &PassResult,
    rems: &crate::sources::Remediators,
) -> anyhow::Result<Vec<IssuanceStep>> {
    #[allow(unused_mut)]
    let mut steps = Vec::new();
    #[cfg(feature = "aws")]
    {
        let issued = pass.store.issued_sessions(None).await?;
        if !issued.is_empty() {
            let denied = issue::denies_in_force(&pass.store.journal_list(None).await?);
            steps.extend(issue::plan_session_steps(
                &pass.approvals,
                &issued,
                &denied,
                pass.now,
            ));
        }
    }
    #[cfg(feature = "azure")]
    {
        let acting = |s: &crate::sources::SourceConfig| {
            matches!(s, crate::sources::SourceConfig::Azure(_)) && rems.contains_key(s.name())
        };
        if ctx.cfg.sources.iter().any(acting) {
            let journal = pass.store.journal_list(None).await?;
            steps.extend(
                federate::plan_steps(
                    &ctx.cfg.sources,
                    rems,
                    &pass.approvals,
                    pass.unmapped.is_empty(),
                    &journal,
                    pass.now,
                )
                .await,
            );
        }
    }
    #[cfg(not(feature = "azure"))]
    let _ = (ctx, rems);
    #[cfg(not(any(feature = "aws", feature = "azure")))]
    let _ = pass;
    Ok(steps)
}

/// The pass's plan followed by the issuance steps due: what a reconcile in
/// enforce mode would do, as `plan` prints it.
pub async fn plan_with_issuance(
    ctx: &Context,
    pass: &PassResult,
) -> anyhow::Result<Vec<crate::engine::plan::ResolvedAction>> {
    let rems = crate::sources::remediators(&ctx.cfg.sources).await;
    let steps = issuance_steps(ctx, pass, &rems).await?;
    Ok(pass
        .plan
        .iter()
        .cloned()
        .chain(steps.iter().map(IssuanceStep::resolved))
        .collect())
}

/// Carry out the issuance steps due now, each journaled (intent before the
/// call, outcome after) and undoable like any action. Run by every
/// reconciler in enforce mode, under its leader lease, after the plan's
/// actions. A blocked step is reported as failed, with why.
pub async fn issuance(
    ctx: &Context,
    pass: &PassResult,
    rems: &crate::sources::Remediators,
    fence: &crate::store::lease::Fence,
) -> anyhow::Result<Vec<Outcome>> {
    use crate::store::journal::{Intent, Status};
    let steps = issuance_steps(ctx, pass, rems).await?;
    let store = &pass.store;
    let actor = actor();
    let mut out = Vec::new();
    for step in steps {
        let rules = vec![step.rule.to_string()];
        let rem = match (&step.blocked, rems.get(&step.source)) {
            (None, Some(r)) => r,
            (blocked, _) => {
                let why = blocked.clone().unwrap_or_else(|| {
                    format!("no remediator for source {:?} (read-only?)", step.source)
                });
                tracing::warn!(approval = %step.approval, rule = step.rule, %why, "issuance step not taken");
                out.push(Outcome {
                    action_id: None,
                    request: step.request,
                    rules,
                    status: OutcomeStatus::Failed,
                    detail: Some(why),
                });
                continue;
            }
        };
        let id = store
            .journal_intent(&Intent {
                run_id: pass.summary.run_id,
                request: &step.request,
                source: &step.source,
                rules: &rules,
                findings: &[],
                evidence: serde_json::json!({ "approval": step.approval }),
                actor: &actor,
                planned_undo: rem.planned_undo(&step.request),
                undo_of: None,
                fence,
            })
            .await?;
        let result = rem.apply(&step.request).await;
        let (status, detail) = match &result {
            Ok(o) => {
                store.journal_outcome(id, Status::Done, Ok(o)).await?;
                (OutcomeStatus::Done, None)
            }
            Err(e) => {
                store
                    .journal_outcome(id, Status::Failed, Err(&e.to_string()))
                    .await?;
                (OutcomeStatus::Failed, Some(e.to_string()))
            }
        };
        tracing::info!(approval = %step.approval, rule = step.rule, operation = ?step.request.operation, status = status.as_str(), "issuance step");
        out.push(Outcome {
            action_id: Some(id),
            request: step.request,
            rules,
            status,
            detail,
        });
    }
    Ok(out)
}

/// What `undo` reverses: one journaled action, or every action of a run.
#[derive(Debug, Clone, Copy)]
pub enum UndoScope {
    /// One action, by journal id.
    Action(i64),
    /// Every action of a run, newest first.
    Run(i64),
}

/// Undo journaled actions while leading, newest first (the reverse of the
/// order they were done); stops at the first error.
pub async fn undo_journaled(ctx: &Context, which: UndoScope) -> anyhow::Result<Vec<Outcome>> {
    let store = ctx.store().await?;
    let entries = match which {
        UndoScope::Action(id) => vec![store
            .journal_get(id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no action {id} in the journal"))?],
        UndoScope::Run(r) => store.journal_list(Some(r)).await?,
    };
    let rems = crate::sources::remediators(&ctx.cfg.sources).await;
    let run_id = entries.first().map_or(0, |e| e.run_id);
    let leader = lead_once(store, &ctx.cfg).await?;
    let mut outcomes = Vec::new();
    for e in entries.iter().rev().filter(|e| e.undo_of.is_none()) {
        match undo(store, &rems, e, run_id, leader.fence()).await {
            Ok(o) => outcomes.push(o),
            Err(err) => {
                leader.release().await;
                return Err(err);
            }
        }
    }
    leader.release().await;
    Ok(outcomes)
}
