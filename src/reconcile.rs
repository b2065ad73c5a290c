//! Enforce mode: carry out the plan behind the safety rails, journaling
//! every action before and after the provider call, and undo.
//!
//! Order of a reconcile: finish interrupted actions first (an intent without
//! an outcome is re-applied — every remediation is idempotent — only if its
//! subject is not protected and this pass still plans it or reads it as
//! already acted on; otherwise it is marked `abandoned`), then filter the plan through the rails (protected
//! and unknown were already applied by the plan; here, each a function:
//! [`grace`], [`first_step`] (reversible first, quarantine before delete),
//! [`blast_radius`] per pass, and the [`Budget`] over time), then act one
//! action at a time.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use nhi_aws::AwsRemediator;
use nhi_azure::AzureRemediator;
use nhi_contract::{time, ActionRequest, Operation, Remediator};
use serde::Serialize;

use crate::cli::PassResult;
use crate::config::{
    Budget as BudgetConfig, Config, EnforceConfig, Limit, LoginKind, Removable, SourceConfig,
};
use crate::estate::Estate;
use crate::findings::Finding;
use crate::plan::{Protected, ResolvedAction};
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
    /// `done`, `failed`, `recovered`, `abandoned`, `skip`, `held`.
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

/// What a pass read of an interrupted action's target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetState {
    /// Its source was not read completely this pass: nothing can be said.
    Unseen,
    /// Already as the action leaves it (disabled, removed, detached): the
    /// call went through, or someone did it.
    Settled,
    /// Still as it was before the action.
    Unsettled,
}

/// The target state of each interrupted intent in `open`, by journal id,
/// as `estate` read it.
pub fn target_states(estate: &Estate, open: &[Entry]) -> HashMap<i64, TargetState> {
    let source = |name: &str| estate.sources.iter().find(|s| s.name == name);
    open.iter()
        .filter(|e| e.undo_of.is_none())
        .map(|e| {
            let r = &e.request;
            let seen = source(&e.source).is_some_and(|s| s.state.sees(r.credential_kind));
            if !seen {
                return (e.id, TargetState::Unseen);
            }
            let identity = estate.identities.iter().find(|i| i.id == r.identity_id);
            let credential = || {
                estate.credentials.iter().find(|c| {
                    Some(c.id.as_str()) == r.credential_id.as_deref() && c.identity == r.identity_id
                })
            };
            let settled = match r.operation {
                Operation::DisableCredential => credential().is_none_or(|c| !c.active),
                Operation::DeleteCredential => credential().is_none(),
                Operation::RemoveLogin => identity.is_none_or(|i| !i.human_login),
                Operation::DisableIdentity => identity.is_none_or(|i| !i.enabled),
                Operation::DetachEntitlements => !estate.grants.iter().any(|g| {
                    g.identity == r.identity_id && r.entitlements.contains(&g.entitlement)
                }),
            };
            let state = if settled {
                TargetState::Settled
            } else {
                TargetState::Unsettled
            };
            (e.id, state)
        })
        .collect()
}

/// Whether an interrupted intent may be finished now: its subject is not
/// protected, and either this pass still plans it, or its target is already
/// in the state it leaves (re-applying records the outcome, changes
/// nothing). `Err(None)`: cannot tell this pass (leave it open);
/// `Err(Some(why))`: no longer wanted.
fn recheck(e: &Entry, pass: &PassResult) -> Result<(), Option<String>> {
    let r = &e.request;
    let protected = Protected::new(&pass.cfg.plan.protected);
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
        (Some(a), _) if a.status == "act" => Ok(()),
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
    let mut out = Vec::new();
    for e in store.journal_open().await? {
        store.check_fence(fence).await?;
        let Some(rem) = rems.get(&e.source) else {
            tracing::warn!(action = e.id, source = %e.source, "interrupted action of a source without remediator");
            continue;
        };
        let outcome = |status: &str, detail: Option<String>| Outcome {
            action_id: Some(e.id),
            request: e.request.clone(),
            rules: e.rules.clone(),
            status: status.into(),
            detail,
        };
        if e.undo_of.is_none() {
            match recheck(&e, pass) {
                Ok(()) => {}
                Err(None) => {
                    out.push(outcome(
                        "skip",
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
                        .journal_outcome(e.id, "abandoned", Err(&detail))
                        .await?;
                    out.push(outcome("abandoned", Some(detail)));
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
                store.journal_outcome(e.id, "recovered", Ok(&o)).await?;
                if let Some(orig) = e.undo_of {
                    store.journal_mark_undone(orig).await?;
                }
                out.push(outcome(
                    "recovered",
                    Some("interrupted action re-checked against this pass and finished".into()),
                ));
            }
            Err(err) => {
                store
                    .journal_outcome(e.id, "failed", Err(&err.to_string()))
                    .await?;
                out.push(outcome("failed", Some(err.to_string())));
            }
        }
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

/// Why a planned action is not carried out this run.
#[derive(Debug)]
struct Hold {
    status: &'static str,
    why: String,
}

fn hold(why: impl Into<String>) -> Hold {
    Hold {
        status: "held",
        why: why.into(),
    }
}

/// Rail: some finding behind the action has been open for its grace period.
fn grace(
    a: &ResolvedAction,
    rails: &EnforceConfig,
    first_seen: &HashMap<String, String>,
    now: DateTime<Utc>,
) -> Result<(), Hold> {
    let open_long_enough = a.rules.iter().any(|r| {
        let grace = time::hours(
            rails
                .grace_hours
                .get(r)
                .copied()
                .unwrap_or(rails.default_grace_hours),
        );
        first_seen
            .get(&fingerprint(r, &a.request))
            .and_then(|t| parse_ts(t))
            .is_some_and(|t| time::elapsed(t, now, grace))
    });
    if open_long_enough {
        Ok(())
    } else {
        Err(hold("in its grace period"))
    }
}

/// Rail: the first action on a subject is reversible. An action with no
/// reversible form (a console password, a credential its provider cannot
/// disable) is held unless the operator allowed that kind in
/// `[enforce] allow_irreversible`; a delete of a credential that can be
/// disabled becomes a disable, and runs as a delete only after the
/// quarantine, unused since (a second action).
async fn first_step(
    mut a: ResolvedAction,
    rem: &dyn Remediator,
    pass: &PassResult,
) -> anyhow::Result<Result<ResolvedAction, Hold>> {
    let rails = &pass.cfg.enforce;
    let allowed = |r: Removable| rails.allow_irreversible.contains(&r);
    let refuse = |r: Removable, what: String| {
        hold(format!(
            "{what}, which cannot be undone: held; allow it with [enforce] allow_irreversible = \
             [\"{kind}\"] (formerly remove_when_cannot_disable)",
            kind = r.as_str()
        ))
    };
    let now = pass.now;
    match a.request.operation {
        Operation::RemoveLogin => {
            let r = Removable::Login(LoginKind::ConsolePassword);
            if !allowed(r) {
                return Ok(Err(refuse(
                    r,
                    format!(
                        "removing the console password of {} is the only way to end its login",
                        a.request.identity_id
                    ),
                )));
            }
        }
        Operation::DisableCredential | Operation::DeleteCredential => {
            let cannot_disable = a.request.credential_kind.filter(|k| !rem.can_disable(*k));
            if let Some(kind) = cannot_disable {
                // No reversible first step exists: removal or nothing.
                let r = Removable::Credential(kind);
                if !allowed(r) {
                    return Ok(Err(refuse(
                        r,
                        format!(
                            "a {kind} cannot be disabled on {provider}, only removed",
                            kind = kind.as_str(),
                            provider = a.request.provider
                        ),
                    )));
                }
                a.request.operation = Operation::DeleteCredential;
            } else if a.request.operation == Operation::DeleteCredential {
                let cred = a.request.credential_id.clone().unwrap_or_default();
                match pass
                    .store
                    .disabled_since(&cred)
                    .await?
                    .and_then(|t| parse_ts(&t))
                {
                    None => a.request.operation = Operation::DisableCredential,
                    Some(t) => {
                        if !time::elapsed(t, now, time::days(rails.quarantine_days)) {
                            return Ok(Err(hold(format!(
                                "disabled {t}; in quarantine for {} days",
                                rails.quarantine_days
                            ))));
                        }
                        if pass.last_used.get(&cred).is_some_and(|u| *u > t) {
                            return Ok(Err(hold(format!(
                                "used since it was disabled at {t}: not deleted"
                            ))));
                        }
                    }
                }
            }
        }
        Operation::DisableIdentity | Operation::DetachEntitlements => {}
    }
    Ok(Ok(a))
}

/// The action budget: what the journal shows spent in each rolling window,
/// overall and per source, plus what this run spends. Every pass and
/// replica reads the same journal, so targeted passes, cron passes and
/// one-shot runs draw from one budget.
pub struct Budget {
    windows: Vec<Window>,
}

struct Window {
    limit: Limit,
    /// `None`: all sources together.
    per_source: bool,
    spent: HashMap<String, u64>,
}

impl Budget {
    /// Read what the journal has spent in every configured window, on the
    /// process clock (the clock intents are stamped with).
    pub async fn load(store: &SqlStore, cfg: &BudgetConfig) -> anyhow::Result<Budget> {
        let now = Utc::now();
        let mut windows = Vec::new();
        for (limits, per_source) in [(&cfg.overall, false), (&cfg.per_source, true)] {
            for l in limits {
                let secs = i64::try_from(l.window_secs).unwrap_or(i64::MAX);
                let window = chrono::Duration::try_seconds(secs).unwrap_or(chrono::Duration::MAX);
                let since = time::add(now, -window);
                windows.push(Window {
                    limit: *l,
                    per_source,
                    spent: store.actions_since(since).await?,
                });
            }
        }
        Ok(Budget { windows })
    }

    /// Spend one action of `source`, or say which limit it would exceed.
    pub fn spend(&mut self, source: &str) -> Result<(), String> {
        for w in &self.windows {
            let used = if w.per_source {
                w.spent.get(source).copied().unwrap_or(0)
            } else {
                w.spent.values().sum()
            };
            if used >= w.limit.actions {
                let scope = if w.per_source {
                    format!("source {source}")
                } else {
                    "all sources".to_string()
                };
                return Err(format!(
                    "action budget: {used} action(s) on {scope} in the last {} s, the limit is {}",
                    w.limit.window_secs, w.limit.actions
                ));
            }
        }
        for w in &mut self.windows {
            *w.spent.entry(source.to_string()).or_insert(0) += 1;
        }
        Ok(())
    }
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
    let mut out = recover(pass, rems, fence).await?;
    let first_seen = store.first_seen().await?;
    let held = |a: &ResolvedAction, h: Hold| Outcome {
        action_id: None,
        request: a.request.clone(),
        rules: a.rules.clone(),
        status: h.status.into(),
        detail: Some(h.why),
    };

    // Rails that hold individual actions.
    let mut ready: Vec<(ResolvedAction, String)> = Vec::new();
    for a in &pass.plan {
        if a.status != "act" {
            out.push(held(
                a,
                Hold {
                    status: "skip",
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
                    status: "skip",
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
    match over_budget {
        Some(why) => {
            tracing::error!(%why, "action budget spent: the rest is held");
            record_self_finding(pass, SelfFinding::Budget, &why).await?;
        }
        None => resolve_self_finding(pass, SelfFinding::Budget).await?,
    }
    Ok(out)
}

/// Rail: act on none when this pass would act on too much at once.
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

/// Enforce mode's findings about itself: opened when a rail stops it,
/// resolved by the next enforce run the rail lets through.
#[derive(Debug, Clone, Copy)]
enum SelfFinding {
    BlastRadius,
    Budget,
}

impl SelfFinding {
    fn rule_id(self) -> &'static str {
        match self {
            SelfFinding::BlastRadius => "enforce-blast-radius",
            SelfFinding::Budget => "enforce-action-budget",
        }
    }

    fn finding(self, evidence: serde_json::Value) -> Finding {
        let title = match self {
            SelfFinding::BlastRadius => "Enforce mode stopped by the blast-radius limit",
            SelfFinding::Budget => "Enforce mode held actions over its action budget",
        };
        Finding {
            rule_id: self.rule_id().into(),
            title: title.into(),
            severity: Severity::High,
            provider: None,
            identity_id: "nhi-assure".into(),
            credential_id: None,
            controls: vec!["NIST-800-53r5:AC-2".into(), "NIST-CSF-2.0:PR.AA-05".into()],
            evidence,
            recommended_action: Action::Flag,
        }
    }
}

/// A rail's breach is itself a finding, stored with the run.
async fn record_self_finding(
    pass: &PassResult,
    which: SelfFinding,
    why: &str,
) -> anyhow::Result<()> {
    let f = which.finding(serde_json::json!({ "reason": why, "run_id": pass.summary.run_id }));
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

/// The rail let this run through: its finding, if open, is resolved.
async fn resolve_self_finding(pass: &PassResult, which: SelfFinding) -> anyhow::Result<()> {
    let fp = which.finding(serde_json::Value::Null).fingerprint();
    pass.store.resolve_finding(pass.summary.run_id, &fp).await?;
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
