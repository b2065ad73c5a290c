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
        #[allow(unused_mut)]
        let mut outcomes = enforce(&pass, &rems, leader.fence(), pause_after_call).await?;
        #[cfg(feature = "aws")]
        outcomes.extend(issue::reconcile_sessions(ctx, &pass, &rems, leader.fence()).await?);
        anyhow::Ok((pass, outcomes))
    }
    .await;
    leader.release().await;
    acted
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
