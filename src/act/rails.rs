//! The rails of enforce mode, each a function: what may be acted on this
//! run, and what is held and why.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use nhi_contract::{time, Operation, Remediator};

use crate::config::{Budget as BudgetConfig, EnforceConfig, Limit, LoginKind, Removable};
use crate::engine::findings::Finding;
use crate::engine::plan::ResolvedAction;
use crate::engine::rules::{Action, Severity};
use crate::pass::PassResult;
use crate::store::{SourcedFinding, SqlStore};

use super::{fingerprint, parse_ts, OutcomeStatus};

/// Why a planned action is not carried out this run.
#[derive(Debug)]
pub(super) struct Hold {
    pub(super) status: OutcomeStatus,
    pub(super) why: String,
}

pub(super) fn hold(why: impl Into<String>) -> Hold {
    Hold {
        status: OutcomeStatus::Held,
        why: why.into(),
    }
}

/// Rail: some finding behind the action has been open for its grace period.
pub(super) fn grace(
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

/// Rail (`[notify] hold_unnotified`): the owner was sent the warning that
/// this action is coming. `warned` holds the findings whose warning some
/// sink accepted; `None` when the rail is off.
pub(super) fn notified(
    a: &ResolvedAction,
    warned: Option<&std::collections::HashSet<String>>,
) -> Result<(), Hold> {
    let Some(warned) = warned else {
        return Ok(());
    };
    if a.rules
        .iter()
        .any(|r| warned.contains(&fingerprint(r, &a.request)))
    {
        Ok(())
    } else {
        Err(hold(
            "its owner was never sent the warning of this action ([notify] hold_unnotified)",
        ))
    }
}

/// Rail: the first action on a subject is reversible. An action with no
/// reversible form (a console password, a credential its provider cannot
/// disable) is held unless the operator allowed that kind in
/// `[enforce] allow_irreversible`; a delete of a credential that can be
/// disabled becomes a disable, and runs as a delete only after the
/// quarantine, unused since (a second action).
///
/// A credential its remediator can neither disable nor remove is held.
///
/// Deleting a credential whose expiry, as this pass read it, has
/// passed runs at once. It cannot authenticate, so nothing is lost that a
/// disable would have kept. Judged on the credential read, never on which
/// rule asked.
pub(super) async fn first_step(
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
    let credential_op = matches!(
        a.request.operation,
        Operation::DisableCredential | Operation::DeleteCredential
    );
    if let Some(kind) = a
        .request
        .credential_kind
        .filter(|k| credential_op && !rem.can_disable(*k) && !rem.can_remove(*k))
    {
        return Ok(Err(hold(format!(
            "a {kind} on {provider} can be neither disabled nor removed by nhi-assure: \
             change it by hand",
            kind = kind.as_str(),
            provider = a.request.provider
        ))));
    }
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
        Operation::DeleteCredential if expired_as_read(&a, pass) => {}
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
        Operation::DisableIdentity
        | Operation::DetachEntitlements
        | Operation::DenySessions
        | Operation::LiftSessionDeny
        | Operation::AddFederatedCredential
        | Operation::RemoveFederatedCredential => {}
    }
    Ok(Ok(a))
}

/// Whether the credential `a` targets had an expiry at or before both the
/// pass's instant and the clock's, as this pass read it.
fn expired_as_read(a: &ResolvedAction, pass: &PassResult) -> bool {
    let Some(cred) = a.request.credential_id.clone() else {
        return false;
    };
    pass.expires
        .get(&(a.request.identity_id.clone(), cred))
        .is_some_and(|t| *t <= pass.now && *t <= Utc::now())
}

/// The action budget: what the journal shows spent in each rolling window,
/// overall and per source, plus what this run spends. Every pass and
/// replica reads the same journal, so targeted passes, cron passes and
/// one-shot runs draw from one budget.
pub struct Budget {
    windows: Vec<Window>,
}

pub(super) struct Window {
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

/// Rail: act on none when this pass would act on too much at once.
pub(super) fn blast_radius(
    pass: &PassResult,
    ready: &[(ResolvedAction, String)],
) -> Option<String> {
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
pub(super) enum SelfFinding {
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
            controls: ["NIST-800-53r5:AC-2".into(), "NIST-CSF-2.0:PR.AA-05".into()].into(),
            evidence: evidence.into(),
            recommended_action: Action::Flag,
            exception: None,
        }
    }
}

/// A rail's breach is itself a finding, stored with the run.
pub(super) async fn record_self_finding(
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
                source: "".into(),
                credential_kind: None,
                // Resolved by its rail, never by a run's absence.
                depends: crate::engine::facets::Facets::EVERYTHING,
            },
        )
        .await?;
    Ok(())
}

/// The rail let this run through: its finding, if open, is resolved.
pub(super) async fn resolve_self_finding(
    pass: &PassResult,
    which: SelfFinding,
) -> anyhow::Result<()> {
    let fp = which.finding(serde_json::Value::Null).fingerprint();
    pass.store.resolve_finding(pass.summary.run_id, &fp).await?;
    Ok(())
}
