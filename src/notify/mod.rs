//! Outbound notifications: owners told about their findings, about what
//! enforce mode did, and — before it acts — that it will.
//!
//! A pass produces events ([`Event`]); this module routes them by the
//! identity's owner (`[notify] routes`), groups them into one digest per
//! owner per sink, and delivers the digest through its sink ([`sinks`]).
//! Around enforcement there are at most two digests per owner: the pass's
//! (findings opened and resolved, and the warnings "will be disabled at T")
//! before any action, the actions taken (with their undo command) after.
//!
//! Delivery never fails a pass: each message is tried a bounded number of
//! times (429 and 5xx with backoff, `Retry-After` honoured up to a bound),
//! all of a pass's deliveries share one time budget, and the outcome is
//! journaled in the store (`notify_journal`) — which is also how a warning
//! already sent is not sent again, and how the `hold_unnotified` rail knows
//! an owner was told.

pub mod signature;
mod sinks;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::act::{Outcome, OutcomeStatus};
use crate::config::{Config, SinkConfig};
use crate::engine::findings::Finding;
use crate::engine::plan::Verdict;
use crate::pass::{Context, PassResult};
use crate::store::notify::Delivery;
use crate::store::SqlStore;

/// What an owner is told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum EventKind {
    /// Enforce mode will act at the deadline unless the approval is
    /// renewed (sent when the grace period starts).
    #[serde(rename = "action.pending")]
    Pending,
    /// The same, `warn_lead_hours` before the deadline.
    #[serde(rename = "action.reminder")]
    Reminder,
    /// Enforce mode acted (the undo command is given).
    #[serde(rename = "action.taken")]
    ActionTaken,
    /// A finding was opened (or re-opened).
    #[serde(rename = "finding.opened")]
    Opened,
    /// A finding was resolved.
    #[serde(rename = "finding.resolved")]
    Resolved,
}

impl EventKind {
    /// As journaled and sent.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Pending => "action.pending",
            EventKind::Reminder => "action.reminder",
            EventKind::ActionTaken => "action.taken",
            EventKind::Opened => "finding.opened",
            EventKind::Resolved => "finding.resolved",
        }
    }
}

/// One thing an owner is told.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The finding's fingerprint.
    pub fingerprint: String,
    /// Rule.
    pub rule_id: String,
    /// Rule title.
    pub title: String,
    /// Severity.
    pub severity: String,
    /// Identity concerned.
    pub identity_id: String,
    /// Credential concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential_id: Option<String>,
    /// The operation enforce mode takes or took (`disable_credential`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// When enforce mode acts, unless the approval is renewed (warnings).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadline: Option<DateTime<Utc>>,
    /// The command that reverses the action (actions taken).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub undo: Option<String>,
    /// An exception that ended, re-opening the finding.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exception_expired: Option<String>,
    /// The identity's recorded owner.
    #[serde(skip)]
    pub owner: Option<String>,
}

impl Event {
    fn of(kind: EventKind, f: &Finding, owner: Option<&String>) -> Event {
        Event {
            kind,
            fingerprint: f.fingerprint(),
            rule_id: f.rule_id.to_string(),
            title: f.title.to_string(),
            severity: f.severity.as_str().to_string(),
            identity_id: f.identity_id.clone(),
            credential_id: f.credential_id.clone(),
            operation: None,
            deadline: None,
            undo: None,
            exception_expired: None,
            owner: owner.cloned(),
        }
    }

    /// What makes the event one: a warning is one per deadline, the rest
    /// one per run.
    fn dedup(&self, run_id: i64) -> String {
        match self.deadline {
            Some(t)
                if matches!(self.kind, EventKind::Pending | EventKind::Reminder)
                    || self.exception_expired.is_some() =>
            {
                t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            }
            _ => format!("run {run_id}"),
        }
    }

    /// One line for people.
    pub fn line(&self) -> String {
        let what = match &self.credential_id {
            Some(c) => format!("credential {c} of {}", self.identity_id),
            None => self.identity_id.clone(),
        };
        let op = self
            .operation
            .as_deref()
            .map(|o| o.replace('_', " "))
            .unwrap_or_else(|| "act on".into());
        let at = |t: &Option<DateTime<Utc>>| {
            t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default()
        };
        match self.kind {
            EventKind::Pending | EventKind::Reminder => format!(
                "{what}: enforce mode will {op} it at {} unless its approval is renewed ({}: {})",
                at(&self.deadline),
                self.rule_id,
                self.title
            ),
            EventKind::ActionTaken => format!(
                "{what}: {op} done ({}: {}); to reverse it: {}",
                self.rule_id,
                self.title,
                self.undo.as_deref().unwrap_or("see `nhi-assure journal`")
            ),
            EventKind::Opened => match &self.exception_expired {
                Some(e) => format!(
                    "{what}: [{}] {} ({}) is open again: exception {e} has ended",
                    self.severity, self.title, self.rule_id
                ),
                None => format!(
                    "{what}: [{}] {} ({})",
                    self.severity, self.title, self.rule_id
                ),
            },
            EventKind::Resolved => format!("{what}: resolved: {} ({})", self.title, self.rule_id),
        }
    }
}

/// One owner's events for one sink, in one message.
#[derive(Debug, Clone, Serialize)]
pub struct Digest {
    /// The owner (`(no owner)` when the identity records none).
    pub owner: String,
    /// The run that produced it.
    pub run_id: i64,
    /// Events, warnings first.
    pub events: Vec<Event>,
    /// Whether the owner has no unexcepted open finding left after this
    /// pass (PagerDuty resolves the owner's incident then).
    #[serde(skip)]
    pub all_clear: bool,
}

impl Digest {
    /// The message's title.
    pub fn title(&self) -> String {
        let n = |k: EventKind| self.events.iter().filter(|e| e.kind == k).count();
        let mut parts = Vec::new();
        let warnings = n(EventKind::Pending) + n(EventKind::Reminder);
        if warnings > 0 {
            parts.push(format!("{warnings} action(s) coming"));
        }
        for (k, what) in [
            (EventKind::ActionTaken, "action(s) taken"),
            (EventKind::Opened, "finding(s) opened"),
            (EventKind::Resolved, "finding(s) resolved"),
        ] {
            if n(k) > 0 {
                parts.push(format!("{} {what}", n(k)));
            }
        }
        format!("nhi-assure: {} for {}", parts.join(", "), self.owner)
    }
}

/// What a pass's deliveries did, per sink: (messages sent, messages failed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// By sink name.
    pub sinks: BTreeMap<String, (u64, u64)>,
}

/// The owner of an identity that records none (journaled as such).
const NO_OWNER: &str = "(no owner)";

/// Delivers a pass's events within one time budget.
pub struct Notifier {
    cfg: Arc<Config>,
    store: SqlStore,
    config_path: String,
    /// `None` if it could not be built (no TLS backend): HTTP sinks fail,
    /// the others still deliver.
    client: Option<reqwest::Client>,
    deadline: tokio::time::Instant,
    /// What was delivered so far.
    pub report: Report,
}

impl Notifier {
    /// A notifier for `pass`; its budget starts now. `config_path` is
    /// named in undo commands.
    pub fn new(pass: &PassResult, config_path: &std::path::Path) -> Notifier {
        let n = &pass.cfg.notify;
        // Each request carries its sink's timeout (`post_bytes`).
        let client = reqwest::Client::builder()
            // A webhook URL carries its token: a redirect could send it
            // (and the body) elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .ok();
        Notifier {
            cfg: Arc::clone(&pass.cfg),
            store: pass.store.clone(),
            config_path: config_path.display().to_string(),
            client,
            deadline: tokio::time::Instant::now() + Duration::from_secs(n.budget_secs),
            report: Report::default(),
        }
    }

    /// The pass's digest: findings opened and resolved, and — when this
    /// pass will enforce — the warnings of actions to come.
    pub async fn pass_events(&mut self, pass: &PassResult, enforcing: bool) {
        if !self.cfg.notify.enabled() {
            return;
        }
        let mut events = match warnings(pass, enforcing).await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "notify: could not read first-seen times; no warnings this pass");
                Vec::new()
            }
        };
        match pass.store.run_changes(pass.summary.run_id).await {
            Ok(changes) => {
                for (kind, f) in changes {
                    let kind = if kind == "finding.resolved" {
                        EventKind::Resolved
                    } else {
                        EventKind::Opened
                    };
                    let mut e = Event::of(kind, &f, pass.owners.get(&f.identity_id));
                    if e.owner.is_none() && kind == EventKind::Resolved {
                        // The identity may be gone: its owner was told before.
                        e.owner = pass
                            .store
                            .notify_owner_of(&e.fingerprint)
                            .await
                            .ok()
                            .flatten();
                    }
                    events.push(e);
                }
            }
            Err(e) => tracing::warn!(error = %e, "notify: could not read the run's changes"),
        }
        events.extend(expired_exceptions(pass));
        self.deliver(pass, events).await;
    }

    /// The actions digest: what enforce mode did, with the undo command.
    pub async fn actions(&mut self, pass: &PassResult, outcomes: &[Outcome]) {
        if !self.cfg.notify.enabled() {
            return;
        }
        let by_fp: HashMap<String, &Finding> =
            pass.findings.iter().map(|f| (f.fingerprint(), f)).collect();
        let mut events = Vec::new();
        for o in outcomes
            .iter()
            .filter(|o| matches!(o.status, OutcomeStatus::Done | OutcomeStatus::Recovered))
        {
            let Some(f) = o
                .rules
                .iter()
                .find_map(|r| by_fp.get(&crate::act::fingerprint(r, &o.request)))
            else {
                continue;
            };
            let mut e = Event::of(
                EventKind::ActionTaken,
                f,
                pass.owners.get(&o.request.identity_id),
            );
            e.operation = Some(o.request.operation.as_str().to_string());
            e.undo = o
                .action_id
                .map(|id| format!("nhi-assure undo --config {} {id}", self.config_path));
            events.push(e);
        }
        self.deliver(pass, events).await;
    }

    /// Route, group, drop what each sink already has, send, journal.
    async fn deliver(&mut self, pass: &PassResult, events: Vec<Event>) {
        let n = &self.cfg.notify;
        // sink → owner → events
        let mut digests: BTreeMap<String, BTreeMap<String, Vec<Event>>> = BTreeMap::new();
        for e in events {
            for sink in n.route(e.owner.as_deref()) {
                digests
                    .entry(sink.clone())
                    .or_default()
                    .entry(e.owner.clone().unwrap_or_else(|| NO_OWNER.into()))
                    .or_default()
                    .push(e.clone());
            }
        }
        let run_id = pass.summary.run_id;
        let open_owners: std::collections::HashSet<String> = pass
            .findings
            .iter()
            .filter(|f| f.exception.is_none())
            .map(|f| {
                pass.owners
                    .get(&f.identity_id)
                    .cloned()
                    .unwrap_or_else(|| NO_OWNER.into())
            })
            .collect();
        for (sink_name, owners) in digests {
            let Some(sink) = n.sinks.get(&sink_name) else {
                continue;
            };
            let sent = match self.store.notify_sent(&sink_name, run_id).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(sink = %sink_name, error = %e, "notify: journal unreadable; not sending");
                    continue;
                }
            };
            for (owner, mut events) in owners {
                events.retain(|e| {
                    !sent.contains(&(
                        e.fingerprint.clone(),
                        e.kind.as_str().to_string(),
                        e.dedup(run_id),
                    ))
                });
                if events.is_empty() {
                    continue;
                }
                events.sort_by(|a, b| (a.kind, &a.fingerprint).cmp(&(b.kind, &b.fingerprint)));
                let digest = Digest {
                    // A targeted pass saw its subjects only: it cannot
                    // tell an owner all is clear.
                    all_clear: pass.targeted.is_none() && !open_owners.contains(&owner),
                    owner,
                    run_id,
                    events,
                };
                let (attempts, result) = self.send(&sink_name, sink, &digest).await;
                let (status, error) = match &result {
                    Ok(()) => ("sent", None),
                    Err(e) => ("failed", Some(e.clone())),
                };
                let counts = self.report.sinks.entry(sink_name.clone()).or_default();
                if result.is_ok() {
                    counts.0 += 1;
                    tracing::info!(sink = %sink_name, owner = %digest.owner, events = digest.events.len(), attempts, "notify: digest sent");
                } else {
                    counts.1 += 1;
                    tracing::warn!(sink = %sink_name, owner = %digest.owner, attempts, error = error.as_deref().unwrap_or_default(), "notify: digest not delivered");
                }
                let at = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
                let rows: Vec<Delivery> = digest
                    .events
                    .iter()
                    .map(|e| Delivery {
                        run_id: Some(run_id),
                        sink: sink_name.clone(),
                        sink_kind: sink.kind().into(),
                        owner: digest.owner.clone(),
                        kind: e.kind.as_str().into(),
                        fingerprint: e.fingerprint.clone(),
                        dedup: e.dedup(run_id),
                        digest_size: i64::try_from(digest.events.len()).unwrap_or(i64::MAX),
                        status: status.into(),
                        attempts: i64::from(attempts),
                        error: error.clone(),
                        at: at.clone(),
                    })
                    .collect();
                if let Err(e) = self.store.notify_record(&rows).await {
                    tracing::warn!(sink = %sink_name, error = %e, "notify: could not journal a delivery");
                }
            }
        }
    }

    /// Send one digest with retries inside the budget: (tries, outcome);
    /// the error is bounded and carries no secret.
    async fn send(
        &self,
        name: &str,
        sink: &SinkConfig,
        digest: &Digest,
    ) -> (u32, Result<(), String>) {
        let n = &self.cfg.notify;
        let secrets = match sinks::Resolved::new(sink, &self.cfg) {
            Ok(s) => s,
            Err(e) => return (0, Err(e)),
        };
        let mut attempts = 0u32;
        loop {
            let now = tokio::time::Instant::now();
            if now >= self.deadline {
                let e = format!("the pass's delivery budget ({} s) is spent", n.budget_secs);
                return (attempts, Err(e));
            }
            attempts += 1;
            let remaining = self.deadline - now;
            let tried = tokio::time::timeout(
                remaining,
                secrets.send(self.client.as_ref(), digest, n.timeout(name)),
            )
            .await
            .unwrap_or_else(|_| {
                Err(sinks::Failure::Retry {
                    error: "timed out (delivery budget)".into(),
                    after: None,
                })
            });
            let (error, after) = match tried {
                Ok(()) => return (attempts, Ok(())),
                Err(sinks::Failure::Final(e)) => return (attempts, Err(secrets.clean(&e))),
                Err(sinks::Failure::Retry { error, after }) => (error, after),
            };
            if attempts >= n.max_attempts {
                return (attempts, Err(secrets.clean(&error)));
            }
            let cap = Duration::from_secs(n.max_backoff_secs);
            let backoff = Duration::from_millis(200u64.saturating_mul(1 << attempts.min(10)));
            let wait = after.unwrap_or(backoff).min(cap);
            tracing::debug!(sink = %name, attempts, wait_ms = wait.as_millis() as u64, "notify: retrying");
            tokio::time::sleep_until((tokio::time::Instant::now() + wait).min(self.deadline)).await;
        }
    }
}

/// The warnings of this pass's actions: each planned action (verdict act)
/// is due when the first of its findings leaves its grace period; the owner
/// is told when the grace period starts, and again `warn_lead_hours`
/// before the deadline if the period is longer than that.
async fn warnings(pass: &PassResult, enforcing: bool) -> anyhow::Result<Vec<Event>> {
    if !enforcing {
        return Ok(Vec::new());
    }
    let rails = &pass.cfg.enforce;
    let lead = nhi_contract::time::hours(pass.cfg.notify.warn_lead_hours);
    let first_seen = pass.store.first_seen().await?;
    let by_fp: HashMap<String, &Finding> =
        pass.findings.iter().map(|f| (f.fingerprint(), f)).collect();
    let mut out = Vec::new();
    for a in pass.plan.iter().filter(|a| a.status == Verdict::Act) {
        let due = a
            .rules
            .iter()
            .filter_map(|r| {
                let fp = crate::act::fingerprint(r, &a.request);
                let seen = first_seen.get(&fp).and_then(|t| parse_ts(t))?;
                let grace = nhi_contract::time::hours(
                    rails
                        .grace_hours
                        .get(r)
                        .copied()
                        .unwrap_or(rails.default_grace_hours),
                );
                Some((nhi_contract::time::add(seen, grace), seen, fp))
            })
            .min_by_key(|(due, _, _)| *due);
        let Some((due, seen, fp)) = due else {
            continue;
        };
        let Some(f) = by_fp.get(&fp) else {
            continue;
        };
        let owner = pass.owners.get(&a.request.identity_id);
        let mut pending = Event::of(EventKind::Pending, f, owner);
        pending.operation = Some(a.request.operation.as_str().to_string());
        pending.deadline = Some(due);
        let remind_from = nhi_contract::time::add(due, -lead);
        if pass.now >= remind_from && pass.now < due && seen < remind_from {
            let mut r = pending.clone();
            r.kind = EventKind::Reminder;
            out.push(r);
        }
        out.push(pending);
    }
    Ok(out)
}

/// Findings of this pass whose exception has ended: open again, the owner
/// is told so (once per exception end).
fn expired_exceptions(pass: &PassResult) -> Vec<Event> {
    let mut out = Vec::new();
    for f in pass.findings.iter().filter(|f| f.exception.is_none()) {
        let star = nhi_contract::pattern::Syntax::STAR_ASCII_CASELESS;
        let ended = pass.exceptions.iter().find(|e| {
            e.expires_at <= pass.now
                && *e.rule == *f.rule_id
                && star.matches(&e.subject, &f.identity_id)
                && match (&e.credential, &f.credential_id) {
                    (None, _) => true,
                    (Some(p), Some(c)) => star.matches(p, c),
                    (Some(_), None) => false,
                }
        });
        if let Some(x) = ended {
            let mut e = Event::of(EventKind::Opened, f, pass.owners.get(&f.identity_id));
            e.exception_expired = Some(x.id.clone());
            // One per exception end, not one per pass.
            e.deadline = Some(x.expires_at);
            out.push(e);
        }
    }
    out
}

fn parse_ts(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// `reconcile --enforce` with notifications: one pass while leading, its
/// digest (warnings included) delivered before any action, the actions
/// digest after.
pub async fn reconcile(
    ctx: &Context,
    command: &str,
    pause_after_call: Option<Duration>,
) -> anyhow::Result<(PassResult, Vec<Outcome>)> {
    let store = ctx.store().await?;
    let leader = crate::act::lead_once(store, &ctx.cfg).await?;
    let acted = async {
        let pass = ctx.pass(command).await?;
        pass.report_summary();
        let mut notifier = Notifier::new(&pass, &ctx.path);
        notifier.pass_events(&pass, true).await;
        let rems = crate::sources::remediators(&ctx.cfg.sources).await;
        let mut outcomes =
            crate::act::enforce(&pass, &rems, leader.fence(), pause_after_call).await?;
        // Issuance follows its approvals: sessions denied when theirs ended
        // early, federated credentials added and removed with the window.
        outcomes.extend(crate::act::issuance(ctx, &pass, &rems, leader.fence()).await?);
        notifier.actions(&pass, &outcomes).await;
        anyhow::Ok((pass, outcomes))
    }
    .await;
    leader.release().await;
    acted
}
